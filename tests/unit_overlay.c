/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Unit tests of the overlay format (common/overlay-format.c), one
 * function per property, each on an overlay of its own:
 *  - an overlay that was never written costs almost no memory, and its
 *    header reads back as written;
 *  - the two-bit map follows a plain array under random operations;
 *  - the journal: what is appended is what is replayed;
 *  - a torn batch at the end of the journal is cut off, the rest kept;
 *  - a record with a bad checksum ends replay there;
 *  - compaction keeps the map and shortens the journal;
 *  - a map without its data file, or with a damaged header, is refused;
 *  - the base's content id round-trips and survives compaction; a header
 *    without one (as written before the field) reads as having none; one
 *    that is not 64 hex digits is refused even with a good checksum;
 *  - a damaged batch with a valid one after it, a map shorter than its
 *    header or a data file
 *    shorter than the map's data: refused, files untouched; salvage
 *    reads the valid prefix; a tear with a page of zeros is still a tear;
 *  - on a 1 TiB disk, the map of a few writes costs memory for those
 *    writes, not for the size of the disk, and runs cross the regions
 *    never written; a 64 GiB trim is set and undone a chunk at a time.
 */
#include <config.h>

#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "overlay-format.h"
#include "unit.h"
#include "util.h"

#define NBLOCKS 20000 /* several chunks, last one partial */

static unsigned char model[NBLOCKS];

static void
check_map_equals_model(const struct ovl_map *m, const char *when)
{
  uint64_t ndata = 0, nzero = 0;

  for (uint64_t b = 0; b < NBLOCKS; b++) {
    if (ovl_map_get(m, b) != model[b]) {
      CHECK(0, "%s: block %llu is %d, expected %d", when, (unsigned long long)b,
            ovl_map_get(m, b), model[b]);
      return;
    }
    ndata += model[b] == OVL_DATA;
    nzero += model[b] == OVL_ZERO;
  }
  CHECK(m->ndata == ndata && m->nzero == nzero,
        "%s: counters %llu/%llu, expected %llu/%llu", when, (unsigned long long)m->ndata,
        (unsigned long long)m->nzero, (unsigned long long)ndata,
        (unsigned long long)nzero);
  /* Runs must cover exactly the blocks of equal state. */
  for (uint64_t b = 0; b < NBLOCKS;) {
    enum ovl_state s;
    uint64_t n = ovl_map_run(m, b, NBLOCKS, &s);
    CHECK(n >= 1 && b + n <= NBLOCKS, "%s: run at %llu has length %llu", when,
          (unsigned long long)b, (unsigned long long)n);
    for (uint64_t i = b; i < b + n; i++)
      if (model[i] != s) {
        CHECK(0, "%s: run at %llu claims state %d at %llu", when, (unsigned long long)b,
              s, (unsigned long long)i);
        return;
      }
    CHECK(b + n == NBLOCKS || model[b + n] != s, "%s: run at %llu stops early", when,
          (unsigned long long)b);
    b += n;
  }
}

/* A 1 TiB disk written in three places: its first block, one in the
 * middle and its last. */
