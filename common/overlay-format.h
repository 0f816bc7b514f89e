/* SPDX-License-Identifier: GPL-2.0-or-later */
/* nbdroot: the per-client copy-on-write overlay, on disk and in memory.
 *
 * The format itself is described at the top of overlay-format.c.  This
 * header is shared by nbdsrv (which serves overlays) and imgtool (which
 * commits them into new image versions and keeps their base versions alive
 * during garbage collection).
 */
#ifndef NBDROOT_OVERLAY_FORMAT_H
#define NBDROOT_OVERLAY_FORMAT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define OVL_BLOCK_SHIFT 12
#define OVL_BLOCK_SIZE (1u << OVL_BLOCK_SHIFT) /* 4 KiB granularity */

/* What a block of the client's disk reads as. */
enum ovl_state {
  OVL_BASE = 0, /* not written: read the base image */
  OVL_DATA = 1, /* written: read the overlay's data file */
  OVL_ZERO = 2, /* trimmed or zeroed: reads as zeroes, no space used */
};

/* Sparse two-bit-per-block map, a two-level table (overlay-format.c):
 * lookups take two indexings, and memory is proportional to the number
 * of regions the client ever wrote, not to the size of the disk. */
struct ovl_map {
  uint64_t nblocks;
  size_t ngroups;
  uint8_t ***groups; /* NULL group or chunk: all its blocks are OVL_BASE */
  uint64_t ndata;    /* blocks in OVL_DATA state */
  uint64_t nzero;    /* blocks in OVL_ZERO state */
};

int ovl_map_init(struct ovl_map *m, uint64_t nblocks);
void ovl_map_free(struct ovl_map *m);
enum ovl_state ovl_map_get(const struct ovl_map *m, uint64_t block);
/* Sets blocks [first, first+count) to state.  Returns 0 or -ENOMEM. */
int ovl_map_set(struct ovl_map *m, uint64_t first, uint64_t count, enum ovl_state state);
/* Length (in blocks, at most max) of the run of equal state at block. */
uint64_t ovl_map_run(const struct ovl_map *m, uint64_t block, uint64_t max,
                     enum ovl_state *state);
/* *dst becomes a copy of src (0 or -ENOMEM; dst is then empty). */
int ovl_map_copy(struct ovl_map *dst, const struct ovl_map *src);
/* Bytes of heap the map uses (for accounting and tests). */
size_t ovl_map_memory(const struct ovl_map *m);

/* Where an overlay came from.  Stored in the header of the map file. */
#define OVL_BASE_PATH_MAX 512
#define OVL_BOOT_ID_MAX 64
#define OVL_SHA256_HEX 64
struct ovl_header_info {
  uint64_t size;                     /* virtual disk size in bytes */
  uint64_t created;                  /* seconds since the epoch */
  uint64_t base_size;                /* size of the base image file */
  int64_t base_mtime_ns;             /* its mtime when pinned */
  char base_path[OVL_BASE_PATH_MAX]; /* absolute path of the pinned base */
  char boot_id[OVL_BOOT_ID_MAX + 1]; /* boot that created it, or "" */
  /* The base's content id: the sha256 (hex) its image store published it
   * with, or "" (a plain image file, or an overlay older than the field):
   * then the base is the file at base_path, with that size and mtime. */
  char base_sha256[OVL_SHA256_HEX + 1];
};

/* An overlay's two files: PREFIX.map (header + journal) and PREFIX.data
 * (sparse, block N of the disk at byte N*4096). */
struct ovl_file {
  int map_fd;
  int data_fd;
  struct ovl_header_info info;
  struct ovl_map map;
  uint64_t log_end;      /* next append offset in the map file */
  uint64_t log_records;  /* records in the journal (for compaction) */
  uint64_t log_reserved; /* the map file has space up to here */
  bool durable;          /* its files' names are on stable storage */
  int dir_fd;            /* their directory, until durable */
  uint64_t torn_bytes;   /* a torn tail cut off (or, read-only, ignored) */
  char damage[256];      /* what is wrong, after -EUCLEAN (or salvage) */
};

/* Creates a new, empty overlay (files written to temporaries and renamed
 * into place).  Any existing overlay at prefix is replaced.  Nothing is
 * synced: the overlay becomes durable (f->durable) once the caller has
 * fdatasync'ed both files and called ovl_file_make_durable(), or synced
 * f->dir_fd itself and called ovl_file_durable(). */
