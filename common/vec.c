/* nbdroot: growable arrays (see vec.h). */
#ifdef HAVE_CONFIG_H
#include <config.h>   /* the initrd agent is built without one */
#endif

#include <errno.h>
#include <stdint.h>
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
