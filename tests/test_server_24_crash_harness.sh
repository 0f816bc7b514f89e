#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# test_server_24_crash_harness: the crash harness.  Four clients (own IDs, own regions
# of the disk, one at 127.0.0.2 by address) write aligned and unaligned
# data, zero, trim, flush and use FUA, each one request at a time, while
# the harness kill -9s the server at a random moment.  After every
# restart each 4 KiB block must hold one of the states the client's own
# requests could have left: its content at the last FLUSH (or FUA write
# covering it) that was acknowledged, or the state after one of the
# requests sent since (acknowledged or in flight).  So a flushed or FUA
# write is never lost, and no block ever holds data nobody wrote.
# NBDROOT_CRASH_ITERATIONS (default 50) bounds the number of crashes.
. "$(dirname "$0")/functions.sh"

make_image "$TESTDIR/base.img" 16
srv_args=(-e base="$TESTDIR/base.img" -o "$TESTDIR/ov")
PORT=$(free_port)
export PORT NBDSRV TESTDIR
export ITERATIONS=${NBDROOT_CRASH_ITERATIONS:-50}

/usr/bin/python3 "$srcdir/server-lib.py" "$TESTDIR" <<'PY' || fail "crash harness"
import threading
import signal
import subprocess
tdir = sys.argv[1]
base = open(tdir + "/base.img", "rb").read()
B = 4096
NB = len(base) // B
iterations = int(os.environ["ITERATIONS"])
rnd = random.Random(int(os.environ.get("NBDROOT_CRASH_SEED", "24")))
srv = None

def start_server():
    global srv
    pidfile = tdir + "/crash.pid"
    if os.path.exists(pidfile):
        os.unlink(pidfile)
    srv = subprocess.Popen([os.environ["NBDSRV"], "-f", "-l", "127.0.0.1:%d" % PORT,
                            "-P", pidfile, "-e", "base=" + tdir + "/base.img",
                            "-o", tdir + "/ov"],
                           stdout=open(tdir + "/nbdsrv.log", "a"), stderr=subprocess.STDOUT)
    wait_for(lambda: os.path.exists(pidfile), "nbdsrv start")

class Client:
    """One client with its own region [first, first+nblocks) and a model:
    per block, the states it may be in after a crash."""
    def __init__(self, name, export, src, first, nblocks):
        self.name, self.export, self.src = name, export, src
        self.first, self.nblocks = first, nblocks
        self.cands = {b: [base[b * B:(b + 1) * B]] for b in range(first, first + nblocks)}
        self.ops = 0

    def cur(self, b):
        return self.cands[b][-1]

    def run(self, seed):
        r = random.Random(seed)
        try:
            h = connect(self.export, src=self.src)
        except Exception:
            return
        try:
            while True:
                self.one_op(h, r)
        except nbd.Error:
            pass          # the server was killed
        except Exception as e:
            self.failure = e

    def one_op(self, h, r):
        k = r.random()
        lo, hi = self.first * B, (self.first + self.nblocks) * B
        if k < 0.10:
            # FLUSH: once acknowledged, the current state is the only one.
            h.flush()
            for b in self.cands:
                self.cands[b] = [self.cur(b)]
            return
        if k < 0.15:
            # Large enough for the server's asynchronous write path.
            off = r.randrange(lo, hi - 64 * B, B)
            ln = 64 * B
        elif k < 0.55:
            off = r.randrange(lo, hi - 4 * B, B)
            ln = r.choice([B, 2 * B, 4 * B])
        elif k < 0.80:
            off = r.randrange(lo, hi - 3 * B)
            ln = r.randrange(1, 2 * B)
        else:
            off = r.randrange(lo, hi - 8 * B, B)
            ln = r.choice([B, 8 * B]) - (r.randrange(0, 2) * 100)
        kind = "write" if k < 0.9 else ("zero" if k < 0.95 else "trim")
        fua = r.random() < 0.15 and kind != "trim"
        data = pattern((self.name, self.ops), ln) if kind == "write" else bytes(ln)
        self.ops += 1
        # The state each touched block is in once this request is done; a
        # trim may leave a block as it was (partial blocks are not freed)
        # or zeroed.
        touched = range(off // B, (off + ln - 1) // B + 1)
        for b in touched:
            blk = bytearray(self.cur(b))
            s, e = max(off, b * B), min(off + ln, (b + 1) * B)
            blk[s - b * B:e - b * B] = data[s - off:e - off]
            self.cands[b].append(bytes(blk))
        flags = nbd.CMD_FLAG_FUA if fua else 0
        if kind == "write":
            h.pwrite(data, off, flags)
        elif kind == "zero":
            h.zero(ln, off, flags)
        else:
            # A trim only promises that the range reads as what it was or
            # as zeroes; whole blocks here, partial ones stay as they were.
            for b in touched:
                s, e = max(off, b * B), min(off + ln, (b + 1) * B)
                if e - s < B:
                    self.cands[b][-1] = self.cands[b][-2]
            h.trim(ln, off)
        if fua:
            for b in touched:
                self.cands[b] = [self.cur(b)]

    def verify(self, it):
        h = connect(self.export, src=self.src)
        got = h.pread(self.nblocks * B, self.first * B)
        h.shutdown()
        for i in range(self.nblocks):
            b = self.first + i
            g = got[i * B:(i + 1) * B]
            check(g in self.cands[b],
                  "crash %d, client %s, block %d: content is none of the %d states "
                  "its requests could leave (first difference from the last one at %s)"
                  % (it, self.name, b, len(self.cands[b]), first_diff(g, self.cur(b))))
            # What survived the crash is where the next round starts.
            self.cands[b] = [g]

import atexit
# Whatever happens, no server is left behind.
atexit.register(lambda: srv is not None and srv.poll() is None and srv.kill())

per = NB // 4
clients = [Client("c0", "base@c0", None, 0, per),
           Client("c1", "base@c1", None, per, per),
           Client("c2", "base", "127.0.0.2", 2 * per, per),
           Client("c3", "base@c3", "127.0.0.3", 3 * per, per)]
start_server()
total_ops = 0
for it in range(iterations):
    threads = []
    for c in clients:
        before = c.ops
        t = threading.Thread(target=c.run, args=(rnd.random(),))
        t.start()
        threads.append(t)
    time.sleep(rnd.uniform(0.05, 0.6))
    srv.send_signal(signal.SIGKILL)
    srv.wait()
    for t in threads:
        t.join(30)
        check(not t.is_alive(), "a client hung after the server was killed")
    for c in clients:
        check(not hasattr(c, "failure"), "client %s: %r" % (c.name, getattr(c, "failure", None)))
    start_server()
    for c in clients:
        c.verify(it)
log("%d crashes, %d requests, every flushed and FUA write intact" %
    (iterations, sum(c.ops for c in clients)))
srv.send_signal(signal.SIGTERM)
check(srv.wait(30) == 0, "nbdsrv exit status on SIGTERM")
check(open(tdir + "/base.img", "rb").read() == base, "base image modified")
PY
exit 0
