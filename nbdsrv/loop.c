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
 * picks buffers from the worker's provided-buffer ring; every buffer is
 * parsed at once (bytes are copied into the connection's header, option
 * or request payload) and handed back to the kernel, so no buffer is ever
 * held by a slow connection.  When a connection has too much in flight,
 * its recv is cancelled and re-armed once it drained: TCP then pushes
 * back on the client.
 *
 * Output is a queue per connection drained by one sendmsg at a time, so
 * replies are never interleaved however requests complete; each sendmsg
 * gathers every queued reply (batching small replies into one syscall).
 *
 * user_data: connection operations carry kind | slot << 4 | generation
 * << 32, so a completion for a slot that was since reused is recognised
 * and ignored; file I/O carries the request pointer (16-byte aligned) |
 * kind | segment << 48.  A worker exits only when no operation is in
 * flight, so no completion can ever name freed memory.
 */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
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

enum ud_kind {
  UD_IO = 1,       /* request file I/O: pointer-based */
  UD_ACCEPT = 2,
  UD_RECV = 3,
  UD_SEND = 4,
  UD_WAKE = 5,
  UD_CANCEL = 6,
  UD_POLL_OUT = 7,    /* socket writable again (spliced replies) */
  UD_TICK = 8,        /* once a second */
};

#define RING_ENTRIES 1024
#define CQ_ENTRIES 16384
#define SLOTS_PER_WORKER 8192
#define RECV_BUFS 128          /* power of two */
#define RECV_BUF_SIZE (32u << 10)
#define BUF_GROUP 0

/* Why a connection ended early (bad framing, a handshake timeout...):
 * clients decide how often that happens. */
static struct log_limit close_log = LOG_LIMIT(LOG_INFO, "closed connections");

static struct worker *workers;
static unsigned nworkers;
static const int *listen_fds;
static unsigned nlisten_fds;

static uint64_t
ud_conn(enum ud_kind k, const struct conn *c)
{
  return k | (uint64_t)c->slot << 4 | (uint64_t)c->gen << 32;
}

uint64_t
loop_req_data(struct request *r, unsigned seg)
{
  return (uint64_t)(uintptr_t)r | UD_IO | (uint64_t)seg << 48;
}

struct io_uring_sqe *
loop_get_sqe(struct worker *w)
{
  struct io_uring_sqe *sqe = io_uring_get_sqe(&w->ring);

  while (!sqe) {
    /* SQ full: push what we have to the kernel and take a fresh entry. */
    io_uring_submit(&w->ring);
    sqe = io_uring_get_sqe(&w->ring);
  }
  w->ops_inflight++;
  return sqe;
}

/* ---- accept ---- */

static unsigned next_worker;     /* whose turn it is to get a connection */

static void conn_setup(struct worker *w, int res);

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

static bool
conn_over_limit(const struct conn *c)
{
  return c->inflight_reqs >= NBDSRV_MAX_CONN_REQS ||
         c->inflight_bytes >= NBDSRV_MAX_CONN_BYTES;
}

static void
arm_recv(struct conn *c)
{
  struct io_uring_sqe *sqe;

  if (c->recv_armed || c->closing || c->disc || c->w->stopping ||
      conn_over_limit(c))
    return;
  sqe = loop_get_sqe(c->w);
  io_uring_prep_recv_multishot(sqe, c->w->fixed_files ? (int)c->slot : c->fd,
                               NULL, 0, 0);
  if (c->w->fixed_files)
    sqe->flags |= IOSQE_FIXED_FILE;
  sqe->flags |= IOSQE_BUFFER_SELECT;
  sqe->buf_group = BUF_GROUP;
  io_uring_sqe_set_data64(sqe, ud_conn(UD_RECV, c));
  c->recv_armed = true;
}

static void
cancel_recv(struct conn *c)
{
  struct io_uring_sqe *sqe;

  if (!c->recv_armed || c->recv_cancelling)
    return;
  sqe = loop_get_sqe(c->w);
  io_uring_prep_cancel64(sqe, ud_conn(UD_RECV, c), 0);
  io_uring_sqe_set_data64(sqe, UD_CANCEL);
  c->recv_cancelling = true;
}

void
conn_recv_more(struct conn *c)
{
  arm_recv(c);
}

static void
conn_free_queue(struct conn *c)
{
  struct outmsg *m;

  while ((m = c->out_head)) {
    c->out_head = m->next;
    m->free(m);
  }
  c->out_tail = &c->out_head;
}

