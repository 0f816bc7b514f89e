#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# Failures say what failed, with what values, and what to check, in one
# console line, then stop with a RESCUE line (here: power off, as asked
# with nbdroot.rescue=poweroff) instead of a silent panic.
#   - wrong server address (a port nothing listens on: the guest may only
#     reach 10.0.2.2) -> "cannot connect to NBD server 10.0.2.2:PORT"
#   - wrong export name -> "has no export 'nope@MAC,boot=...'"
#   - a host name instead of an address -> "bad kernel command line"
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/boot-functions.sh"

cat >"$TESTDIR/init" <<'INIT'
#!/bin/sh
echo "GUEST-INIT-STARTED" >/dev/console
poweroff -f
INIT
make_rootfs "$TESTDIR/tree" "$TESTDIR/init"
make_root_image "$TESTDIR/tree" "$TESTDIR/root.img"
make_initrd "$TESTDIR/initrd.gz"
start_root_server "$TESTDIR/root.img" persistent
bad_port=$(free_port)
knobs="nbdroot.rescue=poweroff nbdroot.retries=2"

run_guest addr "ip=dhcp root=nbd:$GUEST_SERVER:$bad_port/root rw $knobs"
run_guest export "ip=dhcp root=nbd:$GUEST_SERVER:$PORT/nope rw $knobs"
wait_guest addr
wait_guest export
boot_guest name "ip=dhcp root=nbd:nbd-server.example:$PORT/root rw $knobs"

expect_console addr "nbdroot: cannot connect to NBD server 10\.0\.2\.2:$bad_port: Connection refused; check the server address and port"
expect_console addr "nbdroot: giving up after 2 attempts to reach 10\.0\.2\.2:$bad_port"
expect_console addr "nbdroot: RESCUE: boot stopped: .*powering off"

expect_console export "nbdroot: NBD server 10\.0\.2\.2:$PORT has no export 'nope@52-54-00-12-34-56,boot=[0-9a-f]+' \(NBD_REP_ERR_UNKNOWN.*check the export name"
expect_console export "nbdroot: RESCUE: boot stopped"

expect_console name "nbdroot: bad kernel command line: root=nbd:nbd-server\.example:$PORT/root: server 'nbd-server\.example' is not an IP address"
expect_console name "nbdroot: RESCUE: boot stopped: fix the kernel command line"

expect_stopped addr export name
true
