/* SPDX-License-Identifier: GPL-2.0-or-later */
/* imgtool build: turns a client tree into an ext4 image with libext2fs.
 *
 * Design notes
 * ------------
 * The filesystem is created and populated with libext2fs (e2fsprogs), not
 * by driving mke2fs: that gives full control over everything that would
 * otherwise make two builds of the same tree differ:
 *
 *  - UUID and directory hash seed come from a SHA-256 of the tree's
 *    metadata in canonical (sorted) order (scan.c), or from --uuid and
 *    --hash-seed;
 *  - every timestamp (inodes and superblock) is clamped to
 *    SOURCE_DATE_EPOCH; ctime/atime/crtime are set to the clamped mtime, so
 *    the source's ctimes (which differ in every copy) never show;
 *  - inodes and blocks are allocated in one fixed order: a directory's
 *    entries in bytewise name order, each directory's own entries before
 *    its subdirectories' contents.
 *
 * Directory blocks are laid out here (all names of a directory are known
 * in advance) instead of one ext2fs_link() per name, which rescans the
 * directory each time; that is what keeps large trees fast.  Directories
 * are linear (no htree), as mke2fs -d makes them; the kernel reads both.
 *
 * The image is written to a new sparse file, so blocks never written (the
 * inode tables, the journal) are already zero: the journal is created
 * without zeroing it, and every group is flagged INODE_ZEROED so that the
 * kernel's lazy itable init never writes into a client's overlay.
 *
 * Sizing: used space (estimated by the scan) plus the filesystem's own
 * metadata, then headroom; the geometry is computed in memory and grown
 * until the free space fits, before anything big is written.
 */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <libgen.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <et/com_err.h>
#include <ext2fs/ext2fs.h>

#include "imgtool.h"

#define BLK 4096u
#define INODE_SIZE 256u
#define LPF_BLOCKS 4 /* lost+found: 16 KiB like mke2fs, room for e2fsck */

struct bctx {
  ext2_filsys fs;
  const struct build_opts *o;
  struct tree *t;
  int64_t clamp;
  bool clamp_set;
  time_t now;
  char *buf; /* file copy buffer */
  size_t bufsz;
  char *dirbuf; /* directory blocks being laid out */
  size_t dirbuf_cap;
  struct build_progress pg;
  const char *failed_path; /* for the error message */
};

static const char *
ext2_strerror(errcode_t e)
{
  if (e > 0 && e < 4096)
    return strerror((int)e);
  return error_message(e);
}

static bool
is_nospace(errcode_t e)
{
  return e == EXT2_ET_BLOCK_ALLOC_FAIL || e == EXT2_ET_INODE_ALLOC_FAIL ||
         e == EXT2_ET_DIR_NO_SPACE || e == ENOSPC || e == EXT2_ET_RES_GDT_BLOCKS;
}

static int
errcode_to_errno(errcode_t e)
{
  if (e > 0 && e < 4096)
    return -(int)e;
  if (is_nospace(e))
    return -ENOSPC;
  return -EIO;
}

/* ext4 keeps seconds beyond 2038 in two extra epoch bits. */
static uint32_t
time_extra(int64_t sec, long nsec)
{
  return ((uint32_t)nsec << EXT4_EPOCH_BITS) |
         (uint32_t)(((sec - (int32_t)sec) >> 32) & EXT4_EPOCH_MASK);
}

static void
inode_fill(struct bctx *c, const struct stat *st, uint16_t links,
           struct ext2_inode_large *in)
{
  int64_t sec = st->st_mtim.tv_sec;
  long nsec = st->st_mtim.tv_nsec;
  uint32_t ex;

  if (c->clamp_set && sec >= c->clamp) {
    sec = c->clamp;
    nsec = 0;
  }
  memset(in, 0, sizeof *in);
  in->i_mode = (uint16_t)st->st_mode;
  in->i_uid = (uint16_t)st->st_uid;
  in->osd2.linux2.l_i_uid_high = (uint16_t)(st->st_uid >> 16);
  in->i_gid = (uint16_t)st->st_gid;
  in->osd2.linux2.l_i_gid_high = (uint16_t)(st->st_gid >> 16);
  in->i_links_count = links;
  in->i_extra_isize = sizeof(struct ext2_inode_large) - EXT2_GOOD_OLD_INODE_SIZE;
  ex = time_extra(sec, nsec);
  in->i_atime = in->i_ctime = in->i_mtime = in->i_crtime = (uint32_t)sec;
  in->i_atime_extra = in->i_ctime_extra = in->i_mtime_extra = in->i_crtime_extra = ex;
}

/* Sets up an empty extent tree in the inode (before it is first written). */
static errcode_t
inode_init_extents(struct bctx *c, ext2_ino_t ino, struct ext2_inode_large *in)
{
  ext2_extent_handle_t h;
  errcode_t e;

  in->i_flags &= ~EXT4_EXTENTS_FL;
  e = ext2fs_extent_open2(c->fs, ino, (struct ext2_inode *)in, &h);
  if (e)
    return e;
  ext2fs_extent_free(h);
  return 0;
}

static errcode_t
write_inode(struct bctx *c, ext2_ino_t ino, struct ext2_inode_large *in)
{
  return ext2fs_write_inode_full(c->fs, ino, (struct ext2_inode *)in, sizeof *in);
}

static errcode_t
read_inode(struct bctx *c, ext2_ino_t ino, struct ext2_inode_large *in)
{
  memset(in, 0, sizeof *in);
  return ext2fs_read_inode_full(c->fs, ino, (struct ext2_inode *)in, sizeof *in);
}

static errcode_t
set_xattrs(struct bctx *c, ext2_ino_t ino, const struct node *n)
{
  struct ext2_xattr_handle *h;
  errcode_t e, e2;

  if (!n->nxattrs)
    return 0;
  e = ext2fs_xattrs_open(c->fs, ino, &h);
  if (e)
    return e;
  e = ext2fs_xattrs_read(h);
  /* Each set rewrites the attribute area; all go in one handle so the
   * whole set is written once on close. */
  for (size_t i = 0; !e && i < n->nxattrs; i++)
    e = ext2fs_xattr_set(h, n->xattrs[i].name, n->xattrs[i].value, n->xattrs[i].len);
  e2 = ext2fs_xattrs_close(&h);
  return e ? e : e2;
}

