/* SPDX-License-Identifier: GPL-2.0-or-later */
/* imgtool pxe: the boot loader and DHCP configurations that network-boot
 * nbdroot clients.
 *
 * One run writes, into DIR, everything a PXE setup needs besides the
 * boot loader binaries themselves:
 *
 *   pxelinux.cfg/default   BIOS clients, PXELINUX
 *   grub/grub.cfg          UEFI clients, GRUB's network image
 *   nbdroot.ipxe           clients running iPXE (firmware or chainloaded)
 *   dnsmasq-dhcp.conf      dnsmasq as the network's DHCP and TFTP server
 *   dnsmasq-proxy.conf     dnsmasq as proxy-DHCP beside a router
 *   dhcpd.conf             ISC dhcpd snippet
 *   KERNEL, INITRD         copies, under their own base names
 *
 * Every configuration boots the kernel with the agent's command line,
 * "ip=dhcp root=nbd:SERVER:PORT/EXPORT rw", plus BOOTIF= where the loader
 * knows the booting NIC's MAC, so a client with several NICs brings up
 * the one it booted from.  "rw" because the overlay makes writes safe and
 * a root is often not set up to remount itself read-write.  Several
 * --export give a menu in each loader (PXELINUX's own prompt, GRUB's
 * menu, iPXE's menu), the first export the default after MENU_TIMEOUT.
 *
 * How each loader finds the files (the layout of the usual PXELINUX and
 * dnsmasq setups: the loaders and their configurations in one TFTP
 * directory):
 *   - PXELINUX reads pxelinux.cfg/ and resolves KERNEL/INITRD relative to
 *     the directory it was loaded from, so with pxelinux.0 in DIR plain
 *     names are right wherever DIR sits in the TFTP root;
 *   - GRUB network images are built with an absolute prefix (/grub, as
 *     Debian's grubnetx64.efi) and read files from the TFTP root, so its
 *     paths carry --tftp-prefix;
 *   - iPXE takes URLs: tftp://SERVER/PREFIX/..., or --http-base's.
 * The DHCP configurations tell iPXE (its option 175, or its user class)
 * from PXE firmware, and UEFI (client architecture 7 or 9) from BIOS.  In proxy mode PXE
 * firmware gets a one-entry boot menu per architecture (booted at once),
 * while iPXE matches no menu entry, which makes dnsmasq set PXE discovery
 * control 8: boot the file named in the offer.
 *
 * Arguments are checked before anything is written; kernel and initrd
 * must look like what they are, so swapping them is caught.  The files
 * are written anonymously and only named (each rename atomic) once all
 * of them are complete, so a failure before that leaves DIR as it was,
 * and no directory this run created.
 * The output depends on the arguments only: no time, no host names, no
 * source paths.
 */
#include <config.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "imgtool.h"

#define DEFAULT_PORT 10809
#define IPXE_SCRIPT "nbdroot.ipxe"
#define MENU_TIMEOUT 5 /* seconds before the first export boots */

/* Names the configurations use or tell the admin to add: a kernel or
 * initrd under one of them would overwrite it or be overwritten. */
static const char *const reserved_names[] = {
  "pxelinux.cfg",       "grub",          IPXE_SCRIPT,  "dnsmasq-dhcp.conf",
  "dnsmasq-proxy.conf", "dhcpd.conf",    "pxelinux.0", "ldlinux.c32",
  "grubx64.efi",        "undionly.kpxe", "ipxe.efi",
};

#define PXE_SERVERS_MAX 8

struct pxe {
  char server[INET_ADDRSTRLEN]; /* nbdsrv, as clients reach it */
  char tftp[INET_ADDRSTRLEN];   /* TFTP (next-server), default server */
  unsigned port;
  /* Every nbdsrv, "S1:PORT,S2:PORT": the agent's list (root=nbd:LIST/
   * EXPORT, nbdroot-agent(7)), tried in order, failed over in turn. */
  char roots[PXE_SERVERS_MAX * (INET_ADDRSTRLEN + 7)];
  const char **exports; /* one menu entry each; [0] the default */
  size_t nexports, exports_cap;
  const char *kernel, *initrd; /* source paths */
  char *kname, *iname;         /* their names in DIR */
  char *dir;                   /* absolute, normalised */
  char *prefix;                /* DIR inside the TFTP root: "" or "a/b/" */
  char *tftp_root;             /* dir minus prefix */
  char *http;                  /* base URL without trailing '/', or NULL */
  char **consoles;
  size_t nconsoles, consoles_cap;
  bool serial; /* the first ttyS console, for loaders */
  unsigned serial_unit, serial_baud;
  char *append; /* every --append, in order, or NULL */
  bool ro;      /* --ro: a read-only root */
  bool dns;     /* --dns: dnsmasq serves DNS too */
  char range_lo[INET_ADDRSTRLEN], range_hi[INET_ADDRSTRLEN];
  char *params; /* what follows root=: " rw console=..." */
};

/* ---- text ---- */

struct buf {
  char *p;
  size_t len, cap;
};

static void __attribute__((format(printf, 2, 3)))
bprintf(struct buf *b, const char *fmt, ...)
{
  va_list ap;
  int r;

  va_start(ap, fmt);
  /* -EINVAL only on a bad format: caught in development */
  r = vec_vprintf(&b->p, &b->len, &b->cap, fmt, ap);
  va_end(ap);
  if (r == -ENOMEM)
    out_of_memory();
}

/* ---- checks ---- */

static bool
plain_name(const char *s, size_t max)
{
  size_t n = strlen(s);

  if (!n || n > max || s[0] == '.')
    return false;
  for (; *s; s++)
    if (!(*s >= 'a' && *s <= 'z') && !(*s >= 'A' && *s <= 'Z') &&
        !(*s >= '0' && *s <= '9') && !strchr("._+-", *s))
      return false;
  return true;
}

/* An IPv4 address a PXE client can be sent to, in canonical form.
 * Returns 0 or -EINVAL after a one-line message naming the option. */
static int
parse_ipv4(const char *opt, const char *s, char out[INET_ADDRSTRLEN])
{
  struct in_addr a;
  uint32_t h;

  if (inet_pton(AF_INET, s, &a) != 1) {
    log_err("%s '%s' is not an IPv4 address (dotted quad, e.g. "
            "192.168.10.1): the clients get it before any name service, and "
            "the agent resolves no names",
            opt, s);
    return -EINVAL;
  }
  h = ntohl(a.s_addr);
  if (h == 0 || h == 0xffffffffu || (h >> 24) == 127 || (h >> 28) == 14) {
    log_err("%s %s cannot be a server's address for the clients (it is "
            "unspecified, broadcast, loopback or multicast); give the "
            "address clients reach the server at",
            opt, s);
    return -EINVAL;
  }
  inet_ntop(AF_INET, &a, out, INET_ADDRSTRLEN);
  return 0;
}

/* Kernel parameters pass through three loaders' syntaxes (PXELINUX's
 * APPEND, GRUB's shell-like words, iPXE's ${} expansion): characters
 * that any of them would interpret are refused rather than half-quoted. */
