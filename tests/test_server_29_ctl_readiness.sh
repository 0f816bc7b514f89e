#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# test_server_29_ctl_readiness: nbdsrv ctl and systemd readiness.
#   - the control socket is a root-only (0600) unix socket;
#   - list: every connected client with its export, ID, address, image
#     version, overlay data and request counts, as a table and as JSON;
#     connections are spread over both worker threads;
#   - kick: the client's connections close, it can reconnect;
#   - reset: refused while the client is connected; once it is gone, its
#     overlay files go and it starts again from the base image;
#   - drain: new clients of the export are refused (NBD_REP_ERR_SHUTDOWN),
#     connected ones carry on; resume lets them in again;
#   - bad commands and unknown names fail with a clear message, exit 1;
#     no server to talk to is exit 2;
#   - with NOTIFY_SOCKET set, nbdsrv sends READY=1 once it serves, and
#     STOPPING=1 on SIGTERM.
. "$(dirname "$0")/functions.sh"

make_image "$TESTDIR/base.img" 8
NOTIFY=$TESTDIR/notify.sock
/usr/bin/python3 - "$NOTIFY" >"$TESTDIR/notified" <<'PY' &
import socket, sys, time
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
s.settimeout(60)
try:
    while True:
        m = s.recv(4096).decode()
        print(m, flush=True)
        if "STOPPING=1" in m:
            break
except socket.timeout:
    pass
PY
listener=$!
on_exit "kill $listener 2>/dev/null"
for _ in $(seq 50); do [ -S "$NOTIFY" ] && break; sleep 0.1; done
NOTIFY_SOCKET=$NOTIFY start_nbdsrv -e base="$TESTDIR/base.img" -e other="$TESTDIR/base.img" \
  -o "$TESTDIR/ov" -t 2
export PORT
CTL=$TESTDIR/ctl.sock
ctl() { "$NBDSRV_UNDER_VALGRIND_OR_NOT" ctl -s "$CTL" "$@"; }
NBDSRV_UNDER_VALGRIND_OR_NOT=${NBDSRV_UNDER_VALGRIND:-$NBDSRV}

[ "$(stat -c %a "$CTL")" = 600 ] || fail "control socket mode $(stat -c %a "$CTL"), expected 600"
grep -q "READY=1" "$TESTDIR/notified" || fail "no READY=1 on NOTIFY_SOCKET"

/usr/bin/python3 "$srcdir/server-lib.py" "$TESTDIR" <<'PY' || fail "nbdsrv ctl"
tdir = sys.argv[1]
ctl_path = tdir + "/ctl.sock"
exe = os.environ.get("NBDSRV_UNDER_VALGRIND") or os.environ["NBDSRV"]
base = open(tdir + "/base.img", "rb").read()

def ctl(*args, want=0):
    r = subprocess.run([exe, "ctl", "-s", ctl_path] + list(args), capture_output=True, text=True)
    check(r.returncode == want, "ctl %s: exit %d (want %d): %s%s"
          % (" ".join(args), r.returncode, want, r.stdout, r.stderr))
    return r.stdout + r.stderr

a = connect("base@alpha")
a.pwrite(b"a" * 8192, 0)
a.pread(4096, 0)
b = connect("other", src="127.0.0.2")
table = ctl("list")
log(table)
check("alpha" in table and "127.0.0.2" in table and "base.img" in table and "2 connections" in table,
      "list table: %r" % table)
import json
j = json.loads(ctl("--json", "list"))
rows = {r["id"]: r for r in j}
check(set(rows) == {"alpha", "127.0.0.2"}, "list --json ids: %s" % sorted(rows))
al = rows["alpha"]
check(al["export"] == "base" and al["address"] == "127.0.0.1" and al["image"] == "base.img",
      "alpha row: %r" % al)
check(al["overlay_bytes"] == 8192 and al["requests"] == 2 and al["bytes_written"] == 8192
      and al["bytes_read"] == 4096, "alpha counters: %r" % al)
check(rows["127.0.0.2"]["export"] == "other", "other row")
# Connections are dealt out to both worker threads, not all to one.
more = [connect("base@spread%d" % i) for i in range(6)]
workers = {r["worker"] for r in json.loads(ctl("--json", "list"))}
check(workers == {0, 1}, "connections all on worker(s) %s" % sorted(workers))
for h in more:
    h.shutdown()

# kick
check("kicked 1 connection" in ctl("kick", "alpha"), "kick")
wait_for(lambda: dead(a), "the kicked connection to close")
a = connect("base@alpha")
check(a.pread(8192, 0) == b"a" * 8192, "alpha after the kick")
ctl("kick", "nobody", want=1)

# reset: not while connected
out = ctl("reset", "base/alpha", want=1)
check("connected" in out, "reset while connected: %r" % out)
a.flush()
a.shutdown()
time.sleep(0.3)
check("reset" in ctl("reset", "base/alpha"), "reset")
check(not os.path.exists(tdir + "/ov/base/alpha.map"), "overlay files left after reset")
a = connect("base@alpha")
check(a.pread(8192, 0) == base[:8192], "alpha after reset does not see the base")
a.shutdown()
ctl("reset", "base/nobody", want=1)
ctl("reset", "nosuch/alpha", want=1)
ctl("reset", "base/../x", want=1)

# drain / resume
ctl("drain", "base")
r = Raw()
r.greeting()
rtype, _ = r.go("base@late")
check(rtype == REP_ERR | 7, "drained export: reply %#x, expected NBD_REP_ERR_SHUTDOWN" % rtype)
r.close()
c = connect("other@fine")            # other exports are not drained
c.shutdown()
check(b.pread(4096, 0) == base[:4096], "a connected client of a drained export... (other)")
ctl("resume", "base")
connect("base@late").shutdown()
ctl("drain", "nosuch", want=1)

out = ctl("frobnicate", want=1)
check("unknown command" in out, "unknown command: %r" % out)
b.shutdown()
PY
rc=0; "$NBDSRV_UNDER_VALGRIND_OR_NOT" ctl -s "$TESTDIR/none.sock" list 2>"$TESTDIR/err" || rc=$?
[ $rc = 2 ] && grep -q "cannot connect to .*none.sock" "$TESTDIR/err" || fail "ctl without a server: exit $rc"
stop_nbdsrv || fail "nbdsrv exited with $? on SIGTERM"
wait $listener
grep -q "STOPPING=1" "$TESTDIR/notified" || fail "no STOPPING=1 on NOTIFY_SOCKET"
[ ! -e "$CTL" ] || fail "control socket left behind"
exit 0
