/* SPDX-License-Identifier: GPL-2.0-or-later */
/* imgtool upgrade-report: which clients of a layered root keep files of
 * their own over base files that a new version changed.
 *
 * A layered client's upper layer (its state disk, common/layered-state.h)
 * survives a new base: a file the client changed, or deleted, stays its
 * own, and hides whatever the new version put at that path (an old
 * /etc/ssh/sshd_config, an old dpkg status file).  This report reads every
 * client's state disk offline (state.c), finds the version it last booted
 * (its base-id), and lists each upper-layer entry whose path differs
 * between that version and current, before the clients reboot into it.
 *
 * "Differs" is judged on what a reader of the base would see: the type,
 * permission bits, owner, device number, symlink target, extended
 * attributes and, for regular files, the bytes of the data (compared in
 * full, not by size or time: a rebuilt version has new mtimes for
 * unchanged files, and a changed config file may keep its size).
 * Modification times are ignored.  Whiteouts and opaque directories hide
 * a whole subtree, so for them (and for any entry over a base directory)
 * the subtrees are compared.  A directory that merges with the base is
 * reported only if its own attributes changed; its entries are checked
 * one by one.
 */
#include <config.h>

#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "export-name.h"
#include "imgtool.h"

#define EXIT_SHADOWS 3

struct report_opts {
  const char *store, *name, *ovdir, *state_export, *client;
};

/* A version of the base, read once for every client that booted it. */
struct base {
  unsigned id;
  struct tree t;
  struct image_reader *rd;
};

struct report {
  const struct report_opts *o;
  char *namedir;
  unsigned cur;
  struct base *bases;
  size_t nbases, bases_cap;
  char *buf[2]; /* data of the two versions compared */
  unsigned clients, on_current, lines, errors;
};

static void
upgrade_usage(FILE *f)
{
  fputs("usage: imgtool upgrade-report --store DIR --name NAME\n"
        "         --overlays OVERLAY_DIR --state-export STATE [--client ID]\n"
        "  One line per file of a client's upper layer that hides a file\n"
        "  which differs between the version it last booted and current:\n"
        "  CLIENT BOOTED CURRENT added|removed|changed KIND PATH\n",
        f);
}

/* The version id of the base, read from the store once. */
static struct base *
base_get(struct report *rp, unsigned id)
{
  struct base *b;
  char *img;
  int r;

  for (size_t i = 0; i < rp->nbases; i++)
    if (rp->bases[i].id == id)
      return rp->bases[i].rd ? &rp->bases[i] : NULL;
  XVEC_RESERVE(rp->bases, rp->bases_cap, rp->nbases + 1);
  b = &rp->bases[rp->nbases++];
  memset(b, 0, sizeof *b);
  b->id = id;
  img = store_version_path(rp->namedir, id, "img");
  r = image_tree_read(img, &b->t, &b->rd);
  free(img);
  return r < 0 ? NULL : b;
}

static const struct node *
inode_of(const struct node *n)
{
  return n && n->hl_first ? n->hl_first : n;
}

static bool
same_xattrs(const struct node *a, const struct node *b)
{
  if (a->nxattrs != b->nxattrs)
    return false;
  for (size_t i = 0; i < a->nxattrs; i++)
    if (strcmp(a->xattrs[i].name, b->xattrs[i].name) != 0 ||
        a->xattrs[i].len != b->xattrs[i].len ||
        memcmp(a->xattrs[i].value, b->xattrs[i].value, a->xattrs[i].len))
      return false;
  return true;
}

/* Whether a and b (not NULL, not hard-link names) show the same
 * attributes: everything but the data and a directory's entries. */
static bool
same_attrs(const struct node *a, const struct node *b)
{
  return a->st.st_mode == b->st.st_mode && a->st.st_uid == b->st.st_uid &&
         a->st.st_gid == b->st.st_gid && a->st.st_rdev == b->st.st_rdev &&
         (S_ISDIR(a->st.st_mode) || a->st.st_size == b->st.st_size) &&
         !a->link == !b->link && (!a->link || !strcmp(a->link, b->link)) &&
         same_xattrs(a, b);
}

/* 1 when the regular files a and b hold the same bytes, 0 if not. */
static int
same_data(struct report *rp, const struct node *a, const struct node *b)
{
  uint64_t size = (uint64_t)a->st.st_size;

  for (uint64_t off = 0; off < size;) {
    ssize_t ga = image_node_pread(a, rp->buf[0], COPY_CHUNK, off);
    ssize_t gb = ga > 0 ? image_node_pread(b, rp->buf[1], (size_t)ga, off) : 0;
    if (ga <= 0 || gb <= 0) {
      const struct node *bad = ga <= 0 ? a : b;
      ssize_t e = ga <= 0 ? ga : gb;
      log_err("cannot read %s in %s: %s", bad->path, bad->src->path,
              strerror(e < 0 ? (int)-e : EIO));
      return e < 0 ? (int)e : -EIO;
    }
    if (gb != ga || memcmp(rp->buf[0], rp->buf[1], (size_t)ga))
      return 0;
    off += (uint64_t)ga;
  }
  return 1;
}

