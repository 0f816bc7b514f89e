/* SPDX-License-Identifier: GPL-2.0-or-later */
/* nbdsrv: one server per overlay, when servers share the overlay dir.
 *
 * Several servers may keep their overlays on one distributed file system
 * (CephFS, NFSv4).  Two servers writing one client's overlay would each
 * append to its journal from their own idea of the map and destroy it, so
 * a server serves an overlay only while it holds a write lock on it, and
 * a client whose overlay another server holds is refused.
 *
 * The lock is an OFD lock (F_OFD_SETLK, F_WRLCK, the whole file) on a
 * file of its own, OVERLAY_DIR/EXPORT/ID.lock:
 *   - not on ID.map: the map is replaced by a rename when an overlay is
 *     created and each time its journal is compacted, and a lock on the
 *     old inode would not stop a server that opens the new one.  The lock
 *     file is never renamed nor removed (an empty file per client, also
 *     after a reset), so every server locks the same inode; removing it
 *     would let a server that opened it just before lock a file nobody
 *     else can find any more.
 *   - OFD, not classic fcntl locks: those belong to the process and go
 *     when it closes any descriptor of the file, and they do not conflict
 *     within one process.  OFD locks belong to the open file description,
 *     which the struct overlay owns.  CephFS (kernel client and ceph-fuse)
 *     and NFSv4 honour them across hosts (NFS as byte-range locks, where
 *     flock() is only emulated), and drop them when the holder dies:
 *     at once when the process dies, when the file system evicts the
 *     holder's session when its host dies (see nbdsrv(8)).
 *   - non-blocking: a client whose overlay is held elsewhere is refused
 *     at once (and comes back, or goes to the server that has it), never
 *     queued behind a lock that may be held for days.
 *
 * The lock is taken before any file of the overlay is opened (opening
 * replays the journal and may cut off a torn tail: a write) and dropped
 * after they are synced and closed, in overlay_free().  All connections
 * of a client share their struct overlay, and so the lock.
 *
 * A dead holder.  On CephFS a host that died keeps the capabilities of
 * the files it had open until the MDS evicts it, and even a stat of
 * them waits for that (a minute or more): in the attach thread, that
 * would hold up every other client of this server, in the very storm of
 * reconnections a dead server causes.  So on anything but a local file
 * system, before the attach thread touches an overlay's files,
 * overlay_lock_probe() stats them in a helper thread and waits
 * PROBE_PATIENCE_MS for it (a live holder answers in milliseconds, a
 * loaded one in a second or two); past that, the client is refused
 * ("do not answer") and the helper is left to finish on its own, one per
 * overlay (its client is refused at once until it finished), at most
 * PROBE_STUCK_MAX.  Each client of a dead host still costs the attach
 * thread one such wait, and a holder that dies between the probe and the
 * open stalls it until the eviction: the probe bounds the common case,
 * it is no substitute for fencing (fence.c).
 */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"
#include "nbdsrv.h"
#include "util.h"

#define PROBE_PATIENCE_MS 5000
#define PROBE_STUCK_MAX 64

/* One probe by a helper thread (probe_mutex guards done and abandoned). */
struct probe {
  struct probe *next; /* in stuck, once abandoned */
  char prefix[PATH_MAX];
  bool done, abandoned;
};

static pthread_mutex_t probe_mutex = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t probe_cond; /* on CLOCK_MONOTONIC */
static pthread_once_t probe_once = PTHREAD_ONCE_INIT;
static struct probe *stuck; /* probes nobody waits for any more */
static unsigned nstuck;
static bool dir_is_local;

static void
probe_init(void)
{
  pthread_condattr_t ca;
  struct statfs st;

  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&probe_cond, &ca);
  pthread_condattr_destroy(&ca);
  /* ext4, XFS, btrfs, tmpfs: no other host holds anything there. */
  dir_is_local = statfs(config.overlay_dir, &st) == 0 &&
                 (st.f_type == 0xEF53 || st.f_type == 0x58465342 ||
                  st.f_type == 0x9123683E || st.f_type == 0x01021994);
}

/* The calls that wait for a dead holder: the lookups of the files. */
static void
probe_files(const char *prefix)
{
  static const char *const suffixes[] = { ".lock", ".map", ".data" };
  char path[PATH_MAX];
  struct stat st;

  for (size_t i = 0; i < sizeof suffixes / sizeof suffixes[0]; i++)
    if (format_path(path, sizeof path, "%s%s", prefix, suffixes[i]) == 0)
      (void)stat(path, &st);
}

