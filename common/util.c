/* SPDX-License-Identifier: GPL-2.0-or-later */
/* nbdroot: small helpers used by several programs. */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io.h"
#include "util.h"

int
format_path(char *buf, size_t len, const char *fmt, ...)
{
  va_list ap;
  int n;

  va_start(ap, fmt);
  n = vsnprintf(buf, len, fmt, ap);
  va_end(ap);
  if (n < 0 || (size_t)n >= len)
    return -ENAMETOOLONG;
  return 0;
}

/* "123", "64K", "512M", "2G", "1T" (binary units; an optional B or
 * iB after the unit).  Returns 0, -EINVAL or -ERANGE. */
int
parse_size(const char *s, uint64_t *out)
{
  char *end;
  unsigned long long v;
  unsigned shift = 0;

  if (!*s || *s == '-')
    return -EINVAL;
  errno = 0;
  v = strtoull(s, &end, 10);
  if (errno || end == s)
    return -EINVAL;
  switch (*end) {
    case '\0': break;
    case 'k':
    case 'K':
      shift = 10;
      end++;
      break;
    case 'm':
    case 'M':
      shift = 20;
      end++;
      break;
    case 'g':
    case 'G':
      shift = 30;
      end++;
      break;
    case 't':
    case 'T':
      shift = 40;
      end++;
      break;
    default: return -EINVAL;
  }
  if (*end == 'i' && end[1] == 'B')
    end += 2;
  else if (*end == 'B')
    end++;
  if (*end)
    return -EINVAL;
  if (shift && v > (UINT64_MAX >> shift))
    return -ERANGE;
  *out = (uint64_t)v << shift;
  return 0;
}

char *
format_size(uint64_t v, char out[16])
{
  static const char units[] = "KMGTP";
  double d = (double)v;
  int u = -1;

  while (d >= 1024 && u < 4) {
    d /= 1024;
    u++;
  }
  if (u < 0)
    snprintf(out, 16, "%llu", (unsigned long long)v);
  else
    snprintf(out, 16, d < 10 ? "%.1f%c" : "%.0f%c", d, units[u]);
  return out;
}

bool
ends_with(const char *s, const char *suffix)
{
  size_t n = strlen(s), m = strlen(suffix);

  return n >= m && strcmp(s + n - m, suffix) == 0;
}

/* mkdir, and an fsync of the parent when the directory is new: without
 * it a power loss may take the new directory, and every file later
 * made durable inside it, with it.  0 also when it exists. */
int
mkdir_durable(const char *path)
{
  if (mkdir(path, 0700) < 0)
    return errno == EEXIST ? 0 : -errno;
  return fsync_dir_of(path);
}

int
mkdir_p(const char *path)
{
  char buf[PATH_MAX];
  int r;

  if (format_path(buf, sizeof buf, "%s", path) < 0)
    return -ENAMETOOLONG;
  for (char *p = buf + 1; *p; p++) {
    if (*p != '/')
      continue;
    *p = '\0';
    r = mkdir_durable(buf);
    if (r < 0)
      return r;
    *p = '/';
  }
  return mkdir_durable(buf);
}
