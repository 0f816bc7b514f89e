#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# The agent's kernel command line parser, run on the host through
# "nbdroot-agent --parse-cmdline": every form of ip=, BOOTIF=, root=nbd:,
# nbdroot=, and a clear one-line error for bad input.
. "$(dirname "$0")/functions.sh"
[ -x "$AGENT" ] || fail "agent $AGENT not built"

# expect_parse LINE KEY=VALUE...: LINE parses and prints each KEY=VALUE.
expect_parse() {
  local line=$1 out kv
  shift
  out=$("$AGENT" --parse-cmdline "$line" 2>&1) ||
    fail "rejected '$line': $out"
  for kv in "$@"; do
    grep -qxF -- "$kv" <<<"$out" ||
      fail "'$line': expected '$kv', got: $(tr '\n' ' ' <<<"$out")"
  done
}

# expect_reject LINE REGEX: LINE is refused with one line matching REGEX.
expect_reject() {
  local line=$1 re=$2 out rc=0
  out=$("$AGENT" --parse-cmdline "$line" 2>&1) || rc=$?
  [ "$rc" = 1 ] || fail "'$line' accepted (rc $rc): $out"
  [ "$(wc -l <<<"$out")" = 1 ] || fail "'$line': more than one line: $out"
  grep -Eq -- "^nbdroot: bad kernel command line: .*$re" <<<"$out" ||
    fail "'$line': message '$out' does not match /$re/"
}

# dracut root=nbd:
expect_parse "ip=dhcp root=nbd:10.0.2.2:10809/root rw" \
  ip=dhcp server=10.0.2.2 port=10809 export=root ro=0 index=-1 init=/sbin/init
expect_parse "root=nbd:10.0.2.2:root" port=10809 export=root ro=1
expect_parse "root=nbd:10.0.2.2:2000" port=2000 export=
expect_parse "root=nbd:10.0.2.2" server=10.0.2.2 port=10809 export=
expect_parse "root=nbd:192.168.1.1:2000/img:ext4:noatime,data=ordered ro" \
  port=2000 export=img fstype=ext4 rootflags=noatime,data=ordered ro=1
expect_parse "root=nbd:[fd00::1]:2000/root" server=fd00::1 port=2000 export=root
expect_parse "root=nbd:[::1]:root:xfs" server=::1 export=root fstype=xfs
expect_parse "root=nbd:10.0.2.2:/root" port=10809 export=root
expect_parse 'root=nbd:10.0.2.2:10809/with:colon' export=with fstype=colon
# dracut's fourth field, nbd-client options, is not a mount option
expect_parse "root=nbd:10.0.2.2:2000/img:ext4:noatime:timeout=30,persist" \
  fstype=ext4 rootflags=noatime nbdopts=timeout=30,persist
expect_parse "root=nbd:10.0.2.2:2000/img::noatime" fstype= rootflags=noatime \
  nbdopts=
expect_parse "root=nbd:[fd00::1]:img:ext4:ro,noatime" server=fd00::1 \
  port=10809 export=img fstype=ext4 rootflags=ro,noatime

# Debian nbdroot=
expect_parse "nbdroot=10.0.2.2,root root=/dev/nbd0" \
  server=10.0.2.2 export=root index=0 port=10809
expect_parse "nbdroot=10.0.2.2:1234,root,nbd1 root=/dev/nbd1" \
  port=1234 export=root index=1
expect_parse "nbdroot=10.0.2.2,2000,nbd0" port=2000 export= index=0
expect_parse "nbdroot=[fd00::2]:99,exp root=/dev/nbd3" server=fd00::2 port=99 \
  export=exp index=3
expect_parse "nbdroot=,root root=/dev/nbd0" server= export=root
expect_parse "nbdroot=10.0.2.2,root rootfstype=ext4 rootflags=noatime init=/bin/sh" \
  fstype=ext4 rootflags=noatime init=/bin/sh

# ip=
expect_parse "ip=10.0.2.15::10.0.2.2:255.255.255.0::eth0:off root=nbd:10.0.2.2" \
  ip=static client=10.0.2.15 gateway=10.0.2.2 netmask=255.255.255.0 device=eth0
expect_parse "ip=10.0.2.15:10.0.2.2:10.0.2.2:255.255.255.0:client1:eth0:none:10.0.2.3:10.0.2.4 root=nbd:10.0.2.2" \
  ip=static ip_server=10.0.2.2 hostname=client1 dns0=10.0.2.3 dns1=10.0.2.4
expect_parse "ip=10.1.2.3:::::: root=nbd:10.0.2.2" ip=static netmask=255.0.0.0
expect_parse "ip=192.168.7.9 root=nbd:10.0.2.2" ip=static netmask=255.255.255.0
expect_parse "ip=:::::eth1:dhcp root=nbd:10.0.2.2" ip=dhcp device=eth1
expect_parse "ip=eth1:dhcp root=nbd:10.0.2.2" ip=dhcp device=eth1
for m in dhcp on any bootp; do
  expect_parse "ip=$m root=nbd:10.0.2.2" ip=dhcp
