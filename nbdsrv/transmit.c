/* SPDX-License-Identifier: GPL-2.0-or-later */
/* nbdsrv: the transmission phase: requests, file I/O and replies.
 *
 * A request's life: it comes whole (input.c decoded its header and took
 * a write's payload) to transmit_request, which dispatches it; a write
 * longer than NBDSRV_CHUNK comes chunk by chunk to transmit_write_chunk,
 * which writes each before input.c takes the next, and replies once the
 * last is written.  Reads longer than a chunk that are not spliced are
 * read chunk by chunk while their reply is sent (output.c).
 * Reads are planned against the client's overlay map and become one
 * io_uring read per run of blocks with the same source (base image,
 * overlay data, or zeroes needing no I/O).  Whole-block writes go to the
 * overlay data file through io_uring; partial-block writes, TRIM and
 * WRITE_ZEROES run in overlay.c under the overlay's lock.  FLUSH and FUA
 * chain fdatasync(data) -> journal append -> fdatasync(map).  Replies are
 * queued as soon as a request completes, so they may leave out of order.
 *
 * Invalid requests get an error reply (EINVAL, EPERM, EOVERFLOW...) and
 * the connection goes on (a broken framing, which ends it, is input.c's
 * to find).  A write that finds no room
 * (the export's quota, or a full overlay file system) is logged, with a
 * rate limit: it is the one error that is the admin's to fix.
 */
#include <config.h>

#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "nbdsrv.h"
#include "util.h"

#define BLOCK_STATUS_MAX_DESC 1024

static struct log_limit quota_log = LOG_LIMIT(LOG_WARNING, "writes over quota");
static struct log_limit full_log =
    LOG_LIMIT(LOG_ERR, "writes to a full overlay file system");

static void
request_free(struct outmsg *m)
{
  struct request *r = container_of(m, struct request, out);

  free(r->buf);
  free(r->segs);
  free(r);
}

static uint32_t
nbd_errno(int err)
{
  switch (err) {
    case 0: return 0;
    case EPERM:
    case EROFS: return NBD_EPERM;
    case ENOSPC:
    case EDQUOT: return NBD_ENOSPC;
    case EINVAL: return NBD_EINVAL;
    case ENOMEM: return NBD_ENOMEM;
    case EOVERFLOW: return NBD_EOVERFLOW;
    case ENOTSUP: return NBD_ENOTSUP;
    case ESHUTDOWN: return NBD_ESHUTDOWN;
    default: return NBD_EIO;
  }
}

/* A read's data: in r->buf, or still in the files (spliced, or read in
 * chunks, on sending). */
static void
attach_payload(struct request *r)
{
  struct outmsg *m = &r->out;

  if (r->buf) {
    m->iov[1] = (struct iovec){ r->buf, r->count };
    m->niov = 2;
  } else {
    m->splice_segs = r->segs;
    m->nsplice = r->nsegs;
    m->stream = r->stream;
  }
}

/* Queues the reply of r; r and possibly its connection may be gone after. */
void
request_reply(struct request *r)
{
  struct conn *c = r->c;
  struct outmsg *m = &r->out;
  bool structured =
      c->structured && (r->type == NBD_CMD_READ || r->type == NBD_CMD_BLOCK_STATUS);

  m->free = request_free;
  m->niov = 1;
  if (!structured) {
    struct nbd_simple_reply h = {
      .magic = htobe32(NBD_SIMPLE_REPLY_MAGIC),
      .error = htobe32(r->error),
      .cookie = htobe64(r->cookie),
    };
    memcpy(m->hdr, &h, sizeof h);
    m->iov[0] = (struct iovec){ m->hdr, sizeof h };
    if (r->type == NBD_CMD_READ && !r->error)
      attach_payload(r);
  } else if (r->error) {
    struct nbd_structured_reply h = {
      .magic = htobe32(NBD_STRUCTURED_REPLY_MAGIC),
      .flags = htobe16(NBD_REPLY_FLAG_DONE),
      .type = htobe16(NBD_REPLY_TYPE_ERROR),
      .cookie = htobe64(r->cookie),
      .length = htobe32(6),
    };
    uint32_t e = htobe32(r->error);
    memcpy(m->hdr, &h, sizeof h);
    memcpy(m->hdr + sizeof h, &e, 4);
    memset(m->hdr + sizeof h + 4, 0, 2); /* no message */
    m->iov[0] = (struct iovec){ m->hdr, sizeof h + 6 };
  } else if (r->type == NBD_CMD_READ) {
    struct nbd_structured_reply h = {
      .magic = htobe32(NBD_STRUCTURED_REPLY_MAGIC),
      .flags = htobe16(NBD_REPLY_FLAG_DONE),
      .type = htobe16(NBD_REPLY_TYPE_OFFSET_DATA),
      .cookie = htobe64(r->cookie),
      .length = htobe32(8 + r->count),
    };
    uint64_t off = htobe64(r->offset);
    memcpy(m->hdr, &h, sizeof h);
    memcpy(m->hdr + sizeof h, &off, 8);
    m->iov[0] = (struct iovec){ m->hdr, sizeof h + 8 };
    attach_payload(r);
  } else { /* BLOCK_STATUS: r->buf holds the descriptors, r->desc_len their bytes */
    struct nbd_structured_reply h = {
      .magic = htobe32(NBD_STRUCTURED_REPLY_MAGIC),
      .flags = htobe16(NBD_REPLY_FLAG_DONE),
      .type = htobe16(NBD_REPLY_TYPE_BLOCK_STATUS),
      .cookie = htobe64(r->cookie),
      .length = htobe32(4 + r->desc_len),
    };
    uint32_t id = htobe32(1);
    memcpy(m->hdr, &h, sizeof h);
    memcpy(m->hdr + sizeof h, &id, 4);
    m->iov[0] = (struct iovec){ m->hdr, sizeof h + 4 };
    m->iov[1] = (struct iovec){ r->buf, r->desc_len };
    m->niov = 2;
  }
  c->inflight_reqs--;
  conn_queue(c, m);
}

