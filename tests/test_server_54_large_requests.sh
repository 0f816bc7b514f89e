#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# test_server_54_large_requests: requests longer than max-request.
#   - a client that did not ask for the block sizes (libnbd with
#     set_request_block_size(False)) writes and reads 48 MiB in one
#     request, with structured and with simple replies, and reads back
#     what it wrote (the reads are streamed from the files: --no-splice);
#   - a client that asked for them is held to max-request: a longer READ
#     gets EINVAL, a longer WRITE ends the connection;
#   - while a 48 MiB WRITE's payload is half sent, and while a 48 MiB
#     READ's reply is not read, the server holds a chunk of it, not all.
. "$(dirname "$0")/functions.sh"

make_image "$TESTDIR/base.img" 128
ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}quarantine_size_mb=4"
export ASAN_OPTIONS
start_nbdsrv -e base="$TESTDIR/base.img" -o "$TESTDIR/ov" --no-splice
export PORT SRV_PID

/usr/bin/python3 "$srcdir/server-lib.py" "$TESTDIR" <<'PY' || fail "large requests"
tdir = sys.argv[1]
pid = int(os.environ["SRV_PID"])
base = open(tdir + "/base.img", "rb").read()
LEN = 48 * MiB
maps = open("/proc/%d/maps" % pid).read()
sanitized = "asan" in maps or "ubsan" in maps
# A few chunks of 1 MiB, and the allocator's slack: far less than the
# 48 MiB that holding a request whole would take.
ALLOWANCE = 12 * MiB * (2 if sanitized else 1)

def rss():
    for line in open("/proc/%d/status" % pid):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024

def unconstrained(name, structured):
    h = nbd.NBD()
    h.set_export_name(name)
    h.set_request_block_size(False)
    h.set_request_structured_replies(structured)
    s = tcp_socket()
    s.settimeout(None)
    h.connect_socket(s.detach())
    return h

# Unaligned at both ends: the first and the last chunk are partial blocks.
for structured, off in ((True, 3 * MiB + 512), (False, 70 * MiB + 1000)):
    what = "structured" if structured else "simple"
    h = unconstrained("base@big-" + what, structured)
    check_data(h.pread(LEN, off), base[off:off + LEN], what + ": 48 MiB read of the base")
    data = pattern(what, LEN)
    h.pwrite(data, off)
    h.flush()
    check_data(h.pread(LEN, off), data, what + ": 48 MiB read back")
    check_data(h.pread(4096, off - 4096), base[off - 4096:off], what + ": before the write")
    check_data(h.pread(4096, off + LEN), base[off + LEN:off + LEN + 4096],
               what + ": after the write")
    h.shutdown()
    h = unconstrained("base@big-" + what, structured)
    check_data(h.pread(LEN, off), data, what + ": 48 MiB read back, new connection")
    h.shutdown()

# Asked for the block sizes: held to the maximum announced.
r = Raw()
r.greeting()
rtype, infos = r.go("base@held")
check(rtype == REP_ACK, "OPT_GO: %#x" % rtype)
maxlen = struct.unpack(">III", infos[INFO_BLOCK_SIZE])[2]
check(maxlen < LEN, "maximum payload %d, expected less than 48 MiB" % maxlen)
cookie = r.request(CMD_READ, 0, LEN)
err, _ = r.simple_reply(cookie)
check(err == EINVAL, "READ over the maximum: error %d, expected EINVAL" % err)
cookie = r.request(CMD_READ, 0, 4096)
err, got = r.simple_reply(cookie, 4096)
check(err == 0 and got == base[:4096], "READ after the refused one")
r.request(CMD_WRITE, 0, LEN)
r.expect_closed("WRITE over the maximum")
r.close()

# Memory: a 48 MiB WRITE half sent, then a 48 MiB READ never read.
time.sleep(0.2)
rss0 = rss()
r = Raw()
r.greeting()
rtype, _ = r.go("base@mem", infos=())
check(rtype == REP_ACK, "OPT_GO: %#x" % rtype)
data = pattern("mem", LEN)
cookie = random.getrandbits(64)
r.send(struct.pack(">IHHQQI", REQUEST_MAGIC, 0, CMD_WRITE, cookie, 0, LEN) + data[:LEN // 2])
time.sleep(1)
grown = rss() - rss0
log("half a 48 MiB write sent: RSS %d MiB over the start" % (grown >> 20))
check(grown < ALLOWANCE, "half a 48 MiB write: RSS grew by %d MiB" % (grown >> 20))
r.send(data[LEN // 2:])
err, _ = r.simple_reply(cookie)
check(err == 0, "48 MiB WRITE: error %d" % err)
cookie = r.request(CMD_READ, 0, LEN)
time.sleep(1)
grown = rss() - rss0
log("48 MiB read not read: RSS %d MiB over the start" % (grown >> 20))
check(grown < ALLOWANCE, "48 MiB read not read: RSS grew by %d MiB" % (grown >> 20))
err, got = r.simple_reply(cookie, LEN)
check(err == 0, "48 MiB READ: error %d" % err)
check_data(got, data, "48 MiB read back on a raw connection")
r.close()
PY
grep -q "ERROR: AddressSanitizer" "$TESTDIR/nbdsrv.log" && fail "sanitizer report"
kill -0 "$SRV_PID" || fail "nbdsrv died"
exit 0
