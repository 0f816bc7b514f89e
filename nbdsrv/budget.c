/* SPDX-License-Identifier: GPL-2.0-or-later */
/* nbdsrv: memory budgets, per connection and for the whole server.
 *
 * Design notes
 * ------------
 * Every byte a connection makes the server hold is counted against it
 * (c->held) and against the server (one counter shared by the workers):
 * option data, input kept for later, requests and their buffers, and
 * every message of its output queue until it is on the stream (option
 * replies, read data, block-status descriptors, error replies).  A
 * message carries what it holds (outmsg.held), so that whoever lets it
 * go gives that back, whichever way it goes.
 *
 * Over budget, a connection takes no new unit of input (input.c stops
 * at the unit's boundary and keeps the rest, conn.c stops receiving) and
 * takes input again once its replies drained: backpressure through TCP,
 * never an error.  A connection holding nothing may always take one
 * unit, so that a server at its global budget still makes progress and
 * one that floods it cannot starve the others of their first request.
 * So what the server holds stays under memory-budget plus, per
 * connection, one unit (one request with its chunk buffer, one option),
 * and input that was already received when it stopped.
 *
 * Must never happen: a counter going below zero or left above it when
 * a connection is freed (conn_free gives back whatever is left).
 */
#include <config.h>

#include "nbdsrv.h"

static size_t server_held; /* all connections, all workers */

void
budget_take(struct conn *c, size_t n)
{
  c->held += n;
  __atomic_add_fetch(&server_held, n, __ATOMIC_RELAXED);
}

void
budget_give(struct conn *c, size_t n)
{
  c->held -= n;
  __atomic_sub_fetch(&server_held, n, __ATOMIC_RELAXED);
}

void
budget_msg_take(struct conn *c, struct outmsg *m, size_t n)
{
  m->held += n;
  budget_take(c, n);
}

void
budget_msg_give(struct conn *c, struct outmsg *m)
{
  budget_give(c, m->held);
  m->held = 0;
}

size_t
budget_server_held(void)
{
  return __atomic_load_n(&server_held, __ATOMIC_RELAXED);
}

bool
budget_full(const struct conn *c)
{
  if (c->inflight_reqs >= NBDSRV_MAX_CONN_REQS)
    return true;
  if (c->held >= config.conn_budget)
    return true;
  return c->held > 0 && budget_server_held() >= config.memory_budget;
}
