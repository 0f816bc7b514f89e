#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# test_layout_01: no call cycles between the files of nbdsrv/ and initrd/
# (scripts/file-cycles.sh, from the object files' symbols).  A cycle
# means none of its files can be read, tested or replaced alone.
. "$(dirname "$0")/functions.sh"
requires_cmd nm cc

cycles=$top_srcdir/scripts/file-cycles.sh

# nbdsrv: the objects of the build.
set -- "$top_builddir"/nbdsrv/nbdsrv-*.o
[ -f "$1" ] || fail "no object files under $top_builddir/nbdsrv (build first)"
if ! "$cycles" "$@" >"$TESTDIR/nbdsrv.out"; then
  cat "$TESTDIR/nbdsrv.out" >&2
  fail "call cycles between files of nbdsrv/"
fi

# initrd: the agent is built in one musl command, without objects: its
# files are compiled here, with the host compiler, only for their symbols.
mkdir -p "$TESTDIR/initrd"
for f in "$top_srcdir"/initrd/*.c; do
  cc -c -std=gnu11 -D_GNU_SOURCE -I"$top_srcdir/common" -I"$top_builddir" \
    -o "$TESTDIR/initrd/$(basename "$f" .c).o" "$f" ||
    fail "cannot compile $f"
done
if ! "$cycles" "$TESTDIR"/initrd/*.o >"$TESTDIR/initrd.out"; then
  cat "$TESTDIR/initrd.out" >&2
  fail "call cycles between files of initrd/"
fi

# The script itself finds a cycle: two files calling each other.
mkdir -p "$TESTDIR/self"
printf 'void b(void);\nvoid a(void) { b(); }\n' >"$TESTDIR/self/a.c"
printf 'void a(void);\nvoid b(void) { a(); }\n' >"$TESTDIR/self/b.c"
printf 'void a(void);\nvoid c(void) { a(); }\n' >"$TESTDIR/self/c.c"
for x in a b c; do
  cc -c -o "$TESTDIR/self/$x.o" "$TESTDIR/self/$x.c" || fail "cc $x.c"
done
if "$cycles" "$TESTDIR"/self/*.o >"$TESTDIR/self.out"; then
  fail "file-cycles.sh saw no cycle between a.o and b.o"
fi
grep -qx 'cycle: a b' "$TESTDIR/self.out" ||
  fail "file-cycles.sh reported: $(cat "$TESTDIR/self.out")"
exit 0
