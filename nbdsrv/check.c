/* SPDX-License-Identifier: GPL-2.0-or-later */
/* nbdsrv: what the configuration is checked for beyond its syntax.
 *
 * At start-up, on every reload and with --check-config: each export's
 * image must be there and be an image.  The mistakes seen in practice
 * are refused with words saying what the file is instead: the root tree
 * an image is built from, an empty file, a text file, a compressed image,
 * a qcow2 image, an initramfs (cpio).  Anything else that is not ext2/3/4
 * or squashfs is only a warning: a raw disk image with partitions may be
 * what the admin wants, and the tests serve pseudo-random images.
 *
 * --check-config also binds every listen address for a moment, and names
 * the process that holds a port already when /proc lets it.
 */
#include <config.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "nbdsrv.h"
#include "util.h"

/* "FILE:LINE: " when the config file said it, else "". */
static const char *
where(unsigned line, char *buf, size_t len)
{
  if (line && config_file_name()[0])
    snprintf(buf, len, "%s:%u: ", config_file_name(), line);
  else
    buf[0] = '\0';
  return buf;
}

/* ---- what a file holds ---- */

enum verdict { IMAGE_OK, IMAGE_DOUBTFUL, IMAGE_REFUSED };

static const struct {
  const char *magic;
  size_t len;
  const char *what;
} refused_magic[] = {
  { "\x1f\x8b", 2, "is gzip-compressed: decompress it (an export serves a raw image)" },
  { "\xfd"
    "7zXZ\0",
    6, "is xz-compressed: decompress it (an export serves a raw image)" },
  { "\x28\xb5\x2f\xfd", 4,
    "is zstd-compressed: decompress it (an export serves a raw image)" },
  { "BZh", 3, "is bzip2-compressed: decompress it (an export serves a raw image)" },
  { "\x04\x22\x4d\x18", 4,
    "is lz4-compressed: decompress it (an export serves a raw image)" },
  { "QFI\xfb", 4, "is a qcow2 image: convert it with 'qemu-img convert -O raw'" },
  { "070701", 6, "is a cpio archive (an initramfs?), not a root file system image" },
  { "070702", 6, "is a cpio archive (an initramfs?), not a root file system image" },
  { "070707", 6, "is a cpio archive (an initramfs?), not a root file system image" },
};

static bool
looks_like_text(const unsigned char *b, size_t n)
{
  for (size_t i = 0; i < n; i++)
    if (b[i] == 0 || (b[i] < 0x20 && !strchr("\t\n\r\f\v\b\x1b", b[i])) || b[i] == 0x7f)
      return false;
  return true;
}

/* The verdict on the first bytes b[0..n) of a file, and why. */
static enum verdict
judge(const unsigned char *b, size_t n, const char **what)
{
  /* ext2/3/4: the superblock's magic 0xEF53, at 1024 + 56. */
  if (n >= 1082 && b[1080] == 0x53 && b[1081] == 0xef)
    return IMAGE_OK;
  if (n >= 4 && memcmp(b, "hsqs", 4) == 0)
    return IMAGE_OK; /* squashfs, for read-only exports */
  for (size_t i = 0; i < ARRAY_SIZE(refused_magic); i++)
    if (n >= refused_magic[i].len &&
        memcmp(b, refused_magic[i].magic, refused_magic[i].len) == 0) {
      *what = refused_magic[i].what;
      return IMAGE_REFUSED;
    }
  if (looks_like_text(b, n)) {
    *what = "is a text file, not a file system image";
    return IMAGE_REFUSED;
  }
  *what =
      "does not look like an ext4 image (no ext2/3/4 superblock): clients may fail to mount it";
  return IMAGE_DOUBTFUL;
}

static int
check_image_file(const struct export *e, const char *path, const char *at)
{
  unsigned char b[4096];
  const char *what = NULL;
  struct stat st;
  ssize_t n;
  int fd = open(path, O_RDONLY | O_CLOEXEC);

  if (fd < 0 || fstat(fd, &st) < 0) {
    config_err("%sexport '%s': image %s: %s", at, e->name, path, strerror(errno));
    if (fd >= 0)
      close(fd);
    return -EINVAL;
  }
  n = pread(fd, b, sizeof b, 0);
  close(fd);
  if (S_ISREG(st.st_mode) && st.st_size == 0)
    what = "is empty, not an image";
  else if (n < 0)
    what = strerror(errno);
  switch (what ? IMAGE_REFUSED : judge(b, n, &what)) {
    case IMAGE_OK: return 0;
    case IMAGE_DOUBTFUL:
      config_warn("%sexport '%s': image %s %s", at, e->name, path, what);
      return 0;
    case IMAGE_REFUSED: break;
  }
  config_err("%sexport '%s': image %s %s", at, e->name, path, what);
  return -EINVAL;
}

