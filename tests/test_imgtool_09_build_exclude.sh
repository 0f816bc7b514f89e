#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# test_imgtool_09_build_exclude: imgtool build --exclude and outputs inside
# the tree.  Patterns with a '/' are paths from the tree's root, patterns
# without one match names at any depth, an excluded directory goes with
# its content, and a pattern for a directory's content keeps the empty
# directory: the image (read with debugfs) holds exactly the rest, and two
# builds (patterns in another order) give the same bytes.  A pattern that
# matches nothing is warned about; one for the root is refused.  A store
# or an image inside the tree is refused with one line (also when the
# path reaches it through a symlink) and nothing is created, unless
# --exclude leaves out the directory that holds it: then two builds into
# a store inside the tree give identical versions (the second does not
# hold the first).
. "$(dirname "$0")/functions.sh"

requires_cmd debugfs

export SOURCE_DATE_EPOCH=1700000000
tree=$TESTDIR/tree
listing() { (cd "$1" && find . -printf '%p %s %y\n' | sort); }
# in_image IMAGE PATH: debugfs finds PATH in IMAGE.
in_image() { debugfs -R "stat $2" "$1" 2>&1 | grep -q '^Inode: '; }
# image_ls IMAGE DIR: the names in DIR, sorted, without . and ..
image_ls() { debugfs -R "ls -p $2" "$1" 2>/dev/null | awk -F/ 'NF > 5 && $6 != "." && $6 != ".." { print $6 }' | sort | tr '\n' ' '; }

mkdir -p "$tree/etc" "$tree/var/cache/apt/archives" "$tree/var/log" \
  "$tree/home/u/.cache" "$tree/lib/sub" "$tree/proc/1" "$tree/srv"
echo "/dev/nbd0 / ext4 defaults 0 1" >"$tree/etc/fstab"
echo host >"$tree/etc/hostname"
head -c 300K /dev/urandom >"$tree/var/cache/apt/pkgcache.bin"
head -c 100K /dev/urandom >"$tree/var/cache/apt/archives/x.deb"
echo log >"$tree/var/log/a.log"
echo cache >"$tree/home/u/.cache/f"
echo keep >"$tree/home/u/keep"
echo pyc >"$tree/lib/x.pyc"
echo pyc >"$tree/lib/sub/y.pyc"
echo py >"$tree/lib/sub/y.py"
echo status >"$tree/proc/1/status"

set -- --exclude /var/cache/apt --exclude '*.pyc' --exclude 'home/*/.cache/' --exclude '/proc/*'
imgt build "$tree" -o "$TESTDIR/a.img" "$@" >/dev/null || fail "build with --exclude"
[ ! -s "$TESTDIR/last.err" ] || fail "build with --exclude said: $(cat "$TESTDIR/last.err")"
img=$TESTDIR/a.img
for p in /var/cache/apt /lib/x.pyc /lib/sub/y.pyc /home/u/.cache /proc/1; do
  if in_image "$img" "$p"; then fail "$p is in the image despite --exclude"; fi
done
for p in /etc/fstab /etc/hostname /var/log/a.log /home/u/keep /lib/sub/y.py /proc /var/cache; do
  in_image "$img" "$p" || fail "$p is missing from the image"
done
[ "$(image_ls "$img" /var/cache)" = "" ] || fail "/var/cache holds: $(image_ls "$img" /var/cache)"
[ "$(image_ls "$img" /proc)" = "" ] || fail "/proc holds: $(image_ls "$img" /proc)"
[ "$(image_ls "$img" /lib/sub)" = "y.py " ] || fail "/lib/sub holds: $(image_ls "$img" /lib/sub)"
[ "$(image_ls "$img" /home/u)" = "keep " ] || fail "/home/u holds: $(image_ls "$img" /home/u)"
# Reproducible: the same bytes again, whatever the order of the patterns.
imgt build "$tree" -o "$TESTDIR/b.img" --exclude '/proc/*' --exclude 'home/*/.cache/' \
  --exclude '*.pyc' --exclude /var/cache/apt >/dev/null || fail "second build with --exclude"
cmp "$TESTDIR/a.img" "$TESTDIR/b.img" || fail "two builds with the same --exclude differ"
imgt build "$tree" -o "$TESTDIR/c.img" >/dev/null || fail "build without --exclude"
in_image "$TESTDIR/c.img" /var/cache/apt/pkgcache.bin || fail "without --exclude the cache is missing"
rm -f "$TESTDIR"/[abc].img

