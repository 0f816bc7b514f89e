#!/usr/bin/python3
"""Writes the seed corpora of the fuzz targets (tests/fuzz/corpus/).

The seeds are committed; this script documents how they were made and
remakes them (python3 tests/fuzz/make-seeds.py, from the source tree).
Each seed is a meaningful input: a whole client session, a real config
file, a real kernel command line, a modules.dep excerpt, an initrd.
"""
import gzip
import os
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "corpus")


def be16(x):
    return struct.pack(">H", x)


def be32(x):
    return struct.pack(">I", x)


def be64(x):
    return struct.pack(">Q", x)


def put(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# ---- fuzz_protocol: see the input layout at the top of fuzz_protocol.c ----

OPT_EXPORT_NAME, OPT_ABORT, OPT_LIST, OPT_INFO, OPT_GO = 1, 2, 3, 6, 7
OPT_STRUCTURED, OPT_LIST_META, OPT_SET_META = 8, 9, 10
INFO_NAME, INFO_DESCRIPTION, INFO_BLOCK_SIZE = 1, 2, 3
CMD_READ, CMD_WRITE, CMD_DISC, CMD_FLUSH, CMD_TRIM = 0, 1, 2, 3, 4
CMD_CACHE, CMD_WRITE_ZEROES, CMD_BLOCK_STATUS = 5, 6, 7
FUA, NO_HOLE, DF, REQ_ONE, FAST_ZERO = 1, 2, 4, 8, 16
IMAGE_SIZE = (1 << 20) + 1000        # the exports root, ro and lab
STORE_IMAGE_SIZE = (64 << 10) + 100  # the export small

PEER_OK, PEER_DENIED, PEER_V6, PEER_UNKNOWN = 0, 1, 2, 3
SPLICE = 4
ONE, SERIAL, TWO, TWO_SEQUENTIAL = 0 << 3, 1 << 3, 2 << 3, 3 << 3
# piece actions
ALL, NONE, REVERSED, OLDEST = 0, 1, 2, 3
SHORT, EIO, ENOSPC = 1 << 2, 2 << 2, 3 << 2
SECOND, GONE, JANITOR = 0x10, 0x20, 0x40
# byte 0, modes 2 and 3
STREAMS, KEEP_OPEN, TOUCH_BASE = 0x20, 0x40, 0x80


def pages(n):
    """A piece size byte for n bytes, a multiple of 4 KiB."""
    assert n % 4096 == 0 and 1 <= n // 4096 <= 64
    return 191 + n // 4096

CLIENT_FLAGS = be32(3)           # fixed newstyle, no zeroes


def opt(o, data=b""):
    return b"IHAVEOPT" + be32(o) + be32(len(data)) + data


def info_go(o, name, infos=()):
    n = name.encode()
    return opt(o, be32(len(n)) + n + be16(len(infos)) +
               b"".join(be16(i) for i in infos))


def meta(o, name, queries):
    n = name.encode()
    q = b"".join(be32(len(x)) + x for x in queries)
    return opt(o, be32(len(n)) + n + be32(len(queries)) + q)


cookie = [0]


def req(typ, off=0, count=0, flags=0, payload=None):
    cookie[0] += 1
    if typ == CMD_WRITE and payload is None:
        payload = bytes((off + i) * 13 & 0xff for i in range(count))
    return (be32(0x25609513) + be16(flags) + be16(typ) + be64(cookie[0]) +
            be64(off) + be32(count) + (payload or b""))


def proto(flags, pieces, *units):
    head = bytes([flags, len(pieces)])
    head += b"".join(bytes([s, a]) for s, a in pieces)
    return head + b"".join(units)


def protocol_seeds():
    t = "fuzz_protocol"
    put(t, "go-read-write", proto(
        PEER_OK | ONE,
        [(3, ALL), (1, NONE), (16, REVERSED), (5, OLDEST), (40, ALL | SHORT),
         (100, ALL | EIO), (7, ALL), (64, OLDEST | ENOSPC)],
        CLIENT_FLAGS,
        opt(OPT_LIST),
        info_go(OPT_INFO, "root", [INFO_NAME, INFO_DESCRIPTION]),
        info_go(OPT_GO, "root", [INFO_NAME, INFO_DESCRIPTION, INFO_BLOCK_SIZE]),
        req(CMD_READ, 0, 4096),
        req(CMD_WRITE, 1000, 512),
        req(CMD_READ, 0, 8192),
        req(CMD_FLUSH),
        req(CMD_WRITE, 8192, 4096, FUA),
        req(CMD_TRIM, 16384, 8192),
        req(CMD_WRITE_ZEROES, 30000, 5000, NO_HOLE),
        req(CMD_CACHE, 0, 65536),
        req(CMD_READ, IMAGE_SIZE - 3000, 3000),
        req(CMD_DISC)))

    put(t, "structured-serial", proto(
        PEER_OK | SERIAL, [],
        CLIENT_FLAGS,
        opt(OPT_STRUCTURED),
        meta(OPT_LIST_META, "root", [b"base:"]),
        meta(OPT_SET_META, "root", [b"base:allocation"]),
        info_go(OPT_GO, "root"),
        req(CMD_WRITE, 4096, 8192),
        req(CMD_READ, 0, 16384, DF),
        req(CMD_BLOCK_STATUS, 0, 65536),
        req(CMD_BLOCK_STATUS, 1 << 20, 1000, REQ_ONE),
        req(CMD_WRITE_ZEROES, 5000, 10000, FAST_ZERO),
        req(CMD_READ, 0, 20000),
        req(CMD_TRIM, 40960, 16384),
        req(CMD_READ, 40960, 16384),
        req(CMD_BLOCK_STATUS, 36864, 30000),
        req(CMD_BLOCK_STATUS, 258048, 200000),
        req(CMD_READ, 258048, 200000),
        req(CMD_WRITE, IMAGE_SIZE - 500, 500),
        req(CMD_READ, IMAGE_SIZE - 2000, 2000),
        req(CMD_WRITE_ZEROES, IMAGE_SIZE - 1000, 1000, FUA),
        req(CMD_BLOCK_STATUS, IMAGE_SIZE - 5000, 5000),
        req(CMD_READ, IMAGE_SIZE - 5000, 5000),
        req(CMD_DISC)))

    put(t, "export-name-byte-by-byte", proto(
        PEER_OK | ONE, [(1, ALL)] * 40,
        be32(1),                     # fixed newstyle, with zeroes
        opt(OPT_EXPORT_NAME, b"root@pc-7,boot=b001"),
        req(CMD_READ, 0, 512),
        req(CMD_WRITE, 4000, 100),
        req(CMD_READ, 3990, 200),
        req(CMD_DISC)))

    big = 132 << 10                  # past the inline-write limit
    head = (CLIENT_FLAGS + info_go(OPT_GO, "root") +
            req(CMD_READ, 0, 65536) + req(CMD_READ, 0, 65536))
    put(t, "large-write-splice", proto(
        PEER_OK | SPLICE | ONE,
        [(len(head), ALL), (28, NONE), (pages(big), OLDEST | SHORT),
         (28, OLDEST | EIO), (28, ALL | JANITOR)],
        head,
        req(CMD_WRITE, 65536, big, FUA),
        req(CMD_READ, 65536, big),
        req(CMD_READ, 0, 1 << 20),
        req(CMD_FLUSH)))

    put(t, "quota-serial", proto(         # quota: 16K, 4 blocks
        PEER_OK | SERIAL, [],
        CLIENT_FLAGS,
        info_go(OPT_INFO, "small@pc-1"),
        info_go(OPT_GO, "small@pc-1", [INFO_BLOCK_SIZE]),
        req(CMD_WRITE, 0, 8192),
        req(CMD_WRITE, 16384, 4096),
        req(CMD_WRITE, 40960, 8192),            # over the quota
        req(CMD_WRITE_ZEROES, 40000, 2000),     # partial blocks need quota
        req(CMD_TRIM, 0, 8192),
        req(CMD_WRITE, 40960, 8192),            # fits now
        req(CMD_WRITE_ZEROES, 50000, 100),      # but not one more block
        req(CMD_READ, 0, STORE_IMAGE_SIZE),
        req(CMD_FLUSH),
        req(CMD_DISC)))

    put(t, "lab-reconnect", proto(
        PEER_OK | TWO_SEQUENTIAL, [(50, ALL), (30, REVERSED)],
        CLIENT_FLAGS,
        info_go(OPT_INFO, "lab@lab-01,boot=b1", [INFO_NAME]),
        info_go(OPT_GO, "lab@lab-01,boot=b1", [INFO_NAME]),
        req(CMD_WRITE, 0, 4096, FUA),
        req(CMD_WRITE, 5000, 100),
        req(CMD_FLUSH),
        req(CMD_READ, 0, 8192),
        req(CMD_DISC)))

    # Two boots of one reset-on-boot client: the second while the first
    # is still attached, then the first goes away.
    boot1 = (CLIENT_FLAGS +
             info_go(OPT_GO, "lab@lab-01,boot=b1") +
             req(CMD_WRITE, 0, 4096) + req(CMD_WRITE, 8192, 100, FUA) +
             req(CMD_READ, 0, 4096) + req(CMD_FLUSH))
    boot2 = (CLIENT_FLAGS +
             info_go(OPT_GO, "lab@lab-01,boot=b2") +
             req(CMD_READ, 0, 4096) + req(CMD_WRITE, 0, 512) +
             req(CMD_FLUSH) + req(CMD_DISC))
    put(t, "lab-new-boot", proto(
        PEER_OK | TWO | STREAMS,
        [(60, ALL), (40, NONE), (60, ALL | SECOND), (100, NONE | GONE),
         (100, REVERSED | SECOND)],
        be16(len(boot1)), boot1, boot2))
    put(t, "lab-reset-on-boot", proto(
        PEER_V6 | TWO_SEQUENTIAL | STREAMS, [(70, ALL)],
        be16(len(boot1)), boot1, boot2))
    put(t, "lab-reset-while-open", proto(
        PEER_OK | TWO_SEQUENTIAL | STREAMS | KEEP_OPEN, [],
        be16(len(boot1)), boot1, boot2))
    put(t, "base-changed", proto(
        PEER_OK | TWO_SEQUENTIAL | TOUCH_BASE, [],
        CLIENT_FLAGS,
        info_go(OPT_GO, "root@pc-3"),
        req(CMD_WRITE, 0, 4096, FUA),
        req(CMD_READ, 0, 4096),
        req(CMD_DISC)))
    put(t, "ephemeral-dropped", proto(
        PEER_OK | TWO_SEQUENTIAL, [],
        CLIENT_FLAGS,
        info_go(OPT_GO, "small@pc-2"),
        req(CMD_WRITE, 4096, 4096, FUA),
        req(CMD_WRITE_ZEROES, 0, STORE_IMAGE_SIZE, FUA),
        req(CMD_READ, 0, 8192),
        req(CMD_DISC)))

    put(t, "acl-refusals", proto(
        PEER_DENIED | ONE, [],
        CLIENT_FLAGS,
        opt(OPT_LIST),
        info_go(OPT_INFO, "lab"),
        info_go(OPT_GO, "lab@lab-01"),
        info_go(OPT_GO, "lab@192.0.2.66"),
        info_go(OPT_GO, "root@192.0.2.10"),
        info_go(OPT_GO, "lab@unpinned"),
        info_go(OPT_INFO, "ro", [INFO_DESCRIPTION]),
        opt(OPT_ABORT)))

    put(t, "readonly-errors", proto(
        PEER_V6 | SERIAL, [],
        CLIENT_FLAGS,
        info_go(OPT_GO, "ro", [INFO_NAME, INFO_DESCRIPTION]),
        req(CMD_WRITE, 0, 10),
        req(CMD_TRIM, 0, 4096),
        req(CMD_WRITE_ZEROES, 0, 4096),
        req(CMD_READ, 1 << 20, 1000),
        req(CMD_READ, (1 << 20) - 1000, 3000),  # past the end
        req(CMD_READ, 0, 4096, DF),             # DF without structured
        req(CMD_BLOCK_STATUS, 0, 4096),         # no meta context
        req(CMD_READ, 0, 0),
        req(CMD_FLUSH),
        req(9, 0, 0),
        req(CMD_READ, 0, 4096, FUA),
        req(CMD_DISC)))

    put(t, "two-connections", proto(
        PEER_OK | TWO,
        [(20, ALL), (20, ALL | SECOND), (30, NONE), (30, NONE | SECOND),
         (100, REVERSED), (100, OLDEST | SECOND), (60, ALL | EIO)],
        CLIENT_FLAGS,
        opt(OPT_STRUCTURED),
        meta(OPT_SET_META, "root@twin", [b"base:allocation"]),
        info_go(OPT_GO, "root@twin"),
        req(CMD_WRITE, 0, 4096),
        req(CMD_FLUSH),
        req(CMD_READ, 0, 4096),
        req(CMD_WRITE, 100, 1000, FUA),
        req(CMD_BLOCK_STATUS, 0, 8192, REQ_ONE),
        req(CMD_TRIM, 0, 4096, FUA),
        req(CMD_DISC)))

    name = b"root"
    put(t, "bad-options", proto(
        PEER_UNKNOWN | ONE, [],
        CLIENT_FLAGS,
        opt(42, b"what is this"),
        opt(OPT_STRUCTURED, b"x"),
        opt(OPT_LIST, b"x"),
        opt(OPT_INFO, b"\0\0"),
        opt(OPT_GO, be32(1000) + name + be16(0)),
        opt(OPT_GO, be32(len(name)) + name + be16(3) + be16(1)),
        meta(OPT_SET_META, "root", [b"base:allocation"]),
        opt(OPT_STRUCTURED),
        opt(OPT_LIST_META, be32(4) + name + be32(2) + be32(100) + b"base:"),
        opt(OPT_LIST_META, be32(4) + name + be32(0)),
        opt(OPT_SET_META, be32(4) + name + be32(1) + be32(5) + b"base:xx"),
        meta(OPT_LIST_META, "nosuch", [b"base:allocation"]),
        info_go(OPT_GO, "root@bad id!"),
        info_go(OPT_GO, "root@x,boot=y,colour=blue"),
        opt(OPT_EXPORT_NAME, b"nosuch")))

    put(t, "bad-client-flags", proto(PEER_OK | ONE, [], be32(0x80000003)))
    put(t, "bad-option-magic", proto(
        PEER_OK | ONE, [], CLIENT_FLAGS, b"IHAVEOPS" + be32(3) + be32(0)))
    put(t, "bad-requests", proto(
        PEER_OK | ONE, [(30, ALL)],
        CLIENT_FLAGS,
        info_go(OPT_GO, "root"),
        req(CMD_WRITE, 0, 0),
        req(CMD_READ, 0, (1 << 20) + 1),        # over max-request
        req(CMD_WRITE_ZEROES, 0, 4096, DF),
        be32(0x25609513) + be16(0) + be16(CMD_WRITE) + be64(77) + be64(0) +
        be32((1 << 20) + 1)))                   # too large: disconnect
    put(t, "option-too-big", proto(
        PEER_OK | ONE, [(200, ALL)],
        CLIENT_FLAGS,
        opt(OPT_INFO, b"\0" * (64 << 10) + b"!"),
        opt(OPT_LIST),
        b"IHAVEOPT" + be32(OPT_INFO) + be32(20 << 20)))

    # No block sizes asked for: requests longer than a chunk (1 MiB), up
    # to the export's size; the write is taken and written chunk by
    # chunk, the read streamed.  Checked against the model.
    head = CLIENT_FLAGS + info_go(OPT_GO, "root")
    put(t, "chunked-serial", proto(
        PEER_OK | SERIAL, [],
        head,
        req(CMD_WRITE, 50, IMAGE_SIZE - 100, FUA),
        req(CMD_READ, 0, IMAGE_SIZE),
        req(CMD_WRITE, 4096, IMAGE_SIZE),          # past the end: EINVAL
        req(CMD_READ, 1 << 19, (1 << 20) + 1000 - (1 << 19)),
        req(CMD_WRITE, 0, IMAGE_SIZE),
        req(CMD_READ, 0, IMAGE_SIZE)))

    # A chunked write whose chunks' I/O fails, comes short or waits, and
    # whose client goes away in the middle of its payload.
    put(t, "chunked-faults", proto(
        PEER_OK | ONE,
        [(len(head), ALL), (pages(256 << 10), NONE), (pages(256 << 10), ALL | SHORT),
         (pages(256 << 10), OLDEST | EIO), (pages(256 << 10), ALL | ENOSPC),
         (pages(64 << 10), REVERSED), (100, ALL), (pages(128 << 10), ALL | GONE)],
        head,
        req(CMD_WRITE, 4096, IMAGE_SIZE - 4096),
        req(CMD_WRITE, 0, IMAGE_SIZE - 1000),
        req(CMD_READ, 0, IMAGE_SIZE)))

    # Over the budget: more requests in flight than a connection may
    # have (their I/O held back), so that input is kept, then fed once
    # completions let it; a chunked write among them.
    reads = b"".join(req(CMD_READ, i * 4096, 4096) for i in range(300))
    put(t, "budget-kept-input", proto(
        PEER_OK | ONE,
        [(len(head), ALL), (pages(8192), NONE), (pages(4096), NONE),
         (100, OLDEST), (pages(16384), NONE), (50, ALL), (0, ALL)],
        head,
        reads,
        req(CMD_WRITE, 100, (1 << 20) + 200),
        reads,
        req(CMD_DISC)))


def protocol_dict():
    words = [b"IHAVEOPT", b"\x25\x60\x95\x13", b"base:allocation", b"base:",
             b"root", b"ro", b"small", b"lab", b"lab-01", b"@", b",boot=",
             b"192.0.2.10", b"2001:db8::7"]
    words += [be32(o) for o in (1, 2, 3, 6, 7, 8, 9, 10)]
    words += [be16(t) for t in range(8)]
    words += [be32(x) for x in (4096, 65536, 135168, 1 << 20, IMAGE_SIZE)]
    words += [be64(x) for x in (4096, 1 << 20, IMAGE_SIZE - 4096)]

    def esc(b):
        return "".join(chr(c) if 32 <= c < 127 and chr(c) not in '"\\'
                       else "\\x%02x" % c for c in b)
    with open(os.path.join(HERE, "fuzz_protocol.dict"), "w") as f:
        f.write("# Tokens of the NBD protocol and of the fuzz target's "
                "exports (make-seeds.py).\n")
        for w in words:
            f.write('"%s"\n' % esc(w))


# ---- fuzz_config ----

def config_seeds():
    t = "fuzz_config"
    put(t, "exports", """# nbdsrv test configuration
[generic]
overlay-dir = /var/lib/nbdsrv
policy = persistent
ephemeral-linger = 1

[lab]
image = /srv/images/base.img
description = the lab image
policy = reset-on-boot

; a read-only export
[ro]
image = /srv/images/other.img
readonly = true
description = read only

[scratch]
image = /srv/images/base.img
policy = ephemeral
""")
    put(t, "limits", """[generic]
overlay-dir = /var/lib/nbdsrv
max-connections = 6
max-connections-per-address = 3
handshake-timeout = 2
keepalive = 37
max-request = 1M
quota = 2G
threads = 4
listen = 127.0.0.1:10809
listen = [::1]:10810
listen = 10811

[base]
image = /srv/images/store/base
quota = 1M
""")
    put(t, "acl", """[generic]
overlay-dir = /var/lib/nbdsrv

[open]
image = /srv/images/base.img
deny = 127.0.0.3

[lab]
image = /srv/images/base.img
allow = 127.0.0.2/32, 127.0.0.4
allow = 127.0.1.0/24, fd00::/8
pin = alpha 127.0.0.2
require-pin = false

[strict]
image = /srv/images/base.img
require-pin = true
pin = beta 127.0.0.5/32, 127.0.0.6
pin = 52-54-00-12-34-56 2001:db8::7/128
""")
    put(t, "bad-key", "[generic]\ncolour = blue\n[a]\nimage = /x.img\n")
    put(t, "bad-section", "[a\nimage = /x.img\n")
    put(t, "twice", "[a]\nimage = /x.img\n[a]\nimage = /x.img\n")


# ---- fuzz_export_name ----

def export_name_seeds():
    t = "fuzz_export_name"
    for i, s in enumerate([
            b"root", b"", b"root@52-54-00-12-34-56",
            b"root@52:54:00:12:34:56,boot=8c2f0e6a1b7d4e39a0c5f2d18e7b6a43",
            b"@lab-01", b"lab@lab-01,boot=b1,boot=b2", b"root@bad id",
            b"root@x,colour=blue", b"ro\0ot", b"a@b@c"]):
        put(t, "name-%02d" % i, s)


# ---- fuzz_cmdline: command lines of tests/test_boot_*.sh ----

def cmdline_seeds():
    t = "fuzz_cmdline"
    lines = [
        "ip=dhcp root=nbd:10.0.2.2:10809/root rw",
        "root=nbd:10.0.2.2:root",
        "root=nbd:192.168.1.1:2000/img:ext4:noatime,data=ordered ro",
        "root=nbd:[fd00::1]:2000/root",
        "root=nbd:10.0.2.2:2000/img:ext4:noatime:timeout=30,persist",
        "nbdroot=10.0.2.2:1234,root,nbd1 root=/dev/nbd1",
        "nbdroot=[fd00::2]:99,exp root=/dev/nbd3",
        "nbdroot=10.0.2.2,root rootfstype=ext4 rootflags=noatime init=/bin/sh",
        "ip=10.0.2.15:10.0.2.2:10.0.2.2:255.255.255.0:client1:eth0:none:"
        "10.0.2.3:10.0.2.4 root=nbd:10.0.2.2",
        "ip=eth1:dhcp root=nbd:10.0.2.2",
        "BOOTIF=01-52-54-00-AB-cd-ef root=nbd:10.0.2.2",
        'quiet "root=nbd:10.0.2.2:1/x" foo="a b" root=nbd:10.0.2.2:2/y',
        "nbdroot.retries=3 nbdroot.rescue=poweroff nbdroot.dead_timeout=60 "
        "nbdroot.timeout=10 nbdroot.send_id=0 root=nbd:10.0.2.2",
        "root=nbd:10.0.2.2 -- root=/dev/sda ip=bogus",
        "BOOT_IMAGE=/vmlinuz console=ttyS0 ip=bogus root=nbd:10.0.2.2:x@pc1",
    ]
    for i, s in enumerate(lines):
        put(t, "cmdline-%02d" % i, s)


# ---- fuzz_modules: parts separated by NUL (see fuzz_modules.c) ----

DEP = """kernel/arch/x86/crypto/crc32c-intel.ko:
kernel/fs/mbcache.ko:
kernel/fs/ext4/ext4.ko: kernel/lib/crc16.ko kernel/fs/mbcache.ko kernel/fs/jbd2/jbd2.ko
kernel/fs/jbd2/jbd2.ko:
kernel/crypto/crc32c_generic.ko:
kernel/lib/crc16.ko:
kernel/drivers/block/nbd.ko:
kernel/drivers/virtio/virtio.ko: kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/virtio/virtio_ring.ko:
kernel/drivers/virtio/virtio_pci.ko: kernel/drivers/virtio/virtio_pci_legacy_dev.ko kernel/drivers/virtio/virtio_pci_modern_dev.ko kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/virtio/virtio_pci_modern_dev.ko:
kernel/drivers/virtio/virtio_pci_legacy_dev.ko:
kernel/drivers/net/virtio_net.ko.xz: kernel/drivers/net/net_failover.ko kernel/net/core/failover.ko kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/net/net_failover.ko: kernel/net/core/failover.ko
kernel/net/core/failover.ko:
"""
SOFTDEP = """# Soft dependencies extracted from modules themselves.
softdep ext4 pre: crypto-crc32c
softdep jbd2 pre: crypto-crc32c
softdep virtio_net post: virtio_pci
"""
ALIAS = """# Aliases extracted from modules themselves.
alias crypto-crc32c crc32c_intel
alias crc32c crc32c_intel
alias cpu:type:x86,ven*fam*mod*:feature:*0094* crc32c_intel
alias crypto-crc32c crc32c_generic
alias crc32c crc32c_generic
alias fs-ext4 ext4
alias ext3 ext4
alias pci:v00001AF4d*sv*sd*bc*sc*i* virtio_pci
alias virtio:d00000001v* virtio_net
"""
BUILTIN = """kernel/drivers/block/virtio_blk.ko
kernel/fs/nls/nls_base.ko
"""


def modules_seeds():
    t = "fuzz_modules"
    put(t, "debian-excerpt",
        "\0".join([DEP, SOFTDEP, ALIAS, BUILTIN, "ext4 nbd virtio_net",
                   "virtio:d00000001v00001AF4 crc32c virtio_blk"]))
    put(t, "dep-only", DEP)
    put(t, "aliases", "\0".join([DEP, "", ALIAS, "", "fs-ext3 crc32c "
                                 "pci:v00001AF4d00001000sv00001AF4sd00000001bc02sc00i00"]))
    put(t, "softdep-cycle", "\0".join([
        "a.ko: b.ko\nb.ko:\nc.ko:\n",
        "softdep a pre: c\nsoftdep c pre: a post: b\n", "", "", "a c"]))
    put(t, "missing-dep", "\0".join([
        "kernel/x.ko: kernel/nothere.ko\n", "", "", "", "x"]))


# ---- fuzz_cpio: newc archives, gzip'd and plain ----

def newc(entries):
    out = bytearray()
    ino = 1

    def pad():
        while len(out) % 4:
            out.append(0)
    for name, mode, data, rdev in entries + [("TRAILER!!!", 0, b"", (0, 0))]:
        n = name.encode() + b"\0"
        fields = [ino if name != "TRAILER!!!" else 0, mode, 0, 0,
                  2 if mode & 0o170000 == 0o040000 else 1, 0, len(data),
                  0, 0, rdev[0], rdev[1], len(n), 0]
        out += b"070701" + "".join("%08X" % f for f in fields).encode()
        out += n
        pad()
        out += data
        pad()
        ino += 1
    return bytes(out)


def cpio_seeds():
    t = "fuzz_cpio"
    entries = [
        ("dev", 0o040755, b"", (0, 0)),
        ("dev/console", 0o020600, b"", (5, 1)),
        ("init", 0o100755, b"#!/bin/true\n", (0, 0)),
        ("lib", 0o040755, b"", (0, 0)),
        ("lib/modules", 0o040755, b"", (0, 0)),
        ("lib/modules/modules.order", 0o100644,
         b"kernel/drivers/block/nbd.ko\n", (0, 0)),
        ("sbin", 0o040755, b"", (0, 0)),
        ("sbin/init", 0o120777, b"../init", (0, 0)),
        ("tmp", 0o041777, b"", (0, 0)),
        ("usr/bin/su", 0o104755, b"", (0, 0)),
    ]
    plain = newc(entries)
    put(t, "initrd-plain.cpio", plain)
    put(t, "initrd.cpio.gz", gzip.compress(plain, 6, mtime=0))
    put(t, "empty.cpio.gz", gzip.compress(newc([]), 6, mtime=0))
    put(t, "truncated.cpio", plain[:200])


def main():
    protocol_seeds()
    protocol_dict()
    config_seeds()
    export_name_seeds()
    cmdline_seeds()
    modules_seeds()
    cpio_seeds()
    return 0


if __name__ == "__main__":
    sys.exit(main())
