/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Fuzz target: nbdsrv's configuration file parser.
 *
 * The input is written to a memory file and read by config_file_parse()
 * as a config file; whatever exports it defines are then put through the
 * access-control checks (with a few client addresses and IDs), which
 * parse nothing but walk the address lists and pins the parser built.
 * config_free() after each input; the global config is restored, so that
 * one input never changes how the next one parses.
 */
#include <config.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "nbdsrv.h"
#include "util.h"

static int memfd = -1;
static char path[64];
static struct config initial;

int LLVMFuzzerInitialize(int *argc, char ***argv);

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
  (void)argc;
  (void)argv;
  memfd = memfd_create("nbdsrv.conf", MFD_CLOEXEC);
  if (memfd < 0) {
    perror("fuzz_config: memfd_create");
    abort();
  }
  snprintf(path, sizeof path, "/proc/self/fd/%d", memfd);
  keys_defaults(&config);
  initial = config;
  return 0;
}

static void
check_exports(void)
{
  static const char *const peers[] = { "192.0.2.10", "2001:db8::7", "10.1.2.3",
                                       "unknown" };
  static const char *const ids[] = { "", "192.0.2.10", "lab-01", "52-54-00-12-34-56" };

  for (unsigned i = 0; i < config.nexports; i++) {
    const struct export *e = &config.exports[i];

    if (!memchr(e->name, '\0', sizeof e->name) ||
        !memchr(e->image, '\0', sizeof e->image) ||
        !memchr(e->description, '\0', sizeof e->description))
      abort();
    if (config_find_export(e->name) != e)
      abort(); /* names are unique */
    for (unsigned p = 0; p < ARRAY_SIZE(peers); p++) {
      (void)acl_check_address(e, peers[p]);
      for (unsigned k = 0; k < ARRAY_SIZE(ids); k++)
        (void)acl_check(e, peers[p], ids[k]);
    }
    for (unsigned k = 0; k < e->npins; k++)
      if (!client_id_valid(e->pins[k].id, strlen(e->pins[k].id)) ||
          e->pins[k].from.n == 0)
        abort();
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  if (ftruncate(memfd, 0) < 0 ||
      (size && pwrite(memfd, data, size, 0) != (ssize_t)size)) {
    perror("fuzz_config: memfd");
    abort();
  }
  if (config_file_parse(path) == 0)
    check_exports();
  config_free();
  config = initial;
  return 0;
}
