/* SPDX-License-Identifier: GPL-2.0-or-later */
/* nbdsrv: the io_uring event loop of one worker thread.
 *
 * Design notes
 * ------------
 * Each worker thread owns one ring (SINGLE_ISSUER | DEFER_TASKRUN when the
 * kernel has them, a large CQ) and the connections it accepted; a
 * connection never moves, so nothing in here needs a lock.  Workers share
 * the listening sockets, each with its own multishot accept.
 *
 * Sockets are installed in the ring's registered file table at the
 * connection's slot index.  Input arrives through a multishot recv that
 * picks buffers from the worker's provided-buffer ring (conn.c arms it,
 * input.c cuts the bytes into protocol units); output is a queue per
 * connection (output.c).  Connections are dealt out to the workers in
 * turn, and set up and freed by conn.c.  After every event of a
 * connection (a completion, a wake, a kick, a tick) the loop calls
 * conn_settle() on it (settle()): only there does a connection end and
 * go, and there a connection paused over its memory budget goes on.
 *
 * user_data (nbdsrv.h): connection operations carry a slot and a
 * generation, so a completion for a slot that was since reused is
 * recognised and ignored.  A worker exits only when no operation is in
 * flight, so no completion can ever name freed memory.
 */
#include <config.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include "log.h"
#include "nbdsrv.h"
#include "util.h"
#include "vec.h"

#define RING_ENTRIES 1024
#define CQ_ENTRIES 16384
#define SLOTS_PER_WORKER 8192
#define RECV_BUFS 128 /* power of two */
#define RECV_BUF_SIZE (32u << 10)

static struct worker *workers;
static unsigned nworkers;
static const int *listen_fds;
static unsigned nlisten_fds;

/* ---- accept ---- */

static unsigned next_worker; /* whose turn it is to get a connection */

static void
arm_accept(struct worker *w)
{
  for (unsigned i = 0; i < nlisten_fds; i++) {
    struct io_uring_sqe *sqe = loop_get_sqe(w);
    /* Non-blocking sockets: io_uring polls them anyway, and the
     * splice(2) of large replies must never wait for a full socket. */
    io_uring_prep_multishot_accept(sqe, listen_fds[i], NULL, NULL,
                                   SOCK_CLOEXEC | SOCK_NONBLOCK);
    io_uring_sqe_set_data64(sqe, UD_ACCEPT | (uint64_t)i << 4);
  }
  w->accept_armed = true;
}

/* ---- a connection's events ---- */

/* After any event of c: input kept while it was paused is fed once c
 * takes it again, the recv is armed again unless c is still paused, and
 * conn_settle() ends or frees c as it must.  c may be gone after. */
static void
settle(struct conn *c)
{
  input_after_event(c);
  if (input_kept(c) && (!budget_full(c) || input_mid_unit(c)))
    conn_input_resume(c);
  conn_recv_more(c);
  conn_settle(c);
}

/* A new connection of this worker, on socket fd. */
static void
serve(struct worker *w, int fd)
{
  struct conn *c = conn_new(w, fd);

  if (!c)
    return;
  handshake_start(c);
  settle(c);
}

/* Gives a recv buffer back to the kernel. */
static void
recycle_buffer(struct worker *w, unsigned bid)
{
  io_uring_buf_ring_add(w->br, w->bufs + (size_t)bid * w->buf_size, w->buf_size, bid,
                        io_uring_buf_ring_mask(w->nbufs), 0);
  io_uring_buf_ring_advance(w->br, 1);
}

static void
recv_done(struct worker *w, struct conn *c, int res, unsigned flags)
{
  if (flags & IORING_CQE_F_BUFFER) {
    unsigned bid = flags >> IORING_CQE_BUFFER_SHIFT;
    char *buf = w->bufs + (size_t)bid * w->buf_size;

    if (res > 0) {
      KERNEL_WROTE(buf, res);
      conn_input(c, buf, res);
    }
    /* Hand the buffer straight back: we copied what we needed. */
    recycle_buffer(w, bid);
  }
  if (!(flags & IORING_CQE_F_MORE)) {
    c->recv_armed = false;
    c->recv_cancelling = false;
  }
  if (res == 0) {
    bool handshake =
        c->stage == CONN_FLAGS || c->stage == CONN_OPTIONS || c->stage == CONN_ATTACHING;
    conn_close(c, handshake ? "client went away during the handshake" : NULL);
    return;
  }
  if (res < 0 && res != -ENOBUFS && res != -ECANCELED) {
    conn_close(c, res == -ECONNRESET ? NULL : strerror(-res));
    return;
  }
  conn_recv_next(c);
}

