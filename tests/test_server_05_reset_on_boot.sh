#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# test_server_05_reset_on_boot: the reset-on-boot policy.  A
# reconnect with the same boot id keeps the overlay (also across a server
# restart); another boot id starts from the pristine base; no boot id
# counts as boot id "" (so stock clients identified by address keep their
# overlay); other clients' overlays are untouched by a reset.
. "$(dirname "$0")/functions.sh"

make_image "$TESTDIR/base.img" 16
srv_args=(-e base="$TESTDIR/base.img" -o "$TESTDIR/ov" --policy reset-on-boot)
start_nbdsrv "${srv_args[@]}"
export PORT

step() {
  /usr/bin/python3 "$srcdir/server-lib.py" "$TESTDIR" "$@" <<'PY'
# step EXPORT_NAME SRC EXPECT [WRITE]: EXPECT is "base" or a tag whose
# pattern must be at OFF; WRITE (optional) writes and flushes a new tag.
tdir, name, src, expect = sys.argv[1:5]
write = sys.argv[5] if len(sys.argv) > 5 else None
base = open(tdir + "/base.img", "rb").read()
OFF, LEN = 100000, 70000
h = connect(name, src=src or None)
got = h.pread(LEN + 8192, OFF - 4096)
want = bytearray(base[OFF - 4096:OFF + LEN + 4096])
if expect != "base":
    want[4096:4096 + LEN] = pattern(expect, LEN)
check_data(got, bytes(want), "%s from %s: expected %s" % (name, src or "127.0.0.1", expect))
if write:
    h.pwrite(pattern(write, LEN), OFF)
    h.flush()
h.shutdown()
PY
}

step "base@r,boot=b1"   "" base  X1 || fail "new overlay is not pristine"
step "base@r,boot=b1"   "" X1       || fail "reconnect, same boot id: overlay lost"
step "base@o,boot=b1"   "" base  O1 || fail "second client is not pristine"
step "base" 127.0.0.2      base  W1 || fail "address client is not pristine"
step "base" 127.0.0.2      W1       || fail "address client without boot id lost its overlay"

stop_nbdsrv || fail "nbdsrv exited with $? on SIGTERM"
start_nbdsrv "${srv_args[@]}"
step "base@r,boot=b1"   "" X1       || fail "same boot id after a server restart: overlay lost"
step "base" 127.0.0.2      W1       || fail "address client lost its overlay over a restart"

step "base@r,boot=b2"   "" base  X2 || fail "new boot id did not reset the overlay"
step "base@r,boot=b2"   "" X2       || fail "reconnect after a reset lost the new data"
step "base@r"           "" base  X3 || fail "no boot id (boot \"\") after b2 did not reset"
step "base@r"           "" X3       || fail "no boot id twice: overlay lost"
step "base@o,boot=b1"   "" O1       || fail "a reset of base@r touched base@o"

# kill -9 right after a reset: the reset and the new flushed data stick.
step "base@r,boot=b4"   "" base  X4 || fail "boot b4 did not reset"
stop_nbdsrv KILL || true
start_nbdsrv "${srv_args[@]}"
step "base@r,boot=b4"   "" X4       || fail "after kill -9: data written after a reset lost"
stop_nbdsrv || fail "nbdsrv exited with $? on SIGTERM"
