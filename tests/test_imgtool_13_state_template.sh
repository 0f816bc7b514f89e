#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# test_imgtool_13_state_template: imgtool state-template writes the blank
# ext4 a layered client's state disk starts from: of the size asked (8 GiB
# by default), sparse (a few MiB on disk), e2fsck -fn clean, nothing in
# its root but lost+found, the same bytes every time for the same options
# (and a different UUID for other ones), and a filesystem the kernel
# mounts read-write.
. "$(dirname "$0")/functions.sh"

requires_cmd e2fsck debugfs dumpe2fs

t=$TESTDIR/state.img
imgt state-template -o "$t" >"$TESTDIR/out" || fail "state-template"
[ "$(cat "$TESTDIR/out")" = "$t" ] || fail "state-template did not print the path"
[ "$(stat -c %s "$t")" = $((8 << 30)) ] || fail "default size $(stat -c %s "$t"), want 8 GiB"
used=$(($(stat -c %b "$t") * $(stat -c %B "$t")))
[ "$used" -lt $((16 << 20)) ] || fail "not sparse: $used bytes allocated"
e2fsck -fn "$t" >"$TESTDIR/fsck" 2>&1 || { cat "$TESTDIR/fsck" >&2; fail "e2fsck -fn is not clean"; }
debugfs -R "ls /" "$t" 2>/dev/null | tr -s ' \n' '\n\n' | grep -v '^$' |
  grep -vE '^\([0-9]+\)$|^[0-9]+$' | sort >"$TESTDIR/root"
[ "$(cat "$TESTDIR/root" | tr '\n' ' ')" = ". .. lost+found " ] || fail "root holds: $(cat "$TESTDIR/root")"
dumpe2fs -h "$t" 2>/dev/null | grep -q "^Inode count: *524288$" || fail "inode count (16 KiB per inode)"
imgt info "$t" | grep -qx format=ext4 || fail "info"

# Reproducible: the same options give the same bytes, other ones another
# filesystem identity.
# A second apart, so that the clock's time anywhere in the image shows.
sleep 1
imgt state-template -o "$TESTDIR/again.img" >/dev/null || fail "second run"
cmp "$t" "$TESTDIR/again.img" || fail "two runs differ"
rm -f "$TESTDIR/again.img"
SOURCE_DATE_EPOCH=1700000000 imgt state-template --size 64M -o "$TESTDIR/small.img" >/dev/null ||
  fail "--size 64M"
SOURCE_DATE_EPOCH=1700000000 imgt state-template --size 64M -o "$TESTDIR/small2.img" >/dev/null ||
  fail "--size 64M again"
cmp "$TESTDIR/small.img" "$TESTDIR/small2.img" || fail "SOURCE_DATE_EPOCH runs differ"
[ "$(stat -c %s "$TESTDIR/small.img")" = $((64 << 20)) ] || fail "--size 64M gave $(stat -c %s "$TESTDIR/small.img")"
uuid() { dumpe2fs -h "$1" 2>/dev/null | sed -n 's/^Filesystem UUID: *//p'; }
[ "$(uuid "$t")" != "$(uuid "$TESTDIR/small.img")" ] || fail "other options, same UUID"
dumpe2fs -h "$TESTDIR/small.img" 2>/dev/null | grep -q "^Filesystem created: *Tue Nov 14 22:13:20 2023$" ||
  fail "creation time is not SOURCE_DATE_EPOCH"
imgt state-template --size 64M --inodes 5000 --label state -o "$TESTDIR/opts.img" >/dev/null || fail "--inodes --label"
dumpe2fs -h "$TESTDIR/opts.img" 2>/dev/null | grep -q "^Filesystem volume name: *state$" || fail "--label"
[ "$(dumpe2fs -h "$TESTDIR/opts.img" 2>/dev/null | sed -n 's/^Inode count: *//p')" -ge 5000 ] || fail "--inodes"

# Refusals: an existing file without --force, bad sizes, stray arguments.
if imgt state-template -o "$t"; then fail "overwrote without --force"; fi
grep -qx "imgtool: error: $t already exists: remove it or pass --force" "$TESTDIR/last.err" || fail "exists: $(cat "$TESTDIR/last.err")"
imgt state-template --size 64M --force -o "$t" >/dev/null || fail "--force"
[ "$(stat -c %s "$t")" = $((64 << 20)) ] || fail "--force did not replace"
if imgt state-template --size 1M -o "$TESTDIR/tiny.img"; then fail "--size 1M accepted"; fi
grep -qx "imgtool: error: --size '1M': give a size of at least 16M, e.g. 8G" "$TESTDIR/last.err" || fail "1M: $(cat "$TESTDIR/last.err")"
if imgt state-template "$TESTDIR/x" -o "$TESTDIR/x.img"; then fail "stray argument accepted"; fi
[ ! -e "$TESTDIR/tiny.img" ] && [ ! -e "$TESTDIR/x.img" ] || fail "a refused run left a file"

# The kernel mounts it read-write and a write leaves it clean.
if [ "$(id -u)" = 0 ]; then
  mnt=$TESTDIR/mnt
  mkdir "$mnt"
  mount -o loop "$TESTDIR/small.img" "$mnt" || fail "the template does not mount"
  on_exit "umount $mnt 2>/dev/null"
  mkdir "$mnt/upper" && echo state >"$mnt/upper/f" || fail "cannot write into the mounted template"
  umount "$mnt"
  e2fsck -fn "$TESTDIR/small.img" >"$TESTDIR/fsck" 2>&1 ||
    { cat "$TESTDIR/fsck" >&2; fail "e2fsck -fn after a write is not clean"; }
fi
exit 0
