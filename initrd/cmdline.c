/* SPDX-License-Identifier: GPL-2.0-or-later */
/* nbdroot initrd agent: the kernel command line parser.
 *
 * A pure function over a string: it fills struct agent_config and never
 * touches the system, so tests can run it on the host through
 * "nbdroot-agent --parse-cmdline LINE".
 *
 * Forms understood:
 *   ip=dhcp|on|any|bootp|off|none
 *   ip=CLIENT:SERVER:GW:NETMASK:HOSTNAME:DEVICE:AUTOCONF[:DNS0[:DNS1[:NTP]]]
 *     (the kernel's nfsroot.rst form), and dracut's ip=DEVICE:dhcp
 *   BOOTIF=01-aa-bb-cc-dd-ee-ff (pxelinux) or aa:bb:cc:dd:ee:ff
 *   root=nbd:SERVER:PORT/EXPORT[:FSTYPE[:FLAGS[:NBDOPTS]]] (dracut; a
 *     non-numeric PORT alone is an export name; IPv6 servers in brackets;
 *     NBDOPTS, nbd-client's options, are kept only to be reported)
 *   nbdroot=SERVER[:PORT],EXPORT[,nbdN] with root=/dev/nbdN (Debian; a
 *     numeric EXPORT is a port, as in Debian's old form)
 *   rootfstype= rootflags= ro rw init=
 *   nbdroot.retries= nbdroot.dead_timeout= nbdroot.timeout=
 *   nbdroot.rescue=halt|poweroff|reboot nbdroot.send_id=0|1
 *   nbdroot.state=EXPORT (layered root: the NBD root is the read-only
 *     base, EXPORT the client's writable ext4 state disk)
 *   nbdroot.keep=/PATH[,/PATH...] (layered: what survives a new base)
 *   several servers (servers.c has the list's syntax):
 *     root=nbd:SERVER[:PORT],SERVER[:PORT].../EXPORT... (a ',' before the
 *     first '/' makes a list; without a '/' a ',' is part of the export
 *     name, as before), and nbdroot.servers=SERVER[:PORT],... in every
 *     form: tried in order after the server of root=/nbdroot=
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent.h"
#include "nbd-protocol.h"

#define CMDLINE_MAX 4096

static int bad(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int
bad(char *err, size_t errlen, const char *fmt, ...)
{
  va_list ap;

  va_start(ap, fmt);
  vsnprintf(err, errlen, fmt, ap);
  va_end(ap);
  return -EINVAL;
}

/* Copies n bytes of s into dst of size dstlen; -ENAMETOOLONG if it does not
 * fit (callers report which word was too long). */
static int
copy(char *dst, size_t dstlen, const char *s, size_t n)
{
  if (n >= dstlen)
    return -ENAMETOOLONG;
  memcpy(dst, s, n);
  dst[n] = '\0';
  return 0;
}

static bool
parse_uint(const char *s, unsigned long max, unsigned long *out)
{
  char *end;
  unsigned long v;

  if (!*s || !isdigit((unsigned char)*s))
    return false;
  errno = 0;
  v = strtoul(s, &end, 10);
  if (errno || *end || v > max)
    return false;
  *out = v;
  return true;
}

static bool
is_port(const char *s)
{
  unsigned long v;

  return parse_uint(s, 65535, &v) && v > 0;
}

static int
parse_in_addr(const char *s, struct in_addr *a, bool *has)
{
  if (!*s)
    return 0;
  if (inet_pton(AF_INET, s, a) != 1)
    return -EINVAL;
  if (has)
    *has = true;
  return 0;
}

/* "nbd0" or "/dev/nbd0" -> 0 */
static int
parse_nbd_dev(const char *s, int *index)
{
  unsigned long v;

  if (!strncmp(s, "/dev/", 5))
    s += 5;
  if (strncmp(s, "nbd", 3) || !parse_uint(s + 3, 65535, &v))
    return -EINVAL;
  *index = (int)v;
  return 0;
}

static bool
word_is(const char *s, const char *const *words)
{
  for (; *words; words++)
    if (!strcmp(s, *words))
      return true;
  return false;
}

