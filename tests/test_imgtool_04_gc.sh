#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# test_imgtool_04_gc: imgtool gc keeps what is referenced.  nbdsrv serves a
# store while versions are published; clients x and y get overlays pinned
# to versions 1 and 3.  gc must remove exactly the versions that are
# neither current nor pinned (2 and 4) and the leftovers of interrupted
# runs, say what it removed, and leave both clients' disks as they were,
# before and after a server restart.  --dry-run removes nothing; gc
# without the overlay directory, or with an overlay it cannot read,
# refuses and removes nothing.  --keep N keeps the N newest versions
# besides current and the pinned ones.  An overlay directory that holds
# no overlays (a wrong path) is refused, even for a dry run, unless
# --force.
. "$(dirname "$0")/functions.sh"

listing() { (cd "$1" && find . -printf '%p %s %y\n' | sort); }

export SOURCE_DATE_EPOCH=1700000000
store=$TESTDIR/store
os=$store/os
ov=$TESTDIR/ov
for i in 1 2 3 4 5; do
  mkdir -p "$TESTDIR/t$i/etc"
  echo "version $i" >"$TESTDIR/t$i/etc/version"
done
publish() { imgt build "$TESTDIR/t$1" --store "$store" --name os >/dev/null || fail "build $1"; }

# client NAME OFFSET BYTE: writes 4 KiB of BYTE at OFFSET through nbdsrv.
client_write() {
  /usr/bin/python3 - "$PORT" "$1" "$2" "$3" <<'PY'
import nbd, sys
h = nbd.NBD()
h.set_export_name("os@" + sys.argv[2])
h.connect_tcp("127.0.0.1", sys.argv[1])
h.pwrite(bytes([int(sys.argv[4])]) * 4096, int(sys.argv[3]))
h.flush()
h.shutdown()
PY
}
# client_check NAME VERSION OFFSET BYTE: the client sees VERSION's bytes
# with its own 4 KiB block of BYTE at OFFSET.
client_check() {
  /usr/bin/python3 - "$PORT" "$1" "$os/$2.img" "$3" "$4" <<'PY'
import nbd, sys
h = nbd.NBD()
h.set_export_name("os@" + sys.argv[2])
h.connect_tcp("127.0.0.1", sys.argv[1])
want = bytearray(open(sys.argv[3], "rb").read())
off = int(sys.argv[4])
want[off:off + 4096] = bytes([int(sys.argv[5])]) * 4096
got = h.pread(len(want), 0)
assert got == bytes(want), "client %s does not see its disk" % sys.argv[2]
h.shutdown()
PY
}

publish 1
start_nbdsrv -e os="$os" -o "$ov"
client_write x 65536 120 || fail "client x"
publish 2
publish 3
client_write y 131072 121 || fail "client y"
publish 4
publish 5
# Leftovers of interrupted runs: a version without metadata, a temporary,
# a half-made link.
touch "$os/0006.img" "$os/.build.img.Ab12Cd"
ln -s 0005.img "$os/current.tmp"
[ "$(readlink "$os/current")" = 0005.img ] || fail "current is not version 5"
sums=$(cd "$os" && sha256sum 000[135].img 000[135].meta)
ovsums=$(cd "$ov" && find . -type f -exec sha256sum {} + | sort)
before=$(listing "$store")

# Refusals first: nothing may go.
if imgt gc --store "$store"; then fail "gc without --overlays"; fi
grep -q "^imgtool: error: gc needs --overlays" "$TESTDIR/last.err" || fail "gc without --overlays: $(cat "$TESTDIR/last.err")"
head -c 1024 /dev/urandom >"$ov/os/broken.map"
if imgt gc --store "$store" --overlays "$ov"; then fail "gc with an unreadable overlay"; fi
grep -q "^imgtool: error: cannot read overlay $ov/os/broken.map: .*refusing" "$TESTDIR/last.err" ||
  fail "gc with a broken overlay: $(cat "$TESTDIR/last.err")"
rm "$ov/os/broken.map"
[ "$(listing "$store")" = "$before" ] || fail "a refused gc removed something"

imgt gc --store "$store" --overlays "$ov" --dry-run >"$TESTDIR/dry" || fail "gc --dry-run"
[ "$(listing "$store")" = "$before" ] || fail "gc --dry-run removed something"
expected=$(printf 'removed %s\n' "$os/.build.img.Ab12Cd" "$os/0002.img" "$os/0002.meta" \
  "$os/0004.img" "$os/0004.meta" "$os/0006.img" "$os/current.tmp")
[ "$(sed 's/^would remove/removed/' "$TESTDIR/dry")" = "$expected" ] ||
  fail "gc --dry-run would remove: $(cat "$TESTDIR/dry")"

imgt gc --store "$store" --overlays "$ov" >"$TESTDIR/gc" || fail "gc"
[ "$(cat "$TESTDIR/gc")" = "$expected" ] || fail "gc removed: $(cat "$TESTDIR/gc")"
grep -q "removed 7 file(s); 2 overlay(s) pin 2 version(s)" "$TESTDIR/last.err" ||
  fail "gc summary: $(cat "$TESTDIR/last.err")"
[ "$(cd "$os" && ls)" = "$(printf '%s\n' 0001.img 0001.meta 0003.img 0003.meta 0005.img 0005.meta current)" ] ||
  fail "after gc the store holds: $(cd "$os" && ls)"