/* The attach thread is done with c's job. */
static void
attach_done(struct conn *c, const struct attach_job *j, const char *id, int r,
            const char *why)
{
  if (c->stage == CONN_CLOSED) {
    log_debug("%s: connection closed before its overlay was open", c->peer);
  } else {
    handshake_attached(c, id, r, why);
    /* What the client sent in the meantime. */
    if (c->stage != CONN_CLOSED && c->in.stash) {
      log_debug("%s: %zu bytes came before the overlay was open", c->peer,
                c->in.stash_len);
      conn_input_resume(c);
    }
  }
  /* Until here the job kept the connection from being freed.  The kept
   * bytes may have held another NBD_OPT_GO (after this one failed): then
   * its job holds the connection now. */
  if (c->attach_job == j)
    c->attach_job = NULL;
  settle(c);
}

/* ---- accept ---- */

static void
accept_done(struct worker *w, int res, unsigned flags)
{
  struct worker *to;
  uint64_t one = 1;

  if (!(flags & IORING_CQE_F_MORE))
    w->accept_armed = false;
  if (res < 0) {
    if (res != -ECANCELED)
      log_warn("accept: %s", strerror(-res));
    if (!w->accept_armed && !w->stopping && res != -ECANCELED)
      arm_accept(w);
    return;
  }
  if (!w->accept_armed && !w->stopping)
    arm_accept(w);
  /* Every worker waits in accept on the same sockets, but the kernel
   * wakes the same one each time: left alone, one thread would serve
   * every client.  Connections are dealt out in turn instead. */
  to = &workers[__atomic_fetch_add(&next_worker, 1, __ATOMIC_RELAXED) % nworkers];
  if (to == w || w->stopping) {
    serve(w, res);
    return;
  }
  pthread_mutex_lock(&to->mbox_lock);
  if (VEC_RESERVE(to->mbox, to->mbox_cap, to->mbox_n + 1) < 0) {
    pthread_mutex_unlock(&to->mbox_lock);
    serve(w, res); /* keep it here rather than lose it */
    return;
  }
  to->mbox[to->mbox_n++] = res;
  pthread_mutex_unlock(&to->mbox_lock);
  if (write(to->wake_fd, &one, sizeof one) < 0)
    log_err("cannot wake worker %u: %s", to->id, strerror(errno));
}

/* Takes the connections other workers accepted for this one. */
static void
adopt_connections(struct worker *w)
{
  int *v;
  unsigned n;

  pthread_mutex_lock(&w->mbox_lock);
  v = w->mbox;
  n = w->mbox_n;
  w->mbox = NULL;
  w->mbox_n = w->mbox_cap = 0;
  pthread_mutex_unlock(&w->mbox_lock);
  for (unsigned i = 0; i < n; i++)
    serve(w, v[i]);
  free(v);
}

/* ---- the once-a-second tick: handshake timeouts ---- */

static void
arm_tick(struct worker *w)
{
  struct io_uring_sqe *sqe = loop_get_sqe(w);

  w->tick_ts = (struct __kernel_timespec){ .tv_sec = 1 };
  io_uring_prep_timeout(sqe, &w->tick_ts, 0, 0);
  io_uring_sqe_set_data64(sqe, UD_TICK);
  w->tick_armed = true;
}

