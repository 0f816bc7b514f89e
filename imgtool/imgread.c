/* SPDX-License-Identifier: GPL-2.0-or-later */
/* imgtool: the files of an image, read back into the tree build writes.
 *
 * upgrade-report compares what versions of a base hold at the paths a
 * client's upper layer shadows; commit --layered folds that upper layer
 * onto its base.  Both read images offline, without mounting them: ext4
 * through libext2fs (imgread-ext4.c), squashfs through libsquashfs
 * (imgread-squashfs.c), behind one table of operations.  The result is the
 * struct tree of scan.c, with each node's data left in the image (src,
 * src_ino) until someone reads it, so a whole base costs its metadata in
 * memory, not its data.
 */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "imgtool.h"

struct node *
image_node_add(struct image_reader *rd, struct node *dir, const char *name,
               size_t namelen)
{
  struct node *k = xcalloc(1, sizeof *k);

  k->name = xmalloc(namelen + 1);
  memcpy(k->name, name, namelen);
  k->name[namelen] = '\0';
  k->path = xasprintf("%s/%s", dir->path, k->name);
  k->src = rd;
  XVEC_RESERVE(dir->kids, dir->kids_cap, dir->nkids + 1);
  dir->kids[dir->nkids++] = k;
  return k;
}

static int
cmp_node(const void *a, const void *b)
{
  return strcmp((*(struct node *const *)a)->name, (*(struct node *const *)b)->name);
}

void
image_dir_sort(struct node *dir)
{
  if (dir->nkids > 1)
    qsort(dir->kids, dir->nkids, sizeof *dir->kids, cmp_node);
}

int
image_tree_read(const char *path, struct tree *t, struct image_reader **out)
{
  int fd = open(path, O_RDONLY | O_CLOEXEC);

  if (fd < 0) {
    int r = -errno;
    memset(t, 0, sizeof *t);
    *out = NULL;
    log_err("cannot open image %s: %s", path, strerror(-r));
    return r;
  }
  return image_tree_read_fd(fd, path, t, out);
}

int
image_tree_read_fd(int fd, const char *name, struct tree *t, struct image_reader **out)
{
  struct image_reader *rd = xcalloc(1, sizeof *rd);
  struct image_fs fs;
  char why[200];
  int r;

  memset(t, 0, sizeof *t);
  *out = NULL;
  rd->path = xstrdup(name);
  rd->fd = fd;
  r = image_fs_read(rd->fd, &fs, why, sizeof why);
  if (r < 0) {
    log_err("cannot read image %s: %s", name, why);
    image_reader_close(rd);
    return r;
  }
  rd->ops = fs.format == IMAGE_SQUASHFS ? &image_reader_squashfs : &image_reader_ext4;
  t->root = xcalloc(1, sizeof *t->root);
  t->root->name = xstrdup("");
  t->root->path = xstrdup("");
  t->root->src = rd;
  t->root->hl_count = 1;
  r = rd->ops->read_tree(rd, t);
  if (r < 0) {
    tree_free(t);
    image_reader_close(rd);
    return r;
  }
  *out = rd;
  return 0;
}

void
image_reader_close(struct image_reader *rd)
{
  if (!rd)
    return;
  if (rd->ops)
    rd->ops->close(rd);
  if (rd->fd >= 0)
    close(rd->fd);
  free(rd->path);
  free(rd);
}

ssize_t
image_node_pread(const struct node *n, void *buf, size_t len, uint64_t off)
{
  const struct node *d = n->hl_first ? n->hl_first : n;

  return d->src->ops->pread(d->src, d, buf, len, off);
}

/* Copies n's data into fd, leaving holes where it reads as zeroes. */
static int
copy_node_data(const struct node *n, int fd)
{
  uint64_t size = (uint64_t)n->st.st_size, off = 0;
  char *buf = xmalloc(COPY_CHUNK);
  int r = ftruncate(fd, (off_t)size) < 0 ? -errno : 0;

  while (!r && off < size) {
    ssize_t got = image_node_pread(n, buf, COPY_CHUNK, off);

    if (got <= 0) {
      r = got < 0 ? (int)got : -EIO;
      break;
    }
    if (!is_zero(buf, (size_t)got))
      r = full_pwrite(fd, buf, (size_t)got, off);
    off += (uint64_t)got;
  }
  free(buf);
  return r;
}

int
node_open_data(const struct node *n)
{
  int fd, r;

  if (!n->src) {
    fd = open(n->path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
      r = -errno;
      log_err("cannot read %s: %s (fix its permissions or leave it out of "
              "the tree)",
              n->path, strerror(-r));
      return r;
    }
    return fd;
  }
  fd = anon_tmpfile();
  if (fd < 0) {
    log_err("cannot create a temporary file (TMPDIR): %s", strerror(-fd));
    return fd;
  }
  r = copy_node_data(n, fd);
  if (r < 0) {
    log_err("cannot read %s from %s: %s", n->path[0] ? n->path : "/", n->src->path,
            strerror(-r));
    close(fd);
    return r;
  }
  return fd;
}

struct node *
node_child_n(const struct node *dir, const char *name, size_t len)
{
  size_t lo = 0, hi = dir->nkids;

  while (lo < hi) {
    size_t mid = (lo + hi) / 2;
    const char *k = dir->kids[mid]->name;
    int c = strncmp(k, name, len);

    if (c == 0 && k[len])
      c = 1;
    if (c == 0)
      return dir->kids[mid];
    if (c < 0)
      lo = mid + 1;
    else
      hi = mid;
  }
  return NULL;
}

struct node *
node_child(const struct node *dir, const char *name)
{
  return dir ? node_child_n(dir, name, strlen(name)) : NULL;
}

struct node *
tree_lookup(const struct tree *t, const char *rel)
{
  struct node *n = t->root;

  while (n && *rel) {
    size_t len;

    while (*rel == '/')
      rel++;
    if (!*rel)
      break;
    len = strcspn(rel, "/");
    n = node_child_n(n, rel, len);
    rel += len;
  }
  return n;
}
