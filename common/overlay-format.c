/* SPDX-License-Identifier: GPL-2.0-or-later */
/* nbdroot: the per-client copy-on-write overlay format.
 *
 * Design notes
 * ------------
 * An overlay is two files side by side, PREFIX.data and PREFIX.map.
 *
 * PREFIX.data is a sparse file as large as the disk (rounded up to 4 KiB).
 * Block N of the client's disk, when the client wrote it, lives at byte
 * N*4096.  Direct mapping needs no allocation table, keeps the client's
 * locality, and lets the filesystem free space when a block is punched.
 *
 * PREFIX.map says, for every block, where it reads from: the base image
 * (OVL_BASE, never written), the data file (OVL_DATA) or nowhere (OVL_ZERO,
 * trimmed or zeroed: reads as zeroes and uses no space).  A hole in the data
 * file does not mean "read the base", so the map is explicit and does not
 * depend on how a filesystem reports allocation.  It is laid out as:
 *
 *   offset 0     header, OVL_HEADER_SIZE bytes, little-endian:
 *                  0  magic "NBDROVL1"       8  u32 version (1)
 *                 12  u32 block size (4096)  16  u64 disk size in bytes
 *                 24  u64 created (epoch s)  32  u64 base image size
 *                 40  i64 base mtime (ns)    48  boot id, 65 bytes, NUL-padded
 *                128  base image path, 512 bytes, NUL-padded (absolute)
 *                640  base content id, 64 bytes: the sha256 of the base
 *                     in lower-case hex, or all zeroes (none)
 *                704  zeroes
 *               1020  u32 crc32 of bytes 0..1019
 *
 * The content id came later, in bytes that were zero before: an overlay
 * without one reads as having none (its base is then known by path, size
 * and mtime only), and a server that predates the field serves a new
 * overlay as before.  So the version stays 1.
 *   offset 1024  journal: a sequence of batches, each
 *                  u32 magic "OVLB", u32 record count n, u32 crc32 of the
 *                  records, u32 zero, then n records of 16 bytes:
 *                  u64 first block, u32 block count, u32 new state.
 *
 * Replaying the journal in order over an all-BASE map gives the current
 * map.  A batch is valid only whole (its crc covers every record), so a
 * batch torn by a crash is detected and cut off with everything after it.
 *
 * Durability contract (enforced by the server, which owns ordering):
 * records describing written data are appended only after that data was
 * made durable with fdatasync, then the journal itself is fdatasync'ed
 * before FLUSH or a FUA write is acknowledged.  So after any crash, every
 * acknowledged-as-durable write is in the map and in the data file, and a
 * block the map points at always holds data the client did write.
 *
 * Compaction rewrites the journal as one snapshot of the map into a
 * temporary file, fsyncs and renames it over PREFIX.map: atomic, so a
 * crash leaves either the old journal or the new snapshot.  An overlay in
 * use is compacted without holding its client up (ovl_compact_*): the
 * snapshot is of the map as it was when the journal ended at offset F,
 * with the data file synced after that (so every block it points at holds
 * durable data); the batches appended after F, while the snapshot was
 * written, are copied behind it as they are; only the last of them are
 * copied with appends held off, then the file is synced and renamed.  The
 * new file replays to what the old one does, except that writes that
 * completed before F and were not flushed yet are in it already: allowed,
 * since their data is durable (see nbdsrv(8), CRASH SEMANTICS).  Appends
 * go to the new file from then on, and the flush that acknowledges them
 * syncs the directory too, so that the rename is durable before any of
 * them is promised.
 *
 * The map in memory is two bits per block in chunks of 4096 blocks (16 MiB
 * of disk, 1 KiB of memory), allocated on first write; the chunk pointer
 * table itself is allocated on first write too, so a client that never
 * wrote costs a few dozen bytes.
 */
#include <config.h>

#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "io.h"
#include "overlay-format.h"

#define OVL_MAGIC "NBDROVL1"
#define OVL_VERSION 1
#define OVL_HEADER_SIZE 1024
#define OVL_BATCH_MAGIC 0x424c564fu /* "OVLB" little-endian */
#define OVL_BATCH_MAX 65536         /* records per batch */
#define OVL_LOG_RESERVE (64u << 10) /* journal space kept ahead (a power of 2) */
#define CHUNK_SHIFT 12              /* 4096 blocks (16 MiB) per chunk */
#define CHUNK_BLOCKS (1u << CHUNK_SHIFT)
#define CHUNK_BYTES (CHUNK_BLOCKS / 4)
#define GROUP_SHIFT 9 /* 512 chunks (8 GiB) per group */
#define GROUP_CHUNKS (1u << GROUP_SHIFT)
#define GROUP_BLOCKS ((uint64_t)CHUNK_BLOCKS << GROUP_SHIFT)

struct ovl_batch_header {
  uint32_t magic;
  uint32_t count;
  uint32_t crc;
  uint32_t zero;
};

/* ---- in-memory map ---- */

/* The map is a two-level table: groups of chunk pointers, chunks of two
 * bits per block, both allocated when a block in them is first set to
 * something other than OVL_BASE.  A lookup is two indexings; the memory
 * is 1 KiB per 16 MiB region written and 4 KiB per 8 GiB region written,
 * plus a pointer per 8 GiB of disk (128 for 1 TiB). */

