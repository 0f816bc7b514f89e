#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# The files a recorded boot read, in the order it first read them: an
# order file for "imgtool build --format squashfs --order FILE".
#
#   bench/trace-order.sh IMAGE.ext4 TRACE [EXPORT] >ORDER
#
# IMAGE.ext4 is the ext4 image that booted (say "imgtool build TREE"),
# TRACE the trace nbdsrv --trace wrote of that boot ("USEC EXPORT/ID TYPE
# OFFSET LENGTH" lines; a .gz is read through zcat, lines starting with
# '#' skipped).  Only reads of EXPORT (default: every export in the
# trace) count.  Every 4 KiB block a read covered is mapped to the inode
# that holds it (debugfs icheck), the inodes to a path (debugfs ncheck,
# the first name of a hard-linked file); blocks of no regular file
# (metadata, directories, free space) are left out.  The paths are printed
# relative to the image's root, one a line, each regular file once, by
# the time of the first read of any of its blocks (a file's later blocks
# do not move it).
#
# Needs debugfs (e2fsprogs).  The output depends on the image and the
# trace only.
set -euo pipefail
PATH=/usr/bin:/usr/sbin:/bin:/sbin:$PATH

die() { echo "trace-order: $*" >&2; exit 1; }
[ $# -ge 2 ] && [ $# -le 3 ] || die "usage: $0 IMAGE.ext4 TRACE [EXPORT]"
img=$1 trace=$2 export=${3:-}
[ -f "$img" ] || die "$img: no such image"
[ -f "$trace" ] || die "$trace: no such trace"
command -v debugfs >/dev/null || die "debugfs missing (apt-get install e2fsprogs)"
bs=$(debugfs -R stats "$img" 2>/dev/null | sed -n 's/^Block size: *//p')
[ -n "$bs" ] || die "$img: debugfs reads no ext2/3/4 filesystem there"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
case $trace in *.gz) cat=zcat ;; *) cat=cat ;; esac

# The blocks in the order first read: "BLOCK" lines.
$cat "$trace" | awk -v bs="$bs" -v ex="$export" '
  /^#/ { next }
  $3 != "R" { next }
  ex != "" { e = $2; sub(/\/.*/, "", e); if (e != ex) next }
  {
    for (b = int($4 / bs); b * bs < $4 + $5; b++)
      if (!(b in seen)) { seen[b] = 1; print b }
  }' >"$tmp/blocks"
[ -s "$tmp/blocks" ] || die "$trace: no reads${export:+ of export $export}"

# Block -> inode, in chunks (debugfs' command lines are bounded).
awk '{ l = l " " $1 } NR % 256 == 0 { print "icheck" l; l = "" }
  END { if (l != "") print "icheck" l }' "$tmp/blocks" >"$tmp/icheck.cmd"
debugfs -f "$tmp/icheck.cmd" "$img" 2>/dev/null |
  awk '$1 ~ /^[0-9]+$/ && $2 ~ /^[0-9]+$/ { print $1, $2 }' >"$tmp/b2i"

# The inodes in first-read order, each once.
awk 'NR == FNR { ino[$1] = $2; next }
  ($1 in ino) && !(ino[$1] in seen) { seen[ino[$1]] = 1; print ino[$1] }' \
  "$tmp/b2i" "$tmp/blocks" >"$tmp/inodes"
[ -s "$tmp/inodes" ] || die "no read in $trace touched a file of $img"

# Inode -> path (regular files only), then the paths in inode order.
awk '{ l = l " " $1 } NR % 256 == 0 { print "ncheck" l; l = "" }
  END { if (l != "") print "ncheck" l }' "$tmp/inodes" >"$tmp/ncheck.cmd"
debugfs -f "$tmp/ncheck.cmd" "$img" 2>/dev/null |
  awk -F '\t' '$1 ~ /^[0-9]+$/ && !($1 in p) { p[$1] = $2; print $1 "\t" $2 }' \
    >"$tmp/i2p"
printf 'stat <%s>\n' $(cat "$tmp/inodes") >"$tmp/stat.cmd"
debugfs -f "$tmp/stat.cmd" "$img" 2>/dev/null |
  awk '/^debugfs:  *stat </ { i = $3; gsub(/[<>]/, "", i) }
       /^Inode: [0-9]+ +Type: regular/ { print i }' >"$tmp/regular"
awk -F '\t' 'FILENAME == ARGV[1] { reg[$1] = 1; next }
  FILENAME == ARGV[2] { p[$1] = $2; next }
  ($1 in reg) && ($1 in p) { s = p[$1]; sub(/^\//, "", s); print s }' \
  "$tmp/regular" "$tmp/i2p" "$tmp/inodes"
