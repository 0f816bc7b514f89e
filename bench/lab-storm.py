#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
# nbdroot lab storm: a whole lab boots at once over a shaped network, on
# one machine.  Run through bench/lab-storm.sh, which documents the
# options; see bench/README.md for what is measured and the last figures.
#
# The lab: two network namespaces made here and removed on every exit,
# "SRV" holding the servers on 198.18.0.1 and "CLI" holding the clients,
# joined by a veth pair, the server's link.  Both directions of that link
# are shaped to --link (htb, with a 4 MB queue, a switch port's buffer)
# and, where the kernel has sch_netem, delayed by half of --latency each
# way.  Every client has its own address, 198.19.0.0 + i, routed through
# 198.18.0.2, so that the server sees a lab of N machines (its
# per-address limits apply as they would) and keeps one neighbour entry.
#
# nbdsrv, nbd-server and qemu-nbd serve the same image in turn in SRV,
# each with fresh overlays and the image in the page cache; bench/replay
# replays the trace from CLI for all N clients at once (or arriving over
# --arrival seconds).  The harness reads the link's byte counters, the
# server's CPU time and RSS (over its process tree) and the block device
# under the work directory (sectors written, flushes), and measures that
# device's sequential write rate with fdatasync for the disk floor.

import argparse
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

from serverproc import RssSampler, cpu_seconds
from servers import SERVERS, image_size, make_image, warm

MiB = 1 << 20
SERVER_ADDR = "198.18.0.1"
CLIENT_GW = "198.18.0.2"
CLIENT_BASE = "198.19.0.0"      # client i is 198.19.0.0 + i
CLIENT_NET = "198.19.0.0/16"
MAX_CLIENTS = 65536
QUEUE_BYTES = 4 * MiB
# Where a connection can be lost before the server sees it: the listen
# queue (overflows, drops, SYN cookies), SYNs or SYN-ACKs sent again.
NSTAT_KEYS = ("TcpExtListenOverflows", "TcpExtListenDrops", "TcpExtSyncookiesSent",
              "TcpExtTCPReqQFullDrop", "TcpExtTCPSynRetrans")
QUEUE_SAMPLE_S = 0.1
TRACES = {"boot": "debian-boot.trace.gz", "first-boot": "debian-first-boot.trace.gz"}


def log(*a):
    print("lab-storm:", *a, file=sys.stderr, flush=True)


def sh(*cmd, check=True, quiet=False):
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if check and r.returncode != 0:
        raise RuntimeError("%s: %s" % (" ".join(cmd), r.stderr.strip() or r.returncode))
    if r.returncode != 0 and not quiet:
        log("%s: %s" % (" ".join(cmd), r.stderr.strip()))
    return r


def parse_rate(s):
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([kmg]?)(bit|bps)?", s.strip().lower())
    if not m:
        raise ValueError("--link %s: want a rate such as 1gbit, 10gbit or 100mbit" % s)
    v = float(m.group(1)) * {"": 1, "k": 1e3, "m": 1e6, "g": 1e9}[m.group(2)]
    if m.group(3) == "bps":
        v *= 8
    if not 1e6 <= v <= 100e9:
        raise ValueError("--link %s: from 1mbit to 100gbit" % s)
    return int(v)


def rate_name(bps):
    return "%gGbit/s" % (bps / 1e9) if bps >= 1e9 else "%gMbit/s" % (bps / 1e6)


# ---- the lab's network