int
ovl_map_init(struct ovl_map *m, uint64_t nblocks)
{
  memset(m, 0, sizeof *m);
  m->nblocks = nblocks;
  m->ngroups = (nblocks + GROUP_BLOCKS - 1) / GROUP_BLOCKS;
  return 0;
}

void
ovl_map_free(struct ovl_map *m)
{
  if (m->groups) {
    for (size_t g = 0; g < m->ngroups; g++) {
      if (!m->groups[g])
        continue;
      for (size_t i = 0; i < GROUP_CHUNKS; i++)
        free(m->groups[g][i]);
      free(m->groups[g]);
    }
    free(m->groups);
  }
  m->groups = NULL;
  m->ndata = m->nzero = 0;
}

/* Where the pointer to the chunk holding block is, or NULL when its group
 * has none. */
static uint8_t **
chunk_slot(const struct ovl_map *m, uint64_t block)
{
  uint8_t **group;

  if (!m->groups || block >= m->nblocks)
    return NULL;
  group = m->groups[block / GROUP_BLOCKS];
  return group ? &group[(block >> CHUNK_SHIFT) & (GROUP_CHUNKS - 1)] : NULL;
}

/* The chunk holding block, or NULL while every block in it is OVL_BASE. */
static uint8_t *
chunk_of(const struct ovl_map *m, uint64_t block)
{
  uint8_t **slot = chunk_slot(m, block);

  return slot ? *slot : NULL;
}

/* A chunk byte whose four blocks are all in state s. */
static uint8_t
state_byte(enum ovl_state s)
{
  return (uint8_t)(s * 0x55);
}

/* Whether every block of chunk c is in state s. */
static bool
chunk_uniform(const uint8_t *c, enum ovl_state s)
{
  uint64_t want, w;

  memset(&want, state_byte(s), sizeof want);
  for (size_t i = 0; i < CHUNK_BYTES; i += sizeof w) {
    memcpy(&w, c + i, sizeof w);
    if (w != want)
      return false;
  }
  return true;
}

/* Takes the blocks of chunk c out of the map's counters: two bits per
 * block, 01 for OVL_DATA and 10 for OVL_ZERO, counted a word at a time. */
static void
uncount_chunk(struct ovl_map *m, const uint8_t *c)
{
  const uint64_t low = 0x5555555555555555ull;

  for (size_t i = 0; i < CHUNK_BYTES; i += sizeof(uint64_t)) {
    uint64_t w, lo, hi;

    memcpy(&w, c + i, sizeof w);
    lo = w & low;
    hi = (w >> 1) & low;
    m->ndata -= (uint64_t)__builtin_popcountll(lo & ~hi);
    m->nzero -= (uint64_t)__builtin_popcountll(hi & ~lo);
  }
}

/* The same, allocated (and its group, and the group table) if need be. */
static uint8_t *
chunk_alloc(struct ovl_map *m, uint64_t block)
{
  uint8_t ***group, **slot;

  if (!m->groups && !(m->groups = calloc(m->ngroups, sizeof *m->groups)))
    return NULL;
  group = &m->groups[block / GROUP_BLOCKS];
  if (!*group && !(*group = calloc(GROUP_CHUNKS, sizeof **group)))
    return NULL;
  slot = chunk_slot(m, block);
  if (!*slot)
    *slot = calloc(1, CHUNK_BYTES);
  return *slot;
}

enum ovl_state
ovl_map_get(const struct ovl_map *m, uint64_t block)
{
  const uint8_t *c = chunk_of(m, block);

  if (!c)
    return OVL_BASE;
  block &= CHUNK_BLOCKS - 1;
  return (c[block >> 2] >> ((block & 3) * 2)) & 3;
}

static void
count_state(struct ovl_map *m, enum ovl_state s, int64_t delta)
{
  if (s == OVL_DATA)
    m->ndata += delta;
  else if (s == OVL_ZERO)
    m->nzero += delta;
}

int
ovl_map_set(struct ovl_map *m, uint64_t first, uint64_t count, enum ovl_state state)
{
  if (first >= m->nblocks || count > m->nblocks - first)
    return -EINVAL;
  while (count > 0) {
    uint64_t off = first & (CHUNK_BLOCKS - 1);
    uint64_t n = CHUNK_BLOCKS - off;
    uint8_t *c = chunk_of(m, first);

    if (n > count)
      n = count;
    if (n == CHUNK_BLOCKS) {
      /* A whole chunk (a TRIM of a large range, say): at once, and
       * unallocated again if it goes back to OVL_BASE. */
      if (c)
        uncount_chunk(m, c);
      if (state == OVL_BASE) {
        if (c) {
          free(c);
          *chunk_slot(m, first) = NULL;
        }
        goto next;
      }
      if (!c && !(c = chunk_alloc(m, first)))
        return -ENOMEM;
      memset(c, state_byte(state), CHUNK_BYTES);
      count_state(m, state, CHUNK_BLOCKS);
      goto next;
    }
    if (!c) {
      if (state == OVL_BASE)
        goto next;
      c = chunk_alloc(m, first);
      if (!c)
        return -ENOMEM;
    }
    for (uint64_t b = off; b < off + n; b++) {
      unsigned shift = (b & 3) * 2;
      enum ovl_state old = (c[b >> 2] >> shift) & 3;

      if (old == state)
        continue;
      count_state(m, old, -1);
      count_state(m, state, +1);
      c[b >> 2] = (c[b >> 2] & ~(3u << shift)) | ((unsigned)state << shift);
    }
  next:
    first += n;
    count -= n;
  }
  return 0;
}

