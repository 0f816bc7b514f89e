#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# The booted system flushes the address of the interface its root depends
# on (as a careless DHCP client or "ifdown" would) while it writes and
# syncs.  The connection dies (request timeout), the supervisor finds the
# address gone, restores it with the default route, reconnects, and the
# writes complete; nothing in the guest sees an I/O error.
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/boot-functions.sh"

cat >"$TESTDIR/init" <<'INIT'
#!/bin/sh
exec >/dev/console 2>&1
mount -o remount,rw /
echo "LOOP-START"
i=1
while [ $i -le 8 ]; do
  echo "data $i" >/data/f$i
  sync
  echo "SYNCED $i"
  if [ $i = 3 ]; then
    ip addr flush dev eth0
    echo "FLUSHED [$(ip -4 addr show eth0 | grep -o 'inet [0-9./]*')]"
  fi
  i=$((i + 1))
done
echo "ADDR-AFTER $(ip -4 addr show eth0 | grep -o 'inet [0-9./]*')"
echo "ROUTE-AFTER $(ip route | grep '^default')"
echo "LOOP-DONE"
poweroff -f
INIT
make_rootfs "$TESTDIR/tree" "$TESTDIR/init"
make_root_image "$TESTDIR/tree" "$TESTDIR/root.img"
make_initrd "$TESTDIR/initrd.gz"
start_root_server "$TESTDIR/root.img" persistent

boot_guest g "ip=dhcp root=nbd:$GUEST_SERVER:$PORT/root rw nbdroot.rescue=poweroff nbdroot.timeout=5 nbdroot.dead_timeout=120"

expect_console g "^FLUSHED \[\]$"
expect_console g "supervisor: eth0 lost its address 10\.0\.2\.15, but the root needs it: restoring it"
expect_console g "supervisor: /dev/nbd0 reconnected to 10\.0\.2\.2:$PORT"
expect_console g "^SYNCED 8$"
expect_console g "^ADDR-AFTER inet 10\.0\.2\.15/24$"
expect_console g "^ROUTE-AFTER default via 10\.0\.2\.2 dev eth0"
expect_console g "LOOP-DONE"
console_has g "I/O error|Buffer I/O|EXT4-fs error" &&
  fail "the guest saw I/O errors"
true
