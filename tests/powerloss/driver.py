# SPDX-License-Identifier: GPL-2.0-or-later
# The power-loss test's client side: runs nbdsrv with its overlays on a
# recfs mount and drives it as two clients, recording what it asked and
# what it was promised.
#
#   driver.py NBDSRV BASE_IMAGE OVERLAY_DIR MARK_FILE OPS_JSON SEED
#
# Two clients ("base", keyed by address, and "base@pc2") write, trim,
# zero (some with FUA) and flush at random, with several requests in
# flight and sometimes two connections of one client at once, across
# reconnects, a kill -9 and a SIGTERM of the server, and an idle spell
# long enough for the server to compact a long journal.
#
# Each write carries data no other write has: sector S of write N holds
# (N, S) repeated, so a checker knows which write a sector came from.
# Requests that are in flight together never overlap, so the order of the
# versions of a sector is the order the requests were sent.
#
# When a FLUSH or a FUA request is answered, the driver writes
# "mark ack ID" to MARK_FILE (recfs logs it): the log then shows which
# syncs of the server came before the acknowledgement.  OPS_JSON gets
# every request: its client, kind, range, flags, the order it completed
# in, the server's run it went to (epoch), and for a flush how many
# completions came before it was sent (it covers those of its client in
# its epoch: a write the server lost in a kill -9 is no flush's to keep).
import json
import os
import random
import select
import signal
import socket
import struct
import subprocess
import sys
import time

import nbd

SECTOR = 512
BLOCK = 4096

nbdsrv, base_image, overlay_dir, mark_file, ops_json, seed = sys.argv[1:7]
rng = random.Random(int(seed))
disk_size = os.path.getsize(base_image)
ops = []          # every request, by id - 1
completions = 0   # requests answered so far
server = None
port = None
epoch = 0         # server starts so far: a flush covers only its epoch