static errcode_t
alloc_inode(struct bctx *c, ext2_ino_t parent, mode_t mode, ext2_ino_t *ino)
{
  errcode_t e = ext2fs_new_inode(c->fs, parent, (int)mode, NULL, ino);

  if (e)
    return e;
  ext2fs_inode_alloc_stats2(c->fs, *ino, +1, S_ISDIR(mode) ? 1 : 0);
  return 0;
}

/* Copies the regular file's data, skipping holes and all-zero blocks so
 * sparse files stay sparse. */
static errcode_t
copy_data(struct bctx *c, ext2_ino_t ino, const struct node *n)
{
  uint64_t size = (uint64_t)n->st.st_size, start_bytes = c->pg.done_bytes;
  ext2_file_t f;
  errcode_t e = 0, e2;
  off_t pos = 0;
  int fd;

  fd = node_open_data(n);
  if (fd < 0) {
    c->failed_path = n->path;
    return (errcode_t)-fd;
  }
  e = ext2fs_file_open(c->fs, ino, EXT2_FILE_WRITE, &f);
  if (e) {
    close(fd);
    return e;
  }
  while ((uint64_t)pos < size) {
    off_t data = lseek(fd, pos, SEEK_DATA), hole;

    if (data < 0) {
      if (errno == ENXIO)
        break;    /* only a hole is left */
      data = pos; /* no SEEK_DATA support: read everything */
      hole = (off_t)size;
    } else {
      hole = lseek(fd, data, SEEK_HOLE);
      if (hole < 0 || (uint64_t)hole > size)
        hole = (off_t)size;
    }
    data &= ~(off_t)(BLK - 1);
    while (data < hole) {
      size_t want = (size_t)(hole - data) < c->bufsz ? (size_t)(hole - data) : c->bufsz;
      ssize_t got = full_pread(fd, c->buf, want, (uint64_t)data);
      size_t i = 0;

      if (got < 0) {
        log_err("cannot read %s: %s", n->path, strerror((int)-got));
        c->failed_path = n->path;
        e = (errcode_t)-got;
        goto out;
      }
      if (got == 0)
        break; /* the file shrank while we read it */
      while (i < (size_t)got) {
        size_t j = i, len;
        unsigned int written;

        /* Find the next run of non-zero blocks. */
        while (i < (size_t)got &&
               is_zero(c->buf + i, (size_t)got - i < BLK ? (size_t)got - i : BLK))
          i += BLK;
        if (i >= (size_t)got)
          break;
        j = i;
        while (j < (size_t)got &&
               !is_zero(c->buf + j, (size_t)got - j < BLK ? (size_t)got - j : BLK))
          j += BLK;
        len = (j < (size_t)got ? j : (size_t)got) - i;
        e = ext2fs_file_llseek(f, (uint64_t)data + i, EXT2_SEEK_SET, NULL);
        if (!e)
          e = ext2fs_file_write(f, c->buf + i, (unsigned int)len, &written);
        if (e)
          goto out;
        i = j;
      }
      data += got;
      c->pg.done_bytes += (uint64_t)got;
      build_progress_show(&c->pg, false);
    }
    pos = hole;
  }
  e = ext2fs_file_set_size2(f, size);
  /* Holes count as done, so progress adds up to the tree's file bytes. */
  c->pg.done_bytes = start_bytes + size;
out:
  e2 = ext2fs_file_close(f);
  close(fd);
  return e ? e : e2;
}

static errcode_t
make_symlink(struct bctx *c, ext2_ino_t ino, const struct node *n)
{
  struct ext2_inode_large in, old;
  errcode_t e;

  /* No name: we link it ourselves with the rest of the directory. */
  e = ext2fs_symlink(c->fs, 0, ino, NULL, n->link);
  if (e)
    return e;
  e = read_inode(c, ino, &old);
  if (e)
    return e;
  inode_fill(c, &n->st, 1, &in);
  /* Keep what ext2fs_symlink set up: the target or its block. */
  memcpy(in.i_block, old.i_block, sizeof in.i_block);
  in.i_flags = old.i_flags;
  in.i_size = old.i_size;
  in.i_blocks = old.i_blocks;
  in.osd2.linux2.l_i_blocks_hi = old.osd2.linux2.l_i_blocks_hi;
  return write_inode(c, ino, &in);
}

/* Creates the inode for a non-directory node (the inode number is already
 * allocated). */
static errcode_t
make_leaf(struct bctx *c, ext2_ino_t ino, const struct node *n)
{
  struct ext2_inode_large in;
  mode_t m = n->st.st_mode;
  errcode_t e;

  if (S_ISLNK(m)) {
    e = make_symlink(c, ino, n);
  } else {
    inode_fill(c, &n->st, (uint16_t)n->hl_count, &in);
    if (S_ISREG(m)) {
      e = inode_init_extents(c, ino, &in);
      if (e)
        return e;
    } else if (S_ISCHR(m) || S_ISBLK(m)) {
      unsigned ma = major(n->st.st_rdev), mi = minor(n->st.st_rdev);
      /* Old 8:8 encoding when it fits (what the kernel writes), else the
       * new 12:20 one in the second slot. */
      if (ma < 256 && mi < 256) {
        in.i_block[0] = ma << 8 | mi;
      } else {
        in.i_block[1] = (mi & 0xff) | (ma << 8) | ((mi & ~0xffu) << 12);
      }
    }
    e = write_inode(c, ino, &in);
    if (!e && S_ISREG(m) && n->st.st_size > 0) {
      e = set_xattrs(c, ino, n);
      if (!e)
        e = copy_data(c, ino, n);
      c->pg.done_inodes++;
      return e;
    }
  }
  if (!e)
    e = set_xattrs(c, ino, n);
  c->pg.done_inodes++;
  return e;
}

static int
ftype_of(mode_t m)
{
  if (S_ISREG(m))
    return EXT2_FT_REG_FILE;
  if (S_ISDIR(m))
    return EXT2_FT_DIR;
  if (S_ISLNK(m))
    return EXT2_FT_SYMLINK;
  if (S_ISCHR(m))
    return EXT2_FT_CHRDEV;
  if (S_ISBLK(m))
    return EXT2_FT_BLKDEV;
  if (S_ISFIFO(m))
    return EXT2_FT_FIFO;
  if (S_ISSOCK(m))
    return EXT2_FT_SOCK;
  return EXT2_FT_UNKNOWN;
}

/* Directory block layout state. */
struct dirlay {
  struct bctx *c;
  unsigned nblocks;
  unsigned off; /* in the current block */
  struct ext2_dir_entry *last;
  unsigned limit; /* usable bytes per block (tail excluded) */
};

