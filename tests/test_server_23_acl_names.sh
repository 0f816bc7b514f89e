#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# test_server_23_acl_names: access control and hostile export names.
#   - deny/allow address lists: a refused client gets NBD_REP_ERR_POLICY
#     from NBD_OPT_GO and NBD_OPT_INFO, a disconnect from
#     NBD_OPT_EXPORT_NAME, and NBD_OPT_LIST does not show it the export;
#   - pin: an overlay ID pinned to an address only works from there;
#   - an ID that is an IP address only works from that address (and is
#     then the same overlay as the address's default identity);
#   - require-pin: unpinned IDs are refused, pinned ones and the default
#     identity work;
#   - export names with "../", "/", a NUL, 5000 characters, bad IDs get an
#     error reply and the session goes on; nothing is created outside the
#     overlay directory, and the server stays up.
. "$(dirname "$0")/functions.sh"

make_image "$TESTDIR/base.img" 8
mkdir -p "$TESTDIR/ov"
cat >"$TESTDIR/nbdsrv.conf" <<CONF
[generic]
overlay-dir = $TESTDIR/ov

[open]
image = $TESTDIR/base.img
deny = 127.0.0.3

[lab]
image = $TESTDIR/base.img
allow = 127.0.0.2/32, 127.0.0.4
allow = 127.0.1.0/24
pin = alpha 127.0.0.2

[strict]
image = $TESTDIR/base.img
require-pin = true
pin = beta 127.0.0.5/32, 127.0.0.6
CONF
start_nbdsrv -c "$TESTDIR/nbdsrv.conf"
export PORT
touch "$TESTDIR/marker"

/usr/bin/python3 "$srcdir/server-lib.py" "$TESTDIR" <<'PY' || fail "access control"
tdir = sys.argv[1]
base = open(tdir + "/base.img", "rb").read()

def go(name, src, opt=OPT_GO):
    r = Raw(src)
    r.greeting()
    rtype, _ = r.go(name, opt=opt)
    r.close()
    return rtype

def allowed(name, src):
    rtype = go(name, src)
    check(rtype in (REP_ACK, REP_ERR_POLICY),
          "%s from %s: unexpected reply %#x" % (name, src, rtype))
    return rtype == REP_ACK

def listing(src):
    r = Raw(src)
    r.greeting()
    r.send_opt(OPT_LIST)
    names = []
    while True:
        rtype, data = r.recv_rep(OPT_LIST)
        if rtype == REP_ACK:
            break
        check(rtype == 2, "LIST reply %#x" % rtype)
        n = struct.unpack(">I", data[:4])[0]
        names.append(data[4:4 + n].decode())
    r.close()
    return sorted(names)

# deny
check(not allowed("open", "127.0.0.3"), "open: denied address got in")
check(go("open", "127.0.0.3", opt=OPT_INFO) == REP_ERR_POLICY, "open: OPT_INFO for a denied address")
check(allowed("open", "127.0.0.2"), "open: 127.0.0.2 refused")
r = Raw("127.0.0.3"); r.greeting()
r.send_opt(OPT_EXPORT_NAME, b"open")
r.expect_closed("NBD_OPT_EXPORT_NAME from a denied address")
# allow (two lines add up)
check(allowed("lab", "127.0.0.2") and allowed("lab", "127.0.0.4") and allowed("lab", "127.0.1.77"),
      "lab: an allowed address was refused")
check(not allowed("lab", "127.0.0.5"), "lab: an address not in the allow list got in")
check(listing("127.0.0.3") == ["strict"], "LIST from 127.0.0.3: %s" % listing("127.0.0.3"))
check(listing("127.0.0.5") == ["open", "strict"], "LIST from 127.0.0.5: %s" % listing("127.0.0.5"))
check(listing("127.0.0.2") == ["lab", "open", "strict"], "LIST from 127.0.0.2")
# pin
check(allowed("lab@alpha", "127.0.0.2"), "lab@alpha from its pinned address refused")
check(not allowed("lab@alpha", "127.0.0.4"), "lab@alpha from another address got in")
check(allowed("lab@gamma", "127.0.0.4"), "lab@gamma (not pinned, no require-pin) refused")
# an ID that is an address
check(not allowed("open@127.0.0.2", "127.0.0.4"), "open@127.0.0.2 from 127.0.0.4 got in")
check(not allowed("open@::1", "127.0.0.4"), "open@::1 from 127.0.0.4 got in")
h = connect("open", src="127.0.0.2")
h.pwrite(b"mine" * 1024, 0)
h.flush()
h.shutdown()
h = connect("open@127.0.0.2", src="127.0.0.2")
check(h.pread(4096, 0) == b"mine" * 1024, "open@127.0.0.2 is not 127.0.0.2's own overlay")
h.shutdown()
# require-pin
check(allowed("strict@beta", "127.0.0.5") and allowed("strict@beta", "127.0.0.6"), "strict@beta refused")
check(not allowed("strict@beta", "127.0.0.7"), "strict@beta from elsewhere got in")
check(not allowed("strict@gamma", "127.0.0.5"), "strict@gamma (unpinned) got in")
check(allowed("strict", "127.0.0.7"), "strict by address refused")

# Hostile export names: an error reply each, and the session goes on.
r = Raw("127.0.0.2")
r.greeting()
for name in [b"../open", b"open/../../x", b"/etc/passwd", b"open\0x", b"o" * 5000,
             b"open@../../x", b"open@a/b", b"open@" + b"a" * 65, b"open@a,boot=../x",
             b"open@a,foo=1", b"open@", b"..", b"open@a\0b"]:
    data = struct.pack(">I", len(name)) + name + struct.pack(">H", 0)
    r.send_opt(OPT_GO, data)
    rtype, msg = r.recv_rep(OPT_GO)
    check(rtype & REP_ERR, "name %r accepted" % name[:40])
rtype, _ = r.go("open")
check(rtype == REP_ACK, "the session did not go on after bad names")
r.close()
PY
# Nothing new anywhere but in the overlay directory.
stray=$(find "$TESTDIR" -newer "$TESTDIR/marker" -not -path "$TESTDIR/ov" -not -path "$TESTDIR/ov/*" \
  -not -name nbdsrv.log -not -path "$TESTDIR")
[ -z "$stray" ] || fail "files created outside the overlay directory: $stray"
[ -z "$(find "$TESTDIR/ov" -name '*..*' -o -name '*passwd*')" ] || fail "odd overlay names: $(ls -R "$TESTDIR/ov")"
kill -0 "$SRV_PID" || fail "nbdsrv died"
stop_nbdsrv || fail "nbdsrv exited with $? on SIGTERM"
exit 0
