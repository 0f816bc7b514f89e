#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# test_install_01_make_install: "make install DESTDIR=..." from this build tree puts
# every file where it belongs, with sane modes, and nothing else:
#   - nbdsrv and imgtool in sbindir, the static agent in pkglibexecdir,
#     each of them runs;
#   - the systemd unit, with this tree's paths, which systemd-analyze
#     verify accepts (where it is installed);
#   - the man pages in man5, man7 and man8, without a groff warning;
#   - the commented example configuration, which nbdsrv --check-config
#     accepts once its image paths name a real image, as it is and with
#     every setting uncommented; it and nbdsrv.conf(5) show every key
#     nbdsrv/config.c knows;
#   - the README in docdir.
# Then "make uninstall" removes every file again.
. "$(dirname "$0")/functions.sh"
requires_cmd make sed sort

dest=$TESTDIR/root
# A make of its own, not a part of the "make check" running this test:
# without its jobserver, its TESTS= or its silent flags.
submake() {
  env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL make --no-print-directory \
    -C "$top_builddir" "$@"
}

# The installation directories, as this tree's Makefile has them.
cat >"$TESTDIR/dirs.mk" <<'EOF'
print-install-dirs:
	@echo "sbindir='$(sbindir)'"
	@echo "pkglibexecdir='$(pkglibexecdir)'"
	@echo "sysconfdir='$(sysconfdir)'"
	@echo "docdir='$(docdir)'"
	@echo "mandir='$(mandir)'"
	@echo "systemdsystemunitdir='$(systemdsystemunitdir)'"
EOF
submake -s -f Makefile -f "$TESTDIR/dirs.mk" print-install-dirs >"$TESTDIR/dirs.sh" ||
  fail "cannot read the installation directories from the Makefile"
. "$TESTDIR/dirs.sh"
for d in "$sbindir" "$pkglibexecdir" "$sysconfdir" "$docdir" "$mandir"; do
  case $d in /*) ;; *) fail "installation directory '$d' is not absolute" ;; esac
done

submake install DESTDIR="$dest" >"$TESTDIR/install.log" 2>&1 ||
  { tail -n 30 "$TESTDIR/install.log" >&2; fail "make install DESTDIR=$dest"; }

# path:mode of every file that must be there, and of nothing else.
expected="$sbindir/nbdsrv:755
$sbindir/imgtool:755
$pkglibexecdir/nbdroot-agent:755
$mandir/man8/nbdsrv.8:644
$mandir/man8/imgtool.8:644
$mandir/man5/nbdsrv.conf.5:644
$mandir/man7/nbdroot-agent.7:644
$sysconfdir/nbdroot/nbdsrv.conf.example:644
$docdir/README.md:644"
if [ -n "$systemdsystemunitdir" ]; then
  expected="$expected
$systemdsystemunitdir/nbdsrv.service:644"
fi
printf '%s\n' "$expected" | sort >"$TESTDIR/expected"
(cd "$dest" && find . ! -type d -printf '/%P:%m\n') | sort >"$TESTDIR/installed"
if ! cmp -s "$TESTDIR/expected" "$TESTDIR/installed"; then
  echo "expected (-) and installed (+) files, path:mode:" >&2
  diff "$TESTDIR/expected" "$TESTDIR/installed" | grep '^[<>]' | sed 's/^</-/; s/^>/+/' >&2
  fail "make install: files or modes differ (a new installed file belongs in this test's list)"
fi
# No directory that anyone may write to.
bad=$(find "$dest" -type d -perm -0002 -printf '/%P\n')
[ -z "$bad" ] || fail "world-writable directories installed: $bad"

# The programs run from where they were installed.
nbdsrv=$dest$sbindir/nbdsrv
"$nbdsrv" --help >"$TESTDIR/nbdsrv-help.out" || fail "installed nbdsrv --help"
grep -q "^usage: nbdsrv" "$TESTDIR/nbdsrv-help.out" || fail "nbdsrv --help says no usage"
"$dest$sbindir/imgtool" --help >"$TESTDIR/imgtool-help.out" 2>&1 ||
  fail "installed imgtool --help"
agent=$dest$pkglibexecdir/nbdroot-agent
"$agent" --parse-cmdline 'ip=dhcp root=nbd:192.168.2.2:10809/lab' >"$TESTDIR/agent.out" ||
  fail "installed agent --parse-cmdline"
grep -q '^wire=lab@MAC,boot=BOOTID$' "$TESTDIR/agent.out" ||
  { cat "$TESTDIR/agent.out" >&2; fail "agent: unexpected parse"; }
# The agent is /init of an initramfs without a C library: static.
if command -v readelf >/dev/null; then
  ! readelf -l "$agent" | grep -q 'Requesting program interpreter' ||
    fail "the installed agent is dynamically linked"
fi

# The unit: this tree's paths, readiness by notification.
if [ -n "$systemdsystemunitdir" ]; then
  unit=$dest$systemdsystemunitdir/nbdsrv.service
  conf=$sysconfdir/nbdroot/nbdsrv.conf
  ! grep -n '@[a-z]*@' "$unit" || fail "nbdsrv.service: a placeholder was left"
  for line in "Type=notify" \
      "ExecStartPre=$sbindir/nbdsrv --check-config -f -c $conf" \
      "ExecStart=$sbindir/nbdsrv -f -c $conf" \
      "ExecReload=/bin/kill -HUP \$MAINPID" \
      "StateDirectory=nbdsrv" "Restart=on-failure" \
      "After=network-online.target" "WantedBy=multi-user.target" \
      "LimitNICE=+0"; do
    grep -qxF "$line" "$unit" || fail "nbdsrv.service lacks the line '$line'"
  done
  grep -q '^LimitNOFILE=[0-9]\{5,\}$' "$unit" || fail "nbdsrv.service: LimitNOFILE below 10000"
  # The overlay directory the unit makes is the server's default one.
  "$nbdsrv" --list-keys | grep -q '^generic  *overlay-dir  *[^ ]*  *PATH  */var/lib/nbdsrv ' ||
    fail "nbdsrv's default overlay directory is no longer /var/lib/nbdsrv: StateDirectory= must follow"
  if command -v systemd-analyze >/dev/null; then
    # Verified as installed, but with the programs and man pages of the
    # staging directory (systemd-analyze checks both exist).
    mkdir -p "$TESTDIR/units"
    sed -e "s|$sbindir/|$dest$sbindir/|g" "$unit" >"$TESTDIR/units/nbdsrv.service"
    MANPATH=$dest$mandir SYSTEMD_LOG_COLOR=0 \
      systemd-analyze verify "$TESTDIR/units/nbdsrv.service" >"$TESTDIR/verify.log" 2>&1 ||
      { cat "$TESTDIR/verify.log" >&2; fail "systemd-analyze verify nbdsrv.service"; }
    # It exits 0 on some findings; any line naming the unit is one.
    ! grep 'nbdsrv\.service' "$TESTDIR/verify.log" >&2 ||
      fail "systemd-analyze verify complains about nbdsrv.service (above)"
  else
    echo "note: no systemd-analyze; the unit is not verified" >&2
  fi
