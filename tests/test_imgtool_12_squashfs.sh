#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# test_imgtool_12_squashfs: imgtool build --format squashfs keeps what a
# root filesystem needs and is reproducible.  A tree with every file kind
# (owners, setuid/setgid/sticky, symlinks, hard links across directories,
# character and block devices, a device number beyond 8:8, fifo, socket,
# xattrs, a file capability, sparse and all-zero files, empty directories)
# is built and checked with squashfs-tools' unsquashfs (-s, -lls, and an
# extraction) and, where the kernel mounts squashfs, mounted read-only and
# compared entry by entry.  A rebuild, and a build of a copy of the tree
# on another filesystem (other readdir order, inode numbers and ctimes),
# give the same bytes, for each compression.  In the store: info, verify,
# gc, and nbdsrv serving the version's bytes to nbdcopy.
. "$(dirname "$0")/functions.sh"

[ "$(id -u)" = 0 ] || skip "needs root (mknod, chown, tmpfs and loop mounts)"
requires_cmd unsquashfs setfattr getfattr setfacl nbdcopy mount umount
requires mount -t tmpfs -o size=1M tmpfs "$TESTDIR"
umount "$TESTDIR"

export SOURCE_DATE_EPOCH=1700000000
src=$TESTDIR/tree
mkdir "$src"
(
  cd "$src"
  mkdir -p empty sub/deep/er sgdir sticky etc
  chmod 1777 sticky
  chown 0:5678 sgdir && chmod 2775 sgdir
  printf 'hello\n' >suid && chmod 4755 suid
  printf 'x' >sgid && chown 1234:5678 sgid && chmod 2711 sgid
  printf 'y' >bigids && chown 100000:200000 bigids
  printf 'linked\n' >hl && ln hl sub/hl2 && ln hl sub/deep/hl3
  ln -s suid sl
  ln -s "$(printf 't%.0s' $(seq 200))" longsl
  mknod cdev c 1 3 && mknod bdev b 8 1 && mknod bigdev c 300 70000
  mkfifo fifo
  /usr/bin/python3 -c 'import socket; socket.socket(socket.AF_UNIX).bind("sock")'
  setfattr -n user.foo -v bar suid
  setfattr -n trusted.t -v x sub
  setfattr -n user.big -v "$(head -c 3000 /dev/zero | tr '\0' b)" sub/deep
  printf 'ping' >capbin && chmod 755 capbin
  setfattr -n security.capability -v 0sAQAAAgAgAAAAAAAAAAAAAAAAAAA= capbin
  truncate -s 64M sparse
  printf 'middle' | dd of=sparse bs=1 seek=$((32 << 20)) conv=notrunc status=none
  printf 'end' | dd of=sparse bs=1 seek=$(((64 << 20) - 3)) conv=notrunc status=none
  head -c 1M /dev/zero >zeros
  head -c 300000 /dev/urandom >random
  cp random random-again        # deduplicated: must still read back
  : >empty-file
  touch -d @1000000000 old
  touch -d @1900000000 future   # after SOURCE_DATE_EPOCH: clamped
  touch -d @1000000000 sub/deep/er
)

# The copy, on a tmpfs: another readdir order, inode numbers and ctimes.
copy=$TESTDIR/tmpfs
mkdir "$copy"
mount -t tmpfs -o size=256M tmpfs "$copy"
on_exit "umount $copy 2>/dev/null"
cp -a "$src" "$copy/tree"

