/* SPDX-License-Identifier: GPL-2.0-or-later */
/* imgtool: small helpers (allocation, sizes, temporary files,
 * durable writes, subprocesses).
 *
 * Temporary files: every output is written under a temporary name next to
 * its final place and renamed in only when complete, so a failure (or a
 * signal) never leaves a partial image, initrd or version behind.  The
 * registry of temporaries is a fixed array of strings so that the signal
 * handler can unlink them without calling anything unsafe.
 */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "imgtool.h"

void
out_of_memory(void)
{
  log_err("out of memory");
  tmpfile_cleanup();
  exit(1);
}

void *
xmalloc(size_t n)
{
  void *p = malloc(n ? n : 1);
  if (!p)
    out_of_memory();
  return p;
}

void *
xcalloc(size_t n, size_t size)
{
  void *p = calloc(n ? n : 1, size ? size : 1);
  if (!p)
    out_of_memory();
  return p;
}

char *
xstrdup(const char *s)
{
  char *p = strdup(s);
  if (!p)
    out_of_memory();
  return p;
}

char *
xasprintf(const char *fmt, ...)
{
  va_list ap;
  char *p;
  int r;

  va_start(ap, fmt);
  r = vasprintf(&p, fmt, ap);
  va_end(ap);
  if (r < 0)
    out_of_memory();
  return p;
}

void
strv_push(struct strv *l, char *s)
{
  XVEC_RESERVE(l->v, l->cap, l->n + 1);
  l->v[l->n++] = s;
}

static int
cmp_str(const void *a, const void *b)
{
  return strcmp(*(char *const *)a, *(char *const *)b);
}

void
strv_sort(struct strv *l)
{
  if (l->n > 1)
    qsort(l->v, l->n, sizeof *l->v, cmp_str);
}

void
strv_free(struct strv *l)
{
  for (size_t i = 0; i < l->n; i++)
    free(l->v[i]);
  free(l->v);
  *l = (struct strv){ 0 };
}

int
source_date_epoch(int64_t *out)
{
  const char *s = getenv("SOURCE_DATE_EPOCH");
  char *end;
  long long v;

  if (!s || !*s)
    return 0;
  errno = 0;
  v = strtoll(s, &end, 10);
  if (errno || *end || v < 0 || v > 0x3ffffffffLL) {
    log_err("SOURCE_DATE_EPOCH='%s' is not a number of seconds since 1970: "
            "set it to e.g. $(date +%%s) or unset it",
            s);
    return -EINVAL;
  }
  *out = v;
  return 1;
}

/* ---- temporary files ---- */

#define TMP_MAX_FILES 8
#define TMP_PATH_MAX 4096
#define TMP_FILE 1
#define TMP_DIR 2
static char tmp_paths[TMP_MAX_FILES][TMP_PATH_MAX];
static volatile sig_atomic_t tmp_used[TMP_MAX_FILES];

static void
tmp_register(const char *path, int kind)
{
  for (int i = 0; i < TMP_MAX_FILES; i++) {
    if (!tmp_used[i]) {
      snprintf(tmp_paths[i], TMP_PATH_MAX, "%s", path);
      tmp_used[i] = kind;
      return;
    }
  }
}

void
tmpfile_register(const char *path)
{
  tmp_register(path, TMP_FILE);
}

void
tmpdir_register(const char *path)
{
  tmp_register(path, TMP_DIR);
}

void
tmpfile_forget(const char *path)
{
  for (int i = 0; i < TMP_MAX_FILES; i++) {
    if (tmp_used[i] && strcmp(tmp_paths[i], path) == 0) {
      tmp_used[i] = 0;
      return;
    }
  }
}

/* Files first, then directories (twice, so that a parent registered
 * before its child goes too); rmdir leaves a directory that is not empty. */
void
tmpfile_cleanup(void)
{
  for (int i = 0; i < TMP_MAX_FILES; i++) {
    if (tmp_used[i] == TMP_FILE) {
      unlink(tmp_paths[i]);
      tmp_used[i] = 0;
    }
  }
  for (int pass = 0; pass < 2; pass++)
    for (int i = TMP_MAX_FILES - 1; i >= 0; i--)
      if (tmp_used[i] == TMP_DIR && rmdir(tmp_paths[i]) == 0)
        tmp_used[i] = 0;
  for (int i = 0; i < TMP_MAX_FILES; i++)
    tmp_used[i] = 0;
}

