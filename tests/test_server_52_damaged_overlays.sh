#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# test_server_52: damaged overlays are refused, never cut back or made
# again, and their files are left byte for byte as they were:
#   - a journal batch damaged in the middle (valid batches after it);
#   - a map file shorter than its header;
#   - a data file shorter than the map needs;
# each client is refused with a message that says "damaged" (libnbd
# shows it), the log says why, `nbdsrv ctl list` lists the overlay, and
# the files' checksums do not change.  A torn tail (bytes after the last
# whole batch) is still cut, with its byte count in the log, and that
# client is served.  (An empty map file is not damage: a power loss
# during an overlay's first flush can leave one beside data, and nothing
# was promised; test_server_40 finds such states.)
. "$(dirname "$0")/functions.sh"
requires_cmd nbdsh sha256sum
requires /usr/bin/python3 -c 'import nbd'

make_image "$TESTDIR/base.img" 4
args=(-e d="$TESTDIR/base.img" -o "$TESTDIR/ov")
start_nbdsrv "${args[@]}"
for id in mid short data torn; do
  nbdsh -u "$(uri "d@$id")" -c "
for i in range(4):
    h.pwrite(bytes([65 + i]) * 4096, (i * 50) * 4096); h.flush()
" || fail "client $id cannot write"
done
stop_nbdsrv || fail "the server did not stop cleanly"

ov=$TESTDIR/ov/d
# mid: one byte of the second batch's records flipped (batches start at
# byte 1024: a 16-byte header, then 16-byte records).
/usr/bin/python3 - "$ov/mid.map" <<'PY' || fail "cannot damage mid.map"
import struct, sys
f = open(sys.argv[1], "r+b"); data = f.read()
off, starts = 1024, []
while off + 16 <= len(data):
    magic, count, crc, zero = struct.unpack_from("<IIII", data, off)
    starts.append(off); off += 16 + 16 * count
assert len(starts) >= 3, starts
f.seek(starts[1] + 16 + 2); f.write(bytes([data[starts[1] + 18] ^ 0x55]))
PY
truncate -s 700 "$ov/short.map"
truncate -s 4096 "$ov/data.data"
printf 'torn-tail!' >>"$ov/torn.map"   # 10 bytes
(cd "$ov" && sha256sum mid.* short.* data.*) >"$TESTDIR/before.sum"

start_nbdsrv "${args[@]}"
for id in mid short data; do
  PORT=$PORT /usr/bin/python3 "$srcdir/server-lib.py" "d@$id" >"$TESTDIR/$id.out" 2>&1 <<'PY' ||
# The refusal, by hand: libnbd 1.14 does not show the server's message.
n = sys.argv[1].encode()
r = Raw()
r.greeting()
r.send_opt(OPT_GO, struct.pack(">I", len(n)) + n + struct.pack(">H", 0))
rtype, msg = r.recv_rep(OPT_GO)
check(rtype == REP_ERR_POLICY, "NBD_OPT_GO answered %#x, not NBD_REP_ERR_POLICY" % rtype)
print(msg.decode())
PY
    fail "client $id: $(cat "$TESTDIR/$id.out")"
done
grep -q "overlay d/mid is damaged: the journal batch at byte [0-9]* of the map file is damaged, and a valid one follows" "$TESTDIR/nbdsrv.log" ||
  fail "the log does not say what is wrong with mid: $(grep mid "$TESTDIR/nbdsrv.log")"
grep -q "overlay d/short is damaged: the map file is 700 bytes" "$TESTDIR/nbdsrv.log" ||
  fail "the log does not say what is wrong with short"
grep -q "overlay d/data is damaged: the data file is 4096 bytes, but the map has data up to byte" "$TESTDIR/nbdsrv.log" ||
  fail "the log does not say what is wrong with data"

"$NBDSRV" ctl -s "$TESTDIR/ctl.sock" list >"$TESTDIR/list.out" || fail "ctl list"
for id in mid short data; do
  grep -q "^damaged d/$id: " "$TESTDIR/list.out" || fail "ctl list does not show d/$id: $(cat "$TESTDIR/list.out")"
done
"$NBDSRV" ctl -s "$TESTDIR/ctl.sock" list --json >"$TESTDIR/list.json" || fail "ctl list --json"
/usr/bin/python3 -c '
import json, sys
v = json.load(open(sys.argv[1]))
ids = sorted(e["id"] for e in v if "damaged" in e)
sys.exit(0 if ids == ["data", "mid", "short"] else "json lists %r" % ids)
' "$TESTDIR/list.json" || fail "ctl list --json does not list the damaged overlays"

# The torn tail is cut and its client served, with what it flushed.
got=$(nbdsh -u "$(uri d@torn)" -c "print(h.pread(1, 150 * 4096).decode())") ||
  fail "client torn is not served"
[ "$got" = D ] || fail "client torn reads '$got' at block 150, wrote D"
grep -q "overlay .*/d/torn: cut a torn tail of 10 bytes" "$TESTDIR/nbdsrv.log" ||
  fail "the cut tail is not in the log"

stop_nbdsrv || fail "the server did not stop cleanly"
(cd "$ov" && sha256sum -c --quiet "$TESTDIR/before.sum") ||
  fail "the damaged overlays' files changed"
exit 0
