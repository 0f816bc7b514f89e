#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# test_server_11_reply_styles: both reply styles.  The same workload (unaligned
# writes, FUA, zero, trim, flush, cache, reads spanning base, data and
# zeroed blocks) gives the same, correct data with simple replies (what
# the Linux kernel client uses) and with structured replies; structured
# reads of zeroed ranges may use hole chunks and still read as zeroes.
. "$(dirname "$0")/functions.sh"

make_image "$TESTDIR/base.img" 16
start_nbdsrv -e base="$TESTDIR/base.img" -o "$TESTDIR/ov"
export PORT

/usr/bin/python3 "$srcdir/server-lib.py" "$TESTDIR" <<'PY' || fail "reply style checks"
tdir = sys.argv[1]
base = open(tdir + "/base.img", "rb").read()
size = len(base)

def workload(h, tag):
    m = bytearray(base)
    def w(off, length, flags=0):
        d = pattern((tag, off), length)
        h.pwrite(d, off, flags)
        m[off:off + length] = d
    w(0, 4096); w(1000, 512); w(4095, 2); w(10000, 70000, nbd.CMD_FLAG_FUA)
    w(1 << 20, 1 << 20); w(size - 1, 1)
    h.zero(12288, 20480); m[20480:32768] = bytes(12288)           # aligned
    h.zero(3000, 100000); m[100000:103000] = bytes(3000)          # unaligned
    h.zero(1 << 20, 4 << 20, nbd.CMD_FLAG_NO_HOLE); m[4 << 20:5 << 20] = bytes(1 << 20)
    h.trim(8192, (1 << 20) + 4096)      # contents unspecified until rewritten
    w((1 << 20) + 4096, 8192)
    h.flush()
    h.cache(1 << 20, 8 << 20)
    return m

for structured in (False, True):
    tag = "structured" if structured else "simple"
    h = connect("base@" + tag, structured=structured)
    check(h.get_structured_replies_negotiated() == structured,
          "%s: negotiated structured=%s" % (tag, h.get_structured_replies_negotiated()))
    m = workload(h, tag)
    # Reads of all sizes and alignments over the mixed regions.
    for off, length in ((0, 8192), (999, 514), (4094, 4), (0, 200000), (20000, 20000),
                        (99999, 3002), ((1 << 20) - 7, (1 << 20) + 14),
                        ((4 << 20) - 1, (1 << 20) + 2), (size - 4097, 4097), (0, size)):
        check_data(h.pread(length, off), bytes(m[off:off + length]),
                   "%s read %d+%d" % (tag, off, length))
    if structured:
        # Chunk by chunk: each data chunk right, each hole chunk a zeroed range.
        def chunk(sub, off, ctype, err):
            if ctype == nbd.READ_DATA:
                check(sub == bytes(m[off:off + len(sub)]), "data chunk at %d" % off)
            elif ctype == nbd.READ_HOLE:
                check(m[off:off + len(sub)] == bytes(len(sub)),
                      "hole chunk at %d+%d over non-zero data" % (off, len(sub)))
            return 0
        buf = h.pread_structured(6 << 20, 0, chunk)
        check_data(buf, bytes(m[:6 << 20]), "structured pread_structured")
    h.shutdown()
    # After a reconnect, in the other reply style.
    h = connect("base@" + tag, structured=not structured)
    check_data(b"".join(h.pread(4 << 20, o) for o in range(0, size, 4 << 20)),
               bytes(m), "%s data read back with the other reply style" % tag)
    h.shutdown()
PY
stop_nbdsrv || fail "nbdsrv exited with $? on SIGTERM"
