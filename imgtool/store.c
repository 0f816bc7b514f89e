/* SPDX-License-Identifier: GPL-2.0-or-later */
/* imgtool: the versioned image store.
 *
 * Layout (shared with nbdsrv, which resolves `current` when a client
 * connects):
 *
 *   DIR/NAME/0001.img    a published version: mode 0444, never modified;
 *                        an ext4 or a squashfs image under the same name
 *                        (nbdsrv serves bytes either way)
 *   DIR/NAME/0001.meta   key=value lines: id, name, format, compression,
 *                        uuid, sha256, size, created, source, parent
 *   DIR/NAME/current     symlink to "NNNN.img" (relative)
 *   DIR/NAME/.lock       flock()ed by every imgtool that changes the store
 *
 * Publishing order, so that a crash or a failure never leaves a version
 * half-published: the image is complete, read-only and fsynced under a
 * temporary name; it is hard-linked to NNNN.img (link() never replaces an
 * existing file), its metadata is written the same way, the directory is
 * fsynced, and only then `current` moves: a new symlink current.tmp is
 * renamed over current, which is atomic for anyone resolving it.  A
 * version counts as published only with both its .img and .meta; leftovers
 * of an interrupted run (no .meta, or temporaries) are removed by gc.
 */
#include <config.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "imgtool.h"

int
store_lock(const char *namedir, bool create)
{
  char *p = xasprintf("%s/.lock", namedir);
  int fd, r = -EAGAIN;

  for (int tries = 0; tries < 10; tries++) {
    struct stat held, named;

    if (create && mkdir(namedir, 0755) < 0 && errno != EEXIST) {
      r = -errno;
      break;
    }
    fd = open(p, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
      r = -errno;
      break;
    }
    if (flock(fd, LOCK_EX) < 0) {
      r = -errno;
      close(fd);
      break;
    }
    /* A first build that failed removes its empty name directory, lock
     * file included (store_abandon); whoever waited on that lock now
     * holds one nobody else can find, so it locks again. */
    if (fstat(fd, &held) == 0 && stat(p, &named) == 0 && held.st_dev == named.st_dev &&
        held.st_ino == named.st_ino) {
      free(p);
      return fd;
    }
    close(fd);
  }
  free(p);
  return r;
}

void
store_unlock(int fd)
{
  if (fd >= 0)
    close(fd);
}

void
store_abandon(const char *namedir)
{
  DIR *d = opendir(namedir);
  struct dirent *de;
  bool empty = true;
  char *p;

  if (!d)
    return;
  while ((de = readdir(d)))
    if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0 &&
        strcmp(de->d_name, ".lock") != 0)
      empty = false;
  closedir(d);
  if (!empty)
    return;
  p = xasprintf("%s/.lock", namedir);
  unlink(p);
  free(p);
  rmdir(namedir);
}

char *
store_version_path(const char *namedir, unsigned id, const char *ext)
{
  return xasprintf("%s/%04u.%s", namedir, id, ext);
}

/* "0012.img" -> 12 (ext "img"); 0 if the name is not a version file. */
static unsigned
version_of(const char *name, const char *ext)
{
  unsigned v = 0;
  size_t i = 0;

  while (name[i] >= '0' && name[i] <= '9') {
    if (v > 100000000)
      return 0;
    v = v * 10 + (unsigned)(name[i] - '0');
    i++;
  }
  if (i < 4 || name[i] != '.' || strcmp(name + i + 1, ext) != 0)
    return 0;
  return v;
}

static int
cmp_uint(const void *a, const void *b)
{
  unsigned x = *(const unsigned *)a, y = *(const unsigned *)b;
  return x < y ? -1 : x > y;
}

/* Every id that has a file with this extension. */
static int
list_ext(const char *namedir, const char *ext, unsigned **ids, size_t *n)
{
  DIR *d = opendir(namedir);
  struct dirent *de;
  size_t cap = 0;

  *ids = NULL;
  *n = 0;
  if (!d)
    return -errno;
  while ((de = readdir(d))) {
    unsigned v = version_of(de->d_name, ext);
    if (!v)
      continue;
    XVEC_RESERVE(*ids, cap, *n + 1);
    (*ids)[(*n)++] = v;
  }
  closedir(d);
  if (*n > 1)
    qsort(*ids, *n, sizeof **ids, cmp_uint);
  return 0;
}

