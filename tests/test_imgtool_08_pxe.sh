#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# test_imgtool_08_pxe: imgtool pxe writes the PXELINUX, GRUB, iPXE, dnsmasq
# (full DHCP and proxy-DHCP) and ISC dhcpd configurations, and copies the
# kernel and the initrd next to them.  Each file must name the right
# server, port, export, kernel and initrd, carry the agent's command line
# (which the agent itself must parse back, BOOTIF= as each loader fills it
# in), and pass the syntax check of its own program where that program is
# installed (dnsmasq --test, grub-script-check, dhcpd -t).  Two runs give
# the same bytes; a rerun replaces the files in place.  Bad input fails
# with one line and leaves nothing behind.
. "$(dirname "$0")/functions.sh"

[ -x "$AGENT" ] || fail "the agent $AGENT is not built"

errs=$TESTDIR/last.err
imgt() {
  local rc=0
  "$IMGTOOL" "$@" >"$TESTDIR/last.out" 2>"$errs" || rc=$?
  cat "$errs" >>"$TESTDIR/imgtool.log"
  return $rc
}

# has FILE REGEX: the file has a line matching (grep -E), else fail
has() {
  grep -Eq -- "$2" "$1" || { cat "$1" >&2; fail "$1 lacks /$2/"; }
}
hasnt() {
  if grep -Eq -- "$2" "$1"; then cat "$1" >&2; fail "$1 has /$2/"; fi
}

# A kernel (a bzImage header is all imgtool looks at) and an initrd.
src=$TESTDIR/src
mkdir -p "$src"
kernel=$src/vmlinuz-6.1.0-99-amd64
head -c 8192 /dev/urandom >"$kernel"
printf 'HdrS' | dd of="$kernel" bs=1 seek=$((0x202)) conv=notrunc status=none
printf '070701%0104d' 0 | gzip -n >"$src/nbdroot.gz"
initrd=$src/nbdroot.gz

files="pxelinux.cfg/default grub/grub.cfg nbdroot.ipxe dnsmasq-dhcp.conf
  dnsmasq-proxy.conf dhcpd.conf vmlinuz-6.1.0-99-amd64 nbdroot.gz"

# ---- the files and what they say ----
out=$TESTDIR/tftp
imgt pxe --server 192.168.10.1 --port 10810 --export bookworm \
  --kernel "$kernel" --initrd "$initrd" -o "$out" \
  --console ttyS0,115200 --console tty0 --append "rw  quiet" ||
  fail "imgtool pxe failed: $(cat "$errs")"
for f in $files; do
  [ -f "$out/$f" ] || fail "no $f in the output"
  [ "$(stat -c %a "$out/$f")" = 644 ] || fail "$f is not mode 644 (TFTP servers need it readable)"
done
for d in "$out" "$out/pxelinux.cfg" "$out/grub"; do
  [ "$(stat -c %a "$d")" = 755 ] || fail "$d is not mode 755"
done
cmp -s "$kernel" "$out/vmlinuz-6.1.0-99-amd64" || fail "the kernel copy differs"
cmp -s "$initrd" "$out/nbdroot.gz" || fail "the initrd copy differs"
for f in pxelinux.cfg/default grub/grub.cfg nbdroot.ipxe dnsmasq-dhcp.conf \
         dnsmasq-proxy.conf dhcpd.conf; do
  has "$out/$f" "^# .*Written by imgtool pxe"
  has "$out/$f" "^# Boots nbdroot clients from the NBD server 192\.168\.10\.1:10810, export 'bookworm':$"
  # reproducible: nothing that changes from run to run
  hasnt "$out/$f" "20[0-9][0-9]-[0-9][0-9]-[0-9][0-9]|[0-9][0-9]:[0-9][0-9]:[0-9][0-9]"
  hasnt "$out/$f" "$src"
done
[ ! -s "$TESTDIR/last.out" ] || fail "imgtool pxe printed on stdout: $(cat "$TESTDIR/last.out")"
grep -q "^imgtool: pxe $out: root=nbd:192.168.10.1:10810/bookworm" "$errs" ||
  fail "no summary line: $(cat "$errs")"
