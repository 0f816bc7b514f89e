/* SPDX-License-Identifier: GPL-2.0-or-later */
/* imgtool check-overlay: what is wrong with a client's overlay, offline,
 * and a new overlay made of what can still be read.
 *
 *   imgtool check-overlay [--salvage NEW] OVERLAY
 *
 * nbdsrv refuses a damaged overlay and leaves its files alone
 * (common/overlay-format.c says what counts as damage and what as a tear
 * a crash leaves, which the server cuts).  This says the same thing
 * without a server: sound (with the tear it would cut, if any) or
 * damaged, and why.  With --salvage, the journal's valid prefix (every
 * batch before the damage) and the data it points at are written to the
 * overlay NEW (which must not exist), made durable; blocks whose data
 * is beyond the end of a short data file are lost, and read as zeroes
 * in NEW.  The admin then moves NEW's two files over the old ones (with
 * the client's server stopped, or the client drained).  Nothing here
 * writes to OVERLAY.
 */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "imgtool.h"
#include "overlay-format.h"

static void
check_usage(FILE *f)
{
  fputs("usage: imgtool check-overlay [--salvage NEW] OVERLAY\n"
        "  OVERLAY and NEW are overlay paths without .map/.data,\n"
        "  e.g. /var/lib/nbdsrv/EXPORT/ID.  Exit status: 0 sound (or\n"
        "  salvaged), 1 damaged, 2 usage or I/O error.\n",
        f);
}

static void
say_sound(const char *prefix, const struct ovl_file *f)
{
  printf("%s: sound: disk %" PRIu64 " bytes, journal %" PRIu64 " bytes (%" PRIu64
         " records), %" PRIu64 " blocks of data, %" PRIu64 " zeroed; base %s\n",
         prefix, f->info.size, f->log_end, f->log_records, f->map.ndata, f->map.nzero,
         f->info.base_path);
  if (f->torn_bytes)
    printf("%s: a torn tail of %" PRIu64 " bytes after the last whole batch "
           "(a crash during an append; the server cuts it)\n",
           prefix, f->torn_bytes);
}

/* Copies the blocks of from's map in state OVL_DATA to to's data file;
 * those beyond the end of from's data file become OVL_ZERO in map
 * (*lost counts them). */
static int
copy_data(const struct ovl_file *from, const struct ovl_file *to, struct ovl_map *map,
          uint64_t *lost)
{
  char *buf = malloc(COPY_CHUNK);
  struct stat st;
  uint64_t have;
  int r = 0;

  if (!buf)
    return -ENOMEM;
  if (fstat(from->data_fd, &st) < 0) {
    free(buf);
    return -errno;
  }
  have = (uint64_t)st.st_size >> OVL_BLOCK_SHIFT;
  *lost = 0;
  for (uint64_t b = 0; b < map->nblocks && r == 0;) {
    enum ovl_state s;
    uint64_t run = ovl_map_run(map, b, UINT64_MAX, &s), ok = run;

    if (s == OVL_DATA) {
      ok = b >= have ? 0 : (have - b < run ? have - b : run);
      if (ok)
        r = copy_range(from->data_fd, to->data_fd, b << OVL_BLOCK_SHIFT,
                       ok << OVL_BLOCK_SHIFT, true, buf);
      if (r == 0 && ok < run) {
        *lost += run - ok;
        r = ovl_map_set(map, b + ok, run - ok, OVL_ZERO);
      }
    }
    b += run;
  }
  free(buf);
  if (r == 0 && fdatasync(to->data_fd) < 0)
    r = -errno;
  return r;
}

/* Writes from's readable content to the new overlay at prefix. */
static int
salvage(const struct ovl_file *from, const char *prefix)
{
  struct ovl_file to;
  struct ovl_map map;
  uint64_t lost = 0;
  char *path = xasprintf("%s.map", prefix);
  int r;

  r = access(path, F_OK) == 0 ? -EEXIST : 0;
  free(path);
  if (r < 0) {
    log_err("%s.map exists: give --salvage a new overlay path", prefix);
    return r;
  }
  r = ovl_file_create(prefix, &from->info, &to);
  if (r < 0) {
    log_err("cannot create overlay %s: %s", prefix, strerror(-r));
    return r;
  }
  r = ovl_map_copy(&map, &from->map);
  if (r == 0)
    r = copy_data(from, &to, &map, &lost);
  if (r == 0) {
    ovl_map_free(&to.map);
    to.map = map; /* to owns it now */
    map.groups = NULL;
    r = ovl_file_compact(&to, prefix);
  }
  ovl_map_free(&map);
  if (r == 0)
    printf("salvaged into %s: the journal up to byte %" PRIu64 ", %" PRIu64
           " blocks of data, %" PRIu64 " zeroed, %" PRIu64
           " lost (data beyond the data file's end: zeroes now)\n",
           prefix, from->log_end, to.map.ndata, to.map.nzero - lost, lost);
  else
    log_err("cannot salvage into %s: %s", prefix, strerror(-r));
  ovl_file_close(&to);
  if (r < 0)
    ovl_file_remove(prefix);
  return r;
}

/* The exit status for a damaged overlay, salvaged into dest if given. */
static int
damaged(const char *prefix, const char *why, const char *dest)
{
  struct ovl_file f;
  int r;

  printf("%s: damaged: %s\n", prefix, why);
  if (!dest)
    return 1;
  r = ovl_file_open_salvage(prefix, &f);
  if (r == -EUCLEAN) {
    log_err("%s: nothing can be salvaged: %s", prefix, f.damage);
    return 1;
  }
  if (r < 0) {
    log_err("cannot read overlay %s: %s", prefix, strerror(-r));
    return 2;
  }
  r = salvage(&f, dest);
  ovl_file_close(&f);
  return r < 0 ? 2 : 0;
}

static int
check(const char *prefix, const char *dest)
{
  struct ovl_file f;
  int r = ovl_file_open(prefix, false, &f);

  if (r == -EUCLEAN)
    return damaged(prefix, f.damage, dest);
  if (r == -ENOENT) {
    log_err("no overlay at %s (%s.map is missing, or empty: "
            "a creation a crash interrupted)",
            prefix, prefix);
    return 2;
  }
  if (r < 0) {
    log_err("cannot read overlay %s: %s", prefix, strerror(-r));
    return 2;
  }
  say_sound(prefix, &f);
  if (dest)
    r = salvage(&f, dest);
  ovl_file_close(&f);
  return r < 0 ? 2 : 0;
}

int
cmd_check_overlay(int argc, char **argv)
{
  static const struct option opts[] = {
    { "salvage", required_argument, NULL, 's' },
    { "help", no_argument, NULL, 'h' },
    { NULL, 0, NULL, 0 },
  };
  char *prefix, *dest = NULL;
  int c, rc;

  while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
    switch (c) {
      case 's':
        free(dest);
        dest = overlay_prefix(optarg);
        break;
      case 'h': check_usage(stdout); return 0;
      default: check_usage(stderr); return 2;
    }
  }
  if (optind != argc - 1) {
    log_err("check-overlay: give one overlay");
    check_usage(stderr);
    free(dest);
    return 2;
  }
  prefix = overlay_prefix(argv[optind]);
  rc = check(prefix, dest);
  free(prefix);
  free(dest);
  return rc;
}
