#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# test_server_51_small_limits: the small guards against hostile clients.
#   - a client ID beginning with "." ("..", ".hidden") is refused with
#     NBD_REP_ERR_INVALID, and nothing is created for it;
#   - attach-timeout: a client whose overlay cannot be opened (its base
#     image was replaced by a FIFO nobody writes: the open hangs) is told
#     so with NBD_REP_ERR_PLATFORM naming attach-timeout;
#   - the control socket checks its peer's credentials: a user that is
#     neither root nor in control-group is refused; a member of
#     control-group is served;
#   - the control socket gives a command one deadline: a client that
#     never sends its line is answered with an error, and the next
#     command is served.
. "$(dirname "$0")/functions.sh"
requires_cmd setpriv getent
[ "$(id -u)" = 0 ] || skip "needs root (a second user for the control socket)"
getent passwd nobody >/dev/null || skip "no user nobody"
getent group nogroup >/dev/null || skip "no group nogroup"

make_image "$TESTDIR/base.img" 8
mkdir -p "$TESTDIR/ov"
chmod 755 "$TESTDIR"
conf() {
  cat >"$TESTDIR/nbdsrv.conf" <<CONF
[generic]
overlay-dir = $TESTDIR/ov
attach-timeout = 1
handshake-timeout = 60
control-group = nogroup

[base]
image = $TESTDIR/$1
CONF
}
conf base.img
start_nbdsrv -c "$TESTDIR/nbdsrv.conf"
export PORT

/usr/bin/python3 "$srcdir/server-lib.py" "$TESTDIR" <<'PY' || fail "dot IDs"
tdir = sys.argv[1]
for bad in ("..", ".hidden", ".", "..x"):
    r = Raw()
    r.greeting()
    n = ("base@" + bad).encode()
    r.send_opt(OPT_GO, struct.pack(">I", len(n)) + n + struct.pack(">H", 0))
    rtype, msg = r.recv_rep(OPT_GO)
    r.close()
    check(rtype == REP_ERR_INVALID and b"'.'" in msg, "ID %r: %#x %r" % (bad, rtype, msg))
h = connect("base@stuck")
h.pwrite(b"x" * 4096, 0)
h.flush()
h.shutdown()
check(not [f for f in os.listdir(tdir + "/ov/base") if f.startswith(".")],
      "files: %s" % os.listdir(tdir + "/ov/base"))
PY
stop_nbdsrv || fail "nbdsrv exit status $?"

# The overlay's base version becomes a FIFO: opening it hangs.
mv "$TESTDIR/base.img" "$TESTDIR/base2.img"
mkfifo "$TESTDIR/base.img"
conf base2.img
start_nbdsrv -c "$TESTDIR/nbdsrv.conf"
# Unblocks the attach thread whatever happens (a writer ends the open).
on_exit "timeout 5 sh -c 'echo x >\"$TESTDIR/base.img\"' 2>/dev/null"
/usr/bin/python3 "$srcdir/server-lib.py" "$TESTDIR" <<'PY' || fail "attach-timeout"
r = Raw()
r.greeting()
n = b"base@stuck"
r.send_opt(OPT_GO, struct.pack(">I", len(n)) + n + struct.pack(">H", 0))
r.s.settimeout(60)
rtype, msg = r.recv_rep(OPT_GO)
check(rtype == REP_ERR | 4 and b"attach-timeout" in msg,
      "waiting for a hung overlay: %#x %r" % (rtype, msg))
r.close()
PY

ctl() { "$NBDSRV" ctl -s "$TESTDIR/ctl.sock" "$@"; }
ctl list >/dev/null || fail "ctl list as root"
[ "$(stat -c %G:%a "$TESTDIR/ctl.sock")" = nogroup:660 ] || \
  fail "control socket not given to control-group: $(stat -c %G:%a "$TESTDIR/ctl.sock")"
# nobody, without nogroup: refused by the server even though the mode
# would let it in (a descriptor passed on, a mode changed by hand).
chmod 666 "$TESTDIR/ctl.sock"
rc=0
# The plain binary for other users: valgrind (NBDROOT_VALGRIND) could not
# write its log into this test's directory as them.
setpriv --reuid=nobody --regid=54321 --clear-groups \
  "${NBDSRV_UNDER_VALGRIND:-$NBDSRV}" ctl -s "$TESTDIR/ctl.sock" list >"$TESTDIR/ctl.out" 2>&1 || rc=$?
[ "$rc" = 1 ] && grep -q "permission denied" "$TESTDIR/ctl.out" || \
  fail "a stranger was not refused ($rc): $(cat "$TESTDIR/ctl.out")"
setpriv --reuid=nobody --regid=nogroup --clear-groups \
  "${NBDSRV_UNDER_VALGRIND:-$NBDSRV}" ctl -s "$TESTDIR/ctl.sock" list >"$TESTDIR/ctl.out" 2>&1 || \
  fail "a member of control-group was refused: $(cat "$TESTDIR/ctl.out")"

# One deadline per command: a silent client gets an error, then the
# next command is served.
/usr/bin/python3 - "$TESTDIR/ctl.sock" <<'PY' || fail "silent control client"
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(30)
s.connect(sys.argv[1])
s.send(b"lis")
got = b""
while True:
    chunk = s.recv(1000)
    if not chunk:
        break
    got += chunk
if not got.startswith(b"ERR expected one command line"):
    sys.exit("answer: %r" % got)
PY
ctl list >/dev/null || fail "ctl list after a silent client"
timeout 5 sh -c 'echo x >"$1"' sh "$TESTDIR/base.img" 2>/dev/null || true
stop_nbdsrv || fail "nbdsrv exit status $?"
exit 0
