#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# test_server_09_bad_handshake: bad input in the handshake, spoken by
# hand over raw sockets.  Unknown options get NBD_REP_ERR_UNSUP and the
# session goes on; unknown exports get NBD_REP_ERR_UNKNOWN from OPT_GO
# and OPT_INFO, a disconnect from OPT_EXPORT_NAME; invalid client IDs are
# refused; garbage after the greeting closes that connection only, while
# an established client keeps working and new clients get in.
. "$(dirname "$0")/functions.sh"

make_image "$TESTDIR/base.img" 16
start_nbdsrv -e base="$TESTDIR/base.img" -o "$TESTDIR/ov"
export PORT

/usr/bin/python3 "$srcdir/server-lib.py" "$TESTDIR" <<'PY' || fail "handshake checks"
tdir = sys.argv[1]
base = open(tdir + "/base.img", "rb").read()

# An established client that must survive everything below.
keeper = connect("base@keeper")
keeper.pwrite(b"K" * 4096, 0)
keeper.flush()

def keeper_ok(what):
    check(keeper.pread(4096, 0) == b"K" * 4096, "established client broken after " + what)

# Unknown options: NBD_REP_ERR_UNSUP, then the session goes on.
r = Raw()
r.greeting()
for opt, data in ((0x1234, b""), (0x7fffffff, b"x" * 100), (0xabcd, b"\0" * 4)):
    r.send_opt(opt, data)
    rtype, _ = r.recv_rep(opt)
    check(rtype == REP_ERR_UNSUP, "unknown option %#x: reply %#x" % (opt, rtype))
# STARTTLS without TLS support is an unsupported option too (not a crash).
r.send_opt(OPT_STARTTLS)
rtype, _ = r.recv_rep(OPT_STARTTLS)
check(rtype & REP_ERR, "STARTTLS: reply %#x, expected an error" % rtype)
# OPT_LIST still works and lists base.
r.send_opt(OPT_LIST)
names = []
for _ in range(100):
    rtype, data = r.recv_rep(OPT_LIST)
    if rtype == REP_ACK:
        break
    check(rtype == REP_SERVER, "OPT_LIST reply %#x" % rtype)
    n = struct.unpack(">I", data[:4])[0]
    names.append(data[4:4 + n].decode())
check("base" in names, "OPT_LIST: %s" % names)
# OPT_LIST with data is invalid.
r.send_opt(OPT_LIST, b"junk")
rtype, _ = r.recv_rep(OPT_LIST)
check(rtype & REP_ERR, "OPT_LIST with data: reply %#x" % rtype)

# Unknown exports: NBD_REP_ERR_UNKNOWN from INFO and GO; bad IDs refused.
for name in ("nosuch", "nosuch@x", "basex", "base/../base", "BASE"):
    for opt in (OPT_INFO, OPT_GO):
        rtype, _ = r.go(name, opt)
        check(rtype == REP_ERR_UNKNOWN,
              "%s %r: reply %#x, expected NBD_REP_ERR_UNKNOWN"
              % ("OPT_INFO" if opt == OPT_INFO else "OPT_GO", name, rtype))
for name in ("base@", "base@a/b", "base@" + "x" * 65, "base@a b", "base@../x",
             "base@x\0y", "base@\xe9t\xe9"):
    rtype, _ = r.go(name, OPT_GO)
    check(rtype & REP_ERR, "OPT_GO %r: reply %#x, expected an error" % (name, rtype))
# A malformed OPT_GO (name length beyond the option's data).
r.send_opt(OPT_GO, struct.pack(">I", 1000) + b"base" + struct.pack(">H", 0))
rtype, _ = r.recv_rep(OPT_GO)
check(rtype & REP_ERR, "malformed OPT_GO: reply %#x" % rtype)
# With a single export, "" is the default export (as for nbd-server).
rtype, infos = r.go("", OPT_INFO)
check(rtype == REP_ACK and struct.unpack(">Q", infos[INFO_EXPORT][:8])[0] == len(base),
      "OPT_INFO '' (the default export): reply %#x" % rtype)