# A pattern that matches nothing: a warning, the build goes on.
imgt build "$tree" -o "$TESTDIR/d.img" --exclude /var/chache >/dev/null || fail "build with an unmatched pattern"
[ "$(cat "$TESTDIR/last.err")" = "imgtool: warning: --exclude '/var/chache' matched nothing in $tree (patterns with a '/' are paths from the tree's root)" ] ||
  fail "unmatched pattern: $(cat "$TESTDIR/last.err")"
rm -f "$TESTDIR/d.img"
# The root cannot be excluded.
rc=0
imgt build "$tree" -o "$TESTDIR/e.img" --exclude / || rc=$?
[ $rc = 2 ] || fail "--exclude /: exit $rc, want 2"
[ "$(wc -l <"$TESTDIR/last.err")" = 1 ] && grep -q "^imgtool: error: --exclude '/' matches no entry" "$TESTDIR/last.err" ||
  fail "--exclude /: $(cat "$TESTDIR/last.err")"
[ ! -e "$TESTDIR/e.img" ] || fail "--exclude / left an image"

# Outputs inside the tree are refused, and nothing is made.
before=$(listing "$tree")
ln -s "$tree/srv" "$TESTDIR/srv-link"
# refused WHAT PATTERN ARGS...: build refused with one line matching PATTERN.
refused() {
  local what=$1 pattern=$2 rc=0
  shift 2
  imgt build "$@" >"$TESTDIR/out" || rc=$?
  [ $rc = 1 ] || fail "$what: exit $rc, want 1"
  [ "$(wc -l <"$TESTDIR/last.err")" = 1 ] && grep -q "^imgtool: error: $pattern" "$TESTDIR/last.err" ||
    fail "$what: $(cat "$TESTDIR/last.err")"
  [ ! -s "$TESTDIR/out" ] || fail "$what printed $(cat "$TESTDIR/out")"
  [ "$(listing "$tree")" = "$before" ] || fail "$what changed the tree: $(listing "$tree")"
}
refused "store in the tree" "store $tree/srv/images is inside the tree $tree being built: every build would copy the earlier versions into the new one; put it outside the tree, or leave it out with --exclude '/srv/images'" \
  "$tree" --store "$tree/srv/images" --name os
refused "store in the tree through a symlink" "store $TESTDIR/srv-link/images is inside the tree $tree" \
  "$tree" --store "$TESTDIR/srv-link/images" --name os
(cd "$tree" && "$IMGTOOL" build . --store srv/images --name os) 2>"$TESTDIR/last.err" && fail "relative store in the tree accepted"
grep -q "^imgtool: error: store srv/images is inside the tree $tree " "$TESTDIR/last.err" || fail "relative store: $(cat "$TESTDIR/last.err")"
[ "$(listing "$tree")" = "$before" ] || fail "relative store in the tree changed the tree"
refused "the tree as store" "store $tree is inside the tree $tree being built: .*; put it outside the tree$" \
  "$tree" --store "$tree" --name os
refused "image in the tree" "image $tree/root.img is inside the tree $tree being built: the image would contain itself; put it outside the tree$" \
  "$tree" -o "$tree/root.img"
refused "image in a directory of the tree" "image $tree/srv/root.img is inside .*leave its directory out with --exclude '/srv'" \
  "$tree" -o "$tree/srv/root.img"
refused "store in the tree, another directory excluded" "store $tree/srv/images is inside the tree" \
  "$tree" --store "$tree/srv/images" --name os --exclude /var

# Excluded, a store inside the tree works, and the second version does
# not contain the first: both are the same bytes.
imgt build "$tree" --store "$tree/srv/images" --name os --exclude /srv >/dev/null || fail "store in an excluded directory"
imgt build "$tree" --store "$tree/srv/images" --name os --exclude /srv/ >/dev/null || fail "second build into the excluded store"
cmp "$tree/srv/images/os/0001.img" "$tree/srv/images/os/0002.img" || fail "the second version differs from the first: it holds the store"
imgt build "$tree" -o "$tree/srv/root.img" --exclude srv >/dev/null || fail "image in an excluded directory"
cmp "$tree/srv/root.img" "$tree/srv/images/os/0001.img" || fail "the image differs from the store's versions"
exit 0
