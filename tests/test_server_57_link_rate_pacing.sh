#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# test_server_57_link_rate_pacing: with link-rate, every client socket is
# capped (SO_MAX_PACING_RATE, seen by ss as max_pacing_rate) at its share
# of the link (ss -i shows pacing_rate NOW/CAP), the share shrinks as
# clients come, data still arrive whole; without link-rate no socket is
# capped.
. "$(dirname "$0")/functions.sh"

command -v ss >/dev/null || skip "no ss (iproute2)"
make_image "$TESTDIR/base.img" 16

# ARGS: TESTDIR, 1 if the server has link-rate 1M.  caps(): the pacing
# caps of the server's client sockets as ss shows them.
cat > "$TESTDIR/check.py" <<'PY'
tdir, paced = sys.argv[1], sys.argv[2] == "1"
port = os.environ["PORT"]

def caps():
    out = subprocess.run(["ss", "-tinH", "state", "established",
                          "( sport = :%s )" % port],
                         capture_output=True, text=True, check=True).stdout
    return re.findall(r"pacing_rate [0-9.]+[KMG]?bps/([0-9.]+[KMG]?bps)", out)

def bps(s):
    m = re.fullmatch(r"([0-9.]+)([KMG]?)bps", s)
    check(m, "unexpected rate %r" % s)
    return float(m.group(1)) * {"": 1, "K": 1e3, "M": 1e6, "G": 1e9}[m.group(2)]

h1 = connect("base@p1")
data = pattern("pace", 300000)
h1.pwrite(data, 4096)
check_data(h1.pread(300000, 4096), data, "read through a paced connection")
one = caps()
h2 = connect("base@p2")
h2.pread(4096, 0)
h1.pread(300000, 4096)
two = caps()
if not paced:
    check(one == [] and two == [], "sockets capped without link-rate: %s %s" % (one, two))
    sys.exit(0)
# link-rate 1M: 15/16 of 1 MiB/s, in bit/s, for one client; half each for two.
check(len(one) == 1, "one client, caps %s" % one)
check(abs(bps(one[0]) - 983040 * 8) < 0.05 * 983040 * 8, "one client's cap %s" % one[0])
check(len(two) == 2, "two clients, caps %s" % two)
check(all(abs(bps(c) - 491520 * 8) < 0.05 * 491520 * 8 for c in two),
      "two clients' caps %s (want half the link each)" % two)
PY

start_nbdsrv -e base="$TESTDIR/base.img" -o "$TESTDIR/ov" --link-rate 1M
export PORT
/usr/bin/python3 "$srcdir/server-lib.py" "$TESTDIR" 1 < "$TESTDIR/check.py" ||
  fail "link-rate: client sockets not paced at their share"
stop_nbdsrv || fail "nbdsrv exited with $? on SIGTERM"

start_nbdsrv -e base="$TESTDIR/base.img" -o "$TESTDIR/ov2"
/usr/bin/python3 "$srcdir/server-lib.py" "$TESTDIR" 0 < "$TESTDIR/check.py" ||
  fail "without link-rate: sockets paced"
stop_nbdsrv || fail "nbdsrv exited with $? on SIGTERM"