for comp in zstd gzip xz; do
  imgt build --format squashfs --compression "$comp" "$src" \
    -o "$TESTDIR/$comp.img" >"$TESTDIR/out" || fail "build ($comp)"
  [ "$(cat "$TESTDIR/out")" = "$TESTDIR/$comp.img" ] || fail "build did not print the image path"
  imgt build --format squashfs --compression "$comp" "$src" -o "$TESTDIR/again.img" >/dev/null ||
    fail "rebuild ($comp)"
  cmp "$TESTDIR/$comp.img" "$TESTDIR/again.img" || fail "rebuild ($comp): images differ"
  imgt build --format squashfs --compression "$comp" "$copy/tree" -o "$TESTDIR/copy.img" >/dev/null ||
    fail "build of the copy ($comp)"
  cmp "$TESTDIR/$comp.img" "$TESTDIR/copy.img" ||
    fail "same tree, other order and ctimes ($comp): images differ"
  rm -f "$TESTDIR/again.img" "$TESTDIR/copy.img"
  unsquashfs -s "$TESTDIR/$comp.img" >"$TESTDIR/super" || fail "unsquashfs -s ($comp)"
  grep -qx "Compression $comp" "$TESTDIR/super" || fail "unsquashfs -s ($comp): $(cat "$TESTDIR/super")"
  [ $(($(stat -c %s "$TESTDIR/$comp.img") % 4096)) = 0 ] || fail "$comp image not padded to 4 KiB"
  rm -rf "$TESTDIR/x"
  unsquashfs -q -n -d "$TESTDIR/x" "$TESTDIR/$comp.img" >/dev/null || fail "unsquashfs ($comp)"
  # diff names special files it cannot compare: the same kind is fine.
  diff -r --no-dereference "$src" "$TESTDIR/x" 2>&1 |
    grep -vE '^File .* is a (fifo|socket|(block|character) special file) while file .* is a \1$' \
      >"$TESTDIR/diff" || true
  [ ! -s "$TESTDIR/diff" ] ||
    { cat "$TESTDIR/diff" >&2; fail "extracted ($comp) differs from the tree"; }
done
# zstd is the default.
imgt build --format squashfs "$src" -o "$TESTDIR/default.img" >/dev/null || fail "build (default)"
cmp "$TESTDIR/default.img" "$TESTDIR/zstd.img" || fail "the default compression is not zstd"
img=$TESTDIR/zstd.img

# The superblock and the listing as squashfs-tools read them.
inodes=$(find "$src" -printf '%i\n' | sort -u | wc -l)
grep -qx "Block size 131072" "$TESTDIR/super" || fail "block size: $(cat "$TESTDIR/super")"
unsquashfs -s "$img" | grep -qx "Number of inodes $inodes" || fail "inode count, want $inodes: $(unsquashfs -s "$img")"
unsquashfs -lls -n "$img" >"$TESTDIR/ls" || fail "unsquashfs -lls"
want() { grep -qE "$1" "$TESTDIR/ls" || fail "listing lacks /$1/: $(cat "$TESTDIR/ls")"; }
want '^-rwsr-xr-x root/root +6 2023-11-14 [0-9:]+ squashfs-root/suid$'
want '^-rwx--s--x 1234/5678 +1 .* squashfs-root/sgid$'
want '^-rw-r--r-- 100000/200000 +1 .* squashfs-root/bigids$'
want '^drwxrwsr-x root/5678 .* squashfs-root/sgdir$'
want '^drwxrwxrwt root/root .* squashfs-root/sticky$'
want '^crw-r--r-- root/root +1, +3 .* squashfs-root/cdev$'
want '^brw-r--r-- root/root +8, +1 .* squashfs-root/bdev$'
want '^prw-r--r-- .* squashfs-root/fifo$'
want '^srwxr-xr-x .* squashfs-root/sock$'
want '^lrwxrwxrwx .* squashfs-root/sl -> suid$'
want '^-rw-r--r-- root/root +67108864 .* squashfs-root/sparse$'
want '^-rw-r--r-- root/root +0 2001-09-09 [0-9:]+ squashfs-root/old$'
want '^-rw-r--r-- root/root +0 2023-11-14 22:13 squashfs-root/future$'
# Extended attributes and hard links in the extraction.
x=$TESTDIR/x
[ "$(getfattr --only-values -n user.foo "$x/suid")" = bar ] || fail "user xattr lost"
[ "$(getfattr --only-values -n trusted.t "$x/sub")" = x ] || fail "trusted xattr lost"
getfattr -e base64 -n security.capability "$x/capbin" | grep -qx 'security.capability=0sAQAAAgAgAAAAAAAAAAAAAAAAAAA=' ||
  fail "file capability lost"
[ "$(getfattr --only-values -n user.big "$x/sub/deep" | wc -c)" = 3000 ] || fail "large xattr lost"

# What the kernel shows, where it mounts squashfs.
mnt=$TESTDIR/mnt
mkdir "$mnt"
if mount -t squashfs -o loop,ro "$img" "$mnt" 2>/dev/null; then
  on_exit "umount $mnt 2>/dev/null"
  /usr/bin/python3 - "$src" "$mnt" "$SOURCE_DATE_EPOCH" <<'PY' || fail "the mounted image differs from the tree (above)"