static void
dir_new_block(struct dirlay *d)
{
  struct bctx *c = d->c;

  XVEC_RESERVE(c->dirbuf, c->dirbuf_cap, (size_t)(d->nblocks + 1) * BLK);
  memset(c->dirbuf + (size_t)d->nblocks * BLK, 0, BLK);
  d->nblocks++;
  d->off = 0;
  d->last = NULL;
}

static void
dir_close_block(struct dirlay *d)
{
  struct bctx *c = d->c;
  char *blk = c->dirbuf + (size_t)(d->nblocks - 1) * BLK;

  if (!d->last) {
    /* An empty block: one unused entry covering it. */
    d->last = (struct ext2_dir_entry *)blk;
    d->last->inode = 0;
    d->off = 0;
  }
  ext2fs_set_rec_len(c->fs, d->limit - (unsigned)((char *)d->last - blk), d->last);
  if (d->limit < BLK)
    ext2fs_initialize_dirent_tail(c->fs, (struct ext2_dir_entry_tail *)(blk + d->limit));
}

static void
dir_add(struct dirlay *d, const char *name, ext2_ino_t ino, int ftype)
{
  size_t len = strlen(name);
  unsigned rec = (unsigned)(8 + ((len + 3) & ~3u));
  struct ext2_dir_entry *de;

  if (d->off + rec > d->limit) {
    dir_close_block(d);
    dir_new_block(d);
  }
  de = (struct ext2_dir_entry *)(d->c->dirbuf + (size_t)(d->nblocks - 1) * BLK + d->off);
  de->inode = ino;
  ext2fs_dirent_set_name_len(de, (int)len);
  ext2fs_dirent_set_file_type(de, ftype);
  memcpy(de->name, name, len);
  ext2fs_set_rec_len(d->c->fs, rec, de);
  d->last = de;
  d->off += rec;
}

/* Writes directory n (inode ino, already allocated, entries' inodes
 * allocated) with its blocks. */
static errcode_t
write_dir(struct bctx *c, ext2_ino_t ino, ext2_ino_t parent, const struct node *n,
          unsigned nsubdirs)
{
  struct ext2_inode_large in;
  struct ext2_inode small;
  struct dirlay d = { .c = c };
  errcode_t e;
  unsigned min_blocks = ino == EXT2_ROOT_INO + 9 ? LPF_BLOCKS : 1;

  d.limit = ext2fs_has_feature_metadata_csum(c->fs->super)
                ? BLK - (unsigned)sizeof(struct ext2_dir_entry_tail)
                : BLK;
  dir_new_block(&d);
  dir_add(&d, ".", ino, EXT2_FT_DIR);
  dir_add(&d, "..", parent, EXT2_FT_DIR);
  for (size_t i = 0; i < n->nkids; i++) {
    const struct node *k = n->kids[i];
    const struct node *tgt = k->hl_first ? k->hl_first : k;
    dir_add(&d, k->name, tgt->ino, ftype_of(tgt->st.st_mode));
  }
  while (d.nblocks < min_blocks) {
    dir_close_block(&d);
    dir_new_block(&d);
  }
  dir_close_block(&d);

  inode_fill(c, &n->st, (uint16_t)(2 + nsubdirs), &in);
  if (2 + nsubdirs >= EXT2_LINK_MAX)
    in.i_links_count = 1; /* dir_nlink: "many" */
  e = inode_init_extents(c, ino, &in);
  if (!e)
    e = write_inode(c, ino, &in);
  if (!e)
    e = set_xattrs(c, ino, n);
  if (e)
    return e;
  e = ext2fs_read_inode(c->fs, ino, &small);
  for (unsigned b = 0; !e && b < d.nblocks; b++) {
    blk64_t pblk = 0;
    e = ext2fs_bmap2(c->fs, ino, &small, NULL, BMAP_ALLOC, b, NULL, &pblk);
    if (!e)
      e = ext2fs_write_dir_block4(c->fs, pblk, c->dirbuf + (size_t)b * BLK, 0, ino);
  }
  if (e)
    return e;
  e = read_inode(c, ino, &in);
  if (e)
    return e;
  in.i_size = d.nblocks * BLK;
  c->pg.done_inodes++;
  return write_inode(c, ino, &in);
}

/* Populates directory n (inode ino).  Entries first (in name order), so a
 * directory's inodes and data stay together; then the subdirectories. */
static errcode_t
populate_dir(struct bctx *c, struct node *n, ext2_ino_t ino, ext2_ino_t parent)
{
  unsigned nsubdirs = 0;
  errcode_t e;

  for (size_t i = 0; i < n->nkids; i++) {
    struct node *k = n->kids[i];
    struct node *tgt = k->hl_first ? k->hl_first : k;

    if (S_ISDIR(k->st.st_mode))
      nsubdirs++;
    if (tgt->ino)
      continue; /* a hard link whose inode exists, or lost+found */
    e = alloc_inode(c, ino, tgt->st.st_mode, &tgt->ino);
    if (e)
      return e;
    if (!S_ISDIR(tgt->st.st_mode)) {
      e = make_leaf(c, tgt->ino, tgt);
      if (e) {
        if (!c->failed_path)
          c->failed_path = tgt->path;
        return e;
      }
    }
  }
  e = write_dir(c, ino, parent, n, nsubdirs);
  if (e) {
    if (!c->failed_path)
      c->failed_path = n->path;
    return e;
  }
  build_progress_show(&c->pg, false);
  for (size_t i = 0; i < n->nkids; i++) {
    struct node *k = n->kids[i];
    if (S_ISDIR(k->st.st_mode)) {
      e = populate_dir(c, k, k->ino, ino);
      if (e)
        return e;
    }
  }
  return 0;
}

/* Ensures root has a lost+found directory (e2fsck wants one) and gives
 * it the inode mke2fs gives it. */
