#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# test_server_37_visibility: what the server tells its admin, without -v.
#   - a client asking for an unknown export: the log names what it asked
#     for (quoted, escaped and cut short: it comes from the network) and
#     the exports;
#   - refused clients (deny list, drained export, a malformed request, a
#     connection over max-connections-per-address): one line each, with
#     the address, the export and the client ID where known, and why;
#   - a write over the export's quota and a write to a full overlay file
#     system (a small tmpfs): one line each, with EXPORT/ID and the cause;
#   - a flood of 1000 bad connections (refused, unknown exports, garbage)
#     gives a bounded number of lines, and "suppressed" lines account for
#     every message left out;
#   - nbdsrv ctl exports, as a table and as JSON: per export its policy,
#     image (file or store) and the version a new client gets, drained or
#     not, connected clients and connections, overlays on disk and the
#     space they take, quota; all checked against the facts.
. "$(dirname "$0")/functions.sh"
[ "$(id -u)" = 0 ] || skip "needs root to mount a small tmpfs"

make_image "$TESTDIR/base.img" 8
store=$TESTDIR/store
mkdir -p "$store"
cp "$TESTDIR/base.img" "$store/0001.img"
/usr/bin/python3 -c '
import random, sys
open(sys.argv[1], "wb").write(random.Random(2).randbytes(8 << 20))' "$store/0002.img"
ln -s 0002.img "$store/current"
# The overlays of export "full" live on a 2 MiB tmpfs.
mkdir -p "$TESTDIR/ov" "$TESTDIR/fullfs"
mount -t tmpfs -o size=2m nbdroot-test "$TESTDIR/fullfs" || skip "cannot mount tmpfs"
on_exit "umount -l '$TESTDIR/fullfs'"
ln -s "$TESTDIR/fullfs" "$TESTDIR/ov/full"
cat >"$TESTDIR/nbdsrv.conf" <<CONF
[generic]
overlay-dir = $TESTDIR/ov
max-connections-per-address = 3

[base]
image = $TESTDIR/base.img
deny = 127.0.0.9, 127.0.0.10
quota = 256K

[store]
image = $store
policy = reset-on-boot

[full]
image = $TESTDIR/base.img

[gone]
image = $TESTDIR/base.img
CONF
start_nbdsrv -c "$TESTDIR/nbdsrv.conf"
export PORT
LOG=$TESTDIR/nbdsrv.log
# has TEXT WHAT: the log has a line containing TEXT (fixed string).
has() {
  local i=0
  until grep -qF -- "$1" "$LOG"; do
    i=$((i + 1))
    [ $i -lt 300 ] || fail "$2: no line with '$1' in the log:
$(tail -20 "$LOG")"
    sleep 0.1
  done
}

# ---- turned away: unknown export, refusals ----
/usr/bin/python3 "$srcdir/server-lib.py" "$TESTDIR" <<'PY' || fail "turning clients away"
# Clients that say goodbye (NBD_OPT_ABORT): no "closing connection" lines
# before the flood, which counts them.
def bye(r):
    r.send_opt(OPT_ABORT)
    r.expect_closed("abort")
    r.close()

def go(name, src=None):
    r = Raw(src)
    r.greeting()
    rtype, _ = r.go(name)
    bye(r)
    return rtype

check(go('nosuch\x01"x') == REP_ERR_UNKNOWN, "unknown export not NBD_REP_ERR_UNKNOWN")
check(go("long" * 60) == REP_ERR_UNKNOWN, "a long unknown name")
check(go("base", src="127.0.0.9") == REP_ERR_POLICY, "denied address not refused")
check(go("base@bad!id") == REP_ERR_INVALID, "a malformed ID not refused")
# Over max-connections-per-address: the 4th is refused, with the reason.
held = [Raw("127.0.0.5") for _ in range(3)]
for r in held:
    r.greeting()
check(go("base", src="127.0.0.5") == REP_ERR_POLICY,
      "the 4th connection from 127.0.0.5 was not refused")
for r in held:
    bye(r)
PY
has '127.0.0.1: unknown export "nosuch\x01\x22x"; the exports are: base, store, full, gone' \
  "unknown export"
# A long name is cut short: the line stays readable.
has "127.0.0.1: unknown export \"$(printf 'long%.0s' $(seq 30))lo...\"; the exports are" \
  "a long unknown export"
has "127.0.0.9: refused export base as client 127.0.0.9: this address is denied access to the export" \
  "refused by the deny list"
has '127.0.0.1: refused export request "base@bad!id": client ID must be' "malformed request"
has "127.0.0.5: refused connection: too many connections from this address (max-connections-per-address)" "over the limit"
"$NBDSRV" ctl -s "$TESTDIR/ctl.sock" drain gone >/dev/null || fail "ctl drain"
/usr/bin/python3 "$srcdir/server-lib.py" <<'PY' || fail "drained export"
r = Raw()
r.greeting()
check(r.go("gone@late")[0] == REP_ERR | 7, "drained export not NBD_REP_ERR_SHUTDOWN")
r.send_opt(OPT_ABORT)
r.expect_closed("abort")
r.close()
PY
has "127.0.0.1: refused export gone as client late: the export is being drained" "drained"

