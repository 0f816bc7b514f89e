#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# test_imgtool_02_build_sizing: imgtool build sizing, bad input and failures.  Automatic
# sizing leaves the promised headroom, --size/--inodes/--headroom are
# obeyed; a missing tree, a tree that is a file, an unreadable file or
# directory, a tree too big for --size, a bad SOURCE_DATE_EPOCH and an
# existing output each fail with one clear line and leave nothing behind
# (no image, no temporary, no store or version); SIGTERM and SIGKILL in
# the middle of a build leave nothing either.  --progress reports.
. "$(dirname "$0")/functions.sh"

[ "$(id -u)" = 0 ] || skip "needs root (tmpfs mount, dropping capabilities)"
requires_cmd dumpe2fs e2fsck setpriv mount

# expect_error WHAT PATTERN: the last command failed with exactly one line,
# an imgtool error matching PATTERN.
expect_error() {
  [ "$(wc -l <"$TESTDIR/last.err")" = 1 ] ||
    fail "$1: want one line of error, got: $(cat "$TESTDIR/last.err")"
  grep -q "^imgtool: error: .*$2" "$TESTDIR/last.err" ||
    fail "$1: error does not say '$2': $(cat "$TESTDIR/last.err")"
}
# listing DIR: every name under DIR (hidden ones too), with sizes.
listing() { (cd "$1" && find . -printf '%p %s %y\n' | sort); }
fs_field() { dumpe2fs -h "$1" 2>/dev/null | sed -n "s/^$2: *//p"; }

export SOURCE_DATE_EPOCH=1700000000
out=$TESTDIR/out
mkdir "$out"
tree=$TESTDIR/tree
mkdir -p "$tree/etc" "$tree/many"
echo hello >"$tree/etc/hostname"
for i in $(seq 1 5000); do : >"$tree/many/f$i"; done
head -c 20M /dev/urandom >"$tree/blob"

# Automatic size: used space + 20% + 16 MiB free, inodes to spare.
imgt build "$tree" -o "$out/auto.img" >/dev/null || fail "automatic size"
e2fsck -fn "$out/auto.img" >/dev/null 2>&1 || fail "e2fsck on auto.img"
free=$(($(fs_field "$out/auto.img" "Free blocks") * 4096))
[ $free -ge $((16 << 20)) ] || fail "automatic size left only $free bytes free"
[ "$(fs_field "$out/auto.img" "Free inodes")" -ge 1000 ] || fail "automatic inodes: $(fs_field "$out/auto.img" "Free inodes") free"
imgt build "$tree" -o "$out/head.img" --headroom 200M >/dev/null || fail "--headroom 200M"
[ $(($(fs_field "$out/head.img" "Free blocks") * 4096)) -ge $((200 << 20)) ] || fail "--headroom 200M not free"
imgt build "$tree" -o "$out/fixed.img" --size 100M --inodes 30000 >/dev/null || fail "--size 100M"
[ "$(stat -c %s "$out/fixed.img")" = $((100 << 20)) ] || fail "--size 100M gave $(stat -c %s "$out/fixed.img") bytes"
[ "$(fs_field "$out/fixed.img" "Inode count")" -ge 30000 ] || fail "--inodes 30000"
e2fsck -fn "$out/fixed.img" >/dev/null 2>&1 || fail "e2fsck on fixed.img"
rm -f "$out"/*.img

# --progress: the final count on stderr.
imgt build "$tree" -o "$out/p.img" --progress >/dev/null || fail "--progress"
grep -Eq '^imgtool: build: ([0-9]+)/\1 inodes, ([0-9]+)/\2 MiB$' "$TESTDIR/last.err" ||
  fail "--progress: $(cat "$TESTDIR/last.err")"
rm -f "$out/p.img"

# A store with one version, to show failures add nothing to it.
imgt build "$tree" --store "$TESTDIR/store" --name os >/dev/null || fail "first version"
before_store=$(listing "$TESTDIR/store")

# Bad input.
if imgt build "$TESTDIR/missing" -o "$out/x.img"; then fail "missing tree accepted"; fi
expect_error "missing tree" "missing: No such file or directory"
if imgt build "$tree/blob" -o "$out/x.img"; then fail "a file as tree accepted"; fi
expect_error "file as tree" "blob is not a directory"
SOURCE_DATE_EPOCH=yesterday imgt build "$tree" -o "$out/x.img" && fail "bad SOURCE_DATE_EPOCH accepted"
expect_error "bad SOURCE_DATE_EPOCH" "SOURCE_DATE_EPOCH='yesterday'"

# Too big for --size: the error says how much is needed, and that works.
if imgt build "$tree" -o "$out/x.img" --size 16M; then fail "a 20 MiB tree fit in 16 MiB"; fi
expect_error "tree too big" "does not fit"
need=$(sed -n 's/.*give --size \([0-9]*M\) or more.*/\1/p' "$TESTDIR/last.err")
[ -n "$need" ] || fail "the error does not say which --size would do"
if imgt build "$tree" --store "$TESTDIR/store" --name os --size 16M; then fail "too big into the store"; fi
expect_error "tree too big (store)" "does not fit"
if imgt build "$tree" --store "$TESTDIR/new-store" --name os --size 16M; then fail "too big into a new store"; fi
[ ! -e "$TESTDIR/new-store" ] || fail "a failed first build left $(ls -A "$TESTDIR/new-store")"
imgt build "$tree" -o "$out/need.img" --size "$need" >/dev/null || fail "--size $need (the size the error asked for)"
rm -f "$out/need.img"

