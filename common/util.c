/* nbdroot: small helpers used by several programs. */
#include <config.h>

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>

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
