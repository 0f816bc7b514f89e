/* SPDX-License-Identifier: GPL-2.0-or-later */
/* nbdroot initrd agent: the root of layered mode.
 *
 * The root is overlayfs: lower = the base export, attached read-only
 * (ext4 or squashfs, told apart by the superblock), upper and work =
 * directories on the client's state disk, which must be ext4.  Both
 * filesystems are mounted under /run/nbdroot, which moves into the new
 * root with /run, so the booted system finds them at /run/nbdroot/base
 * and /run/nbdroot/state.
 *
 * The base changes under the upper layer when a new image version is
 * published.  overlayfs allows such offline changes of the lower layer
 * only without its index, xino, redirect_dir and metacopy features
 * (Documentation/filesystems/overlayfs.rst, "Changes to underlying
 * filesystems"), so they are turned off explicitly, whatever the kernel's
 * defaults.  The state disk records the base it last booted on in
 * base-id; when that differs, keep.c prunes the upper layer to the
 * keep-list before the overlay is mounted.
 */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent.h"

#define BASE_ID_FILE LAYERED_STATE "/base-id"
#define UPPER LAYERED_STATE "/upper"
#define WORK LAYERED_STATE "/work"
/* What the base's checksum covers: superblocks, group descriptors and
 * bitmaps of ext4, the superblock and first data of squashfs. */
#define ID_BYTES 65536

#define EXT_MAGIC 0xef53          /* s_magic, 56 bytes into the superblock at 1024 */
#define SQUASHFS_MAGIC 0x73717368 /* "hsqs" at 0 */

static bool
fs_has(const char *fs)
{
  static char buf[4096];
  int fd = open("/proc/filesystems", O_RDONLY | O_CLOEXEC);
  ssize_t n = fd >= 0 ? read(fd, buf, sizeof(buf) - 1) : -1;
  size_t len = strlen(fs);

  if (fd >= 0)
    close(fd);
  buf[n > 0 ? n : 0] = '\0';
  for (char *p = buf; (p = strstr(p, fs)); p += len)
    if ((p == buf || p[-1] == '\t') && (p[len] == '\n' || !p[len]))
      return true;
  return false;
}

bool
layered_supported(void)
{
  if (fs_has("overlay"))
    return true;
  say("layered root (nbdroot.state=) needs overlayfs, and this kernel has "
      "none; build the initrd with imgtool initrd (it packs overlay.ko) or "
      "use a kernel with CONFIG_OVERLAY_FS");
  return false;
}

/* The filesystem on dev by its superblock magic: "ext4" (for ext2/3/4,
 * which the ext4 driver mounts), "squashfs", or NULL. */
static const char *
fs_probe(const char *dev)
{
  uint8_t sb[2048];
  uint16_t m16;
  uint32_t m32;
  int fd = open(dev, O_RDONLY | O_CLOEXEC);
  ssize_t n = fd >= 0 ? pread(fd, sb, sizeof(sb), 0) : -1;

  if (fd >= 0)
    close(fd);
  if (n < (ssize_t)sizeof(sb))
    return NULL;
  memcpy(&m32, sb, 4);
  if (le32toh(m32) == SQUASHFS_MAGIC)
    return "squashfs";
  memcpy(&m16, sb + 1024 + 56, 2);
  if (le16toh(m16) == EXT_MAGIC)
    return "ext4";
  return NULL;
}

int
layered_base_id(const char *base_dev, const struct nbd_export_info *info, char *out,
                size_t len)
{
  static uint8_t buf[ID_BYTES];
  uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a 64 */
  int fd = open(base_dev, O_RDONLY | O_CLOEXEC);
  ssize_t n;
  char desc[sizeof(info->description)];
  size_t i;

  if (fd < 0)
    return -errno;
  n = pread(fd, buf, sizeof(buf), 0);
  close(fd);
  if (n < 0)
    return -errno;
  for (ssize_t k = 0; k < n; k++)
    h = (h ^ buf[k]) * 0x100000001b3ull;
  /* one line in base-id, whatever the server put in the description */
  for (i = 0; info->description[i] && i + 1 < sizeof(desc); i++)
    desc[i] = info->description[i] < 0x20 || info->description[i] > 0x7e
                  ? '?'
                  : info->description[i];
  desc[i] = '\0';
  snprintf(out, len, "size=%llu sum=%016llx desc=%s", (unsigned long long)info->size,
           (unsigned long long)h, desc);
  return 0;
}

/* A squashfs base reads whole compressed blocks (128 KiB of data) for
 * any page, and its readahead widens every window to whole blocks: the
 * device's default window (128 KiB around a page fault) then spans two
 * blocks where one holds the page.  Without device readahead a fault
 * reads the one block that holds it, a sequential read one block at a
 * time (each block fills its 32 pages at once).  The base is read-only
 * and only squashfs reads it, so the setting touches nothing else. */
static void
base_no_readahead(const char *dev)
{
  const char *name = strrchr(dev, '/');
  char path[128];
  int fd;

  snprintf(path, sizeof(path), "/sys/block/%s/queue/read_ahead_kb",
           name ? name + 1 : dev);
  fd = open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0 || write(fd, "0", 1) != 1)
    say("cannot turn off readahead on the squashfs base (%s): %s; booting "
        "with it",
        path, strerror(errno));
  if (fd >= 0)
    close(fd);
}

