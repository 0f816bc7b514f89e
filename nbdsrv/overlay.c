/* SPDX-License-Identifier: GPL-2.0-or-later */
/* nbdsrv: per-client overlays: registry, copy-on-write I/O and flush.
 *
 * The on-disk format is in common/overlay-format.c.  This file decides
 * which overlay a connection gets and keeps the map and the files in step.
 *
 * Registry.  Overlays are keyed by "EXPORT/ID", never by connection: all
 * connections of one client share one struct overlay (so a flush on one
 * covers writes made on another, which is what lets us advertise
 * CAN_MULTI_CONN), and a reconnect finds the overlay it left.  An overlay
 * whose last connection closed stays in the registry, open, for
 * config.idle_close seconds (ephemeral: config.ephemeral_linger) so that
 * quick reconnects cost nothing; the janitor in the main thread then
 * syncs and closes it (or deletes it), keeping blocking I/O out of the
 * event loops.
 *
 * Opening.  Overlays are opened and created by the attach thread
 * (attach.c), never by an event loop, and never under registry_lock: the
 * overlay goes into the registry first, marked opening, so that a second
 * connection of the client waits for it instead of opening it again, and
 * the janitor, a reset and the ephemeral sweep leave it alone.  The
 * janitor marks an overlay it closes the same way (closing), one at a
 * time, until its files are synced and closed: a reconnect in between
 * waits, rather than opening files that are still being written, and it
 * waits in the attach thread's deferred list, not in the attach thread,
 * so that other clients' overlays open meanwhile.
 *
 * Locking.  registry_lock guards the registry, refcounts and the opening
 * and closing marks (registry_cond tells when a mark goes); ov->lock
 * guards the map, the pending journal records and the journal file
 * offset.  Base and data reads are done by io_uring outside any lock.
 *
 * Writes.  A write that covers whole blocks goes to the data file
 * asynchronously; when it completed, its blocks are marked OVL_DATA in the
 * map and a journal record is queued with a sequence number.  Writes that
 * touch part of a block need read-modify-write; they run synchronously
 * under ov->lock so that two partial writes to one block cannot lose
 * each other's bytes.
 *
 * Flush.  The journal of completed writes and the fdatasync chain that
 * makes it durable are journal.c's.
 */
#include <config.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base-pin.h"
#include "io.h"
#include "log.h"
#include "nbdsrv.h"
#include "util.h"
#include "vec.h"

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t registry_cond = PTHREAD_COND_INITIALIZER;

/* The registry: a hash table of chains, so that finding a client's
 * overlay costs the same with 10 clients as with 10000. */
#define REGISTRY_BUCKETS 4096
static struct overlay *registry[REGISTRY_BUCKETS];

/* The chain where key lives (FNV-1a). */
static struct overlay **
registry_chain(const char *key)
{
  uint32_t h = 2166136261u;

  for (; *key; key++)
    h = (h ^ (unsigned char)*key) * 16777619u;
  return &registry[h % REGISTRY_BUCKETS];
}

/* Where the link to key's overlay is (or would go) in its chain. */
static struct overlay **
registry_find(const char *key)
{
  struct overlay **pp = registry_chain(key);

  while (*pp && strcmp((*pp)->key, key) != 0)
    pp = &(*pp)->next;
  return pp;
}

static const char zero_block[OVL_BLOCK_SIZE];

/* Clients refused because their ID is bound to another address. */
static struct log_limit binding_log = LOG_LIMIT(LOG_WARNING, "bound IDs");

static void
overlay_free(struct overlay *ov)
{
  journal_compact_forget(ov);
  ovl_file_close(&ov->file);
  overlay_lock_drop(&ov->file_lock_fd);
  image_put(ov->base);
  pthread_mutex_destroy(&ov->lock);
  free(ov->pending);
  free(ov);
}

/* Logs the temporary files that ovl_file_remove_tmp() removed. */
static void
log_removed_tmp(const char *prefix, unsigned removed)
{
  for (unsigned i = 0; ovl_tmp_suffixes[i]; i++)
    if (removed & (1u << i))
      log_info("overlay %s: removed %s%s, left by a crash during %s", prefix, prefix,
               ovl_tmp_suffixes[i], i == 2 ? "a compaction" : "the overlay's creation");
}

static const char bound_elsewhere[] =
    "this client ID is bound to another address, the one that first used it "
    "(the server's admin moves it with nbdsrv ctl move-id)";

/* Whether a client at peer may not use ov, whose ID is bound elsewhere
 * (only what is known in memory: the attach thread checks the file). */
static bool
bound_to_other(const struct overlay *ov, const struct export *exp, const char *peer)
{
  return ov->owner[0] && strcmp(ov->owner, peer) != 0 &&
         binding_applies(exp, strchr(ov->key, '/') + 1);
}

/* Before ov's files are opened for a client at peer: its ID must be bound
 * to peer, or is bound to it now (the first address that uses it).  A
 * refusal comes before anything else, a new boot's reset included. */
static int
claim_binding(struct overlay *ov, const char *peer, const char **why)
{
  const char *id = strchr(ov->key, '/') + 1;
  char owner[INET6_ADDRSTRLEN];
  int r;

  ov->owner[0] = '\0';
  if (!binding_applies(ov->exp, id))
    return 0;
  r = binding_read(ov->prefix, owner, sizeof owner);
  if (r == 0 && strcmp(owner, peer) != 0) {
    log_limited(&binding_log, "%s: client %s is bound to %s: refused", peer, ov->key,
                owner);
    *why = bound_elsewhere;
    return -EPERM;
  }
  if (r == -EINVAL) {
    log_err("overlay %s: %s" BINDING_SUFFIX " is damaged: nbdsrv ctl move-id "
            "rewrites it",
            ov->prefix, ov->prefix);
    *why = "this client ID's address binding is damaged (see the server log)";
    return -EPERM;
  }
  if (r == -ENOENT) {
    r = binding_write(ov->prefix, peer);
    if (r < 0) {
      log_err("overlay %s: cannot record its address binding: %s", ov->prefix,
              strerror(-r));
      *why = "the client ID's address binding cannot be recorded (see the server log)";
      return r;
    }
    log_info("client %s: bound to address %s, the first that used it", ov->key, peer);
  } else if (r < 0) {
    log_err("overlay %s: cannot read its address binding: %s", ov->prefix, strerror(-r));
    *why = "the client ID's address binding cannot be read (see the server log)";
    return r;
  }
  snprintf(ov->owner, sizeof ov->owner, "%s", peer);
  return 0;
}