static bool
no_space(int err)
{
  return err == ENOSPC || err == EDQUOT;
}

/* "write of 4096 bytes at 8192", for the log. */
static void
describe(const struct request *r, char *buf, size_t len)
{
  static const char *const names[] = {
    [NBD_CMD_WRITE] = "write",
    [NBD_CMD_TRIM] = "trim",
    [NBD_CMD_WRITE_ZEROES] = "write zeroes",
  };
  const char *name =
      r->type < ARRAY_SIZE(names) && names[r->type] ? names[r->type] : NULL;

  if (name)
    snprintf(buf, len, "%s of %u bytes at %llu", name, r->count,
             (unsigned long long)r->offset);
  else
    snprintf(buf, len, "%s", r->type == NBD_CMD_FLUSH ? "flush" : "request");
}

/* r found no room: EDQUOT is the export's quota (overlay_quota_check) or
 * a quota the file system keeps, ENOSPC a full file system. */
static void
log_no_space(const struct request *r, int err)
{
  const struct overlay *ov = r->c->ovl;
  uint64_t quota = ov->exp->quota;
  char what[80], q[16];

  describe(r, what, sizeof what);
  if (err == EDQUOT)
    log_limited(&quota_log, "overlay %s (%s): %s refused: %s%s", ov->key, r->c->peer,
                what,
                quota ? "the overlay is at its quota of "
                      : "the file system's disk quota is exceeded",
                quota ? format_size(quota, q) : "");
  else
    log_limited(&full_log,
                "overlay %s (%s): %s failed: the overlay file system is full (%s)",
                ov->key, r->c->peer, what, config.overlay_dir);
}

static void
reply_error(struct request *r, int err)
{
  if (no_space(err))
    log_no_space(r, err);
  r->error = nbd_errno(err);
  request_reply(r);
}

/* ---- flush: the chain of fsyncs journal.c asks for ---- */

static void
submit_fsync(struct request *r, int fd)
{
  struct io_uring_sqe *sqe = loop_get_sqe(r->c->w);

  io_uring_prep_fsync(sqe, fd, IORING_FSYNC_DATASYNC);
  io_uring_sqe_set_data64(sqe, loop_req_data(r, 0));
  r->pending = 1;
}

/* journal.c said e (0 or -errno) and the next descriptor to sync. */
static void
flush_go_on(struct request *r, int e, int fd)
{
  if (e < 0)
    reply_error(r, -e);
  else if (fd >= 0)
    submit_fsync(r, fd);
  else
    request_reply(r);
}

static void
start_flush(struct request *r)
{
  int fd, e;

  r->stage = STAGE_FLUSH;
  e = journal_flush_begin(r->c->ovl, &r->flush, &fd);
  flush_go_on(r, e, fd);
}

static void
flush_step(struct request *r, int res)
{
  int fd, e = journal_flush_next(r->c->ovl, &r->flush, res, &fd);

  flush_go_on(r, e, fd);
}

/* After a write or zeroing succeeded: FUA means flush before replying. */
static void
finish_write(struct request *r)
{
  if (r->flags & NBD_CMD_FLAG_FUA)
    start_flush(r);
  else
    request_reply(r);
}