/* Frees the connection once nothing of it is in flight any more. */
static void
conn_try_free(struct conn *c)
{
  struct worker *w = c->w;

  if (!c->closing || c->recv_armed || c->send_inflight || c->inflight_reqs ||
      c->attach_job)
    return;
  /* Out of the table first: the control socket reads it, overlay and
   * all, under conns_lock. */
  pthread_mutex_lock(&w->conns_lock);
  w->conns[c->slot] = NULL;
  pthread_mutex_unlock(&w->conns_lock);
  conn_free_queue(c);
  free(c->opt_data);
  free(c->stash);
  if (c->pipe_size) {
    close(c->pipe_fd[0]);
    close(c->pipe_fd[1]);
  }
  if (c->ovl)
    overlay_release(c->ovl);
  if (w->fixed_files) {
    int minus_one = -1;
    io_uring_register_files_update(&w->ring, c->slot, &minus_one, 1);
  }
  close(c->fd);
  if (c->counted)
    limits_leave(c->peer);
  w->nconns--;
  log_debug("connection from %s closed", c->peer);
  free(c);
}

void
conn_close(struct conn *c, const char *why)
{
  if (!c->closing && why)
    log_limited(&close_log, "closing connection from %s: %s", c->peer, why);
  conn_stop_input(c);
  attach_cancel(c);
  cancel_recv(c);
  /* Wake a blocked send and make later ones fail fast. */
  shutdown(c->fd, SHUT_RDWR);
  conn_try_free(c);
}

/* ---- send ---- */

static const char zero_buf[64 << 10];

static void send_next(struct conn *c);

static void
pop_head(struct conn *c)
{
  struct outmsg *m = c->out_head;

  c->out_head = m->next;
  if (!c->out_head)
    c->out_tail = &c->out_head;
  m->free(m);
}

static int
conn_sock(const struct conn *c)
{
  return c->w->fixed_files ? (int)c->slot : c->fd;
}

static void
submit_sendmsg(struct conn *c, unsigned niov, int more)
{
  struct io_uring_sqe *sqe;

  memset(&c->send_msg, 0, sizeof c->send_msg);
  c->send_msg.msg_iov = c->send_iov;
  c->send_msg.msg_iovlen = niov;
  sqe = loop_get_sqe(c->w);
  io_uring_prep_sendmsg(sqe, conn_sock(c), &c->send_msg, MSG_NOSIGNAL | more);
  if (c->w->fixed_files)
    sqe->flags |= IOSQE_FIXED_FILE;
  io_uring_sqe_set_data64(sqe, ud_conn(UD_SEND, c));
  c->send_inflight = true;
}

static bool
msg_iov_sent(const struct outmsg *m)
{
  return m->iov_first == m->niov;
}

/* Whether m's spliced payload goes on after the current segment's first
 * n bytes (then the socket is told more is coming). */
static bool
msg_more_after(const struct outmsg *m, uint32_t n)
{
  if (m->splice_cur == m->nsplice)
    return false;
  return m->splice_segs[m->splice_cur].len > n || m->splice_cur + 1 < m->nsplice;
}

static void
msg_advance_segment(struct outmsg *m, uint32_t n)
{
  struct segment *s = &m->splice_segs[m->splice_cur];

  s->file_off += n;
  s->buf_off += n;
  s->len -= n;
  if (s->len == 0)
    m->splice_cur++;
}

int
conn_pipe(struct conn *c)
{
  int size;

  if (c->pipe_size)
    return 0;
  if (pipe2(c->pipe_fd, O_CLOEXEC) < 0)
    return -errno;
  /* A larger pipe means fewer, larger splices; the default maximum for
   * F_SETPIPE_SZ is 1 MiB, and the pipe only holds page references. */
  fcntl(c->pipe_fd[1], F_SETPIPE_SZ, 1 << 20);
  size = fcntl(c->pipe_fd[1], F_GETPIPE_SZ);
  c->pipe_size = size > 0 ? (uint32_t)size : 65536;
  return 0;
}