grep -q "^imgtool: note: .*pxelinux.0, ldlinux.c32, grubx64.efi" "$errs" ||
  fail "no note about the missing boot loaders: $(cat "$errs")"

cmd="ip=dhcp root=nbd:192\.168\.10\.1:10810/bookworm console=ttyS0,115200 console=tty0 rw quiet"
p=$out/pxelinux.cfg/default
has "$p" "^SERIAL 0 115200$"
has "$p" "^DEFAULT nbdroot$"
has "$p" "^LABEL nbdroot$"
has "$p" "^  KERNEL vmlinuz-6\.1\.0-99-amd64$"
has "$p" "^  INITRD nbdroot\.gz$"
has "$p" "^  APPEND $cmd$"
has "$p" "^  IPAPPEND 2$"
# SERIAL must come before any other directive
[ "$(grep -v '^#' "$p" | head -n 1)" = "SERIAL 0 115200" ] || fail "SERIAL is not the first directive"

g=$out/grub/grub.cfg
has "$g" "^serial --unit=0 --speed=115200$"
has "$g" "^set timeout=0$"
has "$g" "^  linux /vmlinuz-6\.1\.0-99-amd64 $cmd \\$\\{bootif\\}$"
has "$g" "^  initrd /nbdroot\.gz$"
has "$g" "set bootif=\"BOOTIF=\\$\\{net_default_mac\\}\""

i=$out/nbdroot.ipxe
[ "$(head -n 1 "$i")" = "#!ipxe" ] || fail "nbdroot.ipxe does not start with #!ipxe"
has "$i" "^kernel tftp://192\.168\.10\.1/vmlinuz-6\.1\.0-99-amd64 initrd=nbdroot\.gz $cmd BOOTIF=01-\\$\\{netX/mac:hexhyp\\} \\|\\| goto failed$"
has "$i" "^initrd tftp://192\.168\.10\.1/nbdroot\.gz \\|\\| goto failed$"
has "$i" "^boot \\|\\| goto failed$"

d=$out/dnsmasq-dhcp.conf
has "$d" "^dhcp-range=192\.168\.10\.100,192\.168\.10\.200,infinite$"
has "$d" "^enable-tftp$"
has "$d" "^tftp-root=$out$"
has "$d" "^dhcp-match=set:ipxe,175$"
has "$d" "^dhcp-match=set:efi64,option:client-arch,7$"
has "$d" "^dhcp-boot=tag:ipxe,tftp://192\.168\.10\.1/nbdroot\.ipxe$"
has "$d" "^dhcp-boot=tag:!ipxe,tag:efi64,grubx64\.efi,,192\.168\.10\.1$"
has "$d" "^dhcp-boot=tag:!ipxe,tag:!efi64,pxelinux\.0,,192\.168\.10\.1$"
has "$d" "^#dhcp-boot=tag:!ipxe,tag:!efi64,undionly\.kpxe,,192\.168\.10\.1$"

x=$out/dnsmasq-proxy.conf
has "$x" "^dhcp-range=192\.168\.10\.1,proxy$"
has "$x" "^tftp-root=$out$"
has "$x" "^dhcp-boot=tag:ipxe,tftp://192\.168\.10\.1/nbdroot\.ipxe$"
has "$x" "^pxe-service=tag:!ipxe,x86PC,\"[^\"]*\",pxelinux$"
has "$x" "^pxe-service=tag:!ipxe,BC_EFI,\"[^\"]*\",grubx64\.efi$"
has "$x" "^pxe-service=tag:!ipxe,x86-64_EFI,\"[^\"]*\",grubx64\.efi$"
hasnt "$x" "^dhcp-range=.*,infinite"

h=$out/dhcpd.conf
has "$h" "^next-server 192\.168\.10\.1;$"
has "$h" "^if exists user-class and option user-class = \"iPXE\" \\{$"
has "$h" "^  filename \"tftp://192\.168\.10\.1/nbdroot\.ipxe\";$"
has "$h" "^  filename \"grubx64\.efi\";$"
has "$h" "^  filename \"pxelinux\.0\";$"

