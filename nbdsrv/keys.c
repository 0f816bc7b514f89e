/* SPDX-License-Identifier: GPL-2.0-or-later */
/* nbdsrv: the configuration keys, in one table.
 *
 * Every setting of nbdsrv.conf is one row below: its name in the file,
 * its section (scope), the option that sets it on the command line, its
 * syntax and range, its default, and one line of help.  The file parser,
 * the command line, the defaults, a reload's report of what changed and
 * `nbdsrv --list-keys` all read this table; nothing else names a key.
 *
 * A row points at the field it sets (an offset into struct config for
 * [generic], into struct export for an export section), so that setting
 * and showing a value is one function per syntax, not one per key.
 */
#include <config.h>

#include <arpa/inet.h>
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nbdsrv.h"
#include "util.h"

#define G(field) offsetof(struct config, field), sizeof(((struct config *)0)->field)
#define E(field) offsetof(struct export, field), sizeof(((struct export *)0)->field)

const struct key keys[] = {
  { "listen", KEY_GENERIC, KT_LISTEN, "listen", 'l', 0, 0, ":10809", true, true,
    G(listen), 0, "address and port to listen on" },
  { "overlay-dir", KEY_GENERIC, KT_PATH, "overlay-dir", 'o', 0, 0, "/var/lib/nbdsrv",
    false, true, G(overlay_dir), 0,
    "directory of the overlays, DIR/EXPORT/CLIENT.{map,data}" },
  { "policy", KEY_GENERIC, KT_POLICY, "policy", 0, 0, 0, "persistent", false, false,
    G(default_policy), 0, "overlay policy of the exports that set none" },
  { "quota", KEY_GENERIC, KT_SIZE, "quota", 0, 0, UINT64_MAX, "0", false, false,
    G(default_quota), 0, "overlay quota of the exports that set none (0: none)" },
  { "journal-max", KEY_GENERIC, KT_SIZE, "journal-max", 0, 0, UINT64_MAX, "256K", false,
    false, G(journal_max), 0,
    "journal growth that has an overlay in use compacted (0: only when closed)" },
  /* Over them a connection is not read from until it drained: TCP's
   * backpressure, never an error. */
  { "memory-budget", KEY_GENERIC, KT_SIZE, "memory-budget", 0, 64u << 10, UINT64_MAX,
    "1G", false, false, G(memory_budget), 0,
    "memory all connections together may make the server hold" },
  { "connection-budget", KEY_GENERIC, KT_SIZE, "connection-budget", 0, 64u << 10,
    UINT64_MAX, "8M", false, false, G(conn_budget), 0,
    "memory one connection may make the server hold" },
  { "ephemeral-linger", KEY_GENERIC, KT_SECS, "ephemeral-linger", 0, 0, 86400 * 365, "60",
    false, false, G(ephemeral_linger), 0,
    "seconds an ephemeral overlay outlives its client" },
  { "shared-pin-timeout", KEY_GENERIC, KT_SECS, "shared-pin-timeout", 0, 0, 86400 * 365,
    "600", false, false, G(shared_pin_timeout), 0,
    "seconds a shared-readonly client without boot id keeps its base version after its last connection" },
  { "threads", KEY_GENERIC, KT_UINT, "threads", 't', 0, 256, "0", false, true, G(threads),
    0, "worker threads (0: one per CPU)" },
  { "max-connections", KEY_GENERIC, KT_UINT, "max-connections", 0, 0, 1000000, "8192",
    false, false, G(max_conns), 0, "connections in all (0: no limit)" },
  { "max-connections-per-address", KEY_GENERIC, KT_UINT, "max-connections-per-address", 0,
    0, 1000000, "256", false, false, G(max_conns_per_addr), 0,
    "connections from one client address (0: no limit)" },
  { "handshake-timeout", KEY_GENERIC, KT_SECS, "handshake-timeout", 0, 0, 86400, "30",
    false, false, G(handshake_timeout), 0,
    "seconds a client has for the NBD handshake (0: no limit)" },
  { "attach-timeout", KEY_GENERIC, KT_SECS, "attach-timeout", 0, 0, 86400, "120", false,
    false, G(attach_timeout), 0,
    "seconds a client may wait for its overlay to open (0: no limit)" },
  { "keepalive", KEY_GENERIC, KT_SECS, "keepalive", 0, 0, 86400, "60", false, false,
    G(keepalive), 0, "idle seconds before TCP keepalive probes (0: off)" },
  { "link-rate", KEY_GENERIC, KT_SIZE, "link-rate", 0, 0, UINT64_MAX, "0", false, false,
    G(link_rate), 0,
    "bytes per second of the server's link, shared among the clients as their pacing rate (0: no pacing)" },
  /* At least a block; at most what a sane amount of memory per request
   * allows. */
  { "max-request", KEY_GENERIC, KT_SIZE, "max-request", 0, OVL_BLOCK_SIZE, 128u << 20,
    "32M", false, false, G(max_request), 0,
    "largest read or write of a client that asks for the block sizes" },
  { "control-socket", KEY_GENERIC, KT_SOCKET, "control-socket", 0, 0, 0,
    "/run/nbdsrv.sock", false, true, G(control_socket),
    offsetof(struct config, control_socket_set), "socket of nbdsrv ctl, or none" },
  { "control-group", KEY_GENERIC, KT_TEXT, "control-group", 0, 0, 0, NULL, false, true,
    G(control_group), 0, "group that may use nbdsrv ctl, beside root" },
  { "fence-command", KEY_GENERIC, KT_TEXT, "fence-command", 0, 0, 0, NULL, false, false,
    G(fence_command), 0,
    "shell command nbdsrv ctl fence NODE runs to fence a dead server" },
  { "trace", KEY_GENERIC, KT_PATH, "trace", 0, 0, 0, NULL, false, true, G(trace), 0,
    "file to append one line per request to" },

  { "image", KEY_EXPORT, KT_PATH, NULL, 0, 0, 0, NULL, false, false, E(image), 0,
    "image file or image-store directory (required)" },
  { "description", KEY_EXPORT, KT_TEXT, NULL, 0, 0, 0, NULL, false, false, E(description),
    0, "description shown to clients" },
  { "policy", KEY_EXPORT, KT_POLICY, NULL, 0, 0, 0, "[generic]", false, false, E(policy),
    offsetof(struct export, policy_set),
    "persistent, reset-on-boot, ephemeral or shared-readonly" },
  { "readonly", KEY_EXPORT, KT_BOOL, NULL, 0, 0, 0, "false", false, false, E(readonly), 0,
    "clients may not write" },
  { "quota", KEY_EXPORT, KT_SIZE, NULL, 0, 0, UINT64_MAX, "[generic]", false, false,
    E(quota), offsetof(struct export, quota_set),
    "most data one client's overlay may hold (0: none)" },
  { "max-overlays", KEY_EXPORT, KT_UINT, NULL, 0, 0, 100000000, "0", false, false,
    E(max_overlays), 0, "client overlays the export may have (0: no limit)" },
  { "max-overlays-per-address", KEY_EXPORT, KT_UINT, NULL, 0, 0, 100000000, "0", false,
    false, E(max_overlays_per_addr), 0,
    "client overlays one source address may create (0: no limit)" },
  { "max-overlay-space", KEY_EXPORT, KT_SIZE, NULL, 0, 0, UINT64_MAX, "0", false, false,
    E(max_overlay_space), 0,
    "disk space of all overlays past which no new one is created (0: no limit)" },
  { "max-overlay-space-per-address", KEY_EXPORT, KT_SIZE, NULL, 0, 0, UINT64_MAX, "0",
    false, false, E(max_overlay_space_per_addr), 0,
    "the same for the overlays of one source address (0: no limit)" },
  { "allow", KEY_EXPORT, KT_ADDRLIST, NULL, 0, 0, 0, NULL, true, false, E(allow), 0,
    "only these client addresses may use the export" },
  { "deny", KEY_EXPORT, KT_ADDRLIST, NULL, 0, 0, 0, NULL, true, false, E(deny), 0,
    "these client addresses may not use the export" },
  { "pin", KEY_EXPORT, KT_PIN, NULL, 0, 0, 0, NULL, true, false,
    offsetof(struct export, pins), 0, 0,
    "'ID ADDRLIST': client ID only from these addresses" },
  { "require-pin", KEY_EXPORT, KT_BOOL, NULL, 0, 0, 0, "false", false, false,
    E(require_pin), 0, "client IDs must be pinned" },
};
const unsigned nkeys = sizeof keys / sizeof keys[0];