import os, stat, sys
src, mnt, sde = sys.argv[1], sys.argv[2], int(sys.argv[3])
bad, groups_src, groups_img = [], {}, {}
def xattrs(p):
    return {x: os.getxattr(p, x, follow_symlinks=False)
            for x in os.listxattr(p, follow_symlinks=False)}
for root, dirs, files in os.walk(src):
    rel = os.path.relpath(root, src)
    img_root = os.path.normpath(os.path.join(mnt, rel))
    if sorted(dirs + files) != sorted(os.listdir(img_root)):
        bad.append(f"{rel}: entries differ")
    for name in dirs + files:
        s, i = os.path.join(root, name), os.path.join(img_root, name)
        a, b = os.lstat(s), os.lstat(i)
        r, m = os.path.relpath(s, src), a.st_mode
        if (a.st_mode, a.st_uid, a.st_gid) != (b.st_mode, b.st_uid, b.st_gid):
            bad.append(f"{r}: mode/owner {oct(b.st_mode)} {b.st_uid}:{b.st_gid}")
        mt = a.st_mtime if a.st_mtime < sde else sde
        if b.st_mtime_ns != int(mt) * 10**9:
            bad.append(f"{r}: mtime {b.st_mtime_ns}, want {int(mt)} s")
        if xattrs(s) != xattrs(i):
            bad.append(f"{r}: xattrs {xattrs(i)}")
        if stat.S_ISLNK(m) and os.readlink(s) != os.readlink(i):
            bad.append(f"{r}: symlink target")
        if (stat.S_ISCHR(m) or stat.S_ISBLK(m)) and a.st_rdev != b.st_rdev:
            bad.append(f"{r}: rdev {os.major(b.st_rdev)}:{os.minor(b.st_rdev)}")
        if stat.S_ISDIR(m):
            if a.st_nlink != b.st_nlink:
                bad.append(f"{r}: directory nlink {b.st_nlink}, want {a.st_nlink}")
            continue
        if a.st_nlink != b.st_nlink:
            bad.append(f"{r}: nlink {b.st_nlink}, want {a.st_nlink}")
        groups_src.setdefault(a.st_ino, set()).add(r)
        groups_img.setdefault(b.st_ino, set()).add(r)
        if stat.S_ISREG(m) and open(s, "rb").read() != open(i, "rb").read():
            bad.append(f"{r}: content differs")
if sorted(map(sorted, groups_src.values())) != sorted(map(sorted, groups_img.values())):
    bad.append("hard link groups differ")
for b in bad:
    print(b, file=sys.stderr)
sys.exit(1 if bad else 0)
PY
  umount "$mnt"
else
  echo "note: this kernel does not mount squashfs: checked with unsquashfs only" >&2
fi

# A POSIX ACL cannot be kept: said once, the rest is built.
setfacl -m u:1000:rwx "$src/suid"
imgt build --format squashfs "$src" -o "$TESTDIR/acl.img" >/dev/null || fail "build with an ACL"
grep -q "^imgtool: warning: squashfs keeps no POSIX ACLs (system.\* attributes): left out on 1 entries, e.g. $src/suid$" \
  "$TESTDIR/last.err" || fail "ACL warning: $(cat "$TESTDIR/last.err")"
setfacl -b "$src/suid"

# Options of the other format are refused, each in one line.
if imgt build --format squashfs --size 1G "$src" -o "$TESTDIR/no.img"; then fail "--size with squashfs"; fi
grep -qx "imgtool: error: --size applies to ext4 images only: .*" "$TESTDIR/last.err" || fail "--size: $(cat "$TESTDIR/last.err")"
if imgt build --compression xz "$src" -o "$TESTDIR/no.img"; then fail "--compression with ext4"; fi
if imgt build --format squashfs --compression lzma "$src" -o "$TESTDIR/no.img"; then fail "--compression lzma"; fi
grep -qx "imgtool: error: --compression 'lzma': give zstd, gzip or xz" "$TESTDIR/last.err" || fail "lzma: $(cat "$TESTDIR/last.err")"
[ ! -e "$TESTDIR/no.img" ] || fail "a refused build left an image"

