/* SPDX-License-Identifier: GPL-2.0-or-later */
/* nbdsrv: the life of a connection: set up, stages, close, free.
 *
 * Design notes
 * ------------
 * A connection is created on the worker that will serve it (conn_new:
 * a slot, a generation, the connection limits, socket options, the
 * registered file table) and freed by that worker only once nothing of
 * it is in flight any more: no armed recv, no send, no request, no job
 * at the attach thread.
 *
 * Its stage (enum conn_stage) says what it expects and whether it lives:
 * input.c cuts the stream by it, handshake.c and transmit.c move it on
 * (conn_enter), and the end goes through two steps here.  conn_close()
 * only stops things (input, the recv, the socket, an attach job) and
 * marks the connection CONN_CLOSED, so that any part of the protocol may
 * call it, deep in its own calls, and go on safely; conn_settle(), which
 * the event loop calls after each event of a connection, ends a
 * connection drained of its requests and frees a closed one once nothing
 * is in flight.  This file calls none of the protocol's files: they call
 * it.
 *
 * Must never happen: a connection freed while an operation of the ring,
 * a request or an attach job still names it, or freed anywhere but in
 * conn_settle(); a closed connection that takes input or comes back to
 * life; a slot reused without a new generation (stale completions are
 * recognised by it).
 */
#include <config.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "nbdsrv.h"

/* Why a connection ended early (bad framing, a handshake timeout...):
 * clients decide how often that happens. */
static struct log_limit close_log = LOG_LIMIT(LOG_INFO, "closed connections");

/* Whether c receives nothing for now: over its budget (budget.c) between
 * two units of input, with received input still to feed, waiting for
 * its overlay, or writing a chunk of a long write.  The loop feeds the kept input and arms the recv again
 * after each event. */
static bool
conn_paused(const struct conn *c)
{
  return (budget_full(c) && !input_mid_unit(c)) || c->in.stash_off < c->in.stash_len ||
         c->stage == CONN_ATTACHING || c->in.chunk_busy;
}

static void
arm_recv(struct conn *c)
{
  struct io_uring_sqe *sqe;

  if (c->recv_armed || !conn_reads(c) || c->w->stopping || conn_paused(c))
    return;
  sqe = loop_get_sqe(c->w);
  io_uring_prep_recv_multishot(sqe, c->w->fixed_files ? (int)c->slot : c->fd, NULL, 0, 0);
  if (c->w->fixed_files)
    sqe->flags |= IOSQE_FIXED_FILE;
  sqe->flags |= IOSQE_BUFFER_SELECT;
  sqe->buf_group = BUF_GROUP;
  io_uring_sqe_set_data64(sqe, ud_conn(UD_RECV, c));
  c->recv_armed = true;
}

void
conn_cancel_recv(struct conn *c)
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

void
conn_recv_next(struct conn *c)
{
  if (c->recv_armed && c->stage != CONN_CLOSED && conn_paused(c))
    conn_cancel_recv(c);
  else
    arm_recv(c);
}

/* Whether an operation of the ring, a request or an attach job still
 * names c. */
static bool
conn_busy(const struct conn *c)
{
  return c->recv_armed || c->send_inflight || c->inflight_reqs || c->attach_job;
}

/* Messages never sent: their own free functions let them go. */
static void
drop_queue(struct conn *c)
{
  struct outmsg *m;

  while ((m = c->out_head)) {
    c->out_head = m->next;
    budget_msg_give(c, m);
    m->free(m);
  }
  c->out_tail = &c->out_head;
}

static void
conn_free(struct conn *c)
{
  struct worker *w = c->w;

  /* Out of the table first: the control socket reads it, overlay and
   * all, under conns_lock. */
  pthread_mutex_lock(&w->conns_lock);
  w->conns[c->slot] = NULL;
  pthread_mutex_unlock(&w->conns_lock);
  drop_queue(c);
  if (c->in.cur) {
    /* A write whose payload never came (never handed to transmit.c). */
    free(c->in.cur->buf);
    free(c->in.cur);
  }
  free(c->in.opt_data);
  free(c->in.stash);
  free(c->chunk_buf);
  /* What the input and the request above held. */
  budget_give(c, c->held);
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
  else if (c->refusal)
    limits_leave_refusing();
  w->nconns--;
  log_debug("connection from %s closed", c->peer);
  free(c);
}

void
conn_close(struct conn *c, const char *why)
{
  if (c->stage != CONN_CLOSED && why)
    log_limited(&close_log, "closing connection from %s: %s", c->peer, why);
  conn_enter(c, CONN_CLOSED);
  attach_cancel(c);
  conn_cancel_recv(c);
  /* Wake a blocked send and make later ones fail fast. */
  shutdown(c->fd, SHUT_RDWR);
}

void
conn_settle(struct conn *c)
{
  bool drained = !c->inflight_reqs && !c->send_inflight && !c->out_head;

  if ((c->stage == CONN_ABORTING || c->stage == CONN_DRAINING) && drained)
    conn_close(c, NULL);
  if (c->stage == CONN_CLOSED && !conn_busy(c))
    conn_free(c);
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

struct conn *
conn_alloc(struct worker *w, int fd)
{
  struct conn *c = calloc(1, sizeof *c);

  if (!c)
    return NULL;
  c->w = w;
  c->fd = fd;
  c->out_tail = &c->out_head;
  c->connected = time(NULL);
  /* A reload changes it for connections that come after. */
  c->max_request = config.max_request;
  return c;
}

struct conn *
conn_new(struct worker *w, int res)
{
  const char *why;
  struct conn *c;
  unsigned slot;
  int one = 1;

  if (w->stopping || w->nconns == w->nslots) {
    if (!w->stopping) {
      char peer[INET6_ADDRSTRLEN];
      peer_name(res, peer);
      acl_log_refusal(peer, NULL, NULL,
                      "its worker thread holds as many connections as it can");
    }
    close(res);
    return NULL;
  }
  for (slot = 0; w->conns[slot]; slot++)
    ;
  if (slot > w->max_slot)
    w->max_slot = slot;
  c = conn_alloc(w, res);
  if (!c) {
    close(res);
    return NULL;
  }
  c->slot = slot;
  c->gen = ++w->next_gen;
  peer_name(res, c->peer);
  why = limits_enter(c->peer);
  if (why)
    acl_log_refusal(c->peer, NULL, NULL, why);
  if (why && !limits_enter_refusing()) {
    close(res);
    free(c);
    return NULL;
  }
  c->counted = !why;
  c->refusal = why;
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
  if (w->fixed_files && io_uring_register_files_update(&w->ring, slot, &res, 1) != 1) {
    log_err("cannot register socket in the ring's file table");
    if (c->counted)
      limits_leave(c->peer);
    else
      limits_leave_refusing();
    close(res);
    free(c);
    return NULL;
  }
  pthread_mutex_lock(&w->conns_lock);
  w->conns[slot] = c;
  pthread_mutex_unlock(&w->conns_lock);
  w->nconns++;
  log_debug("connection from %s (worker %u slot %u)", c->peer, w->id, slot);
  return c;
}
