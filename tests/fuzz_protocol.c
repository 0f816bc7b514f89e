/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Fuzz target: nbdsrv's protocol code, handshake and transmission.
 *
 * The real handshake.c, transmit.c, overlay.c, image.c, acl.c, config.c
 * and input.c run; only the event loop and the connection's life and
 * output (loop.c, ring.c, conn.c, output.c) and attach.c are replaced, by
 * the few functions below that the protocol code calls (conn_alloc,
 * conn_queue, conn_close, loop_get_sqe, attach_begin ...).
 * The fuzz input is the byte stream of one or two client connections,
 * fed to conn_input() in pieces whose sizes the input also chooses, so
 * that every unit (client flags, option header, option data, request
 * header, write payload) can arrive split anywhere.  The file I/O that
 * transmit.c hands to io_uring is done here for real (pread, pwrite),
 * after each piece, in an order and with faults (short transfers,
 * errors) that the input chooses too.
 *
 * Input layout:
 *   byte 0   bits 0-1  client address: 192.0.2.10, 192.0.2.66 (denied on
 *                      "lab"), 2001:db8::7, or one that is no address
 *            bit 2     large cached reads may take the splice path
 *            bits 3-4  0: one connection
 *                      1: one connection, strictly one unit at a time,
 *                         every request finished before the next: then
 *                         the data read back is checked against a model
 *                         of the disk (what was written, zeroed, trimmed)
 *                      2: two connections of one client at once
 *                      3: two connections one after the other, the
 *                         overlay closed in between (then reopened from
 *                         its files, journal replayed)
 *            bit 5     the connections of modes 2 and 3 get different
 *                      streams (see below), else the same one
 *            bit 6     mode 3: the overlay stays open in between
 *            bit 7     mode 3: the base images' mtime changes in between
 *   byte 1   n, the number of piece descriptors that follow
 *   2n bytes piece descriptors (size, action): size 0 means the rest,
 *            1-191 that many bytes, 192-255 (size - 191) * 4 KiB;
 *            action bits 0-1: complete all I/O in order, none, all in
 *            reverse order, or the oldest only; bits 2-3: the first
 *            completion is normal, short, -EIO or -ENOSPC; bit 4: the
 *            piece goes to the second connection (mode 2); bit 5: then
 *            that client goes away, with its I/O still in flight; bit 6:
 *            then the janitor looks for idle overlays
 *   the rest the client's byte stream (after the server's greeting); with
 *            bit 5 of byte 0, a 16-bit big-endian length, the first
 *            connection's stream of that length, the second one's
 *
 * Besides the sanitizers, the target checks what the server promises:
 * every reply is well formed, every request is answered (no count left
 * in flight once all I/O completed), no descriptor leaks, and in mode 1
 * reads return what the model says and BLOCK_STATUS never calls data
 * zero that is not.
 */
#include <config.h>

#include <dirent.h>
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "fuzz.h"
#include "log.h"
#include "nbdsrv.h"

#define FUZZ_IMAGE_SIZE ((1u << 20) + 1000) /* a partial last block */
#define FUZZ_STORE_IMAGE_SIZE ((64u << 10) + 100)

static char tmpdir[PATH_MAX];
static char images[2][PATH_MAX + 64];
static char overlay_dir[PATH_MAX];

static void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

static void
fail(const char *fmt, ...)
{
  va_list ap;

  fputs("fuzz_protocol: ", stderr);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
  abort();
}

/* ---- the stand-in for loop.c, ring.c, conn.c and output.c ---- */

static struct worker worker;

/* SQEs handed out and not completed yet, oldest first. */
static struct io_uring_sqe *sqes;
static size_t nsqes, cap_sqes;

struct io_uring_sqe *
loop_get_sqe(struct worker *w)
{
  (void)w;
  if (nsqes == cap_sqes) {
    /* The caller fills the entry before it asks for the next one, so
     * moving the array is fine. */
    cap_sqes = cap_sqes ? cap_sqes * 2 : 64;
    sqes = realloc(sqes, cap_sqes * sizeof *sqes);
    if (!sqes)
      fail("out of memory");
  }
  memset(&sqes[nsqes], 0, sizeof *sqes);
  return &sqes[nsqes++];
}

uint64_t
loop_req_data(struct request *r, unsigned seg)
{
  return (uint64_t)(uintptr_t)r | (uint64_t)seg << 48;
}

void
conn_recv_more(struct conn *c)
{
  (void)c;
}

