/* SPDX-License-Identifier: GPL-2.0-or-later */
/* nbdsrv: a worker's ring as the rest of the server uses it: SQEs and
 * the user_data their completions come back with.
 *
 * Everything that submits I/O takes its SQEs here, so that the worker
 * counts every operation it must wait for before it may exit
 * (ops_inflight), and the fuzz target can stand in for the ring by
 * replacing this file alone.
 *
 * Must never happen: an SQE whose completion is not counted, or a
 * user_data that names a request or connection without a way to tell a
 * stale one (connections carry a generation, see ud_conn()).
 */
#include <config.h>

#include "nbdsrv.h"

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
