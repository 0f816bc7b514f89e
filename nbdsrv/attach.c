/* SPDX-License-Identifier: GPL-2.0-or-later */
/* nbdsrv: opening clients' overlays off the event loops.
 *
 * A client's NBD_OPT_GO attaches it to its overlay.  When the overlay is
 * open already (another connection of the client, or a reconnect within
 * idle-close), that is a hash lookup, done right in the event loop.
 * Otherwise its files have to be opened, or created on the client's first
 * boot: a dozen file system calls, some hundreds of microseconds, more on
 * a busy disk.  In the event loop that would stall every other client of
 * the worker, and in a boot storm hundreds of first connections come at
 * once, each waiting behind the others' file creation before its first
 * read is served.  So the connection is handed to the attach thread,
 * which opens the overlay while the worker goes on serving everybody
 * else; the result comes back through the worker's wake eventfd, and the
 * handshake goes on from there (handshake_attached).
 *
 * While it waits, the connection reads nothing into the protocol state
 * machine: bytes a client sends before the reply to its NBD_OPT_GO are
 * kept and fed in afterwards (input.c).  A connection that closes in the
 * meantime stays allocated until its job comes back: the job holds a
 * pointer to it.  One thread is enough: ext4 serialises creations in one
 * directory anyway, and the thread only does file system calls.  The
 * one wait it would have, for an overlay the janitor is syncing and
 * closing (seconds, on a busy disk), it does not do: that job is set
 * aside until the close is done, and the others go on.
 *
 * The thread opens overlays at SCHED_IDLE, so that clients already
 * attached come first; idle.c decides when, and brings it back when it
 * starves.
 */
#include <config.h>

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"
#include "nbdsrv.h"

struct attach_job {
  struct attach_job *next;
  struct conn *c; /* belongs to its worker: not touched here */
  struct worker *w;
  const struct export *exp;
  char id[CLIENT_ID_MAX + 1];
  char boot_id[BOOT_ID_MAX + 1];
  char peer[INET6_ADDRSTRLEN]; /* the client's address */
  bool cancelled;              /* the connection closed: skip the work */
  /* the result */
  struct overlay *ovl;
  int r;
  const char *why;
};

static pthread_mutex_t queue_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t queue_cond; /* on CLOCK_MONOTONIC */
static struct attach_job *queue_head, **queue_tail = &queue_head;
static bool started, thread_running, thread_stop;
static pthread_t thread;
/* The job being worked on (queue_lock): until its overlay is in the
 * registry, only this says that its client is back. */
static struct attach_job *current;
/* Jobs whose overlay the janitor was closing (queue_lock): they go back
 * in the queue once it closed one (attach_overlay_closed; closes counts
 * those calls, so that one coming while a job is being turned away is
 * not missed). */
static struct attach_job *deferred, **deferred_tail = &deferred;
static unsigned long closes;

/* Hands a finished job back to its worker. */
static void
deliver(struct attach_job *j)
{
  struct worker *w = j->w;
  uint64_t one = 1;

  /* A lock-free push: at SCHED_IDLE this thread must not hold a lock the
   * worker takes. */
  j->next = __atomic_load_n(&w->attached, __ATOMIC_RELAXED);
  while (!__atomic_compare_exchange_n(&w->attached, &j->next, j, true, __ATOMIC_RELEASE,
                                      __ATOMIC_RELAXED))
    ;
  if (write(w->wake_fd, &one, sizeof one) < 0)
    log_err("cannot wake worker %u: %s", w->id, strerror(errno));
}

/* Under queue_lock: j found its overlay closing.  It waits for the end of
 * a close, unless one ended since the job was taken up (closes moved on
 * from seen): then it goes back in front of the queue and tries again at
 * once. */
static void
defer(struct attach_job *j, unsigned long seen)
{
  if (closes != seen) {
    j->next = queue_head;
    queue_head = j;
    if (!j->next)
      queue_tail = &j->next;
    return;
  }
  j->next = NULL;
  *deferred_tail = j;
  deferred_tail = &j->next;
}

void
attach_overlay_closed(void)
{
  pthread_mutex_lock(&queue_lock);
  closes++;
  if (deferred) {
    /* Back in front of the queue, in the order they came. */
    *deferred_tail = queue_head;
    if (!queue_head)
      queue_tail = deferred_tail;
    queue_head = deferred;
    deferred = NULL;
    deferred_tail = &deferred;
    pthread_cond_signal(&queue_cond);
  }
  pthread_mutex_unlock(&queue_lock);
}

/* Runs j's overlay_acquire(), its file system calls at SCHED_IDLE when
 * idle is true. */
static void
run_job(struct attach_job *j, bool idle)
{
  uint64_t t0 = now_us();

  j->r = overlay_acquire(j->exp, j->id, j->boot_id, j->peer,
                         idle ? idle_around_files : NULL, &j->ovl, &j->why);
  if (j->r == 0) {
    pthread_mutex_lock(&j->ovl->lock);
    attach_stats_note(j->ovl, now_us() - t0);
    pthread_mutex_unlock(&j->ovl->lock);
  }
  if (j->r == -EAGAIN)
    log_debug("client %s of %s: its overlay is being closed: it waits "
              "for that",
              j->id, j->exp->name);
}