/* The export's overlay directory, this server's lock on the overlay and
 * the client's binding to peer, before any file of the overlay is opened
 * or removed: another server may serve it (a new boot's overlay inherits
 * the lock: registry_claim). */
static int
overlay_claim(struct overlay *ov, const char *peer, const char **why)
{
  char dir[PATH_MAX];
  int r;

  r = format_path(dir, sizeof dir, "%s/%s", config.overlay_dir, ov->exp->name);
  if (r == 0)
    r = mkdir_p(dir);
  if (r < 0) {
    *why = "the overlay directory cannot be created (see the server log)";
    log_err("overlay dir %s: %s", dir, strerror(-r));
    return r;
  }
  if (ov->file_lock_fd < 0) {
    r = overlay_lock_take(ov->prefix, &ov->file_lock_fd, why);
    if (r < 0)
      return r;
  }
  /* Under the lock: the server that serves the client binds it. */
  return claim_binding(ov, peer, why);
}

/* An existing overlay, on the base version it was created on: 0 when it
 * is open, 1 when a new boot of a reset-on-boot client needs a fresh one,
 * -ENOENT when there is none, or another -errno. */
static int
overlay_reopen(struct overlay *ov, const char *boot_id, const char **why)
{
  int r = ovl_file_open(ov->prefix, true, &ov->file);

  if (r == -ENOENT)
    return r;
  if (r == -EUCLEAN) {
    /* Refused, never cut back or made again: damaged.c. */
    *why = damaged_note(ov->key, ov->file.damage);
    log_err("%s", *why);
    return r;
  }
  if (r < 0) {
    *why = "the client's overlay cannot be opened (see the server log)";
    log_err("overlay %s: cannot open: %s", ov->prefix, strerror(-r));
    return r;
  }
  damaged_clear(ov->key);
  if (ov->file.torn_bytes)
    log_info(
        "overlay %s: cut a torn tail of %llu bytes off the journal (appends a crash interrupted)",
        ov->prefix, (unsigned long long)ov->file.torn_bytes);
  /* Reconnect or restart: keep the base version the overlay was made
   * on, even when the export's `current` moved since (found by content
   * on a server whose store copy is elsewhere: base-find.c). */
  r = base_find(ov->exp,
                &(struct base_ref){ .who = ov->prefix,
                                    .path = ov->file.info.base_path,
                                    .size = ov->file.info.base_size,
                                    .mtime_ns = ov->file.info.base_mtime_ns,
                                    .sha256 = ov->file.info.base_sha256 },
                &ov->base, why);
  if (r < 0)
    return r;
  if (ov->exp->policy == POLICY_RESET_ON_BOOT &&
      strcmp(ov->file.info.boot_id, boot_id) != 0) {
    log_info("overlay %s: new boot (boot id '%s', was '%s'): resetting", ov->prefix,
             boot_id, ov->file.info.boot_id);
    ovl_file_close(&ov->file);
    image_put(ov->base);
    ov->base = NULL;
    return 1;
  }
  journal_opened(ov);
  return 0;
}

/* A new overlay on the export's current image. */
static int
overlay_create(struct overlay *ov, const char *boot_id, const char **why)
{
  struct ovl_header_info info = { 0 };
  char path[PATH_MAX];
  int r;

  r = image_resolve(ov->exp, path, sizeof path);
  if (r == 0)
    r = image_get(path, &ov->base);
  if (r < 0) {
    *why = "the export's image cannot be opened (see the server log)";
    log_err("export %s: image %s: %s", ov->exp->name, ov->exp->image, strerror(-r));
    return r;
  }
  info.size = ov->base->size;
  info.created = time(NULL);
  info.base_size = ov->base->size;
  info.base_mtime_ns = ov->base->mtime_ns;
  snprintf(info.base_sha256, sizeof info.base_sha256, "%s", ov->base->sha256);
  if (format_path(info.base_path, sizeof info.base_path, "%s", ov->base->path) < 0) {
    *why = "the image path is too long for an overlay header";
    log_err("export %s: image path %s is longer than %d bytes", ov->exp->name,
            ov->base->path, OVL_BASE_PATH_MAX - 1);
    return -ENAMETOOLONG;
  }
  snprintf(info.boot_id, sizeof info.boot_id, "%s", boot_id);
  r = ovl_file_create(ov->prefix, &info, &ov->file);
  if (r < 0) {
    *why = "the client's overlay cannot be created (see the server log)";
    log_err("overlay %s: cannot create: %s", ov->prefix, strerror(-r));
    return r;
  }
  journal_opened(ov);
  log_info("overlay %s: created on %s", ov->prefix, ov->base->path);
  return 0;
}

/* 0 when ov exists on disk or may be created for a client at peer (the
 * limits of minting.c), else -errno with *why. */
static int
new_overlay_allowed(struct overlay *ov, const char *peer, const char **why)
{
  char map[PATH_MAX + 8];
  struct stat st;

  snprintf(map, sizeof map, "%s.map", ov->prefix);
  if (stat(map, &st) == 0)
    return 0;
  return minting_check(ov->exp, peer, why);
}