uint64_t
ovl_map_run(const struct ovl_map *m, uint64_t block, uint64_t max, enum ovl_state *state)
{
  enum ovl_state s = ovl_map_get(m, block);
  uint64_t n = 1;

  *state = s;
  while (n < max && block + n < m->nblocks) {
    uint64_t b = block + n;
    /* Skip whole unallocated groups, and whole chunks all in state s. */
    if ((b & (CHUNK_BLOCKS - 1)) == 0) {
      const uint8_t *c = chunk_of(m, b);
      if (s == OVL_BASE && !c && b % GROUP_BLOCKS == 0 &&
          (!m->groups || !m->groups[b / GROUP_BLOCKS])) {
        n += GROUP_BLOCKS;
        continue;
      }
      if (c ? chunk_uniform(c, s) : s == OVL_BASE) {
        n += CHUNK_BLOCKS;
        continue;
      }
    }
    if (ovl_map_get(m, b) != s)
      break;
    n++;
  }
  if (n > m->nblocks - block)
    n = m->nblocks - block;
  return n < max ? n : max;
}

int
ovl_map_copy(struct ovl_map *dst, const struct ovl_map *src)
{
  ovl_map_init(dst, src->nblocks);
  if (!src->groups)
    return 0;
  dst->groups = calloc(src->ngroups, sizeof *dst->groups);
  if (!dst->groups)
    return -ENOMEM;
  for (size_t g = 0; g < src->ngroups; g++) {
    if (!src->groups[g])
      continue;
    dst->groups[g] = calloc(GROUP_CHUNKS, sizeof **dst->groups);
    if (!dst->groups[g])
      goto nomem;
    for (size_t i = 0; i < GROUP_CHUNKS; i++) {
      if (!src->groups[g][i])
        continue;
      dst->groups[g][i] = malloc(CHUNK_BYTES);
      if (!dst->groups[g][i])
        goto nomem;
      memcpy(dst->groups[g][i], src->groups[g][i], CHUNK_BYTES);
    }
  }
  dst->ndata = src->ndata;
  dst->nzero = src->nzero;
  return 0;
nomem:
  ovl_map_free(dst);
  return -ENOMEM;
}

size_t
ovl_map_memory(const struct ovl_map *m)
{
  size_t bytes = sizeof *m;

  if (!m->groups)
    return bytes;
  bytes += m->ngroups * sizeof *m->groups;
  for (size_t g = 0; g < m->ngroups; g++) {
    if (!m->groups[g])
      continue;
    bytes += GROUP_CHUNKS * sizeof *m->groups[g];
    for (size_t i = 0; i < GROUP_CHUNKS; i++)
      if (m->groups[g][i])
        bytes += CHUNK_BYTES;
  }
  return bytes;
}

/* ---- files ---- */

static void
path_of(char *buf, size_t len, const char *prefix, const char *suffix)
{
  snprintf(buf, len, "%s%s", prefix, suffix);
}

static void
header_encode(const struct ovl_header_info *info, unsigned char *h)
{
  uint32_t v32;
  uint64_t v64;

  memset(h, 0, OVL_HEADER_SIZE);
  memcpy(h, OVL_MAGIC, 8);
  v32 = htole32(OVL_VERSION);
  memcpy(h + 8, &v32, 4);
  v32 = htole32(OVL_BLOCK_SIZE);
  memcpy(h + 12, &v32, 4);
  v64 = htole64(info->size);
  memcpy(h + 16, &v64, 8);
  v64 = htole64(info->created);
  memcpy(h + 24, &v64, 8);
  v64 = htole64(info->base_size);
  memcpy(h + 32, &v64, 8);
  v64 = htole64((uint64_t)info->base_mtime_ns);
  memcpy(h + 40, &v64, 8);
  /* Fixed-size NUL-padded fields (h is zeroed above). */
  memcpy(h + 48, info->boot_id, strnlen(info->boot_id, OVL_BOOT_ID_MAX));
  memcpy(h + 128, info->base_path, strnlen(info->base_path, OVL_BASE_PATH_MAX - 1));
  memcpy(h + 640, info->base_sha256, strnlen(info->base_sha256, OVL_SHA256_HEX));
  v32 = htole32(crc32(0, h, OVL_HEADER_SIZE - 4));
  memcpy(h + OVL_HEADER_SIZE - 4, &v32, 4);
}

/* A content id is empty or 64 lower-case hex digits. */
static bool
content_id_valid(const char *id)
{
  size_t n = strspn(id, "0123456789abcdef");

  return id[n] == '\0' && (n == 0 || n == OVL_SHA256_HEX);
}

