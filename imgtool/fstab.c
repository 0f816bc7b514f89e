/* SPDX-License-Identifier: GPL-2.0-or-later */
/* imgtool build: does the tree's /etc/fstab mount the root?
 *
 * The agent mounts the root read-only, as the kernel does, and systemd
 * remounts it read-write (and has it checked) from the root's line in
 * /etc/fstab.  A tree without that line (no /etc/fstab, or the placeholder
 * debootstrap writes, "# UNCONFIGURED FSTAB FOR BASE SYSTEM") gives
 * clients that run on a read-only root unless their kernel command line
 * says rw, which nobody notices until the first client boots.  The build
 * warns and goes on: a read-only root may be what the admin wants.
 *
 * The check reads the tree as scanned, so an /etc/fstab that --exclude
 * leaves out counts as missing.
 */
#include <config.h>

#include <stdio.h>
#include <string.h>

#include "imgtool.h"

static const struct node *
child(const struct node *dir, const char *name)
{
  for (size_t i = 0; dir && i < dir->nkids; i++)
    if (strcmp(dir->kids[i]->name, name) == 0)
      return dir->kids[i];
  return NULL;
}

/* Whether the fstab line names "/" as its mount point. */
static bool
mounts_root(const char *line)
{
  char spec[512], dir[512];

  line += strspn(line, " \t");
  if (*line == '#' || *line == '\n' || !*line)
    return false;
  return sscanf(line, "%511s %511s", spec, dir) == 2 && strcmp(dir, "/") == 0;
}

const char *
tree_fstab_problem(const struct tree *t)
{
  const struct node *f = child(child(t->root, "etc"), "fstab");
  bool root = false, placeholder = false;
  char line[4096];
  FILE *in;

  if (f && f->hl_first)
    f = f->hl_first; /* the file, under the name seen first */
  if (!f)
    return "there is no /etc/fstab";
  if (S_ISLNK(f->st.st_mode))
    return NULL; /* it points into the client's system: cannot tell */
  if (!S_ISREG(f->st.st_mode))
    return "/etc/fstab is not a file";
  in = fopen(f->path, "re");
  if (!in)
    return NULL; /* the build read it; whatever happened since, no guess */
  while (!root && fgets(line, sizeof line, in)) {
    if (strstr(line, "UNCONFIGURED"))
      placeholder = true;
    root = mounts_root(line);
  }
  fclose(in);
  if (root)
    return NULL;
  return placeholder ? "/etc/fstab is debootstrap's UNCONFIGURED "
                       "placeholder, with no entry for /"
                     : "/etc/fstab has no entry for /";
}
