#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# test_server_17_reset_stale_boot: reset-on-boot while the previous boot is still
# connected (a stale connection of the last boot, as after a hard reset).
# The new boot gets a pristine overlay; whatever the old connection
# writes or flushes afterwards never shows up in it, now, after a
# reconnect or after a restart.
. "$(dirname "$0")/functions.sh"

make_image "$TESTDIR/base.img" 16
srv_args=(-e base="$TESTDIR/base.img" -o "$TESTDIR/ov" --policy reset-on-boot)
start_nbdsrv "${srv_args[@]}"
export PORT

check_new() {
  /usr/bin/python3 "$srcdir/server-lib.py" "$TESTDIR" "$@" <<'PY'
tdir, stage = sys.argv[1], sys.argv[2]
base = open(tdir + "/base.img", "rb").read()
M = 1 << 20
if stage == "live":
    old = connect("base@rb,boot=b1")
    old.pwrite(pattern("old1", M), 0)
    old.flush()
    new = connect("base@rb,boot=b2")
    check_data(new.pread(2 * M, 0), base[:2 * M], "new boot while the old is connected")
    # The old boot goes on writing, and flushing, to the same offsets and others.
    for off in (0, 3 * M, 5 * M + 17):
        try:
            old.pwrite(pattern(("old2", off), 100000), off)
            old.flush()
        except nbd.Error:
            pass        # refusing the stale connection is fine too
    new.pwrite(pattern("new", 4096), 8 * M)
    new.flush()
    check_data(new.pread(6 * M, 0), base[:6 * M], "new boot after the old one wrote")
    try:
        old.shutdown()
    except nbd.Error:
        pass
    new.shutdown()
h = connect("base@rb,boot=b2")
want = bytearray(base)
want[8 * M:8 * M + 4096] = pattern("new", 4096)
check_data(h.pread(len(base), 0), bytes(want), "boot b2 (%s)" % stage)
h.shutdown()
PY
}
check_new live || fail "reset with the old boot still connected"
stop_nbdsrv || fail "nbdsrv exited with $? on SIGTERM"
start_nbdsrv "${srv_args[@]}"
check_new restarted || fail "reset with the old boot connected, after a restart"
stop_nbdsrv || fail "nbdsrv exited with $? on SIGTERM"
