#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# test_server_38_check_config: what nbdsrv --check-config finds beyond the
# syntax, each with one line that names the file and the line:
#   - images that are no image: an empty file, a text file, gzip, xz and
#     zstd files, a qcow2 image, a cpio archive are refused; a root tree
#     (etc/ and usr/, no store) is refused with a hint at imgtool build;
#     other non-ext4 content is only a warning; ext4 and a store pass;
#   - a key set twice in one section (list keys excepted);
#   - unknown keys get the closest key, nbd-server's name for it, or the
#     section they belong in;
#   - a listen port in use is refused and its holder named; the running
#     nbdsrv's own port (systemd checks before a reload) is not;
#   - exports that serve unpinned client IDs are warned about, in
#     --check-config and in the server's log at start-up.
. "$(dirname "$0")/functions.sh"
requires_cmd mkfs.ext4 gzip xz zstd qemu-img cpio

conf=$TESTDIR/nbdsrv.conf
mkdir -p "$TESTDIR/ov"
truncate -s 16M "$TESTDIR/ext4.img"
mkfs.ext4 -q -F "$TESTDIR/ext4.img" || fail "mkfs.ext4"

# check STATUS PATTERN: --check-config of $conf exits STATUS, and its
# output has a line matching PATTERN.
check() {
  local rc=0
  "$NBDSRV" --check-config -c "$conf" -o "$TESTDIR/ov" -l 127.0.0.1:0 >"$TESTDIR/out" 2>&1 || rc=$?
  [ "$rc" = "$1" ] && grep -q -E -e "$2" "$TESTDIR/out" ||
    fail "--check-config: exit $rc (expected $1), no line matching '$2' in:
$(cat "$TESTDIR/out")"
}
image_conf() { printf '[generic]\n[lab]\nrequire-pin = true\nimage = %s\n' "$1" >"$conf"; }
at="nbdsrv.conf:4: export 'lab'"

# Images that are something else.
image_conf "$TESTDIR/ext4.img"
check 0 "configuration OK: 1 export"
! grep -q warning "$TESTDIR/out" || fail "a pinned ext4 export gets a warning: $(cat "$TESTDIR/out")"
: >"$TESTDIR/empty.img"
image_conf "$TESTDIR/empty.img"
check 1 "$at: image .*/empty.img is empty, not an image$"
image_conf /etc/passwd
check 1 "$at: image /etc/passwd is a text file"
gzip -c "$TESTDIR/ext4.img" >"$TESTDIR/root.img.gz"
image_conf "$TESTDIR/root.img.gz"
check 1 "$at: image .*root.img.gz is gzip-compressed: decompress it"
xz -0 -c "$TESTDIR/ext4.img" >"$TESTDIR/root.img.xz"
image_conf "$TESTDIR/root.img.xz"
check 1 "$at: image .*root.img.xz is xz-compressed"
zstd -q -c "$TESTDIR/ext4.img" >"$TESTDIR/root.img.zst"
image_conf "$TESTDIR/root.img.zst"
check 1 "$at: image .*root.img.zst is zstd-compressed"
qemu-img convert -f raw -O qcow2 "$TESTDIR/ext4.img" "$TESTDIR/root.qcow2"
image_conf "$TESTDIR/root.qcow2"
check 1 "$at: image .*root.qcow2 is a qcow2 image: convert it with 'qemu-img convert -O raw'"
(cd "$TESTDIR" && echo nbdsrv.conf | cpio -o -H newc 2>/dev/null >initrd.cpio)
image_conf "$TESTDIR/initrd.cpio"
check 1 "$at: image .*initrd.cpio is a cpio archive"
mkdir -p "$TESTDIR/tree/etc" "$TESTDIR/tree/usr/bin"
image_conf "$TESTDIR/tree"
check 1 "$at: .*/tree is a root tree, not an image store: build an image with imgtool build$"
# Other binary content: a warning, and the export is served.
make_image "$TESTDIR/random.img" 1
image_conf "$TESTDIR/random.img"
check 0 "configuration OK: 1 export"
grep -q "^nbdsrv: warning: .*$at: image .*random.img does not look like an ext4 image" "$TESTDIR/out" ||
  fail "no warning for a non-ext4 image: $(cat "$TESTDIR/out")"
# An image store passes, and so does its current image.
mkdir -p "$TESTDIR/store"
cp "$TESTDIR/ext4.img" "$TESTDIR/store/0001.img"
ln -s 0001.img "$TESTDIR/store/current"
image_conf "$TESTDIR/store"
check 0 "configuration OK: 1 export"

