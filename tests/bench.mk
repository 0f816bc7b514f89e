# SPDX-License-Identifier: GPL-2.0-or-later
# tests/bench.mk: the benchmark harnesses' smoke runs (appended to TESTS).
# They check that a harness runs, measures what it says and cleans up;
# they print figures and never judge them.  Not repeated under the
# sanitizers: the servers' own tests cover those builds.
BENCH_TESTS = tests/test_bench_01_lab_storm.sh

TESTS += $(BENCH_TESTS)
EXTRA_DIST += $(BENCH_TESTS)