# The agent reads back what each loader hands the kernel.
# parse LINE [EXPORT [RO]]: with the export and ro= the agent reads.
parse() {
  "$AGENT" --parse-cmdline "$1" >"$TESTDIR/parsed" 2>&1 ||
    fail "the agent rejects '$1': $(cat "$TESTDIR/parsed")"
  for kv in server=192.168.10.1 port=10810 "export=${2:-bookworm}" \
            bootif=52:54:00:12:34:56 ip=dhcp "ro=${3:-0}"; do
    grep -qx "$kv" "$TESTDIR/parsed" ||
      fail "the agent reads '$1' without $kv: $(cat "$TESTDIR/parsed")"
  done
}
parse "$(sed -n 's/^  APPEND //p' "$p") BOOTIF=01-52-54-00-12-34-56"
parse "$(sed -n 's/^  linux [^ ]* //p' "$g" | sed 's/\${bootif}/BOOTIF=52:54:00:12:34:56/')"
parse "$(sed -n 's/^kernel [^ ]* \(.*\) || goto failed$/\1/p' "$i" |
         sed 's/\${netX\/mac:hexhyp}/52-54-00-12-34-56/')"

# ---- each file passes its own program's syntax check, where installed ----
checked=""
if command -v dnsmasq >/dev/null 2>&1; then
  for f in dnsmasq-dhcp.conf dnsmasq-proxy.conf; do
    dnsmasq --test --conf-file="$out/$f" >"$TESTDIR/check.log" 2>&1 ||
      { cat "$TESTDIR/check.log" >&2; fail "dnsmasq rejects $f"; }
  done
  checked="$checked dnsmasq"
fi
if command -v grub-script-check >/dev/null 2>&1; then
  grub-script-check "$g" >"$TESTDIR/check.log" 2>&1 ||
    { cat "$TESTDIR/check.log" >&2; fail "grub-script-check rejects grub.cfg"; }
  checked="$checked grub"
fi
if command -v dhcpd >/dev/null 2>&1; then
  dhcpd -t -cf "$h" >"$TESTDIR/check.log" 2>&1 ||
    { cat "$TESTDIR/check.log" >&2; fail "dhcpd -t rejects dhcpd.conf"; }
  checked="$checked dhcpd"
fi

# ---- reproducible, and a rerun replaces in place ----
sums() { (cd "$1" && for f in $files; do sha256sum "$f"; done); }
sums "$out" >"$TESTDIR/sums1"
echo "stale" >"$out/nbdroot.ipxe"
echo "keep me" >"$out/pxelinux.0"
imgt pxe --server 192.168.10.1 --port 10810 --export bookworm \
  --kernel "$kernel" --initrd "$initrd" -o "$out" \
  --console ttyS0,115200 --console tty0 --append "rw  quiet" ||
  fail "second run failed: $(cat "$errs")"
sums "$out" >"$TESTDIR/sums2"
cmp -s "$TESTDIR/sums1" "$TESTDIR/sums2" ||
  { diff "$TESTDIR/sums1" "$TESTDIR/sums2" >&2; fail "two runs differ"; }
[ "$(cat "$out/pxelinux.0")" = "keep me" ] || fail "a rerun touched a file that is not its own"
grep -q "^imgtool: note: .*has no ldlinux.c32, grubx64.efi yet" "$errs" ||
  fail "the note still lists a boot loader that is there: $(cat "$errs")"
# In another directory only the lines naming the directory differ.
imgt pxe --server 192.168.10.1 --port 10810 --export bookworm \
  --kernel "$kernel" --initrd "$initrd" -o "$TESTDIR/other" \
  --console ttyS0,115200 --console tty0 --append "rw  quiet" ||
  fail "third run failed: $(cat "$errs")"
for f in $files; do
  sed "s|$TESTDIR/other|$out|g" "$TESTDIR/other/$f" | cmp -s - "$out/$f" ||
    fail "$f differs beyond the directory's name between two directories"
