/* SPDX-License-Identifier: GPL-2.0-or-later */
/* nbdroot initrd agent: the list of NBD servers a client may use.
 *
 * Several servers export the same images and share the clients' overlays
 * (see DESIGN.md, "More than one server"), so a client can boot from any
 * of them and, when its server dies, carry on with another.  The list is
 * written SERVER[:PORT][,SERVER[:PORT]...]; an IPv6 server goes in
 * brackets when it has a port ([fd00::1]:10809), and may go without them
 * when it has none.  A server without a port gets the default port the
 * caller gives (the first server's).
 *
 * Pure: strings in, strings out, no I/O but the error text, so the command
 * line parser (and its fuzz target) can use it.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent.h"

bool
server_host_valid(const char *h)
{
  struct in6_addr a6;
  struct in_addr a4;

  return inet_pton(AF_INET, h, &a4) == 1 || inet_pton(AF_INET6, h, &a6) == 1;
}

static bool
port_valid(const char *s)
{
  char *end;
  unsigned long v;

  if (!isdigit((unsigned char)*s))
    return false;
  errno = 0;
  v = strtoul(s, &end, 10);
  return !errno && !*end && v > 0 && v <= 65535;
}

/* Splits one item, "HOST", "HOST:PORT", "[V6]", "[V6]:PORT" or "V6", of n
 * bytes at s.  Returns false if it is none of those. */
static bool
split_item(const char *s, size_t n, struct nbd_server *out)
{
  char item[128];
  char *host = item, *port = NULL, *colon;

  if (n >= sizeof(item))
    return false;
  memcpy(item, s, n);
  item[n] = '\0';
  if (item[0] == '[') {
    char *close = strchr(item, ']');

    if (!close || (close[1] && close[1] != ':'))
      return false;
    *close = '\0';
    host = item + 1;
    if (close[1])
      port = close + 2;
  } else if ((colon = strchr(item, ':')) && !strchr(colon + 1, ':')) {
    *colon = '\0';
    port = colon + 1;
  }
  if (port && !port_valid(port))
    return false;
  if (strlen(host) >= sizeof(out->host) || !server_host_valid(host))
    return false;
  snprintf(out->host, sizeof(out->host), "%s", host);
  snprintf(out->port, sizeof(out->port), "%s", port ? port : "");
  return true;
}

int
servers_add(struct server_list *l, const char *host, const char *port)
{
  for (unsigned i = 0; i < l->n; i++)
    if (!strcmp(l->s[i].host, host) && !strcmp(l->s[i].port, port))
      return 0; /* trying a server twice in a row helps nobody */
  if (l->n >= SERVERS_MAX)
    return -E2BIG;
  snprintf(l->s[l->n].host, sizeof(l->s[l->n].host), "%s", host);
  snprintf(l->s[l->n].port, sizeof(l->s[l->n].port), "%s", port);
  l->n++;
  return 0;
}

int
servers_parse(const char *s, size_t n, struct server_list *l, char *err, size_t errlen)
{
  const char *end = s + n;

  if (!n) {
    snprintf(err, errlen, "empty list of servers");
    return -EINVAL;
  }
  for (const char *p = s; p <= end;) {
    const char *comma = memchr(p, ',', (size_t)(end - p));
    size_t len = (size_t)((comma ? comma : end) - p);
    struct nbd_server one;

    if (!split_item(p, len, &one)) {
      snprintf(err, errlen,
               "server '%.*s' is not IP[:PORT] (names are not resolved; "
               "IPv6 with a port goes in brackets: [fd00::1]:10809)",
               (int)(len > 64 ? 64 : len), p);
      return -EINVAL;
    }
    if (servers_add(l, one.host, one.port)) {
      snprintf(err, errlen, "more than %d servers", SERVERS_MAX);
      return -EINVAL;
    }
    if (!comma)
      break;
    p = comma + 1;
  }
  return 0;
}

void
servers_default_port(struct server_list *l, const char *port)
{
  for (unsigned i = 0; i < l->n; i++)
    if (!l->s[i].port[0])
      snprintf(l->s[i].port, sizeof(l->s[i].port), "%s", port);
}

void
server_format(const struct nbd_server *sv, char *buf, size_t len)
{
  bool v6 = strchr(sv->host, ':') != NULL;

  snprintf(buf, len, "%s%s%s:%s", v6 ? "[" : "", sv->host, v6 ? "]" : "", sv->port);
}
