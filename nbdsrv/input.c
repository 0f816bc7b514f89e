/* nbdsrv: the byte stream of a connection, cut into protocol units.
 *
 * Whatever the receive path hands over (any number of bytes, split
 * anywhere) is copied into the unit being assembled: the client's flags,
 * an option header and its data, a request header and its write payload.
 * Each complete unit goes to handshake.c or transmit.c.  Nothing here
 * reads a socket, so the fuzz target drives it with arbitrary input.
 */
#include <config.h>

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "nbdsrv.h"
#include "vec.h"

/* A client has no reason to send anything before the reply to its
 * NBD_OPT_GO (it does not know the export's size and flags yet); some
 * pipelining is tolerated, a flood is not. */
#define STASH_MAX (64u << 10)

/* Keeps bytes that came while the connection waited for its overlay. */
static int
stash(struct conn *c, const char *p, size_t len)
{
  if (len > STASH_MAX - c->stash_len) {
    conn_close(c, "client sent more than 64 KiB before its NBD_OPT_GO was answered");
    return -1;
  }
  if (VEC_RESERVE(c->stash, c->stash_cap, c->stash_len + len) < 0) {
    conn_close(c, "out of memory");
    return -1;
  }
  memcpy(c->stash + c->stash_len, p, len);
  c->stash_len += len;
  return 0;
}

/* Feeds received bytes to the protocol state machine. */
void
conn_input(struct conn *c, const char *p, size_t len)
{
  while (len > 0 && c->in != IN_DEAD) {
    size_t n;

    switch (c->in) {
    case IN_CLIENT_FLAGS:
    case IN_OPT_HEADER:
    case IN_REQ_HEADER:
      n = c->hdr_need - c->hdr_have;
      if (n > len)
        n = len;
      memcpy(c->hdr + c->hdr_have, p, n);
      c->hdr_have += n;
      p += n;
      len -= n;
      if (c->hdr_have < c->hdr_need)
        break;
      c->hdr_have = 0;
      if (c->in == IN_REQ_HEADER)
        transmit_header(c);
      else
        handshake_option(c);
      break;
    case IN_OPT_DATA:
    case IN_OPT_DISCARD:
      n = c->opt_len - c->opt_have;
      if (n > len)
        n = len;
      if (c->in == IN_OPT_DATA)
        memcpy(c->opt_data + c->opt_have, p, n);
      c->opt_have += n;
      p += n;
      len -= n;
      if (c->opt_have < c->opt_len)
        break;
      if (c->in == IN_OPT_DATA)
        handshake_option(c);
      else
        handshake_discarded(c);
      break;
    case IN_REQ_PAYLOAD:
      n = c->cur->count - c->cur->received;
      if (n > len)
        n = len;
      memcpy(c->cur->buf + c->cur->received, p, n);
      c->cur->received += n;
      p += n;
      len -= n;
      if (c->cur->received == c->cur->count)
        transmit_payload_done(c);
      break;
    case IN_ATTACHING:
      if (stash(c, p, len) < 0)
        return;
      len = 0;
      break;
    case IN_DEAD:
      break;
    }
  }
}

void
conn_input_resume(struct conn *c)
{
  char *p = c->stash;
  size_t len = c->stash_len;

  if (!p)
    return;
  c->stash = NULL;
  c->stash_len = c->stash_cap = 0;
  conn_input(c, p, len);
  free(p);
}

void
conn_stop_input(struct conn *c)
{
  c->closing = true;
  c->in = IN_DEAD;
  if (c->cur) {
    /* A write whose payload will never arrive: it counts as in flight
     * (transmit_header counted it), so drop it here or the connection
     * would wait for it forever. */
    c->inflight_bytes -= c->cur->accounted;
    c->inflight_reqs--;
    free(c->cur->buf);
    free(c->cur);
    c->cur = NULL;
  }
}
