# SPDX-License-Identifier: GPL-2.0-or-later
# The power-loss test's checker: from recfs's log of what nbdsrv did to its
# overlay directory, builds the states a power loss at many points of that
# history may leave on disk, starts nbdsrv on each and checks that every
# write it had acknowledged as durable reads back.
#
#   crashgen.py LOG INITIAL_LIST OPS_JSON BASE_IMAGE NBDSRV WORKDIR
#               CUTS SEED MAX_SECONDS
#
# LOG is recfs's log (tests/powerloss/recfs.c says its format), LOG.data
# the written bytes; INITIAL_LIST lists the directories that existed
# before the recording ("INO PATH" lines: durable, the test made them);
# OPS_JSON is driver.py's record of the requests and their order.
#
# What a power loss keeps: the model, and what it assumes
# --------------------------------------------------------
# A cut at log line C loses everything from C on.  Before C:
#  - File contents and size.  A write, truncate or fallocate of a file is
#    durable once an fsync or fdatasync of that file (the same inode,
#    whatever its name) returned before C and had been called after the
#    operation completed (recfs's START).  Of the operations not durable,
#    each 4 KiB page keeps the effect of any prefix of the operations that
#    touched it (the page cache writes back a page's content as of some
#    moment), pages independently of each other and of the size, and the
#    size is the size after any prefix of them.  Pages are not torn.
#  - Directory entries.  A create, mkdir, link, unlink, rmdir or rename is
#    durable once an fsync of every directory it changed returned before C
#    and had been called after it.  An fsync of a file does not make its
#    name durable (POSIX does not promise it; ext4 and XFS happen to).  Of
#    the entry changes not durable, the state keeps, alternately, a prefix
#    in log order (what a journaling file system does: ordered metadata)
#    or any subset (a file system without ordering), applied in log order;
#    a rename is atomic.
#  - Attributes other than the size are not modelled (nbdsrv needs none).
# The directories the test made before recording are durable.
#
# What must hold in each state (man nbdsrv(8), CRASH SEMANTICS)
# ----------------------------------------------------------------
# nbdsrv starts and serves every client's overlay (refusing one counts as
# a failure: only unsynced operations were lost, and the contract says the
# server recovers from that).  A request is acknowledged durable when a
# FUA request's reply, or the reply to a FLUSH sent after its reply to
# the same run of the server, was received before C (driver.py's marks
# place those receipts in the log).
# Every 512-byte sector reads as the version written by the last request
# acknowledged durable that wrote it, or by a later request to it, never
# as anything else (no data the client did not write, no older version).
import json
import os
import random
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time

import nbd

SECTOR = 512
PAGE = 4096
FALLOC_FL_PUNCH_HOLE = 0x02
FALLOC_FL_ZERO_RANGE = 0x10
FALLOC_FL_KEEP_SIZE = 0x01

(log_path, initial_list, ops_json, base_image, nbdsrv, workdir,
 ncuts, seed, max_seconds) = sys.argv[1:10]
rng = random.Random(int(seed))
deadline = time.monotonic() + float(max_seconds)


def decode(p):
    out, i = bytearray(), 0
    while i < len(p):
        if p[i] == "%":
            out.append(int(p[i + 1:i + 3], 16))
            i += 3
        else:
            out += p[i].encode()
            i += 1
    return out.decode()


def split(path):
    d, _, name = path.rpartition("/")
    return d or "/", name


# ---- the history: each log line resolved to inode keys ----
#
# recfs names files by backing inode number, which the backing file
# system reuses once a file is gone: a key is (ino, generation), a new
# generation at each creation.

