/* SPDX-License-Identifier: GPL-2.0-or-later */
/* imgtool: a layered client's state disk, read offline.
 *
 * The state disk nbdsrv serves a client is the blank template with that
 * client's overlay on top (view.c).  It is written out to an anonymous
 * temporary file, sparse, so it costs on disk about what the client
 * wrote, and read back with libext2fs (imgread-ext4.c): simpler than an
 * io_manager over base and overlay, and the overlay's map is walked once.
 * Nothing of the client's is changed.  The layout of the disk (the upper
 * layer, the identity of the base last booted) is common/layered-state.h.
 *
 * The agent never unmounts the state disk (it is under the root until
 * the client powers off), so its journal is almost always to be
 * recovered, and without it the disk is not consistent: directory blocks
 * written since the last checkpoint are only in the journal.  The copy's
 * journal is replayed (e2fsck -E journal_only), as the client's kernel
 * would at its next mount; the copy, not the client's disk.
 */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "imgtool.h"
#include "layered-state.h"

/* The base the client last booted, from its base-id file. */
static int
read_base_id(struct client_state *s)
{
  struct node *n = node_child(s->t.root, STATE_BASE_ID);
  char text[1024], ver[16];
  const char *desc;
  ssize_t got;

  if (!n || !S_ISREG(n->st.st_mode))
    return 0;
  got = image_node_pread(n, text, sizeof text - 1, 0);
  if (got < 0) {
    log_err("cannot read /%s on the state disk of %s: %s", STATE_BASE_ID, s->id,
            strerror((int)-got));
    return (int)got;
  }
  text[got] = '\0';
  text[strcspn(text, "\n")] = '\0';
  s->has_base_id = true;
  desc = strstr(text, STATE_BASE_ID_DESC);
  snprintf(s->base_desc, sizeof s->base_desc, "%s",
           desc ? desc + strlen(STATE_BASE_ID_DESC) : "");
  /* "nbdroot-base NAME VERSION sha256:HEX" */
  if (sscanf(s->base_desc, "nbdroot-base %127s %15s sha256:%64[0-9a-f]", s->base_name,
             ver, s->base_sha) != 3 ||
      store_parse_version(ver, &s->base_version) < 0)
    s->base_version = 0;
  return 0;
}

/* Replays the journal of the copy of a state disk in fd. */
static int
replay_journal(int fd, const char *id)
{
  char path[64];
  char *argv[] = { "e2fsck", "-p", "-E", "journal_only", path, NULL };
  int null = open("/dev/null", O_WRONLY | O_CLOEXEC), r;

  /* the parent's descriptor: the copy has no name, and fd is close-on-exec */
  snprintf(path, sizeof path, "/proc/%ld/fd/%d", (long)getpid(), fd);
  r = run_cmd(argv, null);
  if (null >= 0)
    close(null);
  if (r < 0 || r >= 4) {
    log_err("cannot recover the journal of the state disk of %s: e2fsck -E "
            "journal_only %s",
            id,
            r < 0      ? strerror(-r)
            : r == 127 ? "is not installed (e2fsprogs)"
                       : "failed");
    return r < 0 ? r : -EIO;
  }
  return 0;
}

void
state_init(struct client_state *s)
{
  memset(s, 0, sizeof *s);
  view_init(&s->view);
}

int
state_open(const char *prefix, const char *id, struct client_state *s)
{
  int fd, r;

  s->id = xstrdup(id);
  r = view_open(prefix, &s->view);
  if (r < 0)
    return r;
  fd = anon_tmpfile();
  if (fd < 0) {
    log_err("cannot create a temporary file for the state disk of %s "
            "(TMPDIR): %s",
            id, strerror(-fd));
    return fd;
  }
  r = view_write(&s->view, fd);
  if (r < 0) {
    log_err("cannot write the state disk of %s to a temporary file "
            "(TMPDIR): %s",
            id, strerror(-r));
    close(fd);
    return r;
  }
  s->clean = ext_fs_is_clean(fd);
  if (!s->clean) {
    r = replay_journal(fd, id);
    if (r < 0) {
      close(fd);
      return r;
    }
  }
  r = image_tree_read_fd(fd, prefix, &s->t, &s->rd);
  if (r < 0)
    return r;
  s->upper = node_child(s->t.root, STATE_UPPER);
  if (s->upper && !S_ISDIR(s->upper->st.st_mode))
    s->upper = NULL;
  return read_base_id(s);
}

void
state_close(struct client_state *s)
{
  tree_free(&s->t);
  image_reader_close(s->rd);
  view_close(&s->view);
  free(s->id);
  state_init(s);
}

int
state_booted_version(const struct client_state *s, const char *namedir, const char *name,
                     unsigned *id)
{
  struct version_meta m;
  int r;

  *id = 0;
  if (!s->has_base_id) {
    log_err("client %s has not booted a layered root yet (no /%s on its "
            "state disk)",
            s->id, STATE_BASE_ID);
    return -ENOENT;
  }
  if (!s->base_version || strcmp(s->base_name, name) != 0) {
    log_err("client %s last booted \"%s\", not a version of %s", s->id, s->base_desc,
            name);
    return -ESRCH;
  }
  r = store_read_meta(namedir, s->base_version, &m);
  if (r < 0 || strcmp(m.sha256, s->base_sha) != 0) {
    log_err("client %s last booted version %04u of %s, which the store no "
            "longer holds (%s)",
            s->id, s->base_version, name,
            r < 0 ? "removed" : "its number is another image's now");
    return -ESTALE;
  }
  *id = s->base_version;
  return 0;
}

bool
whiteout(const struct node *n)
{
  return S_ISCHR(n->st.st_mode) && n->st.st_rdev == 0;
}

bool
opaque_dir(const struct node *n)
{
  if (!S_ISDIR(n->st.st_mode))
    return false;
  for (size_t i = 0; i < n->nxattrs; i++)
    if (strcmp(n->xattrs[i].name, "trusted.overlay.opaque") == 0)
      return n->xattrs[i].len == 1 && ((const char *)n->xattrs[i].value)[0] == 'y';
  return false;
}
