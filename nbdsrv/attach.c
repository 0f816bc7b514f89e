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
 * The thread opens overlays at SCHED_IDLE: clients already attached
 * come first.  At the same priority a worker woken by a request waits for
 * the attach thread's time slice to run out (a millisecond or more: the
 * scheduler lets a running task reach its fair share before a woken one
 * of equal weight preempts it), and in a boot storm that is what the
 * first read of the clients attached so far waits for; nice values do not
 * change that, SCHED_IDLE does (any other task preempts it at once).
 * Only the file system calls of opening or creating an overlay run at
 * SCHED_IDLE: the rest takes queue_lock and registry_lock, which the
 * workers take too, and a thread at SCHED_IDLE preempted while it holds
 * one would keep them waiting for as long as other tasks leave it no
 * CPU.  (Around those file system calls it takes the image table's,
 * stderr's and malloc's locks now and then, for which the watcher below
 * answers.)  A thread at SCHED_IDLE gets almost nothing of a busy
 * CPU, so when a job has run ATTACH_PATIENCE_MS at SCHED_IDLE and the
 * thread is runnable, not waiting for a disk, a watcher thread puts it
 * back on the normal policy (the attach thread cannot notice that itself:
 * it is the one not running), and the jobs after it run at the normal
 * policy too until the queue has stayed empty for ATTACH_CALM_MS.
 * Leaving SCHED_IDLE needs CAP_SYS_NICE or an RLIMIT_NICE that allows
 * nice 0 (the systemd unit sets LimitNICE=+0); without either the thread
 * never goes there.
 */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
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
static pthread_cond_t queue_cond;   /* on CLOCK_MONOTONIC */
static struct attach_job *queue_head, **queue_tail = &queue_head;
static bool started, thread_running, thread_stop;
static pthread_t thread;
/* The watcher: puts the attach thread back on the normal policy when it
 * is starved (see the top of the file). */
static pthread_cond_t watch_cond;   /* on CLOCK_MONOTONIC */
static pthread_t watcher;
static bool watcher_running;
/* The job being worked on (queue_lock): until its overlay is in the
 * registry, only this says that its client is back. */
static struct attach_job *current;
/* Jobs whose overlay the janitor was closing (queue_lock): they go back
 * in the queue once it closed one (attach_overlay_closed; closes counts
 * those calls, so that one coming while a job is being turned away is
 * not missed). */
static struct attach_job *deferred, **deferred_tail = &deferred;
static unsigned long closes;
/* Scheduling (queue_lock): whether jobs may run at SCHED_IDLE; whether
 * the watcher found one starved, so that the next ones run at the normal
 * policy; whether the current job runs at SCHED_IDLE, when the thread
 * took it up and when the watcher last looked at it (0: not yet); the
 * attach thread, as the kernel and pthreads know it. */
static bool may_idle, boosted, current_idle;
static uint64_t current_since_ms, current_checked_ms;
static pid_t thread_tid;
static pthread_t thread_self;

#define ATTACH_PATIENCE_MS 20
/* Jobs at SCHED_IDLE again only once the queue has stayed empty this
 * long: in a storm that starves them, the queue runs empty between
 * arrivals, and each stall would cost the next client ATTACH_PATIENCE_MS
 * again. */
#define ATTACH_CALM_MS 200

/* Waits on cond (queue_lock held) until CLOCK_MONOTONIC reaches ms. */
static void
wait_until(pthread_cond_t *cond, uint64_t ms)
{
  struct timespec ts = {
    .tv_sec = (time_t)(ms / 1000),
    .tv_nsec = (long)(ms % 1000) * 1000000,
  };

  pthread_cond_timedwait(cond, &queue_lock, &ts);
}

static void
init_monotonic_cond(pthread_cond_t *cond)
{
  pthread_condattr_t ca;

  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(cond, &ca);
  pthread_condattr_destroy(&ca);
}

static int
set_policy(pthread_t t, int policy)
{
  struct sched_param sp = { .sched_priority = 0 };

  return pthread_setschedparam(t, policy, &sp);
}

/* Whether thread tid of this process is runnable: starved, if it does
 * not run, rather than waiting (for a disk, say), when its policy does
 * not matter. */
static bool
thread_runnable(pid_t tid)
{
  char path[64], buf[512], *p;
  ssize_t n;
  int fd;

  snprintf(path, sizeof path, "/proc/self/task/%d/stat", (int)tid);
  fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return true;
  n = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (n <= 0)
    return true;
  buf[n] = '\0';
  /* "tid (comm) S ...": the state follows the last parenthesis. */
  p = strrchr(buf, ')');
  return !p || p[1] != ' ' || p[2] == 'R';
}

/* Under queue_lock: the current job has run ATTACH_PATIENCE_MS at
 * SCHED_IDLE with the attach thread runnable.  Whether this is the first
 * time since the jobs last ran at SCHED_IDLE (then the caller logs). */
static bool
boost_starved_attach(void)
{
  bool first = !boosted;
  int r;

  /* Again every ATTACH_PATIENCE_MS while the job lasts: the thread may
   * have been preempted between deciding to run the job at SCHED_IDLE
   * and switching, and switch after this. */
  r = set_policy(thread_self, SCHED_OTHER);
  if (r) {
    /* attach_thread_start checked that it can; should it fail anyway,
     * stop trying rather than spin. */
    log_err("attach thread: cannot leave SCHED_IDLE: %s", strerror(r));
    may_idle = false;
  }
  boosted = true;
  return first;
}

