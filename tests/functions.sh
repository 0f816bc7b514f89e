# SPDX-License-Identifier: GPL-2.0-or-later
# nbdroot test helpers, sourced by every tests/test_*.sh.
#
# Conventions (as in nbdkit and the kernel's ublk selftests):
#   - exit 0 pass, 1 fail, 77 skip (only when a tool is really missing);
#   - every test works in its own directory under tests/tmp/ and cleans up
#     its servers with a trap, whatever happens;
#   - servers listen on loopback only, on a port picked at run time.

set -e
set -u

# nbdsh and python3-libnbd work only with Debian's interpreter.
PATH=/usr/bin:/usr/sbin:/bin:/sbin:$PATH
export PATH

: "${srcdir:=$(cd "$(dirname "$0")" && pwd)}"
: "${top_builddir:=$(cd "$srcdir/.." && pwd)}"
top_srcdir=$(cd "$srcdir/.." && pwd)
NBDSRV=${NBDSRV:-$top_builddir/nbdsrv/nbdsrv}
if [ "${NBDROOT_VALGRIND:-0}" = 1 ]; then
  # The valgrind pass: every nbdsrv a test starts runs under memcheck.
  NBDSRV_UNDER_VALGRIND=$NBDSRV
  NBDSRV=$srcdir/valgrind-nbdsrv.sh
  export NBDSRV_UNDER_VALGRIND
fi
IMGTOOL=${IMGTOOL:-$top_builddir/imgtool/imgtool}
AGENT=${AGENT:-$top_builddir/initrd/nbdroot-agent}
export NBDSRV IMGTOOL AGENT top_srcdir top_builddir

test_name=$(basename "$0" .sh)
TESTDIR=$top_builddir/tests/tmp/$test_name
rm -rf "$TESTDIR"
mkdir -p "$TESTDIR"
export TESTDIR

