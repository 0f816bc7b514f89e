#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# test_server_46_failover_lock: two servers sharing one overlay dir (here
# on the local disk) never serve one client's overlay both:
#   - a race: clients with fresh IDs connect to both servers at the same
#     moment, two connections to each (multi-conn), many rounds: all of a
#     client's connections land on one server, the other refuses with
#     NBD_REP_ERR_POLICY and "overlay EXPORT/ID is served by another
#     server" (and a line in its log);
#   - a client writing through server A is refused by server B; after
#     kill -9 of A, B takes it over with every flushed byte intact;
#   - nbdsrv ctl reset on A of an overlay B serves is refused;
#   - nbdsrv ctl fence NODE runs the fence-command with NBDSRV_FENCE_NODE
#     and reports its failure; without one, or for a bad name, it refuses.
. "$(dirname "$0")/functions.sh"
. "$srcdir/failover-functions.sh"

make_image "$TESTDIR/base.img" 8
mkdir -p "$TESTDIR/ov"
for s in A B; do
  cat >"$TESTDIR/$s.conf" <<CONF
[generic]
overlay-dir = $TESTDIR/ov

[lab]
image = $TESTDIR/base.img
CONF
  start_named "$s" -c "$TESTDIR/$s.conf"
done

failover_race "$PORT_A" "$PORT_B" lab 100 || fail "connect race"
grep -q "refused export lab as client race[0-9]*: overlay lab/race[0-9]* is served by another server" \
  "$TESTDIR/A.log" "$TESTDIR/B.log" || fail "no refusal in the logs"

write_flushed "$PORT_A" lab@client1 "$TESTDIR/flushed" || fail "writing through A"
refused_by "$PORT_B" lab@client1 || fail "B serves what A serves"

kill -9 "$PID_A"
wait "$PID_A" 2>/dev/null || true
takes_over "$PORT_B" lab@client1 "$TESTDIR/flushed" || fail "takeover by B"

# A, back, finds client1 served by B: it neither serves nor resets it.
start_named A2 -c "$TESTDIR/A.conf"
PORT=$PORT_B /usr/bin/python3 "$srcdir/server-lib.py" <<'PY' &
h = connect("lab@client1")
time.sleep(3600)
PY
holder=$!
on_exit "kill $holder 2>/dev/null"
sleep 1
refused_by "$PORT_A2" lab@client1 || fail "restarted A serves what B serves"
out=$("$NBDSRV" ctl -s "$TESTDIR/A2.sock" reset lab/client1 2>&1) &&
  fail "ctl reset of an overlay another server serves: $out"
echo "$out" | grep -q "served by another server" || fail "ctl reset: $out"

# nbdsrv ctl fence runs the fence-command, with the node in its
# environment, and says whether it worked.
out=$("$NBDSRV" ctl -s "$TESTDIR/A2.sock" fence hostA 2>&1) &&
  fail "ctl fence without a fence-command: $out"
echo "$out" | grep -q "no fence-command" || fail "ctl fence without a fence-command: $out"
cat >"$TESTDIR/C.conf" <<CONF
[generic]
overlay-dir = $TESTDIR/ov
fence-command = echo "fencing \$NBDSRV_FENCE_NODE" >>$TESTDIR/fenced; [ "\$NBDSRV_FENCE_NODE" != bad ]

[lab]
image = $TESTDIR/base.img
CONF
start_named C -c "$TESTDIR/C.conf"
out=$("$NBDSRV" ctl -s "$TESTDIR/C.sock" fence hostA 2>&1) || fail "ctl fence: $out"
echo "$out" | grep -q "node hostA fenced" || fail "ctl fence: $out"
[ "$(cat "$TESTDIR/fenced")" = "fencing hostA" ] || fail "the fence-command saw: $(cat "$TESTDIR/fenced")"
out=$("$NBDSRV" ctl -s "$TESTDIR/C.sock" fence bad 2>&1) && fail "a failed fence-command: $out"
echo "$out" | grep -q "fence-command failed" || fail "a failed fence-command: $out"
out=$("$NBDSRV" ctl -s "$TESTDIR/C.sock" fence 'a;b' 2>&1) && fail "ctl fence 'a;b': $out"
[ "$(wc -l <"$TESTDIR/fenced")" = 2 ] || fail "the fence-command ran for a bad node name"
exit 0