class History:
    def __init__(self):
        self.gen = {}        # ino -> current key
        self.paths = {}      # path -> key, the namespace as it is now
        self.kind = {}       # key -> "d", "f" or "l"
        self.link_target = {}
        self.lines = []      # resolved lines
        self.root = None

    def new_key(self, ino, kind):
        g = self.gen.get(ino, (ino, -1))[1] + 1
        self.gen[ino] = (ino, g)
        self.kind[(ino, g)] = kind
        return (ino, g)

    def key(self, ino):
        if ino not in self.gen:
            sys.exit("crashgen: log names inode %d before it was created" % ino)
        return self.gen[ino]

    def load_initial(self, listing):
        for line in open(listing):
            f = line.split()
            ino, path = f[0], "/" + (f[1].strip("/") if len(f) > 1 else "")
            key = self.new_key(int(ino), "d")
            if path == "/":
                self.root = key
            else:
                d, name = split(path)
                self.initial.append((self.paths[d], name, key))
            self.paths[path] = key

    def move(self, src, dst):
        for p in [p for p in self.paths if p == src or p.startswith(src + "/")]:
            self.paths[dst + p[len(src):]] = self.paths.pop(p)

    def resolve(self, f):
        op = f[0]
        if op == "mark":
            return ("mark", " ".join(f[1:]))
        ino = int(f[1])
        if op in ("create", "mknod", "mkdir", "symlink"):
            path = decode(f[2])
            key = self.new_key(ino, {"mkdir": "d", "symlink": "l"}.get(op, "f"))
            if op == "symlink":
                self.link_target[key] = decode(f[3])
            d, name = split(path)
            self.paths[path] = key
            return ("set", self.paths[d], name, key)
        key = self.key(ino)
        if op == "write":
            return ("write", key, int(f[3]), int(f[4]), int(f[5]))
        if op == "truncate":
            return ("trunc", key, int(f[3]))
        if op == "fallocate":
            return ("falloc", key, int(f[3]), int(f[4]), int(f[5]))
        if op == "fsync":
            return ("fsync", key, int(f[4]))
        if op == "fsyncdir":
            return ("dsync", key, int(f[4]))
        if op in ("unlink", "rmdir"):
            path = decode(f[2])
            d, name = split(path)
            self.paths.pop(path, None)
            return ("del", self.paths[d], name, key)
        if op == "link":
            path = decode(f[3])
            d, name = split(path)
            self.paths[path] = key
            return ("set", self.paths[d], name, key)
        if op == "rename":
            src, dst = decode(f[2]), decode(f[3])
            if int(f[4]) & 2:
                sys.exit("crashgen: RENAME_EXCHANGE is not modelled")
            sd, sn = split(src)
            dd, dn = split(dst)
            sdk, ddk = self.paths[sd], self.paths[dd]
            self.move(src, dst)
            return ("rename", sdk, sn, ddk, dn, key)
        sys.exit("crashgen: unknown log line: %s" % " ".join(f))


hist = History()
hist.initial = []
hist.load_initial(initial_list)
raw_lines = open(log_path).read().splitlines()
for line in raw_lines:
    hist.lines.append(hist.resolve(line.split()))
data_log = open(log_path + ".data", "rb").read()
N = len(hist.lines)

# ---- one crash state ----


def durable_points(cut):
    """For each file and directory key, the log position up to which its
    changes are durable at a cut before line cut."""
    upto = {}
    for i in range(cut):
        ln = hist.lines[i]
        if ln[0] in ("fsync", "dsync"):
            upto[ln[1]] = max(upto.get(ln[1], 0), ln[2])
    return upto


