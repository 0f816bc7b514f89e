/* SPDX-License-Identifier: GPL-2.0-or-later */
/* nbdsrv: the byte stream of a connection, cut into protocol units.
 *
 * Design notes
 * ------------
 * Whatever the receive path hands over (any number of bytes, split
 * anywhere) is copied into the unit being assembled: the client's flags,
 * an option header and its data, a request header and its write payload.
 * All framing is here, through one call: expect() N bytes of unit U
 * into a buffer.  Which unit comes next follows from the connection's
 * stage (expect_next): flags while greeted, an option header in the
 * handshake, a request header in the transmission phase; an option
 * header or a write's request header asks for its data itself.
 *
 * Headers are decoded here (magic, lengths, what is too large to take),
 * so that handshake.c only ever sees whole options and transmit.c whole
 * requests.  While the connection waits for its overlay, or is over its
 * memory budget (budget.c), no new unit is started: what comes is kept
 * and fed in afterwards (conn_input_resume), and conn.c stops receiving
 * meanwhile; once it drains or is closed, nothing more is taken.  Nothing here reads a socket, so the
 * fuzz target drives it with arbitrary input.
 *
 * A write longer than NBDSRV_CHUNK comes in chunks into one chunk's
 * buffer: each is handed to transmit.c as it completes, and no input is
 * taken until transmit.c wrote it (input_after_event), so that a write
 * holds one chunk whatever its length.  A client that asked for the
 * block sizes is held to its maximum payload; any other may write up to
 * the export's size (transmit.c checks the range).
 *
 * Must never happen: a unit handed on before all of it came; bytes taken
 * by a connection that is not reading or writing a chunk; more than one
 * chunk of a write held in memory.
 */
#include <config.h>

#include <endian.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nbdsrv.h"
#include "vec.h"

/* The next n bytes (n > 0) are unit u, for dst (NULL: skipped). */
static void
expect(struct conn *c, enum in_unit u, void *dst, uint32_t n)
{
  c->in.unit = u;
  c->in.dst = dst;
  c->in.need = n;
  c->in.have = 0;
}

/* The unit the stage asks for (UNIT_NONE when it takes no input). */
static void
expect_next(struct conn *c)
{
  switch (c->stage) {
    case CONN_FLAGS: expect(c, UNIT_FLAGS, c->in.hdr, 4); return;
    case CONN_OPTIONS:
      expect(c, UNIT_OPT_HEADER, c->in.hdr, sizeof(struct nbd_option_header));
      return;
    case CONN_TRANSMISSION:
      expect(c, UNIT_REQ_HEADER, c->in.hdr, sizeof(struct nbd_request));
      return;
    default: c->in.unit = UNIT_NONE; return;
  }
}

/* Keeps received bytes that the connection does not take now (it waits
 * for its overlay, or is over its budget), counted in its budget.  The
 * receive stops at once (conn.c), so only what was already received
 * comes here. */
static void
keep(struct conn *c, const char *p, size_t len)
{
  struct conn_input *in = &c->in;

  if (in->stash_off > 0) {
    memmove(in->stash, in->stash + in->stash_off, in->stash_len - in->stash_off);
    in->stash_len -= in->stash_off;
    in->stash_off = 0;
  }
  if (VEC_RESERVE(in->stash, in->stash_cap, in->stash_len + len) < 0) {
    conn_close(c, "out of memory");
    return;
  }
  memcpy(in->stash + in->stash_len, p, len);
  in->stash_len += len;
  budget_take(c, len);
}

/* An option's data, whole: handshake.c answers it. */
static void
give_option(struct conn *c, uint32_t code, char *data, uint32_t len)
{
  struct client_option o = { .code = code, .len = len, .data = data };

  c->in.opt_data = NULL;
  handshake_option(c, &o);
  free(data);
  budget_give(c, len + 1);
}

