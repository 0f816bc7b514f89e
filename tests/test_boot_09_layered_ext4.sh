#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# Layered root (nbdroot.state=): an ext4 base from an image store, served
# as a shared-readonly export, is the lower layer of an overlayfs root
# whose upper layer lives on the client's state disk (a persistent export
# over "imgtool state-template").  A client writes a file in /home, edits
# and removes files in /etc, removes /srv/data and makes it again (opaque
# in the upper layer); a reboot finds all that.  A new base version adds
# a file and changes others: the next boot sees the new files and keeps
# the client's own edits.  With nbdroot.keep=, a new base leaves only the
# listed paths of the client's changes; /srv/data, opaque above the listed
# /srv/data/keep, shows the new base's files again and keeps the listed
# path.  A second MAC sees none of the first's changes.
# Failures print one line and stop: no state export, a state disk that is
# not ext4, a kernel without overlayfs.
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/boot-functions.sh"

[ -x "$IMGTOOL" ] || fail "imgtool $IMGTOOL not built"

cat >"$TESTDIR/init" <<'INIT'
#!/bin/sh
exec >/dev/console 2>&1
echo "GUEST-INIT-STARTED"
echo "ROOT-IS $(awk '$2 == "/" {print $3}' /proc/mounts | tail -n 1)"
echo "MOUNTS $(awk '$2 ~ /^\/run\/nbdroot\// {split($4, o, ","); printf "%s %s %s; ", $2, $3, o[1]}' /proc/mounts)"
echo "CONF $(grep -E '^(ROOT_MODE|NBD_DEVICE|NBD_STATE_DEVICE)=' /run/nbdroot.conf | tr '\n' ' ')"
echo "BASE-RO $(cat /sys/block/nbd0/ro)"
for f in /home/user/note /etc/changed /etc/base-file /etc/gone /etc/ssh/key /new-in-v2 \
  /srv/data/base-file /srv/data/keep/mine; do
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
  "$IMGTOOL" build "$t" --store "$TESTDIR/store" --name base \
    >>"$TESTDIR/imgtool-build.log" 2>&1 ||
    { cat "$TESTDIR/imgtool-build.log" >&2; fail "imgtool build $v failed"; }
}
make_base v1
make_initrd "$TESTDIR/initrd.gz"
gzip -dc "$TESTDIR/initrd.gz" | cpio -it --quiet | grep -q '/overlay\.ko$' ||
  fail "imgtool initrd did not pack overlay.ko"

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

A=52:54:00:00:00:0a
B=52:54:00:00:00:0b
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
boot_guest a1 "$(layered t.write)" "$A"
expect_console a1 "nbdroot: /dev/nbd0: .*export 'base@52-54-00-00-00-0a,boot=[0-9a-f]+'.*attached read-only"
expect_console a1 "nbdroot: /dev/nbd1: .*export 'state@52-54-00-00-00-0a,boot=[0-9a-f]+'"
expect_console a1 "nbdroot: layered root: first boot of this state disk"
expect_console a1 "nbdroot: switching root to overlayfs \(base /dev/nbd0, state /dev/nbd1\)"
expect_console a1 "^ROOT-IS overlay$"
expect_console a1 "^MOUNTS /run/nbdroot/base ext4 ro; /run/nbdroot/state ext4 rw; $"
expect_console a1 "^CONF ROOT_MODE='layered' NBD_DEVICE='/dev/nbd0' NBD_STATE_DEVICE='/dev/nbd1' $"
expect_console a1 "^BASE-RO 1$"
expect_files a1 "NO /home/user/note" "HAS /etc/changed changed-v1" \
  "HAS /etc/gone gone-v1" "NO /new-in-v2" "HAS /srv/data/base-file srv-v1"
expect_console a1 "GUEST-WROTE"

# Reboot on the same base: everything the client did is there.
boot_guest a2 "$(layered)" "$A"
expect_files a2 "HAS /home/user/note mine" "HAS /etc/changed edited" \
  "NO /etc/gone" "HAS /etc/ssh/key ssh-mine" "HAS /etc/base-file base-v1" \
  "NO /srv/data/base-file" "HAS /srv/data/keep/mine mine"