int
conn_pipe(struct conn *c)
{
  (void)c;
  return 0;
}

struct conn *
conn_alloc(struct worker *w, int fd)
{
  /* As conn.c, less the socket's slot. */
  struct conn *c = calloc(1, sizeof *c);

  if (!c)
    return NULL;
  c->w = w;
  c->fd = fd;
  c->out_tail = &c->out_head;
  c->connected = time(NULL);
  c->max_request = config.max_request;
  return c;
}

/* Connections closed in the transmission phase: the replies to their
 * requests in flight still come (conn_queue checks them as such). */
static const struct conn *closed_transmitting[2];

static bool
transmitting(const struct conn *c)
{
  if (c->stage == CONN_TRANSMISSION || c->stage == CONN_DRAINING)
    return true;
  return c == closed_transmitting[0] || c == closed_transmitting[1];
}

void
conn_close(struct conn *c, const char *why)
{
  (void)why;
  /* As conn.c, less the socket and the ring. */
  if (transmitting(c) && c != closed_transmitting[0] && c != closed_transmitting[1])
    closed_transmitting[closed_transmitting[0] ? 1 : 0] = c;
  conn_enter(c, CONN_CLOSED);
}

/* ---- attach.c's stand-in ---- */

/* The overlay is opened for real (overlay_acquire), but, as in nbdsrv
 * when it is not open yet, only later: at the next completion of I/O, so
 * that what the client sends in between is kept and fed in afterwards.
 * In mode 1 it is opened at once (one unit at a time). */
static struct pending_attach {
  struct conn *c;
  const struct export *exp;
  struct export_request req;
} pending_attach[2];
static unsigned npending_attach;
static bool attach_at_once;

int
attach_begin(struct conn *c, const struct export *exp, const struct export_request *req,
             const char **why)
{
  if (overlay_lookup(exp, req->id, req->boot_id, c->peer, &c->ovl) == 0 || attach_at_once)
    return c->ovl
               ? 0
               : overlay_acquire(exp, req->id, req->boot_id, c->peer, NULL, &c->ovl, why);
  if (npending_attach == 2)
    fail("more connections wait for their overlay than there are");
  pending_attach[npending_attach++] = (struct pending_attach){ c, exp, *req };
  return 1;
}

bool
attach_waiting(const struct export *exp, const char *id)
{
  for (unsigned i = 0; i < npending_attach; i++)
    if (!strcmp(pending_attach[i].exp->name, exp->name) &&
        !strcmp(pending_attach[i].req.id, id))
      return true;
  return false;
}

/* Given up on (attach-timeout): its pending attach, if any, is finished
 * for nobody (handshake_attached looks at the stage). */
void
attach_cancel(struct conn *c)
{
  (void)c;
}

/* The janitor runs between units, never during an attach here, so no
 * overlay_acquire() finds an overlay closing: nothing waits for this. */
void
attach_overlay_closed(void)
{
}

static const struct janitor_hooks janitor_hooks = {
  .waiting = attach_waiting,
  .closed = attach_overlay_closed,
};

static void
attach_finish(void)
{
  while (npending_attach > 0) {
    struct pending_attach a = pending_attach[0];
    const char *why = NULL;
    int r;

    pending_attach[0] = pending_attach[1];
    npending_attach--;
    r = overlay_acquire(a.exp, a.req.id, a.req.boot_id, a.c->peer, NULL, &a.c->ovl, &why);
    if (a.c->stage == CONN_CLOSED)
      continue; /* the overlay goes with the connection */
    handshake_attached(a.c, a.req.id, r, why);
    if (a.c->stage != CONN_CLOSED)
      conn_input_resume(a.c);
  }
}

/* ---- the model of the disk (mode 1) ---- */

static struct {
  bool on;
  bool loaded;
  uint64_t size;
  unsigned char *data;
  unsigned char *known; /* 0: trimmed, anything may be read */
} model;

static void
model_load(struct conn *c)
{
  ssize_t n;

  if (!model.on || model.loaded || !c->ovl)
    return;
  model.loaded = true;
  model.size = c->size;
  model.data = calloc(1, c->size + 1);
  model.known = malloc(c->size + 1);
  if (!model.data || !model.known)
    fail("out of memory");
  memset(model.known, 1, c->size);
  /* A new overlay: the disk is the base image. */
  n = pread(c->ovl->base->fd, model.data, c->size, 0);
  if (n < 0)
    fail("cannot read the base image: %s", strerror(errno));
}