/* ---- reads ---- */

static void
submit_segment(struct request *r, unsigned i)
{
  struct segment *s = &r->segs[i];
  struct io_uring_sqe *sqe = loop_get_sqe(r->c->w);

  io_uring_prep_read(sqe, s->fd, r->buf + s->buf_off, s->len, s->file_off);
  io_uring_sqe_set_data64(sqe, loop_req_data(r, i));
  r->pending++;
}

/* Large reads whose data is all in the page cache are not read here at
 * all: their reply splices the data from the page cache to the socket,
 * with no copy through our memory (see splice_segments() in loop.c).
 * Anything else is read through io_uring, which waits for the disk
 * without stalling the loop, and leaves the pages cached for next time. */
static bool
segments_cached(const struct request *r)
{
  for (unsigned i = 0; i < r->nsegs; i++) {
    const struct segment *s = &r->segs[i];
    if (s->fd >= 0 && !pagecache_holds(s->fd, s->file_off, s->len))
      return false;
  }
  return true;
}

static void
start_read(struct request *r)
{
  int e = overlay_plan_read(r->c->ovl, r->offset, r->count, &r->segs, &r->nsegs);

  if (e < 0) {
    reply_error(r, -e);
    return;
  }
  budget_msg_take(r->c, &r->out, r->nsegs * sizeof *r->segs);
  if (r->count >= NBDSRV_SPLICE_MIN) {
    struct worker *w = r->c->w;
    if (w->can_splice && segments_cached(r) && conn_pipe(r->c) == 0) {
      w->reads_spliced++;
      request_reply(r);
      return;
    }
    w->reads_copied++;
  }
  if (r->count > NBDSRV_CHUNK) {
    /* Read chunk by chunk while the reply is sent (output.c), so that
     * it holds one chunk, not its whole length.  An I/O error after the
     * reply's header went out can only end the connection. */
    r->stream = true;
    request_reply(r);
    return;
  }
  r->buf = malloc(r->count ? r->count : 1);
  if (!r->buf) {
    reply_error(r, ENOMEM);
    return;
  }
  budget_msg_take(r->c, &r->out, r->count);
  r->stage = STAGE_IO;
  for (unsigned i = 0; i < r->nsegs; i++) {
    if (r->segs[i].fd < 0)
      memset(r->buf + r->segs[i].buf_off, 0, r->segs[i].len);
    else
      submit_segment(r, i);
  }
  if (r->pending == 0)
    request_reply(r);
}

static void
read_done(struct request *r, unsigned i, int res)
{
  struct segment *s = &r->segs[i];

  if (res > 0)
    KERNEL_WROTE(r->buf + s->buf_off, res);
  if (res < 0) {
    if (!r->error) {
      log_err("read of %u bytes at %llu for %s: %s", s->len,
              (unsigned long long)s->file_off, r->c->peer, strerror(-res));
      r->error = nbd_errno(-res);
    }
  } else if ((uint32_t)res < s->len) {
    s->file_off += res;
    s->buf_off += res;
    s->len -= res;
    if (res == 0) {
      /* End of file: only the base image's last partial block gets here;
       * what lies past the end of the image reads as zeroes. */
      memset(r->buf + s->buf_off, 0, s->len);
    } else {
      submit_segment(r, i);
    }
  }
  if (r->pending == 0)
    request_reply(r);
}

/* ---- writes ---- */

static void
submit_write(struct request *r)
{
  struct io_uring_sqe *sqe = loop_get_sqe(r->c->w);

  io_uring_prep_write(sqe, r->c->ovl->file.data_fd, r->buf + r->written,
                      r->io_len - r->written, r->io_off + r->written);
  io_uring_sqe_set_data64(sqe, loop_req_data(r, 0));
  r->pending = 1;
}

/* A chunk of a long write is done with (written, or failed with err):
 * the next may come.  A connection closed meanwhile keeps r as the write
 * whose payload never came (conn_free lets it go). */
static void
chunk_done(struct request *r, int err)
{
  struct conn *c = r->c;

  if (err && !r->chunk_err)
    r->chunk_err = err;
  c->inflight_reqs--;
  r->chunk_writing = false;
}

static bool
last_chunk(const struct request *r)
{
  return r->io_off + r->io_len == r->offset + r->count;
}