static void
on_signal(int sig)
{
  tmpfile_cleanup();
  signal(sig, SIG_DFL);
  raise(sig);
}

void
tmpfile_install_signals(void)
{
  struct sigaction sa;

  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGHUP, &sa, NULL);
}

int
tmpfile_create_near(const char *final_path, mode_t mode, char **tmp_name)
{
  char *copy1 = xstrdup(final_path), *copy2 = xstrdup(final_path);
  char *name = xasprintf("%s/.%s.XXXXXX", dirname(copy1), basename(copy2));
  int fd;

  free(copy1);
  free(copy2);
  fd = mkostemp(name, O_CLOEXEC);
  if (fd < 0) {
    int r = -errno;
    free(name);
    return r;
  }
  tmpfile_register(name);
  fchmod(fd, mode);
  *tmp_name = name;
  return fd;
}

/* A name for an anonymous file: ".BASE.XXXXXX" next to final_path, not
 * yet taken when this returns (it may be taken by the time it is used;
 * callers retry on EEXIST). */
static char *
temp_name_near(const char *final_path)
{
  static const char chars[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
  char *copy1 = xstrdup(final_path), *copy2 = xstrdup(final_path);
  char *name = xasprintf("%s/.%s.XXXXXX", dirname(copy1), basename(copy2));
  size_t l = strlen(name);
  struct timespec ts;
  uint64_t x;

  free(copy1);
  free(copy2);
  clock_gettime(CLOCK_MONOTONIC, &ts);
  x = (uint64_t)ts.tv_nsec * 0x9e3779b97f4a7c15ull ^ (uint64_t)getpid() << 32 ^
      (uint64_t)rand();
  for (size_t i = l - 6; i < l; i++) {
    name[i] = chars[x % (sizeof chars - 1)];
    x /= sizeof chars - 1;
  }
  return name;
}

int
outfile_create(const char *final_path, mode_t mode, struct outfile *o)
{
  char *copy = xstrdup(final_path);
  int fd;

  memset(o, 0, sizeof *o);
  o->fd = -1;
  /* Anonymous first: nothing to clean up, even after SIGKILL.  It needs
   * /proc to be reopened by name (libext2fs opens images by name). */
  fd = open(dirname(copy), O_TMPFILE | O_RDWR | O_CLOEXEC, mode);
  free(copy);
  if (fd >= 0) {
    o->path = xasprintf("/proc/self/fd/%d", fd);
    if (access(o->path, F_OK) == 0) {
      fchmod(fd, mode);
      o->fd = fd;
      return 0;
    }
    free(o->path);
    o->path = NULL;
    close(fd);
  }
  fd = tmpfile_create_near(final_path, mode, &o->tmp);
  if (fd < 0)
    return fd;
  o->fd = fd;
  o->path = xstrdup(o->tmp);
  return 0;
}

int
outfile_link(struct outfile *o, const char *name)
{
  if (!o->tmp) {
    if (linkat(AT_FDCWD, o->path, AT_FDCWD, name, AT_SYMLINK_FOLLOW) < 0)
      return -errno;
    return 0;
  }
  if (link(o->tmp, name) < 0)
    return -errno;
  unlink(o->tmp);
  tmpfile_forget(o->tmp);
  free(o->tmp);
  o->tmp = NULL;
  return 0;
}

int
outfile_install(struct outfile *o, const char *final_path)
{
  char *name = NULL;
  int r = -EEXIST;

  if (o->tmp) {
    if (rename(o->tmp, final_path) < 0)
      return -errno;
    tmpfile_forget(o->tmp);
    free(o->tmp);
    o->tmp = NULL;
    return 0;
  }
  /* An anonymous file cannot be linked over an existing name: link it
   * under a fresh temporary name, then rename that over final_path, with
   * signals held so that the name never outlives a failure. */
  signals_hold(true);
  for (int tries = 0; r == -EEXIST && tries < 100; tries++) {
    free(name);
    name = temp_name_near(final_path);
    r = 0;
    if (linkat(AT_FDCWD, o->path, AT_FDCWD, name, AT_SYMLINK_FOLLOW) < 0)
      r = -errno;
  }
  if (r == 0 && rename(name, final_path) < 0) {
    r = -errno;
    unlink(name);
  }
  signals_hold(false);
  free(name);
  return r;
}

void
outfile_close(struct outfile *o)
{
  if (o->fd >= 0)
    close(o->fd);
  if (o->tmp) {
    unlink(o->tmp);
    tmpfile_forget(o->tmp);
  }
  free(o->tmp);
  free(o->path);
  memset(o, 0, sizeof *o);
  o->fd = -1;
}

void
signals_hold(bool hold)
{
  sigset_t set;

  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGHUP);
  sigprocmask(hold ? SIG_BLOCK : SIG_UNBLOCK, &set, NULL);
}

