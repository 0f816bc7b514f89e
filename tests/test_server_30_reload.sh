#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# test_server_30_reload: configuration reload (SIGHUP) and --check-config.
#   - a reload adds an export, removes one, raises max-request and sets a
#     quota: a client connected to the removed export carries on
#     undisturbed (same overlay, same settings), new clients of it are
#     refused, the new export serves, new connections get the new limits;
#   - a broken configuration on reload is refused with a log line saying
#     so, and the previous one keeps serving;
#   - settings only a restart can change (threads) are reported so;
#   - each reload logs what changed, key by key and export by export;
#     nbdsrv ctl reload (with -c FILE: the socket named in the file) does
#     the same and answers with those lines, or with why it refused;
#   - drain state survives a reload;
#   - --check-config says OK (exit 0) for a good file, and for a bad one
#     names the file and line (exit 2) or the missing image (exit 1).
. "$(dirname "$0")/functions.sh"

make_image "$TESTDIR/base.img" 8
conf=$TESTDIR/nbdsrv.conf
write_conf() {
  cat >"$conf" <<CONF
[generic]
overlay-dir = $TESTDIR/ov
control-socket = $TESTDIR/ctl.sock
max-request = $1
${3:-}
$2
CONF
}
write_conf 1M "[one]
image = $TESTDIR/base.img"
"$NBDSRV" --check-config -c "$conf" >"$TESTDIR/check.out" 2>&1 ||
  { cat "$TESTDIR/check.out"; fail "--check-config on a good file"; }
grep -q "configuration OK: 1 export" "$TESTDIR/check.out" || fail "--check-config output: $(cat "$TESTDIR/check.out")"
start_nbdsrv -c "$conf"
export PORT

# A client of "one" stays connected through everything below.
/usr/bin/python3 "$srcdir/server-lib.py" "$TESTDIR" <<'PY' &
tdir = sys.argv[1]
M = 1 << 20
h = connect("one@stay")
check(h.get_block_size(nbd.SIZE_MAXIMUM) == M, "max-request before the reload")
d = pattern("stay", 2 * M)
h.pwrite(d[:M], 0)
h.pwrite(d[M:], M)
open(tdir + "/stay.ready", "w").close()
wait_for(lambda: os.path.exists(tdir + "/stay.go"), "the reloads", timeout=60)
# Still served, with its own data, and its old limit (1 MiB).
check_data(h.pread(M, M), pattern("stay", 2 * M)[M:], "connected client after the reloads")
h.pwrite(b"z" * 4096, 3 * M)
expect_error(lambda: h.pread(2 * M, 0), EINVAL, "old connection, read over its max-request")
h.flush()
h.shutdown()
PY
stay=$!
for _ in $(seq 100); do [ -e "$TESTDIR/stay.ready" ] && break; sleep 0.1; done
[ -e "$TESTDIR/stay.ready" ] || fail "the staying client did not start"

"$NBDSRV" ctl -s "$TESTDIR/ctl.sock" drain one >/dev/null || fail "ctl drain"
write_conf 2M "[one]
image = $TESTDIR/base.img
[two]
image = $TESTDIR/base.img
quota = 64K"
kill -HUP "$SRV_PID"
for _ in $(seq 100); do grep -q "configuration reloaded" "$TESTDIR/nbdsrv.log" && break; sleep 0.1; done
grep -q "configuration reloaded: 2 exports, 2 changes" "$TESTDIR/nbdsrv.log" &&
  grep -q "reload: export two: added" "$TESTDIR/nbdsrv.log" &&
  grep -q "reload: max-request changed: 1M -> 2M" "$TESTDIR/nbdsrv.log" ||
  { cat "$TESTDIR/nbdsrv.log"; fail "first reload not logged"; }

/usr/bin/python3 "$srcdir/server-lib.py" "$TESTDIR" <<'PY' || fail "after the first reload"
M = 1 << 20
r = Raw(); r.greeting()
rtype, _ = r.go("one@new")
check(rtype == REP_ERR | 7, "a drained export is still drained after a reload (%#x)" % rtype)
r.close()
h = connect("two@t")
check(h.get_block_size(nbd.SIZE_MAXIMUM) == 2 * M, "max-request after the reload")
h.pwrite(b"q" * 65536, 0)
expect_error(lambda: h.pwrite(b"q" * 4096, M), errno.ENOSPC, "the new export's quota")
h.shutdown()
PY

write_conf 2M "[two]
image = $TESTDIR/base.img
quota = 64K" "threads = 7"
kill -HUP "$SRV_PID"
for _ in $(seq 100); do [ "$(grep -c "configuration reloaded" "$TESTDIR/nbdsrv.log")" = 2 ] && break; sleep 0.1; done
grep -q "configuration reloaded: 1 export, 2 changes" "$TESTDIR/nbdsrv.log" &&
  grep -q "reload: export one: removed" "$TESTDIR/nbdsrv.log" ||
  { cat "$TESTDIR/nbdsrv.log"; fail "second reload not logged"; }