static int
check_params(const char *opt, const char *s)
{
  for (const char *p = s; *p; p++) {
    unsigned char c = (unsigned char)*p;
    if (c < 0x20 || c > 0x7e) {
      log_err("%s: a control or non-ASCII character; give plain parameters "
              "(letters, digits, = , . : / _ - + and blanks)",
              opt);
      return -EINVAL;
    }
    if (strchr("\"'\\$;&|<>{}#`", c)) {
      log_err("%s '%s': character '%c' would be interpreted by PXELINUX, "
              "GRUB or iPXE; give plain parameters (letters, digits, = , . : "
              "/ _ - + and blanks)",
              opt, s, c);
      return -EINVAL;
    }
  }
  return 0;
}

/* DIR as an absolute path with ".", ".." and repeated slashes folded,
 * without touching the filesystem (DIR need not exist yet). */
static char *
absolute_dir(const char *dir)
{
  char cwd[PATH_MAX];
  char *in, *out, *tok, *save;
  size_t len = 0;

  if (dir[0] == '/') {
    in = xstrdup(dir);
  } else {
    if (!getcwd(cwd, sizeof cwd))
      return NULL;
    in = xasprintf("%s/%s", cwd, dir);
  }
  out = xmalloc(strlen(in) + 2);
  out[0] = '\0';
  for (tok = strtok_r(in, "/", &save); tok; tok = strtok_r(NULL, "/", &save)) {
    if (strcmp(tok, ".") == 0)
      continue;
    if (strcmp(tok, "..") == 0) {
      while (len > 0 && out[len - 1] != '/')
        len--;
      if (len > 0)
        len--; /* and the slash before the component */
      out[len] = '\0';
      continue;
    }
    out[len++] = '/';
    memcpy(out + len, tok, strlen(tok));
    len += strlen(tok);
    out[len] = '\0';
  }
  if (len == 0) {
    out[len++] = '/';
    out[len] = '\0';
  }
  free(in);
  return out;
}

/* --tftp-prefix: relative, plain components; stored with a trailing '/'. */
static int
parse_prefix(const char *s, char **out)
{
  char *copy = xstrdup(s), *tok, *save;
  struct buf b = { 0 };

  bprintf(&b, "%s", ""); /* "" rather than NULL when there is no prefix */
  for (tok = strtok_r(copy, "/", &save); tok; tok = strtok_r(NULL, "/", &save)) {
    if (!plain_name(tok, 255)) {
      log_err("--tftp-prefix '%s': component '%s' is not a plain name "
              "(letters, digits, . _ + -, not starting with '.')",
              s, tok);
      free(copy);
      free(b.p);
      return -EINVAL;
    }
    bprintf(&b, "%s/", tok);
  }
  free(copy);
  *out = b.p;
  return 0;
}

static int
parse_http(const char *s, char **out)
{
  size_t n = strlen(s), scheme = strncmp(s, "http://", 7) == 0    ? 7
                                 : strncmp(s, "https://", 8) == 0 ? 8
                                                                  : 0;

  if (!scheme || n == scheme || s[scheme] == '/') {
    log_err("--http-base '%s' is not an http:// or https:// URL", s);
    return -EINVAL;
  }
  for (const char *p = s; *p; p++) {
    unsigned char c = (unsigned char)*p;
    if (c <= 0x20 || c > 0x7e || strchr("\"'\\$;&|<>{}#`", c)) {
      log_err("--http-base '%s': character '%c' does not belong in the URL "
              "of a boot file",
              s, c > 0x20 && c <= 0x7e ? c : '?');
      return -EINVAL;
    }
  }
  *out = xstrdup(s);
  while (n > scheme + 1 && (*out)[n - 1] == '/')
    (*out)[--n] = '\0';
  return 0;
}

/* --console ttyS0,115200n8, tty0, ...: the first serial one also becomes
 * the loaders' terminal, at the kernel's default 9600 baud if none. */
static int
add_console(struct pxe *x, const char *s)
{
  for (const char *p = s; *p; p++) {
    if (!(*p >= 'a' && *p <= 'z') && !(*p >= 'A' && *p <= 'Z') &&
        !(*p >= '0' && *p <= '9') && !strchr(",._-", *p)) {
      log_err("--console '%s' is not a console device (e.g. ttyS0,115200 "
              "or tty0)",
              s);
      return -EINVAL;
    }
  }
  if (!*s) {
    log_err("--console needs a device (e.g. ttyS0,115200 or tty0)");
    return -EINVAL;
  }
  if (!x->serial && strncmp(s, "ttyS", 4) == 0 && s[4] >= '0' && s[4] <= '9') {
    char *end;
    unsigned long unit = strtoul(s + 4, &end, 10), baud = 9600;
    if (*end == ',')
      baud = strtoul(end + 1, NULL, 10);
    if (unit > 3 || baud < 50 || baud > 4000000) {
      log_err("--console '%s': give ttyS0..ttyS3 and a baud rate, e.g. "
              "ttyS0,115200",
              s);
      return -EINVAL;
    }
    x->serial = true;
    x->serial_unit = (unsigned)unit;
    x->serial_baud = (unsigned)baud;
  }
  XVEC_RESERVE(x->consoles, x->consoles_cap, x->nconsoles + 1);
  x->consoles[x->nconsoles++] = xstrdup(s);
  return 0;
}

static int
parse_range(const char *s, struct pxe *x)
{
  char *copy = xstrdup(s), *comma = strchr(copy, ',');
  struct in_addr lo, hi;
  int r = -EINVAL;

  if (!comma) {
    log_err("--dhcp-range '%s': give FIRST,LAST (e.g. "
            "192.168.10.100,192.168.10.200)",
            s);
    goto out;
  }
  *comma = '\0';
  if (inet_pton(AF_INET, copy, &lo) != 1 || inet_pton(AF_INET, comma + 1, &hi) != 1 ||
      ntohl(lo.s_addr) > ntohl(hi.s_addr)) {
    log_err("--dhcp-range '%s': give two IPv4 addresses, lowest first (e.g. "
            "192.168.10.100,192.168.10.200)",
            s);
    goto out;
  }
  inet_ntop(AF_INET, &lo, x->range_lo, sizeof x->range_lo);
  inet_ntop(AF_INET, &hi, x->range_hi, sizeof x->range_hi);
  r = 0;
out:
  free(copy);
  return r;
}

/* Base name of a source file, checked as a TFTP file name. */
static int
file_name(const char *opt, const char *path, char **out)
{
  const char *slash = strrchr(path, '/');
  const char *base = slash ? slash + 1 : path;

  if (!plain_name(base, 100)) {
    log_err("%s %s: the name '%s' is not a plain file name for TFTP "
            "(letters, digits, . _ + -, not starting with '.'); copy or link "
            "the file under such a name",
            opt, path, base);
    return -EINVAL;
  }
  for (size_t i = 0; i < ARRAY_SIZE(reserved_names); i++) {
    if (strcmp(base, reserved_names[i]) == 0) {
      log_err("%s %s: the name '%s' is one imgtool pxe writes or the boot "
              "loaders use; copy or link the file under another name",
              opt, path, base);
      return -EINVAL;
    }
  }
  *out = xstrdup(base);
  return 0;
}

/* Opens a source file and checks that it is what it is said to be, by its
 * first bytes: the kernel a bzImage or PE (EFI stub) or arm64 Image, the
 * initrd a cpio archive, compressed or not.  Returns the fd or -errno
 * after a one-line message. */
