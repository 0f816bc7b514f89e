# SPDX-License-Identifier: GPL-2.0-or-later
# nbdroot benchmarks: starting, watching and stopping the servers under
# test, shared by bench.py and boot-storm.py.
#
# Servers are measured over their whole process tree: nbd-server forks a
# process per connection, the others are one process.  CPU is utime+stime
# of the tree plus the reaped children of its root; RSS is the sum of
# VmRSS over the tree.

import os
import signal
import socket
import subprocess
import threading
import time

CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def _listening(pid, port):
    """Whether the network namespace of pid has a TCP listener on port
    (read from /proc/PID/net/tcp, which shows that namespace's sockets)."""
    want = ":%04X" % port
    try:
        with open("/proc/%d/net/tcp" % pid) as f:
            next(f)
            return any(w[1].endswith(want) and w[3] == "0A"
                       for w in (line.split() for line in f))
    except (OSError, StopIteration, IndexError):
        return False


def wait_listen(port, proc=None, timeout=30, host="127.0.0.1", pid=None):
    """Until the server listens on host:port; with pid, in pid's network
    namespace, which this process may not be able to reach."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError("server exited with %s during start-up" % proc.returncode)
        if pid is not None:
            if _listening(pid, port):
                return
        else:
            try:
                socket.create_connection((host, port), timeout=1).close()
                return
            except OSError:
                pass
        time.sleep(0.05)
    raise RuntimeError("server did not listen on port %d in %d s" % (port, timeout))


def wait_pidfile(path, timeout=30):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            s = open(path).read().strip()
            if s:
                return int(s)
        except FileNotFoundError:
            pass
        time.sleep(0.05)
    raise RuntimeError("no pid file %s after %d s" % (path, timeout))


def _stat(pid):
    """(state, ppid, utime, stime, cutime, cstime) of a process."""
    with open("/proc/%d/stat" % pid, "rb") as f:
        s = f.read()
    rest = s[s.rindex(b")") + 2:].split()
    # fields from 3 on: state ppid ... utime(14) stime(15) cutime(16) cstime(17)
    return (rest[0], int(rest[1]), int(rest[11]), int(rest[12]),
            int(rest[13]), int(rest[14]))


# /proc/PID/task/TID/children (CONFIG_PROC_CHILDREN): a process's children
# without a scan of all of /proc, which takes milliseconds of CPU; the RSS
# sampler asks four times a second, next to the server it measures.
HAVE_PROC_CHILDREN = os.path.exists("/proc/self/task/%d/children" % os.getpid())


def _children_from_tasks(p):
    out = []
    try:
        tids = os.listdir("/proc/%d/task" % p)
    except OSError:
        return out
    for t in tids:
        try:
            with open("/proc/%d/task/%s/children" % (p, t)) as f:
                out.extend(int(x) for x in f.read().split())
        except (OSError, ValueError):
            pass
    return out


def _children_from_scan():
    children = {}
    for e in os.scandir("/proc"):
        if e.name.isdigit():
            try:
                children.setdefault(_stat(int(e.name))[1], []).append(int(e.name))
            except (OSError, ValueError, IndexError):
                pass
    return lambda p: children.get(p, [])


def tree(root):
    """root and all its descendants."""
    children_of = _children_from_tasks if HAVE_PROC_CHILDREN else _children_from_scan()
    out, todo = [], [root]
    while todo and len(out) < 100000:
        p = todo.pop()
        out.append(p)
        todo.extend(children_of(p))
    return out


def cpu_seconds(root):
    """utime+stime of the tree, plus reaped children of the root."""
    total = 0
    for p in tree(root):
        try:
            _, _, ut, st, cut, cst = _stat(p)
        except (OSError, ValueError, IndexError):
            continue
        total += ut + st + (cut + cst if p == root else 0)
    return total / CLK_TCK


def status_kib(pid, key):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def rss_kib(root):
    return sum(status_kib(p, "VmRSS") for p in tree(root))


def alive(pid):
    try:
        return _stat(pid)[0] != b"Z"
    except (OSError, ValueError, IndexError):
        return False


class RssSampler(threading.Thread):
    """The peak of rss_kib(root), sampled until stop()."""

    def __init__(self, root, interval):
        super().__init__(daemon=True)
        self.root, self.interval, self.peak = root, interval, 0
        self.stop_ev = threading.Event()

    def run(self):
        while not self.stop_ev.is_set():
            self.peak = max(self.peak, rss_kib(self.root))
            self.stop_ev.wait(self.interval)

    def stop(self):
        self.stop_ev.set()
        self.join()
        self.peak = max(self.peak, rss_kib(self.root))
        return self.peak


def stop_tree(pid, proc, timeout):
    """SIGTERM to the tree of pid (proc: the Popen we started, if any),
    waits up to timeout seconds, then SIGKILL to whatever is left."""
    pids = tree(pid) if pid else []
    for p in pids:
        try:
            os.kill(p, signal.SIGTERM)
        except ProcessLookupError:
            pass
    if proc is not None:
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    end = time.monotonic() + timeout
    while time.monotonic() < end and any(alive(p) for p in pids):
        time.sleep(0.05)
    for p in pids:
        if alive(p):
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