static void *
probe_main(void *arg)
{
  struct probe *t = arg;
  bool abandoned;

  probe_files(t->prefix);
  pthread_mutex_lock(&probe_mutex);
  t->done = true;
  abandoned = t->abandoned;
  if (abandoned) {
    struct probe **pp = &stuck;
    while (*pp != t)
      pp = &(*pp)->next;
    *pp = t->next;
    nstuck--;
  }
  pthread_cond_broadcast(&probe_cond);
  pthread_mutex_unlock(&probe_mutex);
  if (abandoned) {
    log_info("overlay %s: its files answer again; its client may connect", t->prefix);
    free(t);
  }
  return NULL;
}

/* Under probe_mutex: whether a probe of prefix is still out. */
static bool
is_stuck(const char *prefix)
{
  for (const struct probe *t = stuck; t; t = t->next)
    if (!strcmp(t->prefix, prefix))
      return true;
  return false;
}

/* Under probe_mutex: waits for t until PROBE_PATIENCE_MS from now. */
static void
wait_probe(struct probe *t)
{
  uint64_t deadline = now_ms() + PROBE_PATIENCE_MS;
  struct timespec ts = {
    .tv_sec = (time_t)(deadline / 1000),
    .tv_nsec = (long)(deadline % 1000) * 1000000,
  };

  while (!t->done && pthread_cond_timedwait(&probe_cond, &probe_mutex, &ts) == 0)
    ;
}

int
overlay_lock_probe(const char *prefix, const char **why)
{
  static const char no_answer[] =
      "the overlay's files do not answer: the server that had it may be dead (nbdsrv ctl fence)";
  pthread_attr_t at;
  struct probe *t;
  pthread_t th;
  int r;

  pthread_once(&probe_once, probe_init);
  if (dir_is_local)
    return 0;
  pthread_mutex_lock(&probe_mutex);
  r = is_stuck(prefix) || nstuck >= PROBE_STUCK_MAX ? -ETIMEDOUT : 0;
  pthread_mutex_unlock(&probe_mutex);
  if (r < 0) {
    *why = no_answer;
    return r;
  }
  t = calloc(1, sizeof *t);
  if (!t)
    return 0; /* then the open finds out */
  snprintf(t->prefix, sizeof t->prefix, "%s", prefix);
  pthread_attr_init(&at);
  pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
  r = pthread_create(&th, &at, probe_main, t);
  pthread_attr_destroy(&at);
  if (r) {
    free(t);
    return 0;
  }
  pthread_mutex_lock(&probe_mutex);
  wait_probe(t);
  if (t->done) {
    pthread_mutex_unlock(&probe_mutex);
    free(t);
    return 0;
  }
  t->abandoned = true;
  t->next = stuck;
  stuck = t;
  nstuck++;
  pthread_mutex_unlock(&probe_mutex);
  log_warn("overlay %s: its files do not answer in %d ms: the server that "
           "had it may be dead (nbdsrv ctl fence); its client is refused "
           "until they do",
           prefix, PROBE_PATIENCE_MS);
  *why = no_answer;
  return -ETIMEDOUT;
}

int
overlay_lock_take(const char *prefix, int *fdp, const char **why)
{
  char path[PATH_MAX];
  struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET };
  int fd, r;

  r = format_path(path, sizeof path, "%s.lock", prefix);
  if (r < 0) {
    *why = "overlay path too long";
    return r;
  }
  /* O_CREAT only when it is missing: on CephFS a create takes locks on
   * the directory, which a dead host's capabilities hold until it is
   * evicted. */
  fd = open(path, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0 && errno == ENOENT)
    fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) {
    r = -errno;
    *why = "the overlay's lock file cannot be opened (see the server log)";
    log_err("overlay %s: lock file %s: %s", prefix, path, strerror(-r));
    return r;
  }
  if (fcntl(fd, F_OFD_SETLK, &fl) < 0) {
    r = -errno;
    close(fd);
    if (r == -EAGAIN || r == -EACCES) {
      *why = "the overlay is served by another server";
      return -EBUSY;
    }
    *why = "the overlay cannot be locked (see the server log)";
    log_err("overlay %s: cannot lock %s: %s (the overlay dir needs a file "
            "system with OFD locks)",
            prefix, path, strerror(-r));
    return r;
  }
  *fdp = fd;
  return 0;
}

void
overlay_lock_drop(int *fdp)
{
  /* Closing the last descriptor of the open file description drops the
   * lock: the files were synced and closed before. */
  if (*fdp >= 0)
    close(*fdp);
  *fdp = -1;
}
