/* SPDX-License-Identifier: GPL-2.0-or-later */
/* nbdsrv: overlays left under an old spelling of their client's MAC.
 *
 * A client ID that is a MAC address has one canonical form, lower case
 * with dashes (common/export-name.h): the form the agent sends, so its
 * overlays keep their names.  Servers before that took "40:01:1C:47:44:1E"
 * as an ID of its own, and a client that sent its MAC with colons or in
 * upper case has its overlay under that spelling.  At start-up, before
 * any client is served, each such overlay is renamed to the canonical
 * name, so that its client finds it whatever spelling it sends now.
 *
 * Crash safety.  An overlay is its map file: a data file without a map is
 * an orphan the next creation replaces, a map without its data file is
 * refused.  So the data files are renamed first, then the directory is
 * synced, then the maps are renamed and the directory synced again.  A
 * crash in between leaves OLD.map beside NEW.data: the next start finds
 * OLD.map again, its data file already at the new name, and renames the
 * map; nothing is lost or paired with another client's data.
 *
 * Two overlays of one client are never merged, and neither is touched:
 * when the canonical name exists too, it is the one the agent's boots
 * made and it stays the one served; when two old spellings of one MAC
 * exist and no canonical one, which to keep is the administrator's
 * choice.  A warning names both files and what to do.
 *
 * Exports a reload adds are not looked at: their old spellings are
 * renamed at the next start.
 */
#include <config.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "nbdsrv.h"
#include "util.h"
#include "vec.h"

/* An overlay whose ID is a MAC in another spelling than the canonical. */
struct old_name {
  char id[CLIENT_ID_MAX + 1];    /* as found, e.g. "40:01:1C:47:44:1E" */
  char canon[CLIENT_ID_MAX + 1]; /* "40-01-1c-47-44-1e" */
  bool rename;                   /* to be renamed to canon */
};

/* A file name: ID plus ".map" or ".data". */
typedef char file_name[CLIENT_ID_MAX + 8];

static int
by_canon(const void *a, const void *b)
{
  const struct old_name *x = a, *y = b;
  int c = strcmp(x->canon, y->canon);

  return c ? c : strcmp(x->id, y->id);
}

/* The overlays in the directory d whose ID is a MAC not spelled the
 * canonical way, sorted by canonical ID (so that the spellings of one
 * MAC are together).  Returns 0 or -ENOMEM. */
static int
find_old_names(DIR *d, struct old_name **out, size_t *np)
{
  struct old_name *v = NULL;
  struct dirent *de;
  size_t n = 0, cap = 0;

  while ((de = readdir(d))) {
    struct old_name o = { .rename = false };

    if (strlen(de->d_name) != CLIENT_ID_MAC_LEN + 4 ||
        strcmp(de->d_name + CLIENT_ID_MAC_LEN, ".map") != 0)
      continue;
    memcpy(o.id, de->d_name, CLIENT_ID_MAC_LEN);
    memcpy(o.canon, o.id, sizeof o.canon);
    if (!client_id_normalize(o.canon))
      continue;
    if (VEC_RESERVE(v, cap, n + 1) < 0) {
      free(v);
      return -ENOMEM;
    }
    v[n++] = o;
  }
  if (n > 1)
    qsort(v, n, sizeof *v, by_canon);
  *out = v;
  *np = n;
  return 0;
}

static bool
exists(int dfd, const char *id, const char *suffix)
{
  file_name f;
  struct stat st;

  snprintf(f, sizeof f, "%s%s", id, suffix);
  return fstatat(dfd, f, &st, AT_SYMLINK_NOFOLLOW) == 0;
}

/* Decides which old spellings are renamed: those that are their MAC's
 * only overlay.  Warns about the others. */
static void
pick_renames(const char *dir, int dfd, struct old_name *v, size_t n)
{
  for (size_t i = 0, j; i < n; i = j) {
    for (j = i + 1; j < n && !strcmp(v[j].canon, v[i].canon); j++)
      ;
    if (exists(dfd, v[i].canon, ".map")) {
      for (size_t k = i; k < j; k++)
        log_warn(
            "overlay %s/%s: left as it is: %s/%s, the same client's overlay under the canonical spelling of its MAC, exists and is the one served; commit (imgtool commit --overlay) or remove %s/%s.map and .data",
            dir, v[k].id, dir, v[k].canon, dir, v[k].id);
    } else if (j - i > 1) {
      for (size_t k = i; k < j; k++)
        log_warn(
            "overlay %s/%s: left as it is: %s/%s names the same MAC; with nbdsrv stopped, rename the .map and .data of the one to keep to %s.map and %s.data and remove the other",
            dir, v[k].id, dir, v[k == i ? i + 1 : i].id, v[k].canon, v[k].canon);
    } else
      v[i].rename = true;
  }
}

static int
move(int dfd, const char *from_id, const char *to_id, const char *suffix)
{
  file_name from, to;

  snprintf(from, sizeof from, "%s%s", from_id, suffix);
  snprintf(to, sizeof to, "%s%s", to_id, suffix);
  return renameat(dfd, from, dfd, to) == 0 ? 0 : -errno;
}

/* Renames ID.suffix to CANON.suffix for every overlay picked.  A missing
 * data file is no error (see the top of the file); an overlay whose map
 * is gone is dropped from the list (someone else moved it). */
static void
rename_all(const char *dir, int dfd, struct old_name *v, size_t n, const char *suffix)
{
  bool map = strcmp(suffix, ".map") == 0;
  size_t done = 0;

  for (size_t i = 0; i < n; i++) {
    int r;

    if (!v[i].rename)
      continue;
    r = move(dfd, v[i].id, v[i].canon, suffix);
    if (r == 0) {
      done++;
      continue;
    }
    v[i].rename = r == -ENOENT && !map;
    if (r == -ENOENT)
      continue;
    log_err("overlay %s/%s: cannot rename it to %s: %s; it stays under its old name", dir,
            v[i].id, v[i].canon, strerror(-r));
    /* Its data file went ahead: it goes back, or the client's first
     * connection would create an empty overlay over it. */
    if (map)
      move(dfd, v[i].canon, v[i].id, ".data");
  }
  if (done && fsync(dfd) < 0)
    log_err("overlay directory %s: fsync: %s", dir, strerror(errno));
}

static void
rename_in(const char *dir)
{
  struct old_name *v = NULL;
  size_t n = 0;
  DIR *d = opendir(dir);
  int dfd;

  if (!d) {
    if (errno != ENOENT)
      log_err("overlay directory %s: %s", dir, strerror(errno));
    return;
  }
  dfd = dirfd(d);
  if (find_old_names(d, &v, &n) < 0)
    log_err("overlay directory %s: out of memory looking for old MAC spellings", dir);
  pick_renames(dir, dfd, v, n);
  rename_all(dir, dfd, v, n, ".data");
  rename_all(dir, dfd, v, n, ".map");
  for (size_t i = 0; i < n; i++)
    if (v[i].rename)
      log_info(
          "overlay %s/%s: renamed to %s (client IDs that are MAC addresses are lower case with dashes)",
          dir, v[i].id, v[i].canon);
  free(v);
  closedir(d);
}

void
overlay_rename_old_macs(void)
{
  unsigned n;
  const struct export *all = config_exports(&n);

  for (unsigned i = 0; i < n; i++) {
    char dir[PATH_MAX];

    if (format_path(dir, sizeof dir, "%s/%s", config.overlay_dir, all[i].name) == 0)
      rename_in(dir);
  }
}