static const char *const dhcp_words[] = { "dhcp", "on",   "any",   "bootp",
                                          "both", "rarp", "dhcp4", NULL };
static const char *const off_words[] = { "off", "none", NULL };

static int
parse_ip(const char *v, struct agent_config *c, char *err, size_t errlen)
{
  static const char *const names[] = { "client",   "server", "gateway",  "netmask",
                                       "hostname", "device", "autoconf", "dns0",
                                       "dns1",     "ntp" };
  char buf[512];
  char *f[10] = { 0 };
  int n = 0;
  char *p;

  struct in_addr probe;

  if (!strchr(v, ':') && inet_pton(AF_INET, v, &probe) != 1) {
    if (word_is(v, dhcp_words))
      c->ip_mode = IP_DHCP;
    else if (word_is(v, off_words))
      c->ip_mode = IP_OFF;
    else
      return bad(err, errlen,
                 "ip=%s: unknown method (use dhcp, off, or "
                 "CLIENT:SERVER:GW:NETMASK:HOSTNAME:DEVICE:AUTOCONF)",
                 v);
    return 0;
  }
  if (copy(buf, sizeof(buf), v, strlen(v)))
    return bad(err, errlen, "ip=: value too long");
  for (p = buf; n < 10;) {
    f[n++] = p;
    p = strchr(p, ':');
    if (!p)
      break;
    *p++ = '\0';
  }
  if (p)
    return bad(err, errlen, "ip=%s: more than 10 fields", v);
  for (int i = n; i < 10; i++)
    f[i] = "";

  /* dracut's ip=DEVICE:dhcp */
  if (n == 2 && (word_is(f[1], dhcp_words) || word_is(f[1], off_words)) &&
      inet_pton(AF_INET, f[0], &c->client) != 1) {
    if (copy(c->device, sizeof(c->device), f[0], strlen(f[0])))
      return bad(err, errlen, "ip=%s: device name too long", v);
    c->ip_mode = word_is(f[1], dhcp_words) ? IP_DHCP : IP_OFF;
    return 0;
  }

  for (int i = 0; i < 4; i++) {
    struct in_addr *dst[] = { &c->client, &c->ip_server, &c->gw, &c->netmask };
    bool *has[] = { &c->has_client, &c->has_ip_server, &c->has_gw, &c->has_netmask };
    if (parse_in_addr(f[i], dst[i], has[i]))
      return bad(err, errlen, "ip=%s: %s '%s' is not an IPv4 address", v, names[i], f[i]);
  }
  /* A later ip= replaces the DNS servers of an earlier one (and c->dns
   * has room for two only). */
  c->ndns = 0;
  for (int i = 7; i < 9; i++) {
    bool has = false;
    if (parse_in_addr(f[i], &c->dns[c->ndns], &has))
      return bad(err, errlen, "ip=%s: %s '%s' is not an IPv4 address", v, names[i], f[i]);
    if (has)
      c->ndns++;
  }
  if (copy(c->hostname, sizeof(c->hostname), f[4], strlen(f[4])))
    return bad(err, errlen, "ip=%s: hostname longer than 64", v);
  if (copy(c->device, sizeof(c->device), f[5], strlen(f[5])))
    return bad(err, errlen, "ip=%s: device name '%s' too long", v, f[5]);

  /* As in the kernel: an empty autoconf means "any", which is only
   * needed when the address is missing. */
  if (!*f[6])
    c->ip_mode = c->has_client ? IP_STATIC : IP_DHCP;
  else if (word_is(f[6], off_words) || !strcmp(f[6], "static"))
    c->ip_mode = IP_STATIC;
  else if (word_is(f[6], dhcp_words))
    c->ip_mode = IP_DHCP;
  else
    return bad(err, errlen, "ip=%s: unknown autoconf '%s' (use off or dhcp)", v, f[6]);
  if (c->ip_mode == IP_STATIC && !c->has_client)
    return bad(err, errlen, "ip=%s: autoconf '%s' needs a client address in field 1", v,
               f[6]);
  if (c->ip_mode == IP_STATIC && !c->has_netmask) {
    /* The kernel falls back to the classful mask; so do we. */
    uint32_t a = ntohl(c->client.s_addr);
    uint32_t m = a < 0x80000000u   ? 0xff000000u
                 : a < 0xc0000000u ? 0xffff0000u
                                   : 0xffffff00u;
    c->netmask.s_addr = htonl(m);
    c->has_netmask = true;
  }
  return 0;
}

