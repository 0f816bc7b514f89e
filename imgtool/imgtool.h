/* SPDX-License-Identifier: GPL-2.0-or-later */
/* imgtool: private header shared by the imgtool sources.
 *
 * imgtool builds root filesystem images (build.c over scan.c), keeps them
 * in a versioned store (store.c, info.c, gc.c, commit.c, rollback.c),
 * reads layered clients' state disks offline (state.c over view.c and
 * imgread.c) to report what they hide of a new base (upgrade.c),
 * packs the initramfs the clients boot from (initrd.c over modules.c and
 * cpio.c), and writes the boot loader and DHCP configurations that boot
 * them (pxe.c).
 * Every function returns 0 or -errno unless said otherwise; the command
 * functions (cmd_*) return the process exit status and print their own
 * one-line error.
 */
#ifndef NBDROOT_IMGTOOL_H
#define NBDROOT_IMGTOOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>

#include <nettle/sha2.h>

#include "clock.h"          /* common/: now_ms */
#include "io.h"             /* common/: full_read, full_pwrite, ... */
#include "log.h"            /* common/: log_err, log_warn */
#include "overlay-format.h" /* common/: struct ovl_file */
#include "util.h"           /* common/: format_path, parse_size, ends_with */
#include "vec.h"            /* common/: VEC_RESERVE */

/* ---- util.c ---- */

/* Messages: log_err ("imgtool: error: ..." on stderr, one line) and
 * log_warn, from common/log.h. */
/* Says "out of memory", removes the temporary files and exits 1. */
void out_of_memory(void) __attribute__((noreturn));
void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
char *xstrdup(const char *s);
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* VEC_RESERVE, out_of_memory() when there is none. */
#define XVEC_RESERVE(ptr, cap, need)     \
  do {                                   \
    if (VEC_RESERVE(ptr, cap, need) < 0) \
      out_of_memory();                   \
  } while (0)

/* A growable list of malloc'ed strings, owned by the list. */
struct strv {
  char **v;
  size_t n, cap;
};
/* Appends s (malloc'ed: the list takes it). */
void strv_push(struct strv *l, char *s);
/* Sorts the strings bytewise. */
void strv_sort(struct strv *l);
/* Frees the strings (NULL ones are skipped) and the list. */
void strv_free(struct strv *l);

/* SOURCE_DATE_EPOCH: true and *out set when the variable is set and valid;
 * -EINVAL (after an error message) when it is set but malformed. */
int source_date_epoch(int64_t *out);

/* Temporary files that must disappear if imgtool fails or is killed.  The
 * registry is async-signal-safe: SIGINT/SIGTERM/SIGHUP unlink them. */
void tmpfile_register(const char *path);
/* A directory this run created: removed on failure if empty by then. */
void tmpdir_register(const char *path);
void tmpfile_forget(const char *path);
void tmpfile_cleanup(void);
void tmpfile_install_signals(void);

/* Creates a new file "DIR/.BASE.XXXXXX" next to final_path, registered for
 * cleanup.  Returns the fd (and the malloc'ed name) or -errno. */
int tmpfile_create_near(const char *final_path, mode_t mode, char **tmp_name);

/* An output file written in place of its final name: anonymous
 * (O_TMPFILE) where the filesystem allows, so that not even SIGKILL leaves
 * a partial file behind, else a registered temporary next to final_path. */
struct outfile {
  int fd;
  char *path; /* opens it: "/proc/self/fd/N", or the temporary's name */
  char *tmp;  /* the named temporary, NULL when anonymous */
};
int outfile_create(const char *final_path, mode_t mode, struct outfile *o);
/* Gives the file the new name; never replaces one (-EEXIST). */
int outfile_link(struct outfile *o, const char *name);
/* Puts the file at final_path, atomically replacing what is there. */
int outfile_install(struct outfile *o, const char *final_path);
/* Closes it; a file never linked or installed disappears. */
void outfile_close(struct outfile *o);
/* Holds SIGINT/SIGTERM/SIGHUP back (true) or lets them in (false), around
 * steps a cleanup handler must not interrupt. */
