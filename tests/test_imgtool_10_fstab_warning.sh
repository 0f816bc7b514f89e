#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# test_imgtool_10_fstab_warning: imgtool build warns, in one line, and
# still builds, when the tree's /etc/fstab has no entry for / (the agent
# mounts the root read-only and nothing would remount it read-write): no
# /etc/fstab, debootstrap's "UNCONFIGURED" placeholder, entries for other
# mount points only, an /etc/fstab that --exclude leaves out.  A tree
# whose /etc/fstab mounts / (any spelling of the line) builds without a
# word.
. "$(dirname "$0")/functions.sh"

export SOURCE_DATE_EPOCH=1700000000
tree=$TESTDIR/tree
mkdir -p "$tree/etc"
echo host >"$tree/etc/hostname"
n=0

# warns WHY ARGS...: the build succeeds with one warning saying WHY.
warns() {
  local why=$1
  shift
  n=$((n + 1))
  imgt build "$tree" -o "$TESTDIR/$n.img" "$@" >"$TESTDIR/out" || fail "build $n ($why) failed"
  [ "$(cat "$TESTDIR/out")" = "$TESTDIR/$n.img" ] && [ -s "$TESTDIR/$n.img" ] || fail "build $n ($why) made no image"
  [ "$(cat "$TESTDIR/last.err")" = "imgtool: warning: tree $tree: $why, so nothing remounts the root read-write: the clients run on a read-only root unless booted with rw; add a line such as '/dev/nbd0 / ext4 defaults 0 1'" ] ||
    fail "build $n ($why): $(cat "$TESTDIR/last.err")"
  rm -f "$TESTDIR/$n.img"
}
# quiet: the build succeeds and says nothing.
quiet() {
  n=$((n + 1))
  imgt build "$tree" -o "$TESTDIR/$n.img" >"$TESTDIR/out" || fail "build $n failed"
  [ ! -s "$TESTDIR/last.err" ] || fail "build $n with $(cat "$tree/etc/fstab" | head -3) said: $(cat "$TESTDIR/last.err")"
  rm -f "$TESTDIR/$n.img"
}

warns "there is no /etc/fstab"
printf '# UNCONFIGURED FSTAB FOR BASE SYSTEM\n' >"$tree/etc/fstab"
warns "/etc/fstab is debootstrap's UNCONFIGURED placeholder, with no entry for /"
printf '# / is mounted by the agent\nproc /proc proc defaults 0 0\ntmpfs /tmp tmpfs defaults 0 0\n' >"$tree/etc/fstab"
warns "/etc/fstab has no entry for /"
echo '/dev/nbd0 / ext4 defaults 0 1' >"$tree/etc/fstab"
quiet
printf '# <file system> <mount point> <type>\n\n  \tUUID=0a1b\t/\text4\terrors=remount-ro 0 1\nproc /proc proc defaults 0 0\n' >"$tree/etc/fstab"
quiet
# Left out of the image, the file counts as missing.
warns "there is no /etc/fstab" --exclude /etc/fstab
# A symbolic link points into the client's system: no guess.
mv "$tree/etc/fstab" "$tree/etc/fstab.real"
ln -s /etc/fstab.real "$tree/etc/fstab"
quiet
exit 0
