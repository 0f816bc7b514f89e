/* SPDX-License-Identifier: GPL-2.0-or-later */
/* imgtool: resolves kernel modules and their load order from a kernel's
 * modules directory (/lib/modules/VERSION), as modprobe would:
 *
 *   modules.dep      "kernel/fs/ext4/ext4.ko: kernel/fs/jbd2/jbd2.ko ..."
 *                    (hard dependencies, from the symbols modules use)
 *   modules.softdep  "softdep ext4 pre: crypto-crc32c" (modules a module
 *                    needs at run time without a symbol dependency)
 *   modules.alias    "alias crypto-crc32c crc32c_generic"
 *   modules.builtin  modules compiled into the kernel (nothing to load)
 *
 * A name resolves to the module of that name ('-' and '_' are the same),
 * else to every module an alias of that name points to (several may: an
 * accelerated one that can fail to load on some CPUs and a generic one;
 * all are packed, in modules.alias order, and the loader tolerates one
 * that does not load), else to nothing when it is built in.
 *
 * Load order is a depth-first walk: a module's pre softdeps, then its
 * modules.dep dependencies, then the module, then its post softdeps.
 */
#include <config.h>

#include <errno.h>
#include <fnmatch.h>
#include <stdlib.h>
#include <string.h>

#include "imgtool.h"

struct mod {
  char *name;  /* normalised: '-' -> '_' */
  char *path;  /* as in modules.dep */
  char **deps; /* paths */
  size_t ndeps;
  int state; /* 0 new, 1 visiting, 2 emitted */
};

struct softdep {
  char *name;
  char **pre, **post;
  size_t npre, npost;
};

struct alias {
  char *pattern;
  char *module;
};

struct moddb {
  struct mod *mods;
  size_t nmods;
  struct softdep *soft;
  size_t nsoft;
  struct alias *aliases;
  size_t naliases;
  char **builtin;
  size_t nbuiltin;
  struct module_set *out;
  const char *moddir;
};

static void
normalise(char *s)
{
  for (; *s; s++)
    if (*s == '-')
      *s = '_';
}

/* "kernel/fs/ext4/ext4.ko.xz" -> "ext4" */
static char *
name_of_path(const char *path)
{
  const char *b = strrchr(path, '/');
  char *n = xstrdup(b ? b + 1 : path), *dot = strstr(n, ".ko");

  if (dot)
    *dot = '\0';
  normalise(n);
  return n;
}

static char *
read_text(const char *moddir, const char *file, bool required, int *err)
{
  char *p = xasprintf("%s/%s", moddir, file);
  FILE *f = fopen(p, "re");
  char *buf = NULL;
  size_t cap = 0, len = 0;

  free(p);
  *err = 0;
  if (!f) {
    if (required)
      *err = -errno;
    return xstrdup("");
  }
  for (;;) {
    size_t n;
    XVEC_RESERVE(buf, cap, len + 65536 + 1);
    n = fread(buf + len, 1, cap - len - 1, f);
    len += n;
    if (n == 0)
      break;
  }
  fclose(f);
  buf[len] = '\0';
  return buf;
}

/* Splits s (modified) into whitespace-separated words. */
static size_t
split_words(char *s, char **w, size_t max)
{
  size_t n = 0;
  char *save, *tok;

  for (tok = strtok_r(s, " \t", &save); tok && n < max;
       tok = strtok_r(NULL, " \t", &save))
    w[n++] = tok;
  return n;
}

static int
cmp_mod(const void *a, const void *b)
{
  return strcmp(((const struct mod *)a)->name, ((const struct mod *)b)->name);
}

static struct mod *
find_mod(struct moddb *db, const char *name)
{
  struct mod key = { .name = (char *)name };
  if (!db->nmods)
    return NULL;
  return bsearch(&key, db->mods, db->nmods, sizeof key, cmp_mod);
}

