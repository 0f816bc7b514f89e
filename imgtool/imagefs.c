/* SPDX-License-Identifier: GPL-2.0-or-later */
/* imgtool: which filesystem an image holds, from its superblock.
 *
 * The store keeps ext4 and squashfs versions side by side under the same
 * NNNN.img names (nbdsrv serves bytes and does not care); info, verify
 * and the store's metadata tell them apart here.  A squashfs superblock
 * is read with libsquashfs (magic, version, block size, compressor) and
 * then checked against the file: its tables in the order the format
 * lays them out, all of them inside the file.
 */
#include <config.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include <sqfs/compressor.h>
#include <sqfs/error.h>
#include <sqfs/io.h>
#include <sqfs/super.h>

#include "imgtool.h"

#define SQ_NONE 0xffffffffffffffffull /* an absent optional table */

static void
ext_identity(const uint8_t sb[1024], struct image_fs *fs)
{
  const uint8_t *u = sb + 0x68;

  fs->format = IMAGE_EXT4;
  snprintf(fs->compression, sizeof fs->compression, "none");
  snprintf(fs->uuid, sizeof fs->uuid,
           "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-"
           "%02x%02x%02x%02x%02x%02x",
           u[0], u[1], u[2], u[3], u[4], u[5], u[6], u[7], u[8], u[9], u[10], u[11],
           u[12], u[13], u[14], u[15]);
}

/* Whether the tables of a squashfs superblock are where the format puts
 * them: inodes, directories, the optional fragment and export tables,
 * ids, the optional xattrs, all within bytes_used, within the file. */
static const char *
sq_layout_problem(const sqfs_super_t *s, uint64_t file_size)
{
  if (s->bytes_used > file_size)
    return "the file is shorter than the filesystem (truncated?)";
  if (s->inode_table_start < sizeof *s ||
      s->inode_table_start >= s->directory_table_start ||
      s->directory_table_start >= s->id_table_start || s->id_table_start >= s->bytes_used)
    return "its tables are out of order";
  if ((s->fragment_table_start != SQ_NONE &&
       (s->fragment_table_start < s->directory_table_start ||
        s->fragment_table_start > s->id_table_start)) ||
      (s->export_table_start != SQ_NONE &&
       (s->export_table_start < s->directory_table_start ||
        s->export_table_start > s->id_table_start)) ||
      (s->xattr_id_table_start != SQ_NONE &&
       (s->xattr_id_table_start < s->id_table_start ||
        s->xattr_id_table_start >= s->bytes_used)))
    return "an optional table is out of place";
  if ((s->root_inode_ref >> 16) >= s->directory_table_start - s->inode_table_start)
    return "the root inode is outside the inode table";
  if (s->inode_count == 0)
    return "it has no inodes";
  return NULL;
}

/* 1 with fs filled when fd holds a squashfs superblock, 0 when it has no
 * squashfs magic, -EINVAL (why set) when the superblock is not sane. */
static int
sq_identity(int fd, uint64_t size, struct image_fs *fs, char *why, size_t len)
{
  sqfs_file_t *f = sqfile_new(fd, size);
  const char *name, *problem;
  sqfs_super_t s;
  int r = sqfs_super_read(&s, f);

  sqfs_destroy(f);
  if (r == SFQS_ERROR_SUPER_MAGIC || r == SQFS_ERROR_OUT_OF_BOUNDS)
    return 0;
  name = r ? NULL : sqfs_compressor_name_from_id((SQFS_COMPRESSOR)s.compression_id);
  problem = r ? "its superblock is damaged (version, block size or "
                "compressor)"
              : sq_layout_problem(&s, size);
  if (problem || !name) {
    snprintf(why, len, "squashfs: %s", problem ? problem : "unknown compressor");
    return -EINVAL;
  }
  fs->format = IMAGE_SQUASHFS;
  snprintf(fs->compression, sizeof fs->compression, "%s", name);
  fs->block_size = s.block_size;
  fs->inodes = s.inode_count;
  fs->bytes_used = s.bytes_used;
  fs->created = s.modification_time;
  return 1;
}

int
image_fs_read(int fd, struct image_fs *fs, char *why, size_t len)
{
  uint8_t sb[1024];
  struct stat st;
  int r;

  memset(fs, 0, sizeof *fs);
  if (fstat(fd, &st) < 0) {
    snprintf(why, len, "%s", strerror(errno));
    return -errno;
  }
  r = ext_superblock_read(fd, sb);
  if (r == 0) {
    ext_identity(sb, fs);
    return 0;
  }
  if (r != -EINVAL) {
    snprintf(why, len, "%s", strerror(-r));
    return r;
  }
  r = sq_identity(fd, (uint64_t)st.st_size, fs, why, len);
  if (r > 0)
    return 0;
  if (r == 0)
    snprintf(why, len,
             "not an ext4 or squashfs image (no ext2/3/4 or "
             "squashfs superblock)");
  return -EINVAL;
}

const char *
image_format_name(enum image_format f)
{
  return f == IMAGE_SQUASHFS ? "squashfs" : "ext4";
}
