#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
# nbdroot boot storm: N clients replay a recorded Debian boot at once
# against nbdsrv, nbd-server and qemu-nbd serving the same image, in the
# same run; one side-by-side table.  Run through bench/boot-storm.sh.
#
# Every server gets a fresh overlay directory and the image in the page
# cache; the replay (bench/replay) starts all N clients at once and
# reports total time, per-request and first-request latency, errors; this
# script adds the server's CPU time (utime+stime over its process tree,
# plus reaped children) and its peak RSS (sum of VmRSS over the tree,
# sampled every 0.25 s).  Timings on shared machines are noisy: compare
# figures of the same run only.

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

from serverproc import RssSampler, cpu_seconds
from servers import SERVERS, image_size, make_image, warm

MiB = 1 << 20


def log(*a):
    print("boot-storm:", *a, file=sys.stderr, flush=True)


# How the servers are started: with --pin, on their CPUs.
SPAWN = {}


# ---- one run

def storm(srv, args):
    cmd = [REPLAY, "--json", "--verify", "-n", str(srv.n), "--port", str(srv.port),
           "--export", "root", "--timeout", str(args.timeout),
           "--depth", args.depth, "--threads", str(args.threads),
           "--ramp", str(args.ramp)]
    if srv.id_prefix:
        cmd += ["--id", srv.id_prefix]
    if args.pace:
        cmd.append("--pace")
    cmd.append(args.trace)
    cpu0 = cpu_seconds(srv.pid)
    sampler = RssSampler(srv.pid, 0.25)
    sampler.start()
    try:
        # With --pin the replay inherits this script's CPUs (main() set them).
        r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           timeout=args.timeout + 120)
    finally:
        peak = sampler.stop()
    cpu = cpu_seconds(srv.pid) - cpu0
    out = r.stdout.strip().splitlines()
    if not out or not out[-1].startswith("{"):
        raise RuntimeError("replay exited %d: %s" % (r.returncode, r.stderr.strip()[-400:]))
    res = json.loads(out[-1])
    res["server_cpu_s"] = cpu
    res["server_rss_mib"] = peak / 1024.0
    if r.stderr.strip():
        res["note"] = r.stderr.strip().splitlines()[-1][:200]
    return res


# ---- the table

def fmt_time(r, timeout):
    if r.get("error"):
        return "error"
    if r.get("timed_out"):
        return ">%d T/O" % timeout
    return "%.2f" % r["total_s"]


ROWS = [
    # key, label, unit, format
    ("total_s", "total time, all clients booted", "s", None),
    ("client_done_p50_s", "  time per client, p50", "s", "%.2f"),
    ("lat_p50_us", "request latency p50", "us", "%.0f"),
    ("lat_p99_us", "request latency p99", "us", "%.0f"),
    ("first_p99_us", "first-request latency p99", "us", "%.0f"),
    ("connect_p99_us", "connect (TCP+handshake) p99", "ms", "ms"),
    ("errors", "failed requests", "count", "%d"),
    ("failed", "clients failed", "count", "%d"),
    ("unfinished", "clients unfinished at the timeout", "count", "%d"),
    ("mismatches", "read back not the client's own data", "count", "%d"),
    ("server_cpu_s", "server CPU (utime+stime, tree)", "s", "%.2f"),
    ("server_rss_mib", "server RSS peak (sum over tree)", "MiB", "%.1f"),
    ("client_cpu_s", "replay client CPU", "s", "%.2f"),
]
RATIO_KEYS = ("total_s", "client_done_p50_s", "lat_p50_us", "lat_p99_us", "first_p99_us",
              "connect_p99_us", "server_cpu_s", "server_rss_mib")


def cell(key, r, timeout):
    if not r or r.get("error"):
        return "error" if r else "-"
    if key == "total_s":
        return fmt_time(r, timeout)
    v = r.get(key)
    if v is None:
        return "n/a"
    f = dict((k, f) for k, _, _, f in ROWS)[key]
    if f == "ms":
        return "%.1f" % (v / 1000.0)
    return f % v


