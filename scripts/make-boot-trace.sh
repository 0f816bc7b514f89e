#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# Records the block-level request trace of a real Debian boot through
# nbdsrv, for bench/boot-storm.sh to replay (see bench/README.md).
#
#   scripts/make-boot-trace.sh [--first-boot] [--workdir DIR] [--out FILE.gz] [--keep]
#
# 1. debootstraps a minimal Debian bookworm (minbase + systemd-sysv, udev,
#    kmod, iproute2) from the mirror apt uses (the first URIs: line of
#    /etc/apt/sources.list.d/debian.sources), installing debootstrap first
#    if it is missing; the tree is reused when DIR already holds one;
# 2. gives it an /etc/fstab line for /dev/nbd0 and a oneshot unit, ordered
#    after multi-user.target and getty.target, that prints a marker on
#    /dev/console and powers off;
# 3. builds the image with "imgtool build" and an initrd with "imgtool
#    initrd" (the agent as /init, modules of the newest kernel in /boot);
# 4. starts nbdsrv on 127.0.0.1 with --trace, boots QEMU/TCG (user
#    network: the guest reaches the server at 10.0.2.2) with
#    "ip=dhcp root=nbd:10.0.2.2:PORT/root ro init=/lib/systemd/systemd",
#    waits (bounded) for the marker and for the guest to power off, stops
#    nbdsrv.  (init= because the agent checks /sbin/init with access() in
#    the initramfs' view: Debian's /usr/sbin/init -> /lib/systemd/systemd
#    is an absolute link, which then points outside the new root);
# 5. writes the trace, gzip-compressed, with a header of '#' lines (image
#    size, request counts), to FILE.gz (default bench/data/debian-boot.trace.gz).
#
# Trace lines are nbdsrv's: "USEC EXPORT/ID TYPE OFFSET LENGTH" (see
# nbdsrv/trace.c).  The image is kept in DIR (with --keep, DIR itself is
# kept) so that bench/boot-storm.sh --image can serve the very bytes that
# booted.
#
# The committed bench/data/debian-boot.trace.gz was made by this script
# (Debian 12, kernel 6.1, QEMU/TCG, 1 GiB guest, marker 26 s after QEMU
# started): see its header, or "bench/replay --stats FILE".  It holds 729
# requests over 11.9 s, from the first read to the marker: 696 reads
# (25.4 MiB), 28 writes (0.68 MiB, 3 of them FUA), 5 flushes; the 170
# requests of the shutdown after the marker are not in it.  Nearly all
# arrived one at a time (716 alone, the rest in bursts of 2 to 4 requests
# within 100 us of each other).  Boots differ a little from run to run.
#
# --first-boot records the first boot of the same system instead (default
# output bench/data/debian-first-boot.trace.gz): the tree of step 1 is
# copied (to DIR/tree-first-boot, reused like the first) and openssh-server
# is installed into the copy with apt-get in a chroot, so the normal
# recipe stays as it is.  Then the copy is put in the state a real first
# boot finds:
#  - /etc/machine-id holding "uninitialized" (systemd's first-boot state:
#    PID 1 generates the ID, applies the unit presets, and
#    ConditionFirstBoot units run; an empty file only gets a new ID, with
#    ConditionFirstBoot false), no /var/lib/systemd/random-seed.  Debian
#    ships no "disable *" preset, so that first boot enables every
#    installed unit that has an [Install] section (systemd-networkd,
#    ssh.socket, ...), as on any Debian image booted so;
#  - a persistent journal (/var/log/journal exists, so journald flushes
#    /run/log/journal there and keeps writing to disk);
#  - no SSH host keys.  Bookworm's openssh-server creates them only in its
#    postinst, and ssh.service's "sshd -t" fails without them, so the tree
#    gets a oneshot unit (wanted by and ordered before ssh.service) that
#    runs "ssh-keygen -A" when the ED25519 key is missing, as cloud images
#    do;
#  - the root read-write from the start: "rw" on the kernel command line
#    (the agent mounts it so) and "rw" in the fstab line.
# The marker unit is the same: multi-user.target wants ssh.service, so
# sshd has started (the host keys are written) before the marker.
#
# The committed bench/data/debian-first-boot.trace.gz was made with
# --first-boot (same kernel; marker 74 s after QEMU started, on a loaded
# host).  It holds 1006 requests over 44.1 s: 874 reads (32.8 MiB), 115
# writes (2.03 MiB: 72 of 4 KiB, 26 of 8 to 32 KiB, 12 of 36 to 124 KiB,
# 5 of 128 KiB; 13 with FUA), 17 flushes.  Much of its length is TCG:
# ssh-keygen -A alone took 17 s in one recording.  The shutdown after the
# marker (dropped) wrote another 1.3 MiB with 10 flushes: what the guest
# had not written back yet.  A first boot was expected to write about 17 MiB,
# mostly in 128 KiB writes: that is what the same first boot writes from
# an image made by "mke2fs -d" instead (15.5 MiB; 114 writes of 128 KiB,
# 110 of them into the inode tables, which the kernel's ext4lazyinit
# zeroes on the first read-write mount).  "imgtool build" flags every
# group's inode table as zeroed, so a client of its images never writes
# them; what is left is the first boot's own writes (journal, machine-id,
# presets, host keys, random seed).
#
# Needs root (for debootstrap),
# qemu-system-x86_64, a Debian kernel in /boot, and the project built
# (BUILD_DIR, default build; or NBDSRV, IMGTOOL, AGENT naming the binaries).
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
PATH=/usr/bin:/usr/sbin:/bin:/sbin:$PATH
build=${BUILD_DIR:-build}
case $build in /*) ;; *) build=$top/$build ;; esac
NBDSRV=${NBDSRV:-$build/nbdsrv/nbdsrv}
IMGTOOL=${IMGTOOL:-$build/imgtool/imgtool}
AGENT=${AGENT:-$build/initrd/nbdroot-agent}

workdir=
out=
keep=0
first_boot=0
while [ $# -gt 0 ]; do
  case $1 in
    --first-boot) first_boot=1; shift ;;
    --workdir) workdir=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --keep) keep=1; shift ;;
    *) echo "usage: $0 [--first-boot] [--workdir DIR] [--out FILE.gz] [--keep]" >&2
       exit 2 ;;
  esac
done
if [ -z "$out" ]; then
  if [ "$first_boot" = 1 ]; then
    out=$top/bench/data/debian-first-boot.trace.gz
  else
    out=$top/bench/data/debian-boot.trace.gz
  fi
fi

say() { echo "make-boot-trace: $*" >&2; }
die() { say "$*"; exit 1; }

for b in "$NBDSRV" "$IMGTOOL" "$AGENT"; do
  [ -x "$b" ] || die "$b is not built (BUILD_DIR=... scripts/build.sh)"
done
[ "$(id -u)" = 0 ] || die "needs root (debootstrap)"
command -v qemu-system-x86_64 >/dev/null ||
  die "qemu-system-x86_64 missing (apt-get install qemu-system-x86)"
kernel=$(ls /boot/vmlinuz-* 2>/dev/null | sort -V | tail -n 1)
[ -n "$kernel" ] || die "no kernel in /boot (apt-get install linux-image-amd64)"
kver=${kernel##*/vmlinuz-}
[ -d "/lib/modules/$kver" ] || die "no /lib/modules/$kver"