static int
header_decode(const unsigned char *h, struct ovl_header_info *info)
{
  uint32_t v32;
  uint64_t v64;

  memcpy(&v32, h + OVL_HEADER_SIZE - 4, 4);
  if (memcmp(h, OVL_MAGIC, 8) != 0 || le32toh(v32) != crc32(0, h, OVL_HEADER_SIZE - 4))
    return -EBADMSG;
  memcpy(&v32, h + 8, 4);
  if (le32toh(v32) != OVL_VERSION)
    return -EPROTO;
  memcpy(&v32, h + 12, 4);
  if (le32toh(v32) != OVL_BLOCK_SIZE)
    return -EPROTO;
  memset(info, 0, sizeof *info);
  memcpy(&v64, h + 16, 8);
  info->size = le64toh(v64);
  memcpy(&v64, h + 24, 8);
  info->created = le64toh(v64);
  memcpy(&v64, h + 32, 8);
  info->base_size = le64toh(v64);
  memcpy(&v64, h + 40, 8);
  info->base_mtime_ns = (int64_t)le64toh(v64);
  memcpy(info->boot_id, h + 48, OVL_BOOT_ID_MAX);
  info->boot_id[OVL_BOOT_ID_MAX] = '\0';
  memcpy(info->base_path, h + 128, OVL_BASE_PATH_MAX - 1);
  info->base_path[OVL_BASE_PATH_MAX - 1] = '\0';
  memcpy(info->base_sha256, h + 640, OVL_SHA256_HEX);
  info->base_sha256[OVL_SHA256_HEX] = '\0';
  return content_id_valid(info->base_sha256) ? 0 : -EBADMSG;
}

static uint64_t
nblocks_of(uint64_t size)
{
  return (size + OVL_BLOCK_SIZE - 1) >> OVL_BLOCK_SHIFT;
}

/* A descriptor of the directory holding path, or -errno. */
static int
open_parent(const char *path)
{
  char dir[PATH_MAX];
  char *slash;
  int fd;

  snprintf(dir, sizeof dir, "%s", path);
  slash = strrchr(dir, '/');
  if (slash == dir)
    slash[1] = '\0';
  else if (slash)
    *slash = '\0';
  else
    snprintf(dir, sizeof dir, ".");
  fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  return fd < 0 ? -errno : fd;
}

/* Writes a new map file at tmp holding the header and a snapshot of map. */
static int
write_snapshot(const char *tmp, const struct ovl_header_info *info,
               const struct ovl_map *map, bool sync, uint64_t *log_end, uint64_t *records)
{
  unsigned char h[OVL_HEADER_SIZE];
  struct ovl_record *recs = NULL;
  size_t n = 0;
  uint64_t off = OVL_HEADER_SIZE, total = 0;
  int fd, r;

  fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0)
    return -errno;
  header_encode(info, h);
  r = full_pwrite(fd, h, sizeof h, 0);
  if (r < 0)
    goto out;
  recs = malloc(OVL_BATCH_MAX * sizeof *recs);
  if (!recs) {
    r = -ENOMEM;
    goto out;
  }
  for (uint64_t b = 0; b < map->nblocks;) {
    enum ovl_state s;
    uint64_t run = ovl_map_run(map, b, UINT32_MAX, &s);

    if (s != OVL_BASE) {
      recs[n++] = (struct ovl_record){ b, (uint32_t)run, s };
      if (n == OVL_BATCH_MAX || b + run >= map->nblocks) {
        struct ovl_file f = { .map_fd = fd, .log_end = off };
        r = ovl_file_append(&f, recs, n);
        if (r < 0)
          goto out;
        off = f.log_end;
        total += n;
        n = 0;
      }
    }
    b += run;
  }
  if (n > 0) {
    struct ovl_file f = { .map_fd = fd, .log_end = off };
    r = ovl_file_append(&f, recs, n);
    if (r < 0)
      goto out;
    off = f.log_end;
    total += n;
  }
  if (sync && fdatasync(fd) < 0) {
    r = -errno;
    goto out;
  }
  *log_end = off;
  *records = total;
  r = 0;
out:
  free(recs);
  close(fd);
  if (r < 0)
    unlink(tmp);
  return r;
}

int
ovl_file_create(const char *prefix, const struct ovl_header_info *info,
                struct ovl_file *out)
{
  char data[PATH_MAX], map[PATH_MAX], tmp[PATH_MAX];
  int r;

  memset(out, 0, sizeof *out);
  out->map_fd = out->data_fd = out->dir_fd = -1;
  out->info = *info;
  ovl_map_init(&out->map, nblocks_of(info->size));
  path_of(data, sizeof data, prefix, ".data");
  path_of(map, sizeof map, prefix, ".map");

  /* Nothing here waits for the disk (a boot storm of new clients, or a
   * lab of reset-on-boot clients, creates hundreds at once): the new
   * overlay is made durable by the first flush, see ovl_file_make_durable.
   * Until then a crash may lose it, which loses nothing the client was
   * promised.  The map file is the commit point, and it is replaced last;
   * a crash can pair an old map with the new, empty data file only for a
   * reset overlay, whose old map names the old boot and is reset again. */
  if (unlink(map) < 0 && errno != ENOENT)
    return -errno;
  out->dir_fd = open_parent(map);
  if (out->dir_fd < 0)
    return out->dir_fd;

