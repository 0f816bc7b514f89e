#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# test_server_42_cephfs: two servers keep their overlays on a real CephFS,
# each through its own ceph-fuse mount (two Ceph clients, as two hosts):
#   - the connect race of test_server_46 (multi-conn, fresh IDs): never
#     both serve a client; the other refuses naming the reason;
#   - a client writing through A is refused by B;
#   - A's host "dies": its nbdsrv and its ceph-fuse are stopped (SIGSTOP),
#     and its lock stays (the MDS waits for the session; here its
#     timeouts are raised so that only the explicit step frees it);
#   - meanwhile B refuses client1 saying its files do not answer, and
#     serves its own clients (reopening their overlays);
#   - nbdsrv ctl fence on B runs the fence-command, which evicts A's
#     Ceph client (and so blocklists it); B then takes the client over
#     with every flushed byte intact;
#   - A's host comes back (SIGCONT): its mount's writes fail, and what the
#     zombie server writes for its old connection never reaches the
#     overlay B serves.
# Skips (77) only where the Ceph packages are not installed.
. "$(dirname "$0")/functions.sh"
. "$srcdir/failover-functions.sh"
. "$srcdir/ceph-functions.sh"
ceph_skip_unless_installed

start_cephfs "$TESTDIR/mA" "$TESTDIR/mB"
# Only the fence step frees a dead client's locks here, not a timeout.
ceph_cmd fs set "$CEPH_FS" session_timeout 3600 >/dev/null 2>&1 ||
  fail "ceph fs set session_timeout"
ceph_cmd fs set "$CEPH_FS" session_autoclose 3600 >/dev/null 2>&1 ||
  fail "ceph fs set session_autoclose"

make_image "$TESTDIR/base.img" 8
mkdir -p "$TESTDIR/mA/ov"
cat >"$TESTDIR/fence.sh" <<FENCE
#!/bin/bash
# NBDSRV_FENCE_NODE is the Ceph client name of the node's mount here.
TESTDIR=$TESTDIR
. $srcdir/ceph-functions.sh
evict_ceph_client "\$NBDSRV_FENCE_NODE" && echo "evicted client.\$NBDSRV_FENCE_NODE"
FENCE
chmod +x "$TESTDIR/fence.sh"
for s in A B; do
  cat >"$TESTDIR/$s.conf" <<CONF
[generic]
overlay-dir = $TESTDIR/m$s/ov
fence-command = $TESTDIR/fence.sh

[lab]
image = $TESTDIR/base.img
CONF
  start_named "$s" -c "$TESTDIR/$s.conf" -v   # -v: idle closes logged
done

failover_race "$PORT_A" "$PORT_B" lab 30 || fail "connect race on CephFS"

write_flushed "$PORT_A" lab@client1 "$TESTDIR/flushed" || fail "writing through A"
refused_by "$PORT_B" lab@client1 || fail "B serves what A serves"

# A client of B's own, its overlay closed once idle (before A dies).
PORT=$PORT_B /usr/bin/python3 "$srcdir/server-lib.py" <<'PY' || fail "writing through B"
h = connect("lab@bclient")
h.pwrite(b"b" * 4096, 0)
h.flush()
h.shutdown()
PY
i=0
until grep -q "overlay .*/lab/bclient: closed (idle)" "$TESTDIR/B.log"; do
  i=$((i + 1)); [ $i -lt 300 ] || fail "B did not close bclient's idle overlay"; sleep 0.1
done

# A zombie-to-be: a connection to A that will write after the fencing.
PORT=$PORT_A /usr/bin/python3 "$srcdir/server-lib.py" "$TESTDIR/zombie" <<'PY' &
h = connect("lab@client1")
open(sys.argv[1] + ".ready", "w").write("ready\n")
while not os.path.exists(sys.argv[1] + ".go"):
    time.sleep(0.1)
try:
    h.pwrite(b"Z" * 4096, 0)
    h.flush()
    open(sys.argv[1] + ".result", "w").write("written\n")
except nbd.Error as e:
    open(sys.argv[1] + ".result", "w").write("failed: %s\n" % e)
time.sleep(3600)
PY
zombie=$!
on_exit "kill $zombie 2>/dev/null"
i=0
until [ -e "$TESTDIR/zombie.ready" ]; do
  i=$((i + 1)); [ $i -lt 300 ] || fail "no second connection to A"; sleep 0.1
done

# A's host dies.
fuseA=$(ceph_fuse_pid admin)
kill -STOP "$PID_A" "$fuseA"
# First at the exit: nbdsrv A cannot die while its file system requests
# wait for a stopped ceph-fuse.
on_exit "kill -CONT $fuseA $PID_A 2>/dev/null"
# B cannot even stat client1's files while the dead client holds their
# capabilities: it refuses client1 (after a short wait, not until the
# eviction), and serves other clients meanwhile.  (Not under valgrind:
# it runs one thread at a time and keeps doing so through a stat, so the
# helper thread's hanging stat stops them all.)
[ -n "${NBDSRV_UNDER_VALGRIND:-}" ] ||
PORT=$PORT_B timeout -k 5 120 /usr/bin/python3 "$srcdir/server-lib.py" <<'PY' ||
r = Raw(timeout=60)
r.greeting()
n = b"lab@client1"
r.send_opt(OPT_GO, struct.pack(">I", len(n)) + n + struct.pack(">H", 0))
rtype, data = r.recv_rep(OPT_GO)
check(rtype & REP_ERR and b"do not answer" in data,
      "client1 of a dead A: reply %#x %r" % (rtype, data))
h = connect("lab@bclient")
check_data(h.pread(4096, 0), b"b" * 4096, "B's own client, reopened")
h.shutdown()
PY
  fail "B while A's host is dead"

out=$("$NBDSRV" ctl -s "$TESTDIR/B.sock" fence admin 2>&1) || fail "ctl fence: $out"
echo "$out" | grep -q "evicted client.admin" || fail "ctl fence did not run the command: $out"
grep -q "fenced node admin" "$TESTDIR/B.log" || fail "no log line for the fencing"
ceph_cmd osd blocklist ls 2>&1 | grep -q "^listed [1-9]" ||
  fail "A's client is not blocklisted after the fencing: $(ceph_cmd osd blocklist ls 2>&1)"
takes_over "$PORT_B" lab@client1 "$TESTDIR/flushed" || fail "takeover by B after fencing A"

# B serves client1 now; A's host comes back from the dead.
PORT=$PORT_B /usr/bin/python3 "$srcdir/server-lib.py" <<'PY' &
h = connect("lab@client1")
time.sleep(3600)
PY
holder=$!
on_exit "kill $holder 2>/dev/null"
sleep 1
kill -CONT "$fuseA" "$PID_A"
if timeout -k 2 20 sh -c "echo x >'$TESTDIR/mA/ov/zombie-file'" 2>/dev/null; then
  fail "the fenced mount still writes"
fi
touch "$TESTDIR/zombie.go"
i=0
until [ -e "$TESTDIR/zombie.result" ] || [ $i -ge 300 ]; do i=$((i + 1)); sleep 0.1; done
echo "the zombie's write and flush: $(cat "$TESTDIR/zombie.result" 2>/dev/null || echo "no answer")"
grep -q "^written" "$TESTDIR/zombie.result" 2>/dev/null &&
  fail "the fenced server acknowledged a flushed write"
takes_over "$PORT_B" lab@client1 "$TESTDIR/flushed" ||
  fail "the zombie's write reached the overlay B serves"
exit 0
