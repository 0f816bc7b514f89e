/* SPDX-License-Identifier: GPL-2.0-or-later */
/* imgtool: a squashfs image read as a tree, through libsquashfs.
 *
 * libsquashfs reads the whole directory hierarchy in one call; the
 * reader copies it into nodes and keeps its inodes (node->src_ino is an
 * index into them) for the data reader, which decompresses file data on
 * demand.  Hard links share an inode number.
 */
#include <config.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sysmacros.h>

#include <sqfs/compressor.h>
#include <sqfs/data_reader.h>
#include <sqfs/dir_reader.h>
#include <sqfs/error.h>
#include <sqfs/id_table.h>
#include <sqfs/inode.h>
#include <sqfs/io.h>
#include <sqfs/super.h>
#include <sqfs/xattr.h>
#include <sqfs/xattr_reader.h>

#include "imgtool.h"

struct sq_reader {
  sqfs_file_t *file;
  sqfs_super_t super;
  sqfs_compressor_t *cmp;
  sqfs_id_table_t *ids;
  sqfs_dir_reader_t *dr;
  sqfs_data_reader_t *data;
  sqfs_xattr_reader_t *xr;
  sqfs_tree_node_t *root;
  const sqfs_inode_generic_t **inodes; /* by node->src_ino */
  size_t ninodes, inodes_cap;
  struct node **by_number; /* first name of each inode number */
  size_t nnumbers;
};

static int
sq_errno(int r)
{
  switch (r) {
    case SQFS_ERROR_ALLOC: return -ENOMEM;
    case SQFS_ERROR_IO: return -EIO;
    case SQFS_ERROR_UNSUPPORTED: return -EOPNOTSUPP;
    default: return -EINVAL;
  }
}

static mode_t
sq_type(const sqfs_inode_generic_t *in)
{
  switch (in->base.type) {
    case SQFS_INODE_DIR:
    case SQFS_INODE_EXT_DIR: return S_IFDIR;
    case SQFS_INODE_FILE:
    case SQFS_INODE_EXT_FILE: return S_IFREG;
    case SQFS_INODE_SLINK:
    case SQFS_INODE_EXT_SLINK: return S_IFLNK;
    case SQFS_INODE_BDEV:
    case SQFS_INODE_EXT_BDEV: return S_IFBLK;
    case SQFS_INODE_CDEV:
    case SQFS_INODE_EXT_CDEV: return S_IFCHR;
    case SQFS_INODE_FIFO:
    case SQFS_INODE_EXT_FIFO: return S_IFIFO;
    default: return S_IFSOCK;
  }
}

/* Linux's new_encode_dev, as squashfs stores device numbers. */
static dev_t
sq_dev(uint32_t d)
{
  return makedev((d & 0xfff00) >> 8, (d & 0xff) | ((d >> 12) & 0xfff00));
}

static void
sq_stat(const sqfs_tree_node_t *t, struct stat *st)
{
  const sqfs_inode_generic_t *in = t->inode;
  sqfs_u64 size = 0;

  memset(st, 0, sizeof *st);
  st->st_mode = sq_type(in) | (in->base.mode & 07777);
  st->st_uid = t->uid;
  st->st_gid = t->gid;
  st->st_ino = in->base.inode_number;
  st->st_mtim.tv_sec = in->base.mod_time;
  st->st_nlink = 1;
  if (S_ISREG(st->st_mode)) {
    sqfs_inode_get_file_size(in, &size);
    st->st_size = (off_t)size;
    st->st_blocks = (blkcnt_t)((size + 511) / 512);
  } else if (in->base.type == SQFS_INODE_BDEV || in->base.type == SQFS_INODE_CDEV) {
    st->st_rdev = sq_dev(in->data.dev.devno);
  } else if (in->base.type == SQFS_INODE_EXT_BDEV ||
             in->base.type == SQFS_INODE_EXT_CDEV) {
    st->st_rdev = sq_dev(in->data.dev_ext.devno);
  } else if (S_ISLNK(st->st_mode)) {
    st->st_size = in->data.slink.target_size;
  }
}

