/* SPDX-License-Identifier: GPL-2.0-or-later */
/* nbdroot: whole reads and writes of file descriptors (see io.h).
 *
 * One loop serves every kind of call, so that the EINTR and short-count
 * handling exists once.
 */
#ifdef HAVE_CONFIG_H
#include <config.h> /* the initrd agent is built without one */
#endif

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <sys/socket.h>
#include <unistd.h>

#include "io.h"

enum io_op { IO_READ, IO_PREAD, IO_WRITE, IO_PWRITE, IO_SEND };

static ssize_t
io_once(enum io_op op, int fd, char *p, size_t len, uint64_t off)
{
  switch (op) {
    case IO_READ: return read(fd, p, len);
    case IO_PREAD: return pread(fd, p, len, (off_t)off);
    case IO_WRITE: return write(fd, p, len);
    case IO_PWRITE: return pwrite(fd, p, len, (off_t)off);
    case IO_SEND: return send(fd, p, len, MSG_NOSIGNAL);
  }
  errno = EINVAL;
  return -1;
}

/* Bytes done: len, or fewer when a read met the end; or -errno.  A write
 * that makes no progress is an error (-EIO), not a reason to spin. */
static ssize_t
io_loop(enum io_op op, int fd, char *p, size_t len, uint64_t off)
{
  size_t done = 0;

  while (done < len) {
    ssize_t n = io_once(op, fd, p + done, len - done, off + done);

    if (n < 0) {
      if (errno == EINTR)
        continue;
      return -errno;
    }
    if (n == 0) {
      if (op == IO_READ || op == IO_PREAD)
        break;
      return -EIO;
    }
    done += (size_t)n;
  }
  return (ssize_t)done;
}

ssize_t
full_read(int fd, void *buf, size_t len)
{
  return io_loop(IO_READ, fd, buf, len, 0);
}

ssize_t
full_pread(int fd, void *buf, size_t len, uint64_t off)
{
  return io_loop(IO_PREAD, fd, buf, len, off);
}

static int
write_status(ssize_t n)
{
  return n < 0 ? (int)n : 0;
}

int
full_write(int fd, const void *buf, size_t len)
{
  return write_status(io_loop(IO_WRITE, fd, (char *)buf, len, 0));
}

int
full_pwrite(int fd, const void *buf, size_t len, uint64_t off)
{
  return write_status(io_loop(IO_PWRITE, fd, (char *)buf, len, off));
}

int
full_send(int fd, const void *buf, size_t len)
{
  return write_status(io_loop(IO_SEND, fd, (char *)buf, len, 0));
}

ssize_t
read_small_file(const char *path, char *buf, size_t len)
{
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  ssize_t n;

  if (fd < 0)
    return -errno;
  n = full_read(fd, buf, len - 1);
  close(fd);
  if (n < 0)
    return n;
  while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == ' '))
    n--;
  buf[n] = '\0';
  return n;
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
  char copy[PATH_MAX];

  if ((size_t)snprintf(copy, sizeof copy, "%s", path) >= sizeof copy)
    return -ENAMETOOLONG;
  return fsync_dir(dirname(copy));
}

int
write_file_durable(const char *path, const char *tmp, const void *buf, size_t len)
{
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
  int r;

  if (fd < 0)
    return -errno;
  r = full_write(fd, buf, len);
  if (r == 0 && fsync(fd) < 0)
    r = -errno;
  close(fd);
  if (r == 0 && rename(tmp, path) < 0)
    r = -errno;
  if (r == 0)
    r = fsync_dir_of(path);
  if (r < 0)
    unlink(tmp);
  return r;
}