done
expect_parse "root=nbd:10.0.2.2" ip=dhcp

# BOOTIF=, quoting, knobs, words that are not ours
expect_parse "BOOTIF=01-52-54-00-AB-cd-ef root=nbd:10.0.2.2" bootif=52:54:00:ab:cd:ef
expect_parse "BOOTIF=52:54:00:ab:cd:ef root=nbd:10.0.2.2" bootif=52:54:00:ab:cd:ef
expect_parse 'quiet "root=nbd:10.0.2.2:1/x" foo="a b" root=nbd:10.0.2.2:2/y' \
  port=2 export=y
expect_parse "nbdroot.retries=3 nbdroot.rescue=poweroff nbdroot.dead_timeout=60 nbdroot.timeout=10 nbdroot.send_id=0 root=nbd:10.0.2.2" \
  retries=3 rescue=poweroff dead_timeout=60 timeout=10 send_id=0
expect_parse "root=nbd:10.0.2.2 -- root=/dev/sda ip=bogus" ip=dhcp

# The export name on the wire (MAC and BOOTID stand for the real values):
# the identity and boot id go with every name, an empty one too (the
# server's only export), and an ID given by hand still gets the boot id.
expect_parse "root=nbd:10.0.2.2:10809/root" wire=root@MAC,boot=BOOTID
expect_parse "root=nbd:10.0.2.2" wire=@MAC,boot=BOOTID
expect_parse "nbdroot=10.0.2.2,root@pc7 root=/dev/nbd0" wire=root@pc7,boot=BOOTID
expect_parse "root=nbd:10.0.2.2:1/r@pc7,boot=b1" wire=r@pc7,boot=b1
expect_parse "root=nbd:10.0.2.2:1/root nbdroot.send_id=0" wire=root
expect_parse "root=nbd:10.0.2.2 nbdroot.send_id=0" wire=

# Layered roots: the NBD root is the base, nbdroot.state= the state
# export (sent with the same identity), nbdroot.keep= what survives a new
# base (trailing slashes dropped).
expect_parse "root=nbd:10.0.2.2:10809/root" layered=0 state= keep=
expect_parse "root=nbd:10.0.2.2:10809/base nbdroot.state=state rw" \
  layered=1 export=base state=state wire=base@MAC,boot=BOOTID \
  state_wire=state@MAC,boot=BOOTID keep= ro=0
expect_parse "nbdroot=10.0.2.2,base root=/dev/nbd0 nbdroot.state=st@pc7 nbdroot.keep=/home,/etc/ssh/,/etc/machine-id,/var/lib/app" \
  layered=1 index=0 state_wire=st@pc7,boot=BOOTID \
  keep=/home,/etc/ssh,/etc/machine-id,/var/lib/app
expect_parse "root=nbd:10.0.2.2:base nbdroot.state=s nbdroot.send_id=0" \
  wire=base state_wire=s
# Several servers: a ',' before the '/' of root=nbd: makes a list, and
# nbdroot.servers= adds to every form; a server without a port has the
# first one's; the first is tried first, duplicates once.
expect_parse "root=nbd:10.0.2.2:10809/root" servers=10.0.2.2:10809
expect_parse "root=nbd:10.0.2.2:2000,10.0.2.3:3000,[fd00::1]:4000,10.0.2.4/root:ext4" \
  server=10.0.2.2 port=2000 export=root fstype=ext4 \
  servers=10.0.2.2:2000,10.0.2.3:3000,[fd00::1]:4000,10.0.2.4:2000
expect_parse "root=nbd:10.0.2.2,10.0.2.3/root" \
  servers=10.0.2.2:10809,10.0.2.3:10809 export=root
expect_parse "root=nbd:[fd00::1],[fd00::2]:99/r:xfs" server=fd00::1 \
  servers=[fd00::1]:10809,[fd00::2]:99 fstype=xfs
expect_parse "root=nbd:10.0.2.2:x,y" export=x,y servers=10.0.2.2:10809
expect_parse "root=nbd:10.0.2.2,10.0.2.3:2/a root=nbd:10.0.2.4:/b" \
  servers=10.0.2.4:10809 export=b
expect_parse "nbdroot=10.0.2.2:1234,root root=/dev/nbd0 nbdroot.servers=10.0.2.3,fd00::5,10.0.2.2:1234" \
  server=10.0.2.2 port=1234 export=root \
  servers=10.0.2.2:1234,10.0.2.3:1234,[fd00::5]:1234
expect_parse "nbdroot=,root root=/dev/nbd0 nbdroot.servers=10.0.2.3:99" \
  server= servers=dhcp,10.0.2.3:99
