#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
# nbdroot benchmark: nbdsrv against nbd-server, nbdkit and qemu-nbd, all
# serving the same page-cached, fully allocated random image with a
# copy-on-write overlay, on 127.0.0.1, measured in the same run.
#
# Run through bench/bench.sh (it picks the interpreter that has libnbd).
# Timings on shared machines are noisy: read the ratios, not the absolute
# figures, and compare only figures from the same run.

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import nbd

from serverproc import (RssSampler, cpu_seconds, free_port, rss_kib, status_kib,
                        stop_tree, wait_listen, wait_pidfile)

MiB = 1 << 20


def log(*a):
    print(*a, file=sys.stderr, flush=True)


# ---- the servers

class Server:
    name = "?"
    identity = ""

    def __init__(self, work, image):
        self.work = os.path.join(work, self.name)
        os.makedirs(self.work, exist_ok=True)
        self.image = image
        self.port = free_port()
        self.proc = None
        self.pid = None

    def uri(self, ident):
        return "nbd://127.0.0.1:%d/%s" % (self.port, self.export(ident))

    def stop(self):
        stop_tree(self.pid, self.proc, 20)


class Nbdsrv(Server):
    name = "nbdsrv"
    identity = "NAME@ID: one overlay per client ID"

    def start(self):
        pidfile = os.path.join(self.work, "pid")
        self.proc = subprocess.Popen(
            [NBDSRV, "-f", "-l", "127.0.0.1:%d" % self.port, "-P", pidfile,
             "-e", "bench=" + self.image, "-o", os.path.join(self.work, "ov")],
            stdout=open(os.path.join(self.work, "log"), "w"), stderr=subprocess.STDOUT)
        self.pid = self.proc.pid
        wait_pidfile(pidfile)
        wait_listen(self.port, self.proc)

    def export(self, ident):
        return "bench@" + ident


class NbdServer(Server):
    name = "nbd-server"
    identity = "per connection: each connection (a forked process) gets a fresh diff file"

    def start(self):
        cfg = os.path.join(self.work, "config")
        pidfile = os.path.join(self.work, "pid")
        with open(cfg, "w") as f:
            f.write("[generic]\n    listenaddr = 127.0.0.1\n    port = %d\n"
                    "    allowlist = true\n"
                    "[bench]\n    exportname = %s\n    copyonwrite = true\n"
                    "    flush = true\n" % (self.port, self.image))
        # nbd-server daemonizes; the pid file names the daemon.
        subprocess.run(["nbd-server", "-C", cfg, "-p", pidfile], cwd=self.work,
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       timeout=30)
        self.pid = wait_pidfile(pidfile)
        wait_listen(self.port)

    def export(self, ident):
        return "bench"


class Nbdkit(Server):
    name = "nbdkit-cow"
    identity = "none: one overlay shared by all clients"

    def start(self):
        pidfile = os.path.join(self.work, "pid")
        env = dict(os.environ, TMPDIR=self.work)
        self.proc = subprocess.Popen(
            ["nbdkit", "-f", "-i", "127.0.0.1", "-p", str(self.port), "-P", pidfile,
             "--filter=cow", "file", self.image],
            env=env, stdout=open(os.path.join(self.work, "log"), "w"),
            stderr=subprocess.STDOUT)
        self.pid = self.proc.pid
        wait_pidfile(pidfile)
        wait_listen(self.port, self.proc)

    def export(self, ident):
        return ""


class QemuNbd(Server):
    name = "qemu-nbd"
    identity = "none: one temporary snapshot shared by all clients"

    def start(self, shared=256):
        pidfile = os.path.join(self.work, "pid")
        env = dict(os.environ, TMPDIR=self.work)
        self.proc = subprocess.Popen(
            ["qemu-nbd", "-f", "raw", "--snapshot", "-t", "-b", "127.0.0.1",
             "-p", str(self.port), "-x", "bench", "--shared=%d" % shared,
             "--pid-file=" + pidfile, self.image],
            env=env, stdout=open(os.path.join(self.work, "log"), "w"),
            stderr=subprocess.STDOUT)
        self.pid = self.proc.pid
        wait_pidfile(pidfile)
        wait_listen(self.port, self.proc)

    def export(self, ident):
        return "bench"


# ---- the measurements

def run(cmd, timeout):
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=timeout, text=True)
    if r.returncode != 0:
        raise RuntimeError("%s: exit %d: %s" % (cmd[0], r.returncode, r.stderr.strip()[-500:]))
    return r.stdout


