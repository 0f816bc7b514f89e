#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# test_server_25_overlay_fs_full: the overlay filesystem fills up.  Overlays live on a
# 12 MiB tmpfs.  Two clients write and flush; then one of them writes new
# blocks until the filesystem is full: it gets ENOSPC (aligned, unaligned
# and large asynchronous writes alike), never EIO and never a
# disconnect.  Meanwhile the other client can still read, rewrite what it
# wrote, and flush; the first can still flush what it did write.  The
# server stays up.  After a trim frees space both write again, and after
# a kill -9 and a restart every flushed byte of both is there.
. "$(dirname "$0")/functions.sh"
[ "$(id -u)" = 0 ] || skip "needs root to mount a small tmpfs"

make_image "$TESTDIR/base.img" 64
mkdir -p "$TESTDIR/ovfs"
mount -t tmpfs -o size=12m nbdroot-test "$TESTDIR/ovfs" || skip "cannot mount tmpfs"
on_exit "umount -l '$TESTDIR/ovfs'"
srv_args=(-e base="$TESTDIR/base.img" -o "$TESTDIR/ovfs/ov")
start_nbdsrv "${srv_args[@]}"
export PORT

/usr/bin/python3 "$srcdir/server-lib.py" "$TESTDIR" <<'PY' || fail "full overlay filesystem"
import pickle
tdir = sys.argv[1]
base = open(tdir + "/base.img", "rb").read()
M = 1 << 20
model = {"a": bytearray(base), "b": bytearray(base)}

def write(h, who, data, off):
    h.pwrite(data, off)
    model[who][off:off + len(data)] = data

a = connect("base@a")
b = connect("base@b")
write(a, "a", pattern("a0", 2 * M), 0)
write(b, "b", pattern("b0", 2 * M), 0)
a.flush(); b.flush()

# a fills the filesystem, in 256 KiB steps (the asynchronous path).
full = False
for i in range(64):
    off = 8 * M + i * 256 * 1024
    try:
        write(a, "a", pattern(("fill", i), 256 * 1024), off)
    except nbd.Error as e:
        check(nbd_errno(e) == errno.ENOSPC, "filling: expected ENOSPC, got %s" % e)
        full = True
        break
check(full, "the 12 MiB filesystem never filled up")
for what, off, ln in (("4 KiB", 40 * M, 4096), ("unaligned", 41 * M + 17, 3000),
                      ("1 MiB", 42 * M, M)):
    expect_error(lambda: a.pwrite(b"x" * ln, off), errno.ENOSPC, "%s write on a full fs" % what)
# Both can still flush what they wrote, read, and rewrite in place.
a.flush()
check_data(a.pread(2 * M, 0), model["a"][:2 * M], "a reads on a full fs")
write(b, "b", pattern("b1", M), 512 * 1024)
b.flush()
check_data(b.pread(2 * M, 0), model["b"][:2 * M], "b reads on a full fs")
# a frees space; both write again.
a.trim(4 * M, 8 * M)
model["a"][8 * M:12 * M] = bytes(4 * M)
write(a, "a", pattern("a2", M), 20 * M)
write(b, "b", pattern("b2", M), 20 * M)
a.flush(); b.flush()
pickle.dump(model, open(tdir + "/model.pickle", "wb"))
PY
kill -0 "$SRV_PID" || fail "nbdsrv died on a full filesystem"
stop_nbdsrv KILL || true
start_nbdsrv "${srv_args[@]}"
/usr/bin/python3 "$srcdir/server-lib.py" "$TESTDIR" <<'PY' || fail "flushed data lost on a full filesystem"
import pickle
tdir = sys.argv[1]
model = pickle.load(open(tdir + "/model.pickle", "rb"))
for who in ("a", "b"):
    h = connect("base@" + who)
    for off in range(0, len(model[who]), 16 << 20):
        check_data(h.pread(16 << 20, off), model[who][off:off + (16 << 20)],
                   "client %s after a restart, at %d" % (who, off))
    h.shutdown()
PY
stop_nbdsrv || fail "nbdsrv exited with $? on SIGTERM"
exit 0
