/* SPDX-License-Identifier: GPL-2.0-or-later */
/* imgtool build --exclude: which entries of a tree stay out of the image.
 *
 * A pattern is an fnmatch(3) glob, in which a star or a question mark
 * never matches a '/'.  Where the pattern holds a '/', it is anchored at
 * the tree's root and matched against the entry's whole path from there,
 * a leading '/' being optional ("var/cache/apt" is "/var/cache/apt");
 * without one, it is matched against the entry's name at any depth (a
 * pattern "*.pyc").  Trailing slashes are ignored.  An excluded directory
 * goes with all it holds: the scan never reads it, so an excluded subtree
 * costs nothing and cannot fail the build.  The tree's root itself is
 * never excluded, so a pattern for what a directory holds (the man page's
 * example for /proc) keeps the empty directory a root needs.
 *
 * Exclusion decides what the image holds and nothing else: an image built
 * with patterns is the same, byte for byte, every time (the scan hashes
 * only what it keeps, in its canonical order).
 */
#include <config.h>

#include <errno.h>
#include <fnmatch.h>
#include <stdlib.h>
#include <string.h>

#include "imgtool.h"

int
exclude_add(struct exclude_list *x, const char *pattern)
{
  char *p = strchr(pattern, '/') && pattern[0] != '/' ? xasprintf("/%s", pattern)
                                                      : xstrdup(pattern);
  size_t l = strlen(p);

  while (l > 1 && p[l - 1] == '/')
    p[--l] = '\0';
  if (l == 0 || strcmp(p, "/") == 0) {
    log_err("--exclude '%s' matches no entry (the tree's root cannot be "
            "excluded): give e.g. '/var/cache/*' or '*.pyc'",
            pattern);
    free(p);
    return -EINVAL;
  }
  XVEC_RESERVE(x->pat, x->cap, x->n + 1);
  x->pat[x->n++] = p;
  return 0;
}

void
exclude_free(struct exclude_list *x)
{
  for (size_t i = 0; i < x->n; i++)
    free(x->pat[i]);
  free(x->pat);
  x->pat = NULL;
  x->n = x->cap = 0;
}

int
exclude_match(const struct exclude_list *x, const char *rel)
{
  const char *name = strrchr(rel, '/');

  name = name ? name + 1 : rel;
  for (size_t i = 0; x && i < x->n; i++) {
    const char *p = x->pat[i];
    if (p[0] == '/' ? fnmatch(p, rel, FNM_PATHNAME) == 0 : fnmatch(p, name, 0) == 0)
      return (int)i;
  }
  return -1;
}

bool
exclude_covers(const struct exclude_list *x, const char *rel)
{
  char *copy = xstrdup(rel);
  bool hit = false;

  /* "/a", "/a/b", ... "/a/b/c": the entry and every directory above. */
  for (char *s = strchr(copy + 1, '/'); s && !hit; s = strchr(s + 1, '/')) {
    *s = '\0';
    hit = exclude_match(x, copy) >= 0;
    *s = '/';
  }
  if (!hit)
    hit = exclude_match(x, copy) >= 0;
  free(copy);
  return hit;
}
