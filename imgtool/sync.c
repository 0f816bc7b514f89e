/* SPDX-License-Identifier: GPL-2.0-or-later */
/* imgtool sync: brings a second server's store to the versions of a first.
 *
 * Every server has its own copy of the image store; what makes two copies
 * the same is their versions' content, the sha256 each .meta records
 * (nbdsrv finds an overlay's base by it, whatever the path: nbdsrv(8)).
 * So sync copies, for each image name, every published version of SRC
 * that DST lacks, under the same number and with the same .meta, checks
 * the copy against the checksum SRC published, publishes it the way a
 * build does (complete, read-only and synced under no name first; the
 * image linked, then its .meta, then the directory synced), and at the
 * end moves DST's `current` to SRC's current version, atomically.
 *
 * A version DST already has with the same checksum is left alone, so a
 * second run does nothing.  One DST has with another checksum is never
 * overwritten: sync refuses and says so, and leaves that name's current
 * as it was (the two stores disagree on what that version is; someone
 * has to decide).  Versions DST has and SRC has not are kept (gc's job).
 * DST's name directory is locked as builds lock it; SRC is only read,
 * and what is read from it is what the checksum is checked on.
 */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "clock.h"
#include "imgtool.h"

struct sync_opts {
  const char *from, *to, *name;
  bool progress;
};

/* What one name's sync did, for its summary line. */
struct sync_count {
  size_t copied, present;
  bool conflict;
};

static void
sync_usage(FILE *f)
{
  fputs("usage: imgtool sync --from SRC_STORE --to DST_STORE [--name NAME] "
        "[--progress]\n"
        "  Copies the versions of SRC_STORE (of NAME, or of every image) that\n"
        "  DST_STORE lacks, checks them against their published checksums and\n"
        "  points DST's current where SRC's points.  Never overwrites a version\n"
        "  of another content.\n",
        f);
}

/* Copies in to out, all size bytes, with a progress line on stderr when
 * asked for (or on a terminal) and the copy is long. */
static int
copy_with_progress(int in, int out, uint64_t size, const char *what, bool progress)
{
  char *buf = xmalloc(COPY_CHUNK);
  uint64_t last = now_ms(), off = 0;
  bool shown = false;
  int r = 0;

  progress = progress || isatty(STDERR_FILENO);
  while (off < size && r == 0) {
    uint64_t n = size - off < 64 * COPY_CHUNK ? size - off : 64 * COPY_CHUNK;

    r = copy_range(in, out, off, n, true, buf);
    off += n;
    if (progress && (now_ms() - last >= 1000 || (shown && off == size))) {
      fprintf(stderr, "imgtool: sync: %s: %llu of %llu MiB\n", what,
              (unsigned long long)(off >> 20), (unsigned long long)(size >> 20));
      last = now_ms();
      shown = true;
    }
  }
  free(buf);
  return r;
}

/* Copies the file src to a new file of DST's name directory with mode
 * 0444, synced, in o (not linked yet). */
static int
copy_to_outfile(const char *src, const char *final, const char *what, bool progress,
                struct outfile *o)
{
  struct stat st;
  int in = open(src, O_RDONLY | O_CLOEXEC), r;

  if (in < 0)
    return -errno;
  r = fstat(in, &st) < 0 ? -errno : outfile_create(final, 0444, o);
  /* Sized first: the copy leaves zero chunks as holes. */
  if (r == 0 && ftruncate(o->fd, st.st_size) < 0)
    r = -errno;
  if (r == 0)
    r = copy_with_progress(in, o->fd, (uint64_t)st.st_size, what, progress);
  if (r == 0 && (fchmod(o->fd, 0444) < 0 || fsync(o->fd) < 0))
    r = -errno;
  close(in);
  return r;
}

