#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# test_server_07_qemu_client: qemu as a second, independent client.
# qemu-io write/read patterns (aligned, unaligned, zero, discard, aio)
# verify in one connection and after a reconnect; qemu-img compare says a
# fresh client equals the base image, and a client that wrote differs.
. "$(dirname "$0")/functions.sh"
requires_cmd qemu-io qemu-img

make_image "$TESTDIR/base.img" 16
start_nbdsrv -e base="$TESTDIR/base.img" -o "$TESTDIR/ov"
uri=nbd://127.0.0.1:$PORT

# qemu_io URI CMDS...: runs qemu-io; fails on a non-zero exit or any
# verification/IO failure in its output.
qemu_io() {
  u=$1; shift
  args=()
  for c in "$@"; do args+=(-c "$c"); done
  out=$(qemu-io -f raw "$u" "${args[@]}" 2>&1) || { echo "$out" >&2; return 1; }
  if echo "$out" | grep -Eiq 'fail|error|mismatch'; then
    echo "$out" >&2; return 1
  fi
  n=$(echo "$out" | grep -c '^\(read\|wrote\) ') || true
  [ "$n" -ge "$expect_ops" ] || { echo "$out" >&2; echo "only $n ops ran" >&2; return 1; }
}

expect_ops=13
qemu_io "$uri/base@q" \
  'write -P 0xab 0 64k' 'read -P 0xab 0 64k' \
  'write -P 0xcd 1000 512' 'read -P 0xcd 1000 512' \
  'read -P 0xab 0 1000' 'read -P 0xab 1512 64024' \
  'write -P 0x11 4095 2' 'read -P 0x11 4095 2' \
  'write -z 1M 128k' 'read -P 0 1M 128k' \
  'aio_write -P 0x22 2M 256k' 'aio_write -P 0x33 3M 256k' 'aio_flush' \
  'read -P 0x22 2M 256k' 'read -P 0x33 3M 256k' \
  'write -P 0x44 15M 1M' 'flush' 'read -P 0x44 15M 1M' ||
  fail "qemu-io patterns in one connection"

expect_ops=7
qemu_io "$uri/base@q" \
  'read -P 0xab 0 1000' 'read -P 0xcd 1000 512' 'read -P 0x11 4095 2' \
  'read -P 0 1M 128k' 'read -P 0x22 2M 256k' 'read -P 0x33 3M 256k' \
  'read -P 0x44 15M 1M' ||
  fail "qemu-io patterns after a reconnect"

# Unaligned read straddling the written range must show the base after it.
qemu-img convert -f raw -O raw "$uri/base@q" "$TESTDIR/q.img" ||
  fail "qemu-img convert from base@q"
/usr/bin/python3 - "$TESTDIR" <<'PY' || fail "base@q as a whole is wrong"
import sys
t = sys.argv[1]
want = bytearray(open(t + "/base.img", "rb").read())
M = 1 << 20
want[0:65536] = b"\xab" * 65536
want[1000:1512] = b"\xcd" * 512
want[4095:4097] = b"\x11" * 2
want[M:M + 131072] = bytes(131072)
want[2 * M:2 * M + 262144] = b"\x22" * 262144
want[3 * M:3 * M + 262144] = b"\x33" * 262144
want[15 * M:16 * M] = b"\x44" * M
assert open(t + "/q.img", "rb").read() == want
PY

qemu-img compare -f raw -F raw "$TESTDIR/base.img" "$uri/base@fresh" ||
  fail "qemu-img compare: a fresh client differs from the base"
rc=0
qemu-img compare -q -f raw -F raw "$TESTDIR/base.img" "$uri/base@q" || rc=$?
[ $rc = 1 ] || fail "qemu-img compare of base@q against the base: exit $rc, expected 1 (differ)"
qemu-img compare -q -f raw -F raw "$TESTDIR/q.img" "$uri/base@q" ||
  fail "qemu-img compare of base@q against its copy"

stop_nbdsrv || fail "nbdsrv exited with $? on SIGTERM"
