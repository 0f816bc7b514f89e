#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# test_server_58_flush_skips_clean_data: a flush that finds nothing new in
# the data file since an fdatasync of it completed (a FLUSH right after a
# FUA write, or a second FLUSH) skips that fdatasync, and one after any
# write, rewrite or zeroing does not (nbdsrv ctl list --json counts the
# overlay's flush fdatasyncs and the data syncs skipped); what was flushed
# is there after kill -9 and a restart.
. "$(dirname "$0")/functions.sh"

make_image "$TESTDIR/base.img" 16

cat > "$TESTDIR/check.py" <<'PY'
import json
tdir, phase = sys.argv[1], sys.argv[2]
exe = os.environ.get("NBDSRV_UNDER_VALGRIND") or os.environ["NBDSRV"]

def counts():
    r = subprocess.run([exe, "ctl", "-s", tdir + "/ctl.sock", "--json", "list"],
                       capture_output=True, text=True)
    check(r.returncode == 0, "ctl list: %s" % (r.stdout + r.stderr))
    rows = [x for x in json.loads(r.stdout) if x["id"] == "c1"]
    check(len(rows) == 1, "one connection of c1: %r" % rows)
    return rows[0]["flush_fsyncs"], rows[0]["data_syncs_skipped"]

def step(what, do, skipped):
    f0, s0 = counts()
    do()
    f1, s1 = counts()
    check(s1 - s0 == (1 if skipped else 0),
          "%s: data syncs skipped %d -> %d (want %s)" % (what, s0, s1,
                                                         "one" if skipped else "none"))
    check(f1 > f0 or skipped, "%s: no fdatasync (%d -> %d)" % (what, f0, f1))

h = connect("base@c1")
if phase == "after":
    check_data(h.pread(8192, 0), pattern("a", 4096) + pattern("c", 4096), "flushed data")
    check_data(h.pread(4096, 65536), bytes(4096), "zeroed and flushed block")
    sys.exit(0)
a, b, c = pattern("a", 4096), pattern("b", 4096), pattern("c", 4096)
step("first write and flush", lambda: (h.pwrite(a, 0), h.flush()), False)
step("second flush, nothing written", h.flush, True)
step("FUA write", lambda: h.pwrite(b, 4096, nbd.CMD_FLAG_FUA), False)
step("flush after the FUA write", h.flush, True)
step("rewrite of a written block and flush", lambda: (h.pwrite(c, 4096), h.flush()), False)
step("zeroing and flush", lambda: (h.pwrite(a, 65536), h.zero(4096, 65536), h.flush()), False)
step("flush after the flush", h.flush, True)
PY

start_nbdsrv -e base="$TESTDIR/base.img" -o "$TESTDIR/ov"
export PORT
/usr/bin/python3 "$srcdir/server-lib.py" "$TESTDIR" before < "$TESTDIR/check.py" ||
  fail "flushes: data fdatasyncs not skipped as they should be"
stop_nbdsrv KILL || true
start_nbdsrv -e base="$TESTDIR/base.img" -o "$TESTDIR/ov"
/usr/bin/python3 "$srcdir/server-lib.py" "$TESTDIR" after < "$TESTDIR/check.py" ||
  fail "flushed data lost after kill -9"
stop_nbdsrv || fail "nbdsrv exited with $? on SIGTERM"
