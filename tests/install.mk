# SPDX-License-Identifier: GPL-2.0-or-later
# tests/install.mk: installation tests (appended to TESTS).
# test_install_01_make_install runs "make install DESTDIR=..." of this build tree and
# checks what lands where.  Not repeated under the sanitizers: it tests
# the installation, not the programs.
INSTALL_TESTS = tests/test_install_01_make_install.sh

TESTS += $(INSTALL_TESTS)
EXTRA_DIST += $(INSTALL_TESTS)
