/* SPDX-License-Identifier: GPL-2.0-or-later */
/* recfs: a recording passthrough file system for the power-loss tests.
 *
 *   recfs BACKING_DIR MOUNTPOINT LOG [FUSE OPTIONS]
 *
 * Design notes
 * ------------
 * Mounted (FUSE) over MOUNTPOINT, recfs forwards every operation to the
 * same path under BACKING_DIR and appends every operation that changes
 * state to LOG, one text line each, in the order they completed (one
 * mutex orders them): what a power loss may keep or drop is decided later
 * from the log (tests/powerloss/crashgen.py), so a program writing
 * through recfs sees a normal file system and its ordering of writes and
 * syncs is recorded exactly.  Written bytes go to LOG.data; the log line
 * names their offset there.
 *
 * The lines (INO: the backing file's inode number, which names a file
 * for as long as it exists, whatever its paths; paths relative to the
 * mount, percent-encoded, "-" for a file open but no longer linked):
 *   create INO PATH MODE | mknod INO PATH MODE | mkdir INO PATH MODE
 *   write INO PATH OFF LEN DATAOFF | truncate INO PATH SIZE
 *   fallocate INO PATH MODE OFF LEN
 *   unlink INO PATH | rmdir INO PATH | rename INO FROM TO FLAGS
 *   link INO FROM TO | symlink INO PATH TARGET
 *   fsync INO PATH DATASYNC START | fsyncdir INO PATH DATASYNC START
 *   mark TEXT
 * An fsync line is written when the sync returned; START is the number of
 * log lines when it was called: it covers only what completed before
 * START, and is durable only from its own line on.  A write to /.mark is
 * not forwarded: its text becomes a mark line, so a client can place its
 * own events (an acknowledgement it received) among the server's syncs.
 *
 * No writeback cache and no attribute or entry caching: every write and
 * every lookup reaches recfs, so the log sees what the program did.
 */
#define FUSE_USE_VERSION 31

#include <config.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fuse.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#define MARK_PATH "/.mark"

static int back_fd = -1;   /* BACKING_DIR */
static int log_fd = -1;    /* LOG */
static int data_fd = -1;   /* LOG.data */
static uint64_t log_lines; /* lines in LOG */
static uint64_t data_end;  /* bytes in LOG.data */
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;

/* The path under BACKING_DIR for a FUSE path ("/a/b" -> "a/b"). */
static const char *
rel(const char *path)
{
  return path[1] ? path + 1 : ".";
}

/* Percent-encodes path into out (size >= 3 * strlen + 1): the log is
 * split on spaces. */
static void
encode(char *out, const char *path)
{
  static const char hex[] = "0123456789abcdef";

  for (const unsigned char *p = (const unsigned char *)path; *p; p++) {
    if (*p <= ' ' || *p == '%' || *p >= 0x7f) {
      *out++ = '%';
      *out++ = hex[*p >> 4];
      *out++ = hex[*p & 15];
    } else {
      *out++ = (char)*p;
    }
  }
  *out = '\0';
}

static void
full_write(int fd, const void *buf, size_t len)
{
  const char *p = buf;

  while (len > 0) {
    ssize_t n = write(fd, p, len);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0) {
      /* A log with a hole would make every later check meaningless. */
      perror("recfs: log write");
      abort();
    }
    p += n;
    len -= (size_t)n;
  }
}

/* Appends one line; lock held. */
static void __attribute__((format(printf, 1, 2))) log_line_locked(const char *fmt, ...)
{
  char line[16384];
  va_list ap;
  int n;

  va_start(ap, fmt);
  n = vsnprintf(line, sizeof line - 1, fmt, ap);
  va_end(ap);
  if (n < 0 || (size_t)n >= sizeof line - 1) {
    fprintf(stderr, "recfs: log line too long\n");
    abort();
  }
  line[n++] = '\n';
  full_write(log_fd, line, (size_t)n);
  log_lines++;
}

#define LOG_LINE(...)                \
  do {                               \
    pthread_mutex_lock(&log_lock);   \
    log_line_locked(__VA_ARGS__);    \
    pthread_mutex_unlock(&log_lock); \
  } while (0)