static errcode_t
prepare_lost_found(struct bctx *c)
{
  struct node *root = c->t->root, *lf = NULL;
  size_t pos = 0;
  errcode_t e;
  ext2_ino_t ino;

  for (; pos < root->nkids; pos++) {
    int cmp = strcmp(root->kids[pos]->name, "lost+found");
    if (cmp == 0) {
      lf = root->kids[pos];
      break;
    }
    if (cmp > 0)
      break;
  }
  if (lf && !S_ISDIR(lf->st.st_mode))
    return 0; /* a file named lost+found: keep the tree as it is */
  if (!lf) {
    lf = xcalloc(1, sizeof *lf);
    lf->name = xstrdup("lost+found");
    lf->st.st_mode = S_IFDIR | 0700;
    lf->st.st_mtim.tv_sec = c->now;
    lf->hl_count = 1;
    XVEC_RESERVE(root->kids, root->kids_cap, root->nkids + 1);
    memmove(root->kids + pos + 1, root->kids + pos,
            (root->nkids - pos) * sizeof *root->kids);
    root->kids[pos] = lf;
    root->nkids++;
    c->t->ninodes++;
    c->pg.total_inodes++;
  }
  e = alloc_inode(c, EXT2_ROOT_INO, S_IFDIR, &ino);
  if (e)
    return e;
  lf->ino = ino;
  return 0;
}

static void
uuid_from(uint8_t out[16], const uint8_t digest[32], const char *what)
{
  struct sha256_ctx s;
  uint8_t d[SHA256_DIGEST_SIZE];

  sha256_init(&s);
  sha256_update(&s, SHA256_DIGEST_SIZE, digest);
  sha256_update(&s, strlen(what), (const uint8_t *)what);
  sha256_digest(&s, sizeof d, d);
  memcpy(out, d, 16);
  out[6] = (uint8_t)((out[6] & 0x0f) | 0x40); /* RFC 4122 layout */
  out[8] = (uint8_t)((out[8] & 0x3f) | 0x80);
}

/* Creates the filesystem geometry for nblocks/ninodes in memory.  Returns
 * free blocks after the fs's own metadata (journal excluded). */
static errcode_t
make_fs(const char *path, uint64_t nblocks, uint64_t ninodes, ext2_filsys *ret)
{
  struct ext2_super_block p;
  ext2_filsys fs;
  errcode_t e;

  memset(&p, 0, sizeof p);
  ext2fs_blocks_count_set(&p, nblocks);
  p.s_log_block_size = 2; /* 4 KiB */
  p.s_rev_level = EXT2_DYNAMIC_REV;
  p.s_inode_size = INODE_SIZE;
  p.s_inodes_count = (uint32_t)ninodes;
  p.s_log_groups_per_flex = 4;
  p.s_desc_size = EXT2_MIN_DESC_SIZE_64BIT;
  p.s_feature_compat = EXT2_FEATURE_COMPAT_EXT_ATTR | EXT2_FEATURE_COMPAT_DIR_INDEX |
                       EXT3_FEATURE_COMPAT_HAS_JOURNAL;
  p.s_feature_incompat = EXT2_FEATURE_INCOMPAT_FILETYPE | EXT3_FEATURE_INCOMPAT_EXTENTS |
                         EXT4_FEATURE_INCOMPAT_64BIT | EXT4_FEATURE_INCOMPAT_FLEX_BG;
  p.s_feature_ro_compat =
      EXT2_FEATURE_RO_COMPAT_SPARSE_SUPER | EXT2_FEATURE_RO_COMPAT_LARGE_FILE |
      EXT4_FEATURE_RO_COMPAT_HUGE_FILE | EXT4_FEATURE_RO_COMPAT_DIR_NLINK |
      EXT4_FEATURE_RO_COMPAT_EXTRA_ISIZE | EXT4_FEATURE_RO_COMPAT_METADATA_CSUM;
  e = ext2fs_initialize(path, EXT2_FLAG_RW | EXT2_FLAG_64BITS, &p, unix_io_manager, &fs);
  if (e)
    return e;
  e = ext2fs_allocate_tables(fs);
  if (!e)
    e = ext2fs_convert_subcluster_bitmap(fs, &fs->block_map);
  if (e) {
    ext2fs_free(fs);
    return e;
  }
  *ret = fs;
  return 0;
}

static uint64_t
fs_free_blocks(ext2_filsys fs)
{
  blk64_t used = 0;
  blk64_t total = ext2fs_blocks_count(fs->super);

  if (ext2fs_count_used_clusters(fs, fs->super->s_first_data_block, total - 1, &used))
    return 0;
  return total - fs->super->s_first_data_block - used;
}

static uint64_t
journal_blocks_for(uint64_t nblocks)
{
  int j = ext2fs_default_journal_size(nblocks);
  return j > 0 ? (uint64_t)j : 0;
}

/* The filesystem's size: what the tree needs, the headroom on top, and
 * the inodes and blocks to create it with. */
struct geometry {
  uint64_t need, headroom, ninodes, nblocks;
};

/* A first guess at the geometry, from the tree and the options. */
static int
plan_geometry(const struct build_opts *o, const struct tree *t, struct geometry *g)
{
  /* What the tree needs: data, directories, lost+found, root, slack for
   * extent-tree growth and allocation rounding. */
  g->need = t->data_blocks + t->meta_blocks + LPF_BLOCKS + 16;
  g->need += g->need / 100;
  g->headroom = g->need * o->headroom_pct / 100 + (o->headroom_abs + BLK - 1) / BLK;
  g->ninodes = o->inodes;
  if (!g->ninodes)
    g->ninodes = t->ninodes + t->ninodes * o->headroom_pct / 100 + 1024;
  if (g->ninodes < t->ninodes + 16) {
    log_err("--inodes %llu is too few: the tree has %llu inodes",
            (unsigned long long)g->ninodes, (unsigned long long)t->ninodes);
    return -ENOSPC;
  }
  if (o->size) {
    g->nblocks = o->size / BLK;
  } else {
    /* First guess: data + headroom + inode tables + journal + 2%. */
    g->nblocks = g->need + g->headroom + g->ninodes * INODE_SIZE / BLK;
    g->nblocks += journal_blocks_for(g->nblocks) + g->nblocks / 50;
    if (!o->inodes && g->ninodes < g->nblocks * BLK / 16384)
      g->ninodes = g->nblocks * BLK / 16384; /* mke2fs's default density */
  }
  return 0;
}

/* Creates the filesystem in memory, growing it (without --size) until
 * the tree and the headroom fit. */
