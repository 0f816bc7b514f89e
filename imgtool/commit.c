/* SPDX-License-Identifier: GPL-2.0-or-later */
/* imgtool commit: folds one client's overlay into a new image version.
 *
 * The workflow it serves: the admin boots one client on the current
 * version, installs updates on it, shuts it down, and commits its overlay.
 * The new version is exactly the disk that client saw (the base where it
 * wrote nothing, its own blocks where it wrote, zeroes where it trimmed),
 * and `current` moves to it, so clients that connect afterwards get the
 * update.
 *
 * Nothing but the new version is written.  The overlay is opened
 * read-only (its journal is replayed in memory; a torn tail is ignored,
 * not cut off), the base version is only read, and the committing client
 * keeps its overlay, still pinned by nbdsrv to the version it was made on,
 * until an admin resets it.
 *
 * The client's disk is written by view.c, at what its data costs, not
 * what the disk does.
 *
 * Refusals, each one line saying what to do: the overlay's base is not a
 * version of this store, or it changed since the overlay was made (the
 * checks nbdsrv makes before serving it); the filesystem the client left
 * behind was not cleanly unmounted (the client still runs, or crashed):
 * publishing it would give every new client a filesystem that needs
 * recovery, so that takes --force.  So does an overlay whose base is not
 * `current`: the new version is that base plus the client's changes, so
 * it would silently drop every version published after the base (and gc
 * would then offer to delete them), or undo a rollback of current.
 */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "export-name.h"
#include "imgtool.h"
#include "overlay-format.h"

/* Whether the overlay's base (parent) is current.  When it is not, says
 * what committing it would undo and refuses (-1), or with force returns
 * 0 with *undone set to that, for the report.  0 when it is. */
int
check_base_is_current(const char *namedir, const char *prefix, unsigned parent,
                      const unsigned *ids, size_t n, bool force, char **undone)
{
  unsigned cur = 0, *newer = xcalloc(n, sizeof *newer);
  size_t k = 0;
  char *list;

  *undone = NULL;
  if (store_current(namedir, &cur) < 0) {
    log_err("%s/current is not a version link: repair it with imgtool "
            "rollback before committing",
            namedir);
    free(newer);
    return -1;
  }
  if (!cur || cur == parent) {
    free(newer);
    return 0;
  }
  for (size_t i = 0; i < n; i++)
    if (ids[i] > parent && ids[i] <= cur)
      newer[k++] = ids[i];
  list = store_format_ids(newer, k);
  free(newer);
  if (!force) {
    char *effect = parent < cur ? xasprintf("roll back %s", list)
                                : xasprintf("undo the rollback to %04u", cur);
    log_err("overlay %s was made on version %04u, not on current %04u: "
            "committing it would %s (the new version would be %04u + this "
            "client's changes); reset the client (remove %s.map and "
            "%s.data), boot it on %04u and redo its changes, or pass "
            "--force to %s",
            prefix, parent, cur, effect, parent, prefix, prefix, cur,
            parent < cur ? "roll them back" : "undo it");
    free(effect);
    free(list);
    return -1;
  }
  /* The same, said of the commit made. */
  if (parent < cur)
    *undone = xasprintf("rolls back %s (current was %04u)", list, cur);
  else
    *undone = xasprintf("undoes the rollback to %04u", cur);
  free(list);
  return 0;
}

static void
commit_usage(FILE *f)
{
  fputs("usage: imgtool commit --store DIR --name NAME\n"
        "         (--overlay PREFIX | --overlays OVERLAY_DIR --client ID)\n"
        "         [--force]\n"
        "       imgtool commit --layered --store DIR --name NAME\n"
        "         (--overlay PREFIX | --overlays OVERLAY_DIR --client ID\n"
        "          --state-export STATE) [--force]\n"
        "  PREFIX is the overlay's path without .map/.data, e.g.\n"
        "  OVERLAY_DIR/NAME/ID for nbdsrv -o OVERLAY_DIR (with --layered:\n"
        "  the client's state disk, OVERLAY_DIR/STATE/ID).\n",
        f);
}

/* The command line of commit. */
struct commit_opts {
  const char *store, *name, *overlay, *ovdir, *client, *state_export;
  char cid[CLIENT_ID_MAX + 1]; /* client, canonical */
  bool force, layered;
};