static int
parse_bootif(const char *v, struct agent_config *c, char *err, size_t errlen)
{
  const char *p = v;
  size_t len = strlen(v);

  /* pxelinux prefixes the ARP hardware type: "01-" is Ethernet. */
  if (len == 20 && !strncmp(v, "01-", 3))
    p += 3;
  else if (len != 17)
    return bad(err, errlen,
               "BOOTIF=%s: expected 01-aa-bb-cc-dd-ee-ff or aa:bb:cc:dd:ee:ff", v);
  for (int i = 0; i < 6; i++, p += 3) {
    if (!isxdigit((unsigned char)p[0]) || !isxdigit((unsigned char)p[1]) ||
        (i < 5 && p[2] != '-' && p[2] != ':'))
      return bad(err, errlen,
                 "BOOTIF=%s: expected 01-aa-bb-cc-dd-ee-ff or "
                 "aa:bb:cc:dd:ee:ff",
                 v);
    char hex[3] = { p[0], p[1], 0 };
    c->bootif[i] = (uint8_t)strtoul(hex, NULL, 16);
  }
  c->has_bootif = true;
  return 0;
}

/* Splits "HOST" / "[V6]" at *s, leaving *s after it.  Returns -EINVAL on
 * an unterminated bracket or a name too long. */
static int
take_host(const char **s, char *host, size_t hostlen, char stop)
{
  const char *p = *s, *end;

  if (*p == '[') {
    end = strchr(p, ']');
    if (!end)
      return -EINVAL;
    if (copy(host, hostlen, p + 1, (size_t)(end - p - 1)))
      return -EINVAL;
    *s = end + 1;
    return 0;
  }
  end = strchr(p, stop);
  if (!end)
    end = p + strlen(p);
  if (copy(host, hostlen, p, (size_t)(end - p)))
    return -EINVAL;
  *s = end;
  return 0;
}

/* dracut's form with several servers, nbd:S1[:P1],S2[:P2].../EXPORT...
 * (after "nbd:"): the first server and what follows the list go to one
 * (of len bytes) in the one-server form, the others to c->fallbacks.
 * Anything else is copied to one as it is. */
static int
split_root_servers(const char *v, struct agent_config *c, char *one, size_t len,
                   char *err, size_t errlen)
{
  const char *slash = strchr(v, '/');
  struct server_list l = { .n = 0 };
  char why[200];
  bool v6;

  c->fallbacks.n = 0; /* a later root= replaces an earlier one */
  if (!slash || !memchr(v, ',', (size_t)(slash - v))) {
    if (copy(one, len, v, strlen(v)))
      return bad(err, errlen, "root=nbd: value too long");
    return 0;
  }
  if (servers_parse(v, (size_t)(slash - v), &l, why, sizeof(why)))
    return bad(err, errlen, "root=nbd:%s: %s", v, why);
  for (unsigned i = 1; i < l.n; i++)
    servers_add(&c->fallbacks, l.s[i].host, l.s[i].port); /* fits: l did */
  v6 = strchr(l.s[0].host, ':') != NULL;
  if ((size_t)snprintf(one, len, "%s%s%s:%s%s", v6 ? "[" : "", l.s[0].host, v6 ? "]" : "",
                       l.s[0].port, slash) >= len)
    return bad(err, errlen, "root=nbd: value too long");
  return 0;
}

