/* SPDX-License-Identifier: GPL-2.0-or-later */
/* nbdroot unit tests: the check macro every tests/unit_*.c uses. */
#ifndef NBDROOT_UNIT_H
#define NBDROOT_UNIT_H

#include <stdio.h>

static int failures;

/* Counts and reports a failed condition; the test goes on, so that one
 * run shows every failure.  main() returns 1 when failures > 0. */
#define CHECK(cond, ...)                                              \
  do {                                                                \
    if (!(cond)) {                                                    \
      fprintf(stderr, "%s:%d: FAIL %s: ", __FILE__, __LINE__, #cond); \
      fprintf(stderr, __VA_ARGS__);                                   \
      fputc('\n', stderr);                                            \
      failures++;                                                     \
    }                                                                 \
  } while (0)

#endif
