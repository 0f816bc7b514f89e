#!/bin/bash
# Records the block-level request trace of a real Debian boot through
# nbdsrv, for bench/boot-storm.sh to replay (see bench/README.md).
#
#   scripts/make-boot-trace.sh [--workdir DIR] [--out FILE.gz] [--keep]
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
out=$top/bench/data/debian-boot.trace.gz
keep=0
while [ $# -gt 0 ]; do
  case $1 in
    --workdir) workdir=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --keep) keep=1; shift ;;
    *) echo "usage: $0 [--workdir DIR] [--out FILE.gz] [--keep]" >&2; exit 2 ;;
  esac
done

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
  if [ "$keep" = 0 ]; then rm -rf "$workdir/tree"; fi
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

# The root: mounted from /dev/nbd0 (read-only by the agent, as a kernel
# would; systemd checks and remounts it read-write from fstab), a marker
# once multi-user.target and the login prompts are up.
echo "/dev/nbd0 / ext4 defaults 0 1" >"$tree/etc/fstab"
echo "bootstorm" >"$tree/etc/hostname"
cat >"$tree/etc/systemd/system/boot-marker.service" <<'UNIT'
[Unit]
Description=nbdroot boot-trace marker
After=multi-user.target getty.target

[Service]
Type=oneshot
ExecStart=/bin/sh -c 'echo NBDROOT-BOOT-MARKER reached multi-user >/dev/console; systemctl poweroff --no-block'

[Install]
WantedBy=multi-user.target
UNIT
mkdir -p "$tree/etc/systemd/system/multi-user.target.wants"
ln -sf ../boot-marker.service \
  "$tree/etc/systemd/system/multi-user.target.wants/boot-marker.service"

say "imgtool build"
rm -f "$workdir/root.img"
"$IMGTOOL" build "$tree" -o "$workdir/root.img" >"$workdir/imgtool.log" 2>&1 ||
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

say "booting QEMU/TCG against nbdsrv on 127.0.0.1:$port (up to 300 s)"
console=$workdir/console.log
: >"$console"
t0=$(date +%s.%N)
timeout -k 5 300 qemu-system-x86_64 -accel tcg -m 1024 -nographic -no-reboot \
  -nodefaults -serial stdio -kernel "$kernel" -initrd "$workdir/initrd.gz" \
  -append "console=ttyS0 panic=-1 ip=dhcp root=nbd:10.0.2.2:$port/root ro init=/lib/systemd/systemd nbdroot.rescue=poweroff" \
  -netdev user,id=n0 -device virtio-net-pci,netdev=n0 \
  </dev/null >"$console" 2>&1 &
qpid=$!
marker=0
for _ in $(seq 6000); do
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
  echo "# nbdroot boot trace: Debian bookworm minbase+systemd-sysv,udev,kmod,iproute2"
  echo "# booted to multi-user.target in QEMU/TCG through nbdsrv (kernel $kver),"
  echo "# cut at the marker printed once multi-user.target was reached"
  echo "# image-size $size"
  awk '!/^#/ { n++; c[$3]++; b[$3] += $5; if (!t0) t0 = $1; t1 = $1 }
       END { printf "# requests %d over %.1f s:", n, (t1 - t0) / 1e6;
             for (k in c) printf " %s=%d (%d bytes)", k, c[k], b[k]; print "" }' "$trace"
  echo "# format: USEC EXPORT/ID TYPE OFFSET LENGTH (nbdsrv --trace)"
  cat "$trace"
} | gzip -9n >"$out.tmp"
mv "$out.tmp" "$out"
say "wrote $out: $(gzip -dc "$out" | sed -n 5p)"
say "image kept at $workdir/root.img (bench/boot-storm.sh --image)"