static void
test_large_sparse_map(void)
{
  const uint64_t nblocks = (1ull << 40) / OVL_BLOCK_SIZE, mid = nblocks / 2 + 12345;
  struct ovl_map m;
  enum ovl_state s;
  size_t bytes;

  ovl_map_init(&m, nblocks);
  CHECK(ovl_map_memory(&m) < 256, "an unwritten 1 TiB map uses %zu bytes",
        ovl_map_memory(&m));
  CHECK(ovl_map_set(&m, 0, 1, OVL_DATA) == 0 && ovl_map_set(&m, mid, 3, OVL_ZERO) == 0 &&
            ovl_map_set(&m, nblocks - 1, 1, OVL_DATA) == 0,
        "set");
  /* Three chunks, three groups of chunk pointers and the table of
   * groups: some 16 KiB (a table of every chunk of the disk would be
   * 512 KiB). */
  bytes = ovl_map_memory(&m);
  CHECK(bytes < 32 << 10, "three writes on 1 TiB use %zu bytes", bytes);
  CHECK(ovl_map_get(&m, 0) == OVL_DATA && ovl_map_get(&m, 1) == OVL_BASE &&
            ovl_map_get(&m, mid - 1) == OVL_BASE && ovl_map_get(&m, mid) == OVL_ZERO &&
            ovl_map_get(&m, mid + 2) == OVL_ZERO &&
            ovl_map_get(&m, mid + 3) == OVL_BASE &&
            ovl_map_get(&m, nblocks - 2) == OVL_BASE &&
            ovl_map_get(&m, nblocks - 1) == OVL_DATA &&
            ovl_map_get(&m, nblocks) == OVL_BASE,
        "states on the large map");
  CHECK(ovl_map_run(&m, 1, nblocks, &s) == mid - 1 && s == OVL_BASE,
        "the run from block 1 ends at the middle write");
  CHECK(ovl_map_run(&m, mid, nblocks, &s) == 3 && s == OVL_ZERO, "the middle run");
  CHECK(ovl_map_run(&m, mid + 3, nblocks, &s) == nblocks - 1 - (mid + 3) && s == OVL_BASE,
        "the run after the middle write ends at the last block");
  CHECK(ovl_map_run(&m, 5, 100, &s) == 100 && s == OVL_BASE, "a run is cut at max");
  CHECK(m.ndata == 2 && m.nzero == 3, "counters %llu/%llu", (unsigned long long)m.ndata,
        (unsigned long long)m.nzero);
  /* Back to BASE: the states follow (the memory stays). */
  CHECK(ovl_map_set(&m, mid, 3, OVL_BASE) == 0 && ovl_map_get(&m, mid) == OVL_BASE &&
            m.nzero == 0,
        "zeroes set back to base");

  ovl_map_free(&m);
}

/* A TRIM of 64 GiB in the middle of a 1 TiB disk: 16 million blocks at
 * once, a chunk at a time; a run crosses them in one call; back to BASE,
 * the chunks are freed (4 MiB of them; the tables of the 8 groups stay). */
static void
test_large_trim(void)
{
  const uint64_t nblocks = (1ull << 40) / OVL_BLOCK_SIZE;
  struct ovl_map m;
  enum ovl_state s;
  size_t bytes;

  ovl_map_init(&m, nblocks);
  CHECK(ovl_map_set(&m, 0, 1, OVL_DATA) == 0 &&
            ovl_map_set(&m, nblocks - 1, 1, OVL_DATA) == 0,
        "set");
  const uint64_t tfirst = (nblocks / 4) & ~(uint64_t)4095, tcount = 1ull << 24;
  bytes = ovl_map_memory(&m);
  CHECK(ovl_map_set(&m, tfirst + 1, tcount - 2, OVL_ZERO) == 0 && m.nzero == tcount - 2,
        "a 64 GiB trim: %llu zero blocks", (unsigned long long)m.nzero);
  CHECK(ovl_map_get(&m, tfirst) == OVL_BASE && ovl_map_get(&m, tfirst + 1) == OVL_ZERO &&
            ovl_map_get(&m, tfirst + tcount - 2) == OVL_ZERO &&
            ovl_map_get(&m, tfirst + tcount - 1) == OVL_BASE,
        "the trim's ends");
  CHECK(ovl_map_run(&m, tfirst + 1, nblocks, &s) == tcount - 2 && s == OVL_ZERO,
        "the run over the trim");
  CHECK(ovl_map_set(&m, tfirst + 5, 7, OVL_DATA) == 0 &&
            ovl_map_run(&m, tfirst + 1, nblocks, &s) == 4 && s == OVL_ZERO &&
            ovl_map_run(&m, tfirst + 12, nblocks, &s) == tcount - 13 && s == OVL_ZERO &&
            m.ndata == 2 + 7 && m.nzero == tcount - 2 - 7,
        "data inside the trim");
  CHECK(ovl_map_set(&m, tfirst, tcount, OVL_BASE) == 0 && m.ndata == 2 && m.nzero == 0 &&
            ovl_map_memory(&m) <= bytes + (64u << 10),
        "back to base: %zu bytes, %zu before the trim", ovl_map_memory(&m), bytes);
  ovl_map_free(&m);
}