const struct key *
key_find(enum key_scope scope, const char *name)
{
  for (unsigned i = 0; i < nkeys; i++)
    if (keys[i].scope == scope && strcmp(keys[i].name, name) == 0)
      return &keys[i];
  return NULL;
}

const char *
key_syntax(const struct key *k)
{
  static const char *const names[] = {
    [KT_LISTEN] = "ADDR[:PORT]", [KT_PATH] = "PATH",       [KT_SOCKET] = "PATH|none",
    [KT_POLICY] = "POLICY",      [KT_UINT] = "N",          [KT_SECS] = "SECS",
    [KT_SIZE] = "SIZE",          [KT_BOOL] = "BOOL",       [KT_TEXT] = "TEXT",
    [KT_ADDRLIST] = "ADDRLIST",  [KT_PIN] = "ID+ADDRLIST",
  };
  return names[k->type];
}

char *
key_expects(const struct key *k, char *buf, size_t len)
{
  char lo[32], hi[32];

  switch (k->type) {
    case KT_LISTEN:
      snprintf(buf, len, "expected ADDR, ADDR:PORT or [V6ADDR]:PORT (at most %d)",
               NBDSRV_MAX_LISTEN);
      break;
    case KT_POLICY:
      snprintf(buf, len,
               "expected persistent, reset-on-boot, ephemeral or shared-readonly");
      break;
    case KT_UINT:
    case KT_SECS:
      snprintf(buf, len, "expected %s from %llu to %llu",
               k->type == KT_SECS ? "seconds" : "a number", (unsigned long long)k->min,
               (unsigned long long)k->max);
      break;
    case KT_SIZE:
      snprintf(buf, len, "expected a size (such as 64K or 2G) from %s to %s",
               size_text(k->min, lo), size_text(k->max, hi));
      break;
    case KT_BOOL: snprintf(buf, len, "expected true or false"); break;
    case KT_ADDRLIST: snprintf(buf, len, "expected ADDR[/PREFIX][, ...]"); break;
    case KT_PIN: snprintf(buf, len, "expected 'ID ADDR[/PREFIX][, ...]'"); break;
    case KT_PATH:
    case KT_SOCKET:
    case KT_TEXT: snprintf(buf, len, "expected at most %zu bytes", k->size - 1); break;
  }
  return buf;
}

