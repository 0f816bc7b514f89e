/* SPDX-License-Identifier: GPL-2.0-or-later */
/* nbdroot initrd agent: early mounts, mounting the root, switch_root.
 *
 * switch_root follows the kernel's rules for leaving an initramfs (see
 * Documentation/filesystems/ramfs-rootfs-initramfs.rst): rootfs cannot be
 * unmounted, so its files are deleted to free the memory, the new root is
 * moved over "/", and init is exec'd from a chroot into it.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "agent.h"

#define RAMFS_MAGIC 0x858458f6
#define TMPFS_MAGIC 0x01021994

static const struct early_mount {
  const char *src, *dir, *type;
  unsigned long flags;
  const char *data;
} early[] = {
  { "devtmpfs", "/dev", "devtmpfs", MS_NOSUID, "mode=0755" },
  { "proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL },
  { "sysfs", "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL },
  { "tmpfs", "/run", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755" },
};

int
mount_early(void)
{
  int fd, ret = 0;

  for (size_t i = 0; i < ARRAY_SIZE(early); i++) {
    mkdir(early[i].dir, 0755);
    if (mount(early[i].src, early[i].dir, early[i].type, early[i].flags, early[i].data) &&
        errno != EBUSY)
      ret = -errno;
  }
  /* The kernel opens /dev/console for init only if the initramfs has the
   * node; with devtmpfs mounted it exists now in any case. */
  fd = open("/dev/console", O_RDWR | O_NOCTTY | O_CLOEXEC);
  if (fd >= 0) {
    dup2(fd, 0);
    dup2(fd, 1);
    dup2(fd, 2);
    if (fd > 2)
      close(fd);
  }
  if (ret)
    say("early mounts of /dev, /proc, /sys, /run failed: %s", strerror(-ret));
  return ret;
}

/* Mount options mount(8) turns into flags; the rest is the filesystem's. */
static const struct {
  const char *name;
  unsigned long set, clear;
} mflags[] = {
  { "ro", MS_RDONLY, 0 },
  { "rw", 0, MS_RDONLY },
  { "noatime", MS_NOATIME, 0 },
  { "relatime", MS_RELATIME, 0 },
  { "nodiratime", MS_NODIRATIME, 0 },
  { "nosuid", MS_NOSUID, 0 },
  { "nodev", MS_NODEV, 0 },
  { "noexec", MS_NOEXEC, 0 },
  { "sync", MS_SYNCHRONOUS, 0 },
  { "lazytime", MS_LAZYTIME, 0 },
  { "defaults", 0, 0 },
};

void
split_flags(const char *opts, unsigned long *flags, char *data, size_t datalen)
{
  char buf[256], *save = NULL;

  data[0] = '\0';
  snprintf(buf, sizeof(buf), "%s", opts);
  for (char *o = strtok_r(buf, ",", &save); o; o = strtok_r(NULL, ",", &save)) {
    size_t i;
    for (i = 0; i < ARRAY_SIZE(mflags); i++)
      if (!strcmp(o, mflags[i].name))
        break;
    if (i < ARRAY_SIZE(mflags)) {
      *flags = (*flags | mflags[i].set) & ~mflags[i].clear;
      continue;
    }
    snprintf(data + strlen(data), datalen - strlen(data), "%s%s", data[0] ? "," : "", o);
  }
}

/* openat2(2) (Linux 5.6), not wrapped by every libc. */
#ifndef SYS_openat2
#define SYS_openat2 437
#endif
struct open_how_v0 {
  uint64_t flags;
  uint64_t mode;
  uint64_t resolve;
};
#define RESOLVE_IN_ROOT_FLAG 0x10

/* Whether init is missing, or not an executable file, in the root at
 * root.  The path is resolved as it will be after switch_root: Debian's
 * /sbin/init is a link to /lib/systemd/systemd, which, looked up from
 * here, would be searched for in the initramfs.  True with errno set. */