int
store_list(const char *namedir, unsigned **ids, size_t *n)
{
  int r = list_ext(namedir, "img", ids, n);
  size_t j = 0;

  if (r < 0)
    return r;
  for (size_t i = 0; i < *n; i++) {
    char *m = store_version_path(namedir, (*ids)[i], "meta");
    if (access(m, F_OK) == 0)
      (*ids)[j++] = (*ids)[i];
    free(m);
  }
  *n = j;
  return 0;
}

int
store_current(const char *namedir, unsigned *id)
{
  char *p = xasprintf("%s/current", namedir);
  char target[256];
  ssize_t len = readlink(p, target, sizeof target - 1);

  free(p);
  *id = 0;
  if (len < 0)
    return errno == ENOENT ? 0 : -errno;
  target[len] = '\0';
  *id = version_of(target, "img");
  return *id ? 0 : -EINVAL;
}

bool
store_is_namedir(const char *path)
{
  char *p = xasprintf("%s/current", path);
  struct stat st;
  bool yes = lstat(p, &st) == 0 && S_ISLNK(st.st_mode);
  unsigned *ids;
  size_t n;

  free(p);
  if (yes)
    return true;
  if (list_ext(path, "img", &ids, &n) < 0)
    return false;
  free(ids);
  return n > 0;
}

int
store_read_meta(const char *namedir, unsigned id, struct version_meta *m)
{
  char *p = store_version_path(namedir, id, "meta");
  FILE *f = fopen(p, "re");
  char line[1400];

  free(p);
  memset(m, 0, sizeof *m);
  m->id = id;
  /* Versions from before the format was recorded are all ext4. */
  snprintf(m->format, sizeof m->format, "ext4");
  snprintf(m->compression, sizeof m->compression, "none");
  if (!f)
    return -errno;
  while (fgets(line, sizeof line, f)) {
    char *eq = strchr(line, '='), *v;
    size_t l = strlen(line);

    if (l && line[l - 1] == '\n')
      line[l - 1] = '\0';
    if (!eq)
      continue;
    *eq = '\0';
    v = eq + 1;
    if (strcmp(line, "name") == 0)
      snprintf(m->name, sizeof m->name, "%s", v);
    else if (strcmp(line, "uuid") == 0)
      snprintf(m->uuid, sizeof m->uuid, "%s", v);
    else if (strcmp(line, "sha256") == 0)
      snprintf(m->sha256, sizeof m->sha256, "%s", v);
    else if (strcmp(line, "format") == 0)
      snprintf(m->format, sizeof m->format, "%s", v);
    else if (strcmp(line, "compression") == 0)
      snprintf(m->compression, sizeof m->compression, "%s", v);
    else if (strcmp(line, "size") == 0)
      m->size = strtoull(v, NULL, 10);
    else if (strcmp(line, "created") == 0)
      m->created = strtoll(v, NULL, 10);
    else if (strcmp(line, "source") == 0)
      snprintf(m->source, sizeof m->source, "%s", v);
    else if (strcmp(line, "parent") == 0)
      m->parent = (unsigned)strtoul(v, NULL, 10);
  }
  fclose(f);
  return m->sha256[0] ? 0 : -EINVAL;
}

/* The filesystem of the image at path: its format, compression and (ext4)
 * UUID; what is wrong with it in why. */
static int
image_identity(const char *path, struct image_fs *fs, char *why, size_t len)
{
  int fd = open(path, O_RDONLY | O_CLOEXEC), r;

  if (fd < 0) {
    snprintf(why, len, "%s", strerror(errno));
    return -errno;
  }
  r = image_fs_read(fd, fs, why, len);
  close(fd);
  return r;
}

/* Metadata values are single lines. */
static void
clean_value(char *s)
{
  for (; *s; s++)
    if (*s == '\n' || *s == '\r')
      *s = ' ';
}

