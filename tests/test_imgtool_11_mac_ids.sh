#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# test_imgtool_11_mac_ids: imgtool commit --client takes a client's MAC as
# an administrator writes it (colons, upper case) and finds the overlay
# nbdsrv keeps under the agent's spelling (lower case, dashes): the
# committed version is the client's view.  A MAC that has no overlay is
# refused, naming the overlay it looked for.
. "$(dirname "$0")/functions.sh"

requires_cmd nbdcopy

export SOURCE_DATE_EPOCH=1700000000
store=$TESTDIR/store
os=$store/os
ov=$TESTDIR/ov
mkdir -p "$TESTDIR/tree/etc"
echo lab >"$TESTDIR/tree/etc/hostname"
imgt build "$TESTDIR/tree" --store "$store" --name os >/dev/null || fail "build version 1"

start_nbdsrv -e os="$os" -o "$ov"
# The agent's spelling, as it sends it; a block past the superblock, so
# that the file system stays clean.
/usr/bin/python3 - "$PORT" <<'PY' || fail "client writes"
import nbd, sys
h = nbd.NBD()
h.set_export_name("os@52-54-00-ab-cd-ef")
h.connect_tcp("127.0.0.1", sys.argv[1])
h.pwrite(b"client view " * 300, 1 << 20)
h.flush()
h.shutdown()
PY
nbdcopy "nbd://127.0.0.1:$PORT/os@52-54-00-ab-cd-ef" "$TESTDIR/view.img" || fail "nbdcopy of the client's export"
stop_nbdsrv || fail "nbdsrv exited with $? on SIGTERM"
[ -f "$ov/os/52-54-00-ab-cd-ef.map" ] || fail "overlays: $(ls "$ov/os")"

imgt commit --store "$store" --name os --overlays "$ov" --client 52:54:00:AB:CD:EF >"$TESTDIR/out" ||
  fail "commit --client with colons and upper case"
[ "$(cat "$TESTDIR/out")" = "$os/0002.img" ] || fail "commit printed $(cat "$TESTDIR/out")"
cmp "$os/0002.img" "$TESTDIR/view.img" || fail "the committed version is not the client's view"
grep -q "^source=commit of overlay $ov/os/52-54-00-ab-cd-ef on 0001.img$" "$os/0002.meta" ||
  fail "source: $(grep ^source= "$os/0002.meta")"
# The overlay sits on 0001 and 0002 is now current: a second commit is
# refused unless forced, whatever the spelling.
if imgt commit --store "$store" --name os --overlays "$ov" --client 52-54-00-AB-CD-EF; then
  fail "commit of an overlay whose base is no longer current"
fi
imgt commit --store "$store" --name os --overlays "$ov" --client 52-54-00-AB-CD-EF --force >/dev/null ||
  fail "commit --force --client with dashes and upper case"
cmp "$os/0003.img" "$TESTDIR/view.img" || fail "the second commit is not the client's view"

if imgt commit --store "$store" --name os --overlays "$ov" --client 52:54:00:AB:CD:EE; then
  fail "commit of a MAC without an overlay"
fi
grep -q "^imgtool: error: no overlay at $ov/os/52-54-00-ab-cd-ee " "$TESTDIR/last.err" ||
  fail "MAC without an overlay: $(cat "$TESTDIR/last.err")"
exit 0
