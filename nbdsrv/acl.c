/* SPDX-License-Identifier: GPL-2.0-or-later */
/* nbdsrv: access control: who may use which export, as which client.
 *
 * Three rules, all per export, all checked when a client picks the export
 * (NBD_OPT_GO, NBD_OPT_INFO, NBD_OPT_EXPORT_NAME), and by NBD_OPT_LIST,
 * which shows a client only the exports it may use:
 *
 *   deny = CIDR...    these addresses are refused (deny wins);
 *   allow = CIDR...   if given, only these addresses are let in;
 *   pin = ID CIDR...  the overlay ID may only be used from these addresses,
 *                     so one lab machine cannot open another's disk;
 *   require-pin       every ID a client names must be pinned.
 *
 * A pinned ID that is a MAC is kept in its canonical spelling, the one
 * the export-name parser hands out (common/export-name.h): an admin
 * writes "40:01:1C:47:44:1E", the agent sends "40-01-1c-47-44-1e".
 *
 * A client without an ID is identified by its address, and an ID that is
 * itself an IP address is taken to mean that identity: it is only accepted
 * from that address.  Otherwise any client could name another's address
 * and get that client's overlay.
 */
#include <config.h>

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "nbdsrv.h"
#include "vec.h"

/* Clients turned away: logged without -v (the admin of a lab whose
 * clients do not boot looks here first), rate-limited (a flood must not
 * fill the disk). */
static struct log_limit refusal_log = LOG_LIMIT(LOG_WARNING, "refusals");

void
acl_log_refusal(const char *peer, const char *export, const char *id, const char *why)
{
  if (export)
    log_limited(&refusal_log, "%s: refused export %s as client %s: %s", peer, export, id,
                why);
  else
    log_limited(&refusal_log, "%s: refused connection: %s", peer, why);
}

void
acl_log_bad_request(const char *peer, const char *quoted, const char *why)
{
  log_limited(&refusal_log, "%s: refused export request %s: %s", peer, quoted, why);
}

int
peer_addr_parse(const char *s, struct peer_addr *a)
{
  memset(a, 0, sizeof *a);
  if (inet_pton(AF_INET, s, a->addr) == 1) {
    a->family = AF_INET;
    return 0;
  }
  if (inet_pton(AF_INET6, s, a->addr) == 1) {
    a->family = AF_INET6;
    return 0;
  }
  return -EINVAL;
}

/* One "ADDR" or "ADDR/PREFIX". */
static int
cidr_parse(const char *s, size_t len, struct cidr *out)
{
  char buf[INET6_ADDRSTRLEN + 8];
  char *slash;
  unsigned max;

  if (len == 0 || len >= sizeof buf)
    return -EINVAL;
  memcpy(buf, s, len);
  buf[len] = '\0';
  slash = strchr(buf, '/');
  if (slash)
    *slash = '\0';
  if (peer_addr_parse(buf, &out->a) < 0)
    return -EINVAL;
  max = out->a.family == AF_INET ? 32 : 128;
  out->prefix = max;
  if (slash) {
    char *end;
    unsigned long p = strtoul(slash + 1, &end, 10);
    if (end == slash + 1 || *end || p > max)
      return -EINVAL;
    out->prefix = p;
  }
  return 0;
}

int
cidr_list_add(struct cidr_list *l, const char *s)
{
  const char *p = s;

  for (;;) {
    struct cidr c;
    size_t n;

    while (*p == ',' || isspace((unsigned char)*p))
      p++;
    if (!*p)
      break;
    n = strcspn(p, ", \t");
    if (cidr_parse(p, n, &c) < 0)
      return -EINVAL;
    if (VEC_RESERVE(l->v, l->cap, (size_t)l->n + 1) < 0)
      return -ENOMEM;
    l->v[l->n++] = c;
    p += n;
  }
  return l->n > 0 ? 0 : -EINVAL;
}

void
cidr_list_free(struct cidr_list *l)
{
  free(l->v);
  l->v = NULL;
  l->n = 0;
}

