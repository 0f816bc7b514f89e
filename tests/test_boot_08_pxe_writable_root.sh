#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# A PXE-booted client gets a writable root from "imgtool pxe" alone.  The
# root's /etc/fstab is debootstrap's placeholder, so nothing in the booted
# system remounts / read-write: only the command line the configurations
# carry can.  The configurations are generated with no options beyond the
# required ones (no --append rw, no --console), the client boots through
# them, writes a file to /, syncs and reboots; the second boot, through
# the same configurations, reads the file back from its overlay.  With a
# read-only root the write fails and the second boot finds nothing.
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/boot-functions.sh"

[ -x "$IMGTOOL" ] || fail "imgtool $IMGTOOL not built"
find_ipxe_rom

# Without console= the kernel's console is not the serial port, so the
# root's init writes its lines to ttyS0 itself.
cat >"$TESTDIR/init" <<'INIT'
#!/bin/sh
exec >/dev/ttyS0 2>&1
echo "GUEST-INIT-STARTED"
echo "ROOT-IS $(awk '$2 == "/" && $1 != "rootfs" {split($4, o, ","); print $1, o[1]}' /proc/mounts)"
boot=$(cat /proc/sys/kernel/random/boot_id)
if [ -f /pxe-note ]; then
  echo "FOUND $(cat /pxe-note) (now boot $boot)"
  poweroff -f
fi
if echo "written by boot $boot" >/pxe-note && sync; then
  echo "WROTE $(cat /pxe-note)"
else
  echo "WRITE-FAILED"
fi
reboot -f
INIT
make_rootfs "$TESTDIR/tree" "$TESTDIR/init"
printf '# UNCONFIGURED FSTAB FOR BASE SYSTEM\n' >"$TESTDIR/tree/etc/fstab"
make_root_image "$TESTDIR/tree" "$TESTDIR/root.img"
make_initrd "$TESTDIR/initrd.gz"
start_root_server "$TESTDIR/root.img" persistent

tftp=$TESTDIR/tftp
"$IMGTOOL" pxe --server "$GUEST_SERVER" --port "$PORT" --export root \
  --kernel "$BOOT_KERNEL" --initrd "$TESTDIR/initrd.gz" -o "$tftp" \
  >"$TESTDIR/imgtool-pxe.log" 2>&1 ||
  { cat "$TESTDIR/imgtool-pxe.log" >&2; fail "imgtool pxe failed"; }

nic="virtio-net-pci,netdev=n0,mac=52:54:00:12:34:56,romfile=$ROM,disable-legacy=on"
# First boot: iPXE runs nbdroot.ipxe; the root must be writable.
pxe_boot first "$tftp" nbdroot.ipxe -device "$nic"
expect_console first "tftp://10\.0\.2\.2/nbdroot\.ipxe\.\.\. ok"
expect_console first "GUEST-INIT-STARTED"
expect_console first "^ROOT-IS /dev/nbd0 rw$"
console_has first "WRITE-FAILED" && fail "the root was not writable: $(grep ROOT-IS "$TESTDIR/first.console")"
expect_console first "^WROTE written by boot [0-9a-f-]{36}$"
wrote=$(tr -d '\r' <"$TESTDIR/first.console" | sed -n 's/^WROTE //p')

# Second boot through the same files: PXELINUX when installed (the other
# loader's configuration says rw too), else iPXE again.
bootfile=nbdroot.ipxe
if [ -r /usr/lib/PXELINUX/pxelinux.0 ] &&
   [ -r /usr/lib/syslinux/modules/bios/ldlinux.c32 ]; then
  cp /usr/lib/PXELINUX/pxelinux.0 /usr/lib/syslinux/modules/bios/ldlinux.c32 "$tftp/"
  bootfile=pxelinux.0
fi
pxe_boot second "$tftp" "$bootfile" -device "$nic"
expect_console second "GUEST-INIT-STARTED"
expect_console second "^ROOT-IS /dev/nbd0 rw$"
expect_console second "^FOUND $wrote \(now boot [0-9a-f-]{36}\)$"
console_has second "FOUND $wrote \(now boot ${wrote##* }\)" &&
  fail "the second boot has the first boot's id: not a new boot"
n=$(grep -c "export root, overlay 52-54-00-12-34-56" "$TESTDIR/nbdsrv.log" || true)
[ "$n" -ge 2 ] || { cat "$TESTDIR/nbdsrv.log" >&2; fail "nbdsrv did not serve both boots from the client's overlay"; }
stop_nbdsrv

echo "PXE boot with imgtool pxe's defaults: root rw, a file written in the first boot read back in the second (via $bootfile)"