int
anon_tmpfile(void)
{
  const char *dir = getenv("TMPDIR");
  char *name;
  int fd;

  if (!dir || !*dir)
    dir = "/var/tmp";
  fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
  if (fd >= 0 || (errno != EOPNOTSUPP && errno != EISDIR))
    return fd >= 0 ? fd : -errno;
  /* No O_TMPFILE there: a named file, unlinked at once. */
  name = xasprintf("%s/imgtool.XXXXXX", dir);
  fd = mkostemp(name, O_CLOEXEC);
  if (fd >= 0)
    unlink(name);
  free(name);
  return fd >= 0 ? fd : -errno;
}

int
copy_range(int in, int out, uint64_t off, uint64_t len, bool target_hole, char *buf)
{
  uint64_t end = off + len;

  while (off < end) {
    loff_t ioff = (loff_t)off, ooff = (loff_t)off;
    size_t want = end - off > (1u << 30) ? (1u << 30) : (size_t)(end - off);
    ssize_t n = copy_file_range(in, &ioff, out, &ooff, want, 0);

    if (n > 0) {
      off += (uint64_t)n;
      continue;
    }
    if (n == 0)
      return -EIO; /* the source is shorter than it said */
    if (errno == EINTR)
      continue;
    if (errno != EXDEV && errno != EINVAL && errno != ENOSYS && errno != EOPNOTSUPP)
      return -errno;
    /* No in-kernel copy between these files: read and write. */
    while (off < end) {
      size_t chunk = end - off > COPY_CHUNK ? COPY_CHUNK : (size_t)(end - off);
      ssize_t got = full_pread(in, buf, chunk, off);
      int r;

      if (got < 0)
        return (int)got;
      if ((size_t)got != chunk)
        return -EIO;
      if (!target_hole || !is_zero(buf, chunk)) {
        r = full_pwrite(out, buf, chunk, off);
        if (r < 0)
          return r;
      }
      off += chunk;
    }
  }
  return 0;
}

int
ext_superblock_read(int fd, uint8_t sb[1024])
{
  ssize_t n = full_pread(fd, sb, 1024, 1024);

  if (n < 0)
    return (int)n;
  if (n != 1024 || sb[0x38] != 0x53 || sb[0x39] != 0xef)
    return -EINVAL;
  return 0;
}

bool
is_zero(const void *buf, size_t len)
{
  const unsigned char *p = buf;

  /* Compare the buffer with itself shifted: one pass, no table. */
  if (len == 0)
    return true;
  return p[0] == 0 && memcmp(p, p + 1, len - 1) == 0;
}

int
run_cmd(char *const argv[], int out_fd)
{
  pid_t pid = fork();
  int status;

  if (pid < 0)
    return -errno;
  if (pid == 0) {
    if (out_fd >= 0 && dup2(out_fd, 1) < 0)
      _exit(126);
    execvp(argv[0], argv);
    _exit(127);
  }
  while (waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR)
      return -errno;
  }
  if (WIFEXITED(status))
    return WEXITSTATUS(status);
  return 128 + WTERMSIG(status);
}

/* Whether the ext2/3/4 filesystem in fd (if it is one) was cleanly
 * unmounted: the valid flag set, no error flag, no journal to recover. */
bool
ext_fs_is_clean(int fd)
{
  uint8_t sb[1024];
  uint16_t state;
  uint32_t incompat;

  if (ext_superblock_read(fd, sb) < 0)
    return true; /* not ext*: nothing to judge */
  state = (uint16_t)(sb[0x3a] | sb[0x3b] << 8);
  incompat = (uint32_t)sb[0x60] | (uint32_t)sb[0x61] << 8 | (uint32_t)sb[0x62] << 16 |
             (uint32_t)sb[0x63] << 24;
  return (state & 1) && !(state & 2) && !(incompat & 0x4 /* RECOVER */);
}

char *
overlay_prefix(const char *arg)
{
  char *p = xstrdup(arg);
  size_t l = strlen(p);

  if (l > 4 && ends_with(p, ".map"))
    p[l - 4] = '\0';
  else if (l > 5 && ends_with(p, ".data"))
    p[l - 5] = '\0';
  return p;
}
