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
 * root filesystem, virtio (QEMU) and the common wired NICs.  Those a kernel
 * lacks are skipped; nbd and ext4 must be there (module or built in). */
static const char *const default_required[] = { "nbd", "ext4" };
static const char *const default_optional[] = {
  "af_packet", "virtio_pci", "virtio_net", "e1000", "e1000e", "igb", "igc",
  "ixgbe", "i40e", "r8169", "tg3", "bnx2x", "bnxt_en", "atlantic", "be2net",
  "vmxnet3", "8139cp", "8139too", "pcnet32", "ne2k_pci",
};

struct entry {
  char *name;       /* without leading '/' */
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
  if (e->n == e->cap) {
    e->cap = e->cap ? e->cap * 2 : 64;
    e->v = xrealloc(e->v, e->cap * sizeof *e->v);
  }
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
  return strcmp(((const struct entry *)a)->name,
                ((const struct entry *)b)->name);
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
    if (*len == cap) {
      cap *= 2;
      *data = xrealloc(*data, cap);
    }
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
              "it with %s -t)", path, tool, tool);
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
    if (*len == cap) {
      cap *= 2;
      *data = xrealloc(*data, cap);
    }
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
load_module(const char *moddir, const char *rel, char **data, size_t *len,
            char **plain)
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
    log_err("module %s/%s is not an ELF object after decompression", moddir,
            rel);
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
            "the built nbdroot-agent with --agent", path);
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
              "binary (build it with musl-gcc -static)", path);
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
        "  the default set (nbd, ext4, virtio and common NIC drivers), "
        "which is\n"
        "  what is packed without --modules.\n", f);
}

static void
split_list(const char *s, char ***v, size_t *n)
{
  char *copy = xstrdup(s), *save, *tok;

  for (tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
    *v = xrealloc(*v, (*n + 1) * sizeof **v);
    (*v)[(*n)++] = xstrdup(tok);
  }
  free(copy);
}

