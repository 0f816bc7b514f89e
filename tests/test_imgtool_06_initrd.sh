#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# test_imgtool_06_initrd: imgtool initrd for the installed Debian kernel.  The
# archive passes gzip -t and cpio -t, lists the same with --list, has the
# agent as /init, and holds nbd, ext4, crc32c_generic, virtio_net, the
# common NIC drivers and everything they need, in an order where every
# module comes after its modules.dep dependencies and crc32c_generic
# (ext4's and jbd2's softdep crypto-crc32c) before ext4 and jbd2.  Entries
# are sorted with fixed mtimes and owners, and two runs give the same
# bytes.  A bad kernel version, an unknown module and a dynamic agent fail
# with one line and leave no file.
. "$(dirname "$0")/functions.sh"

requires_cmd gzip cpio
[ -x "$AGENT" ] || fail "the agent $AGENT is not built"

expect_error() {
  [ "$(wc -l <"$TESTDIR/last.err")" = 1 ] ||
    fail "$1: want one line of error, got: $(cat "$TESTDIR/last.err")"
  grep -q "^imgtool: error: .*$2" "$TESTDIR/last.err" ||
    fail "$1: error does not say '$2': $(cat "$TESTDIR/last.err")"
}

# The Debian kernel (linux-image-amd64), not the host's.
kver=
for d in /lib/modules/*; do
  [ -f "$d/modules.dep" ] && grep -q '/nbd\.ko' "$d/modules.dep" && kver=$(basename "$d")
done
[ -n "$kver" ] || skip "no kernel with modules.dep and nbd under /lib/modules (install linux-image-amd64)"
moddir=/lib/modules/$kver

export SOURCE_DATE_EPOCH=1700000000
out=$TESTDIR/out
mkdir "$out"
imgt initrd -o "$out/a.gz" --kernel-version "$kver" --agent "$AGENT" || fail "initrd"
grep -q "^imgtool: initrd $out/a.gz: kernel $kver, [0-9]* modules$" "$TESTDIR/last.err" || fail "initrd summary: $(cat "$TESTDIR/last.err")"
gzip -t "$out/a.gz" || fail "gzip -t"
gzip -dc "$out/a.gz" | cpio -t --quiet >"$TESTDIR/cpio-t" || fail "cpio -t"
imgt initrd --list "$out/a.gz" >"$TESTDIR/list" || fail "initrd --list"
[ "$(awk '{print $NF}' "$TESTDIR/list")" = "$(cat "$TESTDIR/cpio-t")" ] ||
  fail "--list and cpio -t disagree: $(diff <(awk '{print $NF}' "$TESTDIR/list") "$TESTDIR/cpio-t")"
grep -qx -- '-rwxr-xr-x 0 0 [0-9]* init' "$TESTDIR/list" || fail "--list: no /init: $(head "$TESTDIR/list")"
grep -qx 'crw------- 0 0 5,1 dev/console' "$TESTDIR/list" || fail "--list: no /dev/console"

# Reproducible: the same bytes from a second run.
sleep 1
imgt initrd -o "$out/b.gz" --kernel-version "$kver" --agent "$AGENT" || fail "second initrd"
cmp "$out/a.gz" "$out/b.gz" || fail "two runs differ"

x=$TESTDIR/x
mkdir "$x"
(cd "$x" && gzip -dc "$out/a.gz" | cpio -id --quiet --no-absolute-filenames) || fail "cpio -i"
cmp "$x/init" "$AGENT" || fail "/init is not the agent"
/usr/bin/python3 - "$out/a.gz" "$x" "$moddir" "$SOURCE_DATE_EPOCH" <<'PY' || fail "module set or order (above)"
import gzip, os, re, subprocess, sys
archive, x, moddir, sde = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
bad = []
# newc headers: sorted names, fixed mtime, root owner.
data = gzip.open(archive).read()
off, names = 0, []
while True:
    h = data[off:off + 110]
    assert h[:6] == b"070701", off
    f = [int(h[6 + 8 * i:14 + 8 * i], 16) for i in range(13)]
    nlen, size = f[11], f[6]
    name = data[off + 110:off + 110 + nlen - 1].decode()
    off = (off + 110 + nlen + 3) & ~3
    off = (off + size + 3) & ~3
    if name == "TRAILER!!!":
        break
    names.append(name)
    if f[5] != sde:
        bad.append(f"{name}: mtime {f[5]}")
    if f[2] or f[3]:
        bad.append(f"{name}: owner {f[2]}:{f[3]}")
if names != sorted(names):
    bad.append("entries are not sorted")

def modname(p):
    return re.sub(r"\.ko(\.(xz|zst|gz))?$", "", os.path.basename(p)).replace("-", "_")
deps = {}
for line in open(os.path.join(moddir, "modules.dep")):
    k, v = line.split(":", 1)
    deps[modname(k)] = [modname(d) for d in v.split()]
paths = open(os.path.join(x, "etc/nbdroot/modules")).read().split()
order = [modname(p) for p in paths]
if len(set(order)) != len(order):
    bad.append("a module is listed twice")
pos = {m: i for i, m in enumerate(order)}
for m in ["nbd", "ext4", "jbd2", "mbcache", "crc16", "crc32c_generic",
          "virtio_net", "virtio_pci", "virtio", "virtio_ring", "net_failover",
          "failover", "e1000", "e1000e", "igb", "ixgbe", "r8169", "tg3",
          "bnx2x"]:
    if m in deps and m not in pos:
        bad.append(f"{m} is missing")
for m, i in pos.items():
    for d in deps[m]:
        if d not in pos:
            bad.append(f"{m} needs {d}, which is missing")
        elif pos[d] > i:
            bad.append(f"{m} (#{i}) comes before its dependency {d} (#{pos[d]})")
for m in ("ext4", "jbd2"):
    if pos.get("crc32c_generic", 1 << 30) > pos.get(m, -1):
        bad.append(f"crc32c_generic does not come before {m}")
for p in paths:
    f = os.path.join(x, p)
    if not os.path.isfile(f):
        bad.append(f"{p} is listed but not packed")
        continue
    if open(f, "rb").read(4) != b"\x7fELF":
        bad.append(f"{p} is not an ELF object")
    src = os.path.join(moddir, os.path.relpath(p, "lib/modules/" + os.path.basename(moddir)))
    if os.path.exists(src) and open(src, "rb").read() != open(f, "rb").read():
        bad.append(f"{p} differs from {src}")
for b in bad:
    print("  " + b, file=sys.stderr)
sys.exit(1 if bad else 0)
PY

# --modules: exactly what is asked for (and what it needs); aliases work.
imgt initrd -o "$out/c.gz" --kernel-version "$kver" --agent "$AGENT" --modules nbd,crypto-crc32c || fail "--modules"
gzip -dc "$out/c.gz" | cpio -i --quiet --to-stdout etc/nbdroot/modules >"$TESTDIR/c.modules"
grep -q '/nbd\.ko$' "$TESTDIR/c.modules" || fail "--modules nbd: $(cat "$TESTDIR/c.modules")"
grep -q '/crc32c_generic\.ko$' "$TESTDIR/c.modules" || fail "alias crypto-crc32c: $(cat "$TESTDIR/c.modules")"
! grep -q 'virtio_net\|ext4' "$TESTDIR/c.modules" || fail "--modules packed more than asked: $(cat "$TESTDIR/c.modules")"

# Bad input: one line, no file.
rm "$out"/*.gz
if imgt initrd -o "$out/bad.gz" --kernel-version 0.0.0-nope --agent "$AGENT"; then fail "bad kernel version accepted"; fi
expect_error "bad kernel version" "no modules for kernel 0.0.0-nope"
if imgt initrd -o "$out/bad.gz" --kernel-version ../.. --agent "$AGENT"; then fail "kernel version ../.. accepted"; fi
expect_error "kernel version ../.." "is not a kernel version"
if imgt initrd -o "$out/bad.gz" --kernel-version "$kver" --agent "$AGENT" --modules nbd,no_such_module; then fail "unknown module accepted"; fi
expect_error "unknown module" "module 'no_such_module' not found"
if imgt initrd -o "$out/bad.gz" --kernel-version "$kver" --agent /bin/sh; then fail "dynamic agent accepted"; fi
expect_error "dynamic agent" "dynamically linked"
if imgt initrd -o "$out/bad.gz" --kernel-version "$kver" --agent "$TESTDIR/no-agent"; then fail "missing agent accepted"; fi
expect_error "missing agent" "cannot read the initrd agent"
echo 'not an archive' >"$TESTDIR/junk.gz"
if imgt initrd --list "$TESTDIR/junk.gz"; then fail "--list of junk"; fi
expect_error "--list of junk" "is not a gzip'd newc cpio archive"
[ -z "$(ls -A "$out")" ] || fail "failures left files: $(ls -A "$out")"
exit 0
