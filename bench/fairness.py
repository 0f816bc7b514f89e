# SPDX-License-Identifier: GPL-2.0-or-later
# bench/fairness.py NBDSRV DIR: see bench/fairness.sh.
import os, socket, struct, subprocess, sys, threading, time
import nbd

srv, d = sys.argv[1], sys.argv[2]
MiB = 1 << 20
img = os.path.join(d, "base.img")
with open(img, "wb") as f:
    for i in range(1024):
        f.write(os.urandom(MiB))
s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
p = subprocess.Popen([srv, "-f", "-l", "127.0.0.1:%d" % port, "-e", "base=" + img,
                      "-o", os.path.join(d, "ov"), "--threads", "1", "--no-splice",
                      "--control-socket", "none"],
                     stdout=subprocess.DEVNULL, stderr=open(os.path.join(d, "log"), "w"))

def connect(name, meta=False):
    for _ in range(100):
        try:
            h = nbd.NBD()
            if meta:
                h.add_meta_context(nbd.CONTEXT_BASE_ALLOCATION)
            h.connect_uri("nbd://127.0.0.1:%d/%s" % (port, name))
            return h
        except nbd.Error:
            time.sleep(0.05)
    raise SystemExit("cannot connect")

try:
    frag = connect("base@frag", meta=True)
    # Every other block of the whole 1 GiB disk: 131072 runs in the map.
    for b in range(0, 262144, 2):
        frag.aio_pwrite(b"x" * 4096, b * 4096)
        while frag.aio_in_flight() > 64:
            frag.poll(-1)
    while frag.aio_in_flight():
        frag.poll(-1)
    frag.flush()

    victim = connect("base@victim")

    def latencies(n=2000):
        lat = []
        for i in range(n):
            t = time.perf_counter()
            victim.pread(4096, ((i * 7919) % 262144) * 4096)
            lat.append(time.perf_counter() - t)
        lat.sort()
        return lat[len(lat) // 2] * 1e3, lat[len(lat) * 99 // 100] * 1e3, lat[-1] * 1e3

    def report(what, r):
        print("%-34s p50 %7.3f ms  p99 %7.3f ms  max %7.3f ms" % ((what,) + r), flush=True)

    report("4 KiB reads, no flood", latencies())

    stop = False
    def status_flood():
        while not stop:
            frag.block_status(1024 * MiB - 4096, 0,
                              lambda *a: 0)
    t = threading.Thread(target=status_flood); t.start()
    time.sleep(0.2)
    report("during a BLOCK_STATUS flood", latencies())
    stop = True; t.join()

    r = socket.create_connection(("127.0.0.1", port))
    r.recv(18); r.sendall(struct.pack(">I", 3))
    n = b"base@reader"
    r.sendall(struct.pack(">QII", 0x49484156454F5054, 7, 6 + len(n)) + struct.pack(">I", len(n)) + n + b"\0\0")
    time.sleep(0.3)
    r.sendall(b"".join(struct.pack(">IHHQQI", 0x25609513, 0, 0, i, 0, 32 * MiB) for i in range(40)))
    time.sleep(0.3)
    report("during 40 unread 32 MiB READs", latencies())
    r.close()
finally:
    p.terminate(); p.wait()
