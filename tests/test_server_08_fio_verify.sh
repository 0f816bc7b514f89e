#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# test_server_08_fio_verify: fio through its libnbd engine.  A 4K
# randwrite job at QD32 with verify=crc32c, and a 1K one (partial 4 KiB
# blocks: read-modify-write), verify in the same run; after a flush
# (end_fsync), kill -9 and a restart, --verify_only finds the same data.
. "$(dirname "$0")/functions.sh"
requires_cmd fio
fio --enghelp 2>/dev/null | grep -qw nbd || skip "fio has no nbd engine"

make_image "$TESTDIR/base.img" 32
srv_args=(-e base="$TESTDIR/base.img" -o "$TESTDIR/ov")
start_nbdsrv "${srv_args[@]}"

run_fio() {
  # In the test's directory: fio leaves its verify state files where it
  # runs.
  (cd "$TESTDIR" && fio --output="$TESTDIR/fio.out" --ioengine=nbd \
    --uri="nbd://127.0.0.1:$PORT/base@fio" --rw=randwrite --verify=crc32c \
    --verify_fatal=1 --end_fsync=1 --randrepeat=1 \
    --name=b4k --bs=4k --iodepth=32 --offset=0 --size=16m \
    --name=b1k --bs=1k --iodepth=16 --offset=20m --size=4m \
    "$@") || { cat "$TESTDIR/fio.out" >&2; return 1; }
  grep -q 'err= 0' "$TESTDIR/fio.out" || { cat "$TESTDIR/fio.out" >&2; return 1; }
  if grep -qi 'verify.*fail\|bad magic\|crc32c.*wanted' "$TESTDIR/fio.out"; then
    cat "$TESTDIR/fio.out" >&2; return 1
  fi
}
run_fio || fail "fio randwrite + verify"
stop_nbdsrv KILL || true
start_nbdsrv "${srv_args[@]}"
run_fio --verify_only || fail "fio --verify_only after kill -9 and restart"

# And the region fio never touched is still the base.
nbdsh -u "nbd://127.0.0.1:$PORT/base@fio" -c '
base = open("'"$TESTDIR"'/base.img", "rb").read()
assert h.pread(4 << 20, 16 << 20) == base[16 << 20:20 << 20], "base@fio 16-20M changed"
assert h.pread(8 << 20, 24 << 20) == base[24 << 20:], "base@fio 24-32M changed"
' || fail "fio touched what it did not write"
stop_nbdsrv || fail "nbdsrv exited with $? on SIGTERM"