static void
model_free(void)
{
  free(model.data);
  free(model.known);
  memset(&model, 0, sizeof model);
}

static void
check_against_model(const struct request *r, const unsigned char *buf, uint64_t off,
                    uint64_t len)
{
  for (uint64_t i = 0; i < len; i++)
    if (model.known[off + i] && buf[i] != model.data[off + i])
      fail("read of %u at %llu: byte %llu is 0x%02x, wrote 0x%02x", r->count,
           (unsigned long long)r->offset, (unsigned long long)(off + i), buf[i],
           model.data[off + i]);
}

/* The data of a successful read: in memory, or in the files it will be
 * spliced from. */
static void
check_read_data(const struct request *r, const struct outmsg *m, const void *payload)
{
  uint64_t total = 0;

  if (payload) {
    if (model.on)
      check_against_model(r, payload, r->offset, r->count);
    return;
  }
  for (unsigned i = 0; i < m->nsplice; i++) {
    const struct segment *s = &m->splice_segs[i];
    unsigned char *buf;

    if (s->buf_off != total)
      fail("splice segments not contiguous");
    total += s->len;
    if (!model.on)
      continue;
    buf = calloc(1, s->len + 1);
    if (!buf)
      fail("out of memory");
    if (s->fd >= 0 && pread(s->fd, buf, s->len, s->file_off) < 0)
      fail("pread of a splice segment: %s", strerror(errno));
    check_against_model(r, buf, r->offset + s->buf_off, s->len);
    free(buf);
  }
  if (total != r->count)
    fail("read of %u: spliced segments hold %llu bytes", r->count,
         (unsigned long long)total);
}

static void
check_block_status(const struct conn *c, const struct request *r, const unsigned char *p,
                   size_t len)
{
  uint64_t pos = r->offset, sum = 0;
  size_t n = len / 8;

  if (len % 8 || n == 0)
    fail("BLOCK_STATUS reply with %zu bytes of descriptors", len);
  if ((r->flags & NBD_CMD_FLAG_REQ_ONE) && n != 1)
    fail("BLOCK_STATUS with REQ_ONE got %zu descriptors", n);
  for (size_t i = 0; i < n; i++) {
    uint32_t l, f;
    memcpy(&l, p + 8 * i, 4);
    memcpy(&f, p + 8 * i + 4, 4);
    l = be32toh(l);
    f = be32toh(f);
    if (l == 0)
      fail("BLOCK_STATUS descriptor %zu has length 0", i);
    if (i + 1 < n && sum + l >= r->count)
      fail("BLOCK_STATUS descriptors go past the request before the last");
    sum += l;
    if (pos + l > c->size)
      fail("BLOCK_STATUS descriptor past the end of the export");
    if (model.on && (f & NBD_STATE_ZERO))
      for (uint64_t b = pos; b < pos + l; b++)
        if (model.known[b] && model.data[b])
          fail("BLOCK_STATUS says zero at %llu, but it holds 0x%02x",
               (unsigned long long)b, model.data[b]);
    pos += l;
  }
  if ((r->flags & NBD_CMD_FLAG_REQ_ONE) && sum > r->count)
    fail("BLOCK_STATUS with REQ_ONE: descriptor longer than the request");
}

/* What the model learns from a successful request. */
static void
model_update(const struct request *r)
{
  if (!model.on || !model.loaded)
    return;
  switch (r->type) {
    case NBD_CMD_WRITE:
      if (r->chunked) {
        /* Only the last chunk is still in buf: the ones before are not
       * known here, and may read as anything. */
        memset(model.known + r->offset, 0, r->chunk_at);
        memcpy(model.data + r->offset + r->chunk_at, r->buf, r->chunk_len);
        memset(model.known + r->offset + r->chunk_at, 1, r->chunk_len);
        break;
      }
      memcpy(model.data + r->offset, r->buf, r->count);
      memset(model.known + r->offset, 1, r->count);
      break;
    case NBD_CMD_WRITE_ZEROES:
      memset(model.data + r->offset, 0, r->count);
      memset(model.known + r->offset, 1, r->count);
      break;
    case NBD_CMD_TRIM:
      /* After a trim the protocol allows anything to be read. */
      memset(model.known + r->offset, 0, r->count);
      break;
  }
}

/* Reads every byte of an iovec, so that the sanitizer sees a reply that
 * points at freed or too little memory. */