static void
submit_zeroes(struct conn *c, struct outmsg *m)
{
  uint32_t left = m->splice_segs[m->splice_cur].len;
  unsigned n = 0;

  while (left > 0 && n < 64) {
    uint32_t piece = left < sizeof zero_buf ? left : sizeof zero_buf;
    c->send_iov[n++] = (struct iovec){ (void *)zero_buf, piece };
    left -= piece;
  }
  submit_sendmsg(c, n, msg_more_after(m, m->splice_segs[m->splice_cur].len - left)
                           ? MSG_MORE : 0);
}

/* Waits (in the ring) until the socket can take more. */
static void
submit_poll_out(struct conn *c)
{
  struct io_uring_sqe *sqe = loop_get_sqe(c->w);

  io_uring_prep_poll_add(sqe, conn_sock(c), POLLOUT);
  if (c->w->fixed_files)
    sqe->flags |= IOSQE_FIXED_FILE;
  io_uring_sqe_set_data64(sqe, ud_conn(UD_POLL_OUT, c));
  c->send_inflight = true;
}

/* Sends the file segments of m, file -> pipe -> socket, right here with
 * splice(2): the pages go from the page cache to the socket by reference,
 * never copied by us.  start_read() only takes this path for ranges that
 * are in the page cache, so the file side does not wait for a disk, and
 * the socket is non-blocking: when it is full we wait for POLLOUT in the
 * ring.  (IORING_OP_SPLICE would do the same in io_uring's worker threads,
 * and the thread switches cost more than the copies saved.)
 * Returns 0 when m is all sent, 1 when waiting, -errno on failure. */
static int
splice_segments(struct conn *c, struct outmsg *m)
{
  while (m->splice_cur < m->nsplice || c->pipe_fill > 0) {
    ssize_t n;

    if (c->pipe_fill == 0) {
      struct segment *sg = &m->splice_segs[m->splice_cur];
      loff_t off = (loff_t)sg->file_off;

      if (sg->fd < 0) {
        submit_zeroes(c, m);
        return 1;
      }
      n = splice(sg->fd, &off, c->pipe_fd[1], NULL,
                 sg->len < c->pipe_size ? sg->len : c->pipe_size,
                 SPLICE_F_NONBLOCK);
      if (n <= 0)
        return n == 0 ? -ENODATA : -errno;
      msg_advance_segment(m, (uint32_t)n);
      c->pipe_fill = (uint32_t)n;
    }
    n = splice(c->pipe_fd[0], NULL, c->fd, NULL, c->pipe_fill,
               SPLICE_F_NONBLOCK | (msg_more_after(m, 0) ? SPLICE_F_MORE : 0));
    if (n < 0) {
      if (errno == EAGAIN) {
        submit_poll_out(c);
        return 1;
      }
      return -errno;
    }
    c->pipe_fill -= (uint32_t)n;
  }
  return 0;
}

static void
conn_send(struct conn *c)
{
  struct outmsg *m = c->out_head;
  unsigned n = 0;
  int more = 0;

  while (m && msg_iov_sent(m) && m->splice_segs) {
    int r = splice_segments(c, m);

    if (r > 0)
      return;
    if (r < 0) {
      /* The reply header promised these bytes; without them the stream
       * is broken, so the connection has to go (the client reconnects). */
      conn_free_queue(c);
      conn_close(c, r == -EPIPE || r == -ECONNRESET ? NULL : strerror(-r));
      return;
    }
    pop_head(c);
    m = c->out_head;
  }
  if (!m) {
    send_next(c);
    return;
  }
  /* Gather every queued reply, up to the first one with a spliced payload,
   * which has to follow its header on the stream. */
  for (; m && n < 64; m = m->next) {
    for (unsigned i = m->iov_first; i < m->niov && n < 64; i++)
      c->send_iov[n++] = m->iov[i];
    if (m->splice_segs) {
      more = MSG_MORE;
      break;
    }
  }
  submit_sendmsg(c, n, more);
}

void
conn_queue(struct conn *c, struct outmsg *m)
{
  if (c->closing) {
    /* The reply of the last request a closing connection waited for:
     * nobody else will free it.  (Inside conn_input() the armed recv
     * keeps it alive.) */
    m->free(m);
    conn_try_free(c);
    return;
  }
  m->next = NULL;
  *c->out_tail = m;
  c->out_tail = &m->next;
  if (!c->send_inflight)
    conn_send(c);
}

/* After a send finished: the next one, or the end of the connection. */
static void
send_next(struct conn *c)
{
  if (c->out_head && !c->closing) {
    conn_send(c);
  } else if (c->disc && c->inflight_reqs == 0 && !c->out_head) {
    conn_close(c, NULL);
  } else if (c->closing) {
    conn_free_queue(c);
    conn_try_free(c);
  }
}

