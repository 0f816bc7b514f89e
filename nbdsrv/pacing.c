/* SPDX-License-Identifier: GPL-2.0-or-later */
/* nbdsrv: pacing the replies below the server's link rate (link-rate).
 *
 * Design notes
 * ------------
 * Behind a link with a plain FIFO (a switch port's buffer, htb with a
 * bfifo), a client's first reply waits behind every byte the others'
 * bulk reads put in that queue: at 1 Gbit/s a 4 MB queue is 33 ms.  TCP
 * fills such a queue until it drops.  Capping each connection's sending
 * rate (SO_MAX_PACING_RATE; the kernel paces TCP itself where the qdisc
 * is not fq) to its share of the link keeps the sum under the link rate,
 * so the queue stays short and a new client's first reply goes through
 * at once.
 *
 * The share is 15/16 of link-rate over the connections of the whole
 * server.  A new connection gets at least an eighth of the link for its
 * first PACING_START bytes: at a share of a few Mbit/s the kernel would
 * cut even a 4 KiB reply into paced pieces some milliseconds apart.
 * The cap is lowered as soon as the share fell by more than 1/32 (the sum
 * must stay under the link while clients come) and raised only when it
 * grew by more than an eighth, so a steady storm costs a handful of
 * setsockopt calls per connection.
 *
 * What it costs: a connection that idles leaves its share unused (the
 * link is not filled by fewer busy clients than connected ones), and at
 * most 15/16 of the link is used (the lab's first-boot storm took some
 * 5 % longer).
 */
#include <config.h>

#include <sys/socket.h>

#include "log.h"
#include "nbdsrv.h"

#define PACING_START (32u << 10)

static uint64_t
pacing_share(const struct conn *c)
{
  uint64_t rate = config.link_rate - config.link_rate / 16;
  unsigned n = limits_total();
  uint64_t share = rate / (n ? n : 1);

  if (c->bytes_read < PACING_START && share < rate / 8)
    share = rate / 8;
  return share;
}

void
pacing_update(struct conn *c)
{
  uint64_t want;
  unsigned long v;

  if (!config.link_rate || c->stage != CONN_TRANSMISSION)
    return;
  want = pacing_share(c);
  /* Down at once (the sum must stay under the link), up lazily. */
  if (c->pace_rate && want <= c->pace_rate && want >= c->pace_rate - c->pace_rate / 32)
    return;
  if (c->pace_rate && want > c->pace_rate && want <= c->pace_rate + c->pace_rate / 8)
    return;
  v = (unsigned long)want;
  if (setsockopt(c->fd, SOL_SOCKET, SO_MAX_PACING_RATE, &v, sizeof v) < 0) {
    log_debug("%s: SO_MAX_PACING_RATE: %m", c->peer);
    return;
  }
  c->pace_rate = want;
}
