#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# test_server_20_config_file: the configuration file and the command line.  A config
# file with a [generic] section and three exports (per-export policy,
# a read-only export, descriptions) is served as written: the policies
# apply, the read-only export refuses writes with EPERM and says so in
# its flags, nbdinfo --list shows the descriptions.  Bad configuration
# files and bad command lines each fail at start-up with exit status 2
# (or 1 for a resource that is missing) and one line on stderr that names
# the file and line or the option, never a crash.
. "$(dirname "$0")/functions.sh"

make_image "$TESTDIR/base.img" 8
make_image "$TESTDIR/other.img" 4
cat >"$TESTDIR/nbdsrv.conf" <<EOF
# nbdsrv test configuration
[generic]
overlay-dir = $TESTDIR/ov
policy = persistent
ephemeral-linger = 1

[lab]
image = $TESTDIR/base.img
description = the lab image
policy = reset-on-boot

; a read-only export
[ro]
image = $TESTDIR/other.img
readonly = true
description = read only

[scratch]
image = $TESTDIR/base.img
policy = ephemeral
EOF
start_nbdsrv -c "$TESTDIR/nbdsrv.conf"
export PORT

/usr/bin/python3 "$srcdir/server-lib.py" "$TESTDIR" <<'PY' || fail "exports from the config file"
tdir = sys.argv[1]
base = open(tdir + "/base.img", "rb").read()
other = open(tdir + "/other.img", "rb").read()
M = 1 << 20

# nbdinfo --list: every export, with its description.
out = subprocess.run(["nbdinfo", "--list", "--json", "nbd://127.0.0.1:%d" % PORT],
                     capture_output=True, text=True, check=True).stdout
import json
j = json.loads(out)
names = {e["export-name"]: e for e in j["exports"]}
check(set(names) == {"lab", "ro", "scratch"}, "exports listed: %s" % sorted(names))
check(names["lab"].get("description") == "the lab image", "lab description: %r" % names["lab"].get("description"))
check(names["ro"].get("description") == "read only", "ro description")
check(names["ro"].get("is_read_only") is True, "ro is not read-only in nbdinfo")
check(names["lab"].get("is_read_only") is False, "lab is read-only")

# reset-on-boot from the config: a new boot id gets the pristine base.
h = connect("lab@c1,boot=b1")
h.pwrite(b"x" * 4096, 0)
h.flush()
h.shutdown()
h = connect("lab@c1,boot=b1")
check(h.pread(4096, 0) == b"x" * 4096, "lab: same boot lost its write")
h.shutdown()
h = connect("lab@c1,boot=b2")
check(h.pread(4096, 0) == base[:4096], "lab: a new boot did not reset (policy from the config)")
h.shutdown()

# Read-only: reads work, writes, trims and zeroes are refused with EPERM.
h = connect("ro@c1", strict=False)
check(h.is_read_only(), "ro: READ_ONLY flag missing")
check_data(h.pread(M, 0), other[:M], "ro: read")
expect_error(lambda: h.pwrite(b"y" * 4096, 0), errno.EPERM, "ro: write")
expect_error(lambda: h.trim(4096, 0), errno.EPERM, "ro: trim")
expect_error(lambda: h.zero(4096, 0), errno.EPERM, "ro: zero")
check_data(h.pread(M, 0), other[:M], "ro: read after refused writes")
h.shutdown()

# Ephemeral from the config (linger 1 s): the overlay goes after a while.
h = connect("scratch@c1")
h.pwrite(b"z" * 4096, 0)
h.shutdown()
wait_for(lambda: not os.path.exists(tdir + "/ov/scratch/c1.map"), "ephemeral overlay removal")
h = connect("scratch@c1")
check(h.pread(4096, 0) == base[:4096], "scratch: ephemeral overlay survived")
h.shutdown()
check(open(tdir + "/base.img", "rb").read() == base, "base image modified")
PY
stop_nbdsrv || fail "nbdsrv exited with $? on SIGTERM"

