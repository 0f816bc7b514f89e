/* SPDX-License-Identifier: GPL-2.0-or-later */
/* imgtool: an ext2/3/4 image read as a tree, through libext2fs.
 *
 * The filesystem is opened read-only and never written: no journal is
 * replayed, so a state disk whose client still runs (or crashed) reads as
 * what was last checkpointed, which the callers say.  Directories are
 * walked from the root; a non-directory inode met twice is a hard link
 * (the first name in canonical order owns it, as in scan.c).
 */
#include <config.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sysmacros.h>

#include <ext2fs/ext2fs.h>

#include "imgtool.h"

struct ext4_reader {
  ext2_filsys fs;
  struct node **by_ino; /* the first name of each inode seen */
  uint32_t ninodes;
};

struct walk {
  struct image_reader *rd;
  struct ext4_reader *x;
  struct node *dir;
  int err;
};

static int
errcode_errno(errcode_t e)
{
  return e > 0 && e < 4096 ? -(int)e : -EIO;
}

static void
inode_stat(const struct ext2_inode_large *in, ext2_filsys fs, struct stat *st)
{
  uint32_t ex = in->i_extra_isize >= 8 ? in->i_mtime_extra : 0;

  memset(st, 0, sizeof *st);
  st->st_mode = in->i_mode;
  st->st_uid = in->i_uid | (uint32_t)in->osd2.linux2.l_i_uid_high << 16;
  st->st_gid = in->i_gid | (uint32_t)in->osd2.linux2.l_i_gid_high << 16;
  st->st_nlink = in->i_links_count;
  st->st_size = (off_t)EXT2_I_SIZE(in);
  st->st_blocks = (blkcnt_t)ext2fs_get_stat_i_blocks(fs, (struct ext2_inode *)in);
  /* 34-bit seconds: the epoch bits extend the signed 32-bit field */
  st->st_mtim.tv_sec = (int32_t)in->i_mtime + ((int64_t)(ex & 3) << 32);
  st->st_mtim.tv_nsec = ex >> 2;
  if (LINUX_S_ISCHR(in->i_mode) || LINUX_S_ISBLK(in->i_mode)) {
    if (in->i_block[0])
      st->st_rdev = makedev((in->i_block[0] >> 8) & 0xff, in->i_block[0] & 0xff);
    else
      st->st_rdev = makedev((in->i_block[1] & 0xfff00) >> 8,
                            (in->i_block[1] & 0xff) | ((in->i_block[1] >> 12) & 0xfff00));
  }
}

static int
add_xattr(char *name, char *value, size_t len, void *data)
{
  struct node *n = data;

  /* system.data is where inline data lives, not an attribute */
  if (strcmp(name, "system.data") == 0)
    return 0;
  n->xattrs = realloc(n->xattrs, (n->nxattrs + 1) * sizeof *n->xattrs);
  if (!n->xattrs)
    out_of_memory();
  n->xattrs[n->nxattrs].name = xstrdup(name);
  n->xattrs[n->nxattrs].value = xmalloc(len ? len : 1);
  memcpy(n->xattrs[n->nxattrs].value, value, len);
  n->xattrs[n->nxattrs].len = len;
  n->nxattrs++;
  return 0;
}

static int
cmp_xattr(const void *a, const void *b)
{
  return strcmp(((const struct xattr *)a)->name, ((const struct xattr *)b)->name);
}

static errcode_t
read_xattrs(ext2_filsys fs, ext2_ino_t ino, struct node *n)
{
  struct ext2_xattr_handle *h;
  errcode_t e = ext2fs_xattrs_open(fs, ino, &h), e2;

  if (e == EXT2_ET_MISSING_EA_FEATURE)
    return 0;
  if (e)
    return e;
  e = ext2fs_xattrs_read(h);
  if (!e)
    e = ext2fs_xattrs_iterate(h, add_xattr, n);
  e2 = ext2fs_xattrs_close(&h);
  if (n->nxattrs > 1)
    qsort(n->xattrs, n->nxattrs, sizeof *n->xattrs, cmp_xattr);
  return e ? e : e2;
}

static errcode_t
read_symlink(ext2_filsys fs, ext2_ino_t ino, struct ext2_inode_large *in, struct node *n)
{
  size_t len = EXT2_I_SIZE(in);
  ext2_file_t f;
  unsigned got = 0;
  errcode_t e, e2;

  if (len >= 4096)
    return EXT2_ET_INODE_CORRUPTED;
  n->link = xcalloc(1, len + 1);
  if (ext2fs_is_fast_symlink((struct ext2_inode *)in)) {
    memcpy(n->link, in->i_block, len);
    return 0;
  }
  /* block-mapped, extent-mapped and inline targets read like a file */
  e = ext2fs_file_open(fs, ino, 0, &f);
  if (e)
    return e;
  e = ext2fs_file_read(f, n->link, (unsigned)len, &got);
  e2 = ext2fs_file_close(f);
  if (!e && got != len)
    e = EXT2_ET_SHORT_READ;
  return e ? e : e2;
}

