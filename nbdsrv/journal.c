/* SPDX-License-Identifier: GPL-2.0-or-later */
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
 * directory too.  A flush that finds nothing changed in the data file
 * since an fdatasync of it completed (data_gen, counted under the lock by
 * every write, rewrite, zeroing and failed write) skips that fdatasync:
 * the guest's FLUSH right after its FUA commit block, or a second FLUSH.
 * The janitor does the same synchronously for an overlay
 * nobody uses (journal_sync_all), and compacts a long journal.  All of it
 * runs under ov->lock.
 *
 * Compaction of an overlay in use.  A client that stays connected for
 * weeks and flushes often would grow its journal without end, and the
 * next start of the server would replay all of it.  So when a flush finds
 * the journal grown by more than journal-max (or by more than the
 * snapshot it started from, whichever is more: a client with a very
 * fragmented map is not compacted over and over), the overlay is queued
 * for the compactor thread, which rewrites the journal as a snapshot
 * (ovl_compact_* in common/overlay-format.c: the crash safety argument is
 * there).  The client's requests wait for it only twice: while the map is
 * copied, and while the new file is put in place (a rename).  Its flushes
 * go on meanwhile, into the old journal, except while the journal's last
 * batches are copied and synced: then they wait for that, each in its own
 * time (appends_held), never holding up their worker.
 * After the switch, a flush's fsync of the old map file counts for
 * nothing (map_gen), and the first flush syncs the directory, so that the
 * rename is durable before anything appended to the new file is
 * promised.
 *
 * Must never happen: a map entry durable before the data it points at
 * (data is synced before its records are appended); a map change without
 * its record (journal_record makes room for the record before it changes
 * the map, so running out of memory changes nothing); a flush
 * acknowledged before the records of every write it covers are durable.
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
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
    memmove(ov->pending, ov->pending + n, (ov->npending - n) * sizeof *ov->pending);
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
journal_record(struct overlay *ov, uint64_t first, uint64_t count, enum ovl_state s)
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
    ov->pending[ov->npending++] = (struct pending_record){ { first, n, s }, ov->seq };
    first += n;
    count -= n;
  }
  return 0;
}

/* ---- compaction of an overlay in use ---- */

static pthread_mutex_t cq_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cq_cond = PTHREAD_COND_INITIALIZER;
static struct overlay **cq; /* queued overlays (cq_lock) */
static size_t ncq, cap_cq;
static struct overlay *cq_current; /* being compacted */
static bool cq_stop, cq_running;
static pthread_t cq_thread;

/* Whether ov's journal has grown past its bound: journal-max more than
 * the snapshot it started from, or as much again as that snapshot,
 * whichever is more (a client with a very fragmented map is not
 * compacted over and over); lock held. */
static bool
journal_long(const struct overlay *ov)
{
  uint64_t allowed = config.journal_max;

  if (allowed == 0 || ov->detached || ov->file.map_fd < 0)
    return false;
  if (ov->compacted_end > allowed)
    allowed = ov->compacted_end;
  return ov->file.log_end > ov->compacted_end + allowed;
}

/* Whether ov's journal has grown enough to be compacted in the
 * background; lock held. */
static bool
compact_due(const struct overlay *ov)
{
  return !ov->compacting && cq_running && journal_long(ov);
}

/* Lock held (ov->lock, then cq_lock). */
static void
compact_queue_if_due(struct overlay *ov)
{
  if (!compact_due(ov))
    return;
  pthread_mutex_lock(&cq_lock);
  if (VEC_RESERVE(cq, cap_cq, ncq + 1) == 0) {
    cq[ncq++] = ov;
    ov->compacting = true;
    pthread_cond_broadcast(&cq_cond);
  }
  pthread_mutex_unlock(&cq_lock);
}

void
journal_compact_if_due(struct overlay *ov)
{
  pthread_mutex_lock(&ov->lock);
  compact_queue_if_due(ov);
  pthread_mutex_unlock(&ov->lock);
}