/* Opens the overlay for key (creating it on the client's first connect)
 * for a client at peer. */
static int
overlay_open(struct overlay *ov, const char *boot_id, const char *peer, const char **why)
{
  int r;

  if (ov->exp->policy == POLICY_SHARED_READONLY) {
    r = claim_binding(ov, peer, why);
    return r < 0 ? r : shared_open(ov, boot_id, why);
  }
  /* A dead server's host may hold the files: not a wait here. */
  r = overlay_lock_probe(ov->prefix, why);
  if (r < 0)
    return r;
  /* A new ID: before any file (lock, binding) is made for it, so that a
   * refused client leaves nothing behind. */
  r = new_overlay_allowed(ov, peer, why);
  if (r < 0)
    return r;
  r = overlay_claim(ov, peer, why);
  if (r < 0)
    return r;
  /* Nothing else works on these files now (ov is marked opening and
   * locked), and whatever a crash left half-written is of no use: the
   * map is the overlay. */
  log_removed_tmp(ov->prefix, ovl_file_remove_tmp(ov->prefix));
  r = overlay_reopen(ov, boot_id, why);
  if (r == 0 || (r < 0 && r != -ENOENT))
    return r;
  return overlay_create(ov, boot_id, why);
}

/* Whether a new boot of a reset-on-boot client finds ov from its last
 * boot (then it needs a fresh overlay), or a new boot of a shared
 * read-only client the base pinned for its last boot (then it gets the
 * current one). */
static bool
is_previous_boot(const struct overlay *ov, const struct export *exp, const char *boot_id)
{
  return (exp->policy == POLICY_RESET_ON_BOOT || exp->policy == POLICY_SHARED_READONLY) &&
         strcmp(ov->file.info.boot_id, boot_id) != 0;
}

int
overlay_lookup(const struct export *exp, const char *id, const char *boot_id,
               const char *peer, struct overlay **out)
{
  char key[sizeof((struct overlay *)0)->key];
  struct overlay *ov;
  int r = -EAGAIN;

  snprintf(key, sizeof key, "%s/%s", exp->name, id);
  pthread_mutex_lock(&registry_lock);
  ov = *registry_find(key);
  /* A client bound elsewhere is refused by the attach thread. */
  if (ov && !ov->opening && !ov->closing && !is_previous_boot(ov, exp, boot_id) &&
      !bound_to_other(ov, exp, peer)) {
    ov->exp = exp; /* see registry_claim */
    ov->refs++;
    *out = ov;
    r = 0;
  }
  pthread_mutex_unlock(&registry_lock);
  return r;
}

/* A new overlay for key, in no registry yet: 0, or -errno with *why. */
static int
overlay_new(const char *key, const struct export *exp, const char *id,
            struct overlay **out, const char **why)
{
  struct overlay *ov = calloc(1, sizeof *ov);

  if (!ov) {
    *why = "out of memory";
    return -ENOMEM;
  }
  pthread_mutex_init(&ov->lock, NULL);
  ov->file.map_fd = ov->file.data_fd = ov->file.dir_fd = -1;
  ov->file_lock_fd = -1;
  ov->exp = exp;
  snprintf(ov->key, sizeof ov->key, "%s", key);
  if (format_path(ov->prefix, sizeof ov->prefix, "%s/%s/%s", config.overlay_dir,
                  exp->name, id) < 0) {
    overlay_free(ov);
    *why = "overlay path too long";
    return -ENAMETOOLONG;
  }
  *out = ov;
  return 0;
}

/* Under registry_lock: the overlay of key for a new connection, with a
 * reference.  1: it is open (*out); 0: *out is new, in the registry marked
 * opening, and the caller opens its files; -errno with *why. */
static int
registry_claim(const char *key, const struct export *exp, const char *id,
               const char *boot_id, const char *peer, struct overlay **out,
               const char **why)
{
  struct overlay *ov, **pp;
  int r, lock_fd = -1;

  for (;;) {
    pp = registry_find(key);
    ov = *pp;
    if (!ov || !ov->opening)
      break;
    pthread_cond_wait(&registry_cond, &registry_lock);
  }
  if (ov && ov->closing) {
    /* Its files are being synced and closed, which may take seconds on a
     * busy disk: the caller comes back once that is done
     * (janitor_hooks.closed) rather than make everyone behind it wait. */
    *why = "the overlay is being closed";
    return -EAGAIN;
  }
  if (ov && bound_to_other(ov, exp, peer)) {
    /* Before a new boot id could reset it. */
    log_limited(&binding_log, "%s: client %s is bound to %s: refused", peer, key,
                ov->owner);
    *why = bound_elsewhere;
    return -EPERM;
  }
  if (ov && is_previous_boot(ov, exp, boot_id)) {
    /* A new boot of a client whose previous boot may still hold
     * connections: those keep the old (now detached) overlay until they
     * go; the new boot gets a fresh one. */
    *pp = ov->next;
    /* No compaction of the old files once the new ones are made. */
    journal_compact_forget(ov);
    ov->detached = true;
    /* The client's lock goes to its new overlay: the old boot's
     * connections write to files that are no longer the overlay's. */
    lock_fd = ov->file_lock_fd;
    ov->file_lock_fd = -1;
    if (ov->refs == 0)
      overlay_free(ov);
    ov = NULL;
  }
  if (ov) {
    /* After a reload, the overlay follows its export's new settings
     * (quota, policy); the old ones stay valid for whoever still reads
     * them (config.c keeps old export sets). */
    ov->exp = exp;
    ov->refs++;
    *out = ov;
    return 1;
  }
  r = overlay_new(key, exp, id, &ov, why);
  if (r < 0) {
    overlay_lock_drop(&lock_fd);
    return r;
  }
  ov->file_lock_fd = lock_fd;
  /* In the registry, marked opening, while the files are opened without
   * the lock: see the top of this file. */
  ov->opening = true;
  ov->refs = 1;
  pp = registry_chain(key);
  ov->next = *pp;
  *pp = ov;
  *out = ov;
  return 0;
}