int
store_set_current(const char *namedir, unsigned id)
{
  char *target = xasprintf("%04u.img", id);
  char *cur_tmp = xasprintf("%s/current.tmp", namedir);
  char *cur = xasprintf("%s/current", namedir);
  int r = 0;

  /* A leftover of an interrupted run would make symlink() fail. */
  unlink(cur_tmp);
  if (symlink(target, cur_tmp) < 0) {
    r = -errno;
  } else if (rename(cur_tmp, cur) < 0) {
    r = -errno;
    unlink(cur_tmp);
  } else {
    fsync_dir(namedir);
  }
  free(target);
  free(cur_tmp);
  free(cur);
  return r;
}

/* The image's superblock is sane and of the format its metadata says. */
static int
check_image_fs(const char *img, const struct version_meta *m, char *msg, size_t len)
{
  struct image_fs fs;
  char why[160];
  int r = image_identity(img, &fs, why, sizeof why);

  if (r < 0) {
    snprintf(msg, len, "%s", why);
    return r;
  }
  if (strcmp(image_format_name(fs.format), m->format) ||
      strcmp(fs.compression, m->compression)) {
    snprintf(msg, len, "holds %s (%s), published as %s (%s)",
             image_format_name(fs.format), fs.compression, m->format, m->compression);
    return -EBADMSG;
  }
  return 0;
}

int
store_check_version(const char *namedir, unsigned id, char *msg, size_t len)
{
  char *img = store_version_path(namedir, id, "img");
  struct version_meta m;
  char sha[65];
  uint64_t size = 0;
  struct stat st;
  int r;

  if ((r = store_read_meta(namedir, id, &m)) < 0) {
    snprintf(msg, len, "metadata unreadable");
  } else if ((r = sha256_file(img, sha, &size)) < 0) {
    snprintf(msg, len, "%s", strerror(-r));
  } else if (size != m.size || strcmp(sha, m.sha256) != 0) {
    snprintf(msg, len,
             "checksum mismatch (sha256 %s, published %s): the "
             "image was modified",
             sha, m.sha256);
    r = -EBADMSG;
  } else if (stat(img, &st) == 0 && (st.st_mode & 0222)) {
    snprintf(msg, len,
             "writable (mode %04o), published versions must be "
             "read-only",
             (unsigned)(st.st_mode & 07777));
    r = -EPERM;
  } else if ((r = check_image_fs(img, &m, msg, len)) < 0) {
    /* msg says it */
  } else {
    snprintf(msg, len, "sha256=%s", sha);
  }
  free(img);
  return r;
}

/* The next version's id: above any version file, published or not, so
 * that a leftover of a crashed run is never reused under a new meaning. */
static int
next_version_id(const char *namedir, unsigned *id)
{
  unsigned *ids;
  size_t n;
  int r = list_ext(namedir, "img", &ids, &n);

  if (r < 0)
    return r;
  *id = n ? ids[n - 1] : 0;
  free(ids);
  r = list_ext(namedir, "meta", &ids, &n);
  if (r < 0)
    return r;
  if (n && ids[n - 1] > *id)
    *id = ids[n - 1];
  free(ids);
  (*id)++;
  return 0;
}

/* Writes version id's metadata, for the image at path (read-only and
 * synced by now), into the new unnamed file mf. */
static int
write_meta(const char *namedir, unsigned id, const char *path, const char *source,
           unsigned parent, struct outfile *mf)
{
  char sha[65], why[160], *meta, *src;
  const char *base = strrchr(namedir, '/');
  struct image_fs fs;
  uint64_t size = 0;
  FILE *f;
  int r = sha256_file(path, sha, &size);

  if (r < 0)
    return r;
  r = image_identity(path, &fs, why, sizeof why);
  if (r < 0) {
    log_err("the new version in %s is not an image: %s", namedir, why);
    return r;
  }
  meta = store_version_path(namedir, id, "meta");
  r = outfile_create(meta, 0444, mf);
  free(meta);
  if (r < 0)
    return r;
  f = fdopen(dup(mf->fd), "w");
  if (!f)
    return -errno;
  src = xstrdup(source);
  clean_value(src);
  fprintf(f,
          "id=%04u\nname=%s\nformat=%s\ncompression=%s\nuuid=%s\n"
          "sha256=%s\nsize=%llu\ncreated=%lld\nsource=%s\n",
          id, base ? base + 1 : namedir, image_format_name(fs.format), fs.compression,
          fs.uuid, sha, (unsigned long long)size, (long long)time(NULL), src);
  free(src);
  if (parent)
    fprintf(f, "parent=%04u\n", parent);
  r = fflush(f) != 0 || fsync(fileno(f)) < 0 ? -errno : 0;
  fclose(f);
  return r;
}

