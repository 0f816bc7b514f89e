#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# test_server_10_bad_requests: bad requests in the transmission phase.
# Reads/writes/trims/zeroes/cache/block-status past the end get
# an error (EINVAL; ENOSPC also allowed for writes, as the spec prefers)
# with both reply styles and the connection goes on; a read over 32 MiB
# gets EINVAL while exactly 32 MiB works; a write payload over 32 MiB is
# a hard disconnect; unknown commands and flags get EINVAL; pipelined
# requests with an error among them all get their own reply.
. "$(dirname "$0")/functions.sh"

make_image "$TESTDIR/base.img" 64
start_nbdsrv -e base="$TESTDIR/base.img" -o "$TESTDIR/ov"
export PORT

/usr/bin/python3 "$srcdir/server-lib.py" "$TESTDIR" <<'PY' || fail "transmission checks"
tdir = sys.argv[1]
base = open(tdir + "/base.img", "rb").read()
size = len(base)
MAX = 32 << 20
ENOSPC, ENOTSUP, EOVERFLOW = 28, 95, 75

# ---- simple replies, by hand
r = raw_session("base@raw")
check(r.size == size, "size %d" % r.size)

def req(cmd, off, length, flags=0, payload=b"", read_len=0):
    c = r.request(cmd, off, length, flags, payload)
    return r.simple_reply(c, read_len)

def bad(cmd, off, length, allowed, what, payload=b""):
    err, _ = req(cmd, off, length, payload=payload)
    check(err in allowed, "%s: error %d, expected one of %s" % (what, err, allowed))

A = (48 << 20) + 8192    # a spot the trims and zeroes below leave alone
alive_ref = base[A:A + 512]

def alive(what):
    err, data = req(CMD_READ, A, 512, read_len=512)
    check(err == 0 and data == alive_ref, "connection broken after " + what)

for off, length in ((size - 100, 200), (size, 1), (size + 4096, 4096),
                    (1 << 63, 4096), ((1 << 64) - 4096, 8192)):
    bad(CMD_READ, off, length, (EINVAL,), "read %d+%d" % (off, length))
    alive("read %d+%d" % (off, length))
    bad(CMD_TRIM, off, length, (EINVAL,), "trim %d+%d" % (off, length))
    bad(CMD_WRITE_ZEROES, off, length, (EINVAL, ENOSPC), "zero %d+%d" % (off, length))
    bad(CMD_CACHE, off, length, (EINVAL,), "cache %d+%d" % (off, length))
    if length <= 8192:
        bad(CMD_WRITE, off, length, (EINVAL, ENOSPC), "write %d+%d" % (off, length),
            payload=b"W" * length)
    alive("out-of-range requests at %d" % off)
# Nothing of those writes landed: the tail is still the base.
err, data = req(CMD_READ, size - 8192, 8192, read_len=8192)
check(err == 0 and data == base[-8192:], "a refused write changed the tail")

# Reads: 32 MiB works, one byte more is EINVAL (and nothing else is sent).
err, data = req(CMD_READ, 0, MAX, read_len=MAX)
check(err == 0 and data == base[:MAX], "read of exactly 32 MiB")
bad(CMD_READ, 0, MAX + 1, (EINVAL,), "read of 32 MiB + 1")
alive("read of 32 MiB + 1")
bad(CMD_READ, 0, 0xFFFFFFFF, (EINVAL,), "read of 4 GiB - 1")
alive("read of 4 GiB - 1")
# Writes: 32 MiB works.
data = pattern("max", MAX)
err, _ = req(CMD_WRITE, size - MAX, MAX, payload=data)
check(err == 0, "write of exactly 32 MiB: error %d" % err)
err, got = req(CMD_READ, size - MAX, MAX, read_len=MAX)
check(err == 0 and got == data, "read back of the 32 MiB write")
cur = bytearray(base)
cur[size - MAX:] = data
alive_ref = cur[A:A + 512]
alive("32 MiB write")
# TRIM / WRITE_ZEROES longer than the max payload: no disconnect.
for cmd, what in ((CMD_TRIM, "trim"), (CMD_WRITE_ZEROES, "zero")):
    err, _ = req(cmd, 0, 48 << 20)
    check(err in (0, EINVAL, EOVERFLOW), "48 MiB %s: error %d" % (what, err))
    alive("48 MiB " + what)
    if cmd == CMD_WRITE_ZEROES and err == 0:
        err, got = req(CMD_READ, 1 << 20, 4096, read_len=4096)
        check(err == 0 and got == bytes(4096), "48 MiB zero did not zero")

