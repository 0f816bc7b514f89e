#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# test_imgtool_03_store: the image store.  Two builds give two versions with
# their metadata; `current` moves from the first to the second atomically
# (a reader polling it during the second build only ever sees one of the
# two, never nothing); published versions are read-only and never change;
# info and verify report them (info on a file that is not an image says
# so in words); verify catches a modified or writable version and a
# dangling `current`; concurrent builds are serialised; a new client of
# nbdsrv serving the store gets `current`.  rollback moves `current` back
# to an intact version (info shows it, the next new client of nbdsrv gets
# it, an older client keeps its own) and refuses a missing version, name
# or store and a damaged version with one line.
. "$(dirname "$0")/functions.sh"

meta() { sed -n "s/^$2=//p" "$1"; }

export SOURCE_DATE_EPOCH=1700000000
store=$TESTDIR/store
os=$store/os
mkdir -p "$TESTDIR/t1/etc" "$TESTDIR/t2/etc"
echo one >"$TESTDIR/t1/etc/version"
echo two >"$TESTDIR/t2/etc/version"
# The second tree is larger, so its build takes a while to watch.
/usr/bin/python3 -c '
import random, sys
r = random.Random(7)
for i in range(200):
    open("%s/f%03d" % (sys.argv[1], i), "wb").write(r.randbytes(256 << 10))' "$TESTDIR/t2"

t0=$(date +%s)
imgt build "$TESTDIR/t1" --store "$store" --name os >"$TESTDIR/out" || fail "first build"
t1=$(date +%s)
[ "$(cat "$TESTDIR/out")" = "$os/0001.img" ] || fail "build printed '$(cat "$TESTDIR/out")', not the new version"
[ "$(readlink "$os/current")" = 0001.img ] || fail "current after the first build: $(readlink "$os/current")"
m=$os/0001.meta
[ "$(meta "$m" id)" = 0001 ] || fail "meta id"
[ "$(meta "$m" name)" = os ] || fail "meta name"
[ "$(meta "$m" sha256)" = "$(sha256sum <"$os/0001.img" | cut -d' ' -f1)" ] || fail "meta sha256 is not the image's"
[ "$(meta "$m" size)" = "$(stat -c %s "$os/0001.img")" ] || fail "meta size"
[ "$(meta "$m" source)" = "$(cd "$TESTDIR/t1" && pwd -P)" ] || fail "meta source: $(meta "$m" source)"
[ "$(meta "$m" uuid)" = "$(dumpe2fs -h "$os/0001.img" 2>/dev/null | sed -n 's/^Filesystem UUID: *//p')" ] || fail "meta uuid"
c=$(meta "$m" created)
[ "$c" -ge "$t0" ] && [ "$c" -le $((t1 + 1)) ] || fail "meta created=$c, not the time of the build"
sum1=$(sha256sum <"$os/0001.img")

# Second version, with a reader of `current` running all along; then 30
# more publications in another store, to give a non-atomic switch many
# chances to show.
watch_current() {
  rm -f "$TESTDIR/stop"
  /usr/bin/python3 - "$1" "$TESTDIR/stop" >"$TESTDIR/seen" 2>&1 <<'PY' &
import os, sys, time
d, stop = sys.argv[1], sys.argv[2]
seen, n, end = [], 0, time.time() + 60
while not os.path.exists(stop) and time.time() < end:
    try:
        t = os.readlink(d + "/current")
        os.stat(d + "/current")  # resolves to a complete file
    except OSError as e:
        print("ERROR", e)
        sys.exit(1)
    if not seen or seen[-1] != t:
        seen.append(t)
    n += 1
print(n, " ".join(seen))
PY
  watcher=$!
  on_exit "kill $watcher 2>/dev/null"
  sleep 0.2
}
stop_watching() {
  sleep 0.2
  touch "$TESTDIR/stop"
  wait $watcher || fail "a reader of current failed: $(cat "$TESTDIR/seen")"
  read -r polls seen <"$TESTDIR/seen"
  [ "$polls" -gt 10 ] || fail "current was polled only $polls times"
}
watch_current "$os"
imgt build "$TESTDIR/t2" --store "$store" --name os >"$TESTDIR/out" || fail "second build"
stop_watching
[ "$seen" = "0001.img 0002.img" ] || fail "current went through: $seen"
[ "$(cat "$TESTDIR/out")" = "$os/0002.img" ] || fail "second build printed $(cat "$TESTDIR/out")"
[ "$(sha256sum <"$os/0001.img")" = "$sum1" ] || fail "version 1 changed"
for f in 0001.img 0001.meta 0002.img 0002.meta; do
  [ "$(stat -c %a "$os/$f")" = 444 ] || fail "$f is mode $(stat -c %a "$os/$f"), not read-only"
