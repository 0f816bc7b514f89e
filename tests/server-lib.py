# SPDX-License-Identifier: GPL-2.0-or-later
# nbdroot server tests: Python helpers shared by tests/test_server_*.sh.
#
# Usage from a test script (Debian's interpreter: it has "import nbd"):
#
#   /usr/bin/python3 "$srcdir/server-lib.py" ARGS... <<'PY'
#   h = connect("base@a")
#   ...
#   PY
#
# The test body is read from stdin and run with everything below in scope;
# ARGS are in sys.argv[1:].  PORT comes from the environment.  Any failed
# check() or uncaught exception exits non-zero, which fails the test.

import errno
import hashlib
import os
import random
import re
import select
import socket
import struct
import subprocess
import sys
import time

import nbd

PORT = int(os.environ.get("PORT", "10809"))
HOST = "127.0.0.1"

# Wire constants (doc/proto.md of the NBD project).
NBDMAGIC = 0x4E42444D41474943
IHAVEOPT = 0x49484156454F5054
REP_MAGIC = 0x0003E889045565A9
REQUEST_MAGIC = 0x25609513
SIMPLE_REPLY_MAGIC = 0x67446698
STRUCTURED_REPLY_MAGIC = 0x668E33EF

FLAG_FIXED_NEWSTYLE = 1
FLAG_NO_ZEROES = 2

OPT_EXPORT_NAME = 1
OPT_ABORT = 2
OPT_LIST = 3
OPT_STARTTLS = 5
OPT_INFO = 6
OPT_GO = 7
OPT_STRUCTURED_REPLY = 8
OPT_LIST_META_CONTEXT = 9
OPT_SET_META_CONTEXT = 10

REP_ACK = 1
REP_SERVER = 2
REP_INFO = 3
REP_META_CONTEXT = 4
REP_ERR = 1 << 31
REP_ERR_UNSUP = REP_ERR | 1
REP_ERR_POLICY = REP_ERR | 2
REP_ERR_INVALID = REP_ERR | 3
REP_ERR_UNKNOWN = REP_ERR | 6

INFO_EXPORT = 0
INFO_NAME = 1
INFO_DESCRIPTION = 2
INFO_BLOCK_SIZE = 3

CMD_READ = 0
CMD_WRITE = 1
CMD_DISC = 2
CMD_FLUSH = 3
CMD_TRIM = 4
CMD_CACHE = 5
CMD_WRITE_ZEROES = 6
CMD_BLOCK_STATUS = 7

EINVAL = 22

MiB = 1 << 20


class TestFailure(Exception):
    pass


def check(cond, msg):
    """Fails the test with msg unless cond holds."""
    if not cond:
        raise TestFailure(msg)


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def pattern(seed, length):
    """length deterministic pseudo-random bytes for seed (any hashable)."""
    return random.Random(str(seed)).randbytes(length)


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_file(path, off, length):
    with open(path, "rb") as f:
        f.seek(off)
        return f.read(length)


def first_diff(a, b):
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return i
    return min(len(a), len(b)) if len(a) != len(b) else -1


def check_data(got, want, what):
    """Fails with the first differing offset unless got == want."""
    if got != want:
        i = first_diff(got, want)
        raise TestFailure("%s: data differs at +%d (len got %d, want %d)"
                          % (what, i, len(got), len(want)))


