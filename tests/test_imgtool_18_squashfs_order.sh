#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# test_imgtool_18_squashfs_order: imgtool build --format squashfs --order
# FILE writes the listed files' data first, in the file's order, then the
# rest in inode order; puts their inodes first in the inode table and the
# directories on their paths last (an image made with gzip, whose
# metadata python's zlib reads, is parsed for that); skips (and counts, in one warning) paths that are
# no regular file of the tree; places a hard link where its first listed
# name puts it; stays reproducible; refuses a missing order file and ext4.
#
# The files hold random bytes, which no compressor shrinks, so libsquashfs
# stores their blocks (large files) and fragment blocks (small files)
# uncompressed: each file's bytes are found verbatim in the image, and
# their offsets give the order.
. "$(dirname "$0")/functions.sh"

requires_cmd unsquashfs

export SOURCE_DATE_EPOCH=1700000000
src=$TESTDIR/tree
mkdir -p "$src/d" "$src/other"
/usr/bin/python3 - "$src" <<'PY'
import os, random, sys
r = random.Random(18)
for name, size in [("a", 300000), ("b", 200000), ("d/c", 150000), ("d/e", 260000),
                   ("s1", 3000), ("s2", 2000), ("s3", 2500), ("s4", 1500),
                   ("other/f", 1234)]:
    with open(os.path.join(sys.argv[1], name), "wb") as f:
        f.write(r.randbytes(size))
PY
ln "$src/b" "$src/d/b-link"
ln -s a "$src/sl"

# where FILE...: the offsets of each file's first 64 bytes in the image.
where() {
  /usr/bin/python3 - "$@" <<'PY'
import sys
img = open(sys.argv[1], "rb").read()
for p in sys.argv[2:]:
    head = open(p, "rb").read(64)
    at = img.find(head)
    if at < 0 or img.find(head, at + 1) >= 0:
        sys.exit("%s: found %s times" % (p, "no" if at < 0 else "more"))
    print(at)
PY
}
# order IMAGE NAME...: the names sorted by where their data is in IMAGE.
order() {
  local img=$1
  shift
  paste -d ' ' <(where "$img" "${@/#/$src/}") <(printf '%s\n' "$@") |
    sort -n | cut -d ' ' -f 2 | tr '\n' ' '
}
files="a b d/c d/e s1 s2 s3 s4"

# inodes IMAGE: the inode table of a gzip-compressed IMAGE, in table
# order: a regular file as its size, "dir", "sym" or "other".
inodes() {
  /usr/bin/python3 - "$1" <<'PY'
import struct, sys, zlib
img = open(sys.argv[1], "rb").read()
bs = struct.unpack_from("<I", img, 12)[0]
itab, dtab = struct.unpack_from("<QQ", img, 64)
meta, pos = b"", itab
while pos < dtab:
    h = struct.unpack_from("<H", img, pos)[0]
    blk = img[pos + 2:pos + 2 + (h & 0x7fff)]
    meta += blk if h & 0x8000 else zlib.decompress(blk)
    pos += 2 + (h & 0x7fff)
out, at = [], 0
while at < len(meta):
    kind = struct.unpack_from("<H", meta, at)[0]
    at += 16
    if kind in (2, 9):
        if kind == 2:
            frag, size = struct.unpack_from("<I4xI", meta, at + 4)
            at += 16
        else:
            size, = struct.unpack_from("<Q", meta, at + 8)
            frag, = struct.unpack_from("<I", meta, at + 28)
            at += 40
        n = size // bs if frag != 0xffffffff else -(-size // bs)
        at += 4 * n
        out.append(str(size))
    elif kind == 1:
        at += 16
        out.append("dir")
    elif kind == 8:
        count, = struct.unpack_from("<H", meta, at + 16)
        at += 24
        for _ in range(count):
            at += 12 + struct.unpack_from("<I", meta, at + 8)[0] + 1
        out.append("dir")
    elif kind in (3, 10):
        at += 8 + struct.unpack_from("<I", meta, at + 4)[0] + (4 if kind == 10 else 0)
        out.append("sym")
    else:
        sys.exit("inode type %d: not in this test's tree" % kind)
print(" ".join(out))
PY
}

