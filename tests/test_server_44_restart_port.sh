#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# test_server_44: a server restarted on the same port right after a
# kill -9 listens at once.
#   - each round: clients hold connections (the dead server's rings then
#     have requests in flight, so the kernel tears them down, and the
#     listening socket with them, only some time after the process is
#     gone), the server is killed with SIGKILL and a new one is started on
#     the same port as soon as the old one is reaped;
#   - no restart logs "address in use; waiting" (the old way: waiting for
#     the kernel to let go of the port), every one serves a client at
#     once, and the data flushed before each kill is there;
#   - a second server started on the port of a live one is still refused
#     (sharing the port with a dead server's socket must not let two live
#     servers share it).
. "$(dirname "$0")/functions.sh"
requires_cmd nbdsh nbdinfo

make_image "$TESTDIR/base.img" 8
args=(-e d="$TESTDIR/base.img" -o "$TESTDIR/ov")
start_nbdsrv "${args[@]}"

for round in 1 2 3 4 5 6; do
  # A client holds a connection of the dying server.
  timeout 30 nbdsh -u "$(uri d@c$round)" -c "
h.pwrite(b'%d' % $round * 4096, 0)
h.flush()
import time
time.sleep(30)
" 2>/dev/null &
  holder=$!
  wait_log "overlay .*c$round: created" "client c$round's connection"
  sleep 0.3
  kill -9 "$SRV_PID"
  wait "$SRV_PID" 2>/dev/null || true
  echo "--- round $round: restart" >>"$TESTDIR/nbdsrv.log"
  start_nbdsrv "${args[@]}"
  kill "$holder" 2>/dev/null || true
  wait "$holder" 2>/dev/null || true
  got=$(timeout 30 nbdsh -u "$(uri d@c$round)" -c "print(h.pread(4096, 0)[:8].decode())") ||
    fail "round $round: the restarted server does not serve"
  [ "$got" = "$(printf "$round%.0s" 1 2 3 4 5 6 7 8)" ] ||
    fail "round $round: flushed data lost (read '$got')"
done

if grep -q "address in use" "$TESTDIR/nbdsrv.log"; then
  fail "a restart waited for the port:
$(grep -B2 "address in use" "$TESTDIR/nbdsrv.log")"
fi
grep -c "sharing the port" "$TESTDIR/nbdsrv.log" >&2 || true

# A live server keeps its port to itself.
if timeout 30 "$NBDSRV" -f -l "127.0.0.1:$PORT" "${args[@]}" \
     -P "$TESTDIR/second.pid" --control-socket none >"$TESTDIR/second.log" 2>&1; then
  fail "a second server started on the port of a live one"
fi
grep -q "cannot listen on 127.0.0.1 port $PORT: Address already in use" "$TESTDIR/second.log" ||
  fail "the second server did not say the port is in use: $(cat "$TESTDIR/second.log")"
nbdinfo "$(uri d@c1)" >/dev/null || fail "the first server stopped serving"
stop_nbdsrv