bool
journal_compaction_pending(struct overlay *ov)
{
  bool pending;

  pthread_mutex_lock(&ov->lock);
  pending = ov->compacting || compact_due(ov);
  pthread_mutex_unlock(&ov->lock);
  return pending;
}

void
journal_compact_forget(struct overlay *ov)
{
  pthread_mutex_lock(&cq_lock);
  for (size_t i = 0; i < ncq; i++) {
    if (cq[i] == ov) {
      memmove(cq + i, cq + i + 1, (ncq - i - 1) * sizeof *cq);
      ncq--;
      break;
    }
  }
  while (cq_current == ov)
    pthread_cond_wait(&cq_cond, &cq_lock);
  pthread_mutex_unlock(&cq_lock);
}

void
journal_opened(struct overlay *ov)
{
  ov->map_synced_end = ov->file.log_end;
  /* A long journal from before (an older server, or compaction off) is
   * compacted at the first occasion. */
  ov->compacted_end = ov->file.log_end <= config.journal_max ? ov->file.log_end : 0;
}

/* Copies the old journal behind the snapshot, off the lock, until it has
 * caught up (or a few rounds: a client flushing all the time is caught
 * up under the lock, in ovl_compact_commit). */
static int
compact_catch_up(struct overlay *ov, struct ovl_compaction *c)
{
  for (int round = 0; round < 4; round++) {
    uint64_t upto;
    int r;

    pthread_mutex_lock(&ov->lock);
    upto = ov->file.log_end;
    pthread_mutex_unlock(&ov->lock);
    if (upto == c->copied && c->synced == c->end)
      return 0;
    r = ovl_compact_catch_up(&ov->file, c, upto, true);
    if (r < 0)
      return r;
  }
  return 0;
}

/* The last batches copied and synced with appends held off (flushes
 * wait for that in their own time, see flush_advance), then the new
 * journal takes over under the lock; *held grows by how long the client's
 * requests waited.  0 or -errno. */
static int
compact_finish(struct overlay *ov, struct ovl_compaction *c, uint64_t *held)
{
  uint64_t upto, t;
  int r;

  pthread_mutex_lock(&ov->lock);
  ov->appends_held = true;
  upto = ov->file.log_end;
  pthread_mutex_unlock(&ov->lock);
  r = ovl_compact_catch_up(&ov->file, c, upto, true);
  pthread_mutex_lock(&ov->lock);
  t = now_us();
  if (r == 0)
    r = ov->detached ? -ESTALE : ovl_compact_commit(&ov->file, ov->prefix, c);
  if (r == 0) {
    ov->map_gen++;
    ov->map_synced_end = ov->file.log_end;
  }
  ov->appends_held = false;
  *held += now_us() - t;
  pthread_mutex_unlock(&ov->lock);
  return r;
}

static void
compact(struct overlay *ov)
{
  struct ovl_compaction c = { .fd = -1 };
  struct ovl_map snap;
  uint64_t before, t0 = now_ms(), held;
  int r;

  /* The map as it is now, with the journal's end that goes with it. */
  pthread_mutex_lock(&ov->lock);
  held = now_us();
  before = ov->file.log_end;
  r = ovl_map_copy(&snap, &ov->file.map);
  held = now_us() - held;
  pthread_mutex_unlock(&ov->lock);
  /* Every block it points at must hold durable data. */
  if (r == 0 && fdatasync(ov->file.data_fd) < 0)
    r = -errno;
  if (r == 0)
    r = ovl_compact_begin(&ov->file, ov->prefix, &snap, before, &c);
  ovl_map_free(&snap);
  if (r == 0)
    r = compact_catch_up(ov, &c);
  if (r == 0)
    r = compact_finish(ov, &c, &held);
  if (r < 0)
    ovl_compact_abort(ov->prefix, &c);
  pthread_mutex_lock(&ov->lock);
  ov->compacting = false;
  /* After a failure, not again before the journal grows as much more. */
  ov->compacted_end = ov->file.log_end;
  pthread_mutex_unlock(&ov->lock);
  if (r < 0 && r != -ESTALE)
    log_err("overlay %s: cannot compact the journal: %s", ov->prefix, strerror(-r));
  else if (r == 0)
    log_info("overlay %s: journal compacted in use, %" PRIu64 " KiB to %" PRIu64
             " KiB in %" PRIu64 " ms (its requests held up %" PRIu64 " us)",
             ov->prefix, before >> 10, ov->compacted_end >> 10, now_ms() - t0, held);
}

