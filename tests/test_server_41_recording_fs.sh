#!/bin/bash
# test_server_41: recfs, the recording file system below the power-loss
# test (issue 20 item 5), logs every state change in the order it happened:
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
os.rmdir(m + "/e")
fd2 = os.open(m + "/d/g", os.O_WRONLY | os.O_TRUNC)
os.close(fd2)
PY

umount_recfs "$M"
cat "$L"
# The fallocate's mode (0) and the create's mode bits are what the caller
# asked for; fsync START is the number of lines before it.
cat >"$TESTDIR/want" <<'W'
mkdir /d 700
create /d/f 100600
write /d/f 4096 5 0
fsync /d/f 1 3
truncate /d/f 16384
fsync /d/f 0 5
fallocate /d/f 0 0 20000
rename /d/f /d/g 0
fsyncdir /d 0 8
link /d/g /d/h
symlink g /d/s
unlink /d/h
create /.mark 100644
mark ack 7
mkdir /e 755
rmdir /e
truncate /d/g 0
W
# Python's mkdir and open use the process umask: compare modes with it.
diff <(sed "s/^mkdir \/e 755/mkdir \/e $(printf '%o' $((0777 & ~$(umask))))/" "$TESTDIR/want") "$L" \
  || fail "recfs log differs from the operations made (above: want vs got)"
[ "$(cat "$L.data")" = hello ] || fail "recfs data log does not hold the written bytes"
[ -L "$B/d/s" ] && [ ! -e "$B/d/h" ] && [ ! -e "$B/.mark" -o ! -s "$B/.mark" ] \
  || fail "backing directory does not match what was done through recfs"
[ "$(stat -c %s "$B/d/g")" = 0 ] || fail "truncate did not reach the backing file"
echo "recfs logged $(wc -l <"$L") operations in order"
