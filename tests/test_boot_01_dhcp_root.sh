#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# A real kernel boots its root through nbdsrv with ip=dhcp and
# root=nbd:10.0.2.2:PORT/root.  The root's /sbin/init writes a file, syncs
# and powers off.  With --policy persistent a second boot sees the file;
# with reset-on-boot a new boot starts from the clean image again.
# The booted system also reports what the agent left behind: a supervisor
# named '@...', mlocked, oom_score_adj -1000, whose root (the old
# initramfs) was emptied; /run/nbdroot.conf and /run/net-eth0.conf.
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/boot-functions.sh"

cat >"$TESTDIR/init" <<'INIT'
#!/bin/sh
exec >/dev/console 2>&1
echo "GUEST-INIT-STARTED"
sv=$(sed -n "s/^SUPERVISOR_PID='\(.*\)'$/\1/p" /run/nbdroot.conf)
echo "STATE $(grep -E '^(NBD_DEVICE|NBD_EXPORT|INTERFACE)=' /run/nbdroot.conf | tr '\n' ' ')"
echo "NETCONF $(grep -E '^(DEVICE|IPV4ADDR)=' /run/net-eth0.conf | tr '\n' ' ')"
echo "SV-ARGV0 $(tr '\0' ' ' </proc/$sv/cmdline)"
echo "SV-OOM $(cat /proc/$sv/oom_score_adj)"
echo "SV-LOCKED $(grep VmLck /proc/$sv/status | tr -s ' \t' ' ')"
echo "OLDROOT [$(ls -A /proc/$sv/root/ | tr '\n' ' ')]"
mount -o remount,rw /
if [ -f /data/file ]; then echo "FILE-SEEN $(cat /data/file)"; else echo "FILE-ABSENT"; fi
echo "written-by-$(cat /proc/sys/kernel/random/boot_id)" >/data/file
sync
echo "GUEST-WROTE"
poweroff -f
INIT
make_rootfs "$TESTDIR/tree" "$TESTDIR/init"
make_root_image "$TESTDIR/tree" "$TESTDIR/root.img"
make_initrd "$TESTDIR/initrd.gz"
cp "$TESTDIR/root.img" "$TESTDIR/root.pristine"

# No shell and no busybox in the initrd: /init is the static agent.
file -L "$AGENT" | grep -q 'statically linked' || fail "the agent is not static"
gzip -dc "$TESTDIR/initrd.gz" | cpio -it --quiet >"$TESTDIR/initrd.list"
grep -Eqx '(\./)?init' "$TESTDIR/initrd.list" || fail "the initrd has no /init"
grep -E '(^|/)(sh|bash|dash|ash|busybox)$' "$TESTDIR/initrd.list" &&
  fail "the initrd holds a shell"

append() { echo "ip=dhcp root=nbd:$GUEST_SERVER:$PORT/root rw nbdroot.rescue=poweroff nbdroot.retries=3"; }

# persistent: the second boot sees the first boot's file
start_root_server "$TESTDIR/root.img" persistent
boot_guest p1 "$(append)"
expect_console p1 "nbdroot: switching root to /dev/nbd0"
expect_console p1 "FILE-ABSENT"
expect_console p1 "GUEST-WROTE"
expect_console p1 "^STATE NBD_DEVICE='/dev/nbd0' NBD_EXPORT='root@52-54-00-12-34-56,boot=[0-9a-f]{32}' INTERFACE='eth0' $"
expect_console p1 "^NETCONF DEVICE='eth0' IPV4ADDR='10\.0\.2\.15' $"
expect_console p1 "^SV-ARGV0 @init $"
expect_console p1 "^SV-OOM -1000$"
expect_console p1 "^SV-LOCKED VmLck: [1-9][0-9]* kB$"
# only the mount point of the new root is left of the initramfs
expect_console p1 "^OLDROOT \[newroot \]$"
boot_guest p2 "$(append)"
expect_console p2 "FILE-SEEN written-by-"
expect_console p2 "GUEST-WROTE"
stop_nbdsrv

# the base image itself was never written
cmp -s "$TESTDIR/root.img" "$TESTDIR/root.pristine" ||
  fail "the base image changed: writes went to it instead of the overlay"

# reset-on-boot: every new boot starts clean
rm -rf "$TESTDIR/overlays"
start_root_server "$TESTDIR/root.img" reset-on-boot
boot_guest r1 "$(append)"
expect_console r1 "FILE-ABSENT"
expect_console r1 "GUEST-WROTE"
boot_guest r2 "$(append)"
expect_console r2 "FILE-ABSENT"
expect_console r2 "GUEST-WROTE"
stop_nbdsrv

echo "switch_root at $(switch_root_time p1) s after kernel start;" \
  "agent $(stat -c %s "$AGENT") bytes"
