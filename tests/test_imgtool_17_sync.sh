#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# test_imgtool_17_sync: imgtool sync brings a second store to the versions
# of a first: the versions it lacks copied under the same numbers with
# the same .meta, verify passes on the copy, its current moved where the
# source's is (after a rollback there: not the newest); a second run
# copies nothing and changes nothing; --name limits it to one image; a
# version of another content in the target is refused with a message,
# left as it was, and the target's current stays; a source version whose
# bytes no longer match its .meta is not published.  And gc on the copy
# keeps the version an overlay made through the first store was made on,
# found by its content id (its recorded path is the first store's), and
# commit on the copy finds that base by content too.
. "$(dirname "$0")/functions.sh"

export SOURCE_DATE_EPOCH=1700000000
a=$TESTDIR/a
for v in 1 2 3; do
  mkdir -p "$TESTDIR/t$v/etc"
  echo "version $v" >"$TESTDIR/t$v/etc/version"
  imgt build "$TESTDIR/t$v" --store "$a" --name os >/dev/null || fail "build $v"
done
imgt build "$TESTDIR/t1" --store "$a" --name other >/dev/null || fail "build other"
imgt rollback --store "$a" os 2 >/dev/null || fail "rollback"

mkdir -p "$TESTDIR/b"
imgt sync --from "$a" --to "$TESTDIR/b" --name os || fail "sync"
b=$TESTDIR/b/os
for v in 0001 0002 0003; do
  cmp -s "$a/os/$v.img" "$b/$v.img" || fail "$v.img not copied"
  cmp -s "$a/os/$v.meta" "$b/$v.meta" || fail "$v.meta not copied"
  [ "$(stat -c %a "$b/$v.img")" = 444 ] || fail "$v.img is writable"
done
[ "$(readlink "$b/current")" = 0002.img ] || fail "current: $(readlink "$b/current")"
[ ! -e "$TESTDIR/b/other" ] || fail "--name os synced other too"
grep -q "sync: .*/b/os: 3 copied, 0 already there; current 0002" "$TESTDIR/last.err" ||
  fail "summary: $(cat "$TESTDIR/last.err")"
imgt verify --store "$TESTDIR/b" >/dev/null || fail "verify of the copy"

# Again, all names: os has nothing to do, other is new.
before=$(stat -c %i:%Y "$b"/*.img)
imgt sync --from "$a" --to "$TESTDIR/b" || fail "second sync"
grep -q "sync: .*/b/os: 0 copied, 3 already there; current 0002" "$TESTDIR/last.err" ||
  fail "second summary: $(cat "$TESTDIR/last.err")"
[ "$before" = "$(stat -c %i:%Y "$b"/*.img)" ] || fail "the second sync rewrote versions"
cmp -s "$a/other/0001.img" "$TESTDIR/b/other/0001.img" || fail "other not synced"

# C's 0001 is another content: refused, kept, current kept.
c=$TESTDIR/c
mkdir -p "$TESTDIR/t9/etc"; echo nine >"$TESTDIR/t9/etc/version"
imgt build "$TESTDIR/t9" --store "$c" --name os >/dev/null || fail "build c"
sum=$(sha256sum <"$c/os/0001.img")
imgt sync --from "$a" --to "$c" --name os && fail "sync over another content succeeded"
grep -q "sync: .*/c/os/0001 has another content (sha256 [0-9a-f]*) than .*/a/os/0001 (sha256 [0-9a-f]*): not overwritten" \
  "$TESTDIR/last.err" || fail "conflict message: $(cat "$TESTDIR/last.err")"
[ "$sum" = "$(sha256sum <"$c/os/0001.img")" ] || fail "0001 of C overwritten"
[ "$(readlink "$c/os/current")" = 0001.img ] || fail "C's current moved: $(readlink "$c/os/current")"

# gc on B keeps what an overlay made through A uses: the overlay records
# A's path and the version's content id; B holds it at another path.
requires_cmd nbdsh
ov=$TESTDIR/ov
start_nbdsrv -e os="$a/os" -o "$ov"
nbdsh -u "nbd://127.0.0.1:$PORT/os@client1" -c 'h.pwrite(b"x" * 4096, 1 << 20); h.flush()' ||
  fail "client write through A"
stop_nbdsrv || fail "nbdsrv exited with $?"
imgt rollback --store "$TESTDIR/b" os 3 >/dev/null || fail "rollback of B to 3"
imgt gc --store "$TESTDIR/b" --overlays "$ov" --keep 1 >"$TESTDIR/gc" || fail "gc of B"
[ -e "$b/0002.img" ] || fail "gc removed B's 0002, which the overlay uses by content: $(cat "$TESTDIR/gc")"
[ ! -e "$b/0001.img" ] || fail "gc kept B's 0001, which nothing uses"
# And commit on B finds that base by content too, A's store gone.
mv "$a" "$a.away"
imgt commit --store "$TESTDIR/b" --name os --overlays "$ov" --client client1 --force >"$TESTDIR/commit" ||
  fail "commit on B of an overlay made through A"
grep -q "^source=commit of overlay .*/ov/os/client1 on 0002.img$" "$TESTDIR/b/os/$(basename "$(cat "$TESTDIR/commit")" .img).meta" ||
  fail "the commit on B: $(cat "$TESTDIR/last.err")"
mv "$a.away" "$a"

# A damaged source version is not published.
chmod u+w "$a/os/0003.img"
printf 'X' | dd of="$a/os/0003.img" bs=1 seek=5000 conv=notrunc status=none
mkdir -p "$TESTDIR/d"
imgt sync --from "$a" --to "$TESTDIR/d" --name os && fail "sync of a damaged version succeeded"
grep -q "sync: os/0003: the copy has sha256 .*the source is damaged" "$TESTDIR/last.err" ||
  fail "damage message: $(cat "$TESTDIR/last.err")"
[ ! -e "$TESTDIR/d/os/0003.img" ] || fail "the damaged version was published"
[ ! -e "$TESTDIR/d/os/current" ] || fail "current set after a failure"
[ -z "$(ls -A "$TESTDIR/d/os" | grep -v -e '^0001\.' -e '^0002\.' -e '^\.lock$')" ] ||
  fail "leftovers: $(ls -A "$TESTDIR/d/os")"
exit 0
