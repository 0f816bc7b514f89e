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
 * directory anyway, and the thread only does file system calls.
 */
#include <config.h>

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "nbdsrv.h"

struct attach_job {
  struct attach_job *next;
  struct conn *c;                /* belongs to its worker: not touched here */
  struct worker *w;
  const struct export *exp;
  char id[CLIENT_ID_MAX + 1];
  char boot_id[BOOT_ID_MAX + 1];
  bool cancelled;                /* the connection closed: skip the work */
  /* the result */
  struct overlay *ovl;
  int r;
  const char *why;
};

static pthread_mutex_t queue_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t queue_cond = PTHREAD_COND_INITIALIZER;
static struct attach_job *queue_head, **queue_tail = &queue_head;
static bool thread_running, thread_stop;
static pthread_t thread;
/* The job being worked on (queue_lock): until its overlay is in the
 * registry, only this says that its client is back. */
static struct attach_job *current;

/* Hands a finished job back to its worker. */
static void
deliver(struct attach_job *j)
{
  struct worker *w = j->w;
  uint64_t one = 1;

  pthread_mutex_lock(&w->mbox_lock);
  j->next = w->attached;
  w->attached = j;
  pthread_mutex_unlock(&w->mbox_lock);
  if (write(w->wake_fd, &one, sizeof one) < 0)
    log_err("cannot wake worker %u: %s", w->id, strerror(errno));
}

static void *
attach_main(void *arg)
{
  (void)arg;
  pthread_mutex_lock(&queue_lock);
  for (;;) {
    struct attach_job *j = queue_head;

    if (!j) {
      if (thread_stop)
        break;
      pthread_cond_wait(&queue_cond, &queue_lock);
      continue;
    }
    queue_head = j->next;
    if (!queue_head)
      queue_tail = &queue_head;
    current = j;
    pthread_mutex_unlock(&queue_lock);
    if (__atomic_load_n(&j->cancelled, __ATOMIC_ACQUIRE)) {
      j->r = -ECANCELED;
      j->why = "connection closed";
    } else {
      j->r = overlay_acquire(j->exp, j->id, j->boot_id, &j->ovl, &j->why);
    }
    pthread_mutex_lock(&queue_lock);
    current = NULL;
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
  /* Like the workers, it takes no signals. */
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, &old);
  r = pthread_create(&thread, NULL, attach_main, NULL);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  if (r)
    return -r;
  thread_running = true;
  return 0;
}

void
attach_thread_stop(void)
{
  if (!thread_running)
    return;
  pthread_mutex_lock(&queue_lock);
  thread_stop = true;
  pthread_cond_signal(&queue_cond);
  pthread_mutex_unlock(&queue_lock);
  pthread_join(thread, NULL);
  thread_running = false;
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

/* The connection has its overlay (or an error): the handshake goes on. */
static void
attached(struct conn *c, struct overlay *ovl, int r, const char *why)
{
  if (ovl)
    set_overlay(c, ovl);
  handshake_attached(c, r, why);
}

void
attach_begin(struct conn *c, const struct export *exp,
             const struct export_request *req)
{
  struct overlay *ovl;
  struct attach_job *j;

  c->in = IN_ATTACHING;
  if (overlay_lookup(exp, req->id, req->boot_id, &ovl) == 0) {
    attached(c, ovl, 0, NULL);
    return;
  }
  j = calloc(1, sizeof *j);
  if (!j) {
    attached(c, NULL, -ENOMEM, "out of memory");
    return;
  }
  j->c = c;
  j->w = c->w;
  j->exp = exp;
  snprintf(j->id, sizeof j->id, "%s", req->id);
  snprintf(j->boot_id, sizeof j->boot_id, "%s", req->boot_id);
  c->attach_job = j;
  c->w->attaching++;
  pthread_mutex_lock(&queue_lock);
  *queue_tail = j;
  queue_tail = &j->next;
  pthread_cond_signal(&queue_cond);
  pthread_mutex_unlock(&queue_lock);
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
attach_collect(struct worker *w)
{
  struct attach_job *j, *next;

  pthread_mutex_lock(&w->mbox_lock);
  j = w->attached;
  w->attached = NULL;
  pthread_mutex_unlock(&w->mbox_lock);
  for (; j; j = next) {
    struct conn *c = j->c;

    next = j->next;
    w->attaching--;
    if (c->closing) {
      /* Gone while it waited: the overlay goes with the connection. */
      log_debug("%s: connection closed before its overlay was open", c->peer);
      if (j->ovl)
        set_overlay(c, j->ovl);
    } else {
      attached(c, j->ovl, j->r, j->why);
      /* What the client sent in the meantime. */
      if (!c->closing && c->stash) {
        log_debug("%s: %zu bytes came before the overlay was open", c->peer,
                  c->stash_len);
        conn_input_resume(c);
      }
    }
    /* Until here the job kept the connection from being freed.  The kept
     * bytes may have held another NBD_OPT_GO (after this one failed):
     * then its job holds the connection now. */
    if (c->attach_job == j)
      c->attach_job = NULL;
    free(j);
    if (c->closing && !c->attach_job)
      conn_close(c, NULL);
  }
}
