#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# test_server_55_base_by_content: servers sharing one overlay dir, each
# with its own copy of the image store, find an overlay's base by its
# content (the sha256 of the store's .meta), not by path or mtime:
#   - an overlay made through server A (store A, version 0001) is served
#     by server B from B's copy (another path, other mtimes, `current`
#     elsewhere), every flushed byte and the base's bytes intact;
#   - by a server whose copy of that content is another version number;
#   - a server whose 0001 has another content (and no version has the
#     overlay's) refuses the client with a message, and says so in its
#     log, with its store at the very path the overlay recorded;
#   - a base pin of a shared read-only export is found by content too.
. "$(dirname "$0")/functions.sh"
. "$srcdir/failover-functions.sh"

# add_version STORE ID SEED: version ID of STORE/os, 8 MiB of SEED's bytes,
# with its .meta as imgtool writes it.
add_version() {
  local dir=$1/os id=$2
  mkdir -p "$dir"
  /usr/bin/python3 -c '
import random, sys
open(sys.argv[1], "wb").write(random.Random(int(sys.argv[2])).randbytes(8 << 20))' \
    "$dir/$id.img" "$3"
  printf 'id=%s\nname=os\nformat=ext4\nsha256=%s\nsize=%s\n' "$id" \
    "$(sha256sum <"$dir/$id.img" | cut -d' ' -f1)" "$(stat -c %s "$dir/$id.img")" \
    >"$dir/$id.meta"
  chmod 0444 "$dir/$id.img" "$dir/$id.meta"
}
set_current() { ln -sfn "$2.img" "$1/os/current"; }

add_version "$TESTDIR/a" 0001 1; add_version "$TESTDIR/a" 0002 2
set_current "$TESTDIR/a" 0001
# B: the same versions, copied later (other mtimes), current on 0002.
sleep 0.1
add_version "$TESTDIR/b" 0001 1; add_version "$TESTDIR/b" 0002 2
set_current "$TESTDIR/b" 0002
touch -d '2001-01-01' "$TESTDIR/b/os/0001.img"
# C: 0001's content as version 0007.
add_version "$TESTDIR/c" 0007 1; set_current "$TESTDIR/c" 0007
# D: a 0001 of another content.
add_version "$TESTDIR/d" 0001 3; set_current "$TESTDIR/d" 0001
mkdir -p "$TESTDIR/ov"

# conf STORE: a server's config: os (persistent) and ro (shared
# read-only), both on STORE, one overlay dir for all servers.
conf() {
  printf '[generic]\noverlay-dir = %s\n\n[os]\nimage = %s\n\n[ro]\nimage = %s\npolicy = shared-readonly\n' \
    "$TESTDIR/ov" "$1/os" "$1/os" >"$1.conf"
  echo "$1.conf"
}
# pinned PORT STORE VERSION: a reconnect of the same boot reads VERSION.
pinned() {
  PORT=$1 /usr/bin/python3 "$srcdir/server-lib.py" "$2" <<'PY'
base = open(sys.argv[1], "rb").read()
h = connect("ro@p1,boot=b1")
check_data(h.pread(1 << 20, 1 << 20), base[1 << 20:2 << 20], "pinned base data")
h.shutdown()
PY
}

start_named A -c "$(conf "$TESTDIR/a")"
pinned "$PORT_A" "$TESTDIR/a/os/0001.img" || fail "A: pinning"
grep -q "^base-sha256=$(cut -d= -f2 <<<"$(grep sha256 "$TESTDIR/a/os/0001.meta")")" \
  "$TESTDIR/ov/ro/p1.basepin" || fail "pin: $(cat "$TESTDIR/ov/ro/p1.basepin")"
write_flushed "$PORT_A" os@c1 "$TESTDIR/flushed"
kill "$WRITER_PID"
wait "$WRITER_PID" 2>/dev/null || true
kill -TERM "$PID_A"
wait "$PID_A" 2>/dev/null || true
grep -q "c1.*created on .*/a/os/0001.img" "$TESTDIR/A.log" || fail "A: $(cat "$TESTDIR/A.log")"
# The other servers are on other hosts: A's store is not there.
mv "$TESTDIR/a" "$TESTDIR/a.away"

# served KEY PORT STORE VERSION: the client reads its flushed bytes, and
# the base's bytes of STORE's VERSION elsewhere.
served() {
  takes_over "$1" os@c1 "$TESTDIR/flushed" || fail "$3: flushed data"
  PORT=$1 /usr/bin/python3 "$srcdir/server-lib.py" "$2" <<'PY' || fail "$3: base data"
base = open(sys.argv[1], "rb").read()
h = connect("os@c1")
check_data(h.pread(1 << 20, 2 << 20), base[2 << 20:3 << 20], "base data")
h.shutdown()
PY
}

start_named B -c "$(conf "$TESTDIR/b")"
served "$PORT_B" "$TESTDIR/b/os/0001.img" "B"
pinned "$PORT_B" "$TESTDIR/b/os/0001.img" || fail "B: the pinned base"
grep -q "base .*/a/os/0001.img is .*/b/os/0001.img here (same content" "$TESTDIR/B.log" ||
  fail "B's log: $(cat "$TESTDIR/B.log")"
kill -TERM "$PID_B"; wait "$PID_B" 2>/dev/null || true

start_named C -c "$(conf "$TESTDIR/c")"
served "$PORT_C" "$TESTDIR/c/os/0007.img" "C"
grep -q "is .*/c/os/0007.img here" "$TESTDIR/C.log" || fail "C's log: $(cat "$TESTDIR/C.log")"
kill -TERM "$PID_C"; wait "$PID_C" 2>/dev/null || true

# D's store is where A's was: the recorded path, another content.
mv "$TESTDIR/d" "$TESTDIR/a"
start_named D -c "$(conf "$TESTDIR/a")"
pinned "$PORT_D" "$TESTDIR/a/os/0001.img" 2>/dev/null && fail "D: a pin served on another content"
PORT=$PORT_D /usr/bin/python3 "$srcdir/server-lib.py" <<'PY' || fail "D served another content"
r = Raw(timeout=30)
r.greeting()
n = b"os@c1"
r.send_opt(OPT_GO, struct.pack(">I", len(n)) + n + struct.pack(">H", 0))
rtype, data = r.recv_rep(OPT_GO)
check(rtype & REP_ERR and b"no version of the export's store on this server has the content" in data,
      "reply %#x %r" % (rtype, data))
PY
grep -q "no version of .*/a/os has the content of base .*/a/os/0001.img (sha256 [0-9a-f]\{64\}" \
  "$TESTDIR/D.log" || fail "D's log: $(cat "$TESTDIR/D.log")"
kill -TERM "$PID_D"; wait "$PID_D" 2>/dev/null || true
exit 0