done
# The kernel given from the output directory itself is left as it is.
imgt pxe --server 192.168.10.1 --export bookworm \
  --kernel "$out/vmlinuz-6.1.0-99-amd64" --initrd "$out/nbdroot.gz" -o "$out" ||
  fail "a run with the kernel and initrd already in place failed: $(cat "$errs")"
cmp -s "$kernel" "$out/vmlinuz-6.1.0-99-amd64" || fail "the kernel in place was damaged"
has "$out/pxelinux.cfg/default" "^  APPEND ip=dhcp root=nbd:192\.168\.10\.1:10809/bookworm rw$"
hasnt "$out/pxelinux.cfg/default" "^SERIAL"
hasnt "$out/grub/grub.cfg" "^serial"
# Several servers: every loader's command line has the agent's list.
two=$TESTDIR/two
imgt pxe --server 192.168.10.1 --server 192.168.10.2 --port 10810 --export bookworm \
  --kernel "$kernel" --initrd "$initrd" -o "$two" || fail "two servers: $(cat "$errs")"
l="root=nbd:192\.168\.10\.1:10810,192\.168\.10\.2:10810/bookworm"
has "$two/pxelinux.cfg/default" "^  APPEND ip=dhcp $l rw"
has "$two/grub/grub.cfg" "^  linux /vmlinuz-6\.1\.0-99-amd64 ip=dhcp $l "
has "$two/nbdroot.ipxe" "^kernel .* ip=dhcp $l "

# ---- a subdirectory of the TFTP root, a separate TFTP server, HTTP ----
sub=$TESTDIR/root/boot/nbdroot
imgt pxe --server 10.1.2.3 --tftp-server 10.1.2.4 --export lab-1.2_x+y \
  --kernel "$kernel" --initrd "$initrd" -o "$sub" --tftp-prefix /boot/nbdroot/ \
  --dhcp-range 10.1.2.50,10.1.2.99 ||
  fail "--tftp-prefix run failed: $(cat "$errs")"
has "$sub/pxelinux.cfg/default" "^  KERNEL vmlinuz-6\.1\.0-99-amd64$"
has "$sub/pxelinux.cfg/default" "^  APPEND ip=dhcp root=nbd:10\.1\.2\.3:10809/lab-1\.2_x\+y rw$"
has "$sub/grub/grub.cfg" "^  linux /boot/nbdroot/vmlinuz-6\.1\.0-99-amd64 ip=dhcp root=nbd:10\.1\.2\.3:10809/lab-1\.2_x\+y "
has "$sub/grub/grub.cfg" "^  initrd /boot/nbdroot/nbdroot\.gz$"
has "$sub/grub/grub.cfg" "^#   configfile /boot/nbdroot/grub/grub\.cfg$"
has "$sub/nbdroot.ipxe" "^kernel tftp://10\.1\.2\.4/boot/nbdroot/vmlinuz-6\.1\.0-99-amd64 "
has "$sub/nbdroot.ipxe" "^initrd tftp://10\.1\.2\.4/boot/nbdroot/nbdroot\.gz "
has "$sub/dnsmasq-dhcp.conf" "^tftp-root=$TESTDIR/root$"
has "$sub/dnsmasq-dhcp.conf" "^dhcp-range=10\.1\.2\.50,10\.1\.2\.99,infinite$"
has "$sub/dnsmasq-dhcp.conf" "^dhcp-boot=tag:ipxe,tftp://10\.1\.2\.4/boot/nbdroot/nbdroot\.ipxe$"
has "$sub/dnsmasq-dhcp.conf" "^dhcp-boot=tag:!ipxe,tag:!efi64,boot/nbdroot/pxelinux\.0,,10\.1\.2\.4$"
has "$sub/dnsmasq-proxy.conf" "^dhcp-range=10\.1\.2\.4,proxy$"
has "$sub/dnsmasq-proxy.conf" "^pxe-service=tag:!ipxe,x86PC,\"[^\"]*\",boot/nbdroot/pxelinux$"
has "$sub/dhcpd.conf" "^next-server 10\.1\.2\.4;$"
has "$sub/dhcpd.conf" "^  filename \"boot/nbdroot/grubx64\.efi\";$"