static unsigned
touch(const struct iovec *v)
{
  const unsigned char *p = v->iov_base;
  unsigned sum = 0;

  for (size_t i = 0; i < v->iov_len; i++)
    sum += p[i];
  return sum;
}

static volatile unsigned touched;

/* Successful requests by type (for the self-test). */
static unsigned succeeded[8];

static void
check_option_reply(const struct outmsg *m)
{
  size_t len = m->iov[0].iov_len;
  struct nbd_fixed_new_option_reply h;

  if (m->niov < 1 || m->niov > 2 || len > sizeof m->hdr)
    fail("handshake message with %u iovecs, header of %zu bytes", m->niov, len);
  if (len != sizeof h)
    return; /* the greeting, or the reply to NBD_OPT_EXPORT_NAME */
  memcpy(&h, m->hdr, sizeof h);
  if (be64toh(h.magic) != NBD_REP_MAGIC)
    return;
  if (be32toh(h.replylen) != (m->niov == 2 ? m->iov[1].iov_len : 0))
    fail("option reply length %u, but %zu bytes follow", be32toh(h.replylen),
         m->niov == 2 ? m->iov[1].iov_len : 0);
}

static void
check_request_reply(struct conn *c, struct outmsg *m)
{
  struct request *r = container_of(m, struct request, out);
  uint32_t magic;
  size_t follows = 0;

  if (r->c != c)
    fail("reply queued on another connection");
  if (m->niov < 1 || m->niov > 2)
    fail("reply with %u iovecs", m->niov);
  for (unsigned i = 1; i < m->niov; i++)
    follows += m->iov[i].iov_len;
  for (unsigned i = 0; i < m->nsplice; i++)
    follows += m->splice_segs[i].len;
  memcpy(&magic, m->hdr, 4);
  magic = be32toh(magic);
  if (magic == NBD_SIMPLE_REPLY_MAGIC) {
    struct nbd_simple_reply h;
    memcpy(&h, m->hdr, sizeof h);
    if (m->iov[0].iov_len != sizeof h || be64toh(h.cookie) != r->cookie)
      fail("malformed simple reply");
    if (c->structured && (r->type == NBD_CMD_READ || r->type == NBD_CMD_BLOCK_STATUS))
      fail("simple reply to a read after structured replies were agreed");
    if (model.on && (h.error == htobe32(NBD_EIO) || h.error == htobe32(NBD_ENOMEM)))
      fail("request type %u failed with error %u though no I/O failed", r->type,
           be32toh(h.error));
    if (r->type == NBD_CMD_READ && !h.error) {
      if (follows != r->count)
        fail("read of %u answered with %zu bytes", r->count, follows);
      check_read_data(r, m, m->niov == 2 ? m->iov[1].iov_base : NULL);
    } else if (follows) {
      fail("simple reply of type %u carries %zu bytes", r->type, follows);
    }
    if (!h.error) {
      model_update(r);
      succeeded[r->type & 7]++;
    }
  } else if (magic == NBD_STRUCTURED_REPLY_MAGIC) {
    struct nbd_structured_reply h;
    memcpy(&h, m->hdr, sizeof h);
    if (!c->structured || be64toh(h.cookie) != r->cookie ||
        be16toh(h.flags) != NBD_REPLY_FLAG_DONE || m->iov[0].iov_len < sizeof h ||
        be32toh(h.length) != m->iov[0].iov_len - sizeof h + follows)
      fail("malformed structured reply");
    switch (be16toh(h.type)) {
      case NBD_REPLY_TYPE_ERROR:
        if (follows || m->iov[0].iov_len != sizeof h + 6)
          fail("malformed error chunk");
        break;
      case NBD_REPLY_TYPE_OFFSET_DATA:
        if (r->type != NBD_CMD_READ || follows != r->count)
          fail("data chunk of %zu bytes for a request of type %u, %u bytes", follows,
               r->type, r->count);
        check_read_data(r, m, m->niov == 2 ? m->iov[1].iov_base : NULL);
        break;
      case NBD_REPLY_TYPE_BLOCK_STATUS:
        if (r->type != NBD_CMD_BLOCK_STATUS || m->niov != 2)
          fail("block status chunk for a request of type %u", r->type);
        check_block_status(c, r, m->iov[1].iov_base, m->iov[1].iov_len);
        break;
      default: fail("structured reply chunk of type %u", be16toh(h.type));
    }
  } else {
    fail("reply with magic 0x%08x", magic);
  }
}