done
imgt build "$TESTDIR/t1" --store "$TESTDIR/flip" --name os >/dev/null || fail "flip store"
watch_current "$TESTDIR/flip/os"
for i in $(seq 2 31); do
  imgt build "$TESTDIR/t1" --store "$TESTDIR/flip" --name os >/dev/null || fail "flip build $i"
done
stop_watching
echo "$seen" | tr ' ' '\n' | sort -c || fail "current went back: $seen"
[ "$(readlink "$TESTDIR/flip/os/current")" = 0031.img ] || fail "flip: current is not the last version"

# info and verify.
imgt info --store "$store" >"$TESTDIR/info" || fail "info"
[ "$(wc -l <"$TESTDIR/info")" = 2 ] || fail "info lists $(wc -l <"$TESTDIR/info") versions"
grep -q "^version=$os/0001.img id=0001 current=no .*sha256=$(meta "$os/0001.meta" sha256) .*parent=none source=" "$TESTDIR/info" || fail "info on version 1: $(cat "$TESTDIR/info")"
grep -q "^version=$os/0002.img id=0002 current=yes .*sha256=$(meta "$os/0002.meta" sha256) " "$TESTDIR/info" || fail "info on version 2: $(cat "$TESTDIR/info")"
imgt info "$os" | cmp -s - "$TESTDIR/info" || fail "info DIR/NAME differs from info --store"
imgt info "$os/0002.img" >"$TESTDIR/info2" || fail "info IMAGE"
grep -qx "uuid=$(meta "$os/0002.meta" uuid)" "$TESTDIR/info2" || fail "info IMAGE: $(cat "$TESTDIR/info2")"
grep -qx "size=$(meta "$os/0002.meta" size)" "$TESTDIR/info2" || fail "info IMAGE size"
# A file that is not an image: said in words, in one line, exit 1.
: >"$TESTDIR/empty"
for f in /etc/passwd "$TESTDIR/empty"; do
  rc=0
  imgt info "$f" >"$TESTDIR/info3" || rc=$?
  [ $rc = 1 ] || fail "info $f: exit $rc, want 1"
  [ ! -s "$TESTDIR/info3" ] || fail "info $f printed: $(cat "$TESTDIR/info3")"
  [ "$(cat "$TESTDIR/last.err")" = "imgtool: error: $f is not an ext4 or squashfs image (no ext2/3/4 or squashfs superblock): give an image file, a store DIR or DIR/NAME" ] ||
    fail "info $f: $(cat "$TESTDIR/last.err")"
done
imgt verify --store "$store" >"$TESTDIR/verify" || fail "verify of a sound store"
[ "$(grep -c '^ok ' "$TESTDIR/verify")" = 2 ] || fail "verify: $(cat "$TESTDIR/verify")"
# The portable SHA-256 and the CPU's agree (nettle's switch).
NETTLE_FAT_OVERRIDE=none imgt verify --store "$store" --name os >/dev/null || fail "verify with the portable SHA-256"

# A modified version, a writable one, a dangling current.
chmod u+w "$os/0001.img"
printf 'X' | dd of="$os/0001.img" bs=1 seek=$((1 << 20)) conv=notrunc status=none
if imgt verify --store "$store" >"$TESTDIR/verify"; then fail "verify missed a modified version"; fi
grep -q "^BAD $os/0001.img: checksum mismatch" "$TESTDIR/verify" || fail "verify: $(cat "$TESTDIR/verify")"
grep -q "^ok $os/0002.img" "$TESTDIR/verify" || fail "verify lost version 2"
printf '\0' | dd of="$os/0001.img" bs=1 seek=$((1 << 20)) conv=notrunc status=none
[ "$(sha256sum <"$os/0001.img")" = "$sum1" ] || fail "could not restore version 1"
if imgt verify --store "$store" >"$TESTDIR/verify"; then fail "verify missed a writable version"; fi
grep -q "^BAD $os/0001.img: writable" "$TESTDIR/verify" || fail "verify: $(cat "$TESTDIR/verify")"
chmod a-w "$os/0001.img"
imgt verify --store "$store" >/dev/null || fail "verify after the repair"
ln -sfn 0009.img "$os/current"
if imgt verify --store "$store" >"$TESTDIR/verify"; then fail "verify missed a dangling current"; fi
grep -q "^BAD $os/current" "$TESTDIR/verify" || fail "verify: $(cat "$TESTDIR/verify")"
ln -sfn 0002.img "$os/current"

# Concurrent builds: serialised by the lock, each gets its own version.
imgt build "$TESTDIR/t1" --store "$store" --name os >"$TESTDIR/out3" &
b1=$!
imgt build "$TESTDIR/t2" --store "$store" --name os >"$TESTDIR/out4" &
b2=$!
wait $b1 || fail "concurrent build 1"
wait $b2 || fail "concurrent build 2"
[ "$(sort "$TESTDIR/out3" "$TESTDIR/out4")" = "$(printf '%s\n' "$os/0003.img" "$os/0004.img")" ] ||
  fail "concurrent builds made $(cat "$TESTDIR/out3" "$TESTDIR/out4")"