static void
write_done(struct request *r, int res)
{
  if (res < 0) {
    overlay_write_failed(r->c->ovl);
    if (!no_space(-res))
      log_err("overlay %s: write: %s", r->c->ovl->prefix, strerror(-res));
    if (last_chunk(r))
      reply_error(r, -res);
    else
      chunk_done(r, -res);
    return;
  }
  r->written += res;
  if (r->written < r->io_len) {
    submit_write(r); /* short write: go on where it stopped */
    return;
  }
  overlay_write_done(r->c->ovl, r->io_off, r->io_len);
  if (!last_chunk(r))
    chunk_done(r, 0);
  else if (r->chunk_err)
    reply_error(r, r->chunk_err);
  else
    finish_write(r);
}

void
transmit_io_done(struct request *r, unsigned seg, int res)
{
  r->pending--;
  if (r->stage != STAGE_IO) {
    flush_step(r, res);
  } else if (r->type == NBD_CMD_READ) {
    read_done(r, seg, res);
  } else {
    write_done(r, res);
  }
}

/* ---- dispatch ---- */

static void
do_block_status(struct request *r)
{
  struct conn *c = r->c;
  unsigned max = r->flags & NBD_CMD_FLAG_REQ_ONE ? 1 : BLOCK_STATUS_MAX_DESC;
  struct nbd_block_descriptor *d = malloc(max * sizeof *d);
  unsigned n;

  if (!d) {
    reply_error(r, ENOMEM);
    return;
  }
  budget_msg_take(c, &r->out, max * sizeof *d);
  n = overlay_block_status(c->ovl, r->offset, r->count, d, max);
  for (unsigned i = 0; i < n; i++) {
    d[i].length = htobe32(d[i].length);
    d[i].status_flags = htobe32(d[i].status_flags);
  }
  r->buf = (char *)d;
  r->desc_len = n * sizeof *d;
  request_reply(r);
}

static uint16_t
allowed_flags(const struct conn *c, uint16_t type)
{
  switch (type) {
    case NBD_CMD_READ: return c->structured ? NBD_CMD_FLAG_DF : 0;
    case NBD_CMD_WRITE:
    case NBD_CMD_TRIM: return NBD_CMD_FLAG_FUA;
    case NBD_CMD_WRITE_ZEROES:
      return NBD_CMD_FLAG_FUA | NBD_CMD_FLAG_NO_HOLE | NBD_CMD_FLAG_FAST_ZERO;
    case NBD_CMD_BLOCK_STATUS: return NBD_CMD_FLAG_REQ_ONE;
    default:
      /* FUA on FLUSH is harmless and some clients send it. */
      return NBD_CMD_FLAG_FUA;
  }
}

/* The checks every request passes: its flags, its range, and no change
 * to a read-only export.  0 or the errno to reply with. */
static int
request_check(const struct request *r)
{
  const struct conn *c = r->c;
  bool ranged = r->type != NBD_CMD_FLUSH;

  if (r->flags & ~allowed_flags(c, r->type))
    return EINVAL;
  if (ranged && (r->offset > c->size || r->count > c->size - r->offset)) {
    log_debug("%s: request type %u beyond the end (offset %llu length %u size %llu)",
              c->peer, r->type, (unsigned long long)r->offset, r->count,
              (unsigned long long)c->size);
    return EINVAL;
  }
  if (export_readonly(c->exp) && (r->type == NBD_CMD_WRITE || r->type == NBD_CMD_TRIM ||
                                  r->type == NBD_CMD_WRITE_ZEROES))
    return EPERM;
  return 0;
}

/* request_check(), and its error reply: false after it. */
static bool
request_valid(struct request *r)
{
  int e = request_check(r);

  if (e)
    reply_error(r, e);
  return e == 0;
}

/* Writes r->io_len bytes of r->buf at r->io_off: through io_uring (0,
 * write_done() goes on) or right here (1), or fails (-errno). */
static int
write_range(struct request *r)
{
  struct overlay *ov = r->c->ovl;
  int e;

  /* Small writes are done inline: a buffered write to the page cache
   * costs a few microseconds, while io_uring hands buffered writes on
   * ext4 to its worker threads (measured here: 4K random writes at QD32
   * ran at 119k IOPS inline against 76k through io_uring, at half the
   * CPU).  Large aligned writes still go through io_uring, so that
   * dirty-page throttling stalls a kernel worker, not this event loop. */
  if (r->io_len > NBDSRV_INLINE_WRITE_MAX &&
      overlay_write_is_aligned(ov, r->io_off, r->io_len)) {
    r->stage = STAGE_IO;
    r->written = 0;
    submit_write(r);
    return 0;
  }
  e = overlay_write_sync(ov, r->buf, r->io_off, r->io_len);
  return e < 0 ? e : 1;
}