# A full disk: one line with the system's reason, no file left behind.
full=$TESTDIR/full
mkdir "$full"
mount -t tmpfs -o size=200k tmpfs "$full"
on_exit "umount $full 2>/dev/null"
if imgt build --format squashfs "$src" -o "$full/x.img"; then fail "build into a full disk"; fi
grep -qx "imgtool: error: cannot write the data of $src/.* into $full/x.img: No space left on device" \
  "$TESTDIR/last.err" || fail "full disk: $(cat "$TESTDIR/last.err")"
[ -z "$(ls -A "$full")" ] || fail "a failed build left $(ls -A "$full")"
umount "$full"

# info on the image.
imgt info "$img" >"$TESTDIR/info" || fail "info IMAGE"
for l in format=squashfs compression=zstd block_size=131072 "inodes=$inodes" \
         "size=$(stat -c %s "$img")" created=2023-11-14T22:13:20Z; do
  grep -qx "$l" "$TESTDIR/info" || fail "info lacks $l: $(cat "$TESTDIR/info")"
done

# The store: versions of either format, info, verify, gc, nbdsrv.
store=$TESTDIR/store
os=$store/os
imgt build --format squashfs "$src" --store "$store" --name os >/dev/null || fail "store build 1"
imgt build "$src" --store "$store" --name os >/dev/null || fail "store build 2 (ext4)"
echo more >"$src/etc/new"
imgt build --format squashfs --compression xz "$src" --store "$store" --name os >/dev/null || fail "store build 3"
cmp "$os/0001.img" "$img" || fail "the store's version differs from the -o build"
grep -qx format=squashfs "$os/0001.meta" && grep -qx compression=zstd "$os/0001.meta" || fail "meta 1: $(cat "$os/0001.meta")"
grep -qx format=ext4 "$os/0002.meta" || fail "meta 2: $(cat "$os/0002.meta")"
grep -qx compression=xz "$os/0003.meta" || fail "meta 3: $(cat "$os/0003.meta")"
imgt info --store "$store" >"$TESTDIR/info" || fail "info --store"
grep -q "^version=$os/0001.img id=0001 current=no format=squashfs compression=zstd " "$TESTDIR/info" || fail "info: $(cat "$TESTDIR/info")"
grep -q "^version=$os/0002.img id=0002 current=no format=ext4 compression=none " "$TESTDIR/info" || fail "info: $(cat "$TESTDIR/info")"
grep -q "^version=$os/0003.img id=0003 current=yes format=squashfs compression=xz " "$TESTDIR/info" || fail "info: $(cat "$TESTDIR/info")"
imgt verify --store "$store" >"$TESTDIR/verify" || fail "verify: $(cat "$TESTDIR/verify")"
[ "$(grep -c '^ok ' "$TESTDIR/verify")" = 3 ] || fail "verify: $(cat "$TESTDIR/verify")"
# Metadata that says ext4 for squashfs bytes: verify says what is wrong.
chmod 644 "$os/0001.meta"
sed -i 's/^format=squashfs$/format=ext4/; s/^compression=zstd$/compression=none/' "$os/0001.meta"
if imgt verify --store "$store" >"$TESTDIR/verify"; then fail "verify missed a wrong format"; fi
grep -qx "BAD $os/0001.img: holds squashfs (zstd), published as ext4 (none)" "$TESTDIR/verify" || fail "verify: $(cat "$TESTDIR/verify")"
sed -i 's/^format=ext4$/format=squashfs/; s/^compression=none$/compression=zstd/' "$os/0001.meta"
chmod 444 "$os/0001.meta"

# nbdsrv serves the current squashfs version's bytes as they are.
mkdir "$TESTDIR/ov"
start_nbdsrv -e os="$os" -o "$TESTDIR/ov"
nbdcopy "$(uri os)" "$TESTDIR/served.img" || fail "nbdcopy from nbdsrv"
cmp "$TESTDIR/served.img" "$os/0003.img" || fail "nbdsrv served other bytes than version 3"
stop_nbdsrv

# gc keeps current (and --keep 1 nothing more).
imgt gc --store "$store" --no-overlays --keep 1 >/dev/null || fail "gc"
[ ! -e "$os/0001.img" ] && [ ! -e "$os/0002.img" ] && [ -e "$os/0003.img" ] ||
  fail "gc: $(ls "$os")"
imgt verify --store "$store" >/dev/null || fail "verify after gc"
exit 0
