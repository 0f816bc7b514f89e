/* SPDX-License-Identifier: GPL-2.0-or-later */
/* imgtool: reads a client tree into memory before the image is built.
 *
 * Why a separate pass: the image must not depend on the order readdir()
 * returns entries in, nor on ctimes, so every directory is sorted (bytewise)
 * and inodes are later allocated in that order.  The pass also sizes the
 * image (data and metadata blocks, inode count) and hashes all metadata in
 * that canonical order; that digest seeds the filesystem UUID and directory
 * hash seed, so the same tree gives the same image bytes.
 *
 * Hard links are found by (st_dev, st_ino); the first occurrence in
 * canonical order owns the inode, later ones only add a name.  Their link
 * count is the number of names inside the tree, not st_nlink, since links
 * outside the tree do not come along.
 *
 * Mount points inside the tree (a /proc left mounted in a chroot) are kept
 * as empty directories: their contents belong to another filesystem.
 * Entries that --exclude leaves out (exclude.c) are dropped as readdir
 * returns them, before anything else is read or hashed.
 */
#include <config.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "imgtool.h"

#define BLK 4096u

struct hl_table {
  struct node **slots;
  size_t cap;
  size_t used;
};

static size_t
hl_hash(dev_t dev, ino_t ino, size_t cap)
{
  uint64_t h = (uint64_t)ino * 0x9e3779b97f4a7c15ull ^ (uint64_t)dev;
  h ^= h >> 29;
  return (size_t)(h & (cap - 1));
}

/* Returns the node already registered for n's inode, or registers n. */
static struct node *
hl_find_or_add(struct hl_table *t, struct node *n)
{
  size_t i;

  if (t->used * 2 >= t->cap) {
    size_t ncap = t->cap ? t->cap * 2 : 1024;
    struct node **ns = xcalloc(ncap, sizeof *ns);
    for (size_t j = 0; j < t->cap; j++) {
      struct node *o = t->slots[j];
      if (!o)
        continue;
      i = hl_hash(o->st.st_dev, o->st.st_ino, ncap);
      while (ns[i])
        i = (i + 1) & (ncap - 1);
      ns[i] = o;
    }
    free(t->slots);
    t->slots = ns;
    t->cap = ncap;
  }
  i = hl_hash(n->st.st_dev, n->st.st_ino, t->cap);
  while (t->slots[i]) {
    struct node *o = t->slots[i];
    if (o->st.st_dev == n->st.st_dev && o->st.st_ino == n->st.st_ino)
      return o;
    i = (i + 1) & (t->cap - 1);
  }
  t->slots[i] = n;
  t->used++;
  return NULL;
}

struct scan_ctx {
  struct tree *t;
  struct hl_table hl;
  dev_t root_dev;
  size_t rootlen;
  const struct exclude_list *x;
  size_t *hits; /* per pattern: entries it excluded */
};

static int
cmp_node(const void *a, const void *b)
{
  const struct node *x = *(struct node *const *)a;
  const struct node *y = *(struct node *const *)b;
  return strcmp(x->name, y->name);
}

static int
cmp_xattr(const void *a, const void *b)
{
  return strcmp(((const struct xattr *)a)->name, ((const struct xattr *)b)->name);
}

/* Namespaces ext4 stores; others (e.g. an NFSv4 ACL) cannot be kept. */
static bool
xattr_supported(const char *name)
{
  return strncmp(name, "user.", 5) == 0 || strncmp(name, "trusted.", 8) == 0 ||
         strncmp(name, "security.", 9) == 0 ||
         strcmp(name, "system.posix_acl_access") == 0 ||
         strcmp(name, "system.posix_acl_default") == 0;
}

