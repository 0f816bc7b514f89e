/* SPDX-License-Identifier: GPL-2.0-or-later */
/* nbdroot: a base pin, the base version a client of a shared read-only
 * export reads for the rest of its boot.
 *
 * A shared read-only export has no overlay; what stands for the client
 * on disk is one small file, OVERLAY_DIR/EXPORT/ID.basepin, that names
 * the version it was given.  nbdsrv writes it (atomically) when it pins
 * a version and reads it when the client comes back after a restart of
 * the server; imgtool gc keeps the versions these files name, as it keeps
 * those of overlays.  The file is text, "key=value" lines after a first
 * line "nbdroot-basepin 1":
 *
 *   base=PATH          absolute path of the pinned version
 *   base-size=N        its size and mtime when pinned: a version changed
 *   base-mtime-ns=N    in place is refused, not served as a mix
 *   boot=BOOTID        the boot it was pinned for ("": pinned until the
 *                      client has had no connection for a while)
 *   base-sha256=HEX    its content id, for a version of an image store
 *                      (absent for a plain image file, and in pins that
 *                      predate it): a server whose store copy is at
 *                      another path finds the version by it
 */
#ifndef NBDROOT_BASE_PIN_H
#define NBDROOT_BASE_PIN_H

#include <stdint.h>

#include "export-name.h"
#include "overlay-format.h"

#define BASE_PIN_SUFFIX ".basepin"

struct base_pin {
  char base_path[OVL_BASE_PATH_MAX];
  uint64_t base_size;
  int64_t base_mtime_ns;
  char boot_id[BOOT_ID_MAX + 1];
  char base_sha256[OVL_SHA256_HEX + 1]; /* or "" */
};

/* Reads PREFIX.basepin: 0, -ENOENT, -EINVAL (not a base pin) or -errno. */
int base_pin_read(const char *prefix, struct base_pin *p);
/* Replaces PREFIX.basepin with p, durably: a temporary file, fsync,
 * rename, fsync of the directory.  0 or -errno. */
int base_pin_write(const char *prefix, const struct base_pin *p);
/* Removes PREFIX.basepin (and a temporary left by a crash): 0 or -errno
 * (-ENOENT when there was none). */
int base_pin_remove(const char *prefix);

#endif
