/* imgtool: small helpers (messages, allocation, sizes, temporary files,
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
die_msg(const char *fmt, ...)
{
  va_list ap;
  char line[2048];

  va_start(ap, fmt);
  vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  fprintf(stderr, "imgtool: error: %s\n", line);
}

void
warn_msg(const char *fmt, ...)
{
  va_list ap;
  char line[2048];

  va_start(ap, fmt);
  vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  fprintf(stderr, "imgtool: warning: %s\n", line);
}

static void
oom(void)
{
  fputs("imgtool: error: out of memory\n", stderr);
  tmpfile_cleanup();
  exit(1);
}

void *
xmalloc(size_t n)
{
  void *p = malloc(n ? n : 1);
  if (!p)
    oom();
  return p;
}

void *
xcalloc(size_t n, size_t size)
{
  void *p = calloc(n ? n : 1, size ? size : 1);
  if (!p)
    oom();
  return p;
}

void *
xrealloc(void *p, size_t n)
{
  p = realloc(p, n ? n : 1);
  if (!p)
    oom();
  return p;
}

char *
xstrdup(const char *s)
{
  char *p = strdup(s);
  if (!p)
    oom();
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
    oom();
  return p;
}

int
parse_size(const char *s, uint64_t *out)
{
  char *end;
  unsigned long long v;
  unsigned shift = 0;

  if (!*s || *s == '-')
    return -EINVAL;
  errno = 0;
  v = strtoull(s, &end, 10);
  if (errno || end == s)
    return -EINVAL;
  switch (*end) {
  case '\0': break;
  case 'k': case 'K': shift = 10; end++; break;
  case 'm': case 'M': shift = 20; end++; break;
  case 'g': case 'G': shift = 30; end++; break;
  case 't': case 'T': shift = 40; end++; break;
  default: return -EINVAL;
  }
  if (*end == 'i' && end[1] == 'B')
    end += 2;
  else if (*end == 'B')
    end++;
  if (*end)
    return -EINVAL;
  if (shift && v > (UINT64_MAX >> shift))
    return -ERANGE;
  *out = (uint64_t)v << shift;
  return 0;
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
    die_msg("SOURCE_DATE_EPOCH='%s' is not a number of seconds since 1970: "
            "set it to e.g. $(date +%%s) or unset it", s);
    return -EINVAL;
  }
  *out = v;
  return 1;
}

/* ---- temporary files ---- */

#define TMP_MAX_FILES 8
#define TMP_PATH_MAX 4096
static char tmp_paths[TMP_MAX_FILES][TMP_PATH_MAX];
static volatile sig_atomic_t tmp_used[TMP_MAX_FILES];

void
tmpfile_register(const char *path)
{
  for (int i = 0; i < TMP_MAX_FILES; i++) {
    if (!tmp_used[i]) {
      snprintf(tmp_paths[i], TMP_PATH_MAX, "%s", path);
      tmp_used[i] = 1;
      return;
    }
  }
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

void
tmpfile_cleanup(void)
{
  for (int i = 0; i < TMP_MAX_FILES; i++) {
    if (tmp_used[i]) {
      unlink(tmp_paths[i]);
      tmp_used[i] = 0;
    }
  }
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

int
fsync_dir(const char *dir)
{
  int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  int r = 0;

  if (fd < 0)
    return -errno;
  if (fsync(fd) < 0)
    r = -errno;
  close(fd);
  return r;
}

int
fsync_dir_of(const char *path)
{
  char *copy = xstrdup(path);
  int r = fsync_dir(dirname(copy));
  free(copy);
  return r;
}

int
pwrite_all(int fd, const void *buf, size_t len, uint64_t off)
{
  const char *p = buf;

  while (len) {
    ssize_t n = pwrite(fd, p, len, (off_t)off);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      return -errno;
    }
    p += n;
    len -= (size_t)n;
    off += (uint64_t)n;
  }
  return 0;
}

int
write_all(int fd, const void *buf, size_t len)
{
  const char *p = buf;

  while (len) {
    ssize_t n = write(fd, p, len);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      return -errno;
    }
    p += n;
    len -= (size_t)n;
  }
  return 0;
}

ssize_t
pread_full(int fd, void *buf, size_t len, uint64_t off)
{
  char *p = buf;
  size_t done = 0;

  while (done < len) {
    ssize_t n = pread(fd, p + done, len - done, (off_t)(off + done));
    if (n < 0) {
      if (errno == EINTR)
        continue;
      return -errno;
    }
    if (n == 0)
      break;
    done += (size_t)n;
  }
  return (ssize_t)done;
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

double
now_sec(void)
{
  struct timespec ts;

  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}