static void
tick_done(struct worker *w)
{
  time_t now = time(NULL);

  w->tick_armed = false;
  if (w->trace_len)
    trace_flush(w);
  if (w->stopping)
    return;
  for (unsigned i = 0; i < w->nslots && i <= w->max_slot; i++) {
    struct conn *c = w->conns[i];

    if (!c)
      continue;
    /* A client that connects and then says nothing, or dribbles its
     * options, must not hold a connection slot for ever.  Not while it
     * waits for its overlay: that wait is ours. */
    if (config.handshake_timeout &&
        (c->stage == CONN_FLAGS || c->stage == CONN_OPTIONS ||
         c->stage == CONN_ABORTING) &&
        now - c->connected >= (time_t)config.handshake_timeout)
      conn_close(c, "handshake timeout");
    /* A connection paused while the server was over its budget (others
     * held it) has no event of its own to go on with. */
    settle(c);
  }
  if (config.attach_timeout) {
    for (unsigned i = 0; i < w->nslots && i <= w->max_slot; i++) {
      struct conn *c = w->conns[i];
      if (c && c->stage == CONN_ATTACHING &&
          now - c->attach_since >= (time_t)config.attach_timeout) {
        handshake_attach_timeout(c);
        conn_settle(c);
      }
    }
  }
  arm_tick(w);
}

/* ---- shutdown ---- */

static void
arm_wake(struct worker *w)
{
  struct io_uring_sqe *sqe = loop_get_sqe(w);
  io_uring_prep_read(sqe, w->wake_fd, &w->wake_buf, sizeof w->wake_buf, 0);
  io_uring_sqe_set_data64(sqe, UD_WAKE);
}

static void
worker_begin_stop(struct worker *w)
{
  w->stopping = true;
  if (w->tick_armed) {
    struct io_uring_sqe *sqe = loop_get_sqe(w);
    io_uring_prep_timeout_remove(sqe, UD_TICK, 0);
    io_uring_sqe_set_data64(sqe, UD_CANCEL);
  }
  if (w->accept_armed) {
    for (unsigned i = 0; i < nlisten_fds; i++) {
      struct io_uring_sqe *sqe = loop_get_sqe(w);
      io_uring_prep_cancel64(sqe, UD_ACCEPT | (uint64_t)i << 4, 0);
      io_uring_sqe_set_data64(sqe, UD_CANCEL);
    }
  }
  for (unsigned i = 0; i < w->nslots; i++) {
    struct conn *c = w->conns[i];
    if (!c)
      continue;
    if ((c->stage == CONN_TRANSMISSION && !input_in_payload(c)) ||
        c->stage == CONN_DRAINING) {
      /* Finish what is in flight, then close (conn_settle). */
      conn_enter(c, CONN_DRAINING);
      conn_cancel_recv(c);
    } else {
      conn_close(c, NULL);
    }
    conn_settle(c);
  }
}

/* ---- the control socket's requests (ctl.c) ---- */

/* Closes the connections the control socket marked. */
static void
close_kicked(struct worker *w)
{
  bool pending;

  /* Most wakes hand over a connection; only a kick needs the scan. */
  pthread_mutex_lock(&w->conns_lock);
  pending = w->kick_pending;
  w->kick_pending = false;
  pthread_mutex_unlock(&w->conns_lock);
  if (!pending)
    return;
  for (unsigned i = 0; i < w->nslots && i <= w->max_slot; i++) {
    struct conn *c = w->conns[i];
    bool kick;

    if (!c)
      continue;
    pthread_mutex_lock(&w->conns_lock);
    kick = c->kick;
    c->kick = false;
    pthread_mutex_unlock(&w->conns_lock);
    if (kick) {
      conn_close(c, "kicked by the administrator (nbdsrv ctl kick)");
      settle(c);
    }
  }
}

int
workers_each_conn(int (*fn)(struct conn *c, void *arg), void *arg)
{
  uint64_t one = 1;

  for (unsigned i = 0; i < nworkers; i++) {
    struct worker *w = &workers[i];
    bool wake = false;
    int r = 0;

    pthread_mutex_lock(&w->conns_lock);
    for (unsigned j = 0; j < w->nslots && j <= w->max_slot && r >= 0; j++) {
      struct conn *c = w->conns[j];

      /* Only attached ones: a handshake has no identity yet.  The
       * overlay stays while the connection does (freeing it needs this
       * lock). */
      if (!c || !c->ovl || c->stage == CONN_CLOSED)
        continue;
      r = fn(c, arg);
      wake |= r > 0;
    }
    if (wake)
      w->kick_pending = true;
    pthread_mutex_unlock(&w->conns_lock);
    if (wake && write(w->wake_fd, &one, sizeof one) < 0)
      log_err("cannot wake worker %u: %s", i, strerror(errno));
    if (r < 0)
      return r;
  }
  return 0;
}

