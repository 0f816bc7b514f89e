#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# kill -9 of nbdsrv while the guest writes and syncs in a loop; nbdsrv
# comes back a few seconds later on the same port.  The agent's supervisor
# reattaches /dev/nbd0 (NBD_CMD_RECONFIGURE), the guest carries on, and a
# second boot finds every write the first one reported as synced intact.
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/boot-functions.sh"

sync_loop_init "$TESTDIR/init" 60 <<'TAIL'
ps | grep -c '@init' | sed 's/^/SUPERVISORS /'
TAIL
make_rootfs "$TESTDIR/tree" "$TESTDIR/init"
make_root_image "$TESTDIR/tree" "$TESTDIR/root.img"
make_initrd "$TESTDIR/initrd.gz"
start_root_server "$TESTDIR/root.img" persistent

args="ip=dhcp root=nbd:$GUEST_SERVER:$PORT/root rw nbdroot.rescue=poweroff nbdroot.timeout=10 nbdroot.dead_timeout=120"
run_guest w "$args"

kill9_restart w start_root_server "$TESTDIR/root.img" persistent
wait_guest w
expect_console w "supervisor: /dev/nbd0 lost its connection"
expect_console w "supervisor: /dev/nbd0 reconnected to 10\.0\.2\.2:$PORT"

boot_guest v "$args verify"
expect_synced_intact w v