void signals_hold(bool hold);

bool is_zero(const void *buf, size_t len);
/* Copies [off, off+len) of in to the same offset of out, with
 * copy_file_range where the kernel can, else through buf (COPY_CHUNK
 * bytes).  When target_hole is set the target range reads as zeroes
 * already, so zero chunks are not written (they stay holes).  -EIO when
 * in is shorter. */
#define COPY_CHUNK (1u << 20)
int copy_range(int in, int out, uint64_t off, uint64_t len, bool target_hole, char *buf);
/* The ext2/3/4 superblock of fd (1024 bytes at offset 1024): 0, -EINVAL
 * when there is none (a short file, no magic number), or -errno. */
int ext_superblock_read(int fd, uint8_t sb[1024]);
/* Whether the ext2/3/4 filesystem in fd (if it is one) was cleanly
 * unmounted: the valid flag set, no error flag, no journal to recover. */
bool ext_fs_is_clean(int fd);

/* An anonymous temporary file (O_TMPFILE in $TMPDIR or /var/tmp): gone
 * when closed, whatever happens.  fd or -errno. */
int anon_tmpfile(void);

/* Runs argv, stdout to out_fd (or inherited when -1).  Returns the exit
 * status, or -errno if it could not be started. */
int run_cmd(char *const argv[], int out_fd);
/* An overlay named as "P", "P.map" or "P.data" -> "P" (malloc'ed). */
char *overlay_prefix(const char *arg);

/* ---- sha256.c (SHA-256 itself: nettle's sha256_init/update/digest) ---- */
void sha256_hex(const uint8_t d[SHA256_DIGEST_SIZE], char out[65]);
/* Adds v to s as 8 little-endian bytes (tree and option digests). */
void sha256_u64(struct sha256_ctx *s, uint64_t v);
/* sha256 of a whole file, as hex. */
int sha256_file(const char *path, char out[65], uint64_t *size);

/* ---- scan.c: the source tree in memory ---- */
struct xattr {
  char *name;
  void *value;
  size_t len;
};

struct node {
  char *name; /* entry name ("" for the root) */
  char *path; /* path on the host, for open/readlink */
  struct stat st;
  char *link;           /* symlink target */
  struct xattr *xattrs; /* sorted by name */
  size_t nxattrs;
  struct node **kids; /* sorted by name (bytewise) */
  size_t nkids, kids_cap;
  struct node *hl_first; /* hard links: the node seen first, or NULL */
  uint32_t hl_count;     /* on hl_first: links inside the tree */
  uint32_t ino;          /* inode number in the image, once allocated */
  /* Read from an image (imgread.c), not from the host: path is the
   * entry's path in that image, and its data is read from src. */
  struct image_reader *src;
  uint64_t src_ino; /* its inode there (ext4: number; squashfs: ref) */
};

struct tree {
  struct node *root;
  uint64_t nnodes;      /* entries incl. the root */
  uint64_t ninodes;     /* distinct inodes */
  uint64_t data_blocks; /* estimated 4 KiB blocks of file data */
  uint64_t meta_blocks; /* directories, long symlinks, xattr blocks */
  uint64_t file_bytes;  /* bytes of regular-file data to copy */
  uint8_t digest[32];   /* sha256 of all metadata, in sorted order */
};

/* ---- exclude.c: build --exclude patterns ---- */
struct exclude_list {
  char **pat; /* anchored ones start with '/'; no trailing '/' */
  size_t n, cap;
};
/* Adds a pattern; -EINVAL (after a message) for one that can match no
 * entry. */
int exclude_add(struct exclude_list *x, const char *pattern);
void exclude_free(struct exclude_list *x);
/* The first pattern that excludes the entry at rel (its path from the
 * tree's root: "/etc/fstab"), or -1.  x may be NULL. */
