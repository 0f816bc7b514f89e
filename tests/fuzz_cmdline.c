/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Fuzz target: the initrd agent's kernel command-line parser
 * (cmdline_parse in initrd/cmdline.c), built with the host's C library
 * instead of musl; cmdline.c is pure C over strings and needs no shim.
 *
 * The input is the command line.  The error buffer is allocated with a
 * size that varies with the input, so that writing past it is caught.
 * A line that parses is also printed (to /dev/null) and turned into the
 * export name the agent sends, as "nbdroot-agent --parse-cmdline" does.
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent.h"

static int devnull = -1;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  struct agent_config cfg;
  size_t errlen = 1 + size % 300;
  char *line = malloc(size + 1), *err = malloc(errlen);
  char wire[512];
  int r;

  if (!line || !err)
    abort();
  if (devnull < 0)
    devnull = open("/dev/null", O_WRONLY | O_CLOEXEC);
  memcpy(line, data, size);
  line[size] = '\0';
  r = cmdline_parse(line, &cfg, err, errlen);
  if (!memchr(err, '\0', errlen))
    abort();
  if (r == 0) {
    if (!cfg.nbd || cfg.ip_mode == IP_OFF)
      abort();
    if (!memchr(cfg.host, '\0', sizeof cfg.host) ||
        !memchr(cfg.export_name, '\0', sizeof cfg.export_name) ||
        !memchr(cfg.fstype, '\0', sizeof cfg.fstype) ||
        !memchr(cfg.rootflags, '\0', sizeof cfg.rootflags) ||
        !memchr(cfg.init, '\0', sizeof cfg.init) ||
        !memchr(cfg.device, '\0', sizeof cfg.device) ||
        !memchr(cfg.hostname, '\0', sizeof cfg.hostname) ||
        !memchr(cfg.state_export, '\0', sizeof cfg.state_export) ||
        !memchr(cfg.keep, '\0', sizeof cfg.keep))
      abort();
    cmdline_print(&cfg, devnull);
    (void)cmdline_wire_name(&cfg, cfg.export_name, "52:54:00:12:34:56",
                            "0123456789abcdef0123456789abcdef", wire, sizeof wire);
  } else if (!err[0] && errlen > 1) {
    abort(); /* an error always says which word and why */
  }
  free(line);
  free(err);
  return 0;
}