/* 1 when the base entries a and b (either may be NULL: absent) are the
 * same, 0 if not; deep: a directory's entries too, recursively. */
static int
same_entry(struct report *rp, const struct node *a, const struct node *b, bool deep)
{
  int r = 1;

  a = inode_of(a);
  b = inode_of(b);
  if (!a || !b)
    return !a && !b;
  if (!same_attrs(a, b))
    return 0;
  if (S_ISREG(a->st.st_mode))
    return same_data(rp, a, b);
  if (!S_ISDIR(a->st.st_mode) || !deep)
    return 1;
  if (a->nkids != b->nkids)
    return 0;
  for (size_t i = 0; i < a->nkids && r == 1; i++)
    r = strcmp(a->kids[i]->name, b->kids[i]->name) != 0
            ? 0
            : same_entry(rp, a->kids[i], b->kids[i], true);
  return r;
}

static const char *
upper_kind(const struct node *u)
{
  mode_t m = inode_of(u)->st.st_mode;

  if (whiteout(u))
    return "whiteout";
  if (opaque_dir(u))
    return "opaque-dir";
  return S_ISDIR(m)    ? "dir"
         : S_ISREG(m)  ? "file"
         : S_ISLNK(m)  ? "symlink"
         : S_ISFIFO(m) ? "fifo"
         : S_ISSOCK(m) ? "socket"
                       : "device";
}

/* A path on one line whatever bytes it holds: controls and '\' as \ooo. */
static void
print_path(const char *p)
{
  for (; *p; p++) {
    unsigned char c = (unsigned char)*p;
    if (c < 0x20 || c == 0x7f || c == '\\')
      printf("\\%03o", c);
    else
      putchar(c);
  }
}

/* Reports u if the base entries it hides (o in the booted version, n in
 * current) differ.  The path printed is u's in the root: without the
 * state disk's "/upper" prefix. */
static int
check_shadow(struct report *rp, const struct client_state *s, const struct node *u,
             const struct node *o, const struct node *n, bool deep, unsigned old)
{
  int r = same_entry(rp, o, n, deep);

  if (r != 0)
    return r < 0 ? r : 0;
  printf("%s %04u %04u %s %s ", s->id, old, rp->cur,
         !o   ? "added"
         : !n ? "removed"
              : "changed",
         upper_kind(u));
  print_path(u->path + strlen(s->upper->path));
  putchar('\n');
  rp->lines++;
  return 0;
}

static bool
is_dir(const struct node *n)
{
  return n && S_ISDIR(n->st.st_mode);
}

/* The entries of upper directory u over base directories o and n (NULL
 * where the version has no directory there). */
static int
walk_upper(struct report *rp, const struct client_state *s, const struct node *u,
           const struct node *o, const struct node *n, unsigned old)
{
  int r = 0;

  for (size_t i = 0; i < u->nkids && !r; i++) {
    const struct node *k = u->kids[i];
    const struct node *ok = node_child(o, k->name);
    const struct node *nk = node_child(n, k->name);
    bool merges = S_ISDIR(k->st.st_mode) && !opaque_dir(k) && (!ok || is_dir(ok)) &&
                  (!nk || is_dir(nk));

    if (!merges) {
      r = check_shadow(rp, s, k, ok, nk, true, old);
      continue;
    }
    /* its own attributes hide the base's; its entries are looked at */
    if (ok && nk)
      r = check_shadow(rp, s, k, ok, nk, false, old);
    if (!r)
      r = walk_upper(rp, s, k, ok, nk, old);
  }
  return r;
}

/* The report of one client.  0, or -errno after a message. */
static int
report_client(struct report *rp, const char *id)
{
  char *prefix = xasprintf("%s/%s/%s", rp->o->ovdir, rp->o->state_export, id);
  struct client_state s;
  struct base *old, *cur;
  unsigned booted = 0;
  int r;

  state_init(&s);
  rp->clients++;
  r = state_open(prefix, id, &s);
  free(prefix);
  if (!r && !s.has_base_id) {
    log_warn("client %s has not booted a layered root yet (no base-id on "
             "its state disk): nothing to report",
             id);
    goto out;
  }
  if (!r && !s.clean)
    log_warn("the state disk of %s was not cleanly unmounted (the client "
             "runs, or powered off with it mounted): read as its journal "
             "recovers it",
             id);
  if (!r)
    r = state_booted_version(&s, rp->namedir, rp->o->name, &booted);
  if (r < 0 || booted == rp->cur) {
    rp->on_current += r == 0;
    goto out;
  }
  old = base_get(rp, booted);
  cur = old ? base_get(rp, rp->cur) : NULL;
  r = cur ? 0 : -EIO;
  if (!r && s.upper)
    r = walk_upper(rp, &s, s.upper, old->t.root, cur->t.root, booted);
out:
  state_close(&s);
  if (r < 0)
    rp->errors++;
  return r;
}

