#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# test_server_31_attach_thread: overlays opened off the event loop (attach.c).  A new
# client's NBD_OPT_GO waits while the attach thread creates its overlay;
# meanwhile the worker serves everybody else.  Around that wait:
#   - a client that sends its first requests together with NBD_OPT_GO
#     (and with NBD_OPT_EXPORT_NAME), before any reply, gets the option
#     reply and then every request answered, in order, with the right data;
#   - a client that hangs up right after NBD_OPT_GO, before its overlay is
#     open, costs nothing: the server stays up, and the overlay it asked
#     for is usable afterwards;
#   - 96 KiB of garbage sent before the reply: the server stops reading
#     (its budget), then takes it as requests and closes the connection,
#     with a line in the log saying why;
#   - 100 new clients at once all attach and read, while a connected
#     client keeps reading and writing;
#   - a failed NBD_OPT_GO with a second one behind it, the client gone
#     while the second one waits (under ASan: no use after free);
#   - SIGTERM while clients wait for their overlays: nbdsrv exits 0.
# The valgrind pass runs it too (leaks of a job or a kept byte fail it).
. "$(dirname "$0")/functions.sh"

make_image "$TESTDIR/base.img" 16
cat >"$TESTDIR/nbdsrv.conf" <<EOF
[generic]
max-connections-per-address = 1000
EOF
start_nbdsrv -c "$TESTDIR/nbdsrv.conf" -e base="$TESTDIR/base.img" -o "$TESTDIR/ov"
export PORT

/usr/bin/python3 "$srcdir/server-lib.py" "$TESTDIR" <<'PY' || fail "attach checks"
import threading
tdir = sys.argv[1]
base = open(tdir + "/base.img", "rb").read()

def go_data(name):
    n = name.encode()
    return struct.pack(">I", len(n)) + n + struct.pack(">H", 0)

def request_bytes(cmd, cookie, offset, length, payload=b""):
    return struct.pack(">IHHQQI", REQUEST_MAGIC, 0, cmd, cookie, offset,
                       length) + payload

# A connected client that keeps working through everything below.
keeper = connect("base@keeper")
keeper.pwrite(b"K" * 4096, 0)
keeper.flush()
stop_keeper = False
keeper_errors = []
def keep_busy():
    i = 0
    while not stop_keeper:
        try:
            off = (i % 64) * 4096 + 65536
            keeper.pwrite(pattern(("keeper", i), 4096), off)
            check(keeper.pread(4096, off) == pattern(("keeper", i), 4096),
                  "keeper read back")
        except Exception as e:
            keeper_errors.append(str(e))
            return
        i += 1
busy = threading.Thread(target=keep_busy, daemon=True)
busy.start()

# 1. Requests pipelined behind NBD_OPT_GO, in one send, for a new client
# (its overlay is created by the attach thread).
for i in range(5):
    r = Raw()
    r.greeting(client_flags=None)
    w = pattern(("pipelined", i), 4096)
    stream = struct.pack(">I", FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES)
    stream += struct.pack(">QII", IHAVEOPT, OPT_GO, len(go_data("base@pipe%d" % i)))
    stream += go_data("base@pipe%d" % i)
    stream += request_bytes(CMD_READ, 1, 8192, 4096)
    stream += request_bytes(CMD_WRITE, 2, 16384, 4096, w)
    r.send(stream)
    for _ in range(10):
        rtype, rdata = r.recv_rep(OPT_GO)
        if rtype != REP_INFO:
            break
    check(rtype == REP_ACK, "pipelined OPT_GO: reply %#x" % rtype)
    # Replies may come in any order.
    for _ in range(2):
        magic, err, cookie = struct.unpack(">IIQ", r.recv_exact(16))
        check(magic == SIMPLE_REPLY_MAGIC and err == 0 and cookie in (1, 2),
              "pipelined request: reply magic %#x error %d cookie %d"
              % (magic, err, cookie))
        if cookie == 1:
            check(r.recv_exact(4096) == base[8192:12288], "pipelined read")
    c = r.request(CMD_READ, 16384, 4096)
    err, data = r.simple_reply(c, 4096)
    check(err == 0 and data == w, "read after the pipelined write")
    c = r.request(CMD_FLUSH, 0, 0)
    check(r.simple_reply(c)[0] == 0, "flush after the pipelined write")
    r.request(CMD_DISC, 0, 0)
    r.expect_closed("NBD_CMD_DISC after pipelined requests")
# The same behind NBD_OPT_EXPORT_NAME (no option reply, 10 bytes).
r = Raw()
r.greeting(client_flags=None)
r.send(struct.pack(">I", FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES) +
       struct.pack(">QII", IHAVEOPT, OPT_EXPORT_NAME, 14) + b"base@pipe-name" +
       request_bytes(CMD_READ, 9, 4096, 512))
size, _ = struct.unpack(">QH", r.recv_exact(10))
check(size == len(base), "OPT_EXPORT_NAME size %d" % size)
err, data = r.simple_reply(9, 512)
check(err == 0 and data == base[4096:4608], "read pipelined behind OPT_EXPORT_NAME")
r.close()
h = connect("base@pipe0")
check_data(h.pread(4096, 16384), pattern(("pipelined", 0), 4096),
           "a pipelined client's write after reconnecting")
