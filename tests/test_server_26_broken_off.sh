#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# test_server_26_broken_off: clients that break off.  Connections that stop (close,
# or reset) in the middle of every unit of the protocol: the client
# flags, an option header, option data, a request header, a write
# payload; a client with 64 requests in flight (reads, writes, flushes)
# that vanishes in the middle of a write payload; a client that sends
# megabytes of requests without reading a reply and then resets.  After
# each, the server is up, a well-behaved client is served, nothing the
# broken clients never finished sending reached their overlays, and
# after a SIGTERM the server exits 0 (so no connection was left behind
# half-closed).
. "$(dirname "$0")/functions.sh"

make_image "$TESTDIR/base.img" 16
srv_args=(-e base="$TESTDIR/base.img" -o "$TESTDIR/ov")
start_nbdsrv "${srv_args[@]}"
export PORT

/usr/bin/python3 "$srcdir/server-lib.py" "$TESTDIR" <<'PY' || fail "broken-off clients"
tdir = sys.argv[1]
base = open(tdir + "/base.img", "rb").read()
M = 1 << 20

def hard_close(r):
    r.s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    r.close()

good = connect("base@good")

def still_serving(what):
    d = pattern(what, 5000)
    good.pwrite(d, 12345)
    check_data(good.pread(5000, 12345), d, "good client after: " + what)

name = b"base@broken"
go_data = struct.pack(">I", len(name)) + name + struct.pack(">H", 0)
opt_go = struct.pack(">QII", IHAVEOPT, OPT_GO, len(go_data)) + go_data
req = struct.pack(">IHHQQI", REQUEST_MAGIC, 0, CMD_WRITE, 1, 0, 4096)
cuts = [
    ("client flags", b"", struct.pack(">I", 3)[:2]),
    ("option header", struct.pack(">I", 3), opt_go[:9]),
    ("option data", struct.pack(">I", 3), opt_go[:16 + 7]),
]
for what, before, partial in cuts:
    for close in ("close", "reset"):
        r = Raw()
        r.greeting(client_flags=None)
        r.send(before + partial)
        time.sleep(0.05)
        hard_close(r) if close == "reset" else r.close()
        still_serving("%s cut (%s)" % (what, close))

for what, partial in (("request header", req[:11]), ("write payload", req + b"w" * 1000)):
    for close in ("close", "reset"):
        r = raw_session("base@broken")
        r.send(partial)
        time.sleep(0.05)
        hard_close(r) if close == "reset" else r.close()
        still_serving("%s cut (%s)" % (what, close))

# 64 requests in flight, then gone in the middle of a write payload.
for round_ in range(5):
    r = raw_session("base@inflight")
    reqs = b""
    for i in range(64):
        kind = i % 4
        if kind == 0:
            reqs += struct.pack(">IHHQQI", REQUEST_MAGIC, 0, CMD_READ, i, i * 65536, 65536)
        elif kind == 1:
            reqs += struct.pack(">IHHQQI", REQUEST_MAGIC, 0, CMD_WRITE, i, M + i * 4096, 4096) + b"i" * 4096
        elif kind == 2:
            reqs += struct.pack(">IHHQQI", REQUEST_MAGIC, 0, CMD_FLUSH, i, 0, 0)
        else:
            reqs += struct.pack(">IHHQQI", REQUEST_MAGIC, 0, CMD_READ, i, 2 * M, M)
    reqs += struct.pack(">IHHQQI", REQUEST_MAGIC, 0, CMD_WRITE, 99, 8 * M, 256 * 1024) + b"z" * 1000
    r.send(reqs)
    time.sleep(0.02 * round_)
    hard_close(r) if round_ % 2 else r.close()
    still_serving("64 in flight, cut in a payload (round %d)" % round_)

# Megabytes of requests, no reply ever read, then a reset.
r = raw_session("base@greedy")
r.s.setblocking(False)
sent = 0
try:
    for i in range(20000):
        r.s.send(struct.pack(">IHHQQI", REQUEST_MAGIC, 0, CMD_READ, i, (i % 256) * 65536, 65536))
        sent += 1
except BlockingIOError:
    pass
log("greedy client queued %d reads before its socket filled" % sent)
hard_close(r)
still_serving("a greedy client reset")

# What the broken clients never finished never reached their overlays.
h = connect("base@broken")
check_data(h.pread(8192, 0), base[:8192], "unfinished write reached the overlay")
h.shutdown()
h = connect("base@inflight")
check_data(h.pread(4096, 8 * M), base[8 * M:8 * M + 4096], "cut-off 256 KiB write reached the overlay")
h.shutdown()
good.shutdown()
PY
kill -0 "$SRV_PID" || fail "nbdsrv died"
# Every connection was torn down: a SIGTERM finishes promptly and cleanly.
stop_nbdsrv || fail "nbdsrv exited with $? on SIGTERM"
exit 0
