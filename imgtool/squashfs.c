/* SPDX-License-Identifier: GPL-2.0-or-later */
/* imgtool build --format squashfs: the scanned tree as a squashfs image,
 * written through libsquashfs (squashfs-tools-ng).
 *
 * Design notes
 * ------------
 * A squashfs image is written front to back: the superblock (rewritten at
 * the end), the file data, then the inode table, the directory table and
 * the fragment, export, id and xattr tables.  So the build runs in two
 * passes over the same inode order:
 *
 *  1. numbering: inode numbers 1..N in post-order (a directory after
 *     everything in it, entries in bytewise name order, a hard link's
 *     inode where its first name is), so that every directory's entries
 *     are written before the directory itself, as its listing needs their
 *     inode references;
 *  2. data: the regular files' contents in inode order (those --order
 *     lists first, in its order: sqorder.c) through the block processor,
 *     which compresses (on worker threads), drops all-zero blocks
 *     (sparse), packs tails into fragment blocks and deduplicates;
 *  3. metadata: every inode in inode order (with --order: its files
 *     first, the directories on their paths last, see sq_write_inodes),
 *     directories' listings kept in memory until the inode table is
 *     complete.
 *
 * Reproducible like the ext4 build: nothing depends on readdir order,
 * ctimes, host inode numbers or the number of worker threads (the block
 * processor writes blocks in submission order); timestamps are clamped to
 * SOURCE_DATE_EPOCH, which is also the superblock's time.  squashfs keeps
 * seconds only, as 32-bit unsigned numbers: earlier times become 0.
 *
 * What squashfs cannot hold is said, not silently changed: POSIX ACLs
 * (system.* attributes) are left out with a warning.
 */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <sqfs/block_processor.h>
#include <sqfs/block_writer.h>
#include <sqfs/compressor.h>
#include <sqfs/dir_writer.h>
#include <sqfs/error.h>
#include <sqfs/frag_table.h>
#include <sqfs/id_table.h>
#include <sqfs/inode.h>
#include <sqfs/io.h>
#include <sqfs/meta_writer.h>
#include <sqfs/super.h>
#include <sqfs/xattr_writer.h>

#include "imgtool.h"

#define SQ_BLOCK_SIZE(c) \
  ((c)->o->block_size ? (c)->o->block_size : SQFS_DEFAULT_BLOCK_SIZE)
#define SQ_PAD 4096u /* the image ends on a 4 KiB boundary: a block device */
#define SQ_NO_XATTR 0xffffffffu

/* One inode of the image, by inode number. */
struct sq_inode {
  struct node *node;
  struct node *parent;        /* directories: the one holding them */
  uint64_t ref;               /* where the inode is in the inode table */
  sqfs_inode_generic_t *file; /* regular files: from the block processor */
  bool written;               /* in the inode table already */
  bool late;                  /* a directory on a path of --order */
};

struct sqctx {
  const struct build_opts *o;
  struct tree *t;
  const struct build_clock *clk;
  sqfs_file_t *file;
  sqfs_compressor_t *cmp, *uncmp;
  sqfs_super_t super;
  sqfs_block_writer_t *bw;
  sqfs_frag_table_t *frags;
  sqfs_block_processor_t *proc;
  sqfs_id_table_t *ids;
  sqfs_xattr_writer_t *xw;
  sqfs_meta_writer_t *im, *dm;
  sqfs_dir_writer_t *dw;
  struct build_order order; /* --order's files, or none */
  struct sq_inode *inodes;  /* [1..count] */
  size_t inodes_cap;
  uint32_t count;
  char *buf;
  size_t bufsz;
  struct build_progress pg;
  uint64_t acls_dropped;
  const char *acl_example;
};

/* Why libsquashfs failed (e: an SQFS_ERROR), in words; for an I/O error
 * the system's, as the image file saw it. */
static const char *
sq_why(const struct sqctx *c, int e)
{
  switch (e) {
    case SQFS_ERROR_ALLOC: return "out of memory";
    case SQFS_ERROR_IO:
      return c->file && sqfile_errno(c->file) ? strerror(sqfile_errno(c->file))
                                              : "input/output error";
    case SQFS_ERROR_COMPRESSOR: return "compressor failure";
    case SQFS_ERROR_OVERFLOW: return "too large for squashfs";
    case SQFS_ERROR_OUT_OF_BOUNDS: return "out of squashfs's bounds";
    case SQFS_ERROR_UNSUPPORTED: return "not supported by squashfs";
    case SQFS_ERROR_ARG_INVALID: return "invalid argument";
    default: return "internal error of libsquashfs";
  }
}