void
cidr_list_format(const struct cidr_list *l, char *buf, size_t len)
{
  size_t used = 0;

  buf[0] = '\0';
  for (unsigned i = 0; i < l->n; i++) {
    const struct cidr *c = &l->v[i];
    char a[INET6_ADDRSTRLEN];
    int n;

    inet_ntop(c->a.family, c->a.addr, a, sizeof a);
    n = snprintf(buf + used, len - used, "%s%s/%u", i ? ", " : "", a, c->prefix);
    if (n < 0 || (size_t)n >= len - used)
      return;
    used += n;
  }
}

static bool
cidr_match(const struct cidr *c, const struct peer_addr *a)
{
  unsigned bytes = c->prefix / 8, bits = c->prefix % 8;

  if (c->a.family != a->family)
    return false;
  if (memcmp(c->a.addr, a->addr, bytes) != 0)
    return false;
  if (bits) {
    uint8_t mask = (uint8_t)(0xff << (8 - bits));
    if ((c->a.addr[bytes] & mask) != (a->addr[bytes] & mask))
      return false;
  }
  return true;
}

bool
cidr_list_match(const struct cidr_list *l, const struct peer_addr *a)
{
  for (unsigned i = 0; i < l->n; i++)
    if (cidr_match(&l->v[i], a))
      return true;
  return false;
}

int
export_add_pin(struct export *e, const char *spec)
{
  size_t n = strcspn(spec, " \t");
  struct pin *p;

  if (!client_id_valid(spec, n) || !spec[n])
    return -EINVAL;
  if (VEC_RESERVE(e->pins, e->pins_cap, (size_t)e->npins + 1) < 0)
    return -ENOMEM;
  p = &e->pins[e->npins];
  memset(p, 0, sizeof *p);
  memcpy(p->id, spec, n);
  client_id_normalize(p->id); /* an admin writes MACs with colons */
  if (cidr_list_add(&p->from, spec + n) < 0) {
    cidr_list_free(&p->from);
    return -EINVAL;
  }
  e->npins++;
  return 0;
}

void
export_free_acl(struct export *e)
{
  cidr_list_free(&e->allow);
  cidr_list_free(&e->deny);
  for (unsigned i = 0; i < e->npins; i++)
    cidr_list_free(&e->pins[i].from);
  free(e->pins);
  e->pins = NULL;
  e->npins = 0;
  e->pins_cap = 0;
}

const char *
acl_check_address(const struct export *e, const char *peer)
{
  struct peer_addr a;

  if (e->allow.n == 0 && e->deny.n == 0)
    return NULL;
  if (peer_addr_parse(peer, &a) < 0)
    return "the client's address is unknown and the export has an address list";
  if (cidr_list_match(&e->deny, &a))
    return "this address is denied access to the export";
  if (e->allow.n && !cidr_list_match(&e->allow, &a))
    return "this address is not allowed to use the export";
  return NULL;
}

const char *
acl_check(const struct export *e, const char *peer, const char *id)
{
  const char *why = acl_check_address(e, peer);
  struct peer_addr a, as_id;

  if (why || !id[0])
    return why;
  for (unsigned i = 0; i < e->npins; i++) {
    if (strcmp(e->pins[i].id, id) != 0)
      continue;
    if (peer_addr_parse(peer, &a) < 0 || !cidr_list_match(&e->pins[i].from, &a))
      return "this client ID is pinned to other addresses";
    return NULL;
  }
  /* Not pinned.  An ID that is an address names that address's identity. */
  if (peer_addr_parse(id, &as_id) == 0) {
    if (peer_addr_parse(peer, &a) < 0 || a.family != as_id.family ||
        memcmp(a.addr, as_id.addr, sizeof a.addr) != 0)
      return "a client ID that is an IP address may only be used from that address";
    return NULL;
  }
  if (e->require_pin)
    return "this export only serves pinned client IDs, and this one is not pinned";
  return NULL;
}
