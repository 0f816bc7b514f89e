#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# test_server_40: power loss.  kill -9 keeps the page
# cache, so no other test sees a missing or misordered fdatasync.  Here
# nbdsrv runs with its overlays on recfs, which records every write and
# sync below it, while driver.py drives two clients (writes, some FUA,
# trims, zeroes, flushes, several connections, a kill -9, a restart, a
# journal compaction) and marks in the same record each durable
# acknowledgement it received.  crashgen.py then builds, for many random
# cut points of that record, a state a power loss there may leave (synced
# operations kept, any of the others lost, in any order the kernel may
# write them back: its header says exactly what is assumed), starts
# nbdsrv on it and checks that every write acknowledged durable before the
# cut reads back, and nothing reads as data the client never wrote.
#
# nbdsrv creates the overlay directory and the export's directory under
# the recording, so the states also check that a new directory is made
# durable in its parent (only an fsync of a directory makes its entries
# durable, as POSIX has it) before anything in it is acknowledged.
# NBDROOT_POWERLOSS_CUTS (200) cut points, at most
# NBDROOT_POWERLOSS_SECONDS (100) seconds of checking; NBDROOT_POWERLOSS_SEED
# picks the run (default: random, printed).
. "$(dirname "$0")/functions.sh"
. "$srcdir/powerloss/powerloss-functions.sh"
requires_recfs

cuts=${NBDROOT_POWERLOSS_CUTS:-200}
seconds=${NBDROOT_POWERLOSS_SECONDS:-100}
seed=${NBDROOT_POWERLOSS_SEED:-$RANDOM}
echo "seed $seed (NBDROOT_POWERLOSS_SEED=$seed repeats its requests and cut points)"

make_image "$TESTDIR/base.img" 1
B=$TESTDIR/back M=$TESTDIR/mnt L=$TESTDIR/rec.log
mkdir -p "$B"
# The tree before recording, durable: "INO PATH" per directory.
find "$B" -type d -printf '%i %P\n' >"$TESTDIR/initial.lst"
mount_recfs "$B" "$M" "$L"
: >"$M/.mark"

/usr/bin/python3 "$srcdir/powerloss/driver.py" "$NBDSRV" "$TESTDIR/base.img" \
  "$M/ov" "$M/.mark" "$TESTDIR/ops.json" "$seed" \
  || fail "the client run failed (nbdsrv log: $(tail -5 "$TESTDIR/nbdsrv.log"))"
umount_recfs "$M"
echo "recfs recorded $(wc -l <"$L") operations: $(cut -d' ' -f1 "$L" | sort | uniq -c | tr -s ' \n' ' ')"

/usr/bin/python3 "$srcdir/powerloss/crashgen.py" "$L" "$TESTDIR/initial.lst" \
  "$TESTDIR/ops.json" "$TESTDIR/base.img" "$NBDSRV" "$TESTDIR/crash" \
  "$cuts" "$seed" "$seconds" \
  || fail "a power-loss state broke the crash contract (above; seed $seed)"