# bad_start EXPECTED_STATUS PATTERN ARGS...: nbdsrv must refuse to start,
# with that status and one stderr line matching PATTERN.
bad_start() {
  local want=$1 pattern=$2 rc=0
  shift 2
  timeout 20 "$NBDSRV" -f -l 127.0.0.1:0 "$@" >"$TESTDIR/out" 2>"$TESTDIR/err" || rc=$?
  [ "$rc" = "$want" ] || { cat "$TESTDIR/err" >&2; fail "nbdsrv $*: exit $rc, expected $want"; }
  grep -q -E -e "$pattern" "$TESTDIR/err" || { cat "$TESTDIR/err" >&2; fail "nbdsrv $*: no message matching '$pattern'"; }
  [ "$(grep -c -v '^usage:\|^  \|^Serves\|^See\|^nbdsrv: warning:' "$TESTDIR/err")" = 1 ] ||
    { cat "$TESTDIR/err" >&2; fail "nbdsrv $*: expected one error line"; }
}
conf() { printf '%s\n' "$@" >"$TESTDIR/bad.conf"; }

conf "[generic]" "colour = blue" "[a]" "image = $TESTDIR/base.img"
bad_start 2 "bad.conf:2: unknown key 'colour'" -c "$TESTDIR/bad.conf"
conf "[a]" "image = $TESTDIR/base.img" "policy = sometimes"
bad_start 2 "bad.conf:3: invalid value 'sometimes' for 'policy'" -c "$TESTDIR/bad.conf"
conf "[a" "image = $TESTDIR/base.img"
bad_start 2 "bad.conf:1: malformed section header" -c "$TESTDIR/bad.conf"
conf "image = $TESTDIR/base.img"
bad_start 2 "bad.conf:1: expected 'key = value' inside a section" -c "$TESTDIR/bad.conf"
conf "[a]" "description = no image"
bad_start 2 "export 'a' has no image" -c "$TESTDIR/bad.conf"
conf "[a]" "image = $TESTDIR/base.img" "[a]" "image = $TESTDIR/base.img"
bad_start 2 "export 'a' is defined twice" -c "$TESTDIR/bad.conf"
conf "[../x]" "image = $TESTDIR/base.img"
bad_start 2 "invalid export name" -c "$TESTDIR/bad.conf"
conf "[a]" "image = $TESTDIR/base.img" "readonly = maybe"
bad_start 2 "invalid value 'maybe' for 'readonly'" -c "$TESTDIR/bad.conf"
bad_start 2 "cannot open config file .*nope.conf" -c "$TESTDIR/nope.conf"
bad_start 2 "no exports" -o "$TESTDIR/ov"
bad_start 2 "-e base: expected NAME=IMAGE" -e base
bad_start 2 "--policy forever: expected persistent, reset-on-boot, ephemeral or shared-readonly" \
  -e "a=$TESTDIR/base.img" --policy forever
bad_start 2 "-t 300: expected a number from 0 to 256" -e "a=$TESTDIR/base.img" -t 300
bad_start 2 "unexpected argument 'stray'" -e "a=$TESTDIR/base.img" stray
bad_start 2 "unrecognized option" -e "a=$TESTDIR/base.img" --bogus
bad_start 1 "export 'a': image .*missing.img: No such file or directory" \
  -e "a=$TESTDIR/missing.img" -o "$TESTDIR/ov"
mkdir -p "$TESTDIR/adir"
bad_start 1 "export 'a': .* is not an image file" -e "a=/dev/null" -o "$TESTDIR/ov"
touch "$TESTDIR/notadir"
bad_start 1 "cannot create overlay directory" -e "a=$TESTDIR/base.img" -o "$TESTDIR/notadir/ov"
# [generic]'s policy is the default of every export that sets none, even
# of a section above it.
printf '[late]\nimage = %s\n[early]\nimage = %s\npolicy = persistent\n[generic]\npolicy = ephemeral\n' \
  "$TESTDIR/base.img" "$TESTDIR/base.img" >"$TESTDIR/order.conf"
"$NBDSRV" --check-config -c "$TESTDIR/order.conf" -o "$TESTDIR/ov" >"$TESTDIR/out" 2>&1 ||
  { cat "$TESTDIR/out"; fail "--check-config of order.conf"; }
grep -q "late: .*(ephemeral)" "$TESTDIR/out" && grep -q "early: .*(persistent)" "$TESTDIR/out" ||
  { cat "$TESTDIR/out"; fail "[generic] policy below an export section was not its default"; }
exit 0
