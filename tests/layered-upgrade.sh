# SPDX-License-Identifier: GPL-2.0-or-later
# The upgrade scenario of a layered root (nbdroot.state=), sourced by the
# test_boot_*_layered_upgrade_FORMAT tests with LAYERED_FORMAT set to the
# base's format, ext4 or squashfs.
#
# The base comes from an image store ("imgtool build --format FORMAT
# --store"), served as a shared-readonly export: the lower layer of an
# overlayfs root (a squashfs base without device readahead) whose upper
# layer lives on the client's state disk (a
# persistent export over "imgtool state-template").  Client A writes a
# file in /home, edits and removes files in /etc, removes /srv/data and
# makes it again (opaque in the upper layer); client B (another MAC) only
# writes a file of its own; a reboot finds all that.  "imgtool
# commit --layered" of the state disk the agent wrote makes a version
# that holds A's changes.  A new base version adds a file and changes
# others: "imgtool upgrade-report" on those state disks names the files
# of A that hide a change, none of B's; the next boot sees the new files
# and keeps the client's own edits, and B sees the new version and none
# of A's changes.  With nbdroot.keep=, a new base leaves only the listed
# paths of the client's changes; /srv/data, opaque above the listed
# /srv/data/keep, shows the new base's files again and keeps the listed
# path.  Failures print one line and stop: no state export, a state disk
# that is not ext4, a kernel without overlayfs.
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/boot-functions.sh"

[ -x "$IMGTOOL" ] || fail "imgtool $IMGTOOL not built"
FMT=${LAYERED_FORMAT:?}
[ "$FMT" = squashfs ] && requires_cmd unsquashfs

cat >"$TESTDIR/init" <<'INIT'
#!/bin/sh
exec >/dev/console 2>&1
echo "GUEST-INIT-STARTED"
echo "ROOT-IS $(awk '$2 == "/" {print $3}' /proc/mounts | tail -n 1)"
echo "MOUNTS $(awk '$2 ~ /^\/run\/nbdroot\// {split($4, o, ","); printf "%s %s %s; ", $2, $3, o[1]}' /proc/mounts)"
echo "CONF $(grep -E '^(ROOT_MODE|NBD_DEVICE|NBD_STATE_DEVICE)=' /run/nbdroot.conf | tr '\n' ' ')"
echo "BASE-RO $(cat /sys/block/nbd0/ro)"
echo "BASE-RA $(cat /sys/block/nbd0/queue/read_ahead_kb)"
for f in /home/user/note /home/b-note /etc/changed /etc/base-file /etc/gone /etc/ssh/key \
  /new-in-v2 /srv/data/base-file /srv/data/keep/mine; do
  if [ -f $f ]; then echo "HAS $f $(cat $f)"; else echo "NO $f"; fi
done
if grep -q 't.write' /proc/cmdline; then
  mkdir -p /home/user
  echo mine >/home/user/note
  echo edited >/etc/changed
  echo ssh-mine >/etc/ssh/key
  rm /etc/gone
  # /srv/data removed and made again: opaque in the upper layer
  rm -rf /srv/data
  mkdir -p /srv/data/keep
  echo mine >/srv/data/keep/mine
  sync
  echo "GUEST-WROTE"
fi
if grep -q 't.other' /proc/cmdline; then
  echo theirs >/home/b-note
  sync
  echo "GUEST-WROTE"
fi
poweroff -f
INIT

# make_base VERSION: the base tree of VERSION, published into the store.
make_base() {
  local v=$1 t=$TESTDIR/tree-$1
  make_rootfs "$t" "$TESTDIR/init"
  mkdir -p "$t/etc/ssh" "$t/home" "$t/srv/data"
  echo "srv-$v" >"$t/srv/data/base-file"
  echo "base-$v" >"$t/etc/base-file"
  echo "changed-$v" >"$t/etc/changed"
  echo "gone-$v" >"$t/etc/gone"
  echo "ssh-base" >"$t/etc/ssh/key"
  [ "$v" = v1 ] || echo "new-$v" >"$t/new-in-v2"
  "$IMGTOOL" build "$t" --format "$FMT" --store "$TESTDIR/store" --name base \
    >>"$TESTDIR/imgtool-build.log" 2>&1 ||
    { cat "$TESTDIR/imgtool-build.log" >&2; fail "imgtool build $v failed"; }
}
make_base v1
[ "$FMT" != squashfs ] || [ "$(head -c 4 "$TESTDIR/store/base/0001.img")" = hsqs ] ||
  fail "the base is not squashfs"