# Unknown command and unknown / misplaced flags: EINVAL.
bad(42, 0, 4096, (EINVAL,), "unknown command 42")
alive("unknown command")
err, _ = req(CMD_READ, 0, 4096, flags=1 << 9)
check(err == EINVAL, "read with unknown flag: error %d" % err)
alive("unknown flag")
err, _ = req(CMD_WRITE_ZEROES, 0, 4096, flags=1 << 9)
check(err == EINVAL, "zero with unknown flag: error %d" % err)
alive("unknown flag on zero")
# BLOCK_STATUS without structured replies / meta context: an error.
bad(CMD_BLOCK_STATUS, 0, 4096, (EINVAL, ENOTSUP), "block status without meta context")
alive("block status without meta context")

# Pipelining: several requests sent at once, one bad; replies by cookie.
reqs = {}
blob = b""
for i, (cmd, off, length, payload) in enumerate((
        (CMD_READ, A, 4096, b""), (CMD_READ, size, 4096, b""),
        (CMD_WRITE, 50 << 20, 4096, b"p" * 4096), (CMD_FLUSH, 0, 0, b""),
        (CMD_READ, A + 8192, 100, b""))):
    cookie = 0x1000 + i
    blob += struct.pack(">IHHQQI", REQUEST_MAGIC, 0, cmd, cookie, off, length) + payload
    reqs[cookie] = (cmd, off, length)
r.send(blob)
for _ in range(len(reqs)):
    magic, err, cookie = struct.unpack(">IIQ", r.recv_exact(16))
    check(magic == SIMPLE_REPLY_MAGIC and cookie in reqs, "pipelined reply %#x %#x" % (magic, cookie))
    cmd, off, length = reqs.pop(cookie)
    if cmd == CMD_READ and err == 0:
        data = r.recv_exact(length)
        check(data == cur[off:off + length], "pipelined read %d+%d" % (off, length))
    check((err != 0) == (off == size), "pipelined cmd %d at %d: error %d" % (cmd, off, err))
alive("pipelining")

# A write payload over 32 MiB: hard disconnect.
r.request(CMD_WRITE, 0, MAX + 4096)
try:
    r.send(b"\0" * (1 << 20))
except (BrokenPipeError, ConnectionResetError):
    pass
r.expect_closed("write of 32 MiB + 4 KiB")

# ---- structured replies, through libnbd with its own checks off
h = connect("base@lib", strict=False, meta=True)
check(h.get_structured_replies_negotiated(), "structured replies not negotiated")
for off, length in ((size - 100, 200), (size, 512), (size + (1 << 30), 512)):
    expect_error(lambda: h.pread(length, off), EINVAL, "structured read %d+%d" % (off, length))
    expect_error(lambda: h.trim(length, off), EINVAL, "structured trim %d+%d" % (off, length))
    expect_error(lambda: h.cache(length, off), EINVAL, "structured cache %d+%d" % (off, length))
    try:
        h.pwrite(b"w" * length, off)
        raise TestFailure("structured write %d+%d succeeded" % (off, length))
    except nbd.Error as e:
        check(nbd_errno(e) in (EINVAL, ENOSPC), "structured write: %s" % e)
    expect_error(lambda: h.block_status(length, off, lambda *a: 0), EINVAL,
                 "block status %d+%d" % (off, length))
expect_error(lambda: h.pread(MAX + 1, 0), EINVAL, "structured read of 32 MiB + 1")
check_data(h.pread(MAX, 1 << 20), base[1 << 20:(1 << 20) + MAX], "structured 32 MiB read")
check_data(h.pread(4096, size - 4096), base[-4096:], "structured read of the last block")
h.shutdown()

# ---- the server is fine
h = connect("base@after")
check_data(h.pread(65536, 0), base[:65536], "new client after all that")
h.shutdown()
PY
kill -0 "$SRV_PID" || fail "nbdsrv died"
stop_nbdsrv || fail "nbdsrv exited with $? on SIGTERM"
