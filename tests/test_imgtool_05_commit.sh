#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# test_imgtool_05_commit: imgtool commit folds a client's overlay into a new
# version whose content equals the client's view.  The client's changes are
# made the way a booted client makes them: a copy of version 1 is mounted,
# changed (files added, changed, removed, zeroed in place, chmod'ed) and
# cleanly unmounted; the blocks that differ are written through nbdsrv
# (whole blocks, a block in unaligned pieces, zeroed blocks as
# WRITE_ZEROES).  The committed version must be byte for byte that copy and
# the client's export, e2fsck clean, with version 1 as parent; version 1
# and the overlay stay untouched; the client keeps its view, new clients
# get the commit.  An overlay whose base is no longer current (a version
# was published since) is refused, saying which versions committing it
# would roll back; with --force it is committed (version 1 + the client's
# changes) with a line saying what it rolled back; one that would undo a
# rollback of current is refused as well.  A filesystem that was
# not cleanly unmounted, a missing overlay, an overlay of another store
# and a changed base are refused.
. "$(dirname "$0")/functions.sh"

[ "$(id -u)" = 0 ] || skip "needs root (loop mounts)"
requires_cmd mount umount e2fsck debugfs nbdcopy

listing() { (cd "$1" && find . -printf '%p %s %y\n' | sort); }
meta() { sed -n "s/^$2=//p" "$1"; }

export SOURCE_DATE_EPOCH=1700000000
store=$TESTDIR/store
os=$store/os
ov=$TESTDIR/ov
tree=$TESTDIR/tree
mkdir -p "$tree/etc" "$tree/usr/bin" "$tree/var/lib"
echo old-host >"$tree/etc/hostname"
echo 'keep me' >"$tree/etc/motd"
echo 'remove me' >"$tree/etc/obsolete"
printf '#!/bin/sh\necho tool\n' >"$tree/usr/bin/tool"
head -c 1M /dev/urandom >"$tree/var/lib/data"
imgt build "$tree" --store "$store" --name os >/dev/null || fail "build version 1"
mkdir -p "$TESTDIR/other-tree"
echo other >"$TESTDIR/other-tree/x"
imgt build "$TESTDIR/other-tree" --store "$store" --name other >/dev/null || fail "build other"

# What the client does to its disk: a clean mount, changes, a clean unmount.
cp "$os/0001.img" "$TESTDIR/view.img"
chmod u+w "$TESTDIR/view.img"
mnt=$TESTDIR/mnt
mkdir "$mnt"
mount -o loop "$TESTDIR/view.img" "$mnt" || fail "mount the client's copy"
on_exit "umount $mnt 2>/dev/null"
echo new-host >"$mnt/etc/hostname"
rm "$mnt/etc/obsolete"
mkdir -p "$mnt/opt/app"
head -c 300000 /dev/urandom >"$mnt/opt/app/bin"
ln -s ../opt/app/bin "$mnt/usr/bin/app"
chmod 4711 "$mnt/usr/bin/tool"
dd if=/dev/zero of="$mnt/var/lib/data" bs=64K count=2 seek=4 conv=notrunc status=none
umount "$mnt"

sum_base=$(sha256sum <"$os/0001.img")
start_nbdsrv -e os="$os" -e other="$store/other" -o "$ov"
/usr/bin/python3 - "$PORT" "$os/0001.img" "$TESTDIR/view.img" <<'PY' || fail "client writes"
import nbd, sys
h = nbd.NBD()
h.set_export_name("os@c1")
h.connect_tcp("127.0.0.1", sys.argv[1])
base = open(sys.argv[2], "rb").read()
view = open(sys.argv[3], "rb").read()
zero = bytes(4096)
nwrite = nzero = npieces = 0
for off in range(0, len(view), 4096):
    b, v = base[off:off + 4096], view[off:off + 4096]
    if b == v:
        continue
    if v == zero:
        h.zero(4096, off)
        nzero += 1
    elif npieces == 0:
        # one block in unaligned pieces: the server merges them
        for a, e in ((0, 1000), (1000, 3001), (3001, 4096)):
            h.pwrite(v[a:e], off + a)
        npieces = 1
    else:
        h.pwrite(v, off)
        nwrite += 1
# A block written and then trimmed where the base is zero too: no change.
last = len(view) - 4096
assert base[last:] == zero and view[last:] == zero
h.pwrite(b"\xff" * 4096, last)
h.trim(4096, last)
h.flush()
assert nwrite > 5 and nzero >= 16 and npieces == 1, (nwrite, nzero, npieces)
h.shutdown()
PY
nbdcopy "nbd://127.0.0.1:$PORT/os@c1" "$TESTDIR/export.img" || fail "nbdcopy of the client's export"
cmp "$TESTDIR/export.img" "$TESTDIR/view.img" || fail "the client's export is not what it wrote"
ovsum=$(sha256sum "$ov/os/c1.map" "$ov/os/c1.data" | cut -d' ' -f1)