/* Names the image and its metadata as version id and points current at
 * it; on failure, removes the names it made. */
static int
link_version(const char *namedir, unsigned id, struct outfile *image, struct outfile *mf)
{
  char *img = store_version_path(namedir, id, "img");
  char *meta = store_version_path(namedir, id, "meta");
  bool img_made = false, meta_made = false;
  int r;

  /* From here until current names the new version, a signal must not cut
   * in: the cleanup handler knows nothing of these names. */
  signals_hold(true);
  r = outfile_link(image, img);
  if (!r) {
    img_made = true;
    r = outfile_link(mf, meta);
  }
  if (!r) {
    meta_made = true;
    r = fsync_dir(namedir);
  }
  if (!r)
    r = store_set_current(namedir, id);
  if (r < 0 && img_made)
    unlink(img);
  if (r < 0 && meta_made)
    unlink(meta);
  signals_hold(false);
  if (!r) {
    printf("%s\n", img);
    fflush(stdout);
  }
  free(img);
  free(meta);
  return r;
}

int
store_publish(const char *namedir, struct outfile *image, const char *source,
              unsigned parent, unsigned *id_out)
{
  struct outfile mf = { .fd = -1 };
  unsigned id = 0;
  int r = next_version_id(namedir, &id);

  if (!r && (fchmod(image->fd, 0444) < 0 || fsync(image->fd) < 0))
    r = -errno;
  if (!r)
    r = write_meta(namedir, id, image->path, source, parent, &mf);
  if (!r)
    r = link_version(namedir, id, image, &mf);
  if (r < 0)
    log_err("cannot publish a new version in %s: %s", namedir, strerror(-r));
  else
    *id_out = id;
  outfile_close(&mf);
  return r;
}

int
store_names(const char *store, struct strv *names)
{
  struct dirent *de;
  DIR *d = opendir(store);

  if (!d)
    return -errno;
  while ((de = readdir(d))) {
    char *nd;
    if (de->d_name[0] == '.')
      continue;
    nd = xasprintf("%s/%s", store, de->d_name);
    if (store_is_namedir(nd))
      strv_push(names, nd);
    else
      free(nd);
  }
  closedir(d);
  /* Stable order whatever the directory's. */
  strv_sort(names);
  return 0;
}

bool
store_name_valid(const char *name)
{
  return *name && !strchr(name, '/') && name[0] != '.';
}

char *
store_name_dir(const char *store, const char *name)
{
  char *nd = xasprintf("%s/%s", store, name);
  struct stat st;

  if (stat(nd, &st) == 0 && S_ISDIR(st.st_mode))
    return nd;
  if (stat(store, &st) < 0)
    log_err("no store %s (%s): give the --store DIR images were built "
            "into",
            store, strerror(errno));
  else
    log_err("no image %s in store %s (%s is missing)", name, store, nd);
  free(nd);
  return NULL;
}

int
store_parse_version(const char *s, unsigned *id)
{
  unsigned v = version_of(s, "img");
  size_t digits = strspn(s, "0123456789");

  /* "2", "0002" or "0002.img". */
  if (!v && digits && !s[digits] && digits <= 9)
    v = (unsigned)strtoul(s, NULL, 10);
  *id = v;
  return v ? 0 : -EINVAL;
}

char *
store_format_ids(const unsigned *ids, size_t n)
{
  char *out = xstrdup(""), *next;

  /* Long lists keep their ends: the reader wants the range and a count. */
  for (size_t i = 0; i < n; i++) {
    if (n > 6 && i == 2) {
      next = xasprintf("%s, ...", out);
      i = n - 2;
    } else {
      next = xasprintf("%s%s%04u", out, i ? ", " : "", ids[i]);
    }
    free(out);
    out = next;
  }
  if (n > 6) {
    next = xasprintf("%s (%zu versions)", out, n);
    free(out);
    out = next;
  }
  return out;
}
