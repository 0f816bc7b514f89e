/* SPDX-License-Identifier: GPL-2.0-or-later */
/* nbdsrv: the control socket (nbdsrv ctl), server side.
 *
 * A unix stream socket, mode 0600 (root only), or 0660 and the group of
 * control-group, served by the main thread: one command per connection,
 * one line in, then the answer and close, all within CTL_DEADLINE_MS.
 * The peer's credentials are checked as well (root, the server's user,
 * or a member of control-group).  The answer's first line is "OK" or
 * "ERR <why>"; the rest is for the admin (a table) or for scripts (JSON
 * when the command ends in " --json").
 *
 *   list [--json]          connected clients: identity, address, export,
 *                          image version, overlay data, requests and
 *                          bytes since connect; then the overlays
 *                          refused as damaged, and why
 *   exports [--json]       the exports: policy, image and the version a
 *                          new client gets, drained or not, clients,
 *                          overlays on disk and the space they take,
 *                          quota
 *   kick WHO               close the connections of a client: WHO is an
 *                          address, an ID, or EXPORT/ID
 *   reset EXPORT/ID        delete a disconnected client's overlay
 *   overlays EXPORT [--stale DAYS [--remove]]
 *                          the client overlays of EXPORT on disk: ID,
 *                          address, space, days since last written; with
 *                          --stale only those not written for DAYS days,
 *                          removed (with their binding) with --remove
 *   move-id EXPORT/ID ADDRESS
 *                          bind a client ID to another address (IDs are
 *                          bound to the first address that used them)
 *   fence NODE             run the fence-command for a dead server NODE
 *                          (fence.c), so that its overlays are free
 *   drain EXPORT           refuse new clients of EXPORT (others go on)
 *   resume EXPORT          accept them again
 *   reload                 read the configuration again, as on SIGHUP,
 *                          and say what changed
 *
 * Connections belong to worker threads, which alone may touch their
 * rings: listing reads a snapshot under each worker's conns_lock, and a
 * kick only marks the connection and wakes its worker, which closes it.
 * `exports` stats every file under OVERLAY_DIR/EXPORT, in the main
 * thread: clients are not held up, but signals and the janitor wait
 * for it (a microsecond or so a file on a local disk, a round trip a
 * file on a network file system).
 */
#include <config.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "base-pin.h"
#include "clock.h"
#include "log.h"
#include "nbdsrv.h"
#include "util.h"
#include "vec.h"

/* What nbdsrv ctl list shows of a connection. */
struct ctl_conn_info {
  char export[256];
  char id[CLIENT_ID_MAX + 1];
  char peer[INET6_ADDRSTRLEN];
  char image[256]; /* the pinned image version's file name */
  char base[256];  /* its identity (image.c) */
  uint64_t overlay_bytes;
  time_t connected;
  uint64_t requests, bytes_read, bytes_written;
  uint64_t flush_fsyncs, data_syncs_skipped; /* the overlay's */
  unsigned worker;
};

/* The attached connections of all workers, as a growing array. */
struct snapshot {
  struct ctl_conn_info *v;
  size_t n, cap;
};

/* Called under the worker's conns_lock: the overlay stays while the
 * connection does; the counters may be a request behind. */
static int
snapshot_add(struct conn *c, void *arg)
{
  struct snapshot *sn = arg;
  struct ctl_conn_info *x;
  const char *slash;

  if (VEC_RESERVE(sn->v, sn->cap, sn->n + 1) < 0)
    return -ENOMEM;
  x = &sn->v[sn->n++];
  memset(x, 0, sizeof *x);
  slash = strchr(c->ovl->key, '/');
  snprintf(x->export, sizeof x->export, "%s", c->ovl->exp->name);
  snprintf(x->id, sizeof x->id, "%.*s", (int)sizeof x->id - 1,
           slash ? slash + 1 : c->ovl->key);
  snprintf(x->peer, sizeof x->peer, "%s", c->peer);
  slash = strrchr(c->ovl->base->path, '/');
  snprintf(x->image, sizeof x->image, "%.*s", (int)sizeof x->image - 1,
           slash ? slash + 1 : c->ovl->base->path);
  snprintf(x->base, sizeof x->base, "%s", c->ovl->base->identity);
  pthread_mutex_lock(&c->ovl->lock);
  x->overlay_bytes = c->ovl->file.map.ndata * (uint64_t)OVL_BLOCK_SIZE;
  x->flush_fsyncs = c->ovl->flush_fsyncs;
  x->data_syncs_skipped = c->ovl->data_syncs_skipped;
  pthread_mutex_unlock(&c->ovl->lock);
  x->connected = c->connected;
  x->requests = c->requests;
  x->bytes_read = c->bytes_read;
  x->bytes_written = c->bytes_written;
  x->worker = c->w->id;
  return 0;
}

