#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# test_server_16_multi_conn: several connections of one client (multi-conn).  A
# write acknowledged on one connection is visible at once on another; if
# the server advertises CAN_MULTI_CONN, a flush on one connection makes
# the writes completed on all of them durable (checked with kill -9).
. "$(dirname "$0")/functions.sh"

make_image "$TESTDIR/base.img" 16
srv_args=(-e base="$TESTDIR/base.img" -o "$TESTDIR/ov")
start_nbdsrv "${srv_args[@]}"
export PORT

/usr/bin/python3 "$srcdir/server-lib.py" "$TESTDIR" <<'PY' || fail "multi-conn writes"
tdir = sys.argv[1]
# All from one address: the ID is bound to the first address that used
# it (test_server_48).
hs = [connect("base@mc"), connect("base@mc", structured=False),
      connect("base@mc", src="127.0.0.1"), connect("base@mc")]
multi = all(h.can_multi_conn() for h in hs)
open(tdir + "/multi", "w").write(str(int(multi)))
for i, h in enumerate(hs):
    h.pwrite(pattern(("mc", i), 300000), i * (1 << 20) + 1000)
    h.pwrite(pattern(("mc4k", i), 4096), (8 << 20) + i * 4096)
# Visible on every other connection right away.
for i in range(len(hs)):
    for j, h in enumerate(hs):
        check_data(h.pread(300000, i * (1 << 20) + 1000), pattern(("mc", i), 300000),
                   "write of connection %d read on connection %d" % (i, j))
# One flush, on the last connection only.
hs[-1].flush()
open(tdir + "/written", "w").write("1")
PY
multi=$(cat "$TESTDIR/multi")
stop_nbdsrv KILL || true
start_nbdsrv "${srv_args[@]}"
[ "$multi" = 1 ] || { echo "server does not advertise CAN_MULTI_CONN: durability part skipped"; exit 0; }
/usr/bin/python3 "$srcdir/server-lib.py" "$TESTDIR" <<'PY' || fail "flush on one connection did not cover the others (CAN_MULTI_CONN)"
h = connect("base@mc")
for i in range(4):
    check_data(h.pread(300000, i * (1 << 20) + 1000), pattern(("mc", i), 300000),
               "write of connection %d after flush on connection 3 and kill -9" % i)
    check_data(h.pread(4096, (8 << 20) + i * 4096), pattern(("mc4k", i), 4096),
               "4K write of connection %d after kill -9" % i)
PY
stop_nbdsrv || fail "nbdsrv exited with $? on SIGTERM"
