/* SPDX-License-Identifier: GPL-2.0-or-later */
/* imgtool: SHA-256 of whole files, for image checksums in the store.
 *
 * The hash itself is nettle's (which picks the CPU's SHA instructions at
 * run time where there are any); this file hashes a published image
 * whole, holes included, without reading the holes.
 */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "imgtool.h"

void
sha256_hex(const uint8_t d[SHA256_DIGEST_SIZE], char out[65])
{
  static const char hex[] = "0123456789abcdef";

  for (int i = 0; i < SHA256_DIGEST_SIZE; i++) {
    out[2 * i] = hex[d[i] >> 4];
    out[2 * i + 1] = hex[d[i] & 15];
  }
  out[64] = '\0';
}

void
sha256_u64(struct sha256_ctx *s, uint64_t v)
{
  uint8_t b[8];

  for (int i = 0; i < 8; i++)
    b[i] = (uint8_t)(v >> (8 * i));
  sha256_update(s, sizeof b, b);
}

/* Hashes len zero bytes (a hole of the file) without reading them. */
static void
hash_zeros(struct sha256_ctx *s, const uint8_t *zeros, size_t zlen, uint64_t len)
{
  while (len) {
    size_t n = len > zlen ? zlen : (size_t)len;
    sha256_update(s, n, zeros);
    len -= n;
  }
}

int
sha256_file(const char *path, char out[65], uint64_t *size)
{
  enum { BUFSZ = 1 << 20 };
  struct sha256_ctx s;
  struct stat st;
  uint8_t d[SHA256_DIGEST_SIZE], *zeros;
  uint64_t pos = 0;
  char *buf;
  int fd, r = 0;

  fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return -errno;
  if (fstat(fd, &st) < 0) {
    r = -errno;
    close(fd);
    return r;
  }
  posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
  buf = xmalloc(BUFSZ);
  zeros = xcalloc(1, BUFSZ);
  sha256_init(&s);
  /* Images are mostly holes: hash those from memory, read only data. */
  while (pos < (uint64_t)st.st_size && !r) {
    off_t data = lseek(fd, (off_t)pos, SEEK_DATA), hole;

    if (data < 0 && errno == ENXIO) {
      hash_zeros(&s, zeros, BUFSZ, (uint64_t)st.st_size - pos);
      pos = (uint64_t)st.st_size;
      break;
    }
    if (data < 0) {
      data = (off_t)pos; /* no SEEK_DATA: read everything */
      hole = (off_t)st.st_size;
    } else {
      hole = lseek(fd, data, SEEK_HOLE);
      if (hole < 0 || hole > st.st_size)
        hole = st.st_size;
    }
    hash_zeros(&s, zeros, BUFSZ, (uint64_t)data - pos);
    pos = (uint64_t)data;
    while (pos < (uint64_t)hole) {
      size_t want = (uint64_t)hole - pos > BUFSZ ? BUFSZ : (size_t)((uint64_t)hole - pos);
      ssize_t n = full_pread(fd, buf, want, pos);
      if (n < 0) {
        r = (int)n;
        break;
      }
      if ((size_t)n != want) {
        r = -EIO; /* the file shrank under us */
        break;
      }
      sha256_update(&s, want, (const uint8_t *)buf);
      pos += want;
    }
  }
  free(buf);
  free(zeros);
  close(fd);
  if (r)
    return r;
  sha256_digest(&s, sizeof d, d);
  sha256_hex(d, out);
  if (size)
    *size = pos;
  return 0;
}
