/* SPDX-License-Identifier: GPL-2.0-or-later */
/* imgtool gc: removes image versions nothing uses any more.
 *
 * A version is kept when it is `current` (new clients get it) or when
 * any client overlay is pinned to it: nbdsrv records the absolute path of
 * the base version in each overlay's header (common/overlay-format.h), and
 * that client keeps reading it as long as the overlay exists.  A client of
 * a shared read-only export has no overlay but a base pin
 * (common/base-pin.h) naming the version it reads, kept the same way.
 * Versions are
 * compared by device and inode, so any path spelling of the same file
 * matches.
 *
 * --keep N also keeps the N newest published versions (by number), so
 * that a rollback has somewhere to go.
 *
 * Safety first: if one overlay's header cannot be read, gc removes nothing
 * (it cannot tell what that client needs); nor does it plan with an
 * overlay directory that holds no overlay at all unless told to (--force):
 * a mistyped path would otherwise make every client's version garbage.
 * The store lock is held while removing, so a concurrent build or commit
 * never loses its new version.
 * Leftovers of interrupted runs (an .img without .meta, temporaries) go
 * too: nothing can use them.
 */
#include <config.h>

#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base-pin.h"
#include "imgtool.h"
#include "overlay-format.h"

struct pin {
  dev_t dev;
  ino_t ino;
};

struct pins {
  struct pin *v;
  size_t n, cap;
  /* The bases' content ids (sha256), where the overlay or pin recorded
   * one: a second server's store holds the same version at another path,
   * and nbdsrv finds it there by content. */
  char (*sha)[OVL_SHA256_HEX + 1];
  size_t nsha, shacap;
  size_t overlays;
};

/* Records the version path, if it exists, and its content id sha (or
 * ""), as pinned. */
static void
add_pin(struct pins *p, const char *path, const char *sha)
{
  struct stat bst;

  p->overlays++;
  if (sha[0]) {
    XVEC_RESERVE(p->sha, p->shacap, p->nsha + 1);
    snprintf(p->sha[p->nsha++], sizeof p->sha[0], "%s", sha);
  }
  if (stat(path, &bst) == 0) {
    XVEC_RESERVE(p->v, p->cap, p->n + 1);
    p->v[p->n].dev = bst.st_dev;
    p->v[p->n].ino = bst.st_ino;
    p->n++;
  }
}

/* PREFIX.basepin: the version a shared read-only client reads. */
static int
collect_base_pin(char *path, struct pins *p)
{
  struct base_pin pin;
  int r;

  path[strlen(path) - strlen(BASE_PIN_SUFFIX)] = '\0';
  r = base_pin_read(path, &pin);
  if (r < 0)
    log_err("cannot read base pin %s" BASE_PIN_SUFFIX ": %s; refusing to "
            "collect garbage without knowing which version it uses",
            path, strerror(-r));
  else
    add_pin(p, pin.base_path, pin.base_sha256);
  return r;
}

/* Walks dir for PREFIX.map and PREFIX.basepin files and records the base
 * each one pins. */
static int
collect_pins(const char *dir, struct pins *p, int depth)
{
  DIR *d = opendir(dir);
  struct dirent *de;
  int r = 0;

  if (!d) {
    r = -errno;
    log_err("cannot read overlay directory %s: %s", dir, strerror(-r));
    return r;
  }
  while (!r && (de = readdir(d))) {
    char *path;
    struct stat st;

    if (de->d_name[0] == '.')
      continue;
    path = xasprintf("%s/%s", dir, de->d_name);
    if (lstat(path, &st) < 0) {
      free(path);
      continue;
    }
    if (S_ISDIR(st.st_mode) && depth < 8) {
      r = collect_pins(path, p, depth + 1);
    } else if (S_ISREG(st.st_mode) && ends_with(de->d_name, ".map")) {
      struct ovl_header_info info;

      path[strlen(path) - 4] = '\0';
      r = ovl_file_read_header(path, &info);
      if (r < 0) {
        log_err("cannot read overlay %s.map: %s; refusing to collect "
                "garbage without knowing which version it uses",
                path, strerror(-r));
      } else {
        add_pin(p, info.base_path, info.base_sha256);
      }
    } else if (S_ISREG(st.st_mode) && ends_with(de->d_name, BASE_PIN_SUFFIX)) {
      r = collect_base_pin(path, p);
    }
    free(path);
  }
  closedir(d);
  return r;
}

static bool
pinned(const struct pins *p, const struct stat *st)
{
  for (size_t i = 0; i < p->n; i++)
    if (p->v[i].dev == st->st_dev && p->v[i].ino == st->st_ino)
      return true;
  return false;
}

