/* SPDX-License-Identifier: GPL-2.0-or-later */
/* imgtool: the disk a client sees, its base image with its overlay on top.
 *
 * commit publishes that disk as a new version; upgrade-report and commit
 * --layered read a layered client's state disk from it.  The overlay is
 * opened read-only (its journal replayed in memory; a torn tail is
 * ignored, not cut off) and the base is only read: nothing of the
 * client's changes, nor of what nbdsrv serves it, is touched.
 *
 * Copying costs what the data costs, not what the disk does: the base is
 * copied extent by extent (SEEK_DATA/SEEK_HOLE and copy_file_range, which
 * shares blocks where the filesystem can reflink), then each run of blocks
 * the client wrote comes from the overlay's data file (block N is at byte
 * N*4096 in both files) and each trimmed run is punched out.
 */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "imgtool.h"

/* Makes [off, off+len) of fd read as zeroes, freeing the space. */
static int
zero_range(int fd, uint64_t off, uint64_t len, char *buf)
{
  if (fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off, (off_t)len) ==
      0)
    return 0;
  if (errno != EOPNOTSUPP && errno != ENOSYS)
    return -errno;
  memset(buf, 0, COPY_CHUNK);
  while (len) {
    size_t chunk = len > COPY_CHUNK ? COPY_CHUNK : (size_t)len;
    int r = full_pwrite(fd, buf, chunk, off);
    if (r < 0)
      return r;
    off += chunk;
    len -= chunk;
  }
  return 0;
}

/* The base image, extent by extent, into the empty file out. */
static int
copy_base(int in, int out, uint64_t size, char *buf)
{
  uint64_t pos = 0;

  while (pos < size) {
    off_t data = lseek(in, (off_t)pos, SEEK_DATA), hole;
    int r;

    if (data < 0) {
      if (errno == ENXIO)
        return 0;        /* only a hole is left */
      data = (off_t)pos; /* no SEEK_DATA: copy everything */
      hole = (off_t)size;
    } else {
      hole = lseek(in, data, SEEK_HOLE);
      if (hole < 0 || (uint64_t)hole > size)
        hole = (off_t)size;
    }
    r = copy_range(in, out, (uint64_t)data, (uint64_t)(hole - data), true, buf);
    if (r < 0)
      return r;
    pos = (uint64_t)hole;
  }
  return 0;
}

/* Applies the overlay's map on top of the base copy in out. */
static int
apply_overlay(struct client_view *v, int out, char *buf)
{
  const struct ovl_map *m = &v->ov.map;
  uint64_t size = v->ov.info.size;

  for (uint64_t b = 0; b < m->nblocks;) {
    enum ovl_state s;
    uint64_t run = ovl_map_run(m, b, m->nblocks - b, &s);
    uint64_t off = b << OVL_BLOCK_SHIFT, len = run << OVL_BLOCK_SHIFT;
    int r = 0;

    /* The last block may reach past the end of an odd-sized image. */
    if (off + len > size)
      len = size - off;
    if (s == OVL_DATA) {
      r = copy_range(v->ov.data_fd, out, off, len, false, buf);
      v->written += len;
    } else if (s == OVL_ZERO) {
      r = zero_range(out, off, len, buf);
      v->zeroed += len;
    }
    if (r < 0)
      return r;
    b += run;
  }
  return 0;
}

/* Whether the file at path has the content id the overlay recorded
 * (hashed here: commit trusts no metadata for the bytes it builds on). */
static bool
has_recorded_content(const struct ovl_header_info *h, const char *path)
{
  char hex[65];
  uint64_t size;

  return h->base_sha256[0] && sha256_file(path, hex, &size) == 0 &&
         size == h->base_size && strcmp(hex, h->base_sha256) == 0;
}

/* Opens path as the base, when it holds the recorded content. */
static bool
open_base_at(struct client_view *v, const char *path)
{
  if (!has_recorded_content(&v->ov.info, path))
    return false;
  v->base_fd = open(path, O_RDONLY | O_CLOEXEC);
  if (v->base_fd >= 0 && fstat(v->base_fd, &v->bst) == 0)
    return true;
  if (v->base_fd >= 0)
    close(v->base_fd);
  v->base_fd = -1;
  return false;
}

/* The base by its content id, where its recorded path is not it: that
 * path with other times (a copy), or a version of v->store_namedir with
 * that content (a second server's store, as imgtool sync makes it). */