web=$TESTDIR/web
imgt pxe --server 10.1.2.3 --export bookworm --kernel "$kernel" \
  --initrd "$initrd" -o "$web" --http-base http://10.1.2.3:8080/nbdroot/ ||
  fail "--http-base run failed: $(cat "$errs")"
has "$web/nbdroot.ipxe" "^kernel http://10\.1\.2\.3:8080/nbdroot/vmlinuz-6\.1\.0-99-amd64 "
has "$web/nbdroot.ipxe" "^initrd http://10\.1\.2\.3:8080/nbdroot/nbdroot\.gz "
has "$web/dnsmasq-proxy.conf" "^dhcp-boot=tag:ipxe,http://10\.1\.2\.3:8080/nbdroot/nbdroot\.ipxe$"
has "$web/dhcpd.conf" "^  filename \"http://10\.1\.2\.3:8080/nbdroot/nbdroot\.ipxe\";$"

if [ -n "$checked" ]; then
  for dir in "$sub" "$web"; do
    if command -v dnsmasq >/dev/null 2>&1; then
      dnsmasq --test --conf-file="$dir/dnsmasq-dhcp.conf" >/dev/null 2>&1 &&
        dnsmasq --test --conf-file="$dir/dnsmasq-proxy.conf" >/dev/null 2>&1 ||
        fail "dnsmasq rejects the files in $dir"
    fi
    if command -v grub-script-check >/dev/null 2>&1; then
      grub-script-check "$dir/grub/grub.cfg" || fail "grub-script-check rejects $dir/grub/grub.cfg"
    fi
    if command -v dhcpd >/dev/null 2>&1; then
      dhcpd -t -cf "$dir/dhcpd.conf" >/dev/null 2>&1 || fail "dhcpd -t rejects $dir/dhcpd.conf"
    fi
  done
fi

# ---- the root: rw by default, --ro, --append accumulates ----
# pxegen DIR ARGS...: imgtool pxe for 192.168.10.1:10810 into a fresh DIR
pxegen() {
  local dir=$1
  shift
  rm -rf "$dir"
  imgt pxe --server 192.168.10.1 --port 10810 --kernel "$kernel" \
    --initrd "$initrd" -o "$dir" "$@" ||
    fail "imgtool pxe $* failed: $(cat "$errs")"
}
# cmdlines DIR: the kernel command lines of DIR's PXELINUX, GRUB and iPXE
# files, in that order, one a line, BOOTIF= as each loader fills it in.
cmdlines() {
  sed -n 's/^  APPEND \(.*\)$/\1 BOOTIF=01-52-54-00-12-34-56/p' "$1/pxelinux.cfg/default"
  sed -n 's/^  linux [^ ]* //p' "$1/grub/grub.cfg" |
    sed 's/\${bootif}/BOOTIF=52:54:00:12:34:56/'
  sed -n 's/^kernel [^ ]* initrd=[^ ]* \(.*\) || goto failed$/\1/p' "$1/nbdroot.ipxe" |
    sed 's/\${netX\/mac:hexhyp}/52-54-00-12-34-56/'
}
# each_line DIR N REGEX: DIR's loaders give N command lines, all matching
each_line() {
  local l
  cmdlines "$1" >"$TESTDIR/lines"
  [ "$(wc -l <"$TESTDIR/lines")" = "$2" ] ||
    { cat "$TESTDIR/lines" >&2; fail "$1: not $2 kernel command lines"; }
  while read -r l; do
    echo "$l" | grep -Eq -- "$3" || fail "$1: command line '$l' lacks /$3/"
  done <"$TESTDIR/lines"
}
# parse_lines RO EXPORT...: the agent reads each line of $TESTDIR/lines
# with ro=RO and the export of its menu position (the EXPORTs in turn)
parse_lines() {
  local ro=$1 l n=0 e
  shift
  while read -r l; do
    eval "e=\${$((n % $# + 1))}"
    parse "$l" "$e" "$ro" </dev/null
    n=$((n + 1))
  done <"$TESTDIR/lines"
}
c="ip=dhcp root=nbd:192\.168\.10\.1:10810/bookworm"