# A key given twice in a section; list keys add up.
printf '[generic]\nthreads = 2\n[lab]\nimage = %s\nallow = 127.0.0.1\nallow = 10.0.0.0/8\npin = a 127.0.0.1\npin = b 127.0.0.1\nrequire-pin = true\n' \
  "$TESTDIR/ext4.img" >"$conf"
check 0 "configuration OK: 1 export"
printf '[generic]\nthreads = 2\n[lab]\nimage = %s\npolicy = persistent\n\npolicy = ephemeral\n' \
  "$TESTDIR/ext4.img" >"$conf"
check 2 "nbdsrv.conf:7: 'policy' is set twice in \[lab\] \(first on line 5\)$"
printf '[generic]\nthreads = 2\n[lab]\nimage = %s\n[generic]\nkeepalive = 5\nthreads = 3\n' \
  "$TESTDIR/ext4.img" >"$conf"
check 0 "configuration OK"   # another section, another count

# Unknown keys: a hint where there is one.
hint() {
  printf '[generic]\n%s\n[lab]\nimage = %s\n%s\n' "$1" "$TESTDIR/ext4.img" "$2" >"$conf"
  check 2 "$3"
}
hint "polcy = ephemeral" "" "nbdsrv.conf:2: unknown key 'polcy' in section \[generic\] \(did you mean 'policy'\?\)$"
hint "max_request = 1M" "" "unknown key 'max_request' .*did you mean 'max-request'\?"
hint "port = 10809" "" "nbdsrv.conf:2: unknown key 'port' .*'listen = :PORT' in \[generic\]"
hint "" "exportname = /x" "nbdsrv.conf:5: unknown key 'exportname' .*nbd-server's exportname is 'image' here"
hint "" "authfile = /etc/nbd.allow" "unknown key 'authfile' .*'allow = ADDRLIST'"
hint "" "threads = 4" "unknown key 'threads' in section \[lab\] \('threads' belongs in \[generic\]\)"
hint "image = /x" "" "unknown key 'image' in section \[generic\] \('image' belongs in an export's section\)"
hint "colour = blue" "" "nbdsrv.conf:2: unknown key 'colour' in section \[generic\]$"

# A listen port in use: refused, with who holds it.
port=$(free_port)
/usr/bin/python3 -c '
import socket, sys, time
s = socket.socket(); s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen()
open(sys.argv[2], "w").close(); time.sleep(60)' "$port" "$TESTDIR/held" &
holder=$!
on_exit "kill $holder 2>/dev/null"
for _ in $(seq 100); do [ -e "$TESTDIR/held" ] && break; sleep 0.1; done
printf '[generic]\nlisten = 127.0.0.1:%s\n[lab]\nimage = %s\nrequire-pin = true\n' "$port" "$TESTDIR/ext4.img" >"$conf"
rc=0; "$NBDSRV" --check-config -c "$conf" -o "$TESTDIR/ov" >"$TESTDIR/out" 2>&1 || rc=$?
[ $rc = 1 ] && grep -q "^nbdsrv: nbdsrv.conf:2: listen 127.0.0.1 port $port: the port is in use by python3 (pid $holder)$" \
  <(sed "s|$TESTDIR/||" "$TESTDIR/out") ||
  fail "--check-config with a port in use: exit $rc: $(cat "$TESTDIR/out")"
kill $holder; wait $holder 2>/dev/null || true

# The running server's own port passes (systemd's ExecReload checks
# first), and its start-up log warns about unpinned IDs.
printf '[generic]\n[lab]\nimage = %s\n[locked]\nimage = %s\nrequire-pin = true\n' \
  "$TESTDIR/ext4.img" "$TESTDIR/ext4.img" >"$conf"
start_nbdsrv -c "$conf" -o "$TESTDIR/ov"
wait_log "export 'lab' serves client IDs that are not pinned" "the start-up warning about unpinned IDs"
! grep -q "export 'locked' serves client IDs" "$TESTDIR/nbdsrv.log" || fail "a require-pin export was warned about"
rc=0; "$NBDSRV" --check-config -c "$conf" -o "$TESTDIR/ov" -l "127.0.0.1:$PORT" >"$TESTDIR/out" 2>&1 || rc=$?
[ $rc = 0 ] || fail "--check-config on the running server's port: exit $rc: $(cat "$TESTDIR/out")"
grep -q "^nbdsrv: warning: .*nbdsrv.conf:2: export 'lab' serves client IDs that are not pinned: .*set require-pin = true)$" "$TESTDIR/out" ||
  fail "--check-config: no warning about unpinned IDs: $(cat "$TESTDIR/out")"
stop_nbdsrv || fail "nbdsrv exited with $?"
exit 0