static int
open_source(const char *opt, const char *path, bool kernel, off_t *size)
{
  unsigned char h[0x210];
  struct stat st;
  ssize_t n;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  bool ok, gz, cpio;

  if (fd < 0) {
    int r = -errno;
    log_err("cannot read %s %s: %s", opt, path, strerror(-r));
    return r;
  }
  if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
    log_err("%s %s is not a regular file", opt, path);
    close(fd);
    return -EINVAL;
  }
  memset(h, 0, sizeof h);
  n = full_pread(fd, h, sizeof h, 0);
  if (n < 0) {
    log_err("cannot read %s %s: %s", opt, path, strerror((int)-n));
    close(fd);
    return (int)n;
  }
  gz = h[0] == 0x1f && h[1] == 0x8b;
  cpio = memcmp(h, "07070", 5) == 0;
  if (kernel)
    ok = memcmp(h + 0x202, "HdrS", 4) == 0 || memcmp(h, "MZ", 2) == 0 ||
         memcmp(h + 0x38, "ARM\x64", 4) == 0;
  else
    ok = gz || cpio ||
         memcmp(h,
                "\xfd"
                "7zXZ",
                5) == 0 ||
         memcmp(h, "\x28\xb5\x2f\xfd", 4) == 0 || /* zstd */
         memcmp(h, "\x02\x21\x4c\x18", 4) == 0 || /* lz4 legacy */
         memcmp(h, "BZh", 3) == 0 || memcmp(h, "\x5d\0\0", 3) == 0 ||
         memcmp(h, "\x89LZO", 4) == 0;
  if (!ok) {
    if (kernel)
      log_err("--kernel %s is not a Linux kernel image (no bzImage, EFI or "
              "arm64 header)%s",
              path,
              gz || cpio ? "; it looks like an initramfs: swapped with "
                           "--initrd?"
                         : "; give the vmlinuz");
    else
      log_err("--initrd %s is not an initramfs (no cpio archive, compressed "
              "or not)%s",
              path,
              memcmp(h + 0x202, "HdrS", 4) == 0 || memcmp(h, "MZ", 2) == 0
                  ? "; it looks like a kernel: swapped with --kernel?"
                  : "; make one with imgtool initrd");
    close(fd);
    return -EINVAL;
  }
  *size = st.st_size;
  return fd;
}

/* ---- the files ---- */

/* "export 'a'" or "exports 'a' (the default), 'b'": for comments. */
static void
exports_text(struct buf *b, const struct pxe *x)
{
  bprintf(b, "export%s '%s'%s", x->nexports > 1 ? "s" : "", x->exports[0],
          x->nexports > 1 ? " (the default)" : "");
  for (size_t i = 1; i < x->nexports; i++)
    bprintf(b, ", '%s'", x->exports[i]);
}

static void
header(struct buf *b, const struct pxe *x, const char *what)
{
  bprintf(b,
          "# %s\n"
          "# Written by imgtool pxe; run it again rather than editing this "
          "file.\n"
          "#\n"
          "# Boots nbdroot clients from the NBD server %s:%u, ",
          what, x->server, x->port);
  exports_text(b, x);
  bprintf(b, ":\n# kernel %s, initrd %s (the nbdroot agent).\n", x->kname, x->iname);
  if (x->nexports > 1)
    bprintf(b,
            "# The boot loaders offer the exports in a menu and boot the "
            "first after %u s.\n",
            MENU_TIMEOUT);
  bprintf(b, "# Layered root (nbdroot-agent(7), LAYERED ROOT): with --append "
             "'nbdroot.state=STATE\n"
             "# [nbdroot.keep=/home,/etc/ssh]' the export is the read-only "
             "base of an\n"
             "# overlay whose upper layer is on the client's own STATE "
             "export.\n");
}

/* Where a file of DIR is, as a TFTP path from the root or as a URL. */
static char *
tftp_path(const struct pxe *x, const char *name)
{
  return xasprintf("%s%s", x->prefix, name);
}

static char *
tftp_url(const struct pxe *x, const char *name)
{
  return xasprintf("tftp://%s/%s%s", x->tftp, x->prefix, name);
}

/* What iPXE fetches: over HTTP when asked, else TFTP. */
static char *
ipxe_url(const struct pxe *x, const char *name)
{
  if (x->http)
    return xasprintf("%s/%s", x->http, name);
  return tftp_url(x, name);
}

/* PXELINUX's own prompt, not menu.c32: the menu then needs no module
 * besides ldlinux.c32, which every PXELINUX setup has. */
static void
pxelinux_menu(struct buf *b, const struct pxe *x)
{
  bprintf(b,
          "DEFAULT %s\n"
          "PROMPT 1\n"
          "TIMEOUT %u\n"
          "SAY nbdroot: roots on %s:%u; type one's name and Enter, or wait "
          "%u s for %s:\n",
          x->exports[0], MENU_TIMEOUT * 10, x->server, x->port, MENU_TIMEOUT,
          x->exports[0]);
  for (size_t i = 0; i < x->nexports; i++)
    bprintf(b, "SAY   %s%s\n", x->exports[i], i ? "" : " (default)");
}

static void
write_pxelinux(struct buf *b, const struct pxe *x)
{
  header(b, x,
         "pxelinux.cfg/default: PXELINUX configuration for BIOS "
         "clients.");
  bprintf(b, "#\n"
             "# PXELINUX reads this file from pxelinux.cfg/ next to pxelinux.0 "
             "and loads\n"
             "# KERNEL and INITRD from that directory too: put pxelinux.0 and "
             "ldlinux.c32\n"
             "# here (Debian: /usr/lib/PXELINUX/pxelinux.0 from package "
             "pxelinux,\n"
             "# /usr/lib/syslinux/modules/bios/ldlinux.c32 from syslinux-common)"
             ".\n"
             "# IPAPPEND 2 appends BOOTIF=01-<MAC of the booting NIC>: the agent "
             "brings up\n"
             "# that NIC when the client has several.\n");
  if (x->serial)
    bprintf(b,
            "# SERIAL (first directive): the prompt on the serial "
            "console too.\nSERIAL %u %u\n",
            x->serial_unit, x->serial_baud);
  if (x->nexports > 1)
    pxelinux_menu(b, x);
  else
    bprintf(b,
            "DEFAULT nbdroot\n"
            "PROMPT 0\n"
            "SAY nbdroot: booting %s from %s:%u\n",
            x->exports[0], x->server, x->port);
  for (size_t i = 0; i < x->nexports; i++)
    bprintf(b,
            "LABEL %s\n"
            "  KERNEL %s\n"
            "  INITRD %s\n"
            "  APPEND ip=dhcp root=nbd:%s/%s%s\n"
            "  IPAPPEND 2\n",
            x->nexports > 1 ? x->exports[i] : "nbdroot", x->kname, x->iname, x->roots,
            x->exports[i], x->params);
}

static void
grub_entry(struct buf *b, const struct pxe *x, const char *export, const char *k,
           const char *i)
{
  bprintf(b,
          "menuentry \"nbdroot: %s from %s:%u\" {\n"
          "  set bootif=\n"
          "  if [ -n \"${net_default_mac}\" ]; then\n"
          "    set bootif=\"BOOTIF=${net_default_mac}\"\n"
          "  fi\n"
          "  echo \"nbdroot: loading /%s\"\n"
          "  linux /%s ip=dhcp root=nbd:%s/%s%s ${bootif}\n"
          "  echo \"nbdroot: loading /%s\"\n"
          "  initrd /%s\n"
          "}\n",
          export, x->server, x->port, k, k, x->roots, export, x->params, i, i);
}