static int
read_xattrs(struct node *n)
{
  ssize_t len, vlen;
  char *names, *p;
  size_t cap = 0;

  len = llistxattr(n->path, NULL, 0);
  if (len < 0) {
    if (errno == ENOTSUP || errno == ENOSYS)
      return 0;
    return -errno;
  }
  if (len == 0)
    return 0;
  names = xmalloc((size_t)len);
  len = llistxattr(n->path, names, (size_t)len);
  if (len < 0) {
    int r = -errno;
    free(names);
    return r;
  }
  for (p = names; p < names + len; p += strlen(p) + 1) {
    struct xattr *x;

    if (!xattr_supported(p)) {
      log_warn("%s: extended attribute %s cannot be stored in ext4, skipped", n->path, p);
      continue;
    }
    vlen = lgetxattr(n->path, p, NULL, 0);
    if (vlen < 0) {
      int r = -errno;
      free(names);
      return r;
    }
    XVEC_RESERVE(n->xattrs, cap, n->nxattrs + 1);
    x = &n->xattrs[n->nxattrs];
    x->name = xstrdup(p);
    x->value = xmalloc((size_t)vlen);
    vlen = lgetxattr(n->path, p, x->value, (size_t)vlen);
    if (vlen < 0) {
      int r = -errno;
      free(x->name);
      free(x->value);
      free(names);
      return r;
    }
    x->len = (size_t)vlen;
    n->nxattrs++;
  }
  free(names);
  if (n->nxattrs > 1)
    qsort(n->xattrs, n->nxattrs, sizeof *n->xattrs, cmp_xattr);
  return 0;
}

static void
hash_str(struct sha256_ctx *s, const char *str, size_t len)
{
  sha256_u64(s, len);
  sha256_update(s, len, (const uint8_t *)str);
}

/* What tree_account walks the tree with. */
struct account {
  struct tree *t;
  struct sha256_ctx sha;
  int64_t clamp;
  bool clamp_set;
  size_t rootlen;
};

/* Hashes what ends up in the image for node n: the canonical identity of
 * the tree (relative path, type, mode, owner, size, clamped mtime, device,
 * link target, xattrs, hard-link target). */
static void
hash_node(struct account *c, const struct node *n)
{
  const char *rel = n->path + c->rootlen;
  int64_t mt = n->st.st_mtim.tv_sec;
  int64_t ns = n->st.st_mtim.tv_nsec;

  if (c->clamp_set && mt >= c->clamp) {
    mt = c->clamp;
    ns = 0;
  }
  hash_str(&c->sha, rel, strlen(rel));
  if (n->hl_first) {
    const char *first = n->hl_first->path + c->rootlen;
    hash_str(&c->sha, "=", 1);
    hash_str(&c->sha, first, strlen(first));
    return;
  }
  sha256_u64(&c->sha, n->st.st_mode);
  sha256_u64(&c->sha, n->st.st_uid);
  sha256_u64(&c->sha, n->st.st_gid);
  sha256_u64(&c->sha, S_ISREG(n->st.st_mode) ? (uint64_t)n->st.st_size : 0);
  sha256_u64(&c->sha, (uint64_t)mt);
  sha256_u64(&c->sha, (uint64_t)ns);
  sha256_u64(&c->sha, (S_ISCHR(n->st.st_mode) || S_ISBLK(n->st.st_mode))
                          ? (uint64_t)n->st.st_rdev
                          : 0);
  if (n->link)
    hash_str(&c->sha, n->link, strlen(n->link));
  for (size_t i = 0; i < n->nxattrs; i++) {
    hash_str(&c->sha, n->xattrs[i].name, strlen(n->xattrs[i].name));
    hash_str(&c->sha, n->xattrs[i].value, n->xattrs[i].len);
  }
}

static uint64_t
xattr_blocks(const struct node *n)
{
  size_t total = 0;

  /* ext4 keeps about 96 bytes of attributes inside a 256-byte inode; more
   * needs one external block (never more than one). */
  for (size_t i = 0; i < n->nxattrs; i++)
    total +=
        16 + ((strlen(n->xattrs[i].name) + 3) & ~3u) + ((n->xattrs[i].len + 3) & ~3u);
  return total > 96 ? 1 : 0;
}

/* The entries of directory n, not excluded, sorted, in n->kids (not yet
 * lstat'ed); their directory blocks counted. */
