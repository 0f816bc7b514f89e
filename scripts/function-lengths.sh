#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-or-later
# Reports the C functions longer than MAX lines (default 100), counted
# from the first line of the definition (the return type) to the closing
# brace, in common/ nbdsrv/ imgtool/ initrd/ (or the files given).
# A comment line starting with "/* long:" directly above a definition
# exempts it: the comment says why the function stays long.
# Prints "FILE:LINE: NAME: N lines" for each one; exits 1 if any.
#
# The code's style makes this a text matter: a function body opens with
# "{" in column 0 and closes with "}" in column 0; nothing else does.
set -e
max=${MAX:-100}
if [ $# -eq 0 ]; then
  cd "$(dirname "$0")/.."
  set -- $(ls common/*.c nbdsrv/*.c imgtool/*.c initrd/*.c 2>/dev/null)
fi
awk -v max="$max" '
FNR == 1 { depth = 0; nhead = 0; above = ""; incomment = 0 }
# Outside a function: remember the lines since the last blank line or the
# last top-level declaration, so that "{" can find where its function
# began and what stands directly above it.
depth == 0 && /^\{/ {
  start = FNR - nhead; name = ""
  for (i = 1; i <= nhead; i++)
    if (match(head[i], /[A-Za-z_][A-Za-z0-9_]*[ \t]*\(/)) {
      name = substr(head[i], RSTART, RLENGTH)
      sub(/[ \t]*\($/, "", name)
      break
    }
  exempt = above ~ /^\/\* long:/
  depth = 1
  next
}
depth == 0 && incomment {
  if ($0 ~ /\*\//)
    incomment = 0
  next
}
# A comment: its first line is what stands above what follows it.
depth == 0 && /^[ \t]*\/\*/ {
  above = $0; nhead = 0
  incomment = $0 !~ /\*\//
  next
}
depth == 0 {
  if ($0 ~ /^[ \t]*$/ || $0 ~ /;[ \t]*$/ || $0 ~ /^#/ || $0 ~ /^\}/) {
    above = $0; nhead = 0
  } else {
    head[++nhead] = $0
  }
  next
}
/^\}/ {
  len = FNR - start + 1
  if (name != "" && len > max && !exempt) {
    printf "%s:%d: %s: %d lines\n", FILENAME, start, name, len
    found = 1
  }
  depth = 0; nhead = 0; above = $0
}
END { exit found }
' "$@"
