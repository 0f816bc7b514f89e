/* SPDX-License-Identifier: GPL-2.0-or-later */
/* nbdroot initrd agent: the keep-list, what of a layered root's upper
 * layer survives a new base.
 *
 * Every entry of the upper layer is, against the keep-list:
 *   kept     it is a listed path or below one: left as it is, whole;
 *   above    a directory on the way to a listed path: walked into, and
 *            its opaque marker dropped, so that the new base's files in
 *            it show through (an above entry that is not a directory,
 *            e.g. a whiteout hiding all of /etc, is removed);
 *   outside  anything else: removed, whatever it is (files, symlinks,
 *            whiteouts, opaque or plain directories with their contents).
 * The walk runs on the state disk before the overlay is mounted, so it
 * sees overlayfs's own markers as plain inodes and xattrs.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "agent.h"

#define OPAQUE_XATTR "trusted.overlay.opaque"

enum keep_rel { KEEP_OUTSIDE, KEEP_ABOVE, KEEP_KEPT };

/* path ("/etc/ssh") against the comma-separated list. */
static enum keep_rel
relation(const char *path, const char *keep)
{
  size_t pl = strlen(path);
  enum keep_rel r = KEEP_OUTSIDE;

  for (const char *k = keep; *k;) {
    size_t kl = strcspn(k, ",");

    if (pl >= kl && !strncmp(path, k, kl) && (path[kl] == '/' || !path[kl]))
      return KEEP_KEPT;
    if (kl > pl && !strncmp(path, k, pl) && k[pl] == '/')
      r = KEEP_ABOVE;
    k += kl;
    if (*k == ',')
      k++;
  }
  return r;
}

/* Removes name in dirfd and all below it; counts what went. */
static int
remove_tree(int parent, const char *name, unsigned *removed)
{
  struct stat st;
  int ret = 0;

  if (fstatat(parent, name, &st, AT_SYMLINK_NOFOLLOW))
    return -errno;
  if (S_ISDIR(st.st_mode)) {
    int fd = openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    struct dirent *de;

    if (!d) {
      if (fd >= 0)
        close(fd);
      return -errno;
    }
    while (!ret && (de = readdir(d)))
      if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
        ret = remove_tree(fd, de->d_name, removed);
    closedir(d);
    if (ret)
      return ret;
  }
  if (unlinkat(parent, name, S_ISDIR(st.st_mode) ? AT_REMOVEDIR : 0))
    return -errno;
  (*removed)++;
  return 0;
}

/* Walks the directory dirfd, whose path in the root is path (of size
 * PATH_BUF, "" for the root itself). */
#define PATH_BUF 4096
static int
prune_dir(int dirfd, char *path, const char *keep, struct keep_counts *n)
{
  size_t pl = strlen(path);
  int fd = dup(dirfd), ret = 0;
  DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
  struct dirent *de;

  if (!d) {
    if (fd >= 0)
      close(fd);
    return -errno;
  }
  while (!ret && (de = readdir(d))) {
    struct stat st;
    int sub;

    if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
      continue;
    if (pl + 1 + strlen(de->d_name) >= PATH_BUF) {
      ret = -ENAMETOOLONG;
      break;
    }
    snprintf(path + pl, PATH_BUF - pl, "/%s", de->d_name);
    switch (relation(path, keep)) {
      case KEEP_KEPT: n->kept++; break;
      case KEEP_ABOVE:
        if (fstatat(dirfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW)) {
          ret = -errno;
          break;
        }
        if (!S_ISDIR(st.st_mode)) {
          ret = remove_tree(dirfd, de->d_name, &n->removed);
          break;
        }
        sub = openat(dirfd, de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (sub < 0) {
          ret = -errno;
          break;
        }
        if (fremovexattr(sub, OPAQUE_XATTR) && errno != ENODATA)
          ret = -errno;
        if (!ret)
          ret = prune_dir(sub, path, keep, n);
        close(sub);
        break;
      case KEEP_OUTSIDE: ret = remove_tree(dirfd, de->d_name, &n->removed); break;
    }
    path[pl] = '\0';
  }
  closedir(d);
  return ret;
}

int
keep_prune(int upper_fd, const char *keep, struct keep_counts *n)
{
  char path[PATH_BUF] = "";

  n->removed = n->kept = 0;
  return prune_dir(upper_fd, path, keep, n);
}