/* The copy of version id is what SRC published: its size and sha256. */
static int
check_copy(const struct outfile *img, const struct version_meta *m, const char *what)
{
  char sha[65];
  uint64_t size = 0;
  int r = sha256_file(img->path, sha, &size);

  if (r < 0) {
    log_err("sync: %s: cannot read the copy back: %s", what, strerror(-r));
    return r;
  }
  if (size != m->size || strcmp(sha, m->sha256) != 0) {
    log_err("sync: %s: the copy has sha256 %s (%llu bytes), the source's "
            ".meta says %s (%llu bytes): the source is damaged (imgtool "
            "verify --store on it); not published",
            what, sha, (unsigned long long)size, m->sha256, (unsigned long long)m->size);
    return -EBADMSG;
  }
  return 0;
}

/* Copies version id of src into dst (both name directories, dst locked)
 * and publishes it there under the same number. */
static int
copy_version(const char *src, const char *dst, unsigned id, const struct version_meta *m,
             bool progress)
{
  char *si = store_version_path(src, id, "img");
  char *sm = store_version_path(src, id, "meta");
  char *di = store_version_path(dst, id, "img");
  char *dm = store_version_path(dst, id, "meta");
  char *what = xasprintf("%s/%04u", m->name[0] ? m->name : dst, id);
  struct outfile img = { .fd = -1 }, meta = { .fd = -1 };
  int r = copy_to_outfile(si, di, what, progress, &img);

  if (r == 0)
    r = check_copy(&img, m, what);
  if (r == 0)
    r = copy_to_outfile(sm, dm, what, false, &meta);
  if (r < 0 && r != -EBADMSG)
    log_err("sync: %s: cannot copy: %s", what, strerror(-r));
  if (r == 0) {
    /* The image first: a version counts only once its .meta is there. */
    signals_hold(true);
    r = outfile_link(&img, di);
    if (r == 0 && (r = outfile_link(&meta, dm)) < 0)
      unlink(di);
    if (r == 0)
      r = fsync_dir(dst);
    signals_hold(false);
    if (r < 0)
      log_err("sync: %s: cannot publish %s: %s", what, di,
              r == -EEXIST ? "a file of that name is there (a leftover of "
                             "an interrupted run: imgtool gc removes it)"
                           : strerror(-r));
  }
  if (r == 0)
    fprintf(stderr, "imgtool: sync: %s: copied (sha256 %s)\n", what, m->sha256);
  outfile_close(&img);
  outfile_close(&meta);
  free(si), free(sm), free(di), free(dm), free(what);
  return r;
}

/* Version id of src, into dst unless dst has it: 0, or -errno. */
static int
sync_version(const char *src, const char *dst, unsigned id, const struct sync_opts *o,
             struct sync_count *c)
{
  struct version_meta sm, dm;
  char *dimg = store_version_path(dst, id, "img");
  bool there = access(dimg, F_OK) == 0;
  int r;

  free(dimg);
  r = store_read_meta(src, id, &sm);
  if (r < 0) {
    log_err("sync: %s/%04u.meta: cannot read it (%s)", src, id, strerror(-r));
    return r;
  }
  if (there && store_read_meta(dst, id, &dm) == 0) {
    if (strcmp(dm.sha256, sm.sha256) == 0 && dm.size == sm.size) {
      c->present++;
      return 0;
    }
    log_err("sync: %s/%04u has another content (sha256 %s) than %s/%04u "
            "(sha256 %s): not overwritten, and current of %s left as it is",
            dst, id, dm.sha256, src, id, sm.sha256, dst);
    c->conflict = true;
    return -EEXIST;
  }
  r = copy_version(src, dst, id, &sm, o->progress);
  if (r == 0)
    c->copied++;
  return r;
}