static bool
is_dir(const char *dir, const char *name)
{
  char path[PATH_MAX];
  struct stat st;

  return format_path(path, sizeof path, "%s/%s", dir, name) == 0 &&
         stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* A directory must be an image store: it has a `current`. */
static int
check_image_dir(const struct export *e, const char *at)
{
  char path[PATH_MAX];
  struct stat st;

  if (format_path(path, sizeof path, "%s/current", e->image) == 0 &&
      lstat(path, &st) == 0)
    return 0;
  if (is_dir(e->image, "etc") && is_dir(e->image, "usr"))
    config_err(
        "%sexport '%s': %s is a root tree, not an image store: build an image with imgtool build",
        at, e->name, e->image);
  else
    config_err(
        "%sexport '%s': %s is a directory but not an image store (it has no 'current'): build one with imgtool build --store",
        at, e->name, e->image);
  return -EINVAL;
}

static int
check_export(const struct export *e)
{
  char path[PATH_MAX], at[PATH_MAX + 32];
  struct stat st;
  int r;

  if (e->policy == POLICY_SHARED_READONLY && e->quota_set && e->quota)
    config_warn(
        "%sexport '%s': quota does not apply to a shared-readonly export: its clients have no overlay",
        where(e->line, at, sizeof at), e->name);
  where(e->image_line, at, sizeof at);
  if (stat(e->image, &st) == 0 && S_ISDIR(st.st_mode) && check_image_dir(e, at) < 0)
    return -EINVAL;
  r = image_resolve(e, path, sizeof path);
  if (r < 0) {
    config_err("%sexport '%s': image %s: %s%s", at, e->name, e->image, strerror(-r),
               r == -ENOENT ? " (build one with 'imgtool build', or fix the path)" : "");
    return r;
  }
  if (stat(path, &st) < 0 || !(S_ISREG(st.st_mode) || S_ISBLK(st.st_mode))) {
    config_err("%sexport '%s': %s is not an image file", at, e->name, path);
    return -EINVAL;
  }
  return check_image_file(e, path, at);
}

int
config_check(const struct config *cfg)
{
  for (unsigned i = 0; i < cfg->nexports; i++) {
    int r = check_export(&cfg->exports[i]);
    if (r < 0)
      return r;
  }
  return 0;
}

void
config_warn_unpinned(const struct config *cfg)
{
  for (unsigned i = 0; i < cfg->nexports; i++) {
    const struct export *e = &cfg->exports[i];
    char at[PATH_MAX + 32];

    if (e->require_pin)
      continue;
    config_warn(
        "%sexport '%s' serves client IDs that are not pinned: any client may name another's ID and %s (pin the IDs and set require-pin = true)",
        where(e->line, at, sizeof at), e->name,
        e->policy == POLICY_SHARED_READONLY
            ? "with a new boot id change the version that client's reconnections read"
            : "get its overlay");
  }
}

/* ---- listen addresses ---- */

/* The inode of the listening TCP socket on port, from /proc/net/tcp or
 * tcp6; 0 when there is none to be seen. */
static unsigned long
listener_inode(const char *table, unsigned port)
{
  char line[512];
  unsigned long inode = 0;
  FILE *fp = fopen(table, "r");

  if (!fp)
    return 0;
  while (!inode && fgets(line, sizeof line, fp)) {
    unsigned lport, state;
    unsigned long ino;
    char local[64];

    if (sscanf(line, " %*u: %63[0-9A-Fa-f]:%x %*s %x %*s %*s %*s %*s %*s %lu", local,
               &lport, &state, &ino) == 4 &&
        lport == port && state == 0x0a)
      inode = ino;
  }
  fclose(fp);
  return inode;
}

/* Whether process pid has the socket inode open. */
static bool
process_has_socket(const char *pid, const char *want)
{
  char dir[300], link[PATH_MAX], target[64];
  struct dirent *d;
  bool found = false;
  DIR *fds;

  snprintf(dir, sizeof dir, "/proc/%s/fd", pid);
  if (!(fds = opendir(dir)))
    return false;
  while (!found && (d = readdir(fds))) {
    ssize_t n;
    if (format_path(link, sizeof link, "%s/%s", dir, d->d_name) < 0)
      continue;
    n = readlink(link, target, sizeof target - 1);
    if (n > 0) {
      target[n] = '\0';
      found = strcmp(target, want) == 0;
    }
  }
  closedir(fds);
  return found;
}

/* Whether process pid runs nbdsrv: its name, or one of its arguments
 * (nbdsrv under valgrind or another wrapper) ends in "nbdsrv". */
static bool
runs_nbdsrv(const char *pid, const char *comm)
{
  char path[64], args[4096];
  ssize_t n;
  int fd;

  if (strcmp(comm, "nbdsrv") == 0)
    return true;
  snprintf(path, sizeof path, "/proc/%s/cmdline", pid);
  fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return false;
  n = read(fd, args, sizeof args - 1);
  close(fd);
  if (n <= 0)
    return false;
  args[n] = '\0';
  for (ssize_t i = 0; i < n; i += (ssize_t)strlen(args + i) + 1) {
    const char *slash = strrchr(args + i, '/');
    if (strcmp(slash ? slash + 1 : args + i, "nbdsrv") == 0)
      return true;
  }
  return false;
}

/* " by NAME (pid N)" for the process holding port, or "" if none is seen;
 * *server tells whether that process runs nbdsrv. */
static char *
port_holder(unsigned port, char *buf, size_t len, bool *server)
{
  unsigned long inode = listener_inode("/proc/net/tcp", port);
  char want[64], comm[64] = "?", path[300];
  struct dirent *d;
  DIR *proc;

  buf[0] = '\0';
  if (!inode)
    inode = listener_inode("/proc/net/tcp6", port);
  if (!inode || !(proc = opendir("/proc")))
    return buf;
  snprintf(want, sizeof want, "socket:[%lu]", inode);
  while ((d = readdir(proc))) {
    if (strspn(d->d_name, "0123456789") != strlen(d->d_name) ||
        !process_has_socket(d->d_name, want))
      continue;
    snprintf(path, sizeof path, "/proc/%s/comm", d->d_name);
    FILE *fp = fopen(path, "r");
    if (fp) {
      if (fgets(comm, sizeof comm, fp))
        comm[strcspn(comm, "\n")] = '\0';
      fclose(fp);
    }
    snprintf(buf, len, " by %s (pid %s)", comm, d->d_name);
    *server = runs_nbdsrv(d->d_name, comm);
    break;
  }
  closedir(proc);
  return buf;
}

static int
try_bind(const struct addrinfo *ai)
{
  int one = 1, fd, e = 0;

  fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
  if (fd < 0)
    return -errno;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (ai->ai_family == AF_INET6)
    setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
  if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, 1) < 0)
    e = -errno;
  close(fd);
  return e;
}