[ "$(cd "$os" && sha256sum 000[135].img 000[135].meta)" = "$sums" ] || fail "gc changed a kept version"
[ "$(cd "$ov" && find . -type f -exec sha256sum {} + | sort)" = "$ovsums" ] || fail "gc changed an overlay"
imgt verify --store "$store" >/dev/null || fail "verify after gc"
imgt info --store "$store" >"$TESTDIR/info" || fail "info after gc"
[ "$(cut -d' ' -f2 "$TESTDIR/info" | tr '\n' ' ')" = "id=0001 id=0003 id=0005 " ] || fail "info after gc: $(cat "$TESTDIR/info")"

# A second gc finds nothing more to do.
imgt gc --store "$store" --overlays "$ov" >"$TESTDIR/gc2" || fail "second gc"
[ ! -s "$TESTDIR/gc2" ] || fail "second gc removed: $(cat "$TESTDIR/gc2")"

# The clients still see their disks, now and after a restart.
client_check x 0001 65536 120 || fail "client x after gc"
client_check y 0003 131072 121 || fail "client y after gc"
stop_nbdsrv || fail "nbdsrv exited with $? on SIGTERM"
start_nbdsrv -e os="$os" -o "$ov"
client_check x 0001 65536 120 || fail "client x after gc and a restart"
client_check y 0003 131072 121 || fail "client y after gc and a restart"
stop_nbdsrv || fail "nbdsrv exited with $? on SIGTERM"

# Once x's overlay is gone, version 1 is garbage too; y still pins 3.
rm "$ov/os/x.map" "$ov/os/x.data"
imgt gc --store "$store" --name os --overlays "$ov" >"$TESTDIR/gc3" || fail "gc after x left"
[ "$(cat "$TESTDIR/gc3")" = "$(printf 'removed %s\n' "$os/0001.img" "$os/0001.meta")" ] ||
  fail "gc after x left: $(cat "$TESTDIR/gc3")"

# --keep N keeps the N newest versions besides current and the pinned
# ones: with versions 3 (pinned by y), 5, 6 (current after a rollback), 7
# and 8, --keep 1 keeps 8 and removes 5 and 7.
for i in 6 7 8; do
  mkdir -p "$TESTDIR/t$i/etc"
  echo "version $i" >"$TESTDIR/t$i/etc/version"
  publish $i
done
imgt rollback --store "$store" os 6 >/dev/null || fail "rollback to 6"
imgt gc --store "$store" --overlays "$ov" --keep 1 >"$TESTDIR/gc4" || fail "gc --keep 1"
[ "$(cat "$TESTDIR/gc4")" = "$(printf 'removed %s\n' "$os/0005.img" "$os/0005.meta" "$os/0007.img" "$os/0007.meta")" ] ||
  fail "gc --keep 1 removed: $(cat "$TESTDIR/gc4")"
[ "$(cd "$os" && ls)" = "$(printf '%s\n' 0003.img 0003.meta 0006.img 0006.meta 0008.img 0008.meta current)" ] ||
  fail "after gc --keep 1 the store holds: $(cd "$os" && ls)"
for bad in -1 x 1.5 ''; do
  rc=0
  imgt gc --store "$store" --overlays "$ov" --keep "$bad" || rc=$?
  [ $rc = 2 ] || fail "gc --keep '$bad': exit $rc, want 2"
  grep -q "^imgtool: error: --keep '$bad': give how many" "$TESTDIR/last.err" || fail "gc --keep '$bad': $(cat "$TESTDIR/last.err")"
done

# An overlay directory without overlays is most likely a wrong path: gc
# refuses to plan with it (even a dry run), unless --force.
mkdir "$TESTDIR/empty-ov"
before=$(listing "$store")
for dry in "" --dry-run; do
  rc=0
  imgt gc --store "$store" --overlays "$TESTDIR/empty-ov" $dry >"$TESTDIR/gc5" || rc=$?
  [ $rc = 1 ] || fail "gc $dry with an empty overlay directory: exit $rc, want 1"
  [ ! -s "$TESTDIR/gc5" ] || fail "gc $dry with an empty overlay directory planned: $(cat "$TESTDIR/gc5")"
  [ "$(cat "$TESTDIR/last.err")" = "imgtool: error: overlay directory $TESTDIR/empty-ov holds no overlays (no *.map files): give nbdsrv's -o directory, or pass --force if no client has an overlay yet" ] ||
    fail "gc $dry with an empty overlay directory: $(cat "$TESTDIR/last.err")"
done
# One right directory does not make a wrong one right.
if imgt gc --store "$store" --overlays "$ov" --overlays "$TESTDIR/empty-ov"; then fail "gc with one empty overlay directory of two"; fi
grep -q "holds no overlays" "$TESTDIR/last.err" || fail "gc with one empty directory of two: $(cat "$TESTDIR/last.err")"
if imgt gc --store "$store" --overlays "$TESTDIR/no-such-dir"; then fail "gc with a missing overlay directory"; fi
grep -q "^imgtool: error: cannot read overlay directory $TESTDIR/no-such-dir" "$TESTDIR/last.err" || fail "gc with a missing directory: $(cat "$TESTDIR/last.err")"
[ "$(listing "$store")" = "$before" ] || fail "a refused gc removed something"
# --force: no client has an overlay, only current stays.
imgt gc --store "$store" --overlays "$TESTDIR/empty-ov" --force >"$TESTDIR/gc6" || fail "gc --force with an empty overlay directory"
[ "$(cat "$TESTDIR/gc6")" = "$(printf 'removed %s\n' "$os/0003.img" "$os/0003.meta" "$os/0008.img" "$os/0008.meta")" ] ||
  fail "gc --force with an empty overlay directory removed: $(cat "$TESTDIR/gc6")"
grep -q "removed 4 file(s); 0 overlay(s) pin 0 version(s)" "$TESTDIR/last.err" || fail "gc --force summary: $(cat "$TESTDIR/last.err")"
exit 0