static void
write_grub(struct buf *b, const struct pxe *x)
{
  char *k = tftp_path(x, x->kname), *i = tftp_path(x, x->iname);

  header(b, x,
         "grub/grub.cfg: GRUB configuration for UEFI clients booting "
         "from the network.");
  bprintf(b, "#\n"
             "# GRUB's network images read /grub/grub.cfg from the TFTP server "
             "they came\n"
             "# from (Debian: grubnetx64.efi.signed from package "
             "grub-efi-amd64-signed,\n"
             "# in the TFTP directory as grubx64.efi).  Paths are from the TFTP "
             "root.\n");
  if (*x->prefix)
    bprintf(b,
            "# This file is %sgrub/grub.cfg there: make /grub/grub.cfg read "
            "it with the line\n"
            "#   configfile /%sgrub/grub.cfg\n",
            x->prefix, x->prefix);
  bprintf(b, "# BOOTIF=<MAC of the booting NIC>: the agent brings up that NIC "
             "when the\n"
             "# client has several.\n");
  if (x->serial)
    bprintf(b,
            "serial --unit=%u --speed=%u\n"
            "terminal_input serial console\n"
            "terminal_output serial console\n",
            x->serial_unit, x->serial_baud);
  bprintf(b, "set default=0\nset timeout=%u\n", x->nexports > 1 ? MENU_TIMEOUT : 0);
  for (size_t e = 0; e < x->nexports; e++)
    grub_entry(b, x, x->exports[e], k, i);
  free(k);
  free(i);
}

/* iPXE's menu: items named boot-N, so that no export name can clash with
 * the script's own labels. */
static void
ipxe_menu(struct buf *b, const struct pxe *x)
{
  bprintf(b, "menu nbdroot: choose a root (NBD server %s:%u)\n", x->server, x->port);
  for (size_t i = 0; i < x->nexports; i++)
    bprintf(b, "item boot-%zu %s%s\n", i, x->exports[i], i ? "" : " (default)");
  bprintf(b,
          "choose --default boot-0 --timeout %u target || goto cancel\n"
          "goto ${target}\n"
          ":cancel\n"
          "echo nbdroot: no root chosen: the iPXE command line follows (exit "
          "returns to the menu)\n"
          "shell\n"
          "goto start\n",
          MENU_TIMEOUT * 1000);
}

static void
ipxe_entry(struct buf *b, const struct pxe *x, size_t e, const char *k, const char *i)
{
  if (x->nexports > 1)
    bprintf(b, ":boot-%zu\n", e);
  bprintf(b,
          "echo nbdroot: booting %s from %s:%u\n"
          "kernel %s initrd=%s ip=dhcp root=nbd:%s/%s%s "
          "BOOTIF=01-${netX/mac:hexhyp} || goto failed\n"
          "initrd %s || goto failed\n"
          "boot || goto failed\n",
          x->exports[e], x->server, x->port, k, x->iname, x->roots, x->exports[e],
          x->params, i);
}

static void
write_ipxe(struct buf *b, const struct pxe *x)
{
  char *k = ipxe_url(x, x->kname), *i = ipxe_url(x, x->iname);

  /* "#!ipxe" must be the first line: it is how iPXE knows a script. */
  bprintf(b, "#!ipxe\n");
  header(b, x,
         IPXE_SCRIPT ": iPXE script, for clients whose firmware is "
                     "iPXE or that chainload it.");
  bprintf(b,
          "#\n"
          "# The DHCP configurations written with it send iPXE clients to %s.\n"
          "# BOOTIF=01-<MAC of the NIC iPXE booted from>: the agent brings up "
          "that NIC\n"
          "# when the client has several.  initrd= names the initrd for "
          "kernels booted\n"
          "# through their EFI stub.  A retry frees what the failed attempt "
          "loaded\n"
          "# (this script is not among those images while it runs).\n"
          ":start\n",
          x->http ? "its URL" : "it by TFTP");
  if (x->nexports > 1)
    ipxe_menu(b, x);
  for (size_t e = 0; e < x->nexports; e++)
    ipxe_entry(b, x, e, k, i);
  bprintf(b,
          ":failed\n"
          "echo nbdroot: could not load or boot %s and %s: check that the "
          "server serves them\n"
          "prompt --key 0x02 --timeout 10000 Press Ctrl-B for the iPXE "
          "command line, or wait 10 s to try again... || goto retry\n"
          "shell\n"
          ":retry\n"
          "imgfree\n"
          "goto start\n",
          k, i);
  free(k);
  free(i);
}

/* The boot files each kind of client gets, shared by the DHCP files. */
static void
loader_notes(struct buf *b, const struct pxe *x)
{
  bprintf(b,
          "# Boot loaders to put in %s, next to the configurations:\n"
          "#   pxelinux.0, ldlinux.c32  BIOS (packages pxelinux, "
          "syslinux-common)\n"
          "#   grubx64.efi              UEFI (grubnetx64.efi.signed from "
          "grub-efi-amd64-signed)\n"
          "#   undionly.kpxe, ipxe.efi  only to chainload iPXE (package "
          "ipxe)\n",
          x->dir);
}

/* What the DHCP files hand out: the iPXE script's URL and the boot
 * loaders' TFTP paths. */
struct boot_files {
  char *script, *grub, *pxelinux0, *ipxe_efi, *undi;
  char *pxelinux; /* without ".0": dnsmasq's pxe-service adds it */
};

static void
boot_files_get(const struct pxe *x, struct boot_files *f)
{
  f->script = ipxe_url(x, IPXE_SCRIPT);
  f->grub = tftp_path(x, "grubx64.efi");
  f->pxelinux0 = tftp_path(x, "pxelinux.0");
  f->pxelinux = tftp_path(x, "pxelinux");
  f->ipxe_efi = tftp_path(x, "ipxe.efi");
  f->undi = tftp_path(x, "undionly.kpxe");
}

static void
boot_files_free(struct boot_files *f)
{
  free(f->script);
  free(f->grub);
  free(f->pxelinux0);
  free(f->pxelinux);
  free(f->ipxe_efi);
  free(f->undi);
}

/* DNS on port 53 is dnsmasq's default, and a PXE server that also
 * answers (or hijacks) the network's DNS is a surprise: off unless --dns. */
static void
dnsmasq_dns(struct buf *b, const struct pxe *x)
{
  if (x->dns)
    bprintf(b, "# This dnsmasq answers DNS too, on port 53 (imgtool pxe "
               "--dns).\n");
  else
    bprintf(b, "# No DNS from this dnsmasq, only DHCP and TFTP: clients get "
               "the network's\n"
               "# name server with dhcp-option=option:dns-server (imgtool pxe "
               "--dns leaves\n"
               "# this line out, and dnsmasq answers DNS on port 53).\n"
               "port=0\n");
}

