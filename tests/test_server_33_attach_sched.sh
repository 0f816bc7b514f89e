#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# test_server_33_attach_sched: the attach thread's scheduling (attach.c).  It opens
# overlays at SCHED_IDLE, so that serving the clients already attached
# comes first, and only that: waiting for work and handing jobs around
# (under locks the workers take) it is at the normal policy.  A watcher
# puts it back on the normal policy when a job starves at SCHED_IDLE:
#   - with nothing to do, the attach thread (nbdsrv-attach) is at the
#     normal policy, like the workers (nbdsrv-wN);
#   - while it creates an overlay on a frozen file system (a loop-mounted
#     ext4), it is SCHED_IDLE, and stays so: waiting for a disk is not
#     starving, and the watcher leaves it; thawed, the client attaches;
#   - with every CPU kept busy by other processes, which leave a thread at
#     SCHED_IDLE next to nothing, a job with real CPU work (reopening an
#     overlay whose journal sets 8 million blocks one by one) starves: the
#     log shows the switch back to the normal policy, the client and four
#     new ones attach, write and read, and once the queue stays empty the
#     log says overlays are opened at SCHED_IDLE again;
#   - without CAP_SYS_NICE and with RLIMIT_NICE 0 a thread cannot leave
#     SCHED_IDLE, so the attach thread never goes there: it stays at the
#     normal policy, the log says why, and clients attach.
# (An RLIMIT_NICE that allows nice 0, the systemd unit's LimitNICE=+0,
# also lets it leave SCHED_IDLE; raising the limit needs CAP_SYS_RESOURCE,
# which the test machines do not give, so that is not run here.)
. "$(dirname "$0")/functions.sh"
requires_cmd nbdsh setpriv prlimit ps

make_image "$TESTDIR/base.img" 8

# policy_of NAME: the scheduling class ps shows for nbdsrv's thread NAME
# (TS: normal, IDL: SCHED_IDLE).
policy_of() {
  ps -L -o cls=,comm= -p "$SRV_PID" | awk -v n="$1" '$2 == n { print $1 }'
}

# wait_policy NAME CLASS: until thread NAME is in CLASS, at most 10 s.
wait_policy() {
  local i=0
  while [ "$(policy_of "$1")" != "$2" ]; do
    i=$((i + 1))
    [ $i -lt 100 ] || fail "thread $1 is '$(policy_of "$1")', not $2:
$(ps -L -o tid,cls,comm -p "$SRV_PID")"
    sleep 0.1
  done
}

# attach_clients PREFIX N: N new clients at once, each writes its own
# block and reads it back.
attach_clients() {
  local pids="" i
  for i in $(seq "$2"); do
    nbdsh -u "nbd://127.0.0.1:$PORT/base@$1$i" -c "
data = b'$1$i'.ljust(4096, b'.')
h.pwrite(data, 4096 * $i)
h.flush()
assert h.pread(4096, 4096 * $i) == data
" &
    pids="$pids $!"
  done
  for i in $pids; do
    wait "$i" || fail "a new client ($1) could not attach, write and read"
  done
}

# --- privileged ----------------------------------------------------------
freezable_overlay_dir frz
truncate -s 32G "$TESTDIR/huge.img"

start_nbdsrv -v -e base="$TESTDIR/base.img" -e frz="$TESTDIR/base.img" \
  -e huge="$TESTDIR/huge.img" -o "$TESTDIR/ov"
thaw_on_exit
wait_policy nbdsrv-attach TS
[ "$(policy_of nbdsrv-w0)" = TS ] || fail "worker 0 is not at the normal policy"
attach_clients quiet 3
wait_policy nbdsrv-attach TS

# Creating an overlay on a frozen file system: SCHED_IDLE, left alone.
# (Under valgrind, the jobs before may have been slow enough to be
# switched back: then the next ones run at SCHED_IDLE again only once the
# log says so, and only what happens while the file system is frozen
# counts.)
count_log() { grep -c "$1" "$TESTDIR/nbdsrv.log" || true; }
rescues() { count_log "no progress for"; }
i=0
while [ "$(count_log "overlays opened at SCHED_IDLE again")" != "$(rescues)" ]; do
  i=$((i + 1)); [ $i -lt 100 ] || fail "jobs not back at SCHED_IDLE after 10 s"
  sleep 0.1
