/* nbdsrv: an overlay's journal: pending records, their batches, and the
 * fdatasync chain that makes them durable.
 *
 * Design notes
 * ------------
 * A write changes the overlay's map in memory at once (reads must see
 * it) and queues a journal record tagged with the write's sequence number
 * (journal_record).  A flush notes the last sequence number
 * (journal_flush_begin), has the data file fdatasync'ed, appends the
 * records up to that number to the journal as one batch (the on-disk
 * batch format is ovl_file_append in common/overlay-format.c), and has
 * the map file fdatasync'ed; the first flush of a new overlay syncs its
 * directory too.  The janitor does the same synchronously for an overlay
 * nobody uses (journal_sync_all), and compacts a long journal.  All of it
 * runs under ov->lock.
 *
 * Must never happen: a map entry durable before the data it points at
 * (data is synced before its records are appended); a map change without
 * its record (journal_record makes room for the record before it changes
 * the map, so running out of memory changes nothing); a flush
 * acknowledged before the records of every write it covers are durable.
 */
#include <config.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "nbdsrv.h"
#include "vec.h"

/* Appends the first n pending records to the journal as one batch (one
 * write, checked whole on replay); lock held. */
static int
append_pending(struct overlay *ov, size_t n)
{
  struct ovl_record *recs;
  int r;

  if (n == 0)
    return 0;
  recs = malloc(n * sizeof *recs);
  if (!recs)
    return -ENOMEM;
  for (size_t i = 0; i < n; i++)
    recs[i] = ov->pending[i].rec;
  r = ovl_file_append(&ov->file, recs, n);
  free(recs);
  if (r == 0) {
    memmove(ov->pending, ov->pending + n,
            (ov->npending - n) * sizeof *ov->pending);
    ov->npending -= n;
    if (ov->npending == 0 && ov->cap_pending > 1024) {
      /* A big burst is over: give its memory back. */
      free(ov->pending);
      ov->pending = NULL;
      ov->cap_pending = 0;
    }
  }
  return r;
}

int
journal_record(struct overlay *ov, uint64_t first, uint64_t count,
               enum ovl_state s)
{
  struct pending_record *last = ov->npending ? &ov->pending[ov->npending - 1] : NULL;
  bool extend;
  enum ovl_state cur;
  size_t need;
  int r;

  /* Rewriting blocks the map already has in that state changes nothing
   * to journal: a record that says so is either durable or pending, and
   * then older than any flush that must cover this write.  (Without this,
   * a client rewriting its blocks without flushing would pile up one
   * record per write.) */
  if (ovl_map_run(&ov->file.map, first, count, &cur) >= count && cur == s)
    return 0;
  /* Sequential I/O extends the last record. */
  extend = last && last->rec.state == (uint32_t)s &&
           last->rec.first + last->rec.count == first &&
           (uint64_t)last->rec.count + count <= UINT32_MAX;
  need = extend ? 0 : (size_t)((count + UINT32_MAX - 1) / UINT32_MAX);
  if (VEC_RESERVE(ov->pending, ov->cap_pending, ov->npending + need) < 0)
    return -ENOMEM;
  r = ovl_map_set(&ov->file.map, first, count, s);
  if (r < 0)
    return r;
  ov->seq++;
  if (extend) {
    last->rec.count += count;
    last->seq = ov->seq;
    return 0;
  }
  while (count > 0) {
    uint32_t n = count > UINT32_MAX ? UINT32_MAX : (uint32_t)count;
    ov->pending[ov->npending++] =
        (struct pending_record){ { first, n, s }, ov->seq };
    first += n;
    count -= n;
  }
  return 0;
}