# Unreadable file and directory: root reads everything, so drop the
# capabilities that let it.
noread() { setpriv --bounding-set=-dac_override,-dac_read_search -- "$@"; }
ntree=$TESTDIR/ntree
mkdir -p "$ntree/etc"
echo secret >"$ntree/etc/shadow"
chmod 000 "$ntree/etc/shadow"
noread cat "$ntree/etc/shadow" >/dev/null 2>&1 && skip "cannot make a file unreadable for root here"
imgt_noread() {
  local rc=0
  noread "$IMGTOOL" "$@" 2>"$TESTDIR/last.err" || rc=$?
  cat "$TESTDIR/last.err" >>"$TESTDIR/imgtool.log"
  return $rc
}
if imgt_noread build "$ntree" -o "$out/x.img"; then fail "unreadable file accepted"; fi
expect_error "unreadable file" "etc/shadow: Permission denied"
if imgt_noread build "$ntree" --store "$TESTDIR/new-store" --name os; then fail "unreadable file (store)"; fi
expect_error "unreadable file (store)" "etc/shadow: Permission denied"
[ ! -e "$TESTDIR/new-store" ] || fail "a failed first build left the store $(ls -A "$TESTDIR/new-store")"
chmod 644 "$ntree/etc/shadow"
chmod 000 "$ntree/etc"
if imgt_noread build "$ntree" --store "$TESTDIR/store" --name os; then fail "unreadable directory accepted"; fi
expect_error "unreadable directory" "cannot read directory .*ntree/etc: Permission denied"
chmod 755 "$ntree/etc"

# An existing output is never replaced without --force.
echo precious >"$out/x.img"
if imgt build "$tree" -o "$out/x.img"; then fail "existing output overwritten"; fi
expect_error "existing output" "x.img already exists"
[ "$(cat "$out/x.img")" = precious ] || fail "existing output modified"
imgt build "$tree" -o "$out/x.img" --force >/dev/null || fail "--force"
e2fsck -fn "$out/x.img" >/dev/null 2>&1 || fail "--force did not write an image"
rm -f "$out/x.img"

[ -z "$(ls -A "$out")" ] || fail "failed builds left files: $(ls -A "$out")"
[ "$(listing "$TESTDIR/store")" = "$before_store" ] || fail "failed builds changed the store: $(listing "$TESTDIR/store")"

# Signals in the middle of a build of a large tree (on tmpfs: fast to make).
big=$TESTDIR/big
mkdir "$big"
mount -t tmpfs -o size=1G tmpfs "$big"
on_exit "umount $big 2>/dev/null"
/usr/bin/python3 -c '
import sys
with open(sys.argv[1], "wb") as f:
    for i in range(768):
        f.write(bytes([1 + i % 255]) * (1 << 20))' "$big/data"
# interrupt SIGNAL DIR ARGS...: starts a build, waits until its output
# file in DIR is open, sends SIGNAL; the build must die of it.
interrupt() {
  local sig=$1 dir=$2 pid i=0 rc=0
  shift 2
  "$IMGTOOL" build "$big" "$@" >/dev/null 2>>"$TESTDIR/imgtool.log" &
  pid=$!
  until ls -l "/proc/$pid/fd" 2>/dev/null | grep -q " -> $dir/"; do
    kill -0 $pid 2>/dev/null || fail "build ended before SIG$sig"
    i=$((i + 1)); [ $i -lt 2000 ] || fail "build did not start in 20 s"
    sleep 0.01
  done
  sleep 0.1
  kill -"$sig" $pid
  { wait $pid; } 2>/dev/null || rc=$?
  [ $rc -gt 128 ] || fail "build was not stopped by SIG$sig (exit $rc): it ended first"
}
interrupt TERM "$out" -o "$out/sig.img"
[ -z "$(ls -A "$out")" ] || fail "SIGTERM left files: $(ls -A "$out")"
interrupt KILL "$out" -o "$out/sig.img"
[ -z "$(ls -A "$out")" ] || fail "SIGKILL left files: $(ls -A "$out")"
interrupt TERM "$TESTDIR/store/os" --store "$TESTDIR/store" --name os
[ "$(listing "$TESTDIR/store")" = "$before_store" ] || fail "SIGTERM changed the store: $(listing "$TESTDIR/store")"
interrupt KILL "$TESTDIR/store/os" --store "$TESTDIR/store" --name os
[ "$(listing "$TESTDIR/store")" = "$before_store" ] || fail "SIGKILL changed the store: $(listing "$TESTDIR/store")"
interrupt TERM "$TESTDIR/sig-store/os" --store "$TESTDIR/sig-store" --name os
[ ! -e "$TESTDIR/sig-store" ] || fail "SIGTERM left a new store behind: $(listing "$TESTDIR/sig-store")"
"$IMGTOOL" verify --store "$TESTDIR/store" >/dev/null || fail "the store does not verify after the signals"
exit 0
