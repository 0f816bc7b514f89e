#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# test_server_15_long_journal: the overlay journal over many records.  Thousands of
# small writes, zeroes and trims to a few blocks (a journal much longer
# than its map, so the server compacts it when it syncs the overlay) read
# back exactly: after a SIGTERM, after a kill -9 following more flushed
# writes, and after the server closed the idle overlay and reopened it.
. "$(dirname "$0")/functions.sh"

make_image "$TESTDIR/base.img" 16
srv_args=(-e base="$TESTDIR/base.img" -o "$TESTDIR/ov")
start_nbdsrv "${srv_args[@]}"
export PORT

phase() {
  SRV_PID=$SRV_PID /usr/bin/python3 "$srcdir/server-lib.py" "$TESTDIR" "$@" <<'PY'
tdir, what = sys.argv[1], sys.argv[2]
base = open(tdir + "/base.img", "rb").read()
mpath = tdir + "/model.bin"
m = bytearray(open(mpath, "rb").read()) if os.path.exists(mpath) else bytearray(base)
h = connect("base@cmp")

def churn(seed, n):
    rnd = random.Random(seed)
    for i in range(n):
        blk = rnd.randrange(0, 64) * 2          # even blocks: records never merge
        off = blk * 4096
        r = rnd.random()
        if r < 0.7:
            d = pattern((seed, i), 4096)
            h.pwrite(d, off); m[off:off + 4096] = d
        elif r < 0.8:
            o2, ln = off + rnd.randrange(0, 4000), rnd.randrange(1, 96)
            d = pattern((seed, i, "p"), ln)
            h.pwrite(d, o2); m[o2:o2 + ln] = d
        elif r < 0.9:
            h.zero(4096, off); m[off:off + 4096] = bytes(4096)
        else:
            # TRIM leaves the block unspecified: rewrite it right after.
            h.trim(4096, off)
            d = pattern((seed, i, "t"), 4096)
            h.pwrite(d, off); m[off:off + 4096] = d

def verify(what):
    check_data(h.pread(len(base), 0), bytes(m), what)

if what == "churn":            # then SIGTERM
    churn("a", 3000)
    verify("after churn, same connection")
elif what == "flushed":        # then kill -9
    verify("after SIGTERM and restart")
    churn("b", 500)
    h.flush()
    verify("after more churn")
elif what == "idle":           # disconnect, wait for the idle close, reconnect
    verify("after kill -9 and restart")
    churn("c", 3000)
    h.shutdown()
    del h
    pid = int(os.environ["SRV_PID"])
    def map_closed():
        for fd in os.listdir("/proc/%d/fd" % pid):
            try:
                if os.readlink("/proc/%d/fd/%s" % (pid, fd)).endswith("/base/cmp.map"):
                    return False
            except OSError:
                pass
        return True
    wait_for(map_closed, "the server to close the idle overlay", timeout=60, interval=0.1)
    h = connect("base@cmp")
    verify("after the idle overlay was closed and reopened")
elif what == "final":
    verify("after idle close, kill -9 and restart")
open(mpath, "wb").write(m)
PY
}

phase churn || fail "churn"
stop_nbdsrv || fail "nbdsrv exited with $? on SIGTERM"
start_nbdsrv "${srv_args[@]}"
phase flushed || fail "journal after SIGTERM"
stop_nbdsrv KILL || true
start_nbdsrv "${srv_args[@]}"
phase idle || fail "journal after kill -9 / idle close"
stop_nbdsrv KILL || true
start_nbdsrv "${srv_args[@]}"
phase final || fail "journal after idle close and kill -9"
stop_nbdsrv || fail "nbdsrv exited with $? on SIGTERM"