fi

# The man pages format without a warning.  A line too long to break on
# an 80-column terminal only shows as a note: it is ugly, not wrong.
if command -v man >/dev/null; then
  for page in "$dest$mandir"/man?/*; do
    LC_ALL=C.UTF-8 MANWIDTH=80 man --warnings -l "$page" 2>"$TESTDIR/man.err" >/dev/null ||
      fail "man -l $page"
    if grep -q "can't break line" "$TESTDIR/man.err"; then
      sed "s|^|note: ${page##*/}: |" "$TESTDIR/man.err" | grep "can't break line" >&2
    fi
    ! grep -v "can't break line" "$TESTDIR/man.err" >&2 || fail "groff warnings in ${page##*/} (above)"
  done
fi

# The example configuration: every key of the server's table (nbdsrv
# --list-keys) is in it and in nbdsrv.conf(5).
example=$dest$sysconfdir/nbdroot/nbdsrv.conf.example
keys=$("$nbdsrv" --list-keys | awk 'NR > 1 { print $2 }' | sort -u)
[ "$(echo "$keys" | wc -l)" -ge 20 ] || fail "nbdsrv --list-keys lists too few keys: $keys"
# Each key is the tag of a paragraph there: ".B KEY", ".BI KEY ..." or
# ".BR KEY ...".
sed 's/\\-/-/g' "$dest$mandir/man5/nbdsrv.conf.5" >"$TESTDIR/conf5.txt"
for k in $keys; do
  grep -q "^#\{0,1\}$k = " "$example" || fail "nbdsrv.conf.example does not show the key '$k'"
  grep -Eq "^\.B[IR]? $k( |$)" "$TESTDIR/conf5.txt" || fail "nbdsrv.conf(5) does not describe the key '$k'"
done

# It passes --check-config once its image paths name a real image: as it
# is, and with every setting uncommented (all the defaults and examples).
# -o keeps the check from creating the default overlay directory here.
make_image "$TESTDIR/lab.img" 4
sed -e "s|^\(#\{0,1\}image = \).*|\1$TESTDIR/lab.img|" "$example" >"$TESTDIR/as-is.conf"
"$nbdsrv" --check-config -c "$TESTDIR/as-is.conf" -o "$TESTDIR/ov" >"$TESTDIR/check1.out" 2>&1 ||
  { cat "$TESTDIR/check1.out" >&2; fail "--check-config rejects the example"; }
grep -q "^  lab: $TESTDIR/lab.img (reset-on-boot)$" "$TESTDIR/check1.out" ||
  { cat "$TESTDIR/check1.out" >&2; fail "--check-config: the example's lab export"; }
sed -e 's/^#\([a-z[]\)/\1/' "$TESTDIR/as-is.conf" >"$TESTDIR/all.conf"
"$nbdsrv" --check-config -c "$TESTDIR/all.conf" -o "$TESTDIR/ov" >"$TESTDIR/check2.out" 2>&1 ||
  { cat "$TESTDIR/check2.out" >&2; fail "--check-config rejects the example with every setting uncommented"; }
grep -q "configuration OK: 6 exports" "$TESTDIR/check2.out" ||
  { cat "$TESTDIR/check2.out" >&2; fail "--check-config: the example's six exports"; }
grep -q "^  desk: .*(shared-readonly" "$TESTDIR/check2.out" ||
  { cat "$TESTDIR/check2.out" >&2; fail "--check-config: the example's layered base"; }
grep -q "^  rescue: .*(ephemeral, read-only)$" "$TESTDIR/check2.out" ||
  { cat "$TESTDIR/check2.out" >&2; fail "--check-config: the example's read-only export"; }

# make uninstall leaves no file behind.
submake uninstall DESTDIR="$dest" >"$TESTDIR/uninstall.log" 2>&1 ||
  { tail -n 30 "$TESTDIR/uninstall.log" >&2; fail "make uninstall DESTDIR=$dest"; }
left=$(find "$dest" ! -type d -printf '/%P\n')
[ -z "$left" ] || fail "make uninstall left: $left"