static int
sq_xattrs(struct sq_reader *x, const sqfs_inode_generic_t *in, struct node *n)
{
  sqfs_xattr_id_t desc;
  sqfs_u32 idx = 0xffffffff;
  int r;

  sqfs_inode_get_xattr_index(in, &idx);
  if (idx == 0xffffffff || !x->xr)
    return 0;
  r = sqfs_xattr_reader_get_desc(x->xr, idx, &desc);
  if (!r)
    r = sqfs_xattr_reader_seek_kv(x->xr, &desc);
  if (r)
    return r;
  n->xattrs = xcalloc(desc.count ? desc.count : 1, sizeof *n->xattrs);
  for (sqfs_u32 i = 0; i < desc.count; i++) {
    sqfs_xattr_entry_t *key = NULL;
    sqfs_xattr_value_t *val = NULL;
    const char *prefix;
    struct xattr *a = &n->xattrs[n->nxattrs];

    r = sqfs_xattr_reader_read_key(x->xr, &key);
    if (!r)
      r = sqfs_xattr_reader_read_value(x->xr, key, &val);
    prefix = key ? sqfs_get_xattr_prefix(key->type & SQFS_XATTR_PREFIX_MASK) : NULL;
    if (!r && prefix) {
      a->name = xasprintf("%s%.*s", prefix, (int)key->size, (const char *)key->key);
      a->value = xmalloc(val->size ? val->size : 1);
      memcpy(a->value, val->value, val->size);
      a->len = val->size;
      n->nxattrs++;
    }
    sqfs_free(key);
    sqfs_free(val);
    if (r)
      return r;
  }
  return 0;
}

/* The node of one hierarchy entry: its inode, or the one it is another
 * name of. */
static int
sq_entry(struct image_reader *rd, const sqfs_tree_node_t *t, struct node *k)
{
  struct sq_reader *x = rd->priv;
  const sqfs_inode_generic_t *in = t->inode;
  uint32_t num = in->base.inode_number;
  int r;

  sq_stat(t, &k->st);
  if (!S_ISDIR(k->st.st_mode) && num < x->nnumbers && x->by_number[num]) {
    k->hl_first = x->by_number[num];
    k->hl_first->hl_count++;
    k->src_ino = k->hl_first->src_ino;
    return 0;
  }
  if (num < x->nnumbers)
    x->by_number[num] = k;
  k->hl_count = 1;
  XVEC_RESERVE(x->inodes, x->inodes_cap, x->ninodes + 1);
  k->src_ino = x->ninodes;
  x->inodes[x->ninodes++] = in;
  if (S_ISLNK(k->st.st_mode)) {
    k->link = xmalloc((size_t)k->st.st_size + 1);
    memcpy(k->link, in->extra, (size_t)k->st.st_size);
    k->link[k->st.st_size] = '\0';
  }
  r = sq_xattrs(x, in, k);
  if (r) {
    log_err("cannot read the extended attributes of %s in %s: %s", k->path, rd->path,
            strerror(-sq_errno(r)));
    return sq_errno(r);
  }
  return 0;
}

static int sq_dir(struct image_reader *rd, const sqfs_tree_node_t *t, struct node *dir);

/* The entries of t into dir, in canonical order, recursively. */
static int
sq_dir(struct image_reader *rd, const sqfs_tree_node_t *t, struct node *dir)
{
  const sqfs_tree_node_t **src;
  size_t n = 0;
  int r = 0;

  for (const sqfs_tree_node_t *c = t->children; c; c = c->next) {
    struct node *k =
        image_node_add(rd, dir, (const char *)c->name, strlen((const char *)c->name));
    k->src_ino = (uint64_t)n++; /* until sorted: the child's position */
  }
  src = xcalloc(n ? n : 1, sizeof *src);
  n = 0;
  for (const sqfs_tree_node_t *c = t->children; c; c = c->next)
    src[n++] = c;
  image_dir_sort(dir);
  for (size_t i = 0; i < dir->nkids && !r; i++) {
    struct node *k = dir->kids[i];
    const sqfs_tree_node_t *c = src[k->src_ino];

    r = sq_entry(rd, c, k);
    if (!r && S_ISDIR(k->st.st_mode))
      r = sq_dir(rd, c, k);
  }
  free(src);
  return r;
}

