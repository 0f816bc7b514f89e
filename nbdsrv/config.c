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
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "nbdsrv.h"
#include "util.h"

/* Set once the server runs: from then on, configuration errors (of a
 * reload) go to the log, not to a terminal nobody watches. */
static bool config_running;

static void __attribute__((format(printf, 1, 2)))
cfg_err(const char *fmt, ...)
{
  char line[1024];
  va_list ap;

  va_start(ap, fmt);
  vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  if (config_running)
    log_err("%s", line);
  else
    fprintf(stderr, "nbdsrv: %s\n", line);
}

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


static const char usage[] =
  "usage: nbdsrv [-c FILE] [-l ADDR[:PORT]]... [-e NAME=IMAGE]... [-o OVERLAY_DIR]\n"
  "              [--policy persistent|reset-on-boot|ephemeral] [--ephemeral-linger SECS]\n"
  "              [-t THREADS] [-P PIDFILE] [--control-socket PATH|none]\n"
  "              [--trace FILE] [--no-splice] [--check-config] [-f] [-v]\n"
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
add_export(struct config *cfg, const char *name, const char *where)
{
  struct export *e;

  if (!export_name_valid(name)) {
    cfg_err("%s: invalid export name '%s': use letters, digits and . _ - + (not starting with '.')",
            where, name);
    return NULL;
  }
  for (unsigned i = 0; i < cfg->nexports; i++)
    if (strcmp(cfg->exports[i].name, name) == 0) {
      cfg_err("%s: export '%s' is defined twice", where, name);
      return NULL;
    }
  e = realloc(cfg->exports, (cfg->nexports + 1) * sizeof *e);
  if (!e) {
    cfg_err("out of memory");
    return NULL;
  }
  cfg->exports = e;
  e = &cfg->exports[cfg->nexports++];
  memset(e, 0, sizeof *e);
  snprintf(e->name, sizeof e->name, "%s", name);
  e->policy = cfg->default_policy;
  e->quota = cfg->default_quota;
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

/* The exports new clients see.  A reload publishes a new set; connections
 * and overlays keep pointing into the set they started with, so old sets
 * are kept (they are small, and reloads are rare) until the server exits. */
struct export_set {
  struct export *v;
  unsigned n;
  struct export_set *older;
};

static struct export_set *current_set;

/* Before the first publication (and in the fuzz targets, which parse
 * without publishing) the exports being built are the current ones. */
static const struct export_set *
exports_current(void)
{
  static struct export_set building;
  const struct export_set *set = __atomic_load_n(&current_set, __ATOMIC_ACQUIRE);

  if (set)
    return set;
  building.v = config.exports;
  building.n = config.nexports;
  return &building;
}

const struct export *
config_exports(unsigned *n)
{
  const struct export_set *set = exports_current();

  *n = set->n;
  return set->v;
}

static void
free_exports(struct export *v, unsigned n)
{
  for (unsigned i = 0; i < n; i++)
    export_free_acl(&v[i]);
  free(v);
}

static int
publish(struct config *cfg)
{
  struct export_set *set = calloc(1, sizeof *set);

  if (!set)
    return -ENOMEM;
  set->v = cfg->exports;
  set->n = cfg->nexports;
  set->older = current_set;
  __atomic_store_n(&current_set, set, __ATOMIC_RELEASE);
  return 0;
}

void
config_free(void)
{
  struct export_set *set = current_set, *older;

  if (!set)
    free_exports(config.exports, config.nexports);
  for (; set; set = older) {
    older = set->older;
    free_exports(set->v, set->n);
    free(set);
  }
  current_set = NULL;
  config.exports = NULL;
  config.nexports = 0;
}

const struct export *
config_find_export(const char *name)
{
  const struct export_set *set = exports_current();

  for (unsigned i = 0; i < set->n; i++)
    if (strcmp(set->v[i].name, name) == 0)
      return &set->v[i];
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
config_file_key(struct config *cfg, const char *file, unsigned line, const char *section,
                struct export *exp, const char *key, const char *val)
{
  if (strcmp(section, "generic") == 0) {
    if (strcmp(key, "listen") == 0) {
      if (cli_listen)
        return 0;
      if (cfg->nlisten == NBDSRV_MAX_LISTEN ||
          parse_listen(val, &cfg->listen[cfg->nlisten]) < 0)
        goto bad;
      cfg->nlisten++;
    } else if (strcmp(key, "overlay-dir") == 0) {
      if (!cli_overlay_dir)
        snprintf(cfg->overlay_dir, sizeof cfg->overlay_dir, "%s", val);
    } else if (strcmp(key, "policy") == 0) {
      enum policy p;
      if (policy_parse(val, &p) < 0)
        goto bad;
      if (!cli_policy)
        cfg->default_policy = p;
    } else if (strcmp(key, "threads") == 0) {
      unsigned t;
      if (parse_uint(val, 0, 256, &t) < 0)
        goto bad;
      if (!cli_threads)
        cfg->threads = t;
    } else if (strcmp(key, "ephemeral-linger") == 0) {
      unsigned t;
      if (parse_uint(val, 0, 86400 * 365, &t) < 0)
        goto bad;
      if (!cli_linger)
        cfg->ephemeral_linger = t;
    } else if (strcmp(key, "max-connections") == 0) {
      if (parse_uint(val, 0, 1000000, &cfg->max_conns) < 0)
        goto bad;
    } else if (strcmp(key, "max-connections-per-address") == 0) {
      if (parse_uint(val, 0, 1000000, &cfg->max_conns_per_addr) < 0)
        goto bad;
    } else if (strcmp(key, "handshake-timeout") == 0) {
      if (parse_uint(val, 0, 86400, &cfg->handshake_timeout) < 0)
        goto bad;
    } else if (strcmp(key, "keepalive") == 0) {
      if (parse_uint(val, 0, 86400, &cfg->keepalive) < 0)
        goto bad;
    } else if (strcmp(key, "max-request") == 0) {
      uint64_t v;
      /* At least a block; at most what the protocol's 32-bit length and
       * a sane amount of memory per request allow. */
      if (parse_size(val, &v) < 0 || v < OVL_BLOCK_SIZE || v > (128u << 20))
        goto bad;
      cfg->max_request = (uint32_t)v;
    } else if (strcmp(key, "quota") == 0) {
      if (parse_size(val, &cfg->default_quota) < 0)
        goto bad;
    } else if (strcmp(key, "control-socket") == 0) {
      if (strlen(val) >= sizeof cfg->control_socket)
        goto bad;
      if (!cli_control_socket) {
        snprintf(cfg->control_socket, sizeof cfg->control_socket, "%s",
                 strcmp(val, "none") == 0 ? "" : val);
        cfg->control_socket_set = true;
      }
    } else if (strcmp(key, "trace") == 0) {
      if (!cfg->trace[0])
        snprintf(cfg->trace, sizeof cfg->trace, "%s", val);
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
    exp->policy_set = true;
  } else if (strcmp(key, "readonly") == 0) {
    if (!parse_bool(val, &exp->readonly))
      goto bad;
  } else if (strcmp(key, "require-pin") == 0) {
    if (!parse_bool(val, &exp->require_pin))
      goto bad;
  } else if (strcmp(key, "quota") == 0) {
    if (parse_size(val, &exp->quota) < 0)
      goto bad;
    exp->quota_set = true;
  } else if (strcmp(key, "allow") == 0) {
    if (cidr_list_add(&exp->allow, val) < 0)
      goto bad_addr;
  } else if (strcmp(key, "deny") == 0) {
    if (cidr_list_add(&exp->deny, val) < 0)
      goto bad_addr;
  } else if (strcmp(key, "pin") == 0) {
    if (export_add_pin(exp, val) < 0) {
      cfg_err("%s:%u: invalid pin '%s': expected 'pin = ID ADDR[/PREFIX][, ...]'",
              file, line, val);
      return -EINVAL;
    }
  } else
    goto unknown;
  return 0;
bad:
  cfg_err("%s:%u: invalid value '%s' for '%s'", file, line,
          val, key);
  return -EINVAL;
bad_addr:
  cfg_err("%s:%u: invalid address list '%s' for '%s': expected ADDR[/PREFIX][, ...]",
          file, line, val, key);
  return -EINVAL;
unknown:
  cfg_err("%s:%u: unknown key '%s' in section [%s]", file,
          line, key, section);
  return -EINVAL;
}

static int
parse_file_into(struct config *cfg, const char *file)
{
  FILE *fp = fopen(file, "r");
  char buf[4096], section[256] = "";
  struct export *exp = NULL;
  unsigned line = 0;
  int r = 0;

  if (!fp) {
    cfg_err("cannot open config file %s: %s", file,
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
        cfg_err("%s:%u: malformed section header", file, line);
        r = -EINVAL;
        break;
      }
      *end = '\0';
      snprintf(section, sizeof section, "%s", trim(s + 1));
      exp = NULL;
      if (strcmp(section, "generic") != 0) {
        char where[64];
        snprintf(where, sizeof where, "%s:%u", file, line);
        exp = add_export(cfg, section, where);
        if (!exp) {
          r = -EINVAL;
          break;
        }
      }
      continue;
    }
    eq = strchr(s, '=');
    if (!eq || !*section) {
      cfg_err("%s:%u: expected 'key = value' inside a section",
              file, line);
      r = -EINVAL;
      break;
    }
    *eq = '\0';
    r = config_file_key(cfg, file, line, section, exp, trim(s), trim(eq + 1));
    if (r < 0)
      break;
  }
  fclose(fp);
  /* [generic]'s policy and quota are defaults wherever they stand in the
   * file, also for export sections above them. */
  for (unsigned i = 0; r == 0 && i < cfg->nexports; i++) {
    if (!cfg->exports[i].policy_set)
      cfg->exports[i].policy = cfg->default_policy;
    if (!cfg->exports[i].quota_set)
      cfg->exports[i].quota = cfg->default_quota;
  }
  return r;
}

int
config_file_parse(const char *file)
{
  return parse_file_into(&config, file);
}

/* What the command line said, for every reload: the configuration before
 * the file was read, the file's absolute path, and the -e exports. */
static struct config cli_config;
static char config_file_path[PATH_MAX];
static char **cli_exports;
static unsigned ncli_exports;

/* The directory nbdsrv was started in: relative paths, on the command
 * line or in the file, are relative to it, also in a reload after the
 * daemon left it. */
static char start_cwd[PATH_MAX];

static int
make_absolute(char *path, size_t size)
{
  char buf[PATH_MAX];

  if (path[0] == '/' || path[0] == '\0')
    return 0;
  if (!start_cwd[0] && !getcwd(start_cwd, sizeof start_cwd))
    return -errno;
  if ((size_t)snprintf(buf, sizeof buf, "%s/%s", start_cwd, path) >= size)
    return -ENAMETOOLONG;
  snprintf(path, size, "%s", buf);
  return 0;
}

/* Builds the configuration in cfg (which holds the command line's):
 * the file, then the -e exports, then checks. */
static int
build(struct config *cfg)
{
  int r;

  cfg->exports = NULL;
  cfg->nexports = 0;
  if (config_file_path[0]) {
    r = parse_file_into(cfg, config_file_path);
    if (r < 0)
      return r;
  }
  for (unsigned i = 0; i < ncli_exports; i++) {
    char *eq = strchr(cli_exports[i], '=');
    struct export *e;

    if (!eq || eq == cli_exports[i] || !eq[1]) {
      cfg_err("-e %s: expected NAME=IMAGE", cli_exports[i]);
      return -EINVAL;
    }
    *eq = '\0';
    e = add_export(cfg, cli_exports[i], "-e");
    *eq = '=';
    if (!e)
      return -EINVAL;
    snprintf(e->image, sizeof e->image, "%s", eq + 1);
  }
  if (cfg->nexports == 0) {
    cfg_err("no exports: give -e NAME=IMAGE or a config file with an export section");
    return -EINVAL;
  }
  for (unsigned i = 0; i < cfg->nexports; i++) {
    if (!cfg->exports[i].image[0]) {
      cfg_err("export '%s' has no image: add 'image = PATH' to its section",
              cfg->exports[i].name);
      return -EINVAL;
    }
    if (make_absolute(cfg->exports[i].image, sizeof cfg->exports[i].image) < 0) {
      cfg_err("export '%s': image path too long", cfg->exports[i].name);
      return -EINVAL;
    }
  }
  if (make_absolute(cfg->overlay_dir, sizeof cfg->overlay_dir) < 0 ||
      make_absolute(cfg->trace, sizeof cfg->trace) < 0 ||
      make_absolute(cfg->pidfile, sizeof cfg->pidfile) < 0) {
    cfg_err("a path is too long once made absolute");
    return -EINVAL;
  }
  if (cfg->nlisten == 0) {
    cfg->nlisten = 1;
    parse_listen("", &cfg->listen[0]);
  }
  return 0;
}

int
config_check(const struct config *cfg)
{
  struct stat st;

  for (unsigned i = 0; i < cfg->nexports; i++) {
    const struct export *e = &cfg->exports[i];
    char path[PATH_MAX];
    int r = image_resolve(e, path, sizeof path);

    if (r < 0) {
      cfg_err("export '%s': image %s: %s%s", e->name, e->image, strerror(-r),
              r == -ENOENT ? " (build one with 'imgtool build', or fix the path)" : "");
      return r;
    }
    if (stat(path, &st) < 0 || !(S_ISREG(st.st_mode) || S_ISBLK(st.st_mode))) {
      cfg_err("export '%s': %s is not an image file", e->name, path);
      return -EINVAL;
    }
  }
  return 0;
}

int
config_start(void)
{
  int r = publish(&config);

  config_running = true;
  return r;
}

/* Reload: non-zero when a setting only a restart can change differs. */
static void
warn_restart(const char *what, bool changed)
{
  if (changed)
    log_warn("reload: '%s' changed, which takes effect only after a restart", what);
}

int
config_reload(void)
{
  struct config next = cli_config;
  unsigned added = 0, removed = 0;
  int r;

  r = build(&next);
  if (r == 0)
    r = config_check(&next);
  if (r < 0) {
    free_exports(next.exports, next.nexports);
    log_err("reload refused: the configuration above is broken; still serving the previous one");
    return r;
  }
  warn_restart("listen", next.nlisten != config.nlisten ||
               memcmp(next.listen, config.listen, sizeof next.listen) != 0);
  warn_restart("overlay-dir", strcmp(next.overlay_dir, config.overlay_dir) != 0);
  warn_restart("threads", next.threads != config.threads);
  warn_restart("trace", strcmp(next.trace, config.trace) != 0);
  warn_restart("control-socket", strcmp(next.control_socket, config.control_socket) != 0);
  for (unsigned i = 0; i < next.nexports; i++) {
    const struct export *old = config_find_export(next.exports[i].name);
    if (old)
      next.exports[i].draining = __atomic_load_n(&old->draining, __ATOMIC_RELAXED);
    else
      added++;
  }
  for (unsigned i = 0; i < config.nexports; i++) {
    bool kept = false;
    for (unsigned j = 0; j < next.nexports && !kept; j++)
      kept = strcmp(config.exports[i].name, next.exports[j].name) == 0;
    removed += !kept;
  }
  r = publish(&next);
  if (r < 0) {
    free_exports(next.exports, next.nexports);
    log_err("reload refused: out of memory");
    return r;
  }
  /* Limits apply to connections from now on (workers read them as they
   * go; a stale value for a moment does no harm). */
  config.exports = next.exports;
  config.nexports = next.nexports;
  config.max_conns = next.max_conns;
  config.max_conns_per_addr = next.max_conns_per_addr;
  config.handshake_timeout = next.handshake_timeout;
  config.max_request = next.max_request;
  config.keepalive = next.keepalive;
  config.ephemeral_linger = next.ephemeral_linger;
  config.default_policy = next.default_policy;
  config.default_quota = next.default_quota;
  log_info("configuration reloaded: %u exports (%u new, %u removed)",
           next.nexports, added, removed);
  return 0;
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
    { "check-config", no_argument, NULL, 'K' },
    { "help", no_argument, NULL, 'h' },
    { NULL, 0, NULL, 0 },
  };
  const char *config_file = NULL;
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
        cfg_err("-l %s: expected ADDR, ADDR:PORT or [V6ADDR]:PORT (at most %d)",
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
      if (!(cli_exports[ncli_exports] = strdup(optarg))) {
        r = -ENOMEM;
        goto out;
      }
      ncli_exports++;
      break;
    }
    case 'o':
      cli_overlay_dir = true;
      snprintf(config.overlay_dir, sizeof config.overlay_dir, "%s", optarg);
      break;
    case 'p':
      cli_policy = true;
      if (policy_parse(optarg, &config.default_policy) < 0) {
        cfg_err("--policy %s: expected persistent, reset-on-boot or ephemeral", optarg);
        r = -EINVAL;
        goto out;
      }
      break;
    case 'L':
      cli_linger = true;
      if (parse_uint(optarg, 0, 86400 * 365, &config.ephemeral_linger) < 0) {
        cfg_err("--ephemeral-linger %s: expected seconds", optarg);
        r = -EINVAL;
        goto out;
      }
      break;
    case 't':
      cli_threads = true;
      if (parse_uint(optarg, 1, 256, &config.threads) < 0) {
        cfg_err("-t %s: expected 1 to 256 threads", optarg);
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
        cfg_err("--control-socket %s: path too long", optarg);
        r = -EINVAL;
        goto out;
      }
      snprintf(config.control_socket, sizeof config.control_socket, "%s",
               strcmp(optarg, "none") == 0 ? "" : optarg);
      config.control_socket_set = cli_control_socket = true;
      break;
    case 'K':
      config.check_only = true;
      break;
    case 'h':
      fputs(usage, stdout);
      config_free_cli();
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
    snprintf(config_file_path, sizeof config_file_path, "%s", config_file);
    if (make_absolute(config_file_path, sizeof config_file_path) < 0) {
      cfg_err("config file path %s is too long", config_file);
      r = -EINVAL;
      goto out;
    }
  }
  cli_config = config;
  r = build(&config);
out:
  return r;
}

void
config_free_cli(void)
{
  for (unsigned i = 0; i < ncli_exports; i++)
    free(cli_exports[i]);
  free(cli_exports);
  cli_exports = NULL;
  ncli_exports = 0;
}