if ! command -v debootstrap >/dev/null; then
  say "installing debootstrap"
  apt-get install -y debootstrap >/dev/null 2>&1 ||
    { apt-get update >/dev/null && apt-get install -y debootstrap >/dev/null; } ||
    die "cannot install debootstrap"
fi

# The mirror apt uses: the first URIs: of the deb822 sources (the main
# archive comes first there; the security archive has no bookworm suite).
mirror=$(sed -n 's/^URIs:[[:space:]]*\([^[:space:]]*\).*/\1/p' \
           /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -n 1)
[ -n "$mirror" ] || die "no URIs: line in /etc/apt/sources.list.d/debian.sources"

if [ -z "$workdir" ]; then
  workdir=$(mktemp -d /var/tmp/nbdroot-boot-trace.XXXXXX)
fi
mkdir -p "$workdir"
workdir=$(cd "$workdir" && pwd)
qpid= spid=
cleanup() {
  [ -n "$qpid" ] && kill "$qpid" 2>/dev/null
  [ -n "$spid" ] && kill "$spid" 2>/dev/null
  [ -n "$spid" ] && wait "$spid" 2>/dev/null
  if [ "$keep" = 0 ]; then rm -rf "$workdir/tree" "$workdir/tree-first-boot"; fi
  true
}
trap cleanup EXIT

tree=$workdir/tree
if [ -f "$workdir/tree.done" ] && [ -x "$tree/sbin/init" ]; then
  say "reusing the tree in $tree"
