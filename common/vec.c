/* SPDX-License-Identifier: GPL-2.0-or-later */
/* nbdroot: growable arrays (see vec.h). */
#ifdef HAVE_CONFIG_H
#include <config.h> /* the initrd agent is built without one */
#endif

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "vec.h"

/* The first allocation: small arrays stay in one. */
#define VEC_MIN 8

int
vec_reserve(void **ptr, size_t *cap, size_t need, size_t elem)
{
  size_t n = *cap ? *cap : VEC_MIN;
  void *p;

  if (need <= *cap)
    return 0;
  while (n < need)
    n = n > SIZE_MAX / 2 ? need : n * 2;
  if (n > SIZE_MAX / elem)
    return -ENOMEM;
  p = realloc(*ptr, n * elem);
  if (!p)
    return -ENOMEM;
  *ptr = p;
  *cap = n;
  return 0;
}

int
vec_vprintf(char **p, size_t *len, size_t *cap, const char *fmt, va_list ap)
{
  for (;;) {
    size_t room = *p ? *cap - *len : 0;
    va_list aq;
    int n;

    va_copy(aq, ap);
    n = vsnprintf(*p ? *p + *len : NULL, room, fmt, aq);
    va_end(aq);
    if (n < 0)
      return -EINVAL;
    if ((size_t)n < room) {
      *len += (size_t)n;
      return 0;
    }
    if (vec_reserve((void **)p, cap, *len + (size_t)n + 1, 1) < 0)
      return -ENOMEM;
  }
}
