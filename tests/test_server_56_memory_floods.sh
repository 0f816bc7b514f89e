#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# test_server_56_memory_floods: clients that send and never read cannot
# make the server hold memory beyond its budgets.  Each flood comes from
# a hand-made client on a connection of its own, kept open and never
# read, one after the other, so that they add up:
#   - 40 pipelined 32 MiB READs in one send (copied, not spliced): the
#     growth stays under one such read (replies are streamed in chunks);
#   - a flood of BLOCK_STATUS requests;
#   - a flood of NBD_OPT_LIST before NBD_OPT_GO.
# After each, the server's RSS has grown by less than its memory budget
# plus a fixed allowance, and another client still reads and writes.
. "$(dirname "$0")/functions.sh"

make_image "$TESTDIR/base.img" 64
# The sanitizer's quarantine would hold freed memory: keep it small.
ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}quarantine_size_mb=4"
export ASAN_OPTIONS
start_nbdsrv -e base="$TESTDIR/base.img" -o "$TESTDIR/ov" --no-splice \
  --memory-budget 24M --connection-budget 4M
export PORT SRV_PID

/usr/bin/python3 "$srcdir/server-lib.py" "$TESTDIR" <<'PY' || fail "memory floods"
tdir = sys.argv[1]
pid = int(os.environ["SRV_PID"])
base = open(tdir + "/base.img", "rb").read()
BUDGET = 24 * MiB
maps = open("/proc/%d/maps" % pid).read()
sanitized = "asan" in maps or "ubsan" in maps
# Under valgrind (NBDROOT_VALGRIND) RSS is valgrind's, which keeps what
# was freed: the floods run for its error and leak checks, the RSS bounds
# are those of the plain and sanitizer runs.
under_valgrind = "memcheck" in maps
# Per flood connection, one unit over its budget may be in flight (a
# request and its chunk buffer: reads and writes longer than a chunk are
# done chunk by chunk), plus what was already received when it stopped;
# then the allocator's own slack.
ALLOWANCE = (3 * 2 + 8) * MiB * (2 if sanitized else 1)
# The unread 32 MiB READs hold one chunk of a reply at a time, never a
# whole reply.
READ_ALLOWANCE = (12 if not sanitized else 20) * MiB

def rss():
    for line in open("/proc/%d/status" % pid):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024

def other_client_served(what):
    h = connect("base@other")
    check_data(h.pread(4096, 8 * MiB), base[8 * MiB:8 * MiB + 4096], what + ": read")
    h.pwrite(pattern(what, 4096), 12 * MiB)
    check_data(h.pread(4096, 12 * MiB), pattern(what, 4096), what + ": read back")
    h.shutdown()

def settled(what, rss0, allowed=BUDGET + ALLOWANCE):
    # Let the server take what it will, then look.
    peak = 0
    for _ in range(20):
        time.sleep(0.1)
        peak = max(peak, rss())
    log("%s: RSS %d MiB, %d MiB over the start" % (what, peak >> 20, (peak - rss0) >> 20))
    check(under_valgrind or peak - rss0 < allowed,
          "%s: RSS grew by %d MiB (budget %d MiB)" % (what, (peak - rss0) >> 20, BUDGET >> 20))
    other_client_served(what)

other_client_served("warm-up")
time.sleep(0.2)
rss0 = rss()
floods = []

# 40 READs of 32 MiB, replies never read.
r = Raw()
r.greeting()
rtype, _ = r.go("base@reader", infos=())
check(rtype == REP_ACK, "OPT_GO: %#x" % rtype)
r.send(b"".join(struct.pack(">IHHQQI", REQUEST_MAGIC, 0, CMD_READ, i, 0, 32 * MiB)
                for i in range(40)))
floods.append(r)
settled("READ flood", rss0, READ_ALLOWANCE)

# BLOCK_STATUS requests, replies never read.
r = Raw()
r.greeting()
r.send_opt(OPT_STRUCTURED_REPLY)
check(r.recv_rep(OPT_STRUCTURED_REPLY)[0] == REP_ACK, "structured replies")
name = b"base@status"
q = b"base:allocation"
r.send_opt(OPT_SET_META_CONTEXT, struct.pack(">I", len(name)) + name +
           struct.pack(">II", 1, len(q)) + q)
rtype, _ = r.recv_rep(OPT_SET_META_CONTEXT)
check(rtype == REP_META_CONTEXT, "meta context: %#x" % rtype)
check(r.recv_rep(OPT_SET_META_CONTEXT)[0] == REP_ACK, "meta context ack")
rtype, _ = r.go("base@status", infos=())
check(rtype == REP_ACK, "OPT_GO: %#x" % rtype)
r.s.setblocking(False)
batch = b"".join(struct.pack(">IHHQQI", REQUEST_MAGIC, 0, CMD_BLOCK_STATUS, i, 0, 64 * MiB)
                 for i in range(4096))
sent = 0
deadline = time.monotonic() + 5
while time.monotonic() < deadline:
    try:
        sent += r.s.send(batch)
    except BlockingIOError:
        time.sleep(0.05)
log("BLOCK_STATUS flood: %d requests sent before the server stopped taking them" % (sent // 28))
floods.append(r)
settled("BLOCK_STATUS flood", rss0)

# NBD_OPT_LIST before NBD_OPT_GO, replies never read.
r = Raw()
r.greeting()
r.s.setblocking(False)
batch = struct.pack(">QII", IHAVEOPT, OPT_LIST, 0) * 4096
sent = 0
deadline = time.monotonic() + 5
while time.monotonic() < deadline:
    try:
        sent += r.s.send(batch)
    except BlockingIOError:
        time.sleep(0.05)
log("NBD_OPT_LIST flood: %d options sent before the server stopped taking them" % (sent // 16))
floods.append(r)
settled("NBD_OPT_LIST flood", rss0)

# The floods go away: the server lets it all go and goes on.
for r in floods:
    r.close()
time.sleep(0.5)
other_client_served("after the floods")
PY
grep -q "ERROR: AddressSanitizer" "$TESTDIR/nbdsrv.log" && fail "sanitizer report"
kill -0 "$SRV_PID" || fail "nbdsrv died"
exit 0
