/* SPDX-License-Identifier: GPL-2.0-or-later */
/* nbdsrv: limits on minting overlays, and the census they count.
 *
 * Every new client ID a client names creates a persistent overlay, and
 * quotas are per ID: without a bound, one machine could create IDs until
 * the disk is full.  So an export may limit how many overlays it has and
 * how much space they take, in all (max-overlays, max-overlay-space) and
 * per source address (max-overlays-per-address,
 * max-overlay-space-per-address).  They are checked when a new overlay
 * would be created (the attach thread, off the event loops); the quota
 * bounds how far each one grows afterwards.
 *
 * An overlay's address is the one its ID is bound to (binding.c), or the
 * ID itself when it is an IP address; pinned IDs of older overlays
 * without a binding count for no address.  The census stats the export's
 * directory each time a limit is checked, which only happens for a new
 * ID of an export that sets a limit; nbdsrv ctl overlays reads it too.
 */
#include <config.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "nbdsrv.h"
#include "util.h"

/* Bytes on disk of dir/ID + suffix (0 when missing); its mtime into
 * *mtime when later. */
static uint64_t
file_bytes(int dfd, const char *id, const char *suffix, time_t *mtime)
{
  char name[CLIENT_ID_MAX + 16];
  struct stat st;

  snprintf(name, sizeof name, "%s%s", id, suffix);
  if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(st.st_mode))
    return 0;
  if (st.st_mtime > *mtime)
    *mtime = st.st_mtime;
  return (uint64_t)st.st_blocks * 512;
}

int
census_each(const struct export *e, census_fn *fn, void *arg)
{
  char dir[PATH_MAX];
  struct dirent *d;
  DIR *dp;
  int r = 0;

  if (format_path(dir, sizeof dir, "%s/%s", config.overlay_dir, e->name) < 0)
    return -ENAMETOOLONG;
  dp = opendir(dir);
  if (!dp)
    return errno == ENOENT ? 0 : -errno;
  while (r == 0 && (d = readdir(dp))) {
    struct census_entry x = { 0 };
    size_t len = strlen(d->d_name);
    char prefix[PATH_MAX];
    struct peer_addr a;

    if (len < 5 || !ends_with(d->d_name, ".map") || !client_id_valid(d->d_name, len - 4))
      continue;
    snprintf(x.id, sizeof x.id, "%.*s", (int)(len - 4), d->d_name);
    x.bytes = file_bytes(dirfd(dp), x.id, ".map", &x.mtime) +
              file_bytes(dirfd(dp), x.id, ".data", &x.mtime);
    if (peer_addr_parse(x.id, &a) == 0)
      snprintf(x.owner, sizeof x.owner, "%.*s", (int)sizeof x.owner - 1, x.id);
    else if (format_path(prefix, sizeof prefix, "%s/%s", dir, x.id) == 0)
      binding_read(prefix, x.owner, sizeof x.owner);
    r = fn(&x, arg);
  }
  closedir(dp);
  return r < 0 ? r : 0;
}

struct tally {
  const char *peer;
  unsigned n, n_peer;
  uint64_t bytes, bytes_peer;
};

static int
tally_one(const struct census_entry *x, void *arg)
{
  struct tally *t = arg;

  t->n++;
  t->bytes += x->bytes;
  if (strcmp(x->owner, t->peer) == 0) {
    t->n_peer++;
    t->bytes_peer += x->bytes;
  }
  return 0;
}

int
minting_check(const struct export *e, const char *peer, const char **why)
{
  struct tally t = { .peer = peer };
  int r;

  if (!e->max_overlays && !e->max_overlays_per_addr && !e->max_overlay_space &&
      !e->max_overlay_space_per_addr)
    return 0;
  r = census_each(e, tally_one, &t);
  if (r < 0) {
    *why = "the export's overlays cannot be counted (see the server log)";
    return r;
  }
  if (e->max_overlays && t.n >= e->max_overlays) {
    *why = "the export has as many client overlays as it may (max-overlays)";
    return -EUSERS;
  }
  if (e->max_overlays_per_addr && t.n_peer >= e->max_overlays_per_addr) {
    *why =
        "this address has as many client overlays as it may (max-overlays-per-address)";
    return -EUSERS;
  }
  if (e->max_overlay_space && t.bytes >= e->max_overlay_space) {
    *why = "the export's overlays take all the space they may (max-overlay-space)";
    return -EDQUOT;
  }
  if (e->max_overlay_space_per_addr && t.bytes_peer >= e->max_overlay_space_per_addr) {
    *why =
        "this address's overlays take all the space they may (max-overlay-space-per-address)";
    return -EDQUOT;
  }
  return 0;
}
