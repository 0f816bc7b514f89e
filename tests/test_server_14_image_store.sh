#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# test_server_14_image_store: image-store exports and version pinning.  With
# -e NAME=STOREDIR, new clients get the version `current` points to; a
# client's overlay stays pinned to the version it was created on (when
# `current` moves on, while connected, after a reconnect and after a
# restart), and no version file is ever written.
. "$(dirname "$0")/functions.sh"

store=$TESTDIR/store/os
mkdir -p "$store"
make_image "$store/0001.img" 16
/usr/bin/python3 -c '
import random, sys
open(sys.argv[1], "wb").write(random.Random(2).randbytes(16 << 20))' "$store/0002.img"
ln -s 0001.img "$store/current"
sum1=$(sha256sum <"$store/0001.img")
sum2=$(sha256sum <"$store/0002.img")
srv_args=(-e os="$store" -o "$TESTDIR/ov")
start_nbdsrv "${srv_args[@]}"
export PORT

lib() { /usr/bin/python3 "$srcdir/server-lib.py" "$store" "$@"; }

# x: written on 0001; z: connected on 0001 across the publication.
lib <<'PY' &
store = sys.argv[1]
v1 = open(store + "/0001.img", "rb").read()
v2 = open(store + "/0002.img", "rb").read()
x = connect("os@x")
check_data(x.pread(65536, 0), v1[:65536], "x on version 1")
x.pwrite(b"x" * 4096, 8192)
x.flush()
x.shutdown()
z = connect("os@z")
check_data(z.pread(4096, 0), v1[:4096], "z on version 1")
open(store + "/../z-ready", "w").write("1")
wait_for(lambda: os.readlink(store + "/current") == "0002.img", "publication", timeout=30)
check_data(z.pread(1 << 20, 1 << 20), v1[1 << 20:2 << 20], "connected z after the publication")
z.pwrite(b"z" * 100, 0)
z.flush()
z.shutdown()
PY
client=$!
i=0
until [ -f "$TESTDIR/store/z-ready" ]; do
  kill -0 $client 2>/dev/null || fail "first clients failed"
  i=$((i + 1)); [ $i -lt 300 ] || fail "first clients timed out"
  sleep 0.1
done
# Publish version 2 atomically.
ln -s 0002.img "$store/current.new"
mv -T "$store/current.new" "$store/current"
wait $client || fail "pinning of connected clients"

check_pins() {
  lib <<'PY'
store = sys.argv[1]
v1 = open(store + "/0001.img", "rb").read()
v2 = open(store + "/0002.img", "rb").read()
x = connect("os@x")
want = bytearray(v1[:1 << 20]); want[8192:12288] = b"x" * 4096
check_data(x.pread(1 << 20, 0), bytes(want), "x (created on version 1)")
check_data(x.pread(1 << 20, 15 << 20), v1[15 << 20:], "x tail (version 1)")
z = connect("os@z")
want = bytearray(v1[:65536]); want[:100] = b"z" * 100
check_data(z.pread(65536, 0), bytes(want), "z (created on version 1)")
y = connect("os@y")
check_data(y.pread(1 << 20, 0), v2[:1 << 20], "new client y (version 2)")
y.pwrite(b"y" * 10, 5 << 20)
y.flush()
n = connect("os", src="127.0.0.2")
check_data(n.pread(1 << 20, 15 << 20), v2[15 << 20:], "new client by address (version 2)")
for h in (x, y, z, n):
    h.shutdown()
PY
}
check_pins || fail "version pinning"
stop_nbdsrv || fail "nbdsrv exited with $? on SIGTERM"
start_nbdsrv "${srv_args[@]}"
check_pins || fail "version pinning after a restart"
stop_nbdsrv || fail "nbdsrv exited with $? on SIGTERM"
[ "$(sha256sum <"$store/0001.img")" = "$sum1" ] || fail "0001.img changed"
[ "$(sha256sum <"$store/0002.img")" = "$sum2" ] || fail "0002.img changed"