static void
write_dnsmasq_dhcp(struct buf *b, const struct pxe *x)
{
  struct boot_files f;

  boot_files_get(x, &f);

  header(b, x,
         "dnsmasq-dhcp.conf: dnsmasq as the network's DHCP and TFTP "
         "server.");
  bprintf(b,
          "#\n"
          "# For a network where this dnsmasq hands out the addresses (turn "
          "off the\n"
          "# router's DHCP server).  Run it on %s: copy this file to\n"
          "# /etc/dnsmasq.d/, or dnsmasq --conf-file=dnsmasq-dhcp.conf; check "
          "it with\n"
          "# dnsmasq --test --conf-file=dnsmasq-dhcp.conf.\n",
          x->tftp);
  loader_notes(b, x);
  bprintf(b,
          "\n"
          "# Addresses to lease: adjust to the network.  The agent does not "
          "renew its\n"
          "# lease, so leases must outlast the clients' uptime: infinite.\n"
          "dhcp-range=%s,%s,infinite\n"
          "# dnsmasq gives itself as gateway unless told otherwise:\n"
          "#dhcp-option=option:router,GATEWAY\n"
          "#dhcp-option=option:dns-server,DNS\n",
          x->range_lo, x->range_hi);
  dnsmasq_dns(b, x);
  bprintf(b,
          "\n"
          "enable-tftp\n"
          "tftp-root=%s\n"
          "\n"
          "# iPXE says so with option 175; UEFI firmware with client "
          "architecture 7 or 9.\n"
          "dhcp-match=set:ipxe,175\n"
          "dhcp-match=set:efi64,option:client-arch,7\n"
          "dhcp-match=set:efi64,option:client-arch,9\n"
          "dhcp-boot=tag:ipxe,%s\n"
          "dhcp-boot=tag:!ipxe,tag:efi64,%s,,%s\n"
          "dhcp-boot=tag:!ipxe,tag:!efi64,%s,,%s\n"
          "# To chainload iPXE on all clients instead (they then all run %s),\n"
          "# use these two lines in place of the two above:\n"
          "#dhcp-boot=tag:!ipxe,tag:efi64,%s,,%s\n"
          "#dhcp-boot=tag:!ipxe,tag:!efi64,%s,,%s\n",
          x->tftp_root, f.script, f.grub, x->tftp, f.pxelinux0, x->tftp, IPXE_SCRIPT,
          f.ipxe_efi, x->tftp, f.undi, x->tftp);
  boot_files_free(&f);
}

static void
write_dnsmasq_proxy(struct buf *b, const struct pxe *x)
{
  /* the firmware's menu names one entry per architecture */
  const char *l = x->nexports > 1 ? "menu" : x->exports[0];
  struct boot_files f;

  boot_files_get(x, &f);

  header(b, x,
         "dnsmasq-proxy.conf: dnsmasq as proxy-DHCP and TFTP server "
         "beside an existing DHCP server.");
  bprintf(b,
          "#\n"
          "# For a network whose router (or other DHCP server) hands out the "
          "addresses\n"
          "# and cannot be changed: the router answers as before, this "
          "dnsmasq only\n"
          "# tells PXE clients what to boot.  Run it on %s, on the clients' "
          "network\n"
          "# (proxy-DHCP does not cross routers): copy this file to "
          "/etc/dnsmasq.d/,\n"
          "# or dnsmasq --conf-file=dnsmasq-proxy.conf; check it with\n"
          "# dnsmasq --test --conf-file=dnsmasq-proxy.conf.\n"
          "# The agent does not renew its lease: ask the router for leases "
          "that outlast\n"
          "# the clients' uptime, or fixed addresses.\n",
          x->tftp);
  loader_notes(b, x);
  bprintf(b, "\n");
  dnsmasq_dns(b, x);
  bprintf(b,
          "# Proxy-DHCP on the network of this address; no address is "
          "leased.\n"
          "dhcp-range=%s,proxy\n"
          "\n"
          "enable-tftp\n"
          "tftp-root=%s\n"
          "\n"
          "# iPXE (option 175) matches no boot menu entry below, so it boots "
          "the file\n"
          "# named here straight away.\n"
          "dhcp-match=set:ipxe,175\n"
          "dhcp-boot=tag:ipxe,%s\n"
          "# PXE firmware: one entry per architecture, booted without a "
          "prompt.  For\n"
          "# BIOS (x86PC) the firmware adds \".0\" to the name.\n"
          "pxe-service=tag:!ipxe,x86PC,\"nbdroot %s (BIOS, PXELINUX)\",%s\n"
          "pxe-service=tag:!ipxe,BC_EFI,\"nbdroot %s (UEFI, GRUB)\",%s\n"
          "pxe-service=tag:!ipxe,x86-64_EFI,\"nbdroot %s (UEFI, GRUB)\",%s\n"
          "# To chainload iPXE on all clients instead (they then all run %s),\n"
          "# use these three lines in place of the three above:\n"
          "#pxe-service=tag:!ipxe,x86PC,\"nbdroot %s (iPXE)\",%s\n"
          "#pxe-service=tag:!ipxe,BC_EFI,\"nbdroot %s (iPXE)\",%s\n"
          "#pxe-service=tag:!ipxe,x86-64_EFI,\"nbdroot %s (iPXE)\",%s\n",
          x->tftp, x->tftp_root, f.script, l, f.pxelinux, l, f.grub, l, f.grub,
          IPXE_SCRIPT, l, f.undi, l, f.ipxe_efi, l, f.ipxe_efi);
  boot_files_free(&f);
}

static void
write_dhcpd(struct buf *b, const struct pxe *x)
{
  struct boot_files f;

  boot_files_get(x, &f);

  header(b, x,
         "dhcpd.conf: boot settings for the ISC DHCP server "
         "(isc-dhcp-server).");
  bprintf(b,
          "#\n"
          "# For a network whose addresses ISC dhcpd hands out: include it in "
          "the\n"
          "# clients' subnet in /etc/dhcp/dhcpd.conf,\n"
          "#   subnet ... netmask ... { ...  include \"%s/dhcpd.conf\"; }\n"
          "# (on its own it is a valid configuration too: dhcpd -t -cf "
          "dhcpd.conf).\n"
          "# The agent does not renew its lease: give the clients leases "
          "that outlast\n"
          "# their uptime (default-lease-time, max-lease-time) or fixed "
          "addresses.\n",
          x->dir);
  loader_notes(b, x);
  bprintf(b,
          "\n"
          "next-server %s;\n"
          "# iPXE says so in its user class; UEFI firmware with client "
          "architecture\n"
          "# (option 93) 7 or 9.\n"
          "if exists user-class and option user-class = \"iPXE\" {\n"
          "  filename \"%s\";\n"
          "} elsif option pxe-system-type = 00:07 or "
          "option pxe-system-type = 00:09 {\n"
          "  filename \"%s\";\n"
          "} else {\n"
          "  filename \"%s\";\n"
          "}\n",
          x->tftp, f.script, f.grub, f.pxelinux0);
  boot_files_free(&f);
}

/* ---- writing ---- */

struct out {
  const char *rel; /* path under DIR */
  struct buf text; /* content, or */
  int src;         /* a file to copy (fd), -1 for text */
  off_t src_size;
  bool skip; /* the source already is this file */
  struct outfile of;
};

static int
copy_fd(int in, int out, off_t size)
{
  char *buf = xmalloc(COPY_CHUNK);
  int r = copy_range(in, out, 0, (uint64_t)size, false, buf);

  free(buf);
  return r;
}

struct made_dirs {
  char *v[64];
  size_t n;
};

/* mkdir -p, remembering what it created (to remove it on failure).  Made
 * directories are 0755 whatever the umask: TFTP and HTTP servers run as
 * other users and must reach the files. */
