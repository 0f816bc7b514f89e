/* SPDX-License-Identifier: GPL-2.0-or-later */
/* imgtool: an overlayfs upper layer folded onto its base, in memory.
 *
 * commit --layered makes a new version of what a layered client sees:
 * its base version with its upper layer on top, resolved the way
 * overlayfs resolves it.  Both are trees read from images (imgread.c);
 * the result is the base's tree with, from the top of the upper layer
 * down:
 *   - a whiteout (character device 0/0) removes the base's entry;
 *   - an opaque directory (trusted.overlay.opaque "y") replaces the
 *     base's entry, whatever was below it;
 *   - any other directory over a base directory merges: it gives its own
 *     attributes and its entries are folded in turn;
 *   - anything else replaces the base's entry, or is added.
 * overlayfs's own attributes (trusted.overlay.*) are dropped, and so are
 * whiteouts left inside opaque directories or without a base entry.
 * The upper layer's entries move into the base's tree; the base's entries
 * that go are kept aside until the end, since a hard link of theirs may
 * survive elsewhere: relinking then makes the first surviving name, in
 * canonical order, own the inode (as scan.c does for a host tree).
 */
#include <config.h>

#include <stdlib.h>
#include <string.h>

#include "imgtool.h"

struct fold {
  struct node **gone; /* entries removed, freed at the end */
  size_t ngone, gone_cap;
};

static void
drop_overlay_xattrs(struct node *n)
{
  size_t k = 0;

  for (size_t i = 0; i < n->nxattrs; i++) {
    if (strncmp(n->xattrs[i].name, "trusted.overlay.", 16) == 0) {
      free(n->xattrs[i].name);
      free(n->xattrs[i].value);
    } else {
      n->xattrs[k++] = n->xattrs[i];
    }
  }
  n->nxattrs = k;
}

static void
set_aside(struct fold *f, struct node *n)
{
  XVEC_RESERVE(f->gone, f->gone_cap, f->ngone + 1);
  f->gone[f->ngone++] = n;
}

/* n, moved under dir: its path and its subtree's made the merged
 * tree's, overlayfs's markers dropped (whiteouts set aside). */
static void
adopt(struct fold *f, struct node *n, const struct node *dir)
{
  size_t k = 0;

  free(n->path);
  n->path = xasprintf("%s/%s", dir->path, n->name);
  drop_overlay_xattrs(n);
  for (size_t i = 0; i < n->nkids; i++) {
    struct node *c = n->kids[i];
    if (whiteout(c)) {
      set_aside(f, c);
      continue;
    }
    adopt(f, c, n);
    n->kids[k++] = c;
  }
  n->nkids = k;
}

/* Puts n in dir in place of old (NULL: a new entry, kept sorted). */
static void
place(struct node *dir, struct node *old, struct node *n)
{
  size_t i = 0;

  for (; i < dir->nkids && dir->kids[i] != old; i++)
    if (!old && strcmp(dir->kids[i]->name, n->name) > 0)
      break;
  if (old) {
    dir->kids[i] = n;
    return;
  }
  XVEC_RESERVE(dir->kids, dir->kids_cap, dir->nkids + 1);
  memmove(dir->kids + i + 1, dir->kids + i, (dir->nkids - i) * sizeof *dir->kids);
  dir->kids[i] = n;
  dir->nkids++;
}

static void
unplace(struct node *dir, struct node *old)
{
  size_t i = 0;

  while (dir->kids[i] != old)
    i++;
  memmove(dir->kids + i, dir->kids + i + 1, (dir->nkids - i - 1) * sizeof *dir->kids);
  dir->nkids--;
}

/* Folds the entries of upper directory u into base directory b; u is
 * left empty (its entries moved or set aside). */
static void
fold_dir(struct fold *f, struct node *b, struct node *u)
{
  for (size_t i = 0; i < u->nkids; i++) {
    struct node *k = u->kids[i], *old = node_child(b, k->name);

    if (whiteout(k)) {
      if (old) {
        unplace(b, old);
        set_aside(f, old);
      }
      set_aside(f, k);
    } else if (S_ISDIR(k->st.st_mode) && !opaque_dir(k) && old &&
               S_ISDIR(old->st.st_mode)) {
      /* merges: the upper directory's attributes, both's entries */
      old->st = k->st;
      drop_overlay_xattrs(k);
      for (size_t x = 0; x < old->nxattrs; x++) {
        free(old->xattrs[x].name);
        free(old->xattrs[x].value);
      }
      free(old->xattrs);
      old->xattrs = k->xattrs;
      old->nxattrs = k->nxattrs;
      k->xattrs = NULL;
      k->nxattrs = 0;
      fold_dir(f, old, k);
      set_aside(f, k);
    } else {
      adopt(f, k, b);
      place(b, old, k);
      if (old)
        set_aside(f, old);
    }
  }
  u->nkids = 0;
}

/* Key of an inode: the image it comes from and its number there. */
struct owner {
  const struct image_reader *src;
  uint64_t ino;
  struct node *first;
};

/* Makes n, a further name of a removed owner, own the inode: a copy of
 * the owner's attributes, xattrs and target (src_ino is the owner's). */
static void
promote(struct node *n)
{
  const struct node *o = n->hl_first;

  n->st = o->st;
  n->xattrs = xcalloc(o->nxattrs ? o->nxattrs : 1, sizeof *n->xattrs);
  for (size_t i = 0; i < o->nxattrs; i++) {
    n->xattrs[i].name = xstrdup(o->xattrs[i].name);
    n->xattrs[i].value = xmalloc(o->xattrs[i].len ? o->xattrs[i].len : 1);
    memcpy(n->xattrs[i].value, o->xattrs[i].value, o->xattrs[i].len);
    n->xattrs[i].len = o->xattrs[i].len;
  }
  n->nxattrs = o->nxattrs;
  n->link = o->link ? xstrdup(o->link) : NULL;
  n->src_ino = o->src_ino;
  n->hl_first = NULL;
}

static void
relink(struct node *dir, struct owner **tab, size_t *n, size_t *cap)
{
  for (size_t i = 0; i < dir->nkids; i++) {
    struct node *k = dir->kids[i];
    const struct node *o = k->hl_first ? k->hl_first : k;
    struct owner *w = NULL;
    bool linked;

    if (S_ISDIR(k->st.st_mode)) {
      relink(k, tab, n, cap);
      continue;
    }
    for (size_t j = 0; j < *n && !w; j++)
      if ((*tab)[j].src == o->src && (*tab)[j].ino == o->src_ino)
        w = &(*tab)[j];
    if (w) {
      k->hl_first = w->first;
      w->first->hl_count++;
      continue;
    }
    linked = o != k || k->hl_count > 1;
    if (k->hl_first)
      promote(k);
    k->hl_count = 1;
    if (linked) {
      XVEC_RESERVE(*tab, *cap, *n + 1);
      (*tab)[(*n)++] = (struct owner){ o->src, o->src_ino, k };
    }
  }
}

void
fold_upper(struct tree *base, struct node *upper)
{
  struct fold f = { 0 };
  struct owner *tab = NULL;
  size_t n = 0, cap = 0;

  fold_dir(&f, base->root, upper);
  /* the owners' counts are recounted from the names that are left */
  relink(base->root, &tab, &n, &cap);
  free(tab);
  for (size_t i = 0; i < f.ngone; i++)
    node_free(f.gone[i]);
  free(f.gone);
}