void
conn_queue(struct conn *c, struct outmsg *m)
{
  unsigned sum = 0;

  if (transmitting(c)) {
    /* Only requests are answered in the transmission phase. */
    model_load(c);
    check_request_reply(c, m);
  } else {
    check_option_reply(m);
  }
  for (unsigned i = m->iov_first; i < m->niov; i++)
    sum += touch(&m->iov[i]);
  touched += sum;
  budget_msg_give(c, m);
  m->free(m);
}

/* ---- completing the I/O ---- */

enum fault { FAULT_NONE, FAULT_SHORT, FAULT_EIO, FAULT_ENOSPC };

static int
do_io(const struct io_uring_sqe *sqe, enum fault fault)
{
  void *buf = (void *)(uintptr_t)sqe->addr;
  size_t len = sqe->len;
  ssize_t n;

  if (fault == FAULT_EIO)
    return -EIO;
  if (fault == FAULT_ENOSPC)
    return -ENOSPC;
  if (fault == FAULT_SHORT)
    len /= 2; /* 0 for a 1-byte read: what the end of a file returns */
  switch (sqe->opcode) {
    case IORING_OP_READ: n = pread(sqe->fd, buf, len, (off_t)sqe->off); break;
    case IORING_OP_WRITE: n = pwrite(sqe->fd, buf, len, (off_t)sqe->off); break;
    case IORING_OP_FSYNC:
      /* The files are on a tmpfs: nothing to wait for. */
      if (fcntl(sqe->fd, F_GETFD) < 0)
        return -errno;
      return 0;
    default: fail("unexpected io_uring opcode %u", sqe->opcode);
  }
  return n < 0 ? -errno : (int)n;
}

static void complete_io(unsigned how, enum fault fault);

/* Completes one SQE (index i), which may queue more. */
static void
complete_one(size_t i, enum fault fault)
{
  struct io_uring_sqe sqe = sqes[i];
  struct request *r;
  int res;

  memmove(&sqes[i], &sqes[i + 1], (nsqes - i - 1) * sizeof *sqes);
  nsqes--;
  res = do_io(&sqe, fault);
  r = (struct request *)(uintptr_t)(sqe.user_data & 0x0000ffffffffffffull);
  transmit_io_done(r, (unsigned)(sqe.user_data >> 48), res);
}

enum { DONE_ALL, DONE_NONE, DONE_ALL_REVERSED, DONE_OLDEST };

/* The connections alive, whose input kept over their budget is fed once
 * completions let them take it (loop.c's settle()). */
static struct conn *live[2];

static void
resume_kept(void)
{
  for (unsigned k = 0; k < 2; k++)
    if (live[k] && input_kept(live[k]) &&
        (!budget_full(live[k]) || input_mid_unit(live[k])))
      conn_input_resume(live[k]);
}

static void
complete(unsigned how, enum fault fault)
{
  if (how != DONE_NONE)
    attach_finish();
  complete_io(how, fault);
  resume_kept();
}

static void
complete_io(unsigned how, enum fault fault)
{
  switch (how) {
    case DONE_NONE: return;
    case DONE_OLDEST:
      if (nsqes)
        complete_one(0, fault);
      return;
    case DONE_ALL:
      while (nsqes) {
        complete_one(0, fault);
        fault = FAULT_NONE;
      }
      return;
    case DONE_ALL_REVERSED:
      while (nsqes) {
        complete_one(nsqes - 1, fault);
        fault = FAULT_NONE;
      }
      return;
  }
}

/* ---- connections ---- */

static const char *const peers[] = { "192.0.2.10", "192.0.2.66", "2001:db8::7",
                                     "unknown" };

static struct conn *
fuzz_conn_new(unsigned peer)
{
  struct conn *c = conn_alloc(&worker, -1);

  if (!c)
    fail("out of memory");
  snprintf(c->peer, sizeof c->peer, "%s", peers[peer & 3]);
  if (limits_enter(c->peer))
    fail("connection limits reached: connections were not counted out");
  c->counted = true;
  live[live[0] ? 1 : 0] = c;
  handshake_start(c);
  return c;
}

/* The client went away (or the input ended): close, let every operation
 * in flight finish, then free, as loop.c does. */