/* "0", "4096", "64K", "32M": exact, in the largest unit that divides. */
char *
size_text(uint64_t v, char out[32])
{
  static const char units[] = "KMGTPE";
  int u = -1;

  if (v == UINT64_MAX) {
    snprintf(out, 32, "16E");
    return out;
  }
  while (v && v % 1024 == 0 && u < 5) {
    v /= 1024;
    u++;
  }
  if (u < 0)
    snprintf(out, 32, "%llu", (unsigned long long)v);
  else
    snprintf(out, 32, "%llu%c", (unsigned long long)v, units[u]);
  return out;
}

static int
set_number(const struct key *k, void *field, const char *val)
{
  uint64_t v;
  char *end;

  if (k->type == KT_SIZE) {
    if (parse_size(val, &v) < 0)
      return -EINVAL;
  } else {
    if (*val < '0' || *val > '9')
      return -EINVAL;
    errno = 0;
    v = strtoull(val, &end, 10);
    if (errno || *end)
      return -EINVAL;
  }
  if (v < k->min || v > k->max)
    return -EINVAL;
  if (k->size == sizeof(uint64_t))
    *(uint64_t *)field = v;
  else
    *(uint32_t *)field = (uint32_t)v;
  return 0;
}

static int
set_bool(bool *field, const char *s)
{
  if (!strcmp(s, "true") || !strcmp(s, "yes") || !strcmp(s, "1"))
    *field = true;
  else if (!strcmp(s, "false") || !strcmp(s, "no") || !strcmp(s, "0"))
    *field = false;
  else
    return -EINVAL;
  return 0;
}