/* dracut: nbd:SERVER:PORT/EXPORT[:FSTYPE[:FLAGS]] (after "nbd:") */
static int
parse_root_nbd(const char *v, struct agent_config *c, char *err, size_t errlen)
{
  const char *p = v, *seg, *end;
  char part[300];
  char *slash;

  if (take_host(&p, c->host, sizeof(c->host), ':') || !c->host[0])
    return bad(err, errlen,
               "root=nbd:%s: expected root=nbd:SERVER:PORT/EXPORT"
               "[:FSTYPE[:FLAGS]]",
               v);
  if (!server_host_valid(c->host))
    return bad(err, errlen,
               "root=nbd:%s: server '%s' is not an IP address (names are "
               "not resolved; IPv6 goes in brackets)",
               v, c->host);
  c->nbd = true;
  if (!*p)
    return 0;
  if (*p != ':')
    return bad(err, errlen, "root=nbd:%s: expected ':' after the server", v);
  seg = p + 1;
  end = strchr(seg, ':');
  if (!end)
    end = seg + strlen(seg);
  if (copy(part, sizeof(part), seg, (size_t)(end - seg)))
    return bad(err, errlen, "root=nbd:%s: export name too long", v);
  slash = strchr(part, '/');
  if (slash) {
    *slash = '\0';
    if (part[0] && !is_port(part))
      return bad(err, errlen,
                 "root=nbd:%s: port '%s' is not a number in "
                 "1..65535",
                 v, part);
    if (part[0])
      copy(c->port, sizeof(c->port), part, strlen(part)); /* is_port(): fits */
    if (copy(c->export_name, sizeof(c->export_name), slash + 1, strlen(slash + 1)))
      return bad(err, errlen, "root=nbd:%s: export name too long", v);
    c->export_given = true;
  } else if (is_port(part)) {
    copy(c->port, sizeof(c->port), part, strlen(part)); /* is_port(): fits */
  } else if (part[0]) {
    /* a non-numeric port is an export name */
    if (copy(c->export_name, sizeof(c->export_name), part, strlen(part)))
      return bad(err, errlen, "export name '%.40s...' longer than %zu", part,
                 sizeof(c->export_name) - 1);
    c->export_given = true;
  }
  if (!*end)
    return 0;
  seg = end + 1;
  end = strchr(seg, ':');
  if (!end)
    end = seg + strlen(seg);
  if (copy(c->fstype, sizeof(c->fstype), seg, (size_t)(end - seg)))
    return bad(err, errlen, "root=nbd:%s: fstype too long", v);
  if (!*end)
    return 0;
  /* FLAGS ends at the next ':', as in dracut: what follows is its list of
   * nbd-client options, which mean nothing to the kernel's mount(). */
  seg = end + 1;
  end = strchr(seg, ':');
  if (!end)
    end = seg + strlen(seg);
  if (copy(c->rootflags, sizeof(c->rootflags), seg, (size_t)(end - seg)))
    return bad(err, errlen, "root=nbd:%s: flags too long", v);
  if (*end && copy(c->nbdopts, sizeof(c->nbdopts), end + 1, strlen(end + 1)))
    return bad(err, errlen, "root=nbd:%s: nbd-client options too long", v);
  return 0;
}

/* Debian: nbdroot=SERVER[:PORT],EXPORT[,nbdN] */
static int
parse_nbdroot(const char *v, struct agent_config *c, char *err, size_t errlen)
{
  const char *p = v, *comma;
  char part[300];
  char *colon;

  if (take_host(&p, c->host, sizeof(c->host), ','))
    return bad(err, errlen, "nbdroot=%s: bad server (IPv6 goes in brackets)", v);
  if (*v == '[' && *p == ':') {
    /* [V6]:PORT */
    comma = strchr(p, ',');
    if (!comma)
      comma = p + strlen(p);
    if (copy(part, sizeof(part), p + 1, (size_t)(comma - p - 1)) || !is_port(part))
      return bad(err, errlen, "nbdroot=%s: port is not a number in 1..65535", v);
    copy(c->port, sizeof(c->port), part, strlen(part)); /* is_port(): fits */
    p = comma;
  } else if (*v != '[' && (colon = strchr(c->host, ':')) && !strchr(colon + 1, ':')) {
    /* SERVER:PORT */
    *colon = '\0';
    if (!is_port(colon + 1))
      return bad(err, errlen,
                 "nbdroot=%s: port '%s' is not a number in "
                 "1..65535",
                 v, colon + 1);
    copy(c->port, sizeof(c->port), colon + 1, strlen(colon + 1));
  }
  if (c->host[0] && !server_host_valid(c->host))
    return bad(err, errlen,
               "nbdroot=%s: server '%s' is not an IP address (names are not "
               "resolved)",
               v, c->host);
  c->nbd = true;
  if (!*p)
    return 0;
  if (*p != ',')
    return bad(err, errlen,
               "nbdroot=%s: expected SERVER[:PORT],EXPORT"
               "[,nbdN]",
               v);
  p++;
  comma = strchr(p, ',');
  if (!comma)
    comma = p + strlen(p);
  if (copy(part, sizeof(part), p, (size_t)(comma - p)))
    return bad(err, errlen, "nbdroot=%s: export name too long", v);
  if (is_port(part)) {
    copy(c->port, sizeof(c->port), part, strlen(part)); /* is_port(): fits */
  } else {
    if (copy(c->export_name, sizeof(c->export_name), part, strlen(part)))
      return bad(err, errlen, "export name '%.40s...' longer than %zu", part,
                 sizeof(c->export_name) - 1);
    c->export_given = true;
  }
  if (*comma && parse_nbd_dev(comma + 1, &c->nbd_index))
    return bad(err, errlen, "nbdroot=%s: device '%s' is not nbdN", v, comma + 1);
  return 0;
}

