/* SPDX-License-Identifier: GPL-2.0-or-later */
/* nbdsrv: private header shared by the server's files.
 *
 *   main.c       command line, start-up, signals, janitor
 *   listen.c     binding a listening socket, also right after a crash
 *   config.c     configuration (command line and INI file), exports
 *   confmsg.c    configuration errors and warnings: stderr, then the log
 *   keys.c       the table of configuration keys, the syntax of values
 *   check.c      what --check-config looks at beyond the syntax
 *   reload.c     a reload's report of what changed
 *   acl.c        access control: address lists, ID pinning
 *   binding.c    client IDs bound to the address that first used them
 *   minting.c    limits on the overlays a source address or an export has
 *   limits.c     connection limits, total and per address
 *   budget.c     memory budgets, per connection and in all
 *   image.c      base images, opened once and shared
 *   shared.c     shared read-only exports: no overlay, a pinned base
 *   pagecache.c  page cache residency of file ranges (cachestat)
 *   overlay.c    per-client overlays: registry, copy-on-write I/O
 *   journal.c    an overlay's journal: pending records, batches, flush
 *   loop.c       the io_uring event loop of one worker thread: ring,
 *                accept and hand-off, dispatch of completions, tick
 *   ring.c       SQEs of a worker's ring and their user_data
 *   conn.c       a connection's life: set up, stages, close, free
 *   output.c     a connection's output queue: sendmsg and splice
 *   attach.c     opening overlays off the event loops
 *   idle.c       the attach thread's SCHED_IDLE and its watcher
 *   attach-stats.c  the start-up line: how long reattaching took
 *   damaged.c    overlays refused as damaged, for nbdsrv ctl list
 *   trace.c      the request trace (--trace)
 *   ctl.c        the control socket (nbdsrv ctl), server side
 *   ctlclient.c  nbdsrv ctl, the command
 *   input.c      the byte stream cut into options and requests
 *   handshake.c  option haggling (newstyle handshake)
 *   transmit.c   transmission phase: requests and replies
 */
#ifndef NBDSRV_H
#define NBDSRV_H

#include <limits.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>

#include <liburing.h>
#ifdef HAVE_VALGRIND_MEMCHECK_H
#include <valgrind/memcheck.h>
#endif

#include "export-name.h"
#include "nbd-protocol.h"
#include "overlay-format.h"

#define NBDSRV_MAX_PAYLOAD (32u << 20)       /* default max-request */
#define NBDSRV_INLINE_WRITE_MAX (128u << 10) /* larger writes: io_uring */
/* Longer writes are received and written, longer reads read and sent, in
 * pieces of at most this much (aligned to it on the disk), so that what
 * a request holds does not grow with its length. */
#define NBDSRV_CHUNK (1u << 20)
#define NBDSRV_MAX_OPTION (64u << 10)  /* max option data we parse */
#define NBDSRV_MAX_DISCARD (16u << 20) /* larger options: disconnect */
#define NBDSRV_MAX_CONN_REQS 256       /* per-connection requests */
#define NBDSRV_MAX_LISTEN 16
#define NBDSRV_MAX_KEYS 64 /* rows of keys[] (keys.c) */

/* The kernel filled [p, p+n) through io_uring, behind memcheck's back. */
#ifdef HAVE_VALGRIND_MEMCHECK_H
#define KERNEL_WROTE(p, n) VALGRIND_MAKE_MEM_DEFINED((p), (n))
#else
#define KERNEL_WROTE(p, n) ((void)0)
#endif

#define container_of(ptr, type, member) \
  ((type *)((char *)(ptr) - __builtin_offsetof(type, member)))

/* ---- access control (acl.c) ---- */

struct peer_addr {
  uint8_t family; /* AF_INET or AF_INET6 */
  uint8_t addr[16];
};

struct cidr {
  struct peer_addr a;
  unsigned prefix;
};

struct cidr_list {
  struct cidr *v;
  unsigned n;
  size_t cap;
};

/* An overlay ID that may only be used from some addresses. */
struct pin {
  char id[CLIENT_ID_MAX + 1];
  struct cidr_list from;
};

/* ---- configuration (config.c) ---- */

enum policy {
  POLICY_PERSISTENT,
  POLICY_RESET_ON_BOOT,
  POLICY_EPHEMERAL,
  POLICY_SHARED_READONLY, /* no overlay: the base, pinned per boot */
};

struct export
{
  char name[256];
  char image[PATH_MAX]; /* an image file or an image-store directory */
  char description[256];
  enum policy policy;
  bool readonly;
  uint64_t quota; /* bytes of overlay data per client; 0: none */
  struct cidr_list allow, deny;
  struct pin *pins;
  unsigned npins;
  size_t pins_cap;
  bool require_pin; /* explicit IDs must be pinned */
  /* Limits on creating overlays (minting.c); 0: none. */
  unsigned max_overlays, max_overlays_per_addr;
  uint64_t max_overlay_space, max_overlay_space_per_addr;
  bool draining;              /* nbdsrv ctl drain: no new clients */
  bool policy_set, quota_set; /* given in its own section */
  unsigned line, image_line;  /* of its section and image in the config
                                   file; 0: from -e */
};

int peer_addr_parse(const char *s, struct peer_addr *a);
/* Adds "CIDR[, CIDR...]" to l.  Returns 0, -EINVAL or -ENOMEM. */
int cidr_list_add(struct cidr_list *l, const char *s);
bool cidr_list_match(const struct cidr_list *l, const struct peer_addr *a);
/* "ADDR/PREFIX, ..." into buf (cut short if it does not fit). */
void cidr_list_format(const struct cidr_list *l, char *buf, size_t len);
void cidr_list_free(struct cidr_list *l);
/* "ID CIDR[, CIDR...]".  Returns 0, -EINVAL or -ENOMEM. */
int export_add_pin(struct export *e, const char *spec);
void export_free_acl(struct export *e);
/* Logs, rate-limited, that the client at peer was turned away and why;
 * export and id are NULL when it was refused before it named them. */