/* The attached connections of all workers (malloc'ed array). */
static int
snapshot_take(struct ctl_conn_info **out, size_t *n)
{
  struct snapshot sn = { 0 };
  int r = workers_each_conn(snapshot_add, &sn);

  if (r < 0) {
    free(sn.v);
    return r;
  }
  *out = sn.v;
  *n = sn.n;
  return 0;
}

/* Whether c is the client who names: its address, ID or EXPORT/ID. */
static bool
conn_is(const struct conn *c, const char *who)
{
  const char *slash = strchr(c->ovl->key, '/');

  return !strcmp(c->peer, who) || !strcmp(c->ovl->key, who) ||
         (slash && !strcmp(slash + 1, who));
}

struct kick {
  const char *who;
  unsigned n;
};

/* Marks c for its worker to close (under the worker's conns_lock). */
static int
kick_mark(struct conn *c, void *arg)
{
  struct kick *k = arg;

  if (!conn_is(c, k->who))
    return 0;
  c->kick = true;
  k->n++;
  return 1;
}

/* A growing answer. */
struct answer {
  char *buf;
  size_t len, cap;
  bool failed;
};

static void __attribute__((format(printf, 2, 3)))
answer_printf(struct answer *a, const char *fmt, ...)
{
  va_list ap;

  va_start(ap, fmt);
  if (vec_vprintf(&a->buf, &a->len, &a->cap, fmt, ap) < 0)
    a->failed = true;
  va_end(ap);
}

/* s as a JSON string (the names here are plain ASCII, but be safe). */
static void
say_json_string(struct answer *a, const char *s)
{
  answer_printf(a, "\"");
  for (; *s; s++) {
    unsigned char ch = (unsigned char)*s;
    if (ch == '"' || ch == '\\')
      answer_printf(a, "\\%c", ch);
    else if (ch < 0x20)
      answer_printf(a, "\\u%04x", ch);
    else
      answer_printf(a, "%c", ch);
  }
  answer_printf(a, "\"");
}

/* An overlay refused as damaged, after the connections: in the table,
 * a line "damaged EXPORT/ID: why"; in JSON, an entry with "damaged". */
static void
say_damaged(const char *key, const char *why, void *arg)
{
  answer_printf(arg, "damaged %s: %s\n", key, why);
}

struct damaged_say {
  struct answer *a;
  size_t before; /* entries said before */
};

static void
say_damaged_json(const char *key, const char *why, void *arg)
{
  struct damaged_say *d = arg;
  const char *slash = strchr(key, '/');
  char export[256];

  snprintf(export, sizeof export, "%.*s", (int)(slash ? slash - key : 0), key);
  answer_printf(d->a, "%s\n {\"export\": ", d->before++ ? "," : "");
  say_json_string(d->a, export);
  answer_printf(d->a, ", \"id\": ");
  say_json_string(d->a, slash ? slash + 1 : key);
  answer_printf(d->a, ", \"damaged\": ");
  say_json_string(d->a, why);
  answer_printf(d->a, "}");
}

static void
count_one(const char *key, const char *why, void *arg)
{
  (void)key;
  (void)why;
  ++*(size_t *)arg;
}

static size_t
damaged_count(void)
{
  size_t n = 0;

  damaged_each(count_one, &n);
  return n;
}

