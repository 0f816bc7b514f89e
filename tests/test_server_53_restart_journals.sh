#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# test_server_53: after a restart, the server says how long reattaching
# its clients took, and the journals of overlays that are closed again
# are left bounded:
#   - N overlays get long journals (many one-record batches, as a client
#     that flushes after every write leaves them; one longer than the
#     others), the server is killed and started again with journal-max 4K;
#   - every client reconnects, reads and leaves: the log has one start-up
#     line naming how many were attached and the largest overlay;
#   - the janitor closes them once idle, but not before their journals
#     are compacted (by the compactor, one at a time, or at the close):
#     each compaction is logged, no map file is longer than a small
#     bound afterwards, and the data reads back.
. "$(dirname "$0")/functions.sh"
requires_cmd nbdsh
requires /usr/bin/python3 -c 'import nbd'

n=24
make_image "$TESTDIR/base.img" 4
start_nbdsrv -e d="$TESTDIR/base.img" -o "$TESTDIR/ov" --journal-max 0
for i in $(seq -w 0 $((n - 1))); do
  nbdsh -u "$(uri "d@c$i")" -c "h.pwrite(b'$i' * 2048, 0); h.flush()" ||
    fail "client c$i cannot write"
done
stop_nbdsrv KILL || true

# Long histories: each journal gets RECORDS more batches over blocks
# 1..64 (block 0 stays what the client wrote); c00's the most.
/usr/bin/python3 - "$TESTDIR/ov/d" "$n" <<'PY' || fail "cannot lengthen the journals"
import os, struct, sys, zlib
d, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    records = 30000 if i == 0 else 20000
    buf = bytearray()
    for k in range(records):
        rec = struct.pack("<QII", 1 + k % 64, 1, 1 + (k & 1))
        buf += struct.pack("<IIII", 0x424c564f, 1, zlib.crc32(rec), 0) + rec
    with open(os.path.join(d, "c%02d.map" % i), "ab") as f:
        f.write(buf)
PY

start_nbdsrv -e d="$TESTDIR/base.img" -o "$TESTDIR/ov" --journal-max 4K
for i in $(seq -w 0 $((n - 1))); do
  got=$(nbdsh -u "$(uri "d@c$i")" -c "print(h.pread(4, 0).decode())") ||
    fail "client c$i cannot read after the restart"
  [ "$got" = "$i$i" ] || fail "client c$i reads '$got', wrote '$i$i'"
done

wait_log "start-up: $n overlays attached" "the start-up line"
grep "start-up: " "$TESTDIR/nbdsrv.log" | grep -q "largest: d/c00, [0-9]* KiB map" ||
  fail "the start-up line does not name d/c00 as the largest: $(grep start-up: "$TESTDIR/nbdsrv.log")"
[ "$(grep -c "start-up: " "$TESTDIR/nbdsrv.log")" = 1 ] ||
  fail "more than one start-up line"

i=0
until [ "$(grep -c "journal compacted" "$TESTDIR/nbdsrv.log")" -ge $n ]; do
  i=$((i + 1))
  [ $i -lt 600 ] || fail "only $(grep -c "journal compacted" "$TESTDIR/nbdsrv.log") of $n journals compacted after 60 s"
  sleep 0.1
done
# Closed (idle-close is 2 s), and bounded: a snapshot of 64 blocks is
# a few KiB, far below the journals' 600 KiB and more.
sleep 3
for f in "$TESTDIR"/ov/d/c*.map; do
  size=$(stat -c %s "$f")
  [ "$size" -le 65536 ] || fail "$f is $size bytes after its overlay was closed"
done
grep -q "journal compacted at close" "$TESTDIR/nbdsrv.log" ||
  echo "note: every journal was compacted in use, none at close" >&2
stop_nbdsrv

# And the data is what it was.
start_nbdsrv -e d="$TESTDIR/base.img" -o "$TESTDIR/ov"
got=$(nbdsh -u "$(uri d@c07)" -c "print(h.pread(4, 0).decode())")
[ "$got" = 0707 ] || fail "c07 reads '$got' after the compactions"
exit 0
