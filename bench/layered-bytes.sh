#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# Bytes read over the wire per boot, and boot time, of one Debian tree
# booted in QEMU/TCG through nbdsrv in the two root modes:
#
#   block-ext4        "imgtool build TREE" (ext4), a reset-on-boot export:
#                     root=nbd:10.0.2.2:P/root rw
#   layered-squashfs  "imgtool build TREE --format squashfs --block-size B
#                     --order ORDER" as a shared-readonly export, the
#                     state disk a persistent
#                     export over "imgtool state-template":
#                     root=nbd:10.0.2.2:P/base rw nbdroot.state=state
#
#   bench/layered-bytes.sh [--workdir DIR] [--runs N] [--base SQUASHFS]
#                          [--order FILE | --no-order] [--block-size B] [--keep]
#
# Every boot starts clean (a new overlay dir: the block client's first
# boot of its overlay, the layered client's first boot of its state
# disk), and the modes alternate, N boots each (default 3).
#
# The squashfs base is built with "--order" a boot order: by default the
# bench first records one block-mode boot of the ext4 image (not counted
# in the results: "record" in the log), makes the order file of it with
# bench/trace-order.sh (the files that boot read, in the order it first
# read them) and builds the squashfs with that order, as one would
# profile an image's boot once before serving it to many.  --order FILE
# uses FILE instead (no recording boot); --no-order builds it without
# (inode order, the layout before --order existed).  --block-size B is
# passed to imgtool (default 64K: with the order, it read less than
# 128K, see bench/README.md).  --base serves SQUASHFS, a squashfs image
# of the same tree made otherwise, instead of imgtool's (no order, no
# recording boot); with --keep the tree the images are made of stays in
# DIR/layered-bytes/tree.
#
# The tree: DIR/tree as scripts/make-boot-trace.sh leaves it (reused when
# DIR/tree.done exists; else that script is run with --workdir DIR --keep
# to debootstrap it, which also records one boot).  It is copied to
# DIR/layered-bytes/tree and given, for both modes alike, an empty
# /etc/fstab (the agent mounts the root; nothing to remount) and a oneshot
# unit, after multi-user.target and getty.target, that writes a marker to
# /dev/kmsg (so the console shows it with the kernel's timestamp) and
# powers off.
#
# Measures, per boot:
#  - bytes read: the sum of the lengths of the read requests in nbdsrv's
#    --trace, over every export the client used, up to the moment the
#    marker showed on the console (the shutdown's requests are dropped);
#  - boot time: the kernel's timestamp of the marker (seconds since the
#    kernel started, as printed on the console);
#  - for context, when the agent switched root (its own line).
# Prints a table of every boot and, last, the means:
#   layered: block-ext4 X MiB/boot Ts, layered-squashfs Y MiB/boot Us, ratio R
# with R = Y / X.
#
# Needs root, qemu-system-x86_64, a Debian kernel in /boot with its
# modules (linux-image-amd64), the project built (BUILD_DIR, default
# build; or NBDSRV, IMGTOOL, AGENT naming the binaries), about 1.5 GB in
# DIR, and, for a first run, debootstrap and the Debian mirror (see
# scripts/make-boot-trace.sh).  Not part of make check.  Each boot is
# bounded to 300 s.
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
PATH=/usr/bin:/usr/sbin:/bin:/sbin:$PATH
build=${BUILD_DIR:-build}
case $build in /*) ;; *) build=$top/$build ;; esac
NBDSRV=${NBDSRV:-$build/nbdsrv/nbdsrv}
IMGTOOL=${IMGTOOL:-$build/imgtool/imgtool}
AGENT=${AGENT:-$build/initrd/nbdroot-agent}

workdir=/var/tmp/nbdroot-trace-work
runs=3
keep=0
base=
order=record
bsize=64K
while [ $# -gt 0 ]; do
  case $1 in
    --workdir) workdir=$2; shift 2 ;;
    --runs) runs=$2; shift 2 ;;
    --keep) keep=1; shift ;;
    --base) base=$2; shift 2 ;;
    --order) order=$2; shift 2 ;;
    --no-order) order=none; shift ;;
    --block-size) bsize=$2; shift 2 ;;
    *) echo "usage: $0 [--workdir DIR] [--runs N] [--base SQUASHFS]" \
         "[--order FILE | --no-order] [--block-size B] [--keep]" >&2
       exit 2 ;;
  esac
done

say() { echo "layered-bytes: $*" >&2; }
die() { say "$*"; exit 1; }

case $runs in ''|*[!0-9]*|0) die "--runs '$runs': give a positive number" ;; esac
if [ -n "$base" ]; then
  [ -f "$base" ] || die "--base $base: no such file"
  [ "$(head -c 4 "$base")" = hsqs ] || die "--base $base is not a squashfs image"
  base=$(realpath "$base")
  order=none
fi
case $order in
  record|none) ;;
  *) [ -f "$order" ] || die "--order $order: no such file"
     order=$(realpath "$order") ;;
esac
for b in "$NBDSRV" "$IMGTOOL" "$AGENT"; do
  [ -x "$b" ] || die "$b is not built (scripts/build.sh)"
done
[ "$(id -u)" = 0 ] || die "needs root (the tree's files belong to many users)"
command -v qemu-system-x86_64 >/dev/null ||
  die "qemu-system-x86_64 missing (apt-get install qemu-system-x86)"
kernel=$(ls /boot/vmlinuz-* 2>/dev/null | sort -V | tail -n 1)
[ -n "$kernel" ] || die "no kernel in /boot (apt-get install linux-image-amd64)"
kver=${kernel##*/vmlinuz-}
[ -d "/lib/modules/$kver" ] || die "no /lib/modules/$kver"