def tcp_socket(src=None, port=None, timeout=10):
    """A TCP socket connected to the server, bound to source address src."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(timeout)
    # As every real NBD client does: without it, each small handshake
    # message after the first waits out the server's delayed ACK (40 ms).
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if src:
        s.bind((src, 0))
    s.connect((HOST, port or PORT))
    return s


def connect(export, src=None, structured=True, port=None, meta=False,
            strict=True):
    """A libnbd handle connected to export, from source address src.

    structured=False forces simple replies; meta=True requests
    base:allocation; strict=False lets out-of-range requests reach the
    server so that its own checks are tested."""
    h = nbd.NBD()
    h.set_export_name(export)
    h.set_request_structured_replies(structured)
    if meta:
        h.add_meta_context(nbd.CONTEXT_BASE_ALLOCATION)
    if not strict:
        h.set_strict_mode(0)
    s = tcp_socket(src, port)
    s.settimeout(None)
    h.connect_socket(s.detach())
    if not structured:
        check(not h.get_structured_replies_negotiated(),
              "structured replies negotiated though not requested")
    return h


def nbd_errno(e):
    """The numeric errno of an nbd.Error (None if unknown)."""
    v = getattr(e, "errno", None)
    if isinstance(v, str):
        v = getattr(errno, v, None)
    return v


def expect_error(fn, want_errno, what):
    """Calls fn(); it must fail with nbd.Error carrying want_errno."""
    try:
        fn()
    except nbd.Error as e:
        check(want_errno is None or nbd_errno(e) == want_errno,
              "%s: expected errno %s, got %s (%s)"
              % (what, want_errno, nbd_errno(e), e))
        return
    raise TestFailure("%s: succeeded, expected an error" % what)


def extents(h, count, offset):
    """base:allocation extents [(start, length, flags)] covering at least
    [offset, offset+count), asking repeatedly as the server may return less."""
    out = []
    pos = offset
    end = offset + count
    for _ in range(10000):
        if pos >= end:
            break
        got = []

        def cb(metacontext, off, entries, err):
            if metacontext == nbd.CONTEXT_BASE_ALLOCATION:
                got.extend(entries)
            return 0

        h.block_status(end - pos, pos, cb)
        check(len(got) >= 2 and len(got) % 2 == 0,
              "block status at %d returned no extents" % pos)
        for i in range(0, len(got), 2):
            length, flags = got[i], got[i + 1]
            check(length > 0, "zero-length extent at %d" % pos)
            out.append((pos, length, flags))
            pos += length
    check(pos >= end, "block status made no progress")
    return out


def flags_over(exts, offset, count):
    """The set of flag values the extents give to [offset, offset+count)."""
    return {f for (s, l, f) in exts if s < offset + count and s + l > offset}


# ---------------------------------------------------------------------
# Raw protocol client, for what libnbd will not send.

class Closed(Exception):
    pass


class Raw:
    """One connection speaking the NBD handshake by hand."""

    def __init__(self, src=None, port=None, timeout=10):
        self.s = tcp_socket(src, port, timeout)

    def close(self):
        self.s.close()

    def send(self, data):
        self.s.sendall(data)

    def recv_exact(self, n):
        buf = b""
        while len(buf) < n:
            try:
                chunk = self.s.recv(n - len(buf))
            except (ConnectionResetError, BrokenPipeError):
                raise Closed()
            if not chunk:
                raise Closed()
            buf += chunk
        return buf

    def greeting(self, client_flags=FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES):
        magic, ver, gflags = struct.unpack(">QQH", self.recv_exact(18))
        check(magic == NBDMAGIC, "bad NBDMAGIC %#x" % magic)
        check(ver == IHAVEOPT, "not newstyle: %#x" % ver)
        check(gflags & FLAG_FIXED_NEWSTYLE, "server is not fixed newstyle")
        self.gflags = gflags
        if client_flags is not None:
            self.send(struct.pack(">I", client_flags))
        return gflags

    def send_opt(self, opt, data=b""):
        self.send(struct.pack(">QII", IHAVEOPT, opt, len(data)) + data)

    def recv_rep(self, opt=None):
        """One option reply: (reply_type, data)."""
        magic, ropt, rtype, rlen = struct.unpack(">QIII", self.recv_exact(20))
        check(magic == REP_MAGIC, "bad option reply magic %#x" % magic)
        if opt is not None:
            check(ropt == opt, "reply to option %d, expected %d" % (ropt, opt))
        check(rlen < (1 << 24), "option reply length %d" % rlen)
        return rtype, self.recv_exact(rlen)

    def go(self, name, opt=OPT_GO, infos=(INFO_BLOCK_SIZE,)):
        """NBD_OPT_GO/INFO: returns (final reply type, {info type: data})."""
        n = name.encode()
        data = struct.pack(">I", len(n)) + n + struct.pack(">H", len(infos))
        data += b"".join(struct.pack(">H", i) for i in infos)
        self.send_opt(opt, data)
        infos = {}
        for _ in range(100):
            rtype, rdata = self.recv_rep(opt)
            if rtype == REP_INFO:
                check(len(rdata) >= 2, "short NBD_REP_INFO")
                infos[struct.unpack(">H", rdata[:2])[0]] = rdata[2:]
                continue
            if rtype == REP_ACK and opt == OPT_GO:
                exp = infos.get(INFO_EXPORT)
                check(exp is not None and len(exp) == 10,
                      "OPT_GO acked without NBD_INFO_EXPORT")
                self.size, self.eflags = struct.unpack(">QH", exp)
            return rtype, infos
        raise TestFailure("too many option replies")

    def request(self, cmd, offset, length, flags=0, payload=b"",
                cookie=None):
        cookie = cookie if cookie is not None else random.getrandbits(64)
        self.send(struct.pack(">IHHQQI", REQUEST_MAGIC, flags, cmd, cookie,
                              offset, length) + payload)
        return cookie

    def simple_reply(self, cookie, read_len=0):
        """(error, data) of a simple reply; data only on success."""
        magic, err, rcookie = struct.unpack(">IIQ", self.recv_exact(16))
        check(magic == SIMPLE_REPLY_MAGIC, "bad reply magic %#x" % magic)
        check(rcookie == cookie, "reply cookie %#x, expected %#x"
              % (rcookie, cookie))
        data = self.recv_exact(read_len) if err == 0 and read_len else b""
        return err, data

    def expect_closed(self, what, timeout=10):
        """The server must close this connection within timeout seconds.
        Anything it still sends before closing is ignored."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            r, _, _ = select.select([self.s], [], [],
                                    max(0, deadline - time.monotonic()))
            if not r:
                break
            try:
                if not self.s.recv(65536):
                    return
            except (ConnectionResetError, BrokenPipeError):
                return
        raise TestFailure("%s: server kept the connection open" % what)


def raw_session(name="base", src=None):
    """A Raw connection in the transmission phase on export name, simple
    replies (OPT_GO)."""
    r = Raw(src)
    r.greeting()
    rtype, _ = r.go(name)
    check(rtype == REP_ACK, "OPT_GO %s: reply %#x" % (name, rtype))
    return r


def dead(h):
    """True when the server has closed the connection of handle h."""
    try:
        h.pread(512, 0)
        return False
    except nbd.Error:
        return True


def wait_for(cond, what, timeout=20, interval=0.05):
    """Polls cond() until true, at most timeout seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(interval)
    raise TestFailure("timed out waiting for " + what)


if __name__ == "__main__":
    body = sys.stdin.read()
    sys.argv = [sys.argv[0]] + sys.argv[1:]
    try:
        exec(compile(body, "<test body>", "exec"), globals())
    except TestFailure as e:
        print("FAIL: %s" % e, file=sys.stderr)
        sys.exit(1)