done
rescues_before=$(rescues)
fsfreeze -f "$FREEZABLE" || fail "cannot freeze"
timeout 60 nbdsh -u "$(uri frz@f1)" -c "
data = b'f1'.ljust(4096, b'.')
h.pwrite(data, 0)
h.flush()
assert h.pread(4096, 0) == data
" &
f1=$!
on_exit "kill $f1 2>/dev/null"
wait_policy nbdsrv-attach IDL
sleep 0.5   # 25 times the watcher's patience
[ "$(policy_of nbdsrv-attach)" = IDL ] ||
  fail "the attach thread, waiting for a frozen file system, left SCHED_IDLE"
kill -0 "$f1" 2>/dev/null || fail "client f1 attached on a frozen file system"
[ "$(rescues)" = "$rescues_before" ] ||
  fail "the watcher took a thread waiting for a disk for a starved one"
fsfreeze -u "$FREEZABLE" || fail "cannot thaw"
wait "$f1" || fail "client f1 could not attach, write and read after the thaw"
wait_policy nbdsrv-attach TS

# An overlay whose journal takes real CPU to replay: its client trims
# its 32 GiB disk but the first block of every 16 MiB (2048 trims of 4095
# blocks, none a whole chunk of the map: each sets its blocks one by one),
# flushes and goes; the janitor closes the overlay.
nbdsh -u "$(uri huge@big)" -c "
for i in range(2048):
    h.trim(4095 * 4096, (i * 4096 + 1) * 4096)
h.flush()
" || fail "client big could not trim its disk"
wait_log "overlay .*/huge/big: closed (idle)" "the close of big's overlay"

# Keep every CPU busy (bounded: the hogs stop by themselves after 60 s).
hogs=""
for _ in $(seq $((2 * $(nproc)))); do
  timeout 60 sh -c 'while :; do :; done' &
  hogs="$hogs $!"
done
on_exit "kill $hogs 2>/dev/null"
sleep 0.5
timeout 50 nbdsh -u "$(uri huge@big)" -c "
assert h.pread(4096, 5 << 30) == bytes(4096)
" || fail "client big could not come back while the CPUs were busy"
attach_clients busy 4
kill $hogs 2>/dev/null
wait $hogs 2>/dev/null || true   # they end by SIGTERM
grep -q "attach thread: no progress for .* ms at SCHED_IDLE: normal scheduling" \
  "$TESTDIR/nbdsrv.log" || fail "no switch back to the normal policy in the log:
$(tail -30 "$TESTDIR/nbdsrv.log")"
wait_log "attach thread: queue empty: overlays opened at SCHED_IDLE again" \
  "the return to SCHED_IDLE"
stop_nbdsrv || fail "nbdsrv exited $? after the busy phase"

# --- unprivileged: cannot come back from SCHED_IDLE, so never goes there --
cat >"$TESTDIR/unpriv.sh" <<EOF
#!/bin/sh
exec prlimit --nice=0 setpriv --bounding-set=-sys_nice -- "$NBDSRV" "\$@"
EOF
chmod +x "$TESTDIR/unpriv.sh"
: >"$TESTDIR/nbdsrv.log"
NBDSRV="$TESTDIR/unpriv.sh" start_nbdsrv -v -e base="$TESTDIR/base.img" \
  -o "$TESTDIR/ov"
attach_clients unpriv 3
[ "$(policy_of nbdsrv-attach)" = TS ] ||
  fail "unprivileged attach thread is '$(policy_of nbdsrv-attach)', not TS"
grep -q "attach thread: no CAP_SYS_NICE and RLIMIT_NICE below nice 0" \
  "$TESTDIR/nbdsrv.log" || fail "no log line on the missing privilege"
stop_nbdsrv || fail "unprivileged nbdsrv exited $?"
exit 0
