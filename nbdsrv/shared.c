/* SPDX-License-Identifier: GPL-2.0-or-later */
/* nbdsrv: shared read-only exports: every client reads the base itself.
 *
 * An export with `policy = shared-readonly` has no overlays: all of its
 * clients read one image through its one shared descriptor, writes are
 * refused, and a flush has nothing to do.  It is the lower layer of a
 * layered root, which the client mounts read-only under overlayfs, so
 * what matters is that the version a client reads never changes under a
 * mounted file system, not even when `current` moves or the client
 * reconnects, and that its next boot gets the new current version.
 *
 * So each client (the registry's struct overlay, with an empty map over
 * its base) is given a version when it first connects and keeps it:
 *
 *  - with a boot id (EXPORT@ID,boot=BOOTID, as the agent sends), for the
 *    whole boot: a reconnect with the same boot id gets the same version,
 *    a new boot id the export's current one;
 *  - without one (stock clients; the ID is then the client's address
 *    unless it named one), until it has had no connection for
 *    shared-pin-timeout seconds (the janitor, overlay.c).
 *
 * The pin is in memory, and on disk as OVERLAY_DIR/EXPORT/ID.basepin
 * (common/base-pin.h), written before the client's first reply: a
 * restarted server gives a reconnecting client the version it had, and
 * imgtool gc keeps every pinned version.  A pin is one small file per
 * client, written once per boot, not per connection.  A pin without boot
 * id that a previous server run left is kept until shared-pin-timeout
 * after the start (its client may be reconnecting), then swept
 * (overlay.c) unless its client came back.  A pin with a boot id stays
 * until the client's next boot replaces it (or nbdsrv ctl reset).
 */
#include <config.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "base-pin.h"
#include "log.h"
#include "nbdsrv.h"
#include "util.h"

/* ov's base: the pinned version, which must be there unchanged (or, by
 * content, a copy of it: base-find.c). */
static int
open_pinned(struct overlay *ov, const struct base_pin *pin, const char **why)
{
  int r = base_find(ov->exp,
                    &(struct base_ref){ .who = ov->key,
                                        .path = pin->base_path,
                                        .size = pin->base_size,
                                        .mtime_ns = pin->base_mtime_ns,
                                        .sha256 = pin->base_sha256 },
                    &ov->base, why);

  if (r < 0)
    return r;
  log_debug("client %s: keeps its pinned base %s", ov->key, ov->base->path);
  return 0;
}

/* ov's base: the export's current version, pinned for boot_id. */
static int
pin_current(struct overlay *ov, const char *boot_id, const char **why)
{
  char path[PATH_MAX], dir[PATH_MAX];
  struct base_pin pin = { 0 };
  int r = image_resolve(ov->exp, path, sizeof path);

  if (r == 0)
    r = image_get(path, &ov->base);
  if (r < 0) {
    *why = "the export's image cannot be opened (see the server log)";
    log_err("export %s: image %s: %s", ov->exp->name, ov->exp->image, strerror(-r));
    return r;
  }
  if (format_path(pin.base_path, sizeof pin.base_path, "%s", path) < 0) {
    *why = "the image path is too long for a base pin";
    return -ENAMETOOLONG;
  }
  pin.base_size = ov->base->size;
  pin.base_mtime_ns = ov->base->mtime_ns;
  snprintf(pin.base_sha256, sizeof pin.base_sha256, "%s", ov->base->sha256);
  snprintf(pin.boot_id, sizeof pin.boot_id, "%s", boot_id);
  r = format_path(dir, sizeof dir, "%s/%s", config.overlay_dir, ov->exp->name);
  if (r == 0)
    r = mkdir_p(dir);
  if (r == 0)
    r = base_pin_write(ov->prefix, &pin);
  if (r < 0) {
    *why = "the client's base pin cannot be written (see the server log)";
    log_err("client %s: cannot write %s" BASE_PIN_SUFFIX ": %s", ov->key, ov->prefix,
            strerror(-r));
    return r;
  }
  log_info("client %s: pinned to %s (%s)", ov->key, path,
           boot_id[0] ? "for this boot" : "until it stays away");
  return 0;
}

int
shared_open(struct overlay *ov, const char *boot_id, const char **why)
{
  struct base_pin pin;
  int r = base_pin_read(ov->prefix, &pin);

  if (r == -EINVAL) {
    /* Never replaced blindly: the client may have a file system mounted
     * on the version it names. */
    *why = "the client's base pin is damaged (nbdsrv ctl reset removes it)";
    log_err("client %s: %s" BASE_PIN_SUFFIX " is not a base pin", ov->key, ov->prefix);
    return r;
  }
  if (r < 0 && r != -ENOENT) {
    *why = "the client's base pin cannot be read (see the server log)";
    log_err("client %s: %s" BASE_PIN_SUFFIX ": %s", ov->key, ov->prefix, strerror(-r));
    return r;
  }
  if (r == 0 && strcmp(pin.boot_id, boot_id) == 0)
    r = open_pinned(ov, &pin, why);
  else
    r = pin_current(ov, boot_id, why);
  if (r < 0)
    return r;
  r = ovl_map_init(&ov->file.map, (ov->base->size + OVL_BLOCK_SIZE - 1) / OVL_BLOCK_SIZE);
  if (r < 0) {
    *why = "out of memory";
    return r;
  }
  ov->file.info.size = ov->base->size;
  ov->file.info.base_size = ov->base->size;
  ov->file.info.base_mtime_ns = ov->base->mtime_ns;
  /* It fitted in the pin, which has the same room. */
  (void)format_path(ov->file.info.base_path, sizeof ov->file.info.base_path, "%s",
                    ov->base->path);
  snprintf(ov->file.info.boot_id, sizeof ov->file.info.boot_id, "%s", boot_id);
  return 0;
}

bool
shared_pinned_for_boot(const struct overlay *ov)
{
  return ov->file.info.boot_id[0] != '\0';
}

void
shared_unpin(const struct overlay *ov)
{
  int r = base_pin_remove(ov->prefix);

  if (r < 0 && r != -ENOENT)
    log_err("client %s: cannot remove %s" BASE_PIN_SUFFIX ": %s", ov->key, ov->prefix,
            strerror(-r));
  else
    log_info("client %s: no connection for %us: base pin %s dropped", ov->key,
             config.shared_pin_timeout, ov->base->path);
}