/* ---- overlays on disk ---- */

static char dir[] = "/tmp/unit_overlay.XXXXXX";
static char prefix[256];

static struct ovl_header_info
test_info(void)
{
  struct ovl_header_info info = { 0 };

  info.size = (uint64_t)NBLOCKS * OVL_BLOCK_SIZE - 1000; /* partial last block */
  info.created = 1;
  info.base_size = info.size;
  snprintf(info.base_path, sizeof info.base_path, "/srv/images/root/0001.img");
  snprintf(info.boot_id, sizeof info.boot_id, "boot-1");
  return info;
}

/* A fresh overlay at prefix, written by 200 rounds of random batches,
 * every operation mirrored in model[]. */
static int
random_overlay(struct ovl_file *f)
{
  struct ovl_header_info info = test_info();
  struct ovl_record recs[64];
  unsigned seed = 42;

  ovl_file_remove(prefix);
  memset(model, 0, sizeof model);
  if (ovl_file_create(prefix, &info, f) != 0) {
    CHECK(0, "create");
    return -1;
  }
  for (int round = 0; round < 200; round++) {
    size_t n = 1 + rand_r(&seed) % 64;
    for (size_t i = 0; i < n; i++) {
      uint64_t first = rand_r(&seed) % NBLOCKS;
      uint32_t count = 1 + rand_r(&seed) % (round % 10 == 0 ? 5000 : 40);
      enum ovl_state s = rand_r(&seed) % 3;
      if (i % 7 == 3) {
        /* Whole chunks (4096 blocks), set at once. */
        first = (uint64_t)(rand_r(&seed) % 5) * 4096;
        count = 4096 * (1 + rand_r(&seed) % 2);
      }
      if (first + count > NBLOCKS)
        count = NBLOCKS - first;
      CHECK(ovl_map_set(&f->map, first, count, s) == 0, "set");
      memset(model + first, s, count);
      recs[i] = (struct ovl_record){ first, count, s };
    }
    CHECK(ovl_file_append(f, recs, n) == 0, "append");
  }
  return 0;
}

static void
test_empty_overlay(void)
{
  struct ovl_header_info info = test_info(), hdr;
  struct ovl_file f;

  ovl_file_remove(prefix);
  CHECK(ovl_file_create(prefix, &info, &f) == 0, "create");
  CHECK(ovl_map_memory(&f.map) < 256, "an unwritten overlay uses %zu bytes",
        ovl_map_memory(&f.map));
  CHECK(ovl_file_read_header(prefix, &hdr) == 0 &&
            strcmp(hdr.base_path, info.base_path) == 0 &&
            strcmp(hdr.boot_id, "boot-1") == 0 && hdr.size == info.size,
        "header round trip");
  ovl_file_close(&f);
}

static void
test_map_follows_model(void)
{
  struct ovl_file f;

  if (random_overlay(&f) < 0)
    return;
  check_map_equals_model(&f.map, "in memory");
  CHECK(ovl_map_set(&f.map, NBLOCKS, 1, OVL_DATA) == -EINVAL, "set past the end");
  ovl_file_close(&f);
}

static void
test_replay(void)
{
  struct ovl_file f, g;

  if (random_overlay(&f) < 0)
    return;
  CHECK(ovl_file_open(prefix, false, &g) == 0, "reopen");
  check_map_equals_model(&g.map, "after replay");
  CHECK(g.log_end == f.log_end, "replayed journal length");
  ovl_file_close(&g);
  ovl_file_close(&f);
}