int ovl_file_create(const char *prefix, const struct ovl_header_info *info,
                    struct ovl_file *out);
/* Opens an existing overlay and replays its journal; a torn tail left by
 * a crash is cut off (out->torn_bytes says how much).  writable=false
 * opens both files read-only and never modifies them.  Returns 0,
 * -ENOENT (no overlay, or one whose creation a crash interrupted),
 * -EUCLEAN for a damaged overlay (out->damage says what is wrong; its
 * files are left as they are), or another -errno. */
int ovl_file_open(const char *prefix, bool writable, struct ovl_file *out);
/* Opens an overlay read-only for salvage: like ovl_file_open, but a
 * damaged journal is replayed up to the damage and a data file shorter
 * than the map needs is accepted; out->damage says what is wrong ("" if
 * nothing is).  0 or -errno (-EUCLEAN: nothing to salvage). */
int ovl_file_open_salvage(const char *prefix, struct ovl_file *out);
/* The end of the last block in state OVL_DATA (0: none). */
uint64_t ovl_map_data_end(const struct ovl_map *m);
/* fsyncs the overlay's directory (the names of its files), once. */
int ovl_file_make_durable(struct ovl_file *f);
/* Records that the directory was synced; closes f->dir_fd. */
void ovl_file_durable(struct ovl_file *f);
/* Reads only the header (cheap: for gc and listings). */
int ovl_file_read_header(const char *prefix, struct ovl_header_info *info);
void ovl_file_close(struct ovl_file *f);

/* One journal record: blocks [first, first+count) now have state. */
struct ovl_record {
  uint64_t first;
  uint32_t count;
  uint32_t state;
};

/* Appends one batch of records at f->log_end (not synced; the caller
 * orders it after the data it describes and fsyncs).  Returns 0/-errno. */
int ovl_file_append(struct ovl_file *f, const struct ovl_record *recs, size_t n);
/* Rewrites the journal as one snapshot of f->map (temporary file, fsync,
 * rename).  Call only when the data file is synced. */
int ovl_file_compact(struct ovl_file *f, const char *prefix);
/* Compaction in steps, for an overlay in use (see "Compaction" at the top
 * of overlay-format.c): a snapshot of the map as of journal offset from,
 * then the journal's batches after from copied behind it, then, with
 * appends held off, the last ones copied and the snapshot put in place. */
struct ovl_compaction {
  int fd;                /* PREFIX.compact.tmp */
  uint64_t end;          /* its length */
  uint64_t synced;       /* bytes of it known durable */
  uint64_t copied;       /* the old journal is in it up to here */
  uint64_t records;      /* records of the snapshot */
  uint64_t records_from; /* the old journal's records at from */
};
/* Writes the snapshot (map: the overlay's map when its journal ended at
 * from, with f's data file synced since) to PREFIX.compact.tmp. */
int ovl_compact_begin(const struct ovl_file *f, const char *prefix,
                      const struct ovl_map *map, uint64_t from, struct ovl_compaction *c);
/* Copies the old journal's batches in [c->copied, upto) behind it;
 * with sync, then fdatasyncs it.  Appends to f may go on meanwhile. */
int ovl_compact_catch_up(const struct ovl_file *f, struct ovl_compaction *c,
                         uint64_t upto, bool sync);
/* With appends held off: copies the rest, syncs, renames it over
 * PREFIX.map and makes it f's map file (same descriptor number).  The
 * rename is durable only once the directory is synced: f->durable is
 * false until then (and f->dir_fd open for it). */
int ovl_compact_commit(struct ovl_file *f, const char *prefix, struct ovl_compaction *c);
/* Gives up: closes and removes the temporary file. */
void ovl_compact_abort(const char *prefix, struct ovl_compaction *c);

/* Temporary files a crash can leave beside an overlay: the map and data
 * file of an interrupted creation, the snapshot of an interrupted
 * compaction.  Neither is ever needed again: the overlay is its PREFIX.map
 * (old journal or new snapshot, whichever the crash left).  NULL-ended. */
extern const char *const ovl_tmp_suffixes[];
/* Removes prefix's temporary files; bit i of the result says that
 * ovl_tmp_suffixes[i] was there and is gone. */
unsigned ovl_file_remove_tmp(const char *prefix);
/* Removes both files of an overlay.  Returns 0 or -errno (-ENOENT ok). */
int ovl_file_remove(const char *prefix);

#endif
