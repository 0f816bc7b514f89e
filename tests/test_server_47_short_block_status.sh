#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# test_server_47_short_block_status: no BLOCK_STATUS holds a worker for
# long.  On a fragmented disk (a client wrote every other block, so that
# its overlay and the base alternate, all data) the whole disk is one
# extent; walking it would take thousands of map runs and lseeks, so the
# server answers for a part only, and the client, asking on from where
# each answer ends, still learns the whole disk right.  A REQ_ONE
# request is cut the same way.  Another client is served meanwhile.
. "$(dirname "$0")/functions.sh"

make_image "$TESTDIR/base.img" 64
start_nbdsrv -e base="$TESTDIR/base.img" -o "$TESTDIR/ov"
export PORT

/usr/bin/python3 "$srcdir/server-lib.py" "$TESTDIR" <<'PY' || fail "short block status"
tdir = sys.argv[1]
base = open(tdir + "/base.img", "rb").read()
size = len(base)
h = connect("base@frag", meta=True)
# Every other block of the first 32 MiB: 8192 runs in the map.
for b in range(0, 8192, 2):
    h.pwrite(pattern(b, 4096), b * 4096)
h.flush()

def one_answer(count, offset, flags=0):
    got = []
    def cb(metacontext, off, entries, err):
        if metacontext == nbd.CONTEXT_BASE_ALLOCATION:
            got.extend(entries)
        return 0
    h.block_status(count, offset, cb, flags=flags)
    return [(got[i], got[i + 1]) for i in range(0, len(got), 2)]

ans = one_answer(size, 0)
covered = sum(l for l, _ in ans)
log("one BLOCK_STATUS of the whole disk: %d extents, %d KiB" % (len(ans), covered >> 10))
check(covered < 32 << 20, "the answer walked %d KiB of a fragmented map" % (covered >> 10))
check(all(f == 0 for _, f in ans), "data reported as hole: %s" % ans[:4])
ans = one_answer(size, 0, flags=nbd.CMD_FLAG_REQ_ONE)
check(len(ans) == 1 and ans[0][0] < 32 << 20, "REQ_ONE answer %s" % ans)

# Asking on, the client learns the whole disk: all data.
exts = extents(h, size, 0)
check(sum(l for _, l, _ in exts) >= size, "extents do not cover the disk")
check(flags_over(exts, 0, size) == {0}, "flags %s" % flags_over(exts, 0, size))

other = connect("base@other")
check_data(other.pread(4096, 40 << 20), base[40 << 20:(40 << 20) + 4096], "another client's read")
other.shutdown()
check_data(h.pread(8192, 0), pattern(0, 4096) + base[4096:8192], "the fragmented client's data")
h.shutdown()
PY
exit 0
