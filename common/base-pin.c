/* SPDX-License-Identifier: GPL-2.0-or-later */
/* nbdroot: base pin files (format in base-pin.h). */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base-pin.h"
#include "io.h"
#include "util.h"

#define BASE_PIN_MAGIC "nbdroot-basepin 1"

/* One "key=value" line into p: 0, or -EINVAL.  Unknown keys are left
 * for later versions of the format. */
static int
parse_line(char *line, struct base_pin *p)
{
  char *eq = strchr(line, '='), *end;
  const char *v;

  if (!eq)
    return -EINVAL;
  *eq = '\0';
  v = eq + 1;
  errno = 0;
  if (strcmp(line, "base") == 0) {
    if (v[0] != '/' || strlen(v) >= sizeof p->base_path)
      return -EINVAL;
    strcpy(p->base_path, v);
  } else if (strcmp(line, "base-size") == 0) {
    p->base_size = strtoull(v, &end, 10);
    if (errno || *end || end == v)
      return -EINVAL;
  } else if (strcmp(line, "base-mtime-ns") == 0) {
    p->base_mtime_ns = strtoll(v, &end, 10);
    if (errno || *end || end == v)
      return -EINVAL;
  } else if (strcmp(line, "base-sha256") == 0) {
    if (strlen(v) != OVL_SHA256_HEX || strspn(v, "0123456789abcdef") != OVL_SHA256_HEX)
      return -EINVAL;
    strcpy(p->base_sha256, v);
  } else if (strcmp(line, "boot") == 0) {
    if (strlen(v) >= sizeof p->boot_id)
      return -EINVAL;
    strcpy(p->boot_id, v);
  }
  return 0;
}

int
base_pin_read(const char *prefix, struct base_pin *p)
{
  char path[PATH_MAX], buf[2048], *line, *save = NULL;
  ssize_t n;
  int fd, r;

  if (format_path(path, sizeof path, "%s" BASE_PIN_SUFFIX, prefix) < 0)
    return -ENAMETOOLONG;
  fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return -errno;
  n = full_read(fd, buf, sizeof buf - 1);
  close(fd);
  if (n < 0)
    return (int)n;
  if ((size_t)n == sizeof buf - 1)
    return -EINVAL;
  buf[n] = '\0';
  memset(p, 0, sizeof *p);
  line = strtok_r(buf, "\n", &save);
  if (!line || strcmp(line, BASE_PIN_MAGIC) != 0)
    return -EINVAL;
  while ((line = strtok_r(NULL, "\n", &save)))
    if ((r = parse_line(line, p)) < 0)
      return r;
  return p->base_path[0] ? 0 : -EINVAL;
}

int
base_pin_write(const char *prefix, const struct base_pin *p)
{
  char path[PATH_MAX], tmp[PATH_MAX], buf[2048];
  int n;

  if (format_path(path, sizeof path, "%s" BASE_PIN_SUFFIX, prefix) < 0 ||
      format_path(tmp, sizeof tmp, "%s" BASE_PIN_SUFFIX ".tmp", prefix) < 0)
    return -ENAMETOOLONG;
  n = snprintf(buf, sizeof buf,
               BASE_PIN_MAGIC "\nbase=%s\nbase-size=%" PRIu64 "\nbase-mtime-ns=%" PRId64
                              "\nboot=%s\n%s%s%s",
               p->base_path, p->base_size, p->base_mtime_ns, p->boot_id,
               p->base_sha256[0] ? "base-sha256=" : "", p->base_sha256,
               p->base_sha256[0] ? "\n" : "");
  if (n < 0 || (size_t)n >= sizeof buf)
    return -ENAMETOOLONG;
  return write_file_durable(path, tmp, buf, (size_t)n);
}

int
base_pin_remove(const char *prefix)
{
  char path[PATH_MAX], tmp[PATH_MAX];

  if (format_path(path, sizeof path, "%s" BASE_PIN_SUFFIX, prefix) < 0 ||
      format_path(tmp, sizeof tmp, "%s" BASE_PIN_SUFFIX ".tmp", prefix) < 0)
    return -ENAMETOOLONG;
  unlink(tmp);
  return unlink(path) < 0 ? -errno : 0;
}