cur=$(readlink "$os/current")
[ "$cur" = "$(basename "$(cat "$TESTDIR/out4")")" ] || [ "$cur" = "$(basename "$(cat "$TESTDIR/out3")")" ] || fail "current: $cur"
imgt verify --store "$store" >/dev/null || fail "verify after concurrent builds"
[ -z "$(find "$os" -name '.*' ! -name .lock)" ] || fail "temporaries left: $(find "$os" -name '.*')"

# new_client ID IMAGE: a new client ID of nbdsrv reads exactly IMAGE.
new_client() {
  /usr/bin/python3 - "$PORT" "$1" "$2" <<'PY'
import nbd, sys
h = nbd.NBD()
h.set_export_name("os@" + sys.argv[2])
h.connect_tcp("127.0.0.1", sys.argv[1])
want = open(sys.argv[3], "rb").read()
assert h.get_size() == len(want), (h.get_size(), len(want))
for off in range(0, len(want), 4 << 20):
    n = min(4 << 20, len(want) - off)
    assert h.pread(n, off) == want[off:off + n], off
h.shutdown()
PY
}

# nbdsrv serving the store: a new client gets current.
start_nbdsrv -e os="$os" -o "$TESTDIR/ov"
new_client new "$os/$cur" || fail "a new client did not get current"

# rollback: current goes back to version 1 (atomically, as publishing
# moves it), info says so and the next new client gets version 1.
imgt rollback --store "$store" os 1 >"$TESTDIR/out" || fail "rollback to 1"
[ "$(cat "$TESTDIR/out")" = "$os/0001.img" ] || fail "rollback printed $(cat "$TESTDIR/out")"
grep -qx "imgtool: rollback: current of $os is now 0001 (was ${cur%.img})" "$TESTDIR/last.err" ||
  fail "rollback message: $(cat "$TESTDIR/last.err")"
[ "$(readlink "$os/current")" = 0001.img ] || fail "current after rollback: $(readlink "$os/current")"
imgt info --store "$store" --name os >"$TESTDIR/info" || fail "info after rollback"
[ "$(grep -c ' current=yes ' "$TESTDIR/info")" = 1 ] && grep -q "^version=$os/0001.img id=0001 current=yes " "$TESTDIR/info" ||
  fail "info after rollback: $(cat "$TESTDIR/info")"
new_client after-rollback "$os/0001.img" || fail "a new client after the rollback did not get version 1"
new_client new "$os/$cur" || fail "the client made before the rollback lost its version"
imgt verify --store "$store" >/dev/null || fail "verify after rollback"
# Forward again with the other spellings of a version; the same version
# twice is no error.
imgt rollback --store "$store" --name os "$cur" >/dev/null || fail "rollback --name os $cur"
imgt rollback --store "$store" os "${cur%.img}" >/dev/null || fail "rollback to current"
grep -qx "imgtool: rollback: ${cur%.img} is already current in $os" "$TESTDIR/last.err" || fail "rollback to current: $(cat "$TESTDIR/last.err")"
[ "$(readlink "$os/current")" = "$cur" ] || fail "current after rolling forward: $(readlink "$os/current")"
# Refusals: one line each, current untouched.
# rollback_refused STATUS PATTERN ARGS...
rollback_refused() {
  local want=$1 pattern=$2 rc=0
  shift 2
  imgt rollback "$@" >/dev/null || rc=$?
  [ $rc = "$want" ] || fail "rollback $*: exit $rc, want $want"
  [ "$(wc -l <"$TESTDIR/last.err")" = 1 ] && grep -q "^imgtool: error: $pattern" "$TESTDIR/last.err" ||
    fail "rollback $*: $(cat "$TESTDIR/last.err")"
  [ "$(readlink "$os/current")" = "$cur" ] || fail "a refused rollback moved current to $(readlink "$os/current")"
}
rollback_refused 1 "$os has no version 0009 (published: 0001, 0002, 0003, 0004): give one of those" --store "$store" os 9
rollback_refused 1 "no image nosuch in store $store" --store "$store" nosuch 1
rollback_refused 1 "no store $TESTDIR/nostore (No such file or directory)" --store "$TESTDIR/nostore" os 1
rollback_refused 2 "version 'latest': give a version number" --store "$store" os latest
rollback_refused 2 "rollback needs --store DIR" os 1
chmod u+w "$os/0002.img"
rollback_refused 1 "version 0002 of $os fails verification (writable" --store "$store" os 2
chmod a-w "$os/0002.img"
stop_nbdsrv || fail "nbdsrv exited with $? on SIGTERM"
exit 0