int
overlay_acquire(const struct export *exp, const char *id, const char *boot_id,
                const char *peer, void (*around_files)(bool before), struct overlay **out,
                const char **why)
{
  char key[sizeof((struct overlay *)0)->key];
  struct overlay *ov;
  int r;

  snprintf(key, sizeof key, "%s/%s", exp->name, id);
  pthread_mutex_lock(&registry_lock);
  r = registry_claim(key, exp, id, boot_id, peer, &ov, why);
  pthread_mutex_unlock(&registry_lock);
  if (r != 0) {
    if (r > 0)
      *out = ov;
    return r < 0 ? r : 0;
  }

  if (around_files)
    around_files(true);
  r = overlay_open(ov, boot_id, peer, why);
  if (around_files)
    around_files(false);

  pthread_mutex_lock(&registry_lock);
  ov->opening = false;
  if (r < 0)
    *registry_find(key) = ov->next;
  pthread_cond_broadcast(&registry_cond);
  pthread_mutex_unlock(&registry_lock);
  if (r < 0) {
    overlay_free(ov);
    return r;
  }
  *out = ov;
  return 0;
}

void
overlay_release(struct overlay *ov)
{
  pthread_mutex_lock(&registry_lock);
  if (--ov->refs == 0) {
    if (ov->detached) {
      pthread_mutex_unlock(&registry_lock);
      overlay_free(ov);
      return;
    }
    ov->idle_since = time(NULL);
  }
  pthread_mutex_unlock(&registry_lock);
}

int
overlay_peek_size(const struct export *exp, const char *id, uint64_t *size)
{
  char prefix[PATH_MAX], path[PATH_MAX];
  struct ovl_header_info info;
  struct base_pin pin;
  struct stat st;
  int r;

  r = format_path(prefix, sizeof prefix, "%s/%s/%s", config.overlay_dir, exp->name, id);
  if (r < 0)
    return r;
  if (ovl_file_read_header(prefix, &info) == 0) {
    *size = info.size;
    return 0;
  }
  if (exp->policy == POLICY_SHARED_READONLY && base_pin_read(prefix, &pin) == 0) {
    *size = pin.base_size;
    return 0;
  }
  r = image_resolve(exp, path, sizeof path);
  if (r < 0)
    return r;
  if (stat(path, &st) < 0)
    return -errno;
  *size = st.st_size;
  return 0;
}

/* Removes the temporary files of the overlay at prefix, unless another
 * server serves it: they may be its compaction's, being written. */
static void
remove_tmp_unless_served(const char *prefix)
{
  const char *why;
  int fd = -1;

  if (overlay_lock_take(prefix, &fd, &why) < 0)
    return;
  log_removed_tmp(prefix, ovl_file_remove_tmp(prefix));
  overlay_lock_drop(&fd);
}

/* The overlays of one export directory: their leftover temporary files. */
static void
remove_tmp_in(const char *dir)
{
  struct dirent *de;
  DIR *d = opendir(dir);

  if (!d)
    return;
  while ((de = readdir(d))) {
    char prefix[PATH_MAX];

    for (unsigned i = 0; ovl_tmp_suffixes[i]; i++) {
      size_t len = strlen(de->d_name), slen = strlen(ovl_tmp_suffixes[i]);

      if (len <= slen || !ends_with(de->d_name, ovl_tmp_suffixes[i]) ||
          format_path(prefix, sizeof prefix, "%s/%.*s", dir, (int)(len - slen),
                      de->d_name) < 0)
        continue;
      remove_tmp_unless_served(prefix);
    }
  }
  closedir(d);
}

void
overlay_remove_leftovers(void)
{
  struct dirent *de;
  DIR *d = opendir(config.overlay_dir);

  if (!d)
    return;
  while ((de = readdir(d))) {
    char dir[PATH_MAX];

    if (de->d_name[0] != '.' &&
        format_path(dir, sizeof dir, "%s/%s", config.overlay_dir, de->d_name) == 0)
      remove_tmp_in(dir);
  }
  closedir(d);
}

/* Removes an orphaned ephemeral overlay, unless another server serves
 * it (its client came back there). */
static void
remove_unless_served(const char *prefix)
{
  const char *why;
  int fd = -1;

  if (overlay_lock_take(prefix, &fd, &why) < 0)
    return;
  if (ovl_file_remove(prefix) == 0)
    log_info(
        "overlay %s: ephemeral, its client did not come back after the restart; dropped",
        prefix);
  overlay_lock_drop(&fd);
}

/* Calls fn for every file in the overlay directories of the exports
 * with policy p, as the start-up sweeps below need them. */
static void
each_file_of_policy(enum policy p,
                    void (*fn)(const struct export *e, const char *dir, const char *name,
                               const struct janitor_hooks *h),
                    const struct janitor_hooks *h)
{
  unsigned n;
  const struct export *all = config_exports(&n);

  for (unsigned i = 0; i < n; i++) {
    const struct export *e = &all[i];
    char dir[PATH_MAX];
    struct dirent *de;
    DIR *d;

    if (e->policy != p ||
        format_path(dir, sizeof dir, "%s/%s", config.overlay_dir, e->name) < 0 ||
        !(d = opendir(dir)))
      continue;
    while ((de = readdir(d)))
      fn(e, dir, de->d_name, h);
    closedir(d);
  }
}

