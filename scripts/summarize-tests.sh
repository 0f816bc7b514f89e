#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-or-later
# Prints "N passed, N failed, N skipped" from an automake test run in DIR.
# Under CI a skipped test counts as a failure: CI installs everything, so a
# skip there means a missing dependency, not an optional feature.
dir=${1:-.}
pass=0 fail=0 skip=0
for trs in $(find "$dir/tests" -name '*.trs' 2>/dev/null); do
  r=$(sed -n 's/^:test-result: //p' "$trs")
  case "$r" in
    PASS|XFAIL) pass=$((pass + 1)) ;;
    SKIP) skip=$((skip + 1)); echo "skipped: $trs" ;;
    *) fail=$((fail + 1)); echo "failed: $trs" ;;
  esac
done
echo "$pass passed, $fail failed, $skip skipped"
[ "$fail" = 0 ] || exit 1
if [ -n "$CI" ] && [ "$skip" != 0 ]; then
  echo "summarize-tests: $skip tests skipped under CI (a dependency is missing)" >&2
  exit 1
fi
[ "$pass" != 0 ] || { echo "summarize-tests: no test ran" >&2; exit 1; }
