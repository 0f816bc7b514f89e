/* SPDX-License-Identifier: GPL-2.0-or-later */
/* nbdroot: growable arrays.
 *
 * An array is a pointer, a count of elements in use and a count of
 * elements allocated (size_t), kept wherever the owner likes, so that
 * existing structures keep their fields.  VEC_RESERVE makes room and
 * doubles the allocation, so that appending one element at a time costs
 * amortised O(1) and no caller writes the doubling by hand:
 *
 *   if (VEC_RESERVE(l->v, l->cap, l->n + 1) < 0)
 *     return -ENOMEM;
 *   l->v[l->n++] = x;
 *
 * The initrd agent may use it: nothing here beyond libc.
 */
#ifndef NBDROOT_VEC_H
#define NBDROOT_VEC_H

#include <stdarg.h>
#include <stddef.h>

/* Makes *ptr (*cap elements of elem bytes) hold at least need elements:
 * 0, or -ENOMEM with *ptr and *cap unchanged. */
int vec_reserve(void **ptr, size_t *cap, size_t need, size_t elem);

/* The same for an array of any type: ptr is the array (an lvalue of type
 * T *), cap its size_t count of allocated elements. */
#define VEC_RESERVE(ptr, cap, need)                                   \
  __extension__({                                                     \
    void *vec_p_ = (ptr);                                             \
    int vec_r_ = vec_reserve(&vec_p_, &(cap), (need), sizeof *(ptr)); \
    (ptr) = vec_p_;                                                   \
    vec_r_;                                                           \
  })

/* Text that grows: appends printf output to *p (*len bytes of text,
 * *cap allocated, kept NUL-terminated).  0, -ENOMEM (the text as it was)
 * or -EINVAL (a bad format). */
int vec_vprintf(char **p, size_t *len, size_t *cap, const char *fmt, va_list ap)
    __attribute__((format(printf, 4, 0)));

#endif