void acl_log_refusal(const char *peer, const char *export, const char *id,
                     const char *why);
/* The same for an export request that could not be parsed (quoted). */
void acl_log_bad_request(const char *peer, const char *quoted, const char *why);
/* NULL when the client at address peer may use e, else why not. */
const char *acl_check_address(const struct export *e, const char *peer);
/* The same, as overlay id (the client's address when it named none). */
const char *acl_check(const struct export *e, const char *peer, const char *id);

/* ---- identity binding (binding.c) ---- */

#define BINDING_SUFFIX ".owner"
/* Whether client id of e is bound to the address that first used it: an
 * ID that is neither an IP address nor pinned. */
bool binding_applies(const struct export *e, const char *id);
/* PREFIX.owner: 0 with the address in addr, -ENOENT, -EINVAL, -errno. */
int binding_read(const char *prefix, char *addr, size_t len);
/* Replaces PREFIX.owner durably (creates its directory): 0 or -errno. */
int binding_write(const char *prefix, const char *addr);
/* 0, or -errno (-ENOENT when there was none). */
int binding_remove(const char *prefix);

/* ---- overlay minting limits (minting.c) ---- */

/* One overlay on disk, as the census sees it. */
struct census_entry {
  char id[CLIENT_ID_MAX + 1];
  char owner[INET6_ADDRSTRLEN]; /* its address, or "" when unknown */
  uint64_t bytes;               /* on disk, map and data */
  time_t mtime;                 /* last written */
};
typedef int census_fn(const struct census_entry *x, void *arg);
/* Calls fn for each overlay of e on disk (fn returns < 0 to stop: that is
 * returned).  0 or -errno. */
int census_each(const struct export *e, census_fn *fn, void *arg);
/* Whether a client at peer may have a new overlay of e created: 0, or
 * -EUSERS (count) or -EDQUOT (space) with *why naming the limit. */
int minting_check(const struct export *e, const char *peer, const char **why);

/* ---- connection limits (limits.c) ---- */

/* Counts a new connection from addr: NULL, or why it is refused (then
 * nothing was counted). */
const char *limits_enter(const char *addr);
void limits_leave(const char *addr);
/* A connection over a limit that is answered with the reason: whether
 * one more may be (then it is counted until limits_leave_refusing()). */
bool limits_enter_refusing(void);
void limits_leave_refusing(void);
/* Connections counted in the limits now, over all workers. */
unsigned limits_total(void);

struct listen_addr {
  char host[256];
  char port[16];
  unsigned line; /* of the config file; 0: command line */
};
/* "ADDR", "ADDR:PORT", "[V6]", "[V6]:PORT", ":PORT" or "PORT": 0 or
 * -EINVAL. */
int listen_parse(const char *s, struct listen_addr *la);
/* bind() for a listening socket: shares the port with the orphaned
 * listener of a server that just died rather than wait for the kernel to
 * tear it down (listen.c).  0, or -1 with errno (EADDRINUSE when a live
 * process listens there). */
int listen_bind(int fd, const struct sockaddr *sa, socklen_t len);

struct config {
  struct listen_addr listen[NBDSRV_MAX_LISTEN];
  unsigned nlisten;
  struct export *exports;
  unsigned nexports;
  size_t exports_cap;
  char overlay_dir[PATH_MAX];
  enum policy default_policy;
  unsigned threads;            /* 0: one per core */
  unsigned ephemeral_linger;   /* seconds */
  unsigned shared_pin_timeout; /* seconds a base pin without boot id
                                   outlives its client's last connection */
  unsigned idle_close;         /* seconds an unused overlay stays open */
  char pidfile[PATH_MAX];
  bool foreground;
  bool no_splice;              /* copy large reads through memory */
  char trace[PATH_MAX];        /* request trace file, or "" */
  char fence_command[1024];    /* fence.c: sh -c it, or "" for none */
  char control_socket[108];    /* nbdsrv ctl's socket, or "" for none */
  bool control_socket_set;     /* given, not the default */
  char control_group[64];      /* may use it too, beside root; or "" */
  unsigned max_conns;          /* in total; 0: no limit */
  unsigned max_conns_per_addr; /* per client address; 0: no limit */
  unsigned handshake_timeout;  /* seconds; 0: none */
  unsigned attach_timeout;     /* seconds NBD_OPT_GO may wait for its
                                   overlay to open; 0: none */
  uint32_t max_request;        /* largest read or write payload */
  unsigned keepalive;          /* idle seconds before TCP probes; 0: off */
  uint64_t default_quota;      /* for exports that set none */
  uint64_t journal_max;        /* journal growth that starts a compaction */
  uint64_t memory_budget;      /* bytes all connections may make us hold */
  uint64_t conn_budget;        /* the same, per connection */
  uint64_t link_rate;          /* bytes/s of the server's link; 0: no pacing */
  bool check_only;             /* --check-config */
};

extern struct config config;

/* ---- configuration keys (keys.c) ---- */

enum key_scope { KEY_GENERIC, KEY_EXPORT };
enum key_type {
  KT_LISTEN, /* listen_parse(), into config.listen[] */
  KT_PATH,   /* a string of at most size - 1 bytes */
  KT_SOCKET, /* the same, or "none" (stored as "") */
  KT_TEXT,
  KT_POLICY,
  KT_UINT, /* unsigned, min to max */
  KT_SECS,
  KT_SIZE, /* parse_size(), min to max, into 4 or 8 bytes */
  KT_BOOL,
  KT_ADDRLIST, /* added to a struct cidr_list */
  KT_PIN,      /* export_add_pin() */
};

struct key {
  const char *name;     /* in the file */
  enum key_scope scope; /* [generic] (struct config) or an export
                                section (struct export) */
  enum key_type type;
  const char *option;  /* long option, without "--"; NULL: none */
  char short_opt;      /* or 0 */
  uint64_t min, max;   /* KT_UINT, KT_SECS, KT_SIZE */
  const char *def;     /* the default, as written in the file */
  bool repeatable;     /* values add up */
  bool restart;        /* a reload cannot change it */
  size_t offset, size; /* the field it sets */
  size_t set_flag;     /* offset of a bool "given", or 0 */
  const char *help;
};