static void *
watch_main(void *arg)
{
  (void)arg;
  pthread_mutex_lock(&queue_lock);
  while (!thread_stop) {
    uint64_t now = now_ms(), since, due;

    if (!current || !current_idle) {
      pthread_cond_wait(&watch_cond, &queue_lock);
      continue;
    }
    since = current_since_ms;
    due = (current_checked_ms ? current_checked_ms : since) + ATTACH_PATIENCE_MS;
    if (now < due) {
      wait_until(&watch_cond, due);
      continue;
    }
    current_checked_ms = now;
    if (thread_runnable(thread_tid) && boost_starved_attach()) {
      /* Logged without queue_lock: the starved thread may hold stderr's
       * lock, and it needs queue_lock to finish its job. */
      pthread_mutex_unlock(&queue_lock);
      log_debug("attach thread: no progress for %llu ms at SCHED_IDLE: "
                "normal scheduling until the queue stays empty",
                (unsigned long long)(now - since));
      pthread_mutex_lock(&queue_lock);
    }
  }
  pthread_mutex_unlock(&queue_lock);
  return NULL;
}

static void *
probe_main(void *arg)
{
  bool *ok = arg;

  *ok = set_policy(pthread_self(), SCHED_IDLE) == 0 &&
        set_policy(pthread_self(), SCHED_OTHER) == 0;
  return NULL;
}

/* Whether a thread of this process can leave SCHED_IDLE: tried on a
 * thread of its own, which is then gone. */
static bool
can_leave_idle(void)
{
  pthread_t t;
  bool ok = false;

  if (pthread_create(&t, NULL, probe_main, &ok) != 0)
    return false;
  pthread_join(t, NULL);
  return ok;
}

/* Hands a finished job back to its worker. */
static void
deliver(struct attach_job *j)
{
  struct worker *w = j->w;
  uint64_t one = 1;

  /* A lock-free push: at SCHED_IDLE this thread must not hold a lock the
   * worker takes. */
  j->next = __atomic_load_n(&w->attached, __ATOMIC_RELAXED);
  while (!__atomic_compare_exchange_n(&w->attached, &j->next, j, true,
                                      __ATOMIC_RELEASE, __ATOMIC_RELAXED))
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

/* overlay_acquire()'s hook around the file system calls of opening an
 * overlay: those, and only those, run at SCHED_IDLE. */
static void
files_at_idle(bool before)
{
  int r;

  if (before) {
    set_policy(pthread_self(), SCHED_IDLE);
    return;
  }
  r = set_policy(pthread_self(), SCHED_OTHER);
  if (r) {
    /* The start-up probe said it can.  Should it fail anyway, leave the
     * thread to the watcher (which can switch it back) and stop going to
     * SCHED_IDLE. */
    log_err("attach thread: cannot leave SCHED_IDLE: %s", strerror(r));
    pthread_mutex_lock(&queue_lock);
    may_idle = false;
    pthread_mutex_unlock(&queue_lock);
  }
}

/* Runs j's overlay_acquire(), its file system calls at SCHED_IDLE when
 * idle is true. */
static void
run_job(struct attach_job *j, bool idle)
{
  j->r = overlay_acquire(j->exp, j->id, j->boot_id, idle ? files_at_idle : NULL,
                         &j->ovl, &j->why);
  if (j->r == -EAGAIN)
    log_debug("client %s of %s: its overlay is being closed: it waits "
              "for that", j->id, j->exp->name);
}

static void *
attach_main(void *arg)
{
  uint64_t empty_since = 0;
  unsigned long closes_seen;

  (void)arg;
  pthread_mutex_lock(&queue_lock);
  thread_tid = gettid();
  thread_self = pthread_self();
  for (;;) {
    struct attach_job *j = queue_head;
    bool cancelled, idle;

    if (!j) {
      if (thread_stop)
        break;
      if (boosted) {
        uint64_t now = now_ms();
        if (!empty_since)
          empty_since = now;
        if (now - empty_since < ATTACH_CALM_MS) {
          wait_until(&queue_cond, empty_since + ATTACH_CALM_MS);
          continue;
        }
        boosted = false;
        log_debug("attach thread: queue empty: overlays opened at "
                  "SCHED_IDLE again");
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
    current_since_ms = now_ms();
    current_checked_ms = 0;
    idle = current_idle = may_idle && !boosted && !cancelled;
    if (idle)
      pthread_cond_signal(&watch_cond);
    closes_seen = closes;
    pthread_mutex_unlock(&queue_lock);
    if (cancelled) {
      j->r = -ECANCELED;
      j->why = "connection closed";
    } else {
      run_job(j, idle);
    }
    pthread_mutex_lock(&queue_lock);
    current = NULL;
    current_idle = false;
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
  boosted = false;
  init_monotonic_cond(&queue_cond);
  init_monotonic_cond(&watch_cond);
  started = true;
  /* Like the workers, they take no signals (nor does the probe). */
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, &old);
  may_idle = can_leave_idle();
  if (!may_idle)
    log_info("attach thread: no CAP_SYS_NICE and RLIMIT_NICE below nice 0: "
             "opening overlays competes with serving requests");
  /* The watcher first: without it the attach thread must not idle. */
  if (may_idle && pthread_create(&watcher, NULL, watch_main, NULL) == 0) {
    pthread_setname_np(watcher, "nbdsrv-attach-w");
    watcher_running = true;
  }
  may_idle = watcher_running;
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
  pthread_cond_signal(&watch_cond);
  pthread_mutex_unlock(&queue_lock);
  if (thread_running)
    pthread_join(thread, NULL);
  if (watcher_running)
    pthread_join(watcher, NULL);
  pthread_cond_destroy(&queue_cond);
  pthread_cond_destroy(&watch_cond);
  started = thread_running = watcher_running = false;
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
attach_begin(struct conn *c, const struct export *exp,
             const struct export_request *req, const char **why)
{
  struct overlay *ovl;
  struct attach_job *j;

  if (overlay_lookup(exp, req->id, req->boot_id, &ovl) == 0) {
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
