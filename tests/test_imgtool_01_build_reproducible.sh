#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# test_imgtool_01_build_reproducible: imgtool build keeps everything a root filesystem needs
# and is reproducible.  A tree with every file kind (owners, setuid/setgid/
# sticky, symlinks, hard links across directories, devices, fifo, socket,
# xattrs, a file capability, POSIX ACLs, sparse and all-zero files, empty
# directories, 255-byte names, a multi-block directory, 32-bit ids) is
# built twice: once as it is, once from a copy made in reverse order on
# another filesystem (so readdir order and ctimes differ).  The images must
# be identical, e2fsck -fn clean, and the image mounted read-only must show
# every entry exactly as in the tree (timestamps clamped to
# SOURCE_DATE_EPOCH).
. "$(dirname "$0")/functions.sh"

[ "$(id -u)" = 0 ] || skip "needs root (loop and tmpfs mounts, mknod, chown)"
requires_cmd mount umount e2fsck dumpe2fs setfattr getfattr setfacl getfacl
requires mount -t tmpfs -o size=1M tmpfs "$TESTDIR"
umount "$TESTDIR"

# imgtool with its stderr kept in the test's log, where a sanitizer report
# fails the test.

export SOURCE_DATE_EPOCH=1700000000
src=$TESTDIR/tree
mkdir "$src"
(
  cd "$src"
  mkdir -p empty sub/deep/er big sgdir sticky
  chmod 1777 sticky
  chown 0:50 sgdir && chmod 2775 sgdir
  printf 'hello\n' >suid && chmod 4755 suid
  printf 'x' >sgid && chown 1234:5678 sgid && chmod 2711 sgid
  printf 'y' >bigids && chown 100000:200000 bigids
  printf 'linked\n' >hl && ln hl sub/hl2 && ln hl sub/deep/hl3
  ln -s suid sl
  ln -s "$(printf 't%.0s' $(seq 200))" longsl
  ln -s /nowhere/at/all dangling
  mknod cdev c 1 3 && mknod bdev b 8 1 && mknod bigdev c 300 70000
  mkfifo fifo
  /usr/bin/python3 -c 'import socket; socket.socket(socket.AF_UNIX).bind("sock")'
  touch "$(printf 'n%.0s' $(seq 255))"
  for i in $(seq 1 3000); do : >"big/file-with-a-long-name-$i"; done
  setfattr -n user.foo -v bar suid
  setfattr -n trusted.t -v x sub
  setfattr -n user.big -v "$(head -c 3000 /dev/zero | tr '\0' b)" sub/deep
  printf 'ping' >capbin && chmod 755 capbin
  # cap_net_raw+ep, as setcap writes it (VFS_CAP_REVISION_2)
  setfattr -n security.capability -v 0sAQAAAgAgAAAAAAAAAAAAAAAAAAA= capbin
  setfacl -m u:1000:rwx,g:2000:r suid
  setfacl -d -m u:1000:rx sticky
  # Sparse: 64 MiB with data at 32 MiB and in the last block.
  truncate -s 64M sparse
  printf 'middle' | dd of=sparse bs=1 seek=$((32 << 20)) conv=notrunc status=none
  printf 'end' | dd of=sparse bs=1 seek=$(((64 << 20) - 3)) conv=notrunc status=none
  # Written zeroes: may become a hole, must read back as zeroes.
  head -c 1M /dev/zero >zeros
  head -c 300000 /dev/urandom >random
  touch -d @1000000000 old             # before the epoch: kept
  touch -d @1900000000 future          # after it: clamped
  touch -d @1000000000 sub/deep/er
)

# The copy: entries created in reverse order on a tmpfs, so readdir order,
# inode numbers and ctimes all differ from the original.
copy=$TESTDIR/tmpfs
mkdir "$copy"
mount -t tmpfs -o size=256M tmpfs "$copy"
on_exit "umount $copy 2>/dev/null"
/usr/bin/python3 - "$src" "$copy/tree" <<'PY'
import os, stat, sys
src, dst = sys.argv[1], sys.argv[2]
paths = []
for root, dirs, files in os.walk(src):
    for n in dirs + files:
        paths.append(os.path.relpath(os.path.join(root, n), src))