/* One keep-list path: absolute, no empty, "." or ".." component, not "/"
 * itself (that would keep everything: the default without a list). */
static bool
keep_path_ok(const char *p, size_t n)
{
  const char *comp = p + 1, *end = p + n;

  if (n < 2 || p[0] != '/')
    return false;
  while (comp <= end) {
    const char *slash = memchr(comp, '/', (size_t)(end - comp));
    size_t len = (size_t)((slash ? slash : end) - comp);

    if (len == 0 && slash)
      return false; /* "//" */
    if ((len == 1 && comp[0] == '.') || (len == 2 && comp[0] == '.' && comp[1] == '.'))
      return false;
    if (!slash)
      break;
    comp = slash + 1;
  }
  return true;
}

/* nbdroot.keep=/home,/etc/ssh: stored as given, less trailing slashes. */
static int
parse_keep(const char *v, struct agent_config *c, char *err, size_t errlen)
{
  size_t used = 0;

  c->keep[0] = '\0';
  for (const char *p = v; *p;) {
    size_t n = strcspn(p, ",");
    size_t m = n;

    while (m > 1 && p[m - 1] == '/')
      m--;
    if (!keep_path_ok(p, m))
      return bad(err, errlen,
                 "nbdroot.keep=%s: '%.*s' is not an absolute path below / "
                 "(no '.', '..' or empty components)",
                 v, (int)n, p);
    if (used + m + 2 > sizeof(c->keep))
      return bad(err, errlen, "nbdroot.keep=: list longer than %zu bytes",
                 sizeof(c->keep) - 1);
    used += (size_t)snprintf(c->keep + used, sizeof(c->keep) - used, "%s%.*s",
                             used ? "," : "", (int)m, p);
    p += n;
    if (*p == ',' && !*++p)
      return bad(err, errlen, "nbdroot.keep=%s: empty path at the end", v);
  }
  if (!used)
    return bad(err, errlen,
               "nbdroot.keep=: empty list (leave it out to keep "
               "everything)");
  return 0;
}

static int
parse_knob(const char *key, const char *v, struct agent_config *c, char *err,
           size_t errlen)
{
  unsigned long n;

  if (!strcmp(key, "nbdroot.state")) {
    if (!*v)
      return bad(err, errlen,
                 "nbdroot.state=: needs the state export's "
                 "name");
    if (copy(c->state_export, sizeof(c->state_export), v, strlen(v)))
      return bad(err, errlen, "nbdroot.state=%.40s...: longer than %zu", v,
                 sizeof(c->state_export) - 1);
    return 0;
  }
  if (!strcmp(key, "nbdroot.keep"))
    return parse_keep(v, c, err, errlen);

  if (!strcmp(key, "nbdroot.rescue")) {
    if (!strcmp(v, "halt"))
      c->rescue = RESCUE_HALT;
    else if (!strcmp(v, "poweroff"))
      c->rescue = RESCUE_POWEROFF;
    else if (!strcmp(v, "reboot"))
      c->rescue = RESCUE_REBOOT;
    else
      return bad(err, errlen, "%s=%s: use halt, poweroff or reboot", key, v);
    return 0;
  }
  if (!parse_uint(v, 1000000, &n))
    return bad(err, errlen, "%s=%s: not a number", key, v);
  if (!strcmp(key, "nbdroot.retries"))
    c->retries = (unsigned)n;
  else if (!strcmp(key, "nbdroot.dead_timeout"))
    c->dead_timeout = (unsigned)n;
  else if (!strcmp(key, "nbdroot.timeout"))
    c->io_timeout = (unsigned)n;
  else if (!strcmp(key, "nbdroot.send_id"))
    c->send_id = n != 0;
  else
    return bad(err, errlen,
               "%s: unknown nbdroot option (see "
               "nbdroot-agent(7))",
               key);
  return 0;
}