/* What must hold once every option is read.  -1 to go on, or 2. */
static int
check_commit_args(int argc, struct commit_opts *o)
{
  if (optind != argc || !o->store || !o->name ||
      !o->overlay == !(o->ovdir && o->client) || (!o->ovdir != !o->client)) {
    log_err("commit needs --store DIR --name NAME and either --overlay "
            "PREFIX or --overlays DIR --client ID");
    commit_usage(stderr);
    return 2;
  }
  if (o->layered ? o->ovdir && !o->state_export : !!o->state_export) {
    log_err("--state-export goes with --layered and --overlays: the export "
            "that serves the clients' state disks");
    return 2;
  }
  if (!store_name_valid(o->name) ||
      (o->state_export && !store_name_valid(o->state_export))) {
    log_err("--name '%s'%s%s: give plain names without '/' or a leading "
            "'.'",
            o->name, o->state_export ? ", --state-export " : "",
            o->state_export ? o->state_export : "");
    return 2;
  }
  /* The identities nbdsrv accepts (an address or NAME@ID's ID). */
  if (o->client &&
      (!client_id_valid(o->client, strlen(o->client)) || o->client[0] == '.')) {
    log_err("--client '%s' is not a client identity (1 to 64 of "
            "[A-Za-z0-9._:-], e.g. 52-54-00-12-34-56 or 10.0.0.7)",
            o->client);
    return 2;
  }
  if (o->client) {
    /* nbdsrv names a MAC's overlay in the canonical form. */
    snprintf(o->cid, sizeof o->cid, "%s", o->client);
    client_id_normalize(o->cid);
  }
  return -1;
}

/* Fills o from the command line.  Returns -1 to go on, else the exit
 * status (0 after --help, 2 after a usage error). */
static int
parse_commit_args(int argc, char **argv, struct commit_opts *o)
{
  static const struct option opts[] = {
    { "store", required_argument, NULL, 'S' },
    { "name", required_argument, NULL, 'N' },
    { "overlay", required_argument, NULL, 'O' },
    { "overlays", required_argument, NULL, 'D' },
    { "client", required_argument, NULL, 'C' },
    { "force", no_argument, NULL, 'f' },
    { "layered", no_argument, NULL, 'L' },
    { "state-export", required_argument, NULL, 'E' },
    { "help", no_argument, NULL, 'h' },
    { NULL, 0, NULL, 0 },
  };
  int c;

  while ((c = getopt_long(argc, argv, "fh", opts, NULL)) != -1) {
    switch (c) {
      case 'S': o->store = optarg; break;
      case 'N': o->name = optarg; break;
      case 'O': o->overlay = optarg; break;
      case 'D': o->ovdir = optarg; break;
      case 'C': o->client = optarg; break;
      case 'f': o->force = true; break;
      case 'L': o->layered = true; break;
      case 'E': o->state_export = optarg; break;
      case 'h': commit_usage(stdout); return 0;
      default: commit_usage(stderr); return 2;
    }
  }
  return check_commit_args(argc, o);
}

/* What one run of commit holds, released in one place (commit_job_end). */
struct commit_job {
  char *namedir, *prefix, *undone;
  struct client_view view;
  struct outfile of;
  unsigned *ids, parent; /* the store's versions; the overlay's base */
  size_t n;
  int lock;
};

/* Opens the client's view (overlay and base) and locks the image's
 * directory in the store. */
static int
open_overlay(const struct commit_opts *o, struct commit_job *j)
{
  struct stat st;
  int r;

  j->namedir = xasprintf("%s/%s", o->store, o->name);
  j->prefix = o->overlay ? overlay_prefix(o->overlay)
                         : xasprintf("%s/%s/%s", o->ovdir, o->name, o->cid);
  if (stat(j->namedir, &st) < 0 || !S_ISDIR(st.st_mode)) {
    log_err("no image %s in store %s (%s is missing)", o->name, o->store, j->namedir);
    return -ENOENT;
  }
  j->view.store_namedir = j->namedir;
  r = view_open(j->prefix, &j->view);
  if (r < 0)
    return r;
  tmpfile_install_signals();
  j->lock = store_lock(j->namedir, false);
  if (j->lock < 0)
    log_err("cannot lock store %s: %s", j->namedir, strerror(-j->lock));
  return j->lock < 0 ? j->lock : 0;
}

/* The version of this store the base is (j->parent), which must be
 * current unless forced. */
