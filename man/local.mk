# SPDX-License-Identifier: GPL-2.0-or-later
# man: build fragment, included from the top-level Makefile.am
dist_man_MANS += man/nbdsrv.8
dist_man_MANS += man/nbdroot-agent.7
dist_man_MANS += man/imgtool.8
dist_man_MANS += man/nbdsrv.conf.5
