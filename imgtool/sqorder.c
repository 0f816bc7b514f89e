/* SPDX-License-Identifier: GPL-2.0-or-later */
/* imgtool build --format squashfs --order FILE: the regular files whose
 * data is written first, in the file's order.
 *
 * A squashfs client reads a whole compressed block for any page of a
 * file, and a whole fragment block (the packed tails of many small
 * files) for any small file.  Writing the files a boot reads first, in
 * the order it reads them, puts what is read together into the same
 * fragment blocks, next to each other on the disk, instead of next to
 * files of the same directory that nobody reads (mksquashfs -sort does
 * the like with priorities).
 *
 * FILE holds one path a line, relative to the tree's root (a leading '/'
 * is allowed); empty lines and lines starting with '#' are skipped.  The
 * path names the entry itself: no symbolic link in it is followed.  A
 * path that is not a regular file of the scanned tree (missing, excluded,
 * a directory, ...) is skipped and counted, and the build warns once with
 * an example; a file listed twice, or a hard link of one listed before,
 * keeps its first place.  The result depends on the tree and FILE only,
 * so the build stays reproducible.
 *
 * The inode table follows suit (squashfs.c): the listed files' inodes
 * first, the directories on their paths last (their listings likewise
 * together at the end of the directory table), so that the few metadata
 * blocks a boot looks names up in stay in the kernel's small cache of
 * them (8 blocks in Linux 6.1) instead of being read again and again.
 */
#include <config.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "imgtool.h"

/* The node path names in t (components split at '/'), or NULL; the
 * directories on the way are added to bo->dirs (kept when the path
 * names a regular file). */
static struct node *
order_lookup(const struct tree *t, const char *path, struct build_order *bo)
{
  struct node *n = t->root;

  while (n && *path) {
    size_t len = strcspn(path, "/");

    if (len && !(len == 1 && path[0] == '.')) {
      if (!S_ISDIR(n->st.st_mode))
        return NULL;
      XVEC_RESERVE(bo->dirs, bo->dirs_cap, bo->ndirs + 1);
      bo->dirs[bo->ndirs++] = n;
      n = node_child_n(n, path, len);
    }
    path += len;
    path += *path == '/';
  }
  return n;
}

/* Adds the regular file named by line to the order (line: one line of
 * the file, its newline cut). */
static void
order_add(struct build_order *bo, const struct tree *t, const char *line)
{
  size_t ndirs = bo->ndirs;
  struct node *n = order_lookup(t, line, bo);

  if (n && n->hl_first)
    n = n->hl_first;
  if (!n || !S_ISREG(n->st.st_mode)) {
    bo->ndirs = ndirs;
    if (!bo->skipped++)
      bo->skipped_example = xstrdup(line);
    return;
  }
  XVEC_RESERVE(bo->nodes, bo->cap, bo->count + 1);
  bo->nodes[bo->count++] = n;
}

int
build_order_read(const char *file, const struct tree *t, struct build_order *bo)
{
  FILE *f = fopen(file, "r");
  char *line = NULL;
  size_t cap = 0;
  ssize_t len;

  memset(bo, 0, sizeof *bo);
  if (!f) {
    int r = -errno;
    log_err("--order %s: %s: give a file of paths, one a line", file, strerror(-r));
    return r;
  }
  while ((len = getline(&line, &cap, f)) >= 0) {
    if (len && line[len - 1] == '\n')
      line[--len] = 0;
    if (!len || line[0] == '#')
      continue;
    order_add(bo, t, line);
  }
  if (ferror(f)) {
    log_err("--order %s: cannot read it", file);
    free(line);
    fclose(f);
    build_order_free(bo);
    return -EIO;
  }
  free(line);
  fclose(f);
  if (bo->skipped)
    log_warn("--order %s: %llu paths are not regular files of the tree and are "
             "skipped, e.g. %s",
             file, (unsigned long long)bo->skipped, bo->skipped_example);
  return 0;
}

void
build_order_free(struct build_order *bo)
{
  free(bo->nodes);
  free(bo->dirs);
  free(bo->skipped_example);
  memset(bo, 0, sizeof *bo);
}
