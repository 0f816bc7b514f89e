#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# test_server_49_minting: limits on creating overlays, and removing stale
# ones.
#   - max-overlays-per-address: a third new ID from one address is
#     refused (NBD_REP_ERR_POLICY, the message names the limit, libnbd
#     shows it) and leaves no file behind; its existing IDs still work;
#   - max-overlays: past it, no address gets a new overlay;
#   - max-overlay-space-per-address: once an address's overlays take that
#     much, it gets no new one; another address does;
#   - nbdsrv ctl overlays lists the overlays with their addresses;
#     --stale DAYS --remove removes those not written for DAYS days (and
#     their binding), after which the address may create one again.
. "$(dirname "$0")/functions.sh"

make_image "$TESTDIR/base.img" 8
mkdir -p "$TESTDIR/ov"
cat >"$TESTDIR/nbdsrv.conf" <<CONF
[generic]
overlay-dir = $TESTDIR/ov

[lab]
image = $TESTDIR/base.img
max-overlays = 3
max-overlays-per-address = 2

[sp]
image = $TESTDIR/base.img
max-overlay-space-per-address = 64K
CONF
start_nbdsrv -c "$TESTDIR/nbdsrv.conf"
export PORT NBDSRV

/usr/bin/python3 "$srcdir/server-lib.py" "$TESTDIR" <<'PY' || fail "minting"
tdir = sys.argv[1]
exe = os.environ.get("NBDSRV_UNDER_VALGRIND") or os.environ["NBDSRV"]

def ctl(*args):
    r = subprocess.run([exe, "ctl", "-s", tdir + "/ctl.sock"] + list(args),
                       capture_output=True, text=True)
    return r.returncode, r.stdout + r.stderr

def use(name, src, write=0):
    h = connect(name, src=src)
    if write:
        h.pwrite(pattern(name, write), 0)
        h.flush()
    h.shutdown()

def refused(name, src, limit):
    msgs = []
    h = nbd.NBD()
    h.set_debug_callback(lambda ctx, msg: msgs.append(msg))
    h.set_debug(True)
    h.set_export_name(name)
    s = tcp_socket(src)
    s.settimeout(None)
    try:
        h.connect_socket(s.detach())
    except nbd.Error as e:
        check("policy" in str(e), "%s: %s" % (name, e))
        check(any("server error message" in m and "(%s)" % limit in m for m in msgs),
              "%s from %s: no message naming %s: %s" % (name, src, limit, msgs))
    else:
        h.shutdown()
        raise TestFailure("%s from %s: a new overlay past %s" % (name, src, limit))
    export, id = name.split("@")
    left = [f for f in os.listdir(tdir + "/ov/" + export) if f.startswith(id + ".")]
    check(not left, "%s: files left by a refused client: %s" % (name, left))

use("lab@a", "127.0.0.2", 4096)
use("lab@b", "127.0.0.2")
refused("lab@c", "127.0.0.2", "max-overlays-per-address")
use("lab@a", "127.0.0.2")
use("lab@d", "127.0.0.3")
refused("lab@e", "127.0.0.3", "max-overlays")
refused("lab@127.0.0.4", "127.0.0.4", "max-overlays")

use("sp@x", "127.0.0.4", 128 << 10)
refused("sp@y", "127.0.0.4", "max-overlay-space-per-address")
use("sp@z", "127.0.0.5")

rc, out = ctl("overlays", "lab")
check(rc == 0, "ctl overlays: " + out)
rows = {l.split()[0]: l.split()[1] for l in out.splitlines() if "days ago" in l}
check(rows == {"a": "127.0.0.2", "b": "127.0.0.2", "d": "127.0.0.3"}, "overlays: %s" % out)

# a was last written ten days ago.
old = time.time() - 10 * 86400
for f in ("a.map", "a.data"):
    os.utime(tdir + "/ov/lab/" + f, (old, old))
rc, out = ctl("overlays", "lab", "--stale", "5")
check(rc == 0 and "a " in out and "b " not in out, "stale list: " + out)
rc, out = ctl("overlays", "lab", "--stale", "5", "--remove")
check(rc == 0 and "removed a" in out, "stale removal: " + out)
# (Its lock file may stay: overlay-lock.c.)
left = [f for f in os.listdir(tdir + "/ov/lab") if f.startswith("a.") and f != "a.lock"]
check(not left, "files of a left: %s" % left)
rc, out = ctl("overlays", "lab", "--remove")
check(rc == 1 and "usage" in out, "--remove without --stale: %d %s" % (rc, out))
use("lab@c", "127.0.0.2")
PY
stop_nbdsrv || fail "nbdsrv exit status $?"
exit 0