static int
mount_base(const struct agent_config *cfg, const char *dev)
{
  const char *type = cfg->fstype[0] ? cfg->fstype : fs_probe(dev);

  if (!type) {
    say("the base on %s holds neither ext4 nor squashfs (no superblock "
        "magic); check the export in root=/nbdroot=",
        dev);
    return -EINVAL;
  }
  if (!strcmp(type, "squashfs"))
    base_no_readahead(dev);
  if (!mount(dev, LAYERED_BASE, type, MS_RDONLY, NULL))
    return 0;
  if (errno == ENODEV)
    say("the base on %s is %s and this kernel has no %s; build the initrd "
        "with imgtool initrd (it packs overlay.ko and squashfs.ko)",
        dev, type, type);
  else
    say("cannot mount the base %s (%s) read-only on %s: %s", dev, type, LAYERED_BASE,
        strerror(errno));
  return -ENODEV;
}

static int
mount_state(const struct agent_config *cfg, const char *dev)
{
  const char *type = fs_probe(dev);

  if (!type || strcmp(type, "ext4")) {
    say("the state disk %s (export '%s') is not ext4 (%s); make the state "
        "export from a blank ext4 image (imgtool state-template)",
        dev, cfg->state_export, type ? type : "no ext2/3/4 superblock magic");
    return -EINVAL;
  }
  if (mount(dev, LAYERED_STATE, "ext4", MS_NOATIME, NULL)) {
    say("cannot mount the state disk %s (ext4) on %s: %s; check it with "
        "e2fsck",
        dev, LAYERED_STATE, strerror(errno));
    return -errno;
  }
  if ((mkdir(UPPER, 0755) && errno != EEXIST) || (mkdir(WORK, 0755) && errno != EEXIST)) {
    say("cannot create %s and %s on the state disk: %s", UPPER, WORK, strerror(errno));
    return -errno;
  }
  return 0;
}

static int
read_base_id(char *buf, size_t len)
{
  int fd = open(BASE_ID_FILE, O_RDONLY | O_CLOEXEC);
  ssize_t n;

  if (fd < 0)
    return -errno;
  n = read(fd, buf, len - 1);
  close(fd);
  if (n < 0)
    return -errno;
  buf[n] = '\0';
  buf[strcspn(buf, "\n")] = '\0';
  return 0;
}

/* Durably, so that a crash during the pruning redoes it at the next boot
 * rather than booting a half-pruned upper layer as if it were done. */
static int
write_base_id(const char *id)
{
  int fd = open(BASE_ID_FILE ".new", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  int ret = 0;

  if (fd < 0)
    return -errno;
  if (dprintf(fd, "%s\n", id) < 0 || fsync(fd))
    ret = -errno;
  close(fd);
  if (!ret && rename(BASE_ID_FILE ".new", BASE_ID_FILE))
    ret = -errno;
  if (!ret) {
    fd = open(LAYERED_STATE, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
      fsync(fd);
      close(fd);
    }
  }
  return ret;
}

/* A new base since the last boot: prune the upper layer to the keep-list
 * (everything stays without one), then remember the new base. */
static int
follow_base(const struct agent_config *cfg, const char *base_id)
{
  char old[512];
  struct keep_counts n = { 0 };
  int fd, ret = read_base_id(old, sizeof(old));

  if (!ret && !strcmp(old, base_id))
    return 0;
  if (ret || !old[0]) {
    /* nothing to compare with: nothing to prune either */
    say("layered root: first boot of this state disk (base %s)", base_id);
  } else if (!cfg->keep[0]) {
    say("layered root: the base changed since the last boot (%s -> %s); "
        "keeping all of the client's files (no nbdroot.keep=)",
        old, base_id);
  } else {
    fd = open(UPPER, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    ret = fd < 0 ? -errno : keep_prune(fd, cfg->keep, &n);
    if (fd >= 0)
      close(fd);
    if (ret) {
      say("cannot prune %s to nbdroot.keep=%s: %s", UPPER, cfg->keep, strerror(-ret));
      return ret;
    }
    sync();
    say("layered root: the base changed since the last boot (%s -> %s); "
        "removed %u entries outside nbdroot.keep=%s, kept %u of its paths",
        old, base_id, n.removed, cfg->keep, n.kept);
  }
  ret = write_base_id(base_id);
  if (ret)
    say("cannot write %s: %s", BASE_ID_FILE, strerror(-ret));
  return ret;
}

int
layered_mount(const struct agent_config *cfg, const char *base_dev, const char *state_dev,
              const char *base_id, const char *target)
{
  unsigned long flags = cfg->readonly ? MS_RDONLY : 0;
  char data[1024], extra[256];
  int ret;

  mkdir(LAYERED_DIR, 0755);
  mkdir(LAYERED_BASE, 0755);
  mkdir(LAYERED_STATE, 0755);
  mkdir(target, 0755);
  ret = mount_base(cfg, base_dev);
  if (!ret)
    ret = mount_state(cfg, state_dev);
  if (!ret)
    ret = follow_base(cfg, base_id);
  if (ret)
    return ret;

  split_flags(cfg->rootflags, &flags, extra, sizeof(extra));
  snprintf(data, sizeof(data),
           "lowerdir=%s,upperdir=%s,workdir=%s,index=off,xino=off,"
           "redirect_dir=off,metacopy=off%s%s",
           LAYERED_BASE, UPPER, WORK, extra[0] ? "," : "", extra);
  if (mount("overlay", target, "overlay", flags, data)) {
    ret = -errno;
    say("cannot mount the overlay root on %s (%s): %s", target, data, strerror(-ret));
    return ret;
  }
  if (init_missing(target, cfg->init)) {
    say("the layered root has no executable %s (%s); check init= and the "
        "base image",
        cfg->init, strerror(errno));
    umount(target);
    return -ENOENT;
  }
  return 0;
}