paths.sort(reverse=True)
first = {}
def meta(s, d, st):
    os.chown(d, st.st_uid, st.st_gid, follow_symlinks=False)
    if not stat.S_ISLNK(st.st_mode):
        os.chmod(d, stat.S_IMODE(st.st_mode))
    for x in os.listxattr(s, follow_symlinks=False):
        os.setxattr(d, x, os.getxattr(s, x, follow_symlinks=False),
                    follow_symlinks=False)
os.makedirs(dst)
dirs = ["."]
for p in paths:
    s, d = os.path.join(src, p), os.path.join(dst, p)
    os.makedirs(os.path.dirname(d), exist_ok=True)
    st = os.lstat(s)
    m = st.st_mode
    if stat.S_ISDIR(m):
        os.makedirs(d, exist_ok=True)
        dirs.append(p)
        continue
    key = (st.st_dev, st.st_ino)
    if st.st_nlink > 1 and key in first:
        os.link(first[key], d)
        continue
    first[key] = d
    if stat.S_ISLNK(m):
        os.symlink(os.readlink(s), d)
    elif stat.S_ISREG(m):
        with open(s, "rb") as fi, open(d, "wb") as fo:
            pos = 0
            while pos < st.st_size:
                try:
                    data = os.lseek(fi.fileno(), pos, os.SEEK_DATA)
                except OSError:
                    break
                hole = os.lseek(fi.fileno(), data, os.SEEK_HOLE)
                fi.seek(data)
                fo.seek(data)
                fo.write(fi.read(hole - data))
                pos = hole
            fo.truncate(st.st_size)
    else:
        os.mknod(d, m, st.st_rdev)
    meta(s, d, st)
    os.utime(d, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)
# Directories last, deepest first, so their own mtimes stick.
for p in sorted(dirs, key=lambda p: -1 if p == "." else p.count("/"),
                reverse=True):
    s, d = os.path.join(src, p), os.path.join(dst, p)
    st = os.lstat(s)
    meta(s, d, st)
    os.utime(d, ns=(st.st_atime_ns, st.st_mtime_ns))
PY
# The copy must really differ in order, or the test shows nothing.
[ "$(ls -f "$src/big" | head -20)" != "$(ls -f "$copy/tree/big" | head -20)" ] ||
  fail "the copy lists entries in the same order; the test needs another"

imgt build "$src" -o "$TESTDIR/a.img" >"$TESTDIR/out" || fail "build of the tree"
[ "$(cat "$TESTDIR/out")" = "$TESTDIR/a.img" ] || fail "build did not print the image path"
imgt build "$copy/tree" -o "$TESTDIR/b.img" >/dev/null || fail "build of the copy"
cmp "$TESTDIR/a.img" "$TESTDIR/b.img" ||
  fail "same tree, other order and ctimes: images differ"

e2fsck -fn "$TESTDIR/a.img" >"$TESTDIR/fsck.log" 2>&1 ||
  { cat "$TESTDIR/fsck.log" >&2; fail "e2fsck -fn is not clean"; }

# What the kernel shows.
mnt=$TESTDIR/mnt
mkdir "$mnt"
mount -o loop,ro "$TESTDIR/a.img" "$mnt" || fail "the image does not mount"
on_exit "umount $mnt 2>/dev/null"
/usr/bin/python3 - "$src" "$mnt" "$SOURCE_DATE_EPOCH" <<'PY' || fail "the mounted image differs from the tree (above)"
import os, stat, sys
src, mnt, sde = sys.argv[1], sys.argv[2], int(sys.argv[3])
bad = []
def xattrs(p):
    return {x: os.getxattr(p, x, follow_symlinks=False)
            for x in os.listxattr(p, follow_symlinks=False)}
