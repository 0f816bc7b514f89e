/* SPDX-License-Identifier: GPL-2.0-or-later */
/* imgtool initrd: packs the client's initramfs.
 *
 *   /init                      the nbdroot agent (static binary)
 *   /etc/nbdroot/modules       module files in load order, one per line,
 *                              relative to / (the agent loads exactly these)
 *   /lib/modules/V/...         the modules, uncompressed, at their
 *                              modules.dep path minus any .xz/.zst/.gz
 *   /dev/console, /dev/null    so /init has a console before devtmpfs
 *   /proc /sys /run /tmp /root /newroot   mount points
 *
 * Compressed modules are decompressed when packing, so the agent only ever
 * loads plain .ko files with finit_module(): .ko.gz through zlib, .ko.xz
 * and .ko.zst by running xz -dc / zstd -dc (configure provides neither
 * liblzma nor libzstd, and the tools come with any kernel that compresses
 * its modules).
 *
 * Reproducible: entries sorted by path, every mtime SOURCE_DATE_EPOCH (or
 * 0), owners root, and a fixed gzip header (cpio.c).
 */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <libgen.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

#include "imgtool.h"

#ifndef AGENT_PATH
#define AGENT_PATH "/usr/local/libexec/nbdroot/nbdroot-agent"
#endif

#define MODULES_ROOT "/lib/modules"

/* Drivers packed unless --modules says otherwise: the NBD client, the
 * root filesystem, overlayfs and squashfs for layered roots, virtio (QEMU)
 * and the common wired NICs.  Those a kernel lacks are skipped; nbd and
 * ext4 must be there (module or built in). */
static const char *const default_required[] = { "nbd", "ext4" };
static const char *const default_optional[] = {
  "overlay", "squashfs", "af_packet", "virtio_pci", "virtio_net", "e1000",
  "e1000e",  "igb",      "igc",       "ixgbe",      "i40e",       "r8169",
  "tg3",     "bnx2x",    "bnxt_en",   "atlantic",   "be2net",     "vmxnet3",
  "8139cp",  "8139too",  "pcnet32",   "ne2k_pci",
};

struct entry {
  char *name; /* without leading '/' */
  uint32_t mode;
  uint32_t rmajor, rminor;
  char *data;
  size_t len;
};

struct entries {
  struct entry *v;
  size_t n, cap;
};

static struct entry *
add_entry(struct entries *e, const char *name, uint32_t mode)
{
  struct entry *x;

  for (size_t i = 0; i < e->n; i++)
    if (strcmp(e->v[i].name, name) == 0)
      return S_ISDIR(mode) && S_ISDIR(e->v[i].mode) ? &e->v[i] : NULL;
  XVEC_RESERVE(e->v, e->cap, e->n + 1);
  x = &e->v[e->n++];
  memset(x, 0, sizeof *x);
  x->name = xstrdup(name);
  x->mode = mode;
  return x;
}

/* Adds every parent directory of path. */
static void
add_parents(struct entries *e, const char *path)
{
  char *p = xstrdup(path);

  for (char *s = strchr(p, '/'); s; s = strchr(s + 1, '/')) {
    *s = '\0';
    add_entry(e, p, S_IFDIR | 0755);
    *s = '/';
  }
  free(p);
}

static int
cmp_entry(const void *a, const void *b)
{
  return strcmp(((const struct entry *)a)->name, ((const struct entry *)b)->name);
}

static int
read_file(const char *path, char **data, size_t *len)
{
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  struct stat st;
  ssize_t n;

  if (fd < 0)
    return -errno;
  if (fstat(fd, &st) < 0) {
    int r = -errno;
    close(fd);
    return r;
  }
  *data = xmalloc((size_t)st.st_size + 1);
  n = full_pread(fd, *data, (size_t)st.st_size, 0);
  close(fd);
  if (n < 0) {
    free(*data);
    return (int)n;
  }
  *len = (size_t)n;
  return 0;
}