imgt commit --store "$store" --name os --overlay "$ov/os/c1" >"$TESTDIR/out" || fail "commit"
[ "$(cat "$TESTDIR/out")" = "$os/0002.img" ] || fail "commit printed $(cat "$TESTDIR/out")"
cmp "$os/0002.img" "$TESTDIR/view.img" || fail "the committed version is not the client's view"
[ "$(readlink "$os/current")" = 0002.img ] || fail "current does not point to the commit"
[ "$(meta "$os/0002.meta" parent)" = 0001 ] || fail "parent of the commit: $(meta "$os/0002.meta" parent)"
meta "$os/0002.meta" source | grep -q "^commit of overlay $ov/os/c1 on 0001.img$" || fail "source: $(meta "$os/0002.meta" source)"
[ "$(sha256sum <"$os/0001.img")" = "$sum_base" ] || fail "commit changed version 1"
[ "$(sha256sum "$ov/os/c1.map" "$ov/os/c1.data" | cut -d' ' -f1)" = "$ovsum" ] || fail "commit changed the overlay"
imgt verify --store "$store" >/dev/null || fail "verify after commit"
e2fsck -fn "$os/0002.img" >"$TESTDIR/fsck.log" 2>&1 || { cat "$TESTDIR/fsck.log" >&2; fail "e2fsck on the commit"; }
imgt info --store "$store" --name os | grep -q "id=0002 current=yes .*parent=0001 " || fail "info on the commit"

mount -o loop,ro "$os/0002.img" "$mnt" || fail "mount the commit"
[ "$(cat "$mnt/etc/hostname")" = new-host ] || fail "changed file"
[ "$(cat "$mnt/etc/motd")" = "keep me" ] || fail "unchanged file"
[ ! -e "$mnt/etc/obsolete" ] || fail "removed file is back"
[ "$(stat -c %s "$mnt/opt/app/bin")" = 300000 ] || fail "new file"
[ "$(readlink "$mnt/usr/bin/app")" = ../opt/app/bin ] || fail "new symlink"
[ "$(stat -c %a "$mnt/usr/bin/tool")" = 4711 ] || fail "chmod"
cmp -s <(head -c 384K "$mnt/var/lib/data" | tail -c 128K) <(head -c 128K /dev/zero) || fail "zeroed range"
umount "$mnt"

# The committing client keeps its view (version 1 + overlay); new clients
# get the commit.
nbdcopy "nbd://127.0.0.1:$PORT/os@c1" "$TESTDIR/export2.img" || fail "nbdcopy after commit"
cmp "$TESTDIR/export2.img" "$TESTDIR/view.img" || fail "the client's view changed after the commit"
nbdcopy "nbd://127.0.0.1:$PORT/os@c2" "$TESTDIR/export3.img" || fail "nbdcopy of a new client"
cmp "$TESTDIR/export3.img" "$os/0002.img" || fail "a new client does not get the commit"

# A version built after the commit (another tree): the overlay, still on
# version 1, is no longer on current.  Committing it again would publish
# 1 + c1 and silently drop versions 2 and 3: refused, saying so, store
# untouched.
mkdir -p "$TESTDIR/tree3/etc"
echo built-later >"$TESTDIR/tree3/etc/hostname"
imgt build "$TESTDIR/tree3" --store "$store" --name os >/dev/null || fail "build version 3"
before=$(listing "$store")
rc=0
imgt commit --store "$store" --name os --overlays "$ov" --client c1 >"$TESTDIR/out" || rc=$?
[ $rc = 1 ] || fail "commit of an overlay on 0001 with current 0003: exit $rc, want 1"
[ "$(wc -l <"$TESTDIR/last.err")" = 1 ] || fail "refusal is not one line: $(cat "$TESTDIR/last.err")"
grep -q "^imgtool: error: overlay $ov/os/c1 was made on version 0001, not on current 0003: committing it would roll back 0002, 0003 .*reset the client .*boot it on 0003 .*or pass --force" "$TESTDIR/last.err" ||
  fail "rollback refusal: $(cat "$TESTDIR/last.err")"
[ ! -s "$TESTDIR/out" ] || fail "a refused commit printed $(cat "$TESTDIR/out")"
[ "$(listing "$store")" = "$before" ] || fail "a refused commit changed the store"
# --force commits it (same overlay named by directory and client: the
# same bytes as the first commit, without version 3's file) and says what
# it rolled back.
imgt commit --store "$store" --name os --overlays "$ov" --client c1 --force >"$TESTDIR/out" || fail "commit --force over newer versions"
[ "$(cat "$TESTDIR/out")" = "$os/0004.img" ] || fail "commit --force printed $(cat "$TESTDIR/out")"
grep -qx "imgtool: warning: commit --force: 0004 is 0001 + this client's changes: it rolls back 0002, 0003 (current was 0003)" "$TESTDIR/last.err" ||
  fail "commit --force message: $(cat "$TESTDIR/last.err")"
