/* SPDX-License-Identifier: GPL-2.0-or-later */
/* nbdsrv: identity binding: a client ID belongs to the address that
 * first used it.
 *
 * A client names its ID (EXPORT@ID, the agent sends its MAC), and a MAC
 * is no secret: any machine of the lab network could name another's and
 * read or, with a new boot id, wipe its disk.  Pins (acl.c) stop that
 * when the admin writes them; without pins, the first address that uses
 * an ID owns it, and the ID is refused from any other address until the
 * admin moves it (nbdsrv ctl move-id) or pins it.  IDs that are IP
 * addresses need no binding (acl.c accepts them from that address only),
 * pinned IDs follow their pins.
 *
 * The binding is kept beside the overlay, in OVERLAY_DIR/EXPORT/ID.owner,
 * a text file written atomically (a temporary file named by the process,
 * as servers sharing the directory may write at once; fsync, rename,
 * fsync of the directory), so that it outlives restarts, an overlay's reset and a
 * reset-on-boot client's new boot:
 *
 *   nbdroot-owner 1
 *   address=ADDR
 *
 * It is checked and written by the attach thread when it opens the
 * overlay (file system calls stay off the event loops) and kept in the
 * struct overlay while it is open.
 */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "io.h"
#include "nbdsrv.h"
#include "util.h"

#define BINDING_MAGIC "nbdroot-owner 1\naddress="

static bool
id_is_pinned(const struct export *e, const char *id)
{
  for (unsigned i = 0; i < e->npins; i++)
    if (strcmp(e->pins[i].id, id) == 0)
      return true;
  return false;
}

bool
binding_applies(const struct export *e, const char *id)
{
  struct peer_addr a;

  return peer_addr_parse(id, &a) < 0 && !id_is_pinned(e, id);
}

int
binding_read(const char *prefix, char *addr, size_t len)
{
  char path[PATH_MAX], buf[256];
  struct peer_addr a;
  size_t mlen = strlen(BINDING_MAGIC);
  ssize_t n;
  int fd;

  if (format_path(path, sizeof path, "%s" BINDING_SUFFIX, prefix) < 0)
    return -ENAMETOOLONG;
  fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0)
    return -errno;
  n = full_read(fd, buf, sizeof buf - 1);
  close(fd);
  if (n < 0)
    return (int)n;
  buf[n] = '\0';
  if ((size_t)n <= mlen || memcmp(buf, BINDING_MAGIC, mlen) != 0)
    return -EINVAL;
  buf[mlen + strcspn(buf + mlen, "\n")] = '\0';
  if (peer_addr_parse(buf + mlen, &a) < 0 || strlen(buf + mlen) >= len)
    return -EINVAL;
  snprintf(addr, len, "%s", buf + mlen);
  return 0;
}

int
binding_write(const char *prefix, const char *addr)
{
  char path[PATH_MAX], tmp[PATH_MAX], buf[256], dir[PATH_MAX];
  int n, r;

  if (format_path(path, sizeof path, "%s" BINDING_SUFFIX, prefix) < 0 ||
      format_path(tmp, sizeof tmp, "%s" BINDING_SUFFIX ".%d.tmp", prefix, (int)getpid()) <
          0)
    return -ENAMETOOLONG;
  snprintf(dir, sizeof dir, "%s", path);
  r = mkdir_p(dirname(dir));
  if (r < 0)
    return r;
  n = snprintf(buf, sizeof buf, BINDING_MAGIC "%s\n", addr);
  if (n < 0 || (size_t)n >= sizeof buf)
    return -EINVAL;
  return write_file_durable(path, tmp, buf, (size_t)n);
}

int
binding_remove(const char *prefix)
{
  char path[PATH_MAX];

  if (format_path(path, sizeof path, "%s" BINDING_SUFFIX, prefix) < 0)
    return -ENAMETOOLONG;
  return unlink(path) < 0 ? -errno : 0;
}