/* A torn batch (header and half its records) is cut off on open. */
static void
test_torn_tail(void)
{
  struct ovl_record recs[2] = { { 0, NBLOCKS, OVL_ZERO }, { 5, 5, OVL_DATA } };
  struct ovl_file f;
  struct stat st;
  char path[300];
  uint64_t good_end;

  if (random_overlay(&f) < 0)
    return;
  good_end = f.log_end;
  CHECK(ovl_file_append(&f, recs, 2) == 0, "append");
  CHECK(ftruncate(f.map_fd, f.log_end - 8) == 0, "truncate");
  ovl_file_close(&f);
  CHECK(ovl_file_open(prefix, true, &f) == 0, "reopen after tear");
  check_map_equals_model(&f.map, "after torn batch");
  CHECK(f.log_end == good_end, "torn batch cut at %llu, expected %llu",
        (unsigned long long)f.log_end, (unsigned long long)good_end);
  snprintf(path, sizeof path, "%s.map", prefix);
  CHECK(stat(path, &st) == 0 && (uint64_t)st.st_size == good_end,
        "torn tail truncated on disk");
  ovl_file_close(&f);
}

/* A record with a bad checksum at the end of the journal ends replay. */
static void
test_corrupt_record(void)
{
  struct ovl_record rec = { 7, 1, OVL_ZERO };
  unsigned char byte = 0xff;
  struct ovl_file f, g;
  uint64_t good_end;

  if (random_overlay(&f) < 0)
    return;
  good_end = f.log_end;
  CHECK(ovl_file_append(&f, &rec, 1) == 0, "append");
  CHECK(pwrite(f.map_fd, &byte, 1, f.log_end - 3) == 1, "corrupt");
  ovl_file_close(&f);
  CHECK(ovl_file_open(prefix, false, &g) == 0, "reopen after corruption");
  check_map_equals_model(&g.map, "after corrupt batch");
  CHECK(g.log_end == good_end, "replay stopped at %llu, expected %llu",
        (unsigned long long)g.log_end, (unsigned long long)good_end);
  ovl_file_close(&g);
}

static void
test_compaction(void)
{
  struct ovl_file f, g;
  uint64_t before;

  if (random_overlay(&f) < 0)
    return;
  before = f.log_end;
  CHECK(ovl_file_compact(&f, prefix) == 0, "compact");
  CHECK(f.log_end < before, "journal shrank from %llu to %llu",
        (unsigned long long)before, (unsigned long long)f.log_end);
  ovl_file_close(&f);
  CHECK(ovl_file_open(prefix, false, &g) == 0, "reopen after compaction");
  check_map_equals_model(&g.map, "after compaction");
  ovl_file_close(&g);
}

/* A map without its data file is an error, not a fresh overlay. */
static void
test_missing_data_file(void)
{
  struct ovl_file f, g;
  char path[300];

  if (random_overlay(&f) < 0)
    return;
  ovl_file_close(&f);
  snprintf(path, sizeof path, "%s.data", prefix);
  CHECK(unlink(path) == 0, "unlink data");
  CHECK(ovl_file_open(prefix, false, &g) == -EUCLEAN && strstr(g.damage, "missing"),
        "missing data file: %s", g.damage);
  CHECK(ovl_file_remove(prefix) == 0, "remove");
  CHECK(ovl_file_open(prefix, false, &g) == -ENOENT, "removed");
}

static void
test_damaged_header(void)
{
  struct ovl_header_info info = test_info();
  unsigned char byte = 'X';
  struct ovl_file f, g;

  ovl_file_remove(prefix);
  CHECK(ovl_file_create(prefix, &info, &f) == 0, "create");
  CHECK(pwrite(f.map_fd, &byte, 1, 200) == 1, "damage header");
  ovl_file_close(&f);
  CHECK(ovl_file_open(prefix, false, &g) == -EUCLEAN && strstr(g.damage, "header"),
        "damaged header refused: %s", g.damage);
}

