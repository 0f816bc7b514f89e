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
#define BOOT_ID_MAX   64

struct export_request {
  char name[256];
  char id[CLIENT_ID_MAX + 1];     /* "" when the client sent none */
  char boot_id[BOOT_ID_MAX + 1];  /* "" when the client sent none */
};

/* True when s is a valid client ID: [A-Za-z0-9._:-]{1,64}. */
bool client_id_valid(const char *s, size_t len);

/* Parses a requested export name of len bytes (not NUL-terminated, may
 * contain NULs).  Returns 0, or -EINVAL with *why set to a static reason. */
int export_request_parse(const char *s, size_t len, struct export_request *out,
                         const char **why);

#endif