mkdir -p "$workdir"
workdir=$(cd "$workdir" && pwd)
if ! [ -f "$workdir/tree.done" ] || ! [ -x "$workdir/tree/sbin/init" ]; then
  say "no tree in $workdir: scripts/make-boot-trace.sh debootstraps one"
  "$top/scripts/make-boot-trace.sh" --workdir "$workdir" --keep \
    --out "$workdir/boot.trace.gz" || die "scripts/make-boot-trace.sh failed"
fi
w=$workdir/layered-bytes
qpid= spid=
cleanup() {
  if [ -n "$qpid" ]; then kill "$qpid" 2>/dev/null || true; fi
  if [ -n "$spid" ]; then kill "$spid" 2>/dev/null || true; wait "$spid" 2>/dev/null || true; fi
  if [ "$keep" = 0 ]; then rm -rf "$w"; fi
}
trap cleanup EXIT

# The tree both modes boot (see the header).
prepare_tree() {
  local t=$w/tree
  rm -rf "$w"
  mkdir -p "$w"
  say "copying $workdir/tree to $t"
  cp -a "$workdir/tree" "$t"
  : >"$t/etc/fstab"
  echo layered-bytes >"$t/etc/hostname"
  rm -f "$t/etc/systemd/system/multi-user.target.wants/boot-marker.service" \
    "$t/etc/systemd/system/boot-marker.service"
  cat >"$t/etc/systemd/system/bench-marker.service" <<'UNIT'
[Unit]
Description=nbdroot layered-bytes marker
After=multi-user.target getty.target

[Service]
Type=oneshot
ExecStart=/bin/sh -c 'echo NBDROOT-BENCH-MARKER multi-user reached >/dev/kmsg; systemctl poweroff --no-block'

[Install]
WantedBy=multi-user.target
UNIT
  mkdir -p "$t/etc/systemd/system/multi-user.target.wants"
  ln -sf ../bench-marker.service \
    "$t/etc/systemd/system/multi-user.target.wants/bench-marker.service"
}

# The ext4 image, the state template, the initrd, nbdsrv's configuration
# (the squashfs base comes after: build_base).
build_images() {
  say "imgtool build (ext4), state-template, initrd"
  : >"$w/imgtool.log"
  "$IMGTOOL" build "$w/tree" -o "$w/root.ext4" >>"$w/imgtool.log" 2>&1 &&
    "$IMGTOOL" state-template -o "$w/state.img" --size 4G \
      >>"$w/imgtool.log" 2>&1 &&
    "$IMGTOOL" initrd -o "$w/initrd.gz" --kernel-version "$kver" \
      --agent "$AGENT" >>"$w/imgtool.log" 2>&1 ||
    { cat "$w/imgtool.log" >&2; die "imgtool failed"; }
  cat >"$w/nbdsrv.conf" <<EOF
[root]
image = $w/root.ext4
policy = reset-on-boot
EOF
}

# The squashfs base: --base's, or imgtool's with the order (see the
# header; "record" boots block mode once first).
build_base() {
  local args=(--block-size "$bsize")
  if [ -n "$base" ]; then
    say "the base is --base's $base"
    cp "$base" "$w/base.sqfs"
    add_layered_exports
    return
  fi
  case $order in
    none) ;;
    record)
      say "block-ext4 recording boot for the squashfs order (not counted)"
      boot block-ext4 record >/dev/null
      "$top/bench/trace-order.sh" "$w/root.ext4" "$w/block-ext4-record.trace" root \
        >"$w/order" || die "bench/trace-order.sh failed"
      say "order: $(wc -l <"$w/order") files"
      args+=(--order "$w/order") ;;
    *) args+=(--order "$order") ;;
  esac
  say "imgtool build --format squashfs ${args[*]}"
  "$IMGTOOL" build "$w/tree" --format squashfs "${args[@]}" -o "$w/base.sqfs" \
    >>"$w/imgtool.log" 2>&1 || { cat "$w/imgtool.log" >&2; die "imgtool failed"; }
  add_layered_exports
}