/* Runs "tool -dc path" and collects its output. */
static int
decompress_with(const char *tool, const char *path, char **data, size_t *len)
{
  int p[2], status;
  size_t cap = 1 << 20;
  pid_t pid;

  if (pipe2(p, O_CLOEXEC) < 0)
    return -errno;
  pid = fork();
  if (pid < 0) {
    int r = -errno;
    close(p[0]);
    close(p[1]);
    return r;
  }
  if (pid == 0) {
    /* The tool's own complaint would make a second line: ours says it. */
    int null = open("/dev/null", O_WRONLY);
    dup2(p[1], 1);
    if (null >= 0)
      dup2(null, 2);
    execlp(tool, tool, "-dc", path, (char *)NULL);
    _exit(127);
  }
  close(p[1]);
  *data = xmalloc(cap);
  *len = 0;
  for (;;) {
    ssize_t n;
    XVEC_RESERVE(*data, cap, *len + 1);
    n = read(p[0], *data + *len, cap - *len);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      break;
    *len += (size_t)n;
  }
  close(p[0]);
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
    ;
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    free(*data);
    *data = NULL;
    if (WIFEXITED(status) && WEXITSTATUS(status) == 127)
      log_err("cannot decompress %s: %s not found (install it)", path, tool);
    else
      log_err("cannot decompress %s with %s: corrupt or truncated (check "
              "it with %s -t)",
              path, tool, tool);
    return -EIO;
  }
  return 0;
}

static int
gunzip_file(const char *path, char **data, size_t *len)
{
  gzFile g = gzopen(path, "rb");
  size_t cap = 1 << 20;

  if (!g)
    return -EIO;
  *data = xmalloc(cap);
  *len = 0;
  for (;;) {
    int n;
    XVEC_RESERVE(*data, cap, *len + 1);
    n = gzread(g, *data + *len, (unsigned)(cap - *len));
    if (n < 0) {
      gzclose(g);
      free(*data);
      log_err("cannot decompress %s: corrupt gzip data", path);
      return -EIO;
    }
    if (n == 0)
      break;
    *len += (size_t)n;
  }
  gzclose(g);
  return 0;
}

/* Loads a module file, decompressed; *plain gets its .ko name. */
static int
load_module(const char *moddir, const char *rel, char **data, size_t *len, char **plain)
{
  char *path = xasprintf("%s/%s", moddir, rel);
  int r;

  *plain = xstrdup(rel);
  if (ends_with(rel, ".xz")) {
    (*plain)[strlen(*plain) - 3] = '\0';
    r = decompress_with("xz", path, data, len);
  } else if (ends_with(rel, ".zst")) {
    (*plain)[strlen(*plain) - 4] = '\0';
    r = decompress_with("zstd", path, data, len);
  } else if (ends_with(rel, ".gz")) {
    (*plain)[strlen(*plain) - 3] = '\0';
    r = gunzip_file(path, data, len);
  } else {
    r = read_file(path, data, len);
    if (r < 0)
      log_err("cannot read module %s: %s", path, strerror(-r));
  }
  free(path);
  if (r == 0 && (*len < 4 || memcmp(*data, "\177ELF", 4) != 0)) {
    log_err("module %s/%s is not an ELF object after decompression", moddir, rel);
    free(*data);
    r = -EINVAL;
  }
  if (r < 0) {
    free(*plain);
    *plain = NULL;
  }
  return r;
}

/* The agent must be a static executable: /init runs before any library
 * is there.  Returns 0, or -errno after an error message. */
static int
check_agent(const char *path, const char *data, size_t len)
{
  const unsigned char *e = (const unsigned char *)data;
  uint64_t phoff;
  uint16_t phentsize, phnum;

  if (len < 64 || memcmp(e, "\177ELF", 4) != 0 || e[4] != 2 || e[5] != 1) {
    log_err("agent %s is not a 64-bit little-endian ELF executable: give "
            "the built nbdroot-agent with --agent",
            path);
    return -ENOEXEC;
  }
  memcpy(&phoff, e + 32, 8);
  memcpy(&phentsize, e + 54, 2);
  memcpy(&phnum, e + 56, 2);
  if (phentsize < 56 || phoff > len || (uint64_t)phnum * phentsize > len - phoff)
    return 0; /* unusual layout: let the kernel judge */
  for (unsigned i = 0; i < phnum; i++) {
    uint32_t type;
    memcpy(&type, e + phoff + (uint64_t)i * phentsize, 4);
    if (type == 3 /* PT_INTERP */) {
      log_err("agent %s is dynamically linked: /init must be a static "
              "binary (build it with musl-gcc -static)",
              path);
      return -ENOEXEC;
    }
  }
  return 0;
}