static int
read_entries(struct scan_ctx *c, struct node *n)
{
  DIR *d = opendir(n->path);
  struct dirent *de;
  int r = 0;

  if (!d) {
    r = -errno;
    log_err("cannot read directory %s: %s", n->path, strerror(-r));
    return r;
  }
  for (errno = 0; (de = readdir(d)); errno = 0) {
    struct node *k;
    char *path;
    int ex;

    if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
      continue;
    path = xasprintf("%s/%s", n->path, de->d_name);
    /* Left out before anything is read: not even stat'ed. */
    ex = exclude_match(c->x, path + c->rootlen);
    if (ex >= 0) {
      c->hits[ex]++;
      free(path);
      continue;
    }
    XVEC_RESERVE(n->kids, n->kids_cap, n->nkids + 1);
    k = xcalloc(1, sizeof *k);
    k->name = xstrdup(de->d_name);
    k->path = path;
    n->kids[n->nkids++] = k;
  }
  if (errno) {
    r = -errno;
    log_err("cannot read directory %s: %s", n->path, strerror(-r));
  }
  closedir(d);
  if (r < 0)
    return r;
  if (n->nkids > 1)
    qsort(n->kids, n->nkids, sizeof *n->kids, cmp_node);
  return 0;
}

/* Whether k is a further name of an inode already seen (*seen); counts
 * the names of an inode on the first one. */
static int
link_hard(struct scan_ctx *c, struct node *k, bool *seen)
{
  struct node *first = NULL;

  *seen = false;
  if (!S_ISDIR(k->st.st_mode) && k->st.st_nlink > 1)
    first = hl_find_or_add(&c->hl, k);
  if (!first) {
    k->hl_count = 1;
    return 0;
  }
  if (first->hl_count >= 65000) {
    log_err("%s: more than 65000 hard links to one file (ext4's "
            "limit): make some of them copies",
            k->path);
    return -EMLINK;
  }
  k->hl_first = first;
  first->hl_count++;
  *seen = true;
  return 0;
}

/* A symlink's target. */
static int
read_symlink(struct node *k)
{
  size_t sz = (size_t)k->st.st_size + 1;
  ssize_t len;

  if (sz > BLK) {
    log_err("symlink %s: target longer than %u bytes cannot be stored", k->path, BLK - 1);
    return -ENAMETOOLONG;
  }
  k->link = xmalloc(sz + 1);
  len = readlink(k->path, k->link, sz);
  if (len < 0) {
    int r = -errno;
    log_err("cannot read symlink %s: %s", k->path, strerror(-r));
    return r;
  }
  k->link[len] = '\0';
  return 0;
}

/* The blocks a regular file's data will take. */
static void
count_file(struct account *c, const struct node *k)
{
  uint64_t size = (uint64_t)k->st.st_size;
  uint64_t blocks = (size + BLK - 1) / BLK;
  uint64_t alloc = (uint64_t)k->st.st_blocks * 512;

  /* A sparse source file needs only its allocated blocks, plus one
   * for a partial block at either end of each hole. */
  if (alloc < size)
    blocks = (alloc + BLK - 1) / BLK + 2 < blocks ? (alloc + BLK - 1) / BLK + 2 : blocks;
  /* Extent tree: four extents fit in the inode, beyond that one
   * index block per 340 extents of at most 128 MiB each. */
  c->t->data_blocks += blocks + blocks / 32768 + (blocks > 4 * 32768);
  c->t->file_bytes += size;
}

static int scan_dir(struct scan_ctx *c, struct node *n);

/* One entry of a directory: its inode, attributes and contents. */
static int
scan_entry(struct scan_ctx *c, struct node *k)
{
  bool seen;
  int r;

  if (lstat(k->path, &k->st) < 0) {
    r = -errno;
    log_err("cannot stat %s: %s", k->path, strerror(-r));
    return r;
  }
  r = link_hard(c, k, &seen);
  if (r < 0 || seen)
    return r;
  r = read_xattrs(k);
  if (r < 0) {
    log_err("cannot read extended attributes of %s: %s", k->path, strerror(-r));
    return r;
  }
  if (S_ISDIR(k->st.st_mode))
    return scan_dir(c, k);
  if (S_ISLNK(k->st.st_mode))
    return read_symlink(k);
  return 0;
}

/* Reads the directory at n (already lstat'ed), recursively. */
static int
scan_dir(struct scan_ctx *c, struct node *n)
{
  int r;

  if (n->st.st_dev != c->root_dev) {
    log_warn("%s is a mount point (another filesystem): stored as an empty "
             "directory",
             n->path);
    return 0;
  }
  r = read_entries(c, n);
  if (r < 0)
    return r;
  for (size_t i = 0; i < n->nkids; i++) {
    r = scan_entry(c, n->kids[i]);
    if (r < 0)
      return r;
  }
  return 0;
}