static int
make_dirs(const char *path, struct made_dirs *m)
{
  char *p = xstrdup(path);
  int r = 0;

  for (char *s = p + 1;; s++) {
    char c = *s;
    if (c != '/' && c != '\0')
      continue;
    *s = '\0';
    if (mkdir(p, 0755) == 0) {
      chmod(p, 0755);
      if (m->n < sizeof m->v / sizeof *m->v) {
        m->v[m->n++] = xstrdup(p);
        tmpdir_register(p);
      }
    } else {
      struct stat st;
      if (errno != EEXIST || stat(p, &st) < 0 || !S_ISDIR(st.st_mode)) {
        r = errno == EEXIST ? -ENOTDIR : -errno;
        log_err("cannot create the directory %s: %s", p, strerror(-r));
        break;
      }
    }
    *s = c;
    if (!c)
      break;
  }
  free(p);
  return r;
}

static void
remove_made_dirs(struct made_dirs *m, bool keep)
{
  while (m->n > 0) {
    char *d = m->v[--m->n];
    if (!keep)
      rmdir(d);
    tmpfile_forget(d);
    free(d);
  }
}

static void
pxe_usage(FILE *f)
{
  fputs("usage: imgtool pxe --server ADDR --export NAME... --kernel FILE "
        "--initrd FILE -o DIR\n"
        "         [--port PORT] [--tftp-server ADDR] [--tftp-prefix PATH]\n"
        "         [--http-base URL] [--console DEV]... [--append PARAMS]...\n"
        "         [--ro] [--dhcp-range FIRST,LAST] [--dns]\n"
        "Writes into DIR what network-boots nbdroot clients from the NBD "
        "server\n"
        "ADDR:PORT, export NAME, with the agent's command line\n"
        "'ip=dhcp root=nbd:ADDR:PORT/NAME rw':\n"
        "  pxelinux.cfg/default  PXELINUX (BIOS)    grub/grub.cfg       GRUB "
        "(UEFI)\n"
        "  nbdroot.ipxe          iPXE script        dhcpd.conf          ISC "
        "dhcpd snippet\n"
        "  dnsmasq-dhcp.conf     dnsmasq: DHCP and TFTP server\n"
        "  dnsmasq-proxy.conf    dnsmasq: proxy-DHCP and TFTP beside a "
        "router\n"
        "and copies the kernel and the initrd there under their own names.\n"
        "  --server ADDR       nbdsrv's IPv4 address, as the clients reach "
        "it; several:\n"
        "                      the clients try them in order and fail over\n"
        "  --port PORT         nbdsrv's port (default 10809)\n"
        "  --export NAME       the export (nbdsrv -e NAME=IMAGE); several "
        "give a boot\n"
        "                      menu, the first the default after 5 s\n"
        "  --kernel FILE       the clients' kernel (vmlinuz)\n"
        "  --initrd FILE       the initramfs from imgtool initrd\n"
        "  -o, --output DIR    where to write (created if missing)\n"
        "  --tftp-server ADDR  TFTP server (next-server; default --server)\n"
        "  --tftp-prefix PATH  DIR's path inside the TFTP root (default: DIR "
        "is the root)\n"
        "  --http-base URL     iPXE fetches kernel and initrd from URL/ (DIR "
        "over HTTP)\n"
        "  --console DEV       console=DEV for the kernel, e.g. "
        "ttyS0,115200 (repeatable);\n"
        "                      the first serial one is the loaders' "
        "terminal too\n"
        "  --append PARAMS     more kernel parameters, e.g. 'quiet' "
        "(repeatable, joined\n"
        "                      in order); an rw or ro there replaces the "
        "default rw\n"
        "  --ro                a read-only root: ro instead of rw\n"
        "  --dhcp-range F,L    addresses dnsmasq-dhcp.conf leases (default "
        ".100 to .200\n"
        "                      of the TFTP server's /24)\n"
        "  --dns               the dnsmasq files serve DNS too (default: "
        "port=0, none)\n",
        f);
}

static void
pxe_free(struct pxe *x)
{
  free(x->exports); /* the names themselves are argv's */
  free(x->kname);
  free(x->iname);
  free(x->dir);
  free(x->prefix);
  free(x->tftp_root);
  free(x->http);
  for (size_t i = 0; i < x->nconsoles; i++)
    free(x->consoles[i]);
  free(x->consoles);
  free(x->append);
  free(x->params);
}

/* The options that are checked once all are known. */
struct pxe_args {
  const char *server, *tftp, *prefix, *out, *range;
  const char *more[PXE_SERVERS_MAX - 1]; /* --server after the first */
  size_t nmore;
};

static int
add_export(struct pxe *x, const char *name)
{
  if (!plain_name(name, 200)) {
    log_err("--export '%s' is not an export name nbdsrv serves (letters, "
            "digits, . _ + -, not starting with '.')",
            name);
    return -EINVAL;
  }
  for (size_t i = 0; i < x->nexports; i++) {
    if (strcmp(x->exports[i], name) == 0) {
      log_err("--export %s is given twice; give each export once (the "
              "first is the menu's default)",
              name);
      return -EINVAL;
    }
  }
  XVEC_RESERVE(x->exports, x->exports_cap, x->nexports + 1);
  x->exports[x->nexports++] = name;
  return 0;
}

/* Every --append counts, joined with one blank in the order given. */
static int
add_append(struct pxe *x, const char *s)
{
  char *joined;

  if (check_params("--append", s) < 0)
    return -EINVAL;
  joined = x->append ? xasprintf("%s %s", x->append, s) : xstrdup(s);
  free(x->append);
  x->append = joined;
  return 0;
}

static int
parse_port(const char *s, unsigned *port)
{
  char *end;
  unsigned long v = strtoul(s, &end, 10);

  if (!*s || *end || v < 1 || v > 65535) {
    log_err("--port '%s' is not a port number (1..65535)", s);
    return -EINVAL;
  }
  *port = (unsigned)v;
  return 0;
}

/* One option from getopt_long into x or a.  Returns 0 or -EINVAL. */
static int
pxe_option(int c, struct pxe *x, struct pxe_args *a)
{
  switch (c) {
    case 's':
      if (!a->server) {
        a->server = optarg;
      } else if (a->nmore < PXE_SERVERS_MAX - 1) {
        a->more[a->nmore++] = optarg;
      } else {
        log_err("--server: at most %d servers", PXE_SERVERS_MAX);
        return -EINVAL;
      }
      return 0;
    case 'T': a->tftp = optarg; return 0;
    case 'o': a->out = optarg; return 0;
    case 'P': a->prefix = optarg; return 0;
    case 'R': a->range = optarg; return 0;
    case 'k': x->kernel = optarg; return 0;
    case 'i': x->initrd = optarg; return 0;
    case 'r': x->ro = true; return 0;
    case 'D': x->dns = true; return 0;
    case 'e': return add_export(x, optarg);
    case 'a': return add_append(x, optarg);
    case 'c': return add_console(x, optarg);
    case 'p': return parse_port(optarg, &x->port);
    case 'H':
      free(x->http);
      x->http = NULL;
      return parse_http(optarg, &x->http);
  }
  return -EINVAL;
}

