#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# test_server_13_many_in_flight: many requests in flight.  64 concurrent aio_pwrite then
# 64 concurrent aio_pread (mixed sizes, aligned and not, some FUA) on one
# connection; four connections of different clients at once, each with
# 32 in flight, interleaved; then 32 connections of one ID; all data
# correct, each client only its own.
. "$(dirname "$0")/functions.sh"

make_image "$TESTDIR/base.img" 32
start_nbdsrv -e base="$TESTDIR/base.img" -o "$TESTDIR/ov"
export PORT

/usr/bin/python3 "$srcdir/server-lib.py" "$TESTDIR" <<'PY' || fail "concurrency checks"
tdir = sys.argv[1]
base = open(tdir + "/base.img", "rb").read()
size = len(base)

def drain(handles, deadline=60):
    end = time.monotonic() + deadline
    while any(h.aio_in_flight() for h in handles):
        check(time.monotonic() < end, "requests still in flight after %d s" % deadline)
        for h in handles:
            if h.aio_in_flight():
                h.poll(0)
        # block briefly on whichever has work
        busy = [h for h in handles if h.aio_in_flight()]
        if busy:
            busy[0].poll(100)

def run(handles_models, n, tag):
    """n writes in flight per handle, then n reads; checks every result."""
    rnd = random.Random(tag)
    cookies = []
    for k, (h, m) in handles_models.items():
        slot = size // n
        for i in range(n):
            length = rnd.choice([x for x in (512, 4096, 5000, 65536, 131072, 1 << 20) if x < slot])
            off = i * slot + rnd.randrange(0, slot - length)
            data = pattern((tag, k, i), length)
            m[off:off + length] = data
            flags = nbd.CMD_FLAG_FUA if i % 7 == 0 else 0
            cookies.append((h, h.aio_pwrite(nbd.Buffer.from_bytearray(data), off,
                                            flags=flags), "write"))
        check(h.aio_in_flight() >= 1, "nothing in flight")
    drain([h for h, m in handles_models.values()])
    for h, c, what in cookies:
        check(h.aio_command_completed(c), "%s %d did not complete" % (what, c))
    reads = []
    for k, (h, m) in handles_models.items():
        slot = size // n
        for i in range(n):
            off = i * slot
            buf = nbd.Buffer(slot)
            reads.append((k, h, m, off, buf, h.aio_pread(buf, off)))
    drain([h for h, m in handles_models.values()])
    for k, h, m, off, buf, c in reads:
        check(h.aio_command_completed(c), "read did not complete")
        check_data(bytes(buf.to_bytearray()), bytes(m[off:off + len(buf.to_bytearray())]),
                   "%s %s slot at %d" % (tag, k, off))

# One connection, 64 in flight (both reply styles).
for structured in (True, False):
    h = connect("base@one-%d" % structured, structured=structured)
    run({"one": (h, bytearray(base))}, 64, "one-%d" % structured)
    h.shutdown()

# Four clients at once, 32 in flight each, interleaved.
hm = {
    "ip2": (connect("base", src="127.0.0.2"), bytearray(base)),
    "ip3": (connect("base", src="127.0.0.3", structured=False), bytearray(base)),
    "idA": (connect("base@cA"), bytearray(base)),
    "idB": (connect("base@cB", structured=False), bytearray(base)),
}
run(hm, 32, "four")
for k, (h, m) in hm.items():
    h.flush()
    h.shutdown()

# 32 connections of one ID, each writing its own slot at once.
n = 32
hs = [connect("base@multi") for _ in range(n)]
slot = size // n
cookies = []
for i, h in enumerate(hs):
    cookies.append((h, h.aio_pwrite(nbd.Buffer.from_bytearray(pattern(("multi", i), slot)),
                                    i * slot)))
drain(hs)
for h, c in cookies:
    check(h.aio_command_completed(c), "multi write did not complete")
for h in hs:
    h.flush()
h = connect("base@multi")
for i in range(n):
    check_data(h.pread(slot, i * slot), pattern(("multi", i), slot), "multi slot %d" % i)
for x in hs + [h]:
    x.shutdown()
PY
stop_nbdsrv || fail "nbdsrv exited with $? on SIGTERM"