cmp "$os/0004.img" "$TESTDIR/view.img" || fail "commit --force is not version 1 + the client's changes"
[ "$(readlink "$os/current")" = 0004.img ] || fail "current after commit --force: $(readlink "$os/current")"
[ "$(meta "$os/0004.meta" parent)" = 0001 ] || fail "parent of the forced commit: $(meta "$os/0004.meta" parent)"

# Refusals leave the store as it is.
before=$(listing "$store")
# A filesystem that was not cleanly unmounted (the client still runs).
cp "$os/0004.img" "$TESTDIR/dirty.img"
chmod u+w "$TESTDIR/dirty.img"
debugfs -w -R "ssv state 0" "$TESTDIR/dirty.img" >/dev/null 2>&1 || fail "debugfs ssv"
/usr/bin/python3 - "$PORT" "$TESTDIR/dirty.img" <<'PY' || fail "client c3 writes"
import nbd, sys
h = nbd.NBD()
h.set_export_name("os@c3")
h.connect_tcp("127.0.0.1", sys.argv[1])
h.pwrite(open(sys.argv[2], "rb").read(4096), 0)
h.flush()
h.shutdown()
PY
if imgt commit --store "$store" --name os --overlay "$ov/os/c3"; then fail "commit of an unclean filesystem"; fi
grep -q "^imgtool: error: the filesystem on overlay .*c3 was not cleanly unmounted" "$TESTDIR/last.err" ||
  fail "unclean commit: $(cat "$TESTDIR/last.err")"
[ "$(listing "$store")" = "$before" ] || fail "a refused commit changed the store"
rc=0
imgt commit --store "$store" --name os --overlays "$ov" --client ../os/c1 || rc=$?
[ $rc = 2 ] || fail "--client ../os/c1: exit $rc, want 2 (usage)"
grep -q "^imgtool: error: --client '../os/c1' is not a client identity" "$TESTDIR/last.err" || fail "bad --client: $(cat "$TESTDIR/last.err")"
if imgt commit --store "$store" --name os --overlay "$ov/os/nobody"; then fail "commit of a missing overlay"; fi
grep -q "^imgtool: error: no overlay at .*nobody" "$TESTDIR/last.err" || fail "missing overlay: $(cat "$TESTDIR/last.err")"
nbdcopy "nbd://127.0.0.1:$PORT/other@z" /dev/null || fail "client z on other"
if imgt commit --store "$store" --name os --overlay "$ov/other/z"; then fail "commit of another store's overlay"; fi
grep -q "^imgtool: error: overlay .*z was made on .*other/0001.img, which is not a version of" "$TESTDIR/last.err" ||
  fail "overlay of another store: $(cat "$TESTDIR/last.err")"
[ "$(listing "$store")" = "$before" ] || fail "a refused commit changed the store"
stop_nbdsrv || fail "nbdsrv exited with $? on SIGTERM"
[ -z "$(find "$os" -name '.*' ! -name .lock)" ] || fail "commit left temporaries: $(find "$os" -name '.*')"

# --force publishes the unclean one anyway.
imgt commit --store "$store" --name os --overlay "$ov/os/c3" --force >/dev/null || fail "commit --force"
cmp -n 4096 "$os/0005.img" "$TESTDIR/dirty.img" || fail "commit --force content"
# After a rollback of current to version 2, committing an overlay on
# version 4 would undo the rollback: refused too.
imgt rollback --store "$store" os 2 >/dev/null || fail "rollback to 2"
before=$(listing "$store")
if imgt commit --store "$store" --name os --overlay "$ov/os/c3"; then fail "commit undoing a rollback"; fi
grep -q "^imgtool: error: overlay $ov/os/c3 was made on version 0004, not on current 0002: committing it would undo the rollback to 0002 .*or pass --force to undo it" "$TESTDIR/last.err" ||
  fail "commit undoing a rollback: $(cat "$TESTDIR/last.err")"
[ "$(listing "$store")" = "$before" ] || fail "a refused commit changed the store"
# A base whose times changed but whose content is the one the overlay
# recorded is still its base (the refusal is about current, not it).
touch -d @1500000000 "$os/0001.img"
if imgt commit --store "$store" --name os --overlay "$ov/os/c1"; then fail "commit on an old base"; fi
grep -q "^imgtool: error: overlay $ov/os/c1 was made on version 0001, not on current 0002" "$TESTDIR/last.err" ||
  fail "touched base: $(cat "$TESTDIR/last.err")"
# A base changed under the overlay cannot be rebuilt.
chmod u+w "$os/0001.img"
printf 'X' | dd of="$os/0001.img" bs=1 seek=70000 conv=notrunc status=none
touch -d @1500000001 "$os/0001.img"
before=$(listing "$store")
if imgt commit --store "$store" --name os --overlay "$ov/os/c1"; then fail "commit over a changed base"; fi
grep -q "^imgtool: error: base .*0001.img changed since overlay" "$TESTDIR/last.err" || fail "changed base: $(cat "$TESTDIR/last.err")"
[ "$(listing "$store")" = "$before" ] || fail "a refused commit changed the store"
exit 0
