/* SPDX-License-Identifier: GPL-2.0-or-later */
/* nbdsrv: how long the clients' reattaching took after a start.
 *
 * After a restart every client comes back and its overlay is opened
 * again, its journal replayed: that is what makes a restart of a server
 * with many long-lived overlays slow, if anything does.  So the attach
 * thread notes how long each open took (overlay_acquire, whole) and how
 * long the map file was, and once its queue has stayed empty for
 * STATS_SETTLE_MS after the start's wave of attaches, it logs one line:
 * how many were attached, how long that took in all, and the largest and
 * the slowest overlay.  Only the first wave is summed up: later attaches
 * are single clients booting, which tell nothing of a restart.
 *
 * Only the attach thread calls these (no lock).
 */
#include <config.h>

#include <inttypes.h>
#include <stdio.h>

#include "clock.h"
#include "log.h"
#include "nbdsrv.h"

#define STATS_SETTLE_MS 2000

struct one_attach {
  char key[512];      /* EXPORT/ID */
  uint64_t us;        /* how long overlay_acquire took */
  uint64_t map_bytes; /* its map file (journal) when opened */
};

static struct {
  unsigned count;
  uint64_t total_us;
  uint64_t first_ms, last_ms; /* CLOCK_MONOTONIC of the first and last */
  struct one_attach largest, slowest;
  bool done;
} stats;

void
attach_stats_note(const struct overlay *ov, uint64_t us)
{
  uint64_t map_bytes = ov->file.map_fd >= 0 ? ov->file.log_end : 0;
  struct one_attach a = { .us = us, .map_bytes = map_bytes };

  if (stats.done)
    return;
  snprintf(a.key, sizeof a.key, "%s", ov->key);
  stats.last_ms = now_ms();
  if (stats.count++ == 0) {
    stats.first_ms = stats.last_ms - us / 1000;
    stats.largest = stats.slowest = a;
  }
  stats.total_us += us;
  if (map_bytes > stats.largest.map_bytes)
    stats.largest = a;
  if (us > stats.slowest.us)
    stats.slowest = a;
}

uint64_t
attach_stats_due(void)
{
  uint64_t now;

  if (stats.done || stats.count == 0)
    return 0;
  now = now_ms();
  if (now < stats.last_ms + STATS_SETTLE_MS)
    return stats.last_ms + STATS_SETTLE_MS;
  stats.done = true;
  log_info("start-up: %u overlays attached in %" PRIu64 " ms (%" PRIu64
           " ms from the first to the last); largest: %s, %" PRIu64
           " KiB map, attached in %" PRIu64 " ms; slowest: %s, %" PRIu64
           " KiB map, attached in %" PRIu64 " ms",
           stats.count, stats.total_us / 1000, stats.last_ms - stats.first_ms,
           stats.largest.key, stats.largest.map_bytes >> 10, stats.largest.us / 1000,
           stats.slowest.key, stats.slowest.map_bytes >> 10, stats.slowest.us / 1000);
  return 0;
}