/* With dst locked: every version, then current. */
static int
sync_locked(const char *src, const char *dst, const struct sync_opts *o)
{
  struct sync_count c = { 0 };
  unsigned *ids = NULL, cur = 0, dcur = 0, shown;
  char num[16];
  size_t n = 0;
  int r = store_list(src, &ids, &n), rc = 0;

  if (r < 0) {
    log_err("sync: cannot read %s: %s", src, strerror(-r));
    return 1;
  }
  for (size_t i = 0; i < n; i++)
    if (sync_version(src, dst, ids[i], o, &c) < 0)
      rc = 1;
  free(ids);
  if (store_current(src, &cur) < 0 || store_current(dst, &dcur) < 0)
    cur = 0;
  if (rc == 0 && cur && cur != dcur) {
    r = store_set_current(dst, cur);
    if (r < 0) {
      log_err("sync: cannot move %s/current: %s", dst, strerror(-r));
      rc = 1;
    }
  }
  shown = rc == 0 && cur ? cur : dcur;
  fprintf(stderr,
          "imgtool: sync: %s: %zu copied, %zu already there%s; "
          "current %s%s\n",
          dst, c.copied, c.present,
          c.conflict ? ", versions of another content (above)" : "",
          shown ? (snprintf(num, sizeof num, "%04u", shown), num) : "none",
          rc == 0 ? "" : " (unchanged)");
  return rc;
}

/* One image name: creates DST/NAME if need be, locks it, syncs it. */
static int
sync_name(const char *src, const struct sync_opts *o)
{
  const char *base = strrchr(src, '/');
  char *dst = xasprintf("%s/%s", o->to, base ? base + 1 : src);
  int lock = store_lock(dst, true), rc = 1;

  if (lock < 0) {
    log_err("sync: cannot lock %s: %s", dst, strerror(-lock));
  } else {
    rc = sync_locked(src, dst, o);
    store_abandon(dst);
    store_unlock(lock);
  }
  free(dst);
  return rc;
}

static int
run_sync(const struct sync_opts *o)
{
  struct strv names = { 0 };
  struct stat st;
  int rc = 0, r;

  if (stat(o->to, &st) < 0 || !S_ISDIR(st.st_mode)) {
    log_err("sync: no store %s: create the directory first", o->to);
    return 1;
  }
  if (o->name) {
    char *nd = store_name_dir(o->from, o->name);
    if (!nd)
      return 1;
    strv_push(&names, nd);
  } else if ((r = store_names(o->from, &names)) < 0) {
    log_err("sync: no store %s (%s)", o->from, strerror(-r));
    return 1;
  }
  for (size_t i = 0; i < names.n; i++)
    if (sync_name(names.v[i], o) != 0)
      rc = 1;
  strv_free(&names);
  return rc;
}

/* Fills o from the command line.  Returns -1 to go on, else the exit
 * status (0 after --help, 2 after a usage error). */
static int
parse_sync_args(int argc, char **argv, struct sync_opts *o)
{
  static const struct option opts[] = {
    { "from", required_argument, NULL, 'F' }, { "to", required_argument, NULL, 'T' },
    { "name", required_argument, NULL, 'N' }, { "progress", no_argument, NULL, 'P' },
    { "help", no_argument, NULL, 'h' },       { NULL, 0, NULL, 0 },
  };
  int c;

  while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
    switch (c) {
      case 'F': o->from = optarg; break;
      case 'T': o->to = optarg; break;
      case 'N': o->name = optarg; break;
      case 'P': o->progress = true; break;
      case 'h': sync_usage(stdout); return 0;
      default: sync_usage(stderr); return 2;
    }
  }
  if (!o->from || !o->to || optind != argc) {
    log_err("sync needs --from SRC_STORE and --to DST_STORE (imgtool sync "
            "--help)");
    return 2;
  }
  if (o->name && !store_name_valid(o->name)) {
    log_err("image name '%s': give a plain name without '/' or a leading "
            "'.'",
            o->name);
    return 2;
  }
  return -1;
}

int
cmd_sync(int argc, char **argv)
{
  struct sync_opts o = { 0 };
  int rc = parse_sync_args(argc, argv, &o);

  return rc < 0 ? run_sync(&o) : rc;
}
