#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# test_server_12_trim_zero_space: TRIM and WRITE_ZEROES free overlay space and show in
# BLOCK_STATUS.  After writing 8 MiB the overlay data file holds about
# 8 MiB; trimming or zeroing it shrinks st_blocks; those ranges then read
# as zeroes and base:allocation reports them zero (and hole); unwritten
# base data is never reported as zero; FAST_ZERO either works or fails
# with ENOTSUP; all of it holds after a restart.
. "$(dirname "$0")/functions.sh"

make_image "$TESTDIR/base.img" 32
start_nbdsrv -e base="$TESTDIR/base.img" -o "$TESTDIR/ov"
export PORT

check_space() {
  /usr/bin/python3 "$srcdir/server-lib.py" "$TESTDIR" "$@" <<'PY'
tdir, phase = sys.argv[1], sys.argv[2]
base = open(tdir + "/base.img", "rb").read()
MiB = 1 << 20
data_file = tdir + "/ov/base/sp.data"

def blocks():
    return os.stat(data_file).st_blocks * 512

h = connect("base@sp", meta=True)
check(h.can_meta_context(nbd.CONTEXT_BASE_ALLOCATION), "no base:allocation")

def status(off, length):
    return flags_over(extents(h, length, off), off, length)

if phase == "write":
    # Unwritten base data: allocated data, never "zero".
    for f in status(0, 32 * MiB):
        check(not (f & nbd.STATE_ZERO), "base data reported as zero (flags %d)" % f)
    h.pwrite(pattern("a", 8 * MiB), 0)
    h.pwrite(pattern("b", 8 * MiB), 16 * MiB)
    h.flush()
    full = blocks()
    check(full >= 15 * MiB, "16 MiB written, data file holds only %d bytes" % full)
    check(full <= 40 * MiB, "16 MiB written, data file holds %d bytes" % full)
    for f in status(0, 8 * MiB) | status(16 * MiB, 8 * MiB):
        check(not (f & nbd.STATE_ZERO), "written data reported as zero (flags %d)" % f)

    # TRIM 6 MiB of the first range (aligned), WRITE_ZEROES 6 MiB of the second.
    h.trim(6 * MiB, 1 * MiB)
    h.zero(6 * MiB, 17 * MiB)
    h.flush()
    # Space is given back (allow for 1 MiB of slack, e.g. preallocation).
    wait_for(lambda: blocks() <= full - 11 * MiB,
             "data file to shrink after TRIM/WRITE_ZEROES (st_blocks %d, was %d)"
             % (blocks(), full), timeout=10)
    # A zero with NO_HOLE must read as zero too (space may stay).
    h.zero(1 * MiB, 5 * MiB, nbd.CMD_FLAG_NO_HOLE)
    # FAST_ZERO: succeeds (then zeroes) or fails fast with ENOTSUP.
    check(h.can_fast_zero(), "FAST_ZERO not advertised")
    try:
        h.zero(1 * MiB, 25 * MiB, nbd.CMD_FLAG_FAST_ZERO)
        fast = True
    except nbd.Error as e:
        check(nbd_errno(e) == 95, "FAST_ZERO failed with %s, not ENOTSUP" % e)
        fast = False
    open(tdir + "/fast", "w").write(str(int(fast)))
    # Unaligned trim/zero of a written block: no crash, zero reads as zero.
    h.pwrite(pattern("c", 8192), 28 * MiB)
    h.zero(1000, 28 * MiB + 100)
    h.flush()

fast = open(tdir + "/fast").read() == "1"
# What the client reads.
check_data(h.pread(MiB, 0), pattern("a", 8 * MiB)[:MiB], "untouched written data")
check_data(h.pread(6 * MiB, MiB), bytes(6 * MiB), "trimmed range")
check_data(h.pread(MiB, 7 * MiB), pattern("a", 8 * MiB)[7 * MiB:], "data after the trim")
check_data(h.pread(MiB, 16 * MiB), pattern("b", 8 * MiB)[:MiB], "data before the zero")
check_data(h.pread(6 * MiB, 17 * MiB), bytes(6 * MiB), "zeroed range")
check_data(h.pread(MiB, 5 * MiB), bytes(MiB), "NO_HOLE zeroed range")
if fast:
    check_data(h.pread(MiB, 25 * MiB), bytes(MiB), "FAST_ZERO range")
else:
    check_data(h.pread(MiB, 25 * MiB), base[25 * MiB:26 * MiB], "failed FAST_ZERO changed data")
c = pattern("c", 8192)
check_data(h.pread(8192, 28 * MiB), c[:100] + bytes(1000) + c[1100:], "unaligned zero")
check_data(h.pread(MiB, 30 * MiB), base[30 * MiB:31 * MiB], "base after everything")

# What BLOCK_STATUS says.
for off, length, what in ((MiB, 6 * MiB, "trimmed"), (17 * MiB, 6 * MiB, "zeroed"),
                          (5 * MiB, MiB, "NO_HOLE zeroed")):
    for f in status(off, length):
        check(f & nbd.STATE_ZERO, "%s range not reported zero (flags %d)" % (what, f))
for off, length, what in ((0, MiB, "written"), (7 * MiB, MiB, "written"),
                          (9 * MiB, 7 * MiB, "base"), (30 * MiB, 2 * MiB, "base")):
    for f in status(off, length):
        check(not (f & nbd.STATE_ZERO), "%s data reported zero (flags %d)" % (what, f))
# Trimmed/zeroed (without NO_HOLE) ranges should be holes too.
for f in status(MiB, 4 * MiB) | status(17 * MiB, 6 * MiB):
    check(f & nbd.STATE_HOLE, "trimmed/zeroed range not reported as a hole (flags %d)" % f)
h.shutdown()
PY
}

check_space write || fail "TRIM/WRITE_ZEROES"
stop_nbdsrv || fail "nbdsrv exited with $? on SIGTERM"
start_nbdsrv -e base="$TESTDIR/base.img" -o "$TESTDIR/ov"
check_space verify || fail "TRIM/WRITE_ZEROES after a restart"
stop_nbdsrv || fail "nbdsrv exited with $? on SIGTERM"