def page_range(off, length):
    return range(off // PAGE, (off + length + PAGE - 1) // PAGE)


def apply_data(buf, size, ln, pages=None):
    """Applies a data line to buf (a bytearray at least as long as any
    size) and returns the new size; with pages, only to those pages."""
    def put(off, data):
        if pages is None:
            buf[off:off + len(data)] = data
            return
        for p in page_range(off, len(data)):
            if p in pages:
                lo, hi = max(off, p * PAGE), min(off + len(data), (p + 1) * PAGE)
                buf[lo:hi] = data[lo - off:hi - off]

    op = ln[0]
    if op == "write":
        _, _, off, length, doff = ln
        grow(buf, off + length)
        put(off, data_log[doff:doff + length])
        return max(size, off + length)
    if op == "trunc":
        new = ln[2]
        grow(buf, max(size, new))
        if new < size:
            put(new, bytes(size - new))
        return new
    _, _, mode, off, length = ln
    grow(buf, off + length)
    if mode & (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE):
        put(off, bytes(length))
    return size if mode & FALLOC_FL_KEEP_SIZE else max(size, off + length)


def size_after(size, ln):
    """The size of a file of size after the data line ln."""
    if ln[0] == "write":
        return max(size, ln[2] + ln[3])
    if ln[0] == "trunc":
        return ln[2]
    _, _, mode, off, length = ln
    return size if mode & FALLOC_FL_KEEP_SIZE else max(size, off + length)


def grow(buf, n):
    if len(buf) < n:
        buf.extend(bytes(n - len(buf)))


def touched_pages(ln, size_before):
    op = ln[0]
    if op == "write":
        return page_range(ln[2], ln[3])
    if op == "trunc":
        return page_range(ln[2], size_before - ln[2]) if ln[2] < size_before else range(0)
    if ln[2] & (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE):
        return page_range(ln[3], ln[4])
    return range(0)


def file_state(key, cut, upto, keep):
    """Contents of a file after a power loss at cut: its durable
    operations, then each page's prefix of the rest."""
    buf, size = bytearray(), 0
    pending = []
    for i in range(cut):
        ln = hist.lines[i]
        if ln[0] in ("write", "trunc", "falloc") and ln[1] == key:
            if i < upto.get(key, 0):
                size = apply_data(buf, size, ln)
            else:
                pending.append(ln)
    if not pending:
        return bytes(buf[:size]) + bytes(max(0, size - len(buf)))
    # Per page, how many of the pending operations that touch it stay.
    count, sizes, touched = {}, [size], []
    for ln in pending:
        touched.append(touched_pages(ln, sizes[-1]))
        for p in touched[-1]:
            count[p] = count.get(p, 0) + 1
        sizes.append(size_after(sizes[-1], ln))
    stay = {p: keep(n) for p, n in count.items()}
    rank = {}
    for j, ln in enumerate(pending):
        chosen = set()
        for p in touched[j]:
            if rank.get(p, 0) < stay[p]:
                chosen.add(p)
            rank[p] = rank.get(p, 0) + 1
        apply_data(buf, sizes[j], ln, pages=chosen)
    size = sizes[keep(len(pending))]
    grow(buf, size)
    return bytes(buf[:size])


def namespace(cut, upto, mode, p_keep):
    """The directory entries after a power loss at cut."""
    entries = {hist.root: {}}
    for d, name, key in hist.initial:
        entries.setdefault(d, {})[name] = key
    pending = []
    for i in range(cut):
        ln = hist.lines[i]
        if ln[0] not in ("set", "del", "rename"):
            continue
        dirs = (ln[1], ln[3]) if ln[0] == "rename" else (ln[1],)
        durable = all(i < upto.get(d, 0) for d in dirs)
        pending.append((i, ln, durable))
    nondurable = [i for i, _, d in pending if not d]
    if mode == "ordered":
        last = rng.choice(nondurable + [cut]) if nondurable else cut
        keep = lambda i: i < last
    else:
        keep = lambda i: rng.random() < p_keep
    for i, ln, durable in pending:
        if not durable and not keep(i):
            continue
        if ln[0] == "set":
            entries.setdefault(ln[1], {})[ln[2]] = ln[3]
        elif ln[0] == "del":
            if entries.setdefault(ln[1], {}).get(ln[2]) == ln[3]:
                del entries[ln[1]][ln[2]]
        else:
            _, sd, sn, dd, dn, key = ln
            if entries.setdefault(sd, {}).get(sn) == key:
                del entries[sd][sn]
            entries.setdefault(dd, {})[dn] = key
    return entries


def materialize(cut, root_dir, mode):
    """Writes the state of a power loss at cut under root_dir."""
    upto = durable_points(cut)
    p_keep = rng.choice([0.0, 0.5, 1.0, rng.random()])

    def keep(n):
        return rng.choice([0, n, rng.randint(0, n)])

    entries = namespace(cut, upto, mode, p_keep)
    made = {}

    def walk(dkey, path):
        for name, key in sorted(entries.get(dkey, {}).items()):
            if dkey == hist.root and name == ".mark":
                continue
            p = os.path.join(path, name)
            kind = hist.kind[key]
            if key in made:
                if kind == "f":
                    os.link(made[key], p)
                continue
            if kind == "d":
                if key in seen:
                    continue
                seen.add(key)
                os.mkdir(p)
                walk(key, p)
            elif kind == "l":
                os.symlink(hist.link_target[key], p)
            else:
                data = file_state(key, cut, upto, keep)
                with open(p, "wb") as f:
                    for off in range(0, len(data), PAGE):
                        page = data[off:off + PAGE]
                        if page.count(0) != len(page):
                            f.seek(off)
                            f.write(page)
                    f.truncate(len(data))
                made[key] = p

    seen = {hist.root}
    walk(hist.root, root_dir)


# ---- what the client was promised ----

spec = json.load(open(ops_json))
ops = spec["ops"]
disk_size = spec["disk_size"]
base = open(base_image, "rb").read()
clients = sorted({o["client"] for o in ops})
mark_at = {}   # op id -> log line of its acknowledgement mark
for i, ln in enumerate(hist.lines):
    if ln[0] == "mark" and ln[1].startswith("ack "):
        mark_at[int(ln[1].split()[1])] = i
# Per client and sector: the requests that wrote it, in order.
versions = {c: [[] for _ in range(disk_size // SECTOR)] for c in clients}
for o in ops:
    if o["kind"] != "flush":
        for s in range(o["off"] // SECTOR, (o["off"] + o["len"]) // SECTOR):
            versions[o["client"]][s].append(o["id"])
by_id = {o["id"]: o for o in ops}
# What each request's acknowledgement promised durable: a FUA request
# itself, a flush every request of its client answered before it was sent.
promise = {}
for o in ops:
    if o["kind"] == "flush":
        promise[o["id"]] = [p["id"] for p in ops
                            if p["client"] == o["client"] and p["kind"] != "flush"
                            and p["epoch"] == o["epoch"]
                            and p.get("done", 1 << 62) < o["covers"]]
    elif o["fua"]:
        promise[o["id"]] = [o["id"]]


def durable_ops(cut):
    """The requests acknowledged durable before line cut."""
    out = set()
    for op_id, at in mark_at.items():
        if at < cut:
            out.update(promise[op_id])
    return out


def sector_of(op_id, s):
    o = by_id[op_id]
    if o["kind"] != "write":
        return bytes(SECTOR)
    return struct.pack("<QQ", op_id, s) * (SECTOR // 16)


def check_client(client, got, durable):
    """The first broken promise in got (the client's whole disk), or None."""
    for s, vs in enumerate(versions[client]):
        g = got[s * SECTOR:(s + 1) * SECTOR]
        req = max((k for k, v in enumerate(vs) if v in durable), default=-1)
        allowed = vs[req:] if req >= 0 else vs
        if any(g == sector_of(v, s) for v in allowed):
            continue
        if req < 0 and g == base[s * SECTOR:(s + 1) * SECTOR]:
            continue
        if g == bytes(SECTOR):
            what = "zeroes"
        elif g == base[s * SECTOR:(s + 1) * SECTOR]:
            what = "the base image's data"
        else:
            w, ws = struct.unpack("<QQ", g[:16])
            what = ("request %d's data" % w if w in by_id and g == sector_of(w, ws)
                    else "data no request wrote")
        want = ("request %d's data (acknowledged durable) or a later request's"
                % vs[req]) if req >= 0 else "base or any request's"
        return "sector %d (offset %d) reads as %s; want %s" % (
            s, s * SECTOR, what, want)
    return None


# ---- nbdsrv on a crash state ----

def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def serve_and_check(state_dir, cut, durable):
    """Starts nbdsrv on state_dir, reads every client's disk; a failure
    message or None."""
    port = free_port()
    log_file = os.path.join(state_dir, "nbdsrv.log")
    with open(log_file, "wb") as log:
        srv = subprocess.Popen([nbdsrv, "-f", "-l", "127.0.0.1:%d" % port,
                                "-e", "base=" + base_image,
                                "-o", os.path.join(state_dir, "ov")],
                               stdout=log, stderr=log)
    try:
        for _ in range(300):
            try:
                socket.create_connection(("127.0.0.1", port)).close()
                break
            except OSError:
                if srv.poll() is not None:
                    return "nbdsrv exited at start-up:\n" + open(log_file).read()
                time.sleep(0.02)
        else:
            return "nbdsrv not listening after 6 s"
        for client in clients:
            h = nbd.NBD()
            h.set_export_name("base" if client == "addr" else "base@" + client)
            try:
                h.connect_tcp("127.0.0.1", str(port))
                got = h.pread(disk_size, 0)
                h.shutdown()
            except nbd.Error as e:
                return "client %s not served: %s\n%s" % (client, e, open(log_file).read())
            bad = check_client(client, got, durable)
            if bad:
                return "client %s: %s" % (client, bad)
        return None
    finally:
        srv.send_signal(signal.SIGTERM)
        try:
            srv.wait(timeout=30)
        except subprocess.TimeoutExpired:
            srv.kill()
            srv.wait()


def pick_cuts(n):
    """Half anywhere, half where it hurts most: right after an
    acknowledgement, or right before a sync returned."""
    sharp = [i + 1 for i, ln in enumerate(hist.lines) if ln[0] == "mark"]
    sharp += [i for i, ln in enumerate(hist.lines) if ln[0] in ("fsync", "dsync")]
    return [rng.choice(sharp) if k % 2 and sharp else rng.randint(0, N)
            for k in range(n)]


failures = 0
checked = 0
promised = 0
os.makedirs(workdir, exist_ok=True)
for k, cut in enumerate(pick_cuts(int(ncuts))):
    if time.monotonic() > deadline:
        break
    mode = "ordered" if k % 2 == 0 else "subset"
    state_dir = os.path.join(workdir, "state")
    shutil.rmtree(state_dir, ignore_errors=True)
    os.makedirs(state_dir)
    materialize(cut, state_dir, mode)
    durable = durable_ops(cut)
    bad = serve_and_check(state_dir, cut, durable)
    checked += 1
    promised += len(durable)
    if bad:
        failures += 1
        keep = os.path.join(workdir, "failed-%d" % failures)
        shutil.rmtree(keep, ignore_errors=True)
        shutil.move(state_dir, keep)
        print("FAILED: power loss before log line %d (%s; directory entries %s):"
              "\n  %s\n  state kept in %s"
              % (cut + 1, raw_lines[cut] if cut < N else "end",
                 mode, bad, keep))
        if failures >= 3:
            break
shutil.rmtree(os.path.join(workdir, "state"), ignore_errors=True)
print("crashgen: %d power-loss states checked (cut points out of %d log lines), "
      "%d requests acknowledged durable checked in all, %d failed"
      % (checked, N, promised, failures))
sys.exit(1 if failures or checked == 0 else 0)