static void *
compactor_main(void *arg)
{
  (void)arg;
  pthread_mutex_lock(&cq_lock);
  for (;;) {
    while (ncq == 0 && !cq_stop)
      pthread_cond_wait(&cq_cond, &cq_lock);
    if (cq_stop)
      break;
    cq_current = cq[0];
    memmove(cq, cq + 1, (ncq - 1) * sizeof *cq);
    ncq--;
    pthread_mutex_unlock(&cq_lock);
    compact(cq_current);
    pthread_mutex_lock(&cq_lock);
    cq_current = NULL;
    pthread_cond_broadcast(&cq_cond);
  }
  pthread_mutex_unlock(&cq_lock);
  return NULL;
}

int
journal_compactor_start(void)
{
  int r = pthread_create(&cq_thread, NULL, compactor_main, NULL);

  if (r != 0)
    return -r;
  cq_running = true;
  return 0;
}

void
journal_compactor_stop(void)
{
  if (!cq_running)
    return;
  pthread_mutex_lock(&cq_lock);
  cq_stop = true;
  pthread_cond_broadcast(&cq_cond);
  pthread_mutex_unlock(&cq_lock);
  pthread_join(cq_thread, NULL);
  cq_running = false;
  free(cq);
  cq = NULL;
  ncq = cap_cq = 0;
}

/* ovl_file_compact, logged; lock held, data file synced. */
static int
compact_at_close(struct overlay *ov)
{
  uint64_t before = ov->file.log_end, t0 = now_ms();
  int r = ovl_file_compact(&ov->file, ov->prefix);

  if (r == 0) {
    ov->compacted_end = ov->file.log_end;
    log_info("overlay %s: journal compacted at close, %" PRIu64 " KiB to %" PRIu64
             " KiB in %" PRIu64 " ms",
             ov->prefix, before >> 10, ov->file.log_end >> 10, now_ms() - t0);
  }
  return r;
}