/* ---- pass 1: inode numbers ---- */

static uint32_t
sq_add_inode(struct sqctx *c, struct node *n)
{
  XVEC_RESERVE(c->inodes, c->inodes_cap, (size_t)c->count + 2);
  n->ino = ++c->count;
  memset(&c->inodes[n->ino], 0, sizeof c->inodes[n->ino]);
  c->inodes[n->ino].node = n;
  return n->ino;
}

/* Numbers directory n's inodes, then n itself (post-order). */
static void
sq_number(struct sqctx *c, struct node *n)
{
  for (size_t i = 0; i < n->nkids; i++) {
    struct node *k = n->kids[i];
    struct node *tgt = k->hl_first ? k->hl_first : k;

    if (S_ISDIR(k->st.st_mode)) {
      sq_number(c, k);
      c->inodes[k->ino].parent = n;
    } else if (!tgt->ino) {
      sq_add_inode(c, tgt);
    }
  }
  sq_add_inode(c, n);
}

/* ---- pass 2: file data ---- */

/* Feeds one regular file's st_size bytes to the block processor: a file
 * that shrank since the scan reads as zeros at the end, one that grew is
 * cut at its scanned size (as in the ext4 build). */
static int
sq_file_data(struct sqctx *c, struct sq_inode *si)
{
  const struct node *n = si->node;
  uint64_t size = (uint64_t)n->st.st_size, pos = 0;
  int fd, r = 0;

  fd = node_open_data(n);
  if (fd < 0)
    return fd;
  r = sqfs_block_processor_begin_file(c->proc, &si->file, NULL, 0);
  while (!r && pos < size) {
    size_t want = size - pos < c->bufsz ? (size_t)(size - pos) : c->bufsz;
    ssize_t got = full_read(fd, c->buf, want);

    if (got < 0) {
      log_err("cannot read %s: %s", n->path, strerror((int)-got));
      close(fd);
      return (int)got;
    }
    memset(c->buf + got, 0, want - (size_t)got);
    r = sqfs_block_processor_append(c->proc, c->buf, want);
    pos += want;
    c->pg.done_bytes += want;
    build_progress_show(&c->pg, false);
  }
  close(fd);
  if (!r)
    r = sqfs_block_processor_end_file(c->proc);
  if (r) {
    log_err("cannot write the data of %s into %s: %s", n->path, c->o->output,
            sq_why(c, r));
    return -EIO;
  }
  c->pg.done_inodes++;
  return 0;
}

/* Writes inode ino's data unless it is written already. */
static int
sq_file_once(struct sqctx *c, uint32_t ino)
{
  if (c->inodes[ino].file)
    return 0;
  return sq_file_data(c, &c->inodes[ino]);
}

/* The files of --order first, in its order, then the rest in inode
 * order. */
static int
sq_write_data(struct sqctx *c)
{
  int r = 0;

  if (c->o->order) {
    r = build_order_read(c->o->order, c->t, &c->order);
    for (size_t i = 0; !r && i < c->order.count; i++)
      r = sq_file_once(c, c->order.nodes[i]->ino);
    if (r < 0)
      return r;
  }
  for (uint32_t i = 1; i <= c->count; i++) {
    if (!S_ISREG(c->inodes[i].node->st.st_mode))
      continue;
    r = sq_file_once(c, i);
    if (r < 0)
      return r;
  }
  r = sqfs_block_processor_finish(c->proc);
  if (r) {
    log_err("cannot write the file data into %s: %s", c->o->output, sq_why(c, r));
    return -EIO;
  }
  return 0;
}

/* ---- pass 3: inodes and directories ---- */

/* The node's xattrs as an index into the xattr table (SQ_NO_XATTR when
 * it has none squashfs can keep). */
static int
sq_xattrs(struct sqctx *c, const struct node *n, uint32_t *idx)
{
  int r;

  *idx = SQ_NO_XATTR;
  if (!n->nxattrs)
    return 0;
  r = sqfs_xattr_writer_begin(c->xw, 0);
  for (size_t i = 0; !r && i < n->nxattrs; i++) {
    /* squashfs has the user, trusted and security namespaces only. */
    if (strncmp(n->xattrs[i].name, "system.", 7) == 0) {
      if (!c->acls_dropped++)
        c->acl_example = n->path;
      continue;
    }
    r = sqfs_xattr_writer_add(c->xw, n->xattrs[i].name, n->xattrs[i].value,
                              n->xattrs[i].len);
  }
  if (!r)
    r = sqfs_xattr_writer_end(c->xw, idx);
  return r;
}