def ratio(key, mine, peer, timeout):
    if not mine or not peer or mine.get("error") or peer.get("error"):
        return "-"
    a, b = mine.get(key), peer.get(key)
    if a is None or b is None:
        return "-"
    if key == "total_s":
        if mine.get("timed_out"):
            return "T/O"
        if peer.get("timed_out"):
            # the peer needed more than the timeout: a bound
            return "<%.3f" % (a / float(timeout))
    if peer.get("timed_out") and key != "server_rss_mib":
        return "(T/O)"
    if b == 0:
        return "-"
    return "%.3f" % (a / b)


def report(results, names, ns, args, meta):
    peers = [n for n in names if n != "nbdsrv"]
    w0 = 38
    print("nbdroot boot storm: %s" % meta)
    head = "%-*s %-5s" % (w0, "N / measure", "unit") + "".join("%12s" % n for n in names)
    if "nbdsrv" in names:
        head += "".join("%13s" % ("/" + p) for p in peers)
    print(head)
    for n in ns:
        print("N = %d" % n)
        for key, label, unit, _ in ROWS:
            line = "%-*s %-5s" % (w0, "  " + label, unit)
            for s in names:
                line += "%12s" % cell(key, results.get((s, n)), args.timeout)
            if "nbdsrv" in names:
                for p in peers:
                    line += "%13s" % (ratio(key, results.get(("nbdsrv", n)),
                                            results.get((p, n)), args.timeout)
                                      if key in RATIO_KEYS else "")
            print(line)
    print("ratio columns: nbdsrv / peer (lower is better; 0.2 = 5x faster); "
          "T/O: timed out after %d s" % args.timeout)
    for s in names:
        print("%-10s %s" % (s, SERVERS[s].overlay))
    for (s, n), r in sorted(results.items()):
        if r.get("error"):
            print("%s N=%d: ERROR %s" % (s, n, r["error"]))
        else:
            if r.get("unfinished"):
                print("%s N=%d: %d clients unfinished, %d of them still in TCP connect "
                      "or handshake" % (s, n, r["unfinished"], r["unfinished_connecting"]))
            if r.get("note"):
                print("%s N=%d: %s" % (s, n, r["note"]))
    # The targets the boot storm was built to check.
    tg = []

    def get(s, n):
        r = results.get((s, n))
        return r if r and not r.get("error") else None

    def speedup(n, peer, want):
        a, b = get("nbdsrv", n), get(peer, n)
        if not a or not b or a.get("timed_out"):
            return None
        tb = args.timeout if b.get("timed_out") else b["total_s"]
        x = tb / a["total_s"]
        extra = ""
        if args.ramp:
            # every client started by then: the ramp is the same for all
            r = args.ramp / 1000.0
            if a["total_s"] > r:
                extra = " (%s%.1fx without the %.1f s ramp)" % (
                    ">" if b.get("timed_out") else "", (tb - r) / (a["total_s"] - r), r)
        return "N=%d: %s%.1fx faster than %s%s (target >= %gx): %s" % (
            n, ">" if b.get("timed_out") else "", x, peer, extra, want,
            "met" if x >= want else "MISSED")
    # The speed targets are about throughput: a paced boot takes the
    # trace's time whatever the server.
    for n, peer, want in ((50, "nbd-server", 5), (200, "qemu-nbd", 3)):
        s = speedup(n, peer, want) if n in ns and not args.pace else None
        if s:
            tg.append(s)
    for n in ns:
        a = get("nbdsrv", n)
        if a:
            tg.append("N=%d: nbdsrv first-request p99 %.0f us (target < 1000 us): %s" % (
                n, a["first_p99_us"], "met" if a["first_p99_us"] < 1000 else "MISSED"))
    a = get("nbdsrv", 1000)
    if a and 1000 in ns:
        bad = a["errors"] + a["failed"] + a["unfinished"] + a["mismatches"]
        tg.append("N=1000: nbdsrv %s, %d errors (target: completes, 0 errors): %s" % (
            "completed" if not a["timed_out"] else "timed out", bad,
            "met" if bad == 0 and not a["timed_out"] else "MISSED"))
    for t in tg:
        print("target " + t)


