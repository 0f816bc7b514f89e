#!/bin/bash
# test_server_33: the attach thread's scheduling (attach.c).  It opens
# overlays at SCHED_IDLE, so that serving the clients already attached
# comes first, and goes back to the normal policy when it makes no
# progress while clients wait for their overlays:
#   - with nothing to do, the attach thread (nbdsrv-attach) is SCHED_IDLE,
#     next to the workers (nbdsrv-wN), which are not;
#   - with every CPU kept busy by other processes, which leave a thread
#     at SCHED_IDLE next to nothing, new clients still attach, write and
#     read: the log shows the switch back to the normal policy, and once
#     they are attached the thread is SCHED_IDLE again;
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

# --- privileged: SCHED_IDLE when idle, normal when a client waits ---------
start_nbdsrv -v -e base="$TESTDIR/base.img" -o "$TESTDIR/ov"
wait_policy nbdsrv-attach IDL
[ "$(policy_of nbdsrv-w0)" = TS ] || fail "worker 0 is not at the normal policy"
attach_clients quiet 3

# Keep every CPU busy (bounded: the hogs stop by themselves after 60 s).
hogs=""
for _ in $(seq $((2 * $(nproc)))); do
  timeout 60 sh -c 'while :; do :; done' &
  hogs="$hogs $!"
done
on_exit "kill $hogs 2>/dev/null"
sleep 0.5
attach_clients busy 4
kill $hogs 2>/dev/null
wait $hogs 2>/dev/null || true   # they end by SIGTERM
grep -q "attach thread: no progress for .* ms with clients waiting: normal scheduling" \
  "$TESTDIR/nbdsrv.log" || fail "no switch back to the normal policy in the log:
$(cat "$TESTDIR/nbdsrv.log")"
wait_policy nbdsrv-attach IDL
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
