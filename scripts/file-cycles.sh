#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-or-later
# Reports call cycles between source files, from their object files.
#
#   scripts/file-cycles.sh FILE.o...
#
# A file calls another when it uses (nm: U) a global symbol the other
# defines.  Files that reach each other through such calls form a cycle
# (a strongly connected component of more than one file): none of them can
# be read, tested or replaced without the others.  Each cycle is printed
# on one line, its files in order, followed by the calls that close it
# ("a.o -> b.o: sym, sym").  Exit status 0: no cycle; 1: cycles; 2: usage.
# Object files made by automake for a program P are named P-FILE.o: the
# P- is dropped in the report.
set -eu

if [ $# -eq 0 ]; then
  echo "usage: $0 FILE.o..." >&2
  exit 2
fi
for o in "$@"; do
  if [ ! -f "$o" ]; then
    echo "$0: $o: no such object file" >&2
    exit 2
  fi
done

for o in "$@"; do
  # "FILE TYPE SYMBOL" for every global symbol, defined or not.
  name=$(basename "$o" .o)
  prog=$(basename "$(dirname "$o")")
  name=${name#"$prog"-}
  nm -g "$o" | awk -v f="$name" '
    NF == 2 && $1 ~ /^[Uw]$/ { print f, "U", $2; next }
    NF == 3 && $2 ~ /^[A-Z]$/ && $2 != "U" { print f, "D", $3 }'
done | awk '
  $2 == "D" { def[$3] = $1; files[$1] = 1; next }
  { use[++nuse] = $1 SUBSEP $3; files[$1] = 1 }
  END {
    n = 0
    for (f in files) name[++n] = f
    # A stable order: sorted names.
    for (i = 2; i <= n; i++)
      for (j = i; j > 1 && name[j] < name[j - 1]; j--) {
        t = name[j]; name[j] = name[j - 1]; name[j - 1] = t
      }
    for (i = 1; i <= n; i++) idx[name[i]] = i
    for (k = 1; k <= nuse; k++) {
      split(use[k], u, SUBSEP)
      if (!(u[2] in def) || def[u[2]] == u[1]) continue
      a = idx[u[1]]; b = idx[def[u[2]]]
      reach[a, b] = 1
      s = ((a, b) in why) ? why[a, b] ", " u[2] : u[2]
      why[a, b] = s
    }
    # Transitive closure (a few dozen files: cubic is fine).
    for (k = 1; k <= n; k++)
      for (i = 1; i <= n; i++)
        if ((i, k) in reach)
          for (j = 1; j <= n; j++)
            if ((k, j) in reach) reach[i, j] = 1
    cycles = 0
    for (i = 1; i <= n; i++) {
      if (i in done) continue
      line = name[i]; calls = ""; size = 1
      for (j = i + 1; j <= n; j++)
        if ((i, j) in reach && (j, i) in reach) {
          line = line " " name[j]; done[j] = 1; member[j] = i; size++
        }
      if (size == 1) continue
      member[i] = i
      cycles++
      print "cycle: " line
      for (a = 1; a <= n; a++)
        for (b = 1; b <= n; b++)
          if (member[a] == i && member[b] == i && (a, b) in why)
            print "  " name[a] " -> " name[b] ": " why[a, b]
    }
    exit cycles > 0
  }'
