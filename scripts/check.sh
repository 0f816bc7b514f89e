#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-or-later
# Quick-start command 2: install dependencies, build, run the whole test
# suite (make check), the demo (quick-start command 1), make distcheck, the fuzz targets for a bounded time
# (make fuzz-check), then the server tests again under ASan+UBSan and under
# valgrind.
set -e
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh
status=0

# logged_step NAME LOG LINES COMMAND...: runs COMMAND with its output in
# LOG; says "NAME: passed", or shows the last LINES lines of LOG and counts
# a failure.
logged_step() {
  name=$1 log=$2 lines=$3
  shift 3
  if "$@" >"$log" 2>&1; then
    echo "$name: passed (log: $log)"
  else
    tail -n "$lines" "$log"
    echo "$name: FAILED (whole log: $log)"
    status=1
  fi
}

(cd build && make -j2 check) || status=$?
scripts/summarize-tests.sh build || status=1
if [ "${NBDROOT_SKIP_DEMO:-0}" != 1 ]; then
  # Quick-start command 1, as a user runs it (on a port of its own, in
  # case something listens on 10809).
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  logged_step demo build/demo.log 40 env NBDROOT_DEMO_PORT="$port" scripts/demo.sh
fi
if [ "${NBDROOT_SKIP_DISTCHECK:-0}" != 1 ]; then
  # make distcheck: the tarball builds from read-only sources, installs
  # into a prefix of its own and uninstalls cleanly, and its tests pass;
  # only DISTCHECK_TESTS (Makefile.am: unit, server, imgtool and install
  # tests, about 2 minutes; the whole suite ran just above).  Root writes
  # to read-only directories at will: without CAP_DAC_OVERRIDE it cannot,
  # so a test that writes into the sources fails here.
  distcheck() {
    (cd build && timeout -k 30 1200 setpriv --inh-caps=-dac_override \
       --bounding-set=-dac_override make -j2 distcheck TESTS='$(DISTCHECK_TESTS)')
  }
  logged_step "make distcheck" build/distcheck.log 60 distcheck
fi
if [ "${NBDROOT_SKIP_FUZZ:-0}" != 1 ]; then
  # The fuzz targets: replays of past crashes, then FUZZ_SECONDS (30) of
  # fuzzing each, about 3 minutes for all six; one line per target with
  # the number of inputs it ran.
  (cd build && make fuzz-check) || status=1
fi
if [ "${NBDROOT_SKIP_SANITIZERS:-0}" != 1 ]; then
  # A second build tree with sanitizers; only the tests listed in
  # SANITIZE_TESTS (those that exercise our binaries, not the QEMU boots)
  # are repeated.
  BUILD_DIR=build-asan scripts/build.sh --enable-sanitizers >/dev/null
  # The crash harness's figure of 50 crashes is for the plain build; 10
  # are enough to run its paths under the sanitizers.
  (cd build-asan && NBDROOT_CRASH_ITERATIONS=10 make -j2 check TESTS='$(SANITIZE_TESTS)') || status=$?
  scripts/summarize-tests.sh build-asan || status=1
fi
if [ "${NBDROOT_SKIP_VALGRIND:-0}" != 1 ]; then
  # The same tests once more with every nbdsrv under valgrind's memcheck
  # (tests/valgrind-nbdsrv.sh): any error or definite leak fails the test.
  # Fewer crashes and clients: valgrind is some 20 times slower.
  (cd build && NBDROOT_VALGRIND=1 NBDROOT_CRASH_ITERATIONS=5 NBDROOT_LOAD_CLIENTS=100 \
     make -j2 check TESTS='$(SANITIZE_TESTS)') || status=$?
  scripts/summarize-tests.sh build || status=1
fi
exit "$status"