/* The whole content of path, to compare before and after (malloc'd). */
static unsigned char *
slurp(const char *suffix, size_t *len)
{
  char path[300];
  unsigned char *buf;
  struct stat st;
  int fd;

  snprintf(path, sizeof path, "%s%s", prefix, suffix);
  fd = open(path, O_RDONLY);
  if (fd < 0 || fstat(fd, &st) < 0)
    return NULL;
  buf = malloc((size_t)st.st_size + 1);
  *len = (size_t)st.st_size;
  if (buf && read(fd, buf, *len) != (ssize_t)*len) {
    free(buf);
    buf = NULL;
  }
  close(fd);
  return buf;
}

/* Whether the overlay's files are still byte for byte map (mlen bytes)
 * and a data file of dlen bytes. */
static bool
unchanged(const unsigned char *map, size_t mlen, size_t dlen)
{
  size_t len;
  unsigned char *now = slurp(".map", &len);
  bool same = now && len == mlen && !memcmp(now, map, len);

  free(now);
  now = slurp(".data", &len);
  same = same && now && len == dlen;
  free(now);
  return same;
}

/* A batch damaged in the middle of the journal (a valid one after it) is
 * not a tear: the overlay is refused, writable or not, and its files are
 * left byte for byte as they were; salvage replays up to the damage. */
static void
test_damaged_batch_refused(void)
{
  struct ovl_record rec = { 7, 1, OVL_ZERO }, after = { 9, 1, OVL_ZERO };
  unsigned char byte = 0xff, *map;
  struct ovl_file f, g;
  size_t mlen, dlen;
  uint64_t good_end;

  if (random_overlay(&f) < 0)
    return;
  good_end = f.log_end;
  CHECK(ovl_file_append(&f, &rec, 1) == 0 && ovl_file_append(&f, &after, 1) == 0,
        "append");
  CHECK(pwrite(f.map_fd, &byte, 1, good_end + 20) == 1, "corrupt");
  ovl_file_close(&f);
  free(slurp(".data", &dlen));
  map = slurp(".map", &mlen);
  CHECK(ovl_file_open(prefix, true, &g) == -EUCLEAN, "a damaged batch refused");
  CHECK(strstr(g.damage, "damaged") && strstr(g.damage, "follows"), "why: %s", g.damage);
  CHECK(ovl_file_open(prefix, false, &g) == -EUCLEAN, "refused read-only too");
  CHECK(map && unchanged(map, mlen, dlen), "the files are unchanged");
  CHECK(ovl_file_open_salvage(prefix, &g) == 0 && g.log_end == good_end && g.damage[0],
        "salvage replays up to the damage (%llu, expected %llu)",
        (unsigned long long)g.log_end, (unsigned long long)good_end);
  check_map_equals_model(&g.map, "salvaged");
  ovl_file_close(&g);
  free(map);
}

/* A crash can leave unsynced appends with a page that never reached the
 * disk (zeros) and a later one that did: a tear, cut with its byte
 * count, though a well-formed batch follows the zeros. */
static void
test_zero_page_tear_cut(void)
{
  static struct ovl_record recs[600];
  static const unsigned char zeros[OVL_BLOCK_SIZE];
  struct ovl_record after = { 9, 1, OVL_ZERO };
  struct ovl_file f, g;
  uint64_t good_end, page;

  if (random_overlay(&f) < 0)
    return;
  good_end = f.log_end;
  for (size_t i = 0; i < 600; i++)
    recs[i] = (struct ovl_record){ 100 + i, 1, OVL_ZERO };
  CHECK(ovl_file_append(&f, recs, 600) == 0 && ovl_file_append(&f, &after, 1) == 0,
        "append");
  page = (good_end + OVL_BLOCK_SIZE) & ~(uint64_t)(OVL_BLOCK_SIZE - 1);
  CHECK(pwrite(f.map_fd, zeros, sizeof zeros, (off_t)page) == sizeof zeros,
        "lose a page");
  ovl_file_close(&f);
  CHECK(ovl_file_open(prefix, true, &g) == 0, "a torn tail with a lost page is opened");
  CHECK(g.log_end == good_end && g.torn_bytes > 0,
        "cut at %llu (expected %llu), %llu bytes", (unsigned long long)g.log_end,
        (unsigned long long)good_end, (unsigned long long)g.torn_bytes);
  check_map_equals_model(&g.map, "after a lost page");
  ovl_file_close(&g);
}

