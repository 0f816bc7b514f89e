/* SPDX-License-Identifier: GPL-2.0-or-later */
/* nbdroot: small helpers used by several programs. */
#ifndef NBDROOT_UTIL_H
#define NBDROOT_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The number of elements of an array (not of a pointer). */
#define ARRAY_SIZE(a) (sizeof(a) / sizeof(a)[0])

/* snprintf that reports truncation: 0, or -ENAMETOOLONG when the result
 * did not fit (buf then holds a truncated, terminated string). */
int format_path(char *buf, size_t len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* "123", "64K", "512M", "2G", "1T" (binary units).  0, -EINVAL or
 * -ERANGE. */
int parse_size(const char *s, uint64_t *out);
/* The other way, for people: "0", "512", "12K", "3.4M", "1.2G". */
char *format_size(uint64_t v, char out[16]);

/* Creates the directory path (mode 0700) and fsyncs its parent if it is
 * new, so that it survives a power loss: 0 (also if it exists) or -errno. */
int mkdir_durable(const char *path);

/* Creates path and its missing parents (mode 0700), each new one made
 * durable in its parent: 0 or -errno. */
int mkdir_p(const char *path);

/* Whether s ends with suffix ("x.map" with ".map"). */
bool ends_with(const char *s, const char *suffix);

#endif
