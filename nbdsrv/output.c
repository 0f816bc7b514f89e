/* SPDX-License-Identifier: GPL-2.0-or-later */
/* nbdsrv: the output of a connection: its queue of messages, and sending
 * them (sendmsg through the ring, splice(2) for large read replies).
 *
 * Design notes
 * ------------
 * The mirror of input.c.  Handshake replies and request replies are
 * queued here (conn_queue) in the order they are made; one send (a
 * sendmsg, or a run of splices) is in flight at a time, so the stream is
 * never interleaved however requests complete, and each sendmsg gathers
 * every queued message (small replies batched into one syscall).
 *
 * A message is headers inline plus a payload by reference: in memory, or,
 * for large reads, still in the files it comes from, spliced file -> pipe
 * -> socket so that the data never passes through our memory, or (not
 * cached, or no splice) read one chunk at a time into the connection's
 * chunk buffer and sent from there, so that a read's reply holds one
 * chunk whatever its length.
 *
 * Every message gives back the budget it held (budget.c) when it goes,
 * sent or not (conn_drop_msg).
 *
 * A failed send closes the connection (conn_close only marks it; the
 * queue goes when it is freed): the stream is broken.
 *
 * Must never happen: a message sent twice or freed before it is all on
 * the stream; a send in flight on a connection that is freed (the
 * connection stays while send_inflight is set).
 */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"
#include "nbdsrv.h"

static void send_next(struct conn *c);

static const char zero_buf[64 << 10];

/* Lets m go (never sent, or all sent): its budget, then m itself. */
static void
conn_drop_msg(struct conn *c, struct outmsg *m)
{
  budget_msg_give(c, m);
  m->free(m);
}

/* The connection's chunk buffer goes once a streamed reply is sent. */
static void
chunk_buf_free(struct conn *c)
{
  if (!c->chunk_buf)
    return;
  free(c->chunk_buf);
  c->chunk_buf = NULL;
  c->chunk_fill = c->chunk_sent = 0;
  budget_give(c, NBDSRV_CHUNK);
}

static void
pop_head(struct conn *c)
{
  struct outmsg *m = c->out_head;

  if (m->stream)
    chunk_buf_free(c);
  c->out_head = m->next;
  if (!c->out_head)
    c->out_tail = &c->out_head;
  conn_drop_msg(c, m);
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
  submit_sendmsg(
      c, n, msg_more_after(m, m->splice_segs[m->splice_cur].len - left) ? MSG_MORE : 0);
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
                 sg->len < c->pipe_size ? sg->len : c->pipe_size, SPLICE_F_NONBLOCK);
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

/* Sends the file segments of m through the chunk buffer: a chunk read
 * through the ring (UD_STREAM_READ), then sent, then the next: for
 * reads too long to hold whole and not in the page cache (or with no
 * splice), so that such a reply holds one chunk whatever its length.
 * Returns 0 when m is all sent, 1 when waiting, -errno on failure. */
static int
stream_segments(struct conn *c, struct outmsg *m)
{
  struct io_uring_sqe *sqe;
  struct segment *sg;
  uint32_t n;

  if (c->chunk_sent < c->chunk_fill) {
    n = c->chunk_fill - c->chunk_sent;
    c->send_iov[0] = (struct iovec){ c->chunk_buf + c->chunk_sent, n };
    submit_sendmsg(c, 1, msg_more_after(m, n) ? MSG_MORE : 0);
    return 1;
  }
  c->chunk_fill = c->chunk_sent = 0;
  if (m->splice_cur == m->nsplice)
    return 0;
  sg = &m->splice_segs[m->splice_cur];
  if (sg->fd < 0) {
    submit_zeroes(c, m);
    return 1;
  }
  if (!c->chunk_buf) {
    c->chunk_buf = malloc(NBDSRV_CHUNK);
    if (!c->chunk_buf)
      return -ENOMEM;
    budget_take(c, NBDSRV_CHUNK);
  }
  sqe = loop_get_sqe(c->w);
  io_uring_prep_read(sqe, sg->fd, c->chunk_buf,
                     sg->len < NBDSRV_CHUNK ? sg->len : NBDSRV_CHUNK, sg->file_off);
  io_uring_sqe_set_data64(sqe, ud_conn(UD_STREAM_READ, c));
  c->send_inflight = true;
  return 1;
}

void
conn_stream_read_done(struct conn *c, int res)
{
  struct outmsg *m = c->out_head;
  struct segment *sg = &m->splice_segs[m->splice_cur];

  c->send_inflight = false;
  if (c->stage == CONN_CLOSED)
    return;
  if (res < 0) {
    log_err("read of %u bytes at %llu for %s: %s", sg->len,
            (unsigned long long)sg->file_off, c->peer, strerror(-res));
    /* The reply's header promised the data: the stream is broken. */
    conn_close(c, "a read failed after its reply began");
    return;
  }
  if (res == 0) {
    /* End of file: only the base image's last partial block gets here;
     * what lies past the end of the image reads as zeroes. */
    res = sg->len < NBDSRV_CHUNK ? (int)sg->len : (int)NBDSRV_CHUNK;
    memset(c->chunk_buf, 0, res);
  }
  KERNEL_WROTE(c->chunk_buf, res);
  c->chunk_fill = (uint32_t)res;
  c->chunk_sent = 0;
  send_next(c);
}

static void
conn_send(struct conn *c)
{
  struct outmsg *m = c->out_head;
  unsigned n = 0;
  int more = 0;

  while (m && msg_iov_sent(m) && m->splice_segs) {
    int r = m->stream ? stream_segments(c, m) : splice_segments(c, m);

    if (r > 0)
      return;
    if (r < 0) {
      /* The reply header promised these bytes; without them the stream
       * is broken, so the connection has to go (the client reconnects). */
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
  if (c->stage == CONN_CLOSED) {
    /* Nobody will read it (the connection goes in conn_settle). */
    conn_drop_msg(c, m);
    return;
  }
  m->next = NULL;
  *c->out_tail = m;
  c->out_tail = &m->next;
  if (!c->send_inflight) {
    pacing_update(c);
    conn_send(c);
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

void
conn_send_done(struct conn *c, int res)
{
  c->send_inflight = false;
  if (res < 0) {
    conn_close(c, res == -EPIPE || res == -ECONNRESET ? NULL : "send failed");
    return;
  }
  /* A sendmsg either gathers queued iovecs, and then the head message
   * still had some to send, or sends a zero segment of a spliced reply,
   * whose iovecs were all sent: the head tells which it was. */
  if (msg_iov_sent(c->out_head) && c->out_head->splice_segs) {
    if (c->chunk_sent < c->chunk_fill)
      c->chunk_sent += (uint32_t)res; /* from the chunk buffer */
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

void
conn_poll_out_done(struct conn *c, int res)
{
  c->send_inflight = false;
  if (res < 0 && res != -ECANCELED) {
    conn_close(c, strerror(-res));
    return;
  }
  send_next(c);
}

/* After a send finished: the next one.  (Whether the connection ends
 * now is conn_settle's to tell.) */
static void
send_next(struct conn *c)
{
  if (c->out_head && c->stage != CONN_CLOSED) {
    pacing_update(c);
    conn_send(c);
  }
}