/* An ephemeral overlay whose client has not come back since the server
 * started.  A restart closes every connection, and the janitor only drops
 * overlays it saw closing; these it never saw.  Each goes unless its
 * client is connected again (both under registry_lock). */
static void
sweep_ephemeral_orphan(const struct export *e, const char *dir, const char *name,
                       const struct janitor_hooks *h)
{
  size_t len = strlen(name);
  char key[sizeof((struct overlay *)0)->key], prefix[PATH_MAX];
  char id[CLIENT_ID_MAX + 1];

  if (len < 5 || !ends_with(name, ".map") || !client_id_valid(name, len - 4))
    return;
  /* An old spelling of a MAC left beside its client's overlay (see
   * overlay-names.c) is the administrator's to keep or remove. */
  snprintf(id, sizeof id, "%.*s", (int)(len - 4), name);
  if (client_id_normalize(id))
    return;
  snprintf(key, sizeof key, "%s/%.*s", e->name, (int)(len - 4), name);
  if (format_path(prefix, sizeof prefix, "%s/%.*s", dir, (int)(len - 4), name) < 0)
    return;
  /* Its client may be back but still queued for the attach thread,
   * not yet in the registry. */
  pthread_mutex_lock(&registry_lock);
  if (!*registry_find(key) && !h->waiting(e, key + strlen(e->name) + 1))
    remove_unless_served(prefix);
  pthread_mutex_unlock(&registry_lock);
}

/* Whether the pin of a shared read-only client in dir, file name (ID +
 * BASE_PIN_SUFFIX), is one without boot id: its ID into id. */
static bool
is_unbooted_pin(const char *dir, const char *name, char *id, size_t idlen, char *prefix,
                size_t plen)
{
  size_t len = strlen(name), slen = strlen(BASE_PIN_SUFFIX);
  struct base_pin pin;

  if (len <= slen || !ends_with(name, BASE_PIN_SUFFIX) ||
      !client_id_valid(name, len - slen) ||
      format_path(prefix, plen, "%s/%.*s", dir, (int)(len - slen), name) < 0)
    return false;
  snprintf(id, idlen, "%.*s", (int)(len - slen), name);
  return base_pin_read(prefix, &pin) == 0 && !pin.boot_id[0];
}

/* A base pin without boot id that a previous run left and whose client
 * did not come back within shared-pin-timeout of the start: it goes
 * unless its client is connected again (both under registry_lock). */
static void
sweep_unpinned_orphan(const struct export *e, const char *dir, const char *name,
                      const struct janitor_hooks *h)
{
  char key[sizeof((struct overlay *)0)->key], prefix[PATH_MAX];
  char id[CLIENT_ID_MAX + 1];

  if (!is_unbooted_pin(dir, name, id, sizeof id, prefix, sizeof prefix))
    return;
  snprintf(key, sizeof key, "%s/%s", e->name, id);
  pthread_mutex_lock(&registry_lock);
  if (!*registry_find(key) && !h->waiting(e, id) && base_pin_remove(prefix) == 0)
    log_info("client %s: no connection for %us since the start: base pin dropped", key,
             config.shared_pin_timeout);
  pthread_mutex_unlock(&registry_lock);
}

/* How long ov stays open once idle: a base pin without boot id is the
 * client's until then (shared.c). */
static unsigned
idle_wait(const struct overlay *ov)
{
  if (ov->exp->policy == POLICY_EPHEMERAL)
    return config.ephemeral_linger;
  if (ov->exp->policy == POLICY_SHARED_READONLY && !shared_pinned_for_boot(ov))
    return config.shared_pin_timeout > config.idle_close ? config.shared_pin_timeout
                                                         : config.idle_close;
  return config.idle_close;
}

/* An idle overlay whose time has come (any idle one if force), marked
 * closing, or NULL; the search starts at bucket *from and leaves it where
 * it found one, so that a janitor run looks at each bucket once. */
static struct overlay *
take_due(time_t now, bool force, size_t *from)
{
  struct overlay *due = NULL;

  pthread_mutex_lock(&registry_lock);
  for (; *from < REGISTRY_BUCKETS && !due;) {
    for (struct overlay *ov = registry[*from]; ov; ov = ov->next) {
      unsigned wait = idle_wait(ov);
      if (ov->refs == 0 && !ov->opening && !ov->closing &&
          (force ||
           (now - ov->idle_since >= (time_t)wait && !journal_compaction_pending(ov)))) {
        ov->closing = true;
        due = ov;
        break;
      }
    }
    if (!due)
      (*from)++;
  }
  pthread_mutex_unlock(&registry_lock);
  return due;
}

/* The janitor's tick for overlays open: a journal that grew past its
 * bound while its overlay was being compacted, or was long when it was
 * opened, is compacted now rather than at the client's next flush; an
 * idle overlay's too, and its close waits for that (take_due), so that
 * closed overlays' journals are bounded without the janitor doing the
 * compactions itself. */
static void
compact_due_ones(void)
{
  pthread_mutex_lock(&registry_lock);
  for (size_t b = 0; b < REGISTRY_BUCKETS; b++)
    for (struct overlay *ov = registry[b]; ov; ov = ov->next)
      if (!ov->opening && !ov->closing)
        journal_compact_if_due(ov);
  pthread_mutex_unlock(&registry_lock);
}

