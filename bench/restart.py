#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
# bench/restart.py: how long a restart of nbdsrv takes until N clients
# with long overlay histories are all served again.
# See bench/restart.sh and bench/README.md.
import glob, os, shutil, signal, socket, struct, subprocess, sys, threading
import time, zlib
import nbd

nbdsrv, workdir, n, records = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
img = os.path.join(workdir, "base.img")
ovdir = os.path.join(workdir, "ov")

def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p

def start(port, extra=()):
    log = open(os.path.join(workdir, "nbdsrv.log"), "a")
    p = subprocess.Popen([nbdsrv, "-f", "-l", "127.0.0.1:%d" % port, "-e", "b=" + img,
                          "-o", ovdir, "--control-socket", "none", *extra],
                         stdout=log, stderr=log)
    return p

def connect(port, ident, deadline):
    while True:
        try:
            h = nbd.NBD(); h.connect_uri("nbd://127.0.0.1:%d/b@%s" % (port, ident)); return h
        except nbd.Error:
            if time.monotonic() > deadline: raise
            time.sleep(0.01)

def serve_all(port, t0):
    """Every client connects and reads one block; seconds from t0 until the last is served."""
    ids = ["c%04d" % i for i in range(n)]
    done = []
    def worker(part):
        for ident in part:
            h = connect(port, ident, t0 + 120)
            h.pread(4096, 0); h.shutdown()
        done.append(time.monotonic())
    ts = [threading.Thread(target=worker, args=(ids[k::8],)) for k in range(8)]
    for t in ts: t.start()
    for t in ts: t.join()
    return max(done) - t0

def map_sizes():
    s = [os.path.getsize(f) for f in glob.glob(os.path.join(ovdir, "b", "*.map"))]
    return sum(s) / len(s) / 1024, max(s) / 1024

# One overlay made by the server, then its journal lengthened to a long
# history of small flushes (one record per batch, as a client flushing
# after every write leaves it), then copied to N client IDs.
os.makedirs(workdir, exist_ok=True)
shutil.rmtree(ovdir, ignore_errors=True)
with open(img, "wb") as f: f.truncate(64 << 20)
port = free_port()
p = start(port, ["--journal-max", "0"])
h = connect(port, "seed", time.monotonic() + 30); h.pwrite(b"x" * 4096, 0); h.flush(); h.shutdown()
p.send_signal(signal.SIGKILL); p.wait()
seed = os.path.join(ovdir, "b", "seed")
with open(seed + ".map", "r+b") as f:
    f.seek(0, 2)
    buf = bytearray()
    for i in range(records):
        rec = struct.pack("<QII", i % 64, 1, 1 + (i & 1))
        buf += struct.pack("<IIII", 0x424c564f, 1, zlib.crc32(rec), 0) + rec
    f.write(buf)
for i in range(n):
    shutil.copyfile(seed + ".map", os.path.join(ovdir, "b", "c%04d.map" % i))
    with open(os.path.join(ovdir, "b", "c%04d.data" % i), "wb") as f:
        f.truncate(os.path.getsize(seed + ".data"))   # sparse: content is not read
os.remove(seed + ".map"); os.remove(seed + ".data")
avg, mx = map_sizes()
print("%d overlays, map files %.0f KiB each (a history of %d flushes)" % (n, avg, records))

# Restart 1: the long journals are replayed, then compacted in the background.
os.sync()
t0 = time.monotonic(); p = start(port)
t = serve_all(port, t0)
print("restart with long journals: all %d clients served %.2f s after the start" % (n, t))
deadline = time.monotonic() + 120
while time.monotonic() < deadline:
    out = open(os.path.join(workdir, "nbdsrv.log")).read()
    if out.count("compacted") >= n or map_sizes()[1] < 64: break
    time.sleep(0.5)
time.sleep(3)   # let the janitor close them (idle-close) too
p.send_signal(signal.SIGKILL); p.wait()
avg, mx = map_sizes()
print("after it: map files %.1f KiB each, %.1f KiB at most" % (avg, mx))

# Restart 2: bounded journals.
os.sync()
t0 = time.monotonic(); p = start(port)
t = serve_all(port, t0)
print("restart with compacted journals: all %d clients served %.2f s after the start" % (n, t))
p.send_signal(signal.SIGTERM); p.wait()