def seq_read(srv, ident, connections, size):
    """MiB/s, and the server's CPU milliseconds per GiB read."""
    cmd = ["nbdcopy", srv.uri(ident), "null:"]
    if connections:
        cmd.insert(1, "--connections=%d" % connections)
    cpu0 = cpu_seconds(srv.pid)
    t0 = time.monotonic()
    run(cmd, timeout=120)
    elapsed = time.monotonic() - t0
    cpu = cpu_seconds(srv.pid) - cpu0
    return size / MiB / elapsed, cpu * 1000.0 / (size / float(1 << 30))


def fio(srv, ident, rw, runtime, size):
    cpu0 = cpu_seconds(srv.pid)
    out = run(["fio", "--output-format=json", "--name=" + rw, "--ioengine=nbd",
               "--uri=" + srv.uri(ident), "--rw=" + rw, "--bs=4k", "--iodepth=32",
               "--size=%d" % size, "--runtime=%d" % runtime, "--time_based",
               "--randrepeat=0"], timeout=runtime + 60)
    cpu = cpu_seconds(srv.pid) - cpu0
    j = json.loads(out[out.index("{"):])
    d = j["jobs"][0]["read" if rw == "randread" else "write"]
    ios = d["total_ios"]
    return d["iops"], (cpu * 1e6 / ios) if ios else float("nan")


def many_clients(srv, n, size, ops=4):
    """n concurrent connections, each its own identity, each writing ops
    4 KiB blocks at offsets of its own then reading them back."""
    rss0 = rss_kib(srv.pid)
    sampler = RssSampler(srv.pid, 0.05)
    sampler.start()
    t0 = time.monotonic()
    hs = []
    errors = 0
    try:
        for i in range(n):
            h = nbd.NBD()
            h.connect_uri(srv.uri("c%d" % i))
            hs.append(h)
        stride = size // (n * ops)
        stride -= stride % 4096
        bufs = []
        for i, h in enumerate(hs):
            for k in range(ops):
                off = (i * ops + k) * stride
                data = bytes([(i + k) % 251 + 1]) * 4096
                bufs.append((h, off, data, h.aio_pwrite(nbd.Buffer.from_bytearray(data), off)))
        _drain(hs)
        reads = []
        for h, off, data, c in bufs:
            if not h.aio_command_completed(c):
                errors += 1
            b = nbd.Buffer(4096)
            reads.append((h, data, b, h.aio_pread(b, off)))
        _drain(hs)
        for h, data, b, c in reads:
            if not h.aio_command_completed(c) or bytes(b.to_bytearray()) != data:
                errors += 1
        elapsed = time.monotonic() - t0
        rss_all = rss_kib(srv.pid)
    finally:
        peak = sampler.stop()
        for h in hs:
            try:
                h.shutdown()
            except nbd.Error:
                pass
    return elapsed, rss0, rss_all, peak, errors


def _drain(hs, timeout=120):
    end = time.monotonic() + timeout
    while True:
        busy = [h for h in hs if h.aio_in_flight()]
        if not busy:
            return
        if time.monotonic() > end:
            raise RuntimeError("requests still in flight after %d s" % timeout)
        for h in busy:
            h.poll(0)
        busy[0].poll(10)


