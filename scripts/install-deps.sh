#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-or-later
# Installs everything nbdroot needs to build, test, benchmark and demo on
# Debian 12.  Run as root.  Idempotent.  (squashfs-tools is for the tests
# only: they check imgtool's squashfs images with unsquashfs.)
set -e
if [ "$(id -u)" != 0 ]; then
  echo "install-deps.sh: must run as root (apt-get install)" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends \
  build-essential autoconf automake pkg-config git ca-certificates \
  systemd man-db \
  liburing-dev libnbd-dev zlib1g-dev libext2fs-dev nettle-dev libsquashfs-dev \
  musl-tools libfuse3-dev fuse3 \
  libnbd-bin python3-libnbd nbdkit nbd-server qemu-utils qemu-system-x86 \
  fio clang clang-format libclang-rt-14-dev valgrind e2fsprogs squashfs-tools cpio attr acl \
  python3-matplotlib \
  busybox-static linux-image-amd64 kmod procps psmisc iproute2 \
  dnsmasq-base isc-dhcp-server pxelinux syslinux-common ovmf grub-efi-amd64-signed \
  python3 util-linux gzip xz-utils zstd \
  ceph-mon ceph-osd ceph-mds ceph-fuse ceph-common fuse3 >/dev/null