  path_of(tmp, sizeof tmp, prefix, ".data.tmp");
  out->data_fd = open(tmp, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (out->data_fd < 0)
    return -errno;
  if (ftruncate(out->data_fd, nblocks_of(info->size) << OVL_BLOCK_SHIFT) < 0 ||
      rename(tmp, data) < 0) {
    r = -errno;
    unlink(tmp);
    goto err;
  }

  path_of(tmp, sizeof tmp, prefix, ".map.tmp");
  r = write_snapshot(tmp, info, &out->map, false, &out->log_end, &out->log_records);
  if (r < 0)
    goto err;
  if (rename(tmp, map) < 0) {
    r = -errno;
    unlink(tmp);
    goto err;
  }
  out->map_fd = open(map, O_RDWR | O_CLOEXEC);
  if (out->map_fd < 0) {
    r = -errno;
    goto err;
  }
  return 0;
err:
  ovl_file_close(out);
  return r;
}

int
ovl_file_read_header(const char *prefix, struct ovl_header_info *info)
{
  char map[PATH_MAX];
  unsigned char h[OVL_HEADER_SIZE];
  ssize_t n;
  int fd;

  path_of(map, sizeof map, prefix, ".map");
  fd = open(map, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return -errno;
  n = full_pread(fd, h, sizeof h, 0);
  close(fd);
  if (n < 0)
    return (int)n;
  if (n != sizeof h)
    return -EBADMSG;
  return header_decode(h, info);
}

/* The journal is read through a window this large, so that opening an
 * overlay costs a few large reads, not two small ones per batch: a
 * journal of many small flushes has tens of thousands of batches. */
#define REPLAY_WINDOW (2u << 20)

/* Whether the batch at byte at of the window is whole in it (or cannot
 * be whole at all: a bad count is rejected by the caller). */
static bool
batch_in_window(const unsigned char *win, size_t win_len, size_t at)
{
  struct ovl_batch_header bh;
  uint32_t count;

  if (at + sizeof bh > win_len)
    return false;
  memcpy(&bh, win + at, sizeof bh);
  count = le32toh(bh.count);
  return count > OVL_BATCH_MAX ||
         at + sizeof bh + (size_t)count * sizeof(struct ovl_record) <= win_len;
}

/* How an overlay is opened: for serving it, for reading it, or for
 * salvaging what can be read of a damaged one. */
enum open_mode { OPEN_READ, OPEN_WRITE, OPEN_SALVAGE };

/* Whether the records of one batch (already checked whole) are in range:
 * a batch whose checksum holds but whose records do not is damage, not
 * a tear, and none of it is applied. */
static bool
batch_records_valid(const struct ovl_file *f, const unsigned char *p, uint32_t count)
{
  for (uint32_t i = 0; i < count; i++, p += sizeof(struct ovl_record)) {
    struct ovl_record rec;

    memcpy(&rec, p, sizeof rec);
    rec.first = le64toh(rec.first);
    rec.count = le32toh(rec.count);
    if (le32toh(rec.state) > OVL_ZERO || rec.first >= f->map.nblocks ||
        rec.count > f->map.nblocks - rec.first)
      return false;
  }
  return true;
}

/* Applies the records of one batch (checked whole and valid). */
static int
replay_batch(struct ovl_file *f, const unsigned char *p, uint32_t count)
{
  for (uint32_t i = 0; i < count; i++, p += sizeof(struct ovl_record)) {
    struct ovl_record rec;
    int r;

    memcpy(&rec, p, sizeof rec);
    r = ovl_map_set(&f->map, le64toh(rec.first), le32toh(rec.count), le32toh(rec.state));
    if (r < 0)
      return r;
  }
  f->log_records += count;
  return 0;
}

/* Whether a well-formed batch (checksum included) starts at byte at of
 * the map file, whose header is hdr; 1, 0 or -errno. */
static int
batch_at(int fd, const unsigned char *hdr, uint64_t at, uint64_t size)
{
  struct ovl_batch_header bh;
  unsigned char *recs;
  size_t bytes;
  ssize_t n;
  int r;

  memcpy(&bh, hdr, sizeof bh);
  if (le32toh(bh.magic) != OVL_BATCH_MAGIC || le32toh(bh.count) == 0 ||
      le32toh(bh.count) > OVL_BATCH_MAX)
    return 0;
  bytes = le32toh(bh.count) * sizeof(struct ovl_record);
  if (at + sizeof bh + bytes > size)
    return 0;
  recs = malloc(bytes);
  if (!recs)
    return -ENOMEM;
  n = full_pread(fd, recs, bytes, at + sizeof bh);
  r = n < 0 ? (int)n : (size_t)n == bytes && crc32(0, recs, bytes) == le32toh(bh.crc);
  free(recs);
  return r;
}

static bool
is_all_zero(const unsigned char *p, size_t len)
{
  for (size_t i = 0; i < len; i++)
    if (p[i])
      return false;
  return true;
}

static bool
page_is_zero(const unsigned char *p)
{
  return is_all_zero(p, OVL_BLOCK_SIZE);
}

/* The journal does not go on at byte off: is the rest a tear a crash can
 * leave (0), or damage (1, *good_at: the well-formed batch after it)?
 * A crash leaves unsynced appends, whole or in part, and pages of them
 * that never reached the disk read as zeros; every batch after such a
 * page was never synced either (appends are in order, each fdatasync
 * covers all before it).  So the rest is a tear when no well-formed
 * batch follows, or when a page of zeros comes before the first one.
 * Batches start at multiples of 16 bytes, so that is where to look. */
static int
find_damage(int fd, uint64_t off, uint64_t size, uint64_t *good_at)
{
  uint64_t pos = off & ~(uint64_t)(OVL_BLOCK_SIZE - 1);
  unsigned char *win = malloc(REPLAY_WINDOW);
  int r = 0;

  if (!win)
    return -ENOMEM;
  while (pos < size && r == 0) {
    uint64_t want = size - pos < REPLAY_WINDOW ? size - pos : REPLAY_WINDOW;
    ssize_t n = full_pread(fd, win, want, pos);
    uint64_t len, scan;

    if (n < 0) {
      r = (int)n;
      break;
    }
    len = (uint64_t)n;
    if (len == 0)
      break;
    /* Windows overlap by a page, so that no header is cut in two. */
    scan = pos + len >= size ? len : len - OVL_BLOCK_SIZE;
    for (uint64_t i = 0; i < scan && r == 0; i += 16) {
      uint64_t at = pos + i;

      if (at % OVL_BLOCK_SIZE == 0 && i + OVL_BLOCK_SIZE <= len && page_is_zero(win + i))
        goto out; /* a tear, whatever follows */
      if (at >= off + 16 && i + sizeof(struct ovl_batch_header) <= len) {
        r = batch_at(fd, win + i, at, size);
        if (r == 1)
          *good_at = at;
      }
    }
    pos += scan;
  }
out:
  free(win);
  return r;
}

/* The journal is not whole from byte off on: a torn tail is cut (when
 * writable; noted in f->torn_bytes), damage is -EUCLEAN with f->damage
 * (in salvage mode, noted, and the journal ends at off). */
static int
replay_stopped(struct ovl_file *f, uint64_t off, uint64_t size, enum open_mode mode,
               const char *what)
{
  uint64_t good_at = 0;
  int r;

  if (!what) {
    r = find_damage(f->map_fd, off, size, &good_at);
    if (r < 0)
      return r;
    if (r == 0) {
      f->torn_bytes = size - off;
      if (mode == OPEN_WRITE &&
          (ftruncate(f->map_fd, off) < 0 || fdatasync(f->map_fd) < 0))
        return -errno;
      return 0;
    }
    snprintf(f->damage, sizeof f->damage,
             "the journal batch at byte %llu of the map file is damaged, "
             "and a valid one follows at byte %llu",
             (unsigned long long)off, (unsigned long long)good_at);
  } else {
    snprintf(f->damage, sizeof f->damage,
             "the journal batch at byte %llu of the map file %s", (unsigned long long)off,
             what);
  }
  return mode == OPEN_SALVAGE ? 0 : -EUCLEAN;
}

/* Applies the journal of f (map_fd open, header already decoded). */
static int
replay(struct ovl_file *f, enum open_mode mode)
{
  struct stat st;
  uint64_t off = OVL_HEADER_SIZE, win_off = off, size;
  const char *what = NULL;
  unsigned char *win;
  size_t win_len = 0;
  int r = 0;

  if (fstat(f->map_fd, &st) < 0)
    return -errno;
  size = (uint64_t)st.st_size;
  win = malloc(REPLAY_WINDOW);
  if (!win)
    return -ENOMEM;
  for (;;) {
    struct ovl_batch_header bh;
    size_t bytes, at = off - win_off;
    ssize_t n;

    if (!batch_in_window(win, win_len, at)) {
      /* Refill: the window starts at the next batch. */
      uint64_t want = size > off ? size - off : 0;
      if (want > REPLAY_WINDOW)
        want = REPLAY_WINDOW;
      if (want == 0)
        break;
      n = full_pread(f->map_fd, win, want, off);
      if (n < 0) {
        r = (int)n;
        goto out;
      }
      win_off = off;
      win_len = (size_t)n;
      at = 0;
    }
    if (at + sizeof bh > win_len)
      goto stopped;
    memcpy(&bh, win + at, sizeof bh);
    bh.count = le32toh(bh.count);
    if (le32toh(bh.magic) != OVL_BATCH_MAGIC || bh.count == 0 || bh.count > OVL_BATCH_MAX)
      goto stopped;
    bytes = bh.count * sizeof(struct ovl_record);
    if (at + sizeof bh + bytes > win_len ||
        crc32(0, win + at + sizeof bh, bytes) != le32toh(bh.crc))
      goto stopped;
    if (!batch_records_valid(f, win + at + sizeof bh, bh.count)) {
      what = "has a record outside the disk or of no known state";
      goto stopped;
    }
    r = replay_batch(f, win + at + sizeof bh, bh.count);
    if (r < 0)
      goto out;
    off += sizeof bh + bytes;
  }
  goto done;
stopped:
  r = replay_stopped(f, off, size, mode, what);
  if (r < 0)
    goto out;
done:
  f->log_end = off;
out:
  free(win);
  return r;
}

uint64_t
ovl_map_data_end(const struct ovl_map *m)
{
  uint64_t end = 0;

  for (uint64_t b = 0; b < m->nblocks;) {
    enum ovl_state s;
    uint64_t run = ovl_map_run(m, b, UINT64_MAX, &s);

    b += run;
    if (s == OVL_DATA)
      end = b;
  }
  return end << OVL_BLOCK_SHIFT;
}

/* Reads and decodes the header of f's map file. */
static int
open_header(struct ovl_file *f)
{
  unsigned char h[OVL_HEADER_SIZE];
  ssize_t n = full_pread(f->map_fd, h, sizeof h, 0);
  int r;

  if (n < 0)
    return (int)n;
  if (n == 0 || is_all_zero(h, (size_t)n)) {
    /* An empty map, or one whose header never reached the disk (reads
     * as zeros): an overlay created just before a crash, before its
     * first flush made it durable.  Its data file may hold data (a
     * power loss during that flush can keep the data and lose the map's
     * header), but nothing in it was promised: the overlay is made
     * again (-ENOENT), as the crash contract asks. */
    return -ENOENT;
  }
  if (n != sizeof h) {
    snprintf(f->damage, sizeof f->damage,
             "the map file is %zd bytes, shorter than its %d-byte header", n,
             OVL_HEADER_SIZE);
    return -EUCLEAN;
  }
  r = header_decode(h, &f->info);
  if (r < 0) {
    snprintf(
        f->damage, sizeof f->damage, "%s",
        r == -EPROTO
            ? "the map file's header is of a version or block size this program does not know"
            : "the map file's header is damaged (magic or checksum)");
    return -EUCLEAN;
  }
  return 0;
}

/* The data file must hold every block the map points at. */
static int
check_data_size(struct ovl_file *f, enum open_mode mode)
{
  uint64_t need = ovl_map_data_end(&f->map);
  struct stat st;

  if (fstat(f->data_fd, &st) < 0)
    return -errno;
  if ((uint64_t)st.st_size >= need)
    return 0;
  snprintf(f->damage, sizeof f->damage,
           "the data file is %llu bytes, but the map has data up to byte %llu",
           (unsigned long long)st.st_size, (unsigned long long)need);
  return mode == OPEN_SALVAGE ? 0 : -EUCLEAN;
}

static int
open_mode(const char *prefix, enum open_mode mode, struct ovl_file *out)
{
  char path[PATH_MAX];
  int flags = (mode == OPEN_WRITE ? O_RDWR : O_RDONLY) | O_CLOEXEC, r;

  memset(out, 0, sizeof *out);
  out->data_fd = out->dir_fd = -1;
  out->durable = true;
  path_of(path, sizeof path, prefix, ".map");
  out->map_fd = open(path, flags);
  if (out->map_fd < 0)
    return -errno;
  r = open_header(out);
  if (r < 0)
    goto err;
  ovl_map_init(&out->map, nblocks_of(out->info.size));
  path_of(path, sizeof path, prefix, ".data");
  out->data_fd = open(path, flags);
  if (out->data_fd < 0) {
    /* A map without its data file cannot be served: say so, not ENOENT,
     * which would make the caller silently create a fresh overlay. */
    r = -errno;
    if (r == -ENOENT) {
      snprintf(out->damage, sizeof out->damage, "the data file is missing");
      r = -EUCLEAN;
    }
    goto err;
  }
  r = replay(out, mode);
  if (r == 0)
    r = check_data_size(out, mode);
  if (r < 0)
    goto err;
  return 0;
err:
  ovl_file_close(out);
  return r;
}

int
ovl_file_open(const char *prefix, bool writable, struct ovl_file *out)
{
  return open_mode(prefix, writable ? OPEN_WRITE : OPEN_READ, out);
}

int
ovl_file_open_salvage(const char *prefix, struct ovl_file *out)
{
  return open_mode(prefix, OPEN_SALVAGE, out);
}

void
ovl_file_close(struct ovl_file *f)
{
  if (f->map_fd >= 0)
    close(f->map_fd);
  if (f->data_fd >= 0)
    close(f->data_fd);
  if (f->dir_fd >= 0)
    close(f->dir_fd);
  f->map_fd = f->data_fd = f->dir_fd = -1;
  ovl_map_free(&f->map);
}

int
ovl_file_make_durable(struct ovl_file *f)
{
  if (f->durable)
    return 0;
  if (fsync(f->dir_fd) < 0)
    return -errno;
  ovl_file_durable(f);
  return 0;
}

void
ovl_file_durable(struct ovl_file *f)
{
  f->durable = true;
  if (f->dir_fd >= 0)
    close(f->dir_fd);
  f->dir_fd = -1;
}

int
ovl_file_append(struct ovl_file *f, const struct ovl_record *recs, size_t n)
{
  struct ovl_batch_header bh;
  struct ovl_record *le;
  size_t bytes = n * sizeof *recs;
  int r;

  if (n == 0)
    return 0;
  if (n > OVL_BATCH_MAX) {
    /* Split: each batch is checked whole on replay. */
    for (size_t i = 0; i < n; i += OVL_BATCH_MAX) {
      r = ovl_file_append(f, recs + i, n - i < OVL_BATCH_MAX ? n - i : OVL_BATCH_MAX);
      if (r < 0)
        return r;
    }
    return 0;
  }
  le = malloc(sizeof bh + bytes);
  if (!le)
    return -ENOMEM;
  for (size_t i = 0; i < n; i++) {
    struct ovl_record *d = (struct ovl_record *)((char *)le + sizeof bh) + i;
    d->first = htole64(recs[i].first);
    d->count = htole32(recs[i].count);
    d->state = htole32(recs[i].state);
  }
  bh.magic = htole32(OVL_BATCH_MAGIC);
  bh.count = htole32((uint32_t)n);
  bh.crc = htole32(crc32(0, (unsigned char *)le + sizeof bh, bytes));
  bh.zero = 0;
  memcpy(le, &bh, sizeof bh);
  if (f->log_end + sizeof bh + bytes > f->log_reserved) {
    /* Keep space for the journal ahead of need: when the client's data
     * fills the filesystem, its writes fail with ENOSPC, but flushes of
     * what it did write still have room to be recorded.  Without the
     * reservation they would fail too, and a client's filesystem takes
     * a failed flush much worse than a failed write. */
    uint64_t want = (f->log_end + sizeof bh + bytes + OVL_LOG_RESERVE) &
                    ~(uint64_t)(OVL_LOG_RESERVE - 1);
    if (fallocate(f->map_fd, FALLOC_FL_KEEP_SIZE, (off_t)f->log_reserved,
                  (off_t)(want - f->log_reserved)) == 0)
      f->log_reserved = want;
  }
  r = full_pwrite(f->map_fd, le, sizeof bh + bytes, f->log_end);
  free(le);
  if (r < 0)
    return r;
  f->log_end += sizeof bh + bytes;
  f->log_records += n;
  return 0;
}

int
ovl_file_compact(struct ovl_file *f, const char *prefix)
{
  char map[PATH_MAX], tmp[PATH_MAX];
  uint64_t log_end, records;
  int fd, r;

  path_of(map, sizeof map, prefix, ".map");
  path_of(tmp, sizeof tmp, prefix, ".map.tmp");
  r = write_snapshot(tmp, &f->info, &f->map, true, &log_end, &records);
  if (r < 0)
    return r;
  if (rename(tmp, map) < 0) {
    r = -errno;
    unlink(tmp);
    return r;
  }
  r = fsync_dir_of(map);
  if (r < 0)
    return r;
  fd = open(map, O_RDWR | O_CLOEXEC);
  if (fd < 0)
    return -errno;
  /* dup2 keeps the descriptor number, which the caller may have stored. */
  if (dup2(fd, f->map_fd) < 0) {
    r = -errno;
    close(fd);
    return r;
  }
  close(fd);
  f->log_end = log_end;
  f->log_records = records;
  f->log_reserved = 0;
  ovl_file_durable(f);
  return 0;
}

/* ---- compaction of an overlay in use ---- */

int
ovl_compact_begin(const struct ovl_file *f, const char *prefix, const struct ovl_map *map,
                  uint64_t from, struct ovl_compaction *c)
{
  char tmp[PATH_MAX];
  int r;

  memset(c, 0, sizeof *c);
  c->fd = -1;
  path_of(tmp, sizeof tmp, prefix, ".compact.tmp");
  r = write_snapshot(tmp, &f->info, map, false, &c->end, &c->records);
  if (r < 0)
    return r;
  c->fd = open(tmp, O_RDWR | O_CLOEXEC);
  if (c->fd < 0) {
    r = -errno;
    unlink(tmp);
    return r;
  }
  c->copied = from;
  c->records_from = f->log_records;
  return 0;
}

int
ovl_compact_catch_up(const struct ovl_file *f, struct ovl_compaction *c, uint64_t upto,
                     bool sync)
{
  char buf[64 << 10];

  while (c->copied < upto) {
    size_t n = upto - c->copied < sizeof buf ? upto - c->copied : sizeof buf;
    ssize_t got = full_pread(f->map_fd, buf, n, c->copied);
    int r;

    if (got != (ssize_t)n)
      return got < 0 ? (int)got : -EIO;
    r = full_pwrite(c->fd, buf, n, c->end);
    if (r < 0)
      return r;
    c->copied += n;
    c->end += n;
  }
  if (sync && c->synced < c->end) {
    if (fdatasync(c->fd) < 0)
      return -errno;
    c->synced = c->end;
  }
  return 0;
}

int
ovl_compact_commit(struct ovl_file *f, const char *prefix, struct ovl_compaction *c)
{
  char map[PATH_MAX], tmp[PATH_MAX];
  uint64_t records;
  int r;

  r = ovl_compact_catch_up(f, c, f->log_end, true);
  if (r < 0)
    return r;
  if (f->dir_fd < 0) {
    path_of(map, sizeof map, prefix, ".map");
    f->dir_fd = open_parent(map);
    if (f->dir_fd < 0) {
      r = f->dir_fd;
      f->dir_fd = -1;
      return r;
    }
  }
  path_of(map, sizeof map, prefix, ".map");
  path_of(tmp, sizeof tmp, prefix, ".compact.tmp");
  if (rename(tmp, map) < 0)
    return -errno;
  /* From here on the new file is the overlay's, whatever fails. */
  records = c->records + (f->log_records - c->records_from);
  r = dup2(c->fd, f->map_fd) < 0 ? -errno : 0;
  close(c->fd);
  c->fd = -1;
  if (r < 0)
    return r;
  f->log_end = c->end;
  f->log_records = records;
  f->log_reserved = 0;
  f->durable = false;
  return 0;
}

void
ovl_compact_abort(const char *prefix, struct ovl_compaction *c)
{
  char tmp[PATH_MAX];

  if (c->fd < 0)
    return;
  close(c->fd);
  c->fd = -1;
  path_of(tmp, sizeof tmp, prefix, ".compact.tmp");
  unlink(tmp);
}

const char *const ovl_tmp_suffixes[] = { ".map.tmp", ".data.tmp", ".compact.tmp", NULL };

unsigned
ovl_file_remove_tmp(const char *prefix)
{
  char path[PATH_MAX];
  unsigned removed = 0;

  for (unsigned i = 0; ovl_tmp_suffixes[i]; i++) {
    path_of(path, sizeof path, prefix, ovl_tmp_suffixes[i]);
    if (unlink(path) == 0)
      removed |= 1u << i;
  }
  return removed;
}

int
ovl_file_remove(const char *prefix)
{
  char path[PATH_MAX];
  int r = 0;

  /* Map first: without it the data file is just an orphan. */
  path_of(path, sizeof path, prefix, ".map");
  if (unlink(path) < 0 && errno != ENOENT)
    r = -errno;
  path_of(path, sizeof path, prefix, ".data");
  if (unlink(path) < 0 && errno != ENOENT && r == 0)
    r = -errno;
  return r;
}
