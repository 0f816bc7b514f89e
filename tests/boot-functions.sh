# SPDX-License-Identifier: GPL-2.0-or-later
# nbdroot boot-test helpers, sourced by tests/test_boot_*.sh after
# functions.sh.
#
# A boot test builds a tiny root (busybox-static and an /sbin/init script
# the test writes), an initrd holding the agent and the modules the guest
# kernel needs, starts a server on 127.0.0.1 and boots QEMU/TCG with a user
# network, in which the host's 127.0.0.1 is 10.0.2.2.  The console of each
# guest is captured in $TESTDIR/NAME.console.

requires_cmd qemu-system-x86_64 timeout cpio gzip mke2fs file
[ -x "$AGENT" ] || fail "agent $AGENT not built"

# The guest kernel: the newest Debian kernel on the machine, or $BOOT_KERNEL.
if [ -z "${BOOT_KERNEL:-}" ]; then
  BOOT_KERNEL=$(ls /boot/vmlinuz-* 2>/dev/null | sort -V | tail -n 1)
fi
[ -n "$BOOT_KERNEL" ] && [ -r "$BOOT_KERNEL" ] ||
  skip "no readable kernel in /boot (apt-get install linux-image-amd64)"
KVER=${BOOT_KERNEL##*/vmlinuz-}
[ -d "/lib/modules/$KVER" ] || skip "no /lib/modules/$KVER for $BOOT_KERNEL"

# What the guest needs from the kernel's modules: NIC, nbd, ext4, and
# crc32c, the softdep of ext4/jbd2 (see TESTING.md).
BOOT_MODULES="virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev
  virtio_pci failover net_failover virtio_net nbd crc32c_generic crc16
  mbcache jbd2 ext4"

# Where the server is from inside the guest (QEMU user network).
GUEST_SERVER=10.0.2.2
GUEST_TIMEOUT=${GUEST_TIMEOUT:-180}

# make_rootfs DIR INIT_SCRIPT: a busybox-static tree with INIT_SCRIPT (a
# file) as /sbin/init.
make_rootfs() {
  local dir=$1 init=$2 bb
  bb=$(command -v busybox) || skip "busybox-static is needed"
  file -L "$bb" 2>/dev/null | grep -q 'statically linked' ||
    [ -x /bin/busybox ] || skip "busybox must be static (busybox-static)"
  mkdir -p "$dir"/bin "$dir"/sbin "$dir"/dev "$dir"/proc "$dir"/sys \
    "$dir"/run "$dir"/tmp "$dir"/etc "$dir"/root "$dir"/data
  cp "$bb" "$dir/bin/busybox"
  for a in $("$bb" --list); do
    [ "$a" = busybox ] || ln -sf busybox "$dir/bin/$a"
  done
  cp "$init" "$dir/sbin/init"
  chmod 755 "$dir/sbin/init"
}

# make_image TREE IMAGE: an ext4 image of TREE (imgtool when it has
# landed, else mke2fs -d).
make_root_image() {
  local tree=$1 img=$2
  if [ -x "$IMGTOOL" ] && "$IMGTOOL" build "$tree" -o "$img" \
       >"$TESTDIR/imgtool-build.log" 2>&1; then
    return 0
  fi
  rm -f "$img"
  mke2fs -q -F -t ext4 -d "$tree" "$img" 64M >"$TESTDIR/mke2fs.log" 2>&1 ||
    { cat "$TESTDIR/mke2fs.log" >&2; fail "mke2fs failed"; }
}

# make_initrd OUT.gz: the agent as /init, the modules and their load list
# at /etc/nbdroot/modules.  Uses "imgtool initrd" when it exists.
make_initrd() {
  local out=$1 dir m path list=""
  if [ -x "$IMGTOOL" ] && "$IMGTOOL" initrd -o "$out" --kernel-version "$KVER" \
       --agent "$AGENT" >"$TESTDIR/imgtool-initrd.log" 2>&1; then
    return 0
  fi
  dir=$TESTDIR/initrd-tree
  rm -rf "$dir"
  mkdir -p "$dir/etc/nbdroot" "$dir/dev" "$dir/proc" "$dir/sys" "$dir/run"
  cp "$AGENT" "$dir/init"
  for m in $BOOT_MODULES; do
    path=$(grep -E "(^|/)$m\\.ko(\\.[a-z]+)?:" "/lib/modules/$KVER/modules.dep" |
           head -n 1 | cut -d: -f1)
    [ -n "$path" ] || { [ -n "$(modinfo -k "$KVER" -F filename "$m" 2>/dev/null | grep builtin)" ] && continue; fail "module $m not found for $KVER"; }
    mkdir -p "$dir/lib/modules/$KVER/$(dirname "$path")"
    case $path in
      *.ko) cp "/lib/modules/$KVER/$path" "$dir/lib/modules/$KVER/$path" ;;
      *.ko.xz) xz -dc "/lib/modules/$KVER/$path" >"$dir/lib/modules/$KVER/${path%.xz}"; path=${path%.xz} ;;
      *.ko.zst) zstd -qdc "/lib/modules/$KVER/$path" >"$dir/lib/modules/$KVER/${path%.zst}"; path=${path%.zst} ;;
      *.ko.gz) gzip -dc "/lib/modules/$KVER/$path" >"$dir/lib/modules/$KVER/${path%.gz}"; path=${path%.gz} ;;
    esac
    list="${list}lib/modules/$KVER/$path