def main():
    global NBDSRV, REPLAY
    ap = argparse.ArgumentParser()
    ap.add_argument("--trace", required=True)
    ap.add_argument("--image", help="the image to serve (default: random data, "
                    "the size the trace names)")
    ap.add_argument("--clients", default="50,200,1000")
    ap.add_argument("--servers", default="nbdsrv,nbd-server,qemu-nbd")
    ap.add_argument("--timeout", type=int, default=120, help="per run, seconds")
    ap.add_argument("--depth", default="trace")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--ramp", type=int, default=0,
                    help="start the clients over this many ms (default: all at once)")
    ap.add_argument("--pace", action="store_true",
                    help="keep the trace's think times (default: as fast as the server answers)")
    ap.add_argument("--pin", metavar="SERVER_CPUS/REPLAY_CPUS",
                    help="run the servers on some CPUs and the replay on the others, "
                    "e.g. 0/1 (default: all share all)")
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args()
    if args.pin:
        try:
            sv, rp = args.pin.split("/")
            args.server_cpus = {int(x) for x in sv.split(",")}
            args.replay_cpus = {int(x) for x in rp.split(",")}
            # This script (its RSS sampler too) keeps off the servers' CPUs.
            os.sched_setaffinity(0, args.replay_cpus)
            SPAWN["preexec_fn"] = lambda: os.sched_setaffinity(0, args.server_cpus)
        except (ValueError, OSError) as e:
            sys.exit("boot-storm: --pin %s: %s (want e.g. 0/1: server CPUs/replay CPUs)"
                     % (args.pin, e))
    NBDSRV = os.environ["NBDSRV"]
    REPLAY = os.environ["REPLAY"]
    ns = [int(x) for x in args.clients.split(",") if x]
    names = [s for s in args.servers.split(",") if s]
    for s in names:
        if s not in SERVERS:
            sys.exit("boot-storm: unknown server %s" % s)

    # Every client a socket (nbdsrv also overlay files and a pipe per client).
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = max(ns) * 8 + 256
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))

    work = tempfile.mkdtemp(prefix="nbdroot-storm.", dir=args.workdir)
    results = {}
    t_start = time.monotonic()
    try:
        if args.image:
            image = os.path.abspath(args.image)
        else:
            image = os.path.join(work, "root.img")
            log("creating a %d MiB image of random data" % (image_size(args.trace) // MiB))
            make_image(image, image_size(args.trace))
        stats = subprocess.run([REPLAY, "--stats", args.trace], stdout=subprocess.PIPE,
                               text=True, check=True).stdout.splitlines()
        log("trace: " + stats[0])
        for n in ns:
            for s in names:
                warm(image)
                srv = SERVERS[s](work, image, n, spawn=SPAWN, nbdsrv=NBDSRV)
                log("%s, N=%d" % (s, n))
                try:
                    srv.start()
                    r = results[(s, n)] = storm(srv, args)
                    log("  total %.2f s%s, p50 %.0f us, p99 %.0f us, first p99 %.0f us, "
                        "errors %d, failed %d, server CPU %.1f s, RSS %.0f MiB" % (
                            r["total_s"], " (TIMED OUT: %d unfinished)" % r["unfinished"]
                            if r["timed_out"] else "", r["lat_p50_us"], r["lat_p99_us"],
                            r["first_p99_us"], r["errors"], r["failed"], r["server_cpu_s"],
                            r["server_rss_mib"]))
                except Exception as e:       # report it, go on with the others
                    log("%s N=%d: %s" % (s, n, e))
                    results[(s, n)] = {"error": str(e)[:300]}
                finally:
                    srv.stop()
                    shutil.rmtree(srv.work, ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    elapsed = time.monotonic() - t_start
    meta = "%s; %s; replay depth %s, %d thread(s), %s, %s; %.0f s in all" % (
        os.path.basename(args.trace), stats[0].split(": ", 1)[-1], args.depth,
        args.threads, "clients started over %d ms" % args.ramp if args.ramp
        else "all clients at once",
        "paced (the trace's think times)" if args.pace else "no think time", elapsed)
    if args.pin:
        meta += "; servers on CPU %s, replay on CPU %s" % (
            ",".join(map(str, sorted(args.server_cpus))),
            ",".join(map(str, sorted(args.replay_cpus))))
    report(results, names, ns, args, meta)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"%s/%d" % k: v for k, v in results.items()}, f, indent=1)


if __name__ == "__main__":
    main()
