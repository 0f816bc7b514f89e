/* SPDX-License-Identifier: GPL-2.0-or-later */
/* imgtool rollback: points an image's `current` at another version.
 *
 * The way back from a bad update: new clients get the version `current`
 * names when they connect, so moving it back undoes a build or a commit
 * for every client that boots afterwards.  Clients with an overlay keep
 * the version their overlay is pinned to (nbdsrv never changes what a
 * running client reads); reset them to have them start over on the
 * rolled-back version.
 *
 * Nothing is removed or rewritten: the newer versions stay published
 * (gc removes them once nothing pins them, unless --keep keeps them), and
 * rolling "back" to a newer version undoes a rollback.  The target must
 * pass the checks of verify (intact, read-only): making a damaged image
 * current would hand it to every new client.  The switch itself is the
 * one publishing makes: a new link renamed over `current`, under the
 * store lock.
 */
#include <config.h>

#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "imgtool.h"

static void
rollback_usage(FILE *f)
{
  fputs("usage: imgtool rollback --store DIR (NAME | --name NAME) VERSION\n"
        "  VERSION is a published version of NAME: 2, 0002 or 0002.img.\n",
        f);
}

static bool
is_published(const unsigned *ids, size_t n, unsigned id)
{
  for (size_t i = 0; i < n; i++)
    if (ids[i] == id)
      return true;
  return false;
}

/* With the lock held: checks the target and moves current to it. */
static int
rollback_locked(const char *namedir, unsigned id)
{
  unsigned *ids = NULL, cur = 0;
  size_t n = 0;
  char msg[256], *list;
  int r, rc = 1;

  r = store_list(namedir, &ids, &n);
  if (r < 0) {
    log_err("cannot read store %s: %s", namedir, strerror(-r));
    return 1;
  }
  if (!is_published(ids, n, id)) {
    list = store_format_ids(ids, n);
    log_err("%s has no version %04u (published: %s): give one of those", namedir, id,
            n ? list : "none");
    free(list);
    goto out;
  }
  /* A broken current is what a rollback may be run to repair. */
  if (store_current(namedir, &cur) < 0)
    cur = 0;
  if (cur == id) {
    fprintf(stderr, "imgtool: rollback: %04u is already current in %s\n", id, namedir);
    rc = 0;
    goto out;
  }
  if (store_check_version(namedir, id, msg, sizeof msg) < 0) {
    log_err("version %04u of %s fails verification (%s): current stays "
            "as it is",
            id, namedir, msg);
    goto out;
  }
  r = store_set_current(namedir, id);
  if (r < 0) {
    log_err("cannot move %s/current: %s", namedir, strerror(-r));
    goto out;
  }
  printf("%s/%04u.img\n", namedir, id);
  if (cur)
    fprintf(stderr,
            "imgtool: rollback: current of %s is now %04u (was "
            "%04u)\n",
            namedir, id, cur);
  else
    fprintf(stderr, "imgtool: rollback: current of %s is now %04u\n", namedir, id);
  rc = 0;
out:
  free(ids);
  return rc;
}

/* The command line of rollback. */
struct rollback_opts {
  const char *store, *name;
  unsigned id;
};

/* What must hold once every option is read: a store, a plain name and a
 * version.  -1 to go on, or 2. */
static int
check_rollback_args(int argc, char **argv, struct rollback_opts *o)
{
  const char *version;

  if (!o->name && optind < argc)
    o->name = argv[optind++];
  if (!o->store || !o->name || optind != argc - 1) {
    log_err("rollback needs --store DIR, the image NAME and the VERSION "
            "to make current (imgtool rollback --help)");
    return 2;
  }
  version = argv[optind];
  if (!store_name_valid(o->name)) {
    log_err("image name '%s': give a plain name without '/' or a leading "
            "'.'",
            o->name);
    return 2;
  }
  if (store_parse_version(version, &o->id) < 0) {
    log_err("version '%s': give a version number such as 2, 0002 or "
            "0002.img (imgtool info lists them)",
            version);
    return 2;
  }
  return -1;
}

/* Fills o from the command line.  Returns -1 to go on, else the exit
 * status (0 after --help, 2 after a usage error). */
static int
parse_rollback_args(int argc, char **argv, struct rollback_opts *o)
{
  static const struct option opts[] = {
    { "store", required_argument, NULL, 'S' },
    { "name", required_argument, NULL, 'N' },
    { "help", no_argument, NULL, 'h' },
    { NULL, 0, NULL, 0 },
  };
  int c;

  while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
    switch (c) {
      case 'S': o->store = optarg; break;
      case 'N': o->name = optarg; break;
      case 'h': rollback_usage(stdout); return 0;
      default: rollback_usage(stderr); return 2;
    }
  }
  return check_rollback_args(argc, argv, o);
}

/* Under the name's lock: the exit status. */
static int
run_rollback(const struct rollback_opts *o)
{
  char *namedir = store_name_dir(o->store, o->name);
  int lock, rc = 1;

  if (!namedir)
    return 1;
  lock = store_lock(namedir, false);
  if (lock < 0) {
    log_err("cannot lock store %s: %s", namedir, strerror(-lock));
  } else {
    rc = rollback_locked(namedir, o->id);
    store_unlock(lock);
  }
  free(namedir);
  return rc;
}

int
cmd_rollback(int argc, char **argv)
{
  struct rollback_opts o = { 0 };
  int rc = parse_rollback_args(argc, argv, &o);

  return rc < 0 ? run_rollback(&o) : rc;
}