int exclude_match(const struct exclude_list *x, const char *rel);
/* Whether the entry at rel or a directory above it is excluded. */
bool exclude_covers(const struct exclude_list *x, const char *rel);

/* Reads the tree at path (lstat, readdir, readlink, xattrs), sorted,
 * without the entries x excludes (warning about patterns that match
 * nothing).  Prints its own error (which file, why) and returns -errno on
 * failure. */
int tree_scan(const char *path, int64_t clamp, bool clamp_set,
              const struct exclude_list *x, struct tree *t);
void tree_free(struct tree *t);
/* Sizes (nnodes ... file_bytes) and hashes (digest) the tree in memory,
 * in canonical order; a node's path without its first rootlen bytes is
 * its path in the tree. */
void tree_account(struct tree *t, int64_t clamp, bool clamp_set, size_t rootlen);
/* Frees n and everything below it. */
void node_free(struct node *n);

/* ---- imgread.c: the files of an ext4 or squashfs image, as a tree ---- */
/* Opens the image at path read-only and reads its whole tree into t,
 * sorted like tree_scan's (hard links, xattrs, symlinks and device
 * numbers included; the counts and digest are not computed).  Prints its
 * own error.  The nodes refer to *rd, which must outlive them. */
int image_tree_read(const char *path, struct tree *t, struct image_reader **rd);
/* The same from the open image fd (closed with the reader, or at once on
 * failure), called name in messages. */
int image_tree_read_fd(int fd, const char *name, struct tree *t,
                       struct image_reader **rd);
void image_reader_close(struct image_reader *rd);
/* Up to len bytes of n's data at off: the bytes read (0 at the end), or
 * -errno.  n is a node of an image's tree. */
ssize_t image_node_pread(const struct node *n, void *buf, size_t len, uint64_t off);
/* A file descriptor to read n's data from, at offset 0: the host file,
 * or an anonymous copy of a node read from an image.  -errno (after a
 * message). */
int node_open_data(const struct node *n);
/* The entry at rel ("/etc/fstab"; "" or "/" is the root), or NULL. */
struct node *tree_lookup(const struct tree *t, const char *rel);
/* dir's entry called name, or NULL (also when dir is NULL). */
struct node *node_child(const struct node *dir, const char *name);
/* dir's entry called by the len bytes at name (not NUL-terminated), or
 * NULL; kids are sorted bytewise. */
struct node *node_child_n(const struct node *dir, const char *name, size_t len);

/* What an image reader does for one format (imgread-ext4.c,
 * imgread-squashfs.c). */
struct image_reader_ops {
  int (*read_tree)(struct image_reader *rd, struct tree *t);
  ssize_t (*pread)(struct image_reader *rd, const struct node *n, void *buf, size_t len,
                   uint64_t off);
  void (*close)(struct image_reader *rd);
};
struct image_reader {
  const struct image_reader_ops *ops;
  char *path;
  int fd;
  void *priv; /* the format's own state */
};
extern const struct image_reader_ops image_reader_ext4, image_reader_squashfs;
/* A node of an image's tree, for the readers: named, in dir's kids. */
struct node *image_node_add(struct image_reader *rd, struct node *dir, const char *name,
                            size_t namelen);
/* Sorts a directory's entries, as tree_scan does (before they are read:
 * the first name of a hard link in that order owns it). */
void image_dir_sort(struct node *dir);

/* ---- view.c: the disk a client sees, its base and its overlay ---- */
struct client_view {
  char *prefix; /* OVERLAY_DIR/NAME/ID */
  struct ovl_file ov;
  int base_fd;
  struct stat bst;           /* of the base */
  const char *store_namedir; /* set before view_open: where to find the base
                                by its content id when its recorded path
                                is not it (a second server's store) */
  uint64_t written, zeroed;  /* by view_write: bytes the client wrote, trimmed */
};
void view_init(struct client_view *v);
/* Opens the overlay at prefix read-only and its base, which must be the
 * file the overlay was made on, unchanged.  Prints its own error. */