static void
start_write(struct request *r)
{
  int e;

  if (r->count == 0) {
    request_reply(r);
    return;
  }
  e = overlay_quota_check(r->c->ovl, r->offset, r->count);
  if (e < 0) {
    reply_error(r, -e);
    return;
  }
  r->io_off = r->offset;
  r->io_len = r->count;
  e = write_range(r);
  if (e < 0)
    reply_error(r, -e);
  else if (e > 0)
    finish_write(r);
}

/* TRIM and WRITE_ZEROES: whole blocks zeroed free space; a partial block
 * at either end is written, and may need a block of the quota. */
static void
start_zero(struct request *r)
{
  struct overlay *ov = r->c->ovl;
  int e = 0;

  if (r->type == NBD_CMD_WRITE_ZEROES && r->count > 0) {
    uint64_t end = r->offset + r->count;
    if (r->offset % OVL_BLOCK_SIZE)
      e = overlay_quota_check(ov, r->offset, 1);
    if (e == 0 && end % OVL_BLOCK_SIZE && end != r->c->size)
      e = overlay_quota_check(ov, end - 1, 1);
  }
  if (e == 0 && r->count > 0)
    e = overlay_zero(ov, r->offset, r->count, r->type == NBD_CMD_TRIM);
  if (e < 0) {
    reply_error(r, -e);
    return;
  }
  finish_write(r);
}

static void
dispatch(struct request *r)
{
  struct conn *c = r->c;

  if (!request_valid(r))
    return;
  switch (r->type) {
    case NBD_CMD_READ:
      if (r->count == 0) {
        reply_error(r, EINVAL);
        return;
      }
      start_read(r);
      return;
    case NBD_CMD_WRITE: start_write(r); return;
    case NBD_CMD_FLUSH:
      /* A shared read-only export has nothing of its own to make durable. */
      if (c->exp->policy == POLICY_SHARED_READONLY)
        request_reply(r);
      else
        start_flush(r);
      return;
    case NBD_CMD_TRIM:
    case NBD_CMD_WRITE_ZEROES: start_zero(r); return;
    case NBD_CMD_CACHE:
      /* Prefetch the base image: what a boot reads next. */
      posix_fadvise(c->ovl->base->fd, r->offset, r->count, POSIX_FADV_WILLNEED);
      request_reply(r);
      return;
    case NBD_CMD_BLOCK_STATUS:
      if (!c->meta_alloc || r->count == 0) {
        reply_error(r, EINVAL);
        return;
      }
      do_block_status(r);
      return;
    default: reply_error(r, EINVAL); return;
  }
}

/* What every request is counted in, once. */
static void
account(struct request *r)
{
  struct conn *c = r->c;

  if (trace_enabled())
    trace_request(c, r->type, r->flags, r->offset, r->count);
  c->requests++;
  if (r->type == NBD_CMD_READ)
    c->bytes_read += r->count;
  else if (r->type == NBD_CMD_WRITE)
    c->bytes_written += r->count;
}

void
transmit_request(struct request *r)
{
  struct conn *c = r->c;

  /* Owed a reply from now on: request_reply() counts it out. */
  c->inflight_reqs++;
  account(r);
  /* Only a client that asked for the block sizes is held to them; any
   * other may read up to the export's size (streamed in chunks). */
  if (r->type == NBD_CMD_READ && c->want_block_size && r->count > c->max_request) {
    reply_error(r, EINVAL);
    return;
  }
  dispatch(r);
}

/* A long write, chunk by chunk: the first is checked for the whole
 * request; after a failure the rest of the payload is taken and
 * dropped, and the end replies with the error.  While a chunk is
 * written the connection counts it in flight (it stays), and takes no
 * input. */
void
transmit_write_chunk(struct request *r, bool last)
{
  struct conn *c = r->c;
  int e;

  c->inflight_reqs++;
  if (r->chunk_at == 0) {
    account(r);
    r->chunk_err = request_check(r);
    if (!r->chunk_err) {
      e = overlay_quota_check(c->ovl, r->offset, r->count);
      r->chunk_err = e < 0 ? -e : 0;
    }
  }
  if (r->chunk_err) {
    if (last)
      reply_error(r, r->chunk_err);
    else
      chunk_done(r, 0);
    return;
  }
  r->io_off = r->offset + r->chunk_at;
  r->io_len = r->chunk_len;
  e = write_range(r);
  if (e == 0)
    return;
  if (!last)
    chunk_done(r, e < 0 ? -e : 0);
  else if (e < 0 || r->chunk_err)
    reply_error(r, e < 0 ? -e : r->chunk_err);
  else
    finish_write(r);
}
