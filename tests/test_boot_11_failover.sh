#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# Two nbdsrv on one machine, different ports, one shared overlay
# directory.  A guest with both servers on its command line boots from
# the first, writes and syncs in a loop; the first is killed with -9; the
# agent's supervisor goes over to the second (one console line says so)
# and the guest carries on.  A second boot, with the first server still
# dead, starts from the second and finds every synced write intact.
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/boot-functions.sh"

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
while [ $i -le 40 ]; do
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

# start_server N PORT: nbdsrv N on 127.0.0.1:PORT over the shared
# overlays; sets SRV_PID_N.
start_server() {
  local n=$1 port=$2 pid i=0
  rm -f "$TESTDIR/srv$n.pid"
  "$NBDSRV" -f -l "127.0.0.1:$port" -P "$TESTDIR/srv$n.pid" \
    --control-socket "$TESTDIR/ctl$n.sock" -e "root=$TESTDIR/root.img" \
    -o "$TESTDIR/overlays" --policy persistent >>"$TESTDIR/srv$n.log" 2>&1 &
  pid=$!
  eval "SRV_PID_$n=$pid"
  on_exit "kill -9 $pid 2>/dev/null; wait $pid 2>/dev/null"
  until [ -s "$TESTDIR/srv$n.pid" ]; do
    kill -0 "$pid" 2>/dev/null || { cat "$TESTDIR/srv$n.log" >&2; fail "nbdsrv $n exited during start-up"; }
    i=$((i + 1)); [ $i -lt 200 ] || fail "nbdsrv $n did not start in 20 s"
    sleep 0.1
  done
}

PORT1=$(free_port)
start_server 1 "$PORT1"
PORT2=$(free_port)
start_server 2 "$PORT2"

args="ip=dhcp root=nbd:$GUEST_SERVER:$PORT1,$GUEST_SERVER:$PORT2/root rw nbdroot.rescue=poweroff nbdroot.timeout=10 nbdroot.dead_timeout=120"
run_guest w "$args"

# wait (bounded) until the loop is under way
i=0
until console_has w "SYNCED 5$"; do
  i=$((i + 1))
  [ $i -lt 600 ] || fail "the guest did not reach SYNCED 5 in 120 s"
  kill -0 "$GUEST_PID_w" 2>/dev/null || { tail -n 30 "$TESTDIR/w.console"; fail "guest ended early"; }
  sleep 0.2
done
kill -9 "$SRV_PID_1"
wait "$SRV_PID_1" 2>/dev/null || true
killed_after=$(tr -d '\r' <"$TESTDIR/w.console" | grep -c '^SYNCED ')
wait_guest w

expect_console w "nbdroot: /dev/nbd0: 10\.0\.2\.2:$PORT1 export"
expect_console w "supervisor: /dev/nbd0 lost its connection to 10\.0\.2\.2:$PORT1"
expect_console w "supervisor: /dev/nbd0 reconnected to 10\.0\.2\.2:$PORT2"
expect_console w "nbdroot: switched to server 10\.0\.2\.2:$PORT2 \(root\)"
expect_console w "LOOP-DONE"
synced=$(tr -d '\r' <"$TESTDIR/w.console" | grep -c '^SYNCED ')
[ "$synced" -gt "$killed_after" ] ||
  fail "no write completed after the failover ($synced synced)"
console_has w "I/O error|Buffer I/O|EXT4-fs error" &&
  fail "the guest saw I/O errors"

# The first server is still dead: the boot goes on to the second.
boot_guest v "$args verify"
expect_console v "nbdroot: /dev/nbd0: 10\.0\.2\.2:$PORT2 export"
expect_console v "VERIFY-DONE"
console_has v "CORRUPT" && fail "corrupt files: $(grep CORRUPT "$TESTDIR/v.console" | tr -d '\r' | tr '\n' ' ')"
for n in $(tr -d '\r' <"$TESTDIR/w.console" | sed -n 's/^SYNCED //p'); do
  console_has v "^INTACT $n$" || fail "synced write $n missing after the failover"
done
echo "$synced writes synced, first server killed after $killed_after, all intact on the second"
