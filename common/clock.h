/* SPDX-License-Identifier: GPL-2.0-or-later */
/* nbdroot: the monotonic clock, for timeouts, rates and progress. */
#ifndef NBDROOT_CLOCK_H
#define NBDROOT_CLOCK_H

#include <stdint.h>

/* Milliseconds of CLOCK_MONOTONIC: never goes back, unlike the time of
 * day, so intervals measured with it stay true across clock changes. */
uint64_t now_ms(void);
/* The same in microseconds, for short intervals. */
uint64_t now_us(void);

#endif