static void
conn_end(struct conn *c)
{
  conn_close(c, NULL);
  complete(DONE_ALL, FAULT_NONE);
  /* A write whose payload did not all come was never handed on; conn.c
   * frees it with the connection. */
  if (c->inflight_reqs || c->out_head ||
      c->held != (c->in.cur ? c->in.cur->out.held : 0) +
                     (c->in.stash_len - c->in.stash_off) +
                     (c->in.opt_data ? c->in.need + 1 : 0))
    fail("after all I/O completed: %u requests, %zu bytes still held", c->inflight_reqs,
         c->held);
  budget_give(c, c->held);
  for (unsigned k = 0; k < 2; k++)
    if (live[k] == c)
      live[k] = NULL;
  if (c->in.cur) {
    free(c->in.cur->buf);
    free(c->in.cur);
  }
  for (unsigned i = 0; i < 2; i++)
    if (closed_transmitting[i] == c)
      closed_transmitting[i] = NULL;
  free(c->in.opt_data);
  free(c->in.stash);
  if (c->ovl)
    overlay_release(c->ovl);
  if (c->counted)
    limits_leave(c->peer);
  free(c);
}

/* Mode 1: one unit at a time, all I/O completed after each. */
static void
run_serial(unsigned peer, const char *p, size_t len)
{
  struct conn *c = fuzz_conn_new(peer);

  model.on = true;
  attach_at_once = true;
  while (len > 0 && conn_reads(c)) {
    size_t n = input_need(c);
    if (n == 0 || n > len)
      n = len;
    conn_input(c, p, n);
    complete(DONE_ALL, FAULT_NONE);
    p += n;
    len -= n;
  }
  conn_end(c);
  model_free();
  attach_at_once = false;
}

struct piece {
  unsigned size, action;
};

/* A client's byte stream. */
struct stream {
  const char *p;
  size_t len;
};

static void
run_pieces(unsigned peer, unsigned nconn, const struct piece *pieces, size_t npieces,
           const struct stream *st)
{
  struct conn *c[2] = { fuzz_conn_new(peer), nconn > 1 ? fuzz_conn_new(peer) : NULL };
  size_t pos[2] = { 0, 0 };

  for (size_t i = 0; i < npieces; i++) {
    unsigned action = pieces[i].action;
    unsigned k = nconn > 1 && (action & 0x10) ? 1 : 0;
    size_t n = st[k].len - pos[k], want = pieces[i].size;

    if (want >= 192)
      want = (want - 191) << 12;
    if (want && want < n)
      n = want;
    if (n > 0)
      conn_input(c[k], st[k].p + pos[k], n);
    pos[k] += n;
    complete(action & 3, (enum fault)((action >> 2) & 3));
    if (action & 0x20)
      conn_close(c[k], NULL); /* the client goes away, I/O in flight */
    if (action & 0x40)
      overlay_janitor(false, &janitor_hooks);
  }
  /* The rest of each stream in one piece; what is still in flight then
   * completes only after the connection closed. */
  for (unsigned k = 0; k < nconn; k++)
    if (pos[k] < st[k].len)
      conn_input(c[k], st[k].p + pos[k], st[k].len - pos[k]);
  conn_end(c[0]);
  if (c[1])
    conn_end(c[1]);
}

/* ---- set-up and clean-up ---- */

/* An image of size bytes: data in some blocks, holes in the others. */
static void
make_image(const char *path, uint64_t size, unsigned seed)
{
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  unsigned char block[OVL_BLOCK_SIZE];

  if (fd < 0 || ftruncate(fd, (off_t)size) < 0)
    fail("cannot create %s: %s", path, strerror(errno));
  for (uint64_t b = 0; b * OVL_BLOCK_SIZE < size; b++) {
    uint64_t off = b * OVL_BLOCK_SIZE;
    size_t n = size - off < OVL_BLOCK_SIZE ? size - off : OVL_BLOCK_SIZE;
    if (b >= 64 && (b * 7 + seed) % 5 >= 3)
      continue; /* a hole (the first 256 KiB have none: cached reads) */
    for (size_t i = 0; i < n; i++)
      block[i] = (unsigned char)(b * 31 + i * 7 + seed) | 1;
    if (pwrite(fd, block, n, (off_t)off) != (ssize_t)n)
      fail("cannot write %s: %s", path, strerror(errno));
  }
  close(fd);
}

