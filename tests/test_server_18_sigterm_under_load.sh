#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# test_server_18_sigterm_under_load: SIGTERM under load.  A client keeps 32 writes in flight
# (256 KiB aligned ones that take the asynchronous path, 4 KiB ones,
# unaligned ones) when SIGTERM arrives: nbdsrv exits 0, and after a
# restart every acknowledged write is there (a clean stop loses nothing
# acknowledged); each 4 KiB block of a write that was in flight holds
# either the old or the new data.
. "$(dirname "$0")/functions.sh"

make_image "$TESTDIR/base.img" 64
srv_args=(-e base="$TESTDIR/base.img" -o "$TESTDIR/ov")
start_nbdsrv "${srv_args[@]}"
export PORT

/usr/bin/python3 "$srcdir/server-lib.py" "$TESTDIR" <<'PY' &
import json
tdir = sys.argv[1]
base = open(tdir + "/base.img", "rb").read()
SLOT = 256 << 10
nslots = len(base) // SLOT
acked = {}           # slot -> its acknowledged content
flight = {}          # slot -> (cookie, off in slot, data)
h = connect("base@load")
rnd = random.Random(7)
done = 0
marker = False
end = time.monotonic() + 30
dead = False
n = 0
while time.monotonic() < end and not dead:
    try:
        while len(flight) < 32:
            idle = [s for s in range(nslots) if s not in flight]
            s = rnd.choice(idle)
            kind = rnd.random()
            if kind < 0.4:
                o, ln = 0, SLOT
            elif kind < 0.8:
                o, ln = rnd.randrange(0, SLOT // 4096) * 4096, 4096
            else:
                o, ln = rnd.randrange(0, SLOT - 3000), rnd.randrange(1, 3000)
            data = pattern(("load", n), ln)
            n += 1
            c = h.aio_pwrite(nbd.Buffer.from_bytearray(data), s * SLOT + o)
            flight[s] = (c, o, data)
        h.poll(100)
        for s, (c, o, data) in list(flight.items()):
            if h.aio_command_completed(c):
                cur = bytearray(acked.get(s, base[s * SLOT:(s + 1) * SLOT]))
                cur[o:o + len(data)] = data
                acked[s] = bytes(cur)
                del flight[s]
                done += 1
    except nbd.Error:
        dead = True
    if done >= 500 and not marker:
        open(tdir + "/loaded", "w").write("1")
        marker = True
check(dead, "the connection was not closed by SIGTERM within 30 s")
check(done >= 500, "only %d writes completed" % done)
# The model: acknowledged content, plus what was in flight at the end.
import pickle
pickle.dump((acked, {s: (o, d) for s, (c, o, d) in flight.items()}),
            open(tdir + "/model.pickle", "wb"))
log("writes acknowledged: %d, in flight at the end: %d" % (done, len(flight)))
PY
client=$!
i=0
until [ -f "$TESTDIR/loaded" ]; do
  kill -0 $client 2>/dev/null || fail "the load client failed"
  i=$((i + 1)); [ $i -lt 300 ] || fail "the load client did not get going"
  sleep 0.1
done
kill -TERM "$SRV_PID"
i=0
while kill -0 "$SRV_PID" 2>/dev/null; do
  i=$((i + 1)); [ $i -lt 300 ] || fail "nbdsrv still running 30 s after SIGTERM"
  sleep 0.1
done
rc=0; wait "$SRV_PID" || rc=$?
[ $rc = 0 ] || fail "nbdsrv exited with $rc on SIGTERM under load"
wait $client || fail "the load client failed"

start_nbdsrv "${srv_args[@]}"
/usr/bin/python3 "$srcdir/server-lib.py" "$TESTDIR" <<'PY' || fail "acknowledged writes lost over SIGTERM"
import pickle
tdir = sys.argv[1]
base = open(tdir + "/base.img", "rb").read()
SLOT = 256 << 10
acked, flight = pickle.load(open(tdir + "/model.pickle", "rb"))
h = connect("base@load")
got = b"".join(h.pread(16 << 20, o) for o in range(0, len(base), 16 << 20))
for s in range(len(base) // SLOT):
    old = acked.get(s, base[s * SLOT:(s + 1) * SLOT])
    g = got[s * SLOT:(s + 1) * SLOT]
    if s not in flight:
        check_data(g, old, "slot %d (all its writes acknowledged)" % s)
        continue
    o, d = flight[s]
    new = bytearray(old); new[o:o + len(d)] = d
    for b in range(0, SLOT, 4096):
        check(g[b:b + 4096] in (old[b:b + 4096], bytes(new[b:b + 4096])),
              "slot %d block %d: neither old nor new data" % (s, b // 4096))
h.shutdown()
PY
stop_nbdsrv || fail "nbdsrv exited with $? on SIGTERM"