/* An empty map file is a creation a crash interrupted (made again:
 * -ENOENT), even with data in the data file: a power loss during the
 * first flush keeps that, and nothing was promised.  A map shorter than
 * its header is damage. */
static void
test_empty_map(void)
{
  struct ovl_header_info info = test_info();
  struct ovl_file f, g;
  char path[300];

  ovl_file_remove(prefix);
  CHECK(ovl_file_create(prefix, &info, &f) == 0, "create");
  CHECK(ftruncate(f.map_fd, 0) == 0, "empty the map");
  CHECK(ovl_file_open(prefix, true, &g) == -ENOENT, "an interrupted creation");
  CHECK(pwrite(f.data_fd, "data", 4, 8192) == 4, "write data");
  ovl_file_close(&f);
  CHECK(ovl_file_open(prefix, true, &g) == -ENOENT, "an interrupted first flush");
  CHECK(ovl_file_create(prefix, &info, &f) == 0, "create again");
  ovl_file_close(&f);
  snprintf(path, sizeof path, "%s.map", prefix);
  CHECK(truncate(path, 500) == 0, "a short map");
  CHECK(ovl_file_open(prefix, true, &g) == -EUCLEAN && strstr(g.damage, "500 bytes"),
        "a map shorter than its header refused: %s", g.damage);
}

/* A data file shorter than the map's data is refused; salvage opens it. */
static void
test_short_data_refused(void)
{
  struct ovl_record rec = { NBLOCKS - 2, 1, OVL_DATA };
  struct ovl_file f, g;

  if (random_overlay(&f) < 0)
    return;
  CHECK(ovl_file_append(&f, &rec, 1) == 0, "append");
  CHECK(ftruncate(f.data_fd, 3 * OVL_BLOCK_SIZE) == 0, "shorten the data file");
  ovl_file_close(&f);
  CHECK(ovl_file_open(prefix, true, &g) == -EUCLEAN &&
            strstr(g.damage, "data file is 12288"),
        "a short data file refused: %s", g.damage);
  CHECK(ovl_file_open_salvage(prefix, &g) == 0 && g.damage[0], "salvage opens it");
  CHECK(ovl_map_data_end(&g.map) == (uint64_t)(NBLOCKS - 1) * OVL_BLOCK_SIZE,
        "data end %llu", (unsigned long long)ovl_map_data_end(&g.map));
  ovl_file_close(&g);
}

#define TEST_SHA "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

static void
test_content_id_round_trip(void)
{
  struct ovl_header_info info = test_info(), hdr;
  struct ovl_file f, g;

  snprintf(info.base_sha256, sizeof info.base_sha256, "%s", TEST_SHA);
  ovl_file_remove(prefix);
  CHECK(ovl_file_create(prefix, &info, &f) == 0, "create");
  CHECK(ovl_file_read_header(prefix, &hdr) == 0 && strcmp(hdr.base_sha256, TEST_SHA) == 0,
        "content id read back as '%s'", hdr.base_sha256);
  CHECK(ovl_file_compact(&f, prefix) == 0, "compact");
  ovl_file_close(&f);
  CHECK(ovl_file_open(prefix, false, &g) == 0 &&
            strcmp(g.info.base_sha256, TEST_SHA) == 0 &&
            strcmp(g.info.base_path, info.base_path) == 0,
        "content id after compaction: '%s'", g.info.base_sha256);
  ovl_file_close(&g);
}

/* Bytes 640..1019 of the header are what overlays without a content id
 * have there: zeroes. */