groups_src, groups_img = {}, {}
n = 0
for root, dirs, files in os.walk(src):
    rel = os.path.relpath(root, src)
    img_root = os.path.normpath(os.path.join(mnt, rel))
    want = sorted(dirs + files)
    got = sorted(os.listdir(img_root))
    if rel == ".":
        got.remove("lost+found")
    if want != got:
        bad.append(f"{rel}: entries {set(want) ^ set(got)}")
    for name in [None] + want:
        s = root if name is None else os.path.join(root, name)
        i = img_root if name is None else os.path.join(img_root, name)
        if name is None and rel != ".":
            continue  # checked as an entry of its parent
        a, b = os.lstat(s), os.lstat(i)
        n += 1
        r = os.path.relpath(s, src)
        if a.st_mode != b.st_mode:
            bad.append(f"{r}: mode {oct(a.st_mode)} -> {oct(b.st_mode)}")
        if (a.st_uid, a.st_gid) != (b.st_uid, b.st_gid):
            bad.append(f"{r}: owner {a.st_uid}:{a.st_gid} -> {b.st_uid}:{b.st_gid}")
        mt = a.st_mtime_ns if a.st_mtime < sde else sde * 10**9
        if b.st_mtime_ns != mt:
            bad.append(f"{r}: mtime {a.st_mtime_ns} -> {b.st_mtime_ns} (want {mt})")
        if xattrs(s) != xattrs(i):
            bad.append(f"{r}: xattrs {xattrs(s)} -> {xattrs(i)}")
        m = a.st_mode
        if stat.S_ISLNK(m) and os.readlink(s) != os.readlink(i):
            bad.append(f"{r}: symlink target")
        if (stat.S_ISCHR(m) or stat.S_ISBLK(m)) and a.st_rdev != b.st_rdev:
            bad.append(f"{r}: rdev {a.st_rdev} -> {b.st_rdev}")
        if not stat.S_ISDIR(m):
            if a.st_nlink != b.st_nlink:
                bad.append(f"{r}: nlink {a.st_nlink} -> {b.st_nlink}")
            groups_src.setdefault(a.st_ino, set()).add(r)
            groups_img.setdefault(b.st_ino, set()).add(r)
        if stat.S_ISREG(m):
            if a.st_size != b.st_size:
                bad.append(f"{r}: size {a.st_size} -> {b.st_size}")
            elif open(s, "rb").read() != open(i, "rb").read():
                bad.append(f"{r}: content differs")
            # Never more space than the source's data (holes stay holes).
            if b.st_blocks > a.st_blocks + 8:
                bad.append(f"{r}: {b.st_blocks} blocks for {a.st_blocks} in the tree")
if sorted(map(sorted, groups_src.values())) != sorted(map(sorted, groups_img.values())):
    bad.append("hard link groups differ")
if n < 3000:
    bad.append(f"only {n} entries compared")
for b in bad:
    print("  " + b, file=sys.stderr)
sys.exit(1 if bad else 0)
PY

# The same facts through the usual tools, as an admin would look.
stat -c '%A %u:%g %h' "$mnt/suid" | grep -qx -- '-rwsrwxr-x 0:0 1' || fail "setuid file: $(stat -c '%A %u:%g %h' "$mnt/suid")"
stat -c '%A %u:%g' "$mnt/sgid" | grep -qx -- '-rwx--s--x 1234:5678' || fail "setgid file: $(stat -c '%A %u:%g' "$mnt/sgid")"
stat -c '%A' "$mnt/sticky" | grep -q '^drwxrwxrwt' || fail "sticky dir: $(stat -c %A "$mnt/sticky")"
stat -c '%A %g' "$mnt/sgdir" | grep -qx 'drwxrwsr-x 50' || fail "setgid dir: $(stat -c '%A %g' "$mnt/sgdir")"
stat -c '%u:%g' "$mnt/bigids" | grep -qx '100000:200000' || fail "32-bit owner"
[ "$(stat -c '%h %i' "$mnt/hl")" = "3 $(stat -c %i "$mnt/sub/deep/hl3")" ] || fail "hard links"
[ "$(readlink "$mnt/longsl")" = "$(printf 't%.0s' $(seq 200))" ] || fail "long symlink"
[ "$(readlink "$mnt/dangling")" = /nowhere/at/all ] || fail "dangling symlink"
[ "$(stat -c '%F %t:%T' "$mnt/cdev")" = "character special file 1:3" ] || fail "char device"
[ "$(stat -c '%F %t:%T' "$mnt/bdev")" = "block special file 8:1" ] || fail "block device"
[ "$(stat -c '%F %t:%T' "$mnt/bigdev")" = "character special file 12c:11170" ] || fail "device 300:70000: $(stat -c '%t:%T' "$mnt/bigdev")"
[ -p "$mnt/fifo" ] || fail "fifo"
[ -S "$mnt/sock" ] || fail "socket"
[ -d "$mnt/empty" ] && [ -z "$(ls -A "$mnt/empty")" ] || fail "empty directory"
[ -f "$mnt/$(printf 'n%.0s' $(seq 255))" ] || fail "255-byte name"
[ "$(ls "$mnt/big" | wc -l)" = 3000 ] || fail "3000 entries in one directory"
getfattr --absolute-names -n user.foo --only-values "$mnt/suid" | grep -qx bar || fail "user xattr"
[ "$(getfattr --absolute-names -n user.big --only-values "$mnt/sub/deep" | wc -c)" = 3000 ] || fail "3000-byte xattr"
getfattr --absolute-names -e hex -n security.capability "$mnt/capbin" |
  grep -qx 'security.capability=0x0100000200200000000000000000000000000000' ||
  fail "file capability: $(getfattr --absolute-names -e hex -n security.capability "$mnt/capbin" 2>&1)"