extern const struct key keys[];
extern const unsigned nkeys;

const struct key *key_find(enum key_scope scope, const char *name);
/* Sets the field of k in base (a struct config or a struct export) from
 * val: 0, -EINVAL (then key_expects() says what was expected) or
 * -ENOMEM.  key_mark_set() records that it was given. */
int key_set(const struct key *k, void *base, const char *val);
void key_mark_set(const struct key *k, void *base);
char *key_expects(const struct key *k, char *buf, size_t len);
/* The value syntax, as the man page writes it: "SIZE", "PATH|none"... */
const char *key_syntax(const struct key *k);
/* The value of k in base, as it would be written in the file. */
void key_format(const struct key *k, const void *base, char *buf, size_t len);
/* The table's defaults of [generic] into cfg (listen excepted: an empty
 * list means the default). */
void keys_defaults(struct config *cfg);
/* Why an unknown key may be unknown: a close key, nbd-server's name for
 * it, or the other section; "" when nothing comes to mind. */
char *key_hint(enum key_scope scope, const char *name, char *buf, size_t len);
/* nbdsrv --list-keys */
void keys_list(FILE *fp);
/* An exact size, "32M", "4096". */
char *size_text(uint64_t v, char out[32]);

/* A line of a reload's report, for nbdsrv ctl reload. */
typedef void reload_echo_fn(const char *line, void *ctx);

/* Parses the command line and the config file into config (errors were
 * printed when it fails). */
int config_parse_args(int argc, char **argv);
/* Configuration errors and warnings: to stderr, or to the log once the
 * server runs (config_start()). */
void config_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void config_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* The config file's absolute path, or "" when there is none. */
const char *config_file_name(void);
void config_set_file_name(const char *path);
/* From now on, configuration errors and warnings go to the log. */
void config_messages_to_log(void);

/* ---- checks beyond the syntax (check.c) ---- */

/* What would otherwise fail per client: every export's image exists and
 * is an image (not a root tree, a compressed file, a text file...).
 * Errors and warnings name the file and line. */
int config_check(const struct config *cfg);
/* --check-config: every listen address can be bound now. */
int config_check_listen(const struct config *cfg);
/* Warns about the exports that serve any client ID that is not pinned. */
void config_warn_unpinned(const struct config *cfg);
/* Publishes the exports for the workers; from now on configuration
 * errors are logged. */
int config_start(void);
/* SIGHUP: reads the configuration again.  New exports appear, removed
 * ones refuse new clients, changed limits apply to new connections;
 * connected clients keep the export settings they started with.  A
 * broken configuration is refused (logged) and the old one stays. */
int config_reload(reload_echo_fn *echo, void *ctx);
/* The last configuration error (for nbdsrv ctl reload). */
const char *config_last_error(void);
/* Reads FILE as the server would and gives its control socket ("" for
 * none): nbdsrv ctl -c FILE.  0 or -errno (the error was printed). */
int config_control_socket(const char *file, char *path, size_t len);
/* Prints the value of every key, as the file would write it
 * (--check-config -v). */
void config_print(FILE *fp, const struct config *cfg);

/* ---- reload.c ---- */

/* Logs, one line each, how next differs from old (keys of [generic],
 * exports added, removed or changed, key by key) and hands each line to
 * echo unless it is NULL.  Returns how many differences there are. */
unsigned reload_report(const struct config *old, const struct config *next,
                       reload_echo_fn *echo, void *ctx);
/* Copies into live the [generic] keys a reload may change. */
void reload_apply(struct config *live, const struct config *next);
void config_free_cli(void);
/* The exports new clients may ask for (the latest reload's), *n of them.
 * One call gives one consistent set, valid for ever (a reload publishes
 * a new one and keeps this). */
const struct export *config_exports(unsigned *n);
/* Reads one config file into config (used by config_parse_args; the fuzz
 * target calls it directly).  Errors go to stderr; returns 0 or -errno. */
int config_file_parse(const char *file);
/* nbdsrv ctl drain/resume.  Returns 0 or -ENOENT. */
int config_set_draining(const char *name, bool draining);
void config_free(void);
const struct export *config_find_export(const char *name);
const char *policy_name(enum policy p);
int policy_parse(const char *s, enum policy *p);
/* Whether clients of e may not write: readonly, or shared read-only. */
bool export_readonly(const struct export *e);

/* ---- base images (image.c) ---- */

struct image {
  struct image *next;
  char path[PATH_MAX]; /* canonical absolute path */
  int fd;
  uint64_t size;
  int64_t mtime_ns;
  unsigned refs;
  /* Who this version is, for clients and nbdsrv ctl: "nbdroot-base NAME
   * VERSION ID" (image.c says how). */
  char identity[256];
  /* Its content id: the sha256 (hex) of its store's .meta, or "" for an
   * image that is not a store version. */
  char sha256[65];
};

/* Canonical path of the image a new client of exp gets now (resolves a
 * store's `current`).  Returns 0 or -errno. */
int image_resolve(const struct export *exp, char *path, size_t len);
int image_get(const char *path, struct image **out);
/* The content id of the store version at path (the sha256 of the .meta
 * beside it, not computed): 0, or -ENOENT with sha "" when it has none. */
int image_content_id(const char *path, char *sha, size_t len);

/* ---- base-find.c ---- */
/* A base version as an overlay or a base pin recorded it. */
struct base_ref {
  const char *who;  /* for the log: "overlay PREFIX", "client KEY" */
  const char *path; /* the path it had where it was recorded */
  uint64_t size;
  int64_t mtime_ns;
  const char *sha256; /* content id, or "": known by path, size, mtime */
};
/* Opens the base ref names, found by content when it has a content id:
 * 0 with *out, -ESTALE when no version here has its content (or, without
 * content id, the file changed), or another -errno; *why for the client. */