int
journal_sync_all(struct overlay *ov)
{
  int r = 0;

  if (ov->detached)
    return 0;
  pthread_mutex_lock(&ov->lock);
  if (ov->npending > 0 || ov->file.log_end > ov->map_synced_end) {
    if (fdatasync(ov->file.data_fd) < 0)
      r = -errno;
    if (r == 0)
      r = append_pending(ov, ov->npending);
    if (r == 0) {
      /* A journal much longer than the map it describes is compacted. */
      if (ov->file.log_records > 1024 &&
          ov->file.log_records > 4 * (ov->file.map.ndata + ov->file.map.nzero))
        r = ovl_file_compact(&ov->file, ov->prefix);
      else if (fdatasync(ov->file.map_fd) < 0)
        r = -errno;
    }
    if (r == 0)
      ov->map_synced_end = ov->file.log_end;
  }
  if (r == 0)
    r = ovl_file_make_durable(&ov->file);
  pthread_mutex_unlock(&ov->lock);
  if (r < 0)
    log_err("overlay %s: cannot sync: %s", ov->prefix, strerror(-r));
  return r;
}

/* ---- the asynchronous flush: fdatasync(data) -> journal -> fdatasync(map)
 * [-> fsync(dir)] ---- */

static bool
no_space(int err)
{
  return err == ENOSPC || err == EDQUOT;
}

int
journal_flush_begin(struct overlay *ov, struct journal_flush *f)
{
  pthread_mutex_lock(&ov->lock);
  f->seq = ov->seq;
  pthread_mutex_unlock(&ov->lock);
  f->stage = FLUSH_DATA;
  return ov->file.data_fd;
}

/* Appends the records f covers; lock held.  Whether the map file needs
 * an fdatasync. */
static int
flush_journal(struct overlay *ov, struct journal_flush *f, bool *need_sync)
{
  size_t n = 0;
  int r;

  while (n < ov->npending && ov->pending[n].seq <= f->seq)
    n++;
  r = append_pending(ov, n);
  f->end = ov->file.log_end;
  *need_sync = ov->file.log_end > ov->map_synced_end;
  return r;
}

/* A new overlay's first flush also syncs its directory (creating an
 * overlay syncs nothing, see ovl_file_create): the descriptor to fsync, or
 * -1 when it is durable already; lock held. */
static int
flush_dir_begin(struct overlay *ov)
{
  if (ov->file.durable || ov->file.dir_fd < 0)
    return -1;
  ov->dir_syncs++;
  return ov->file.dir_fd;
}

static void
flush_dir_done(struct overlay *ov, int res)
{
  ov->dir_syncs--;
  if (res == 0)
    ov->file.durable = true;
  /* Another connection of the client may be syncing it too: the
   * descriptor goes when the last of them is done. */
  if (ov->file.durable && ov->dir_syncs == 0)
    ovl_file_durable(&ov->file);
}

/* The step after f's stage succeeded; lock held. */
static int
flush_advance(struct overlay *ov, struct journal_flush *f, int *fd)
{
  bool need_sync;
  int r;

  *fd = -1;
  if (f->stage == FLUSH_DATA) {
    r = flush_journal(ov, f, &need_sync);
    if (r < 0) {
      if (!no_space(-r))
        log_err("overlay %s: journal append: %s", ov->prefix, strerror(-r));
      return r;
    }
    if (need_sync) {
      f->stage = FLUSH_MAP;
      *fd = ov->file.map_fd;
      return 0;
    }
  } else if (f->stage == FLUSH_MAP) {
    if (f->end > ov->map_synced_end)
      ov->map_synced_end = f->end;
  }
  if (f->stage != FLUSH_DIR && (*fd = flush_dir_begin(ov)) >= 0)
    f->stage = FLUSH_DIR;
  return 0;
}

int
journal_flush_next(struct overlay *ov, struct journal_flush *f, int res,
                   int *fd)
{
  int r;

  pthread_mutex_lock(&ov->lock);
  if (f->stage == FLUSH_DIR)
    flush_dir_done(ov, res);
  if (res < 0) {
    if (!no_space(-res))
      log_err("overlay %s: fsync: %s", ov->prefix, strerror(-res));
    r = res;
  } else {
    r = flush_advance(ov, f, fd);
  }
  pthread_mutex_unlock(&ov->lock);
  return r;
}
