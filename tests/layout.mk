# SPDX-License-Identifier: GPL-2.0-or-later
# tests/layout.mk: the shape of the source tree (appended to TESTS).
#
# test_layout_01 fails when files of nbdsrv/ or initrd/ call each other
# in a cycle.
# test_layout_02 fails when a C function is over 100 lines without a
# "/* long: why */" comment above it.
# test_layout_03 fails when a tracked source file, script, build file or
# man page has no SPDX line, or COPYING is not the GPL version 2.
# test_layout_04 fails when a C file is not formatted as .clang-format
# says.
LAYOUT_TESTS = tests/test_layout_01_no_file_cycles.sh \
	tests/test_layout_02_function_lengths.sh \
	tests/test_layout_03_licence.sh \
	tests/test_layout_04_format.sh

TESTS += $(LAYOUT_TESTS)
EXTRA_DIST += $(LAYOUT_TESTS)