int base_find(const struct export *exp, const struct base_ref *ref, struct image **out,
              const char **why);
void image_put(struct image *img);

/* ---- shared read-only exports (shared.c) ---- */

struct overlay;
/* Gives ov (of a shared read-only export) its base: the version pinned
 * for this boot of the client, or the export's current one, then pinned.
 * ov gets no files: an empty map over the base.  0, or -errno with *why. */
int shared_open(struct overlay *ov, const char *boot_id, const char **why);
/* The client of ov had no connection for shared-pin-timeout: its base pin
 * goes (pins of a boot id stay until the next boot). */
void shared_unpin(const struct overlay *ov);
/* Whether ov's pin lasts as long as the client's boot, rather than until
 * it has had no connection for shared-pin-timeout. */
bool shared_pinned_for_boot(const struct overlay *ov);

/* ---- page cache (pagecache.c) ---- */

/* Whether the kernel can tell (cachestat(2), Linux 6.5). */
bool pagecache_supported(void);
/* Whether every page of [off, off+len) of fd is in the page cache. */
bool pagecache_holds(int fd, uint64_t off, uint64_t len);

/* ---- overlays (overlay.c) ---- */

struct pending_record {
  struct ovl_record rec;
  uint64_t seq;
};

struct overlay {
  struct overlay *next;  /* registry list */
  char key[512];         /* "EXPORT/ID" */
  char prefix[PATH_MAX]; /* OVERLAY_DIR/EXPORT/ID */
  const struct export *exp;
  struct image *base;
  struct ovl_file file;
  pthread_mutex_t lock;
  unsigned refs;         /* connections using it */
  time_t idle_since;     /* when refs dropped to 0 */
  bool detached;         /* replaced by a reset: files not ours */
  int file_lock_fd;      /* holds ID.lock: ours alone (overlay-lock.c) */
  bool opening, closing; /* files being opened or closed, outside
                                    registry_lock (overlay.c) */
  /* Journal records (journal.c) of completed writes not yet in the map file; each
   * carries the write's sequence number so that a flush appends exactly
   * the records whose data its fdatasync covered. */
  struct pending_record *pending;
  size_t npending, cap_pending;
  uint64_t seq;            /* completed-write counter */
  uint64_t map_synced_end; /* journal bytes known durable */
  /* Changes to the data file (writes, rewrites, zeroing, punching), and
   * how many of them an fdatasync is known to cover: a flush that finds
   * nothing new in the data file skips its fdatasync (journal.c). */
  uint64_t data_gen, data_synced_gen;
  /* Flushes' fdatasyncs issued, and data-file ones skipped (ctl list). */
  uint64_t flush_fsyncs, data_syncs_skipped;
  unsigned dir_syncs; /* directory fsyncs in flight */
  /* Compaction in the background (journal.c): the map file's generation
   * (a compaction replaces it: a flush's fsync of the old one says
   * nothing about the new one), the journal's length when it was last a
   * snapshot, and whether a compaction is queued or running. */
  unsigned map_gen;
  uint64_t compacted_end;
  bool compacting;
  bool appends_held; /* its last batches are being copied */
  uint64_t requests, bytes_read, bytes_written;
  /* The address its ID is bound to (binding.c), or "" when none is. */
  char owner[INET6_ADDRSTRLEN];
};

/* The overlay of client id on exp, with a reference; opens or creates it
 * (file system calls: only the attach thread calls this).  around_files,
 * unless NULL, is called with true just before those file system calls
 * and with false just after them, outside registry_lock.  -EAGAIN while
 * the janitor closes the overlay (attach_overlay_closed() tells when that
 * is done); else 0, or -errno with *why saying what is wrong. */
int overlay_acquire(const struct export *exp, const char *id, const char *boot_id,
                    const char *peer, void (*around_files)(bool before),
                    struct overlay **out, const char **why);
/* The same when the overlay is open and in use or idle, without waiting
 * and without file I/O (the event loops call it); -EAGAIN otherwise. */
int overlay_lookup(const struct export *exp, const char *id, const char *boot_id,
                   const char *peer, struct overlay **out);
void overlay_release(struct overlay *ov);
/* Size the client would see, without creating anything (NBD_OPT_INFO). */
int overlay_peek_size(const struct export *exp, const char *id, uint64_t *size);
/* What the janitor asks of the one who opens overlays (attach.c), which
 * sits above this file: whether client id of exp waits for its overlay to
 * be opened (called under registry_lock), and that a close is done. */
struct janitor_hooks {
  bool (*waiting)(const struct export *exp, const char *id);
  void (*closed)(void);
};
/* Closes idle overlays whose time has come; all of them if force. */
void overlay_janitor(bool force, const struct janitor_hooks *h);
/* At start-up: renames overlays named by a MAC in another spelling than
 * the canonical one (overlay-names.c). */
void overlay_rename_old_macs(void);
/* At start-up: removes the temporary files a crash left in every export's
 * overlay directory, with a log line each. */
void overlay_remove_leftovers(void);
/* nbdsrv ctl reset: deletes the overlay of a client with no connection.
 * Returns 0, or -errno with *why saying what is wrong. */
int overlay_reset(const char *export, const char *id, const char **why);
/* nbdsrv ctl move-id: binds client id of export to addr ("" unbinds it:
 * the next address that uses it owns it).  0, or -errno with *why. */
int overlay_move_id(const char *export, const char *id, const char *addr,
                    const char **why);

/* fence.c: runs the fence-command for node (nbdsrv ctl fence), its
 * output (cut to outlen) in out: 0, or -errno with *why. */
int fence_node(const char *node, char *out, size_t outlen, const char **why);

/* overlay-lock.c: the lock that makes one server the only one serving an
 * overlay in a shared overlay dir.  Takes it for the overlay at prefix
 * (OVERLAY_DIR/EXPORT/ID): 0 with *fdp, -EBUSY when another server (or
 * another open of this one) holds it, else -errno; *why on error. */