/* The command line into x and a.  Returns 0 or 2 (usage). */
static int
pxe_getopt(int argc, char **argv, struct pxe *x, struct pxe_args *a, bool *help)
{
  static const struct option opts[] = {
    { "server", required_argument, NULL, 's' },
    { "port", required_argument, NULL, 'p' },
    { "export", required_argument, NULL, 'e' },
    { "kernel", required_argument, NULL, 'k' },
    { "initrd", required_argument, NULL, 'i' },
    { "output", required_argument, NULL, 'o' },
    { "tftp-server", required_argument, NULL, 'T' },
    { "tftp-prefix", required_argument, NULL, 'P' },
    { "http-base", required_argument, NULL, 'H' },
    { "console", required_argument, NULL, 'c' },
    { "append", required_argument, NULL, 'a' },
    { "ro", no_argument, NULL, 'r' },
    { "dhcp-range", required_argument, NULL, 'R' },
    { "dns", no_argument, NULL, 'D' },
    { "help", no_argument, NULL, 'h' },
    { NULL, 0, NULL, 0 },
  };
  int c;

  opterr = 0; /* our own one-line messages */
  while ((c = getopt_long(argc, argv, ":o:h", opts, NULL)) != -1) {
    if (c == 'h') {
      *help = true;
      return 0;
    }
    if (c == ':') {
      log_err("pxe: option %s needs a value (see imgtool pxe --help)", argv[optind - 1]);
      return 2;
    }
    if (c == '?') {
      log_err("pxe: unknown option '%s' (see imgtool pxe --help)", argv[optind - 1]);
      return 2;
    }
    if (pxe_option(c, x, a) < 0)
      return 2;
  }
  if (optind != argc) {
    log_err("pxe: unexpected argument '%s' (see imgtool pxe --help)", argv[optind]);
    return 2;
  }
  return 0;
}

/* The TFTP server's /24, .100 to .200: a guess the file says to adjust,
 * as the seeds' setups do. */
static void
default_range(struct pxe *x)
{
  struct in_addr a;
  uint32_t net;

  inet_pton(AF_INET, x->tftp, &a);
  net = ntohl(a.s_addr) & 0xffffff00u;
  a.s_addr = htonl(net | 100);
  inet_ntop(AF_INET, &a, x->range_lo, sizeof x->range_lo);
  a.s_addr = htonl(net | 200);
  inet_ntop(AF_INET, &a, x->range_hi, sizeof x->range_hi);
}

/* Addresses, names and the DHCP range.  Returns 0 or 2 (usage). */
/* x->roots from every --server (the first already in x->server). */
static int
make_roots(struct pxe *x, const struct pxe_args *a)
{
  size_t len = (size_t)snprintf(x->roots, sizeof x->roots, "%s:%u", x->server, x->port);

  for (size_t i = 0; i < a->nmore; i++) {
    char addr[INET_ADDRSTRLEN];

    if (parse_ipv4("--server", a->more[i], addr) < 0)
      return -EINVAL;
    len +=
        (size_t)snprintf(x->roots + len, sizeof x->roots - len, ",%s:%u", addr, x->port);
  }
  return 0;
}

static int
pxe_check(struct pxe *x, const struct pxe_args *a)
{
  if (!a->server || !x->nexports || !x->kernel || !x->initrd || !a->out) {
    log_err("pxe needs %s (see imgtool pxe --help)",
            !a->server     ? "--server ADDR, the NBD server's IPv4 address"
            : !x->nexports ? "--export NAME, the export the clients boot"
            : !x->kernel   ? "--kernel FILE, the clients' kernel"
            : !x->initrd   ? "--initrd FILE, the initramfs from imgtool initrd"
                           : "-o DIR, where to write");
    return 2;
  }
  if (parse_ipv4("--server", a->server, x->server) < 0 ||
      parse_ipv4("--tftp-server", a->tftp ? a->tftp : a->server, x->tftp) < 0 ||
      make_roots(x, a) < 0)
    return 2;
  if (parse_prefix(a->prefix ? a->prefix : "", &x->prefix) < 0)
    return 2;
  if (a->range) {
    if (parse_range(a->range, x) < 0)
      return 2;
  } else {
    default_range(x);
  }
  if (file_name("--kernel", x->kernel, &x->kname) < 0 ||
      file_name("--initrd", x->initrd, &x->iname) < 0)
    return 2;
  if (strcmp(x->kname, x->iname) == 0) {
    log_err("--kernel and --initrd have the same name '%s'; copy or link one "
            "under another name",
            x->kname);
    return 2;
  }
  return 0;
}

/* DIR, and dnsmasq's tftp-root: DIR without the prefix, which must end
 * DIR.  Returns 0, 2 (usage) or 1 (failure). */
static int
pxe_dirs(struct pxe *x, const char *out)
{
  size_t dl, pl = strlen(x->prefix);

  x->dir = absolute_dir(out);
  if (!x->dir) {
    log_err("-o %s: cannot tell the current directory: %s", out, strerror(errno));
    return 1;
  }
  dl = strlen(x->dir);
  x->tftp_root = xstrdup(x->dir);
  /* prefix "a/b/" matches a DIR ending in "/a/b" */
  if (pl && (dl < pl || x->dir[dl - pl] != '/' ||
             strncmp(x->dir + dl - pl + 1, x->prefix, pl - 1) != 0)) {
    log_err("--tftp-prefix %.*s: the output directory %s does not end "
            "with it; give -o TFTP_ROOT/%.*s",
            (int)pl - 1, x->prefix, x->dir, (int)pl - 1, x->prefix);
    return 2;
  }
  if (pl)
    x->tftp_root[dl - pl == 0 ? 1 : dl - pl] = '\0';
  for (const char *p = x->tftp_root; *p; p++) {
    if ((unsigned char)*p <= 0x20 || *p == ',' || *p == '"' || *p == 0x7f) {
      log_err("the TFTP root %s holds a blank, comma or quote, which "
              "dnsmasq's tftp-root= cannot: choose a plain path for -o",
              x->tftp_root);
      return 2;
    }
  }
  return 0;
}

/* Whether the kernel parameters s hold the word w before any "--" (after
 * which the words are init's). */
static bool
has_param(const char *s, const char *w)
{
  char *copy = xstrdup(s), *tok, *save;
  bool found = false;

  for (tok = strtok_r(copy, " \t", &save); tok && !found;
       tok = strtok_r(NULL, " \t", &save)) {
    if (strcmp(tok, "--") == 0)
      break;
    found = strcmp(tok, w) == 0;
  }
  free(copy);
  return found;
}

/* What follows root= on every command line.  The root is mounted rw by
 * default: the overlay makes writes safe, and a root whose fstab does not
 * remount it (debootstrap's placeholder) would otherwise stay read-only.
 * An rw or ro in --append is the user's choice and replaces ours.
 * Returns 0 or 2 (usage). */
static int
pxe_params(struct pxe *x)
{
  bool user_rw = x->append && has_param(x->append, "rw");
  bool user_ro = x->append && has_param(x->append, "ro");
  struct buf b = { 0 };

  if (x->ro && user_rw) {
    log_err("--ro and --append 'rw' ask for opposite roots; give one of "
            "them");
    return 2;
  }
  bprintf(&b, "%s", ""); /* "" rather than NULL when there is nothing */
  if (!user_rw && !user_ro)
    bprintf(&b, " %s", x->ro ? "ro" : "rw");
  for (size_t i = 0; i < x->nconsoles; i++)
    bprintf(&b, " console=%s", x->consoles[i]);
  if (x->append) {
    /* blanks folded: one space between parameters in every file */
    char *copy = xstrdup(x->append), *tok, *save;
    for (tok = strtok_r(copy, " \t", &save); tok; tok = strtok_r(NULL, " \t", &save))
      bprintf(&b, " %s", tok);
    free(copy);
  }
  x->params = b.p;
  return 0;
}