pxegen "$TESTDIR/rw" --export bookworm
each_line "$TESTDIR/rw" 3 "^$c rw BOOTIF="
parse_lines 0 bookworm

pxegen "$TESTDIR/ro" --export bookworm --ro
each_line "$TESTDIR/ro" 3 "^$c ro BOOTIF="
parse_lines 1 bookworm

pxegen "$TESTDIR/app" --export bookworm --console ttyS0 --append quiet \
  --append "nbdroot.retries=0   loglevel=3"
each_line "$TESTDIR/app" 3 "^$c rw console=ttyS0 quiet nbdroot\.retries=0 loglevel=3 BOOTIF="
parse_lines 0 bookworm

# The user's own ro or rw replaces the default: never both, never twice.
pxegen "$TESTDIR/userro" --export bookworm --append "quiet ro"
each_line "$TESTDIR/userro" 3 "^$c quiet ro BOOTIF="
parse_lines 1 bookworm
pxegen "$TESTDIR/userrw" --export bookworm --append rw --append quiet
each_line "$TESTDIR/userrw" 3 "^$c rw quiet BOOTIF="

# ---- several exports: a menu in every loader, the first the default ----
pxegen "$TESTDIR/menu" --export bookworm --export trixie --console ttyS0,115200
m=$TESTDIR/menu
each_line "$m" 6 "^ip=dhcp root=nbd:192\.168\.10\.1:10810/(bookworm|trixie) rw console=ttyS0,115200 BOOTIF="
order=$(sed 's|^[^/]*/\([a-z]*\) .*|\1|' "$TESTDIR/lines" | tr '\n' ' ')
[ "$order" = "bookworm trixie bookworm trixie bookworm trixie " ] ||
  fail "the menu entries are not in the order given, one per export: $order"
parse_lines 0 bookworm trixie
for f in pxelinux.cfg/default grub/grub.cfg nbdroot.ipxe dnsmasq-dhcp.conf \
         dnsmasq-proxy.conf dhcpd.conf; do
  has "$m/$f" "^# Boots nbdroot clients from the NBD server 192\.168\.10\.1:10810, exports 'bookworm' \(the default\), 'trixie':$"
done
p=$m/pxelinux.cfg/default
[ "$(grep -v '^#' "$p" | head -n 1)" = "SERIAL 0 115200" ] || fail "menu: SERIAL is not the first directive"
has "$p" "^DEFAULT bookworm$"
has "$p" "^PROMPT 1$"
has "$p" "^TIMEOUT 50$"
has "$p" "^SAY   bookworm \(default\)$"
has "$p" "^SAY   trixie$"
[ "$(grep '^LABEL ' "$p" | tr '\n' ' ')" = "LABEL bookworm LABEL trixie " ] ||
  fail "menu: PXELINUX labels are not bookworm, trixie"
g=$m/grub/grub.cfg
has "$g" "^set default=0$"
has "$g" "^set timeout=5$"
[ "$(grep -c '^menuentry ' "$g")" = 2 ] || fail "menu: grub.cfg has not two entries"
grep '^menuentry ' "$g" | head -n 1 | grep -q "bookworm" || fail "menu: GRUB's first entry is not bookworm"
if command -v grub-script-check >/dev/null 2>&1; then
  grub-script-check "$g" || fail "grub-script-check rejects the menu"
fi
i=$m/nbdroot.ipxe
has "$i" "^menu nbdroot: choose a root"
has "$i" "^item boot-0 bookworm \(default\)$"
has "$i" "^item boot-1 trixie$"
has "$i" "^choose --default boot-0 --timeout 5000 target \|\| goto cancel$"
has "$i" "^goto \\$\\{target\\}$"
for n in 0 1; do
  e=$([ $n = 0 ] && echo bookworm || echo trixie)
  sed -n "/^:boot-$n\$/,/^boot /p" "$i" | grep -q "^kernel .* root=nbd:192\.168\.10\.1:10810/$e rw " ||
    fail "menu: iPXE's :boot-$n does not boot $e"