make_initrd "$TESTDIR/initrd.gz"
gzip -dc "$TESTDIR/initrd.gz" | cpio -it --quiet | grep -q '/overlay\.ko$' ||
  fail "imgtool initrd did not pack overlay.ko"
gzip -dc "$TESTDIR/initrd.gz" | cpio -it --quiet | grep -q '/squashfs\.ko$' ||
  fail "imgtool initrd did not pack squashfs.ko"

# The state template: a blank, sparse ext4.  A file of zeros as a state
# disk that is not ext4.
"$IMGTOOL" state-template -o "$TESTDIR/state.img" --size 64M \
  >"$TESTDIR/imgtool-template.log" 2>&1 ||
  { cat "$TESTDIR/imgtool-template.log" >&2; fail "imgtool state-template failed"; }
truncate -s 16M "$TESTDIR/zeros.img"

cat >"$TESTDIR/nbdsrv.conf" <<EOF
[base]
image = $TESTDIR/store/base
policy = shared-readonly

[state]
image = $TESTDIR/state.img
policy = persistent

[zeros]
image = $TESTDIR/zeros.img
policy = ephemeral
EOF
mkdir -p "$TESTDIR/overlays"
start_nbdsrv -c "$TESTDIR/nbdsrv.conf" -o "$TESTDIR/overlays"

A=52-54-00-00-00-0a
B=52-54-00-00-00-0b
knobs="nbdroot.rescue=poweroff nbdroot.retries=2"
# layered [PARAMS...]: the command line of a layered root on $STATE.
STATE=state
layered() { echo "ip=dhcp root=nbd:$GUEST_SERVER:$PORT/base rw nbdroot.state=$STATE $knobs $*"; }

# expect_files NAME LINE...: the guest saw exactly these files.
expect_files() {
  local g=$1 l
  shift
  for l in "$@"; do expect_console "$g" "^$l\$"; done
}

# First boot: the base v1, an empty upper layer; the client writes.
boot_guest a1 "$(layered t.write)" "${A//-/:}"
expect_console a1 "nbdroot: /dev/nbd0: .*export 'base@$A,boot=[0-9a-f]+'.*attached read-only"
expect_console a1 "nbdroot: /dev/nbd1: .*export 'state@$A,boot=[0-9a-f]+'"
expect_console a1 "nbdroot: layered root: first boot of this state disk"
expect_console a1 "nbdroot: switching root to overlayfs \(base /dev/nbd0, state /dev/nbd1\)"
expect_console a1 "^ROOT-IS overlay$"
expect_console a1 "^MOUNTS /run/nbdroot/base $FMT ro; /run/nbdroot/state ext4 rw; $"
expect_console a1 "^CONF ROOT_MODE='layered' NBD_DEVICE='/dev/nbd0' NBD_STATE_DEVICE='/dev/nbd1' $"
expect_console a1 "^BASE-RO 1$"
# squashfs reads whole blocks: no device readahead under it
[ "$FMT" != squashfs ] || expect_console a1 "^BASE-RA 0$"
expect_files a1 "NO /home/user/note" "HAS /etc/changed changed-v1" \
  "HAS /etc/gone gone-v1" "NO /new-in-v2" "HAS /srv/data/base-file srv-v1"
expect_console a1 "GUEST-WROTE"

# The second client on the same base sees none of that; it writes a file
# of its own.
boot_guest b1 "$(layered t.other)" "${B//-/:}"
expect_console b1 "first boot of this state disk"
expect_files b1 "NO /home/user/note" "HAS /etc/changed changed-v1" \
  "HAS /etc/gone gone-v1" "HAS /etc/ssh/key ssh-base" "HAS /srv/data/base-file srv-v1"