int
journal_sync_all(struct overlay *ov, bool bound)
{
  int r = 0;

  if (ov->detached)
    return 0;
  journal_compact_forget(ov);
  pthread_mutex_lock(&ov->lock);
  if (ov->npending > 0 || ov->file.log_end > ov->map_synced_end ||
      (bound && journal_long(ov))) {
    if (fdatasync(ov->file.data_fd) < 0)
      r = -errno;
    else
      ov->data_synced_gen = ov->data_gen; /* lock held: nothing came meanwhile */
    if (r == 0)
      r = append_pending(ov, ov->npending);
    if (r == 0) {
      /* A journal past its bound is compacted now, whether or not a
       * compaction in the background was queued (journal_compact_forget
       * dropped it): the next open replays the snapshot only.  So is one
       * much longer than the map it describes. */
      if ((bound && journal_long(ov)) ||
          (ov->file.log_records > 1024 &&
           ov->file.log_records > 4 * (ov->file.map.ndata + ov->file.map.nzero)))
        r = compact_at_close(ov);
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
  f->gen = ov->map_gen;
  *need_sync = ov->file.log_end > ov->map_synced_end;
  if (r == 0)
    compact_queue_if_due(ov);
  return r;
}

/* A new overlay's first flush also syncs its directory (creating an
 * overlay syncs nothing, see ovl_file_create): the descriptor to fsync, or
 * -1 when it is durable already; lock held. */
static int
flush_dir_begin(struct overlay *ov, struct journal_flush *f)
{
  if (ov->file.durable || ov->file.dir_fd < 0)
    return -1;
  ov->dir_syncs++;
  f->gen = ov->map_gen;
  return ov->file.dir_fd;
}

static void
flush_dir_done(struct overlay *ov, const struct journal_flush *f, int res)
{
  ov->dir_syncs--;
  /* A sync from before a compaction's rename does not cover it. */
  if (res == 0 && f->gen == ov->map_gen)
    ov->file.durable = true;
  /* Another connection of the client may be syncing it too: the
   * descriptor goes when the last of them is done. */
  if (ov->file.durable && ov->dir_syncs == 0)
    ovl_file_durable(&ov->file);
}

/* The step after f's stage succeeded; lock held.  The order: the data
 * file, then (once, for a new overlay) its directory, then the journal
 * records and the map file.  The directory comes before the records: a
 * record durable in the map while the data file's name is not would be
 * a map pointing into a data file that a power loss took. */
static int
flush_advance(struct overlay *ov, struct journal_flush *f, int *fd)
{
  bool need_sync;
  int r;

  *fd = -1;
  if (f->stage == FLUSH_MAP) {
    /* After a compaction, f's fsync was of the old file: the new one was
     * synced whole when it took over. */
    if (f->gen == ov->map_gen && f->end > ov->map_synced_end)
      ov->map_synced_end = f->end;
    return 0;
  }
  if (ov->appends_held) {
    /* A compaction is putting its new journal in place: the flush comes
     * back after one more (cheap) sync of the data file, not blocking
     * its worker. */
    f->stage = FLUSH_DATA;
    *fd = ov->file.data_fd;
    return 0;
  }
  if ((*fd = flush_dir_begin(ov, f)) >= 0) {
    f->stage = FLUSH_DIR;
    return 0;
  }
  r = flush_journal(ov, f, &need_sync);
  if (r < 0) {
    if (!no_space(-r))
      log_err("overlay %s: journal append: %s", ov->prefix, strerror(-r));
    return r;
  }
  if (need_sync) {
    f->stage = FLUSH_MAP;
    *fd = ov->file.map_fd;
  }
  return 0;
}

/* f's fdatasync of the data file succeeded: it covers every change made
 * before it began; lock held. */
static void
flush_data_done(struct overlay *ov, const struct journal_flush *f)
{
  if (f->data_gen > ov->data_synced_gen)
    ov->data_synced_gen = f->data_gen;
}

int
journal_flush_begin(struct overlay *ov, struct journal_flush *f, int *fd)
{
  int r = 0;

  pthread_mutex_lock(&ov->lock);
  f->seq = ov->seq;
  f->data_gen = ov->data_gen;
  f->stage = FLUSH_DATA;
  *fd = ov->file.data_fd;
  /* Nothing reached the data file since an fdatasync that completed:
   * its records may go to the journal at once.  (A client's FLUSH right
   * after its FUA write, or one that flushes without writing.) */
  if (ov->data_synced_gen >= f->data_gen) {
    ov->data_syncs_skipped++;
    r = flush_advance(ov, f, fd);
  }
  if (r == 0 && *fd >= 0)
    ov->flush_fsyncs++;
  pthread_mutex_unlock(&ov->lock);
  return r;
}

int
journal_flush_next(struct overlay *ov, struct journal_flush *f, int res, int *fd)
{
  int r;

  pthread_mutex_lock(&ov->lock);
  if (f->stage == FLUSH_DIR)
    flush_dir_done(ov, f, res);
  else if (f->stage == FLUSH_DATA && res == 0)
    flush_data_done(ov, f);
  if (res < 0) {
    if (!no_space(-res))
      log_err("overlay %s: fsync: %s", ov->prefix, strerror(-res));
    r = res;
  } else {
    r = flush_advance(ov, f, fd);
    if (r == 0 && *fd >= 0)
      ov->flush_fsyncs++;
  }
  pthread_mutex_unlock(&ov->lock);
  return r;
}
