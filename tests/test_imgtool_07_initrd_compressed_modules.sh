#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# test_imgtool_07_initrd_compressed_modules: imgtool initrd with compressed modules (.ko.xz, .ko.zst,
# .ko.gz), as distributions that compress them ship them.  A modules
# directory is made from the installed kernel's nbd and ext4 modules, each
# compressed its own way, with its modules.dep, modules.softdep,
# modules.alias and modules.builtin.  The archive must hold every module
# decompressed to plain .ko, byte for byte the original, listed in load
# order; a built-in module packs nothing; a corrupt module and a missing
# decompressor fail with one line and leave no file.
. "$(dirname "$0")/functions.sh"

requires_cmd xz zstd gzip cpio
[ -x "$AGENT" ] || fail "the agent $AGENT is not built"

kmod=
for d in /lib/modules/*; do
  [ -f "$d/modules.dep" ] && grep -q '^kernel/fs/ext4/ext4\.ko:' "$d/modules.dep" &&
    grep -q '^kernel/drivers/block/nbd\.ko:' "$d/modules.dep" && kmod=$d
done
[ -n "$kmod" ] || skip "no kernel with uncompressed ext4 and nbd modules under /lib/modules (install linux-image-amd64)"

export SOURCE_DATE_EPOCH=1700000000
m=$TESTDIR/modules/6.1.0-test
# name, source path, how it is compressed here
set -- \
  crc16 kernel/lib/crc16.ko none \
  mbcache kernel/fs/mbcache.ko gz \
  jbd2 kernel/fs/jbd2/jbd2.ko zst \
  ext4 kernel/fs/ext4/ext4.ko xz \
  crc32c_generic kernel/crypto/crc32c_generic.ko xz \
  nbd kernel/drivers/block/nbd.ko zst
declare -A packed
while [ $# -gt 0 ]; do
  name=$1 path=$2 how=$3
  shift 3
  [ -f "$kmod/$path" ] || skip "$kmod/$path is missing"
  mkdir -p "$m/$(dirname "$path")"
  case $how in
    none) cp "$kmod/$path" "$m/$path"; packed[$name]=$path ;;
    gz) gzip -9 -n <"$kmod/$path" >"$m/$path.gz"; packed[$name]=$path.gz ;;
    xz) xz --check=crc32 <"$kmod/$path" >"$m/$path.xz"; packed[$name]=$path.xz ;;
    zst) zstd -q -19 <"$kmod/$path" >"$m/$path.zst"; packed[$name]=$path.zst ;;
  esac
done
cat >"$m/modules.dep" <<EOF
${packed[ext4]}: ${packed[crc16]} ${packed[mbcache]} ${packed[jbd2]}
${packed[mbcache]}:
${packed[jbd2]}:
${packed[crc16]}:
${packed[crc32c_generic]}:
${packed[nbd]}:
EOF
cat >"$m/modules.softdep" <<EOF
# Soft dependencies extracted from modules themselves.
softdep ext4 pre: crypto-crc32c
softdep jbd2 pre: crypto-crc32c
EOF
cat >"$m/modules.alias" <<EOF
alias crypto-crc32c crc32c_generic
alias fs-ext4 ext4
EOF
echo kernel/drivers/block/loop.ko >"$m/modules.builtin"

out=$TESTDIR/out
mkdir "$out"
imgt initrd -o "$out/i.gz" --modules-dir "$m" --modules nbd,fs-ext4,loop --agent "$AGENT" ||
  fail "initrd from compressed modules"
gzip -t "$out/i.gz" || fail "gzip -t"
x=$TESTDIR/x
mkdir "$x"
(cd "$x" && gzip -dc "$out/i.gz" | cpio -id --quiet --no-absolute-filenames) || fail "cpio -i"
want=$(printf 'lib/modules/6.1.0-test/%s\n' kernel/crypto/crc32c_generic.ko \
  kernel/lib/crc16.ko kernel/fs/mbcache.ko kernel/fs/jbd2/jbd2.ko \
  kernel/fs/ext4/ext4.ko kernel/drivers/block/nbd.ko)
got=$(cat "$x/etc/nbdroot/modules")
# nbd is independent of the others: it may come first or last.
[ "$(echo "$got" | grep -v nbd.ko)" = "$(echo "$want" | grep -v nbd.ko)" ] &&
  [ "$(echo "$got" | wc -l)" = 6 ] || fail "module order: $got"
for path in kernel/lib/crc16.ko kernel/fs/mbcache.ko kernel/fs/jbd2/jbd2.ko \
  kernel/fs/ext4/ext4.ko kernel/crypto/crc32c_generic.ko kernel/drivers/block/nbd.ko; do
  cmp "$x/lib/modules/6.1.0-test/$path" "$kmod/$path" || fail "$path is not the original module"
done
[ -z "$(find "$x" -name '*.xz' -o -name '*.zst' -o -name '*.gz')" ] || fail "compressed files packed: $(find "$x" -name '*.xz' -o -name '*.zst' -o -name '*.gz')"
! grep -q loop "$x/etc/nbdroot/modules" || fail "a built-in module was packed"

# A corrupt module and a missing decompressor.
printf 'garbage' >"$m/${packed[jbd2]}"
if imgt initrd -o "$out/bad.gz" --modules-dir "$m" --modules ext4 --agent "$AGENT"; then fail "corrupt module accepted"; fi
[ "$(wc -l <"$TESTDIR/last.err")" = 1 ] || fail "corrupt module: $(cat "$TESTDIR/last.err")"
grep -q "^imgtool: error: cannot decompress $m/${packed[jbd2]} with zstd: corrupt" "$TESTDIR/last.err" ||
  fail "corrupt module: $(cat "$TESTDIR/last.err")"
if env PATH=/nonexistent "$IMGTOOL" initrd -o "$out/bad.gz" --modules-dir "$m" \
  --modules crypto-crc32c --agent "$AGENT" 2>"$TESTDIR/last.err"; then
  fail "missing xz accepted"
fi
cat "$TESTDIR/last.err" >>"$TESTDIR/imgtool.log"
[ "$(wc -l <"$TESTDIR/last.err")" = 1 ] || fail "missing xz: $(cat "$TESTDIR/last.err")"
grep -q "^imgtool: error: cannot decompress .*crc32c_generic.ko.xz: xz not found" "$TESTDIR/last.err" ||
  fail "missing xz: $(cat "$TESTDIR/last.err")"
[ "$(ls "$out")" = i.gz ] || fail "failures left files: $(ls -A "$out")"
exit 0
