# SPDX-License-Identifier: GPL-2.0-or-later
# etc/: the commented example configuration of nbdsrv, installed next to
# the file the systemd unit reads, $(sysconfdir)/nbdroot/nbdsrv.conf (which
# "make install" never writes: that one is the administrator's).
nbdrootconfdir = $(sysconfdir)/nbdroot
dist_nbdrootconf_DATA = etc/nbdsrv.conf.example
