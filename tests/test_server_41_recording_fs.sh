#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# test_server_41: recfs, the recording file system below the power-loss
# test, logs every state change in the order it happened:
# creates, writes with their data, truncates, fallocates, renames, links,
# unlinks, directory changes, per-file fsync/fdatasync with the log
# position they started at, directory fsyncs, and client marks; and the
# file system it passes through holds the same data.
. "$(dirname "$0")/functions.sh"
. "$srcdir/powerloss/powerloss-functions.sh"
requires_recfs

B=$TESTDIR/back M=$TESTDIR/mnt L=$TESTDIR/rec.log
mount_recfs "$B" "$M" "$L"

/usr/bin/python3 - "$M" <<'PY'
import os, sys
m = sys.argv[1]
os.mkdir(m + "/d", 0o700)
fd = os.open(m + "/d/f", os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
os.pwrite(fd, b"hello", 4096)
os.fdatasync(fd)
os.ftruncate(fd, 16384)
os.fsync(fd)
os.posix_fallocate(fd, 0, 20000)
os.rename(m + "/d/f", m + "/d/g")
d = os.open(m + "/d", os.O_RDONLY | os.O_DIRECTORY)
os.fsync(d)
os.link(m + "/d/g", m + "/d/h")
os.symlink("g", m + "/d/s")
os.unlink(m + "/d/h")
with open(m + "/.mark", "w") as f:
    f.write("ack 7\n")
os.mkdir(m + "/e")
fd2 = os.open(m + "/d/g", os.O_WRONLY | os.O_TRUNC)
os.close(fd2)
fd3 = os.open(m + "/d/u", os.O_RDWR | os.O_CREAT, 0o600)
os.unlink(m + "/d/u")
os.pwrite(fd3, b"!", 0)
os.close(fd3)
os.rmdir(m + "/e")
PY

umount_recfs "$M"
cat "$L"
# Inode numbers become i1, i2, ... in the order they first appear: the
# same file keeps its number across a rename, a link and after its last
# name went (path "-").  fsync START is the number of lines before it.
cat >"$TESTDIR/want" <<W
mkdir i1 /d 700
create i2 /d/f 100600
write i2 /d/f 4096 5 0
fsync i2 /d/f 1 3
truncate i2 /d/f 16384
fsync i2 /d/f 0 5
fallocate i2 /d/f 0 0 20000
rename i2 /d/f /d/g 0
fsyncdir i1 /d 0 8
link i2 /d/g /d/h
symlink i3 /d/s g
unlink i2 /d/h
create i4 /.mark 100644
mark ack 7
mkdir i5 /e $(printf '%o' $((0777 & ~$(umask))))
truncate i2 /d/g 0
create i6 /d/u 100600
unlink i6 /d/u
write i6 - 0 1 5
rmdir i5 /e
W
/usr/bin/python3 - "$L" >"$TESTDIR/got" <<'PY'
import sys
names = {}
for line in open(sys.argv[1]):
    f = line.split()
    if f[0] != "mark":
        f[1] = names.setdefault(f[1], "i%d" % (len(names) + 1))
    print(" ".join(f))
PY
diff "$TESTDIR/want" "$TESTDIR/got" \
  || fail "recfs log differs from the operations made (above: want vs got)"
[ "$(cat "$L.data")" = 'hello!' ] || fail "recfs data log does not hold the written bytes"
[ -L "$B/d/s" ] && [ ! -e "$B/d/h" ] && [ ! -e "$B/.mark" -o ! -s "$B/.mark" ] \
  || fail "backing directory does not match what was done through recfs"
[ "$(stat -c %s "$B/d/g")" = 0 ] || fail "truncate did not reach the backing file"
echo "recfs logged $(wc -l <"$L") operations in order"
