#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# test_layout_04_format: every C file git tracks is formatted as
# .clang-format says (clang-format --dry-run finds nothing to change), so
# that a change shows what it changes, not how its author's editor wraps
# lines; and the check notices a file that is not.
. "$(dirname "$0")/functions.sh"
requires_cmd git clang-format

cd "$top_srcdir"
git rev-parse --is-inside-work-tree >/dev/null 2>&1 ||
  skip "the source tree is not a git checkout: no list of tracked files"
[ -f .clang-format ] || fail "no .clang-format at the top of the tree"
files=$(git ls-files '*.c' '*.h')
[ -n "$files" ] || fail "no C files tracked"
# shellcheck disable=SC2086
if ! clang-format --dry-run -Werror $files >"$TESTDIR/format.out" 2>&1; then
  grep -m 20 "warning:" "$TESTDIR/format.out" >&2 || true
  fail "not formatted as .clang-format says (above); run: clang-format -i \$(git ls-files '*.c' '*.h')"
fi

# The check finds a badly formatted file.
printf 'int f(void){return 1;}\n' >"$TESTDIR/bad.c"
cp .clang-format "$TESTDIR/"
if clang-format --dry-run -Werror "$TESTDIR/bad.c" >/dev/null 2>&1; then
  fail "clang-format did not notice a badly formatted file"
fi
exit 0
