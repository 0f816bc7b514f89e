/* SPDX-License-Identifier: GPL-2.0-or-later */
/* nbdsrv: binding a listening socket, also right after a crash.
 *
 * Design notes
 * ------------
 * After a kill -9, the kernel closes the dead server's connections at
 * once, but not its listening sockets: each worker's ring has a multishot
 * accept armed on them, and a dying process's io_uring requests are
 * cancelled by a deferred kernel work item that runs when the ring's last
 * reference goes, some tens of milliseconds later.  Until it has run, the
 * old socket still listens, with nobody accepting.
 *
 * A restart shares the port with that orphan instead of waiting for it:
 * every listener of ours sets SO_REUSEPORT, so the orphan (made by the
 * same code) and the new socket can be bound side by side.  Connections
 * the kernel hands to the orphan in that window are lost either way (they
 * would be if we waited, too); the others are served at once.  With
 * net.ipv4.tcp_migrate_req=1 the kernel even moves the orphan's queued
 * connections to us when it goes.
 *
 * SO_REUSEPORT would also let two live servers share a port silently, so
 * after bind() we look for other listeners on our address and port
 * (/proc/net/tcp, tcp6): one that some process still has open is a live
 * server, and we refuse the port as if bind() had said EADDRINUSE.  A
 * socket no process has open is the orphan.  (Another user's sockets
 * never share our port: SO_REUSEPORT groups need the same user.)
 */
#include <config.h>

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "nbdsrv.h"
#include "vec.h"

#define TCP_LISTEN_STATE 0x0A /* TCP_LISTEN in /proc/net/tcp */

/* The inodes of the sockets listening on port, other than self, whose
 * local address is addr_hex or all zeroes (as /proc/net/tcp spells
 * them); the count, or -errno. */
static int
other_listeners(const char *table, unsigned port, const char *addr_hex,
                unsigned long self, unsigned long **inos, size_t *n, size_t *cap)
{
  char line[512];
  FILE *f = fopen(table, "re");

  if (!f)
    return errno == ENOENT ? 0 : -errno;
  while (fgets(line, sizeof line, f)) {
    char local[64], *colon;
    unsigned st, lport;
    unsigned long ino;

    if (sscanf(line, " %*u: %63s %*s %x %*s %*s %*s %*u %*u %lu", local, &st, &ino) !=
            3 ||
        st != TCP_LISTEN_STATE || ino == self || !(colon = strchr(local, ':')) ||
        sscanf(colon + 1, "%x", &lport) != 1 || lport != port)
      continue;
    *colon = '\0';
    if (strcmp(local, addr_hex) != 0 && strspn(local, "0") != strlen(local))
      continue;
    if (VEC_RESERVE(*inos, *cap, *n + 1) < 0) {
      fclose(f);
      return -ENOMEM;
    }
    (*inos)[(*n)++] = ino;
  }
  fclose(f);
  return 0;
}

/* Whether some process has one of the sockets open. */
static bool
held_by_a_process(const unsigned long *inos, size_t n)
{
  DIR *proc = opendir("/proc");
  struct dirent *p;
  bool held = false;

  if (!proc)
    return true; /* cannot tell: assume the worst */
  while (!held && (p = readdir(proc))) {
    char dir[300], link[600], target[64];
    struct dirent *fd;
    DIR *fds;

    if (p->d_name[0] < '1' || p->d_name[0] > '9')
      continue;
    snprintf(dir, sizeof dir, "/proc/%s/fd", p->d_name);
    if (!(fds = opendir(dir)))
      continue;
    while (!held && (fd = readdir(fds))) {
      unsigned long ino;
      ssize_t len;

      snprintf(link, sizeof link, "%s/%s", dir, fd->d_name);
      len = readlink(link, target, sizeof target - 1);
      if (len <= 0)
        continue;
      target[len] = '\0';
      if (sscanf(target, "socket:[%lu]", &ino) != 1)
        continue;
      for (size_t i = 0; i < n; i++)
        if (inos[i] == ino)
          held = true;
    }
    closedir(fds);
  }
  closedir(proc);
  return held;
}

/* Our socket's local address as /proc/net/tcp{,6} spells it (the bytes
 * of the address in memory order, as 32-bit words in host order) and its
 * table. */
static void
proc_address(const struct sockaddr *sa, char *hex, size_t len, const char **table,
             unsigned *port)
{
  const uint32_t *w;
  unsigned nw;

  if (sa->sa_family == AF_INET6) {
    const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
    w = (const uint32_t *)&s6->sin6_addr;
    nw = 4;
    *port = ntohs(s6->sin6_port);
    *table = "/proc/net/tcp6";
  } else {
    const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;
    w = (const uint32_t *)&s4->sin_addr;
    nw = 1;
    *port = ntohs(s4->sin_port);
    *table = "/proc/net/tcp";
  }
  hex[0] = '\0';
  for (unsigned i = 0; i < nw; i++)
    snprintf(hex + 8 * i, len - 8 * i, "%08X", w[i]);
}

/* After bind(): -EADDRINUSE when a live socket listens on our address and
 * port too, else 0 (and a log line when we share it with an orphan). */
static int
check_shared(int fd, const struct sockaddr *sa)
{
  char hex[40];
  const char *table;
  unsigned port;
  unsigned long *inos = NULL;
  size_t n = 0, cap = 0;
  struct stat st;
  int r;

  if (fstat(fd, &st) < 0)
    return -errno;
  proc_address(sa, hex, sizeof hex, &table, &port);
  r = other_listeners(table, port, hex, (unsigned long)st.st_ino, &inos, &n, &cap);
  if (r == 0 && n > 0) {
    if (held_by_a_process(inos, n))
      r = -EADDRINUSE;
    else
      log_info(
          "port %u: the listening socket of a server that died is still being torn down by the kernel; sharing the port with it until it goes",
          port);
  }
  free(inos);
  return r;
}

/* The old way, for a port held by a socket without SO_REUSEPORT (a server
 * of an older version, say): wait a little for it to go. */
static int
bind_wait(int fd, const struct sockaddr *sa, socklen_t len)
{
  for (int tries = 0;; tries++) {
    if (bind(fd, sa, len) == 0)
      return 0;
    if (errno != EADDRINUSE || tries == 100)
      return -1;
    if (tries == 0)
      fprintf(stderr,
              "nbdsrv: address in use; waiting up to 10 s for it to be released\n");
    usleep(100 * 1000);
  }
}

int
listen_bind(int fd, const struct sockaddr *sa, socklen_t len)
{
  int one = 1, r;

  if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) < 0 ||
      bind(fd, sa, len) < 0)
    return bind_wait(fd, sa, len);
  r = check_shared(fd, sa);
  if (r < 0) {
    errno = -r;
    return -1;
  }
  return 0;
}