static void
cmd_list(struct answer *a, bool json)
{
  struct ctl_conn_info *v = NULL;
  size_t n = 0;
  time_t now = time(NULL);

  if (snapshot_take(&v, &n) < 0) {
    answer_printf(a, "ERR out of memory\n");
    return;
  }
  answer_printf(a, "OK\n");
  if (json) {
    answer_printf(a, "[");
    for (size_t i = 0; i < n; i++) {
      answer_printf(a, "%s\n {\"export\": ", i ? "," : "");
      say_json_string(a, v[i].export);
      answer_printf(a, ", \"id\": ");
      say_json_string(a, v[i].id);
      answer_printf(a, ", \"address\": ");
      say_json_string(a, v[i].peer);
      answer_printf(a, ", \"image\": ");
      say_json_string(a, v[i].image);
      answer_printf(a, ", \"base\": ");
      say_json_string(a, v[i].base);
      answer_printf(
          a,
          ", \"overlay_bytes\": %llu, \"connected_seconds\": %lld, "
          "\"requests\": %llu, \"bytes_read\": %llu, \"bytes_written\": %llu, "
          "\"flush_fsyncs\": %llu, \"data_syncs_skipped\": %llu, \"worker\": %u}",
          (unsigned long long)v[i].overlay_bytes, (long long)(now - v[i].connected),
          (unsigned long long)v[i].requests, (unsigned long long)v[i].bytes_read,
          (unsigned long long)v[i].bytes_written, (unsigned long long)v[i].flush_fsyncs,
          (unsigned long long)v[i].data_syncs_skipped, v[i].worker);
    }
    damaged_each(say_damaged_json, &(struct damaged_say){ a, n });
    answer_printf(a, "%s]\n", n || damaged_count() ? "\n" : "");
  } else {
    answer_printf(a, "%-20s %-24s %-16s %-14s %8s %8s %10s %8s %8s %s\n", "EXPORT", "ID",
                  "ADDRESS", "IMAGE", "OVERLAY", "UP", "REQUESTS", "READ", "WRITTEN",
                  "BASE");
    for (size_t i = 0; i < n; i++) {
      char ov[16], rd[16], wr[16], up[32];
      long long secs = now - v[i].connected;
      format_size(v[i].overlay_bytes, ov);
      format_size(v[i].bytes_read, rd);
      format_size(v[i].bytes_written, wr);
      snprintf(up, sizeof up, "%lld:%02lld:%02lld", secs / 3600, secs / 60 % 60,
               secs % 60);
      answer_printf(a, "%-20s %-24s %-16s %-14s %8s %8s %10llu %8s %8s %s\n", v[i].export,
                    v[i].id, v[i].peer, v[i].image, ov, up,
                    (unsigned long long)v[i].requests, rd, wr, v[i].base);
    }
    answer_printf(a, "%zu connection%s\n", n, n == 1 ? "" : "s");
    damaged_each(say_damaged, a);
  }
  free(v);
}

/* What `exports` shows of one export. */
struct export_view {
  const struct export *e;
  bool store;              /* an image-store directory */
  char current[PATH_MAX];  /* the version a new client gets */
  int image_err;           /* why there is none: -errno, or 0 */
  unsigned clients, conns; /* connected, by identity and in all */
  unsigned overlays;       /* ID.map and ID.basepin files on disk */
  uint64_t overlay_bytes;  /* disk space of all its files */
  int scan_err;            /* why those are unknown: -errno, or 0 */
};

static int
conn_info_cmp(const void *pa, const void *pb)
{
  const struct ctl_conn_info *a = pa, *b = pb;
  int r = strcmp(a->export, b->export);

  return r ? r : strcmp(a->id, b->id);
}

/* Connections and distinct clients of v->e in v[0..n), sorted by
 * conn_info_cmp. */
static void
count_clients(struct export_view *x, const struct ctl_conn_info *v, size_t n)
{
  for (size_t i = 0; i < n; i++) {
    if (strcmp(v[i].export, x->e->name) != 0)
      continue;
    x->conns++;
    if (i == 0 || strcmp(v[i - 1].export, v[i].export) != 0 ||
        strcmp(v[i - 1].id, v[i].id) != 0)
      x->clients++;
  }
}

/* Overlays on disk under OVERLAY_DIR/EXPORT and the space their files
 * take (allocated blocks: the data files are sparse). */