bool
init_missing(const char *root, const char *init)
{
  struct open_how_v0 how = { .flags = O_PATH | O_CLOEXEC,
                             .resolve = RESOLVE_IN_ROOT_FLAG };
  struct stat st;
  int rootfd, fd;

  rootfd = open(root, O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (rootfd < 0)
    return true;
  fd = (int)syscall(SYS_openat2, rootfd, init, &how, sizeof(how));
  close(rootfd);
  if (fd < 0) {
    /* A kernel without openat2 cannot tell: let exec say it. */
    return errno != ENOSYS;
  }
  if (fstat(fd, &st) < 0) {
    close(fd);
    return true;
  }
  close(fd);
  if (!S_ISREG(st.st_mode) || !(st.st_mode & 0111)) {
    errno = EACCES;
    return true;
  }
  return false;
}

int
mount_root(const struct agent_config *cfg, const char *dev, const char *target)
{
  static char fss[4096];
  unsigned long flags = cfg->readonly ? MS_RDONLY : 0;
  char data[256], tried[256] = "";
  int fd, ret = -ENODEV;
  ssize_t n;

  mkdir(target, 0755);
  split_flags(cfg->rootflags, &flags, data, sizeof(data));
  if (cfg->fstype[0]) {
    if (!mount(dev, target, cfg->fstype, flags, data[0] ? data : NULL))
      goto ok;
    ret = -errno;
    snprintf(tried, sizeof(tried), "%s", cfg->fstype);
    goto fail;
  }
  /* As the kernel does without rootfstype=: every block filesystem it
   * knows, in /proc/filesystems order. */
  fd = open("/proc/filesystems", O_RDONLY | O_CLOEXEC);
  n = fd >= 0 ? read(fd, fss, sizeof(fss) - 1) : -1;
  if (fd >= 0)
    close(fd);
  fss[n > 0 ? n : 0] = '\0';
  for (char *line = fss, *next; line && *line; line = next) {
    next = strchr(line, '\n');
    if (next)
      *next++ = '\0';
    if (!strncmp(line, "nodev", 5))
      continue;
    while (*line == '\t' || *line == ' ')
      line++;
    if (!*line)
      continue;
    if (snprintf(tried + strlen(tried), sizeof(tried) - strlen(tried), "%s%s",
                 tried[0] ? "," : "", line) < 0)
      tried[0] = '\0';
    if (!mount(dev, target, line, flags, data[0] ? data : NULL)) {
      say("mounted %s as %s", dev, line);
      goto ok;
    }
    /* EINVAL: not this filesystem; anything else is worth reporting */
    if (errno != EINVAL || ret == -ENODEV)
      ret = -errno;
  }
fail:
  say("cannot mount %s on %s (type %s, %s, options '%s'): %s; check "
      "rootfstype=/rootflags= and that the filesystem's module is in the "
      "initrd",
      dev, target, tried[0] ? tried : "none known", flags & MS_RDONLY ? "ro" : "rw", data,
      strerror(-ret));
  return ret;
ok:
  if (init_missing(target, cfg->init)) {
    say("the root on %s has no executable %s (%s); check init= and the "
        "image",
        dev, cfg->init, strerror(errno));
    umount(target);
    return -ENOENT;
  }
  return 0;
}

/* Deletes everything on the rootfs under dirfd, not crossing into other
 * filesystems (the new root and the moved mounts). */
static void
delete_tree(int dirfd, dev_t rootdev)
{
  DIR *d = fdopendir(dirfd);
  struct dirent *de;

  if (!d) {
    close(dirfd);
    return;
  }
  while ((de = readdir(d))) {
    struct stat st;
    if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
      continue;
    if (fstatat(dirfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) || st.st_dev != rootdev)
      continue;
    if (S_ISDIR(st.st_mode)) {
      int sub = openat(dirfd, de->d_name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
      if (sub >= 0)
        delete_tree(sub, rootdev);
      unlinkat(dirfd, de->d_name, AT_REMOVEDIR);
    } else {
      unlinkat(dirfd, de->d_name, 0);
    }
  }
  closedir(d);
}

int
switch_root(const char *newroot, const char *init)
{
  static const char *const moves[] = { "/dev", "/proc", "/sys", "/run" };
  char target[256];
  struct statfs sfs;
  struct stat st;
  int fd;

  for (size_t i = 0; i < ARRAY_SIZE(moves); i++) {
    snprintf(target, sizeof(target), "%s%s", newroot, moves[i]);
    if (stat(target, &st) || !S_ISDIR(st.st_mode)) {
      say("the new root has no %s directory; unmounting it instead", moves[i]);
      umount2(moves[i], MNT_DETACH);
      continue;
    }
    if (mount(moves[i], target, NULL, MS_MOVE, NULL)) {
      say("cannot move %s to %s: %s", moves[i], target, strerror(errno));
      umount2(moves[i], MNT_DETACH);
    }
  }
  if (chdir(newroot)) {
    say("cannot chdir to %s: %s", newroot, strerror(errno));
    return -errno;
  }
  /* Free the initramfs, but only if "/" really is one. */
  if (!statfs("/", &sfs) && (sfs.f_type == RAMFS_MAGIC || sfs.f_type == TMPFS_MAGIC) &&
      !stat("/", &st)) {
    fd = open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0)
      delete_tree(fd, st.st_dev);
  }
  if (mount(".", "/", NULL, MS_MOVE, NULL)) {
    say("cannot move %s to /: %s", newroot, strerror(errno));
    return -errno;
  }
  if (chroot(".") || chdir("/")) {
    say("cannot chroot into the new root: %s", strerror(errno));
    return -errno;
  }
  char *const argv[] = { (char *)init, NULL };
  char *const envp[] = { "HOME=/", "TERM=linux", "PATH=/usr/sbin:/usr/bin:/sbin:/bin",
                         NULL };
  execve(init, argv, envp);
  say("cannot exec %s in the new root: %s; check init=", init, strerror(errno));
  return -errno;
}