static int
check_listen_addr(const struct listen_addr *la)
{
  struct addrinfo hints = { .ai_socktype = SOCK_STREAM,
                            .ai_flags = AI_PASSIVE | AI_NUMERICSERV };
  struct addrinfo *res, *ai;
  char at[PATH_MAX + 32], holder[128];
  int r = getaddrinfo(la->host[0] ? la->host : NULL, la->port, &hints, &res);

  where(la->line, at, sizeof at);
  if (r) {
    config_err("%slisten %s: cannot resolve '%s': %s", at, la->host, la->host,
               gai_strerror(r));
    return -EINVAL;
  }
  for (ai = res, r = 0; ai && r == 0; ai = ai->ai_next)
    r = try_bind(ai);
  freeaddrinfo(res);
  if (r == -EADDRINUSE) {
    bool server = false;
    port_holder((unsigned)atoi(la->port), holder, sizeof holder, &server);
    /* The running server's own port, when systemd checks before a
     * reload: a reload keeps the listening sockets as they are. */
    if (server)
      return 0;
    config_err("%slisten %s port %s: the port is in use%s", at,
               la->host[0] ? la->host : "*", la->port,
               *holder ? holder : " (by a process this user cannot see)");
  } else if (r < 0) {
    config_err("%slisten %s port %s: %s", at, la->host[0] ? la->host : "*", la->port,
               strerror(-r));
  }
  return r;
}

int
config_check_listen(const struct config *cfg)
{
  int r = 0;

  for (unsigned i = 0; i < cfg->nlisten; i++)
    if (check_listen_addr(&cfg->listen[i]) < 0)
      r = -EINVAL;
  return r;
}