void
overlay_janitor(bool force, const struct janitor_hooks *h)
{
  static time_t started;
  static bool swept, unpins_swept;
  time_t now = time(NULL);
  size_t bucket = 0;
  struct overlay *ov;

  if (!started)
    started = now;
  if (!swept && !force && now - started >= (time_t)config.ephemeral_linger) {
    each_file_of_policy(POLICY_EPHEMERAL, sweep_ephemeral_orphan, h);
    swept = true;
  }
  if (!force)
    compact_due_ones();
  if (!unpins_swept && !force && now - started >= (time_t)config.shared_pin_timeout) {
    each_file_of_policy(POLICY_SHARED_READONLY, sweep_unpinned_orphan, h);
    unpins_swept = true;
  }

  /* The overlays whose time has come, one at a time: an overlay is marked
   * closing only while its own files are synced and closed, so a client
   * that comes back waits for that one close at most, and one whose turn
   * has not come finds its overlay open and keeps it. */
  while ((ov = take_due(now, force, &bucket))) {
    /* By the files, not the policy: a reload may have changed the policy
     * of an export whose overlays are open. */
    if (ov->file.map_fd < 0) {
      if (!force && !shared_pinned_for_boot(ov))
        shared_unpin(ov);
    } else if (ov->exp->policy == POLICY_EPHEMERAL && !force) {
      int r = ovl_file_remove(ov->prefix);
      if (r < 0)
        log_err("overlay %s: cannot remove: %s", ov->prefix, strerror(-r));
      else
        log_info("overlay %s: ephemeral, dropped %us after its last connection",
                 ov->prefix, config.ephemeral_linger);
    } else {
      log_debug("overlay %s: idle: syncing and closing", ov->prefix);
      /* Not at shutdown (force): a thousand compactions there would hold
       * the stop up, and the next start compacts them in the
       * background. */
      journal_sync_all(ov, !force);
      log_debug("overlay %s: closed (idle)", ov->prefix);
    }
    pthread_mutex_lock(&registry_lock);
    *registry_find(ov->key) = ov->next; /* keys are unique: ov's link */
    pthread_cond_broadcast(&registry_cond);
    pthread_mutex_unlock(&registry_lock);
    overlay_free(ov);
    h->closed();
  }
}

static bool
has_base_pin(const char *prefix)
{
  struct base_pin pin;
  int r = base_pin_read(prefix, &pin);

  return r == 0 || r == -EINVAL;
}

int
overlay_reset(const char *export, const char *id, const char **why)
{
  char key[sizeof((struct overlay *)0)->key], prefix[PATH_MAX];
  char map[PATH_MAX + 8];
  struct overlay *ov, **pp;
  struct stat st;
  int r, lock_fd = -1;

  if (!config_find_export(export)) {
    *why = "no such export";
    return -ENOENT;
  }
  snprintf(key, sizeof key, "%s/%s", export, id);
  r = format_path(prefix, sizeof prefix, "%s/%s/%s", config.overlay_dir, export, id);
  if (r < 0)
    return r;
  snprintf(map, sizeof map, "%s.map", prefix);
  pthread_mutex_lock(&registry_lock);
  pp = registry_find(key);
  ov = *pp;
  if (ov && ov->refs > 0) {
    *why =
        "the client is connected: kick it first (its agent reconnects, so drain or stop it)";
    r = -EBUSY;
    goto out;
  }
  if (ov && ov->closing) {
    *why = "the overlay is being closed right now: try again in a moment";
    r = -EBUSY;
    goto out;
  }
  if (!ov && stat(map, &st) < 0 && !has_base_pin(prefix)) {
    *why = "the client has no overlay";
    r = -ENOENT;
    goto out;
  }
  /* Still under registry_lock, so that the client cannot reconnect to
   * the old files half-way through, and holding the overlay's lock, so
   * that no other server serves them meanwhile.  An idle but open
   * overlay is closed first (its lock kept). */
  if (ov) {
    lock_fd = ov->file_lock_fd;
    ov->file_lock_fd = -1;
    *pp = ov->next;
    overlay_free(ov);
  } else {
    r = overlay_lock_take(prefix, &lock_fd, why);
    if (r < 0)
      goto out;
  }
  r = ovl_file_remove(prefix);
  if (r == 0 || r == -ENOENT) {
    /* A shared read-only client's next connection gets the current
     * version. */
    int p = base_pin_remove(prefix);
    r = p == -ENOENT ? r : p;
  }
  if (r < 0)
    *why = "cannot remove the overlay's files (see the server log)";
out:
  overlay_lock_drop(&lock_fd);
  pthread_mutex_unlock(&registry_lock);
  return r;
}

int
overlay_move_id(const char *export, const char *id, const char *addr, const char **why)
{
  char key[sizeof((struct overlay *)0)->key], prefix[PATH_MAX];
  const struct export *e = config_find_export(export);
  struct peer_addr a;
  struct overlay *ov;
  int r;

  if (!e) {
    *why = "no such export";
    return -ENOENT;
  }
  if (peer_addr_parse(addr, &a) < 0) {
    *why = "not an IP address";
    return -EINVAL;
  }
  if (!binding_applies(e, id)) {
    *why =
        "this ID is an IP address or pinned: the configuration says where it may be used";
    return -EINVAL;
  }
  snprintf(key, sizeof key, "%s/%s", export, id);
  r = format_path(prefix, sizeof prefix, "%s/%s/%s", config.overlay_dir, export, id);
  if (r == 0)
    r = binding_write(prefix, addr);
  if (r < 0) {
    log_err("overlay %s: cannot write its address binding: %s", prefix, strerror(-r));
    *why = "cannot write the binding (see the server log)";
    return r;
  }
  /* An open overlay follows at once; its connections stay (kick them). */
  pthread_mutex_lock(&registry_lock);
  ov = *registry_find(key);
  if (ov && ov->owner[0])
    snprintf(ov->owner, sizeof ov->owner, "%s", addr);
  pthread_mutex_unlock(&registry_lock);
  return 0;
}

/* ---- I/O ---- */

static uint64_t
block_of(uint64_t off)
{
  return off >> OVL_BLOCK_SHIFT;
}