/* nbdroot.servers=: checked now, merged by finish_servers (a later one
 * replaces an earlier one). */
static int
parse_servers_opt(const char *v, struct agent_config *c, char *err, size_t errlen)
{
  struct server_list l = { .n = 0 };
  char why[200];

  if (servers_parse(v, strlen(v), &l, why, sizeof(why)))
    return bad(err, errlen, "nbdroot.servers=%.80s: %s", v, why);
  if (copy(c->servers_opt, sizeof(c->servers_opt), v, strlen(v)))
    return bad(err, errlen, "nbdroot.servers=: longer than %zu bytes",
               sizeof(c->servers_opt) - 1);
  return 0;
}

/* The servers after the first: root=nbd:'s, then nbdroot.servers='s, each
 * with the first server's port unless it has its own, the first server
 * and duplicates left out. */
static int
finish_servers(struct agent_config *c, char *err, size_t errlen)
{
  struct server_list all = c->fallbacks;
  char why[200];

  if (c->servers_opt[0] &&
      servers_parse(c->servers_opt, strlen(c->servers_opt), &all, why, sizeof(why)))
    return bad(err, errlen, "root=nbd: and nbdroot.servers=: %s", why);
  servers_default_port(&all, c->port);
  c->fallbacks.n = 0;
  for (unsigned i = 0; i < all.n; i++)
    if (strcmp(all.s[i].host, c->host) || strcmp(all.s[i].port, c->port))
      servers_add(&c->fallbacks, all.s[i].host, all.s[i].port);
  if (c->fallbacks.n >= SERVERS_MAX) /* the first needs its place too */
    return bad(err, errlen,
               "root=nbd: and nbdroot.servers=: more than %d "
               "servers",
               SERVERS_MAX);
  return 0;
}

static int
parse_word(const char *w, struct agent_config *c, char *err, size_t errlen)
{
  const char *eq = strchr(w, '=');
  char key[64];
  const char *v;

  if (!eq) {
    if (!strcmp(w, "ro"))
      c->readonly = true;
    else if (!strcmp(w, "rw"))
      c->readonly = false;
    return 0;
  }
  if (copy(key, sizeof(key), w, (size_t)(eq - w)))
    return 0; /* not ours */
  v = eq + 1;

  if (!strcmp(key, "ip"))
    return parse_ip(v, c, err, errlen);
  if (!strcmp(key, "BOOTIF"))
    return parse_bootif(v, c, err, errlen);
  if (!strcmp(key, "nbdroot"))
    return parse_nbdroot(v, c, err, errlen);
  if (!strcmp(key, "nbdroot.servers"))
    return parse_servers_opt(v, c, err, errlen);
  if (!strncmp(key, "nbdroot.", 8))
    return parse_knob(key, v, c, err, errlen);
  if (!strcmp(key, "root")) {
    if (copy(c->root, sizeof(c->root), v, strlen(v)))
      return bad(err, errlen, "root=: value too long");
    if (!strncmp(v, "nbd:", 4)) {
      char one[sizeof(c->root)];
      int ret = split_root_servers(v + 4, c, one, sizeof(one), err, errlen);

      return ret ? ret : parse_root_nbd(one, c, err, errlen);
    }
    return 0;
  }
  if (!strcmp(key, "rootfstype")) {
    if (copy(c->fstype, sizeof(c->fstype), v, strlen(v)))
      return bad(err, errlen, "rootfstype=%s: too long", v);
    return 0;
  }
  if (!strcmp(key, "rootflags")) {
    if (copy(c->rootflags, sizeof(c->rootflags), v, strlen(v)))
      return bad(err, errlen, "rootflags=: too long");
    return 0;
  }
  if (!strcmp(key, "init")) {
    if (v[0] != '/' || copy(c->init, sizeof(c->init), v, strlen(v)))
      return bad(err, errlen, "init=%s: must be an absolute path", v);
    return 0;
  }
  return 0; /* someone else's parameter */
}

