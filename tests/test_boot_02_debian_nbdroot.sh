#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# Debian's nbdroot=SERVER:PORT,EXPORT with root=/dev/nbd0 (DHCP), then the
# same root with a static ip=CLIENT::GW:NETMASK::eth0:off and the device
# named in nbdroot=; the second boot sees the first one's file.  Then a
# guest with two NICs where BOOTIF= names the second one.  The address
# the agent configured is still there for the booted system, and
# /run/net-IFACE.conf says what it was.  /sbin/init is an absolute
# symbolic link, as on Debian.
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/boot-functions.sh"

cat >"$TESTDIR/init" <<'INIT'
#!/bin/sh
exec >/dev/console 2>&1
echo "GUEST-INIT-STARTED"
mount -o remount,rw /
echo "ROOT-IS $(awk '$2 == "/" && $1 != "rootfs" {print $1, $3}' /proc/mounts)"
ifc=$(sed -n "s/^INTERFACE='\(.*\)'$/\1/p" /run/nbdroot.conf)
echo "NETCONF $(grep -E '^(PROTO|IPV4ADDR|IPV4GATEWAY)=' /run/net-$ifc.conf | tr '\n' ' ')"
echo "ADDR $(cat /sys/class/net/$ifc/address) $(ip -4 addr show $ifc | grep -o 'inet [0-9./]*')"
if [ -f /data/file ]; then echo "FILE-SEEN $(cat /data/file)"; else echo "FILE-ABSENT"; fi
echo "from-$1$(cat /proc/cmdline | grep -o 'ip=[^ ]*')" >/data/file
sync
echo "GUEST-WROTE"
poweroff -f
INIT
make_rootfs "$TESTDIR/tree" "$TESTDIR/init"
# As on Debian, /sbin/init is an absolute link (there: to
# /lib/systemd/systemd): the agent must resolve it inside the new root.
mkdir -p "$TESTDIR/tree/lib"
mv "$TESTDIR/tree/sbin/init" "$TESTDIR/tree/lib/real-init"
ln -s /lib/real-init "$TESTDIR/tree/sbin/init"
make_root_image "$TESTDIR/tree" "$TESTDIR/root.img"
make_initrd "$TESTDIR/initrd.gz"
start_root_server "$TESTDIR/root.img" persistent

boot_guest dhcp "ip=dhcp nbdroot=$GUEST_SERVER:$PORT,root root=/dev/nbd0 rw nbdroot.rescue=poweroff nbdroot.retries=3"
expect_console dhcp "nbdroot: DHCP: eth0 got 10\.0\.2\.15"
expect_console dhcp "ROOT-IS /dev/nbd0 ext4"
expect_console dhcp "NETCONF PROTO='dhcp' IPV4ADDR='10.0.2.15' IPV4GATEWAY='10.0.2.2'"
expect_console dhcp "ADDR 52:54:00:12:34:56 inet 10\.0\.2\.15/24"
expect_console dhcp "FILE-ABSENT"
expect_console dhcp "GUEST-WROTE"

boot_guest static "ip=10.0.2.15::10.0.2.2:255.255.255.0::eth0:off nbdroot=$GUEST_SERVER:$PORT,root,nbd0 root=/dev/nbd0 rootfstype=ext4 rw nbdroot.rescue=poweroff nbdroot.retries=3"
console_has static "nbdroot: DHCP" && fail "static ip= still ran DHCP"
expect_console static "nbdroot: eth0: address 10\.0\.2\.15 netmask 255\.255\.255\.0 gateway 10\.0\.2\.2"
expect_console static "ROOT-IS /dev/nbd0 ext4"
expect_console static "NETCONF PROTO='none' IPV4ADDR='10.0.2.15' IPV4GATEWAY='10.0.2.2'"
expect_console static "FILE-SEEN from-ip=dhcp"
expect_console static "GUEST-WROTE"

# BOOTIF= picks the NIC: the second of two, each on its own user network
boot_guest bootif "BOOTIF=01-52-54-00-00-00-02 ip=dhcp nbdroot=$GUEST_SERVER:$PORT,root root=/dev/nbd0 rw nbdroot.rescue=poweroff nbdroot.retries=3" \
  52:54:00:00:00:01 -netdev user,id=n1 \
  -device virtio-net-pci,netdev=n1,mac=52:54:00:00:00:02
expect_console bootif "nbdroot: using interface eth[0-9] \(52:54:00:00:00:02\)"
expect_console bootif "export 'root@52-54-00-00-00-02,boot="
expect_console bootif "NETCONF PROTO='dhcp' IPV4ADDR='10.0.2.15' IPV4GATEWAY='10.0.2.2'"
expect_console bootif "ADDR 52:54:00:00:00:02 inet 10\.0\.2\.15/24"
expect_console bootif "FILE-ABSENT"
expect_console bootif "GUEST-WROTE"