# ---- no room: quota, full file system ----
/usr/bin/python3 "$srcdir/server-lib.py" "$TESTDIR" <<'PY' || fail "quota and full file system"
q = connect("base@q")
q.pwrite(b"q" * (256 << 10), 0)
expect_error(lambda: q.pwrite(b"q" * 4096, 1 << 20), errno.ENOSPC, "write over the quota")
q.shutdown()
f = connect("full@a")
full = False
for i in range(32):
    try:
        f.pwrite(pattern(i, 256 << 10), i * (256 << 10))
    except nbd.Error as e:
        check(nbd_errno(e) == errno.ENOSPC, "filling: expected ENOSPC, got %s" % e)
        full = True
        break
check(full, "the 2 MiB tmpfs never filled up")
expect_error(lambda: f.pwrite(b"x" * 3000, (7 << 20) + 17), errno.ENOSPC, "unaligned write on a full fs")
f.shutdown()
PY
has "overlay base/q (127.0.0.1): write of 4096 bytes at 1048576 refused: the overlay is at its quota of 256K" \
  "write over the quota"
has "overlay full/a (127.0.0.1): write of 3000 bytes at 7340049 failed: the overlay file system is full ($TESTDIR/ov)" \
  "write to a full file system"

# ---- nbdsrv ctl exports ----
/usr/bin/python3 "$srcdir/server-lib.py" "$TESTDIR" <<'PY' || fail "nbdsrv ctl exports"
import json
tdir = sys.argv[1]
exe = os.environ.get("NBDSRV_UNDER_VALGRIND") or os.environ["NBDSRV"]

def ctl(*args):
    r = subprocess.run([exe, "ctl", "-s", tdir + "/ctl.sock"] + list(args),
                       capture_output=True, text=True)
    check(r.returncode == 0, "ctl %s: exit %d: %s" % (args, r.returncode, r.stderr))
    return r.stdout

def on_disk(export):
    """(overlays, bytes) under OVERLAY_DIR/EXPORT, as the server counts."""
    d = tdir + "/ov/" + export
    n = used = 0
    for name in os.listdir(d) if os.path.isdir(d) else []:
        st = os.lstat(os.path.join(d, name))
        if not stat.S_ISREG(st.st_mode):
            continue
        used += st.st_blocks * 512
        n += name.endswith(".map")
    return n, used

def stable(fn):
    """fn() while the files do not change under it (the janitor may be
    syncing an idle overlay): (what fn returned, the disk facts)."""
    for _ in range(50):
        before = {e: on_disk(e) for e in ("base", "store", "full", "gone")}
        out = fn()
        if before == {e: on_disk(e) for e in ("base", "store", "full", "gone")}:
            return out, before
        time.sleep(0.2)
    raise TestFailure("overlay files kept changing")

import stat
c1a, c1b = connect("base@c1"), connect("base@c1")
c2 = connect("base@c2", src="127.0.0.2")
c1a.pwrite(b"1" * 8192, 0)
c1a.flush()
s1 = connect("store@s1", src="127.0.0.3")  # on 0002.img, the current version
os.unlink(tdir + "/store/current")     # publish 0001 for new clients
os.symlink("0001.img", tdir + "/store/current")

rows, disk = stable(lambda: {r["name"]: r for r in json.loads(ctl("--json", "exports"))})
log(json.dumps(rows, indent=1))
check(list(rows) == ["base", "store", "full", "gone"], "exports: %s" % list(rows))
b, s, f, g = rows["base"], rows["store"], rows["full"], rows["gone"]
img = os.path.realpath(tdir + "/base.img")
check(b["policy"] == "persistent" and b["image"] == tdir + "/base.img" and
      b["image_type"] == "file" and b["current"] == img and
      b["version"] == "base.img" and b["quota"] == 256 << 10 and not b["drained"],
      "base: %r" % b)
check(b["clients"] == 2 and b["connections"] == 3, "base clients: %r" % b)
check(s["policy"] == "reset-on-boot" and s["image_type"] == "store" and
      s["image"] == tdir + "/store" and s["version"] == "0001.img" and
      s["current"] == os.path.realpath(tdir + "/store/0001.img") and
      s["quota"] == 0 and s["clients"] == 1 and s["connections"] == 1,
      "store: %r" % s)
check(g["drained"] and g["clients"] == 0 and not b["drained"], "gone: %r" % g)
for name, r in rows.items():
    check((r["overlays"], r["overlay_bytes"]) == disk[name],
          "%s: overlays %d, %d bytes; on disk %s" % (name, r["overlays"], r["overlay_bytes"], disk[name]))
