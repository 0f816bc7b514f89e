#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# test_server_48_identity: a client ID that is not an IP address belongs
# to the address that first used it.
#   - the first address binds the ID (ID.owner beside the overlay); the
#     same ID from another address (a spoofed MAC) is refused with
#     NBD_REP_ERR_POLICY and a message libnbd shows, while the overlay is
#     open and after a restart of the server;
#   - on a reset-on-boot export, a new boot id from another address does
#     not reset the owner's overlay: the owner's data is still there;
#   - a pinned ID follows its pins (any of its addresses), an ID that is
#     an IP address is only taken from that address;
#   - nbdsrv ctl move-id moves the binding: the new address gets in (same
#     overlay, same data), the old one is refused;
#   - the start-up log names the exports that accept unpinned IDs.
. "$(dirname "$0")/functions.sh"

make_image "$TESTDIR/base.img" 8
mkdir -p "$TESTDIR/ov"
cat >"$TESTDIR/nbdsrv.conf" <<CONF
[generic]
overlay-dir = $TESTDIR/ov

[lab]
image = $TESTDIR/base.img
pin = pinned-one 127.0.0.4, 127.0.0.5

[rob]
image = $TESTDIR/base.img
policy = reset-on-boot
CONF
start_nbdsrv -c "$TESTDIR/nbdsrv.conf"
export PORT NBDSRV
wait_log "export 'lab' serves client IDs that are not pinned" "start-up warning about lab"
wait_log "export 'rob' serves client IDs that are not pinned" "start-up warning about rob"

body() {
  /usr/bin/python3 "$srcdir/server-lib.py" "$TESTDIR" "$1" <<'PY'
tdir, phase = sys.argv[1], sys.argv[2]
exe = os.environ.get("NBDSRV_UNDER_VALGRIND") or os.environ["NBDSRV"]
mac = "40-01-1c-47-44-1e"
a, b = pattern("a", 8192), pattern("b", 4096)

def ctl(*args):
    r = subprocess.run([exe, "ctl", "-s", tdir + "/ctl.sock"] + list(args),
                       capture_output=True, text=True)
    return r.returncode, r.stdout + r.stderr

def refused(name, src, what):
    """libnbd is refused (EPERM) and shows the server's message (in its
    debug output, as nbdinfo --verbose does); a raw client sees
    NBD_REP_ERR_POLICY."""
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
        check("policy" in str(e), "%s: %s" % (what, e))
        check(any("server error message" in m and "bound to another address" in m
                  for m in msgs), "%s: libnbd does not show why: %s" % (what, msgs))
    else:
        h.shutdown()
        raise TestFailure("%s: got in" % what)
    r = Raw(src)
    r.greeting()
    rtype, _ = r.go(name)
    r.close()
    check(rtype == REP_ERR_POLICY, "%s: reply %#x, not POLICY" % (what, rtype))

def owner(export, id):
    with open("%s/ov/%s/%s.owner" % (tdir, export, id)) as f:
        return f.read()

if phase == "first":
    h = connect("lab@" + mac, src="127.0.0.2")
    h.pwrite(a, 0)
    h.flush()
    check("address=127.0.0.2\n" in owner("lab", mac), "lab binding: " + owner("lab", mac))
    # While the owner is connected (overlay open) and after it left.
    refused("lab@" + mac, "127.0.0.3", "spoofed MAC while the owner is connected")
    h.shutdown()
    refused("lab@40:01:1C:47:44:1E", "127.0.0.3", "spoofed MAC in another spelling")
    h = connect("lab@" + mac, src="127.0.0.2")
    check_data(h.pread(8192, 0), a, "owner's data")
    h.shutdown()

    # Reset-on-boot: another address's new boot id resets nothing.
    h = connect("rob@%s,boot=one" % mac, src="127.0.0.2")
    h.pwrite(b, 4096)
    h.flush()
    refused("rob@%s,boot=two" % mac, "127.0.0.3", "new boot id from another address (open)")
    h.shutdown()
    refused("rob@%s,boot=three" % mac, "127.0.0.3", "new boot id from another address")
    h = connect("rob@%s,boot=one" % mac, src="127.0.0.2")
    check_data(h.pread(4096, 4096), b, "reset-on-boot owner's data after the spoof")
    h.shutdown()

    # Pins and address IDs: no binding, the configuration decides.
    for src in ("127.0.0.4", "127.0.0.5"):
        h = connect("lab@pinned-one", src=src)
        h.shutdown()
    check(not os.path.exists(tdir + "/ov/lab/pinned-one.owner"), "a pinned ID was bound")
    r = Raw("127.0.0.6")
    r.greeting()
    check(r.go("lab@pinned-one")[0] == REP_ERR_POLICY, "pinned ID from elsewhere")
    r.close()
    h = connect("lab@127.0.0.7", src="127.0.0.7")
    h.shutdown()
    r = Raw("127.0.0.8")
    r.greeting()
    check(r.go("lab@127.0.0.7")[0] == REP_ERR_POLICY, "address ID from elsewhere")
    r.close()
else:
    # After a restart: the binding was kept on disk.
    refused("lab@" + mac, "127.0.0.3", "spoofed MAC after a restart")
    refused("rob@%s,boot=four" % mac, "127.0.0.3", "new boot id from another address after a restart")
    rc, out = ctl("move-id", "lab/40:01:1C:47:44:1E", "127.0.0.3")
    check(rc == 0, "move-id: " + out)
    check("address=127.0.0.3\n" in owner("lab", mac), "moved binding: " + owner("lab", mac))
    h = connect("lab@" + mac, src="127.0.0.3")
    check_data(h.pread(8192, 0), a, "data at the new address")
    h.shutdown()
    refused("lab@" + mac, "127.0.0.2", "the old address after move-id")
    rc, out = ctl("move-id", "lab/pinned-one", "127.0.0.3")
    check(rc == 1 and "pinned" in out, "move-id of a pinned ID: %d %s" % (rc, out))
    rc, out = ctl("move-id", "lab/" + mac, "not-an-address")
    check(rc == 1 and "not an IP address" in out, "move-id to garbage: %d %s" % (rc, out))
    h = connect("rob@%s,boot=one" % mac, src="127.0.0.2")
    check_data(h.pread(4096, 4096), b, "reset-on-boot owner's data after a restart")
    h.shutdown()
PY
}

body first || fail "identity binding"
stop_nbdsrv || fail "nbdsrv exit status $?"
start_nbdsrv -c "$TESTDIR/nbdsrv.conf"
body restarted || fail "identity binding after a restart"
grep -q "is bound to 127.0.0.2: refused" "$TESTDIR/nbdsrv.log" || fail "no log line for the refusal"
stop_nbdsrv || fail "nbdsrv exit status $?"
exit 0