# The layered exports, once the base is there.
add_layered_exports() {
  cat >>"$w/nbdsrv.conf" <<EOF

[base]
image = $w/base.sqfs
policy = shared-readonly

[state]
image = $w/state.img
policy = persistent
EOF
}

free_port() {
  /usr/bin/python3 -c 'import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# boot MODE N: one clean boot; prints "MODE N BYTES BOOT_S SWITCH_S READS".
boot() {
  local mode=$1 n=$2 port trace console append marker=0 t
  port=$(free_port)
  trace=$w/$mode-$n.trace console=$w/$mode-$n.console
  rm -rf "$w/overlays" "$trace"
  mkdir -p "$w/overlays"
  "$NBDSRV" -f -c "$w/nbdsrv.conf" -l "127.0.0.1:$port" -o "$w/overlays" \
    --control-socket none \
    --trace "$trace" >"$w/$mode-$n.nbdsrv.log" 2>&1 &
  spid=$!
  for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
    sleep 0.1
  done
  case $mode in
    block-ext4) append="root=nbd:10.0.2.2:$port/root rw" ;;
    layered-squashfs) append="root=nbd:10.0.2.2:$port/base rw nbdroot.state=state" ;;
  esac
  : >"$console"
  timeout -k 5 300 qemu-system-x86_64 -accel tcg -m 1024 -nographic \
    -no-reboot -nodefaults -serial stdio -kernel "$kernel" \
    -initrd "$w/initrd.gz" \
    -append "console=ttyS0 panic=-1 ip=dhcp $append init=/lib/systemd/systemd nbdroot.rescue=poweroff" \
    -netdev user,id=n0 -device virtio-net-pci,netdev=n0 \
    </dev/null >"$console" 2>&1 &
  qpid=$!
  for _ in $(seq 6000); do
    if [ "$marker" = 0 ] && grep -q 'NBDROOT-BENCH-MARKER' "$console"; then
      marker=$(date +%s%6N)
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
    tr -d '\r' <"$console" | tail -n 30 >&2
    die "$mode boot $n: no marker on the console (see $console)"
  fi
  # The marker may follow getty's login prompt on the same line.
  t=$(tr -d '\r' <"$console" |
      sed -n 's/.*\[ *\([0-9.]*\)\] NBDROOT-BENCH-MARKER.*/\1/p' | head -n 1)
  [ -n "$t" ] || die "$mode boot $n: the marker has no kernel timestamp (see $console)"
  awk -v m="$marker" -v mode="$mode" -v n="$n" -v t="$t" \
      -v sw="$(tr -d '\r' <"$console" |
               sed -n 's/^\[ *\([0-9.]*\)\] nbdroot: switching root.*/\1/p' | head -n 1)" '
    $1 <= m && $3 == "R" { b += $5; r++ }
    END { printf "%s %d %d %s %s %d\n", mode, n, b, t, (sw == "" ? "-" : sw), r }' "$trace"
}

prepare_tree
build_images
build_base
say "ext4 image $(du -m --apparent-size "$w/root.ext4" | cut -f1) MiB" \
  "($(du -m "$w/root.ext4" | cut -f1) MiB allocated), squashfs" \
  "$(du -m --apparent-size "$w/base.sqfs" | cut -f1) MiB"
: >"$w/results"
for n in $(seq "$runs"); do
  for mode in block-ext4 layered-squashfs; do
    say "$mode boot $n of $runs (QEMU/TCG, up to 300 s)"
    boot "$mode" "$n" | tee -a "$w/results" >&2
  done
done

printf '%-18s %4s %10s %8s %10s %7s\n' mode boot "MiB read" "boot s" "switch s" reads
awk '{ printf "%-18s %4d %10.1f %8.2f %10.2f %7d\n", $1, $2, $3 / 1048576, $4, $5, $6 }' \
  "$w/results"
awk '{ b[$1] += $3; t[$1] += $4; c[$1]++ }
  END {
    x = b["block-ext4"] / c["block-ext4"] / 1048576
    y = b["layered-squashfs"] / c["layered-squashfs"] / 1048576
    printf "layered: block-ext4 %.1f MiB/boot %.1fs, layered-squashfs %.1f MiB/boot %.1fs, ratio %.2f\n",
      x, t["block-ext4"] / c["block-ext4"], y,
      t["layered-squashfs"] / c["layered-squashfs"], y / x
  }' "$w/results"