/* Checks the arguments into x.  Returns 0, 2 (usage) or 1 (failure). */
static int
pxe_parse(int argc, char **argv, struct pxe *x, bool *help)
{
  struct pxe_args a = { 0 };
  int rc;

  x->port = DEFAULT_PORT;
  rc = pxe_getopt(argc, argv, x, &a, help);
  if (rc || *help)
    return rc;
  rc = pxe_check(x, &a);
  if (!rc)
    rc = pxe_dirs(x, a.out);
  if (!rc)
    rc = pxe_params(x);
  return rc;
}

/* The files, in the order they are written and named. */
enum {
  F_PXELINUX,
  F_GRUB,
  F_IPXE,
  F_DNSMASQ_DHCP,
  F_DNSMASQ_PROXY,
  F_DHCPD,
  F_KERNEL,
  F_INITRD,
  NFILES
};

static int
open_sources(const struct pxe *x, struct out *files)
{
  int r;

  files[F_KERNEL].rel = x->kname;
  files[F_INITRD].rel = x->iname;
  r = open_source("--kernel", x->kernel, true, &files[F_KERNEL].src_size);
  if (r < 0)
    return r;
  files[F_KERNEL].src = r;
  r = open_source("--initrd", x->initrd, false, &files[F_INITRD].src_size);
  if (r < 0)
    return r;
  files[F_INITRD].src = r;
  return 0;
}

static void
render(const struct pxe *x, struct out *files)
{
  write_pxelinux(&files[F_PXELINUX].text, x);
  write_grub(&files[F_GRUB].text, x);
  write_ipxe(&files[F_IPXE].text, x);
  write_dnsmasq_dhcp(&files[F_DNSMASQ_DHCP].text, x);
  write_dnsmasq_proxy(&files[F_DNSMASQ_PROXY].text, x);
  write_dhcpd(&files[F_DHCPD].text, x);
}

/* The subdirectories the loaders read, below DIR. */
static const char *const subdirs[] = { "pxelinux.cfg", "grub" };

static int
make_out_dirs(const struct pxe *x, struct made_dirs *made)
{
  int r = make_dirs(x->dir, made);

  for (size_t i = 0; !r && i < ARRAY_SIZE(subdirs); i++) {
    char *d = xasprintf("%s/%s", x->dir, subdirs[i]);
    r = make_dirs(d, made);
    free(d);
  }
  return r;
}

static void
fsync_out_dirs(const struct pxe *x)
{
  for (size_t i = 0; i < ARRAY_SIZE(subdirs); i++) {
    char *d = xasprintf("%s/%s", x->dir, subdirs[i]);
    fsync_dir(d);
    free(d);
  }
  fsync_dir(x->dir);
}

/* One file complete under a temporary name (or marked to skip, when its
 * source already is this file). */
static int
write_out(const struct pxe *x, struct out *f)
{
  char *path = xasprintf("%s/%s", x->dir, f->rel);
  struct stat sst, dst;
  int r;

  if (f->src >= 0 && fstat(f->src, &sst) == 0 && stat(path, &dst) == 0 &&
      sst.st_dev == dst.st_dev && sst.st_ino == dst.st_ino) {
    f->skip = true; /* given from DIR itself */
    free(path);
    return 0;
  }
  r = outfile_create(path, 0644, &f->of);
  if (r < 0) {
    log_err("cannot create a file in %s: %s", x->dir, strerror(-r));
    free(path);
    return r;
  }
  if (f->src >= 0)
    r = copy_fd(f->src, f->of.fd, f->src_size);
  else
    r = full_write(f->of.fd, f->text.p, f->text.len);
  if (!r && fsync(f->of.fd) < 0)
    r = -errno;
  if (r < 0)
    log_err("cannot write %s: %s", path, strerror(-r));
  free(path);
  return r;
}

static int
install_out(const struct pxe *x, struct out *f)
{
  char *path;
  int r;

  if (f->skip)
    return 0;
  path = xasprintf("%s/%s", x->dir, f->rel);
  r = outfile_install(&f->of, path);
  if (r < 0)
    log_err("cannot write %s: %s", path, strerror(-r));
  free(path);
  return r;
}

/* The summary, and the boot loaders that are the admin's to add and
 * still missing. */
static void
report(const struct pxe *x)
{
  static const char *const loaders[] = { "pxelinux.0", "ldlinux.c32", "grubx64.efi" };
  struct buf b = { 0 };

  if (x->nexports > 1)
    bprintf(&b, " (a boot menu; more: ");
  for (size_t i = 1; i < x->nexports; i++)
    bprintf(&b, "%s%s", x->exports[i], i + 1 < x->nexports ? ", " : ")");
  fprintf(stderr,
          "imgtool: pxe %s: root=nbd:%s/%s%s, kernel %s, initrd "
          "%s\n",
          x->dir, x->roots, x->exports[0], b.p ? b.p : "", x->kname, x->iname);
  b.len = 0;
  for (size_t i = 0; i < ARRAY_SIZE(loaders); i++) {
    char *p = xasprintf("%s/%s", x->dir, loaders[i]);
    if (access(p, F_OK) < 0)
      bprintf(&b, "%s%s", b.len ? ", " : "", loaders[i]);
    free(p);
  }
  if (b.len)
    fprintf(stderr,
            "imgtool: note: %s has no %s yet: BIOS and UEFI "
            "clients need them (iPXE clients do not); see imgtool(8), "
            "PXE\n",
            x->dir, b.p);
  free(b.p);
}

int
cmd_pxe(int argc, char **argv)
{
  struct pxe x;
  struct out files[NFILES] = {
    [F_PXELINUX] = { .rel = "pxelinux.cfg/default" },
    [F_GRUB] = { .rel = "grub/grub.cfg" },
    [F_IPXE] = { .rel = IPXE_SCRIPT },
    [F_DNSMASQ_DHCP] = { .rel = "dnsmasq-dhcp.conf" },
    [F_DNSMASQ_PROXY] = { .rel = "dnsmasq-proxy.conf" },
    [F_DHCPD] = { .rel = "dhcpd.conf" },
  };
  struct made_dirs made = { .n = 0 };
  bool help = false, done = false;
  int rc;

  memset(&x, 0, sizeof x);
  for (size_t i = 0; i < NFILES; i++) {
    files[i].src = -1;
    files[i].of.fd = -1;
  }
  rc = pxe_parse(argc, argv, &x, &help);
  if (rc || help) {
    if (help)
      pxe_usage(stdout);
    pxe_free(&x);
    return rc;
  }
  rc = 1;
  if (open_sources(&x, files) < 0)
    goto out;
  render(&x, files);
  tmpfile_install_signals();
  if (make_out_dirs(&x, &made) < 0)
    goto out;
  /* Everything complete before anything is named. */
  for (size_t i = 0; i < NFILES; i++)
    if (write_out(&x, &files[i]) < 0)
      goto out;
  for (size_t i = 0; i < NFILES; i++)
    if (install_out(&x, &files[i]) < 0)
      goto out;
  done = true;
  fsync_out_dirs(&x);
  report(&x);
  rc = 0;
out:
  for (size_t i = 0; i < NFILES; i++) {
    outfile_close(&files[i].of);
    if (files[i].src >= 0)
      close(files[i].src);
    free(files[i].text.p);
  }
  remove_made_dirs(&made, done);
  pxe_free(&x);
  return rc;
}
