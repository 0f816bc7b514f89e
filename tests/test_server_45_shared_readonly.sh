#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# test_server_45_shared_readonly: policy = shared-readonly, the lower layer
# of a layered root.
#   - nbdinfo and libnbd see a read-only export (multi-conn allowed);
#     writes, trims and zeroes fail with EPERM, a flush succeeds; block
#     status says data; no overlay file is created for any client;
#   - NBD_INFO_DESCRIPTION is "nbdroot-base NAME VERSION sha256:HEX",
#     parsed here and checked against the store's .meta; nbdsrv ctl list
#     shows it;
#   - a client with a boot id keeps the version current at its first
#     connection of that boot across reconnects after `current` moved,
#     and gets the new current one with a new boot id;
#   - a client without boot id is pinned by address until it has had no
#     connection for shared-pin-timeout (short here), then gets current;
#   - pins survive a restart of the server (with and without boot id);
#   - imgtool gc keeps the pinned versions and removes one no longer
#     pinned after nbdsrv ctl reset dropped its client's pin.
. "$(dirname "$0")/functions.sh"

store=$TESTDIR/store
os=$store/os
mkdir -p "$os" "$TESTDIR/ov"
# version N: 4 MiB of pseudo-random data (seed N) and its .meta.
version() {
  /usr/bin/python3 -c '
import random, sys
open(sys.argv[1], "wb").write(random.Random(int(sys.argv[2])).randbytes(4 << 20))' \
    "$os/000$1.img" "$1"
  chmod 0444 "$os/000$1.img"
  printf 'id=000%s\nname=os\nuuid=-\nsha256=%s\nsize=%s\ncreated=0\nsource=test\n' \
    "$1" "$(sha256sum <"$os/000$1.img" | cut -d' ' -f1)" $((4 << 20)) >"$os/000$1.meta"
}
set_current() { ln -sfn "000$1.img" "$os/current.tmp" && mv -T "$os/current.tmp" "$os/current"; }
for v in 1 2 3 4; do version $v; done
set_current 1

conf() {
  cat >"$TESTDIR/nbdsrv.conf" <<CONF
[generic]
overlay-dir = $TESTDIR/ov
shared-pin-timeout = $1

[os]
image = $os
policy = shared-readonly
CONF
}
conf 2
"$NBDSRV" --check-config -c "$TESTDIR/nbdsrv.conf" >"$TESTDIR/check.out" 2>&1 ||
  fail "--check-config refuses policy = shared-readonly: $(cat "$TESTDIR/check.out")"
grep -q "export 'os' serves client IDs that are not pinned: .* change the version that client's reconnections read" "$TESTDIR/check.out" ||
  fail "--check-config: no warning about unpinned IDs of a shared-readonly export: $(cat "$TESTDIR/check.out")"
"$NBDSRV" --list-keys | grep -q "^generic  *shared-pin-timeout  *--shared-pin-timeout" || fail "--list-keys has no shared-pin-timeout"
sed 's/^policy = shared-readonly/&\nquota = 1M/' "$TESTDIR/nbdsrv.conf" >"$TESTDIR/quota.conf"
"$NBDSRV" --check-config -c "$TESTDIR/quota.conf" 2>&1 |
  grep -q "export 'os': quota does not apply to a shared-readonly export" ||
  fail "--check-config does not warn about a quota on a shared-readonly export"
start_nbdsrv -c "$TESTDIR/nbdsrv.conf"
export PORT

nbdinfo --json "$(uri os@info,boot=x)" >"$TESTDIR/info.json" || fail "nbdinfo"
/usr/bin/python3 - "$TESTDIR/info.json" <<'PY' || fail "nbdinfo output: $(cat "$TESTDIR/info.json")"
import json, sys
e = json.load(open(sys.argv[1]))["exports"][0]
assert e["is_read_only"] is True, "not read-only"
assert e["can_multi_conn"] is True, "no multi-conn"
assert e["export-size"] == 4 << 20, e["export-size"]
PY

# phase ARGS: the Python checks of one phase (server-lib.py), run with
# the test directory as argv[1].
phase() { /usr/bin/python3 "$srcdir/server-lib.py" "$TESTDIR" "$@"; }
cat >"$TESTDIR/common.py" <<'PY'
import json
tdir = sys.argv[1]
os_dir = tdir + "/store/os"
exe = os.environ.get("NBDSRV_UNDER_VALGRIND") or os.environ["NBDSRV"]
data = {v: open("%s/%04d.img" % (os_dir, v), "rb").read() for v in (1, 2, 3, 4)}

def set_current(v):
    os.symlink("%04d.img" % v, os_dir + "/current.tmp")
    os.rename(os_dir + "/current.tmp", os_dir + "/current")

def meta(v, key):
    for line in open("%s/%04d.meta" % (os_dir, v)):
        k, _, val = line.rstrip("\n").partition("=")
        if k == key:
            return val

def open_client(name, src=None):
    h = nbd.NBD()
    h.set_export_name(name)
    h.set_full_info(True)
    h.set_strict_mode(0)
    h.add_meta_context(nbd.CONTEXT_BASE_ALLOCATION)
    s = tcp_socket(src)
    s.settimeout(None)
    h.connect_socket(s.detach())
    return h

def version_of(h):
    """The version h reads, from its description and from its data."""
    d = h.get_export_description().split(" ")
    check(len(d) == 4 and d[0] == "nbdroot-base" and d[1] == "os" and
          d[3].startswith("sha256:"), "description %r" % d)
    v = int(d[2])
    check(d[3] == "sha256:" + meta(v, "sha256"), "description %r against the .meta" % d)
    got = h.pread(1 << 20, 1 << 20) + h.pread(4096, (4 << 20) - 4096)
    check(got == data[v][1 << 20:2 << 20] + data[v][-4096:],
          "data of version %d does not match its description" % v)
    return v