static int
set_string(const struct key *k, char *field, const char *val)
{
  if (k->type == KT_SOCKET && strcmp(val, "none") == 0)
    val = "";
  if (strlen(val) >= k->size)
    return -EINVAL;
  memcpy(field, val, strlen(val) + 1);
  return 0;
}

static int
set_listen(struct config *cfg, const char *val)
{
  if (cfg->nlisten == NBDSRV_MAX_LISTEN ||
      listen_parse(val, &cfg->listen[cfg->nlisten]) < 0)
    return -EINVAL;
  cfg->nlisten++;
  return 0;
}

int
key_set(const struct key *k, void *base, const char *val)
{
  void *field = (char *)base + k->offset;

  switch (k->type) {
    case KT_LISTEN: return set_listen(base, val);
    case KT_PATH:
    case KT_SOCKET:
    case KT_TEXT: return set_string(k, field, val);
    case KT_POLICY: return policy_parse(val, field);
    case KT_UINT:
    case KT_SECS:
    case KT_SIZE: return set_number(k, field, val);
    case KT_BOOL: return set_bool(field, val);
    case KT_ADDRLIST: return cidr_list_add(field, val);
    case KT_PIN: return export_add_pin(base, val);
  }
  return -EINVAL;
}

void
key_mark_set(const struct key *k, void *base)
{
  if (k->set_flag)
    *(bool *)((char *)base + k->set_flag) = true;
}

void
keys_defaults(struct config *cfg)
{
  for (unsigned i = 0; i < nkeys; i++)
    if (keys[i].scope == KEY_GENERIC && keys[i].def && keys[i].type != KT_LISTEN)
      key_set(&keys[i], cfg, keys[i].def);
}

/* ---- showing values ---- */

static void
append(char *buf, size_t len, const char *s)
{
  size_t n = strlen(buf);

  if (n < len)
    snprintf(buf + n, len - n, "%s%s", n ? ", " : "", s);
}

static void
format_listen(const struct config *cfg, char *buf, size_t len)
{
  char one[300];

  for (unsigned i = 0; i < cfg->nlisten; i++) {
    const struct listen_addr *la = &cfg->listen[i];
    snprintf(one, sizeof one, strchr(la->host, ':') ? "[%s]:%s" : "%s:%s", la->host,
             la->port);
    append(buf, len, one);
  }
}

static void
format_pins(const struct export *e, char *buf, size_t len)
{
  char addrs[1024], one[CLIENT_ID_MAX + 2 + sizeof addrs];

  for (unsigned i = 0; i < e->npins; i++) {
    cidr_list_format(&e->pins[i].from, addrs, sizeof addrs);
    snprintf(one, sizeof one, "%s %s", e->pins[i].id, addrs);
    if (strlen(buf) + strlen(one) + 3 < len)
      snprintf(buf + strlen(buf), len - strlen(buf), "%s%s", *buf ? "; " : "", one);
  }
}

void
key_format(const struct key *k, const void *base, char *buf, size_t len)
{
  const void *field = (const char *)base + k->offset;

  buf[0] = '\0';
  switch (k->type) {
    case KT_LISTEN: format_listen(base, buf, len); break;
    case KT_PATH:
    case KT_TEXT: snprintf(buf, len, "%s", (const char *)field); break;
    case KT_SOCKET:
      snprintf(buf, len, "%s", *(const char *)field ? (const char *)field : "none");
      break;
    case KT_POLICY:
      snprintf(buf, len, "%s", policy_name(*(const enum policy *)field));
      break;
    case KT_UINT:
    case KT_SECS: snprintf(buf, len, "%u", *(const unsigned *)field); break;
    case KT_SIZE: {
      char s[32];
      snprintf(buf, len, "%s",
               size_text(k->size == sizeof(uint64_t) ? *(const uint64_t *)field
                                                     : *(const uint32_t *)field,
                         s));
      break;
    }
    case KT_BOOL:
      snprintf(buf, len, "%s", *(const bool *)field ? "true" : "false");
      break;
    case KT_ADDRLIST: cidr_list_format(field, buf, len); break;
    case KT_PIN: format_pins(base, buf, len); break;
  }
}

