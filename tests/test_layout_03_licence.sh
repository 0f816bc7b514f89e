#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# test_layout_03_licence: the project is GPL-2.0-or-later: COPYING holds
# the licence, and every source file, script, build file and man page
# the repository tracks names it in an SPDX line within its first three
# lines.  Data (fuzz corpora, traces, test archives) and prose (*.md)
# are not sources.  The list of files comes from git: generated files
# (configure, Makefile.in, ...) are not the project's sources.
. "$(dirname "$0")/functions.sh"
requires_cmd git

cd "$top_srcdir"
git rev-parse --is-inside-work-tree >/dev/null 2>&1 ||
  skip "the source tree is not a git checkout: no list of tracked files"
grep -q "GNU GENERAL PUBLIC LICENSE" COPYING || fail "COPYING does not hold the GPL"
grep -q "Version 2, June 1991" COPYING || fail "COPYING is not the GPL version 2"

# unlicensed DIR: the files git tracks in DIR that have no SPDX line.
unlicensed() {
  (cd "$1" && git ls-files |
    grep -v -E '^(tests/fuzz/|bench/data/)|\.(gz|cpio|md)$|(^|/)(\.gitignore|\.keep|COPYING)$' |
    while read -r f; do
      [ -f "$f" ] || continue
      head -3 "$f" | grep -q "SPDX-License-Identifier: GPL-2.0-or-later" || echo "$f"
    done)
}
missing=$(unlicensed "$top_srcdir")
[ -z "$missing" ] || fail "no SPDX line in: $(echo $missing)"

# The check finds a file without the line, and not one with it.
probe=$TESTDIR/probe
mkdir -p "$probe"
(cd "$probe" && git init -q . &&
  echo 'int x;' >a.c && printf '/* SPDX-License-Identifier: GPL-2.0-or-later */\nint y;\n' >b.c &&
  git add a.c b.c)
[ "$(unlicensed "$probe")" = a.c ] || fail "the check on a probe found: $(unlicensed "$probe")"
exit 0