static void
option_header(struct conn *c)
{
  struct nbd_option_header h;
  uint32_t code, len;
  char *data;

  memcpy(&h, c->in.hdr, sizeof h);
  if (be64toh(h.version) != NBD_IHAVEOPT) {
    conn_close(c, "bad option magic (not an NBD client?)");
    return;
  }
  code = be32toh(h.option);
  len = be32toh(h.optlen);
  if (len > NBDSRV_MAX_OPTION) {
    if (len > NBDSRV_MAX_DISCARD) {
      conn_close(c, "option data far too large");
      return;
    }
    c->in.opt = code;
    expect(c, UNIT_OPT_SKIP, NULL, len);
    return;
  }
  /* +1: room for a terminating NUL where a name is used as a string. */
  data = calloc(1, len + 1);
  if (!data) {
    conn_close(c, "out of memory");
    return;
  }
  budget_take(c, len + 1);
  if (len == 0) {
    give_option(c, code, data, 0);
    return;
  }
  c->in.opt = code;
  c->in.opt_data = data;
  expect(c, UNIT_OPT_DATA, data, len);
}

/* The length of the next chunk of a long write: up to the next multiple
 * of NBDSRV_CHUNK on the disk, so that the chunks between are whole
 * blocks. */
static uint32_t
next_chunk(const struct request *r)
{
  uint64_t at = r->offset + r->chunk_at;
  uint64_t len = NBDSRV_CHUNK - at % NBDSRV_CHUNK;

  return len < r->count - r->chunk_at ? (uint32_t)len : r->count - r->chunk_at;
}

static void
request_header(struct conn *c)
{
  struct nbd_request h;
  struct request *r;
  uint32_t size;

  memcpy(&h, c->in.hdr, sizeof h);
  if (be32toh(h.magic) != NBD_REQUEST_MAGIC) {
    conn_close(c, "bad request magic (protocol out of sync)");
    return;
  }
  if (be16toh(h.type) == NBD_CMD_DISC) {
    /* Finish what is in flight, reply to it, then close (conn_settle). */
    conn_enter(c, CONN_DRAINING);
    return;
  }
  r = calloc(1, sizeof *r);
  if (!r) {
    conn_close(c, "out of memory");
    return;
  }
  r->c = c;
  budget_msg_take(c, &r->out, sizeof *r);
  r->cookie = be64toh(h.cookie);
  r->offset = be64toh(h.offset);
  r->count = be32toh(h.count);
  r->type = be16toh(h.type);
  r->flags = be16toh(h.flags);
  if (r->type != NBD_CMD_WRITE) {
    transmit_request(r);
    return;
  }
  if (c->want_block_size && r->count > c->max_request) {
    /* We cannot skip a payload this large without reading it all; the
     * spec allows a hard disconnect. */
    char why[128];
    snprintf(why, sizeof why, "write of %u bytes exceeds the maximum payload (%u)",
             r->count, c->max_request);
    budget_msg_give(c, &r->out);
    free(r);
    conn_close(c, why);
    return;
  }
  /* A long write comes in chunks, each written before the next is
   * taken: one chunk's buffer, whatever its length. */
  r->chunked = r->count > NBDSRV_CHUNK;
  size = r->chunked ? NBDSRV_CHUNK : r->count;
  r->buf = malloc(size ? size : 1);
  if (!r->buf) {
    budget_msg_give(c, &r->out);
    free(r);
    conn_close(c, "out of memory");
    return;
  }
  budget_msg_take(c, &r->out, size);
  if (r->count == 0) {
    transmit_request(r);
    return;
  }
  c->in.cur = r;
  r->chunk_len = r->chunked ? next_chunk(r) : r->count;
  expect(c, UNIT_REQ_PAYLOAD, r->buf, r->chunk_len);
}

/* A chunk of a long write is all there: transmit.c writes it, and
 * input waits until it is written (input_after_event). */
