#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# test_server_22_limits: limits.  With a config file that sets them low:
#   - max-connections-per-address: a 4th connection from one address is
#     refused (NBD_REP_ERR_POLICY naming the limit), other addresses still
#     get in; max-connections: the 7th connection in all is refused; once
#     one closes, a new one gets in;
#   - handshake-timeout: a client that connects and never speaks is
#     dropped after about that long, while an idle client that finished
#     its handshake is not;
#   - max-request: NBD_INFO_BLOCK_SIZE says it; larger reads get EINVAL,
#     a larger write payload a disconnect;
#   - quota: a client may write that much, then gets ENOSPC for new
#     blocks (rewrites still work, a trim makes room), others unaffected;
#   - keepalive: the server's side of a connection has the TCP keepalive
#     timer set.
. "$(dirname "$0")/functions.sh"
requires_cmd ss

make_image "$TESTDIR/base.img" 16
cat >"$TESTDIR/nbdsrv.conf" <<CONF
[generic]
overlay-dir = $TESTDIR/ov
max-connections = 6
max-connections-per-address = 3
handshake-timeout = 2
keepalive = 37
max-request = 1M

[base]
image = $TESTDIR/base.img
quota = 1M
CONF
start_nbdsrv -c "$TESTDIR/nbdsrv.conf"
export PORT

/usr/bin/python3 "$srcdir/server-lib.py" "$TESTDIR" <<'PY' || fail "limits"
tdir = sys.argv[1]
base = open(tdir + "/base.img", "rb").read()
M = 1 << 20

def refused(src, limit="max-connections"):
    """A connection from src over a limit: greeted, its NBD_OPT_GO refused
    with NBD_REP_ERR_POLICY and a message naming the limit."""
    r = Raw(src)
    r.greeting()
    n = b"base@probe"
    r.send_opt(OPT_GO, struct.pack(">I", len(n)) + n + struct.pack(">H", 0))
    rtype, msg = r.recv_rep(OPT_GO)
    if rtype == REP_INFO:
        r.close()
        return False
    bye(r)
    check(rtype == REP_ERR_POLICY and limit.encode() in msg,
          "over the limit: reply %#x %r" % (rtype, msg))
    return True

def bye(r):
    r.send_opt(OPT_ABORT)
    r.recv_rep(OPT_ABORT)
    r.close()

# Per address: three from 127.0.0.2 get in, the fourth does not.
two = [raw_session("base@a%d" % i, src="127.0.0.2") for i in range(3)]
check(refused("127.0.0.2", "max-connections-per-address"), "4th connection from 127.0.0.2 was not refused")
# In total: three more from 127.0.0.3, then nobody.
three = [raw_session("base@b%d" % i, src="127.0.0.3") for i in range(3)]
check(refused("127.0.0.4"), "7th connection in all was not refused")
# One goes, one more gets in (the server notices the close asynchronously).
two.pop().close()
wait_for(lambda: not refused("127.0.0.4"), "a free slot after a close")
for r in two + three:
    r.close()
time.sleep(0.5)

# Handshake timeout: a silent client is dropped, an idle attached one is not.
idle = connect("base@idle")
silent = tcp_socket("127.0.0.5")
silent.settimeout(15)
t0 = time.monotonic()
got = b""
try:
    while True:
        chunk = silent.recv(1000)
        if not chunk:
            break
        got += chunk
except (ConnectionResetError, socket.timeout):
    pass
waited = time.monotonic() - t0
check(len(got) == 18 and waited < 14,
      "silent client not dropped (%d bytes, %.1f s)" % (len(got), waited))
log("silent client dropped after %.1f s" % waited)
time.sleep(1)
check_data(idle.pread(4096, 0), base[:4096], "idle client after the handshake timeout")
idle.shutdown()

# max-request = 1 MiB.
h = connect("base@big", strict=False)
check(h.get_block_size(nbd.SIZE_MAXIMUM) == M,
      "block size maximum %d" % h.get_block_size(nbd.SIZE_MAXIMUM))
check_data(h.pread(M, 0), base[:M], "1 MiB read")
expect_error(lambda: h.pread(M + 4096, 0), EINVAL, "read over max-request")
h.shutdown()
r = raw_session("base@big2")
r.request(CMD_WRITE, 0, M + 4096, payload=b"\0" * 4096)
r.expect_closed("write payload over max-request")

# Quota: 1 MiB = 256 blocks of new data per client.
q = connect("base@quota")
q.pwrite(pattern("q", M), 0)                     # exactly the quota
q.pwrite(pattern("q2", 8192), 4096)              # rewrites cost nothing
expect_error(lambda: q.pwrite(b"x" * 4096, 4 * M), errno.ENOSPC, "write past the quota")
expect_error(lambda: q.pwrite(b"x" * 100, 4 * M + 5), errno.ENOSPC, "partial write past the quota")
q.trim(64 * 1024, 0)                             # frees 16 blocks
q.pwrite(pattern("q3", 64 * 1024), 4 * M)        # which can be used again
expect_error(lambda: q.pwrite(b"x" * 4096, 5 * M), errno.ENOSPC, "write past the quota after refill")
other = connect("base@other")
other.pwrite(pattern("o", M), 2 * M)             # others have their own quota
check_data(other.pread(M, 2 * M), pattern("o", M), "other client")
check_data(q.pread(64 * 1024, 4 * M), pattern("q3", 64 * 1024), "quota client readback")
check_data(q.pread(4096, 5 * M), base[5 * M:5 * M + 4096], "refused write left no trace")
q.shutdown()
other.shutdown()

# Keepalive: ss shows a keepalive timer on the server's side.
k = connect("base@ka")
out = subprocess.run(["ss", "-tnoH", "state", "established", "( sport = :%d )" % PORT],
                     capture_output=True, text=True).stdout
log(out.strip())
check(re.search(r"timer:\(keepalive,", out) is not None,
      "no keepalive timer on the server's socket: %r" % out)
k.shutdown()
PY
exit 0