int view_open(const char *prefix, struct client_view *v);
/* The client's disk into the empty file out (sparse where it can be). */
int view_write(struct client_view *v, int out);
void view_close(struct client_view *v);

/* ---- state.c: a layered client's state disk, read offline ---- */
struct client_state {
  char *id; /* the client's identity */
  struct client_view view;
  struct tree t; /* the state disk's files */
  struct image_reader *rd;
  struct node *upper; /* its upper layer, or NULL */
  bool clean;         /* cleanly unmounted */
  bool has_base_id;
  char base_desc[256];   /* the base's description in base-id */
  char base_name[128];   /* from it: the image name, */
  unsigned base_version; /* version (0: none) */
  char base_sha[65];     /* and checksum */
};
void state_init(struct client_state *s);
/* Reads the state disk of client id, whose overlay is at prefix.  Prints
 * its own error. */
int state_open(const char *prefix, const char *id, struct client_state *s);
void state_close(struct client_state *s);
/* The version of image name (store directory namedir) the client last
 * booted, which the store must still hold: 0, or -errno after a
 * message. */
int state_booted_version(const struct client_state *s, const char *namedir,
                         const char *name, unsigned *id);
/* overlayfs's markers in an upper layer: a whiteout (character device
 * 0/0) hides the lower entry; an opaque directory (trusted.overlay.opaque
 * "y") hides the lower directory's entries. */
bool whiteout(const struct node *n);
bool opaque_dir(const struct node *n);

/* ---- fold.c ---- */
/* Folds the upper layer upper (a directory of another image's tree, left
 * empty) onto base, as overlayfs shows them; base stays canonical. */
void fold_upper(struct tree *base, struct node *upper);

/* ---- fstab.c ---- */
/* NULL when the tree's /etc/fstab mounts the root (or cannot be judged:
 * a symbolic link), else why not, as a phrase ("there is no /etc/fstab"). */
const char *tree_fstab_problem(const struct tree *t);

/* ---- build.c ---- */
enum image_format { IMAGE_EXT4, IMAGE_SQUASHFS };

struct build_opts {
  const char *tree;
  const char *output; /* for messages: the image or the store */
  enum image_format format;
  const char *compression; /* squashfs: "zstd", "gzip" or "xz" */
  const char *order;       /* squashfs: --order FILE, or NULL */
  uint32_t block_size;     /* squashfs: data block size, 0 = 128 KiB */
  uint64_t size;           /* 0 = automatic */
  uint64_t headroom_abs;   /* bytes of free space to add (automatic size) */
  unsigned headroom_pct;   /* percent of used space to add */
  uint64_t inodes;         /* 0 = automatic */
  bool uuid_set;
  uint8_t uuid[16];
  bool hash_seed_set;
  uint8_t hash_seed[16];
  const char *label;
  bool quiet;
  bool progress; /* force progress output */
  struct exclude_list exclude;
};

/* The build's clock: timestamps at or after clamp become clamp (when
 * clamp_set: SOURCE_DATE_EPOCH), and now stands for the image's
 * creation time. */
struct build_clock {
  int64_t clamp;
  bool clamp_set;
  int64_t now;
};

/* Builds the image into the already created, empty file fd, which path
 * opens (libext2fs opens images by name).  *fstab_problem: see
 * tree_fstab_problem, for a warning once the image is in place. */
int build_image(const struct build_opts *o, int fd, const char *path,
                const char **fstab_problem);
/* The ext4 filesystem of the scanned tree t, into fd (path opens it). */
int build_ext4(const struct build_opts *o, struct tree *t, const struct build_clock *clk,
               int fd, const char *path);
int cmd_build(int argc, char **argv);

/* ---- template.c ---- */
int cmd_state_template(int argc, char **argv);

