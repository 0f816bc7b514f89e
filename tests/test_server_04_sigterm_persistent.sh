#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# test_server_04_sigterm_persistent: SIGTERM and the persistent policy.
# SIGTERM with a client still connected makes nbdsrv exit 0; everything
# acknowledged before (flushed or not: a clean stop loses nothing) is
# there after the restart, for clients by address and by ID, whatever boot
# id they send (persistent ignores it); a second restart changes nothing.
. "$(dirname "$0")/functions.sh"

make_image "$TESTDIR/base.img" 16
srv_args=(-e base="$TESTDIR/base.img" -o "$TESTDIR/ov" --policy persistent)
start_nbdsrv "${srv_args[@]}"
export PORT

lib() { /usr/bin/python3 "$srcdir/server-lib.py" "$TESTDIR" "$@"; }

# wait_exit: waits (at most 20 s) for the server to exit after a signal;
# sets RC to its exit status.
wait_exit() {
  i=0
  while kill -0 "$SRV_PID" 2>/dev/null; do
    i=$((i + 1)); [ $i -lt 200 ] || fail "nbdsrv still running 20 s after SIGTERM"
    sleep 0.1
  done
  RC=0
  wait "$SRV_PID" || RC=$?
}

# Write, flush some, leave a client connected and idle.
lib <<'PY' &
tdir = sys.argv[1]
base = open(tdir + "/base.img", "rb").read()
a = connect("base@pa,boot=one")
b = connect("base", src="127.0.0.2")
a.pwrite(pattern("a-flushed", 300000), 4096 * 5 + 7)
b.pwrite(pattern("b-flushed", 4096), 0)
a.flush(); b.flush()
a.pwrite(pattern("a-unflushed", 8192), 1 << 20)
b.pwrite(pattern("b-unflushed", 1000), (2 << 20) + 1)
b.shutdown()        # b leaves with NBD_CMD_DISC; a stays connected
open(tdir + "/written", "w").write("ok")
def dead():
    try:
        a.pread(1, 0)
        return False
    except nbd.Error:
        return True
wait_for(dead, "the server to stop", timeout=30, interval=0.1)
PY
client=$!
i=0
until [ -f "$TESTDIR/written" ]; do
  kill -0 $client 2>/dev/null || fail "writer failed"
  i=$((i + 1)); [ $i -lt 300 ] || fail "writer timed out"
  sleep 0.1
done
kill -TERM "$SRV_PID"
wait_exit
[ "$RC" = 0 ] || fail "nbdsrv exited with $RC on SIGTERM (a client connected)"
wait $client || fail "client did not see the server go away"

verify() {
  lib "$@" <<'PY'
tdir, boot = sys.argv[1], sys.argv[2]
base = open(tdir + "/base.img", "rb").read()
exp_a = bytearray(base)
exp_a[4096 * 5 + 7:4096 * 5 + 7 + 300000] = pattern("a-flushed", 300000)
exp_a[1 << 20:(1 << 20) + 8192] = pattern("a-unflushed", 8192)
exp_b = bytearray(base)
exp_b[0:4096] = pattern("b-flushed", 4096)
exp_b[(2 << 20) + 1:(2 << 20) + 1001] = pattern("b-unflushed", 1000)
a = connect("base@pa" + (",boot=" + boot if boot else ""))
b = connect("base", src="127.0.0.2")
for name, h, want in (("base@pa", a, exp_a), ("127.0.0.2", b, exp_b)):
    got = b"".join(h.pread(4 << 20, o) for o in range(0, len(base), 4 << 20))
    check_data(got, bytes(want), "%s (boot id %r) after restart" % (name, boot))
c = connect("base@never-seen")
check_data(c.pread(1 << 20, 0), base[:1 << 20], "new client after restart")
PY
}

start_nbdsrv "${srv_args[@]}"
verify one || fail "data lost over a SIGTERM restart (same boot id)"
verify two || fail "persistent overlay reset by another boot id"
stop_nbdsrv || fail "nbdsrv exited with $? on SIGTERM (idle)"
start_nbdsrv "${srv_args[@]}"
verify "" || fail "data lost over a second restart"
stop_nbdsrv || fail "nbdsrv exited with $? on SIGTERM (idle)"
