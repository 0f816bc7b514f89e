/* SPDX-License-Identifier: GPL-2.0-or-later */
/* nbdsrv: base images, opened once and shared by every client.
 *
 * Every overlay pins one image version by its canonical path.  All
 * overlays on the same version share one read-only, buffered descriptor,
 * so the kernel keeps one copy of the image in the page cache however many
 * clients read it.  An export's image is either a file or an image-store
 * directory, whose `current` symlink names the version new clients get.
 *
 * Identity.  Each image has one line that says which version it is, sent
 * to clients of shared read-only exports as NBD_INFO_DESCRIPTION (the
 * agent tells from it that its base changed) and shown by nbdsrv ctl:
 * "nbdroot-base NAME VERSION ID".  For a version of an image store, NAME,
 * VERSION and ID come from the .meta beside it: its name, its number
 * ("0003") and "sha256:" and its checksum.  Any other image file is
 * "nbdroot-base FILE - file:SIZE:MTIME_NS", FILE its name without the
 * directory: no checksum is computed at connect time.
 */
#include <config.h>

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io.h"
#include "log.h"
#include "nbdsrv.h"
#include "util.h"

static pthread_mutex_t images_lock = PTHREAD_MUTEX_INITIALIZER;
static struct image *images;

int
image_resolve(const struct export *exp, char *path, size_t len)
{
  char buf[PATH_MAX], real[PATH_MAX];
  size_t real_len;
  struct stat st;

  if (stat(exp->image, &st) < 0)
    return -errno;
  if (S_ISDIR(st.st_mode)) {
    int n = snprintf(buf, sizeof buf, "%s/current", exp->image);
    if (n < 0 || (size_t)n >= sizeof buf)
      return -ENAMETOOLONG;
  } else {
    snprintf(buf, sizeof buf, "%s", exp->image);
  }
  /* realpath() needs PATH_MAX bytes; the caller's buffer may be less. */
  if (!realpath(buf, real))
    return -errno;
  real_len = strlen(real);
  if (real_len >= len)
    return -ENAMETOOLONG;
  memcpy(path, real, real_len + 1);
  return 0;
}

/* Whether the n bytes at s make one word of the identity line: no
 * blanks, nothing a client's console would mangle. */
static bool
is_word(const char *s, size_t n)
{
  for (size_t i = 0; i < n; i++)
    if (!isalnum((unsigned char)s[i]) && !strchr("-_.+:", s[i]))
      return false;
  return n > 0;
}

/* The value of key in a store's .meta text ("key=value" lines), into
 * out: true when it is there, is a word and fits. */
static bool
meta_value(const char *text, const char *key, char *out, size_t len)
{
  size_t kl = strlen(key);

  for (const char *l = text; l && *l; l = strchr(l, '\n'), l = l ? l + 1 : NULL) {
    size_t n = strcspn(l, "\n");
    if (n > kl && l[kl] == '=' && strncmp(l, key, kl) == 0 && n - kl - 1 < len &&
        is_word(l + kl + 1, n - kl - 1)) {
      memcpy(out, l + kl + 1, n - kl - 1);
      out[n - kl - 1] = '\0';
      return out[0] != '\0';
    }
  }
  return false;
}

/* The text of the store's NNNN.meta beside the version at path NNNN.img
 * into text: its length, or 0 when there is none. */
static ssize_t
read_meta_of(const char *path, char *text, size_t len)
{
  char meta[PATH_MAX];
  size_t l = strlen(path);
  ssize_t n;

  if (l <= 4 || !ends_with(path, ".img") ||
      format_path(meta, sizeof meta, "%.*s.meta", (int)(l - 4), path) < 0)
    return 0;
  n = read_small_file(meta, text, len);
  return n > 0 ? n : 0;
}

/* Whether s is a content id: 64 lower-case hex digits. */
static bool
is_sha256(const char *s)
{
  return strlen(s) == 64 && strspn(s, "0123456789abcdef") == 64;
}

int
image_content_id(const char *path, char *sha, size_t len)
{
  char text[1024];

  if (read_meta_of(path, text, sizeof text) > 0 && meta_value(text, "sha256", sha, len) &&
      is_sha256(sha))
    return 0;
  sha[0] = '\0';
  return -ENOENT;
}

/* img->identity and img->sha256, from the store's NNNN.meta beside
 * NNNN.img if there is one (see the top of this file). */
static void
image_identify(struct image *img)
{
  char text[1024], name[128], id[16];
  const char *file = strrchr(img->path, '/');

  file = file ? file + 1 : img->path;
  if (read_meta_of(img->path, text, sizeof text) > 0 &&
      meta_value(text, "name", name, sizeof name) &&
      meta_value(text, "id", id, sizeof id) &&
      meta_value(text, "sha256", img->sha256, sizeof img->sha256) &&
      is_sha256(img->sha256) &&
      format_path(img->identity, sizeof img->identity, "nbdroot-base %s %s sha256:%s",
                  name, id, img->sha256) == 0)
    return;
  img->sha256[0] = '\0';
  snprintf(img->identity, sizeof img->identity, "nbdroot-base %.64s - file:%llu:%lld",
           file, (unsigned long long)img->size, (long long)img->mtime_ns);
}

int
image_get(const char *path, struct image **out)
{
  struct image *img;
  struct stat st;
  int r = 0;

  pthread_mutex_lock(&images_lock);
  for (img = images; img; img = img->next)
    if (strcmp(img->path, path) == 0) {
      img->refs++;
      goto out;
    }
  img = calloc(1, sizeof *img);
  if (!img) {
    r = -ENOMEM;
    goto out;
  }
  snprintf(img->path, sizeof img->path, "%s", path);
  img->fd = open(path, O_RDONLY | O_CLOEXEC);
  if (img->fd < 0 || fstat(img->fd, &st) < 0) {
    r = -errno;
    goto fail;
  }
  if (S_ISBLK(st.st_mode)) {
    if (ioctl(img->fd, BLKGETSIZE64, &img->size) < 0) {
      r = -errno;
      goto fail;
    }
  } else if (S_ISREG(st.st_mode)) {
    img->size = st.st_size;
  } else {
    r = -EINVAL;
    goto fail;
  }
  img->mtime_ns = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
  image_identify(img);
  img->refs = 1;
  img->next = images;
  images = img;
  log_debug("opened base image %s (%llu bytes)", path, (unsigned long long)img->size);
  goto out;
fail:
  if (img->fd >= 0)
    close(img->fd);
  free(img);
  img = NULL;
out:
  pthread_mutex_unlock(&images_lock);
  *out = img;
  return r;
}

void
image_put(struct image *img)
{
  struct image **pp;

  if (!img)
    return;
  pthread_mutex_lock(&images_lock);
  if (--img->refs == 0) {
    for (pp = &images; *pp; pp = &(*pp)->next)
      if (*pp == img) {
        *pp = img->next;
        break;
      }
    close(img->fd);
    free(img);
  }
  pthread_mutex_unlock(&images_lock);
}