int overlay_lock_take(const char *prefix, int *fdp, const char **why);
/* On a network file system, whether the overlay's files answer within
 * a few seconds (a dead host may hold them): 0, or -ETIMEDOUT with
 * *why.  Call it before any other file system call on them. */
int overlay_lock_probe(const char *prefix, const char **why);
/* Drops it (*fdp -1: nothing to do); sets *fdp to -1. */
void overlay_lock_drop(int *fdp);

/* A piece of a read: where bytes [buf_off, buf_off+len) of the reply come
 * from.  fd < 0 means zeroes. */
struct segment {
  int fd;
  uint64_t file_off;
  uint32_t buf_off;
  uint32_t len;
};
/* Splits the read [off, off+len) into segments; *segs is malloc'ed. */
int overlay_plan_read(struct overlay *ov, uint64_t off, uint32_t len,
                      struct segment **segs, unsigned *nsegs);
/* Aligned whole-block write: true when it can go straight to the data file
 * asynchronously; overlay_write_done() records it once it completed. */
bool overlay_write_is_aligned(struct overlay *ov, uint64_t off, uint32_t len);
void overlay_write_done(struct overlay *ov, uint64_t off, uint32_t len);
/* An asynchronous write failed: what it left in the file is synced by the
 * next flush all the same. */
void overlay_write_failed(struct overlay *ov);
/* -EDQUOT when writing [off, off+len) would take the overlay past its
 * export's quota (blocks already written count once), else 0.  Writes in
 * flight at the same time may overshoot it by their own size.  (The
 * client gets NBD_ENOSPC, as for a full file system; the log tells
 * them apart.) */
int overlay_quota_check(struct overlay *ov, uint64_t off, uint64_t len);
/* Synchronous paths (partial blocks, TRIM, WRITE_ZEROES): return 0/-errno. */
int overlay_write_sync(struct overlay *ov, const void *buf, uint64_t off, uint32_t len);
int overlay_zero(struct overlay *ov, uint64_t off, uint64_t len, bool trim);
/* base:allocation for [off, off+len): fills up to max descriptors, at
 * least one; may cover less than asked when the walk gets long (a
 * bounded number of map runs and lseeks: no request holds the worker). */
unsigned overlay_block_status(struct overlay *ov, uint64_t off, uint64_t len,
                              struct nbd_block_descriptor *d, unsigned max);

/* ---- the journal (journal.c) ---- */

/* Records that blocks [first, first+count) are now in state s (the map
 * changes at once, the record waits for a flush); ov->lock held.  0, or
 * -errno with nothing changed. */
int journal_record(struct overlay *ov, uint64_t first, uint64_t count, enum ovl_state s);
/* Makes everything written so far durable and folds it into the map file
 * (the janitor: no connection uses ov); with bound, a journal past its
 * bound (journal-max) is compacted too. */
int journal_sync_all(struct overlay *ov, bool bound);
/* Whether ov's journal is being compacted in the background, or due for
 * it: its idle close waits for that. */
bool journal_compaction_pending(struct overlay *ov);

/* Compaction of overlays in use, in a thread of its own. */
int journal_compactor_start(void);
void journal_compactor_stop(void);
/* Queues ov's compaction when its journal is long enough (the janitor's
 * tick; a flush checks by itself).  Lock not held. */
void journal_compact_if_due(struct overlay *ov);
/* Takes ov out of the compaction queue, or waits for its compaction to
 * end: before ov is closed, freed or detached. */
void journal_compact_forget(struct overlay *ov);
/* After opening: where the journal stands. */
void journal_opened(struct overlay *ov);

/* One asynchronous flush of an overlay: fdatasync(data) -> journal
 * append -> fdatasync(map) [-> fsync(dir) the first time]. */
struct journal_flush {
  enum { FLUSH_DATA, FLUSH_MAP, FLUSH_DIR } stage;
  uint64_t seq;      /* the last write it covers */
  uint64_t data_gen; /* the data file's changes it covers */
  uint64_t end;      /* journal bytes it made durable */
  unsigned gen;      /* of the map file they are in */
};
/* Starts f: 0 with *fd the descriptor to fdatasync first, or -1 when
 * the flush is complete already (nothing was written since what is
 * durable); or -errno, as journal_flush_next. */
int journal_flush_begin(struct overlay *ov, struct journal_flush *f, int *fd);
/* The fsync of f's current stage completed with res: 0 with *fd the next
 * descriptor to fdatasync, or -1 when the flush is complete; or -errno
 * (logged unless it means no space). */
int journal_flush_next(struct overlay *ov, struct journal_flush *f, int res, int *fd);

/* ---- event loop (loop.c) ---- */

struct worker;
struct conn;

/* An outgoing message: header bytes inline, payload by reference, either
 * in memory (iov) or, for large reads, still in the files it comes from:
 * then once iov[] is sent, the segments are spliced file -> pipe ->
 * socket (zero segments are sent from a static zero buffer), so the data
 * never passes through our memory. */
struct outmsg {
  struct outmsg *next;
  struct iovec iov[2];
  unsigned iov_first, niov;
  struct segment *splice_segs; /* NULL: everything is in iov[] */
  unsigned nsplice, splice_cur;
  bool stream; /* the segments are read into the
                                    connection's chunk buffer and sent
                                    from there, not spliced */
  void (*free)(struct outmsg *);
  size_t held; /* of its connection's budget (budget.c) */
  unsigned char hdr[40];
};