static void
config_defaults(struct agent_config *c)
{
  memset(c, 0, sizeof(*c));
  c->nbd_index = -1;
  snprintf(c->port, sizeof(c->port), "%d", NBD_DEFAULT_PORT);
  snprintf(c->init, sizeof(c->init), "/sbin/init");
  c->readonly = true; /* the kernel's default, too */
  c->retries = 30;
  c->dead_timeout = 600;
  c->io_timeout = 30;
  c->send_id = true;
  c->rescue = RESCUE_HALT;
}

int
cmdline_parse(const char *line, struct agent_config *c, char *err, size_t errlen)
{
  char word[CMDLINE_MAX];
  const char *p = line;
  char scratch[256];
  int first_err = 0;

  config_defaults(c);
  err[0] = '\0';
  if (strlen(line) >= CMDLINE_MAX)
    return bad(err, errlen, "kernel command line longer than %d bytes", CMDLINE_MAX - 1);

  while (*p) {
    size_t n = 0;
    bool quoted = false;

    while (isspace((unsigned char)*p))
      p++;
    if (!*p)
      break;
    /* As the kernel does: double quotes group, and are dropped. */
    for (; *p && (quoted || !isspace((unsigned char)*p)); p++) {
      if (*p == '"')
        quoted = !quoted;
      else
        word[n++] = *p;
    }
    word[n] = '\0';
    if (!strcmp(word, "--"))
      break; /* the rest belongs to init */
    /* Keep going after a bad word, so that words after it still count
     * (nbdroot.rescue= decides what happens because of the error). */
    if (first_err)
      parse_word(word, c, scratch, sizeof(scratch));
    else
      first_err = parse_word(word, c, err, errlen);
  }
  if (first_err)
    return first_err;

  /* Cross-checks between words. */
  if (c->root[0] && strncmp(c->root, "nbd:", 4)) {
    int idx;
    if (parse_nbd_dev(c->root, &idx))
      return bad(err, errlen,
                 "root=%s: not an NBD root (use root=nbd:SERVER:PORT/EXPORT "
                 "or nbdroot=SERVER,EXPORT root=/dev/nbd0)",
                 c->root);
    if (!c->nbd)
      return bad(err, errlen, "root=%s needs nbdroot=SERVER,EXPORT", c->root);
    if (c->nbd_index >= 0 && c->nbd_index != idx)
      return bad(err, errlen, "root=%s but nbdroot= names nbd%d", c->root, c->nbd_index);
    c->nbd_index = idx;
  }
  if (!c->nbd)
    return bad(err, errlen,
               "no NBD root on the command line: give "
               "root=nbd:SERVER:PORT/EXPORT or nbdroot=SERVER,EXPORT "
               "root=/dev/nbd0");
  if (finish_servers(c, err, errlen))
    return -EINVAL;
  if (c->ip_mode == IP_OFF)
    return bad(err, errlen,
               "ip=off, but the root is on NBD and needs the network: use "
               "ip=dhcp or a static ip=");
  if (c->keep[0] && !c->state_export[0])
    return bad(err, errlen,
               "nbdroot.keep= needs a layered root: add "
               "nbdroot.state=STATE_EXPORT");
  return 0;
}