def make_image(path, size):
    log("creating %d MiB random image %s" % (size // MiB, path))
    with open(path, "wb") as f:
        for _ in range(size // (16 * MiB)):
            f.write(os.urandom(16 * MiB))
        f.flush()
        os.fsync(f.fileno())
    with open(path, "rb") as f:      # into the page cache
        while f.read(16 * MiB):
            pass


def main():
    global NBDSRV
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--runtime", type=int, default=10)
    ap.add_argument("--clients", type=int, default=200)
    ap.add_argument("--servers", default="nbdsrv,nbd-server,nbdkit-cow,qemu-nbd")
    ap.add_argument("--workdir", default=None)
    args = ap.parse_args()
    NBDSRV = os.environ.get("NBDSRV", "nbdsrv")
    size = args.size_mib * MiB

    work = tempfile.mkdtemp(prefix="nbdroot-bench.", dir=args.workdir)
    classes = {c.name: c for c in (Nbdsrv, NbdServer, Nbdkit, QemuNbd)}
    names = [s for s in args.servers.split(",") if s]
    results = {}
    t_start = time.monotonic()
    try:
        image = os.path.join(work, "base.img")
        make_image(image, size)
        for name in names:
            srv = classes[name](work, image)
            r = results[name] = {}
            log("== %s" % name)
            try:
                srv.start()
                r["seq_multi"], r["seq_multi_cpu"] = seq_read(srv, "seq-m", 0, size)
                r["seq_one"], r["seq_one_cpu"] = seq_read(srv, "seq-1", 1, size)
                r["rr_iops"], r["rr_cpu"] = fio(srv, "rr", "randread", args.runtime, size)
                r["rw_iops"], r["rw_cpu"] = fio(srv, "rw", "randwrite", args.runtime, size)
                (r["mc_time"], r["mc_rss0"], r["mc_rss"], r["mc_peak"],
                 r["mc_err"]) = many_clients(srv, args.clients, size)
                r["mc_per"] = (r["mc_rss"] - r["mc_rss0"]) / float(args.clients)
                r["hwm"] = status_kib(srv.pid, "VmHWM")
            except Exception as e:       # report, go on with the others
                log("%s: %s" % (name, e))
                r["error"] = str(e)
            finally:
                srv.stop()
            log("   %s" % {k: (round(v, 2) if isinstance(v, float) else v)
                           for k, v in r.items()})
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report(results, names, args, time.monotonic() - t_start)


ROWS = [
    # key, label, unit/format, higher is better
    ("seq_multi", "seq read, nbdcopy default conns", "MiB/s", True),
    ("seq_multi_cpu", "  server CPU per GiB read", "ms", False),
    ("seq_one", "seq read, nbdcopy --connections=1", "MiB/s", True),
    ("seq_one_cpu", "  server CPU per GiB read", "ms", False),
    ("rr_iops", "4K randread QD32", "IOPS", True),
    ("rr_cpu", "  server CPU per randread", "us/req", False),
    ("rw_iops", "4K randwrite QD32 (overlay)", "IOPS", True),
    ("rw_cpu", "  server CPU per randwrite", "us/req", False),
    ("mc_time", "%d clients: connect + 4 writes + 4 reads", "s", False),
    ("mc_rss", "  server RSS with all clients connected", "MiB", False),
    ("mc_peak", "  server RSS peak during it (sampled)", "MiB", False),
    ("mc_per", "  RSS per connected client", "KiB", False),
    ("mc_err", "  wrong or failed requests", "count", False),
    ("hwm", "server main process VmHWM, whole run", "MiB", False),
]


def fmt(key, v):
    if v is None:
        return "n/a"
    if key in ("mc_rss", "mc_peak", "hwm"):
        return "%.1f" % (v / 1024.0)
    if key in ("rr_iops", "rw_iops", "mc_err"):
        return "%d" % v
    return "%.2f" % v if v < 100 else "%.0f" % v


def ratio(mine, peer):
    """nbdsrv's figure over a peer's, or n/a where either is missing."""
    if mine is None or not peer:
        return "n/a"
    r = mine / peer
    return "%.2g" % r if r < 0.1 else "%.2f" % r


def report(results, names, args, elapsed):
    w0 = 44
    head = ["%-*s %-6s" % (w0, "measure", "unit")] + ["%11s" % n for n in names]
    peers = [n for n in names if n != "nbdsrv"]
    ratios = "nbdsrv" in names and peers
    if ratios:
        head += ["%12s" % ("/" + p) for p in peers] + ["%12s" % "nbdsrv/best"]
    print("nbdroot bench: %d MiB image, fio runtime %d s, %d clients, %.0f s total"
          % (args.size_mib, args.runtime, args.clients, elapsed))
    print(" ".join(head))
    for key, label, unit, higher in ROWS:
        if "%d" in label:
            label = label % args.clients
        line = ["%-*s %-6s" % (w0, label, unit)]
        for n in names:
            line.append("%11s" % fmt(key, results.get(n, {}).get(key)))
        if ratios and key != "mc_err":
            mine = results["nbdsrv"].get(key)
            vals = [results[p].get(key) for p in peers]
            for v in vals:
                line.append("%12s" % ratio(mine, v))
            known = [v for v in vals if v]
            best = (max(known) if higher else min(known)) if known else None
            line.append("%12s" % ratio(mine, best))
        print(" ".join(line))
    if ratios:
        print("ratio columns: nbdsrv / that peer, and nbdsrv / the best peer "
              "(higher is better for MiB/s and IOPS, lower for us/req, s and MiB)")
    for n in names:
        c = {x.name: x for x in (Nbdsrv, NbdServer, Nbdkit, QemuNbd)}[n]
        err = results.get(n, {}).get("error")
        print("%-11s identity: %s%s" % (n, c.identity, ("; ERROR: " + err) if err else ""))


if __name__ == "__main__":
    main()
