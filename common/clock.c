/* SPDX-License-Identifier: GPL-2.0-or-later */
/* nbdroot: the monotonic clock (see clock.h).  The initrd agent links
 * this file too. */
#ifdef HAVE_CONFIG_H
#include <config.h> /* the initrd agent is built without one */
#endif

#include <time.h>

#include "clock.h"

uint64_t
now_ms(void)
{
  struct timespec ts;

  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

uint64_t
now_us(void)
{
  struct timespec ts;

  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}
