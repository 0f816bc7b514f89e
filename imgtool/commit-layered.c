/* SPDX-License-Identifier: GPL-2.0-or-later */
/* imgtool commit --layered: a layered client's upper layer folded onto
 * its base, as a new version.
 *
 * The workflow is the block mode's (commit.c): boot one client, install
 * the updates, shut it down, commit.  In layered mode what the client
 * changed is not blocks of the base but files in its upper layer, on its
 * state disk; the new version is the base version it booted (its base-id)
 * with that layer on top, whiteouts and opaque directories resolved
 * (fold.c), built like any version: ext4 or squashfs like the base (the
 * same compressor), reproducibly (the same base and upper layer give the
 * same bytes; times as for build, SOURCE_DATE_EPOCH).
 *
 * The same refusals as a block commit, with --force to override: a base
 * that is not current (the new version would undo what was published
 * after it) and a state disk not cleanly unmounted (the client may still
 * be running; it is read as its journal recovers it, state.c).  The agent
 * never unmounts the state disk, so a client that powered off leaves it
 * unclean too: --force once the client is down.  Nothing is written but
 * the new version; the client's state disk stays as it is, and its upper
 * layer now shadows the same files of the new base: reset it (remove its
 * overlay) once the client should boot on the new version alone.
 */
#include <config.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "imgtool.h"

struct layered_job {
  char *namedir, *undone, *img;
  struct client_state s;
  struct version_meta meta; /* of the base */
  struct tree t;            /* the base, then the folded tree */
  struct image_reader *rd;
  struct outfile of;
  unsigned *ids, parent;
  size_t n;
  int lock;
};

/* The version the client booted, which must be current unless forced. */
static int
find_booted(struct layered_job *j, const char *name, bool force)
{
  int r = state_booted_version(&j->s, j->namedir, name, &j->parent);

  if (r < 0)
    return r;
  r = store_list(j->namedir, &j->ids, &j->n);
  if (r < 0) {
    log_err("cannot read store %s: %s", j->namedir, strerror(-r));
    return r;
  }
  if (check_base_is_current(j->namedir, j->s.view.prefix, j->parent, j->ids, j->n, force,
                            &j->undone) < 0)
    return -EPERM;
  r = store_read_meta(j->namedir, j->parent, &j->meta);
  if (r < 0)
    log_err("cannot read the metadata of version %04u in %s: %s", j->parent, j->namedir,
            strerror(-r));
  return r;
}

/* The folded tree, built into a new file in the store. */
static int
build_folded(struct layered_job *j)
{
  struct build_opts o = { .output = j->namedir, .headroom_pct = 20, .quiet = true };
  struct build_clock clk = { 0 };
  char *target = xasprintf("%s/commit.img", j->namedir);
  int r, sde = source_date_epoch(&clk.clamp);

  if (sde < 0) {
    free(target);
    return -EINVAL;
  }
  clk.clamp_set = sde > 0;
  clk.now = clk.clamp_set ? clk.clamp : (int64_t)time(NULL);
  o.format = strcmp(j->meta.format, "squashfs") == 0 ? IMAGE_SQUASHFS : IMAGE_EXT4;
  o.compression = j->meta.compression;
  tree_account(&j->t, clk.clamp, clk.clamp_set, 0);
  r = outfile_create(target, 0644, &j->of);
  free(target);
  if (r < 0) {
    log_err("cannot create a file in %s: %s", j->namedir, strerror(-r));
    return r;
  }
  return o.format == IMAGE_SQUASHFS ? build_squashfs(&o, &j->t, &clk, j->of.fd)
                                    : build_ext4(&o, &j->t, &clk, j->of.fd, j->of.path);
}

static int
run_layered(struct layered_job *j, const char *store, const char *name,
            const char *prefix, const char *client, bool force)
{
  char *source;
  unsigned id;
  int r;

  j->namedir = store_name_dir(store, name);
  if (!j->namedir)
    return -ENOENT;
  r = state_open(prefix, client, &j->s);
  if (r < 0)
    return r;
  if (!j->s.clean && !force) {
    log_err("the state disk of %s was not cleanly unmounted (the client is "
            "still running, or crashed): shut the client down and commit "
            "again, or pass --force",
            client);
    return -EBUSY;
  }
  tmpfile_install_signals();
  j->lock = store_lock(j->namedir, false);
  if (j->lock < 0) {
    log_err("cannot lock store %s: %s", j->namedir, strerror(-j->lock));
    return j->lock;
  }
  r = find_booted(j, name, force);
  if (r < 0)
    return r;
  j->img = store_version_path(j->namedir, j->parent, "img");
  r = image_tree_read(j->img, &j->t, &j->rd);
  if (r < 0)
    return r;
  if (j->s.upper)
    fold_upper(&j->t, j->s.upper);
  r = build_folded(j);
  if (r < 0)
    return r;
  source = xasprintf("commit of the upper layer of %s on %04u", client, j->parent);
  r = store_publish(j->namedir, &j->of, source, j->parent, &id);
  free(source);
  if (r < 0)
    return r;
  fprintf(stderr, "imgtool: commit: %04u = %04u + the upper layer of %s\n", id, j->parent,
          client);
  if (j->undone)
    log_warn("commit --force: %04u is %04u + this client's changes: it %s", id, j->parent,
             j->undone);
  return 0;
}

int
commit_layered(const char *store, const char *name, const char *prefix,
               const char *client, bool force)
{
  struct layered_job j = { .of = { .fd = -1 }, .lock = -1 };
  int r;

  state_init(&j.s);
  r = run_layered(&j, store, name, prefix, client, force);
  outfile_close(&j.of);
  if (j.lock >= 0)
    store_unlock(j.lock);
  /* the folded tree holds nodes of both images: freed before either */
  tree_free(&j.t);
  image_reader_close(j.rd);
  state_close(&j.s);
  free(j.ids);
  free(j.undone);
  free(j.img);
  free(j.namedir);
  return r;
}
