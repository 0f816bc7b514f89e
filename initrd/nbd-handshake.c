/* SPDX-License-Identifier: GPL-2.0-or-later */
/* nbdroot initrd agent: the NBD handshake, client side.
 *
 * Fixed newstyle only (doc/proto.md of the NBD project): NBD_OPT_GO with
 * the export name, falling back to NBD_OPT_EXPORT_NAME for servers that do
 * not know GO.  The kernel then takes over the socket for the
 * transmission phase, so the socket must leave here blocking and without
 * send/receive timeouts (the kernel would see them as errors).
 */
#include <arpa/inet.h>
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "agent.h"
#include "io.h"
#include "nbd-protocol.h"

#define CONNECT_TIMEOUT_MS 10000
#define HANDSHAKE_TIMEOUT_S 20

/* Where the user names this export, for the hints. */
static const char *
param(const struct nbd_target *t)
{
  return t->param ? t->param : "root=/nbdroot=";
}

static int
tcp_connect(const struct nbd_target *t, bool quiet)
{
  struct sockaddr_storage ss;
  struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
  struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
  socklen_t sl;
  int fd, ret, one = 1, v, fl;
  unsigned port = (unsigned)atoi(t->port);

  memset(&ss, 0, sizeof(ss));
  if (inet_pton(AF_INET, t->host, &sin->sin_addr) == 1) {
    sin->sin_family = AF_INET;
    sin->sin_port = htons((uint16_t)port);
    sl = sizeof(*sin);
  } else if (inet_pton(AF_INET6, t->host, &sin6->sin6_addr) == 1) {
    sin6->sin6_family = AF_INET6;
    sin6->sin6_port = htons((uint16_t)port);
    sl = sizeof(*sin6);
  } else {
    say("NBD server '%s' is not an IP address", t->host);
    return -EINVAL;
  }
  fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0)
    return -errno;
  if (connect(fd, (struct sockaddr *)&ss, sl) && errno != EINPROGRESS) {
    ret = -errno;
    goto err;
  }
  struct pollfd pfd = { .fd = fd, .events = POLLOUT };
  ret = poll(&pfd, 1, CONNECT_TIMEOUT_MS);
  if (ret == 0) {
    ret = -ETIMEDOUT;
    goto err;
  }
  socklen_t vl = sizeof(v);
  if (ret < 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &v, &vl)) {
    ret = -errno;
    goto err;
  }
  if (v) {
    ret = -v;
    goto err;
  }
  fl = fcntl(fd, F_GETFL);
  fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  /* Keepalive finds a silently vanished server even when the device is
   * idle; the kernel's request timeout covers the busy case. */
  setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
  v = 15;
  setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &v, sizeof(v));
  v = 5;
  setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &v, sizeof(v));
  v = 3;
  setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &v, sizeof(v));
  return fd;
err:
  if (!quiet)
    say("cannot connect to NBD server %s:%s: %s; check the server address "
        "and port in root=/nbdroot= and that the server listens there",
        t->host, t->port, strerror(-ret));
  close(fd);
  return ret;
}

static int
set_timeouts(int fd, int secs)
{
  struct timeval tv = { .tv_sec = secs };

  if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) ||
      setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)))
    return -errno;
  return 0;
}

/* The socket has SO_RCVTIMEO/SO_SNDTIMEO set: EAGAIN means a timeout. */
static int
sock_error(ssize_t n)
{
  return n == -EAGAIN ? -ETIMEDOUT : (int)n;
}

/* All of len bytes, or -ECONNRESET when the server closed first. */
static int
sock_read(int fd, void *buf, size_t len)
{
  ssize_t n = full_read(fd, buf, len);

  if (n < 0)
    return sock_error(n);
  return (size_t)n < len ? -ECONNRESET : 0;
}

static int
sock_write(int fd, const void *buf, size_t len)
{
  return sock_error(full_send(fd, buf, len));
}

static int
send_option(int fd, uint32_t opt, const void *data, uint32_t len)
{
  struct nbd_option_header h = {
    .version = htobe64(NBD_IHAVEOPT),
    .option = htobe32(opt),
    .optlen = htobe32(len),
  };
  int ret = sock_write(fd, &h, sizeof(h));

  return ret ? ret : sock_write(fd, data, len);
}

