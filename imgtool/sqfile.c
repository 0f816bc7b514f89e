/* SPDX-License-Identifier: GPL-2.0-or-later */
/* imgtool: libsquashfs's file interface (sqfs_file_t) over a file
 * descriptor we own.
 *
 * Why not sqfs_open_file(): the image being built is an unnamed file
 * (O_TMPFILE) or a registered temporary that imgtool already opened and
 * later links or publishes itself; reading an image goes through the fd
 * that was checked.  libsquashfs only needs positioned reads and writes
 * and the size.
 */
#include <config.h>

#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

#include <sqfs/error.h>
#include <sqfs/io.h>

#include "imgtool.h"

struct sqfile {
  sqfs_file_t base;
  int fd;
  uint64_t size; /* the end of what is written (or, read-only, the file) */
  int err;       /* errno of the last failed call, for the message */
};

static int
sqfile_read_at(sqfs_file_t *f, sqfs_u64 off, void *buf, size_t len)
{
  struct sqfile *sf = (struct sqfile *)f;
  ssize_t got;

  if (off > sf->size || len > sf->size - off)
    return SQFS_ERROR_OUT_OF_BOUNDS;
  got = full_pread(sf->fd, buf, len, off);
  if (got < 0)
    sf->err = (int)-got;
  return got == (ssize_t)len ? 0 : got < 0 ? SQFS_ERROR_IO : SQFS_ERROR_OUT_OF_BOUNDS;
}

static int
sqfile_write_at(sqfs_file_t *f, sqfs_u64 off, const void *buf, size_t len)
{
  struct sqfile *sf = (struct sqfile *)f;
  int r = len ? full_pwrite(sf->fd, buf, len, off) : 0;

  if (r < 0) {
    sf->err = -r;
    return SQFS_ERROR_IO;
  }
  if (off + len > sf->size)
    sf->size = off + len;
  return 0;
}

static sqfs_u64
sqfile_get_size(const sqfs_file_t *f)
{
  return ((const struct sqfile *)f)->size;
}

static int
sqfile_truncate(sqfs_file_t *f, sqfs_u64 size)
{
  struct sqfile *sf = (struct sqfile *)f;

  if (ftruncate(sf->fd, (off_t)size) < 0) {
    sf->err = errno;
    return SQFS_ERROR_IO;
  }
  sf->size = size;
  return 0;
}

static void
sqfile_destroy(sqfs_object_t *o)
{
  free(o); /* the fd stays the caller's */
}

struct sqfs_file_t *
sqfile_new(int fd, uint64_t size)
{
  struct sqfile *sf = xcalloc(1, sizeof *sf);

  sf->base.base.destroy = sqfile_destroy;
  sf->base.read_at = sqfile_read_at;
  sf->base.write_at = sqfile_write_at;
  sf->base.get_size = sqfile_get_size;
  sf->base.truncate = sqfile_truncate;
  sf->fd = fd;
  sf->size = size;
  return &sf->base;
}

int
sqfile_errno(const struct sqfs_file_t *f)
{
  return ((const struct sqfile *)f)->err;
}
