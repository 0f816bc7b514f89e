/* imgtool: SHA-256 (FIPS 180-4), for image checksums in the store and for
 * deriving a reproducible filesystem UUID from a tree's metadata.
 *
 * Written here rather than pulled from a crypto library because configure
 * only provides libext2fs and zlib.  Every published version is hashed
 * whole (holes included), which made the portable block function the
 * slowest part of `imgtool build --store`; on x86-64 CPUs with the SHA
 * extensions the blocks go through those instead (chosen at run time with
 * cpuid, several times faster), and the portable function stays the
 * reference everywhere else.
 */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "imgtool.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define HAVE_SHA_NI 1
#include <cpuid.h>
#include <immintrin.h>
#endif

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

static void
sha256_blocks_portable(uint32_t h[8], const uint8_t *p, size_t n)
{
  for (; n; n--, p += 64)
    sha256_block(h, p);
}

#ifdef HAVE_SHA_NI
/* The SHA extensions keep the state as two vectors, ABEF and CDGH, and
 * do two rounds per sha256rnds2 with the message-plus-constant words in
 * the low half of its third operand.  Each group of four rounds i uses
 * W[4i..4i+3]; from the fifth group on, sha256msg1 adds sigma0 of the
 * words 15 back, the words 7 back are added by hand, and sha256msg2 adds
 * sigma1 of the words 2 back (FIPS 180-4 6.2.2 step 1). */
__attribute__((target("sha,sse4.1,ssse3"))) static void
sha256_blocks_shani(uint32_t h[8], const uint8_t *p, size_t n)
{
  const __m128i bswap = _mm_set_epi64x(0x0c0d0e0f08090a0bll,
                                       0x0405060700010203ll);
  __m128i abef, cdgh, t;

  t = _mm_shuffle_epi32(_mm_loadu_si128((const __m128i *)&h[0]), 0xb1);
  cdgh = _mm_shuffle_epi32(_mm_loadu_si128((const __m128i *)&h[4]), 0x1b);
  abef = _mm_alignr_epi8(t, cdgh, 8);
  cdgh = _mm_blend_epi16(cdgh, t, 0xf0);

  for (; n; n--, p += 64) {
    __m128i w[4], abef0 = abef, cdgh0 = cdgh;

    for (int g = 0; g < 16; g++) {
      __m128i m;

      if (g < 4) {
        w[g] = _mm_shuffle_epi8(
          _mm_loadu_si128((const __m128i *)(p + 16 * g)), bswap);
      } else {
        /* w[g%4] holds the group 4 back; the others follow in order. */
        __m128i w4 = w[g & 3], w3 = w[(g + 1) & 3], w2 = w[(g + 2) & 3],
                w1 = w[(g + 3) & 3];
        t = _mm_add_epi32(_mm_sha256msg1_epu32(w4, w3),
                          _mm_alignr_epi8(w1, w2, 4));
        w[g & 3] = _mm_sha256msg2_epu32(t, w1);
      }
      m = _mm_add_epi32(w[g & 3],
                        _mm_loadu_si128((const __m128i *)&K[4 * g]));
      cdgh = _mm_sha256rnds2_epu32(cdgh, abef, m);
      abef = _mm_sha256rnds2_epu32(abef, cdgh, _mm_shuffle_epi32(m, 0x0e));
    }
    abef = _mm_add_epi32(abef, abef0);
    cdgh = _mm_add_epi32(cdgh, cdgh0);
  }

  t = _mm_shuffle_epi32(abef, 0x1b);
  cdgh = _mm_shuffle_epi32(cdgh, 0xb1);
  _mm_storeu_si128((__m128i *)&h[0], _mm_blend_epi16(t, cdgh, 0xf0));
  _mm_storeu_si128((__m128i *)&h[4], _mm_alignr_epi8(cdgh, t, 8));
}

static bool
cpu_has_shani(void)
{
  unsigned a, b, c, d;

  if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & bit_SSE4_1) ||
      !(c & bit_SSSE3))
    return false;
  if (!__get_cpuid_count(7, 0, &a, &b, &c, &d))
    return false;
  return (b & (1u << 29)) != 0; /* CPUID.7.0:EBX.SHA */
}
#endif

/* The block function, picked on first use.  IMGTOOL_SHA256=portable
 * forces the portable one (tests compare the two). */
static void
sha256_blocks(uint32_t h[8], const uint8_t *p, size_t n)
{
  static void (*fn)(uint32_t *, const uint8_t *, size_t);

  if (!fn) {
    const char *force = getenv("IMGTOOL_SHA256");
    fn = sha256_blocks_portable;
#ifdef HAVE_SHA_NI
    if (!(force && strcmp(force, "portable") == 0) && cpu_has_shani())
      fn = sha256_blocks_shani;
#else
    (void)force;
#endif
  }
  fn(h, p, n);
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
    sha256_blocks(s->h, s->buf, 1);
    s->fill = 0;
  }
  if (len >= 64) {
    sha256_blocks(s->h, p, len / 64);
    p += len & ~(size_t)63;
    len &= 63;
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

/* Hashes len zero bytes (a hole of the file) without reading them. */
static void
hash_zeros(struct sha256 *s, const uint8_t *zeros, size_t zlen, uint64_t len)
{
  while (len) {
    size_t n = len > zlen ? zlen : (size_t)len;
    sha256_update(s, zeros, n);
    len -= n;
  }
}

int
sha256_file(const char *path, char out[65], uint64_t *size)
{
  enum { BUFSZ = 1 << 20 };
  struct sha256 s;
  struct stat st;
  uint8_t d[32], *zeros;
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
      size_t want = (uint64_t)hole - pos > BUFSZ ? BUFSZ
                                                  : (size_t)((uint64_t)hole - pos);
      ssize_t n = full_pread(fd, buf, want, pos);
      if (n < 0) {
        r = (int)n;
        break;
      }
      if ((size_t)n != want) {
        r = -EIO; /* the file shrank under us */
        break;
      }
      sha256_update(&s, buf, want);
      pos += want;
    }
  }
  free(buf);
  free(zeros);
  close(fd);
  if (r)
    return r;
  sha256_final(&s, d);
  sha256_hex(d, out);
  if (size)
    *size = pos;
  return 0;
}