expect_console b1 "GUEST-WROTE"

# Reboot on the same base: everything the client did is there.
boot_guest a2 "$(layered)" "${A//-/:}"
expect_files a2 "HAS /home/user/note mine" "HAS /etc/changed edited" \
  "NO /etc/gone" "HAS /etc/ssh/key ssh-mine" "HAS /etc/base-file base-v1" \
  "NO /srv/data/base-file" "HAS /srv/data/keep/mine mine" "NO /home/b-note"
console_has a2 "base changed" && fail "a2: the base did not change"

# image_files IMAGE PATH...: "HAS PATH CONTENT" or "NO PATH" for each
# PATH of an image of the store, as the guest prints them.
image_files() {
  local img=$1 x=$TESTDIR/unpacked p
  shift
  rm -rf "$x"
  if [ "$FMT" = squashfs ]; then
    unsquashfs -q -n -d "$x" "$img" >/dev/null 2>&1 || fail "unsquashfs $img"
  else
    mkdir -p "$x"
    debugfs -R "rdump / $x" "$img" >/dev/null 2>&1 || fail "debugfs rdump $img"
  fi
  for p in "$@"; do
    if [ -f "$x$p" ]; then echo "HAS $p $(cat "$x$p")"; else echo "NO $p"; fi
  done
}

# commit --layered of the state disk A's agent wrote (in a copy of the
# store: the scenario goes on with the store as it was): the new version
# is v1 with A's changes.  The agent never unmounts the state disk (it
# is under the root), so its journal is not clean: --force.
cp -a "$TESTDIR/store" "$TESTDIR/store-commit"
imgt commit --layered --force --store "$TESTDIR/store-commit" --name base \
  --overlays "$TESTDIR/overlays" --state-export state --client "$A" >/dev/null ||
  fail "commit --layered of the state disk of $A"
grep -q "^imgtool: commit: 0002 = 0001 + the upper layer of $A$" "$TESTDIR/last.err" ||
  fail "commit --layered: $(cat "$TESTDIR/last.err")"
got=$(image_files "$TESTDIR/store-commit/base/0002.img" /home/user/note /etc/changed \
  /etc/gone /etc/ssh/key /etc/base-file /srv/data/base-file /srv/data/keep/mine /home/b-note)
want="HAS /home/user/note mine
HAS /etc/changed edited
NO /etc/gone
HAS /etc/ssh/key ssh-mine
HAS /etc/base-file base-v1
NO /srv/data/base-file
HAS /srv/data/keep/mine mine
NO /home/b-note"
[ "$got" = "$want" ] || fail "the committed version holds:
$got
want:
$want"
rm -rf "$TESTDIR/store-commit" "$TESTDIR/unpacked"

# A new base version.  Before anyone reboots into it, the upgrade report
# on the state disks the agents wrote names A's files over changed ones
# (its edit of /etc/changed, its removal of /etc/gone, its opaque
# /srv/data), not A's own new files nor its unchanged /etc/ssh/key, and
# nothing of B's.
make_base v2
rc=0
imgt upgrade-report --store "$TESTDIR/store" --name base --overlays "$TESTDIR/overlays" \
  --state-export state >"$TESTDIR/report" || rc=$?
want="$A 0001 0002 changed file /etc/changed
$A 0001 0002 changed whiteout /etc/gone
$A 0001 0002 changed opaque-dir /srv/data"
[ "$(cat "$TESTDIR/report")" = "$want" ] || fail "upgrade-report:
$(cat "$TESTDIR/report")
want:
$want"
[ $rc = 3 ] || fail "upgrade-report: exit status $rc, want 3 (something hides a change)"
grep -qx "imgtool: upgrade-report: 2 clients, 0 on current 0002, 3 files hiding changes of the base" \
  "$TESTDIR/last.err" || fail "upgrade-report summary: $(cat "$TESTDIR/last.err")"
imgt upgrade-report --store "$TESTDIR/store" --name base --overlays "$TESTDIR/overlays" \
  --state-export state --client "$B" >"$TESTDIR/report" || fail "upgrade-report of $B: exit $?"
