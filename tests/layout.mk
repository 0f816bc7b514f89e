# tests/layout.mk: the shape of the source tree (appended to TESTS).
#
# test_layout_01 fails when files of nbdsrv/ or initrd/ call each other
# in a cycle.
# test_layout_02 fails when a C function is over 100 lines without a
# "/* long: why */" comment above it.
LAYOUT_TESTS = tests/test_layout_01_no_file_cycles.sh \
	tests/test_layout_02_function_lengths.sh

TESTS += $(LAYOUT_TESTS)
EXTRA_DIST += $(LAYOUT_TESTS)