imgt build --format squashfs "$src" -o "$TESTDIR/plain.img" >/dev/null ||
  fail "build without --order"
got=$(order "$TESTDIR/plain.img" $files) || fail "locating the data (plain)"
[ "$got" = "a b d/c d/e s1 s2 s3 s4 " ] || fail "without --order: data order $got"

cat >"$TESTDIR/order" <<'EOF'
# boot order
/s3
d/e

missing/file
d
sl
d/b-link
s1
./d/c
s3
b
EOF
imgt build --format squashfs --order "$TESTDIR/order" "$src" -o "$TESTDIR/o.img" \
  >/dev/null || fail "build --order"
grep -q "3 paths are not regular files of the tree and are skipped, e.g. missing/file" \
  "$TESTDIR/last.err" || fail "no warning counting the skipped paths: $(cat "$TESTDIR/last.err")"
# Large files: their own blocks, in the order listed (b by its link),
# then a in inode order.  Small files: the fragment blocks fill in the
# same order (s3, s1 listed; s2, s4 after).
got=$(order "$TESTDIR/o.img" d/e b d/c a) || fail "locating the data (--order)"
[ "$got" = "d/e b d/c a " ] || fail "--order: block data order $got"
got=$(order "$TESTDIR/o.img" s1 s2 s3 s4) || fail "locating the fragments (--order)"
[ "$got" = "s3 s1 s2 s4 " ] || fail "--order: fragment order $got"

# The inode table: without --order in inode order (post-order); with it
# the listed files first (s3 d/e b s1 d/c), the rest in inode order (a
# other/f other s2 s4 sl), the directories on the listed paths last (d,
# then the root).
imgt build --format squashfs --compression gzip "$src" -o "$TESTDIR/gz.img" \
  >/dev/null 2>&1 || fail "build (gzip)"
got=$(inodes "$TESTDIR/gz.img") || fail "reading the inode table"
[ "$got" = "300000 200000 150000 260000 dir 1234 dir 3000 2000 2500 1500 sym dir" ] ||
  fail "without --order: inode table $got"
imgt build --format squashfs --compression gzip --order "$TESTDIR/order" "$src" \
  -o "$TESTDIR/gzo.img" >/dev/null 2>&1 || fail "build --order (gzip)"
got=$(inodes "$TESTDIR/gzo.img") || fail "reading the inode table (--order)"
[ "$got" = "2500 260000 200000 3000 150000 300000 1234 dir 2000 1500 sym dir dir" ] ||
  fail "--order: inode table $got"

# The same tree and order: the same bytes; the content is all there.
imgt build --format squashfs --order "$TESTDIR/order" "$src" -o "$TESTDIR/o2.img" \
  >/dev/null 2>&1 || fail "rebuild --order"
cmp "$TESTDIR/o.img" "$TESTDIR/o2.img" || fail "rebuild with the same order: images differ"
unsquashfs -q -n -d "$TESTDIR/x" "$TESTDIR/o.img" >/dev/null || fail "unsquashfs"
diff -r --no-dereference "$src" "$TESTDIR/x" || fail "extracted tree differs"
[ "$(stat -c %i "$TESTDIR/x/b")" = "$(stat -c %i "$TESTDIR/x/d/b-link")" ] ||
  fail "the hard link is lost"

# Refusals: a missing order file, --order for ext4.
rc=0
imgt build --format squashfs --order "$TESTDIR/none" "$src" -o "$TESTDIR/n.img" \
  >/dev/null 2>&1 || rc=$?
[ "$rc" = 2 ] || fail "missing order file: exit $rc, not 2"
grep -q -- "--order $TESTDIR/none: No such file or directory" "$TESTDIR/last.err" ||
  fail "missing order file: $(cat "$TESTDIR/last.err")"
[ ! -e "$TESTDIR/n.img" ] || fail "missing order file: an image was written"
rc=0
imgt build --order "$TESTDIR/order" "$src" -o "$TESTDIR/n.img" >/dev/null 2>&1 || rc=$?
[ "$rc" = 2 ] || fail "--order with ext4: exit $rc, not 2"
grep -q -- "--order applies to squashfs images only" "$TESTDIR/last.err" ||
  fail "--order with ext4: $(cat "$TESTDIR/last.err")"
exit 0