struct request {
  struct outmsg out; /* the reply; freeing it frees the request */
  struct conn *c;
  uint64_t cookie, offset;
  uint32_t count;
  uint16_t type, flags;
  char *buf;          /* write payload or read data */
  uint32_t written;   /* bytes of an io_uring write done */
  uint64_t io_off;    /* the range that write covers: the */
  uint32_t io_len;    /* request, or one chunk of it */
  bool chunked;       /* a write longer than NBDSRV_CHUNK */
  uint32_t chunk_at;  /* its payload bytes before this chunk */
  uint32_t chunk_len; /* in buf now */
  bool chunk_writing; /* set by input.c when the chunk goes to
                                    transmit.c, cleared by transmit.c once
                                    it is written: then input takes the next
                                    (input_after_event), so that transmit.c
                                    never calls back into input.c */
  int chunk_err;      /* errno that the rest of its payload
                                    is skipped for (replied at its end) */
  bool stream;        /* a read sent from the files in chunks */
  uint32_t desc_len;  /* BLOCK_STATUS: descriptor bytes in buf */
  int pending;        /* io_uring operations in flight */
  int error;          /* first NBD error, 0 if none */
  enum { STAGE_IO, STAGE_FLUSH } stage;
  struct journal_flush flush;
  struct segment *segs;
  unsigned nsegs;
};

/* Where a connection is in its life: what it expects from its client,
 * and whether it is alive.  The one truth about both (conn.c): input.c
 * cuts the stream by it, conn_settle() ends the connection by it. */
enum conn_stage {
  CONN_FLAGS,        /* greeted: the client's flags come next */
  CONN_OPTIONS,      /* options come (handshake.c) */
  CONN_ATTACHING,    /* NBD_OPT_GO waits for the overlay: what comes
                         meanwhile is kept for later (input.c) */
  CONN_TRANSMISSION, /* requests come (transmit.c) */
  CONN_ABORTING,     /* NBD_OPT_ABORT: its reply goes out, then the end */
  CONN_DRAINING,     /* NBD_CMD_DISC, or the server stops: no more
                         input; the requests in flight are answered, then
                         the end */
  CONN_CLOSED,       /* stopped: freed once nothing of it is in flight */
};

/* The unit of input being assembled (input.c's alone). */
enum in_unit {
  UNIT_NONE,       /* none yet: the stage says which comes */
  UNIT_FLAGS,      /* 4 bytes */
  UNIT_OPT_HEADER, /* 16 bytes */
  UNIT_OPT_DATA,
  UNIT_OPT_SKIP,    /* oversized option data: skipped, then TOO_BIG */
  UNIT_REQ_HEADER,  /* 28 bytes */
  UNIT_REQ_PAYLOAD, /* a write's data */
};

/* A whole option, as handshake.c sees it. */
struct client_option {
  uint32_t code, len;
  const char *data; /* len bytes and a NUL */
};

/* input.c's state of a connection. */
struct conn_input {
  enum in_unit unit;
  char *dst; /* where its bytes go; NULL: skipped */
  uint32_t need, have;
  unsigned char hdr[32]; /* the flags, an option or request header */
  uint32_t opt;          /* the option whose data comes */
  char *opt_data;
  struct request *cur; /* the write whose payload comes */
  bool chunk_busy;     /* a chunk of it is being written: no
                                    input until it is (transmit.c) */
  /* bytes that came while the connection waited for its overlay */
  char *stash;
  size_t stash_off, stash_len, stash_cap; /* fed up to stash_off */
};

struct conn {
  struct worker *w;
  unsigned slot;
  uint32_t gen;
  int fd;
  char peer[INET6_ADDRSTRLEN];
  enum conn_stage stage; /* conn_enter() moves it */
  struct conn_input in;
  uint32_t opt; /* the option being answered */
  /* operations of the ring in flight (the connection stays until none) */
  bool recv_armed, recv_cancelling;
  /* handshake results */
  bool no_zeroes, structured, meta_alloc;
  const struct export *exp;
  struct overlay *ovl;
  uint64_t size;
  uint16_t eflags;
  uint32_t max_request;      /* announced in NBD_INFO_BLOCK_SIZE */
  bool want_block_size;      /* the client asked for the block sizes,
                                    so it is held to max_request; other
                                    clients may ask up to the export size */
  bool want_name, want_desc; /* NBD_OPT_GO asked for these infos */
  uint32_t turned_away;      /* hash of the export request last
                                    refused and logged (handshake.c) */
  /* While the attach thread opens the overlay: its job (which keeps the
   * connection from being freed). */
  struct attach_job *attach_job;
  /* output queue; one send (a sendmsg, or a pair of splices) in flight at
   * a time keeps the stream whole */
  struct outmsg *out_head, **out_tail;
  bool send_inflight;
  struct iovec send_iov[64];
  struct msghdr send_msg;
  /* splice of a large read reply: a pipe, created on first use */
  int pipe_fd[2];
  uint32_t pipe_size, pipe_fill; /* capacity; bytes in the pipe */
  /* a streamed read reply: one chunk read from the files, sent from here */
  char *chunk_buf;
  uint32_t chunk_fill, chunk_sent;
  unsigned inflight_reqs;
  size_t held; /* bytes of its budget (budget.c) */
  time_t connected;
  time_t attach_since; /* when it began waiting for its overlay */
  bool counted;        /* in the connection limits */
  const char *refusal; /* over a limit: its options are refused
                                    with this reason (limits.c) */
  bool kick;           /* nbdsrv ctl kick: close it (set under
                                    the worker's conns_lock) */
  uint64_t requests, bytes_read, bytes_written; /* since connect */
  uint64_t pace_rate;                           /* SO_MAX_PACING_RATE set; 0: none */
};

/* Moves c to stage s; a closed connection stays closed. */
static inline void
conn_enter(struct conn *c, enum conn_stage s)
{
  if (c->stage != CONN_CLOSED)
    c->stage = s;
}

/* Whether a unit of input is under way (its bytes must come, whatever
 * the budget says: what it holds was counted when it began). */
static inline bool
input_mid_unit(const struct conn *c)
{
  return c->in.unit != UNIT_NONE;
}

/* Whether c takes input (or keeps it, while attaching). */
static inline bool
conn_reads(const struct conn *c)
{
  return c->stage <= CONN_TRANSMISSION;
}