[ ! -s "$TESTDIR/report" ] || fail "upgrade-report of $B: $(cat "$TESTDIR/report")"

# The next boot: new and changed base files show, the client's own edits
# win, nothing of its state is lost (no keep-list).
boot_guest a3 "$(layered)" "${A//-/:}"
expect_console a3 "nbdroot: layered root: the base changed since the last boot \(.* -> .*\); keeping all of the client's files \(no nbdroot.keep=\)"
expect_files a3 "HAS /new-in-v2 new-v2" "HAS /etc/base-file base-v2" \
  "HAS /home/user/note mine" "HAS /etc/changed edited" "NO /etc/gone" \
  "HAS /etc/ssh/key ssh-mine" "NO /srv/data/base-file"

# The second client sees the new version and none of A's changes.
boot_guest b2 "$(layered)" "${B//-/:}"
expect_files b2 "NO /home/user/note" "HAS /etc/changed changed-v2" \
  "HAS /etc/gone gone-v2" "HAS /etc/ssh/key ssh-base" "HAS /new-in-v2 new-v2" \
  "HAS /srv/data/base-file srv-v2" "NO /srv/data/keep/mine" "HAS /home/b-note theirs"

# A new version with a keep-list: /home, /etc/ssh and /srv/data/keep
# survive, the rest of the client's changes (its edit of /etc/changed, its
# removal of /etc/gone) give way to the new base; /srv/data, opaque above
# a kept path, loses its opaque marker: the new base's file in it shows.
make_base v3
keep=nbdroot.keep=/home,/etc/ssh,/srv/data/keep
boot_guest a4 "$(layered $keep)" "${A//-/:}"
expect_console a4 "nbdroot: layered root: the base changed since the last boot \(.*\); removed [1-9][0-9]* entries outside $keep, kept 3 of its paths"
expect_files a4 "HAS /home/user/note mine" "HAS /etc/ssh/key ssh-mine" \
  "HAS /etc/changed changed-v3" "HAS /etc/gone gone-v3" \
  "HAS /etc/base-file base-v3" "HAS /srv/data/base-file srv-v3" \
  "HAS /srv/data/keep/mine mine"
# and the same base again prunes nothing
boot_guest a5 "$(layered $keep)" "${A//-/:}"
console_has a5 "base changed" && fail "a5: pruned again on the same base"
expect_files a5 "HAS /home/user/note mine" "HAS /etc/gone gone-v3"

# Failures: one line, then the rescue (power off, as asked).
STATE=nostate
boot_guest nostate "$(layered)" "${A//-/:}"
expect_console nostate "nbdroot: NBD server 10\.0\.2\.2:$PORT has no export 'nostate@$A,boot=[0-9a-f]+' .*check the export name in nbdroot\.state="
expect_console nostate "nbdroot: RESCUE: boot stopped: .*powering off"
STATE=zeros
boot_guest notext4 "$(layered)" "${A//-/:}"
expect_console notext4 "nbdroot: the state disk /dev/nbd1 \(export 'zeros'\) is not ext4 \(no ext2/3/4 superblock magic\); make the state export from a blank ext4 image \(imgtool state-template\)$"
expect_console notext4 "nbdroot: RESCUE: boot stopped: cannot assemble the layered root"

STATE=state
"$IMGTOOL" initrd -o "$TESTDIR/initrd.gz" --kernel-version "$KVER" \
  --agent "$AGENT" --modules "nbd,ext4,squashfs,virtio_pci,virtio_net" \
  >"$TESTDIR/imgtool-initrd.log" 2>&1 ||
  { cat "$TESTDIR/imgtool-initrd.log" >&2; fail "imgtool initrd failed"; }
boot_guest nooverlay "$(layered)" "${A//-/:}"
expect_console nooverlay "nbdroot: layered root \(nbdroot.state=\) needs overlayfs, and this kernel has none"
expect_console nooverlay "nbdroot: RESCUE: boot stopped: no overlayfs"

expect_stopped nostate notext4 nooverlay
stop_nbdsrv
true