static void
test_no_content_id(void)
{
  struct ovl_header_info info = test_info(), hdr;
  unsigned char h[1024], zero[380] = { 0 };
  struct ovl_file f;

  ovl_file_remove(prefix);
  CHECK(ovl_file_create(prefix, &info, &f) == 0, "create");
  CHECK(pread(f.map_fd, h, sizeof h, 0) == (ssize_t)sizeof h, "read header");
  CHECK(memcmp(h + 640, zero, sizeof zero) == 0, "no content id: the old layout");
  ovl_file_close(&f);
  CHECK(ovl_file_read_header(prefix, &hdr) == 0 && hdr.base_sha256[0] == '\0',
        "no content id read back as '%s'", hdr.base_sha256);
}

static void
test_bad_content_id(void)
{
  struct ovl_header_info info = test_info(), hdr;
  unsigned char h[1024];
  uint32_t crc;
  struct ovl_file f, g;

  ovl_file_remove(prefix);
  CHECK(ovl_file_create(prefix, &info, &f) == 0, "create");
  CHECK(pread(f.map_fd, h, sizeof h, 0) == (ssize_t)sizeof h, "read header");
  memcpy(h + 640, "not-a-sha256", 12);
  crc = htole32(crc32(0, h, sizeof h - 4));
  memcpy(h + sizeof h - 4, &crc, 4);
  CHECK(pwrite(f.map_fd, h, sizeof h, 0) == (ssize_t)sizeof h, "write header");
  ovl_file_close(&f);
  CHECK(ovl_file_read_header(prefix, &hdr) == -EBADMSG,
        "bad content id refused (header)");
  CHECK(ovl_file_open(prefix, false, &g) == -EUCLEAN && strstr(g.damage, "header"),
        "bad content id refused (open)");
}

static const struct {
  const char *name;
  void (*run)(void);
} tests[] = {
  { "an empty overlay is cheap, its header round-trips", test_empty_overlay },
  { "the map follows a model under random operations", test_map_follows_model },
  { "replay gives the map that was journaled", test_replay },
  { "a torn tail is cut, the rest kept", test_torn_tail },
  { "a bad checksum ends replay", test_corrupt_record },
  { "compaction keeps the map, shortens the journal", test_compaction },
  { "a map without its data file is refused", test_missing_data_file },
  { "a damaged header is refused", test_damaged_header },
  { "the content id round-trips and survives compaction", test_content_id_round_trip },
  { "a header without content id has the old layout", test_no_content_id },
  { "a content id that is not 64 hex digits is refused", test_bad_content_id },
  { "a damaged batch before a valid one is refused, files untouched",
    test_damaged_batch_refused },
  { "a tear with a lost page is cut, though a batch follows", test_zero_page_tear_cut },
  { "an empty map is made again, a short one refused", test_empty_map },
  { "a data file shorter than the map is refused", test_short_data_refused },
  { "a 1 TiB map costs memory for its writes only", test_large_sparse_map },
  { "a 64 GiB trim is set and undone a chunk at a time", test_large_trim },
};

int
main(void)
{
  int failed_tests = 0;

  if (!mkdtemp(dir)) {
    perror("mkdtemp");
    return 1;
  }
  snprintf(prefix, sizeof prefix, "%s/client", dir);
  for (size_t i = 0; i < ARRAY_SIZE(tests); i++) {
    int before = failures;
    tests[i].run();
    printf("%s: %s\n", failures == before ? "ok" : "FAIL", tests[i].name);
    failed_tests += failures != before;
  }
  ovl_file_remove(prefix);
  rmdir(dir);
  if (failures) {
    fprintf(stderr, "unit_overlay: %d of %zu properties failed (%d checks)\n",
            failed_tests, ARRAY_SIZE(tests), failures);
    return 1;
  }
  printf("unit_overlay: all %zu properties hold\n", ARRAY_SIZE(tests));
  return 0;
}