struct worker {
  unsigned id;
  pthread_t thread;
  struct io_uring ring;
  int wake_fd; /* eventfd: shutdown */
  uint64_t wake_buf;
  struct io_uring_buf_ring *br;
  char *bufs;
  unsigned nbufs, buf_size;
  struct conn **conns;
  unsigned nslots, nconns;
  /* Held by the worker while it adds or frees a connection, and by the
   * control socket while it reads them (ctl.c). */
  pthread_mutex_t conns_lock;
  bool kick_pending;   /* some conn->kick is set (conns_lock) */
  bool stop_requested; /* with a wake: begin stopping */
  /* Sockets other workers accepted for this one (with a wake). */
  pthread_mutex_t mbox_lock;
  int *mbox;
  unsigned mbox_n;
  size_t mbox_cap;
  /* Overlays the attach thread opened for this worker's connections
   * (a lock-free stack: the attach thread pushes, the worker takes it
   * whole, after a wake), and how many it still works on. */
  struct attach_job *attached;
  unsigned attaching;
  uint32_t next_gen;
  unsigned ops_inflight; /* SQEs whose CQE we still expect */
  bool accept_armed, stopping;
  bool fixed_files;
  bool can_splice;                      /* cachestat works, splice is allowed */
  uint64_t reads_spliced, reads_copied; /* large reads, by path */
  unsigned max_slot;                    /* highest slot ever used */
  struct __kernel_timespec tick_ts;
  bool tick_armed;
  size_t trace_len; /* bytes in trace_buf (trace.c) */
  char trace_buf[64 << 10];
};

/* user_data of the ring's operations: connection operations carry kind |
 * slot << 4 | generation << 32, so a completion for a slot that was since
 * reused is recognised and ignored; file I/O carries the request pointer
 * (16-byte aligned) | kind | segment << 48. */
enum ud_kind {
  UD_IO = 1, /* request file I/O: pointer-based */
  UD_ACCEPT = 2,
  UD_RECV = 3,
  UD_SEND = 4,
  UD_WAKE = 5,
  UD_CANCEL = 6,
  UD_POLL_OUT = 7,    /* socket writable again (spliced replies) */
  UD_TICK = 8,        /* once a second */
  UD_STREAM_READ = 9, /* a chunk of a streamed read reply was read */
};

static inline uint64_t
ud_conn(enum ud_kind k, const struct conn *c)
{
  return k | (uint64_t)c->slot << 4 | (uint64_t)c->gen << 32;
}

/* The user_data of file I/O of request r, segment seg. */
uint64_t loop_req_data(struct request *r, unsigned seg);
/* An SQE of w's ring, counted in w->ops_inflight (its completion is
 * expected); never NULL. */
struct io_uring_sqe *loop_get_sqe(struct worker *w);

/* The provided-buffer group of recv buffers (one per worker ring). */
#define BUF_GROUP 0

/* Read replies at least this long are spliced from the files. */
#define NBDSRV_SPLICE_MIN (64u << 10)

int workers_start(const int *listen_fds, unsigned nlisten, unsigned nthreads);
/* Calls fn(c, arg) for each attached connection of every worker, under
 * that worker's conns_lock (fn may read c and its overlay, and set
 * c->kick).  fn returns < 0 to stop (that is returned), 0 to go on, > 0
 * when it set c->kick: the worker then closes c. */
int workers_each_conn(int (*fn)(struct conn *c, void *arg), void *arg);
void workers_stop(void);
void workers_join(void);

/* ---- attach.c ---- */

/* The thread that opens overlays for the event loops. */
int attach_thread_start(void);
void attach_thread_stop(void);
/* NBD_OPT_GO or NBD_OPT_EXPORT_NAME: attaches c to its overlay.  0: it
 * was open, c->ovl is set; 1: the attach thread opens it, and
 * attach_collect() tells when; -errno with *why.  c reads no input until
 * it is attached. */
int attach_begin(struct conn *c, const struct export *exp,
                 const struct export_request *req, const char **why);
/* Whether client id of exp waits for the attach thread (its overlay may
 * not be in the registry yet).  Called under registry_lock. */
bool attach_waiting(const struct export *exp, const char *id);
/* The janitor closed an overlay: clients that found it closing try again. */
void attach_overlay_closed(void);
/* c is closing: its job, if any, need not open anything. */
void attach_cancel(struct conn *c);
/* A job of attach_begin() is done: c->ovl is set when r is 0, else why
 * says what failed.  job is the one c->attach_job named; it keeps c from
 * being freed until this returns. */
typedef void attach_done_fn(struct conn *c, const struct attach_job *job, const char *id,
                            int r, const char *why);
/* On a wake: calls done for each of w's finished jobs. */
void attach_collect(struct worker *w, attach_done_fn *done);

/* ---- damaged.c: overlays refused as damaged ---- */

/* Notes that overlay key (EXPORT/ID) is damaged (what: ovl_file's
 * damage); returns the reason its client is given, valid until
 * damaged_free(). */
const char *damaged_note(const char *key, const char *what);
/* The overlay opened: no longer listed. */
void damaged_clear(const char *key);
/* Calls fn for each overlay refused as damaged, under a lock. */
void damaged_each(void (*fn)(const char *key, const char *why, void *arg), void *arg);
/* At exit. */
void damaged_free(void);

/* ---- attach-stats.c: how long the start's reattaching took ---- */

/* The attach thread attached ov (its lock held) in us microseconds. */
void attach_stats_note(const struct overlay *ov, uint64_t us);
/* With the attach queue empty: 0, or the CLOCK_MONOTONIC time (ms) at
 * which to call again; logs the start-up line once the wave of
 * attaches is over. */
uint64_t attach_stats_due(void);

/* ---- idle.c: the attach thread's scheduling ---- */

/* Finds out whether the attach thread may go to SCHED_IDLE (it must be
 * able to come back) and starts the watcher that brings it back. */