static int
create_fs(const struct build_opts *o, const struct tree *t, const char *path,
          struct geometry *g, ext2_filsys *fsp)
{
  for (int tries = 0;; tries++) {
    uint64_t freeb, want;
    errcode_t e;

    if (g->nblocks < 4096)
      g->nblocks = 4096; /* 16 MiB: below that the journal does not fit */
    g->nblocks = (g->nblocks + 255) & ~255ull;
    if (g->ninodes > 0xffffffffull)
      g->ninodes = 0xffffffffull;
    e = make_fs(path, g->nblocks, g->ninodes, fsp);
    if (e == EXT2_ET_TOO_MANY_INODES && !o->size && tries < 20) {
      g->nblocks += g->nblocks / 2;
      continue;
    }
    if (e) {
      if (o->size && (e == EXT2_ET_TOO_MANY_INODES || is_nospace(e)))
        log_err("the tree needs %llu inodes, too many for --size %llu MiB: "
                "give a larger --size or drop it",
                (unsigned long long)t->ninodes, (unsigned long long)(o->size >> 20));
      else
        log_err("cannot create the filesystem: %s", ext2_strerror(e));
      return -EINVAL;
    }
    freeb = fs_free_blocks(*fsp);
    want = g->need + journal_blocks_for(g->nblocks) + (o->size ? 0 : g->headroom);
    if (freeb >= want)
      return 0;
    ext2fs_free(*fsp);
    *fsp = NULL;
    if (o->size || tries >= 20) {
      uint64_t mib = ((g->nblocks - freeb) + want + 255) / 256;
      log_err("tree %s does not fit: it needs about %llu MiB, --size is "
              "%llu MiB; give --size %lluM or more, or drop --size",
              o->tree, (unsigned long long)mib, (unsigned long long)(g->nblocks / 256),
              (unsigned long long)mib);
      return -ENOSPC;
    }
    g->nblocks += (want - freeb) + (want - freeb) / 8;
  }
}

/* Identity (from the options or from the tree's metadata digest) and the
 * superblock fields that make the image reproducible. */
static void
set_identity(struct bctx *c)
{
  const struct build_opts *o = c->o;
  ext2_filsys fs = c->fs;

  if (o->uuid_set)
    memcpy(fs->super->s_uuid, o->uuid, 16);
  else
    uuid_from(fs->super->s_uuid, c->t->digest, "uuid");
  if (o->hash_seed_set)
    memcpy(fs->super->s_hash_seed, o->hash_seed, 16);
  else
    uuid_from((uint8_t *)fs->super->s_hash_seed, c->t->digest, "hash_seed");
  fs->super->s_def_hash_version = EXT2_HASH_HALF_MD4;
  /* The same hash flag whatever the building machine's char signedness. */
  fs->super->s_flags &= ~(EXT2_FLAGS_SIGNED_HASH | EXT2_FLAGS_UNSIGNED_HASH);
  fs->super->s_flags |= EXT2_FLAGS_UNSIGNED_HASH;
  fs->super->s_checksum_type = EXT2_CRC32C_CHKSUM;
  fs->super->s_max_mnt_count = (uint16_t)-1;
  fs->super->s_mkfs_time = fs->super->s_lastcheck = (uint32_t)c->now;
  fs->super->s_kbytes_written = 0;
  fs->now = c->now;
  if (o->label)
    strncpy((char *)fs->super->s_volume_name, o->label, sizeof fs->super->s_volume_name);
  ext2fs_init_csum_seed(fs);
  for (dgrp_t g = 0; g < fs->group_desc_count; g++)
    ext2fs_bg_flags_set(fs, g, EXT2_BG_INODE_ZEROED);
  ext2fs_mark_super_dirty(fs);
}

/* Reserved inodes as mke2fs leaves them (root, the bad-block inode and
 * the others up to the first non-reserved one), the journal and
 * lost+found. */
static int
set_up_fs(struct bctx *c)
{
  ext2_filsys fs = c->fs;
  struct ext2fs_journal_params jp;
  errcode_t e;

  ext2fs_inode_alloc_stats2(fs, EXT2_ROOT_INO, +1, 1);
  for (ext2_ino_t i = EXT2_ROOT_INO + 1; i < EXT2_FIRST_INODE(fs->super); i++)
    ext2fs_inode_alloc_stats2(fs, i, +1, 0);
  ext2fs_inode_alloc_stats2(fs, EXT2_BAD_INO, +1, 0);
  ext2fs_mark_ib_dirty(fs);
  e = ext2fs_update_bb_inode(fs, NULL);
  if (!e)
    e = ext2fs_get_journal_params(&jp, fs);
  if (!e)
    e = ext2fs_add_journal_inode3(fs, &jp, ~0ULL,
                                  EXT2_MKJOURNAL_LAZYINIT | EXT2_MKJOURNAL_NO_MNT_CHECK);
  if (!e)
    e = prepare_lost_found(c);
  if (e) {
    log_err("cannot set up the filesystem: %s", ext2_strerror(e));
    return errcode_to_errno(e);
  }
  return 0;
}

/* Copies the tree in, then writes the summary and closes the fs (c->fs
 * is NULL afterwards, whatever happened to the close). */
static int
fill_fs(struct bctx *c)
{
  const struct build_opts *o = c->o;
  errcode_t e;

  c->t->root->ino = EXT2_ROOT_INO;
  e = populate_dir(c, c->t->root, EXT2_ROOT_INO, EXT2_ROOT_INO);
  if (e) {
    if (is_nospace(e))
      log_err("image full while adding %s: the tree does not fit%s",
              c->failed_path ? c->failed_path : o->tree,
              o->size ? "; give a larger --size or drop it"
                      : " (size estimate too low: give --size)");
    else if (e >= 4096 || !c->failed_path)
      log_err("cannot add %s: %s", c->failed_path ? c->failed_path : o->tree,
              ext2_strerror(e));
    return errcode_to_errno(e);
  }
  /* Counts from the bitmaps, then per-group unused-inode marks and
   * checksums (calculate_summary_stats alone gets itable_unused wrong
   * when a group's last inode is in use). */
  e = ext2fs_calculate_summary_stats(c->fs, 0);
  if (!e)
    e = ext2fs_set_gdt_csum(c->fs);
  if (!e)
    e = ext2fs_close_free(&c->fs);
  c->fs = NULL;
  if (e) {
    log_err("cannot write image %s: %s", o->output, ext2_strerror(e));
    return errcode_to_errno(e);
  }
  return 0;
}

/* The filesystem of the scanned tree in the file fd, which path opens. */
static int
build_fs(struct bctx *c, int fd, const char *path)
{
  struct geometry g;
  int r = plan_geometry(c->o, c->t, &g);

  if (!r)
    r = create_fs(c->o, c->t, path, &g, &c->fs);
  if (r < 0)
    return r;
  /* The kernel wants the device (here: the file) as large as the fs. */
  if (ftruncate(fd, (off_t)(ext2fs_blocks_count(c->fs->super) * BLK)) < 0) {
    r = -errno;
    log_err("cannot size image %s: %s", c->o->output, strerror(-r));
    return r;
  }
  set_identity(c);
  r = set_up_fs(c);
  if (!r)
    r = fill_fs(c);
  if (!r)
    build_progress_show(&c->pg, true);
  return r;
}

