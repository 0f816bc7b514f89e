/* SPDX-License-Identifier: GPL-2.0-or-later */
/* nbdroot: client IDs, and parsing "NAME[@ID[,boot=BOOTID]]" export
 * requests. */
#include <config.h>

#include <ctype.h>
#include <errno.h>
#include <string.h>

#include "export-name.h"

static bool
id_char(char c)
{
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
         c == '.' || c == '_' || c == ':' || c == '-';
}

bool
client_id_valid(const char *s, size_t len)
{
  /* Not ".", "..", nor a hidden file beside the overlays. */
  if (len < 1 || len > CLIENT_ID_MAX || s[0] == '.')
    return false;
  for (size_t i = 0; i < len; i++)
    if (!id_char(s[i]))
      return false;
  return true;
}

/* Six pairs of hex digits, each pair but the last followed by ':' or '-'.
 * No IP address has this shape: an IPv6 address has eight groups or a
 * "::", an IPv4 address dots. */
bool
client_id_is_mac(const char *s, size_t len)
{
  if (len != CLIENT_ID_MAC_LEN)
    return false;
  for (size_t i = 0; i < len; i++) {
    bool sep = i % 3 == 2;
    if (sep ? s[i] != ':' && s[i] != '-' : !isxdigit((unsigned char)s[i]))
      return false;
  }
  return true;
}

bool
client_id_normalize(char *id)
{
  bool changed = false;

  if (!client_id_is_mac(id, strlen(id)))
    return false;
  for (size_t i = 0; i < CLIENT_ID_MAC_LEN; i++) {
    char c = i % 3 == 2 ? '-' : (char)tolower((unsigned char)id[i]);
    changed |= c != id[i];
    id[i] = c;
  }
  return changed;
}

int
export_request_parse(const char *s, size_t len, struct export_request *out,
                     const char **why)
{
  const char *at, *comma, *end = s + len;
  size_t namelen;

  memset(out, 0, sizeof *out);
  if (memchr(s, '\0', len)) {
    *why = "export name contains a NUL byte";
    return -EINVAL;
  }
  at = memchr(s, '@', len);
  namelen = at ? (size_t)(at - s) : len;
  if (namelen >= sizeof out->name) {
    *why = "export name too long";
    return -EINVAL;
  }
  memcpy(out->name, s, namelen);
  if (!at)
    return 0;

  at++;
  comma = memchr(at, ',', end - at);
  if (!client_id_valid(at, (comma ? comma : end) - at)) {
    *why = "client ID must be 1-64 characters of [A-Za-z0-9._:-], not beginning with '.'";
    return -EINVAL;
  }
  memcpy(out->id, at, (comma ? comma : end) - at);
  /* However the client spells its MAC, it gets the agent's overlay. */
  client_id_normalize(out->id);

  /* Parameters after the ID: a comma-separated key=value list. */
  while (comma) {
    const char *p = comma + 1, *next = memchr(p, ',', end - p);
    const char *pend = next ? next : end;

    if ((size_t)(pend - p) > 5 && memcmp(p, "boot=", 5) == 0 &&
        client_id_valid(p + 5, pend - p - 5) && (size_t)(pend - p - 5) <= BOOT_ID_MAX) {
      memcpy(out->boot_id, p + 5, pend - p - 5);
      out->boot_id[pend - p - 5] = '\0';
    } else {
      *why = "unknown or malformed parameter after the client ID (expected boot=BOOTID)";
      return -EINVAL;
    }
    comma = next;
  }
  return 0;
}
