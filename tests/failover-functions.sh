# SPDX-License-Identifier: GPL-2.0-or-later
# nbdroot test helpers for two servers sharing one overlay dir, sourced
# after functions.sh (test_server_46_failover_lock, test_server_42_cephfs;
# after boot-functions.sh too: test_boot_11_failover,
# test_boot_13_failover_cephfs).

# start_named NAME ARGS...: starts nbdsrv NAME on a free loopback port,
# its pid file, control socket and log $TESTDIR/NAME.{pid,sock,log}; sets
# PORT_NAME and PID_NAME; waits until it listens.
start_named() {
  local name=$1 port pid i=0
  shift
  port=$(free_port)
  rm -f "$TESTDIR/$name.pid"
  "$NBDSRV" -f -l "127.0.0.1:$port" -P "$TESTDIR/$name.pid" \
    --control-socket "$TESTDIR/$name.sock" "$@" >>"$TESTDIR/$name.log" 2>&1 &
  pid=$!
  on_exit "kill -CONT $pid 2>/dev/null; kill -9 $pid 2>/dev/null; wait $pid 2>/dev/null"
  while [ ! -s "$TESTDIR/$name.pid" ]; do
    if ! kill -0 "$pid" 2>/dev/null; then
      cat "$TESTDIR/$name.log" >&2
      fail "nbdsrv $name exited during start-up"
    fi
    i=$((i + 1)); [ $i -lt 200 ] || fail "nbdsrv $name did not start in 20 s"
    sleep 0.1
  done
  eval "PORT_$name=$port PID_$name=$pid"
}

# failover_race PORT_A PORT_B EXPORT ROUNDS: in each round a client with
# an ID of its own connects to both servers at the same moment, twice
# (multi-conn): all its connections must be on one server, and the other
# must refuse with NBD_REP_ERR_POLICY and the message naming the reason.
failover_race() {
  PORT_A=$1 PORT_B=$2 /usr/bin/python3 "$srcdir/server-lib.py" "$3" "$4" <<'PY'
import threading
export, rounds = sys.argv[1], int(sys.argv[2])
ports = [int(os.environ["PORT_A"]), int(os.environ["PORT_B"])]

def go(port, name, out, i, barrier):
    r = Raw(port=port, timeout=30)
    r.greeting()
    barrier.wait()
    n = name.encode()
    r.send_opt(OPT_GO, struct.pack(">I", len(n)) + n + struct.pack(">H", 0))
    while True:
        rtype, data = r.recv_rep(OPT_GO)
        if rtype != REP_INFO:
            break
    out[i] = (rtype, data.decode(errors="replace"), r)

wins = [0, 0]
slow_refusals = 0
for rnd in range(rounds):
    cid = "race%d" % rnd
    name = "%s@%s" % (export, cid)
    out = [None] * 4
    barrier = threading.Barrier(4)
    # Two connections of the client to each server, all at once.
    t = [threading.Thread(target=go, args=(ports[i % 2], name, out, i, barrier))
         for i in range(4)]
    for x in t: x.start()
    for x in t: x.join(60)
    check(all(o is not None for o in out), "round %d: a connection hung" % rnd)
    acked = [i % 2 for i in range(4) if out[i][0] == REP_ACK]
    check(len(acked) > 0, "round %d: no server took the client: %s" %
          (rnd, [(hex(o[0]), o[1]) for o in out]))
    check(len(set(acked)) == 1, "round %d: both servers serve %s" % (rnd, cid))
    winner = acked[0]
    wins[winner] += 1
    for i in range(4):
        rtype, msg, r = out[i]
        if i % 2 != winner:
            want = "overlay %s/%s is served by another server" % (export, cid)
            # On a network file system a loser may give up waiting for
            # the files the winner is creating (a loaded machine):
            # refused all the same, for that reason.
            slow = rtype & REP_ERR and msg.startswith("the overlay's files do not answer")
            slow_refusals += slow
            check(slow or (rtype == REP_ERR_POLICY and msg == want),
                  "round %d: loser replied %#x %r, want NBD_REP_ERR_POLICY %r"
                  % (rnd, rtype, msg, want))
        else:
            check(rtype == REP_ACK, "round %d: a second connection to the winner "
                  "was refused: %#x %s" % (rnd, rtype, msg))
        r.close()
log("race: %d rounds, server A won %d, server B %d; %d refusals for files "
    "that did not answer in time" % (rounds, wins[0], wins[1], slow_refusals))
PY
}

# refused_by PORT NAME: the server at PORT refuses NAME because another
# server serves its overlay.
refused_by() {
  PORT=$1 /usr/bin/python3 "$srcdir/server-lib.py" "$2" <<'PY'
name = sys.argv[1]
export, cid = name.split("@")
r = Raw(timeout=30)
r.greeting()
n = name.encode()
r.send_opt(OPT_GO, struct.pack(">I", len(n)) + n + struct.pack(">H", 0))
rtype, data = r.recv_rep(OPT_GO)
want = "overlay %s/%s is served by another server" % (export, cid)
check(rtype == REP_ERR_POLICY and data.decode() == want,
      "reply %#x %r, want NBD_REP_ERR_POLICY %r" % (rtype, data, want))
PY
}

