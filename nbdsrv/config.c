/* nbdsrv: configuration from the command line and the INI config file.
 *
 * The file follows nbd-server's layout: a [generic] section for the
 * server, then one section per export whose name is the export name.
 * Command-line options override [generic]; -e adds exports.
 */
#include <config.h>

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "nbdsrv.h"

struct config config = {
  .overlay_dir = "/var/lib/nbdsrv",
  .default_policy = POLICY_PERSISTENT,
  .ephemeral_linger = 60,
  .idle_close = 2,
  .max_conns = 8192,
  .max_conns_per_addr = 256,
  .handshake_timeout = 30,
  .max_request = NBDSRV_MAX_PAYLOAD,
  .keepalive = 60,
  .control_socket = "/run/nbdsrv.sock",
};

/* Quota for exports that set none. */
static uint64_t default_quota;

static const char usage[] =
  "usage: nbdsrv [-c FILE] [-l ADDR[:PORT]]... [-e NAME=IMAGE]... [-o OVERLAY_DIR]\n"
  "              [--policy persistent|reset-on-boot|ephemeral] [--ephemeral-linger SECS]\n"
  "              [-t THREADS] [-P PIDFILE] [--control-socket PATH|none]\n"
  "              [--trace FILE] [--no-splice] [-f] [-v]\n"
  "       nbdsrv ctl [-s SOCKET] [--json] list|kick|reset|drain|resume [ARG]\n"
  "Serves root images over NBD with a copy-on-write overlay per client.\n"
  "See nbdsrv(8).\n";