static char *
find_agent(void)
{
  char self[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
  const char *env = getenv("NBDROOT_AGENT");

  if (env && *env)
    return xstrdup(env);
  /* Running from a build tree: its own agent, built next to imgtool/. */
  if (n > 0) {
    char *dir, *cand;
    self[n] = '\0';
    dir = dirname(self);
    cand = xasprintf("%s/../initrd/nbdroot-agent", dir);
    if (access(cand, X_OK) == 0)
      return cand;
    free(cand);
  }
  return xstrdup(AGENT_PATH);
}

static void
initrd_usage(FILE *f)
{
  fputs("usage: imgtool initrd -o FILE.gz [--kernel-version V | "
        "--modules-dir DIR]\n"
        "         [--modules M,...] [--agent PATH]\n"
        "       imgtool initrd --list FILE.gz\n"
        "  --modules: comma-separated module or alias names; 'default' "
        "stands for\n"
        "  the default set (nbd, ext4, overlay, squashfs, virtio and common "
        "NIC\n"
        "  drivers), which is what is packed without --modules.\n",
        f);
}

/* Appends the comma-separated names of s to l. */
static void
split_list(const char *s, struct strv *l)
{
  char *copy = xstrdup(s), *save, *tok;

  for (tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save))
    strv_push(l, xstrdup(tok));
  free(copy);
}

/* The command line of initrd. */
struct initrd_opts {
  const char *out, *kver, *moddir, *mods, *list;
  char *agent; /* malloc'ed: --agent or the one found */
};

/* What one run of initrd holds, freed in one place (initrd_job_free). */
struct initrd_job {
  char *moddir, *version;
  struct strv names, optional; /* modules asked for, and if present */
  struct module_set set;
  struct entries ents;
  uint32_t mtime;
};

/* Fills o from the command line.  Returns -1 to go on, else the exit
 * status (0 after --help, 2 after a usage error). */
static int
parse_initrd_args(int argc, char **argv, struct initrd_opts *o)
{
  static const struct option opts[] = {
    { "output", required_argument, NULL, 'o' },
    { "kernel-version", required_argument, NULL, 'k' },
    { "modules-dir", required_argument, NULL, 'm' },
    { "modules", required_argument, NULL, 'M' },
    { "agent", required_argument, NULL, 'a' },
    { "list", required_argument, NULL, 'l' },
    { "help", no_argument, NULL, 'h' },
    { NULL, 0, NULL, 0 },
  };
  int c;

  while ((c = getopt_long(argc, argv, "o:h", opts, NULL)) != -1) {
    switch (c) {
      case 'o': o->out = optarg; break;
      case 'k': o->kver = optarg; break;
      case 'm': o->moddir = optarg; break;
      case 'M': o->mods = optarg; break;
      case 'a':
        free(o->agent);
        o->agent = xstrdup(optarg);
        break;
      case 'l': o->list = optarg; break;
      case 'h': initrd_usage(stdout); return 0;
      default: initrd_usage(stderr); return 2;
    }
  }
  if (optind != argc) {
    log_err("initrd: unexpected argument '%s'", argv[optind]);
    initrd_usage(stderr);
    return 2;
  }
  if (o->list)
    return -1;
  if (!o->out) {
    log_err("initrd needs -o FILE.gz");
    initrd_usage(stderr);
    return 2;
  }
  if (o->kver && o->moddir) {
    log_err("give --kernel-version or --modules-dir, not both");
    return 2;
  }
  return -1;
}

/* Which kernel: j->moddir and j->version from --modules-dir, or from
 * --kernel-version (default: the running kernel). */
