# SPDX-License-Identifier: GPL-2.0-or-later
# Helpers of the layered-root tests (sourced after functions.sh): state
# disks made offline, the way the agent leaves them, and served as a
# state export's overlays by nbdsrv.

requires_cmd debugfs nbdcopy

# state_disk IMAGE TEMPLATE BASE_ID CMDS: a copy of TEMPLATE with /upper,
# /work, /base-id (when BASE_ID is not empty) and the debugfs commands
# CMDS (paths under /upper; "write", "mkdir", "mknod P c 0 0" for a
# whiteout, "ea_set P trusted.overlay.opaque y" for an opaque directory).
state_disk() {
  cp --sparse=always "$2" "$1"
  {
    echo "mkdir /upper"
    echo "mkdir /work"
    if [ -n "$3" ]; then
      printf '%s\n' "$3" >"$TESTDIR/base-id.tmp"
      echo "write $TESTDIR/base-id.tmp /base-id"
    fi
    # debugfs's mknod makes its node in the current directory
    printf '%s\n' "$4" |
      awk '$1 == "mknod" { n = split($2, p, "/"); d = substr($2, 1, length($2) - length(p[n]) - 1);
                           print "cd " d; $2 = p[n]; print; print "cd /"; next } { print }'
  } >"$TESTDIR/debugfs.cmds"
  debugfs -w -f "$TESTDIR/debugfs.cmds" "$1" >"$TESTDIR/debugfs.out" 2>&1 ||
    fail "debugfs: $(cat "$TESTDIR/debugfs.out")"
  # it says what failed on a line of its own, and exits 0 all the same
  ! grep -vE "^(debugfs[: ]|Allocated inode: )" "$TESTDIR/debugfs.out" >/dev/null ||
    fail "debugfs: $(cat "$TESTDIR/debugfs.out")"
}

# base_id STORE NAME VERSION: the base-id line of a client that booted
# that version (the agent's format, common/layered-state.h).
base_id() {
  echo "size=$(stat -c %s "$1/$2/$3.img") sum=0000000000000000 desc=nbdroot-base $2 $3 sha256:$(sed -n 's/^sha256=//p' "$1/$2/$3.meta")"
}

# state_overlays TEMPLATE OVERLAY_DIR EXPORT ID=IMAGE...: each IMAGE
# written by nbdcopy into EXPORT@ID of an nbdsrv serving TEMPLATE, which
# leaves OVERLAY_DIR/EXPORT/ID.map and .data as a client's writes would.
state_overlays() {
  local tpl=$1 ov=$2 exp=$3 a
  shift 3
  start_nbdsrv -e "$exp=$tpl" -o "$ov"
  for a in "$@"; do
    nbdcopy "${a#*=}" "$(uri "$exp@${a%%=*}")" || fail "nbdcopy into $exp@${a%%=*}"
  done
  stop_nbdsrv || fail "nbdsrv exited with $?"
  unset PORT
}
