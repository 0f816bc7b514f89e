#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# Real PXE boots: no -kernel, no -initrd.  "imgtool pxe" writes its
# configurations into a TFTP directory that QEMU's user network serves
# (tftp=DIR, bootfile=FILE); the firmware gets the boot file by DHCP and
# TFTP, the boot loader fetches kernel and initrd by TFTP and boots them
# with the agent's command line, and the agent mounts the root from
# nbdsrv.  Each boot checks: the root's /sbin/init ran from /dev/nbd0, with
# the BOOTIF= the loader filled in; nbdsrv served the client (its MAC is
# the overlay's identity); the console shows the loader at work.
#   ipxe      BIOS, the NIC's iPXE ROM runs nbdroot.ipxe (always)
#   pxelinux  BIOS, iPXE's PXE stack runs pxelinux.0 with
#             pxelinux.cfg/default (when PXELINUX is installed)
#   grub      UEFI (OVMF's own PXE), GRUB's network image with
#             grub/grub.cfg (when OVMF and grub-efi-amd64-signed are)
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/boot-functions.sh"

[ -x "$IMGTOOL" ] || fail "imgtool $IMGTOOL not built"

find_ipxe_rom

cat >"$TESTDIR/init" <<'INIT'
#!/bin/sh
exec >/dev/console 2>&1
echo "GUEST-INIT-STARTED"
echo "ROOT-IS $(awk '$2 == "/" && $1 != "rootfs" {print $1, $3}' /proc/mounts)"
echo "CMDLINE-BOOTIF $(tr ' ' '\n' </proc/cmdline | grep '^BOOTIF=')"
echo "STATE $(grep -E '^(NBD_SERVER|NBD_PORT|NBD_EXPORT)=' /run/nbdroot.conf | tr '\n' ' ')"
poweroff -f
INIT
make_rootfs "$TESTDIR/tree" "$TESTDIR/init"
make_root_image "$TESTDIR/tree" "$TESTDIR/root.img"
make_initrd "$TESTDIR/initrd.gz"
start_root_server "$TESTDIR/root.img" reset-on-boot

tftp=$TESTDIR/tftp
"$IMGTOOL" pxe --server "$GUEST_SERVER" --port "$PORT" --export root \
  --kernel "$BOOT_KERNEL" --initrd "$TESTDIR/initrd.gz" -o "$tftp" \
  --console ttyS0 --append "panic=-1 nbdroot.rescue=poweroff nbdroot.retries=3" \
  >"$TESTDIR/imgtool-pxe.log" 2>&1 ||
  { cat "$TESTDIR/imgtool-pxe.log" >&2; fail "imgtool pxe failed"; }
[ -f "$tftp/nbdroot.ipxe" ] || fail "imgtool pxe wrote no nbdroot.ipxe"

mac=52:54:00:12:34:56
timings=""
# pxe_boot_timed NAME BOOTFILE QEMU_ARGS...: pxe_boot from $tftp, timed.
pxe_boot_timed() {
  local name=$1 bootfile=$2 start end
  shift 2
  start=$(date +%s.%N)
  pxe_boot "$name" "$tftp" "$bootfile" "$@"
  end=$(date +%s.%N)
  timings="$timings $name $(awk "BEGIN { printf \"%.1f\", $end - $start }") s;"
}

# expect_root NAME BOOTIF: the guest ran the root's init from nbdsrv, with
# the command line the configuration gave and BOOTIF= as its loader does.
expect_root() {
  local name=$1 bootif=$2 n
  expect_console "$name" "GUEST-INIT-STARTED"
  expect_console "$name" "^ROOT-IS /dev/nbd0 ext4$"
  expect_console "$name" "^STATE NBD_SERVER='10\.0\.2\.2' NBD_PORT='$PORT' NBD_EXPORT='root@52-54-00-12-34-56,boot=[0-9a-f]{32}' $"
  expect_console "$name" "^CMDLINE-BOOTIF BOOTIF=$bootif$"
  expect_console "$name" "Command line: .*ip=dhcp root=nbd:10\.0\.2\.2:$PORT/root rw console=ttyS0 panic=-1"
  n=$(grep -c "export root, overlay 52-54-00-12-34-56" "$TESTDIR/nbdsrv.log" || true)
  [ "$n" -gt "${served:-0}" ] ||
    { cat "$TESTDIR/nbdsrv.log" >&2; fail "nbdsrv did not serve the $name client"; }
  served=$n
}

