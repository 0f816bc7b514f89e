#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# test_server_02_client_isolation: per-client isolation.  Two clients
# identified by source address (127.0.0.2, 127.0.0.3) and two by NAME@ID
# write different data to the same offsets; each reads back only its own;
# a reconnect gets its own overlay back; a new client sees the pristine
# base; the base image file is byte-identical afterwards.
. "$(dirname "$0")/functions.sh"

make_image "$TESTDIR/base.img" 16
sum_before=$(sha256sum <"$TESTDIR/base.img")
start_nbdsrv -e base="$TESTDIR/base.img" -o "$TESTDIR/ov"
export PORT

/usr/bin/python3 "$srcdir/server-lib.py" "$TESTDIR/base.img" <<'PY' ||
base = open(sys.argv[1], "rb").read()
size = len(base)
# Same offsets for everyone: aligned, unaligned, crossing a 4 KiB
# boundary, sub-sector, and the last bytes of the export.
regions = [(0, 4096), (1000, 512), (8192 - 100, 300), (65536, 65536),
           (1 << 20, 1), (size - 5000, 5000)]
clients = {
    "ip2": dict(export="base", src="127.0.0.2"),
    "ip3": dict(export="base", src="127.0.0.3"),
    "idA": dict(export="base@alpha"),
    "idB": dict(export="base@beta"),
}
handles = {k: connect(**v) for k, v in clients.items()}
for k, h in handles.items():
    check(h.get_size() == size, "%s: size %d" % (k, h.get_size()))

model = {k: bytearray(base) for k in clients}
# Interleave the writers so their requests overlap in time.
for off, length in regions:
    for k, h in handles.items():
        data = pattern((k, off), length)
        h.pwrite(data, off)
        model[k][off:off + length] = data
for h in handles.values():
    h.flush()

def verify(k, h, what):
    for off, length in regions:
        lo, hi = max(0, off - 4096), min(size, off + length + 4096)
        check_data(h.pread(hi - lo, lo), bytes(model[k][lo:hi]),
                   "%s %s region %d+%d" % (k, what, off, length))
    # And the whole export, in big reads.
    for off in range(0, size, 4 << 20):
        check_data(h.pread(4 << 20, off), bytes(model[k][off:off + (4 << 20)]),
                   "%s %s whole export at %d" % (k, what, off))

for k, h in handles.items():
    verify(k, h, "same connection")
for h in handles.values():
    h.shutdown()
handles.clear()
del h

# A new connection with the same identity gets the same overlay back.
for k, v in clients.items():
    h = connect(**v)
    verify(k, h, "after reconnect")
    h.shutdown()

# New clients, by address and by ID, see the pristine base.
for v in (dict(export="base", src="127.0.0.4"), dict(export="base@gamma"),
          dict(export="base")):
    h = connect(**v)
    for off in range(0, size, 4 << 20):
        check_data(h.pread(4 << 20, off), base[off:off + (4 << 20)],
                   "new client %s" % v)
    h.shutdown()
PY
  fail "isolation checks"

# The overlays are where the contract puts them.
for id in alpha beta; do
  for ext in map data; do
    [ -f "$TESTDIR/ov/base/$id.$ext" ] || fail "missing ov/base/$id.$ext"
  done
done
ls "$TESTDIR/ov/base/" | grep -q '^127\.0\.0\.2\.' ||
  fail "no overlay named after source address 127.0.0.2: $(ls "$TESTDIR/ov/base")"
# A client that only read holds no data blocks.
if [ -e "$TESTDIR/ov/base/gamma.data" ]; then
  [ "$(stat -c %b "$TESTDIR/ov/base/gamma.data")" -le 8 ] ||
    fail "a client that only read has data blocks allocated"
fi

stop_nbdsrv || fail "nbdsrv exited with $? on SIGTERM"
sum_after=$(sha256sum <"$TESTDIR/base.img")
[ "$sum_before" = "$sum_after" ] || fail "base image changed"