/* ---- squashfs.c ---- */
/* The squashfs image of the scanned tree t, into the empty file fd. */
int build_squashfs(const struct build_opts *o, struct tree *t,
                   const struct build_clock *clk, int fd);

/* ---- sqorder.c: build --order, the files written first ---- */
struct build_order {
  struct node **nodes; /* regular files (hard links: hl_first), in order */
  size_t count, cap;
  struct node **dirs; /* the directories on their paths (repeated) */
  size_t ndirs, dirs_cap;
  uint64_t skipped;      /* lines naming no regular file of the tree */
  char *skipped_example; /* the first of them */
};
/* Reads the order file against the scanned tree t (see sqorder.c); warns
 * about skipped paths.  0, or -errno after saying why. */
int build_order_read(const char *file, const struct tree *t, struct build_order *bo);
void build_order_free(struct build_order *bo);

/* ---- sqfile.c ---- */
struct sqfs_file_t;
/* libsquashfs's file interface over fd (which stays the caller's), size:
 * the bytes already in it.  Freed with sqfs_destroy. */
struct sqfs_file_t *sqfile_new(int fd, uint64_t size);
/* The errno of its last failed read or write (0 if none). */
int sqfile_errno(const struct sqfs_file_t *f);

/* ---- imagefs.c: which filesystem an image holds ---- */
struct image_fs {
  enum image_format format;
  char uuid[40];        /* ext4: the filesystem UUID; squashfs: "" */
  char compression[16]; /* squashfs: its compressor; ext4: "none" */
  /* squashfs only: */
  uint32_t block_size;
  uint64_t inodes;
  uint64_t bytes_used; /* the filesystem, without the end's padding */
  int64_t created;
};
/* Reads the superblock of the image in fd: 0, or -EINVAL when there is
 * no sane ext2/3/4 or squashfs superblock, or -errno; on failure why
 * says what is wrong, as a phrase. */
int image_fs_read(int fd, struct image_fs *fs, char *why, size_t len);
/* "ext4", "squashfs" */
const char *image_format_name(enum image_format f);

/* ---- progress.c: the progress line of a build ---- */
struct build_progress {
  bool on, tty, forced;
  uint64_t t0, last; /* now_ms() */
  uint64_t done_inodes, total_inodes;
  uint64_t done_bytes, total_bytes; /* regular files' data */
};
void build_progress_init(struct build_progress *p, const struct build_opts *o,
                         const struct tree *t);
/* Prints the line when it is time (always when final, if it is on). */
void build_progress_show(struct build_progress *p, bool final);

/* ---- store.c ---- */
struct version_meta {
  unsigned id;
  char name[256];
  char uuid[40];
  char sha256[65];
  char format[16];      /* "ext4" (also for versions from before it was
                            recorded) or "squashfs" */
  char compression[16]; /* squashfs: its compressor; ext4: "none" */
  uint64_t size;
  int64_t created;
  char source[1024];
  unsigned parent; /* commit: version it was made from, or 0 */
};

/* Lock on DIR/NAME (creating it when create is set).  Returns fd or -errno. */
int store_lock(const char *namedir, bool create);
void store_unlock(int fd);
/* With the lock held: removes DIR/NAME if it holds nothing but its lock
 * file, so that a failed first build leaves nothing behind. */
void store_abandon(const char *namedir);
/* Sorted list of published version ids (those with both .img and .meta). */
int store_list(const char *namedir, unsigned **ids, size_t *n);
/* The version `current` points to, or 0 when there is none. */
int store_current(const char *namedir, unsigned *id);
int store_read_meta(const char *namedir, unsigned id, struct version_meta *m);
/* Publishes image (complete, created inside namedir) as the next version
 * and switches current to it.  The lock must be held.  Prints the path.
 * On failure nothing new stays visible (image is left to the caller). */