int
overlay_plan_read(struct overlay *ov, uint64_t off, uint32_t len, struct segment **segsp,
                  unsigned *nsegsp)
{
  unsigned n = 0;
  size_t cap = 0;
  struct segment *segs = NULL;
  uint64_t pos = off, end = off + len;
  int r = 0;

  /* Allocated even for no segment: the caller owns an array either way. */
  if (VEC_RESERVE(segs, cap, 4) < 0)
    return -ENOMEM;
  pthread_mutex_lock(&ov->lock);
  while (pos < end) {
    uint64_t b = block_of(pos), run_end;
    enum ovl_state s;
    uint64_t run = ovl_map_run(&ov->file.map, b, block_of(end - 1) - b + 1, &s);

    run_end = (b + run) << OVL_BLOCK_SHIFT;
    if (run_end > end)
      run_end = end;
    if (VEC_RESERVE(segs, cap, n + 1) < 0) {
      r = -ENOMEM;
      break;
    }
    segs[n++] = (struct segment){
      .fd = s == OVL_BASE   ? ov->base->fd
            : s == OVL_DATA ? ov->file.data_fd
                            : -1,
      .file_off = pos,
      .buf_off = (uint32_t)(pos - off),
      .len = (uint32_t)(run_end - pos),
    };
    pos = run_end;
  }
  if (r == 0) {
    ov->requests++;
    ov->bytes_read += len;
  }
  pthread_mutex_unlock(&ov->lock);
  if (r < 0) {
    free(segs);
    return r;
  }
  *segsp = segs;
  *nsegsp = n;
  return 0;
}

bool
overlay_write_is_aligned(struct overlay *ov, uint64_t off, uint32_t len)
{
  uint64_t end = off + len;

  return (off & (OVL_BLOCK_SIZE - 1)) == 0 &&
         ((end & (OVL_BLOCK_SIZE - 1)) == 0 || end == ov->file.info.size);
}

int
overlay_quota_check(struct overlay *ov, uint64_t off, uint64_t len)
{
  uint64_t quota = ov->exp->quota, b, last, fresh = 0, used;

  if (quota == 0 || len == 0)
    return 0;
  b = block_of(off);
  last = block_of(off + len - 1);
  pthread_mutex_lock(&ov->lock);
  while (b <= last) {
    enum ovl_state s;
    uint64_t run = ovl_map_run(&ov->file.map, b, last - b + 1, &s);
    if (s != OVL_DATA)
      fresh += run;
    b += run;
  }
  used = ov->file.map.ndata;
  pthread_mutex_unlock(&ov->lock);
  return (used + fresh) * OVL_BLOCK_SIZE > quota ? -EDQUOT : 0;
}

void
overlay_write_failed(struct overlay *ov)
{
  /* Part of it may be in the page cache: the next flush syncs the file. */
  pthread_mutex_lock(&ov->lock);
  ov->data_gen++;
  pthread_mutex_unlock(&ov->lock);
}

void
overlay_write_done(struct overlay *ov, uint64_t off, uint32_t len)
{
  uint64_t first = block_of(off), last = block_of(off + len - 1);

  pthread_mutex_lock(&ov->lock);
  ov->data_gen++;
  if (journal_record(ov, first, last - first + 1, OVL_DATA) < 0)
    log_err("overlay %s: out of memory recording a write", ov->prefix);
  ov->requests++;
  ov->bytes_written += len;
  pthread_mutex_unlock(&ov->lock);
}

/* Reads block b's current content into buf (lock held). */
static int
read_block(struct overlay *ov, uint64_t b, char *buf)
{
  enum ovl_state s = ovl_map_get(&ov->file.map, b);
  int fd = s == OVL_BASE ? ov->base->fd : ov->file.data_fd;
  ssize_t n;

  if (s == OVL_ZERO) {
    memset(buf, 0, OVL_BLOCK_SIZE);
    return 0;
  }
  n = full_pread(fd, buf, OVL_BLOCK_SIZE, b << OVL_BLOCK_SHIFT);
  if (n < 0)
    return (int)n;
  /* The base image ends inside its last block: the rest reads 0. */
  memset(buf + n, 0, OVL_BLOCK_SIZE - (size_t)n);
  return 0;
}

/* Writes [off, off+len) of buf (NULL: zeroes) through read-modify-write of
 * the partial blocks at either end; lock held. */
static int
write_locked(struct overlay *ov, const char *buf, uint64_t off, uint64_t len)
{
  char block[OVL_BLOCK_SIZE];
  uint64_t end = off + len;
  int r;

  ov->data_gen++; /* before any byte reaches the file (lock held) */
  while (off < end) {
    uint64_t b = block_of(off), boff = b << OVL_BLOCK_SHIFT;
    uint64_t in = off - boff;
    uint64_t n = OVL_BLOCK_SIZE - in;
    const char *src;

    if (n > end - off)
      n = end - off;
    if (in == 0 && n == OVL_BLOCK_SIZE) {
      /* Whole blocks in the middle: write them as they are. */
      uint64_t whole = (end - off) & ~(uint64_t)(OVL_BLOCK_SIZE - 1);
      if (buf) {
        r = full_pwrite(ov->file.data_fd, buf, whole, off);
      } else {
        for (uint64_t i = 0; i < whole; i += OVL_BLOCK_SIZE) {
          r = full_pwrite(ov->file.data_fd, zero_block, OVL_BLOCK_SIZE, off + i);
          if (r < 0)
            break;
        }
      }
      if (r < 0)
        return r;
      r = journal_record(ov, b, whole >> OVL_BLOCK_SHIFT, OVL_DATA);
      if (r < 0)
        return r;
      off += whole;
      if (buf)
        buf += whole;
      continue;
    }
    r = read_block(ov, b, block);
    if (r < 0)
      return r;
    src = buf ? buf : zero_block;
    memcpy(block + in, src, n);
    r = full_pwrite(ov->file.data_fd, block, OVL_BLOCK_SIZE, boff);
    if (r < 0)
      return r;
    r = journal_record(ov, b, 1, OVL_DATA);
    if (r < 0)
      return r;
    off += n;
    if (buf)
      buf += n;
  }
  return 0;
}

