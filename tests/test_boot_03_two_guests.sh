#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# Two guests at once with different MACs, one export: each gets its own
# overlay (the agent sends root@MAC) and sees only its own writes, in the
# same boot and in the next one.  Their root= names the filesystem type
# and mount flags (root=nbd:SERVER:PORT/EXPORT:FSTYPE:FLAGS).
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/boot-functions.sh"

cat >"$TESTDIR/init" <<'INIT'
#!/bin/sh
exec >/dev/console 2>&1
mount -o remount,rw /
me=$(tr -d : </sys/class/net/eth0/address)
echo "GUEST-INIT-STARTED $me"
echo "ROOTOPTS $(awk '$2 == "/" && $1 != "rootfs" {print $1, $3, $4}' /proc/mounts)"
echo "SEES $(ls /data | tr '\n' ' ')"
if [ ! -f /data/$me ]; then
  i=0
  while [ $i -lt 20 ]; do
    echo "$me $i" >>/data/$me
    dd if=/dev/urandom of=/data/$me.bin bs=4k count=16 2>/dev/null
    sync
    i=$((i + 1))
  done
  echo "WROTE $me"
fi
poweroff -f
INIT
make_rootfs "$TESTDIR/tree" "$TESTDIR/init"
make_root_image "$TESTDIR/tree" "$TESTDIR/root.img"
make_initrd "$TESTDIR/initrd.gz"
start_root_server "$TESTDIR/root.img" persistent

A=52:54:00:00:00:0a
B=52:54:00:00:00:0b
args="ip=dhcp root=nbd:$GUEST_SERVER:$PORT/root:ext4:noatime rw nbdroot.rescue=poweroff nbdroot.retries=3"
for round in 1 2; do
  run_guest a$round "$args" $A
  run_guest b$round "$args" $B
  wait_guest a$round
  wait_guest b$round
done

expect_console a1 "export 'root@52-54-00-00-00-0a,boot="
expect_console b1 "export 'root@52-54-00-00-00-0b,boot="
for g in a1 b1; do
  expect_console $g "SEES *$"
  expect_console $g "^ROOTOPTS /dev/nbd0 ext4 rw,noatime"
done
expect_console a1 "WROTE 52540000000a"
expect_console b1 "WROTE 52540000000b"
expect_console a2 "SEES 52540000000a 52540000000a\.bin *$"
expect_console b2 "SEES 52540000000b 52540000000b\.bin *$"
