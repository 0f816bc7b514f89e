#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# test_server_28_trace: the request trace (--trace FILE).  Two clients send a
# known sequence of requests; after SIGTERM the trace holds exactly one
# line per request, "USEC EXPORT/ID TYPE OFFSET LENGTH", in each client's
# order, with non-decreasing times; a trace file that cannot be opened
# stops nbdsrv at start-up with one clear line.
. "$(dirname "$0")/functions.sh"

make_image "$TESTDIR/base.img" 8
start_nbdsrv -e base="$TESTDIR/base.img" -o "$TESTDIR/ov" --trace "$TESTDIR/trace"
export PORT

/usr/bin/python3 "$srcdir/server-lib.py" "$TESTDIR" <<'PY' || fail "requests"
a = connect("base@a")
b = connect("base@b", src="127.0.0.2")
a.pread(4096, 0)
b.pwrite(b"x" * 512, 1000)
a.pwrite(b"y" * 8192, 65536, nbd.CMD_FLAG_FUA)
a.flush()
b.trim(65536, 1 << 20)
a.zero(4096, 8192)
b.cache(131072, 0)
a.pread(300000, 12345)
a.shutdown()
b.shutdown()
PY
stop_nbdsrv || fail "nbdsrv exited with $? on SIGTERM"
cat "$TESTDIR/trace"
/usr/bin/python3 - "$TESTDIR/trace" <<'PY' || fail "trace contents"
import sys
lines = [l.split() for l in open(sys.argv[1])]
assert all(len(l) == 5 for l in lines), lines
got = {}
last = 0
for t, client, kind, off, ln in sorted(lines, key=lambda l: int(l[0])):
    got.setdefault(client, []).append((kind, int(off), int(ln)))
    assert int(t) >= last
    last = int(t)
want = {
    "base/a": [("R", 0, 4096), ("WF", 65536, 8192), ("F", 0, 0), ("Z", 8192, 4096),
               ("R", 12345, 300000)],
    "base/b": [("W", 1000, 512), ("T", 1 << 20, 65536), ("C", 0, 131072)],
}
assert got == want, "trace %r, expected %r" % (got, want)
PY
rc=0
"$NBDSRV" -f -l 127.0.0.1:0 -e base="$TESTDIR/base.img" -o "$TESTDIR/ov" \
  --trace "$TESTDIR/nodir/trace" 2>"$TESTDIR/err" || rc=$?
[ $rc = 1 ] && grep -q "cannot open trace file .*nodir/trace: No such file or directory" "$TESTDIR/err" ||
  { cat "$TESTDIR/err"; fail "bad trace file: exit $rc"; }
exit 0