/* The clients of the state export: its overlays' IDs, sorted. */
static int
list_clients(const struct report_opts *o, struct strv *ids)
{
  char *dir = xasprintf("%s/%s", o->ovdir, o->state_export);
  DIR *d = opendir(dir);
  struct dirent *de;

  if (!d) {
    int r = -errno;
    log_err("cannot read %s (the overlays of export %s): %s", dir, o->state_export,
            strerror(-r));
    free(dir);
    return r;
  }
  while ((de = readdir(d))) {
    size_t l = strlen(de->d_name);
    if (l > 4 && de->d_name[0] != '.' && ends_with(de->d_name, ".map") &&
        client_id_valid(de->d_name, l - 4))
      strv_push(ids, xasprintf("%.*s", (int)(l - 4), de->d_name));
  }
  closedir(d);
  free(dir);
  strv_sort(ids);
  return 0;
}

static int
run_report(const struct report_opts *o, struct report *rp)
{
  struct strv ids = { 0 };
  int r;

  rp->namedir = store_name_dir(o->store, o->name);
  if (!rp->namedir)
    return -ENOENT;
  if (store_current(rp->namedir, &rp->cur) < 0 || !rp->cur) {
    log_err("%s has no current version", rp->namedir);
    return -ENOENT;
  }
  if (o->client) {
    char cid[CLIENT_ID_MAX + 1];
    snprintf(cid, sizeof cid, "%s", o->client);
    client_id_normalize(cid);
    strv_push(&ids, xstrdup(cid));
  } else if ((r = list_clients(o, &ids)) < 0) {
    return r;
  }
  rp->buf[0] = xmalloc(COPY_CHUNK);
  rp->buf[1] = xmalloc(COPY_CHUNK);
  for (size_t i = 0; i < ids.n; i++)
    report_client(rp, ids.v[i]);
  strv_free(&ids);
  fflush(stdout);
  fprintf(stderr,
          "imgtool: upgrade-report: %u client%s, %u on current "
          "%04u, %u file%s hiding changes of the base%s\n",
          rp->clients, rp->clients == 1 ? "" : "s", rp->on_current, rp->cur, rp->lines,
          rp->lines == 1 ? "" : "s",
          rp->errors ? " (some clients could not be read: above)" : "");
  return rp->errors ? -EIO : 0;
}

static int
parse_report_args(int argc, char **argv, struct report_opts *o)
{
  static const struct option opts[] = {
    { "store", required_argument, NULL, 'S' },
    { "name", required_argument, NULL, 'N' },
    { "overlays", required_argument, NULL, 'D' },
    { "state-export", required_argument, NULL, 'E' },
    { "client", required_argument, NULL, 'C' },
    { "help", no_argument, NULL, 'h' },
    { NULL, 0, NULL, 0 },
  };
  int c;

  while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
    switch (c) {
      case 'S': o->store = optarg; break;
      case 'N': o->name = optarg; break;
      case 'D': o->ovdir = optarg; break;
      case 'E': o->state_export = optarg; break;
      case 'C': o->client = optarg; break;
      case 'h': upgrade_usage(stdout); return 0;
      default: upgrade_usage(stderr); return 2;
    }
  }
  if (optind != argc || !o->store || !o->name || !o->ovdir || !o->state_export) {
    log_err("upgrade-report needs --store DIR --name NAME --overlays DIR "
            "--state-export STATE");
    upgrade_usage(stderr);
    return 2;
  }
  if (!store_name_valid(o->name) || !store_name_valid(o->state_export)) {
    log_err("--name and --state-export: give plain names without '/' or a "
            "leading '.'");
    return 2;
  }
  if (o->client &&
      (!client_id_valid(o->client, strlen(o->client)) || o->client[0] == '.')) {
    log_err("--client '%s' is not a client identity (1 to 64 of "
            "[A-Za-z0-9._:-], e.g. 52-54-00-12-34-56 or 10.0.0.7)",
            o->client);
    return 2;
  }
  return -1;
}

int
cmd_upgrade_report(int argc, char **argv)
{
  struct report_opts o = { 0 };
  struct report rp = { .o = &o };
  int rc = parse_report_args(argc, argv, &o);

  if (rc >= 0)
    return rc;
  rc = run_report(&o, &rp) < 0 ? 1 : rp.lines ? EXIT_SHADOWS : 0;
  for (size_t i = 0; i < rp.nbases; i++) {
    tree_free(&rp.bases[i].t);
    image_reader_close(rp.bases[i].rd);
  }
  free(rp.bases);
  free(rp.buf[0]);
  free(rp.buf[1]);
  free(rp.namedir);
  return rc;
}