int
cmd_initrd(int argc, char **argv)
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
  const char *out = NULL, *kver = NULL, *moddir_opt = NULL, *mods = NULL,
             *list = NULL;
  char *agent = NULL, *moddir = NULL, *version = NULL;
  struct outfile of = { .fd = -1 };
  char **names = NULL, **optional = NULL;
  size_t nnames = 0, noptional = 0;
  struct module_set set = { 0 };
  struct entries ents = { 0 };
  struct cpio_writer *w = NULL;
  struct stat st;
  int64_t sde = 0;
  uint32_t mtime;
  int c, r, rc = 1;
  char *listing = NULL;
  size_t listing_len = 0;

  while ((c = getopt_long(argc, argv, "o:h", opts, NULL)) != -1) {
    switch (c) {
    case 'o': out = optarg; break;
    case 'k': kver = optarg; break;
    case 'm': moddir_opt = optarg; break;
    case 'M': mods = optarg; break;
    case 'a': agent = xstrdup(optarg); break;
    case 'l': list = optarg; break;
    case 'h': initrd_usage(stdout); return 0;
    default: initrd_usage(stderr); return 2;
    }
  }
  if (optind != argc) {
    log_err("initrd: unexpected argument '%s'", argv[optind]);
    initrd_usage(stderr);
    free(agent);
    return 2;
  }
  if (list) {
    free(agent);
    r = cpio_list(list, stdout);
    if (r < 0) {
      log_err("%s is not a gzip'd newc cpio archive (or is truncated)", list);
      return 1;
    }
    return 0;
  }
  if (!out) {
    log_err("initrd needs -o FILE.gz");
    initrd_usage(stderr);
    free(agent);
    return 2;
  }
  if (kver && moddir_opt) {
    log_err("give --kernel-version or --modules-dir, not both");
    free(agent);
    return 2;
  }
  r = source_date_epoch(&sde);
  if (r < 0)
    goto done;
  mtime = r > 0 ? (uint32_t)sde : 0;

  /* Which kernel. */
  if (moddir_opt) {
    moddir = realpath(moddir_opt, NULL);
    if (!moddir) {
      log_err("--modules-dir %s: %s", moddir_opt, strerror(errno));
      goto done;
    }
    version = xstrdup(strrchr(moddir, '/') + 1);
  } else {
    struct utsname u;
    if (!kver) {
      uname(&u);
      kver = u.release;
    }
    if (!*kver || strchr(kver, '/') || strcmp(kver, ".") == 0 ||
        strcmp(kver, "..") == 0) {
      log_err("--kernel-version '%s' is not a kernel version (e.g. %s)", kver,
              "6.1.0-18-amd64");
      goto done;
    }
    version = xstrdup(kver);
    moddir = xasprintf("%s/%s", MODULES_ROOT, kver);
  }
  if (stat(moddir, &st) < 0 || !S_ISDIR(st.st_mode)) {
    log_err("no modules for kernel %s: %s is missing; give --kernel-version "
            "of an installed kernel (see ls %s) or --modules-dir", version,
            moddir, MODULES_ROOT);
    goto done;
  }

  /* Which modules. */
  if (!mods)
    mods = "default";
  {
    char **req = NULL;
    size_t nreq = 0;
    split_list(mods, &req, &nreq);
    for (size_t i = 0; i < nreq; i++) {
      if (strcmp(req[i], "default") == 0) {
        for (size_t j = 0; j < ARRAY_SIZE(default_required); j++)
          split_list(default_required[j], &names, &nnames);
        for (size_t j = 0; j < ARRAY_SIZE(default_optional); j++)
          split_list(default_optional[j], &optional, &noptional);
        free(req[i]);
      } else {
        names = xrealloc(names, (nnames + 1) * sizeof *names);
        names[nnames++] = req[i];
      }
    }
    free(req);
  }
  r = modules_resolve(moddir, names, nnames, optional, noptional, &set);
  if (r < 0)
    goto done;

  /* The agent. */
  if (!agent)
    agent = find_agent();
  {
    struct entry *e;
    char *data;
    size_t len;

    r = read_file(agent, &data, &len);
    if (r < 0) {
      log_err("cannot read the initrd agent %s: %s (build it, or give "
              "--agent PATH)", agent, strerror(-r));
      goto done;
    }
    if (check_agent(agent, data, len) < 0) {
      free(data);
      goto done;
    }
    e = add_entry(&ents, "init", S_IFREG | 0755);
    e->data = data;
    e->len = len;
  }

  /* Fixed skeleton. */
  {
    static const char *const dirs[] = { "dev", "proc", "sys", "run", "tmp",
                                        "root", "newroot", "etc",
                                        "etc/nbdroot" };
    struct entry *e;
    for (size_t i = 0; i < ARRAY_SIZE(dirs); i++)
      add_entry(&ents, dirs[i], S_IFDIR | (strcmp(dirs[i], "tmp") == 0
                                             ? 01777 : 0755));
    e = add_entry(&ents, "dev/console", S_IFCHR | 0600);
    e->rmajor = 5;
    e->rminor = 1;
    e = add_entry(&ents, "dev/null", S_IFCHR | 0666);
    e->rmajor = 1;
    e->rminor = 3;
  }

  /* Modules and their list. */
  for (size_t i = 0; i < set.n; i++) {
    char *data, *plain, *name;
    size_t len;
    struct entry *e;

    r = load_module(moddir, set.paths[i], &data, &len, &plain);
    if (r < 0)
      goto done;
    name = xasprintf("lib/modules/%s/%s", version, plain);
    free(plain);
    add_parents(&ents, name);
    e = add_entry(&ents, name, S_IFREG | 0644);
    if (!e) {
      free(data);
      free(name);
      continue;
    }
    e->data = data;
    e->len = len;
    listing = xrealloc(listing, listing_len + strlen(name) + 2);
    memcpy(listing + listing_len, name, strlen(name));
    listing_len += strlen(name);
    listing[listing_len++] = '\n';
    free(name);
  }
  {
    struct entry *e = add_entry(&ents, "etc/nbdroot/modules", S_IFREG | 0644);
    e->data = listing ? listing : xstrdup("");
    e->len = listing_len;
    listing = NULL;
  }
  if (ents.n > 1)
    qsort(ents.v, ents.n, sizeof *ents.v, cmp_entry);

  /* Write it as an anonymous (or temporary) file, named only when whole. */
  tmpfile_install_signals();
  r = outfile_create(out, 0644, &of);
  if (r < 0) {
    log_err("cannot create a file next to %s: %s", out, strerror(-r));
    goto done;
  }
  r = cpio_open(of.fd, &w);
  for (size_t i = 0; !r && i < ents.n; i++) {
    struct entry *e = &ents.v[i];
    r = cpio_add(w, e->name, e->mode, 0, 0, mtime, e->rmajor, e->rminor,
                 e->data, e->len);
  }
  if (!r) {
    r = cpio_close(w);
    w = NULL;
  }
  if (!r && fsync(of.fd) < 0)
    r = -errno;
  if (!r)
    r = outfile_install(&of, out);
  if (r < 0) {
    log_err("cannot write %s: %s", out, strerror(-r));
    goto done;
  }
  fsync_dir_of(out);
  fprintf(stderr, "imgtool: initrd %s: kernel %s, %zu modules\n", out,
          version, set.n);
  rc = 0;
done:
  cpio_abort(w);
  outfile_close(&of);
  for (size_t i = 0; i < ents.n; i++) {
    free(ents.v[i].name);
    free(ents.v[i].data);
  }
  free(ents.v);
  for (size_t i = 0; i < nnames; i++)
    free(names[i]);
  free(names);
  for (size_t i = 0; i < noptional; i++)
    free(optional[i]);
  free(optional);
  free(listing);
  module_set_free(&set);
  free(agent);
  free(moddir);
  free(version);
  return rc;
}
