#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# Layered root on a squashfs base: the agent tells squashfs from ext4 by
# the superblock, mounts it read-only as the lower layer (the base
# device's readahead off), and the client's writes land on its ext4 state
# disk and survive a reboot.  kill -9 of the
# server in the middle of a boot: the supervisor reattaches both devices,
# base and state, and the client goes on reading the base and writing its
# state.  The base comes from "imgtool build --format squashfs" (or
# mksquashfs where imgtool lacks it) and is a shared-readonly export; the
# state disk is a persistent export over "imgtool state-template".
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/boot-functions.sh"

[ -x "$IMGTOOL" ] || fail "imgtool $IMGTOOL not built"

cat >"$TESTDIR/init" <<'INIT'
#!/bin/sh
exec >/dev/console 2>&1
echo "GUEST-INIT-STARTED"
echo "ROOT-IS $(awk '$2 == "/" {print $3}' /proc/mounts | tail -n 1)"
echo "BASE $(awk '$2 == "/run/nbdroot/base" {split($4, o, ","); print $3, o[1]}' /proc/mounts)"
dev=$(awk '$2 == "/run/nbdroot/base" {print $1}' /proc/mounts)
[ -d /sys/block ] || mount -t sysfs sysfs /sys
echo "BASE-RA $(cat /sys/block/${dev##*/}/queue/read_ahead_kb 2>&1)"
if [ -f /home/note ]; then echo "HAS $(cat /home/note)"; else echo "NO-NOTE"; fi
echo "ETC $(cat /etc/base-file)"
if grep -q t.loop /proc/cmdline; then
  # both devices busy: writes to the state, reads of the base from disk
  i=1
  while [ $i -le 40 ]; do
    echo "w$i" >/home/w$i
    sync
    echo 3 >/proc/sys/vm/drop_caches
    cat /etc/base-file /bin/busybox >/dev/null && echo "SYNCED $i"
    i=$((i + 1))
    sleep 0.3
  done
  echo "LOOP-DONE"
  poweroff -f
fi
echo "kept" >/home/note && sync && echo "GUEST-WROTE"
poweroff -f
INIT
make_rootfs "$TESTDIR/tree" "$TESTDIR/init"
mkdir -p "$TESTDIR/tree/home"
echo "squashfs-base" >"$TESTDIR/tree/etc/base-file"
if "$IMGTOOL" build --help 2>&1 | grep -q -- '--format'; then
  "$IMGTOOL" build "$TESTDIR/tree" --format squashfs -o "$TESTDIR/base.img" \
    >"$TESTDIR/imgtool-build.log" 2>&1 ||
    { cat "$TESTDIR/imgtool-build.log" >&2; fail "imgtool build --format squashfs failed"; }
else
  requires_cmd mksquashfs
  mksquashfs "$TESTDIR/tree" "$TESTDIR/base.img" -all-root -noappend -quiet \
    >"$TESTDIR/mksquashfs.log" 2>&1 ||
    { cat "$TESTDIR/mksquashfs.log" >&2; fail "mksquashfs failed"; }
fi
[ "$(head -c 4 "$TESTDIR/base.img")" = hsqs ] || fail "the base is not squashfs"
make_initrd "$TESTDIR/initrd.gz"
gzip -dc "$TESTDIR/initrd.gz" | cpio -it --quiet | grep -q '/squashfs\.ko$' ||
  fail "imgtool initrd did not pack squashfs.ko"

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

append="ip=dhcp root=nbd:$GUEST_SERVER:$PORT/base rw nbdroot.state=state nbdroot.rescue=poweroff nbdroot.retries=2"
boot_guest s1 "$append"
expect_console s1 "^ROOT-IS overlay$"
expect_console s1 "^BASE squashfs ro$"
expect_console s1 "^BASE-RA 0$" # squashfs reads whole blocks: no device readahead
expect_console s1 "^NO-NOTE$"
expect_console s1 "^ETC squashfs-base$"
expect_console s1 "GUEST-WROTE"
boot_guest s2 "$append"
expect_console s2 "^HAS kept$"
expect_console s2 "^ETC squashfs-base$"

# The server dies and comes back: both devices are reattached.
run_guest loop "$append nbdroot.timeout=10 nbdroot.dead_timeout=120 t.loop"
i=0
until console_has loop "SYNCED 5$"; do
  i=$((i + 1))
  [ $i -lt 600 ] || fail "the guest did not reach SYNCED 5 in 120 s"
  kill -0 "$GUEST_PID_loop" 2>/dev/null || { tail -n 30 "$TESTDIR/loop.console"; fail "guest ended early"; }
  sleep 0.2
done
stop_nbdsrv KILL || true
killed_after=$(tr -d '\r' <"$TESTDIR/loop.console" | grep -c '^SYNCED ')
sleep 4
start_nbdsrv -c "$TESTDIR/nbdsrv.conf" -o "$TESTDIR/overlays"
wait_guest loop
expect_console loop "supervisor: /dev/nbd0 reconnected to 10\.0\.2\.2:$PORT"
expect_console loop "supervisor: /dev/nbd1 reconnected to 10\.0\.2\.2:$PORT"
expect_console loop "LOOP-DONE"
synced=$(tr -d '\r' <"$TESTDIR/loop.console" | grep -c '^SYNCED ')
[ "$synced" -gt "$killed_after" ] ||
  fail "nothing completed after the server restart ($synced of 40)"
console_has loop "I/O error|Buffer I/O|EXT4-fs error|SQUASHFS error" &&
  fail "the guest saw I/O errors"
stop_nbdsrv
true
