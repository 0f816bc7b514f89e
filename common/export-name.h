/* SPDX-License-Identifier: GPL-2.0-or-later */
/* nbdroot: the export name a client sends, "NAME[@ID[,boot=BOOTID]]".
 *
 * NAME is the export.  ID names the client's overlay (default: the
 * client's address).  BOOTID, generated once per boot by the agent, lets a
 * reset-on-boot export tell a new boot from a reconnect of the same boot.
 */
#ifndef NBDROOT_EXPORT_NAME_H
#define NBDROOT_EXPORT_NAME_H

#include <stdbool.h>
#include <stddef.h>

#define CLIENT_ID_MAX 64
#define BOOT_ID_MAX 64

struct export_request {
  char name[256];
  char id[CLIENT_ID_MAX + 1];    /* "" when the client sent none */
  char boot_id[BOOT_ID_MAX + 1]; /* "" when the client sent none */
};

/* True when s is a valid client ID: [A-Za-z0-9._:-]{1,64}, not beginning
 * with '.' (no ".", ".." or hidden file among the overlays). */
bool client_id_valid(const char *s, size_t len);

/* Client IDs that are MAC addresses have one canonical form, the one the
 * nbdroot agent sends and PXELINUX uses: lower case, dashes
 * ("40-01-1c-47-44-1e").  An ID is MAC-shaped when it is six pairs of hex
 * digits separated by ':' or '-', in any case; every place that takes an
 * ID (export names, pins, nbdsrv ctl, imgtool) turns those into the
 * canonical form, so that "40:01:1C:47:44:1E" names the same client. */
#define CLIENT_ID_MAC_LEN 17

/* True when s (len bytes) is MAC-shaped.  No IP address is. */
bool client_id_is_mac(const char *s, size_t len);

/* Rewrites the NUL-terminated id in place in the canonical form when it
 * is MAC-shaped; other IDs are left alone.  Returns true when id
 * changed, i.e. it was a MAC in another spelling. */
bool client_id_normalize(char *id);

/* Parses a requested export name of len bytes (not NUL-terminated, may
 * contain NULs); a MAC-shaped ID comes out canonical.  Returns 0, or
 * -EINVAL with *why set to a static reason. */
int export_request_parse(const char *s, size_t len, struct export_request *out,
                         const char **why);

#endif