static bool
open_base_by_content(struct client_view *v)
{
  const struct ovl_header_info *h = &v->ov.info;
  unsigned *ids = NULL;
  size_t n = 0;
  bool found = open_base_at(v, h->base_path);

  if (!found && v->store_namedir && store_list(v->store_namedir, &ids, &n) == 0) {
    for (size_t i = n; i-- > 0 && !found;) {
      struct version_meta m;
      char *img;

      if (store_read_meta(v->store_namedir, ids[i], &m) < 0 ||
          strcmp(m.sha256, h->base_sha256) != 0)
        continue;
      img = store_version_path(v->store_namedir, ids[i], "img");
      found = open_base_at(v, img);
      if (found)
        log_info("overlay %s: its base %s is here as %s (same content)", v->prefix,
                 h->base_path, img);
      free(img);
    }
  }
  free(ids);
  return found;
}

static bool
same_file_as_recorded(const struct ovl_header_info *h, const struct stat *st)
{
  return (uint64_t)st->st_size == h->base_size &&
         (int64_t)st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec ==
             h->base_mtime_ns;
}

/* Opens the overlay's base, which must be unchanged since the overlay
 * was made on it: the file at its recorded path with its size and time,
 * or (where the overlay recorded a content id) a file with that content. */
static int
open_base(struct client_view *v)
{
  const struct ovl_header_info *h = &v->ov.info;
  int open_err;

  v->base_fd = open(h->base_path, O_RDONLY | O_CLOEXEC);
  open_err = v->base_fd < 0 || fstat(v->base_fd, &v->bst) < 0 ? errno : 0;
  if ((open_err || !same_file_as_recorded(h, &v->bst)) && h->base_sha256[0]) {
    /* Not the file it was made on (or none): a file with its content. */
    if (v->base_fd >= 0)
      close(v->base_fd);
    v->base_fd = -1;
    if (!open_base_by_content(v)) {
      if (open_err) {
        log_err("overlay %s was made on %s, which cannot be read: %s", v->prefix,
                h->base_path, strerror(open_err));
        return -open_err;
      }
      log_err("base %s changed since overlay %s was made on it (its content is not the "
              "one recorded, and no version of the store has it): the client's view "
              "cannot be rebuilt",
              h->base_path, v->prefix);
      return -ESTALE;
    }
  } else if (open_err) {
    log_err("overlay %s was made on %s, which cannot be read: %s", v->prefix,
            h->base_path, strerror(open_err));
    return -open_err;
  } else if (!same_file_as_recorded(h, &v->bst)) {
    log_err("base %s changed since overlay %s was made on it (size or mtime differ): the "
            "client's view cannot be rebuilt",
            h->base_path, v->prefix);
    return -ESTALE;
  }
  if (h->size != h->base_size) {
    log_err("overlay %s is %llu bytes but its base %s is %llu: not an "
            "overlay nbdsrv made",
            v->prefix, (unsigned long long)h->size, h->base_path,
            (unsigned long long)h->base_size);
    return -EINVAL;
  }
  return 0;
}

void
view_init(struct client_view *v)
{
  memset(v, 0, sizeof *v);
  v->ov.map_fd = v->ov.data_fd = -1;
  v->base_fd = -1;
}

int
view_open(const char *prefix, struct client_view *v)
{
  int r;

  v->prefix = xstrdup(prefix);
  r = ovl_file_open(prefix, false, &v->ov);
  if (r < 0) {
    if (r == -ENOENT)
      log_err("no overlay at %s (%s.map is missing): give the client's "
              "overlay, OVERLAY_DIR/NAME/ID",
              prefix, prefix);
    else if (r == -EUCLEAN)
      log_err("overlay %s is damaged: %s (imgtool check-overlay)", prefix, v->ov.damage);
    else
      log_err("cannot read overlay %s: %s", prefix, strerror(-r));
    return r;
  }
  return open_base(v);
}

int
view_write(struct client_view *v, int out)
{
  char *buf = xmalloc(COPY_CHUNK);
  int r = 0;

  if (ftruncate(out, (off_t)v->ov.info.size) < 0)
    r = -errno;
  if (!r)
    r = copy_base(v->base_fd, out, v->ov.info.size, buf);
  if (!r)
    r = apply_overlay(v, out, buf);
  free(buf);
  return r;
}

void
view_close(struct client_view *v)
{
  if (v->base_fd >= 0)
    close(v->base_fd);
  v->base_fd = -1;
  ovl_file_close(&v->ov);
  free(v->prefix);
  v->prefix = NULL;
}
