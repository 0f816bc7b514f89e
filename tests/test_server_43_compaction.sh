#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# test_server_43: the journal of a client that stays connected is
# compacted in the background, and a crash at any moment of it loses
# nothing flushed.
#   - with journal-max 4K, one connection writes, trims and flushes for
#     a while: the log shows several compactions "in use", the map file
#     never grows past a small bound, and the data reads back;
#   - then rounds of: the client writes and flushes, the server is killed
#     with SIGKILL at a random moment (compactions run every few dozen
#     flushes, so some kills land in one), a new server starts, and every
#     block reads as it was at the client's last acknowledged flush or as
#     the write it had sent after it (nbdsrv(8), CRASH SEMANTICS);
#   - no temporary file is left after the restarts, and temporary files
#     planted as a crash would leave them are removed at start-up, and
#     when the overlay is opened, each with a log line.
. "$(dirname "$0")/functions.sh"
requires_cmd nbdsh
requires /usr/bin/python3 -c 'import nbd'

make_image "$TESTDIR/base.img" 4
args=(-e d="$TESTDIR/base.img" -o "$TESTDIR/ov" --journal-max 4K)
start_nbdsrv "${args[@]}"

# The client: OPS operations on 64 blocks, each a write or a trim and a
# flush, logged before it is sent ("W block byte" / "T block") and after
# the flush is acknowledged ("F"), so that the checker knows what was
# promised.  MAXMAP: fail if the map file is ever larger.
cat >"$TESTDIR/client.py" <<'PY'
import nbd, os, random, sys
uri, seed, ops, log, mapfile, maxmap = sys.argv[1:7]
r = random.Random(int(seed))
h = nbd.NBD()
h.connect_uri(uri)
out = open(log, "a", buffering=1)
for i in range(int(ops)):
    b = r.randrange(64)
    if r.random() < 0.3:
        out.write("T %d\n" % b)
        h.trim(4096, b * 4096)
    else:
        v = r.randrange(1, 256)
        out.write("W %d %d\n" % (b, v))
        h.pwrite(bytes([v]) * 4096, b * 4096)
    h.flush()
    out.write("F\n")
    if int(maxmap) and i % 50 == 0 and os.path.getsize(mapfile) > int(maxmap):
        sys.exit("map file %d bytes after %d operations" % (os.path.getsize(mapfile), i))
PY
# The checker: every block is what the log promised (its content at the
# last F), or what an operation after that last F left.  It then appends
# what it found ("R", then "S block byte"): what the next round starts
# from (an operation lost in the crash is lost for good).
cat >"$TESTDIR/check.py" <<'PY'
import nbd, sys
uri, log = sys.argv[1:3]
flushed, pending = {}, {}
for line in open(log):
    w = line.split()
    if not w:
        continue
    if w[0] == "F":
        flushed.update(pending); pending = {}
    elif w[0] == "R":
        pending = {}
    elif w[0] == "S":
        flushed[int(w[1])] = bytes([int(w[2])]) * 4096
    elif w[0] == "W":
        pending[int(w[1])] = bytes([int(w[2])]) * 4096
    elif w[0] == "T":
        pending[int(w[1])] = bytes(4096)
h = nbd.NBD()
h.connect_uri(uri)
found = []
for b in range(64):
    got = bytes(h.pread(4096, b * 4096))
    ok = [v for v in (flushed.get(b), pending.get(b)) if v is not None]
    if b not in flushed and not ok:
        continue   # the base image's block, never written
    if got not in ok and (b in flushed):
        sys.exit("block %d reads %r..., promised one of %r" % (b, got[:4], [o[:4] for o in ok]))
    if got in ok:
        found.append("S %d %d\n" % (b, got[0]))
with open(log, "a") as out:
    out.write("R\n" + "".join(found))
print("ok")
PY
map=$TESTDIR/ov/d/c.map

# Part 1: one long-lived connection; the map stays small.
/usr/bin/python3 "$TESTDIR/client.py" "$(uri d@c)" 1 1500 "$TESTDIR/ops.log" "$map" 65536 ||
  fail "the client failed (or the map grew past 64 KiB)"
n=$(grep -c "overlay .*/d/c: journal compacted in use" "$TESTDIR/nbdsrv.log" || true)
[ "$n" -ge 3 ] || fail "only $n compactions of the connected client's journal"
/usr/bin/python3 "$TESTDIR/check.py" "$(uri d@c)" "$TESTDIR/ops.log" >/dev/null ||
  fail "data wrong after the compactions"

# Part 2: kill -9 at random moments while the client writes and flushes.
for round in 1 2 3 4 5 6 7 8; do
  /usr/bin/python3 "$TESTDIR/client.py" "$(uri d@c)" $((round + 10)) 100000 \
    "$TESTDIR/ops.log" "$map" 0 2>/dev/null &
  client=$!
  sleep "0.$((RANDOM % 9 + 1))"
  kill -9 "$SRV_PID"
  wait "$SRV_PID" 2>/dev/null || true
  wait "$client" 2>/dev/null || true
  echo "--- round $round: restart" >>"$TESTDIR/nbdsrv.log"
  start_nbdsrv "${args[@]}"
  /usr/bin/python3 "$TESTDIR/check.py" "$(uri d@c)" "$TESTDIR/ops.log" >/dev/null ||
    fail "round $round: flushed data lost after a kill -9"
done
grep -q "journal compacted in use" "$TESTDIR/nbdsrv.log" || fail "no compaction at all"

# Part 3: what a crash in the middle of a compaction or of a creation
# leaves is removed at start-up and when the overlay is opened.
stop_nbdsrv
ls "$TESTDIR"/ov/d/ | grep -q "tmp" && fail "temporary files left: $(ls "$TESTDIR/ov/d")"
echo junk >"$TESTDIR/ov/d/c.compact.tmp"
echo junk >"$TESTDIR/ov/d/e.map.tmp"
echo junk >"$TESTDIR/ov/d/e.data.tmp"
start_nbdsrv "${args[@]}"
for f in c.compact.tmp e.map.tmp e.data.tmp; do
  grep -q "removed $TESTDIR/ov/d/$f, left by a crash" "$TESTDIR/nbdsrv.log" ||
    fail "no log line for the removal of $f"
  [ ! -e "$TESTDIR/ov/d/$f" ] || fail "$f still there after the start"
done
/usr/bin/python3 "$TESTDIR/check.py" "$(uri d@c)" "$TESTDIR/ops.log" >/dev/null ||
  fail "data wrong after the last restart"
echo junk >"$TESTDIR/ov/d/f.compact.tmp"
nbdsh -u "$(uri d@f)" -c 'h.pread(4096, 0)' || fail "client f not served"
grep -q "overlay $TESTDIR/ov/d/f: removed $TESTDIR/ov/d/f.compact.tmp" "$TESTDIR/nbdsrv.log" ||
  fail "no removal of f.compact.tmp when its overlay was opened"
[ ! -e "$TESTDIR/ov/d/f.compact.tmp" ] || fail "f.compact.tmp still there"
stop_nbdsrv