static const char *
rep_err_name(uint32_t r)
{
  switch (r) {
    case NBD_REP_ERR_UNSUP: return "NBD_REP_ERR_UNSUP";
    case NBD_REP_ERR_POLICY: return "NBD_REP_ERR_POLICY";
    case NBD_REP_ERR_INVALID: return "NBD_REP_ERR_INVALID";
    case NBD_REP_ERR_PLATFORM: return "NBD_REP_ERR_PLATFORM";
    case NBD_REP_ERR_TLS_REQD: return "NBD_REP_ERR_TLS_REQD";
    case NBD_REP_ERR_UNKNOWN: return "NBD_REP_ERR_UNKNOWN";
    case NBD_REP_ERR_SHUTDOWN: return "NBD_REP_ERR_SHUTDOWN";
    case NBD_REP_ERR_BLOCK_SIZE_REQD: return "NBD_REP_ERR_BLOCK_SIZE_REQD";
    case NBD_REP_ERR_TOO_BIG: return "NBD_REP_ERR_TOO_BIG";
    default: return "an unknown error";
  }
}

/* NBD_OPT_GO.  Returns 0, -EOPNOTSUPP when the server does not know GO,
 * or another -errno after printing why. */
static int
opt_go(int fd, const struct nbd_target *t, struct nbd_export_info *info, bool quiet)
{
  static uint8_t buf[65536];
  struct nbd_fixed_new_option_reply r;
  uint32_t nl = (uint32_t)strlen(t->name), be;
  bool have_info = false;
  int ret;

  be = htobe32(nl);
  memcpy(buf, &be, 4);
  memcpy(buf + 4, t->name, nl);
  /* One information request: the description, which may identify the
   * image version (a layered root notices a new base by it). */
  memcpy(buf + 4 + nl, &(uint16_t){ htobe16(1) }, 2);
  memcpy(buf + 4 + nl + 2, &(uint16_t){ htobe16(NBD_INFO_DESCRIPTION) }, 2);
  ret = send_option(fd, NBD_OPT_GO, buf, 4 + nl + 4);
  if (ret)
    return ret;
  for (;;) {
    uint32_t type, len;
    char msg[256] = "";

    ret = sock_read(fd, &r, sizeof(r));
    if (ret)
      return ret;
    type = be32toh(r.reply);
    len = be32toh(r.replylen);
    if (be64toh(r.magic) != NBD_REP_MAGIC || be32toh(r.option) != NBD_OPT_GO ||
        len > 65536) {
      say("NBD server %s:%s sent a malformed option reply", t->host, t->port);
      return -EPROTO;
    }
    if (len > sizeof(buf))
      return -EPROTO;
    ret = sock_read(fd, buf, len);
    if (ret)
      return ret;
    if (type == NBD_REP_ACK)
      break;
    if (type == NBD_REP_INFO) {
      if (len >= 12 && buf[0] == 0 && buf[1] == NBD_INFO_EXPORT) {
        uint64_t sz;
        uint16_t fl;
        memcpy(&sz, buf + 2, 8);
        memcpy(&fl, buf + 10, 2);
        info->size = be64toh(sz);
        info->flags = be16toh(fl);
        have_info = true;
      } else if (len >= 2 && buf[0] == 0 && buf[1] == NBD_INFO_DESCRIPTION) {
        size_t dl = len - 2 < sizeof(info->description) - 1
                        ? len - 2
                        : sizeof(info->description) - 1;
        memcpy(info->description, buf + 2, dl);
        info->description[dl] = '\0';
      }
      continue;
    }
    if (type == NBD_REP_ERR_UNSUP)
      return -EOPNOTSUPP;
    if (type & NBD_REP_FLAG_ERROR) {
      size_t ml = len < sizeof(msg) - 1 ? len : sizeof(msg) - 1;
      memcpy(msg, buf, ml);
      for (size_t i = 0; i < ml; i++)
        if (msg[i] < 0x20 || msg[i] > 0x7e)
          msg[i] = '?';
      if (quiet)
        return -ENOENT;
      if (type == NBD_REP_ERR_UNKNOWN)
        say("NBD server %s:%s has no export '%s' (%s%s%s); check the export "
            "name in %s and the server's exports",
            t->host, t->port, t->name, rep_err_name(type), msg[0] ? ": " : "", msg,
            param(t));
      else
        say("NBD server %s:%s refused export '%s' (%s%s%s)", t->host, t->port, t->name,
            rep_err_name(type), msg[0] ? ": " : "", msg);
      return type == NBD_REP_ERR_UNKNOWN ? -ENOENT : -EACCES;
    }
    /* other informational replies are ignored, as the spec allows */
  }
  if (!have_info) {
    say("NBD server %s:%s sent no export size for '%s'", t->host, t->port, t->name);
    return -EPROTO;
  }
  return 0;
}

