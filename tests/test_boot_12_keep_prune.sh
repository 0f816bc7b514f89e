#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# The keep-list prune of a layered root's upper layer, on the host: the
# host kernel's overlayfs (mounted with the agent's options) writes a real
# upper layer over base v1 (a new file, an edit, a removed file, a
# directory removed and made again, so opaque, above a kept path, a
# directory removed whole above another kept path, so a whiteout), then
# "nbdroot-agent --keep-prune UPPER LIST" (keep.c, the code a boot runs)
# prunes it for base v2.  Mounted over v2: the kept paths are the
# client's, everything else the new base's, and the opaque directory and
# the whiteout above kept paths no longer hide the base.
. "$(dirname "$0")/functions.sh"
[ -x "$AGENT" ] || fail "agent $AGENT not built"
[ "$(id -u)" = 0 ] || skip "needs root (overlayfs mounts, trusted.* xattrs)"
grep -qw overlay /proc/filesystems || modprobe overlay 2>/dev/null ||
  skip "no overlayfs in this kernel"
requires_cmd /usr/bin/python3

opts=index=off,xino=off,redirect_dir=off,metacopy=off
mnt=$TESTDIR/mnt upper=$TESTDIR/upper work=$TESTDIR/work
mkdir -p "$mnt" "$upper" "$work"
on_exit "umount '$mnt' 2>/dev/null"

# make_base V: the base tree of version V.
make_base() {
  local b=$TESTDIR/base-$1
  mkdir -p "$b/etc/ssh" "$b/srv/data" "$b/opt/app" "$b/home"
  echo "changed-$1" >"$b/etc/changed"
  echo "gone-$1" >"$b/etc/gone"
  echo "ssh-$1" >"$b/etc/ssh/key"
  echo "srv-$1" >"$b/srv/data/base-file"
  echo "app-$1" >"$b/opt/app/bin"
  echo "opt-$1" >"$b/opt/readme"
}
mount_over() {
  mount -t overlay overlay -o "lowerdir=$TESTDIR/base-$1,upperdir=$upper,workdir=$work,$opts" "$mnt" ||
    fail "cannot mount overlayfs over base $1"
}
# is_opaque PATH: PATH carries overlayfs's opaque marker.
is_opaque() {
  /usr/bin/python3 -c 'import os, sys
try:
    sys.exit(0 if os.getxattr(sys.argv[1], "trusted.overlay.opaque") == b"y" else 1)
except OSError:
    sys.exit(1)' "$1"
}
# expect PATH CONTENT|-: what the root shows at PATH (- for nothing).
expect() {
  local got=-
  [ -e "$mnt$1" ] && got=$(cat "$mnt$1")
  [ "$got" = "$2" ] || fail "$3: $1 holds '$got', expected '$2'"
}

make_base v1
mount_over v1
mkdir -p "$mnt/home/user"
echo mine >"$mnt/home/user/note"
echo edited >"$mnt/etc/changed"
echo ssh-mine >"$mnt/etc/ssh/key"
rm "$mnt/etc/gone"
rm -rf "$mnt/srv/data"
mkdir -p "$mnt/srv/data/keep"
echo kept >"$mnt/srv/data/keep/file"
rm -rf "$mnt/opt"
echo scratch >"$mnt/scratch"
umount "$mnt"

# The upper layer is what the test means it to be.
is_opaque "$upper/srv/data" || fail "overlayfs did not make /srv/data opaque"
[ -c "$upper/opt" ] || fail "overlayfs did not leave a whiteout for /opt"
[ -c "$upper/etc/gone" ] || fail "overlayfs did not leave a whiteout for /etc/gone"

make_base v2
out=$("$AGENT" --keep-prune "$upper" /home,/etc/ssh,/srv/data/keep,/opt/keep 2>&1) ||
  fail "--keep-prune failed: $out"
[[ $out =~ ^removed\ ([0-9]+)\ entries,\ kept\ 3$ ]] ||
  fail "--keep-prune said '$out', expected 'removed N entries, kept 3'"
[ "${BASH_REMATCH[1]}" -ge 4 ] || fail "--keep-prune removed too little: $out"
is_opaque "$upper/srv/data" && fail "/srv/data, above a kept path, is still opaque"
[ -d "$upper/srv/data" ] || fail "/srv/data, above a kept path, went"
[ -e "$upper/opt" ] && fail "the whiteout of /opt, above a kept path, stayed"

mount_over v2
expect /home/user/note mine "kept path"
expect /etc/ssh/key ssh-mine "kept path"
expect /srv/data/keep/file kept "kept path below an opaque directory"
expect /srv/data/base-file srv-v2 "opaque directory above a kept path"
expect /opt/app/bin app-v2 "whiteout above a kept path"
expect /opt/readme opt-v2 "whiteout above a kept path"
expect /etc/changed changed-v2 "edit outside the keep-list"
expect /etc/gone gone-v2 "removal outside the keep-list"
expect /scratch - "new file outside the keep-list"
umount "$mnt"

# The same prune again finds nothing more to remove.
out=$("$AGENT" --keep-prune "$upper" /home,/etc/ssh,/srv/data/keep,/opt/keep 2>&1) ||
  fail "second --keep-prune failed: $out"
[ "$out" = "removed 0 entries, kept 3" ] || fail "second --keep-prune said '$out'"

# Bad input: one line.
out=$("$AGENT" --keep-prune "$TESTDIR/none" /home 2>&1) && fail "a missing directory was pruned"
[ "$(wc -l <<<"$out")" = 1 ] || fail "more than one line: $out"
grep -q "^nbdroot: cannot prune .*/none to the keep-list /home: No such file or directory$" <<<"$out" ||
  fail "unexpected message: $out"
true