/* PATH encoded in a local buffer named e_NAME. */
#define ENC(name, path)            \
  char e_##name[3 * 4096 + 1];     \
  if (path && strlen(path) > 4096) \
    return -ENAMETOOLONG;          \
  encode(e_##name, path ? path : "-")

/* The backing inode number of fd or path: what the log names a file by,
 * since its path may change or go while it is open. */
static uint64_t
fd_ino(int fd)
{
  struct stat st;

  return fstat(fd, &st) == 0 ? (uint64_t)st.st_ino : 0;
}

static uint64_t
path_ino(const char *path)
{
  struct stat st;

  return fstatat(back_fd, rel(path), &st, AT_SYMLINK_NOFOLLOW) == 0 ? (uint64_t)st.st_ino
                                                                    : 0;
}

static uint64_t
log_position(void)
{
  uint64_t n;

  pthread_mutex_lock(&log_lock);
  n = log_lines;
  pthread_mutex_unlock(&log_lock);
  return n;
}

/* ---- operations that change nothing ---- */

static void *
rec_init(struct fuse_conn_info *conn, struct fuse_config *cfg)
{
  cfg->entry_timeout = 0;
  cfg->attr_timeout = 0;
  cfg->negative_timeout = 0;
  cfg->use_ino = 0;
  cfg->kernel_cache = 0;
  /* A file renamed over or unlinked while open goes at once, as on a
   * disk file system; libfuse's default would rename it to a hidden name
   * first, splitting one atomic rename into two in the log.  Operations
   * on such a file come without a path (logged as "-"). */
  cfg->hard_remove = 1;
  conn->want &= ~FUSE_CAP_WRITEBACK_CACHE;
  return NULL;
}

static int
rec_getattr(const char *path, struct stat *st, struct fuse_file_info *fi)
{
  int r =
      fi ? fstat((int)fi->fh, st) : fstatat(back_fd, rel(path), st, AT_SYMLINK_NOFOLLOW);
  return r < 0 ? -errno : 0;
}

static int
rec_readlink(const char *path, char *buf, size_t size)
{
  ssize_t n = readlinkat(back_fd, rel(path), buf, size - 1);

  if (n < 0)
    return -errno;
  buf[n] = '\0';
  return 0;
}

static int
rec_open(const char *path, struct fuse_file_info *fi)
{
  int fd = openat(back_fd, rel(path), fi->flags & ~O_NOFOLLOW);

  if (fd < 0)
    return -errno;
  fi->fh = (uint64_t)fd;
  if (fi->flags & O_TRUNC) {
    ENC(p, path);
    LOG_LINE("truncate %" PRIu64 " %s 0", fd_ino(fd), e_p);
  }
  return 0;
}

static int
rec_read(const char *path, char *buf, size_t size, off_t off, struct fuse_file_info *fi)
{
  ssize_t n = pread((int)fi->fh, buf, size, off);

  return n < 0 ? -errno : (int)n;
}

static int
rec_statfs(const char *path, struct statvfs *st)
{
  return fstatvfs(back_fd, st) < 0 ? -errno : 0;
}

static int
rec_flush(const char *path, struct fuse_file_info *fi)
{
  return 0;
}

static int
rec_release(const char *path, struct fuse_file_info *fi)
{
  close((int)fi->fh);
  return 0;
}

static int
rec_opendir(const char *path, struct fuse_file_info *fi)
{
  int fd = openat(back_fd, rel(path), O_RDONLY | O_DIRECTORY);

  if (fd < 0)
    return -errno;
  fi->fh = (uint64_t)fd;
  return 0;
}

static int
rec_readdir(const char *path, void *buf, fuse_fill_dir_t fill, off_t off,
            struct fuse_file_info *fi, enum fuse_readdir_flags flags)
{
  int fd = openat((int)fi->fh, ".", O_RDONLY | O_DIRECTORY);
  DIR *d;
  struct dirent *de;

  if (fd < 0)
    return -errno;
  d = fdopendir(fd);
  if (!d) {
    close(fd);
    return -errno;
  }
  while ((de = readdir(d)) != NULL)
    if (fill(buf, de->d_name, NULL, 0, 0))
      break;
  closedir(d);
  return 0;
}

static int
rec_releasedir(const char *path, struct fuse_file_info *fi)
{
  close((int)fi->fh);
  return 0;
}

static int
rec_access(const char *path, int mask)
{
  return faccessat(back_fd, rel(path), mask, 0) < 0 ? -errno : 0;
}

/* Attributes the crash model ignores (no program here depends on them
 * surviving a crash): forwarded, not logged. */
static int
rec_chmod(const char *path, mode_t mode, struct fuse_file_info *fi)
{
  int r = fi ? fchmod((int)fi->fh, mode) : fchmodat(back_fd, rel(path), mode, 0);
  return r < 0 ? -errno : 0;
}

static int
rec_chown(const char *path, uid_t uid, gid_t gid, struct fuse_file_info *fi)
{
  int r = fi ? fchown((int)fi->fh, uid, gid)
             : fchownat(back_fd, rel(path), uid, gid, AT_SYMLINK_NOFOLLOW);
  return r < 0 ? -errno : 0;
}

static int
rec_utimens(const char *path, const struct timespec tv[2], struct fuse_file_info *fi)
{
  int r = fi ? futimens((int)fi->fh, tv)
             : utimensat(back_fd, rel(path), tv, AT_SYMLINK_NOFOLLOW);
  return r < 0 ? -errno : 0;
}

/* ---- file contents ---- */

/* truncate(2) relative to BACKING_DIR. */
static int
truncate_path(const char *path, off_t size)
{
  int fd = openat(back_fd, rel(path), O_WRONLY), r;

  if (fd < 0)
    return -1;
  r = ftruncate(fd, size);
  close(fd);
  return r;
}

static int
rec_create(const char *path, mode_t mode, struct fuse_file_info *fi)
{
  struct stat st;
  bool existed = fstatat(back_fd, rel(path), &st, AT_SYMLINK_NOFOLLOW) == 0;
  int fd;

  fd = openat(back_fd, rel(path), (fi->flags & ~O_NOFOLLOW) | O_CREAT, mode);
  if (fd < 0)
    return -errno;
  fi->fh = (uint64_t)fd;
  ENC(p, path);
  if (!existed)
    LOG_LINE("create %" PRIu64 " %s %o", fd_ino(fd), e_p, (unsigned)mode);
  else if (fi->flags & O_TRUNC)
    LOG_LINE("truncate %" PRIu64 " %s 0", fd_ino(fd), e_p);
  return 0;
}

/* A client's mark: the text, one line, becomes a mark line. */
static int
write_mark(const char *buf, size_t size)
{
  char text[1024];
  size_t n = size < sizeof text - 1 ? size : sizeof text - 1;

  memcpy(text, buf, n);
  while (n > 0 && (text[n - 1] == '\n' || text[n - 1] == '\r'))
    n--;
  text[n] = '\0';
  for (size_t i = 0; i < n; i++)
    if (text[i] == '\n' || text[i] == '\r')
      text[i] = ' ';
  LOG_LINE("mark %s", text);
  return (int)size;
}

static int
rec_write(const char *path, const char *buf, size_t size, off_t off,
          struct fuse_file_info *fi)
{
  ssize_t n;

  if (path && strcmp(path, MARK_PATH) == 0)
    return write_mark(buf, size);
  n = pwrite((int)fi->fh, buf, size, off);
  if (n < 0)
    return -errno;
  ENC(p, path);
  pthread_mutex_lock(&log_lock);
  full_write(data_fd, buf, (size_t)n);
  log_line_locked("write %" PRIu64 " %s %jd %zd %" PRIu64, fd_ino((int)fi->fh), e_p,
                  (intmax_t)off, n, data_end);
  data_end += (uint64_t)n;
  pthread_mutex_unlock(&log_lock);
  return (int)n;
}

static int
rec_truncate(const char *path, off_t size, struct fuse_file_info *fi)
{
  int r = fi ? ftruncate((int)fi->fh, size) : truncate_path(path, size);

  if (r < 0)
    return -errno;
  ENC(p, path);
  LOG_LINE("truncate %" PRIu64 " %s %jd", fi ? fd_ino((int)fi->fh) : path_ino(path), e_p,
           (intmax_t)size);
  return 0;
}

static int
rec_fallocate(const char *path, int mode, off_t off, off_t len, struct fuse_file_info *fi)
{
  if (fallocate((int)fi->fh, mode, off, len) < 0)
    return -errno;
  ENC(p, path);
  LOG_LINE("fallocate %" PRIu64 " %s %d %jd %jd", fd_ino((int)fi->fh), e_p, mode,
           (intmax_t)off, (intmax_t)len);
  return 0;
}

static int
rec_fsync(const char *path, int datasync, struct fuse_file_info *fi)
{
  uint64_t start = log_position();
  int r = datasync ? fdatasync((int)fi->fh) : fsync((int)fi->fh);

  if (r < 0)
    return -errno;
  ENC(p, path);
  LOG_LINE("fsync %" PRIu64 " %s %d %" PRIu64, fd_ino((int)fi->fh), e_p, datasync, start);
  return 0;
}

static int
rec_fsyncdir(const char *path, int datasync, struct fuse_file_info *fi)
{
  uint64_t start = log_position();

  if (fsync((int)fi->fh) < 0)
    return -errno;
  ENC(p, path);
  LOG_LINE("fsyncdir %" PRIu64 " %s %d %" PRIu64, fd_ino((int)fi->fh), e_p, datasync,
           start);
  return 0;
}

/* ---- the namespace ---- */

static int
rec_mknod(const char *path, mode_t mode, dev_t dev)
{
  if (mknodat(back_fd, rel(path), mode, dev) < 0)
    return -errno;
  ENC(p, path);
  LOG_LINE("mknod %" PRIu64 " %s %o", path_ino(path), e_p, (unsigned)mode);
  return 0;
}

static int
rec_mkdir(const char *path, mode_t mode)
{
  if (mkdirat(back_fd, rel(path), mode) < 0)
    return -errno;
  ENC(p, path);
  LOG_LINE("mkdir %" PRIu64 " %s %o", path_ino(path), e_p, (unsigned)mode);
  return 0;
}

static int
rec_unlink(const char *path)
{
  uint64_t ino = path_ino(path);

  if (unlinkat(back_fd, rel(path), 0) < 0)
    return -errno;
  ENC(p, path);
  LOG_LINE("unlink %" PRIu64 " %s", ino, e_p);
  return 0;
}

static int
rec_rmdir(const char *path)
{
  uint64_t ino = path_ino(path);

  if (unlinkat(back_fd, rel(path), AT_REMOVEDIR) < 0)
    return -errno;
  ENC(p, path);
  LOG_LINE("rmdir %" PRIu64 " %s", ino, e_p);
  return 0;
}

static int
rec_rename(const char *from, const char *to, unsigned int flags)
{
  if (renameat2(back_fd, rel(from), back_fd, rel(to), flags) < 0)
    return -errno;
  ENC(f, from);
  ENC(t, to);
  LOG_LINE("rename %" PRIu64 " %s %s %u", path_ino(to), e_f, e_t, flags);
  return 0;
}

static int
rec_link(const char *from, const char *to)
{
  if (linkat(back_fd, rel(from), back_fd, rel(to), 0) < 0)
    return -errno;
  ENC(f, from);
  ENC(t, to);
  LOG_LINE("link %" PRIu64 " %s %s", path_ino(to), e_f, e_t);
  return 0;
}

static int
rec_symlink(const char *target, const char *path)
{
  if (symlinkat(target, back_fd, rel(path)) < 0)
    return -errno;
  ENC(t, target);
  ENC(p, path);
  LOG_LINE("symlink %" PRIu64 " %s %s", path_ino(path), e_p, e_t);
  return 0;
}

static const struct fuse_operations rec_ops = {
  .init = rec_init,
  .getattr = rec_getattr,
  .readlink = rec_readlink,
  .mknod = rec_mknod,
  .mkdir = rec_mkdir,
  .unlink = rec_unlink,
  .rmdir = rec_rmdir,
  .symlink = rec_symlink,
  .rename = rec_rename,
  .link = rec_link,
  .chmod = rec_chmod,
  .chown = rec_chown,
  .truncate = rec_truncate,
  .open = rec_open,
  .read = rec_read,
  .write = rec_write,
  .statfs = rec_statfs,
  .flush = rec_flush,
  .release = rec_release,
  .fsync = rec_fsync,
  .opendir = rec_opendir,
  .readdir = rec_readdir,
  .releasedir = rec_releasedir,
  .fsyncdir = rec_fsyncdir,
  .access = rec_access,
  .create = rec_create,
  .utimens = rec_utimens,
  .fallocate = rec_fallocate,
};

int
main(int argc, char **argv)
{
  char data_path[4096];
  char *fargv[64];
  int fargc = 0;

  if (argc < 4 || argc > 40) {
    fprintf(stderr, "usage: recfs BACKING_DIR MOUNTPOINT LOG [FUSE OPTIONS]\n");
    return 2;
  }
  back_fd = open(argv[1], O_RDONLY | O_DIRECTORY);
  if (back_fd < 0) {
    fprintf(stderr, "recfs: %s: %s\n", argv[1], strerror(errno));
    return 1;
  }
  snprintf(data_path, sizeof data_path, "%s.data", argv[3]);
  log_fd = open(argv[3], O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0644);
  data_fd = open(data_path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0644);
  if (log_fd < 0 || data_fd < 0) {
    fprintf(stderr, "recfs: %s: %s\n", argv[3], strerror(errno));
    return 1;
  }
  /* Foreground; the rest of the arguments are FUSE's. */
  fargv[fargc++] = argv[0];
  fargv[fargc++] = argv[2];
  fargv[fargc++] = "-f";
  for (int i = 4; i < argc; i++)
    fargv[fargc++] = argv[i];
  fargv[fargc] = NULL;
  return fuse_main(fargc, fargv, &rec_ops, NULL);
}