static bool
pinned_by_content(const struct pins *p, const char *sha)
{
  for (size_t i = 0; sha[0] && i < p->nsha; i++)
    if (strcmp(p->sha[i], sha) == 0)
      return true;
  return false;
}

/* Temporaries this tool creates: ".NAME.XXXXXX" and current.tmp. */
static bool
is_leftover_tmp(const char *name)
{
  size_t l = strlen(name);

  if (strcmp(name, "current.tmp") == 0)
    return true;
  return name[0] == '.' && strcmp(name, ".lock") != 0 && l > 8 && name[l - 7] == '.';
}

static void
remove_one(const char *path, bool dry_run, unsigned *count)
{
  if (dry_run) {
    printf("would remove %s\n", path);
    (*count)++;
    return;
  }
  if (unlink(path) == 0) {
    printf("removed %s\n", path);
    (*count)++;
  } else if (errno != ENOENT) {
    log_warn("cannot remove %s: %s", path, strerror(errno));
  }
}

/* What one image name keeps besides its overlays' bases: current and
 * the newest published versions (--keep). */
struct keep {
  const char *namedir;
  const struct pins *pins;
  unsigned cur;
  unsigned *ids; /* published versions, sorted */
  size_t n;
  unsigned newest; /* how many of the last ids to keep */
};

/* Whether version id stays: its image (img, the path of its .img) and,
 * with it, its metadata. */
static bool
version_kept(const char *img, unsigned id, const struct keep *k)
{
  struct stat st;

  if (id == k->cur)
    return true;
  for (size_t i = k->n > k->newest ? k->n - k->newest : 0; i < k->n; i++)
    if (k->ids[i] == id)
      return true;
  if (stat(img, &st) == 0 && pinned(k->pins, &st))
    return true;
  if (k->pins->nsha) {
    struct version_meta m;
    if (store_read_meta(k->namedir, id, &m) == 0 && pinned_by_content(k->pins, m.sha256))
      return true;
  }
  return false;
}

static int
gc_namedir(const char *namedir, const struct pins *p, bool dry_run, unsigned keep_newest,
           unsigned *count)
{
  DIR *d;
  struct dirent *de;
  struct keep k = { .namedir = namedir, .pins = p, .newest = keep_newest };
  int lock, r;
  struct strv victims = { 0 };

  lock = store_lock(namedir, false);
  if (lock < 0) {
    log_err("cannot lock store %s: %s", namedir, strerror(-lock));
    return 1;
  }
  r = store_current(namedir, &k.cur);
  if (r < 0) {
    log_err("%s/current is not a version link: fix it before gc", namedir);
    store_unlock(lock);
    return 1;
  }
  r = store_list(namedir, &k.ids, &k.n);
  d = r < 0 ? NULL : opendir(namedir);
  if (!d) {
    log_err("cannot read %s: %s", namedir, strerror(r < 0 ? -r : errno));
    free(k.ids);
    store_unlock(lock);
    return 1;
  }
  while ((de = readdir(d))) {
    const char *n = de->d_name;
    char *path = xasprintf("%s/%s", namedir, n);
    unsigned id = 0;
    bool is_img = false, is_meta = false, keep;
    size_t l = strlen(n);

    /* NNNN.img and NNNN.meta: at least four digits, nothing else. */
    if (l >= 8 && strspn(n, "0123456789") == l - 4 && strcmp(n + l - 4, ".img") == 0)
      is_img = true;
    else if (l >= 9 && strspn(n, "0123456789") == l - 5 &&
             strcmp(n + l - 5, ".meta") == 0)
      is_meta = true;
    if (is_img || is_meta)
      id = (unsigned)strtoul(n, NULL, 10);

    if (is_leftover_tmp(n)) {
      strv_push(&victims, path);
      continue;
    }
    if (!is_img && !is_meta) {
      free(path);
      continue;
    }
    if (is_meta) {
      /* NNNN.meta -> NNNN.img: the same digits, whatever their number. */
      char *img = xasprintf("%s/%.*s.img", namedir, (int)(l - 5), n);
      keep = version_kept(img, id, &k);
      free(img);
    } else {
      keep = version_kept(path, id, &k);
    }
    if (keep) {
      free(path);
      continue;
    }
    strv_push(&victims, path);
  }
  closedir(d);
  /* Sorted, so the report reads in version order. */
  strv_sort(&victims);
  for (size_t i = 0; i < victims.n; i++)
    remove_one(victims.v[i], dry_run, count);
  strv_free(&victims);
  free(k.ids);
  if (!dry_run)
    fsync_dir(namedir);
  store_unlock(lock);
  return 0;
}

/* --keep N: a count of versions, 0 to a million. */
static int
parse_keep(const char *s, unsigned *out)
{
  char *end;
  unsigned long v;

  if (!*s || strspn(s, "0123456789") != strlen(s))
    return -EINVAL;
  errno = 0;
  v = strtoul(s, &end, 10);
  if (errno || v > 1000000)
    return -ERANGE;
  *out = (unsigned)v;
  return 0;
}

