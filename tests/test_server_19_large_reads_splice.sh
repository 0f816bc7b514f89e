#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# test_server_19_large_reads_splice: large reads, which nbdsrv splices from the page cache to
# the socket when the data is cached and copies through io_uring when it
# is not.  Reads of 64 KiB to 8 MiB that span base blocks, overlay blocks
# and zeroed blocks, at unaligned offsets, many in flight at once, read
# back exactly with simple and structured replies, from a cold page cache
# (copied) and a warm one (spliced); the server's own count shows both
# paths were taken.  A client that asks for 64 MiB of reads and never
# reads the replies, then vanishes, hurts nobody.  With --no-splice the
# same data comes back.
. "$(dirname "$0")/functions.sh"

make_image "$TESTDIR/base.img" 32
srv_args=(-e base="$TESTDIR/base.img" -o "$TESTDIR/ov")
export PORT

workload() {
  /usr/bin/python3 "$srcdir/server-lib.py" "$TESTDIR" "$1" <<'PY'
tdir, phase = sys.argv[1], sys.argv[2]
base = open(tdir + "/base.img", "rb").read()
M = 1 << 20

def drop_cache():
    # Evict the base image (and the overlay data) from the page cache, so
    # the next reads of them cannot be spliced.
    for p in [tdir + "/base.img"] + [os.path.join(tdir, "ov/base", f)
                                     for f in os.listdir(tdir + "/ov/base")
                                     if f.endswith(".data")]:
        fd = os.open(p, os.O_RDONLY)
        os.fsync(fd) if p.endswith(".data") else None
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        os.close(fd)

model = bytearray(base)
w = connect("base@big")
# Overlay blocks and zeroed blocks scattered through the first 24 MiB.
rnd = random.Random(19)
for i in range(40):
    off = rnd.randrange(0, 24 * M - 300000)
    ln = rnd.randrange(1, 300000)
    d = pattern(("big", i), ln)
    w.pwrite(d, off); model[off:off + ln] = d
for i in range(10):
    off = rnd.randrange(0, 24 * M - 200000)
    ln = rnd.randrange(4096, 200000)
    w.zero(ln, off); model[off:off + ln] = bytes(ln)
w.trim(3 * M, 26 * M); model[26 * M:29 * M] = bytes(3 * M)
w.flush()
w.shutdown()

reads = [(rnd.randrange(0, 32 * M - 8 * M), rnd.choice([64 << 10, 65 << 10, 300000, M, 3 * M + 17, 8 * M]))
         for _ in range(24)]
reads += [(26 * M - 5000, 2 * M), (0, 8 * M), (32 * M - M, M)]

def check_all(h, what):
    # All in flight at once, so that replies interleave on the stream.
    bufs = []
    for off, ln in reads:
        b = nbd.Buffer(ln)
        bufs.append((off, ln, b, h.aio_pread(b, off)))
    while h.aio_in_flight() > 0:
        h.poll(-1)
    for off, ln, b, c in bufs:
        check(h.aio_command_completed(c), "%s: read %d@%d failed" % (what, ln, off))
        check_data(b.to_bytearray(), model[off:off + ln], "%s: read %d@%d" % (what, ln, off))

for structured in (False, True):
    h = connect("base@big", structured=structured)
    kind = "structured" if structured else "simple"
    drop_cache()
    check_all(h, kind + ", cold cache")
    check_all(h, kind + ", warm cache")
    h.shutdown()

if phase == "first":
    # 64 MiB of reads asked for, none of the replies read, then gone.
    r = raw_session("base@greedy")
    for i in range(16):
        r.request(CMD_READ, (i % 8) * 4 * M, 4 * M)
    time.sleep(0.5)
    r.s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    r.close()
    h = connect("base@big")
    check_data(h.pread(8 * M, 0), model[:8 * M], "read after a greedy client left")
    h.shutdown()
PY
}

start_nbdsrv "${srv_args[@]}"
workload first || fail "large reads (splice enabled)"
stop_nbdsrv || fail "nbdsrv exited with $? on SIGTERM"
# The workers' own counts, summed: "worker N: S large reads spliced ..., C copied".
count_reads() {
  awk -v what="$1" '/large reads spliced/ {
      for (i = 1; i <= NF; i++) {
        if ($i == "large") s += $(i - 1)
        if ($i == "copied") c += $(i - 1)
      }
    } END { print (what == "spliced" ? s : c) + 0 }' "$TESTDIR/nbdsrv.log"
}
spliced=$(count_reads spliced)
copied=$(count_reads copied)
echo "large reads: $spliced spliced, $copied copied"
if grep -q "kernel lacks cachestat" "$TESTDIR/nbdsrv.log"; then
  [ "$copied" -gt 0 ] || fail "no large read was copied"
else
  [ "$spliced" -gt 0 ] || fail "no large read was spliced (warm cache)"
  [ "$copied" -gt 0 ] || fail "no large read was copied (cold cache)"
fi

: >"$TESTDIR/nbdsrv.log"
start_nbdsrv "${srv_args[@]}" --no-splice
workload again || fail "large reads (--no-splice)"
stop_nbdsrv || fail "nbdsrv exited with $? on SIGTERM"
[ "$(count_reads spliced)" = 0 ] || fail "--no-splice still spliced"
[ "$(count_reads copied)" -gt 0 ] || fail "--no-splice: no large read counted"
exit 0
