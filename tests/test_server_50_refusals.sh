#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# test_server_50_refusals: a client turned away during option haggling
# gets an error reply with a message that libnbd shows (its debug output,
# as nbdinfo --verbose prints it), never a bare closed socket:
#   - an address on the deny list: NBD_REP_ERR_POLICY;
#   - a connection over max-connections-per-address: greeted, its options
#     refused with NBD_REP_ERR_POLICY naming the limit; NBD_OPT_ABORT
#     still works;
#   - an ID bound to another address: NBD_REP_ERR_POLICY;
#   - an overlay whose map file is not an overlay: an error reply with a
#     message, and the client may go on with another option;
#   - a flood of refused connections: the refusal log lines are
#     rate-limited (a "suppressed" line counts the rest).
. "$(dirname "$0")/functions.sh"

make_image "$TESTDIR/base.img" 8
mkdir -p "$TESTDIR/ov/base"
printf 'this is not an overlay' >"$TESTDIR/ov/base/broken.map"
: >"$TESTDIR/ov/base/broken.data"
cat >"$TESTDIR/nbdsrv.conf" <<CONF
[generic]
overlay-dir = $TESTDIR/ov
max-connections-per-address = 2

[base]
image = $TESTDIR/base.img
deny = 127.0.0.9
CONF
start_nbdsrv -c "$TESTDIR/nbdsrv.conf"
export PORT

/usr/bin/python3 "$srcdir/server-lib.py" "$TESTDIR" <<'PY' || fail "refusals"
def libnbd_refusal(name, src):
    """(errno text, server's message as libnbd shows it) of a refused
    libnbd connection."""
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
        shown = [m for m in msgs if "server error message" in m]
        check(shown, "%s from %s: libnbd shows no server message: %s" % (name, src, msgs))
        return str(e), shown[0]
    h.shutdown()
    raise TestFailure("%s from %s: got in" % (name, src))

def raw_refusal(name, src):
    r = Raw(src)
    r.greeting()
    rtype, data = r.go(name)
    r.send_opt(OPT_ABORT)
    check(r.recv_rep(OPT_ABORT)[0] == REP_ACK, "NBD_OPT_ABORT after a refusal")
    r.close()
    return rtype

# The deny list.
err, msg = libnbd_refusal("base", "127.0.0.9")
check("policy" in err and "denied" in msg, "deny: %s / %s" % (err, msg))
check(raw_refusal("base", "127.0.0.9") == REP_ERR_POLICY, "deny: not POLICY")

# Over max-connections-per-address: greeted, refused with the reason.
held = [Raw("127.0.0.3") for _ in range(2)]
for r in held:
    r.greeting()
err, msg = libnbd_refusal("base", "127.0.0.3")
check("policy" in err and "max-connections-per-address" in msg,
      "connection limit: %s / %s" % (err, msg))
check(raw_refusal("base", "127.0.0.3") == REP_ERR_POLICY, "connection limit: not POLICY")
for r in held:
    r.close()

# An ID bound to another address.
h = connect("base@m1", src="127.0.0.4")
h.shutdown()
err, msg = libnbd_refusal("base@m1", "127.0.0.5")
check("policy" in err and "bound to another address" in msg, "bound ID: %s / %s" % (err, msg))

# A damaged overlay: an error reply with a message, then the client may
# go on (here: another export request that works).
err, msg = libnbd_refusal("base@broken", "127.0.0.1")
check("overlay" in msg, "damaged overlay: %s / %s" % (err, msg))
r = Raw()
r.greeting()
rtype, _ = r.go("base@broken")
check(rtype & REP_ERR, "damaged overlay: reply %#x" % rtype)
rtype, _ = r.go("base@fine")
check(rtype == REP_ACK, "another request after a refusal: %#x" % rtype)
r.close()

# A flood of refused connections: every one answered, the log limited.
held = [Raw("127.0.0.6") for _ in range(2)]
for r in held:
    r.greeting()
for i in range(300):
    check(raw_refusal("base", "127.0.0.6") == REP_ERR_POLICY, "flood %d" % i)
for r in held:
    r.close()
PY
wait_log "messages suppressed (refusals" "the suppressed refusals of the flood"
n=$(grep -c "127.0.0.6: refused connection" "$TESTDIR/nbdsrv.log")
[ "$n" -lt 300 ] || fail "all $n refusals of the flood were logged"
stop_nbdsrv || fail "nbdsrv exit status $?"
exit 0