# iPXE: the ROM got the script by DHCP and TFTP, and ran it.
pxe_boot_timed ipxe nbdroot.ipxe \
  -device "virtio-net-pci,netdev=n0,mac=$mac,romfile=$ROM,disable-legacy=on"
expect_root ipxe "01-52-54-00-12-34-56"
expect_console ipxe "iPXE"
expect_console ipxe "tftp://10\.0\.2\.2/nbdroot\.ipxe\.\.\. ok"
expect_console ipxe "nbdroot\.ipxe : [0-9]+ bytes \[script\]"
expect_console ipxe "nbdroot: booting root from 10\.0\.2\.2:$PORT"
# (a progress figure, "95%", may come before "ok")
expect_console ipxe "tftp://10\.0\.2\.2/vmlinuz-[^ ]*\.\.\..* ok"
expect_console ipxe "tftp://10\.0\.2\.2/initrd\.gz\.\.\..* ok"
loaders="ipxe"

# PXELINUX, as a BIOS PXE client runs it (iPXE's PXE stack underneath).
pxl=/usr/lib/PXELINUX/pxelinux.0
ldl=/usr/lib/syslinux/modules/bios/ldlinux.c32
if [ -r "$pxl" ] && [ -r "$ldl" ]; then
  cp "$pxl" "$ldl" "$tftp/"
  pxe_boot_timed pxelinux pxelinux.0 \
    -device "virtio-net-pci,netdev=n0,mac=$mac,romfile=$ROM,disable-legacy=on"
  expect_root pxelinux "01-52-54-00-12-34-56"
  expect_console pxelinux "pxelinux\.0 : [0-9]+ bytes \[PXE-NBP\]"
  expect_console pxelinux "PXELINUX"
  expect_console pxelinux "nbdroot: booting root from 10\.0\.2\.2:$PORT"
  expect_console pxelinux "Command line: BOOT_IMAGE=vmlinuz-"
  loaders="$loaders pxelinux"
else
  echo "note: no PXELINUX ($pxl, $ldl): apt-get install pxelinux syslinux-common"
fi

# GRUB, as a UEFI PXE client runs it: OVMF's own network stack (no ROM).
code= vars=
for c in /usr/share/OVMF/OVMF_CODE_4M.fd /usr/share/OVMF/OVMF_CODE.fd; do
  [ -r "$c" ] && [ -r "${c/CODE/VARS}" ] && { code=$c; vars=${c/CODE/VARS}; break; }
done
grubnet=/usr/lib/grub/x86_64-efi-signed/grubnetx64.efi.signed
if [ -n "$code" ] && [ -r "$grubnet" ]; then
  cp "$grubnet" "$tftp/grubx64.efi"
  cp "$vars" "$TESTDIR/ovmf-vars.fd"
  pxe_boot_timed grub grubx64.efi -machine q35 \
    -drive "if=pflash,format=raw,readonly=on,file=$code" \
    -drive "if=pflash,format=raw,file=$TESTDIR/ovmf-vars.fd" \
    -device "virtio-net-pci,netdev=n0,mac=$mac,romfile="
  expect_root grub "52:54:00:12:34:56"
  expect_console grub "NBP filename is grubx64\.efi"
  expect_console grub "nbdroot: loading /vmlinuz-"
  expect_console grub "nbdroot: loading /initrd\.gz"
  expect_console grub "Command line: BOOT_IMAGE=/vmlinuz-"
  loaders="$loaders grub"
else
  echo "note: no OVMF or GRUB network image: apt-get install ovmf grub-efi-amd64-signed"
fi
stop_nbdsrv

echo "PXE boots ($loaders), firmware to poweroff:$timings" \
  "switch_root at $(switch_root_time ipxe) s after kernel start (iPXE)"
