/* SPDX-License-Identifier: GPL-2.0-or-later */
/* nbdsrv: the attach thread's scheduling: SCHED_IDLE, and its watcher.
 *
 * Design notes
 * ------------
 * The attach thread (attach.c) opens overlays at SCHED_IDLE: clients
 * already attached come first.  At the same priority a worker woken by a
 * request waits for the attach thread's time slice to run out (a
 * millisecond or more: the scheduler lets a running task reach its fair
 * share before a woken one of equal weight preempts it), and in a boot
 * storm that is what the first read of the clients attached so far waits
 * for; nice values do not change that, SCHED_IDLE does (any other task
 * preempts it at once).
 *
 * Only the file system calls of opening or creating an overlay run at
 * SCHED_IDLE (idle_around_files): the rest takes queue_lock and
 * registry_lock, which the workers take too, and a thread at SCHED_IDLE
 * preempted while it holds one would keep them waiting for as long as
 * other tasks leave it no CPU.  (Around those file system calls it takes
 * the image table's, stderr's and malloc's locks now and then, for which
 * the watcher answers.)  A thread at SCHED_IDLE gets almost nothing of a
 * busy CPU, so when a job has run ATTACH_PATIENCE_MS at SCHED_IDLE and
 * the thread is runnable, not waiting for a disk, a watcher thread puts
 * it back on the normal policy (the attach thread cannot notice that
 * itself: it is the one not running), and the jobs after it run at the
 * normal policy too until the queue has stayed empty for ATTACH_CALM_MS.
 * Leaving SCHED_IDLE needs CAP_SYS_NICE or an RLIMIT_NICE that allows
 * nice 0 (the systemd unit sets LimitNICE=+0); without either the thread
 * never goes there.
 *
 * This file knows nothing of jobs or overlays: attach.c tells it when a
 * job begins and ends and when the queue is empty.  Its lock (idle_lock)
 * is never taken by a worker.
 *
 * Must never happen: the attach thread at SCHED_IDLE without a watcher
 * that can bring it back; the watcher logging while it holds idle_lock
 * (the starved thread may hold stderr's lock and need idle_lock).
 */
#include <config.h>

#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"
#include "nbdsrv.h"

#define ATTACH_PATIENCE_MS 20
/* Jobs at SCHED_IDLE again only once the queue has stayed empty this
 * long: in a storm that starves them, the queue runs empty between
 * arrivals, and each stall would cost the next client ATTACH_PATIENCE_MS
 * again. */
#define ATTACH_CALM_MS 200

static pthread_mutex_t idle_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t watch_cond; /* on CLOCK_MONOTONIC */
static pthread_t watcher;
static bool watcher_running, watcher_stop;
/* Under idle_lock: whether jobs may run at SCHED_IDLE; whether the
 * watcher found one starved, so that the next ones run at the normal
 * policy; whether the current job runs at SCHED_IDLE, when the thread
 * took it up and when the watcher last looked at it (0: not yet); the
 * attach thread, as the kernel and pthreads know it. */
static bool may_idle, boosted, current_idle;
static uint64_t current_since_ms, current_checked_ms;
static pid_t thread_tid;
static pthread_t thread_self;

void
idle_wait_until(pthread_cond_t *cond, pthread_mutex_t *lock, uint64_t ms)
{
  struct timespec ts = {
    .tv_sec = (time_t)(ms / 1000),
    .tv_nsec = (long)(ms % 1000) * 1000000,
  };

  pthread_cond_timedwait(cond, lock, &ts);
}

void
idle_init_cond(pthread_cond_t *cond)
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

/* Under idle_lock: the current job has run ATTACH_PATIENCE_MS at
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
    /* idle_start checked that it can; should it fail anyway, stop
     * trying rather than spin. */
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
  pthread_mutex_lock(&idle_lock);
  while (!watcher_stop) {
    uint64_t now = now_ms(), since, due;

    if (!current_idle) {
      pthread_cond_wait(&watch_cond, &idle_lock);
      continue;
    }
    since = current_since_ms;
    due = (current_checked_ms ? current_checked_ms : since) + ATTACH_PATIENCE_MS;
    if (now < due) {
      idle_wait_until(&watch_cond, &idle_lock, due);
      continue;
    }
    current_checked_ms = now;
    if (thread_runnable(thread_tid) && boost_starved_attach()) {
      /* Logged without idle_lock: the starved thread may hold stderr's
       * lock, and it needs idle_lock to finish its job. */
      pthread_mutex_unlock(&idle_lock);
      log_debug("attach thread: no progress for %llu ms at SCHED_IDLE: "
                "normal scheduling until the queue stays empty",
                (unsigned long long)(now - since));
      pthread_mutex_lock(&idle_lock);
    }
  }
  pthread_mutex_unlock(&idle_lock);
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

void
idle_start(void)
{
  watcher_stop = false;
  boosted = false;
  idle_init_cond(&watch_cond);
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
}

void
idle_stop(void)
{
  pthread_mutex_lock(&idle_lock);
  watcher_stop = true;
  pthread_cond_signal(&watch_cond);
  pthread_mutex_unlock(&idle_lock);
  if (watcher_running)
    pthread_join(watcher, NULL);
  pthread_cond_destroy(&watch_cond);
  watcher_running = false;
}

void
idle_thread_is_me(void)
{
  pthread_mutex_lock(&idle_lock);
  thread_tid = gettid();
  thread_self = pthread_self();
  pthread_mutex_unlock(&idle_lock);
}

bool
idle_job_begin(bool cancelled)
{
  bool idle;

  pthread_mutex_lock(&idle_lock);
  current_since_ms = now_ms();
  current_checked_ms = 0;
  idle = current_idle = may_idle && !boosted && !cancelled;
  if (idle)
    pthread_cond_signal(&watch_cond);
  pthread_mutex_unlock(&idle_lock);
  return idle;
}

void
idle_job_end(void)
{
  pthread_mutex_lock(&idle_lock);
  current_idle = false;
  pthread_mutex_unlock(&idle_lock);
}

uint64_t
idle_calm_until(uint64_t *empty_since)
{
  uint64_t now, until = 0;
  bool calm = false;

  pthread_mutex_lock(&idle_lock);
  if (boosted) {
    now = now_ms();
    if (!*empty_since)
      *empty_since = now;
    if (now - *empty_since < ATTACH_CALM_MS)
      until = *empty_since + ATTACH_CALM_MS;
    else
      boosted = false;
    calm = !until;
  }
  pthread_mutex_unlock(&idle_lock);
  if (calm)
    log_debug("attach thread: queue empty: overlays opened at SCHED_IDLE again");
  return until;
}

void
idle_around_files(bool before)
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
    pthread_mutex_lock(&idle_lock);
    may_idle = false;
    pthread_mutex_unlock(&idle_lock);
  }
}
