#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# test_server_21_memory_per_client: what a client costs the server in memory.  300 clients,
# each with its own identity (and so its own overlay), connect and read a
# block: the server's resident memory grows by well under 64 KiB per
# client.  Each then writes one block: still well under 64 KiB each.  All
# of them read back their own data.  On a 1 TiB disk too, a client that
# wrote a block costs that block's region of the map, not a table of the
# whole disk.  Rewriting blocks without flushing costs nothing per write.
. "$(dirname "$0")/functions.sh"

make_image "$TESTDIR/base.img" 64
truncate -s 1T "$TESTDIR/big.img"
start_nbdsrv -e base="$TESTDIR/base.img" -e big="$TESTDIR/big.img" -o "$TESTDIR/ov"
export PORT SRV_PID

/usr/bin/python3 "$srcdir/server-lib.py" "$TESTDIR" <<'PY' || fail "memory per client"
tdir = sys.argv[1]
N = 300
pid = int(os.environ["SRV_PID"])
base = open(tdir + "/base.img", "rb").read()

def status_kib(field):
    for line in open("/proc/%d/status" % pid):
        if line.startswith(field + ":"):
            return int(line.split()[1])

def rss_kib():
    return status_kib("VmRSS")

# Warm up the server's per-thread allocator and buffers with a few clients
# that come and go, so the baseline is the server's steady state.
for i in range(8):
    h = connect("base@warm%d" % i)
    h.pread(4096, 0)
    h.shutdown()
time.sleep(0.2)
rss0 = rss_kib()
hs = []
for i in range(N):
    # From a few addresses: the default per-address limit is below N.
    h = connect("base@m%03d" % i, src="127.0.2.%d" % (i % 10 + 1))
    check_data(h.pread(4096, i * 4096), base[i * 4096:(i + 1) * 4096], "client %d read" % i)
    hs.append(h)
rss1 = rss_kib()
per_idle = (rss1 - rss0) / N
log("RSS %d KiB before, %d KiB with %d idle clients: %.1f KiB each" % (rss0, rss1, N, per_idle))
check(per_idle < 32, "an idle client costs %.1f KiB" % per_idle)
for i, h in enumerate(hs):
    h.pwrite(pattern(i, 4096), (i * 37 % 1000) * 4096)
rss2 = rss_kib()
per_writer = (rss2 - rss0) / N
log("RSS %d KiB after each wrote one block: %.1f KiB each" % (rss2, per_writer))
check(per_writer < 48, "a client that wrote one block costs %.1f KiB" % per_writer)
for i, h in enumerate(hs):
    check_data(h.pread(4096, (i * 37 % 1000) * 4096), pattern(i, 4096), "client %d readback" % i)
    h.shutdown()

# 100 clients of a 1 TiB disk each write a block near its end.  A table
# of every 16 MiB region of the disk would be 512 KiB per client: mostly
# untouched zero pages (not in RSS) while it is fresh, but allocated
# memory all the same, in the data segment (VmData).
N = 100
end = 1 << 40
rss0, data0 = rss_kib(), status_kib("VmData")
hs = []
for i in range(N):
    h = connect("big@t%03d" % i, src="127.0.3.%d" % (i % 10 + 1))
    h.pwrite(pattern(i, 4096), end - (i + 1) * 4096 * 4096)
    hs.append(h)
rss1, data1 = rss_kib(), status_kib("VmData")
per_big, data_big = (rss1 - rss0) / N, (data1 - data0) / N
log("1 TiB disk: RSS %d KiB before, %d KiB after %d clients wrote a block each: %.1f KiB each; "
    "VmData %d KiB, then %d KiB: %.1f KiB each" % (rss0, rss1, N, per_big, data0, data1, data_big))
check(per_big < 64, "a client that wrote one block of a 1 TiB disk costs %.1f KiB" % per_big)
check(data_big < 64, "a client that wrote one block of a 1 TiB disk allocates %.1f KiB" % data_big)
for i, h in enumerate(hs):
    check_data(h.pread(4096, end - (i + 1) * 4096 * 4096), pattern(i, 4096),
               "1 TiB client %d readback" % i)
    h.shutdown()

# A client that rewrites the same 64 blocks 50000 times, in no particular
# order, without a flush: only a change of a block's state is journalled,
# so neither the server's memory nor the overlay's journal grows per
# write (the journal, appended at the flush, shows it exactly).
h = connect("base@rewriter")
buf = nbd.Buffer.from_bytearray(bytearray(pattern("rw", 4096)))
rnd = random.Random(21)

def rewrite(count):
    done = 0
    while done < count:
        while h.aio_in_flight() < 64 and done < count:
            h.aio_pwrite(buf, rnd.randrange(64) * 4096)
            done += 1
        h.poll(-1)
        while h.aio_peek_command_completed():
            h.aio_command_completed(h.aio_peek_command_completed())
    while h.aio_in_flight() > 0:
        h.poll(-1)

rewrite(1000)
h.flush()
journal = tdir + "/ov/base/rewriter.map"
size0 = os.stat(journal).st_size
rewrite(50000)
h.flush()
size1 = os.stat(journal).st_size
log("journal %d bytes, then %d after 50000 rewrites and a flush" % (size0, size1))
check(size1 - size0 < 4096, "50000 rewrites added %d bytes of journal" % (size1 - size0))
check_data(h.pread(64 * 4096, 0), pattern("rw", 4096) * 64, "rewritten blocks")
h.shutdown()
PY
exit 0
