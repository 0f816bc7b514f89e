/* imgtool: SHA-256 (FIPS 180-4), for image checksums in the store and for
 * deriving a reproducible filesystem UUID from a tree's metadata.
 *
 * Written here rather than pulled from a crypto library because configure
 * only provides libext2fs and zlib, and one portable block function is all
 * imgtool needs.
 */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "imgtool.h"

static const uint32_t K[64] = {
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1,
  0x923f82a4, 0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3,
  0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786,
  0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
  0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147,
  0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13,
  0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
  0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
  0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a,
  0x5b9cca4f, 0x682e6ff3, 0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208,
  0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

#define ROR(x, n) (((x) >> (n)) | ((x) << (32 - (n))))

static void
sha256_block(uint32_t h[8], const uint8_t *p)
{
  uint32_t w[64], a, b, c, d, e, f, g, hh;
  int i;

  for (i = 0; i < 16; i++)
    w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 |
           (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
  for (i = 16; i < 64; i++) {
    uint32_t s0 = ROR(w[i - 15], 7) ^ ROR(w[i - 15], 18) ^ (w[i - 15] >> 3);
    uint32_t s1 = ROR(w[i - 2], 17) ^ ROR(w[i - 2], 19) ^ (w[i - 2] >> 10);
    w[i] = w[i - 16] + s0 + w[i - 7] + s1;
  }
  a = h[0]; b = h[1]; c = h[2]; d = h[3];
  e = h[4]; f = h[5]; g = h[6]; hh = h[7];
  for (i = 0; i < 64; i++) {
    uint32_t S1 = ROR(e, 6) ^ ROR(e, 11) ^ ROR(e, 25);
    uint32_t ch = (e & f) ^ (~e & g);
    uint32_t t1 = hh + S1 + ch + K[i] + w[i];
    uint32_t S0 = ROR(a, 2) ^ ROR(a, 13) ^ ROR(a, 22);
    uint32_t maj = (a & b) ^ (a & c) ^ (b & c);
    uint32_t t2 = S0 + maj;
    hh = g; g = f; f = e; e = d + t1;
    d = c; c = b; b = a; a = t1 + t2;
  }
  h[0] += a; h[1] += b; h[2] += c; h[3] += d;
  h[4] += e; h[5] += f; h[6] += g; h[7] += hh;
}

void
sha256_init(struct sha256 *s)
{
  static const uint32_t iv[8] = {
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
    0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
  };
  memcpy(s->h, iv, sizeof iv);
  s->len = 0;
  s->fill = 0;
}

void
sha256_update(struct sha256 *s, const void *data, size_t len)
{
  const uint8_t *p = data;

  s->len += len;
  if (s->fill) {
    size_t n = 64 - s->fill < len ? 64 - s->fill : len;
    memcpy(s->buf + s->fill, p, n);
    s->fill += n;
    p += n;
    len -= n;
    if (s->fill < 64)
      return;
    sha256_block(s->h, s->buf);
    s->fill = 0;
  }
  while (len >= 64) {
    sha256_block(s->h, p);
    p += 64;
    len -= 64;
  }
  memcpy(s->buf, p, len);
  s->fill = len;
}

void
sha256_final(struct sha256 *s, uint8_t out[32])
{
  uint64_t bits = s->len * 8;
  uint8_t pad[72];
  size_t padlen = (s->fill < 56 ? 56 : 120) - s->fill;

  memset(pad, 0, sizeof pad);
  pad[0] = 0x80;
  for (int i = 0; i < 8; i++)
    pad[padlen + i] = (uint8_t)(bits >> (56 - 8 * i));
  sha256_update(s, pad, padlen + 8);
  for (int i = 0; i < 8; i++) {
    out[4 * i] = (uint8_t)(s->h[i] >> 24);
    out[4 * i + 1] = (uint8_t)(s->h[i] >> 16);
    out[4 * i + 2] = (uint8_t)(s->h[i] >> 8);
    out[4 * i + 3] = (uint8_t)s->h[i];
  }
}

void
sha256_hex(const uint8_t d[32], char out[65])
{
  static const char hex[] = "0123456789abcdef";

  for (int i = 0; i < 32; i++) {
    out[2 * i] = hex[d[i] >> 4];
    out[2 * i + 1] = hex[d[i] & 15];
  }
  out[64] = '\0';
}

int
sha256_file(const char *path, char out[65], uint64_t *size)
{
  enum { BUFSZ = 1 << 20 };
  struct sha256 s;
  uint8_t d[32];
  uint64_t total = 0;
  char *buf;
  int fd, r = 0;

  fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return -errno;
  posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
  buf = xmalloc(BUFSZ);
  sha256_init(&s);
  for (;;) {
    ssize_t n = read(fd, buf, BUFSZ);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      r = -errno;
      break;
    }
    if (n == 0)
      break;
    sha256_update(&s, buf, (size_t)n);
    total += (uint64_t)n;
  }
  free(buf);
  close(fd);
  if (r)
    return r;
  sha256_final(&s, d);
  sha256_hex(d, out);
  if (size)
    *size = total;
  return 0;
}
