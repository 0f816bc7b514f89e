#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# test_server_39_config_keys: the key table is the one truth.
#   - nbdsrv.conf(5) describes exactly the keys of nbdsrv --list-keys;
#   - every option --list-keys names is accepted on the command line and
#     sets the same value as the key in the file's [generic]
#     (--check-config -v shows every value);
#   - --version and -V print "nbdsrv (nbdroot) VERSION".
. "$(dirname "$0")/functions.sh"
requires_cmd mkfs.ext4

"$NBDSRV" --list-keys >"$TESTDIR/keys" || fail "--list-keys"
awk 'NR > 1 { print $2 }' "$TESTDIR/keys" | sort -u >"$TESTDIR/table"
[ "$(wc -l <"$TESTDIR/table")" -ge 20 ] || fail "--list-keys: $(cat "$TESTDIR/keys")"

# The keys nbdsrv.conf(5) describes: the tags of the paragraphs of its
# [generic] and export sections.
sed -n '/^\.SH THE \[generic\] SECTION/,/^\.SH ACCESS CONTROL/p' "$top_srcdir/man/nbdsrv.conf.5" |
  sed 's/\\-/-/g' | awk 'prev == ".TP" { print $2 } { prev = $1 }' | sort -u >"$TESTDIR/man"
diff -u "$TESTDIR/table" "$TESTDIR/man" >"$TESTDIR/diff" ||
  fail "nbdsrv.conf(5) and --list-keys differ (- table, + man page):
$(cat "$TESTDIR/diff")"

# Each option on the command line equals its key in the file.
truncate -s 16M "$TESTDIR/root.img"
mkfs.ext4 -q -F "$TESTDIR/root.img" || fail "mkfs.ext4"
value_for() {   # KEY SYNTAX: a value other than the default
  case $2 in
    ADDR*) echo 127.0.0.2:0 ;;
    PATH\|none) echo none ;;
    PATH) echo "$TESTDIR/p-$1" ;;
    POLICY) echo ephemeral ;;
    SIZE) echo 64K ;;
    SECS|N) echo 7 ;;
    TEXT) echo nogroup ;;
    *) fail "no test value for $1 ($2)" ;;
  esac
}
settings() {   # CONF ARGS...: the [generic] values --check-config -v shows
  local conf=$1
  shift
  "$NBDSRV" --check-config -v -c "$conf" "$@" >"$TESTDIR/out" 2>&1 ||
    fail "--check-config $*: $(cat "$TESTDIR/out")"
  sed -n '/^\[generic\]$/,/^\[/p' "$TESTDIR/out"
}
base_conf() {   # the file every run uses; KEY = VALUE lines follow
  printf '[generic]\nlisten = 127.0.0.1:0\noverlay-dir = %s\n%s\n[lab]\nimage = %s\nrequire-pin = true\n' \
    "$TESTDIR/ov" "$1" "$TESTDIR/root.img" >"$TESTDIR/$2.conf"
}
n=0
while read -r scope key opt syntax default _; do
  [ "$scope" = generic ] && [ "$opt" != - ] || continue
  v=$(value_for "$key" "$syntax")
  if [ "$key" = listen ] || [ "$key" = overlay-dir ]; then
    # The file's own line is the one replaced.
    printf '[generic]\n%s = %s\n%s\n[lab]\nimage = %s\nrequire-pin = true\n' "$key" "$v" \
      "$([ $key = listen ] && echo "overlay-dir = $TESTDIR/ov" || echo "listen = 127.0.0.1:0")" \
      "$TESTDIR/root.img" >"$TESTDIR/file.conf"
  else
    base_conf "$key = $v" file
  fi
  base_conf "" cli
  settings "$TESTDIR/cli.conf" >"$TESTDIR/default.txt"
  settings "$TESTDIR/cli.conf" "$opt" "$v" >"$TESTDIR/cli.txt"
  settings "$TESTDIR/file.conf" >"$TESTDIR/file.txt"
  grep -qx "  $key = $v" "$TESTDIR/cli.txt" ||
    fail "$opt $v: --check-config -v shows: $(grep "^  $key = " "$TESTDIR/cli.txt")"
  ! cmp -s "$TESTDIR/default.txt" "$TESTDIR/cli.txt" || fail "$opt $v changed nothing"
  cmp -s "$TESTDIR/cli.txt" "$TESTDIR/file.txt" ||
    fail "$opt $v and '$key = $v' in the file differ: $(diff "$TESTDIR/cli.txt" "$TESTDIR/file.txt")"
  n=$((n + 1))
done <"$TESTDIR/keys"
[ $n -ge 13 ] || fail "only $n options in --list-keys"

# The command line wins over the file.
base_conf "max-request = 1M" file
settings "$TESTDIR/file.conf" --max-request 2M | grep -qx "  max-request = 2M" ||
  fail "--max-request does not win over the file"

# --version
version=$(sed -n 's/^#define PACKAGE_VERSION "\(.*\)"$/\1/p' "$top_builddir/config.h")
[ -n "$version" ] || fail "no PACKAGE_VERSION in config.h"
[ "$("$NBDSRV" --version)" = "nbdsrv (nbdroot) $version" ] || fail "--version: $("$NBDSRV" --version)"
[ "$("$NBDSRV" -V)" = "nbdsrv (nbdroot) $version" ] || fail "-V: $("$NBDSRV" -V)"
exit 0