static void
payload_chunk(struct conn *c, struct request *r)
{
  bool last = r->chunk_at + r->chunk_len == r->count;

  if (last) {
    c->in.cur = NULL;
  } else {
    c->in.chunk_busy = true;
    r->chunk_writing = true;
  }
  transmit_write_chunk(r, last);
}

void
input_after_event(struct conn *c)
{
  struct request *r = c->in.cur;

  if (!c->in.chunk_busy || !r || r->chunk_writing || !conn_reads(c))
    return;
  c->in.chunk_busy = false;
  r->chunk_at += r->chunk_len;
  r->chunk_len = next_chunk(r);
  expect(c, UNIT_REQ_PAYLOAD, r->buf, r->chunk_len);
}

/* The unit is complete: hand it on.  Unless its handler expects
 * something else, the next unit is the one the stage asks for. */
static void
unit_done(struct conn *c)
{
  enum in_unit u = c->in.unit;
  struct request *r;
  uint32_t flags;

  c->in.unit = UNIT_NONE;
  switch (u) {
    case UNIT_FLAGS:
      memcpy(&flags, c->in.hdr, 4);
      handshake_flags(c, be32toh(flags));
      return;
    case UNIT_OPT_HEADER: option_header(c); return;
    case UNIT_OPT_DATA: give_option(c, c->in.opt, c->in.opt_data, c->in.need); return;
    case UNIT_OPT_SKIP: handshake_too_big(c, c->in.opt); return;
    case UNIT_REQ_HEADER: request_header(c); return;
    case UNIT_REQ_PAYLOAD:
      r = c->in.cur;
      if (r->chunked) {
        payload_chunk(c, r);
        return;
      }
      c->in.cur = NULL;
      transmit_request(r);
      return;
    case UNIT_NONE: return;
  }
}

/* Feeds bytes to the units they belong to, as long as the connection
 * takes them: a new unit only while it is under its budget.  Returns how
 * many it took. */
static size_t
feed(struct conn *c, const char *p, size_t len)
{
  size_t done = 0;

  while (done < len && conn_reads(c) && c->stage != CONN_ATTACHING && !c->in.chunk_busy) {
    size_t n;

    if (c->in.unit == UNIT_NONE) {
      if (budget_full(c))
        break;
      expect_next(c);
    }
    n = c->in.need - c->in.have;
    if (n > len - done)
      n = len - done;
    if (c->in.dst)
      memcpy(c->in.dst + c->in.have, p + done, n);
    c->in.have += n;
    done += n;
    if (c->in.have == c->in.need)
      unit_done(c);
  }
  return done;
}

void
conn_input(struct conn *c, const char *p, size_t len)
{
  size_t n = 0;

  /* Behind kept bytes: in order. */
  if (!input_kept(c))
    n = feed(c, p, len);
  if (n < len && conn_reads(c))
    keep(c, p + n, len - n);
}

/* Lets the kept bytes go (all fed, or the connection takes no more). */
static void
drop_kept(struct conn *c)
{
  struct conn_input *in = &c->in;

  budget_give(c, in->stash_len - in->stash_off);
  free(in->stash);
  in->stash = NULL;
  in->stash_off = in->stash_len = in->stash_cap = 0;
}

void
conn_input_resume(struct conn *c)
{
  struct conn_input *in = &c->in;
  size_t n;

  if (!input_kept(c))
    return;
  n = feed(c, in->stash + in->stash_off, in->stash_len - in->stash_off);
  in->stash_off += n;
  budget_give(c, n);
  if (in->stash_off == in->stash_len || !conn_reads(c))
    drop_kept(c);
}

bool
input_kept(const struct conn *c)
{
  return c->in.stash_off < c->in.stash_len;
}

bool
input_in_payload(const struct conn *c)
{
  return c->in.cur != NULL;
}

size_t
input_need(struct conn *c)
{
  if (!conn_reads(c) || c->stage == CONN_ATTACHING || c->in.chunk_busy)
    return 0;
  if (c->in.unit == UNIT_NONE)
    expect_next(c);
  return c->in.need - c->in.have;
}
