#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# test_server_32_boot_replay: the boot-storm replay (bench/replay) against nbdsrv.
#   - the recorded Debian boot from 20 clients at once, each its own
#     identity: every client finishes, no request fails, every client
#     reads its own writes back, and each has its own overlay on disk;
#   - --pace keeps the trace's think times: a client of a trace whose
#     bursts are 300 ms apart takes at least those 600 ms, and requests
#     of one burst still go out together;
#   - bad command lines and traces are refused with one line on stderr.
# (No time is asserted beyond the think times the trace itself demands.)
. "$(dirname "$0")/functions.sh"

REPLAY=$top_builddir/bench/replay
TRACE=$top_srcdir/bench/data/debian-boot.trace.gz
[ -x "$REPLAY" ] || fail "bench/replay is not built"

# An image of the size the trace names (its content does not matter).
size=$(zcat "$TRACE" | awk '$2 == "image-size" {print $3; exit}')
[ -n "$size" ] || fail "the trace names no image size"
truncate -s "$size" "$TESTDIR/root.img"
cat >"$TESTDIR/nbdsrv.conf" <<EOF
[generic]
max-connections-per-address = 100
EOF
start_nbdsrv -c "$TESTDIR/nbdsrv.conf" -e root="$TESTDIR/root.img" -o "$TESTDIR/ov"

json_field() { /usr/bin/python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$1" "$2"; }

"$REPLAY" --json --verify -n 20 --port "$PORT" --export root --id boot \
  --timeout 300 "$TRACE" >"$TESTDIR/storm.json" 2>"$TESTDIR/storm.err" ||
  { cat "$TESTDIR/storm.err" >&2; fail "replay of the boot trace failed"; }
for f in finished:20 failed:0 unfinished:0 errors:0 mismatches:0 verified:40; do
  got=$(json_field "$TESTDIR/storm.json" "${f%%:*}")
  [ "$got" = "${f#*:}" ] || fail "replay: ${f%%:*} is $got, expected ${f#*:}"
done
n=$(ls "$TESTDIR"/ov/root/boot*.map | wc -l)
[ "$n" = 20 ] || fail "$n overlays for 20 clients"

# --pace on a trace of three bursts, 300 ms apart.
cat >"$TESTDIR/paced.trace" <<EOF
# nbdsrv trace
0 root/x R 0 4096
300000 root/x R 4096 4096
300010 root/x R 8192 4096
600000 root/x W 0 4096
600005 root/x F 0 0
EOF
"$REPLAY" --json --pace -n 3 --port "$PORT" --export root --id paced \
  "$TESTDIR/paced.trace" >"$TESTDIR/paced.json" 2>"$TESTDIR/paced.err" ||
  { cat "$TESTDIR/paced.err" >&2; fail "paced replay failed"; }
[ "$(json_field "$TESTDIR/paced.json" errors)" = 0 ] || fail "paced replay: errors"
[ "$(json_field "$TESTDIR/paced.json" max_depth)" = 2 ] || fail "paced replay: bursts of two not kept"
t=$(json_field "$TESTDIR/paced.json" client_done_p50_s)
/usr/bin/python3 -c "import sys; sys.exit(0 if float('$t') >= 0.6 else 1)" ||
  fail "paced replay: a client took $t s, less than the trace's 0.6 s of think time"

# Bad input.
expect_refusal() {
  local want=$1; shift
  if "$REPLAY" "$@" >"$TESTDIR/bad.out" 2>"$TESTDIR/bad.err"; then
    fail "replay $* succeeded"
  fi
  grep -q "$want" "$TESTDIR/bad.err" || { cat "$TESTDIR/bad.err" >&2; fail "replay $*: no '$want'"; }
}
expect_refusal "must be a number" -n 0 "$TRACE"
expect_refusal "must be a number" --depth 999 "$TRACE"
expect_refusal "cannot open" "$TESTDIR/no-such.trace"
printf '12 root/x R notanumber 1\n' >"$TESTDIR/bad.trace"
expect_refusal "not a trace line" "$TESTDIR/bad.trace"
stop_nbdsrv || fail "nbdsrv exited with $? on SIGTERM"