int
build_ext4(const struct build_opts *o, struct tree *t, const struct build_clock *clk,
           int fd, const char *path)
{
  struct bctx c;
  int r;

  memset(&c, 0, sizeof c);
  c.o = o;
  c.t = t;
  c.clamp = clk->clamp;
  c.clamp_set = clk->clamp_set;
  c.now = (time_t)clk->now;
  build_progress_init(&c.pg, o, t);
  c.bufsz = 1 << 20;
  c.buf = xmalloc(c.bufsz);
  r = build_fs(&c, fd, path);
  if (c.fs)
    ext2fs_free(c.fs);
  free(c.buf);
  free(c.dirbuf);
  return r;
}

int
build_image(const struct build_opts *o, int fd, const char *path,
            const char **fstab_problem)
{
  struct build_clock clk = { 0 };
  struct tree t;
  int r, have_sde = source_date_epoch(&clk.clamp);

  if (have_sde < 0)
    return -EINVAL;
  clk.clamp_set = have_sde > 0;
  clk.now = clk.clamp_set ? clk.clamp : (int64_t)time(NULL);
  r = tree_scan(o->tree, clk.clamp, clk.clamp_set, &o->exclude, &t);
  if (r == 0) {
    /* A squashfs base is a layered root's lower layer: the agent mounts
     * it, so its fstab has nothing to say about the root. */
    if (o->format == IMAGE_EXT4)
      *fstab_problem = tree_fstab_problem(&t);
    r = o->format == IMAGE_SQUASHFS ? build_squashfs(o, &t, &clk, fd)
                                    : build_ext4(o, &t, &clk, fd, path);
  }
  tree_free(&t);
  return r;
}

/* ---- command line ---- */

static int
parse_uuid(const char *s, uint8_t out[16])
{
  int n = 0;

  for (const char *p = s; *p; p++) {
    int v;
    if (*p == '-')
      continue;
    if (*p >= '0' && *p <= '9')
      v = *p - '0';
    else if (*p >= 'a' && *p <= 'f')
      v = *p - 'a' + 10;
    else if (*p >= 'A' && *p <= 'F')
      v = *p - 'A' + 10;
    else
      return -EINVAL;
    if (n >= 32)
      return -EINVAL;
    if (n % 2 == 0)
      out[n / 2] = (uint8_t)(v << 4);
    else
      out[n / 2] |= (uint8_t)v;
    n++;
  }
  return n == 32 ? 0 : -EINVAL;
}

static void
build_usage(FILE *f)
{
  fputs("usage: imgtool build TREE (-o IMAGE | --store DIR --name NAME)\n"
        "         [--format ext4|squashfs] [--compression zstd|gzip|xz]\n"
        "         [--order FILE] [--block-size SIZE]\n"
        "         [--exclude PATTERN]... [--size SIZE] [--headroom N%|SIZE]\n"
        "         [--inodes N] [--uuid UUID] [--hash-seed UUID]\n"
        "         [--label LABEL] [--force] [--quiet | --progress]\n",
        f);
}

/* The absolute, resolved path out (a file or directory that may not
 * exist yet, in a directory that does) will have, or NULL. */
static char *
future_realpath(const char *out)
{
  char *copy1, *copy2, *dir, *p;

  p = realpath(out, NULL);
  if (p)
    return p;
  copy1 = xstrdup(out);
  copy2 = xstrdup(out);
  dir = realpath(dirname(copy1), NULL);
  p = dir ? xasprintf("%s/%s", strcmp(dir, "/") ? dir : "", basename(copy2)) : NULL;
  free(dir);
  free(copy1);
  free(copy2);
  return p;
}

/* Refuses an output (the image, or the store) that the scan of the tree
 * would read: every build would copy the previous images into the new
 * one, which then outgrows them all.  Where --exclude leaves out the
 * directory that holds it (the store itself, or the image's directory,
 * where its temporary is made too), it is fine: building from / with
 * /srv excluded, say. */
static int
check_output_outside_tree(const char *tree_real, const char *out, bool is_store,
                          const struct exclude_list *x)
{
  char *dir = future_realpath(out), *slash;
  size_t tl = strlen(tree_real);
  const char *rel = NULL;
  int r = 0;

  if (!dir)
    return 0; /* creating it will fail and say why */
  if (!is_store && (slash = strrchr(dir, '/')))
    *slash = '\0';
  if (strcmp(tree_real, "/") == 0)
    rel = dir;
  else if (strncmp(dir, tree_real, tl) == 0 && (!dir[tl] || dir[tl] == '/'))
    rel = dir + tl;
  if (rel && (!*rel || !exclude_covers(x, rel))) {
    char *hint = *rel ? xasprintf(", or leave %s out with --exclude '%s'",
                                  is_store ? "it" : "its directory", rel)
                      : xstrdup("");
    log_err("%s %s is inside the tree %s being built: %s; put it outside "
            "the tree%s",
            is_store ? "store" : "image", out, tree_real,
            is_store ? "every build would copy the earlier versions into "
                       "the new one"
                     : "the image would contain itself",
            hint);
    free(hint);
    r = -EINVAL;
  }
  free(dir);
  return r;
}

/* The command line of build. */
struct build_args {
  struct build_opts o;
  const char *out, *store, *name;
  bool force;
  const char *ext4_option; /* the first option given that only ext4 has */
};

/* --headroom N% or SIZE: a percentage of the used space, or bytes; a
 * size alone drops the default percentage, unless one was given. */
static int
parse_headroom(const char *arg, struct build_opts *o, bool *pct_set)
{
  size_t l = strlen(arg);

  if (l > 1 && arg[l - 1] == '%') {
    char *end;
    unsigned long v = strtoul(arg, &end, 10);
    if (*end != '%' || v > 1000) {
      log_err("--headroom '%s': give a percentage (e.g. 30%%) or a "
              "size (e.g. 256M)",
              arg);
      return -EINVAL;
    }
    o->headroom_pct = (unsigned)v;
    *pct_set = true;
  } else if (parse_size(arg, &o->headroom_abs) < 0) {
    log_err("--headroom '%s': give a percentage (e.g. 30%%) or a size "
            "(e.g. 256M)",
            arg);
    return -EINVAL;
  } else if (!*pct_set) {
    o->headroom_pct = 0;
  }
  return 0;
}

