#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# The failover boot of test_boot_11 on a real CephFS: a one-node Ceph
# cluster mounted twice with ceph-fuse (two Ceph clients, as two hosts
# would be); the first server keeps its overlays on the first mount, the
# second on the second, the same directory.  Killing the first nbdsrv
# (not its host) leaves its ceph-fuse alive, so its overlay locks go with
# the process and the second takes the guest over.  The cluster is torn
# down at the end.  Skips (77) only where the Ceph packages are not
# installed.
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/boot-functions.sh"
. "$(dirname "$0")/failover-functions.sh"
. "$(dirname "$0")/ceph-functions.sh"
ceph_skip_unless_installed

start_cephfs "$TESTDIR/mA" "$TESTDIR/mB"
mkdir -p "$TESTDIR/mA/ov"
i=0
until [ -d "$TESTDIR/mB/ov" ]; do
  i=$((i + 1)); [ $i -lt 100 ] || fail "the second mount does not see ov in 10 s"
  sleep 0.1
done
failover_boot "$TESTDIR/mA/ov" "$TESTDIR/mB/ov"