/* ---- nbdsrv --check-config -v ---- */

static void
print_section(FILE *fp, enum key_scope scope, const void *base)
{
  static char v[4096];

  for (unsigned i = 0; i < nkeys; i++)
    if (keys[i].scope == scope) {
      key_format(&keys[i], base, v, sizeof v);
      fprintf(fp, "  %s = %s\n", keys[i].name, v);
    }
}

void
config_print(FILE *fp, const struct config *cfg)
{
  fprintf(fp, "[generic]\n");
  print_section(fp, KEY_GENERIC, cfg);
  for (unsigned i = 0; i < cfg->nexports; i++) {
    fprintf(fp, "[%s]\n", cfg->exports[i].name);
    print_section(fp, KEY_EXPORT, &cfg->exports[i]);
  }
}

/* ---- nbdsrv --list-keys ---- */

void
keys_list(FILE *fp)
{
  fprintf(fp, "%-8s %-28s %-31s %-12s %-17s %s\n", "SECTION", "KEY", "OPTION", "VALUE",
          "DEFAULT", "MEANING");
  for (unsigned i = 0; i < nkeys; i++) {
    const struct key *k = &keys[i];
    char opt[64];

    if (k->option)
      snprintf(opt, sizeof opt, "--%s", k->option);
    else
      snprintf(opt, sizeof opt, "-");
    fprintf(fp, "%-8s %-28s %-31s %-12s %-17s %s%s%s\n",
            k->scope == KEY_GENERIC ? "generic" : "export", k->name, opt, key_syntax(k),
            k->def ? k->def : "-", k->help, k->repeatable ? " (repeatable)" : "",
            k->restart ? " (restart)" : "");
  }
}

/* ---- hints for unknown keys ---- */

/* nbd-server's names (nbd-server(5)) for what nbdsrv calls otherwise, so
 * that a file brought over from it is easy to fix. */
static const struct {
  const char *name, *hint;
} foreign[] = {
  { "exportname", "nbd-server's exportname is 'image' here" },
  { "port", "nbd-server's port is 'listen = :PORT' in [generic] here" },
  { "listenaddr", "nbd-server's listenaddr is 'listen = ADDR' in [generic] here" },
  { "authfile",
    "nbd-server's authfile is 'allow = ADDRLIST' in the export's section here" },
  { "copyonwrite",
    "every client always gets its own copy-on-write overlay here: drop it" },
  { "temporary", "nbd-server's temporary is 'policy = ephemeral' here" },
  { "timeout", "did you mean 'handshake-timeout'?" },
  { "maxconnections", "did you mean 'max-connections'?" },
  { "max_threads", "did you mean 'threads'?" },
  { "allowlist", "clients may always list the exports they may use here: drop it" },
  { "user", "nbdsrv runs as the user that starts it: drop it" },
  { "group", "nbdsrv runs as the group that starts it: drop it" },
  { "pidfile", "the pid file is given on the command line here: -P PIDFILE" },
  { "includedir", "nbdsrv reads one file: drop it" },
  { "cowdir", "nbd-server's cowdir is 'overlay-dir' in [generic] here" },
};

static unsigned
edit_distance(const char *a, const char *b)
{
  size_t la = strlen(a), lb = strlen(b);
  unsigned row[64];

  if (la >= 64 || lb >= 64)
    return 99;
  for (size_t j = 0; j <= lb; j++)
    row[j] = j;
  for (size_t i = 1; i <= la; i++) {
    unsigned diag = row[0], up;
    row[0] = i;
    for (size_t j = 1; j <= lb; j++) {
      up = row[j];
      unsigned best = diag + (a[i - 1] != b[j - 1]);
      if (row[j] + 1 < best)
        best = row[j] + 1;
      if (row[j - 1] + 1 < best)
        best = row[j - 1] + 1;
      row[j] = best;
      diag = up;
    }
  }
  return row[lb];
}

