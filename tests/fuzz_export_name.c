/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Fuzz target: the export-name parser, "NAME[@ID[,boot=BOOTID]]"
 * (export_request_parse in common/export-name.c).
 *
 * The input is the name exactly as a client sends it: any bytes, not
 * NUL-terminated.  Besides the sanitizers, the target checks what the
 * server relies on: a parsed name, ID and boot id are NUL-terminated and
 * within their limits, the ID and boot id use only the allowed
 * characters, a MAC-shaped ID is canonical, and a failure always says
 * why.
 */
#include <config.h>

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "export-name.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  struct export_request req;
  const char *why = NULL;
  /* A copy of exactly size bytes, so that reading past it is caught. */
  char *s = malloc(size ? size : 1);
  int r;

  if (!s)
    abort();
  memcpy(s, data, size);
  r = export_request_parse(s, size, &req, &why);
  if (r < 0) {
    if (r != -EINVAL || !why || !*why)
      abort();
  } else {
    size_t n = strnlen(req.name, sizeof req.name);
    size_t idn = strnlen(req.id, sizeof req.id);
    size_t bn = strnlen(req.boot_id, sizeof req.boot_id);

    if (r != 0 || n == sizeof req.name || idn == sizeof req.id ||
        bn == sizeof req.boot_id)
      abort();
    if (memchr(s, '@', size) == NULL && (n != size || idn || bn))
      abort(); /* a plain name is taken whole */
    if (memcmp(req.name, s, n) != 0)
      abort();
    if (idn && !client_id_valid(req.id, idn))
      abort();
    if (client_id_normalize(req.id))
      abort(); /* a MAC comes out in its canonical spelling */
    if (bn && (!idn || !client_id_valid(req.boot_id, bn)))
      abort();
  }
  free(s);
  return 0;
}