const char *
policy_name(enum policy p)
{
  switch (p) {
  case POLICY_PERSISTENT: return "persistent";
  case POLICY_RESET_ON_BOOT: return "reset-on-boot";
  case POLICY_EPHEMERAL: return "ephemeral";
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
  else
    return -EINVAL;
  return 0;
}

/* "ADDR", "ADDR:PORT", "[V6]", "[V6]:PORT", ":PORT" or "PORT". */
static int
parse_listen(const char *s, struct listen_addr *la)
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

static bool
export_name_valid(const char *name)
{
  /* Export names become directory names under the overlay dir. */
  if (!*name || strlen(name) > 200 || name[0] == '.')
    return false;
  for (const char *p = name; *p; p++)
    if (!isalnum((unsigned char)*p) && !strchr("._-+", *p))
      return false;
  return true;
}

static struct export *
add_export(const char *name, const char *where)
{
  struct export *e;

  if (!export_name_valid(name)) {
    fprintf(stderr, "nbdsrv: %s: invalid export name '%s': use letters, digits and . _ - + (not starting with '.')\n",
            where, name);
    return NULL;
  }
  if (config_find_export(name)) {
    fprintf(stderr, "nbdsrv: %s: export '%s' is defined twice\n", where, name);
    return NULL;
  }
  e = realloc(config.exports, (config.nexports + 1) * sizeof *e);
  if (!e) {
    perror("nbdsrv");
    return NULL;
  }
  config.exports = e;
  e = &config.exports[config.nexports++];
  memset(e, 0, sizeof *e);
  snprintf(e->name, sizeof e->name, "%s", name);
  e->policy = config.default_policy;
  e->quota = default_quota;
  return e;
}

int
config_set_draining(const char *name, bool draining)
{
  struct export *e = (struct export *)config_find_export(name);

  if (!e)
    return -ENOENT;
  __atomic_store_n(&e->draining, draining, __ATOMIC_RELAXED);
  return 0;
}

void
config_free(void)
{
  for (unsigned i = 0; i < config.nexports; i++)
    export_free_acl(&config.exports[i]);
  free(config.exports);
  config.exports = NULL;
  config.nexports = 0;
}

const struct export *
config_find_export(const char *name)
{
  for (unsigned i = 0; i < config.nexports; i++)
    if (strcmp(config.exports[i].name, name) == 0)
      return &config.exports[i];
  return NULL;
}

static int
parse_uint(const char *s, unsigned min, unsigned max, unsigned *out)
{
  char *end;
  unsigned long v;

  errno = 0;
  v = strtoul(s, &end, 10);
  if (errno || end == s || *end || v < min || v > max)
    return -EINVAL;
  *out = v;
  return 0;
}

/* "123", "64K", "512M", "2G", "1T" (binary units). */
static int
parse_size(const char *s, uint64_t *out)
{
  char *end;
  unsigned long long v;
  unsigned shift = 0;

  errno = 0;
  v = strtoull(s, &end, 10);
  if (errno || end == s || *s == '-')
    return -EINVAL;
  switch (*end) {
  case '\0': break;
  case 'k': case 'K': shift = 10; end++; break;
  case 'm': case 'M': shift = 20; end++; break;
  case 'g': case 'G': shift = 30; end++; break;
  case 't': case 'T': shift = 40; end++; break;
  default: return -EINVAL;
  }
  if (*end || (shift && v > (UINT64_MAX >> shift)))
    return -EINVAL;
  *out = (uint64_t)v << shift;
  return 0;
}

static bool
parse_bool(const char *s, bool *out)
{
  if (!strcmp(s, "true") || !strcmp(s, "yes") || !strcmp(s, "1"))
    *out = true;
  else if (!strcmp(s, "false") || !strcmp(s, "no") || !strcmp(s, "0"))
    *out = false;
  else
    return false;
  return true;
}

static char *
trim(char *s)
{
  char *e;

  while (isspace((unsigned char)*s))
    s++;
  e = s + strlen(s);
  while (e > s && isspace((unsigned char)e[-1]))
    *--e = '\0';
  return s;
}

/* Whether an option was given on the command line (which wins). */
static bool cli_listen, cli_overlay_dir, cli_policy, cli_threads, cli_linger;
static bool cli_control_socket;

static int
config_file_key(const char *file, unsigned line, const char *section,
                struct export *exp, const char *key, const char *val)
{
  if (strcmp(section, "generic") == 0) {
    if (strcmp(key, "listen") == 0) {
      if (cli_listen)
        return 0;
      if (config.nlisten == NBDSRV_MAX_LISTEN ||
          parse_listen(val, &config.listen[config.nlisten]) < 0)
        goto bad;
      config.nlisten++;
    } else if (strcmp(key, "overlay-dir") == 0) {
      if (!cli_overlay_dir)
        snprintf(config.overlay_dir, sizeof config.overlay_dir, "%s", val);
    } else if (strcmp(key, "policy") == 0) {
      enum policy p;
      if (policy_parse(val, &p) < 0)
        goto bad;
      if (!cli_policy)
        config.default_policy = p;
    } else if (strcmp(key, "threads") == 0) {
      unsigned t;
      if (parse_uint(val, 0, 256, &t) < 0)
        goto bad;
      if (!cli_threads)
        config.threads = t;
    } else if (strcmp(key, "ephemeral-linger") == 0) {
      unsigned t;
      if (parse_uint(val, 0, 86400 * 365, &t) < 0)
        goto bad;
      if (!cli_linger)
        config.ephemeral_linger = t;
    } else if (strcmp(key, "max-connections") == 0) {
      if (parse_uint(val, 0, 1000000, &config.max_conns) < 0)
        goto bad;
    } else if (strcmp(key, "max-connections-per-address") == 0) {
      if (parse_uint(val, 0, 1000000, &config.max_conns_per_addr) < 0)
        goto bad;
    } else if (strcmp(key, "handshake-timeout") == 0) {
      if (parse_uint(val, 0, 86400, &config.handshake_timeout) < 0)
        goto bad;
    } else if (strcmp(key, "keepalive") == 0) {
      if (parse_uint(val, 0, 86400, &config.keepalive) < 0)
        goto bad;
    } else if (strcmp(key, "max-request") == 0) {
      uint64_t v;
      /* At least a block; at most what the protocol's 32-bit length and
       * a sane amount of memory per request allow. */
      if (parse_size(val, &v) < 0 || v < OVL_BLOCK_SIZE || v > (128u << 20))
        goto bad;
      config.max_request = (uint32_t)v;
    } else if (strcmp(key, "quota") == 0) {
      if (parse_size(val, &default_quota) < 0)
        goto bad;
    } else if (strcmp(key, "control-socket") == 0) {
      if (strlen(val) >= sizeof config.control_socket)
        goto bad;
      if (!cli_control_socket) {
        snprintf(config.control_socket, sizeof config.control_socket, "%s",
                 strcmp(val, "none") == 0 ? "" : val);
        config.control_socket_set = true;
      }
    } else if (strcmp(key, "trace") == 0) {
      if (!config.trace[0])
        snprintf(config.trace, sizeof config.trace, "%s", val);
    } else {
      goto unknown;
    }
    return 0;
  }
  if (strcmp(key, "image") == 0)
    snprintf(exp->image, sizeof exp->image, "%s", val);
  else if (strcmp(key, "description") == 0)
    snprintf(exp->description, sizeof exp->description, "%s", val);
  else if (strcmp(key, "policy") == 0) {
    if (policy_parse(val, &exp->policy) < 0)
      goto bad;
  } else if (strcmp(key, "readonly") == 0) {
    if (!parse_bool(val, &exp->readonly))
      goto bad;
  } else if (strcmp(key, "require-pin") == 0) {
    if (!parse_bool(val, &exp->require_pin))
      goto bad;
  } else if (strcmp(key, "quota") == 0) {
    if (parse_size(val, &exp->quota) < 0)
      goto bad;
  } else if (strcmp(key, "allow") == 0) {
    if (cidr_list_add(&exp->allow, val) < 0)
      goto bad_addr;
  } else if (strcmp(key, "deny") == 0) {
    if (cidr_list_add(&exp->deny, val) < 0)
      goto bad_addr;
  } else if (strcmp(key, "pin") == 0) {
    if (export_add_pin(exp, val) < 0) {
      fprintf(stderr, "nbdsrv: %s:%u: invalid pin '%s': expected 'pin = ID ADDR[/PREFIX][, ...]'\n",
              file, line, val);
      return -EINVAL;
    }
  } else
    goto unknown;
  return 0;
bad:
  fprintf(stderr, "nbdsrv: %s:%u: invalid value '%s' for '%s'\n", file, line,
          val, key);
  return -EINVAL;
bad_addr:
  fprintf(stderr, "nbdsrv: %s:%u: invalid address list '%s' for '%s': expected ADDR[/PREFIX][, ...]\n",
          file, line, val, key);
  return -EINVAL;
unknown:
  fprintf(stderr, "nbdsrv: %s:%u: unknown key '%s' in section [%s]\n", file,
          line, key, section);
  return -EINVAL;
}

int
config_file_parse(const char *file)
{
  FILE *fp = fopen(file, "r");
  char buf[4096], section[256] = "";
  struct export *exp = NULL;
  unsigned line = 0;
  int r = 0;

  if (!fp) {
    fprintf(stderr, "nbdsrv: cannot open config file %s: %s\n", file,
            strerror(errno));
    return -errno;
  }
  while (fgets(buf, sizeof buf, fp)) {
    char *s = trim(buf), *eq;

    line++;
    if (*s == '\0' || *s == '#' || *s == ';')
      continue;
    if (*s == '[') {
      char *end = strchr(s, ']');
      if (!end || end[1] != '\0') {
        fprintf(stderr, "nbdsrv: %s:%u: malformed section header\n", file, line);
        r = -EINVAL;
        break;
      }
      *end = '\0';
      snprintf(section, sizeof section, "%s", trim(s + 1));
      exp = NULL;
      if (strcmp(section, "generic") != 0) {
        char where[64];
        snprintf(where, sizeof where, "%s:%u", file, line);
        exp = add_export(section, where);
        if (!exp) {
          r = -EINVAL;
          break;
        }
      }
      continue;
    }
    eq = strchr(s, '=');
    if (!eq || !*section) {
      fprintf(stderr, "nbdsrv: %s:%u: expected 'key = value' inside a section\n",
              file, line);
      r = -EINVAL;
      break;
    }
    *eq = '\0';
    r = config_file_key(file, line, section, exp, trim(s), trim(eq + 1));
    if (r < 0)
      break;
  }
  fclose(fp);
  return r;
}

int
config_parse_args(int argc, char **argv)
{
  static const struct option longopts[] = {
    { "config", required_argument, NULL, 'c' },
    { "listen", required_argument, NULL, 'l' },
    { "export", required_argument, NULL, 'e' },
    { "overlay-dir", required_argument, NULL, 'o' },
    { "policy", required_argument, NULL, 'p' },
    { "ephemeral-linger", required_argument, NULL, 'L' },
    { "threads", required_argument, NULL, 't' },
    { "pidfile", required_argument, NULL, 'P' },
    { "foreground", no_argument, NULL, 'f' },
    { "verbose", no_argument, NULL, 'v' },
    { "no-splice", no_argument, NULL, 'S' },
    { "trace", required_argument, NULL, 'T' },
    { "control-socket", required_argument, NULL, 'C' },
    { "help", no_argument, NULL, 'h' },
    { NULL, 0, NULL, 0 },
  };
  const char *config_file = NULL;
  char **cli_exports = NULL;
  unsigned ncli_exports = 0;
  int c, r = 0;

  while ((c = getopt_long(argc, argv, "c:l:e:o:t:P:fvh", longopts, NULL)) != -1) {
    switch (c) {
    case 'c':
      config_file = optarg;
      break;
    case 'l':
      if (!cli_listen)
        config.nlisten = 0;
      cli_listen = true;
      if (config.nlisten == NBDSRV_MAX_LISTEN ||
          parse_listen(optarg, &config.listen[config.nlisten]) < 0) {
        fprintf(stderr, "nbdsrv: -l %s: expected ADDR, ADDR:PORT or [V6ADDR]:PORT (at most %d)\n",
                optarg, NBDSRV_MAX_LISTEN);
        r = -EINVAL;
        goto out;
      }
      config.nlisten++;
      break;
    case 'e': {
      char **n = realloc(cli_exports, (ncli_exports + 1) * sizeof *n);
      if (!n) {
        r = -ENOMEM;
        goto out;
      }
      cli_exports = n;
      cli_exports[ncli_exports++] = optarg;
      break;
    }
    case 'o':
      cli_overlay_dir = true;
      snprintf(config.overlay_dir, sizeof config.overlay_dir, "%s", optarg);
      break;
    case 'p':
      cli_policy = true;
      if (policy_parse(optarg, &config.default_policy) < 0) {
        fprintf(stderr, "nbdsrv: --policy %s: expected persistent, reset-on-boot or ephemeral\n", optarg);
        r = -EINVAL;
        goto out;
      }
      break;
    case 'L':
      cli_linger = true;
      if (parse_uint(optarg, 0, 86400 * 365, &config.ephemeral_linger) < 0) {
        fprintf(stderr, "nbdsrv: --ephemeral-linger %s: expected seconds\n", optarg);
        r = -EINVAL;
        goto out;
      }
      break;
    case 't':
      cli_threads = true;
      if (parse_uint(optarg, 1, 256, &config.threads) < 0) {
        fprintf(stderr, "nbdsrv: -t %s: expected 1 to 256 threads\n", optarg);
        r = -EINVAL;
        goto out;
      }
      break;
    case 'P':
      snprintf(config.pidfile, sizeof config.pidfile, "%s", optarg);
      break;
    case 'f':
      config.foreground = true;
      break;
    case 'v':
      log_verbosity = LOG_DEBUG;
      break;
    case 'S':
      config.no_splice = true;
      break;
    case 'T':
      snprintf(config.trace, sizeof config.trace, "%s", optarg);
      break;
    case 'C':
      if (strlen(optarg) >= sizeof config.control_socket) {
        fprintf(stderr, "nbdsrv: --control-socket %s: path too long\n", optarg);
        r = -EINVAL;
        goto out;
      }
      snprintf(config.control_socket, sizeof config.control_socket, "%s",
               strcmp(optarg, "none") == 0 ? "" : optarg);
      config.control_socket_set = cli_control_socket = true;
      break;
    case 'h':
      fputs(usage, stdout);
      free(cli_exports);
      exit(0);
    default:
      fputs(usage, stderr);
      r = -EINVAL;
      goto out;
    }
  }
  if (optind < argc) {
    fprintf(stderr, "nbdsrv: unexpected argument '%s'\n%s", argv[optind], usage);
    r = -EINVAL;
    goto out;
  }
  if (config_file) {
    r = config_file_parse(config_file);
    if (r < 0)
      goto out;
  }
  for (unsigned i = 0; i < ncli_exports; i++) {
    char *eq = strchr(cli_exports[i], '=');
    struct export *e;

    if (!eq || eq == cli_exports[i] || !eq[1]) {
      fprintf(stderr, "nbdsrv: -e %s: expected NAME=IMAGE\n", cli_exports[i]);
      r = -EINVAL;
      goto out;
    }
    *eq = '\0';
    e = add_export(cli_exports[i], "-e");
    *eq = '=';
    if (!e) {
      r = -EINVAL;
      goto out;
    }
    snprintf(e->image, sizeof e->image, "%s", eq + 1);
    e->policy = config.default_policy;
  }
  if (config.nexports == 0) {
    fprintf(stderr, "nbdsrv: no exports: give -e NAME=IMAGE or a config file with an export section\n");
    r = -EINVAL;
    goto out;
  }
  for (unsigned i = 0; i < config.nexports; i++)
    if (!config.exports[i].image[0]) {
      fprintf(stderr, "nbdsrv: export '%s' has no image: add 'image = PATH' to its section\n",
              config.exports[i].name);
      r = -EINVAL;
      goto out;
    }
  if (config.nlisten == 0) {
    config.nlisten = 1;
    parse_listen("", &config.listen[0]);
  }
out:
  free(cli_exports);
  return r;
}