static int
find_parent(struct commit_job *j, bool force)
{
  struct stat st;
  int r = store_list(j->namedir, &j->ids, &j->n);

  if (r < 0) {
    log_err("cannot read store %s: %s", j->namedir, strerror(-r));
    return r;
  }
  for (size_t i = 0; i < j->n && !j->parent; i++) {
    char *img = store_version_path(j->namedir, j->ids[i], "img");
    if (stat(img, &st) == 0 && st.st_dev == j->view.bst.st_dev &&
        st.st_ino == j->view.bst.st_ino)
      j->parent = j->ids[i];
    free(img);
  }
  if (!j->parent) {
    log_err("overlay %s was made on %s, which is not a version of %s: "
            "give the store and name the client was served from",
            j->prefix, j->view.ov.info.base_path, j->namedir);
    return -ENOENT;
  }
  if (check_base_is_current(j->namedir, j->prefix, j->parent, j->ids, j->n, force,
                            &j->undone) < 0)
    return -EPERM;
  return 0;
}

/* The client's view (base + overlay), into a new file in the store. */
static int
write_view(struct commit_job *j, bool force)
{
  char *target = xasprintf("%s/commit.img", j->namedir);
  int r = outfile_create(target, 0644, &j->of);

  free(target);
  if (r < 0) {
    log_err("cannot create a file in %s: %s", j->namedir, strerror(-r));
    return r;
  }
  r = view_write(&j->view, j->of.fd);
  if (r < 0) {
    log_err("cannot write the new version in %s: %s", j->namedir, strerror(-r));
    return r;
  }
  if (!ext_fs_is_clean(j->of.fd) && !force) {
    log_err("the filesystem on overlay %s was not cleanly unmounted (the "
            "client is still running, or crashed): shut the client down "
            "and commit again, or pass --force",
            j->prefix);
    return -EBUSY;
  }
  return 0;
}

/* The new version's source, for its metadata (malloc'ed). */
static char *
commit_source(const struct commit_job *j)
{
  const char *slash = strrchr(j->view.ov.info.base_path, '/');
  char *mapp = xasprintf("%s.map", j->prefix), pabs[PATH_MAX], *source;

  if (!realpath(mapp, pabs))
    snprintf(pabs, sizeof pabs, "%s", mapp);
  pabs[strlen(pabs) - 4] = '\0';
  source = xasprintf("commit of overlay %s on %s", pabs,
                     slash ? slash + 1 : j->view.ov.info.base_path);
  free(mapp);
  return source;
}

static int
run_commit(const struct commit_opts *o, struct commit_job *j)
{
  char *source;
  unsigned id;
  int r = open_overlay(o, j);

  if (!r)
    r = find_parent(j, o->force);
  if (!r)
    r = write_view(j, o->force);
  if (r < 0)
    return r;
  source = commit_source(j);
  r = store_publish(j->namedir, &j->of, source, j->parent, &id);
  free(source);
  if (r < 0)
    return r;
  fprintf(stderr,
          "imgtool: commit: %04u = %04u + overlay %s (%llu KiB "
          "written, %llu KiB zeroed by the client)\n",
          id, j->parent, j->prefix, (unsigned long long)(j->view.written >> 10),
          (unsigned long long)(j->view.zeroed >> 10));
  if (j->undone)
    log_warn("commit --force: %04u is %04u + this client's changes: it %s", id, j->parent,
             j->undone);
  return 0;
}

static void
commit_job_end(struct commit_job *j)
{
  outfile_close(&j->of);
  if (j->lock >= 0)
    store_unlock(j->lock);
  view_close(&j->view);
  free(j->ids);
  free(j->undone);
  free(j->prefix);
  free(j->namedir);
}

int
cmd_commit(int argc, char **argv)
{
  struct commit_opts o = { 0 };
  struct commit_job j = { .of = { .fd = -1 }, .lock = -1 };
  int rc = parse_commit_args(argc, argv, &o);

  view_init(&j.view);
  if (rc < 0 && o.layered) {
    char *prefix = o.overlay ? overlay_prefix(o.overlay)
                             : xasprintf("%s/%s/%s", o.ovdir, o.state_export, o.cid);
    rc = commit_layered(o.store, o.name, prefix, o.overlay ? prefix : o.cid, o.force) < 0
             ? 1
             : 0;
    free(prefix);
  } else if (rc < 0) {
    rc = run_commit(&o, &j) < 0 ? 1 : 0;
    commit_job_end(&j);
  }
  return rc;
}
