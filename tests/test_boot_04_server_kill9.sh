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

# wait (bounded) until the loop is under way
i=0
until console_has w "SYNCED 5$"; do
  i=$((i + 1))
  [ $i -lt 600 ] || fail "the guest did not reach SYNCED 5 in 120 s"
  kill -0 "$GUEST_PID_w" 2>/dev/null || { tail -n 30 "$TESTDIR/w.console"; fail "guest ended early"; }
  sleep 0.2
done
stop_nbdsrv KILL || true
killed_after=$(tr -d '\r' <"$TESTDIR/w.console" | grep -c '^SYNCED ')
sleep 4
start_root_server "$TESTDIR/root.img" persistent
wait_guest w

expect_console w "supervisor: /dev/nbd0 lost its connection"
expect_console w "supervisor: /dev/nbd0 reconnected to 10\.0\.2\.2:$PORT"
expect_console w "LOOP-DONE"
synced=$(tr -d '\r' <"$TESTDIR/w.console" | grep -c '^SYNCED ')
[ "$synced" -gt "$killed_after" ] ||
  fail "no write completed after the server restart ($synced synced)"
console_has w "I/O error|Buffer I/O|EXT4-fs error" &&
  fail "the guest saw I/O errors"

boot_guest v "$args verify"
expect_console v "VERIFY-DONE"
console_has v "CORRUPT" && fail "corrupt files: $(grep CORRUPT "$TESTDIR/v.console" | tr -d '\r' | tr '\n' ' ')"
for n in $(tr -d '\r' <"$TESTDIR/w.console" | sed -n 's/^SYNCED //p'); do
  console_has v "^INTACT $n$" || fail "synced write $n missing after the restart"
done
echo "$synced writes synced, server killed after $killed_after, all intact"