/* The options that shape the filesystem: --inodes, --uuid, --hash-seed,
 * --label; anything else is a usage error (after the usage). */
static int
parse_image_option(int c, const char *arg, struct build_opts *o)
{
  char *end;

  switch (c) {
    case 'i':
      o->inodes = strtoull(arg, &end, 10);
      if (*end || !o->inodes) {
        log_err("--inodes '%s': give a positive number", arg);
        return -EINVAL;
      }
      return 0;
    case 'U':
      if (parse_uuid(arg, o->uuid) < 0) {
        log_err("--uuid '%s' is not a UUID (32 hex digits)", arg);
        return -EINVAL;
      }
      o->uuid_set = true;
      return 0;
    case 'E':
      if (parse_uuid(arg, o->hash_seed) < 0) {
        log_err("--hash-seed '%s' is not a UUID (32 hex digits)", arg);
        return -EINVAL;
      }
      o->hash_seed_set = true;
      return 0;
    case 'L':
      if (strlen(arg) > 16) {
        log_err("--label '%s' is longer than 16 bytes", arg);
        return -EINVAL;
      }
      o->label = arg;
      return 0;
  }
  build_usage(stderr);
  return -EINVAL;
}

/* --format ext4|squashfs, --compression zstd|gzip|xz, --block-size. */
static int
parse_format_option(int c, const char *arg, struct build_opts *o)
{
  if (c == 'F') {
    if (strcmp(arg, "ext4") && strcmp(arg, "squashfs")) {
      log_err("--format '%s': give ext4 or squashfs", arg);
      return -EINVAL;
    }
    o->format = strcmp(arg, "ext4") ? IMAGE_SQUASHFS : IMAGE_EXT4;
    return 0;
  }
  if (c == 'B') {
    uint64_t v;

    if (parse_size(arg, &v) < 0 || v < 4096 || v > (1u << 20) || (v & (v - 1))) {
      log_err("--block-size '%s': give a power of two from 4K to 1M, e.g. 64K", arg);
      return -EINVAL;
    }
    o->block_size = (uint32_t)v;
    return 0;
  }
  if (strcmp(arg, "zstd") && strcmp(arg, "gzip") && strcmp(arg, "xz")) {
    log_err("--compression '%s': give zstd, gzip or xz", arg);
    return -EINVAL;
  }
  o->compression = arg;
  return 0;
}

/* The options that shape an ext4 filesystem only, by getopt value. */
static const char *
ext4_option_name(int c)
{
  switch (c) {
    case 's': return "--size";
    case 'H': return "--headroom";
    case 'i': return "--inodes";
    case 'U': return "--uuid";
    case 'E': return "--hash-seed";
    case 'L': return "--label";
  }
  return NULL;
}

/* Options of one format given for the other. */
static int
check_format_options(const struct build_args *a)
{
  if (a->o.format == IMAGE_SQUASHFS && a->ext4_option) {
    log_err("%s applies to ext4 images only: squashfs images have no free "
            "space, inode table, UUID or label to set; drop it",
            a->ext4_option);
    return 2;
  }
  if (a->o.format == IMAGE_EXT4 && (a->o.order || a->o.block_size)) {
    log_err("%s applies to squashfs images only: add --format squashfs, or "
            "drop it",
            a->o.order ? "--order" : "--block-size");
    return 2;
  }
  if (a->o.order && access(a->o.order, R_OK) < 0) {
    log_err("--order %s: %s: give a file of paths, one a line", a->o.order,
            strerror(errno));
    return 2;
  }
  if (a->o.format == IMAGE_EXT4 && a->o.compression) {
    log_err("--compression applies to squashfs images only: add --format "
            "squashfs, or drop it");
    return 2;
  }
  return -1;
}

/* What must hold once every option is read: one TREE, and either -o or
 * --store with a plain --name.  -1 to go on, or 2. */
static int
check_build_args(int argc, char **argv, struct build_args *a)
{
  if (optind != argc - 1) {
    log_err("build needs exactly one TREE directory");
    build_usage(stderr);
    return 2;
  }
  a->o.tree = argv[optind];
  if (!a->out == !a->store || (a->store && !a->name) || (a->name && !a->store)) {
    log_err("build needs either -o IMAGE or --store DIR --name NAME");
    return 2;
  }
  if (a->name && (!store_name_valid(a->name) || strlen(a->name) > 200)) {
    log_err("--name '%s': give a plain name without '/' or a leading '.'", a->name);
    return 2;
  }
  if (!a->o.compression && a->o.format == IMAGE_SQUASHFS)
    a->o.compression = "zstd";
  return check_format_options(a);
}

/* Fills a from the command line.  Returns -1 to go on building, else the
 * exit status (0 after --help, 2 after a usage error). */
static int
parse_build_args(int argc, char **argv, struct build_args *a)
{
  static const struct option opts[] = {
    { "output", required_argument, NULL, 'o' },
    { "store", required_argument, NULL, 'S' },
    { "name", required_argument, NULL, 'N' },
    { "size", required_argument, NULL, 's' },
    { "headroom", required_argument, NULL, 'H' },
    { "inodes", required_argument, NULL, 'i' },
    { "uuid", required_argument, NULL, 'U' },
    { "hash-seed", required_argument, NULL, 'E' },
    { "label", required_argument, NULL, 'L' },
    { "force", no_argument, NULL, 'f' },
    { "quiet", no_argument, NULL, 'q' },
    { "progress", no_argument, NULL, 'P' },
    { "exclude", required_argument, NULL, 'x' },
    { "format", required_argument, NULL, 'F' },
    { "compression", required_argument, NULL, 'C' },
    { "order", required_argument, NULL, 'O' },
    { "block-size", required_argument, NULL, 'B' },
    { "help", no_argument, NULL, 'h' },
    { NULL, 0, NULL, 0 },
  };
  struct build_opts *o = &a->o;
  bool headroom_pct_set = false;
  int c;

  memset(a, 0, sizeof *a);
  o->headroom_pct = 20;
  o->headroom_abs = 16u << 20;
  while ((c = getopt_long(argc, argv, "o:s:qfh", opts, NULL)) != -1) {
    switch (c) {
      case 'o': a->out = optarg; break;
      case 'S': a->store = optarg; break;
      case 'N': a->name = optarg; break;
      case 's':
        if (parse_size(optarg, &o->size) < 0 || o->size < (16u << 20)) {
          log_err("--size '%s': give a size of at least 16M, e.g. 2G", optarg);
          return 2;
        }
        break;
      case 'H':
        if (parse_headroom(optarg, o, &headroom_pct_set) < 0)
          return 2;
        break;
      case 'f': a->force = true; break;
      case 'q': o->quiet = true; break;
      case 'P': o->progress = true; break;
      case 'O': o->order = optarg; break;
      case 'x':
        if (exclude_add(&o->exclude, optarg) < 0)
          return 2;
        break;
      case 'F':
      case 'C':
      case 'B':
        if (parse_format_option(c, optarg, o) < 0)
          return 2;
        break;
      case 'h': build_usage(stdout); return 0;
      default:
        if (parse_image_option(c, optarg, o) < 0)
          return 2;
        break;
    }
    if (!a->ext4_option)
      a->ext4_option = ext4_option_name(c);
  }
  return check_build_args(argc, argv, a);
}

