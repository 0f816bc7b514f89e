# SPDX-License-Identifier: GPL-2.0-or-later
# The kill -9 scenario of a layered root (nbdroot.state=), sourced by the
# test_boot_*_layered_kill9_FORMAT tests with LAYERED_FORMAT set to the
# base's format, ext4 or squashfs.
#
# The base ("imgtool build --format FORMAT") is a shared-readonly export,
# the state disk a persistent export over "imgtool state-template".  The
# client writes and syncs numbered files (in the upper layer, on its
# state disk) in a loop and reads the base from disk after each sync, so
# both devices are busy, while nbdsrv is killed with -9 and started again:
# the supervisor reattaches both, base and state, the loop goes on, and
# after a clean reboot every file the client reported as synced is there
# with the right content.
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/boot-functions.sh"

[ -x "$IMGTOOL" ] || fail "imgtool $IMGTOOL not built"
FMT=${LAYERED_FORMAT:?}

sync_loop_init "$TESTDIR/init" 40 \
  'echo 3 >/proc/sys/vm/drop_caches; cat /etc/base-file /bin/busybox >/dev/null || echo "BASE-UNREADABLE $i"' <<'TAIL'
echo "ROOT-IS $(awk '$2 == "/" {print $3}' /proc/mounts | tail -n 1)"
echo "BASE $(awk '$2 == "/run/nbdroot/base" {split($4, o, ","); print $3, o[1]}' /proc/mounts)"
TAIL
make_rootfs "$TESTDIR/tree" "$TESTDIR/init"
echo "layered-base" >"$TESTDIR/tree/etc/base-file"
"$IMGTOOL" build "$TESTDIR/tree" --format "$FMT" -o "$TESTDIR/base.img" \
  >"$TESTDIR/imgtool-build.log" 2>&1 ||
  { cat "$TESTDIR/imgtool-build.log" >&2; fail "imgtool build --format $FMT failed"; }
make_initrd "$TESTDIR/initrd.gz"
"$IMGTOOL" state-template -o "$TESTDIR/state.img" --size 64M \
  >"$TESTDIR/imgtool-template.log" 2>&1 ||
  { cat "$TESTDIR/imgtool-template.log" >&2; fail "imgtool state-template failed"; }
cat >"$TESTDIR/nbdsrv.conf" <<EOF
[base]
image = $TESTDIR/base.img
policy = shared-readonly

[state]
image = $TESTDIR/state.img
policy = persistent
EOF
mkdir -p "$TESTDIR/overlays"
start_nbdsrv -c "$TESTDIR/nbdsrv.conf" -o "$TESTDIR/overlays"

args="ip=dhcp root=nbd:$GUEST_SERVER:$PORT/base rw nbdroot.state=state nbdroot.rescue=poweroff nbdroot.retries=2 nbdroot.timeout=10 nbdroot.dead_timeout=120"
run_guest w "$args"
kill9_restart w start_nbdsrv -c "$TESTDIR/nbdsrv.conf" -o "$TESTDIR/overlays"
wait_guest w
expect_console w "nbdroot: switching root to overlayfs \(base /dev/nbd0, state /dev/nbd1\)"
expect_console w "^ROOT-IS overlay$"
expect_console w "^BASE $FMT ro$"
for d in 0 1; do
  expect_console w "supervisor: /dev/nbd$d lost its connection"
  expect_console w "supervisor: /dev/nbd$d reconnected to 10\.0\.2\.2:$PORT"
done
console_has w "BASE-UNREADABLE" && fail "the guest could not read the base"

# A clean reboot: every synced file is on the state disk, intact.
boot_guest v "$args verify"
console_has v "first boot of this state disk" && fail "the reboot found a blank state disk"
expect_synced_intact w v
stop_nbdsrv