/* Drops the head message once all of it is on the stream. */
static void
pop_if_sent(struct conn *c)
{
  struct outmsg *m = c->out_head;

  if (m && msg_iov_sent(m) && c->pipe_fill == 0 &&
      (!m->splice_segs || m->splice_cur == m->nsplice))
    pop_head(c);
}

static void
send_done(struct conn *c, int res)
{
  c->send_inflight = false;
  if (res < 0) {
    conn_free_queue(c);
    conn_close(c, res == -EPIPE || res == -ECONNRESET ? NULL : "send failed");
    return;
  }
  /* A sendmsg either gathers queued iovecs, and then the head message
   * still had some to send, or sends a zero segment of a spliced reply,
   * whose iovecs were all sent: the head tells which it was. */
  if (msg_iov_sent(c->out_head) && c->out_head->splice_segs) {
    msg_advance_segment(c->out_head, (uint32_t)res);
    pop_if_sent(c);
    send_next(c);
    return;
  }
  size_t left = res;
  while (c->out_head) {
    struct outmsg *m = c->out_head;
    while (m->iov_first < m->niov && left >= m->iov[m->iov_first].iov_len) {
      left -= m->iov[m->iov_first].iov_len;
      m->iov_first++;
    }
    if (m->iov_first < m->niov) {
      /* Partly sent: resume inside this iovec. */
      m->iov[m->iov_first].iov_base = (char *)m->iov[m->iov_first].iov_base + left;
      m->iov[m->iov_first].iov_len -= left;
      break;
    }
    if (m->splice_segs)
      break; /* its payload goes next, by splice */
    pop_head(c);
  }
  send_next(c);
}

static void
poll_out_done(struct conn *c, int res)
{
  c->send_inflight = false;
  if (res < 0 && res != -ECANCELED) {
    conn_free_queue(c);
    conn_close(c, strerror(-res));
    return;
  }
  send_next(c);
}

/* ---- receive ---- */

static void
recv_done(struct worker *w, struct conn *c, int res, unsigned flags)
{
  bool more = flags & IORING_CQE_F_MORE;

  if (flags & IORING_CQE_F_BUFFER) {
    unsigned bid = flags >> IORING_CQE_BUFFER_SHIFT;
    char *buf = w->bufs + (size_t)bid * w->buf_size;

    if (res > 0) {
      KERNEL_WROTE(buf, res);
      conn_input(c, buf, res);
    }
    /* Hand the buffer straight back: we copied what we needed. */
    io_uring_buf_ring_add(w->br, buf, w->buf_size, bid,
                          io_uring_buf_ring_mask(w->nbufs), 0);
    io_uring_buf_ring_advance(w->br, 1);
  }
  if (!more) {
    c->recv_armed = false;
    c->recv_cancelling = false;
  }
  if (res == 0) {
    if (!c->closing)
      conn_close(c, c->phase == PHASE_HANDSHAKE ? "client went away during the handshake" : NULL);
    else
      conn_try_free(c);
    return;
  }
  if (res < 0 && res != -ENOBUFS && res != -ECANCELED) {
    conn_close(c, res == -ECONNRESET ? NULL : strerror(-res));
    return;
  }
  if (c->closing) {
    conn_try_free(c);
    return;
  }
  if (c->recv_armed && conn_over_limit(c))
    cancel_recv(c);
  else if (!c->recv_armed)
    arm_recv(c);
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
    conn_setup(w, res);
    return;
  }
  pthread_mutex_lock(&to->mbox_lock);
  if (to->mbox_n == to->mbox_cap) {
    unsigned cap = to->mbox_cap ? to->mbox_cap * 2 : 64;
    int *v = realloc(to->mbox, cap * sizeof *v);
    if (!v) {
      pthread_mutex_unlock(&to->mbox_lock);
      conn_setup(w, res);   /* keep it here rather than lose it */
      return;
    }
    to->mbox = v;
    to->mbox_cap = cap;
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
    conn_setup(w, v[i]);
  free(v);
}