expect_parse "nbdroot.servers=10.0.2.3 root=nbd:10.0.2.2,10.0.2.5/r" \
  servers=10.0.2.2:10809,10.0.2.5:10809,10.0.2.3:10809
expect_reject "root=nbd:10.0.2.2,server.example/root" "'server.example' is not IP"
expect_reject "root=nbd:10.0.2.2,10.0.2.3:0/root" "'10.0.2.3:0' is not IP"
expect_reject "root=nbd:10.0.2.2 nbdroot.servers=10.0.2.3,,10.0.2.4" "server '' is not"
expect_reject "root=nbd:10.0.2.2 nbdroot.servers=[fd00::1" "'\\[fd00::1' is not"
expect_reject "root=nbd:10.0.2.2 nbdroot.servers=$(echo 10.0.3.{1..8} | tr ' ' ,)" \
  "more than 8 servers"

# Bad input: one clear line each.
expect_reject "root=nbd:10.0.2.2 nbdroot.keep=/home" "nbdroot.keep= needs a layered root"
expect_reject "root=nbd:10.0.2.2 nbdroot.state=" "needs the state export's name"
expect_reject "root=nbd:10.0.2.2 nbdroot.state=s nbdroot.keep=home" "'home' is not an absolute path"
expect_reject "root=nbd:10.0.2.2 nbdroot.state=s nbdroot.keep=/home,/../etc" "'/\.\./etc' is not an absolute path"
expect_reject "root=nbd:10.0.2.2 nbdroot.state=s nbdroot.keep=/" "'/' is not an absolute path below /"
expect_reject "root=nbd:10.0.2.2 nbdroot.state=s nbdroot.keep=/a//b" "'/a//b'"
expect_reject "root=nbd:10.0.2.2 nbdroot.state=s nbdroot.keep=/a," "empty path at the end"
expect_reject "root=nbd:10.0.2.2 nbdroot.state=s nbdroot.keep=/a,,/b" "'' is not an absolute path"
expect_reject "root=nbd:10.0.2.2 nbdroot.state=s nbdroot.keep=" "empty list" 
expect_reject "console=ttyS0" "no NBD root"
expect_reject "root=/dev/sda1" "not an NBD root"
expect_reject "root=/dev/nbd0" "needs nbdroot="
expect_reject "nbdroot=10.0.2.2,root,nbd1 root=/dev/nbd0" "names nbd1"
expect_reject "root=nbd:" "expected root=nbd:SERVER"
expect_reject "root=nbd:server.example:10809/root" "not an IP address"
expect_reject "root=nbd:10.0.2.2:x/root" "port 'x' is not a number"
expect_reject "root=nbd:10.0.2.2:99999/root" "port '99999'"
expect_reject "root=nbd:[fd00::1:2000/root" "expected root=nbd"
expect_reject "nbdroot=10.0.2.2:0,root" "port '0'"
expect_reject "nbdroot=10.0.2.2,root,sda root=/dev/nbd0" "'sda' is not nbdN"
expect_reject "ip=bogus root=nbd:10.0.2.2" "ip=bogus: unknown method"
expect_reject "ip=10.0.2.300::::::off root=nbd:10.0.2.2" "client '10.0.2.300'"
expect_reject "ip=:::::eth0:off root=nbd:10.0.2.2" "needs a client address"
expect_reject "ip=10.0.2.15::::::maybe root=nbd:10.0.2.2" "unknown autoconf 'maybe'"
expect_reject "ip=1:2:3:4:5:6:7:8:9:10:11 root=nbd:10.0.2.2" "more than 10 fields"
expect_reject "ip=off root=nbd:10.0.2.2" "needs the network"
expect_reject "BOOTIF=01-52-54-00 root=nbd:10.0.2.2" "BOOTIF=01-52-54-00"
expect_reject "BOOTIF=01-52-54-00-zz-cd-ef root=nbd:10.0.2.2" "BOOTIF="
expect_reject "init=sbin/init root=nbd:10.0.2.2" "absolute path"
expect_reject "nbdroot.retries=many root=nbd:10.0.2.2" "not a number"
expect_reject "nbdroot.rescue=panic root=nbd:10.0.2.2" "halt, poweroff or reboot"
expect_reject "nbdroot.bogus=1 root=nbd:10.0.2.2" "unknown nbdroot option"
expect_reject "root=nbd:10.0.2.2:1/$(printf 'x%.0s' $(seq 300))" "too long|longer"
expect_reject "$(printf 'a%.0s' $(seq 5000))" "longer than"

# Not PID 1 and no parse mode: usage, not a boot attempt.
rc=0; "$AGENT" >/dev/null 2>&1 || rc=$?
[ "$rc" = 2 ] || fail "agent without arguments exited $rc, want 2 (usage)"
