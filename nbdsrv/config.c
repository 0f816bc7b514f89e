/* SPDX-License-Identifier: GPL-2.0-or-later */
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
#include "vec.h"

struct config config = {
  .idle_close = 2,
};

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
    config_err(
        "%s: invalid export name '%s': use letters, digits and . _ - + (not starting with '.')",
        where, name);
    return NULL;
  }
  for (unsigned i = 0; i < cfg->nexports; i++)
    if (strcmp(cfg->exports[i].name, name) == 0) {
      config_err("%s: export '%s' is defined twice", where, name);
      return NULL;
    }
  if (VEC_RESERVE(cfg->exports, cfg->exports_cap, (size_t)cfg->nexports + 1) < 0) {
    config_err("out of memory");
    return NULL;
  }
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
  config.exports_cap = 0;
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

bool
export_readonly(const struct export *e)
{
  return e->readonly || e->policy == POLICY_SHARED_READONLY;
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

/* Which keys the command line set: it wins over the file's [generic]. */
static bool cli_set[NBDSRV_MAX_KEYS];

/* Where the file parser is. */
struct parse {
  struct config *cfg;
  const char *file;
  unsigned line;
  char section[256];
  struct export *exp;             /* NULL in [generic] */
  unsigned seen[NBDSRV_MAX_KEYS]; /* line each key was set on in this
                                      section, 0: not yet */
};

static int
unknown_key(const struct parse *p, enum key_scope scope, const char *key)
{
  char hint[160];

  key_hint(scope, key, hint, sizeof hint);
  config_err("%s:%u: unknown key '%s' in section [%s]%s%s%s", p->file, p->line, key,
             p->section, *hint ? " (" : "", hint, *hint ? ")" : "");
  return -EINVAL;
}

/* A [generic] key the command line set is checked, then dropped. */
static void *
key_target(struct parse *p, const struct key *k)
{
  static struct config scratch;

  if (k->scope == KEY_EXPORT)
    return p->exp;
  if (!cli_set[k - keys])
    return p->cfg;
  scratch.nlisten = 0;
  return &scratch;
}

static int
file_key(struct parse *p, const char *key, const char *val)
{
  enum key_scope scope = p->exp ? KEY_EXPORT : KEY_GENERIC;
  const struct key *k = key_find(scope, key);
  unsigned i;
  void *base;
  int r;

  if (!k)
    return unknown_key(p, scope, key);
  i = k - keys;
  if (p->seen[i] && !k->repeatable) {
    config_err("%s:%u: '%s' is set twice in [%s] (first on line %u)", p->file, p->line,
               key, p->section, p->seen[i]);
    return -EINVAL;
  }
  if (!p->seen[i])
    p->seen[i] = p->line;
  base = key_target(p, k);
  r = key_set(k, base, val);
  if (r == -ENOMEM)
    config_err("out of memory");
  if (r < 0 && r != -ENOMEM) {
    char why[160];
    config_err("%s:%u: invalid value '%s' for '%s': %s", p->file, p->line, val, key,
               key_expects(k, why, sizeof why));
  }
  if (r < 0)
    return r;
  key_mark_set(k, base);
  if (k->type == KT_LISTEN)
    ((struct config *)base)->listen[((struct config *)base)->nlisten - 1].line = p->line;
  if (k->scope == KEY_EXPORT && k->offset == offsetof(struct export, image))
    p->exp->image_line = p->line;
  return 0;
}

static int
section_header(struct parse *p, char *s)
{
  char *end = strchr(s, ']');
  char where[64];

  if (!end || end[1] != '\0') {
    config_err("%s:%u: malformed section header", p->file, p->line);
    return -EINVAL;
  }
  *end = '\0';
  snprintf(p->section, sizeof p->section, "%s", trim(s + 1));
  memset(p->seen, 0, sizeof p->seen);
  p->exp = NULL;
  if (strcmp(p->section, "generic") == 0)
    return 0;
  snprintf(where, sizeof where, "%s:%u", p->file, p->line);
  p->exp = add_export(p->cfg, p->section, where);
  if (!p->exp)
    return -EINVAL;
  p->exp->line = p->line;
  return 0;
}

static int
parse_line(struct parse *p, char *s)
{
  char *eq;

  if (*s == '\0' || *s == '#' || *s == ';')
    return 0;
  if (*s == '[')
    return section_header(p, s);
  eq = strchr(s, '=');
  if (!eq || !p->section[0]) {
    config_err("%s:%u: expected 'key = value' inside a section", p->file, p->line);
    return -EINVAL;
  }
  *eq = '\0';
  return file_key(p, trim(s), trim(eq + 1));
}

static int
parse_file_into(struct config *cfg, const char *file)
{
  static struct parse p; /* large: not on the stack */
  FILE *fp = fopen(file, "r");
  char buf[4096];
  int r = 0;

  if (!fp) {
    config_err("cannot open config file %s: %s", file, strerror(errno));
    return -errno;
  }
  memset(&p, 0, sizeof p);
  p.cfg = cfg;
  p.file = file;
  while (r == 0 && fgets(buf, sizeof buf, fp)) {
    p.line++;
    r = parse_line(&p, trim(buf));
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
config_control_socket(const char *file, char *path, size_t len)
{
  static struct config cfg;
  int r;

  memset(&cfg, 0, sizeof cfg);
  keys_defaults(&cfg);
  r = parse_file_into(&cfg, file);
  free_exports(cfg.exports, cfg.nexports);
  if (r == 0)
    snprintf(path, len, "%s", cfg.control_socket);
  return r;
}

int
config_file_parse(const char *file)
{
  return parse_file_into(&config, file);
}

/* What the command line said, for every reload: the configuration before
 * the file was read, and the -e exports (the file's absolute path is
 * config_file_name()). */
static struct config cli_config;
static char **cli_exports;
static unsigned ncli_exports;
static size_t cli_exports_cap;

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

static void
default_listen(struct config *cfg)
{
  for (unsigned i = 0; i < nkeys; i++)
    if (keys[i].type == KT_LISTEN)
      key_set(&keys[i], cfg, keys[i].def);
}

/* Builds the configuration in cfg (which holds the command line's):
 * the file, then the -e exports, then checks. */
static int
build(struct config *cfg)
{
  int r;

  cfg->exports = NULL;
  cfg->nexports = 0;
  cfg->exports_cap = 0;
  if (config_file_name()[0]) {
    r = parse_file_into(cfg, config_file_name());
    if (r < 0)
      return r;
  }
  for (unsigned i = 0; i < ncli_exports; i++) {
    char *eq = strchr(cli_exports[i], '=');
    struct export *e;

    if (!eq || eq == cli_exports[i] || !eq[1]) {
      config_err("-e %s: expected NAME=IMAGE", cli_exports[i]);
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
    config_err("no exports: give -e NAME=IMAGE or a config file with an export section");
    return -EINVAL;
  }
  for (unsigned i = 0; i < cfg->nexports; i++) {
    if (!cfg->exports[i].image[0]) {
      config_err("export '%s' has no image: add 'image = PATH' to its section",
                 cfg->exports[i].name);
      return -EINVAL;
    }
    if (make_absolute(cfg->exports[i].image, sizeof cfg->exports[i].image) < 0) {
      config_err("export '%s': image path too long", cfg->exports[i].name);
      return -EINVAL;
    }
  }
  if (make_absolute(cfg->overlay_dir, sizeof cfg->overlay_dir) < 0 ||
      make_absolute(cfg->trace, sizeof cfg->trace) < 0 ||
      make_absolute(cfg->pidfile, sizeof cfg->pidfile) < 0) {
    config_err("a path is too long once made absolute");
    return -EINVAL;
  }
  if (cfg->nlisten == 0)
    default_listen(cfg);
  return 0;
}

int
config_start(void)
{
  int r = publish(&config);

  config_messages_to_log();
  return r;
}

int
config_reload(reload_echo_fn *echo, void *ctx)
{
  struct config next = cli_config;
  unsigned changes;
  int r;

  r = build(&next);
  if (r == 0)
    r = config_check(&next);
  if (r < 0) {
    free_exports(next.exports, next.nexports);
    log_err(
        "reload refused: the configuration above is broken; still serving the previous one");
    return r;
  }
  for (unsigned i = 0; i < next.nexports; i++) {
    const struct export *old = config_find_export(next.exports[i].name);
    if (old)
      next.exports[i].draining = __atomic_load_n(&old->draining, __ATOMIC_RELAXED);
  }
  changes = reload_report(&config, &next, echo, ctx);
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
  reload_apply(&config, &next);
  if (changes)
    log_info("configuration reloaded: %u export%s, %u change%s", next.nexports,
             next.nexports == 1 ? "" : "s", changes, changes == 1 ? "" : "s");
  else
    log_info("configuration reloaded: %u export%s, nothing changed", next.nexports,
             next.nexports == 1 ? "" : "s");
  config_warn_unpinned(&next);
  return 0;
}

/* Options that are no key of the file. */
static const struct option plain_options[] = {
  { "config", required_argument, NULL, 'c' },  { "export", required_argument, NULL, 'e' },
  { "pidfile", required_argument, NULL, 'P' }, { "foreground", no_argument, NULL, 'f' },
  { "verbose", no_argument, NULL, 'v' },       { "no-splice", no_argument, NULL, 'S' },
  { "check-config", no_argument, NULL, 'K' },  { "list-keys", no_argument, NULL, 'k' },
  { "version", no_argument, NULL, 'V' },       { "help", no_argument, NULL, 'h' },
};
#define NPLAIN (sizeof plain_options / sizeof plain_options[0])
#define KEY_OPTION 0x100 /* getopt's value for keys[i]: KEY_OPTION + i */

static void
usage(FILE *fp)
{
  fputs(
      "usage: nbdsrv [-c FILE] [-e NAME=IMAGE]... [-P PIDFILE] [--no-splice] [-f] [-v]\n"
      "              [--check-config] [--list-keys] [-V|--version] [SETTING]...\n"
      "       nbdsrv ctl [-s SOCKET | -c FILE] [--json] list|exports|kick|reset|drain|resume|reload [ARG]\n"
      "  SETTING: a key of [generic] in nbdsrv.conf(5), over the file's:\n",
      fp);
  for (unsigned i = 0; i < nkeys; i++) {
    const struct key *k = &keys[i];
    char opt[96], sh[8] = "    ";

    if (!k->option)
      continue;
    if (k->short_opt)
      snprintf(sh, sizeof sh, "-%c, ", k->short_opt);
    snprintf(opt, sizeof opt, "%s--%s %s", sh, k->option, key_syntax(k));
    fprintf(fp, "  %-42s %s%s\n", opt, k->help, k->repeatable ? " (repeatable)" : "");
  }
  fputs("Serves root images over NBD with a copy-on-write overlay per client.\n"
        "See nbdsrv(8) and nbdsrv.conf(5).\n",
        fp);
}

/* getopt's tables: the plain options, then one per key that has one. */
static void
build_options(struct option *opts, char *shortopts)
{
  unsigned n = NPLAIN;

  memcpy(opts, plain_options, sizeof plain_options);
  strcpy(shortopts, "c:e:P:fvhV");
  for (unsigned i = 0; i < nkeys; i++) {
    if (!keys[i].option)
      continue;
    opts[n++] =
        (struct option){ keys[i].option, required_argument, NULL,
                         keys[i].short_opt ? keys[i].short_opt : (int)(KEY_OPTION + i) };
    if (keys[i].short_opt) {
      size_t l = strlen(shortopts);
      shortopts[l] = keys[i].short_opt;
      shortopts[l + 1] = ':';
      shortopts[l + 2] = '\0';
    }
  }
  opts[n] = (struct option){ NULL, 0, NULL, 0 };
}

/* The key an option of getopt stands for, or NULL. */
static const struct key *
option_key(int c)
{
  if (c >= KEY_OPTION && c < (int)(KEY_OPTION + nkeys))
    return &keys[c - KEY_OPTION];
  for (unsigned i = 0; i < nkeys; i++)
    if (keys[i].option && keys[i].short_opt == c)
      return &keys[i];
  return NULL;
}

static int
cli_key(const struct key *k, const char *val)
{
  unsigned i = k - keys;
  int r;

  /* The first -l replaces the file's addresses; more add up. */
  if (k->type == KT_LISTEN && !cli_set[i])
    config.nlisten = 0;
  cli_set[i] = true;
  r = key_set(k, &config, val);
  if (r < 0) {
    char why[160], opt[64];
    if (k->short_opt)
      snprintf(opt, sizeof opt, "-%c", k->short_opt);
    else
      snprintf(opt, sizeof opt, "--%s", k->option);
    config_err("%s %s: %s", opt, val,
               r == -ENOMEM ? "out of memory" : key_expects(k, why, sizeof why));
    return r;
  }
  key_mark_set(k, &config);
  return 0;
}

static int
add_cli_export(const char *arg)
{
  if (VEC_RESERVE(cli_exports, cli_exports_cap, (size_t)ncli_exports + 1) < 0)
    return -ENOMEM;
  if (!(cli_exports[ncli_exports] = strdup(arg)))
    return -ENOMEM;
  ncli_exports++;
  return 0;
}

/* The options that end the program at once. */
static void __attribute__((noreturn)) answer_and_exit(int c)
{
  if (c == 'h')
    usage(stdout);
  else if (c == 'V')
    printf("nbdsrv (nbdroot) %s\n", PACKAGE_VERSION);
  else
    keys_list(stdout);
  config_free_cli();
  exit(fflush(stdout) == 0 ? 0 : 1);
}

static int
plain_option(int c, const char **config_file)
{
  switch (c) {
    case 'c': *config_file = optarg; return 0;
    case 'e': return add_cli_export(optarg);
    case 'P': snprintf(config.pidfile, sizeof config.pidfile, "%s", optarg); return 0;
    case 'f': config.foreground = true; return 0;
    case 'v': log_verbosity = LOG_DEBUG; return 0;
    case 'S': config.no_splice = true; return 0;
    case 'K': config.check_only = true; return 0;
    case 'h':
    case 'V':
    case 'k': answer_and_exit(c);
  }
  usage(stderr);
  return -EINVAL;
}

int
config_parse_args(int argc, char **argv)
{
  struct option opts[NPLAIN + NBDSRV_MAX_KEYS + 1];
  char shortopts[16 + 3 * NBDSRV_MAX_KEYS];
  const char *config_file = NULL;
  int c, r = 0;

  keys_defaults(&config);
  build_options(opts, shortopts);
  while (r == 0 && (c = getopt_long(argc, argv, shortopts, opts, NULL)) != -1) {
    const struct key *k = option_key(c);
    r = k ? cli_key(k, optarg) : plain_option(c, &config_file);
  }
  if (r < 0)
    return r;
  if (optind < argc) {
    fprintf(stderr, "nbdsrv: unexpected argument '%s'\n", argv[optind]);
    usage(stderr);
    return -EINVAL;
  }
  if (config_file) {
    char path[PATH_MAX];

    snprintf(path, sizeof path, "%s", config_file);
    if (make_absolute(path, sizeof path) < 0) {
      config_err("config file path %s is too long", config_file);
      return -EINVAL;
    }
    config_set_file_name(path);
  }
  cli_config = config;
  return build(&config);
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
