/* SPDX-License-Identifier: GPL-2.0-or-later */
/* nbdroot initrd agent: the kernel's generic-netlink NBD interface.
 *
 * CONNECT hands the negotiated socket to the kernel with a request timeout
 * and a dead-connection timeout: when the connection dies, the kernel
 * keeps the device and its queued requests for dead_timeout seconds and
 * multicasts NBD_CMD_LINK_DEAD, and RECONFIGURE with a fresh socket lets
 * them continue.  That is what makes a server restart survivable.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "agent.h"
#include "nbd-protocol.h"
#include "uapi.h"

struct nlbuf {
  union {
    struct nlmsghdr h;
    char buf[1024];
  };
};

static void *
attr_data(const struct nlattr *a)
{
  return (char *)a + NL_ALIGN(sizeof(*a));
}

static void
put_attr(struct nlbuf *b, uint16_t type, const void *data, size_t len)
{
  struct nlattr *a = (struct nlattr *)(b->buf + NL_ALIGN(b->h.nlmsg_len));

  a->nla_type = type;
  a->nla_len = (uint16_t)(NL_ALIGN(sizeof(*a)) + len);
  if (len)
    memcpy(attr_data(a), data, len);
  b->h.nlmsg_len = NL_ALIGN(b->h.nlmsg_len) + NL_ALIGN(a->nla_len);
}

static void
put_u32(struct nlbuf *b, uint16_t type, uint32_t v)
{
  put_attr(b, type, &v, 4);
}

static void
put_u64(struct nlbuf *b, uint16_t type, uint64_t v)
{
  put_attr(b, type, &v, 8);
}

static size_t
nest_start(struct nlbuf *b, uint16_t type)
{
  size_t off = NL_ALIGN(b->h.nlmsg_len);

  put_attr(b, type | NLA_F_NESTED, NULL, 0);
  return off;
}

static void
nest_end(struct nlbuf *b, size_t off)
{
  struct nlattr *a = (struct nlattr *)(b->buf + off);

  a->nla_len = (uint16_t)(b->h.nlmsg_len - off);
}

static void
msg_init(struct nbd_nl *nl, struct nlbuf *b, uint16_t family, uint8_t cmd,
         uint8_t version)
{
  struct genlmsghdr *g;

  memset(b, 0, sizeof(*b));
  b->h.nlmsg_len = NL_ALIGN(sizeof(struct nlmsghdr)) + sizeof(*g);
  b->h.nlmsg_type = family;
  b->h.nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK;
  b->h.nlmsg_seq = ++nl->seq;
  g = (struct genlmsghdr *)(b->buf + NL_ALIGN(sizeof(struct nlmsghdr)));
  g->cmd = cmd;
  g->version = version;
}

/* Iterates the attributes of [p, p+len). */
#define for_each_attr(a, p, len)                                    \
  for (a = (const struct nlattr *)(p);                              \
       (const char *)a + sizeof(*a) <= (const char *)(p) + (len) && \
       a->nla_len >= sizeof(*a) &&                                  \
       (const char *)a + a->nla_len <= (const char *)(p) + (len);   \
       a = (const struct nlattr *)((const char *)a + NL_ALIGN(a->nla_len)))

typedef void (*reply_cb)(const struct nlattr *attrs, size_t len, void *arg);

/* Sends b and reads replies until the ACK or error for it; each family
 * message is passed to cb.  Returns 0 or the kernel's -errno. */
static int
transact(struct nbd_nl *nl, struct nlbuf *b, reply_cb cb, void *arg)
{
  static char rbuf[16384];
  struct sockaddr_nl sa = { .nl_family = AF_NETLINK };
  uint32_t seq = b->h.nlmsg_seq;

  if (sendto(nl->fd, b->buf, b->h.nlmsg_len, 0, (struct sockaddr *)&sa, sizeof(sa)) < 0)
    return -errno;
  for (;;) {
    struct pollfd pfd = { .fd = nl->fd, .events = POLLIN };
    ssize_t n;

    /* bounded: the kernel answers at once */
    if (poll(&pfd, 1, 10000) <= 0)
      return -ETIMEDOUT;
    n = recv(nl->fd, rbuf, sizeof(rbuf), 0);
    if (n < 0)
      return -errno;
    for (const char *p = rbuf; p + sizeof(struct nlmsghdr) <= rbuf + n;) {
      const struct nlmsghdr *h = (const void *)p;
      size_t hl = NL_ALIGN(sizeof(*h));

      if (h->nlmsg_len < sizeof(*h) || p + h->nlmsg_len > rbuf + n)
        break;
      if (h->nlmsg_seq == seq) {
        if (h->nlmsg_type == NLMSG_ERROR) {
          const struct nlmsgerr *e = (const void *)(p + hl);
          return e->error;
        }
        if (h->nlmsg_type == NLMSG_DONE)
          return 0;
        if (cb && h->nlmsg_len >= hl + sizeof(struct genlmsghdr))
          cb((const void *)(p + hl + sizeof(struct genlmsghdr)),
             h->nlmsg_len - hl - sizeof(struct genlmsghdr), arg);
      }
      p += NL_ALIGN(h->nlmsg_len);
    }
  }
}