static void
scan_overlays(struct export_view *x)
{
  char dir[PATH_MAX];
  struct dirent *d;
  DIR *dp;

  x->scan_err = format_path(dir, sizeof dir, "%s/%s", config.overlay_dir, x->e->name);
  if (x->scan_err < 0)
    return;
  dp = opendir(dir);
  if (!dp) {
    /* No client has written yet: nothing there. */
    x->scan_err = errno == ENOENT ? 0 : -errno;
    return;
  }
  while ((d = readdir(dp))) {
    struct stat st;

    if (fstatat(dirfd(dp), d->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
        !S_ISREG(st.st_mode))
      continue;
    x->overlay_bytes += (uint64_t)st.st_blocks * 512;
    /* A shared read-only client's pin stands for it as an overlay does. */
    if (ends_with(d->d_name, ".map") || ends_with(d->d_name, BASE_PIN_SUFFIX))
      x->overlays++;
  }
  closedir(dp);
}

static void
view_export(struct export_view *x, const struct export *e, const struct ctl_conn_info *v,
            size_t n)
{
  struct stat st;

  memset(x, 0, sizeof *x);
  x->e = e;
  x->store = stat(e->image, &st) == 0 && S_ISDIR(st.st_mode);
  x->image_err = image_resolve(e, x->current, sizeof x->current);
  count_clients(x, v, n);
  scan_overlays(x);
}

static const char *
base_name(const char *path)
{
  const char *slash = strrchr(path, '/');

  return slash ? slash + 1 : path;
}

static void
say_export_json(struct answer *a, const struct export_view *x)
{
  answer_printf(a, "{\"name\": ");
  say_json_string(a, x->e->name);
  answer_printf(a, ", \"policy\": \"%s\", \"image\": ", policy_name(x->e->policy));
  say_json_string(a, x->e->image);
  answer_printf(a,
                ", \"image_type\": \"%s\", \"current\": ", x->store ? "store" : "file");
  if (x->image_err) {
    answer_printf(a, "null, \"version\": null, \"image_error\": ");
    say_json_string(a, strerror(-x->image_err));
  } else {
    say_json_string(a, x->current);
    answer_printf(a, ", \"version\": ");
    say_json_string(a, base_name(x->current));
  }
  answer_printf(a,
                ", \"drained\": %s, \"clients\": %u, \"connections\": %u, "
                "\"overlays\": %u, \"overlay_bytes\": %llu, ",
                __atomic_load_n(&x->e->draining, __ATOMIC_RELAXED) ? "true" : "false",
                x->clients, x->conns, x->overlays, (unsigned long long)x->overlay_bytes);
  if (x->scan_err) {
    answer_printf(a, "\"overlay_error\": ");
    say_json_string(a, strerror(-x->scan_err));
    answer_printf(a, ", ");
  }
  answer_printf(a, "\"quota\": %llu}", (unsigned long long)x->e->quota);
}

static void
say_export_row(struct answer *a, const struct export_view *x)
{
  char used[16], quota[16];

  format_size(x->overlay_bytes, used);
  if (x->e->quota)
    format_size(x->e->quota, quota);
  else
    snprintf(quota, sizeof quota, "none");
  answer_printf(a, "%-16s %-13s %-7s %7u %5u %8u %8s %8s %-5s %-14s %s", x->e->name,
                policy_name(x->e->policy),
                __atomic_load_n(&x->e->draining, __ATOMIC_RELAXED) ? "drained"
                                                                   : "serving",
                x->clients, x->conns, x->overlays, x->scan_err ? "?" : used, quota,
                x->store ? "store" : "file", x->image_err ? "?" : base_name(x->current),
                x->e->image);
  if (x->image_err)
    answer_printf(a, " (no current version: %s)", strerror(-x->image_err));
  if (x->scan_err)
    answer_printf(a, " (overlays: %s)", strerror(-x->scan_err));
  answer_printf(a, "\n");
}

static void
cmd_exports(struct answer *a, bool json)
{
  struct ctl_conn_info *v = NULL;
  struct export_view x;
  size_t n = 0;
  unsigned ne;
  const struct export *all = config_exports(&ne);

  if (snapshot_take(&v, &n) < 0) {
    answer_printf(a, "ERR out of memory\n");
    return;
  }
  if (n > 1)
    qsort(v, n, sizeof *v, conn_info_cmp);
  answer_printf(a, "OK\n");
  if (json)
    answer_printf(a, "[");
  else
    answer_printf(a, "%-16s %-13s %-7s %7s %5s %8s %8s %8s %-5s %-14s %s\n", "EXPORT",
                  "POLICY", "STATE", "CLIENTS", "CONNS", "OVERLAYS", "USED", "QUOTA",
                  "TYPE", "VERSION", "IMAGE");
  for (unsigned i = 0; i < ne; i++) {
    view_export(&x, &all[i], v, n);
    if (json) {
      answer_printf(a, "%s\n ", i ? "," : "");
      say_export_json(a, &x);
    } else {
      say_export_row(a, &x);
    }
  }
  if (json)
    answer_printf(a, "%s]\n", ne ? "\n" : "");
  else
    answer_printf(a, "%u export%s\n", ne, ne == 1 ? "" : "s");
  free(v);
}

/* The ID that ends ADDRESS, ID or EXPORT/ID in its canonical form: an
 * admin may write a MAC with colons or in upper case. */
static void
normalize_id_arg(char *arg)
{
  char *slash = strrchr(arg, '/');

  client_id_normalize(slash ? slash + 1 : arg);
}

static void
cmd_kick(struct answer *a, char *who)
{
  unsigned n;

  normalize_id_arg(who);
  if (!*who) {
    answer_printf(a, "ERR usage: kick ADDRESS|ID|EXPORT/ID\n");
    return;
  }
  struct kick k = { who, 0 };

  workers_each_conn(kick_mark, &k);
  n = k.n;
  if (n == 0) {
    answer_printf(a, "ERR no connection of '%s'\n", who);
    return;
  }
  log_info("control: kicked %u connection%s of %s", n, n == 1 ? "" : "s", who);
  answer_printf(a, "OK\nkicked %u connection%s\n", n, n == 1 ? "" : "s");
}

/* Runs in this thread: signals and the janitor wait for it (the
 * command's time, at most two minutes); clients do not. */
static void
cmd_fence(struct answer *a, const char *node)
{
  char out[2048];
  const char *why = NULL;

  if (!node[0]) {
    answer_printf(a, "ERR usage: fence NODE\n");
    return;
  }
  if (fence_node(node, out, sizeof out, &why) < 0) {
    answer_printf(a, "ERR %s\n%s", why, out);
    return;
  }
  answer_printf(a,
                "OK\nnode %s fenced: its clients' next connections take "
                "their overlays over\n%s",
                node, out);
}

static void
cmd_reset(struct answer *a, char *key)
{
  const char *slash = strchr(key, '/');
  const char *why = NULL;
  char export[256];
  int r;

  normalize_id_arg(key);
  if (!slash || slash == key || (size_t)(slash - key) >= sizeof export ||
      !client_id_valid(slash + 1, strlen(slash + 1))) {
    answer_printf(a, "ERR usage: reset EXPORT/ID\n");
    return;
  }
  memcpy(export, key, slash - key);
  export[slash - key] = '\0';
  r = overlay_reset(export, slash + 1, &why);
  if (r < 0) {
    answer_printf(a, "ERR %s\n", why ? why : strerror(-r));
    return;
  }
  log_info("control: reset the overlay %s", key);
  answer_printf(a, "OK\noverlay %s reset: the client starts from the base image\n", key);
}

static void
cmd_move_id(struct answer *a, char *arg)
{
  char *addr = strchr(arg, ' '), *slash, export[256];
  const char *why = NULL;

  if (addr)
    *addr++ = '\0';
  slash = strchr(arg, '/');
  if (!addr || !slash || slash == arg || (size_t)(slash - arg) >= sizeof export ||
      !client_id_valid(slash + 1, strlen(slash + 1))) {
    answer_printf(a, "ERR usage: move-id EXPORT/ID ADDRESS\n");
    return;
  }
  normalize_id_arg(arg);
  memcpy(export, arg, slash - arg);
  export[slash - arg] = '\0';
  if (overlay_move_id(export, slash + 1, addr, &why) < 0) {
    answer_printf(a, "ERR %s\n", why);
    return;
  }
  log_info("control: client %s bound to address %s", arg, addr);
  answer_printf(a,
                "OK\nclient %s is bound to %s (connections from elsewhere "
                "stay until kicked)\n",
                arg, addr);
}

/* What `overlays` gathers: the census of one export, as an array. */
struct overlay_list {
  struct census_entry *v;
  size_t n, cap;
  time_t older_than; /* only those written before; 0: all */
};

static int
overlay_list_add(const struct census_entry *x, void *arg)
{
  struct overlay_list *l = arg;

  if (l->older_than && x->mtime >= l->older_than)
    return 0;
  if (VEC_RESERVE(l->v, l->cap, l->n + 1) < 0)
    return -ENOMEM;
  l->v[l->n++] = *x;
  return 0;
}

/* "EXPORT [--stale DAYS [--remove]]": 0, or -1 (said why). */
static int
parse_overlays_args(struct answer *a, char *arg, const struct export **e, long *days,
                    bool *remove)
{
  char *save = NULL, *name = strtok_r(arg, " ", &save), *w, *end;

  *days = -1;
  *remove = false;
  while ((w = strtok_r(NULL, " ", &save))) {
    if (!strcmp(w, "--remove")) {
      *remove = true;
    } else if (!strcmp(w, "--stale") && (w = strtok_r(NULL, " ", &save))) {
      *days = strtol(w, &end, 10);
      if (*end || end == w || *days < 0 || *days > 100000)
        *days = -2;
    } else {
      *days = -2;
    }
  }
  if (!name || *days == -2 || (*remove && *days < 0)) {
    answer_printf(a, "ERR usage: overlays EXPORT [--stale DAYS [--remove]]\n");
    return -1;
  }
  if (!(*e = config_find_export(name))) {
    answer_printf(a, "ERR no export '%s'\n", name);
    return -1;
  }
  return 0;
}

/* Removes the overlay of x (not in use) and its binding: one line. */
static void
remove_stale(struct answer *a, const struct export *e, const struct census_entry *x)
{
  char prefix[PATH_MAX];
  const char *why = NULL;

  if (overlay_reset(e->name, x->id, &why) < 0) {
    answer_printf(a, "kept %s: %s\n", x->id, why ? why : "cannot remove it");
    return;
  }
  if (format_path(prefix, sizeof prefix, "%s/%s/%s", config.overlay_dir, e->name,
                  x->id) == 0)
    binding_remove(prefix);
  log_info("control: removed the stale overlay %s/%s", e->name, x->id);
  answer_printf(a, "removed %s\n", x->id);
}

static void
cmd_overlays(struct answer *a, char *arg)
{
  struct overlay_list l = { 0 };
  const struct export *e;
  time_t now = time(NULL);
  bool remove;
  long days;
  int r;

  if (parse_overlays_args(a, arg, &e, &days, &remove) < 0)
    return;
  if (days >= 0)
    l.older_than = now - days * 86400;
  r = census_each(e, overlay_list_add, &l);
  if (r < 0) {
    answer_printf(a, "ERR cannot read the overlays: %s\n", strerror(-r));
    free(l.v);
    return;
  }
  answer_printf(a, "OK\n");
  if (!remove)
    answer_printf(a, "%-24s %-16s %8s %s\n", "ID", "ADDRESS", "USED", "WRITTEN");
  for (size_t i = 0; i < l.n; i++) {
    char used[16];
    if (remove) {
      remove_stale(a, e, &l.v[i]);
      continue;
    }
    format_size(l.v[i].bytes, used);
    answer_printf(a, "%-24s %-16s %8s %lld days ago\n", l.v[i].id,
                  l.v[i].owner[0] ? l.v[i].owner : "-", used,
                  (long long)((now - l.v[i].mtime) / 86400));
  }
  answer_printf(a, "%zu overlay%s\n", l.n, l.n == 1 ? "" : "s");
  free(l.v);
}

static void
cmd_drain(struct answer *a, const char *name, bool drain)
{
  if (config_set_draining(name, drain) < 0) {
    answer_printf(a, "ERR no export '%s'\n", name);
    return;
  }
  log_info("control: export %s %s", name,
           drain ? "drained: new clients are refused" : "resumed");
  answer_printf(a, "OK\nexport %s %s\n", name,
                drain ? "refuses new clients; connected ones go on"
                      : "accepts new clients again");
}

static void
echo_line(const char *line, void *ctx)
{
  answer_printf(ctx, "%s\n", line);
}

static void
cmd_reload(struct answer *a)
{
  struct answer report = { 0 };

  log_info("control: reloading the configuration");
  if (config_reload(echo_line, &report) < 0) {
    answer_printf(a, "ERR reload refused, still serving the previous configuration: %s\n",
                  config_last_error()[0] ? config_last_error() : "see the log");
    free(report.buf);
    return;
  }
  answer_printf(a, "OK\n%s", report.len ? report.buf : "nothing changed\n");
  free(report.buf);
}

static void
run_command(char *line, struct answer *a)
{
  char *arg, *end;
  bool json = false;

  end = line + strlen(line);
  while (end > line && (end[-1] == '\n' || end[-1] == '\r' || end[-1] == ' '))
    *--end = '\0';
  if (end - line > 7 && !strcmp(end - 7, " --json")) {
    json = true;
    end[-7] = '\0';
  }
  arg = strchr(line, ' ');
  if (arg)
    *arg++ = '\0';
  else
    arg = end;
  if (!strcmp(line, "list"))
    cmd_list(a, json);
  else if (!strcmp(line, "exports"))
    cmd_exports(a, json);
  else if (!strcmp(line, "kick"))
    cmd_kick(a, arg);
  else if (!strcmp(line, "reset"))
    cmd_reset(a, arg);
  else if (!strcmp(line, "overlays"))
    cmd_overlays(a, arg);
  else if (!strcmp(line, "move-id"))
    cmd_move_id(a, arg);
  else if (!strcmp(line, "fence"))
    cmd_fence(a, arg);
  else if (!strcmp(line, "drain"))
    cmd_drain(a, arg, true);
  else if (!strcmp(line, "resume"))
    cmd_drain(a, arg, false);
  else if (!strcmp(line, "reload"))
    cmd_reload(a);
  else
    answer_printf(
        a,
        "ERR unknown command '%s' (list, exports, overlays, kick, reset, move-id, fence, drain, resume, reload)\n",
        line);
}

/* Everything of a command, from reading it to the last byte of its
 * answer, within this: a client that dribbles cannot hold the main
 * thread, which also runs the janitor and takes signals. */
#define CTL_DEADLINE_MS 2000

/* control-group's id, or -1. */
static gid_t ctl_gid = (gid_t)-1;

/* Gives the socket to control-group (mode 0660): 0 or -errno (said). */
static int
ctl_give_to_group(const char *path)
{
  struct group *g;

  if (!config.control_group[0])
    return 0;
  g = getgrnam(config.control_group);
  if (!g) {
    fprintf(stderr, "nbdsrv: control-group %s: no such group\n", config.control_group);
    return -ENOENT;
  }
  ctl_gid = g->gr_gid;
  if (chown(path, (uid_t)-1, ctl_gid) < 0 || chmod(path, 0660) < 0) {
    int e = errno;
    fprintf(stderr, "nbdsrv: control socket %s: cannot give it to group %s: %s\n", path,
            config.control_group, strerror(e));
    return -e;
  }
  return 0;
}

/* Whether the peer of fd may use the control socket: root, the server's
 * own user, or a member of control-group (the mode of the socket says
 * as much, but a socket file can be reached through a descriptor passed
 * on, or its mode changed by hand). */
static bool
ctl_peer_allowed(int fd)
{
  struct ucred cr;
  socklen_t len = sizeof cr;
  gid_t groups[256];

  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &len) < 0)
    return false;
  if (cr.uid == 0 || cr.uid == geteuid())
    return true;
  if (ctl_gid == (gid_t)-1)
    return false;
  if (cr.gid == ctl_gid)
    return true;
  len = sizeof groups;
  if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &len) < 0)
    return false;
  for (size_t i = 0; i < len / sizeof groups[0]; i++)
    if (groups[i] == ctl_gid)
      return true;
  return false;
}

