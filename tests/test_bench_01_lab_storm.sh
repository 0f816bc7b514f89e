#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# test_bench_01_lab_storm: a small lab storm through bench/lab-storm.sh,
# the harness's smoke run.  Twenty clients, each from its own address in
# a client namespace, replay the boot trace against nbdsrv, nbd-server
# and qemu-nbd in a server namespace over a link shaped to 1 Gbit/s:
#   - every server's row is in the table, none failed; nbdsrv served
#     every client with no error and every client read its own data back;
#   - the traffic went over the lab's link: the server sent at least the
#     trace's reads for every client;
#   - nbdsrv saw twenty distinct client addresses from 198.19.0.0 on;
#   - the summary line is last, in its documented shape;
#   - the namespaces and servers are gone afterwards, also when the run
#     is stopped in the middle of a storm (SIGTERM: a background job of
#     a script ignores SIGINT; on a terminal the wrapper gets Ctrl-C and
#     passes it on as the same SIGTERM).
# Figures are printed, never judged: tests do not assert on time.
. "$(dirname "$0")/functions.sh"
[ "$(id -u)" = 0 ] || skip "needs root (network namespaces)"
requires_cmd ip tc nbd-server qemu-nbd

lab=$top_srcdir/bench/lab-storm.sh
export BUILD_DIR=$top_builddir
n=20
out=$TESTDIR/out
lab_namespaces() { ip netns list | grep -o "nbdlab-$1-[a-z]*" || true; }

# In the background for its pid, which names its namespaces (another
# harness may run on the machine at the same time, with its own).
"$lab" --clients $n --link 1gbit --trace boot --timeout 120 --workdir "$TESTDIR" \
  --out "$out" >"$TESTDIR/run.out" 2>"$TESTDIR/run.log" &
pid=$!
rc=0
wait $pid || rc=$?
[ $rc = 0 ] || fail "lab-storm exited with $rc: $(tail -5 "$TESTDIR/run.log")"
cat "$TESTDIR/run.out"
summary=$(tail -1 "$TESTDIR/run.out")
echo "$summary" | grep -Eq "^lab-storm: clients $n link 1Gbit/s trace boot: p50 [0-9.]+ s p99 [0-9.]+ s first-request-p99 [0-9.]+ ms link-use [0-9]+% cpu-per-boot [0-9.]+ ms errors 0$" ||
  fail "summary line: $summary"
head -2 "$TESTDIR/run.out" | tail -1 | grep -q "nbdsrv *nbd-server *qemu-nbd" ||
  fail "table header: $(head -2 "$TESTDIR/run.out")"
! grep -q "ERROR" "$TESTDIR/run.out" || fail "a server failed: $(grep ERROR "$TESTDIR/run.out")"

/usr/bin/python3 - "$out/results.json" $n <<'PY' || fail "results"
import json, sys
d = json.load(open(sys.argv[1]))
n = int(sys.argv[2])
r = d["results"]
for s in ("nbdsrv", "nbd-server", "qemu-nbd"):
    assert s in r and "error" not in r[s], "%s: %s" % (s, r.get(s))
a = r["nbdsrv"]
assert a["finished"] == n and a["errors"] == 0 and a["mismatches"] == 0, a
assert a["verified"] >= n, "verify reads: %s" % a["verified"]
# The trace reads 25.4 MiB per boot: at least that went out over the link.
assert a["tx_bytes"] >= n * 25 * (1 << 20), "sent %d bytes" % a["tx_bytes"]
assert 0 < a["link_use_pct"] <= 110, a["link_use_pct"]
# Where connects could be lost, and what replies wait behind, for every server.
for s in ("nbdsrv", "nbd-server", "qemu-nbd"):
    for k in ("syn_retrans", "listen_lost", "queue_drops", "queue_p50_ms", "queue_p99_ms",
              "queue_busy_pct"):
        assert isinstance(r[s].get(k), (int, float)) and r[s][k] >= 0, "%s: %s" % (s, k)
    assert "srv_TcpExtListenOverflows" in r[s]["net"], r[s]["net"]
# nbdsrv's attach thread opened n overlays, one after the other.
assert a["attach_ms"] >= 0, a.get("attach_ms")
PY
for row in "  SYNs and SYN-ACKs sent again" "link queue to the clients p50 (sampled)" \
  "  overlays opened, first to last (nbdsrv log)"; do
  grep -qF -- "$row" "$TESTDIR/run.out" || fail "no row '$row' in the table"
done
addrs=$(grep -o "^nbdsrv: 198\.19\.0\.[0-9]*: export root" "$out/log-nbdsrv.txt" | sort -u | wc -l)
[ "$addrs" = $n ] || fail "nbdsrv saw $addrs client addresses, not $n"
[ -s "$out/times-nbdsrv.txt" ] || fail "no per-client times"
if /usr/bin/python3 -c "import matplotlib" 2>/dev/null; then
  [ -s "$out/cdf.png" ] || fail "no plot"
fi
[ -z "$(lab_namespaces $pid)" ] || fail "namespaces left: $(lab_namespaces $pid)"

# Interrupted in the middle of a storm: paced boots take the trace's 12 s.
"$lab" --clients $n --trace boot --pace --servers nbdsrv --workdir "$TESTDIR" \
  --out "$TESTDIR/out2" >/dev/null 2>"$TESTDIR/int.log" &
pid=$!
on_exit "kill -9 $pid 2>/dev/null"
for _ in $(seq 600); do
  grep -q "nbdsrv: $n clients" "$TESTDIR/int.log" && break
  sleep 0.1
done
grep -q "nbdsrv: $n clients" "$TESTDIR/int.log" || fail "the storm did not start: $(cat "$TESTDIR/int.log")"
sleep 2
[ -n "$(lab_namespaces $pid)" ] || fail "no namespaces during the run"
kill -TERM $pid
rc=0
wait $pid || rc=$?
[ $rc != 0 ] || fail "an interrupted run exited 0"
[ -z "$(lab_namespaces $pid)" ] || fail "namespaces left after an interrupt: $(lab_namespaces $pid)"
! pgrep -f "$TESTDIR/nbdroot-lab" >/dev/null || fail "processes left: $(pgrep -af "$TESTDIR/nbdroot-lab")"
exit 0