_cleanup_cmds=""
on_exit() { _cleanup_cmds="$*; $_cleanup_cmds"; }
_run_cleanup() {
  rc=$?
  set +e
  eval "$_cleanup_cmds"
  # A sanitizer report in any log of ours fails the test, even when the
  # program it came from was killed on purpose and nobody saw its status.
  if grep -l -E "ERROR: (Address|Leak)Sanitizer|runtime error:" \
       "$TESTDIR"/*.log >/dev/null 2>&1; then
    grep -h -A20 -E "ERROR: (Address|Leak)Sanitizer|runtime error:" "$TESTDIR"/*.log >&2
    echo "FAIL: $test_name: sanitizer report in a log (above)" >&2
    rc=1
  fi
  # valgrind runs --quiet: every "==PID==" line is part of an error report
  # (its own notes are "--PID--" lines).
  if grep -l -E "^==[0-9]+== " "$TESTDIR"/valgrind-*.log >/dev/null 2>&1; then
    grep -v "^--[0-9]*-- " "$TESTDIR"/valgrind-*.log | head -60 >&2
    echo "FAIL: $test_name: valgrind found errors (above)" >&2
    rc=1
  fi
  if [ "$rc" = 0 ]; then rm -rf "$TESTDIR"; fi
  exit "$rc"
}
trap _run_cleanup EXIT
trap 'exit 1' INT TERM

fail() { echo "FAIL: $test_name: $*" >&2; exit 1; }
skip() { echo "SKIP: $test_name: $*" >&2; exit 77; }
requires() { "$@" >/dev/null 2>&1 || skip "requires: $*"; }
requires_cmd() { for c in "$@"; do command -v "$c" >/dev/null 2>&1 || skip "missing command $c"; done; }

# free_port: prints a TCP port free on 127.0.0.1 right now.
free_port() {
  /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# start_nbdsrv ARGS...: starts nbdsrv in the foreground on a free loopback
# port with a pid file; sets PORT and SRV_PID; waits until it listens.
# Extra arguments go to nbdsrv.  The server's log is $TESTDIR/nbdsrv.log.
start_nbdsrv() {
  PORT=${PORT:-$(free_port)}
  rm -f "$TESTDIR/nbdsrv.pid"
  "$NBDSRV" -f -l "127.0.0.1:$PORT" -P "$TESTDIR/nbdsrv.pid" \
    --control-socket "$TESTDIR/ctl.sock" "$@" >>"$TESTDIR/nbdsrv.log" 2>&1 &
  SRV_PID=$!
  on_exit "kill -9 $SRV_PID 2>/dev/null; wait $SRV_PID 2>/dev/null"
  i=0
  while [ ! -s "$TESTDIR/nbdsrv.pid" ]; do
    if ! kill -0 "$SRV_PID" 2>/dev/null; then
      cat "$TESTDIR/nbdsrv.log" >&2
      fail "nbdsrv exited during start-up"
    fi
    i=$((i + 1)); [ $i -lt 200 ] || fail "nbdsrv did not start in 20 s"
    sleep 0.1
  done
}

# uri EXPORT: the NBD URI of EXPORT on the server started last.
uri() { echo "nbd://127.0.0.1:$PORT/$1"; }

# stop_nbdsrv [SIGNAL]: stops the server started last and waits for it,
# at most 30 s (then it is killed, and that is a failure: 124).
# Returns the server's exit status.
stop_nbdsrv() {
  local i=0
  kill -"${1:-TERM}" "$SRV_PID" 2>/dev/null || true
  while kill -0 "$SRV_PID" 2>/dev/null && [ "$(ps -o stat= -p "$SRV_PID")" != Z ]; do
    i=$((i + 1))
    if [ $i -ge 300 ]; then
      echo "nbdsrv still running 30 s after SIG${1:-TERM}; killing it" >&2
      kill -9 "$SRV_PID" 2>/dev/null
      wait "$SRV_PID" 2>/dev/null
      return 124
    fi
    sleep 0.1
  done
  rc=0
  wait "$SRV_PID" || rc=$?
  return $rc
}

# wait_log PATTERN WHAT: until the server's log has a line matching
# PATTERN, at most 30 s; then fails saying WHAT did not come.
wait_log() {
  local i=0
  until grep -q "$1" "$TESTDIR/nbdsrv.log"; do
    i=$((i + 1))
    [ $i -lt 300 ] || fail "$2: not in the log after 30 s:
$(tail -20 "$TESTDIR/nbdsrv.log")"
    sleep 0.1
  done
}

# make_image FILE SIZE_MIB: a reproducible pseudo-random image.
make_image() {
  /usr/bin/python3 - "$1" "$2" <<'PY'
import sys, random
r = random.Random(1234)
with open(sys.argv[1], "wb") as f:
    for _ in range(int(sys.argv[2])):
        f.write(r.randbytes(1 << 20))
PY
}

# imgt ARGS...: runs imgtool; its stderr is kept in $TESTDIR/last.err (for
# checking its messages), appended to imgtool.log and shown.
imgt() {
  local rc=0
  "$IMGTOOL" "$@" 2>"$TESTDIR/last.err" || rc=$?
  cat "$TESTDIR/last.err" >>"$TESTDIR/imgtool.log"
  cat "$TESTDIR/last.err" >&2
  return $rc
}

# freezable_overlay_dir EXPORT: makes $TESTDIR/ov/EXPORT, where nbdsrv
# keeps that export's overlays, a small ext4 of its own that the test can
# freeze (fsfreeze -f "$FREEZABLE") to hold the server's file system calls
# there for as long as it wants.  It is mounted outside $TESTDIR (a run
# killed while it is frozen must not leave the next run's removal of
# $TESTDIR hanging) and reached through a symlink.  Call thaw_on_exit
# after start_nbdsrv: the file system has to be thawed before the server
# is killed (on_exit runs the last registered first).
freezable_overlay_dir() {
  requires_cmd fsfreeze mkfs.ext4 mount umount
  [ "$(id -u)" = 0 ] || skip "needs root (loop mount, fsfreeze)"
  FREEZABLE=$(mktemp -d)
  on_exit "rmdir '$FREEZABLE'"
  truncate -s 64M "$TESTDIR/$1.fs"
  mkfs.ext4 -q -F "$TESTDIR/$1.fs" || fail "mkfs.ext4 failed"
  mount -o loop "$TESTDIR/$1.fs" "$FREEZABLE" ||
    skip "cannot loop-mount a file system here"
  on_exit "umount '$FREEZABLE'"
  mkdir -p "$TESTDIR/ov"
  ln -s "$FREEZABLE" "$TESTDIR/ov/$1"
}
thaw_on_exit() { on_exit "fsfreeze -u '$FREEZABLE' 2>/dev/null"; }
