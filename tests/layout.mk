# tests/layout.mk: the shape of the source tree (appended to TESTS).
#
# test_layout_01 fails while files of nbdsrv/ call each other in a
# cycle; it is an expected failure until the last cycle is gone (then it
# passes, automake counts an unexpected pass as a failure, and it leaves
# XFAIL_TESTS).
# test_layout_02 fails when a C function is over 100 lines without a
# "/* long: why */" comment above it.
LAYOUT_TESTS = tests/test_layout_01_no_file_cycles.sh \
	tests/test_layout_02_function_lengths.sh

TESTS += $(LAYOUT_TESTS)
XFAIL_TESTS += tests/test_layout_01_no_file_cycles.sh
EXTRA_DIST += $(LAYOUT_TESTS)