int
overlay_write_sync(struct overlay *ov, const void *buf, uint64_t off, uint32_t len)
{
  int r;

  pthread_mutex_lock(&ov->lock);
  r = write_locked(ov, buf, off, len);
  ov->requests++;
  ov->bytes_written += len;
  pthread_mutex_unlock(&ov->lock);
  return r;
}

int
overlay_zero(struct overlay *ov, uint64_t off, uint64_t len, bool trim)
{
  uint64_t end = off + len;
  uint64_t first = (off + OVL_BLOCK_SIZE - 1) & ~(uint64_t)(OVL_BLOCK_SIZE - 1);
  uint64_t last = end & ~(uint64_t)(OVL_BLOCK_SIZE - 1);
  int r = 0;

  if (end == ov->file.info.size)
    last = (end + OVL_BLOCK_SIZE - 1) & ~(uint64_t)(OVL_BLOCK_SIZE - 1);
  pthread_mutex_lock(&ov->lock);
  ov->requests++;
  if (first >= last) {
    /* Inside one block: zero it by read-modify-write; a trim this small
     * frees nothing and may be ignored. */
    if (!trim)
      r = write_locked(ov, NULL, off, len);
    goto out;
  }
  if (!trim && off < first) {
    r = write_locked(ov, NULL, off, first - off);
    if (r < 0)
      goto out;
  }
  /* Whole blocks: no data, no space. */
  ov->data_gen++;
  if (fallocate(ov->file.data_fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, first,
                last - first) < 0 &&
      errno != EOPNOTSUPP) {
    r = -errno;
    goto out;
  }
  r = journal_record(ov, block_of(first), (last - first) >> OVL_BLOCK_SHIFT, OVL_ZERO);
  if (r < 0)
    goto out;
  if (!trim && last < end)
    r = write_locked(ov, NULL, last, end - last);
out:
  pthread_mutex_unlock(&ov->lock);
  return r;
}

/* Appends one descriptor, merging with the previous one of equal flags. */
static unsigned
add_desc(struct nbd_block_descriptor *d, unsigned n, unsigned max, uint64_t len,
         uint32_t flags)
{
  if (n > 0 && d[n - 1].status_flags == flags &&
      (uint64_t)d[n - 1].length + len <= 0x80000000u) {
    d[n - 1].length += len;
    return n;
  }
  if (n == max)
    return n;
  d[n].length = len;
  d[n].status_flags = flags;
  return n + 1;
}

/* How many steps (runs of the map, lseeks of the base image) one
 * BLOCK_STATUS may take: about a millisecond on a fragmented disk.  A
 * walk cut there answers for less than was asked (the protocol allows
 * it; the client asks again from where the answer ends), so that one
 * client's status of a whole fragmented disk cannot hold the worker
 * that serves the others. */
#define BLOCK_STATUS_MAX_STEPS 512

/* The base image's data and holes in [p, run_end), after the descriptors
 * d[0, *n); returns where it stopped (run_end, or earlier when the
 * descriptors or the steps ran out). */
static uint64_t
base_status(struct overlay *ov, uint64_t p, uint64_t run_end,
            struct nbd_block_descriptor *d, unsigned *n, unsigned max, unsigned *steps)
{
  while (p < run_end && *n <= max && *steps < BLOCK_STATUS_MAX_STEPS) {
    off_t data = lseek(ov->base->fd, p, SEEK_DATA);
    uint64_t to;
    uint32_t flags;
    unsigned m;

    ++*steps;
    if (data < 0 || (uint64_t)data > p) {
      to = data < 0 || (uint64_t)data > run_end ? run_end : (uint64_t)data;
      flags = NBD_STATE_HOLE | NBD_STATE_ZERO;
    } else {
      off_t hole = lseek(ov->base->fd, p, SEEK_HOLE);
      ++*steps;
      to = hole < 0 || (uint64_t)hole > run_end ? run_end : (uint64_t)hole;
      if (to <= p)
        to = run_end;
      flags = 0;
    }
    m = add_desc(d, *n, max, to - p, flags);
    if (m == *n && *n == max)
      break;
    *n = m;
    p = to;
  }
  return p;
}

unsigned
overlay_block_status(struct overlay *ov, uint64_t off, uint64_t len,
                     struct nbd_block_descriptor *d, unsigned max)
{
  uint64_t pos = off, end = off + len;
  unsigned n = 0, steps = 0;

  pthread_mutex_lock(&ov->lock);
  while (pos < end && n <= max && (n == 0 || steps < BLOCK_STATUS_MAX_STEPS)) {
    uint64_t b = block_of(pos), run_end;
    enum ovl_state s;
    uint64_t run = ovl_map_run(&ov->file.map, b, block_of(end - 1) - b + 1, &s);
    unsigned before = n;

    steps++;
    run_end = (b + run) << OVL_BLOCK_SHIFT;
    if (run_end > end)
      run_end = end;
    if (s == OVL_DATA) {
      n = add_desc(d, n, max, run_end - pos, 0);
    } else if (s == OVL_ZERO) {
      n = add_desc(d, n, max, run_end - pos, NBD_STATE_HOLE | NBD_STATE_ZERO);
    } else {
      /* Base: report the base image's own holes. */
      run_end = base_status(ov, pos, run_end, d, &n, max, &steps);
    }
    if (n == before && n == max)
      break;
    pos = run_end;
  }
  pthread_mutex_unlock(&ov->lock);
  return n;
}
