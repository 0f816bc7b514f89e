# SPDX-License-Identifier: GPL-2.0-or-later
# nbdroot benchmarks: the servers of the boot storms, started the same way
# by boot-storm.py (every client on 127.0.0.1) and lab-storm.py (the server
# in a network namespace of its own, every client with its own address):
# nbdsrv with a persistent overlay per client, nbd-server with copyonwrite
# and flush, qemu-nbd with --snapshot, all serving export "root".

import gzip
import os
import shutil
import subprocess

from serverproc import free_port, stop_tree, wait_listen, wait_pidfile


class Server:
    name = "?"
    overlay = "?"
    id_prefix = None

    def __init__(self, work, image, n, host="127.0.0.1", netns=None, spawn=None,
                 nbdsrv="nbdsrv", shared_address=True, link_rate=0):
        """n: clients; host: the address to listen on; netns: run the server
        in that network namespace (then port 10809, the namespace has no
        other listener); spawn: extra Popen arguments (CPU pinning);
        shared_address: every client comes from one address (loopback);
        link_rate: the server's link in bytes/s, for nbdsrv's link-rate
        (0: not set)."""
        self.work = os.path.join(work, "%s-%d" % (self.name, n))
        shutil.rmtree(self.work, ignore_errors=True)
        os.makedirs(self.work)
        self.image, self.n, self.host, self.netns = image, n, host, netns
        self.port = 10809 if netns else free_port()
        self.prefix = ["ip", "netns", "exec", netns] if netns else []
        self.spawn = spawn or {}
        self.nbdsrv = nbdsrv
        self.shared_address = shared_address
        self.link_rate = link_rate
        self.proc = None
        self.pid = None

    def logfile(self):
        return open(os.path.join(self.work, "log"), "w")

    def popen(self, cmd, **kw):
        # "ip netns exec" execs the command: the pid is the server's.
        return subprocess.Popen(self.prefix + cmd, stdout=self.logfile(),
                                stderr=subprocess.STDOUT, **kw, **self.spawn)

    def wait_ready(self, pidfile, proc=None):
        self.pid = wait_pidfile(pidfile)
        wait_listen(self.port, proc, host=self.host, pid=self.pid if self.netns else None)

    def stop(self):
        stop_tree(self.pid, self.proc, 30)


class Nbdsrv(Server):
    name = "nbdsrv"
    overlay = "own persistent overlay per client (root@bootNNNN)"
    id_prefix = "boot"

    def start(self):
        cfg = os.path.join(self.work, "nbdsrv.conf")
        pidfile = os.path.join(self.work, "pid")
        with open(cfg, "w") as f:
            f.write("[generic]\n")
            if self.shared_address:
                f.write("max-connections-per-address = %d\n" % (self.n + 64))
            if self.link_rate:
                f.write("link-rate = %d\n" % self.link_rate)
        self.proc = self.popen(
            [self.nbdsrv, "-f", "-c", cfg, "-l", "%s:%d" % (self.host, self.port),
             "-P", pidfile, "-e", "root=" + self.image,
             "-o", os.path.join(self.work, "overlays")])
        self.wait_ready(pidfile, self.proc)


class NbdServer(Server):
    name = "nbd-server"
    overlay = "copyonwrite: a diff file per connection (a forked process)"

    def start(self):
        cfg = os.path.join(self.work, "config")
        pidfile = os.path.join(self.work, "pid")
        # The diff files go next to the export: link the image in here.
        img = os.path.join(self.work, "root.img")
        os.symlink(self.image, img)
        with open(cfg, "w") as f:
            f.write("[generic]\n    listenaddr = %s\n    port = %d\n"
                    "[root]\n    exportname = %s\n    copyonwrite = true\n"
                    "    flush = true\n" % (self.host, self.port, img))
        subprocess.run(self.prefix + ["nbd-server", "-C", cfg, "-p", pidfile],
                       cwd=self.work, check=True, stdout=self.logfile(),
                       stderr=subprocess.STDOUT, timeout=30, **self.spawn)
        self.wait_ready(pidfile)


class QemuNbd(Server):
    name = "qemu-nbd"
    overlay = "--snapshot: one temporary overlay shared by all clients"

    def start(self):
        pidfile = os.path.join(self.work, "pid")
        env = dict(os.environ, TMPDIR=self.work)
        self.proc = self.popen(
            ["qemu-nbd", "-f", "raw", "--snapshot", "-t", "-b", self.host,
             "-p", str(self.port), "-x", "root", "--shared=%d" % (self.n + 16),
             "--pid-file=" + pidfile, self.image], env=env)
        self.wait_ready(pidfile, self.proc)


SERVERS = {c.name: c for c in (Nbdsrv, NbdServer, QemuNbd)}


# ---- the image both storms serve

MiB = 1 << 20


def image_size(trace):
    opener = gzip.open if trace.endswith(".gz") else open
    with opener(trace, "rt") as f:
        for line in f:
            if not line.startswith("#"):
                break
            w = line.split()
            if len(w) >= 3 and w[1] == "image-size":
                return int(w[2])
    raise RuntimeError("%s has no '# image-size' line: pass --image" % trace)


def make_image(path, size):
    """An image of random data: nothing for a server to compress or skip."""
    with open(path, "wb") as f:
        left = size
        while left:
            n = min(left, 16 * MiB)
            f.write(os.urandom(n))
            left -= n
        f.flush()
        os.fsync(f.fileno())


def warm(path):
    with open(path, "rb") as f:
        while f.read(16 * MiB):
            pass