class Lab:
    """The two namespaces and the shaped link between them."""

    def __init__(self, tag, n, rate, latency_ms):
        self.srv, self.cli = "nbdlab-%s-srv" % tag, "nbdlab-%s-cli" % tag
        self.n, self.rate, self.latency_ms = n, rate, latency_ms
        self.latency_note = None
        self.made = []

    def up(self):
        for ns in (self.srv, self.cli):
            sh("ip", "netns", "add", ns)
            self.made.append(ns)
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        sh("ip", "link", "add", "name", "ls0", "netns", self.srv, "type", "veth",
           "peer", "name", "lc0", "netns", self.cli)
        sh("ip", "-n", self.srv, "addr", "add", SERVER_ADDR + "/24", "dev", "ls0")
        sh("ip", "-n", self.cli, "addr", "add", CLIENT_GW + "/24", "dev", "lc0")
        self.add_client_addresses()
        for ns, dev in ((self.srv, "ls0"), (self.cli, "lc0")):
            sh("ip", "-n", ns, "link", "set", dev, "up")
            self.shape(ns, dev)
        sh("ip", "-n", self.srv, "route", "add", CLIENT_NET, "via", CLIENT_GW)
        # A first connection attempt (refused: nothing listens yet) finds
        # the neighbours and the link up before the storm.
        sh("ip", "netns", "exec", self.cli, sys.executable, "-c",
           "import socket\ntry: socket.create_connection((%r, 9), timeout=5)\n"
           "except ConnectionRefusedError: pass" % SERVER_ADDR)

    def add_client_addresses(self):
        base = ip_to_int(CLIENT_BASE)
        cmds = "".join("addr add %s/32 dev lc0\n" % int_to_ip(base + i)
                       for i in range(self.n))
        r = subprocess.run(["ip", "-n", self.cli, "-batch", "-"], input=cmds, text=True,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        if r.returncode != 0:
            raise RuntimeError("client addresses: %s" % r.stderr.strip()[-300:])

    def shape(self, ns, dev):
        rate = "%dbit" % self.rate
        # Burst: 1 ms worth at the rate, at least 64 KiB (a GSO segment).
        burst = str(max(64 << 10, self.rate // 8000))
        sh("tc", "-n", ns, "qdisc", "add", "dev", dev, "root", "handle", "1:", "htb",
           "default", "1")
        sh("tc", "-n", ns, "class", "add", "dev", dev, "parent", "1:", "classid", "1:1",
           "htb", "rate", rate, "ceil", rate, "burst", burst, "cburst", burst)
        half = "%gms" % (self.latency_ms / 2)
        if self.latency_ms > 0:
            r = sh("tc", "-n", ns, "qdisc", "add", "dev", dev, "parent", "1:1", "handle",
                   "10:", "netem", "delay", half, "limit", "100000", check=False, quiet=True)
            if r.returncode == 0:
                return
            self.latency_note = ("no latency added: this kernel has no netem qdisc "
                                 "(CONFIG_NET_SCH_NETEM)")
        sh("tc", "-n", ns, "qdisc", "add", "dev", dev, "parent", "1:1", "handle", "10:",
           "bfifo", "limit", str(QUEUE_BYTES))

    def link_bytes(self):
        """(bytes the server sent, bytes it received) on its link."""
        r = sh("ip", "-n", self.srv, "-s", "-j", "link", "show", "ls0")
        st = json.loads(r.stdout)[0]["stats64"]
        return st["tx"]["bytes"], st["rx"]["bytes"]

    def tcp_counters(self):
        """The connection-level counters of both namespaces and the drops
        of both queues: where a slow connect was lost, if it was."""
        c = {}
        for side, ns, dev in (("srv", self.srv, "ls0"), ("cli", self.cli, "lc0")):
            r = sh("ip", "netns", "exec", ns, "nstat", "-asz", "-j", check=False, quiet=True)
            try:
                kv = json.loads(r.stdout).get("kernel", {})
            except ValueError:
                kv = {}
            for k in NSTAT_KEYS:
                c["%s_%s" % (side, k)] = kv.get(k, 0)
            r = sh("tc", "-n", ns, "-s", "-j", "qdisc", "show", "dev", dev, check=False,
                   quiet=True)
            try:
                c[side + "_queue_drops"] = sum(q.get("drops", 0) for q in json.loads(r.stdout)
                                               if q.get("kind") == "bfifo")
            except ValueError:
                c[side + "_queue_drops"] = 0
        return c

    def queue_backlog(self):
        """Bytes waiting in the server's link queue (its bfifo) now."""
        r = sh("tc", "-n", self.srv, "-s", "-j", "qdisc", "show", "dev", "ls0", check=False,
               quiet=True)
        try:
            return sum(q.get("backlog", 0) for q in json.loads(r.stdout)
                       if q.get("kind") == "bfifo")
        except ValueError:
            return None

    def down(self):
        for ns in self.made:
            remove_namespace(ns)
        self.made = []


def remove_namespace(ns):
    """Kills what still runs in ns, then removes it (a namespace with
    processes in it would outlive its name)."""
    r = sh("ip", "netns", "pids", ns, check=False, quiet=True)
    for p in r.stdout.split():
        try:
            os.kill(int(p), signal.SIGKILL)
        except (ProcessLookupError, ValueError):
            pass
    sh("ip", "netns", "del", ns, check=False, quiet=True)


def remove_stale_namespaces():
    """Namespaces of earlier runs whose harness is gone (a SIGKILL)."""
    r = sh("ip", "netns", "list", check=False, quiet=True)
    for line in r.stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        m = re.fullmatch(r"nbdlab-(\d+)-(srv|cli)", name)
        if m and not os.path.exists("/proc/%s" % m.group(1)):
            log("removing %s, left by an earlier run" % name)
            remove_namespace(name)


def ip_to_int(a):
    p = [int(x) for x in a.split(".")]
    return p[0] << 24 | p[1] << 16 | p[2] << 8 | p[3]


def int_to_ip(v):
    return "%d.%d.%d.%d" % (v >> 24, v >> 16 & 255, v >> 8 & 255, v & 255)


class QueueSampler(threading.Thread):
    """Samples the server link's queue every QUEUE_SAMPLE_S during a storm:
    what a reply waits behind."""

    def __init__(self, lab):
        super().__init__(daemon=True)
        self.lab, self.samples, self.halt = lab, [], threading.Event()

    def run(self):
        while not self.halt.wait(QUEUE_SAMPLE_S):
            b = self.lab.queue_backlog()
            if b is not None:
                self.samples.append(b)

    def stop(self):
        """(p50, p99, max) of the queue in ms at the link's rate and the
        share of the samples that found it not empty, in %; or None."""
        self.halt.set()
        self.join()
        v = sorted(self.samples)
        if not v:
            return None
        ms = [x * 8 * 1000.0 / self.lab.rate for x in v]
        busy = 100.0 * sum(1 for x in v if x > 0) / len(v)
        return ms[len(ms) // 2], ms[min(len(ms) - 1, int(len(ms) * 0.99))], ms[-1], busy


# ---- the disk under the work directory

def block_stat_path(path):
    st = os.stat(path)
    p = "/sys/dev/block/%d:%d/stat" % (os.major(st.st_dev), os.minor(st.st_dev))
    return p if os.path.exists(p) else None


def disk_counters(statpath):
    """(bytes written, flushes) of a block device, from its stat file."""
    if not statpath:
        return None
    f = open(statpath).read().split()
    return int(f[6]) * 512, int(f[15]) if len(f) > 15 else 0


def disk_write_rate(work, size=256 * MiB):
    """The device's sequential write rate with a closing fdatasync, B/s."""
    path = os.path.join(work, "disk-rate")
    buf = os.urandom(MiB)
    t = time.monotonic()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for _ in range(size // MiB):
            os.write(fd, buf)
        os.fdatasync(fd)
    finally:
        os.close(fd)
    rate = size / (time.monotonic() - t)
    os.unlink(path)
    return rate


# ---- the trace and the image

def trace_stats(replay, trace):
    out = subprocess.run([replay, "--stats", trace], stdout=subprocess.PIPE, text=True,
                         check=True).stdout
    st = {"summary": out.splitlines()[0], "R": 0.0, "W": 0.0}
    for line in out.splitlines():
        m = re.match(r"\s+([RW]) \d+ \(([\d.]+) MiB\)", line)
        if m:
            st[m.group(1)] = float(m.group(2)) * MiB
    return st


# ---- one storm

def storm(lab, srv, args, statpath, times_file):
    cmd = ["ip", "netns", "exec", lab.cli, REPLAY, "--json", "--verify",
           "-n", str(args.clients), "--host", SERVER_ADDR, "--port", str(srv.port),
           "--export", "root", "--source", CLIENT_BASE, "--timeout", str(args.timeout),
           "--ramp", str(int(args.arrival * 1000)), "--client-times", times_file]
    if srv.id_prefix:
        cmd += ["--id", srv.id_prefix]
    if args.pace:
        cmd.append("--pace")
    cmd.append(args.trace_path)
    link0, disk0, cpu0 = lab.link_bytes(), disk_counters(statpath), cpu_seconds(srv.pid)
    net0 = lab.tcp_counters()
    sampler, queue = RssSampler(srv.pid, 0.25), QueueSampler(lab)
    sampler.start()
    queue.start()
    try:
        r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           timeout=args.timeout + 120)
    finally:
        peak = sampler.stop()
        q = queue.stop()
    cpu = cpu_seconds(srv.pid) - cpu0
    link1, disk1 = lab.link_bytes(), disk_counters(statpath)
    net = {k: v - net0.get(k, 0) for k, v in lab.tcp_counters().items()}
    out = r.stdout.strip().splitlines()
    if not out or not out[-1].startswith("{"):
        raise RuntimeError("replay exited %d: %s" % (r.returncode, r.stderr.strip()[-400:]))
    res = json.loads(out[-1])
    n = args.clients
    tx, rx = link1[0] - link0[0], link1[1] - link0[1]
    res.update(server_cpu_s=cpu, cpu_per_boot_ms=cpu * 1000 / n, server_rss_mib=peak / 1024,
               wire_mib_per_boot=(tx + rx) / n / MiB, tx_bytes=tx, rx_bytes=rx,
               link_use_pct=100.0 * max(tx, rx) * 8 / (res["total_s"] * args.rate)
               if res["total_s"] > 0 else 0.0,
               bad=res["errors"] + res["failed"] + res["unfinished"])
    res.update(net=net,
               syn_retrans=net["cli_TcpExtTCPSynRetrans"] + net["srv_TcpExtTCPSynRetrans"],
               listen_lost=sum(net["srv_" + k] for k in NSTAT_KEYS[:4]),
               queue_drops=net["srv_queue_drops"] + net["cli_queue_drops"])
    if q:
        res.update(queue_p50_ms=q[0], queue_p99_ms=q[1], queue_max_ms=q[2], queue_busy_pct=q[3])
    if disk0 and disk1:
        res.update(disk_written_mib=(disk1[0] - disk0[0]) / MiB, disk_flushes=disk1[1] - disk0[1])
    if r.stderr.strip():
        res["note"] = r.stderr.strip().splitlines()[-1][:200]
    return res


results_of = {}


def attach_time(log_path, res):
    """nbdsrv logs how long its attach thread took to open (here: create)
    the storm's overlays, one after the other: the connects wait for it."""
    if not res or res.get("error"):
        return
    with open(log_path, errors="replace") as f:
        for line in f:
            # The row is the span, first to last (not the sum of the opens).
            m = re.search(r"start-up: (\d+) overlays attached in \d+ ms "
                          r"\((\d+) ms from the first to the last\)", line)
            if m:
                res["attach_ms"] = float(m.group(2))


def run_server(name, lab, image, args, statpath, out):
    warm(image)
    srv = SERVERS[name](args.work, image, args.clients, host=SERVER_ADDR, netns=lab.srv,
                        nbdsrv=NBDSRV, shared_address=False,
                        link_rate=0 if args.no_pacing else args.rate // 8)
    log("%s: %d clients" % (name, args.clients))
    try:
        srv.start()
        r = storm(lab, srv, args, statpath, os.path.join(out, "times-%s.txt" % name))
        results_of[name] = r
        log("  %s: p50 %.2f s, p99 %.2f s, first-request p99 %.1f ms, link use %.0f%%, "
            "errors %d" % (name, r["client_done_p50_s"], r["client_done_p99_s"],
                           r["first_p99_us"] / 1000, r["link_use_pct"], r["bad"]))
        return r
    except Exception as e:       # report it, go on with the others
        log("%s: %s" % (name, e))
        return {"error": str(e)[:300]}
    finally:
        srv.stop()
        log_path = os.path.join(srv.work, "log")
        if os.path.exists(log_path):
            shutil.copy(log_path, os.path.join(out, "log-%s.txt" % name))
            attach_time(log_path, results_of.get(name))
        shutil.rmtree(srv.work, ignore_errors=True)


# ---- the table, the plot, the summary

ROWS = [
    # key, label, unit, format
    ("client_done_p50_s", "replay time per client p50", "s", "%.3f"),
    ("client_done_p90_s", "  p90", "s", "%.3f"),
    ("client_done_p99_s", "  p99", "s", "%.3f"),
    ("client_done_max_s", "  max", "s", "%.3f"),
    ("total_s", "storm time, first connect to last boot", "s", "%.3f"),
    ("first_p50_us", "first-request latency p50", "ms", "ms"),
    ("first_p99_us", "first-request latency p99", "ms", "ms"),
    ("connect_p99_us", "connect (TCP + handshake) p99", "ms", "ms"),
    ("attach_ms", "  overlays opened, first to last (nbdsrv log)", "ms", "%.0f"),
    ("syn_retrans", "  SYNs and SYN-ACKs sent again", "count", "%d"),
    ("listen_lost", "  listen queue overflows, drops, cookies", "count", "%d"),
    ("queue_p50_ms", "link queue to the clients p50 (sampled)", "ms", "%.2f"),
    ("queue_p99_ms", "  p99", "ms", "%.2f"),
    ("queue_busy_pct", "  samples that found it not empty", "%", "%.0f"),
    ("queue_drops", "  drops, both directions", "count", "%d"),
    ("wire_mib_per_boot", "bytes on the wire per boot", "MiB", "%.2f"),
    ("link_use_pct", "link use during the storm", "%", "%.0f"),
    ("disk_written_mib", "disk: bytes written (device)", "MiB", "%.1f"),
    ("disk_flushes", "disk: flushes (device)", "count", "%d"),
    ("cpu_per_boot_ms", "server CPU per boot", "ms", "%.1f"),
    ("server_rss_mib", "server RSS peak (sum over tree)", "MiB", "%.1f"),
    ("bad", "errors (failed requests, clients unfinished)", "count", "%d"),
    ("mismatches", "read back not the client's own data", "count", "%d"),
]
RATIO_KEYS = ("client_done_p50_s", "client_done_p99_s", "total_s", "first_p99_us",
              "cpu_per_boot_ms", "server_rss_mib")


def cell(key, r):
    if not r:
        return "-"
    if r.get("error"):
        return "error"
    v = r.get(key)
    if v is None:
        return "n/a"
    if key.startswith("client_done") and r.get("timed_out") and r.get("finished", 0) == 0:
        return "T/O"
    f = dict((k, f) for k, _, _, f in ROWS)[key]
    return "%.2f" % (v / 1000.0) if f == "ms" else f % v


def ratio(key, mine, peer):
    if not mine or not peer or mine.get("error") or peer.get("error"):
        return "-"
    a, b = mine.get(key), peer.get(key)
    if a is None or not b:
        return "-"
    s = "%.2f" % (a / b)
    return s + "*" if peer.get("timed_out") else s


def table(results, names, args, floors):
    peers = [n for n in names if n != "nbdsrv" and n in results]
    lines = []
    w0 = 42
    head = "%-*s %-5s" % (w0, "measure", "unit") + "".join("%12s" % n for n in names)
    if "nbdsrv" in results:
        head += "".join("%13s" % ("/" + p) for p in peers)
    lines.append(head)
    for key, label, unit, _ in ROWS:
        line = "%-*s %-5s" % (w0, label, unit)
        line += "".join("%12s" % cell(key, results.get(s)) for s in names)
        if "nbdsrv" in results:
            line += "".join("%13s" % (ratio(key, results["nbdsrv"], results.get(p))
                                      if key in RATIO_KEYS else "") for p in peers)
        lines.append(line)
    lines.append("ratio columns: nbdsrv / peer (lower is better); * the peer timed out "
                 "after %d s" % args.timeout)
    lines.append("floors: wire %.2f s (the trace's %.1f MiB per boot x %d / %s); disk %s"
                 % (floors["wire_s"], floors["payload_mib"], args.clients,
                    rate_name(args.rate), floors["disk_text"]))
    for s in names:
        r = results.get(s, {})
        if r.get("error"):
            lines.append("%s: ERROR %s" % (s, r["error"]))
        elif r.get("timed_out"):
            lines.append("%s: timed out: %d clients unfinished (%d still connecting)"
                         % (s, r["unfinished"], r["unfinished_connecting"]))
        if r.get("note"):
            lines.append("%s: %s" % (s, r["note"]))
        if r.get("queue_busy_pct", 0) > r.get("link_use_pct", 100) + 10:
            # htb sends at its rate whenever its queue holds something.
            lines.append("%s: the link's queue was seldom empty (%.0f%% of the samples) but "
                         "the link carried %.0f%% of its rate: the machine's CPUs, on which "
                         "the link is emulated, held it back" % (
                             s, r["queue_busy_pct"], r["link_use_pct"]))
    return lines


def targets(results, args, floors):
    a = results.get("nbdsrv")
    if not a or a.get("error"):
        return []
    out = []
    # The storm is bound by the larger of its floors: the link's (bytes
    # that went over it) or, for a trace that writes, the disk's.
    wire = floors["wire_s_measured"]
    disk = floors.get("disk_s", 0.0)
    if wire >= disk and wire > 0:
        out.append("link-bound: storm %.2f s = %.2fx the wire floor %.2f s (bytes on the wire / "
                   "link rate; target 1.1x)" % (a["total_s"], a["total_s"] / wire, wire))
    elif disk > 0:
        out.append("disk-bound: storm %.2f s = %.2fx the disk floor %.2f s (target 1.3x)"
                   % (a["total_s"], a["total_s"] / disk, disk))
    out.append("p99 replay time %.2fx p50 (target 1.3x)" % (
        a["client_done_p99_s"] / a["client_done_p50_s"] if a["client_done_p50_s"] else 0))
    out.append("first-request p99 %.2f ms (target under 5 ms)" % (a["first_p99_us"] / 1000))
    out.append("server RSS peak %.1f MiB, errors %d, wrong data %d" % (
        a["server_rss_mib"], a["bad"], a["mismatches"]))
    return out


def plot(results, names, out, args, floors):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "plot: not drawn: python3-matplotlib is missing (scripts/install-deps.sh)"
    fig, ax = plt.subplots(figsize=(8, 5))
    for s in names:
        path = os.path.join(out, "times-%s.txt" % s)
        if not os.path.exists(path):
            continue
        t = sorted(float(w[1]) for w in (line.split() for line in open(path))
                   if w and not w[0].startswith("#") and w[1] != "-")
        if t:
            ax.step(t, [(i + 1) / args.clients for i in range(len(t))], where="post",
                    label="%s (%d of %d booted)" % (s, len(t), args.clients))
    for key, label, style in (("wire_s", "wire floor", "--"), ("disk_s", "disk floor", ":")):
        if floors.get(key):
            ax.axvline(floors[key], color="gray", linestyle=style,
                       label="%s %.1f s" % (label, floors[key]))
    ax.set_xlabel("replay time per client (s)")
    ax.set_ylabel("fraction of clients booted")
    ax.set_ylim(0, 1.02)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right")
    ax.set_title("lab storm: %d clients, %s, trace %s" % (args.clients, rate_name(args.rate),
                                                            args.trace))
    png = os.path.join(out, "cdf.png")
    fig.savefig(png, dpi=100)
    return "plot: " + png


def summary(results, args):
    a = results.get("nbdsrv")
    head = "lab-storm: clients %d link %s trace %s:" % (args.clients, rate_name(args.rate),
                                                       args.trace)
    if not a:
        return head + " nbdsrv not run"
    if a.get("error"):
        return head + " nbdsrv error: " + a["error"]
    return (head + " p50 %.3f s p99 %.3f s first-request-p99 %.2f ms link-use %.0f%% "
            "cpu-per-boot %.1f ms errors %d" % (
                a["client_done_p50_s"], a["client_done_p99_s"], a["first_p99_us"] / 1000,
                a["link_use_pct"], a["cpu_per_boot_ms"], a["bad"] + a["mismatches"]))


# ---- main

def parse_args():
    ap = argparse.ArgumentParser(prog="lab-storm.sh")
    ap.add_argument("--clients", type=int, default=200)
    ap.add_argument("--link", default="1gbit")
    ap.add_argument("--latency", type=float, default=0.2, help="ms, round trip")
    ap.add_argument("--trace", default="boot")
    ap.add_argument("--servers", default="nbdsrv,nbd-server,qemu-nbd")
    ap.add_argument("--arrival", type=float, default=0.0, help="seconds")
    ap.add_argument("--pace", action="store_true")
    ap.add_argument("--no-pacing", action="store_true",
                    help="do not tell nbdsrv the link's rate (link-rate)")
    ap.add_argument("--timeout", type=int, default=300)
    ap.add_argument("--image")
    ap.add_argument("--workdir")
    ap.add_argument("--out", default="lab-storm-results")
    ap.add_argument("--tag", default=str(os.getpid()))
    args = ap.parse_args()
    try:
        args.rate = parse_rate(args.link)
    except ValueError as e:
        ap.error(str(e))
    if not 1 <= args.clients <= MAX_CLIENTS:
        ap.error("--clients %d: from 1 to %d" % (args.clients, MAX_CLIENTS))
    if args.arrival < 0 or args.latency < 0 or args.timeout < 1:
        ap.error("--arrival and --latency must not be negative, --timeout at least 1")
    here = os.path.dirname(os.path.abspath(__file__))
    args.trace_path = (os.path.join(here, "data", TRACES[args.trace])
                       if args.trace in TRACES else os.path.abspath(args.trace))
    if not os.path.exists(args.trace_path):
        ap.error("--trace %s: no such trace (%s); the shipped ones: %s"
                 % (args.trace, args.trace_path, ", ".join(TRACES)))
    args.names = [s for s in args.servers.split(",") if s]
    for s in args.names:
        if s not in SERVERS:
            ap.error("--servers: unknown server %s (known: %s)" % (s, ", ".join(SERVERS)))
    return args


def floors_of(args, stats, results, work):
    payload = (stats["R"] + stats["W"]) / MiB
    f = {"payload_mib": payload, "written_mib": stats["W"] / MiB,
         "wire_s": payload * MiB * args.clients * 8 / args.rate}
    a = results.get("nbdsrv") or {}
    f["wire_s_measured"] = (max(a["tx_bytes"], a["rx_bytes"]) * 8 / args.rate
                            if "tx_bytes" in a else 0)
    if stats["W"] > 0:
        rate = disk_write_rate(work)
        f["disk_s"] = stats["W"] * args.clients / rate
        f["disk_text"] = ("%.2f s (%.1f MiB written per boot x %d / %.0f MiB/s, this disk's "
                          "sequential write rate with fdatasync, measured now)"
                          % (f["disk_s"], stats["W"] / MiB, args.clients, rate / MiB))
    else:
        f["disk_text"] = "none (the trace writes nothing)"
    return f


def main():
    global NBDSRV, REPLAY
    args = parse_args()
    NBDSRV, REPLAY = os.environ["NBDSRV"], os.environ["REPLAY"]
    # SIGTERM (the wrapper's timeout, an admin) unwinds like Ctrl-C: the
    # finally clauses stop the servers and remove the namespaces.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = args.clients * 8 + 256
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))
    remove_stale_namespaces()
    os.makedirs(args.out, exist_ok=True)
    args.work = work = tempfile.mkdtemp(prefix="nbdroot-lab.", dir=args.workdir)
    statpath = block_stat_path(work)
    lab = Lab(args.tag, args.clients, args.rate, args.latency)
    results = {}
    t0 = time.monotonic()
    try:
        stats = trace_stats(REPLAY, args.trace_path)
        log("trace %s: %s" % (args.trace, stats["summary"]))
        image = os.path.abspath(args.image) if args.image else os.path.join(work, "root.img")
        if not args.image:
            log("creating a %d MiB image of random data" % (image_size(args.trace_path) // MiB))
            make_image(image, image_size(args.trace_path))
        log("lab: %d clients from %s on, server %s, link %s%s" % (
            args.clients, CLIENT_BASE, SERVER_ADDR, rate_name(args.rate),
            ", %g ms added round trip" % args.latency if args.latency else ""))
        lab.up()
        if lab.latency_note:
            log(lab.latency_note)
        for name in args.names:
            results[name] = run_server(name, lab, image, args, statpath, args.out)
        floors = floors_of(args, stats, results, work)
    finally:
        lab.down()
        shutil.rmtree(work, ignore_errors=True)
    print("nbdroot lab storm: %d clients, link %s%s, trace %s (%s), %s; %.0f s in all" % (
        args.clients, rate_name(args.rate),
        ", %g ms round trip added" % args.latency if args.latency and not lab.latency_note
        else " (%s)" % lab.latency_note if lab.latency_note else "",
        args.trace, stats["summary"].split(": ", 1)[-1],
        "arriving over %g s" % args.arrival if args.arrival else "all at once",
        time.monotonic() - t0))
    lines = table(results, args.names, args, floors)
    lines += ["target " + t for t in targets(results, args, floors)]
    lines.append(plot(results, args.names, args.out, args, floors))
    for line in lines:
        print(line)
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump({"args": {k: v for k, v in vars(args).items() if k != "names"},
                   "floors": floors, "results": results}, f, indent=1, default=str)
    print(summary(results, args))
    a = results.get("nbdsrv")
    return 0 if a and not a.get("error") and a["bad"] + a["mismatches"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