/* The command line of gc. */
struct gc_opts {
  const char *store, *name;
  const char **ovdirs; /* --overlays, in argv */
  size_t novdirs, ovdirs_cap;
  bool dry_run, no_overlays, force;
  unsigned keep;
};

static void
gc_usage(FILE *f)
{
  fputs("usage: imgtool gc --store DIR [--name NAME] "
        "(--overlays OVERLAY_DIR... | --no-overlays) [--keep N]\n"
        "         [--force] [--dry-run]\n",
        f);
}

/* Fills o from the command line.  Returns -1 to go on, else the exit
 * status (0 after --help, 2 after a usage error). */
static int
parse_gc_args(int argc, char **argv, struct gc_opts *o)
{
  static const struct option opts[] = {
    { "store", required_argument, NULL, 'S' },
    { "name", required_argument, NULL, 'N' },
    { "overlays", required_argument, NULL, 'O' },
    { "no-overlays", no_argument, NULL, 'Z' },
    { "dry-run", no_argument, NULL, 'n' },
    { "keep", required_argument, NULL, 'k' },
    { "force", no_argument, NULL, 'f' },
    { "help", no_argument, NULL, 'h' },
    { NULL, 0, NULL, 0 },
  };
  int c;

  while ((c = getopt_long(argc, argv, "nfh", opts, NULL)) != -1) {
    switch (c) {
      case 'S': o->store = optarg; break;
      case 'N': o->name = optarg; break;
      case 'O':
        XVEC_RESERVE(o->ovdirs, o->ovdirs_cap, o->novdirs + 1);
        o->ovdirs[o->novdirs++] = optarg;
        break;
      case 'Z': o->no_overlays = true; break;
      case 'n': o->dry_run = true; break;
      case 'f': o->force = true; break;
      case 'k':
        if (parse_keep(optarg, &o->keep) < 0) {
          log_err("--keep '%s': give how many of the newest versions to "
                  "keep, e.g. --keep 3",
                  optarg);
          return 2;
        }
        break;
      case 'h': gc_usage(stdout); return 0;
      default: return 2;
    }
  }
  if (!o->store || optind != argc) {
    log_err("gc needs --store DIR and --overlays OVERLAY_DIR (nbdsrv's -o)");
    return 2;
  }
  if (!o->novdirs && !o->no_overlays) {
    log_err("gc needs --overlays OVERLAY_DIR (nbdsrv's -o) to keep the "
            "versions clients use; pass --no-overlays if no server uses "
            "this store");
    return 2;
  }
  return -1;
}

/* The versions the overlays in o->ovdirs pin, into p: 0, or 1 after a
 * message. */
static int
gc_collect(const struct gc_opts *o, struct pins *p)
{
  for (size_t i = 0; i < o->novdirs; i++) {
    size_t before = p->overlays;

    if (collect_pins(o->ovdirs[i], p, 0) < 0)
      return 1;
    if (p->overlays == before && !o->force) {
      /* Planning with the wrong directory would remove the versions
       * every client uses: an empty one is most likely a typo. */
      log_err("overlay directory %s holds no overlays (no *.map files): "
              "give nbdsrv's -o directory, or pass --force if no client "
              "has an overlay yet",
              o->ovdirs[i]);
      return 1;
    }
  }
  return 0;
}

static int
run_gc(const struct gc_opts *o, struct pins *p, struct strv *names)
{
  unsigned count = 0;
  int r, rc;

  rc = gc_collect(o, p);
  if (rc)
    return rc;
  if (o->name) {
    strv_push(names, xasprintf("%s/%s", o->store, o->name));
  } else if ((r = store_names(o->store, names)) < 0) {
    log_err("cannot open store %s: %s", o->store, strerror(-r));
    return 1;
  }
  for (size_t i = 0; i < names->n; i++)
    if (gc_namedir(names->v[i], p, o->dry_run, o->keep, &count))
      rc = 1;
  fprintf(stderr,
          "imgtool: gc: %s %u file(s); %zu overlay(s) pin %zu "
          "version(s)\n",
          o->dry_run ? "would remove" : "removed", count, p->overlays, p->n);
  return rc;
}

int
cmd_gc(int argc, char **argv)
{
  struct gc_opts o = { 0 };
  struct pins p = { 0 };
  struct strv names = { 0 };
  int rc = parse_gc_args(argc, argv, &o);

  if (rc < 0)
    rc = run_gc(&o, &p, &names);
  free(o.ovdirs);
  free(p.v);
  free(p.sha);
  strv_free(&names);
  return rc;
}