int store_publish(const char *namedir, struct outfile *image, const char *source,
                  unsigned parent, unsigned *id_out);
/* Points current at version id, atomically (a new link renamed over it),
 * and syncs the directory.  The lock must be held. */
int store_set_current(const char *namedir, unsigned id);
/* Whether version id is intact: its metadata reads, the image's size and
 * SHA-256 are the published ones, the image is read-only, its superblock
 * is sane and of the published format.  Returns 0
 * (msg: "sha256=...") or -errno (msg: what is wrong). */
int store_check_version(const char *namedir, unsigned id, char *msg, size_t len);
/* "DIR/NAME" of an existing image name (malloc'ed), or NULL after saying
 * that it is missing. */
char *store_name_dir(const char *store, const char *name);
/* Whether name can name an image in a store: a plain file name, not
 * hidden (no '/', no leading '.'). */
bool store_name_valid(const char *name);
/* A version as given on the command line: "2", "0002" or "0002.img". */
int store_parse_version(const char *s, unsigned *id);
/* "0002, 0003", or for long lists "0002, 0003, ..., 0107 (12 versions)"
 * (malloc'ed). */
char *store_format_ids(const unsigned *ids, size_t n);
char *store_version_path(const char *namedir, unsigned id, const char *ext);
/* True when s is a store directory ("DIR/NAME": has a current link or
 * NNNN.img files). */
bool store_is_namedir(const char *path);
/* The image directories ("DIR/NAME") of a store, sorted, into names.
 * Returns 0 or -errno. */
int store_names(const char *store, struct strv *names);

/* ---- info.c, gc.c, commit.c, rollback.c, initrd.c, pxe.c ---- */
int cmd_info(int argc, char **argv);
int cmd_verify(int argc, char **argv);
int cmd_gc(int argc, char **argv);
int cmd_commit(int argc, char **argv);
/* Whether version parent (an overlay's base, for messages prefix) is
 * current in namedir (versions ids[n]).  When it is not, says what
 * committing it would undo and refuses (-1), or with force returns 0 with
 * *undone (malloc'ed) saying that. */
int check_base_is_current(const char *namedir, const char *prefix, unsigned parent,
                          const unsigned *ids, size_t n, bool force, char **undone);
/* commit-layered.c: the upper layer of the client whose state disk's
 * overlay is prefix, folded onto the base it booted, as a new version of
 * store/name.  0 or -errno after a message. */
int commit_layered(const char *store, const char *name, const char *prefix,
                   const char *client, bool force);
int cmd_rollback(int argc, char **argv);
int cmd_sync(int argc, char **argv);
int cmd_check_overlay(int argc, char **argv);
int cmd_initrd(int argc, char **argv);
int cmd_pxe(int argc, char **argv);
int cmd_upgrade_report(int argc, char **argv);

/* ---- cpio.c: newc writer (gzip via zlib) and lister ---- */
struct cpio_writer;
int cpio_open(int fd, struct cpio_writer **w);
/* Adds one entry; data may be NULL for directories and devices. */
int cpio_add(struct cpio_writer *w, const char *name, uint32_t mode, uint32_t uid,
             uint32_t gid, uint32_t mtime, uint32_t rmajor, uint32_t rminor,
             const void *data, size_t len);
int cpio_close(struct cpio_writer *w); /* writes the trailer, flushes */
void cpio_abort(struct cpio_writer *w);
/* Prints the entries of a gzip'd newc archive; returns 0 or -errno. */
int cpio_list(const char *path, FILE *out);

/* ---- modules.c ---- */
struct module_set {
  char **paths; /* relative to the modules dir, as in modules.dep */
  size_t n, cap;
};
/* Resolves the names (modules or aliases) and everything they need,
 * in load order.  Names in optional[] are skipped when absent. */
int modules_resolve(const char *moddir, char **names, size_t nnames, char **optional,
                    size_t noptional, struct module_set *out);
void module_set_free(struct module_set *s);

#endif
