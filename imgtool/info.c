/* SPDX-License-Identifier: GPL-2.0-or-later */
/* imgtool info and verify: what an image or a store holds, and whether
 * the published versions are still what was published.
 *
 * info prints one "key=value ..." line per item so that scripts (and the
 * tests) can read it without guessing at a layout.
 */
#include <config.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <et/com_err.h>
#include <ext2fs/ext2fs.h>

#include "imgtool.h"

static void
fmt_time(int64_t t, char out[32])
{
  time_t tt = (time_t)t;
  struct tm tm;

  gmtime_r(&tt, &tm);
  strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* The filesystem the image at path holds; says why there is none in
 * words rather than as a library's error code. */
static int
read_image_fs(const char *path, struct image_fs *fs)
{
  char why[160];
  int fd = open(path, O_RDONLY | O_CLOEXEC), r;

  if (fd < 0) {
    log_err("cannot read %s: %s", path, strerror(errno));
    return -errno;
  }
  r = image_fs_read(fd, fs, why, sizeof why);
  close(fd);
  if (r == -EINVAL)
    log_err("%s is %s: give an image file, a store DIR or DIR/NAME", path, why);
  else if (r < 0)
    log_err("cannot read %s: %s", path, why);
  return r;
}

static int
info_squashfs(const char *path, const struct image_fs *fs)
{
  char created[32];
  struct stat st;

  if (stat(path, &st) < 0) {
    log_err("cannot read %s: %s", path, strerror(errno));
    return 1;
  }
  fmt_time(fs->created, created);
  printf("image=%s\nformat=squashfs\ncompression=%s\nblock_size=%u\n"
         "inodes=%llu\nbytes_used=%llu\nsize=%llu\ncreated=%s\n",
         path, fs->compression, fs->block_size, (unsigned long long)fs->inodes,
         (unsigned long long)fs->bytes_used, (unsigned long long)st.st_size, created);
  return 0;
}

static int
info_image(const char *path)
{
  struct image_fs ifs;
  ext2_filsys fs;
  errcode_t e;
  const uint8_t *u;
  char created[32];

  if (read_image_fs(path, &ifs) < 0)
    return 1;
  if (ifs.format == IMAGE_SQUASHFS)
    return info_squashfs(path, &ifs);
  e = ext2fs_open(path, EXT2_FLAG_64BITS, 0, 0, unix_io_manager, &fs);
  if (e) {
    log_err("%s has an ext2/3/4 superblock but cannot be opened (%s): "
            "check it with e2fsck -fn",
            path, error_message(e));
    return 1;
  }
  u = fs->super->s_uuid;
  fmt_time(fs->super->s_mkfs_time, created);
  printf("image=%s\nformat=ext4\nuuid=%02x%02x%02x%02x-%02x%02x-%02x%02x-"
         "%02x%02x-%02x%02x%02x%02x%02x%02x\nlabel=%.16s\nblock_size=%u\n"
         "blocks=%llu\nfree_blocks=%llu\ninodes=%u\nfree_inodes=%u\n"
         "size=%llu\ncreated=%s\n",
         path, u[0], u[1], u[2], u[3], u[4], u[5], u[6], u[7], u[8], u[9], u[10], u[11],
         u[12], u[13], u[14], u[15], (const char *)fs->super->s_volume_name,
         fs->blocksize, (unsigned long long)ext2fs_blocks_count(fs->super),
         (unsigned long long)ext2fs_free_blocks_count(fs->super),
         fs->super->s_inodes_count, fs->super->s_free_inodes_count,
         (unsigned long long)ext2fs_blocks_count(fs->super) * fs->blocksize, created);
  ext2fs_close_free(&fs);
  return 0;
}

static int
info_namedir(const char *namedir)
{
  unsigned *ids, cur = 0;
  size_t n;
  int r;

  r = store_list(namedir, &ids, &n);
  if (r < 0) {
    log_err("cannot read store %s: %s", namedir, strerror(-r));
    return 1;
  }
  store_current(namedir, &cur);
  for (size_t i = 0; i < n; i++) {
    struct version_meta m;
    char created[32], parent[16];

    if (store_read_meta(namedir, ids[i], &m) < 0) {
      printf("version=%s/%04u.img error=unreadable-metadata\n", namedir, ids[i]);
      continue;
    }
    fmt_time(m.created, created);
    if (m.parent)
      snprintf(parent, sizeof parent, "%04u", m.parent);
    else
      snprintf(parent, sizeof parent, "none");
    /* source last: it is free text and may hold spaces. */
    printf("version=%s/%04u.img id=%04u current=%s format=%s "
           "compression=%s size=%llu sha256=%s uuid=%s created=%s parent=%s "
           "source=%s\n",
           namedir, m.id, m.id, m.id == cur ? "yes" : "no", m.format, m.compression,
           (unsigned long long)m.size, m.sha256, m.uuid, created, parent, m.source);
  }
  if (!n)
    printf("store=%s versions=0\n", namedir);
  free(ids);
  return 0;
}

/* Calls fn for DIR/NAME, or for every NAME in DIR when name is NULL. */
static int
for_each_namedir(const char *store, const char *name, int (*fn)(const char *namedir))
{
  struct strv names = { 0 };
  int rc = 0;

  if (name) {
    char *nd = store_name_dir(store, name);
    if (!nd)
      return 1;
    rc = fn(nd);
    free(nd);
    return rc;
  }
  rc = store_names(store, &names);
  if (rc < 0) {
    log_err("cannot open store %s: %s", store, strerror(-rc));
    strv_free(&names);
    return 1;
  }
  for (size_t i = 0; i < names.n; i++)
    if (fn(names.v[i]))
      rc = 1;
  strv_free(&names);
  return rc;
}

static int
verify_namedir(const char *namedir)
{
  unsigned *ids, cur = 0;
  size_t n;
  int r, rc = 0, rcur;
  bool cur_ok = false;

  r = store_list(namedir, &ids, &n);
  if (r < 0) {
    log_err("cannot read store %s: %s", namedir, strerror(-r));
    return 1;
  }
  rcur = store_current(namedir, &cur);
  for (size_t i = 0; i < n; i++) {
    char *img = store_version_path(namedir, ids[i], "img");
    char msg[256];

    if (store_check_version(namedir, ids[i], msg, sizeof msg) < 0) {
      printf("BAD %s: %s\n", img, msg);
      rc = 1;
    } else {
      printf("ok %s %s\n", img, msg);
    }
    if (ids[i] == cur)
      cur_ok = true;
    free(img);
  }
  if (rcur < 0 || (cur && !cur_ok)) {
    printf("BAD %s/current: does not point to a published version\n", namedir);
    rc = 1;
  } else if (!cur && n) {
    printf("BAD %s/current: missing\n", namedir);
    rc = 1;
  }
  free(ids);
  return rc;
}

static int
store_cmd(int argc, char **argv, bool verify)
{
  static const struct option opts[] = {
    { "store", required_argument, NULL, 'S' },
    { "name", required_argument, NULL, 'N' },
    { "help", no_argument, NULL, 'h' },
    { NULL, 0, NULL, 0 },
  };
  const char *store = NULL, *name = NULL;
  int c;

  while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
    switch (c) {
      case 'S': store = optarg; break;
      case 'N': name = optarg; break;
      case 'h':
        printf("usage: imgtool %s --store DIR [--name NAME]%s\n",
               verify ? "verify" : "info", verify ? "" : " | IMAGE | DIR/NAME");
        return 0;
      default: return 2;
    }
  }
  if (!store && optind == argc - 1) {
    const char *arg = argv[optind];
    struct stat st;
    if (stat(arg, &st) < 0) {
      log_err("%s: %s", arg, strerror(errno));
      return 1;
    }
    if (S_ISDIR(st.st_mode)) {
      if (!store_is_namedir(arg))
        return for_each_namedir(arg, NULL, verify ? verify_namedir : info_namedir);
      return verify ? verify_namedir(arg) : info_namedir(arg);
    }
    if (verify) {
      log_err("verify checks a store: give --store DIR [--name NAME]");
      return 2;
    }
    return info_image(arg);
  }
  if (!store || optind != argc) {
    log_err("%s needs --store DIR [--name NAME]%s", verify ? "verify" : "info",
            verify ? "" : " or an IMAGE");
    return 2;
  }
  return for_each_namedir(store, name, verify ? verify_namedir : info_namedir);
}

int
cmd_info(int argc, char **argv)
{
  return store_cmd(argc, argv, false);
}

int
cmd_verify(int argc, char **argv)
{
  return store_cmd(argc, argv, true);
}
