#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# test_server_03_kill9_durability: durability across kill -9.  Four
# clients (two by source address, two by NAME@ID) write aligned and
# unaligned data (e.g. 512 bytes at offset 1000), zero some of it, flush;
# a FUA write needs no flush.  After kill -9 and a restart every flushed
# byte is there for every client and reads back exactly.  Writes that were
# acknowledged but not flushed read back, per 4 KiB block, as either the
# old or the new data, never anything else.  Three rounds, so that replay
# of an already replayed overlay is covered too.
. "$(dirname "$0")/functions.sh"

make_image "$TESTDIR/base.img" 16
start_nbdsrv -e base="$TESTDIR/base.img" -o "$TESTDIR/ov"
export PORT

phase() {
  /usr/bin/python3 "$srcdir/server-lib.py" "$TESTDIR" "$@" <<'PY'
import json
tdir, what, gen = sys.argv[1], sys.argv[2], int(sys.argv[3])
base = open(tdir + "/base.img", "rb").read()
size = len(base)
clients = {
    "ip2": dict(export="base", src="127.0.0.2"),
    "ip3": dict(export="base", src="127.0.0.3"),
    "idA": dict(export="base@alpha"),
    "idB": dict(export="base@beta,boot=b%d" % gen),  # boot id: persistent ignores it
}

def model_path(k):
    return "%s/model-%s.bin" % (tdir, k)

def load_model(k):
    try:
        return bytearray(open(model_path(k), "rb").read())
    except FileNotFoundError:
        return bytearray(base)

pending_path = tdir + "/pending.json"

if what == "write":
    pending = {}
    for k, v in clients.items():
        m = load_model(k)
        h = connect(**v)
        o = gen * (1 << 20)     # each round in its own MiB, overlapping the last
        # Durable once flushed: aligned, unaligned, tiny, straddling blocks,
        # overlapping the previous round, the very end of the export.
        writes = [(o, 65536), (1000 + gen, 512), (o + 4095, 1), (o + 3000, 10000),
                  (o - 2048, 4096), (size - 777, 777), (o + 200000, 3 << 20)]
        for off, length in writes:
            data = pattern((k, gen, off), length)
            h.pwrite(data, off)
            m[off:off + length] = data
        # Zero part of what was written this round.
        h.zero(8192, o + 8192)
        m[o + 8192:o + 16384] = bytes(8192)
        h.zero(100, 1000 + gen + 10)
        m[1000 + gen + 10:1000 + gen + 110] = bytes(100)
        h.flush()
        # FUA: durable without a flush.
        off = o + 600000
        data = pattern((k, gen, "fua"), 5000)
        h.pwrite(data, off, nbd.CMD_FLAG_FUA)
        m[off:off + 5000] = data
        open(model_path(k), "wb").write(m)
        # Acknowledged, never flushed: old or new after kill -9.
        off = 12 << 20 | (gen * 40000)
        data = pattern((k, gen, "nf"), 20000)
        h.pwrite(data, off)
        pending[k] = [off, 20000, gen]
        check_data(h.pread(20000, off), data, "%s unflushed read-back" % k)
        # Keep the connection open: the server is killed under it.
        globals()["keep_" + k] = h
    json.dump(pending, open(pending_path, "w"))
    open(tdir + "/written", "w").write("ok")
    # The test now kills the server; wait for our connection to die.
    def dead():
        try:
            keep_ip2.pread(1, 0)
            return False
        except nbd.Error:
            return True
    wait_for(dead, "the server to be killed", timeout=30, interval=0.1)
    sys.exit(0)

if what == "verify":
    pending = json.load(open(pending_path))
    for k, v in clients.items():
        m = load_model(k)
        h = connect(**v)
        got = b"".join(h.pread(4 << 20, off) for off in range(0, size, 4 << 20))
        off, length, g = pending[k]
        new = pattern((k, g, "nf"), length)
        after = bytearray(m)
        after[off:off + length] = new
        lo, hi = off & ~4095, (off + length + 4095) & ~4095
        for b in range(lo, hi, 4096):
            blk = got[b:b + 4096]
            check(blk == m[b:b + 4096] or blk == after[b:b + 4096],
                  "%s: unflushed block at %d is neither old nor new data" % (k, b))
        m[lo:hi] = got[lo:hi]    # what is there now is the truth from now on
        check_data(got, bytes(m), "%s after kill -9 (round %d)" % (k, gen))
        open(model_path(k), "wb").write(m)
        h.shutdown()
PY
}

for gen in 1 2 3; do
  phase write $gen &
  writer=$!
  i=0
  until [ -f "$TESTDIR/written" ]; do
    kill -0 $writer 2>/dev/null || fail "round $gen: writer failed"
    i=$((i + 1)); [ $i -lt 300 ] || fail "round $gen: writer timed out"
    sleep 0.1
  done
  rm -f "$TESTDIR/written"
  stop_nbdsrv KILL || true
  wait $writer || fail "round $gen: writer failed"
  start_nbdsrv -e base="$TESTDIR/base.img" -o "$TESTDIR/ov"
  phase verify $gen || fail "round $gen: data lost or wrong after kill -9"
done
stop_nbdsrv || fail "nbdsrv exited with $? on SIGTERM"