static struct mod *
find_mod_path(struct moddb *db, const char *path)
{
  char *n = name_of_path(path);
  struct mod *m = find_mod(db, n);
  free(n);
  return m;
}

static int
load_db(struct moddb *db, const char *moddir)
{
  char *text, *line, *save;
  int err;
  size_t cap = 0;

  memset(db, 0, sizeof *db);
  db->moddir = moddir;
  text = read_text(moddir, "modules.dep", true, &err);
  if (err) {
    free(text);
    return err;
  }
  for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
    char *colon = strchr(line, ':'), *words[512];
    struct mod *m;
    size_t n;

    if (!colon)
      continue;
    *colon = '\0';
    XVEC_RESERVE(db->mods, cap, db->nmods + 1);
    m = &db->mods[db->nmods++];
    memset(m, 0, sizeof *m);
    m->path = xstrdup(line);
    m->name = name_of_path(line);
    n = split_words(colon + 1, words, 512);
    m->deps = xcalloc(n, sizeof *m->deps);
    for (size_t i = 0; i < n; i++)
      m->deps[m->ndeps++] = xstrdup(words[i]);
  }
  free(text);
  if (db->nmods > 1)
    qsort(db->mods, db->nmods, sizeof *db->mods, cmp_mod);

  text = read_text(moddir, "modules.softdep", false, &err);
  cap = 0;
  for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
    char *words[256];
    size_t n = split_words(line, words, 256);
    struct softdep *s;
    int where = 0;

    if (n < 2 || strcmp(words[0], "softdep") != 0)
      continue;
    XVEC_RESERVE(db->soft, cap, db->nsoft + 1);
    s = &db->soft[db->nsoft++];
    memset(s, 0, sizeof *s);
    s->name = xstrdup(words[1]);
    normalise(s->name);
    s->pre = xcalloc(n, sizeof *s->pre);
    s->post = xcalloc(n, sizeof *s->post);
    for (size_t i = 2; i < n; i++) {
      if (strcmp(words[i], "pre:") == 0)
        where = 1;
      else if (strcmp(words[i], "post:") == 0)
        where = 2;
      else if (where == 1)
        s->pre[s->npre++] = xstrdup(words[i]);
      else if (where == 2)
        s->post[s->npost++] = xstrdup(words[i]);
    }
  }
  free(text);

  text = read_text(moddir, "modules.alias", false, &err);
  cap = 0;
  for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
    char *words[3];
    if (split_words(line, words, 3) != 3 || strcmp(words[0], "alias") != 0)
      continue;
    XVEC_RESERVE(db->aliases, cap, db->naliases + 1);
    db->aliases[db->naliases].pattern = xstrdup(words[1]);
    db->aliases[db->naliases].module = xstrdup(words[2]);
    normalise(db->aliases[db->naliases].module);
    db->naliases++;
  }
  free(text);

  text = read_text(moddir, "modules.builtin", false, &err);
  cap = 0;
  for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
    XVEC_RESERVE(db->builtin, cap, db->nbuiltin + 1);
    db->builtin[db->nbuiltin++] = name_of_path(line);
  }
  free(text);
  return 0;
}

static void
free_db(struct moddb *db)
{
  for (size_t i = 0; i < db->nmods; i++) {
    for (size_t j = 0; j < db->mods[i].ndeps; j++)
      free(db->mods[i].deps[j]);
    free(db->mods[i].deps);
    free(db->mods[i].name);
    free(db->mods[i].path);
  }
  free(db->mods);
  for (size_t i = 0; i < db->nsoft; i++) {
    for (size_t j = 0; j < db->soft[i].npre; j++)
      free(db->soft[i].pre[j]);
    for (size_t j = 0; j < db->soft[i].npost; j++)
      free(db->soft[i].post[j]);
    free(db->soft[i].pre);
    free(db->soft[i].post);
    free(db->soft[i].name);
  }
  free(db->soft);
  for (size_t i = 0; i < db->naliases; i++) {
    free(db->aliases[i].pattern);
    free(db->aliases[i].module);
  }
  free(db->aliases);
  for (size_t i = 0; i < db->nbuiltin; i++)
    free(db->builtin[i]);
  free(db->builtin);
}