done
has "$m/dnsmasq-proxy.conf" "^pxe-service=tag:!ipxe,x86PC,\"nbdroot menu \(BIOS, PXELINUX\)\",pxelinux$"
grep -q "^imgtool: pxe $m: root=nbd:192.168.10.1:10810/bookworm (a boot menu; more: trixie)" "$errs" ||
  fail "menu: no summary line naming the menu: $(cat "$errs")"
# One export gives no menu.
hasnt "$TESTDIR/rw/pxelinux.cfg/default" "^PROMPT 1|^TIMEOUT"
has "$TESTDIR/rw/grub/grub.cfg" "^set timeout=0$"
hasnt "$TESTDIR/rw/nbdroot.ipxe" "^(menu|item|choose) "

# ---- dnsmasq serves no DNS unless --dns ----
for f in dnsmasq-dhcp.conf dnsmasq-proxy.conf; do
  has "$TESTDIR/rw/$f" "^port=0$"
done
pxegen "$TESTDIR/dns" --export bookworm --dns
for f in dnsmasq-dhcp.conf dnsmasq-proxy.conf; do
  hasnt "$TESTDIR/dns/$f" "^port="
  has "$TESTDIR/dns/$f" "--dns"
  for d in rw dns menu; do
    if command -v dnsmasq >/dev/null 2>&1; then
      dnsmasq --test --conf-file="$TESTDIR/$d/$f" >/dev/null 2>&1 ||
        fail "dnsmasq rejects $d/$f"
    fi
  done
done

# ---- help ----
"$IMGTOOL" pxe --help >"$TESTDIR/help" 2>&1 || fail "pxe --help failed"
grep -q "^usage: imgtool pxe --server ADDR" "$TESTDIR/help" || fail "pxe --help shows no usage"
"$IMGTOOL" --help | grep -q "^  pxe " || fail "imgtool --help does not list pxe"

