#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# test_imgtool_16: imgtool check-overlay says whether an overlay is
# sound, what is wrong with a damaged one, and salvages its valid part:
#   - an overlay nbdsrv wrote (four flushes) is sound (exit 0); with a
#     torn tail it is still sound, and the tail's bytes are reported;
#   - a batch damaged in the middle: exit 1, the byte where it is, the
#     files unchanged; --salvage NEW writes an overlay that nbdsrv
#     serves, with the data of the batches before the damage;
#   - a data file shorter than the map: exit 1; salvage counts the lost
#     blocks, which read as zeroes;
#   - no overlay, or a salvage target that exists: exit 2.
. "$(dirname "$0")/functions.sh"
requires_cmd nbdsh sha256sum
requires /usr/bin/python3 -c 'import nbd'

make_image "$TESTDIR/base.img" 4
args=(-e d="$TESTDIR/base.img" -o "$TESTDIR/ov")
start_nbdsrv "${args[@]}"
for id in a b; do
  nbdsh -u "$(uri "d@$id")" -c "
for i in range(4):
    h.pwrite(bytes([65 + i]) * 4096, (i * 50) * 4096); h.flush()
" || fail "client $id cannot write"
done
stop_nbdsrv || fail "the server did not stop cleanly"
ov=$TESTDIR/ov/d

rc=0; imgt check-overlay "$ov/a" >"$TESTDIR/out" || rc=$?
[ $rc = 0 ] && grep -q "^$ov/a: sound: .* 4 blocks of data" "$TESTDIR/out" ||
  fail "a sound overlay: exit $rc, $(cat "$TESTDIR/out")"
printf 'torn-tail!' >>"$ov/a.map"
rc=0; imgt check-overlay "$ov/a.map" >"$TESTDIR/out" || rc=$?
[ $rc = 0 ] && grep -q "a torn tail of 10 bytes" "$TESTDIR/out" ||
  fail "a torn tail: exit $rc, $(cat "$TESTDIR/out")"

# A record of the third batch flipped (batches from byte 1024, 16-byte
# header and records).
/usr/bin/python3 - "$ov/a.map" <<'PY' || fail "cannot damage a.map"
import struct, sys
f = open(sys.argv[1], "r+b"); data = f.read()
off, starts = 1024, []
while off + 16 <= len(data):
    magic, count, crc, zero = struct.unpack_from("<IIII", data, off)
    if magic != 0x424c564f: break
    starts.append(off); off += 16 + 16 * count
assert len(starts) >= 4, starts
f.seek(starts[2] + 16); f.write(bytes([data[starts[2] + 16] ^ 1]))
print(starts[2])
PY
(cd "$ov" && sha256sum a.map a.data) >"$TESTDIR/before.sum"
rc=0; imgt check-overlay "$ov/a" >"$TESTDIR/out" || rc=$?
[ $rc = 1 ] && grep -q "^$ov/a: damaged: the journal batch at byte [0-9]* of the map file is damaged, and a valid one follows" "$TESTDIR/out" ||
  fail "a damaged batch: exit $rc, $(cat "$TESTDIR/out")"
rc=0; imgt check-overlay --salvage "$ov/new" "$ov/a" >"$TESTDIR/out" || rc=$?
[ $rc = 0 ] && grep -q "salvaged into $ov/new: .* 2 blocks of data" "$TESTDIR/out" ||
  fail "salvage: exit $rc, $(cat "$TESTDIR/out")"
(cd "$ov" && sha256sum -c --quiet "$TESTDIR/before.sum") || fail "check-overlay changed a.map or a.data"
rc=0; imgt check-overlay "$ov/new" >"$TESTDIR/out" || rc=$?
[ $rc = 0 ] || fail "the salvaged overlay is not sound: $(cat "$TESTDIR/out")"
rc=0; imgt check-overlay --salvage "$ov/new" "$ov/a" >"$TESTDIR/out" 2>&1 || rc=$?
[ $rc = 2 ] && grep -q "new.map exists" "$TESTDIR/last.err" || fail "a salvage over an existing overlay: exit $rc"

# Short data: the map's last block is beyond it.
truncate -s $((60 * 4096)) "$ov/b.data"
rc=0; imgt check-overlay "$ov/b" >"$TESTDIR/out" || rc=$?
[ $rc = 1 ] && grep -q "the data file is 245760 bytes, but the map has data up to byte" "$TESTDIR/out" ||
  fail "a short data file: exit $rc, $(cat "$TESTDIR/out")"
rc=0; imgt check-overlay --salvage "$ov/b2" "$ov/b" >"$TESTDIR/out" || rc=$?
[ $rc = 0 ] && grep -q "2 blocks of data, 0 zeroed, 2 lost" "$TESTDIR/out" ||
  fail "salvage of a short data file: exit $rc, $(cat "$TESTDIR/out")"

rc=0; imgt check-overlay "$ov/nothing" >"$TESTDIR/out" || rc=$?
[ $rc = 2 ] || fail "no overlay: exit $rc"

# nbdsrv serves the salvaged overlays: what came before the damage.
start_nbdsrv "${args[@]}"
nbdsh -u "$(uri d@new)" -c "
assert h.pread(1, 0) == b'A' and h.pread(1, 50 * 4096) == b'B', 'batches before the damage'
" || fail "the salvaged overlay new does not read back"
nbdsh -u "$(uri d@b2)" -c "
assert h.pread(1, 50 * 4096) == b'B', 'a block within the data file'
assert h.pread(4096, 100 * 4096) == bytes(4096), 'a lost block reads as zeroes'
" || fail "the salvaged overlay b2 does not read back"
exit 0