/* The key of scope nearest to name, if near enough to be a typo. */
static const struct key *
closest(enum key_scope scope, const char *name)
{
  const struct key *best = NULL;
  unsigned best_d = 3 + strlen(name) / 8;

  for (unsigned i = 0; i < nkeys; i++) {
    unsigned d = edit_distance(name, keys[i].name);
    if (keys[i].scope == scope && d < best_d) {
      best = &keys[i];
      best_d = d;
    }
  }
  return best;
}

static enum key_scope
other_scope(enum key_scope s)
{
  return s == KEY_GENERIC ? KEY_EXPORT : KEY_GENERIC;
}

char *
key_hint(enum key_scope scope, const char *name, char *buf, size_t len)
{
  const struct key *k;

  buf[0] = '\0';
  for (unsigned i = 0; i < sizeof foreign / sizeof foreign[0]; i++)
    if (strcmp(name, foreign[i].name) == 0) {
      snprintf(buf, len, "%s", foreign[i].hint);
      return buf;
    }
  if ((k = key_find(other_scope(scope), name)))
    snprintf(buf, len, "'%s' belongs in %s", name,
             scope == KEY_GENERIC ? "an export's section" : "[generic]");
  else if ((k = closest(scope, name)))
    snprintf(buf, len, "did you mean '%s'?", k->name);
  else if ((k = closest(other_scope(scope), name)))
    snprintf(buf, len, "did you mean '%s' (in %s)?", k->name,
             scope == KEY_GENERIC ? "an export's section" : "[generic]");
  return buf;
}

_Static_assert(sizeof keys / sizeof keys[0] <= NBDSRV_MAX_KEYS, "raise NBDSRV_MAX_KEYS");

/* ---- value syntaxes of more than one key: policies, listen addresses ---- */

const char *
policy_name(enum policy p)
{
  switch (p) {
    case POLICY_PERSISTENT: return "persistent";
    case POLICY_RESET_ON_BOOT: return "reset-on-boot";
    case POLICY_EPHEMERAL: return "ephemeral";
    case POLICY_SHARED_READONLY: return "shared-readonly";
  }
  return "?";
}

int
policy_parse(const char *s, enum policy *p)
{
  if (strcmp(s, "persistent") == 0)
    *p = POLICY_PERSISTENT;
  else if (strcmp(s, "reset-on-boot") == 0)
    *p = POLICY_RESET_ON_BOOT;
  else if (strcmp(s, "ephemeral") == 0)
    *p = POLICY_EPHEMERAL;
  else if (strcmp(s, "shared-readonly") == 0)
    *p = POLICY_SHARED_READONLY;
  else
    return -EINVAL;
  return 0;
}

int
listen_parse(const char *s, struct listen_addr *la)
{
  const char *colon;

  memset(la, 0, sizeof *la);
  snprintf(la->port, sizeof la->port, "%d", NBD_DEFAULT_PORT);
  if (s[0] == '[') {
    const char *end = strchr(s, ']');
    if (!end || (end[1] != '\0' && end[1] != ':') ||
        (size_t)(end - s - 1) >= sizeof la->host)
      return -EINVAL;
    memcpy(la->host, s + 1, end - s - 1);
    colon = end[1] == ':' ? end + 1 : NULL;
  } else {
    colon = strrchr(s, ':');
    if (colon && strchr(s, ':') != colon)
      return -EINVAL; /* bare IPv6 needs brackets */
    if (!colon && strspn(s, "0123456789") == strlen(s) && *s) {
      snprintf(la->port, sizeof la->port, "%s", s);
      return 0;
    }
    size_t n = colon ? (size_t)(colon - s) : strlen(s);
    if (n >= sizeof la->host)
      return -EINVAL;
    memcpy(la->host, s, n);
  }
  if (colon) {
    char *end;
    long port = strtol(colon + 1, &end, 10);
    if (*end || colon[1] == '\0' || port < 0 || port > 65535)
      return -EINVAL;
    snprintf(la->port, sizeof la->port, "%ld", port);
  }
  return 0;
}
