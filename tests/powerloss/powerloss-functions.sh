# SPDX-License-Identifier: GPL-2.0-or-later
# Helpers of the power-loss tests, sourced after tests/functions.sh.

RECFS=${RECFS:-$top_builddir/tests/powerloss/recfs}

# requires_recfs: skips (77) unless FUSE is usable here: recfs built (it
# needs libfuse3 at configure time), /dev/fuse and fusermount3 present.
requires_recfs() {
  [ -x "$RECFS" ] || skip "recfs not built (configure found no libfuse3: apt-get install libfuse3-dev fuse3)"
  [ -c /dev/fuse ] || skip "no /dev/fuse"
  requires_cmd fusermount3
}

# mount_recfs BACKING MOUNTPOINT LOG: mounts recfs and waits until it is
# mounted; unmounted on exit.
mount_recfs() {
  local i=0
  mkdir -p "$1" "$2"
  "$RECFS" "$1" "$2" "$3" >>"$TESTDIR/recfs.log" 2>&1 &
  RECFS_PID=$!
  on_exit "fusermount3 -u -z '$2' 2>/dev/null; kill $RECFS_PID 2>/dev/null; wait $RECFS_PID 2>/dev/null"
  until grep -q " $2 fuse.recfs " /proc/mounts; do
    kill -0 "$RECFS_PID" 2>/dev/null || fail "recfs exited: $(cat "$TESTDIR/recfs.log")"
    i=$((i + 1)); [ $i -lt 200 ] || fail "recfs not mounted after 20 s"
    sleep 0.1
  done
}

# umount_recfs MOUNTPOINT: unmounts it and waits for recfs to exit, so its
# log is complete.
umount_recfs() {
  fusermount3 -u "$1" || fail "cannot unmount recfs at $1"
  wait "$RECFS_PID" || fail "recfs exited with status $?"
}
