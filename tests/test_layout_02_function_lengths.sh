#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# test_layout_02: no C function in common/ nbdsrv/ imgtool/ initrd/ is
# longer than 100 lines, unless a "/* long: why */" comment right above it
# says why (scripts/function-lengths.sh).  A function that long does too
# many things to be read, tested or changed alone.
. "$(dirname "$0")/functions.sh"
requires_cmd awk

lengths=$top_srcdir/scripts/function-lengths.sh

if ! "$lengths" >"$TESTDIR/tree.out"; then
  cat "$TESTDIR/tree.out" >&2
  fail "functions over 100 lines (split them, or say why above them with /* long: why */)"
fi

# The script itself: a function of 101 lines is reported, one of 100 is
# not, nor one of 101 with a "long:" comment above it.
body() {  # NAME LINES: a function definition of LINES lines in all
  printf 'static int\n%s(int x)\n{\n' "$1"
  for ((i = 0; i < $2 - 4; i++)); do printf '  x++;\n'; done
  printf '}\n\n'
}
{
  body fits 100
  body too_long 101
  printf '/* long: one table, read top to bottom */\n'
  body exempt 101
  printf '/* A comment that says nothing of length. */\n'
  body commented 102
} >"$TESTDIR/sample.c"
if "$lengths" "$TESTDIR/sample.c" >"$TESTDIR/sample.out"; then
  fail "function-lengths.sh passed a file with a 101-line function"
fi
grep -q ': too_long: 101 lines$' "$TESTDIR/sample.out" ||
  fail "too_long not reported as 101 lines: $(cat "$TESTDIR/sample.out")"
grep -q ': commented: 102 lines$' "$TESTDIR/sample.out" ||
  fail "commented not reported: $(cat "$TESTDIR/sample.out")"
[ "$(wc -l <"$TESTDIR/sample.out")" = 2 ] ||
  fail "more than too_long and commented reported: $(cat "$TESTDIR/sample.out")"
exit 0