int
ctl_listen(const char *path)
{
  struct sockaddr_un sa = { .sun_family = AF_UNIX };
  int fd, e;

  if (strlen(path) >= sizeof sa.sun_path) {
    fprintf(stderr, "nbdsrv: control socket path %s is too long\n", path);
    return -ENAMETOOLONG;
  }
  strcpy(sa.sun_path, path);
  fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0)
    return -errno;
  /* A socket file left by a crash: connectable means another server. */
  if (connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0) {
    fprintf(
        stderr,
        "nbdsrv: control socket %s is in use by another nbdsrv (set control-socket to another path, or none)\n",
        path);
    close(fd);
    return -EADDRINUSE;
  }
  unlink(path);
  /* Root only: the socket can reset a client's disk. */
  mode_t old = umask(0177);
  if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(fd, 16) < 0) {
    e = errno;
    umask(old);
    fprintf(stderr, "nbdsrv: cannot create control socket %s: %s\n", path, strerror(e));
    close(fd);
    return -e;
  }
  umask(old);
  e = ctl_give_to_group(path);
  if (e < 0) {
    close(fd);
    unlink(path);
    return e;
  }
  return fd;
}

/* Milliseconds left until deadline (at least 0). */
static int
ms_left(uint64_t deadline)
{
  uint64_t now = now_ms();

  return now >= deadline ? 0 : (int)(deadline - now);
}