static int
opt_export_name(int fd, const struct nbd_target *t, struct nbd_export_info *info,
                bool no_zeroes, bool quiet)
{
  struct nbd_export_name_reply r;
  uint8_t zeroes[124];
  int ret;

  ret = send_option(fd, NBD_OPT_EXPORT_NAME, t->name, (uint32_t)strlen(t->name));
  if (ret)
    return ret;
  ret = sock_read(fd, &r, sizeof(r));
  if (ret == -ECONNRESET) {
    /* the only way this old option can say "no such export" */
    if (!quiet)
      say("NBD server %s:%s closed the connection on export '%s': it has no "
          "such export; check the export name in %s",
          t->host, t->port, t->name, param(t));
    return -ENOENT;
  }
  if (ret)
    return ret;
  if (!no_zeroes && (ret = sock_read(fd, zeroes, sizeof(zeroes))))
    return ret;
  info->size = be64toh(r.exportsize);
  info->flags = be16toh(r.eflags);
  return 0;
}

int
nbd_connect_export(const struct nbd_target *t, struct nbd_export_info *info, bool quiet)
{
  struct nbd_new_handshake g;
  uint32_t cflags;
  uint16_t gflags;
  int fd, ret;

  fd = tcp_connect(t, quiet);
  if (fd < 0)
    return fd;
  set_timeouts(fd, HANDSHAKE_TIMEOUT_S);
  ret = sock_read(fd, &g, sizeof(g));
  if (ret) {
    if (!quiet)
      say("NBD server %s:%s: no NBD greeting (%s); is an NBD server "
          "listening on that port?",
          t->host, t->port, strerror(-ret));
    goto err;
  }
  if (be64toh(g.nbdmagic) != NBD_MAGIC || be64toh(g.version) != NBD_IHAVEOPT) {
    if (!quiet)
      say("NBD server %s:%s: not a newstyle NBD greeting; is it an NBD server "
          "(oldstyle servers are not supported)?",
          t->host, t->port);
    ret = -EPROTO;
    goto err;
  }
  gflags = be16toh(g.gflags);
  if (!(gflags & NBD_FLAG_FIXED_NEWSTYLE)) {
    if (!quiet)
      say("NBD server %s:%s does not speak fixed newstyle", t->host, t->port);
    ret = -EPROTO;
    goto err;
  }
  cflags = htobe32(NBD_FLAG_C_FIXED_NEWSTYLE |
                   (gflags & NBD_FLAG_NO_ZEROES ? NBD_FLAG_C_NO_ZEROES : 0));
  ret = sock_write(fd, &cflags, sizeof(cflags));
  if (ret)
    goto io_err;
  memset(info, 0, sizeof(*info));
  ret = opt_go(fd, t, info, quiet);
  if (ret == -EOPNOTSUPP)
    ret = opt_export_name(fd, t, info, gflags & NBD_FLAG_NO_ZEROES, quiet);
  if (ret == -ENOENT || ret == -EACCES || ret == -EPROTO)
    goto err;
  if (ret)
    goto io_err;
  set_timeouts(fd, 0);
  return fd;
io_err:
  if (!quiet)
    say("NBD handshake with %s:%s for export '%s' failed: %s", t->host, t->port, t->name,
        strerror(-ret));
err:
  close(fd);
  return ret;
}

int
nbd_connect_any(const struct server_list *l, unsigned *cur, struct nbd_target *t,
                struct nbd_export_info *info, bool quiet)
{
  int ret = -EHOSTUNREACH;

  for (unsigned k = 0; k < l->n; k++) {
    const struct nbd_server *sv = &l->s[(*cur + k) % l->n];

    snprintf(t->host, sizeof(t->host), "%s", sv->host);
    snprintf(t->port, sizeof(t->port), "%s", sv->port);
    ret = nbd_connect_export(t, info, quiet);
    if (ret >= 0) {
      *cur = (*cur + k) % l->n;
      return ret;
    }
  }
  /* t names the server the caller had, for its messages */
  if (l->n) {
    snprintf(t->host, sizeof(t->host), "%s", l->s[*cur % l->n].host);
    snprintf(t->port, sizeof(t->port), "%s", l->s[*cur % l->n].port);
  }
  return ret;
}