if command -v getcap >/dev/null; then
  getcap "$mnt/capbin" | grep -q 'cap_net_raw[=+]ep' || fail "getcap: $(getcap "$mnt/capbin")"
fi
getfacl -n "$mnt/suid" 2>/dev/null | grep -qx 'user:1000:rwx' || fail "access ACL"
getfacl -n "$mnt/suid" 2>/dev/null | grep -qx 'group:2000:r--' || fail "access ACL (group)"
getfacl -n "$mnt/sticky" 2>/dev/null | grep -qx 'default:user:1000:r-x' || fail "default ACL"
# Holes: 64 MiB file, two small extents of data.
[ "$(stat -c %b "$mnt/sparse")" -le 64 ] || fail "sparse file uses $(stat -c %b "$mnt/sparse") blocks"
/usr/bin/python3 - "$mnt/sparse" <<'PY' || fail "sparse file holes"
import os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
data = os.lseek(fd, 0, os.SEEK_DATA)
assert data == 32 << 20, data
hole = os.lseek(fd, data, os.SEEK_HOLE)
assert hole == (32 << 20) + 4096, hole
assert os.lseek(fd, hole, os.SEEK_DATA) == (64 << 20) - 4096
PY
[ "$(stat -c %Y "$mnt/old")" = 1000000000 ] || fail "old mtime not kept"
[ "$(stat -c %Y "$mnt/future")" = "$SOURCE_DATE_EPOCH" ] || fail "future mtime not clamped"
[ "$(stat -c %Z "$mnt/suid")" = "$SOURCE_DATE_EPOCH" ] || fail "ctime not clamped"
umount "$mnt"

# Identity: derived from the content, or given.
uuid=$(dumpe2fs -h "$TESTDIR/a.img" 2>/dev/null | sed -n 's/^Filesystem UUID: *//p')
[ -n "$uuid" ] || fail "no UUID"
imgt build "$src" -o "$TESTDIR/c.img" --uuid 12345678-1234-4234-8234-123456789abc \
  --hash-seed 0f0f0f0f-0000-4000-8000-000000000001 --label root >/dev/null || fail "build with --uuid"
dumpe2fs -h "$TESTDIR/c.img" 2>/dev/null >"$TESTDIR/c.dump"
grep -q '^Filesystem UUID: *12345678-1234-4234-8234-123456789abc$' "$TESTDIR/c.dump" || fail "--uuid"
grep -q '^Directory Hash Seed: *0f0f0f0f-0000-4000-8000-000000000001$' "$TESTDIR/c.dump" || fail "--hash-seed"
grep -q '^Filesystem volume name: *root$' "$TESTDIR/c.dump" || fail "--label"
# Another SOURCE_DATE_EPOCH: other timestamps, other image.
SOURCE_DATE_EPOCH=1600000000 imgt build "$src" -o "$TESTDIR/d.img" >/dev/null || fail "build with another epoch"
! cmp -s "$TESTDIR/a.img" "$TESTDIR/d.img" || fail "SOURCE_DATE_EPOCH has no effect"
exit 0