/* ---- the loop ---- */

static void
handle_cqe(struct worker *w, struct io_uring_cqe *cqe)
{
  uint64_t ud = cqe->user_data;
  enum ud_kind kind = ud & 15;
  struct conn *c;

  if (kind == UD_IO) {
    struct request *r = (struct request *)(uintptr_t)(ud & 0x0000fffffffffff0ull);
    w->ops_inflight--;
    c = r->c; /* r may be gone after, c stays until conn_settle */
    transmit_io_done(r, (unsigned)(ud >> 48), cqe->res);
    settle(c);
    return;
  }
  if (!(cqe->flags & IORING_CQE_F_MORE))
    w->ops_inflight--;
  switch (kind) {
    case UD_ACCEPT: accept_done(w, cqe->res, cqe->flags); return;
    case UD_WAKE:
      KERNEL_WROTE(&w->wake_buf, sizeof w->wake_buf);
      if (!w->stopping && __atomic_load_n(&w->stop_requested, __ATOMIC_ACQUIRE))
        worker_begin_stop(w);
      adopt_connections(w); /* when stopping, closes them */
      attach_collect(w, attach_done);
      close_kicked(w);
      /* A stopping worker listens only for the overlays it waits for. */
      if (!w->stopping || w->attaching)
        arm_wake(w);
      return;
    case UD_TICK: tick_done(w); return;
    case UD_CANCEL: return;
    case UD_RECV:
    case UD_SEND:
    case UD_POLL_OUT:
    case UD_STREAM_READ: {
      unsigned slot = (ud >> 4) & 0xfffffff;
      uint32_t gen = ud >> 32;
      c = slot < w->nslots ? w->conns[slot] : NULL;
      if (!c || c->gen != gen) {
        /* Stale: the connection is gone.  Return any buffer it picked. */
        if (cqe->flags & IORING_CQE_F_BUFFER)
          recycle_buffer(w, cqe->flags >> IORING_CQE_BUFFER_SHIFT);
        return;
      }
      if (kind == UD_RECV)
        recv_done(w, c, cqe->res, cqe->flags);
      else if (kind == UD_SEND)
        conn_send_done(c, cqe->res);
      else if (kind == UD_POLL_OUT)
        conn_poll_out_done(c, cqe->res);
      else
        conn_stream_read_done(c, cqe->res);
      settle(c);
      return;
    }
    default: log_err("unexpected completion 0x%llx", (unsigned long long)ud);
  }
}

