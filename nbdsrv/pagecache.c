/* SPDX-License-Identifier: GPL-2.0-or-later */
/* nbdsrv: is a file range in the page cache?
 *
 * Large read replies are spliced from the page cache to the socket inside
 * the event loop (see loop.c), which is only safe when the pages are
 * there: a splice that has to wait for a disk would stall every
 * connection of the worker.  cachestat(2) (Linux 6.5) answers the
 * question for a whole range in one call; on older kernels the server
 * copies large reads through io_uring instead.
 */
#include <config.h>

#include <errno.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "nbdsrv.h"

#ifndef __NR_cachestat
#define __NR_cachestat 451 /* the same number on every architecture */
#endif

struct cachestat_range {
  uint64_t off;
  uint64_t len;
};

struct cachestat_counts {
  uint64_t nr_cache;
  uint64_t nr_dirty;
  uint64_t nr_writeback;
  uint64_t nr_evicted;
  uint64_t nr_recently_evicted;
};

bool
pagecache_supported(void)
{
  struct cachestat_range r = { 0, 1 };
  struct cachestat_counts cs;

  /* A kernel with the call rejects the bad descriptor; one without it
   * does not know the call. */
  return syscall(__NR_cachestat, -1, &r, &cs, 0) < 0 && errno != ENOSYS;
}

bool
pagecache_holds(int fd, uint64_t off, uint64_t len)
{
  struct cachestat_range r = { off, len };
  struct cachestat_counts cs;
  uint64_t pages;

  if (len == 0)
    return true;
  if (syscall(__NR_cachestat, fd, &r, &cs, 0) < 0)
    return false;
  pages = ((off + len + 4095) >> 12) - (off >> 12);
  return cs.nr_cache >= pages;
}