struct family_info {
  uint16_t id;
  uint32_t mcast;
};

static void
family_cb(const struct nlattr *attrs, size_t len, void *arg)
{
  struct family_info *fi = arg;
  const struct nlattr *a, *g, *f;

  for_each_attr(a, attrs, len)
  {
    uint16_t type = a->nla_type & NLA_TYPE_MASK;
    size_t dl = a->nla_len - NL_ALIGN(sizeof(*a));

    if (type == CTRL_ATTR_FAMILY_ID && dl >= 2)
      memcpy(&fi->id, attr_data(a), 2);
    if (type != CTRL_ATTR_MCAST_GROUPS)
      continue;
    for_each_attr(g, attr_data(a), dl)
    {
      size_t gl = g->nla_len - NL_ALIGN(sizeof(*g));
      uint32_t id = 0;
      bool ours = false;

      for_each_attr(f, attr_data(g), gl)
      {
        uint16_t ft = f->nla_type & NLA_TYPE_MASK;
        if (ft == CTRL_ATTR_MCAST_GRP_NAME && !strcmp(attr_data(f), NBD_GENL_MCAST))
          ours = true;
        if (ft == CTRL_ATTR_MCAST_GRP_ID)
          memcpy(&id, attr_data(f), 4);
      }
      if (ours)
        fi->mcast = id;
    }
  }
}

static int
nl_socket(void)
{
  struct sockaddr_nl sa = { .nl_family = AF_NETLINK };
  int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_GENERIC);

  if (fd < 0)
    return -errno;
  if (bind(fd, (struct sockaddr *)&sa, sizeof(sa))) {
    int ret = -errno;
    close(fd);
    return ret;
  }
  return fd;
}

int
nbd_nl_open(struct nbd_nl *nl)
{
  struct family_info fi = { 0 };
  struct nlbuf b;
  int ret;

  memset(nl, 0, sizeof(*nl));
  nl->mcast_fd = -1;
  nl->fd = nl_socket();
  if (nl->fd < 0) {
    say("cannot open a generic netlink socket: %s", strerror(-nl->fd));
    return nl->fd;
  }
  msg_init(nl, &b, GENL_ID_CTRL, CTRL_CMD_GETFAMILY, 1);
  put_attr(&b, CTRL_ATTR_FAMILY_NAME, NBD_GENL_NAME, sizeof(NBD_GENL_NAME));
  ret = transact(nl, &b, family_cb, &fi);
  if (ret || !fi.id) {
    say("the kernel has no NBD netlink family (%s); is nbd.ko in the initrd's "
        "module list, or CONFIG_BLK_DEV_NBD set?",
        strerror(ret ? -ret : ENOENT));
    return ret ? ret : -ENOENT;
  }
  nl->family = fi.id;

  /* Subscribed before CONNECT, so no LINK_DEAD can be missed. */
  if (fi.mcast) {
    nl->mcast_fd = nl_socket();
    if (nl->mcast_fd >= 0 && setsockopt(nl->mcast_fd, SOL_NETLINK, NETLINK_ADD_MEMBERSHIP,
                                        &fi.mcast, sizeof(fi.mcast))) {
      close(nl->mcast_fd);
      nl->mcast_fd = -1;
    }
  }
  if (nl->mcast_fd < 0)
    say("warning: cannot subscribe to NBD link events; reconnects will be "
        "slower");
  return 0;
}

static void
index_cb(const struct nlattr *attrs, size_t len, void *arg)
{
  const struct nlattr *a;

  for_each_attr(a, attrs, len) if ((a->nla_type & NLA_TYPE_MASK) == NBDNL_ATTR_INDEX &&
                                   a->nla_len >= sizeof(*a) + 4)
      memcpy(arg, attr_data(a), 4);
}