static int
setup_ring(struct worker *w)
{
  struct io_uring_params p;
  int r;

  memset(&p, 0, sizeof p);
  p.flags = IORING_SETUP_CQSIZE | IORING_SETUP_SUBMIT_ALL | IORING_SETUP_SINGLE_ISSUER |
            IORING_SETUP_DEFER_TASKRUN;
  p.cq_entries = CQ_ENTRIES;
  r = io_uring_queue_init_params(RING_ENTRIES, &w->ring, &p);
  if (r == -EINVAL) {
    /* Kernels before 6.1 lack DEFER_TASKRUN (and 6.0 SINGLE_ISSUER). */
    if (w->id == 0)
      log_info(
          "io_uring: kernel lacks SINGLE_ISSUER/DEFER_TASKRUN; using plain completions");
    memset(&p, 0, sizeof p);
    p.flags = IORING_SETUP_CQSIZE;
    p.cq_entries = CQ_ENTRIES;
    r = io_uring_queue_init_params(RING_ENTRIES, &w->ring, &p);
  }
  if (r < 0) {
    log_err("io_uring setup failed: %s%s", strerror(-r),
            r == -EPERM ? " (is io_uring disabled by sysctl kernel.io_uring_disabled?)"
                        : "");
    return r;
  }

  struct io_uring_probe *probe = io_uring_get_probe_ring(&w->ring);
  static const struct {
    int op;
    const char *name;
  } need[] = {
    { IORING_OP_ACCEPT, "ACCEPT" },
    { IORING_OP_RECV, "RECV" },
    { IORING_OP_SENDMSG, "SENDMSG" },
    { IORING_OP_READ, "READ" },
    { IORING_OP_WRITE, "WRITE" },
    { IORING_OP_FSYNC, "FSYNC" },
    { IORING_OP_ASYNC_CANCEL, "ASYNC_CANCEL" },
  };
  for (size_t i = 0; probe && i < ARRAY_SIZE(need); i++)
    if (!io_uring_opcode_supported(probe, need[i].op)) {
      log_err("io_uring: kernel lacks IORING_OP_%s; nbdsrv needs Linux 6.0 or later",
              need[i].name);
      io_uring_free_probe(probe);
      return -ENOSYS;
    }
  if (probe)
    io_uring_free_probe(probe);
  w->can_splice = !config.no_splice && pagecache_supported();
  if (!w->can_splice && !config.no_splice && w->id == 0)
    log_info(
        "kernel lacks cachestat(2) (Linux 6.5): large reads are copied, not spliced");

  w->nslots = SLOTS_PER_WORKER;
  w->conns = calloc(w->nslots, sizeof *w->conns);
  if (!w->conns)
    return -ENOMEM;
  w->fixed_files = io_uring_register_files_sparse(&w->ring, w->nslots) == 0;
  if (!w->fixed_files && w->id == 0)
    log_info("io_uring: no sparse registered file table; using plain descriptors");

  /* Provided buffer ring for recv. */
  struct io_uring_buf_reg reg;
  size_t ring_bytes = RECV_BUFS * sizeof(struct io_uring_buf);
  w->nbufs = RECV_BUFS;
  w->buf_size = RECV_BUF_SIZE;
  w->br =
      mmap(NULL, ring_bytes, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
  if (w->br == MAP_FAILED)
    return -errno;
  memset(&reg, 0, sizeof reg);
  reg.ring_addr = (uintptr_t)w->br;
  reg.ring_entries = w->nbufs;
  reg.bgid = BUF_GROUP;
  r = io_uring_register_buf_ring(&w->ring, &reg, 0);
  if (r < 0) {
    log_err(
        "io_uring: cannot register a provided buffer ring (%s); nbdsrv needs Linux 5.19 or later",
        strerror(-r));
    return r;
  }
  w->bufs = malloc((size_t)w->nbufs * w->buf_size);
  if (!w->bufs)
    return -ENOMEM;
  io_uring_buf_ring_init(w->br);
  for (unsigned i = 0; i < w->nbufs; i++)
    io_uring_buf_ring_add(w->br, w->bufs + (size_t)i * w->buf_size, w->buf_size, i,
                          io_uring_buf_ring_mask(w->nbufs), i);
  io_uring_buf_ring_advance(w->br, w->nbufs);
  return 0;
}

/* Submits what is queued and waits for at least one completion. */
static int
ring_wait(struct worker *w)
{
#ifdef HAVE_VALGRIND_MEMCHECK_H
  /* valgrind runs one thread at a time and does not know that
   * io_uring_enter() blocks: a thread waiting in it holds valgrind's lock
   * and starves all the others.  Under valgrind, poll: submit and collect
   * without waiting, and sleep in nanosleep(), which valgrind does know. */
  if (RUNNING_ON_VALGRIND) {
    for (;;) {
      int r = io_uring_submit_and_get_events(&w->ring);
      if (r < 0 || io_uring_cq_ready(&w->ring) > 0)
        return r;
      nanosleep(&(struct timespec){ .tv_nsec = 1000 * 1000 }, NULL);
    }
  }
#endif
  return io_uring_submit_and_wait(&w->ring, 1);
}

static pthread_mutex_t start_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t start_cond = PTHREAD_COND_INITIALIZER;
static unsigned started;
static int start_error;

static void *
worker_main(void *arg)
{
  struct worker *w = arg;
  int r;

  /* The ring is created here, not by the main thread: SINGLE_ISSUER and
   * DEFER_TASKRUN tie a ring to the task that created it. */
  r = setup_ring(w);
  pthread_mutex_lock(&start_lock);
  started++;
  if (r < 0 && !start_error)
    start_error = r;
  pthread_cond_broadcast(&start_cond);
  while (started < nworkers)
    pthread_cond_wait(&start_cond, &start_lock);
  r = start_error;
  pthread_mutex_unlock(&start_lock);
  if (r < 0)
    return NULL;
  arm_wake(w);
  arm_tick(w);
  arm_accept(w);
  for (;;) {
    struct io_uring_cqe *cqe;
    unsigned head, n = 0;

    if (w->stopping && w->nconns == 0 && w->ops_inflight == 0)
      break;
    r = ring_wait(w);
    if (r < 0 && r != -EINTR && r != -EAGAIN && r != -EBUSY) {
      log_err("io_uring_submit_and_wait: %s", strerror(-r));
      break;
    }
    io_uring_for_each_cqe(&w->ring, head, cqe)
    {
      handle_cqe(w, cqe);
      n++;
    }
    io_uring_cq_advance(&w->ring, n);
  }
  if (w->trace_len)
    trace_flush(w);
  log_info("worker %u: %llu large reads spliced from the page cache, %llu copied", w->id,
           (unsigned long long)w->reads_spliced, (unsigned long long)w->reads_copied);
  return NULL;
}

int
workers_start(const int *fds, unsigned nfds, unsigned nthreads)
{
  int r;

  listen_fds = fds;
  nlisten_fds = nfds;
  nworkers = nthreads;
  workers = calloc(nthreads, sizeof *workers);
  if (!workers)
    return -ENOMEM;
  r = attach_thread_start();
  if (r < 0)
    return r;
  for (unsigned i = 0; i < nthreads; i++) {
    struct worker *w = &workers[i];
    sigset_t all, old;

    w->id = i;
    pthread_mutex_init(&w->conns_lock, NULL);
    pthread_mutex_init(&w->mbox_lock, NULL);
    w->wake_fd = eventfd(0, EFD_CLOEXEC);
    if (w->wake_fd < 0)
      return -errno;
    /* Workers take no signals: the main thread handles them. */
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    r = pthread_create(&w->thread, NULL, worker_main, w);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (r == 0) {
      /* For top -H, perf and ps -L.  A name has 15 characters at most;
       * the modulo tells the compiler the number fits. */
      char name[16];
      snprintf(name, sizeof name, "nbdsrv-w%u", i % 10000000u);
      pthread_setname_np(w->thread, name);
    }
    if (r) {
      /* Threads already started wait for this count; make it whole. */
      pthread_mutex_lock(&start_lock);
      nworkers = i;
      if (!start_error)
        start_error = -r;
      pthread_cond_broadcast(&start_cond);
      pthread_mutex_unlock(&start_lock);
      return -r;
    }
  }
  pthread_mutex_lock(&start_lock);
  while (started < nworkers)
    pthread_cond_wait(&start_cond, &start_lock);
  pthread_mutex_unlock(&start_lock);
  return start_error;
}

void
workers_stop(void)
{
  uint64_t one = 1;

  for (unsigned i = 0; i < nworkers; i++) {
    __atomic_store_n(&workers[i].stop_requested, true, __ATOMIC_RELEASE);
    if (write(workers[i].wake_fd, &one, sizeof one) < 0)
      log_err("cannot wake worker %u: %s", i, strerror(errno));
  }
}

void
workers_join(void)
{
  for (unsigned i = 0; i < nworkers; i++)
    pthread_join(workers[i].thread, NULL);
  /* Then the attach thread: the last job it handed to a worker may have
   * been collected before the thread got to write the worker's wake_fd,
   * so the descriptors and the workers stay until it is gone. */
  attach_thread_stop();
  for (unsigned i = 0; i < nworkers; i++) {
    struct worker *w = &workers[i];
    if (w->ring.ring_fd > 0)
      io_uring_queue_exit(&w->ring);
    if (w->br && w->br != MAP_FAILED)
      munmap(w->br, w->nbufs * sizeof(struct io_uring_buf));
    free(w->bufs);
    free(w->conns);
    close(w->wake_fd);
    /* Connections handed over after it stopped: nobody serves them. */
    for (unsigned j = 0; j < w->mbox_n; j++)
      close(w->mbox[j]);
    free(w->mbox);
    pthread_mutex_destroy(&w->mbox_lock);
    pthread_mutex_destroy(&w->conns_lock);
  }
  free(workers);
  workers = NULL;
}
