/* SPDX-License-Identifier: GPL-2.0-or-later */
/* nbdsrv: one server per overlay, when servers share the overlay dir.
 *
 * Several servers may keep their overlays on one distributed file system
 * (CephFS, NFSv4).  Two servers writing one client's overlay would each
 * append to its journal from their own idea of the map and destroy it, so
 * a server serves an overlay only while it holds a write lock on it, and
 * a client whose overlay another server holds is refused.
 *
 * The lock is an OFD lock (F_OFD_SETLK, F_WRLCK, the whole file) on a
 * file of its own, OVERLAY_DIR/EXPORT/ID.lock:
 *   - not on ID.map: the map is replaced by a rename when an overlay is
 *     created and each time its journal is compacted, and a lock on the
 *     old inode would not stop a server that opens the new one.  The lock
 *     file is never renamed nor removed (an empty file per client, also
 *     after a reset), so every server locks the same inode; removing it
 *     would let a server that opened it just before lock a file nobody
 *     else can find any more.
 *   - OFD, not classic fcntl locks: those belong to the process and go
 *     when it closes any descriptor of the file, and they do not conflict
 *     within one process.  OFD locks belong to the open file description,
 *     which the struct overlay owns.  CephFS (kernel client and ceph-fuse)
 *     and NFSv4 honour them across hosts (NFS as byte-range locks, where
 *     flock() is only emulated), and drop them when the holder dies:
 *     at once when the process dies, when the file system evicts the
 *     holder's session when its host dies (see nbdsrv(8)).
 *   - non-blocking: a client whose overlay is held elsewhere is refused
 *     at once (and comes back, or goes to the server that has it), never
 *     queued behind a lock that may be held for days.
 *
 * The lock is taken before any file of the overlay is opened (opening
 * replays the journal and may cut off a torn tail: a write) and dropped
 * after they are synced and closed, in overlay_free().  All connections
 * of a client share their struct overlay, and so the lock.
 */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "nbdsrv.h"
#include "util.h"

int
overlay_lock_take(const char *prefix, int *fdp, const char **why)
{
  char path[PATH_MAX];
  struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET };
  int fd, r;

  r = format_path(path, sizeof path, "%s.lock", prefix);
  if (r < 0) {
    *why = "overlay path too long";
    return r;
  }
  fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) {
    r = -errno;
    *why = "the overlay's lock file cannot be opened (see the server log)";
    log_err("overlay %s: lock file %s: %s", prefix, path, strerror(-r));
    return r;
  }
  if (fcntl(fd, F_OFD_SETLK, &fl) < 0) {
    r = -errno;
    close(fd);
    if (r == -EAGAIN || r == -EACCES) {
      *why = "the overlay is served by another server";
      return -EBUSY;
    }
    *why = "the overlay cannot be locked (see the server log)";
    log_err("overlay %s: cannot lock %s: %s (the overlay dir needs a file "
            "system with OFD locks)", prefix, path, strerror(-r));
    return r;
  }
  *fdp = fd;
  return 0;
}

void
overlay_lock_drop(int *fdp)
{
  /* Closing the last descriptor of the open file description drops the
   * lock: the files were synced and closed before. */
  if (*fdp >= 0)
    close(*fdp);
  *fdp = -1;
}