# q, c1, c2 on base (the drained export refused its only client); a on full.
check(disk["base"][0] == 3 and disk["full"][0] == 1 and disk["gone"][0] == 0,
      "overlay counts on disk: %s" % disk)
check(disk["full"][1] > 1 << 20, "the full tmpfs holds %d bytes" % disk["full"][1])
# The connected client of the store is still on the version it began with.
check([r["image"] for r in json.loads(ctl("--json", "list")) if r["id"] == "s1"] == ["0002.img"],
      "s1 moved off its version")

table, disk = stable(lambda: ctl("exports"))
log(table)
lines = table.splitlines()
check(lines[0].split() == ["EXPORT", "POLICY", "STATE", "CLIENTS", "CONNS", "OVERLAYS",
                           "USED", "QUOTA", "TYPE", "VERSION", "IMAGE"], "header: %r" % lines[0])
cells = {l.split()[0]: l.split() for l in lines[1:-1]}
check(cells["base"][:6] == ["base", "persistent", "serving", "2", "3", "3"] and
      cells["base"][7:] == ["256K", "file", "base.img", tdir + "/base.img"], "base row: %r" % cells["base"])
check(cells["store"][:6] == ["store", "reset-on-boot", "serving", "1", "1", str(disk["store"][0])] and
      cells["store"][7:] == ["none", "store", "0001.img", tdir + "/store"], "store row: %r" % cells["store"])
check(cells["gone"][2] == "drained" and cells["full"][5] == "1", "gone/full rows: %r" % cells)
check(lines[-1] == "4 exports", "last line: %r" % lines[-1])
for h in (c1a, c1b, c2, s1):
    h.shutdown()
PY

# ---- a flood of bad connections ----
before=$(wc -l <"$LOG")
/usr/bin/python3 "$srcdir/server-lib.py" "$TESTDIR" <<'PY' || fail "flood"
import json
tdir = sys.argv[1]
counts = {"refusals": 0, "unknown exports": 0, "closed connections": 0}
t0 = time.monotonic()
for i in range(1000):
    kind = ("refusals", "unknown exports", "closed connections")[i % 3]
    try:
        r = Raw("127.0.0.10")
        r.greeting()
        if kind == "closed connections":
            r.send(b"not an NBD option")        # a bad option magic
        else:
            want = REP_ERR_POLICY if kind == "refusals" else REP_ERR_UNKNOWN
            rtype, _ = r.go("base" if kind == "refusals" else "flood%d" % i)
            check(rtype == want, "flood %d: reply %#x" % (i, rtype))
            r.send_opt(OPT_ABORT)
        r.expect_closed("flood %d" % i)
    except Closed:
        kind = "refusals"   # turned away at accept (per-address limit)
    r.close()
    counts[kind] += 1
seconds = time.monotonic() - t0
json.dump({"counts": counts, "seconds": seconds}, open(tdir + "/flood.json", "w"))
log("flood: %s in %.1f s" % (counts, seconds))
PY
stop_nbdsrv || fail "nbdsrv exited with $? on SIGTERM"
/usr/bin/python3 - "$TESTDIR" "$before" <<'PY' || fail "flood: the log lines do not add up"
import json, math, re, sys
tdir, before = sys.argv[1], int(sys.argv[2])
flood = json.load(open(tdir + "/flood.json"))
lines = open(tdir + "/nbdsrv.log", errors="replace").read().splitlines()
kinds = {"refusals": ": refused ", "unknown exports": ": unknown export ",
         "closed connections": "closing connection from "}
# Every message is in the log or counted in a "suppressed" line.  (Fewer
# than 10 of each kind came before the flood: none of them suppressed.)
for kind, text in kinds.items():
    shown = sum(text in l and "127.0.0.10" in l for l in lines[before:])
    gone = sum(int(m.group(1)) for l in lines[before:] for m in
               [re.search(r"(\d+) similar messages suppressed \(%s," % kind, l)] if m)
    want = flood["counts"][kind]
    if shown + gone != want:
        sys.exit("%s: %d shown + %d suppressed, but %d happened" % (kind, shown, gone, want))
# At most 10 lines a second per kind, and one "suppressed" line: over
# the seconds the flood spanned, a bound well under its 1000 messages
# when it took less than 30 s.
spanned = math.ceil(flood["seconds"]) + 1
flood_lines = sum(any(t in l for t in kinds.values()) or "similar messages suppressed" in l
                  for l in lines[before:])
bound = len(kinds) * 11 * spanned
print("flood: %d log lines in %.1f s (bound %d)" % (flood_lines, flood["seconds"], bound))
if flood_lines > bound:
    sys.exit("%d log lines for the flood, more than %d" % (flood_lines, bound))
if 1000 > bound and not any("similar messages suppressed" in l for l in lines[before:]):
    sys.exit("no suppressed line after the flood")
PY
exit 0