else
  rm -rf "$tree" "$workdir/tree.done"
  say "debootstrap bookworm (minbase) into $tree"
  timeout 1800 debootstrap --variant=minbase \
    --include=systemd-sysv,udev,kmod,iproute2 bookworm "$tree" "$mirror" \
    >"$workdir/debootstrap.log" 2>&1 ||
    { tail -n 20 "$workdir/debootstrap.log" >&2; die "debootstrap failed"; }
  touch "$workdir/tree.done"
fi

# The first-boot tree: a copy of the one above with openssh-server, so
# that the normal boot's recipe stays unchanged.
make_first_boot_tree() {
  local fb=$1
  rm -rf "$fb" "$fb.done"
  say "copying the tree to $fb, apt-get install openssh-server there"
  cp -a "$tree" "$fb"
  # policy-rc.d keeps the package's scripts from starting sshd here.
  printf '#!/bin/sh\nexit 101\n' >"$fb/usr/sbin/policy-rc.d"
  chmod 755 "$fb/usr/sbin/policy-rc.d"
  timeout 900 chroot "$fb" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin \
    DEBIAN_FRONTEND=noninteractive /bin/sh -c 'apt-get update &&
      apt-get install -y --no-install-recommends openssh-server &&
      apt-get clean' >"$workdir/apt-first-boot.log" 2>&1 ||
    { tail -n 20 "$workdir/apt-first-boot.log" >&2
      die "apt-get install openssh-server in $fb failed"; }
  rm -f "$fb/usr/sbin/policy-rc.d"
  touch "$fb.done"
}

# What a real first boot finds (see the header).
set_first_boot_state() {
  local r=$1 gid
  echo uninitialized >"$r/etc/machine-id"
  rm -f "$r/var/lib/systemd/random-seed" "$r/var/lib/systemd/credential.secret"
  rm -f "$r"/etc/ssh/ssh_host_*
  rm -rf "$r/var/log/journal"
  mkdir "$r/var/log/journal"
  gid=$(awk -F: '$1 == "systemd-journal" { print $3 }' "$r/etc/group")
  chown "0:${gid:-0}" "$r/var/log/journal"
  chmod 2755 "$r/var/log/journal"
  echo "/dev/nbd0 / ext4 rw 0 1" >"$r/etc/fstab"
  cat >"$r/etc/systemd/system/ssh-host-keys.service" <<'UNIT'
[Unit]
Description=SSH host keys for a first boot (ssh-keygen -A)
Before=ssh.service
ConditionPathExists=!/etc/ssh/ssh_host_ed25519_key

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/bin/ssh-keygen -A

[Install]
WantedBy=ssh.service
UNIT
  mkdir -p "$r/etc/systemd/system/ssh.service.wants"
  ln -sf ../ssh-host-keys.service \
    "$r/etc/systemd/system/ssh.service.wants/ssh-host-keys.service"
}

root=$tree rootmode=ro
if [ "$first_boot" = 1 ]; then
  root=$workdir/tree-first-boot rootmode=rw
  if [ -f "$root.done" ] && [ -x "$root/usr/sbin/sshd" ]; then
    say "reusing the first-boot tree in $root"
  else
    make_first_boot_tree "$root"
  fi
fi

# The root: mounted from /dev/nbd0 (read-only by the agent, as a kernel
# would; systemd checks and remounts it read-write from fstab), a marker
# once multi-user.target and the login prompts are up.
echo "/dev/nbd0 / ext4 defaults 0 1" >"$root/etc/fstab"
echo "bootstorm" >"$root/etc/hostname"
cat >"$root/etc/systemd/system/boot-marker.service" <<'UNIT'
[Unit]
Description=nbdroot boot-trace marker
After=multi-user.target getty.target

[Service]
Type=oneshot
ExecStart=/bin/sh -c 'echo NBDROOT-BOOT-MARKER reached multi-user >/dev/console; systemctl poweroff --no-block'

[Install]
WantedBy=multi-user.target
UNIT
mkdir -p "$root/etc/systemd/system/multi-user.target.wants"
ln -sf ../boot-marker.service \
  "$root/etc/systemd/system/multi-user.target.wants/boot-marker.service"
[ "$first_boot" = 0 ] || set_first_boot_state "$root"

