#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# test_imgtool_14_upgrade_report: imgtool upgrade-report reads each
# client's state disk (the template with the client's overlay, as nbdsrv
# serves it) and lists the entries of its upper layer that hide a path
# which differs between the base version the client last booted and
# current: a changed, an added and a removed file, a whiteout of a
# changed file and an opaque directory over a changed one; not a copy of
# an unchanged file, not the client's own new files, not a file whose
# only change is its mtime.  A client on current and one that never
# booted have nothing to report.  Exit status 3 when something hides a
# change, 0 when nothing does.  Both base formats: ext4 and squashfs.
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/layered-state.sh"

export SOURCE_DATE_EPOCH=1700000000
store=$TESTDIR/store ov=$TESTDIR/ov
mkdir -p "$store" "$ov"

v1=$TESTDIR/v1 v2=$TESTDIR/v2
mkdir -p "$v1"/{etc,opt/dir,var/lib/dpkg,usr/share/doc,sbin}
echo one >"$v1/etc/a.conf"
echo same >"$v1/etc/b.conf"
echo old >"$v1/etc/gone.conf"
echo 1 >"$v1/opt/dir/f1"
echo old >"$v1/var/lib/dpkg/status"
echo doc >"$v1/usr/share/doc/d"
echo time >"$v1/etc/touched"
touch -d @1600000000 "$v1/etc/touched"
ln -s /bin/true "$v1/sbin/init"
cp -a "$v1" "$v2"
echo two >"$v2/etc/a.conf"
rm "$v2/etc/gone.conf"
echo new >"$v2/etc/new.conf"
echo 1b >"$v2/opt/dir/f1"
echo new >"$v2/var/lib/dpkg/status"
touch -d @1650000000 "$v2/etc/touched"
for fmt in ext4 squashfs; do
  imgt build "$v1" --format $fmt --store "$store" --name os-$fmt --quiet >/dev/null || fail "build $fmt v1"
  imgt build "$v2" --format $fmt --store "$store" --name os-$fmt --quiet >/dev/null || fail "build $fmt v2"
done
imgt state-template --size 64M -o "$store/state.img" >/dev/null || fail "state-template"

# The upper layer of client 1, booted on 0001.
printf 'mine\n' >"$TESTDIR/mine"
upper1="mkdir /upper/etc
write $TESTDIR/mine /upper/etc/a.conf
write $TESTDIR/mine /upper/etc/b.conf
write $TESTDIR/mine /upper/etc/gone.conf
write $TESTDIR/mine /upper/etc/new.conf
write $TESTDIR/mine /upper/etc/touched
mkdir /upper/home
write $TESTDIR/mine /upper/home/own
mkdir /upper/var
mkdir /upper/var/lib
mkdir /upper/var/lib/dpkg
mknod /upper/var/lib/dpkg/status c 0 0
mkdir /upper/usr
mkdir /upper/usr/share
mkdir /upper/usr/share/doc
mknod /upper/usr/share/doc/d c 0 0
mkdir /upper/opt
mkdir /upper/opt/dir
ea_set /upper/opt/dir trusted.overlay.opaque y
write $TESTDIR/mine /upper/opt/dir/f2"
upper2="mkdir /upper/etc
write $TESTDIR/mine /upper/etc/a.conf"

c1=52-54-00-00-00-01 c2=52-54-00-00-00-02 c3=52-54-00-00-00-03
for fmt in ext4 squashfs; do
  state_disk "$TESTDIR/$fmt-1.img" "$store/state.img" "$(base_id "$store" os-$fmt 0001)" "$upper1"
  state_disk "$TESTDIR/$fmt-2.img" "$store/state.img" "$(base_id "$store" os-$fmt 0002)" "$upper2"
done
state_disk "$TESTDIR/never.img" "$store/state.img" "" ""
state_overlays "$store/state.img" "$ov" state-ext4 \
  $c1="$TESTDIR/ext4-1.img" $c2="$TESTDIR/ext4-2.img" $c3="$TESTDIR/never.img"
state_overlays "$store/state.img" "$ov" state-squashfs \
  $c1="$TESTDIR/squashfs-1.img" $c2="$TESTDIR/squashfs-2.img"

for fmt in ext4 squashfs; do
  rc=0
  imgt upgrade-report --store "$store" --name os-$fmt --overlays "$ov" \
    --state-export state-$fmt >"$TESTDIR/report" || rc=$?
  [ $rc = 3 ] || fail "$fmt: exit status $rc, want 3 (something hides a change)"
  want="$c1 0001 0002 changed file /etc/a.conf
$c1 0001 0002 removed file /etc/gone.conf
$c1 0001 0002 added file /etc/new.conf
$c1 0001 0002 changed opaque-dir /opt/dir
$c1 0001 0002 changed whiteout /var/lib/dpkg/status"
  [ "$(cat "$TESTDIR/report")" = "$want" ] ||
    fail "$fmt: report:
$(cat "$TESTDIR/report")
want:
$want"
  n=$([ $fmt = ext4 ] && echo 3 || echo 2)
  grep -qx "imgtool: upgrade-report: $n clients, 1 on current 0002, 5 files hiding changes of the base" "$TESTDIR/last.err" ||
    fail "$fmt: summary: $(cat "$TESTDIR/last.err")"
done
grep -qx "imgtool: warning: client $c3 has not booted a layered root yet (no base-id on its state disk): nothing to report" \
  "$TESTDIR/imgtool.log" || fail "never booted: $(cat "$TESTDIR/imgtool.log")"

# One client: on current, nothing to report.
imgt upgrade-report --store "$store" --name os-ext4 --overlays "$ov" \
  --state-export state-ext4 --client $c2 >"$TESTDIR/report" || fail "client on current: exit $?"
[ ! -s "$TESTDIR/report" ] || fail "client on current: $(cat "$TESTDIR/report")"
# A MAC in another spelling names the same client.
rc=0
imgt upgrade-report --store "$store" --name os-ext4 --overlays "$ov" \
  --state-export state-ext4 --client 52:54:00:00:00:01 >"$TESTDIR/report" || rc=$?
[ $rc = 3 ] && [ "$(wc -l <"$TESTDIR/report")" = 5 ] || fail "--client 52:54:...: $rc $(cat "$TESTDIR/report")"

# Refusals: one line each.
if imgt upgrade-report --store "$store" --name os-squashfs --overlays "$ov" --state-export state-ext4 --client $c1; then
  fail "a client of another image"
fi
grep -qx "imgtool: error: client $c1 last booted \"nbdroot-base os-ext4 0001 sha256:.*\", not a version of os-squashfs" "$TESTDIR/last.err" ||
  fail "another image: $(cat "$TESTDIR/last.err")"
if imgt upgrade-report --store "$store" --name os-ext4 --overlays "$ov" --state-export nosuch; then fail "no such export"; fi
grep -q "^imgtool: error: cannot read $ov/nosuch (the overlays of export nosuch): " "$TESTDIR/last.err" ||
  fail "no such export: $(cat "$TESTDIR/last.err")"
if imgt upgrade-report --store "$store" --name os-ext4 --overlays "$ov"; then fail "no --state-export"; fi
grep -q "^imgtool: error: upgrade-report needs" "$TESTDIR/last.err" || fail "usage: $(cat "$TESTDIR/last.err")"
exit 0