/* squashfs's device number: the kernel's new_encode_dev. */
static uint32_t
sq_devno(dev_t d)
{
  uint32_t ma = major(d), mi = minor(d);

  return (mi & 0xff) | (ma << 8) | ((mi & ~0xffu) << 12);
}

/* A new inode for a node that is neither a file nor a directory. */
static sqfs_inode_generic_t *
sq_leaf_inode(const struct node *n)
{
  size_t extra = n->link ? strlen(n->link) : 0;
  sqfs_inode_generic_t *in = xcalloc(1, sizeof *in + extra);
  mode_t m = n->st.st_mode;

  if (S_ISLNK(m)) {
    in->base.type = SQFS_INODE_SLINK;
    in->data.slink.nlink = n->hl_count;
    in->data.slink.target_size = (sqfs_u32)extra;
    in->payload_bytes_available = in->payload_bytes_used = (sqfs_u32)extra;
    memcpy(in->extra, n->link, extra);
  } else if (S_ISCHR(m) || S_ISBLK(m)) {
    in->base.type = S_ISCHR(m) ? SQFS_INODE_CDEV : SQFS_INODE_BDEV;
    in->data.dev.nlink = n->hl_count;
    in->data.dev.devno = sq_devno(n->st.st_rdev);
  } else {
    in->base.type = S_ISFIFO(m) ? SQFS_INODE_FIFO : SQFS_INODE_SOCKET;
    in->data.ipc.nlink = n->hl_count;
  }
  return in;
}

/* Writes directory n's listing; returns its inode (NULL: error in *r). */
static sqfs_inode_generic_t *
sq_dir_inode(struct sqctx *c, uint32_t ino, uint32_t xattr, int *r)
{
  const struct node *n = c->inodes[ino].node;
  const struct node *parent = c->inodes[ino].parent;
  sqfs_inode_generic_t *in;
  uint32_t nlink = 2;

  *r = sqfs_dir_writer_begin(c->dw, 0);
  for (size_t i = 0; !*r && i < n->nkids; i++) {
    const struct node *k = n->kids[i];
    const struct node *tgt = k->hl_first ? k->hl_first : k;

    nlink += S_ISDIR(k->st.st_mode) ? 1 : 0;
    *r = sqfs_dir_writer_add_entry(c->dw, k->name, tgt->ino, c->inodes[tgt->ino].ref,
                                   (sqfs_u16)tgt->st.st_mode);
  }
  if (!*r)
    *r = sqfs_dir_writer_end(c->dw);
  if (*r)
    return NULL;
  /* The root's parent: one past the last inode, as mksquashfs has it. */
  in = sqfs_dir_writer_create_inode(c->dw, 0, xattr, parent ? parent->ino : c->count + 1);
  if (!in) {
    *r = SQFS_ERROR_ALLOC;
    return NULL;
  }
  if (in->base.type == SQFS_INODE_DIR)
    in->data.dir.nlink = nlink;
  else
    in->data.dir_ext.nlink = nlink;
  return in;
}

/* The file inode the block processor made, with the link count. */
static sqfs_inode_generic_t *
sq_file_inode(struct sq_inode *si)
{
  sqfs_inode_generic_t *in = si->file;

  si->file = NULL;
  if (si->node->hl_count > 1) {
    sqfs_inode_make_extended(in);
    in->data.file_ext.nlink = si->node->hl_count;
  }
  return in;
}

static uint32_t
sq_time(const struct sqctx *c, const struct node *n)
{
  int64_t t = n->st.st_mtim.tv_sec;

  if (c->clk->clamp_set && t > c->clk->clamp)
    t = c->clk->clamp;
  return t < 0 ? 0 : t > 0xffffffffLL ? 0xffffffffu : (uint32_t)t;
}

/* Writes inode ino into the inode table. */
static int
sq_write_inode(struct sqctx *c, uint32_t ino)
{
  struct sq_inode *si = &c->inodes[ino];
  const struct node *n = si->node;
  sqfs_inode_generic_t *in = NULL;
  uint32_t xattr, offset;
  sqfs_u64 block;
  int r;

  if (si->written)
    return 0;
  si->written = true;
  r = sq_xattrs(c, n, &xattr);

  if (!r) {
    if (S_ISDIR(n->st.st_mode))
      in = sq_dir_inode(c, ino, xattr, &r);
    else
      in = S_ISREG(n->st.st_mode) ? sq_file_inode(si) : sq_leaf_inode(n);
  }
  if (!in)
    return r;
  in->base.mode = (sqfs_u16)n->st.st_mode;
  in->base.mod_time = sq_time(c, n);
  in->base.inode_number = ino;
  r = sqfs_inode_set_xattr_index(in, xattr);
  if (!r)
    r = sqfs_id_table_id_to_index(c->ids, n->st.st_uid, &in->base.uid_idx);
  if (!r)
    r = sqfs_id_table_id_to_index(c->ids, n->st.st_gid, &in->base.gid_idx);
  sqfs_meta_writer_get_position(c->im, &block, &offset);
  si->ref = block << 16 | offset;
  if (!r)
    r = sqfs_meta_writer_write_inode(c->im, in);
  free(in);
  if (!S_ISREG(n->st.st_mode))
    c->pg.done_inodes++;
  return r;
}