int
cmdline_wire_name(const struct agent_config *c, const char *name, const char *mac,
                  const char *boot_id, char *out, size_t len)
{
  const char *at = strchr(name, '@');
  int n;

  /* The server keys the overlay by the ID after '@' and tells a new boot
   * from a reconnect by the boot id.  An empty NAME still gets them: the
   * server then picks its only export, and two clients behind one NAT
   * address must not share an overlay.  An ID given on the command line
   * is kept, and still gets the boot id. */
  if (!c->send_id || (at && strchr(at, ',')))
    n = snprintf(out, len, "%s", name);
  else if (at)
    n = snprintf(out, len, "%s,boot=%s", name, boot_id);
  else
    n = snprintf(out, len, "%s@%s,boot=%s", name, mac, boot_id);
  return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

static void
print_addr(int fd, const char *key, bool has, struct in_addr a)
{
  char buf[INET_ADDRSTRLEN] = "";

  if (has)
    inet_ntop(AF_INET, &a, buf, sizeof(buf));
  dprintf(fd, "%s=%s\n", key, buf);
}

/* servers=FIRST,FALLBACK...; FIRST is "dhcp" when it comes from there. */
static void
print_servers(const struct agent_config *c, int fd)
{
  struct nbd_server first = { .host = "" };
  char one[300] = "dhcp";

  if (c->host[0]) {
    snprintf(first.host, sizeof(first.host), "%s", c->host);
    snprintf(first.port, sizeof(first.port), "%s", c->port);
    server_format(&first, one, sizeof(one));
  }
  dprintf(fd, "servers=%s", one);
  for (unsigned i = 0; i < c->fallbacks.n; i++) {
    server_format(&c->fallbacks.s[i], one, sizeof(one));
    dprintf(fd, ",%s", one);
  }
  dprintf(fd, "\n");
}

void
cmdline_print(const struct agent_config *c, int fd)
{
  static const char *const modes[] = { "dhcp", "dhcp", "static", "off" };
  static const char *const rescues[] = { "halt", "poweroff", "reboot" };

  dprintf(fd, "ip=%s\n", modes[c->ip_mode]);
  print_addr(fd, "client", c->has_client, c->client);
  print_addr(fd, "ip_server", c->has_ip_server, c->ip_server);
  print_addr(fd, "gateway", c->has_gw, c->gw);
  print_addr(fd, "netmask", c->has_netmask, c->netmask);
  print_addr(fd, "dns0", c->ndns > 0, c->dns[0]);
  print_addr(fd, "dns1", c->ndns > 1, c->dns[1]);
  dprintf(fd, "hostname=%s\n", c->hostname);
  dprintf(fd, "device=%s\n", c->device);
  if (c->has_bootif)
    dprintf(fd, "bootif=%02x:%02x:%02x:%02x:%02x:%02x\n", c->bootif[0], c->bootif[1],
            c->bootif[2], c->bootif[3], c->bootif[4], c->bootif[5]);
  else
    dprintf(fd, "bootif=\n");
  dprintf(fd, "server=%s\n", c->host);
  print_servers(c, fd);
  dprintf(fd, "port=%s\n", c->port);
  dprintf(fd, "export=%s\n", c->export_name);
  dprintf(fd, "index=%d\n", c->nbd_index);
  dprintf(fd, "fstype=%s\n", c->fstype);
  dprintf(fd, "rootflags=%s\n", c->rootflags);
  dprintf(fd, "nbdopts=%s\n", c->nbdopts);
  dprintf(fd, "ro=%d\n", c->readonly);
  dprintf(fd, "init=%s\n", c->init);
  dprintf(fd, "retries=%u\n", c->retries);
  dprintf(fd, "dead_timeout=%u\n", c->dead_timeout);
  dprintf(fd, "timeout=%u\n", c->io_timeout);
  dprintf(fd, "send_id=%d\n", c->send_id);
  dprintf(fd, "rescue=%s\n", rescues[c->rescue]);
  {
    char wire[512];
    /* placeholders: the real values exist only at boot */
    if (!cmdline_wire_name(c, c->export_name, "MAC", "BOOTID", wire, sizeof(wire)))
      dprintf(fd, "wire=%s\n", wire);
    dprintf(fd, "layered=%d\n", c->state_export[0] != '\0');
    dprintf(fd, "state=%s\n", c->state_export);
    if (c->state_export[0] &&
        !cmdline_wire_name(c, c->state_export, "MAC", "BOOTID", wire, sizeof(wire)))
      dprintf(fd, "state_wire=%s\n", wire);
    dprintf(fd, "keep=%s\n", c->keep);
  }
}