h.shutdown()

# 2. Clients that hang up before their overlay is open.
for i in range(30):
    r = Raw()
    r.greeting(client_flags=None)
    r.send(struct.pack(">I", FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES) +
           struct.pack(">QII", IHAVEOPT, OPT_GO, len(go_data("base@gone%d" % i))) +
           go_data("base@gone%d" % i))
    # RST, not FIN: the socket is gone at once.
    r.s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    r.close()
h = connect("base@gone7")
check_data(h.pread(65536, 0), base[:65536], "the overlay of a client that hung up")
h.shutdown()

# 3. A flood before the reply: the connection closes.
r = Raw()
r.greeting(client_flags=None)
try:
    r.send(struct.pack(">I", FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES) +
           struct.pack(">QII", IHAVEOPT, OPT_GO, len(go_data("base@flood"))) +
           go_data("base@flood") + b"\0" * (96 << 10))
except (ConnectionResetError, BrokenPipeError):
    pass
r.expect_closed("96 KiB sent before the OPT_GO reply")

# 4. 100 new clients at once.
results = [None] * 100
def boot(i):
    try:
        h = connect("base@storm%d" % i)
        off = (i % 16) * 4096
        ok = h.pread(4096, off) == base[off:off + 4096]
        h.pwrite(pattern(("storm", i), 4096), 1 << 20)
        h.flush()
        ok = ok and h.pread(4096, 1 << 20) == pattern(("storm", i), 4096)
        h.shutdown()
        results[i] = "ok" if ok else "wrong data"
    except Exception as e:
        results[i] = str(e)
threads = [threading.Thread(target=boot, args=(i,)) for i in range(100)]
for t in threads:
    t.start()
for t in threads:
    t.join()
bad = [(i, r) for i, r in enumerate(results) if r != "ok"]
check(not bad, "storm clients failed: %s" % bad[:5])

# 5. A failed NBD_OPT_GO and a second one sent with it: the second one
# waits for the attach thread while its client hangs up (the thread kept
# busy by a stream of new clients meanwhile).  Broken overlay: a map file
# of garbage.
os.makedirs(tdir + "/ov/base", exist_ok=True)
open(tdir + "/ov/base/broken.map", "wb").write(b"garbage" * 200)
stop_stream = False
def stream_of_new_clients(k):
    # Bounded: on a slow machine the attach thread (at SCHED_IDLE) falls
    # behind, and every client it has not reached yet still counts as a
    # connection from 127.0.0.1 (max-connections-per-address above).
    i = 0
    while not stop_stream and i < 250:
        try:
            r = Raw()
            r.greeting(client_flags=None)
            n = ("base@stream%d-%d" % (k, i)).encode()
            r.send(struct.pack(">I", FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES) +
                   struct.pack(">QII", IHAVEOPT, OPT_GO, len(n) + 6) +
                   struct.pack(">I", len(n)) + n + struct.pack(">H", 0))
            r.close()
        except Exception:
            pass
        i += 1
streams = [threading.Thread(target=stream_of_new_clients, args=(k,), daemon=True)
           for k in range(3)]
for t in streams:
    t.start()
time.sleep(0.3)
for i in range(20):
    r = Raw()
    r.greeting(client_flags=None)
    r.send(struct.pack(">I", FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES) +
           struct.pack(">QII", IHAVEOPT, OPT_GO, len(go_data("base@broken"))) +
           go_data("base@broken") +
           struct.pack(">QII", IHAVEOPT, OPT_GO, len(go_data("base@second%d" % i))) +
           go_data("base@second%d" % i))
    rtype, rdata = r.recv_rep(OPT_GO)
    check(rtype & REP_ERR, "OPT_GO of a broken overlay: reply %#x" % rtype)
    r.s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    r.close()
stop_stream = True
for t in streams:
    t.join()
h = connect("base@second3")
check_data(h.pread(4096, 0), base[:4096], "a client whose second OPT_GO waited")
h.shutdown()

stop_keeper = True
busy.join()
check(not keeper_errors, "the connected client failed meanwhile: %s" % keeper_errors[:3])
check(keeper.pread(4096, 0) == b"K" * 4096, "keeper's first block")
keeper.shutdown()
PY
grep -q "bad request magic" "$TESTDIR/nbdsrv.log" ||
  fail "no log line for the flood before the OPT_GO reply"

# 5. SIGTERM while new clients wait for their overlays.
/usr/bin/python3 "$srcdir/server-lib.py" "$TESTDIR" <<'PY' &
socks = []
for i in range(200):
    try:
        r = Raw()
        r.greeting(client_flags=None)
        n = ("base@late%d" % i).encode()
        r.send(struct.pack(">I", FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES) +
               struct.pack(">QII", IHAVEOPT, OPT_GO, len(n) + 6) +
               struct.pack(">I", len(n)) + n + struct.pack(">H", 0))
        socks.append(r)
    except Exception:
        break
time.sleep(5)
PY
burst=$!
sleep 0.5
stop_nbdsrv || fail "nbdsrv exited with $? on SIGTERM with clients waiting for their overlays"
kill "$burst" 2>/dev/null; wait "$burst" 2>/dev/null || true