def sector_data(op_id, first_sector, nsectors):
    return b"".join(struct.pack("<QQ", op_id, s) * (SECTOR // 16)
                    for s in range(first_sector, first_sector + nsectors))


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def start_server():
    global server, port, epoch
    epoch += 1
    port = free_port()
    log = open(os.environ.get("TESTDIR", ".") + "/nbdsrv.log", "ab")
    server = subprocess.Popen([nbdsrv, "-f", "-l", "127.0.0.1:%d" % port,
                               "-e", "base=" + base_image, "-o", overlay_dir],
                              stdout=log, stderr=log)
    for _ in range(300):
        try:
            socket.create_connection(("127.0.0.1", port)).close()
            return
        except OSError:
            if server.poll() is not None:
                sys.exit("driver: nbdsrv exited during start-up (see nbdsrv.log)")
            time.sleep(0.05)
    sys.exit("driver: nbdsrv not listening after 15 s")


def stop_server(sig):
    server.send_signal(sig)
    rc = server.wait(timeout=60)
    if sig == signal.SIGTERM and rc != 0:
        sys.exit("driver: nbdsrv exited with %d on SIGTERM" % rc)


def connect(export):
    h = nbd.NBD()
    h.set_export_name(export)
    h.connect_tcp("127.0.0.1", str(port))
    return h


def mark(text):
    # One write(2), so recfs logs one mark line.
    fd = os.open(mark_file, os.O_WRONLY)
    os.write(fd, (text + "\n").encode())
    os.close(fd)


class Conn:
    def __init__(self, client):
        self.client = client
        self.h = connect("base" if client == "addr" else "base@" + client)
        self.inflight = {}   # cookie -> (op, buffer kept alive)


def overlaps(a, b):
    return a["off"] < b["off"] + b["len"] and b["off"] < a["off"] + a["len"]


def pick_range(kind):
    if kind == "write" and rng.random() < 0.6:
        # Sector-aligned, often not block-aligned: read-modify-write.
        n = rng.choice([1, 1, 2, 3, 7, 8, 9, 16, 33])
        s = rng.randrange(0, disk_size // SECTOR - n + 1)
        return s * SECTOR, n * SECTOR
    n = rng.choice([1, 1, 1, 2, 4, 8, 16] + ([64] if kind == "write" else []))
    b = rng.randrange(0, disk_size // BLOCK - n + 1)
    return b * BLOCK, n * BLOCK


def complete(conn, cookie):
    global completions
    op, _ = conn.inflight.pop(cookie)
    op["done"] = completions
    completions += 1
    if op["kind"] == "flush" or op["fua"]:
        mark("ack %d" % op["id"])


def reap(conns, block):
    """Processes replies; with block, waits until at least one came."""
    while True:
        got = False
        for c in conns:
            for cookie in list(c.inflight):
                if c.h.aio_command_completed(cookie):
                    complete(c, cookie)
                    got = True
        if got or not block or not any(c.inflight for c in conns):
            return
        rl, wl = [], []
        fds = {}
        for c in conns:
            if not c.inflight:
                continue
            d = c.h.aio_get_direction()
            fd = c.h.aio_get_fd()
            fds[fd] = c
            if d & nbd.AIO_DIRECTION_READ:
                rl.append(fd)
            if d & nbd.AIO_DIRECTION_WRITE:
                wl.append(fd)
        r, w, _ = select.select(rl, wl, [], 30)
        if not r and not w:
            sys.exit("driver: no reply from nbdsrv in 30 s")
        for fd in r:
            fds[fd].h.aio_notify_read()
        for fd in w:
            fds[fd].h.aio_notify_write()


def issue(conns, conn, kind, off=None, length=None, fua=None):
    op = {"id": len(ops) + 1, "client": conn.client, "kind": kind,
          "off": 0, "len": 0, "fua": False, "epoch": epoch}
    if kind != "flush":
        if off is None:
            off, length = pick_range(kind)
        op["off"], op["len"] = off, length
        op["fua"] = rng.random() < 0.25 if fua is None else fua
        # Nothing in flight may overlap it (the order of a sector's
        # versions must be the order of sending).
        while any(overlaps(op, o) for c in conns if c.client == conn.client
                  for o, _ in c.inflight.values() if o["kind"] != "flush"):
            reap(conns, True)
    flags = nbd.CMD_FLAG_FUA if op["fua"] else 0
    buf = None
    if kind == "write":
        buf = nbd.Buffer.from_bytearray(bytearray(
            sector_data(op["id"], op["off"] // SECTOR, op["len"] // SECTOR)))
        cookie = conn.h.aio_pwrite(buf, op["off"], flags=flags)
    elif kind == "trim":
        cookie = conn.h.aio_trim(op["len"], op["off"], flags=flags)
    elif kind == "zero":
        cookie = conn.h.aio_zero(op["len"], op["off"], flags=flags)
    else:
        op["covers"] = completions
        cookie = conn.h.aio_flush()
    ops.append(op)
    conn.inflight[cookie] = (op, buf)


def session(clients, nops, depth=4, kinds=None):
    """nops random requests over one connection per entry of clients."""
    conns = [Conn(c) for c in clients]
    kinds = kinds or ["write"] * 11 + ["trim"] * 2 + ["zero"] * 2 + ["flush"] * 3
    for _ in range(nops):
        conn = rng.choice(conns)
        while len(conn.inflight) >= depth:
            reap(conns, True)
        issue(conns, conn, rng.choice(kinds))
        reap(conns, False)
    # Every request answered, then a flush: nothing of this session is
    # left unsynced when the server is killed next.
    while any(c.inflight for c in conns):
        reap(conns, True)
    for c in conns:
        issue(conns, c, "flush")
    while any(c.inflight for c in conns):
        reap(conns, True)
    for c in conns:
        c.h.shutdown()


def journal_churn(client, blocks, rounds):
    """Writes and trims the same few blocks, none next to another: each
    request flips a block's state, so the journal grows far longer than
    the map.  No flush at the end: the server syncs and compacts the
    journal when it closes the idle overlay."""
    conns = [Conn(client)]
    for i in range(rounds):
        b = blocks[i % len(blocks)]
        kind = "write" if (i // len(blocks)) % 2 == 0 else "trim"
        issue(conns, conns[0], kind, b * BLOCK, BLOCK, False)
        if len(conns[0].inflight) >= 8:
            reap(conns, True)
    while conns[0].inflight:
        reap(conns, True)
    conns[0].h.shutdown()


def latest_image(client):
    """What the client's disk must read now: the base, then every request
    of the client in order."""
    img = bytearray(open(base_image, "rb").read())
    for op in ops:
        if op["client"] != client or op["kind"] == "flush":
            continue
        if op["kind"] == "write":
            img[op["off"]:op["off"] + op["len"]] = sector_data(
                op["id"], op["off"] // SECTOR, op["len"] // SECTOR)
        else:
            img[op["off"]:op["off"] + op["len"]] = bytes(op["len"])
    return bytes(img)


def self_check():
    """The driver's own model against the server before any crash: a
    wrong model would make every later verdict meaningless."""
    for client in ("addr", "pc2"):
        c = Conn(client)
        got = c.h.pread(disk_size, 0)
        c.h.shutdown()
        if got != latest_image(client):
            sys.exit("driver: client %s reads other data than it wrote, before any crash" % client)


start_server()
session(["addr"], 150)
session(["pc2"], 100)
stop_server(signal.SIGKILL)
start_server()
session(["addr", "addr", "pc2"], 250, depth=6)
stop_server(signal.SIGTERM)
start_server()
journal_churn("pc2", list(range(40, 72, 2)), 1100)
# The server closes an idle overlay after 2 s, syncing it and compacting
# its journal.
time.sleep(3.5)
session(["addr", "pc2", "pc2"], 200, depth=6)
self_check()
stop_server(signal.SIGTERM)

with open(ops_json, "w") as f:
    json.dump({"disk_size": disk_size, "ops": ops}, f)
print("driver: %d requests, %d of them flushes, %d FUA" % (
    len(ops), sum(o["kind"] == "flush" for o in ops), sum(o["fua"] for o in ops)))