static bool
is_builtin(struct moddb *db, const char *norm)
{
  for (size_t i = 0; i < db->nbuiltin; i++)
    if (strcmp(db->builtin[i], norm) == 0)
      return true;
  return false;
}

static int visit(struct moddb *db, struct mod *m);

/* Visits everything name resolves to.  Returns 0, or -ENOENT when the name
 * is neither a module, an alias, nor built in. */
static int
visit_name(struct moddb *db, const char *name)
{
  char *norm = xstrdup(name);
  struct mod *m;
  bool found = false;
  int r = 0;

  normalise(norm);
  m = find_mod(db, norm);
  if (m) {
    free(norm);
    return visit(db, m);
  }
  for (size_t i = 0; i < db->naliases && !r; i++) {
    const char *pat = db->aliases[i].pattern;
    if (strcmp(pat, name) != 0 && fnmatch(pat, name, 0) != 0)
      continue;
    found = true;
    m = find_mod(db, db->aliases[i].module);
    if (m)
      r = visit(db, m);
  }
  if (!found && !is_builtin(db, norm))
    r = -ENOENT;
  free(norm);
  return r;
}

static int
visit(struct moddb *db, struct mod *m)
{
  struct softdep *s = NULL;
  int r;

  if (m->state)
    return 0; /* emitted, or a cycle (softdeps can form one): stop */
  m->state = 1;
  for (size_t i = 0; i < db->nsoft; i++)
    if (strcmp(db->soft[i].name, m->name) == 0)
      s = &db->soft[i];
  /* Softdeps are best effort, as in modprobe: a missing one is skipped. */
  for (size_t i = 0; s && i < s->npre; i++)
    visit_name(db, s->pre[i]);
  for (size_t i = 0; i < m->ndeps; i++) {
    struct mod *d = find_mod_path(db, m->deps[i]);
    if (!d) {
      log_err("%s/modules.dep: %s needs %s, which is not listed: run "
              "depmod for this kernel",
              db->moddir, m->path, m->deps[i]);
      return -ENOENT;
    }
    r = visit(db, d);
    if (r < 0)
      return r;
  }
  m->state = 2;
  XVEC_RESERVE(db->out->paths, db->out->cap, db->out->n + 1);
  db->out->paths[db->out->n++] = xstrdup(m->path);
  for (size_t i = 0; s && i < s->npost; i++)
    visit_name(db, s->post[i]);
  return 0;
}

int
modules_resolve(const char *moddir, char **names, size_t nnames, char **optional,
                size_t noptional, struct module_set *out)
{
  struct moddb db;
  int r;

  memset(out, 0, sizeof *out);
  r = load_db(&db, moddir);
  if (r < 0) {
    log_err("cannot read %s/modules.dep: %s (is this a kernel modules "
            "directory? run depmod for it)",
            moddir, strerror(-r));
    return r;
  }
  db.out = out;
  for (size_t i = 0; i < noptional; i++) {
    r = visit_name(&db, optional[i]);
    if (r < 0 && r != -ENOENT)
      goto out;
  }
  for (size_t i = 0; i < nnames; i++) {
    r = visit_name(&db, names[i]);
    if (r == -ENOENT)
      log_err("module '%s' not found in %s (not in modules.dep, "
              "modules.alias or modules.builtin): check the name with "
              "modinfo",
              names[i], moddir);
    if (r < 0)
      goto out;
  }
  r = 0;
out:
  free_db(&db);
  if (r < 0)
    module_set_free(out);
  return r;
}

void
module_set_free(struct module_set *s)
{
  for (size_t i = 0; i < s->n; i++)
    free(s->paths[i]);
  free(s->paths);
  *s = (struct module_set){ 0 };
}
