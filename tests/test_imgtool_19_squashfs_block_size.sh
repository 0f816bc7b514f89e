#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# test_imgtool_19_squashfs_block_size: imgtool build --format squashfs
# --block-size SIZE makes an image of that block size (unsquashfs -s and
# imgtool info say it; files of several blocks and a fragment read back
# whole), the same bytes twice, and refuses sizes that are no power of two
# from 4K to 1M and ext4 images.
. "$(dirname "$0")/functions.sh"

requires_cmd unsquashfs

export SOURCE_DATE_EPOCH=1700000000
src=$TESTDIR/tree
mkdir -p "$src/d"
/usr/bin/python3 - "$src" <<'PY'
import os, random, sys
r = random.Random(19)
for name, size in [("big", 300000), ("d/small", 3000), ("d/mid", 70000)]:
    with open(os.path.join(sys.argv[1], name), "wb") as f:
        f.write(r.randbytes(size))
PY

for bs in 4K:4096 64K:65536 1M:1048576; do
  imgt build --format squashfs --block-size "${bs%%:*}" "$src" -o "$TESTDIR/$bs.img" \
    >/dev/null || fail "build --block-size ${bs%%:*}"
  unsquashfs -s "$TESTDIR/$bs.img" >"$TESTDIR/super" || fail "unsquashfs -s ($bs)"
  grep -qx "Block size ${bs#*:}" "$TESTDIR/super" ||
    fail "--block-size ${bs%%:*}: $(grep -i 'block size' "$TESTDIR/super")"
  imgt info "$TESTDIR/$bs.img" | grep -qx "block_size=${bs#*:}" || fail "info ($bs)"
  rm -rf "$TESTDIR/x"
  unsquashfs -q -n -d "$TESTDIR/x" "$TESTDIR/$bs.img" >/dev/null || fail "unsquashfs ($bs)"
  diff -r "$src" "$TESTDIR/x" || fail "extracted tree differs ($bs)"
done
imgt build --format squashfs "$src" -o "$TESTDIR/default.img" >/dev/null || fail "build"
unsquashfs -s "$TESTDIR/default.img" | grep -qx "Block size 131072" || fail "default block size"
imgt build --format squashfs --block-size 64K "$src" -o "$TESTDIR/again.img" \
  >/dev/null || fail "rebuild --block-size 64K"
cmp "$TESTDIR/64K:65536.img" "$TESTDIR/again.img" || fail "rebuild: images differ"

for bad in 2K 48K 2M 100000 x; do
  rc=0
  imgt build --format squashfs --block-size "$bad" "$src" -o "$TESTDIR/n.img" \
    >/dev/null 2>&1 || rc=$?
  [ "$rc" = 2 ] || fail "--block-size $bad: exit $rc, not 2"
  grep -q -- "--block-size '$bad': give a power of two from 4K to 1M" "$TESTDIR/last.err" ||
    fail "--block-size $bad: $(cat "$TESTDIR/last.err")"
done
rc=0
imgt build --block-size 64K "$src" -o "$TESTDIR/n.img" >/dev/null 2>&1 || rc=$?
[ "$rc" = 2 ] || fail "--block-size with ext4: exit $rc, not 2"
grep -q -- "--block-size applies to squashfs images only" "$TESTDIR/last.err" ||
  fail "--block-size with ext4: $(cat "$TESTDIR/last.err")"
[ ! -e "$TESTDIR/n.img" ] || fail "a refused build wrote an image"
exit 0
