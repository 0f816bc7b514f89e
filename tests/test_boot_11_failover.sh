#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# Two nbdsrv on one machine, different ports, one shared overlay
# directory.  A guest with both servers on its command line boots from
# the first, writes and syncs in a loop; the first is killed with -9; the
# agent's supervisor goes over to the second (one console line says so)
# and the guest carries on.  The first, restarted, refuses the guest
# while the second holds its overlay (overlay locks).  The guest is then
# cut off; a second boot, with the first server still dead, starts from
# the second and finds every synced write intact (a write cut off before
# its sync may be torn: it is not checked).
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/boot-functions.sh"
. "$(dirname "$0")/failover-functions.sh"

cat >"$TESTDIR/init" <<'INIT'
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
while [ $i -le 300 ]; do
  gen $i >/data/w$i
  sync
  echo "SYNCED $i"
  i=$((i + 1))
  sleep 0.3
done
echo "LOOP-DONE"
poweroff -f
INIT
make_rootfs "$TESTDIR/tree" "$TESTDIR/init"
make_root_image "$TESTDIR/tree" "$TESTDIR/root.img"
make_initrd "$TESTDIR/initrd.gz"
mkdir -p "$TESTDIR/overlays"

for s in A B; do
  start_named "$s" -e "root=$TESTDIR/root.img" -o "$TESTDIR/overlays" \
    --policy persistent
done

args="ip=dhcp root=nbd:$GUEST_SERVER:$PORT_A,$GUEST_SERVER:$PORT_B/root rw nbdroot.rescue=poweroff nbdroot.timeout=10 nbdroot.dead_timeout=120"
run_guest w "$args"

# wait (bounded) until the loop is under way
i=0
until console_has w "SYNCED 5$"; do
  i=$((i + 1))
  [ $i -lt 600 ] || fail "the guest did not reach SYNCED 5 in 120 s"
  kill -0 "$GUEST_PID_w" 2>/dev/null || { tail -n 30 "$TESTDIR/w.console"; fail "guest ended early"; }
  sleep 0.2
done
kill -9 "$PID_A"
wait "$PID_A" 2>/dev/null || true
killed_after=$(tr -d '\r' <"$TESTDIR/w.console" | grep -c '^SYNCED ')

# The first server, restarted, refuses the guest while the second holds
# its overlay (the guest is still writing through the second).
i=0
until console_has w "nbdroot: switched to server"; do
  i=$((i + 1))
  [ $i -lt 300 ] || fail "no switch to the second server in 60 s"
  sleep 0.2
done
start_named A2 -e "root=$TESTDIR/root.img" -o "$TESTDIR/overlays" \
  --policy persistent
console_has w "LOOP-DONE" && fail "the guest ended before the refusal check"
refused_by "$PORT_A2" root@52-54-00-12-34-56 ||
  fail "the restarted first server serves what the second serves"

# A few more writes through the second, then the guest is cut off like a
# power failure: what it synced must survive that too.
more=$(($(tr -d '\r' <"$TESTDIR/w.console" | grep -c '^SYNCED ') + 3))
i=0
until console_has w "^SYNCED $more$"; do
  i=$((i + 1))
  [ $i -lt 600 ] || fail "the guest did not reach SYNCED $more in 120 s"
  console_has w "LOOP-DONE" && break
  sleep 0.2
done
kill "$GUEST_PID_w"
wait_guest w

expect_console w "nbdroot: /dev/nbd0: 10\.0\.2\.2:$PORT_A export"
expect_console w "supervisor: /dev/nbd0 lost its connection to 10\.0\.2\.2:$PORT_A"
expect_console w "supervisor: /dev/nbd0 reconnected to 10\.0\.2\.2:$PORT_B"
expect_console w "nbdroot: switched to server 10\.0\.2\.2:$PORT_B \(root\)"
synced=$(tr -d '\r' <"$TESTDIR/w.console" | grep -c '^SYNCED ')
[ "$synced" -gt "$killed_after" ] ||
  fail "no write completed after the failover ($synced synced)"
console_has w "I/O error|Buffer I/O|EXT4-fs error" &&
  fail "the guest saw I/O errors"

# The first server is still dead: the boot goes on to the second.
boot_guest v "$args verify"
expect_console v "nbdroot: /dev/nbd0: 10\.0\.2\.2:$PORT_B export"
expect_console v "VERIFY-DONE"
for n in $(tr -d '\r' <"$TESTDIR/w.console" | sed -n 's/^SYNCED //p'); do
  console_has v "^INTACT $n$" || fail "synced write $n missing after the failover"
done
echo "$synced writes synced, first server killed after $killed_after, all intact on the second"
