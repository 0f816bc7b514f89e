/* nbdsrv: base images, opened once and shared by every client.
 *
 * Every overlay pins one image version by its canonical path.  All
 * overlays on the same version share one read-only, buffered descriptor,
 * so the kernel keeps one copy of the image in the page cache however many
 * clients read it.  An export's image is either a file or an image-store
 * directory, whose `current` symlink names the version new clients get.
 */
#include <config.h>

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

#include "log.h"
#include "nbdsrv.h"

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
  img->refs = 1;
  img->next = images;
  images = img;
  log_debug("opened base image %s (%llu bytes)", path,
            (unsigned long long)img->size);
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
