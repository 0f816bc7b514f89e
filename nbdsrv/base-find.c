/* SPDX-License-Identifier: GPL-2.0-or-later */
/* nbdsrv: the base version an overlay or a base pin was made on, found
 * again when the client comes back.
 *
 * Several servers share one overlay directory, and each has its own copy
 * of the image store: at another path maybe, and with other mtimes even
 * where the bytes are the same.  So a base is recorded with its content
 * id, the sha256 its store published it with (NNNN.meta), and found by
 * it: the file at the recorded path when its .meta has that content id,
 * else the version of the export's store with the same file name, else
 * any version of that store with that content id.  A version whose
 * content differs is never served in its place, whatever its path.  The
 * .meta is trusted for the content: published versions are read-only,
 * and imgtool verify checks that they still match it.
 *
 * A base recorded without a content id (a plain image file, or an overlay
 * made before content ids were recorded) is what it always was: the file
 * at the recorded path, with the recorded size and mtime.
 */
#include <config.h>

#include <dirent.h>
#include <errno.h>
#include <libgen.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "log.h"
#include "nbdsrv.h"
#include "util.h"

/* The base at path, when it has the content and size ref says: 1 (then
 * *out holds it), 0 when it is another content, or -errno. */
static int
try_candidate(const char *path, const struct base_ref *ref, struct image **out)
{
  char sha[65];
  int r;

  if (image_content_id(path, sha, sizeof sha) < 0 || strcmp(sha, ref->sha256) != 0)
    return 0;
  r = image_get(path, out);
  if (r < 0)
    return r == -ENOENT ? 0 : r;
  if ((*out)->size == ref->size && strcmp((*out)->sha256, ref->sha256) == 0)
    return 1;
  image_put(*out);
  *out = NULL;
  return 0;
}

/* The directory of the export's store: its image when that is a
 * directory, else the directory holding its image file. */
static int
store_dir_of(const struct export *exp, char *dir, size_t len)
{
  char buf[PATH_MAX];
  struct stat st;

  if (stat(exp->image, &st) < 0)
    return -errno;
  if (S_ISDIR(st.st_mode))
    return format_path(dir, len, "%s", exp->image);
  snprintf(buf, sizeof buf, "%s", exp->image);
  return format_path(dir, len, "%s", dirname(buf));
}

/* Any NNNN.img of dir with ref's content: 1 with *out, 0, or -errno. */
static int
scan_store(const char *dir, const struct base_ref *ref, struct image **out)
{
  char path[PATH_MAX];
  struct dirent *de;
  DIR *d = opendir(dir);
  int r = 0;

  if (!d)
    return -errno;
  while (r == 0 && (de = readdir(d))) {
    if (de->d_name[0] == '.' || !ends_with(de->d_name, ".img") ||
        format_path(path, sizeof path, "%s/%s", dir, de->d_name) < 0)
      continue;
    r = try_candidate(path, ref, out);
  }
  closedir(d);
  return r;
}

/* A base with a content id (see the top of this file). */
static int
find_by_content(const struct export *exp, const struct base_ref *ref, struct image **out,
                const char **why)
{
  char dir[PATH_MAX], path[PATH_MAX], name[PATH_MAX];
  int r = try_candidate(ref->path, ref, out);

  if (r == 0 && store_dir_of(exp, dir, sizeof dir) == 0) {
    snprintf(name, sizeof name, "%s", ref->path);
    if (format_path(path, sizeof path, "%s/%s", dir, basename(name)) == 0)
      r = try_candidate(path, ref, out);
    if (r == 0)
      r = scan_store(dir, ref, out);
  }
  if (r < 0) {
    *why = "the base version cannot be opened (see the server log)";
    log_err("%s: base %s (sha256 %s): %s", ref->who, ref->path, ref->sha256,
            strerror(-r));
    return r;
  }
  if (r == 0) {
    *why = "no version of the export's store on this server has the content "
           "the client's data was made on (imgtool sync copies versions)";
    log_err("%s: no version of %s has the content of base %s (sha256 %s, "
            "%llu bytes); refusing to serve it on another content",
            ref->who, exp->image, ref->path, ref->sha256, (unsigned long long)ref->size);
    return -ESTALE;
  }
  if (strcmp((*out)->path, ref->path) != 0)
    log_info("%s: base %s is %s here (same content, sha256 %s)", ref->who, ref->path,
             (*out)->path, ref->sha256);
  return 0;
}

/* A base without a content id: the file at its path, unchanged. */
static int
find_by_path(const struct base_ref *ref, struct image **out, const char **why)
{
  int r = image_get(ref->path, out);

  if (r < 0) {
    *why = "the base image version the client's data was made on is missing";
    log_err("%s: base image %s: %s", ref->who, ref->path, strerror(-r));
    return r;
  }
  if ((*out)->size != ref->size || (*out)->mtime_ns != ref->mtime_ns) {
    *why = "the base image changed under the client's data; reset it";
    log_err("%s: base image %s changed since it was pinned (size or mtime "
            "differ); refusing to serve a mix",
            ref->who, (*out)->path);
    image_put(*out);
    *out = NULL;
    return -ESTALE;
  }
  return 0;
}

int
base_find(const struct export *exp, const struct base_ref *ref, struct image **out,
          const char **why)
{
  *out = NULL;
  if (ref->sha256[0])
    return find_by_content(exp, ref, out, why);
  return find_by_path(ref, out, why);
}
