/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Fuzz target: imgtool's kernel module resolution (modules_resolve in
 * imgtool/modules.c) over modules.dep, modules.softdep, modules.alias
 * and modules.builtin.
 *
 * The input is split at NUL bytes into up to six parts: the contents of
 * modules.dep, modules.softdep, modules.alias and modules.builtin, then
 * the names to resolve and the optional names (separated by spaces).  A
 * part the input does not reach is a file that does not exist; without
 * names, "ext4 nbd virtio_net" are resolved, as imgtool initrd does.
 * The files go to a temporary modules directory that also holds a few
 * (empty) .ko files.  Besides the sanitizers, the target checks that
 * every module is in the load order at most once.
 */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fuzz.h"
#include "imgtool.h"

#define MAX_NAMES 16

static char moddir[64];

static const char *const files[] = { "modules.dep", "modules.softdep", "modules.alias",
                                     "modules.builtin" };

/* Removes the files of the last input. */
static void
remove_files(void)
{
  char path[128];

  for (unsigned i = 0; i < 4; i++) {
    snprintf(path, sizeof path, "%s/%s", moddir, files[i]);
    unlink(path);
  }
}

static void
cleanup(void)
{
  fuzz_rm_rf(moddir);
}

static void
make_ko(const char *rel)
{
  char path[256], *slash;
  int fd;

  snprintf(path, sizeof path, "%s/%s", moddir, rel);
  for (slash = strchr(path + strlen(moddir) + 1, '/'); slash;
       slash = strchr(slash + 1, '/')) {
    *slash = '\0';
    mkdir(path, 0700);
    *slash = '/';
  }
  fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
  if (fd >= 0)
    close(fd);
}

int LLVMFuzzerInitialize(int *argc, char ***argv);

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
  const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";

  (void)argc;
  (void)argv;
  snprintf(moddir, sizeof moddir, "%s/fuzz_modules.XXXXXX", base);
  if (!mkdtemp(moddir)) {
    perror("fuzz_modules: mkdtemp");
    abort();
  }
  atexit(cleanup);
  make_ko("kernel/fs/ext4/ext4.ko");
  make_ko("kernel/fs/jbd2/jbd2.ko");
  make_ko("kernel/fs/mbcache.ko");
  make_ko("kernel/lib/crc16.ko");
  make_ko("kernel/crypto/crc32c_generic.ko");
  make_ko("kernel/drivers/block/nbd.ko");
  make_ko("kernel/drivers/net/virtio_net.ko.xz");
  make_ko("kernel/drivers/net/net_failover.ko");
  return 0;
}

static void
write_part(const char *name, const uint8_t *p, size_t len)
{
  char path[128];
  int fd;

  snprintf(path, sizeof path, "%s/%s", moddir, name);
  fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0 || (len && write(fd, p, len) != (ssize_t)len) || close(fd) < 0) {
    perror("fuzz_modules: write");
    abort();
  }
}

/* Splits the NUL-terminated s at spaces into at most MAX_NAMES words. */
static size_t
words(char *s, char **w)
{
  size_t n = 0;
  char *save, *tok;

  for (tok = strtok_r(s, " \t\n", &save); tok && n < MAX_NAMES;
       tok = strtok_r(NULL, " \t\n", &save))
    w[n++] = tok;
  return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  static char default_names[] = "ext4 nbd virtio_net";
  const uint8_t *p = data, *end = data + size;
  char *parts[2] = { NULL, NULL }, *names[MAX_NAMES], *optional[MAX_NAMES];
  size_t nnames, noptional = 0;
  struct module_set set;
  unsigned i;

  remove_files();
  for (i = 0; i < 6; i++) {
    const uint8_t *nul = memchr(p, '\0', (size_t)(end - p));
    size_t len = nul ? (size_t)(nul - p) : (size_t)(end - p);

    if (i < 4) {
      write_part(files[i], p, len);
    } else {
      parts[i - 4] = malloc(len + 1);
      if (!parts[i - 4])
        abort();
      memcpy(parts[i - 4], p, len);
      parts[i - 4][len] = '\0';
    }
    if (!nul)
      break;
    p = nul + 1;
  }
  nnames = words(parts[0] ? parts[0] : default_names, names);
  if (parts[1])
    noptional = words(parts[1], optional);
  if (modules_resolve(moddir, names, nnames, optional, noptional, &set) == 0) {
    for (size_t a = 0; a < set.n; a++)
      for (size_t b = a + 1; b < set.n; b++)
        if (strcmp(set.paths[a], set.paths[b]) == 0)
          abort(); /* loaded twice */
    module_set_free(&set);
  }
  free(parts[0]);
  free(parts[1]);
  return 0;
}