static int read_dir(struct image_reader *rd, struct node *dir);

/* The inode of one entry (k->src_ino), or the one it is another name
 * of.  Prints its own error. */
static int
read_entry(struct image_reader *rd, struct node *k)
{
  struct ext4_reader *x = rd->priv;
  ext2_ino_t ino = (ext2_ino_t)k->src_ino;
  struct ext2_inode_large in;
  errcode_t e = EXT2_ET_BAD_INODE_NUM;

  memset(&in, 0, sizeof in);
  if (ino >= 1 && ino <= x->ninodes)
    e = ext2fs_read_inode_full(x->fs, ino, (struct ext2_inode *)&in, sizeof in);
  if (e)
    goto err;
  inode_stat(&in, x->fs, &k->st);
  k->st.st_ino = ino;
  if (!LINUX_S_ISDIR(in.i_mode) && x->by_ino[ino]) {
    k->hl_first = x->by_ino[ino];
    k->hl_first->hl_count++;
    return 0;
  }
  x->by_ino[ino] = k;
  k->hl_count = 1;
  e = read_xattrs(x->fs, ino, k);
  if (!e && LINUX_S_ISLNK(in.i_mode))
    e = read_symlink(x->fs, ino, &in, k);
  if (e)
    goto err;
  return LINUX_S_ISDIR(in.i_mode) ? read_dir(rd, k) : 0;
err:
  log_err("cannot read %s in %s: %s", k->path[0] ? k->path : "/", rd->path,
          error_message(e));
  return errcode_errno(e);
}

static int
dir_entry(ext2_ino_t dir, int entry, struct ext2_dir_entry *de, int offset, int blocksize,
          char *buf, void *priv)
{
  struct walk *w = priv;
  size_t len = ext2fs_dirent_name_len(de);
  struct node *k;

  (void)dir, (void)offset, (void)blocksize, (void)buf;
  if (entry == DIRENT_DOT_FILE || entry == DIRENT_DOT_DOT_FILE)
    return 0;
  k = image_node_add(w->rd, w->dir, de->name, len);
  k->src_ino = de->inode;
  return 0;
}

/* The entries of directory dir, recursively. */
static int
read_dir(struct image_reader *rd, struct node *dir)
{
  struct ext4_reader *x = rd->priv;
  struct walk w = { .rd = rd, .x = x, .dir = dir };
  errcode_t e =
      ext2fs_dir_iterate2(x->fs, (ext2_ino_t)dir->src_ino, 0, NULL, dir_entry, &w);

  if (e) {
    log_err("cannot read directory %s in %s: %s", dir->path[0] ? dir->path : "/",
            rd->path, error_message(e));
    return errcode_errno(e);
  }
  /* in canonical order, so that the first name of a hard link owns it */
  image_dir_sort(dir);
  for (size_t i = 0; i < dir->nkids; i++) {
    int r = read_entry(rd, dir->kids[i]);
    if (r < 0)
      return r;
  }
  return 0;
}

static int
ext4_read_tree(struct image_reader *rd, struct tree *t)
{
  struct ext4_reader *x = xcalloc(1, sizeof *x);
  char *name = xasprintf("/proc/self/fd/%d", rd->fd);
  errcode_t e;

  rd->priv = x;
  e = ext2fs_open2(name, NULL, EXT2_FLAG_64BITS, 0, 0, unix_io_manager, &x->fs);
  free(name);
  if (e) {
    log_err("cannot open the ext4 filesystem in %s: %s", rd->path, error_message(e));
    x->fs = NULL;
    return errcode_errno(e);
  }
  x->ninodes = x->fs->super->s_inodes_count;
  x->by_ino = xcalloc((size_t)x->ninodes + 1, sizeof *x->by_ino);
  t->root->src_ino = EXT2_ROOT_INO;
  return read_entry(rd, t->root);
}

static ssize_t
ext4_pread(struct image_reader *rd, const struct node *n, void *buf, size_t len,
           uint64_t off)
{
  struct ext4_reader *x = rd->priv;
  ext2_file_t f;
  unsigned got = 0;
  errcode_t e, e2;

  if (len > (1u << 30))
    len = 1u << 30;
  e = ext2fs_file_open(x->fs, (ext2_ino_t)n->src_ino, 0, &f);
  if (e)
    return errcode_errno(e);
  e = ext2fs_file_llseek(f, off, EXT2_SEEK_SET, NULL);
  if (!e)
    e = ext2fs_file_read(f, buf, (unsigned)len, &got);
  e2 = ext2fs_file_close(f);
  if (e || e2)
    return errcode_errno(e ? e : e2);
  return (ssize_t)got;
}

static void
ext4_close(struct image_reader *rd)
{
  struct ext4_reader *x = rd->priv;

  if (!x)
    return;
  if (x->fs)
    ext2fs_close_free(&x->fs);
  free(x->by_ino);
  free(x);
}

const struct image_reader_ops image_reader_ext4 = {
  .read_tree = ext4_read_tree,
  .pread = ext4_pread,
  .close = ext4_close,
};