/* Writes inode i (see sq_write_inode), saying why it failed. */
static int
sq_add_to_table(struct sqctx *c, uint32_t i)
{
  int r = sq_write_inode(c, i);

  if (r) {
    log_err("cannot add %s to %s: %s", c->inodes[i].node->path, c->o->output,
            sq_why(c, r));
    return -EIO;
  }
  build_progress_show(&c->pg, false);
  return 0;
}

/* Every inode into the table: --order's files first (a file's inode
 * waits for no other), then the rest in inode order, the directories on
 * the paths of --order last, still in inode order (each after what it
 * holds: a directory not on those paths holds none of them).  So what a
 * boot looks up shares few metadata blocks, of inodes and listings. */
static int
sq_write_inodes(struct sqctx *c)
{
  int r = 0;

  for (size_t k = 0; !r && k < c->order.count; k++)
    r = sq_add_to_table(c, c->order.nodes[k]->ino);
  for (size_t k = 0; k < c->order.ndirs; k++)
    c->inodes[c->order.dirs[k]->ino].late = true;
  for (uint32_t i = 1; !r && i <= c->count; i++)
    if (!c->inodes[i].late)
      r = sq_add_to_table(c, i);
  for (uint32_t i = 1; !r && i <= c->count; i++)
    if (c->inodes[i].late)
      r = sq_add_to_table(c, i);
  return r;
}

static int
sq_write_tree(struct sqctx *c)
{
  int r;

  c->super.inode_table_start = c->file->get_size(c->file);
  if (sq_write_inodes(c) < 0)
    return -EIO;
  r = sqfs_meta_writer_flush(c->im);
  if (!r)
    r = sqfs_meta_writer_flush(c->dm);
  c->super.root_inode_ref = c->inodes[c->count].ref;
  c->super.directory_table_start = c->file->get_size(c->file);
  if (!r)
    r = sqfs_meta_write_write_to_file(c->dm);
  c->super.inode_count = c->count;
  if (r) {
    log_err("cannot write the inodes and directories of %s: %s", c->o->output,
            sq_why(c, r));
    return -EIO;
  }
  return 0;
}

/* The tables after the directories, the final superblock, the padding. */
static int
sq_write_tables(struct sqctx *c)
{
  static const uint8_t zero[SQ_PAD];
  uint64_t end = 0;
  int r = sqfs_frag_table_write(c->frags, c->file, &c->super, c->cmp);

  if (!r)
    r = sqfs_dir_writer_write_export_table(c->dw, c->file, c->cmp, c->count,
                                           c->inodes[c->count].ref, &c->super);
  if (!r)
    r = sqfs_id_table_write(c->ids, c->file, &c->super, c->cmp);
  if (!r)
    r = sqfs_xattr_writer_flush(c->xw, c->file, &c->super, c->cmp);
  if (!r) {
    end = c->file->get_size(c->file);
    c->super.bytes_used = end;
    r = sqfs_super_write(&c->super, c->file);
  }
  if (!r && end % SQ_PAD)
    r = c->file->write_at(c->file, end, zero, SQ_PAD - end % SQ_PAD);
  if (r) {
    log_err("cannot write the tables of %s: %s", c->o->output, sq_why(c, r));
    return -EIO;
  }
  return 0;
}

/* ---- setting up and tearing down ---- */

static unsigned
sq_workers(void)
{
  cpu_set_t set;
  int n = 1;

  /* The CPUs this process may run on (taskset and cgroups count). */
  if (sched_getaffinity(0, sizeof set, &set) == 0)
    n = CPU_COUNT(&set);
  return n < 1 ? 1 : n > 16 ? 16 : (unsigned)n;
}

/* The compressor, and a second one the block processor decompresses
 * with to compare fragments that look duplicate. */
