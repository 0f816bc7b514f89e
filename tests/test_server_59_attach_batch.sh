#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# test_server_59_attach_batch: many first connects at once, each client
# bound to its address in one batch of the attach thread, and no client
# answered before its binding is durable.
#   - 40 clients with distinct IDs, each from its own address, send their
#     NBD_OPT_GO at once, with the overlays on recfs (the recording file
#     system of the power-loss tests); each marks in the record the moment
#     it got its reply;
#   - in the record, every ID.owner has its contents fsync'ed before its
#     rename, and the rename is covered by an fsync of the directory that
#     returned before the client's reply came: a power loss after the
#     reply keeps the binding;
#   - after a kill -9 and a restart, every client gets its own overlay
#     (the data it wrote and flushed) from its address, and is refused
#     from another's; every ID.owner names its client's address.
. "$(dirname "$0")/functions.sh"
. "$srcdir/powerloss/powerloss-functions.sh"
requires_recfs

make_image "$TESTDIR/base.img" 1
B=$TESTDIR/back M=$TESTDIR/mnt L=$TESTDIR/rec.log
mkdir -p "$B"
mount_recfs "$B" "$M" "$L"
: >"$M/.mark"
mkdir "$M/ov"
cat >"$TESTDIR/nbdsrv.conf" <<CONF
[generic]
overlay-dir = $M/ov

[lab]
image = $TESTDIR/base.img
CONF
start_nbdsrv -c "$TESTDIR/nbdsrv.conf"
export PORT

body() {
  /usr/bin/python3 "$srcdir/server-lib.py" "$TESTDIR" "$1" "$M/.mark" <<'PY'
import threading
tdir, phase, mark_file = sys.argv[1:4]
N = 40

def cid(i):
    return "batch-%02d" % i

def addr(i):
    return "127.0.0.%d" % (10 + i)

def mark(text):
    fd = os.open(mark_file, os.O_WRONLY)
    os.write(fd, text.encode())
    os.close(fd)

if phase == "storm":
    ready = threading.Barrier(N)
    errors = []
    def one(i):
        try:
            r = Raw(addr(i))
            r.greeting()
            ready.wait()
            rtype, _ = r.go("lab@" + cid(i))
            check(rtype == REP_ACK, "client %s: GO reply %#x" % (cid(i), rtype))
            mark("go %s" % cid(i))
            r.close()
        except Exception as e:
            errors.append("client %s: %s" % (cid(i), e))
    ts = [threading.Thread(target=one, args=(i,)) for i in range(N)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    check(not errors, "; ".join(errors))
    for i in range(N):
        h = connect("lab@" + cid(i), src=addr(i))
        h.pwrite(pattern(cid(i), 4096), 4096 * i)
        h.flush()
        h.shutdown()
else:
    for i in range(N):
        with open("%s/back/ov/lab/%s.owner" % (tdir, cid(i))) as f:
            got = f.read()
        check(got == "nbdroot-owner 1\naddress=%s\n" % addr(i),
              "%s.owner after the restart: %r" % (cid(i), got))
        h = connect("lab@" + cid(i), src=addr(i))
        check_data(h.pread(4096, 4096 * i), pattern(cid(i), 4096),
                   "client %s's data after the restart" % cid(i))
        h.shutdown()
        r = Raw(addr((i + 1) % N))
        r.greeting()
        check(r.go("lab@" + cid(i))[0] == REP_ERR_POLICY,
              "client %s from another client's address" % cid(i))
        r.close()
PY
}

body storm || fail "the storm of first connects"
stop_nbdsrv KILL || true
start_nbdsrv -c "$TESTDIR/nbdsrv.conf"
body restart || fail "after a kill -9 and a restart"
stop_nbdsrv || fail "nbdsrv did not stop cleanly"
umount_recfs "$M"

# The record: each binding durable (contents, then name) before its reply.
/usr/bin/python3 - "$L" <<'PY' || fail "a client was answered before its binding was durable"
import sys, urllib.parse
lines = [l.split() for l in open(sys.argv[1])]
ok, dir_syncs, bad = 0, 0, []
last_go = max(n for n, l in enumerate(lines) if l[:2] == ["mark", "go"])
for l in lines[:last_go]:
    if l[0] == "fsyncdir" and urllib.parse.unquote(l[2]).strip("/") == "ov/lab":
        dir_syncs += 1
for n, l in enumerate(lines):
    if l[0] != "mark" or l[1] != "go":
        continue
    cid = l[2]
    owner = "ov/lab/%s.owner" % cid
    ren = [i for i, x in enumerate(lines[:n]) if x[0] == "rename"
           and urllib.parse.unquote(x[3]).strip("/") == owner]
    if not ren:
        bad.append("%s: no rename of its owner file before its reply" % cid)
        continue
    r = ren[-1]
    ino = lines[r][1]
    wrote = [i for i, x in enumerate(lines[:r]) if x[0] == "write" and x[1] == ino]
    if not wrote or not any(x[0] == "fsync" and x[1] == ino and int(x[4]) > wrote[-1]
                            for x in lines[wrote[-1]:r]):
        bad.append("%s: owner file renamed before its contents were synced" % cid)
    if not any(x[0] == "fsyncdir" and urllib.parse.unquote(x[2]).strip("/") == "ov/lab"
               and int(x[4]) > r for x in lines[r:n]):
        bad.append("%s: answered before the directory fsync that covers its owner file" % cid)
    ok += 1
print("%d replies checked, %d fsyncs of the export's overlay directory until the last"
      % (ok, dir_syncs))
if ok != 40:
    bad.append("%d replies marked, not 40" % ok)
for b in bad:
    print(b)
sys.exit(1 if bad else 0)
PY