static int
find_kernel(const struct initrd_opts *o, struct initrd_job *j)
{
  const char *kver = o->kver;
  struct utsname u;
  struct stat st;

  if (o->moddir) {
    j->moddir = realpath(o->moddir, NULL);
    if (!j->moddir) {
      int r = -errno;
      log_err("--modules-dir %s: %s", o->moddir, strerror(-r));
      return r;
    }
    j->version = xstrdup(strrchr(j->moddir, '/') + 1);
  } else {
    if (!kver) {
      uname(&u);
      kver = u.release;
    }
    if (!*kver || strchr(kver, '/') || strcmp(kver, ".") == 0 ||
        strcmp(kver, "..") == 0) {
      log_err("--kernel-version '%s' is not a kernel version (e.g. %s)", kver,
              "6.1.0-18-amd64");
      return -EINVAL;
    }
    j->version = xstrdup(kver);
    j->moddir = xasprintf("%s/%s", MODULES_ROOT, kver);
  }
  if (stat(j->moddir, &st) < 0 || !S_ISDIR(st.st_mode)) {
    log_err("no modules for kernel %s: %s is missing; give --kernel-version "
            "of an installed kernel (see ls %s) or --modules-dir",
            j->version, j->moddir, MODULES_ROOT);
    return -ENOENT;
  }
  return 0;
}

/* Which modules: --modules (default "default") into j->names and
 * j->optional, then resolved with their dependencies into j->set. */
static int
choose_modules(const char *mods, struct initrd_job *j)
{
  struct strv req = { 0 };

  split_list(mods ? mods : "default", &req);
  for (size_t i = 0; i < req.n; i++) {
    if (strcmp(req.v[i], "default") == 0) {
      for (size_t k = 0; k < ARRAY_SIZE(default_required); k++)
        split_list(default_required[k], &j->names);
      for (size_t k = 0; k < ARRAY_SIZE(default_optional); k++)
        split_list(default_optional[k], &j->optional);
    } else {
      strv_push(&j->names, req.v[i]);
      req.v[i] = NULL;
    }
  }
  strv_free(&req);
  return modules_resolve(j->moddir, j->names.v, j->names.n, j->optional.v, j->optional.n,
                         &j->set);
}

/* /init: the agent, which must be a static executable. */
static int
add_agent(struct entries *ents, const char *agent)
{
  struct entry *e;
  char *data;
  size_t len;
  int r = read_file(agent, &data, &len);

  if (r < 0) {
    log_err("cannot read the initrd agent %s: %s (build it, or give "
            "--agent PATH)",
            agent, strerror(-r));
    return r;
  }
  r = check_agent(agent, data, len);
  if (r < 0) {
    free(data);
    return r;
  }
  e = add_entry(ents, "init", S_IFREG | 0755);
  e->data = data;
  e->len = len;
  return 0;
}

/* The fixed skeleton: mount points and the two device nodes. */
static void
add_skeleton(struct entries *ents)
{
  static const char *const dirs[] = { "dev",  "proc",    "sys", "run",        "tmp",
                                      "root", "newroot", "etc", "etc/nbdroot" };
  struct entry *e;

  for (size_t i = 0; i < ARRAY_SIZE(dirs); i++)
    add_entry(ents, dirs[i], S_IFDIR | (strcmp(dirs[i], "tmp") == 0 ? 01777 : 0755));
  e = add_entry(ents, "dev/console", S_IFCHR | 0600);
  e->rmajor = 5;
  e->rminor = 1;
  e = add_entry(ents, "dev/null", S_IFCHR | 0666);
  e->rmajor = 1;
  e->rminor = 3;
}

/* The modules of j->set, and etc/nbdroot/modules listing them in load
 * order. */
