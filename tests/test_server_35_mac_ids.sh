#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# test_server_35_mac_ids: a client ID that is a MAC address names one
# client however it is spelled (':' or '-', any case); the canonical
# spelling, the agent's, is lower case with dashes.
#   - a pin written with colons and upper case admits a client sending the
#     agent's spelling, and a pin in the agent's spelling admits one
#     sending colons; both refuse other addresses;
#   - NAME@40:01:1C:47:44:1E and NAME@40-01-1c-47-44-1e reach one overlay
#     (written through one, read through the other), stored under the
#     canonical name; an ID that is an IP address keeps its name;
#   - nbdsrv ctl kick and reset take the MAC with colons;
#   - overlays left under another spelling of a MAC (as earlier servers
#     named them) are renamed at start-up and served with their data,
#     also when a crash cut the renaming short (old map beside the new
#     data file); when the canonical name exists too, or two spellings of
#     one MAC do, nothing is renamed or changed, the log says so, and the
#     client gets its canonical overlay.
. "$(dirname "$0")/functions.sh"

make_image "$TESTDIR/base.img" 8
mkdir -p "$TESTDIR/ov"
cat >"$TESTDIR/nbdsrv.conf" <<CONF
[generic]
overlay-dir = $TESTDIR/ov

[lab]
image = $TESTDIR/base.img
require-pin = true
pin = 40:01:1C:47:44:1E 127.0.0.2
pin = 40-01-1c-47-44-2a 127.0.0.3

[open]
image = $TESTDIR/base.img
CONF
"$NBDSRV" -c "$TESTDIR/nbdsrv.conf" --check-config >/dev/null || fail "--check-config"
start_nbdsrv -c "$TESTDIR/nbdsrv.conf"
export PORT NBDSRV

/usr/bin/python3 "$srcdir/server-lib.py" "$TESTDIR" <<'PY' || fail "MAC IDs"
tdir = sys.argv[1]
ov = tdir + "/ov"
base = open(tdir + "/base.img", "rb").read()
exe = os.environ.get("NBDSRV_UNDER_VALGRIND") or os.environ["NBDSRV"]

def allowed(name, src):
    r = Raw(src)
    r.greeting()
    rtype, _ = r.go(name)
    r.close()
    check(rtype in (REP_ACK, REP_ERR_POLICY), "%s from %s: reply %#x" % (name, src, rtype))
    return rtype == REP_ACK

def ctl(*args):
    r = subprocess.run([exe, "ctl", "-s", tdir + "/ctl.sock"] + list(args),
                       capture_output=True, text=True)
    return r.returncode, r.stdout + r.stderr

def write(name, src, data, off=0):
    h = connect(name, src=src)
    h.pwrite(data, off)
    h.flush()
    h.shutdown()

def read(name, src, n, off=0):
    h = connect(name, src=src)
    got = h.pread(n, off)
    h.shutdown()
    return got

# Pins: admin's spelling against the agent's, and the other way round.
for mac in ("40-01-1c-47-44-1e", "40:01:1c:47:44:1e", "40:01:1C:47:44:1E", "40-01-1C-47-44-1E"):
    check(allowed("lab@" + mac, "127.0.0.2"), "lab@%s from its pinned address refused" % mac)
    check(not allowed("lab@" + mac, "127.0.0.4"), "lab@%s from another address got in" % mac)
for mac in ("40:01:1C:47:44:2A", "40:01:1c:47:44:2a", "40-01-1c-47-44-2a"):
    check(allowed("lab@" + mac, "127.0.0.3"), "lab@%s from its pinned address refused" % mac)
    check(not allowed("lab@" + mac, "127.0.0.2"), "lab@%s from another client's address got in" % mac)

# One overlay, whichever spelling writes or reads.
a, b = pattern("a", 8192), pattern("b", 4096)
write("lab@40:01:1C:47:44:1E", "127.0.0.2", a)
check_data(read("lab@40-01-1c-47-44-1e", "127.0.0.2", 8192), a, "written with colons, read as the agent")
write("lab@40-01-1c-47-44-1e", "127.0.0.2", b, 1 << 20)
check_data(read("lab@40:01:1c:47:44:1E", "127.0.0.2", 4096, 1 << 20), b, "written as the agent, read with colons")
check(sorted(os.listdir(ov + "/lab")) == ["40-01-1c-47-44-1e.data", "40-01-1c-47-44-1e.lock",
                                         "40-01-1c-47-44-1e.map", "40-01-1c-47-44-2a.data",
                                         "40-01-1c-47-44-2a.lock", "40-01-1c-47-44-2a.map"],
      "overlay files: %s" % sorted(os.listdir(ov + "/lab")))
write("open", "127.0.0.1", b)
check(os.path.exists(ov + "/open/127.0.0.1.map"), "the address identity's overlay: %s" % os.listdir(ov + "/open"))