console_has a2 "base changed" && fail "a2: the base did not change"

# A new base version: new and changed base files show, the client's own
# edits win, nothing of its state is lost (no keep-list).
make_base v2
boot_guest a3 "$(layered)" "$A"
expect_console a3 "nbdroot: layered root: the base changed since the last boot \(.* -> .*\); keeping all of the client's files \(no nbdroot.keep=\)"
expect_files a3 "HAS /new-in-v2 new-v2" "HAS /etc/base-file base-v2" \
  "HAS /home/user/note mine" "HAS /etc/changed edited" "NO /etc/gone" \
  "HAS /etc/ssh/key ssh-mine" "NO /srv/data/base-file"

# A second client sees the base alone.
boot_guest b1 "$(layered)" "$B"
expect_console b1 "first boot of this state disk"
expect_files b1 "NO /home/user/note" "HAS /etc/changed changed-v2" \
  "HAS /etc/gone gone-v2" "HAS /etc/ssh/key ssh-base" "HAS /new-in-v2 new-v2"

# A new version with a keep-list: /home, /etc/ssh and /srv/data/keep
# survive, the rest of the client's changes (its edit of /etc/changed, its
# removal of /etc/gone) give way to the new base; /srv/data, opaque above
# a kept path, loses its opaque marker: the new base's file in it shows.
make_base v3
keep=nbdroot.keep=/home,/etc/ssh,/srv/data/keep
boot_guest a4 "$(layered $keep)" "$A"
expect_console a4 "nbdroot: layered root: the base changed since the last boot \(.*\); removed [1-9][0-9]* entries outside $keep, kept 3 of its paths"
expect_files a4 "HAS /home/user/note mine" "HAS /etc/ssh/key ssh-mine" \
  "HAS /etc/changed changed-v3" "HAS /etc/gone gone-v3" \
  "HAS /etc/base-file base-v3" "HAS /srv/data/base-file srv-v3" \
  "HAS /srv/data/keep/mine mine"
# and the same base again prunes nothing
boot_guest a5 "$(layered $keep)" "$A"
console_has a5 "base changed" && fail "a5: pruned again on the same base"
expect_files a5 "HAS /home/user/note mine" "HAS /etc/gone gone-v3"

# Failures: one line, then the rescue (power off, as asked).
STATE=nostate
boot_guest nostate "$(layered)" "$A"
expect_console nostate "nbdroot: NBD server 10\.0\.2\.2:$PORT has no export 'nostate@52-54-00-00-00-0a,boot=[0-9a-f]+' .*check the export name in nbdroot\.state="
expect_console nostate "nbdroot: RESCUE: boot stopped: .*powering off"
STATE=zeros
boot_guest notext4 "$(layered)" "$A"
expect_console notext4 "nbdroot: the state disk /dev/nbd1 \(export 'zeros'\) is not ext4 \(no ext2/3/4 superblock magic\); make the state export from a blank ext4 image \(imgtool state-template\)$"
expect_console notext4 "nbdroot: RESCUE: boot stopped: cannot assemble the layered root"

STATE=state
"$IMGTOOL" initrd -o "$TESTDIR/initrd.gz" --kernel-version "$KVER" \
  --agent "$AGENT" --modules "nbd,ext4,virtio_pci,virtio_net" \
  >"$TESTDIR/imgtool-initrd.log" 2>&1 ||
  { cat "$TESTDIR/imgtool-initrd.log" >&2; fail "imgtool initrd failed"; }
boot_guest nooverlay "$(layered)" "$A"
expect_console nooverlay "nbdroot: layered root \(nbdroot.state=\) needs overlayfs, and this kernel has none"
expect_console nooverlay "nbdroot: RESCUE: boot stopped: no overlayfs"

for g in nostate notext4 nooverlay; do
  console_has $g "GUEST-INIT-STARTED" && fail "guest $g booted anyway"
  console_has $g "Kernel panic" && fail "guest $g panicked"
done
stop_nbdsrv
true
