#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# test_server_27_load_2000: load.  2000 clients at once (NBDROOT_LOAD_CLIENTS), each
# with its own identity and so its own overlay, from ten source
# addresses: all connect and stay connected, each writes its own pattern
# (aligned blocks and an unaligned piece) with its requests in flight
# together with everyone else's, flushes, reads it back; zero errors.
# Then every client reconnects and finds its data.  The server's RSS is
# reported.  Needs about 3 open files per client on each side.
. "$(dirname "$0")/functions.sh"

N=${NBDROOT_LOAD_CLIENTS:-2000}
need=$((3 * N + 100))
if [ "$(ulimit -n)" -lt "$need" ]; then
  ulimit -n "$need" 2>/dev/null ||
    skip "open file limit $(ulimit -n) is below $need and cannot be raised (ulimit -n)"
fi
make_image "$TESTDIR/base.img" 64
start_nbdsrv -e base="$TESTDIR/base.img" -o "$TESTDIR/ov"
export PORT SRV_PID N

/usr/bin/python3 "$srcdir/server-lib.py" "$TESTDIR" <<'PY' || fail "load"
tdir = sys.argv[1]
N = int(os.environ["N"])
pid = int(os.environ["SRV_PID"])
base = open(tdir + "/base.img", "rb").read()
B = 4096

def rss_kib():
    for line in open("/proc/%d/status" % pid):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])

def drain(hs, what, timeout=300):
    end = time.monotonic() + timeout
    while True:
        busy = [h for h in hs if h.aio_in_flight()]
        if not busy:
            return
        check(time.monotonic() < end, "%s: requests still in flight after %d s" % (what, timeout))
        for h in busy:
            h.poll(0)
        busy[0].poll(10)

def layout(i):
    # Client i's own places: two whole blocks and an unaligned piece.
    off = (i * 3 % (len(base) // B - 8)) * B
    return [(off, pattern((i, 0), 2 * B)), (off + 2 * B + 100, pattern((i, 1), 1500))]

t0 = time.monotonic()
rss0 = rss_kib()
hs = []
for i in range(N):
    h = nbd.NBD()
    h.set_export_name("base@load%04d" % i)
    s = tcp_socket("127.0.3.%d" % (i % 10 + 1))
    s.settimeout(None)
    h.connect_socket(s.detach())
    hs.append(h)
t_conn = time.monotonic() - t0
rss1 = rss_kib()
cmds = []
for i, h in enumerate(hs):
    for off, d in layout(i):
        cmds.append((h, h.aio_pwrite(nbd.Buffer.from_bytearray(bytearray(d)), off)))
    cmds.append((h, h.aio_flush()))
drain(hs, "writes")
errors = sum(1 for h, c in cmds if not h.aio_command_completed(c))
reads = []
for i, h in enumerate(hs):
    for off, d in layout(i):
        b = nbd.Buffer(len(d))
        reads.append((h, b, d, h.aio_pread(b, off)))
drain(hs, "reads")
for h, b, d, c in reads:
    if not h.aio_command_completed(c) or bytes(b.to_bytearray()) != d:
        errors += 1
t_all = time.monotonic() - t0
rss2 = rss_kib()
for h in hs:
    h.shutdown()
log("%d clients: connected in %.1f s, all done in %.1f s, %d errors" % (N, t_conn, t_all, errors))
log("server RSS: %d KiB before, %d KiB with all connected, %d KiB after their I/O (%.1f KiB per client)"
    % (rss0, rss1, rss2, (rss2 - rss0) / N))
check(errors == 0, "%d wrong or failed requests" % errors)
# Every client again, one by one, finds its own data.
for i in range(N):
    h = connect("base@load%04d" % i, src="127.0.3.%d" % (i % 10 + 1))
    for off, d in layout(i):
        check_data(h.pread(len(d), off), d, "client %d after reconnecting" % i)
    h.shutdown()
PY
stop_nbdsrv || fail "nbdsrv exited with $? on SIGTERM"
exit 0
