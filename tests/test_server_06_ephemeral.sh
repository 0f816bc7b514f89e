#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# test_server_06_ephemeral: the ephemeral policy.  The overlay
# lives while any connection of its ID is open, survives a reconnect
# within --ephemeral-linger seconds of the last close, and is deleted
# (files gone, client back to the pristine base) after that; other IDs
# are unaffected.  After a restart, an ephemeral overlay whose client
# comes back within the linger time is kept; one whose client does not
# is dropped.
. "$(dirname "$0")/functions.sh"

make_image "$TESTDIR/base.img" 16
LINGER=2
start_nbdsrv -e base="$TESTDIR/base.img" -o "$TESTDIR/ov" \
  --policy ephemeral --ephemeral-linger $LINGER
export PORT LINGER

/usr/bin/python3 "$srcdir/server-lib.py" "$TESTDIR" <<'PY' || fail "ephemeral checks"
tdir = sys.argv[1]
linger = int(os.environ["LINGER"])
base = open(tdir + "/base.img", "rb").read()
OFF, LEN = 5000, 50000
ovdir = tdir + "/ov/base/"

def expect(h, tag, what):
    want = base[OFF:OFF + LEN] if tag is None else pattern(tag, LEN)
    check_data(h.pread(LEN, OFF), want, what)

def files(i):
    return [f for f in (ovdir + i + ".map", ovdir + i + ".data") if os.path.exists(f)]

# Write on e1, close, reconnect at once: still there.
h = connect("base@e1")
expect(h, None, "new ephemeral overlay")
h.pwrite(pattern("e1", LEN), OFF)
h.flush()
check(len(files("e1")) == 2, "overlay files of e1 not in OVERLAY_DIR/base: %s"
      % os.listdir(ovdir) if os.path.isdir(ovdir) else "no " + ovdir)
h.shutdown(); del h
h = connect("base@e1")
expect(h, "e1", "reconnect within the linger time")

# Another ID, connected throughout.
k = connect("base@keep")
k.pwrite(pattern("keep", LEN), OFF)
k.flush()

# Two connections of e1: closing one does not start the linger clock.
h2 = connect("base@e1")
h2.shutdown(); del h2
t0 = time.monotonic()
while time.monotonic() - t0 < linger + 1.5:   # a time-based rule: let it pass
    time.sleep(0.1)
check(len(files("e1")) == 2, "e1 deleted while a connection was still open")
expect(h, "e1", "e1 while still connected after linger")

# Last close: the overlay goes away after the linger time.
h.shutdown(); del h
wait_for(lambda: not files("e1"), "e1's overlay files to be deleted",
         timeout=linger + 20, interval=0.1)
h = connect("base@e1")
expect(h, None, "e1 after the linger time")
h.shutdown()

expect(k, "keep", "base@keep (connected all along)")
check(len(files("keep")) == 2, "base@keep's files vanished")
k.shutdown()
PY
stop_nbdsrv || fail "nbdsrv exited with $? on SIGTERM"
# A restart with two ephemeral overlays on disk: "back" reconnects at
# once and keeps its data, "gone" never returns and is dropped.
start_nbdsrv -e base="$TESTDIR/base.img" -o "$TESTDIR/ov" \
  --policy ephemeral --ephemeral-linger 60
/usr/bin/python3 "$srcdir/server-lib.py" "$TESTDIR" <<'PY' || fail "ephemeral before the restart"
for who in ("back", "gone"):
    h = connect("base@" + who)
    h.pwrite(pattern(who, 4096), 0)
    h.flush()
    h.shutdown()
PY
stop_nbdsrv KILL || true
start_nbdsrv -e base="$TESTDIR/base.img" -o "$TESTDIR/ov" \
  --policy ephemeral --ephemeral-linger $LINGER
/usr/bin/python3 "$srcdir/server-lib.py" "$TESTDIR" <<'PY' || fail "ephemeral after the restart"
tdir = sys.argv[1]
linger = int(os.environ["LINGER"])
ovdir = tdir + "/ov/base/"
h = connect("base@back")
check_data(h.pread(4096, 0), pattern("back", 4096), "back: reconnected after the restart")
wait_for(lambda: not os.path.exists(ovdir + "gone.map"), "the orphan to be dropped",
         timeout=linger + 20, interval=0.1)
check(os.path.exists(ovdir + "back.map"), "a reconnected client's overlay was dropped")
check_data(h.pread(4096, 0), pattern("back", 4096), "back: still connected")
h.shutdown()
PY
stop_nbdsrv || fail "nbdsrv exited with $? on SIGTERM"
