/* SPDX-License-Identifier: GPL-2.0-or-later */
/* nbdroot initrd agent: loading the kernel modules the initrd carries.
 *
 * imgtool writes /etc/nbdroot/modules: one path per line, relative to /,
 * already in load order (softdeps and modules.dep dependencies first), all
 * plain uncompressed .ko files.  finit_module() lets the kernel read the
 * file itself, so no module is ever copied into the agent's memory.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "agent.h"

static int
load_one(const char *path)
{
  int fd, ret = 0;

  fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return -errno;
  if (syscall(SYS_finit_module, fd, "", 0) && errno != EEXIST)
    ret = -errno;
  close(fd);
  return ret;
}

int
modules_load(const char *list)
{
  static char buf[65536];
  char path[512], nohw[256] = "";
  struct utsname u;
  unsigned loaded = 0, failed = 0, absent = 0;
  uint64_t t0 = now_ms();
  ssize_t n;
  int fd, ret;

  fd = open(list, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    say("no module list %s (%s): assuming the drivers are built in", list,
        strerror(errno));
    return 0;
  }
  n = read(fd, buf, sizeof(buf) - 1);
  close(fd);
  if (n < 0) {
    say("cannot read %s: %s", list, strerror(errno));
    return -EIO;
  }
  buf[n] = '\0';
  uname(&u);

  for (char *line = buf, *next; line && *line; line = next) {
    next = strchr(line, '\n');
    if (next)
      *next++ = '\0';
    while (*line == ' ' || *line == '\t')
      line++;
    if (!*line || *line == '#')
      continue;
    if (snprintf(path, sizeof(path), "%s%s", *line == '/' ? "" : "/", line) >=
        (int)sizeof(path)) {
      say("module path too long in %s: %.60s...", list, line);
      continue;
    }
    ret = load_one(path);
    if (!ret) {
      loaded++;
      continue;
    }
    if (ret == -ENODEV) {
      /* A driver for hardware this machine lacks (one initrd serves many
       * machines, and e.g. crc32c-intel needs SSE4.2): not a failure. */
      const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
      size_t used = strlen(nohw);
      absent++;
      snprintf(nohw + used, sizeof(nohw) - used, "%s%.*s", used ? " " : "",
               (int)strcspn(base, "."), base);
      continue;
    }
    failed++;
    if (ret == -ENOENT)
      say("module %s is listed in %s but missing from the initrd", path, list);
    else if (ret == -ENOEXEC || ret == -EINVAL)
      say("cannot load module %s: %s; was the initrd built for kernel %s?", path,
          strerror(-ret), u.release);
    else
      say("cannot load module %s: %s", path, strerror(-ret));
  }
  say("loaded %u modules in %llu ms%s%s%s", loaded, (unsigned long long)(now_ms() - t0),
      failed ? " (some failed, see above)" : "", absent ? "; no hardware here for: " : "",
      nohw);
  return failed ? -EIO : 0;
}