/* A new mtime for the base images: overlays made on them are stale. */
static void
touch_images(void)
{
  for (unsigned i = 0; i < 2; i++) {
    struct stat st;
    struct timespec ts[2];

    if (stat(images[i], &st) < 0)
      fail("stat %s: %s", images[i], strerror(errno));
    ts[0] = st.st_atim;
    ts[1] = st.st_mtim;
    ts[1].tv_sec++;
    if (utimensat(AT_FDCWD, images[i], ts, 0) < 0)
      fail("utimensat %s: %s", images[i], strerror(errno));
  }
}

static void
cleanup(void)
{
  if (tmpdir[0])
    fuzz_rm_rf(tmpdir);
}

/* Descriptors open on our files (images, overlays, their directories):
 * none once every connection closed and the janitor ran.  (libFuzzer and
 * the sanitizers open pipes of their own now and then: not counted.)
 * Reports each of them when report is set. */
static int
open_files(bool report)
{
  DIR *d = opendir("/proc/self/fd");
  struct dirent *e;
  size_t len = strlen(tmpdir);
  int n = 0;

  if (!d)
    fail("cannot read /proc/self/fd: %s", strerror(errno));
  while ((e = readdir(d))) {
    char path[300], target[PATH_MAX];
    ssize_t r;

    if (e->d_name[0] == '.')
      continue;
    snprintf(path, sizeof path, "/proc/self/fd/%s", e->d_name);
    r = readlink(path, target, sizeof target - 1);
    if (r <= 0)
      continue;
    target[r] = '\0';
    if (strncmp(target, tmpdir, len) != 0)
      continue;
    n++;
    if (report)
      fprintf(stderr, "fuzz_protocol: fd %s open on %s\n", e->d_name, target);
  }
  closedir(d);
  return n;
}

static size_t
put_be(unsigned char *p, uint64_t v, unsigned n)
{
  for (unsigned i = 0; i < n; i++)
    p[i] = (unsigned char)(v >> (8 * (n - 1 - i)));
  return n;
}

static size_t
put_request(unsigned char *p, uint16_t type, uint64_t off, uint32_t count)
{
  size_t n = put_be(p, NBD_REQUEST_MAGIC, 4);

  n += put_be(p + n, 0, 2);
  n += put_be(p + n, type, 2);
  n += put_be(p + n, 1, 8);
  n += put_be(p + n, off, 8);
  n += put_be(p + n, count, 4);
  return n;
}

/* One plain session (GO, a write, a read of it, a flush) must succeed:
 * else the stand-in for loop.c no longer sets a connection up the way
 * loop.c does, and the target would fuzz nothing but error paths. */
static void
self_test(void)
{
  static unsigned char s[256 + 4096];
  size_t n = put_be(s, 3, 4);

  memcpy(s + n, "IHAVEOPT", 8);
  n += 8;
  n += put_be(s + n, NBD_OPT_GO, 4);
  n += put_be(s + n, 10, 4);
  n += put_be(s + n, 4, 4);
  memcpy(s + n, "root", 4);
  n += 4;
  n += put_be(s + n, 0, 2);
  n += put_request(s + n, NBD_CMD_WRITE, 4096, 4096);
  for (unsigned i = 0; i < 4096; i++)
    s[n++] = (unsigned char)(i * 7 + 1);
  n += put_request(s + n, NBD_CMD_READ, 0, 8192);
  n += put_request(s + n, NBD_CMD_FLUSH, 0, 0);
  run_serial(0, (const char *)s, n);
  overlay_janitor(true, &janitor_hooks);
  fuzz_rm_rf(overlay_dir);
  if (succeeded[NBD_CMD_WRITE] != 1 || succeeded[NBD_CMD_READ] != 1 ||
      succeeded[NBD_CMD_FLUSH] != 1)
    fail("self-test: a plain session failed (%u writes, %u reads, %u "
         "flushes succeeded): does fuzz_conn_new() still set a connection up "
         "as loop.c does?",
         succeeded[NBD_CMD_WRITE], succeeded[NBD_CMD_READ], succeeded[NBD_CMD_FLUSH]);
}