/* What one run of build holds, released in one place (build_job_end). */
struct build_job {
  char *namedir, *tree_real, *lockpath;
  struct outfile of;
  bool made_store;
  int lock;
};

/* Checks the tree before anything is created. */
static int
check_tree(const struct build_args *a, struct build_job *j)
{
  const struct build_opts *o = &a->o;
  struct stat st;

  if (stat(o->tree, &st) < 0) {
    int r = -errno;
    log_err("tree %s: %s: give the directory to turn into an image", o->tree,
            strerror(-r));
    return r;
  }
  if (!S_ISDIR(st.st_mode)) {
    log_err("tree %s is not a directory: give the directory to turn into "
            "an image",
            o->tree);
    return -ENOTDIR;
  }
  j->tree_real = realpath(o->tree, NULL);
  if (j->tree_real)
    return check_output_outside_tree(j->tree_real, a->out ? a->out : a->store, !a->out,
                                     &o->exclude);
  return 0;
}

/* The file the image is built in, in place of path (output: for the
 * message). */
static int
create_image(const char *path, const char *output, struct build_job *j)
{
  int r = outfile_create(path, 0644, &j->of);

  if (r < 0)
    log_err("cannot create a file next to %s: %s", output, strerror(-r));
  return r;
}

/* -o IMAGE: the image is made as an unnamed file beside it. */
static int
open_image_file(struct build_args *a, struct build_job *j)
{
  struct stat st;

  if (!a->force && lstat(a->out, &st) == 0) {
    log_err("%s already exists: remove it or pass --force", a->out);
    return -EEXIST;
  }
  a->o.output = a->out;
  return create_image(a->out, a->out, j);
}

/* --store DIR --name NAME: the store and the name's directory are made
 * if need be (and go again if the build fails, even on a signal), the
 * name is locked and the image is made inside. */
static int
open_store_image(struct build_args *a, struct build_job *j)
{
  char *target;
  int r;

  if (mkdir(a->store, 0755) == 0) {
    j->made_store = true;
    tmpdir_register(a->store);
  } else if (errno != EEXIST) {
    r = -errno;
    log_err("cannot create store %s: %s", a->store, strerror(-r));
    return r;
  }
  j->namedir = xasprintf("%s/%s", a->store, a->name);
  if (mkdir(j->namedir, 0755) == 0) {
    j->lockpath = xasprintf("%s/.lock", j->namedir);
    tmpdir_register(j->namedir);
    tmpfile_register(j->lockpath);
  }
  j->lock = store_lock(j->namedir, true);
  if (j->lock < 0) {
    log_err("cannot lock store %s: %s", j->namedir, strerror(-j->lock));
    return j->lock;
  }
  a->o.output = j->namedir;
  target = xasprintf("%s/build.img", j->namedir);
  r = create_image(target, j->namedir, j);
  free(target);
  return r;
}

/* The complete image takes its name, or is published in the store. */
static int
name_image(struct build_args *a, struct build_job *j)
{
  unsigned id;
  int r;

  if (!a->out)
    return store_publish(j->namedir, &j->of, j->tree_real ? j->tree_real : a->o.tree, 0,
                         &id);
  r = a->force ? outfile_install(&j->of, a->out) : outfile_link(&j->of, a->out);
  if (r < 0) {
    log_err("cannot create %s: %s", a->out,
            r == -EEXIST ? "it appeared while building (remove it or "
                           "pass --force)"
                         : strerror(-r));
    return r;
  }
  fsync_dir_of(a->out);
  printf("%s\n", a->out);
  return 0;
}

static int
run_build(struct build_args *a, struct build_job *j)
{
  const char *fstab_problem = NULL;
  int r = check_tree(a, j);

  if (r < 0)
    return r;
  tmpfile_install_signals();
  r = a->out ? open_image_file(a, j) : open_store_image(a, j);
  if (r < 0)
    return r;
  r = build_image(&a->o, j->of.fd, j->of.path, &fstab_problem);
  if (r < 0)
    return r;
  if (fsync(j->of.fd) < 0) {
    r = -errno;
    log_err("cannot write %s: %s", a->o.output, strerror(-r));
    return r;
  }
  r = name_image(a, j);
  if (r == 0 && fstab_problem)
    log_warn("tree %s: %s, so nothing remounts the root read-write: the "
             "clients run on a read-only root unless booted with rw; add a "
             "line such as '/dev/nbd0 / ext4 defaults 0 1'",
             a->o.tree, fstab_problem);
  return r;
}

/* Releases what the run holds; after a failure, removes what it made. */
static void
build_job_end(const struct build_args *a, struct build_job *j, int rc)
{
  outfile_close(&j->of);
  if (rc == 0) {
    if (j->made_store)
      tmpfile_forget(a->store);
    if (j->lockpath) {
      tmpfile_forget(j->namedir);
      tmpfile_forget(j->lockpath);
    }
  }
  if (j->lock >= 0) {
    if (rc)
      store_abandon(j->namedir);
    store_unlock(j->lock);
  }
  if (rc && j->made_store)
    rmdir(a->store); /* only if still empty */
  free(j->lockpath);
  free(j->namedir);
  free(j->tree_real);
}

int
cmd_build(int argc, char **argv)
{
  struct build_args a;
  struct build_job j = { .of = { .fd = -1 }, .lock = -1 };
  int rc = parse_build_args(argc, argv, &a);

  if (rc < 0) {
    rc = run_build(&a, &j) < 0 ? 1 : 0;
    build_job_end(&a, &j, rc);
  }
  exclude_free(&a.o.exclude);
  return rc;
}