static int
add_modules(struct initrd_job *j)
{
  char *listing = NULL;
  size_t listing_len = 0, listing_cap = 0;
  struct entry *e;

  for (size_t i = 0; i < j->set.n; i++) {
    char *data, *plain, *name;
    size_t len;
    int r = load_module(j->moddir, j->set.paths[i], &data, &len, &plain);

    if (r < 0) {
      free(listing);
      return r;
    }
    name = xasprintf("lib/modules/%s/%s", j->version, plain);
    free(plain);
    add_parents(&j->ents, name);
    e = add_entry(&j->ents, name, S_IFREG | 0644);
    if (!e) {
      free(data);
      free(name);
      continue;
    }
    e->data = data;
    e->len = len;
    XVEC_RESERVE(listing, listing_cap, listing_len + strlen(name) + 1);
    memcpy(listing + listing_len, name, strlen(name));
    listing_len += strlen(name);
    listing[listing_len++] = '\n';
    free(name);
  }
  e = add_entry(&j->ents, "etc/nbdroot/modules", S_IFREG | 0644);
  e->data = listing ? listing : xstrdup("");
  e->len = listing_len;
  return 0;
}

/* Writes the sorted entries to out as an anonymous (or temporary) file,
 * named only when whole. */
static int
write_initrd(const char *out, struct initrd_job *j)
{
  struct outfile of = { .fd = -1 };
  struct cpio_writer *w = NULL;
  int r;

  if (j->ents.n > 1)
    qsort(j->ents.v, j->ents.n, sizeof *j->ents.v, cmp_entry);
  tmpfile_install_signals();
  r = outfile_create(out, 0644, &of);
  if (r < 0) {
    log_err("cannot create a file next to %s: %s", out, strerror(-r));
    return r;
  }
  r = cpio_open(of.fd, &w);
  for (size_t i = 0; !r && i < j->ents.n; i++) {
    struct entry *e = &j->ents.v[i];
    r = cpio_add(w, e->name, e->mode, 0, 0, j->mtime, e->rmajor, e->rminor, e->data,
                 e->len);
  }
  if (!r) {
    r = cpio_close(w);
    w = NULL;
  }
  if (!r && fsync(of.fd) < 0)
    r = -errno;
  if (!r)
    r = outfile_install(&of, out);
  if (r < 0)
    log_err("cannot write %s: %s", out, strerror(-r));
  else
    fsync_dir_of(out);
  cpio_abort(w);
  outfile_close(&of);
  return r;
}

static void
initrd_job_free(struct initrd_job *j)
{
  for (size_t i = 0; i < j->ents.n; i++) {
    free(j->ents.v[i].name);
    free(j->ents.v[i].data);
  }
  free(j->ents.v);
  strv_free(&j->names);
  strv_free(&j->optional);
  module_set_free(&j->set);
  free(j->moddir);
  free(j->version);
}

/* Packs the initrd o asks for: 0 or -errno, after its message. */
static int
run_initrd(struct initrd_opts *o, struct initrd_job *j)
{
  int64_t sde = 0;
  int r = source_date_epoch(&sde);

  if (r < 0)
    return r;
  j->mtime = r > 0 ? (uint32_t)sde : 0;
  r = find_kernel(o, j);
  if (!r)
    r = choose_modules(o->mods, j);
  if (!r && !o->agent)
    o->agent = find_agent();
  if (!r)
    r = add_agent(&j->ents, o->agent);
  if (r < 0)
    return r;
  add_skeleton(&j->ents);
  r = add_modules(j);
  if (!r)
    r = write_initrd(o->out, j);
  if (!r)
    fprintf(stderr, "imgtool: initrd %s: kernel %s, %zu modules\n", o->out, j->version,
            j->set.n);
  return r;
}

static int
list_initrd(const char *path)
{
  if (cpio_list(path, stdout) < 0) {
    log_err("%s is not a gzip'd newc cpio archive (or is truncated)", path);
    return 1;
  }
  return 0;
}

int
cmd_initrd(int argc, char **argv)
{
  struct initrd_opts o = { 0 };
  struct initrd_job j = { 0 };
  int rc = parse_initrd_args(argc, argv, &o);

  if (rc < 0 && o.list)
    rc = list_initrd(o.list);
  else if (rc < 0)
    rc = run_initrd(&o, &j) < 0 ? 1 : 0;
  initrd_job_free(&j);
  free(o.agent);
  return rc;
}