# OPT_INFO of a good export answers with NBD_INFO_EXPORT and creates nothing.
rtype, infos = r.go("base@info-only", OPT_INFO)
check(rtype == REP_ACK, "OPT_INFO base: reply %#x" % rtype)
check(INFO_EXPORT in infos and struct.unpack(">Q", infos[INFO_EXPORT][:8])[0] == len(base),
      "OPT_INFO base: no or wrong NBD_INFO_EXPORT")
bs = infos.get(INFO_BLOCK_SIZE)
check(bs is not None and struct.unpack(">III", bs) == (1, 4096, 32 << 20),
      "NBD_INFO_BLOCK_SIZE: %r" % (bs and struct.unpack(">III", bs),))
# After all that, the same connection can still GO and do I/O.
rtype, _ = r.go("base", OPT_GO)
check(rtype == REP_ACK, "OPT_GO base after errors: reply %#x" % rtype)
c = r.request(CMD_READ, 0, 4096)
err, data = r.simple_reply(c, 4096)
check(err == 0 and data == base[:4096], "read after errors in the handshake")
r.request(CMD_DISC, 0, 0)
r.expect_closed("NBD_CMD_DISC")
check(not os.path.exists(tdir + "/ov/base/info-only.map"), "OPT_INFO created an overlay")
keeper_ok("option errors")

# OPT_EXPORT_NAME of an unknown export: the server disconnects.
for name in ("nosuch", "base@a/b"):
    r = Raw()
    r.greeting()
    r.send_opt(OPT_EXPORT_NAME, name.encode())
    r.expect_closed("OPT_EXPORT_NAME %r" % name)
# ... and of a known one, old-style reply (NO_ZEROES negotiated: 10 bytes).
r = Raw()
r.greeting()
r.send_opt(OPT_EXPORT_NAME, b"base@oldstyle")
size, eflags = struct.unpack(">QH", r.recv_exact(10))
check(size == len(base), "OPT_EXPORT_NAME size %d" % size)
c = r.request(CMD_READ, 4096, 100)
err, data = r.simple_reply(c, 100)
check(err == 0 and data == base[4096:4196], "read after OPT_EXPORT_NAME")
r.close()

# OPT_ABORT: the server acks (or just closes) and closes.
r = Raw()
r.greeting()
r.send_opt(OPT_ABORT)
r.expect_closed("OPT_ABORT")

# Garbage after the greeting: that connection closes, nothing else.
garbage = [
    b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",        # unknown client flags
    struct.pack(">I", 1) + b"NOTMAGIC" + b"\0" * 8,  # bad option magic
    struct.pack(">I", 1) + b"\xff" * 64,
]
for g in garbage:
    r = Raw()
    r.greeting(client_flags=None)
    r.send(g)
    r.expect_closed("garbage %r" % g[:16])
    keeper_ok("garbage %r" % g[:16])
# Garbage in the transmission phase (bad request magic).
r = raw_session("base@garbage")
r.send(b"\xde\xad\xbe\xef" * 7)
r.expect_closed("bad request magic")
keeper_ok("bad request magic")
# A client that hangs up in the middle of an option.
r = Raw()
r.greeting()
r.send(struct.pack(">QII", IHAVEOPT, OPT_GO, 100) + b"\0\0")
r.close()
# An option that claims a huge length: refused or disconnected, no crash.
r = Raw()
r.greeting()
r.send(struct.pack(">QII", IHAVEOPT, OPT_GO, 0xFFFFFFF0))
try:
    rtype, _ = r.recv_rep(OPT_GO)
    check(rtype & REP_ERR, "huge OPT_GO: reply %#x" % rtype)
except Closed:
    pass
r.close()

# New clients still get in, by libnbd and by hand.
keeper_ok("everything")
h = connect("base@late")
check_data(h.pread(65536, 0), base[:65536], "new client after bad input")
h.shutdown()
keeper.shutdown()
PY
kill -0 "$SRV_PID" || fail "nbdsrv died"
stop_nbdsrv || fail "nbdsrv exited with $? on SIGTERM"