void idle_start(void);
void idle_stop(void);
/* Called by the attach thread itself, once. */
void idle_thread_is_me(void);
/* The attach thread takes up a job (cancelled: nothing to open): whether
 * its file system calls run at SCHED_IDLE (then idle_around_files is
 * overlay_acquire()'s around_files).  The watcher looks at it until
 * idle_job_end(). */
bool idle_job_begin(bool cancelled);
void idle_job_end(void);
void idle_around_files(bool before);
/* The queue is empty since *empty_since (0: since now, set): 0 when the
 * jobs may run at SCHED_IDLE again, else the CLOCK_MONOTONIC time (ms)
 * until which it has to stay empty first. */
uint64_t idle_calm_until(uint64_t *empty_since);
/* Condition variables on CLOCK_MONOTONIC, and a wait on one until ms. */
void idle_init_cond(pthread_cond_t *cond);
void idle_wait_until(pthread_cond_t *cond, pthread_mutex_t *lock, uint64_t ms);

/* ---- trace.c ---- */
int trace_open(const char *path);
void trace_close(void);
bool trace_enabled(void);
/* Records a request of c (buffered per worker). */
void trace_request(struct conn *c, uint16_t type, uint16_t flags, uint64_t offset,
                   uint32_t count);
/* Writes out w's buffered lines. */
void trace_flush(struct worker *w);

/* ---- ctl.c ---- */
/* Creates the control socket (0600); returns its fd or -errno. */
int ctl_listen(const char *path);
/* Serves one control connection waiting on the listening fd. */
void ctl_serve(int lfd);
/* ---- ctlclient.c ---- */
/* nbdsrv ctl ARGS: returns the exit status. */
int ctl_main(int argc, char **argv);

/* ---- budget.c ---- */
/* n more (fewer) bytes held for c. */
void budget_take(struct conn *c, size_t n);
void budget_give(struct conn *c, size_t n);
/* The same, recorded in m, which gives it back when it goes. */
void budget_msg_take(struct conn *c, struct outmsg *m, size_t n);
void budget_msg_give(struct conn *c, struct outmsg *m);
/* Bytes held for all connections. */
size_t budget_server_held(void);
/* Whether c may take no new unit of input now (its own budget, the
 * server's, or its count of requests in flight). */
bool budget_full(const struct conn *c);

/* ---- conn.c ---- */
/* A new connection of worker w on socket fd (-1: none), at CONN_FLAGS;
 * NULL when out of memory. */
struct conn *conn_alloc(struct worker *w, int fd);
/* A new connection on worker w: its socket is fd.  NULL when it is
 * refused (logged; fd is closed). */
struct conn *conn_new(struct worker *w, int fd);
/* Stops c: no more input, the recv cancelled, the socket shut down, an
 * attach job cancelled.  It is freed by conn_settle() once nothing of it
 * is in flight.  why (NULL: nothing to log) is logged, rate-limited. */
void conn_close(struct conn *c, const char *why);
/* After anything happened to c (a completion, a wake, a kick, a tick):
 * ends a drained connection and frees a closed one with nothing in
 * flight.  c may be gone after. */
void conn_settle(struct conn *c);
/* Arms c's recv again unless it is paused (over budget, input kept,
 * attaching). */
void conn_recv_more(struct conn *c);
/* After a recv completion: armed again, or cancelled while c has too
 * much in flight (a reply arms it again). */
void conn_recv_next(struct conn *c);
void conn_cancel_recv(struct conn *c);

/* ---- input.c ---- */
/* Feeds len received bytes to the protocol state machine. */
void conn_input(struct conn *c, const char *p, size_t len);
/* Feeds what was kept (while c waited for its overlay, or was over its
 * budget) as far as c takes it now. */
void conn_input_resume(struct conn *c);
/* Whether received bytes wait to be fed. */
bool input_kept(const struct conn *c);
/* Whether a write's payload is arriving. */
bool input_in_payload(const struct conn *c);
/* Bytes c takes before the unit it assembles is complete (0: it takes
 * none now). */
size_t input_need(struct conn *c);
/* After any event of c (loop.c): when the chunk of a long write that
 * input waited on is written (or skipped), its next chunk may come. */
void input_after_event(struct conn *c);

/* ---- output.c ---- */
/* Sends m after what is queued; on a closed connection drops it. */
void conn_queue(struct conn *c, struct outmsg *m);

/* ---- pacing (pacing.c) ---- */

/* Before a send on c: its share of link-rate as its pacing cap. */
void pacing_update(struct conn *c);
/* Creates the connection's splice pipe if it has none; 0 or -errno. */
int conn_pipe(struct conn *c);
/* Completions of a sendmsg and of a wait for POLLOUT. */
void conn_send_done(struct conn *c, int res);
void conn_poll_out_done(struct conn *c, int res);
void conn_stream_read_done(struct conn *c, int res);

/* ---- handshake.c ---- */
void handshake_start(struct conn *c);
/* The client's flags. */
void handshake_flags(struct conn *c, uint32_t flags);
/* A whole option. */
void handshake_option(struct conn *c, const struct client_option *o);
/* An option too large to read was skipped. */
void handshake_too_big(struct conn *c, uint32_t code);
/* The end of attaching client id (attach_begin, attach_collect): c->ovl
 * is set when r is 0, else why says what failed. */
void handshake_attached(struct conn *c, const char *id, int r, const char *why);
/* c waited attach-timeout for its overlay: it is told so, and goes. */
void handshake_attach_timeout(struct conn *c);

/* ---- transmit.c ---- */
/* A whole request (its header decoded, a write's payload in r->buf). */
void transmit_request(struct request *r);
/* A chunk of a long write came (r->chunk_len bytes in r->buf, after
 * r->chunk_at); last: the request is all there, and transmit.c's. */
void transmit_write_chunk(struct request *r, bool last);
/* Called when an io_uring op of r completed with res. */
void transmit_io_done(struct request *r, unsigned seg, int res);
void request_reply(struct request *r);

#endif