static int
sq_open(struct image_reader *rd, struct sq_reader *x)
{
  sqfs_compressor_config_t cfg;
  struct stat st;
  int r;

  if (fstat(rd->fd, &st) < 0)
    return -errno;
  x->file = sqfile_new(rd->fd, (uint64_t)st.st_size);
  if (!x->file)
    out_of_memory();
  r = sqfs_super_read(&x->super, x->file);
  if (!r)
    r = sqfs_compressor_config_init(&cfg, x->super.compression_id, x->super.block_size,
                                    SQFS_COMP_FLAG_UNCOMPRESS);
  if (!r)
    r = sqfs_compressor_create(&cfg, &x->cmp);
  if (!r && !(x->ids = sqfs_id_table_create(0)))
    r = SQFS_ERROR_ALLOC;
  if (!r)
    r = sqfs_id_table_read(x->ids, x->file, &x->super, x->cmp);
  if (!r && !(x->dr = sqfs_dir_reader_create(&x->super, x->cmp, x->file, 0)))
    r = SQFS_ERROR_ALLOC;
  if (!r && !(x->data = sqfs_data_reader_create(x->file, x->super.block_size, x->cmp, 0)))
    r = SQFS_ERROR_ALLOC;
  if (!r)
    r = sqfs_data_reader_load_fragment_table(x->data, &x->super);
  if (!r && !(x->super.flags & SQFS_FLAG_NO_XATTRS) &&
      x->super.xattr_id_table_start != 0xffffffffffffffffull) {
    if (!(x->xr = sqfs_xattr_reader_create(0)))
      r = SQFS_ERROR_ALLOC;
    if (!r)
      r = sqfs_xattr_reader_load(x->xr, &x->super, x->file, x->cmp);
  }
  if (!r)
    r = sqfs_dir_reader_get_full_hierarchy(x->dr, x->ids, NULL, 0, &x->root);
  return r ? sq_errno(r) : 0;
}

static int
sq_read_tree(struct image_reader *rd, struct tree *t)
{
  struct sq_reader *x = xcalloc(1, sizeof *x);
  int r;

  rd->priv = x;
  r = sq_open(rd, x);
  if (r < 0) {
    log_err("cannot read the squashfs filesystem in %s: %s", rd->path, strerror(-r));
    return r;
  }
  x->nnumbers = (size_t)x->super.inode_count + 1;
  x->by_number = xcalloc(x->nnumbers, sizeof *x->by_number);
  r = sq_entry(rd, x->root, t->root);
  if (!r)
    r = sq_dir(rd, x->root, t->root);
  return r;
}

static ssize_t
sq_pread(struct image_reader *rd, const struct node *n, void *buf, size_t len,
         uint64_t off)
{
  struct sq_reader *x = rd->priv;
  sqfs_s32 got;

  if (off >= (uint64_t)n->st.st_size)
    return 0;
  if (len > (1u << 30))
    len = 1u << 30;
  got = sqfs_data_reader_read(x->data, x->inodes[n->src_ino], off, buf, (sqfs_u32)len);
  return got < 0 ? sq_errno(got) : got;
}

static void
sq_close(struct image_reader *rd)
{
  struct sq_reader *x = rd->priv;

  if (!x)
    return;
  if (x->root)
    sqfs_dir_tree_destroy(x->root);
  sqfs_destroy(x->xr);
  sqfs_destroy(x->data);
  sqfs_destroy(x->dr);
  sqfs_destroy(x->ids);
  sqfs_destroy(x->cmp);
  sqfs_destroy(x->file);
  free(x->inodes);
  free(x->by_number);
  free(x);
}

const struct image_reader_ops image_reader_squashfs = {
  .read_tree = sq_read_tree,
  .pread = sq_pread,
  .close = sq_close,
};