/* One line from fd into line (NUL-terminated), by deadline: its length
 * with the newline cut, or -1. */
static int
ctl_read_line(int fd, char *line, size_t size, uint64_t deadline)
{
  size_t have = 0;
  char *nl;

  line[0] = '\0';
  while (have < size - 1 && !memchr(line, '\n', have)) {
    struct pollfd p = { .fd = fd, .events = POLLIN };
    ssize_t n;
    if (poll(&p, 1, ms_left(deadline)) <= 0)
      break;
    n = read(fd, line + have, size - 1 - have);
    if (n <= 0)
      break;
    have += n;
  }
  line[have] = '\0';
  nl = memchr(line, '\n', have);
  if (!nl)
    return -1;
  *nl = '\0';
  return (int)(nl - line);
}

static void
ctl_write_answer(int fd, const struct answer *a, uint64_t deadline)
{
  for (size_t off = 0; a->buf && off < a->len;) {
    struct pollfd p = { .fd = fd, .events = POLLOUT };
    ssize_t n = write(fd, a->buf + off, a->len - off);
    if (n > 0)
      off += n;
    else if (n < 0 && errno == EINTR)
      continue;
    else if (n < 0 && errno == EAGAIN && poll(&p, 1, ms_left(deadline)) > 0)
      continue;
    else
      break;
  }
}