say "imgtool build"
rm -f "$workdir/root.img"
"$IMGTOOL" build "$root" -o "$workdir/root.img" >"$workdir/imgtool.log" 2>&1 ||
  { cat "$workdir/imgtool.log" >&2; die "imgtool build failed"; }
say "imgtool initrd (kernel $kver)"
"$IMGTOOL" initrd -o "$workdir/initrd.gz" --kernel-version "$kver" \
  --agent "$AGENT" >>"$workdir/imgtool.log" 2>&1 ||
  { cat "$workdir/imgtool.log" >&2; die "imgtool initrd failed"; }

port=$(/usr/bin/python3 -c 'import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
trace=$workdir/boot.trace
rm -rf "$workdir/overlays" "$trace"
mkdir -p "$workdir/overlays"
"$NBDSRV" -f -l "127.0.0.1:$port" -e "root=$workdir/root.img" \
  -o "$workdir/overlays" --trace "$trace" >"$workdir/nbdsrv.log" 2>&1 &
spid=$!
for _ in $(seq 100); do
  (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
  sleep 0.1
done

# A first boot also generates the host keys (RSA 3072 under TCG).
limit=300
[ "$first_boot" = 0 ] || limit=600
say "booting QEMU/TCG against nbdsrv on 127.0.0.1:$port (up to $limit s)"
console=$workdir/console.log
: >"$console"
t0=$(date +%s.%N)
timeout -k 5 "$limit" qemu-system-x86_64 -accel tcg -m 1024 -nographic -no-reboot \
  -nodefaults -serial stdio -kernel "$kernel" -initrd "$workdir/initrd.gz" \
  -append "console=ttyS0 panic=-1 ip=dhcp root=nbd:10.0.2.2:$port/root $rootmode init=/lib/systemd/systemd nbdroot.rescue=poweroff" \
  -netdev user,id=n0 -device virtio-net-pci,netdev=n0 \
  </dev/null >"$console" 2>&1 &
qpid=$!
marker=0
for _ in $(seq $((limit * 20))); do
  if [ "$marker" = 0 ] && grep -q 'NBDROOT-BOOT-MARKER' "$console"; then
    marker=$(date +%s%6N)
    say "marker after $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }') s"
  fi
  kill -0 "$qpid" 2>/dev/null || break
  sleep 0.05
done
wait "$qpid" || true
qpid=
kill "$spid"
wait "$spid" || true
spid=
if [ "$marker" = 0 ]; then
  tr -d '\r' <"$console" | tail -n 40 >&2
  die "no marker on the console (see $console)"
fi

# The boot ends at the marker: what follows (seen on the host at most
# 50 ms later) is the shutdown, which is dropped.
size=$(stat -c %s "$workdir/root.img")
awk -v m="$marker" '$1 <= m' "$trace" >"$trace.boot"
say "$(wc -l <"$trace.boot") requests up to the marker," \
  "$(($(wc -l <"$trace") - $(wc -l <"$trace.boot"))) after it (shutdown, dropped)"
trace=$trace.boot
mkdir -p "$(dirname "$out")"
{
  if [ "$first_boot" = 1 ]; then
    echo "# nbdroot first-boot trace: Debian bookworm minbase+systemd-sysv,udev,kmod,iproute2"
    echo "# +openssh-server; machine-id uninitialized, persistent journal, no SSH host keys, root rw;"
    echo "# first boot to multi-user.target in QEMU/TCG through nbdsrv (kernel $kver),"
  else
    echo "# nbdroot boot trace: Debian bookworm minbase+systemd-sysv,udev,kmod,iproute2"
    echo "# booted to multi-user.target in QEMU/TCG through nbdsrv (kernel $kver),"
  fi
  echo "# cut at the marker printed once multi-user.target was reached"
  echo "# image-size $size"
  awk '!/^#/ { n++; c[$3]++; b[$3] += $5; if (!t0) t0 = $1; t1 = $1 }
       END { printf "# requests %d over %.1f s:", n, (t1 - t0) / 1e6;
             for (k in c) printf " %s=%d (%d bytes)", k, c[k], b[k]; print "" }' "$trace"
  echo "# format: USEC EXPORT/ID TYPE OFFSET LENGTH (nbdsrv --trace)"
  cat "$trace"
} | gzip -9n >"$out.tmp"
mv "$out.tmp" "$out"
say "wrote $out: $(gzip -dc "$out" | grep -m 1 '^# requests')"
say "image kept at $workdir/root.img (bench/boot-storm.sh --image)"