"
  done
  printf '%s' "$list" >"$dir/etc/nbdroot/modules"
  (cd "$dir" && find . | LC_ALL=C sort | cpio -o -H newc --quiet) |
    gzip -1 >"$out" || fail "packing the initrd failed"
}

# run_guest NAME APPEND [MAC [QEMU_ARGS...]]: boots the guest in the
# background; sets GUEST_PID_<NAME>; the console goes to
# $TESTDIR/NAME.console.  QEMU_ARGS add devices (e.g. a second NIC).
run_guest() {
  local name=$1 append=$2 mac=${3:-52:54:00:12:34:56}
  shift $(($# < 3 ? $# : 3))
  : >"$TESTDIR/$name.console"
  timeout -k 5 "$GUEST_TIMEOUT" qemu-system-x86_64 -accel tcg -m 512 \
    -nographic -no-reboot -nodefaults -serial stdio \
    -kernel "$BOOT_KERNEL" -initrd "$TESTDIR/initrd.gz" \
    -append "console=ttyS0 panic=-1 $append" \
    -netdev user,id=n0 -device virtio-net-pci,netdev=n0,mac="$mac" "$@" \
    </dev/null >"$TESTDIR/$name.console" 2>&1 &
  eval "GUEST_PID_$name=$!"
  on_exit "kill $! 2>/dev/null"
}

# wait_guest NAME: waits for the guest to end; fails if it timed out.
wait_guest() {
  local name=$1 pid rc=0
  eval "pid=\$GUEST_PID_$name"
  wait "$pid" || rc=$?
  # kept after the test for reading (TESTDIR goes when the test passes)
  mkdir -p "$top_builddir/tests/tmp/consoles"
  tr -d '\r' <"$TESTDIR/$name.console" \
    >"$top_builddir/tests/tmp/consoles/$test_name-$name.console" || true
  if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
    tail -n 40 "$TESTDIR/$name.console" >&2
    fail "guest $name did not finish within $GUEST_TIMEOUT s"
  fi
  return 0
}

# boot_guest NAME APPEND [MAC]: run_guest + wait_guest.
boot_guest() {
  run_guest "$@"
  wait_guest "$1"
}

# console_has NAME PATTERN: grep -E on the console (CRs stripped).
console_has() {
  tr -d '\r' <"$TESTDIR/$1.console" | grep -Eq -- "$2"
}

# expect_console NAME PATTERN: fails, showing the console, unless it has it.
expect_console() {
  if ! console_has "$1" "$2"; then
    tr -d '\r' <"$TESTDIR/$1.console" | tail -n 60 >&2
    fail "guest $1: console lacks /$2/"
  fi
}

# switch_root_time NAME: the agent's timestamp on its switch_root line.
switch_root_time() {
  tr -d '\r' <"$TESTDIR/$1.console" |
    sed -n 's/^\[ *\([0-9.]*\)\] nbdroot: switching root.*/\1/p' | head -n 1
}

# start_root_server IMAGE [POLICY]: nbdsrv serving IMAGE as export "root".
start_root_server() {
  local img=$1 policy=${2:-persistent}
  mkdir -p "$TESTDIR/overlays"
  start_nbdsrv -e "root=$img" -o "$TESTDIR/overlays" --policy "$policy"
}

# find_ipxe_rom: sets ROM to the iPXE ROM for virtio-net that QEMU ships
# (Debian: ipxe-qemu, which qemu-system-x86 depends on), or skips.  Its
# BIOS image is for the modern virtio device, 1af4:1041.  QEMU patches the
# IDs only into the ROM it loads by default, so with an explicit romfile=
# the NIC must be modern-only (disable-legacy=on) or SeaBIOS never runs
# the ROM.
find_ipxe_rom() {
  local r
  ROM=
  for r in /usr/lib/ipxe/qemu/pxe-virtio.rom /usr/share/qemu/pxe-virtio.rom \
           /usr/lib/ipxe/qemu/efi-virtio.rom /usr/share/qemu/efi-virtio.rom; do
    [ -r "$r" ] && { ROM=$r; return 0; }
  done
  skip "no iPXE ROM for virtio-net (apt-get install ipxe-qemu)"
}

# pxe_boot NAME TFTP_DIR BOOTFILE QEMU_ARGS...: boots from the network only
# (-boot order=n) with the user network's DHCP handing out BOOTFILE and
# its TFTP server serving TFTP_DIR; waits (bounded) for the guest to end.
# The console is the serial port, where SeaBIOS also shows the ROM's and
# PXELINUX's output when there is no display (-nodefaults).
pxe_boot() {
  local name=$1 tftp=$2 bootfile=$3
  shift 3
  : >"$TESTDIR/$name.console"
  timeout -k 5 "$GUEST_TIMEOUT" qemu-system-x86_64 -accel tcg -m 512 \
    -nographic -no-reboot -nodefaults -serial stdio -boot order=n \
    -netdev "user,id=n0,tftp=$tftp,bootfile=$bootfile" "$@" \
    </dev/null >"$TESTDIR/$name.console" 2>&1 &
  eval "GUEST_PID_$name=$!"
  on_exit "kill $! 2>/dev/null"
  wait_guest "$name"
}

# sync_loop_init FILE ROUNDS [EACH]: a guest /sbin/init that writes and
# syncs 256 KiB files /data/w1.. in a loop, printing "SYNCED i" after each
# sync (and after EACH, a shell command run in each round when given),
# ROUNDS at most (stopping early when /data/stop appears), then
# "LOOP-DONE"; booted with "verify" on its command line it checks every
# file instead ("INTACT i" or "CORRUPT i" between VERIFY-START and
# VERIFY-DONE) and powers off.  Lines after the loop, before the
# poweroff, come from standard input (none when it is empty).
sync_loop_init() {
  local file=$1 rounds=$2 each=${3:-}
  {
    cat <<'INIT'
#!/bin/sh
exec >/dev/console 2>&1
mount -o remount,rw /
# data for round i: 256 KiB, different for every round
gen() { seq 1 30000 | sed "s/^/round-$1-/" | head -c 262144; }
if grep -q verify /proc/cmdline; then
  echo "VERIFY-START"
  for f in /data/w*; do
    [ -f "$f" ] || continue
    i=${f#/data/w}
    if gen $i | cmp -s - $f; then echo "INTACT $i"; else echo "CORRUPT $i"; fi
  done
  echo "VERIFY-DONE"
  poweroff -f
fi
echo "LOOP-START"
i=1
INIT
    echo "while [ \$i -le $rounds ]; do"
    cat <<'INIT'
  gen $i >/data/w$i
  sync
INIT
    [ -z "$each" ] || echo "  $each"
    cat <<'INIT'
  echo "SYNCED $i"
  i=$((i + 1))
  [ -f /data/stop ] && break
  sleep 0.3
done
echo "LOOP-DONE"
INIT
    cat
    echo "poweroff -f"
  } >"$file"
}

# synced_count NAME: how many "SYNCED i" lines guest NAME printed.
synced_count() {
  tr -d '\r' <"$TESTDIR/$1.console" | grep -c '^SYNCED ' || true
}

# expect_stopped NAME...: each guest stopped in the initramfs, as a
# failed boot must: its init never started and the kernel did not panic.
expect_stopped() {
  local g
  for g in "$@"; do
    console_has "$g" "GUEST-INIT-STARTED" && fail "guest $g booted anyway"
    console_has "$g" "Kernel panic" && fail "guest $g panicked"
  done
  return 0
}

# wait_synced NAME N: waits (bounded: 120 s) until the sync loop of guest
# NAME printed "SYNCED N"; fails if the guest ends first.
wait_synced() {
  local name=$1 n=$2 i=0 pid
  eval "pid=\$GUEST_PID_$name"
  until console_has "$name" "^SYNCED $n$"; do
    i=$((i + 1))
    [ $i -lt 600 ] || fail "guest $name did not reach SYNCED $n in 120 s"
    kill -0 "$pid" 2>/dev/null ||
      { tail -n 30 "$TESTDIR/$name.console"; fail "guest $name ended early"; }
    sleep 0.2
  done
}

# kill9_restart NAME CMD...: waits (bounded) until the sync loop of guest
# NAME is under way (SYNCED 5), kills the server started last with -9,
# sets KILLED_AFTER to the rounds synced by then and runs CMD (which
# starts the server again) 4 s later.
kill9_restart() {
  local name=$1
  shift
  wait_synced "$name" 5
  stop_nbdsrv KILL || true
  KILLED_AFTER=$(synced_count "$name")
  sleep 4
  "$@"
}

# expect_synced_intact WRITER VERIFIER: the sync loop of guest WRITER went
# on after the server came back (more rounds than KILLED_AFTER, no I/O
# error), and the verify boot VERIFIER found every file WRITER reported
# as synced intact.
expect_synced_intact() {
  local w=$1 v=$2 synced n
  expect_console "$w" "LOOP-DONE"
  synced=$(synced_count "$w")
  [ "$synced" -gt "$KILLED_AFTER" ] ||
    fail "no write completed after the server restart ($synced synced)"
  console_has "$w" "I/O error|Buffer I/O|EXT4-fs error|SQUASHFS error" &&
    fail "guest $w saw I/O errors"
  expect_console "$v" "VERIFY-DONE"
  console_has "$v" "CORRUPT" &&
    fail "corrupt files: $(tr -d '\r' <"$TESTDIR/$v.console" | grep CORRUPT | tr '\n' ' ')"
  for n in $(tr -d '\r' <"$TESTDIR/$w.console" | sed -n 's/^SYNCED //p'); do
    console_has "$v" "^INTACT $n$" || fail "synced write $n missing after the restart"
  done
  echo "$synced writes synced, server killed after $KILLED_AFTER, all intact"
}