void
ctl_serve(int lfd)
{
  static struct log_limit denied_log = LOG_LIMIT(LOG_WARNING, "control socket refusals");
  uint64_t deadline = now_ms() + CTL_DEADLINE_MS;
  char line[1024];
  struct answer a = { 0 };
  int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);

  if (fd < 0)
    return;
  /* The line first, refused or not: the client sees the answer rather
   * than a broken pipe. */
  if (ctl_read_line(fd, line, sizeof line, deadline) < 0) {
    answer_printf(&a, "ERR expected one command line within %d ms\n", CTL_DEADLINE_MS);
  } else if (!ctl_peer_allowed(fd)) {
    log_limited(&denied_log,
                "control: refused a client that is neither root nor in control-group");
    answer_printf(&a, "ERR permission denied: only root%s%s may use the control socket\n",
                  ctl_gid != (gid_t)-1 ? " or group " : "",
                  ctl_gid != (gid_t)-1 ? config.control_group : "");
  } else {
    /* The server's own work does not eat the client's time. */
    uint64_t begun = now_ms();
    run_command(line, &a);
    deadline += now_ms() - begun;
  }
  if (a.failed) {
    free(a.buf);
    a = (struct answer){ 0 };
    answer_printf(&a, "ERR out of memory\n");
  }
  ctl_write_answer(fd, &a, deadline);
  free(a.buf);
  close(fd);
}