# ctl kick and reset with colons.
for who in ("40:01:1C:47:44:1E", "lab/40:01:1c:47:44:1e"):
    h = connect("lab@40-01-1c-47-44-1e", src="127.0.0.2")
    rc, out = ctl("kick", who)
    check(rc == 0 and "kicked 1 connection" in out, "kick %s: %d %r" % (who, rc, out))
    wait_for(lambda: dead(h), "the connection kicked as %s to close" % who)
def reset():
    rc, out = ctl("reset", "lab/40:01:1C:47:44:1E")
    check(rc == 0 or "connected" in out or "being closed" in out, "reset: %r" % out)
    return rc == 0
wait_for(reset, "reset lab/40:01:1C:47:44:1E to succeed")
check(not os.path.exists(ov + "/lab/40-01-1c-47-44-1e.map"), "reset left the overlay")
check_data(read("lab@40-01-1c-47-44-1e", "127.0.0.2", 8192), base[:8192], "after reset")

# Overlays for the restart below, each made under the canonical name.
write("lab@40-01-1c-47-44-1e", "127.0.0.2", pattern("c", 4096))
write("lab@40-01-1c-47-44-2a", "127.0.0.3", pattern("d", 4096))
write("open@52-54-00-00-00-01", None, pattern("e", 4096))
for n in ("one", "two", "three"):
    write("open@tmp-" + n, None, pattern(n, 4096))
PY
stop_nbdsrv || fail "nbdsrv exited with $? on SIGTERM"

# Rename them as an earlier server would have named them.
(
  cd "$TESTDIR/ov"
  mv lab/40-01-1c-47-44-2a.map lab/40:01:1C:47:44:2A.map
  mv lab/40-01-1c-47-44-2a.data lab/40:01:1C:47:44:2A.data
  # A crash between the two renames: the old map beside the new data file.
  mv lab/40-01-1c-47-44-1e.map lab/40:01:1c:47:44:1e.map
  # Two overlays of one client: the canonical one and an old spelling.
  for f in map data; do mv open/tmp-one.$f open/52:54:00:00:00:01.$f; done
  # Two old spellings of one MAC, no canonical one.
  for f in map data; do mv open/tmp-two.$f open/52:54:00:00:00:0A.$f; done
  for f in map data; do mv open/tmp-three.$f open/52:54:00:00:00:0a.$f; done
) || fail "renaming overlays by hand"
untouched=$(cd "$TESTDIR/ov/open" && sha256sum 52:54:00:00:00:01.* 52:54:00:00:00:0[Aa].*)

start_nbdsrv -c "$TESTDIR/nbdsrv.conf"
grep -q "overlay .*/lab/40:01:1C:47:44:2A: renamed to 40-01-1c-47-44-2a" "$TESTDIR/nbdsrv.log" ||
  fail "no log line for the renamed overlay"
grep -q "overlay .*/lab/40:01:1c:47:44:1e: renamed to 40-01-1c-47-44-1e" "$TESTDIR/nbdsrv.log" ||
  fail "no log line for the half-renamed overlay"
grep -q "overlay .*/open/52:54:00:00:00:01: left as it is: .*/open/52-54-00-00-00-01, the same client's overlay" \
  "$TESTDIR/nbdsrv.log" || fail "no warning about two overlays of one client"
for id in 52:54:00:00:00:0A 52:54:00:00:00:0a; do
  grep -q "overlay .*/open/$id: left as it is: .* names the same MAC" "$TESTDIR/nbdsrv.log" ||
    fail "no warning about $id"
done
# (Lock files, overlay-lock.c, stay under the name that made them.)
[ "$(ls "$TESTDIR/ov/lab" | grep -v '\.lock$' | sort | tr '\n' ' ')" = \
  "40-01-1c-47-44-1e.data 40-01-1c-47-44-1e.map 40-01-1c-47-44-2a.data 40-01-1c-47-44-2a.map " ] ||
  fail "lab overlays after the restart: $(ls "$TESTDIR/ov/lab")"

/usr/bin/python3 "$srcdir/server-lib.py" "$TESTDIR" <<'PY' || fail "overlays under old names"
tdir = sys.argv[1]
base = open(tdir + "/base.img", "rb").read()

def read(name, src):
    h = connect(name, src=src)
    got = h.pread(4096, 0)
    h.shutdown()
    return got

check_data(read("lab@40:01:1c:47:44:2a", "127.0.0.3"), pattern("d", 4096), "renamed overlay")
check_data(read("lab@40-01-1c-47-44-2a", "127.0.0.3"), pattern("d", 4096), "renamed overlay, agent's spelling")
check_data(read("lab@40-01-1c-47-44-1e", "127.0.0.2"), pattern("c", 4096), "half-renamed overlay")
check_data(read("open@52:54:00:00:00:01", None), pattern("e", 4096), "the canonical of two overlays")
check_data(read("open@52:54:00:00:00:0a", None), base[:4096], "a MAC with two old spellings")
PY
[ "$(cd "$TESTDIR/ov/open" && sha256sum 52:54:00:00:00:01.* 52:54:00:00:00:0[Aa].*)" = "$untouched" ] ||
  fail "overlays left under old names were changed"
stop_nbdsrv || fail "nbdsrv exited with $? on SIGTERM"
exit 0
