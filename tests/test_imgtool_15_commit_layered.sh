#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# test_imgtool_15_commit_layered: imgtool commit --layered folds a
# layered client's upper layer (read from its state disk: the template
# with its overlay) onto the base version it booted, into a new version of
# the base's format: a changed file replaces the base's, a whiteout
# removes one (a hard link of it survives), an opaque directory replaces
# the base directory's entries, new files are added, overlayfs's
# attributes are dropped.  Two commits of the same layer give the same
# bytes.  A client that booted an older version is refused without
# --force.  Both formats: ext4 (e2fsck clean, read by debugfs) and
# squashfs (read by unsquashfs).
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/layered-state.sh"
requires_cmd unsquashfs e2fsck

export SOURCE_DATE_EPOCH=1700000000
store=$TESTDIR/store ov=$TESTDIR/ov
mkdir -p "$store" "$ov"
v1=$TESTDIR/v1
mkdir -p "$v1"/{etc,opt/dir,usr/bin}
echo base >"$v1/etc/a.conf"
echo gone >"$v1/etc/gone.conf"
echo keep >"$v1/etc/keep"
echo 1 >"$v1/opt/dir/f1"
echo bin >"$v1/usr/bin/x"
ln "$v1/usr/bin/x" "$v1/usr/bin/y"
for fmt in ext4 squashfs; do
  imgt build "$v1" --format $fmt --store "$store" --name os-$fmt --quiet >/dev/null || fail "build $fmt"
done
imgt state-template --size 64M -o "$store/state.img" >/dev/null || fail "state-template"
printf 'mine\n' >"$TESTDIR/mine"
upper="mkdir /upper/etc
write $TESTDIR/mine /upper/etc/a.conf
mknod /upper/etc/gone.conf c 0 0
mkdir /upper/opt
mkdir /upper/opt/dir
ea_set /upper/opt/dir trusted.overlay.opaque y
write $TESTDIR/mine /upper/opt/dir/f2
mkdir /upper/usr
mkdir /upper/usr/bin
mknod /upper/usr/bin/x c 0 0
mkdir /upper/home
write $TESTDIR/mine /upper/home/own"
c1=52-54-00-00-00-01
for fmt in ext4 squashfs; do
  state_disk "$TESTDIR/$fmt.img" "$store/state.img" "$(base_id "$store" os-$fmt 0001)" "$upper"
  state_overlays "$store/state.img" "$ov" state-$fmt $c1="$TESTDIR/$fmt.img"
done

# What the folded version must hold: path, then content for files.
want="/etc/a.conf mine
/etc/keep keep
/home/own mine
/opt/dir/f2 mine
/usr/bin/y bin"
for fmt in ext4 squashfs; do
  cp -a "$store" "$TESTDIR/store2"
  imgt commit --layered --store "$store" --name os-$fmt --overlays "$ov" \
    --state-export state-$fmt --client $c1 >"$TESTDIR/out" || fail "$fmt: commit --layered"
  grep -qx "imgtool: commit: 0002 = 0001 + the upper layer of $c1" "$TESTDIR/last.err" ||
    fail "$fmt: summary: $(cat "$TESTDIR/last.err")"
  img=$store/os-$fmt/0002.img
  [ "$(readlink "$store/os-$fmt/current")" = 0002.img ] || fail "$fmt: current is not 0002"
  grep -qx "format=$fmt" "$store/os-$fmt/0002.meta" || fail "$fmt: format: $(cat "$store/os-$fmt/0002.meta")"
  grep -qx "parent=0001" "$store/os-$fmt/0002.meta" || fail "$fmt: parent: $(cat "$store/os-$fmt/0002.meta")"
  imgt verify --store "$store" --name os-$fmt >/dev/null || fail "$fmt: verify"
  x=$TESTDIR/x-$fmt
  if [ $fmt = ext4 ]; then
    e2fsck -fn "$img" >"$TESTDIR/fsck" 2>&1 || fail "e2fsck: $(cat "$TESTDIR/fsck")"
    debugfs -R "rdump / $x" "$img" >/dev/null 2>&1 || true
    mkdir -p "$x" && debugfs -R "rdump / $x" "$img" >/dev/null 2>&1 || fail "debugfs rdump"
    got=$(cd "$x"/ && find . -type f ! -path './lost+found/*' | sed 's|^\.||' | sort |
          while read -r f; do echo "$f $(cat "$x/$f")"; done)
    debugfs -R "getfattr /opt/dir" "$img" 2>/dev/null | grep -q overlay && fail "ext4: trusted.overlay kept"
  else
    unsquashfs -q -n -d "$x" "$img" >/dev/null 2>&1 || fail "unsquashfs"
    got=$(cd "$x" && find . -type f | sed 's|^\.||' | sort |
          while read -r f; do echo "$f $(cat "$x/$f")"; done)
    unsquashfs -lls "$img" 2>/dev/null | grep -q "gone.conf\|usr/bin/x$" && fail "squashfs: a whited-out file is there"
  fi
  [ "$got" = "$want" ] || fail "$fmt: the new version holds:
$got
want:
$want"
  # Reproducible: the same commit in a copy of the store, the same bytes.
  imgt commit --layered --store "$TESTDIR/store2" --name os-$fmt --overlays "$ov" \
    --state-export state-$fmt --client $c1 >/dev/null || fail "$fmt: second commit"
  cmp "$img" "$TESTDIR/store2/os-$fmt/0002.img" || fail "$fmt: two commits differ"
  rm -rf "$TESTDIR/store2"
done

# The client booted 0001, current is 0002 now: refused without --force.
if imgt commit --layered --store "$store" --name os-ext4 --overlays "$ov" --state-export state-ext4 --client $c1; then
  fail "a commit on a base that is not current"
fi
grep -q "^imgtool: error: overlay $ov/state-ext4/$c1 was made on version 0001, not on current 0002: committing it would roll back 0002" "$TESTDIR/last.err" ||
  fail "not current: $(cat "$TESTDIR/last.err")"
[ ! -e "$store/os-ext4/0003.img" ] || fail "a refused commit published"
imgt commit --layered --force --store "$store" --name os-ext4 --overlays "$ov" --state-export state-ext4 --client $c1 >/dev/null ||
  fail "--force"
[ "$(readlink "$store/os-ext4/current")" = 0003.img ] || fail "--force: current is not 0003"
if imgt commit --layered --store "$store" --name os-ext4 --overlays "$ov" --client $c1; then fail "no --state-export"; fi
grep -q "^imgtool: error: --state-export goes with --layered" "$TESTDIR/last.err" || fail "usage: $(cat "$TESTDIR/last.err")"
exit 0