# write_flushed PORT NAME FILE: writes a pattern (kept in FILE) through
# NAME at several places, flushes, and leaves the connection to the
# caller's kill (it stays open in the background: its PID in WRITER_PID,
# "flushed" in FILE.done once the flush returned).
write_flushed() {
  PORT=$1 /usr/bin/python3 "$srcdir/server-lib.py" "$2" "$3" <<'PY' &
name, path = sys.argv[1], sys.argv[2]
h = connect(name)
want = {}
for i, off in enumerate([0, 4096 * 3 + 512, 1 << 20, (5 << 20) - 100]):
    data = pattern(i + 7, 8192 + i * 333)
    h.pwrite(data, off)
    want[off] = data
h.flush()
with open(path, "w") as f:
    for off, data in want.items():
        f.write("%d %s\n" % (off, data.hex()))
open(path + ".done", "w").write("flushed\n")
time.sleep(3600)
PY
  WRITER_PID=$!
  on_exit "kill $WRITER_PID 2>/dev/null"
  local i=0
  until [ -s "$3.done" ]; do
    kill -0 "$WRITER_PID" 2>/dev/null || fail "writing through $2 failed"
    i=$((i + 1)); [ $i -lt 300 ] || fail "writing through $2: no flush in 30 s"
    sleep 0.1
  done
}

# takes_over PORT NAME FILE: within 30 s the server at PORT serves NAME,
# and every flushed byte FILE lists is there.
takes_over() {
  # (timeout: a server waiting for a dead host's file system session must
  # not hang the test.)
  PORT=$1 timeout -k 5 120 /usr/bin/python3 "$srcdir/server-lib.py" "$2" "$3" <<'PY'
name, path = sys.argv[1], sys.argv[2]
h = None
deadline = time.time() + 30
while h is None:
    try:
        h = connect(name)
    except nbd.Error as e:
        check(time.time() < deadline, "no takeover of %s in 30 s: %s" % (name, e))
        time.sleep(0.2)
for line in open(path):
    off, hexdata = line.split()
    data = bytes.fromhex(hexdata)
    check_data(h.pread(len(data), int(off)), data, "flushed data at %s" % off)
h.shutdown()
PY
}



# _wait_console NAME PATTERN SECONDS WHAT: until the console of NAME
# matches PATTERN; fails saying WHAT did not happen in SECONDS.
_wait_console() {
  local i=0
  until console_has "$1" "$2"; do
    i=$((i + 1))
    [ $i -lt $(($3 * 5)) ] || fail "$4 in $3 s"
    sleep 0.2
  done
}

# failover_boot DIR_A DIR_B: the failover boot (needs boot-functions.sh):
# server A keeps its overlays in DIR_A, server B in DIR_B, the same
# directory (seen from one host, or through two mounts as from two).  A
# guest with both servers on its command line boots from A, writes and
# syncs in a loop; A is killed with -9; the agent's supervisor goes over
# to B (one console line says so) and the guest carries on.  A, restarted
# on DIR_A, refuses the guest while B holds its overlay.  The guest is
# then cut off; a second boot, with A still dead, starts from B and finds
# every synced write intact (a write cut off before its sync may be torn:
# it is not checked).
failover_boot() {
  local dir_a=$1 dir_b=$2 args killed_after more synced n
  sync_loop_init "$TESTDIR/init" 300 </dev/null
  make_rootfs "$TESTDIR/tree" "$TESTDIR/init"
  make_root_image "$TESTDIR/tree" "$TESTDIR/root.img"
  make_initrd "$TESTDIR/initrd.gz"

  start_named A -e "root=$TESTDIR/root.img" -o "$dir_a" --policy persistent
  start_named B -e "root=$TESTDIR/root.img" -o "$dir_b" --policy persistent

  args="ip=dhcp root=nbd:$GUEST_SERVER:$PORT_A,$GUEST_SERVER:$PORT_B/root rw nbdroot.rescue=poweroff nbdroot.timeout=10 nbdroot.dead_timeout=120"
  run_guest w "$args"

  # wait (bounded) until the loop is under way
  wait_synced w 5
  kill -9 "$PID_A"
  wait "$PID_A" 2>/dev/null || true
  killed_after=$(synced_count w)

  # A, restarted, refuses the guest while B holds its overlay (the guest
  # is still writing through B).
  _wait_console w "nbdroot: switched to server" 60 "no switch to the second server"
  start_named A2 -e "root=$TESTDIR/root.img" -o "$dir_a" --policy persistent
  console_has w "LOOP-DONE" && fail "the guest ended before the refusal check"
  refused_by "$PORT_A2" root@52-54-00-12-34-56 ||
    fail "the restarted first server serves what the second serves"

  # A few more writes through B, then the guest is cut off like a power
  # failure: what it synced must survive that too.
  more=$(($(synced_count w) + 3))
  _wait_console w "^SYNCED $more$|LOOP-DONE" 120 "the guest did not reach SYNCED $more"
  kill "$GUEST_PID_w"
  wait_guest w

  expect_console w "nbdroot: /dev/nbd0: 10\.0\.2\.2:$PORT_A export"
  expect_console w "supervisor: /dev/nbd0 lost its connection to 10\.0\.2\.2:$PORT_A"
  expect_console w "supervisor: /dev/nbd0 reconnected to 10\.0\.2\.2:$PORT_B"
  expect_console w "nbdroot: switched to server 10\.0\.2\.2:$PORT_B \(root\)"
  synced=$(synced_count w)
  [ "$synced" -gt "$killed_after" ] ||
    fail "no write completed after the failover ($synced synced)"
  console_has w "I/O error|Buffer I/O|EXT4-fs error" &&
    fail "the guest saw I/O errors"

  # A is still dead: the boot goes on to B.
  boot_guest v "$args verify"
  expect_console v "nbdroot: /dev/nbd0: 10\.0\.2\.2:$PORT_B export"
  expect_console v "VERIFY-DONE"
  for n in $(tr -d '\r' <"$TESTDIR/w.console" | sed -n 's/^SYNCED //p'); do
    console_has v "^INTACT $n$" || fail "synced write $n missing after the failover"
  done
  echo "$synced writes synced, first server killed after $killed_after, all intact on the second"
}