/* The address of the peer of socket fd, as text ("unknown" if none). */
static void
peer_name(int fd, char out[INET6_ADDRSTRLEN])
{
  struct sockaddr_storage ss;
  socklen_t sl = sizeof ss;

  out[0] = '\0';
  if (getpeername(fd, (struct sockaddr *)&ss, &sl) == 0) {
    if (ss.ss_family == AF_INET)
      inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, out, INET6_ADDRSTRLEN);
    else if (ss.ss_family == AF_INET6) {
      struct in6_addr *a = &((struct sockaddr_in6 *)&ss)->sin6_addr;
      /* IPv4-mapped: use the plain IPv4 form, so the identity does not
       * depend on which socket family accepted the client. */
      if (IN6_IS_ADDR_V4MAPPED(a))
        inet_ntop(AF_INET, &a->s6_addr[12], out, INET6_ADDRSTRLEN);
      else
        inet_ntop(AF_INET6, a, out, INET6_ADDRSTRLEN);
    }
  }
  if (!out[0])
    snprintf(out, INET6_ADDRSTRLEN, "unknown");
}

/* A new connection on this worker: its socket is res. */
static void
conn_setup(struct worker *w, int res)
{
  const char *why;
  struct conn *c;
  unsigned slot;
  int one = 1;

  if (w->stopping || w->nconns == w->nslots) {
    if (!w->stopping) {
      char peer[INET6_ADDRSTRLEN];
      peer_name(res, peer);
      handshake_log_refusal(peer, NULL, NULL,
                            "its worker thread holds as many connections as it can");
    }
    close(res);
    return;
  }
  for (slot = 0; w->conns[slot]; slot++)
    ;
  if (slot > w->max_slot)
    w->max_slot = slot;
  c = conn_alloc(w, res);
  if (!c) {
    close(res);
    return;
  }
  c->slot = slot;
  c->gen = ++w->next_gen;
  peer_name(res, c->peer);
  why = limits_enter(c->peer);
  if (why) {
    handshake_log_refusal(c->peer, NULL, NULL, why);
    close(res);
    free(c);
    return;
  }
  c->counted = true;
  setsockopt(res, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (config.keepalive) {
    /* Notice clients that vanished (power cut, cable pulled) within about
     * keepalive + 60 s, and let their connection go. */
    int idle = (int)config.keepalive, intvl = 10, cnt = 6;
    setsockopt(res, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
    setsockopt(res, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle);
    setsockopt(res, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof intvl);
    setsockopt(res, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof cnt);
  }
  if (w->fixed_files &&
      io_uring_register_files_update(&w->ring, slot, &res, 1) != 1) {
    log_err("cannot register socket in the ring's file table");
    limits_leave(c->peer);
    close(res);
    free(c);
    return;
  }
  pthread_mutex_lock(&w->conns_lock);
  w->conns[slot] = c;
  pthread_mutex_unlock(&w->conns_lock);
  w->nconns++;
  log_debug("connection from %s (worker %u slot %u)", c->peer, w->id, slot);
  handshake_start(c);
  arm_recv(c);
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
  /* A client that connects and then says nothing, or dribbles its
   * options, must not hold a connection slot for ever. */
  if (config.handshake_timeout) {
    for (unsigned i = 0; i < w->nslots && i <= w->max_slot; i++) {
      struct conn *c = w->conns[i];
      /* Not while it waits for its overlay: that wait is ours. */
      if (c && c->phase == PHASE_HANDSHAKE && !c->closing &&
          c->in != IN_ATTACHING &&
          now - c->connected >= (time_t)config.handshake_timeout)
        conn_close(c, "handshake timeout");
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
    if (c->phase == PHASE_HANDSHAKE || c->in == IN_REQ_PAYLOAD) {
      conn_close(c, NULL);
    } else {
      /* Finish what is in flight, then close. */
      c->disc = true;
      c->in = IN_DEAD;
      cancel_recv(c);
      if (c->inflight_reqs == 0 && !c->send_inflight)
        conn_close(c, NULL);
    }
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
    if (kick)
      conn_close(c, "kicked by the administrator (nbdsrv ctl kick)");
  }
}

static bool
conn_is(const struct conn *c, const char *who)
{
  const char *slash = strchr(c->ovl->key, '/');

  return !strcmp(c->peer, who) || !strcmp(c->ovl->key, who) ||
         (slash && !strcmp(slash + 1, who));
}

unsigned
workers_kick(const char *who)
{
  uint64_t one = 1;
  unsigned n = 0;

  for (unsigned i = 0; i < nworkers; i++) {
    struct worker *w = &workers[i];
    unsigned mine = 0;

    pthread_mutex_lock(&w->conns_lock);
    for (unsigned j = 0; j < w->nslots && j <= w->max_slot; j++) {
      struct conn *c = w->conns[j];
      if (c && c->ovl && !c->closing && conn_is(c, who)) {
        c->kick = true;
        mine++;
      }
    }
    if (mine)
      w->kick_pending = true;
    pthread_mutex_unlock(&w->conns_lock);
    if (mine && write(w->wake_fd, &one, sizeof one) < 0)
      log_err("cannot wake worker %u: %s", i, strerror(errno));
    n += mine;
  }
  return n;
}

int
workers_snapshot(struct ctl_conn_info **out, size_t *np)
{
  struct ctl_conn_info *v = NULL;
  size_t n = 0, cap = 0;

  for (unsigned i = 0; i < nworkers; i++) {
    struct worker *w = &workers[i];

    pthread_mutex_lock(&w->conns_lock);
    for (unsigned j = 0; j < w->nslots && j <= w->max_slot; j++) {
      struct conn *c = w->conns[j];
      struct ctl_conn_info *x;
      const char *slash;

      /* Only attached ones: a handshake has no identity yet.  The
       * overlay stays while the connection does (freeing it needs this
       * lock); the counters may be a request behind. */
      if (!c || !c->ovl || c->closing)
        continue;
      if (n == cap) {
        cap = cap ? cap * 2 : 64;
        x = realloc(v, cap * sizeof *v);
        if (!x) {
          pthread_mutex_unlock(&w->conns_lock);
          free(v);
          return -ENOMEM;
        }
        v = x;
      }
      x = &v[n++];
      memset(x, 0, sizeof *x);
      slash = strchr(c->ovl->key, '/');
      snprintf(x->export, sizeof x->export, "%s", c->ovl->exp->name);
      snprintf(x->id, sizeof x->id, "%.*s", (int)sizeof x->id - 1,
               slash ? slash + 1 : c->ovl->key);
      snprintf(x->peer, sizeof x->peer, "%s", c->peer);
      slash = strrchr(c->ovl->base->path, '/');
      snprintf(x->image, sizeof x->image, "%.*s", (int)sizeof x->image - 1,
               slash ? slash + 1 : c->ovl->base->path);
      pthread_mutex_lock(&c->ovl->lock);
      x->overlay_bytes = c->ovl->file.map.ndata * (uint64_t)OVL_BLOCK_SIZE;
      pthread_mutex_unlock(&c->ovl->lock);
      x->connected = c->connected;
      x->requests = c->requests;
      x->bytes_read = c->bytes_read;
      x->bytes_written = c->bytes_written;
      x->worker = w->id;
    }
    pthread_mutex_unlock(&w->conns_lock);
  }
  *out = v;
  *np = n;
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
    transmit_io_done(r, (unsigned)(ud >> 48), cqe->res);
    return;
  }
  if (!(cqe->flags & IORING_CQE_F_MORE))
    w->ops_inflight--;
  switch (kind) {
  case UD_ACCEPT:
    accept_done(w, cqe->res, cqe->flags);
    return;
  case UD_WAKE:
    KERNEL_WROTE(&w->wake_buf, sizeof w->wake_buf);
    if (!w->stopping && __atomic_load_n(&w->stop_requested, __ATOMIC_ACQUIRE))
      worker_begin_stop(w);
    adopt_connections(w);   /* when stopping, closes them */
    attach_collect(w);
    close_kicked(w);
    /* A stopping worker listens only for the overlays it waits for. */
    if (!w->stopping || w->attaching)
      arm_wake(w);
    return;
  case UD_TICK:
    tick_done(w);
    return;
  case UD_CANCEL:
    return;
  case UD_RECV:
  case UD_SEND:
  case UD_POLL_OUT: {
    unsigned slot = (ud >> 4) & 0xfffffff;
    uint32_t gen = ud >> 32;
    c = slot < w->nslots ? w->conns[slot] : NULL;
    if (!c || c->gen != gen) {
      /* Stale: the connection is gone.  Return any buffer it picked. */
      if (cqe->flags & IORING_CQE_F_BUFFER) {
        unsigned bid = cqe->flags >> IORING_CQE_BUFFER_SHIFT;
        io_uring_buf_ring_add(w->br, w->bufs + (size_t)bid * w->buf_size,
                              w->buf_size, bid, io_uring_buf_ring_mask(w->nbufs), 0);
        io_uring_buf_ring_advance(w->br, 1);
      }
      return;
    }
    if (kind == UD_RECV)
      recv_done(w, c, cqe->res, cqe->flags);
    else if (kind == UD_SEND)
      send_done(c, cqe->res);
    else
      poll_out_done(c, cqe->res);
    return;
  }
  default:
    log_err("unexpected completion 0x%llx", (unsigned long long)ud);
  }
}

static int
setup_ring(struct worker *w)
{
  struct io_uring_params p;
  int r;

  memset(&p, 0, sizeof p);
  p.flags = IORING_SETUP_CQSIZE | IORING_SETUP_SUBMIT_ALL |
            IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
  p.cq_entries = CQ_ENTRIES;
  r = io_uring_queue_init_params(RING_ENTRIES, &w->ring, &p);
  if (r == -EINVAL) {
    /* Kernels before 6.1 lack DEFER_TASKRUN (and 6.0 SINGLE_ISSUER). */
    if (w->id == 0)
      log_info("io_uring: kernel lacks SINGLE_ISSUER/DEFER_TASKRUN; using plain completions");
    memset(&p, 0, sizeof p);
    p.flags = IORING_SETUP_CQSIZE;
    p.cq_entries = CQ_ENTRIES;
    r = io_uring_queue_init_params(RING_ENTRIES, &w->ring, &p);
  }
  if (r < 0) {
    log_err("io_uring setup failed: %s%s", strerror(-r),
            r == -EPERM ? " (is io_uring disabled by sysctl kernel.io_uring_disabled?)" : "");
    return r;
  }

  struct io_uring_probe *probe = io_uring_get_probe_ring(&w->ring);
  static const struct { int op; const char *name; } need[] = {
    { IORING_OP_ACCEPT, "ACCEPT" }, { IORING_OP_RECV, "RECV" },
    { IORING_OP_SENDMSG, "SENDMSG" }, { IORING_OP_READ, "READ" },
    { IORING_OP_WRITE, "WRITE" }, { IORING_OP_FSYNC, "FSYNC" },
    { IORING_OP_ASYNC_CANCEL, "ASYNC_CANCEL" },
  };
  for (size_t i = 0; probe && i < ARRAY_SIZE(need); i++)
    if (!io_uring_opcode_supported(probe, need[i].op)) {
      log_err("io_uring: kernel lacks IORING_OP_%s; nbdsrv needs Linux 6.0 or later", need[i].name);
      io_uring_free_probe(probe);
      return -ENOSYS;
    }
  if (probe)
    io_uring_free_probe(probe);
  w->can_splice = !config.no_splice && pagecache_supported();
  if (!w->can_splice && !config.no_splice && w->id == 0)
    log_info("kernel lacks cachestat(2) (Linux 6.5): large reads are copied, not spliced");

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
  w->br = mmap(NULL, ring_bytes, PROT_READ | PROT_WRITE,
               MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
  if (w->br == MAP_FAILED)
    return -errno;
  memset(&reg, 0, sizeof reg);
  reg.ring_addr = (uintptr_t)w->br;
  reg.ring_entries = w->nbufs;
  reg.bgid = BUF_GROUP;
  r = io_uring_register_buf_ring(&w->ring, &reg, 0);
  if (r < 0) {
    log_err("io_uring: cannot register a provided buffer ring (%s); nbdsrv needs Linux 5.19 or later",
            strerror(-r));
    return r;
  }
  w->bufs = malloc((size_t)w->nbufs * w->buf_size);
  if (!w->bufs)
    return -ENOMEM;
  io_uring_buf_ring_init(w->br);
  for (unsigned i = 0; i < w->nbufs; i++)
    io_uring_buf_ring_add(w->br, w->bufs + (size_t)i * w->buf_size, w->buf_size,
                          i, io_uring_buf_ring_mask(w->nbufs), i);
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
    io_uring_for_each_cqe(&w->ring, head, cqe) {
      handle_cqe(w, cqe);
      n++;
    }
    io_uring_cq_advance(&w->ring, n);
  }
  if (w->trace_len)
    trace_flush(w);
  log_info("worker %u: %llu large reads spliced from the page cache, %llu copied",
           w->id, (unsigned long long)w->reads_spliced,
           (unsigned long long)w->reads_copied);
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
