/* SPDX-License-Identifier: GPL-2.0-or-later */
/* nbdsrv: the request trace (--trace FILE).
 *
 * One line per request, as it arrives, for recording what a real boot
 * asks of the server and replaying it (bench/):
 *
 *   USEC CLIENT TYPE OFFSET LENGTH
 *
 * USEC is microseconds since the epoch (CLOCK_REALTIME), CLIENT is
 * EXPORT/ID (the overlay the request goes to), TYPE one of R (read), W
 * (write), F (flush), T (trim), Z (write zeroes), C (cache), B (block
 * status), OFFSET and LENGTH in bytes.  A write or zero with FUA is WF or
 * ZF.
 *
 * Each worker formats lines into a buffer of its own and appends it to
 * the file whole (O_APPEND, one write per buffer ending at a line), when
 * it fills and once a second, so workers never interleave inside a line
 * and tracing costs no lock and no system call per request.
 */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "io.h"
#include "log.h"
#include "nbdsrv.h"
#include "util.h"

static int trace_fd = -1;
/* A write failed: tracing stops.  The file stays open until the workers
 * are gone (trace_close): closing it under the others' writes would let
 * them write into whatever file gets the descriptor number next. */
static bool trace_failed;

int
trace_open(const char *path)
{
  trace_fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (trace_fd < 0) {
    int e = errno;
    fprintf(stderr, "nbdsrv: cannot open trace file %s: %s\n", path, strerror(e));
    return -e;
  }
  return 0;
}

void
trace_close(void)
{
  if (trace_fd >= 0)
    close(trace_fd);
  trace_fd = -1;
}

bool
trace_enabled(void)
{
  return trace_fd >= 0 && !__atomic_load_n(&trace_failed, __ATOMIC_RELAXED);
}

void
trace_flush(struct worker *w)
{
  int r = 0;

  if (trace_enabled())
    r = full_write(trace_fd, w->trace_buf, w->trace_len);
  if (r < 0 && !__atomic_exchange_n(&trace_failed, true, __ATOMIC_RELAXED))
    log_err("trace: %s; tracing stops", strerror(-r));
  w->trace_len = 0;
}

void
trace_request(struct conn *c, uint16_t type, uint16_t flags, uint64_t offset,
              uint32_t count)
{
  static const char *const names[] = {
    [NBD_CMD_READ] = "R",         [NBD_CMD_WRITE] = "W", [NBD_CMD_FLUSH] = "F",
    [NBD_CMD_TRIM] = "T",         [NBD_CMD_CACHE] = "C", [NBD_CMD_WRITE_ZEROES] = "Z",
    [NBD_CMD_BLOCK_STATUS] = "B",
  };
  struct worker *w = c->w;
  const char *name = type < ARRAY_SIZE(names) && names[type] ? names[type] : "?";
  struct timespec ts;
  int n;

  if (!trace_enabled() || !c->ovl)
    return;
  if (sizeof w->trace_buf - w->trace_len < 1024)
    trace_flush(w);
  clock_gettime(CLOCK_REALTIME, &ts);
  n = snprintf(w->trace_buf + w->trace_len, sizeof w->trace_buf - w->trace_len,
               "%llu %s %s%s %llu %u\n",
               (unsigned long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000, c->ovl->key,
               name, flags & NBD_CMD_FLAG_FUA ? "F" : "", (unsigned long long)offset,
               count);
  if (n > 0 && (size_t)n < sizeof w->trace_buf - w->trace_len)
    w->trace_len += n;
}