grep -q "'threads' changed, which takes effect only after a restart" "$TESTDIR/nbdsrv.log" ||
  fail "a threads change was not reported"

# nbdsrv ctl reload, the socket taken from the file: per key changes.
write_conf 2M "[two]
image = $TESTDIR/base.img
quota = 128K
allow = 127.0.0.0/8"
"$NBDSRV" ctl -c "$conf" reload >"$TESTDIR/ctl.out" 2>&1 || { cat "$TESTDIR/ctl.out"; fail "ctl -c reload"; }
[ "$(cat "$TESTDIR/ctl.out")" = "export two: quota changed: 64K -> 128K
export two: allow changed" ] || fail "ctl reload answered: $(cat "$TESTDIR/ctl.out")"
grep -q "reload: export two: quota changed: 64K -> 128K" "$TESTDIR/nbdsrv.log" ||
  fail "ctl reload: the change is not in the log"
"$NBDSRV" ctl -c "$conf" reload >"$TESTDIR/ctl.out" 2>&1 || fail "second ctl reload"
[ "$(cat "$TESTDIR/ctl.out")" = "nothing changed" ] || fail "an idle reload answered: $(cat "$TESTDIR/ctl.out")"
grep -q "configuration reloaded: 1 export, nothing changed" "$TESTDIR/nbdsrv.log" ||
  fail "an idle reload is not logged so"

# A broken configuration is refused; "two" goes on, "three" never comes.
write_conf 2M "[two]
image = $TESTDIR/base.img
[three]
image = $TESTDIR/base.img
colour = blue"
kill -HUP "$SRV_PID"
for _ in $(seq 100); do grep -q "reload refused" "$TESTDIR/nbdsrv.log" && break; sleep 0.1; done
grep -q "nbdsrv.conf:10: unknown key 'colour'" "$TESTDIR/nbdsrv.log" &&
  grep -q "reload refused" "$TESTDIR/nbdsrv.log" || { cat "$TESTDIR/nbdsrv.log"; fail "broken reload not refused"; }
rc=0; "$NBDSRV" ctl -s "$TESTDIR/ctl.sock" reload >"$TESTDIR/ctl.out" 2>&1 || rc=$?
[ $rc = 1 ] && grep -q "^nbdsrv ctl: reload refused, still serving the previous configuration: .*nbdsrv.conf:10: unknown key 'colour'" "$TESTDIR/ctl.out" ||
  fail "ctl reload of a broken file: exit $rc: $(cat "$TESTDIR/ctl.out")"
write_conf 2M "[two]
image = $TESTDIR/missing.img"
kill -HUP "$SRV_PID"
for _ in $(seq 100); do [ "$(grep -c "reload refused" "$TESTDIR/nbdsrv.log")" = 3 ] && break; sleep 0.1; done
[ "$(grep -c "reload refused" "$TESTDIR/nbdsrv.log")" = 3 ] || fail "a reload with a missing image was not refused"

touch "$TESTDIR/stay.go"
/usr/bin/python3 "$srcdir/server-lib.py" "$TESTDIR" <<'PY' || fail "after the refused reloads"
r = Raw(); r.greeting()
rtype, _ = r.go("one@new")
check(rtype == REP_ERR_UNKNOWN, "removed export still served to new clients (%#x)" % rtype)
rtype, _ = r.go("three@x")
check(rtype == REP_ERR_UNKNOWN, "an export of a refused reload appeared (%#x)" % rtype)
r.close()
connect("two@t2").shutdown()
PY
wait $stay || fail "the client connected across the reloads"
kill -0 "$SRV_PID" || fail "nbdsrv died"
stop_nbdsrv || fail "nbdsrv exited with $? on SIGTERM"

# --check-config on bad files.
rc=0; "$NBDSRV" --check-config -c "$conf" >"$TESTDIR/check.out" 2>&1 || rc=$?
[ $rc = 1 ] && grep -q "export 'two': image .*missing.img: No such file" "$TESTDIR/check.out" ||
  fail "--check-config with a missing image: exit $rc: $(cat "$TESTDIR/check.out")"
printf '[generic]\nthreads = many\n' >"$conf"
rc=0; "$NBDSRV" --check-config -c "$conf" >"$TESTDIR/check.out" 2>&1 || rc=$?
[ $rc = 2 ] && grep -q "nbdsrv.conf:2: invalid value 'many' for 'threads'" "$TESTDIR/check.out" ||
  fail "--check-config with a bad value: exit $rc: $(cat "$TESTDIR/check.out")"
exit 0