static void
put_socket(struct nlbuf *b, int sock)
{
  size_t socks = nest_start(b, NBDNL_ATTR_SOCKETS);
  size_t item = nest_start(b, NBDNL_SOCK_ITEM);

  put_u32(b, NBDNL_SOCK_FD, (uint32_t)sock);
  nest_end(b, item);
  nest_end(b, socks);
}

int
nbd_nl_connect(struct nbd_nl *nl, int sock, int index, const struct nbd_export_info *info,
               bool readonly, unsigned io_timeout, unsigned dead_timeout)
{
  struct nlbuf b;
  uint32_t got = UINT32_MAX;
  int ret;

  msg_init(nl, &b, nl->family, NBDNL_CMD_CONNECT, NBD_GENL_VER);
  if (index >= 0)
    put_u32(&b, NBDNL_ATTR_INDEX, (uint32_t)index);
  put_u64(&b, NBDNL_ATTR_SIZE_BYTES, info->size);
  /* 512: the smallest block size any filesystem on the export may use. */
  put_u64(&b, NBDNL_ATTR_BLOCK_SIZE_BYTES, 512);
  /* The kernel makes the device read-only when the server says so; a
   * layered base must be, whatever the server offers. */
  put_u64(&b, NBDNL_ATTR_SERVER_FLAGS, info->flags | (readonly ? NBD_FLAG_READ_ONLY : 0));
  if (io_timeout)
    put_u64(&b, NBDNL_ATTR_TIMEOUT, io_timeout);
  put_u64(&b, NBDNL_ATTR_DEAD_CONN_TIMEOUT, dead_timeout);
  put_socket(&b, sock);
  ret = transact(nl, &b, index_cb, &got);
  if (ret) {
    if (index >= 0)
      say("NBD_CMD_CONNECT for /dev/nbd%d failed: %s%s", index, strerror(-ret),
          ret == -EBUSY ? " (device already in use)" : "");
    else
      say("NBD_CMD_CONNECT failed: %s", strerror(-ret));
    return ret;
  }
  if (got == UINT32_MAX) {
    if (index < 0) {
      say("NBD_CMD_CONNECT did not say which device it used");
      return -EPROTO;
    }
    got = (uint32_t)index;
  }
  return (int)got;
}

int
nbd_nl_reconfigure(struct nbd_nl *nl, int index, int sock)
{
  struct nlbuf b;

  msg_init(nl, &b, nl->family, NBDNL_CMD_RECONFIGURE, NBD_GENL_VER);
  put_u32(&b, NBDNL_ATTR_INDEX, (uint32_t)index);
  put_socket(&b, sock);
  return transact(nl, &b, NULL, NULL);
}

int
nbd_nl_recv_events(struct nbd_nl *nl, uint64_t *dead)
{
  static char rbuf[8192];
  int found = -EAGAIN;

  *dead = 0;
  if (nl->mcast_fd < 0)
    return -EAGAIN;
  /* Everything queued, not just the first message: several events about
   * one death must not cause several reconnections. */
  for (;;) {
    ssize_t n = recv(nl->mcast_fd, rbuf, sizeof(rbuf), MSG_DONTWAIT);

    if (n < 0) {
      if (errno == EINTR)
        continue;
      if (errno == ENOBUFS)
        return -ENOBUFS; /* events were lost: the caller checks the links */
      return found;
    }
    for (const char *p = rbuf; p + sizeof(struct nlmsghdr) <= rbuf + n;) {
      const struct nlmsghdr *h = (const void *)p;
      size_t hl = NL_ALIGN(sizeof(*h)) + sizeof(struct genlmsghdr);
      const struct genlmsghdr *g = (const void *)(p + NL_ALIGN(sizeof(*h)));

      if (h->nlmsg_len < hl || p + h->nlmsg_len > rbuf + n)
        break;
      if (h->nlmsg_type == nl->family && g->cmd == NBDNL_CMD_LINK_DEAD) {
        uint32_t idx = UINT32_MAX;
        index_cb((const void *)(p + hl), h->nlmsg_len - hl, &idx);
        if (idx < 64) {
          *dead |= 1ull << idx;
          found = 0;
        }
      }
      p += NL_ALIGN(h->nlmsg_len);
    }
  }
}