static void *
attach_main(void *arg)
{
  uint64_t empty_since = 0;
  unsigned long closes_seen;

  (void)arg;
  idle_thread_is_me();
  pthread_mutex_lock(&queue_lock);
  for (;;) {
    struct attach_job *j = queue_head;
    bool cancelled, idle;
    uint64_t until;

    if (!j) {
      uint64_t stats_until;

      if (thread_stop)
        break;
      until = idle_calm_until(&empty_since);
      stats_until = attach_stats_due();
      if (stats_until && (!until || stats_until < until))
        until = stats_until;
      if (until) {
        /* Woken early by a job, or at the end of the calm. */
        idle_wait_until(&queue_cond, &queue_lock, until);
        continue;
      }
      pthread_cond_wait(&queue_cond, &queue_lock);
      continue;
    }
    empty_since = 0;
    queue_head = j->next;
    if (!queue_head)
      queue_tail = &queue_head;
    cancelled = __atomic_load_n(&j->cancelled, __ATOMIC_ACQUIRE);
    current = j;
    closes_seen = closes;
    pthread_mutex_unlock(&queue_lock);
    idle = idle_job_begin(cancelled);
    if (cancelled) {
      j->r = -ECANCELED;
      j->why = "connection closed";
    } else {
      run_job(j, idle);
    }
    idle_job_end();
    pthread_mutex_lock(&queue_lock);
    current = NULL;
    if (j->r == -EAGAIN) {
      defer(j, closes_seen);
      continue;
    }
    pthread_mutex_unlock(&queue_lock);
    deliver(j);
    pthread_mutex_lock(&queue_lock);
  }
  pthread_mutex_unlock(&queue_lock);
  return NULL;
}

int
attach_thread_start(void)
{
  sigset_t all, old;
  int r;

  thread_stop = false;
  idle_init_cond(&queue_cond);
  started = true;
  /* Like the workers, they take no signals (nor do idle.c's). */
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, &old);
  idle_start();
  r = pthread_create(&thread, NULL, attach_main, NULL);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  if (r) {
    attach_thread_stop();
    return -r;
  }
  pthread_setname_np(thread, "nbdsrv-attach");
  thread_running = true;
  return 0;
}

void
attach_thread_stop(void)
{
  if (!started)
    return;
  pthread_mutex_lock(&queue_lock);
  thread_stop = true;
  pthread_cond_signal(&queue_cond);
  pthread_mutex_unlock(&queue_lock);
  if (thread_running)
    pthread_join(thread, NULL);
  idle_stop();
  pthread_cond_destroy(&queue_cond);
  started = thread_running = false;
}

static void
set_overlay(struct conn *c, struct overlay *ovl)
{
  /* Under conns_lock: nbdsrv ctl reads c->ovl of other threads'
   * connections. */
  pthread_mutex_lock(&c->w->conns_lock);
  c->ovl = ovl;
  pthread_mutex_unlock(&c->w->conns_lock);
}

int
attach_begin(struct conn *c, const struct export *exp, const struct export_request *req,
             const char **why)
{
  struct overlay *ovl;
  struct attach_job *j;

  if (overlay_lookup(exp, req->id, req->boot_id, c->peer, &ovl) == 0) {
    set_overlay(c, ovl);
    return 0;
  }
  j = calloc(1, sizeof *j);
  if (!j) {
    *why = "out of memory";
    return -ENOMEM;
  }
  j->c = c;
  j->w = c->w;
  j->exp = exp;
  snprintf(j->id, sizeof j->id, "%s", req->id);
  snprintf(j->boot_id, sizeof j->boot_id, "%s", req->boot_id);
  snprintf(j->peer, sizeof j->peer, "%s", c->peer);
  c->attach_job = j;
  c->w->attaching++;
  pthread_mutex_lock(&queue_lock);
  *queue_tail = j;
  queue_tail = &j->next;
  pthread_cond_signal(&queue_cond);
  pthread_mutex_unlock(&queue_lock);
  return 1;
}

static bool
job_is(const struct attach_job *j, const struct export *exp, const char *id)
{
  return !strcmp(j->exp->name, exp->name) && !strcmp(j->id, id);
}

bool
attach_waiting(const struct export *exp, const char *id)
{
  bool found;

  pthread_mutex_lock(&queue_lock);
  found = current && job_is(current, exp, id);
  for (const struct attach_job *j = queue_head; j && !found; j = j->next)
    found = job_is(j, exp, id);
  for (const struct attach_job *j = deferred; j && !found; j = j->next)
    found = job_is(j, exp, id);
  pthread_mutex_unlock(&queue_lock);
  return found;
}

void
attach_cancel(struct conn *c)
{
  if (c->attach_job)
    __atomic_store_n(&c->attach_job->cancelled, true, __ATOMIC_RELEASE);
}

void
attach_collect(struct worker *w, attach_done_fn *done)
{
  struct attach_job *j, *next;

  j = __atomic_exchange_n(&w->attached, NULL, __ATOMIC_ACQUIRE);
  for (; j; j = next) {
    next = j->next;
    w->attaching--;
    /* Also when the connection closed meanwhile: the overlay goes with
     * the connection. */
    if (j->ovl)
      set_overlay(j->c, j->ovl);
    done(j->c, j, j->id, j->r, j->why);
    free(j);
  }
}