static int
sq_compressors(struct sqctx *c)
{
  sqfs_compressor_config_t cfg;
  int id = sqfs_compressor_id_from_name(c->o->compression), r;

  if (id < 0)
    return SQFS_ERROR_UNSUPPORTED;
  r = sqfs_compressor_config_init(&cfg, (SQFS_COMPRESSOR)id, SQ_BLOCK_SIZE(c), 0);
  if (!r)
    r = sqfs_compressor_create(&cfg, &c->cmp);
  if (!r)
    r = sqfs_compressor_config_init(&cfg, (SQFS_COMPRESSOR)id, SQ_BLOCK_SIZE(c),
                                    SQFS_COMP_FLAG_UNCOMPRESS);
  if (!r)
    r = sqfs_compressor_create(&cfg, &c->uncmp);
  if (!r)
    r = sqfs_super_init(&c->super, SQ_BLOCK_SIZE(c),
                        c->clk->now < 0 ? 0 : (sqfs_u32)c->clk->now, (SQFS_COMPRESSOR)id);
  return r;
}

static int
sq_open(struct sqctx *c, int fd)
{
  sqfs_block_processor_desc_t d;
  unsigned workers = sq_workers();
  int r;

  c->file = sqfile_new(fd, 0);
  r = sq_compressors(c);
  if (!r)
    r = sqfs_super_write(&c->super, c->file);
  if (!r)
    r = c->cmp->write_options(c->cmp, c->file);
  if (r > 0) {
    c->super.flags |= SQFS_FLAG_COMPRESSOR_OPTIONS;
    r = 0;
  }
  if (r)
    return r;
  c->bw = sqfs_block_writer_create(c->file, SQFS_DEVBLK_SIZE, 0);
  c->frags = sqfs_frag_table_create(0);
  c->ids = sqfs_id_table_create(0);
  c->xw = sqfs_xattr_writer_create(0);
  c->im = sqfs_meta_writer_create(c->file, c->cmp, 0);
  c->dm = sqfs_meta_writer_create(c->file, c->cmp, SQFS_META_WRITER_KEEP_IN_MEMORY);
  c->dw =
      c->dm ? sqfs_dir_writer_create(c->dm, SQFS_DIR_WRITER_CREATE_EXPORT_TABLE) : NULL;
  if (!c->bw || !c->frags || !c->ids || !c->xw || !c->im || !c->dw)
    return SQFS_ERROR_ALLOC;
  memset(&d, 0, sizeof d);
  d.size = sizeof d;
  d.max_block_size = SQ_BLOCK_SIZE(c);
  d.num_workers = workers;
  d.max_backlog = workers * 8;
  d.cmp = c->cmp;
  d.wr = c->bw;
  d.tbl = c->frags;
  d.file = c->file;
  d.uncmp = c->uncmp;
  return sqfs_block_processor_create_ex(&d, &c->proc);
}

static void
sq_close(struct sqctx *c)
{
  /* The block processor first: its threads use the others. */
  sqfs_destroy(c->proc);
  for (uint32_t i = 1; i <= c->count; i++)
    free(c->inodes[i].file);
  free(c->inodes);
  build_order_free(&c->order);
  sqfs_destroy(c->dw);
  sqfs_destroy(c->dm);
  sqfs_destroy(c->im);
  sqfs_destroy(c->xw);
  sqfs_destroy(c->ids);
  sqfs_destroy(c->frags);
  sqfs_destroy(c->bw);
  sqfs_destroy(c->uncmp);
  sqfs_destroy(c->cmp);
  sqfs_destroy(c->file);
  free(c->buf);
}

int
build_squashfs(const struct build_opts *o, struct tree *t, const struct build_clock *clk,
               int fd)
{
  struct sqctx c = { .o = o, .t = t, .clk = clk };
  int r = sq_open(&c, fd);

  if (r) {
    log_err("cannot start the squashfs image %s (%s compression): %s", o->output,
            o->compression, sq_why(&c, r));
    sq_close(&c);
    return -EIO;
  }
  build_progress_init(&c.pg, o, t);
  c.bufsz = 1 << 20;
  c.buf = xmalloc(c.bufsz);
  sq_number(&c, t->root);
  r = sq_write_data(&c);
  if (!r)
    r = sq_write_tree(&c);
  if (!r)
    r = sq_write_tables(&c);
  sq_close(&c);
  if (!r)
    build_progress_show(&c.pg, true);
  if (!r && c.acls_dropped)
    log_warn("squashfs keeps no POSIX ACLs (system.* attributes): left out "
             "on %llu entries, e.g. %s",
             (unsigned long long)c.acls_dropped, c.acl_example);
  return r;
}