int
tree_scan(const char *path, int64_t clamp, bool clamp_set, const struct exclude_list *x,
          struct tree *t)
{
  struct scan_ctx c;
  struct node *root;
  int r;

  memset(t, 0, sizeof *t);
  memset(&c, 0, sizeof c);
  c.t = t;
  c.x = x;

  root = xcalloc(1, sizeof *root);
  root->name = xstrdup("");
  root->path = xstrdup(path);
  /* Strip trailing slashes so relative paths hash the same way. */
  for (size_t l = strlen(root->path); l > 1 && root->path[l - 1] == '/'; l--)
    root->path[l - 1] = '\0';
  c.rootlen = strlen(root->path);
  t->root = root;
  if (stat(root->path, &root->st) < 0) {
    r = -errno;
    log_err("tree %s: %s", path, strerror(-r));
    return r;
  }
  if (!S_ISDIR(root->st.st_mode)) {
    log_err("tree %s is not a directory: give the directory to turn into "
            "an image",
            path);
    return -ENOTDIR;
  }
  c.root_dev = root->st.st_dev;
  root->hl_count = 1;
  r = read_xattrs(root);
  if (r < 0) {
    log_err("cannot read extended attributes of %s: %s", path, strerror(-r));
    return r;
  }
  c.hits = xcalloc(x ? x->n : 0, sizeof *c.hits);
  r = scan_dir(&c, root);
  free(c.hl.slots);
  /* Most likely a typo, or a path given with the host's prefix. */
  for (size_t i = 0; r == 0 && x && i < x->n; i++)
    if (!c.hits[i])
      log_warn("--exclude '%s' matched nothing in %s (patterns with a '/' "
               "are paths from the tree's root)",
               x->pat[i], path);
  free(c.hits);
  if (r < 0)
    return r;
  tree_account(t, clamp, clamp_set, c.rootlen);
  return 0;
}

/* Counts and hashes n (not the root) and what is below it, in canonical
 * order. */
static void
account_node(struct account *c, const struct node *n)
{
  c->t->nnodes++;
  hash_node(c, n);
  if (n->hl_first)
    return;
  c->t->ninodes++;
  c->t->meta_blocks += xattr_blocks(n);
  if (S_ISLNK(n->st.st_mode) && n->link && strlen(n->link) >= 60)
    c->t->meta_blocks++;
  else if (S_ISREG(n->st.st_mode))
    count_file(c, n);
}

static void
account_dir(struct account *c, const struct node *n)
{
  uint64_t dirbytes = 24; /* "." and ".." */

  for (size_t i = 0; i < n->nkids; i++)
    dirbytes += 8 + ((strlen(n->kids[i]->name) + 3) & ~3u);
  /* Entries never span blocks and each block keeps 12 bytes for its
   * checksum tail: allow for the slack at the end of every block. */
  c->t->meta_blocks += (dirbytes + dirbytes / 16) / (BLK - 12) + 1;
  for (size_t i = 0; i < n->nkids; i++) {
    const struct node *k = n->kids[i];
    account_node(c, k);
    if (S_ISDIR(k->st.st_mode))
      account_dir(c, k);
  }
}

void
tree_account(struct tree *t, int64_t clamp, bool clamp_set, size_t rootlen)
{
  struct account c = {
    .t = t, .clamp = clamp, .clamp_set = clamp_set, .rootlen = rootlen
  };

  t->nnodes = t->ninodes = 1;
  t->data_blocks = t->meta_blocks = t->file_bytes = 0;
  sha256_init(&c.sha);
  sha256_u64(&c.sha, clamp_set ? (uint64_t)clamp : UINT64_MAX);
  hash_node(&c, t->root);
  account_dir(&c, t->root);
  sha256_digest(&c.sha, sizeof t->digest, t->digest);
}

void
node_free(struct node *n)
{
  for (size_t i = 0; i < n->nkids; i++)
    node_free(n->kids[i]);
  for (size_t i = 0; i < n->nxattrs; i++) {
    free(n->xattrs[i].name);
    free(n->xattrs[i].value);
  }
  free(n->xattrs);
  free(n->kids);
  free(n->name);
  free(n->path);
  free(n->link);
  free(n);
}

void
tree_free(struct tree *t)
{
  if (t->root)
    node_free(t->root);
  t->root = NULL;
}
