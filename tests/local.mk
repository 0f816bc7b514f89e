# SPDX-License-Identifier: GPL-2.0-or-later
# tests/: unit tests, shell + nbdsh integration tests, QEMU boot tests.
#
# Each area lists its scripts in its own fragment.  SANITIZE_TESTS is the
# subset that scripts/check.sh repeats in an ASan+UBSan build.
SANITIZE_TESTS =
AM_TESTS_ENVIRONMENT = srcdir=$(abs_srcdir)/tests top_builddir=$(abs_top_builddir); export srcdir top_builddir; LSAN_OPTIONS=suppressions=$(abs_srcdir)/tests/lsan.supp:print_suppressions=0; export LSAN_OPTIONS;
TEST_EXTENSIONS = .sh
SH_LOG_COMPILER = /bin/bash
EXTRA_DIST += tests/functions.sh tests/lsan.supp
clean-local: clean-local-tests
clean-local-tests:
	rm -rf tests/tmp

include $(srcdir)/tests/server.mk
include $(srcdir)/tests/imgtool.mk
include $(srcdir)/tests/boot.mk
include $(srcdir)/tests/fuzz.mk
include $(srcdir)/tests/install.mk
include $(srcdir)/tests/layout.mk
include $(srcdir)/tests/bench.mk

# Unit tests: small C programs over the shared code.
check_PROGRAMS += tests/unit_overlay
tests_unit_overlay_SOURCES = tests/unit_overlay.c tests/unit.h
tests_unit_overlay_CFLAGS = $(AM_CFLAGS) $(ZLIB_CFLAGS)
tests_unit_overlay_LDADD = common/libcommon.a $(ZLIB_LIBS)
TESTS += tests/unit_overlay
SANITIZE_TESTS += tests/unit_overlay

check_PROGRAMS += tests/unit_export_name
tests_unit_export_name_SOURCES = tests/unit_export_name.c tests/unit.h
tests_unit_export_name_LDADD = common/libcommon.a
TESTS += tests/unit_export_name
SANITIZE_TESTS += tests/unit_export_name

check_PROGRAMS += tests/unit_limits
tests_unit_limits_SOURCES = tests/unit_limits.c tests/unit.h nbdsrv/limits.c
tests_unit_limits_CPPFLAGS = $(AM_CPPFLAGS) -I$(top_srcdir)/nbdsrv
tests_unit_limits_CFLAGS = $(AM_CFLAGS) $(LIBURING_CFLAGS) $(ZLIB_CFLAGS) -pthread
tests_unit_limits_LDADD = common/libcommon.a
tests_unit_limits_LDFLAGS = $(AM_LDFLAGS) -pthread
TESTS += tests/unit_limits
SANITIZE_TESTS += tests/unit_limits
