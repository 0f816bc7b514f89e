#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# test_server_01_stock_clients: the stock clients see what the contract promises:
# nbdinfo (one export and --list), nbdsh (size, flags, block sizes,
# base:allocation), nbdcopy round trips with one and several connections.
. "$(dirname "$0")/functions.sh"
requires_cmd nbdinfo nbdsh nbdcopy

make_image "$TESTDIR/base.img" 16
make_image "$TESTDIR/big.img" 32
start_nbdsrv -e base="$TESTDIR/base.img" -e big="$TESTDIR/big.img" \
  -o "$TESTDIR/ov"
uri=nbd://127.0.0.1:$PORT

# nbdinfo --list shows both exports with their sizes.
nbdinfo --list --json "$uri" >"$TESTDIR/list.json" || fail "nbdinfo --list"
/usr/bin/python3 - "$TESTDIR/list.json" <<'PY' || fail "nbdinfo --list output"
import json, sys
j = json.load(open(sys.argv[1]))
exports = {e["export-name"]: e for e in j["exports"]}
assert set(exports) >= {"base", "big"}, "exports listed: %s" % list(exports)
# nbdinfo --list asks OPT_INFO per export when it can; if it did, the
# sizes must be the base images' sizes.
for name, size in (("base", 16 << 20), ("big", 32 << 20)):
    got = exports[name].get("export-size")
    assert got in (None, size), "%s size %s" % (name, got)
PY

# nbdinfo on one export.
nbdinfo --json "$uri/big@info" >"$TESTDIR/info.json" || fail "nbdinfo"
/usr/bin/python3 - "$TESTDIR/info.json" <<'PY' || fail "nbdinfo output"
import json, sys
j = json.load(open(sys.argv[1]))
e = j["exports"][0]
assert e["export-size"] == 32 << 20, e["export-size"]
assert e["is_read_only"] is False, "export is read-only"
PY

# nbdsh: sizes, flags and block sizes of the contract.
nbdsh -u "$uri/base@sh" -c '
MiB = 1 << 20
assert h.get_size() == 16 * MiB, h.get_size()
assert not h.is_read_only()
for what, ok in (("flush", h.can_flush()), ("fua", h.can_fua()),
                 ("trim", h.can_trim()), ("zero", h.can_zero()),
                 ("fast_zero", h.can_fast_zero()), ("cache", h.can_cache())):
    assert ok, "server does not advertise " + what
assert h.get_block_size(nbd.SIZE_MINIMUM) == 1, h.get_block_size(nbd.SIZE_MINIMUM)
assert h.get_block_size(nbd.SIZE_PREFERRED) == 4096, h.get_block_size(nbd.SIZE_PREFERRED)
assert h.get_block_size(nbd.SIZE_MAXIMUM) == 32 * MiB, h.get_block_size(nbd.SIZE_MAXIMUM)
base = open("'"$TESTDIR"'/base.img", "rb").read()
assert h.pread(65536, 12345) == base[12345:12345 + 65536]
h.pwrite(b"nbdsh!" * 100, 4000)
h.flush()
assert h.pread(600, 4000) == b"nbdsh!" * 100
' || fail "nbdsh checks"

nbdsh --base-allocation -u "$uri/big@sh" -c '
assert h.get_size() == 32 << 20
assert h.can_meta_context(nbd.CONTEXT_BASE_ALLOCATION), "no base:allocation"
' || fail "nbdsh base:allocation"

# The same ID on another export is another overlay.
nbdsh -u "$uri/big@sh" -c '
big = open("'"$TESTDIR"'/big.img", "rb").read()
assert h.pread(600, 4000) == big[4000:4600], "export big sees writes made to base@sh"
' || fail "overlays of two exports are not separate"

# nbdcopy: a fresh client reads the pristine base, with several
# connections and with one.
nbdcopy "$uri/base@fresh" "$TESTDIR/out1.img" || fail "nbdcopy read (multi-conn)"
cmp "$TESTDIR/base.img" "$TESTDIR/out1.img" || fail "fresh client differs from base"
nbdcopy --connections=1 "$uri/big@fresh" "$TESTDIR/out2.img" || fail "nbdcopy read (1 conn)"
cmp "$TESTDIR/big.img" "$TESTDIR/out2.img" || fail "fresh client differs from big"

# nbdcopy: write a whole new image into an overlay, read it back.
/usr/bin/python3 -c '
import random, sys
open(sys.argv[1], "wb").write(random.Random(99).randbytes(16 << 20))' "$TESTDIR/new.img"
nbdcopy "$TESTDIR/new.img" "$uri/base@copy" || fail "nbdcopy write (multi-conn)"
nbdcopy --connections=1 "$uri/base@copy" "$TESTDIR/back.img" || fail "nbdcopy read back"
cmp "$TESTDIR/new.img" "$TESTDIR/back.img" || fail "round trip through base@copy differs"

stop_nbdsrv || fail "nbdsrv exited with $? on SIGTERM"