# ---- bad input: one line, exit status, nothing left behind ----
touch "$TESTDIR/afile"
# bad EXPECTED_STATUS REGEX ARGS...: fails with that status and one line
bad() {
  local want=$1 re=$2 rc=0
  shift 2
  rm -rf "$TESTDIR/bad"
  imgt pxe "$@" || rc=$?
  [ "$rc" = "$want" ] || fail "pxe $* exited $rc, not $want: $(cat "$errs")"
  [ "$(wc -l <"$errs")" = 1 ] || fail "pxe $* printed more than one line: $(cat "$errs")"
  grep -Eq "^imgtool: error: .*$re" "$errs" || fail "pxe $*: message lacks /$re/: $(cat "$errs")"
  [ ! -e "$TESTDIR/bad" ] || fail "pxe $* left $(find "$TESTDIR/bad") behind"
}
ok="--export root --kernel $kernel --initrd $initrd"
o="-o $TESTDIR/bad/deep/dir"
bad 1 "cannot read --kernel .*/nope: No such file" --server 10.0.0.1 --export root --kernel "$src/nope" --initrd "$initrd" $o
bad 1 "cannot read --initrd .*/nope: No such file" --server 10.0.0.1 --export root --kernel "$kernel" --initrd "$src/nope" $o
bad 1 "not a Linux kernel image .*swapped with --initrd" --server 10.0.0.1 --export root --kernel "$initrd" --initrd "$kernel" $o
bad 2 "'10\.0\.0\.300' is not an IPv4 address" --server 10.0.0.300 $ok $o
bad 2 "'nbd\.example' is not an IPv4 address" --server nbd.example $ok $o
bad 2 "127\.0\.0\.1 cannot be a server's address" --server 127.0.0.1 $ok $o
bad 2 "--tftp-server '10\.1' is not an IPv4 address" --server 10.0.0.1 --tftp-server 10.1 $ok $o
bad 2 "--port '0' is not a port" --server 10.0.0.1 --port 0 $ok $o
bad 2 "--port '70000' is not a port" --server 10.0.0.1 --port 70000 $ok $o
bad 2 "--export 'a@b' is not an export name" --server 10.0.0.1 --export a@b --kernel "$kernel" --initrd "$initrd" $o
bad 2 "--export '\.x' is not an export name" --server 10.0.0.1 --export .x --kernel "$kernel" --initrd "$initrd" $o
bad 2 "needs --server ADDR" $ok $o
bad 2 "needs --export NAME" --server 10.0.0.1 --kernel "$kernel" --initrd "$initrd" $o
bad 2 "needs -o DIR" --server 10.0.0.1 $ok
bad 2 "--append .*character '\\$'" --server 10.0.0.1 $ok $o --append 'init=$x'
bad 2 "--append .*character '\\$'" --server 10.0.0.1 $ok $o --append quiet --append 'init=$x'
bad 2 "--ro and --append 'rw' ask for opposite roots" --server 10.0.0.1 $ok $o --ro --append "quiet rw"
bad 2 "--export root is given twice" --server 10.0.0.1 $ok $o --export root
bad 2 "--export 'a@b' is not an export name" --server 10.0.0.1 $ok $o --export a@b
bad 2 "--console 'ttyS0 x'" --server 10.0.0.1 $ok $o --console 'ttyS0 x'
bad 2 "--http-base 'ftp://x' is not an http" --server 10.0.0.1 $ok $o --http-base ftp://x
bad 2 "--tftp-prefix nbdroot: the output directory .* does not end with it" --server 10.0.0.1 $ok $o --tftp-prefix nbdroot
bad 2 "--tftp-prefix '\.\./x': component '\.\.'" --server 10.0.0.1 $ok $o --tftp-prefix ../x
bad 2 "--dhcp-range '10\.0\.0\.9,10\.0\.0\.1'" --server 10.0.0.1 $ok $o --dhcp-range 10.0.0.9,10.0.0.1
bad 2 "unknown option '--bogus'" --server 10.0.0.1 $ok $o --bogus
bad 2 "option --server needs a value" $ok $o --server
cp "$kernel" "$src/nbdroot.ipxe"
bad 2 "the name 'nbdroot\.ipxe' is one imgtool pxe writes" --server 10.0.0.1 --export root --kernel "$src/nbdroot.ipxe" --initrd "$initrd" $o
bad 1 "cannot create the directory .*/afile: Not a directory" --server 10.0.0.1 $ok -o "$TESTDIR/afile/sub"
if [ "$(id -u)" != 0 ]; then
  mkdir -p "$TESTDIR/ro" && chmod 555 "$TESTDIR/ro"
  bad 1 "cannot create the directory .*/ro/x: Permission denied" --server 10.0.0.1 $ok -o "$TESTDIR/ro/x"
fi
# A failure after some directories were made removes them, and a failed
# run leaves an earlier run's files as they were.
mkdir -p "$TESTDIR/half"
touch "$TESTDIR/half/grub"
bad 1 "cannot create the directory .*/half/grub: Not a directory" --server 10.0.0.1 $ok -o "$TESTDIR/half"
[ "$(ls -A "$TESTDIR/half")" = grub ] || fail "a failed run left $(ls -A "$TESTDIR/half") in the directory"
sums "$out" >"$TESTDIR/sums3"
bad 2 "--server.*10\.9\.9" --server 10.1.1.1 --server 10.9.9 --export root --kernel "$kernel" --initrd "$initrd" -o "$out"
bad 1 "cannot read --kernel" --server 10.9.9.9 --export root --kernel "$src/nope" --initrd "$initrd" -o "$out"
sums "$out" >"$TESTDIR/sums4"
cmp -s "$TESTDIR/sums3" "$TESTDIR/sums4" || fail "a failed run changed the earlier output"

echo "imgtool pxe: 8 files, reproducible; syntax checked with:${checked:- nothing installed}"