int LLVMFuzzerInitialize(int *argc, char ***argv);

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
  char path[PATH_MAX + 64], image[PATH_MAX + 64], store[PATH_MAX + 64];
  FILE *f;
  const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : NULL;

  (void)argc;
  (void)argv;
  if (!base)
    base = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
  snprintf(tmpdir, sizeof tmpdir, "%s/fuzz_protocol.XXXXXX", base);
  if (!mkdtemp(tmpdir))
    fail("mkdtemp %s: %s", tmpdir, strerror(errno));
  atexit(cleanup);
  log_verbosity = getenv("FUZZ_VERBOSE") ? LOG_DEBUG : -1;

  snprintf(image, sizeof image, "%s/base.img", tmpdir);
  make_image(image, FUZZ_IMAGE_SIZE, 1);
  snprintf(images[0], sizeof images[0], "%s", image);
  snprintf(store, sizeof store, "%s/store", tmpdir);
  if (mkdir(store, 0700) < 0)
    fail("mkdir %s: %s", store, strerror(errno));
  snprintf(path, sizeof path, "%s/0001.img", store);
  make_image(path, FUZZ_STORE_IMAGE_SIZE, 2);
  snprintf(images[1], sizeof images[1], "%s", path);
  snprintf(path, sizeof path, "%s/current", store);
  if (symlink("0001.img", path) < 0)
    fail("symlink %s: %s", path, strerror(errno));
  snprintf(overlay_dir, sizeof overlay_dir, "%s/overlays", tmpdir);

  snprintf(path, sizeof path, "%s/nbdsrv.conf", tmpdir);
  f = fopen(path, "w");
  if (!f)
    fail("cannot write %s: %s", path, strerror(errno));
  fprintf(f,
          "[generic]\n"
          "overlay-dir = %s\n"
          "max-request = 1M\n"
          "[root]\n"
          "image = %s\n"
          "description = the root image\n"
          "[ro]\n"
          "image = %s\n"
          "readonly = yes\n"
          "[small]\n"
          "image = %s\n"
          "policy = ephemeral\n"
          "quota = 16K\n"
          "[lab]\n"
          "image = %s\n"
          "policy = reset-on-boot\n"
          "allow = 192.0.2.0/24, 2001:db8::/32\n"
          "deny = 192.0.2.66\n"
          "pin = lab-01 192.0.2.10, 2001:db8::7\n"
          "require-pin = yes\n"
          "[open]\n"
          "image = %s\n"
          "max-overlays = 3\n"
          "max-overlays-per-address = 1\n"
          "max-overlay-space-per-address = 64K\n",
          overlay_dir, image, image, store, image, image);
  if (fclose(f) != 0)
    fail("cannot write %s", path);
  if (config_file_parse(path) < 0)
    fail("the generated config file does not parse");
  /* Idle overlays close at once, ephemeral ones are dropped at once. */
  config.idle_close = 0;
  config.ephemeral_linger = 0;
  self_test();
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  struct piece pieces[256];
  struct stream st[2];
  unsigned flags, mode, npieces;
  const char *p;
  size_t len;

  if (size < 2)
    return 0;
  flags = data[0];
  npieces = data[1];
  if (size < 2 + 2 * (size_t)npieces)
    return -1;
  for (unsigned i = 0; i < npieces; i++)
    pieces[i] = (struct piece){ data[2 + 2 * i], data[3 + 2 * i] };
  p = (const char *)data + 2 + 2 * npieces;
  len = size - 2 - 2 * npieces;
  mode = (flags >> 3) & 3;
  worker.can_splice = (flags & 4) && pagecache_supported();
  st[0] = st[1] = (struct stream){ p, len };
  if ((flags & 0x20) && len >= 2) {
    /* Two different streams: the first one's length, then both. */
    size_t n = (unsigned char)p[0] << 8 | (unsigned char)p[1];
    if (n > len - 2)
      n = len - 2;
    st[0] = (struct stream){ p + 2, n };
    st[1] = (struct stream){ p + 2 + n, len - 2 - n };
  }

  switch (mode) {
    case 0: run_pieces(flags & 3, 1, pieces, npieces, st); break;
    case 1: run_serial(flags & 3, p, len); break;
    case 2: run_pieces(flags & 3, 2, pieces, npieces, st); break;
    case 3:
      run_pieces(flags & 3, 1, pieces, npieces, &st[0]);
      /* Closes the idle overlay (an ephemeral one is dropped), so the
     * second connection opens it from its files. */
      if (!(flags & 0x40))
        overlay_janitor(false, &janitor_hooks);
      if (flags & 0x80)
        touch_images();
      run_pieces(flags & 3, 1, pieces, npieces, &st[1]);
      break;
  }
  if (nsqes)
    fail("%zu I/O operations left", nsqes);
  overlay_janitor(true, &janitor_hooks);
  fuzz_rm_rf(overlay_dir);
  if (open_files(false) > 0) {
    open_files(true);
    fail("descriptors left open after the input");
  }
  return 0;
}