def reads(name, src=None):
    h = open_client(name, src)
    v = version_of(h)
    h.shutdown()
    return v

def ctl(*args):
    r = subprocess.run([exe, "ctl", "-s", tdir + "/ctl.sock"] + list(args),
                       capture_output=True, text=True)
    check(r.returncode == 0, "ctl %s: %s" % (args, r.stdout + r.stderr))
    return r.stdout

def files():
    return sorted(os.listdir(tdir + "/ov/os"))

def log_has(text):
    return text in open(tdir + "/nbdsrv.log").read()
PY

phase <<'PY' || fail "read-only, shared, pinned per boot, pinned by address"
exec(open(sys.argv[1] + "/common.py").read())
h = open_client("os@c1,boot=b1")
check(h.is_read_only() and h.can_multi_conn() and h.can_flush(), "flags")
check(version_of(h) == 1, "first client: version 1")
for what, fn in (("write", lambda: h.pwrite(b"x" * 4096, 0)),
                 ("trim", lambda: h.trim(4096, 0)),
                 ("zero", lambda: h.zero(4096, 0))):
    expect_error(fn, errno.EPERM, what)
h.flush()
exts = []
h.block_status(4 << 20, 0, lambda ctx, off, e, err: exts.extend(e[1::2]) or 0)
check(exts and set(exts) == {0}, "block status not all data: %r" % exts)
check(h.pread(4096, 0) == data[1][:4096], "data changed by refused writes")
h2 = open_client("os@c2,boot=b1")
check(version_of(h2) == 1, "second client: version 1")
# A pin per client, and the address each client ID is bound to.
check(files() == ["c1.basepin", "c1.owner", "c2.basepin", "c2.owner",
                  "info.basepin", "info.owner"], "files of the export: %s" % files())
table = ctl("list")
check("nbdroot-base os 0001 sha256:" + meta(1, "sha256") in table, "ctl list: %s" % table)
rows = json.loads(ctl("--json", "list"))
check(all(r["base"].startswith("nbdroot-base os 0001 ") for r in rows), "ctl list --json: %r" % rows)

set_current(2)
check(reads("os@c1,boot=b1") == 1, "reconnect of the same boot, first still open: version 1")
h.shutdown(); h2.shutdown()
check(reads("os@c1,boot=b1") == 1, "reconnect of the same boot: version 1")
check(reads("os@c3,boot=z") == 2, "new client: version 2")
check(reads("os@c1,boot=b2") == 2, "new boot: version 2")
check(reads("os@c1,boot=b2") == 2, "reconnect of the new boot: version 2")

# No boot id: pinned by the address (the ID when none is sent).
check(reads("os", src="127.0.0.2") == 2, "address client: version 2")
set_current(3)
check(reads("os", src="127.0.0.2") == 2, "address client after current moved: version 2")
wait_for(lambda: log_has("client os/127.0.0.2: no connection for 2s"),
         "the address pin to time out")
check(reads("os", src="127.0.0.2") == 3, "address client after its pin timed out: version 3")
check(reads("os@c2,boot=b1") == 1, "c2's boot still has version 1")
check(reads("os@c1,boot=b2") == 2, "c1's boot still has version 2")
check(reads("os", src="127.0.0.4") == 3, "second address client: version 3")
set_current(4)
PY

# A restart (longer timeout, so that the test is not racing the sweep):
# every pin is kept.
stop_nbdsrv || fail "nbdsrv did not stop cleanly"
conf 600
start_nbdsrv -c "$TESTDIR/nbdsrv.conf"
phase <<'PY' || fail "pins across a restart"
exec(open(sys.argv[1] + "/common.py").read())
check(reads("os", src="127.0.0.4") == 3, "address client after a restart: version 3")
check(reads("os@c1,boot=b2") == 2, "c1 after a restart: version 2")
check(reads("os@c2,boot=b1") == 1, "c2 after a restart: version 1")
check(reads("os@c9,boot=q") == 4, "new client after a restart: version 4")
pins = [f for f in files() if f.endswith(".basepin")]
row = [e for e in json.loads(ctl("--json", "exports")) if e["name"] == "os"][0]
check(row["overlays"] == len(pins) and row["policy"] == "shared-readonly",
      "ctl exports: %r, pins %s" % (row, pins))
PY

# gc: the pins of c2 and of nbdinfo's client reset, version 1 is free; 2
# and 3 are pinned, 4 current.
for id in c2 info; do
  "$NBDSRV" ctl -s "$TESTDIR/ctl.sock" reset "os/$id" >"$TESTDIR/reset.out" 2>&1 ||
    fail "ctl reset of pinned client $id: $(cat "$TESTDIR/reset.out")"
done
[ ! -e "$TESTDIR/ov/os/c2.basepin" ] || fail "ctl reset left c2's pin"
imgt gc --store "$store" --overlays "$TESTDIR/ov" >"$TESTDIR/gc.out" || fail "gc"
for v in 2 3 4; do
  [ -e "$os/000$v.img" ] || fail "gc removed version $v: $(cat "$TESTDIR/gc.out")"
done
[ ! -e "$os/0001.img" ] || fail "gc kept version 1, pinned by nobody: $(cat "$TESTDIR/gc.out")"
echo "PASS: $test_name"
