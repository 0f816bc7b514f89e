#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# test_server_34_janitor_race: a client coming back while the janitor closes its idle
# overlay waits for that close, and nobody else does.
#   - client a of export "slow" writes without a flush and goes; its
#     overlay lives on a file system of its own (a loop-mounted ext4) that
#     the test freezes, so the janitor's close of it (the journal records
#     it appends) blocks for as long as the test wants;
#   - a comes back during that close: the log says it waits for the
#     close, and it does (it is still waiting when the rest is done);
#   - meanwhile a new client b attaches, writes and reads, and clients
#     c1 to c8, whose overlays went idle with a's (on the other export,
#     on the test's own file system), come back and read their data:
#     nobody waits behind a's close.  (Before, the attach thread waited
#     for it, and every client behind it; and the janitor marked every
#     due overlay closing at once, so those of c1 to c8 that it had not
#     closed before a's, in the registry's order, waited for a's close
#     too.  The log shows that some were still open.)
#   - once the file system is thawed the close ends, a gets its overlay
#     and reads back what it wrote; the server stops cleanly.
# (Nothing here depends on timing: the frozen file system holds the close
# for as long as it takes.)
. "$(dirname "$0")/functions.sh"
requires_cmd nbdsh

make_image "$TESTDIR/base.img" 16
freezable_overlay_dir slow

start_nbdsrv -v -e slow="$TESTDIR/base.img" -e fast="$TESTDIR/base.img" \
  -o "$TESTDIR/ov"
# Thawed before the server is killed (on_exit runs last first).
thaw_on_exit

# Client a writes 4 MiB without a flush (its close has journal records to
# append) and clients c1 to c8 write a block each; the file system is
# frozen while all are still connected, so that a's close cannot start
# before; then all go at once, and their overlays fall due together.
timeout 60 nbdsh -c "
import subprocess
a = nbd.NBD()
a.connect_uri('$(uri slow@a)')
buf = bytes(range(256)) * 4096
for i in range(4):
    a.pwrite(buf, i << 20)
cs = []
for i in range(1, 9):
    c = nbd.NBD()
    c.connect_uri('$(uri fast@c)%d' % i)
    c.pwrite(('c%d' % i).encode().ljust(4096, b'.'), 8192)
    c.flush()
    cs.append(c)
subprocess.run(['fsfreeze', '-f', '$FREEZABLE'], check=True)
for h in [a] + cs:
    h.shutdown()
" || fail "clients a and c1 to c8 could not write (or the freeze failed)"
wait_log "overlay .*/slow/a: idle: syncing and closing" "the janitor closing a's overlay"

# a comes back: it has to wait.
timeout 120 nbdsh -u "$(uri slow@a)" -c "
buf = bytes(range(256)) * 4096
for i in range(4):
    assert h.pread(1 << 20, i << 20) == buf
" &
a_pid=$!
on_exit "kill $a_pid 2>/dev/null"
wait_log "client a of slow: its overlay is being closed: it waits for that" \
  "client a waiting for its overlay's close"

# Nobody else waits for it.
timeout 30 nbdsh -u "$(uri fast@b)" -c "
data = b'b'.ljust(4096, b'.')
h.pwrite(data, 4096)
h.flush()
assert h.pread(4096, 4096) == data
" || fail "a new client could not attach while another client's overlay was being closed"
# Those of c1 to c8 that come after a in the registry's order are still
# open (due, but not closed): unless all came before, the clients below
# find some of their overlays that way.
closed_before=$(grep -c "overlay .*/fast/c[0-9]: closed (idle)" "$TESTDIR/nbdsrv.log" || true)
[ "$closed_before" -lt 8 ] ||
  fail "c1 to c8 were all closed before a: the test needs ids that come after a's in the registry"
timeout 30 nbdsh -c "
for i in range(1, 9):
    c = nbd.NBD()
    c.connect_uri('$(uri fast@c)%d' % i)
    assert c.pread(4096, 8192) == ('c%d' % i).encode().ljust(4096, b'.')
    c.shutdown()
" || fail "clients c1 to c8 could not come back while client a's overlay was being closed"

# All that happened while a's close was held: a still waits.
kill -0 "$a_pid" 2>/dev/null || fail "client a did not wait for its overlay's close"
grep -q "overlay .*/slow/a: closed (idle)" "$TESTDIR/nbdsrv.log" &&
  fail "a's overlay closed while its file system was frozen"

fsfreeze -u "$FREEZABLE" || fail "cannot thaw the overlay file system"
wait "$a_pid" || fail "client a, back after the close, did not read its data"
grep -q "overlay .*/slow/a: closed (idle)" "$TESTDIR/nbdsrv.log" ||
  fail "no end of a's close in the log"
stop_nbdsrv || fail "nbdsrv exited with $? on SIGTERM"
