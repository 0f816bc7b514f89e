/* SPDX-License-Identifier: GPL-2.0-or-later */
/* nbdroot initrd agent: a small DHCPv4 client (RFC 2131/2132).
 *
 * The interface has no address yet, so the client talks through an
 * AF_PACKET datagram socket and builds the IPv4 and UDP headers itself:
 * that works whatever the kernel's routing state, and sees the server's
 * reply whether it is broadcast or unicast to the offered address.
 * DISCOVER/OFFER/REQUEST/ACK, each send retried with a doubling timeout
 * (1, 2, 4, 8 s plus jitter) within an overall bound; a NAK restarts.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <net/ethernet.h>
#include <netpacket/packet.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "agent.h"

#define DHCP_SERVER_PORT 67
#define DHCP_CLIENT_PORT 68
#define DHCP_MAGIC 0x63825363u

enum {
  DHCPDISCOVER = 1,
  DHCPOFFER,
  DHCPREQUEST,
  DHCPDECLINE,
  DHCPACK,
  DHCPNAK,
};

enum {
  OPT_PAD = 0,
  OPT_SUBNET = 1,
  OPT_ROUTER = 3,
  OPT_DNS = 6,
  OPT_HOSTNAME = 12,
  OPT_DOMAIN = 15,
  OPT_ROOT_PATH = 17,
  OPT_REQ_IP = 50,
  OPT_LEASE = 51,
  OPT_MSGTYPE = 53,
  OPT_SERVER_ID = 54,
  OPT_PARAMS = 55,
  OPT_MAXSIZE = 57,
  OPT_CLIENT_ID = 61,
  OPT_END = 255,
};

struct bootp {
  uint8_t op, htype, hlen, hops;
  uint32_t xid;
  uint16_t secs, flags;
  uint32_t ciaddr, yiaddr, siaddr, giaddr;
  uint8_t chaddr[16];
  uint8_t sname[64];
  uint8_t file[128];
  uint32_t magic;
  uint8_t options[312];
} __attribute__((packed));

struct ip4udp {
  uint8_t vhl, tos;
  uint16_t len, id, frag;
  uint8_t ttl, proto;
  uint16_t csum;
  uint32_t src, dst;
  uint16_t sport, dport, ulen, ucsum;
} __attribute__((packed));

struct packet {
  struct ip4udp h;
  struct bootp b;
} __attribute__((packed));

struct dhcp_state {
  int fd;
  const struct net_iface *ifc;
  uint32_t xid;
  uint64_t start;
};

static uint16_t
ip_csum(const void *data, size_t len)
{
  const uint8_t *p = data;
  uint32_t sum = 0;

  for (size_t i = 0; i + 1 < len; i += 2)
    sum += (uint32_t)(p[i] << 8 | p[i + 1]);
  while (sum >> 16)
    sum = (sum & 0xffff) + (sum >> 16);
  return htons((uint16_t)~sum);
}

static uint8_t *
opt_put(uint8_t *o, uint8_t code, const void *data, uint8_t len)
{
  *o++ = code;
  *o++ = len;
  memcpy(o, data, len);
  return o + len;
}

static int
dhcp_send(struct dhcp_state *st, int type, const struct net_lease *offer)
{
  static const uint8_t params[] = { OPT_SUBNET, OPT_ROUTER,    OPT_DNS,   OPT_HOSTNAME,
                                    OPT_DOMAIN, OPT_ROOT_PATH, OPT_LEASE, OPT_SERVER_ID };
  struct packet pkt;
  struct sockaddr_ll to;
  uint8_t *o, t = (uint8_t)type, cid[7];
  uint16_t maxsize = htons(1400);
  size_t blen;

  memset(&pkt, 0, sizeof(pkt));
  pkt.b.op = 1;
  pkt.b.htype = 1;
  pkt.b.hlen = 6;
  pkt.b.xid = st->xid;
  pkt.b.secs = htons((uint16_t)((now_ms() - st->start) / 1000));
  /* Ask for broadcast replies: we cannot receive unicast IP yet through
   * the stack, and some relays need it. */
  pkt.b.flags = htons(0x8000);
  memcpy(pkt.b.chaddr, st->ifc->mac, 6);
  pkt.b.magic = htonl(DHCP_MAGIC);
  o = pkt.b.options;
  o = opt_put(o, OPT_MSGTYPE, &t, 1);
  cid[0] = 1;
  memcpy(cid + 1, st->ifc->mac, 6);
  o = opt_put(o, OPT_CLIENT_ID, cid, 7);
  o = opt_put(o, OPT_MAXSIZE, &maxsize, 2);
  o = opt_put(o, OPT_PARAMS, params, sizeof(params));
  if (type == DHCPREQUEST) {
    o = opt_put(o, OPT_REQ_IP, &offer->addr.s_addr, 4);
    o = opt_put(o, OPT_SERVER_ID, &offer->server.s_addr, 4);
  }
  *o++ = OPT_END;
  blen = (size_t)(o - (uint8_t *)&pkt.b);
  if (blen < 300)
    blen = 300; /* BOOTP minimum, some servers insist */

  pkt.h.vhl = 0x45;
  pkt.h.len = htons((uint16_t)(sizeof(pkt.h) + blen));
  pkt.h.ttl = 64;
  pkt.h.proto = IPPROTO_UDP;
  pkt.h.src = 0;
  pkt.h.dst = 0xffffffffu;
  pkt.h.csum = ip_csum(&pkt.h, 20);
  pkt.h.sport = htons(DHCP_CLIENT_PORT);
  pkt.h.dport = htons(DHCP_SERVER_PORT);
  pkt.h.ulen = htons((uint16_t)(8 + blen));
  pkt.h.ucsum = 0; /* optional over IPv4 */

  memset(&to, 0, sizeof(to));
  to.sll_family = AF_PACKET;
  to.sll_protocol = htons(ETH_P_IP);
  to.sll_ifindex = st->ifc->ifindex;
  to.sll_halen = 6;
  memset(to.sll_addr, 0xff, 6);
  if (sendto(st->fd, &pkt, sizeof(pkt.h) + blen, 0, (struct sockaddr *)&to, sizeof(to)) <
      0)
    return -errno;
  return 0;
}

static void
copy_str(char *dst, size_t dstlen, const uint8_t *s, size_t len)
{
  size_t j = 0;

  /* Sanitized: these end up quoted in /run/net-IFACE.conf. */
  for (size_t i = 0; i < len && s[i] && j + 1 < dstlen; i++)
    dst[j++] = (s[i] >= 0x20 && s[i] < 0x7f && s[i] != '\'') ? (char)s[i] : '_';
  dst[j] = '\0';
}

/* Returns the message type of a valid reply for us, or 0. */
static int
dhcp_parse(struct dhcp_state *st, const uint8_t *buf, size_t n, struct net_lease *l)
{
  const struct ip4udp *h = (const void *)buf;
  const struct bootp *b;
  const uint8_t *o, *end;
  size_t ihl;
  int type = 0;

  if (n < sizeof(*h) || (h->vhl >> 4) != 4 || h->proto != IPPROTO_UDP)
    return 0;
  ihl = (size_t)(h->vhl & 15) * 4;
  if (ihl < 20 || n < ihl + 8 + offsetof(struct bootp, options))
    return 0;
  /* UDP ports follow the (possibly longer) IP header. */
  const uint16_t *ports = (const void *)(buf + ihl);
  if (ports[1] != htons(DHCP_CLIENT_PORT))
    return 0;
  b = (const void *)(buf + ihl + 8);
  if (b->op != 2 || b->xid != st->xid || memcmp(b->chaddr, st->ifc->mac, 6) ||
      b->magic != htonl(DHCP_MAGIC))
    return 0;

  memset(l, 0, sizeof(*l));
  l->addr.s_addr = b->yiaddr;
  l->siaddr.s_addr = b->siaddr;
  end = buf + n;
  for (o = b->options; o < end && *o != OPT_END;) {
    uint8_t code = *o++, len;
    if (code == OPT_PAD)
      continue;
    if (o >= end)
      break;
    len = *o++;
    if (o + len > end)
      break;
    switch (code) {
      case OPT_MSGTYPE:
        if (len == 1)
          type = o[0];
        break;
      case OPT_SUBNET:
        if (len == 4) {
          memcpy(&l->netmask, o, 4);
          l->has_netmask = true;
        }
        break;
      case OPT_ROUTER:
        if (len >= 4) {
          memcpy(&l->gw, o, 4);
          l->has_gw = true;
        }
        break;
      case OPT_DNS:
        for (int i = 0; i + 4 <= len && l->ndns < 2; i += 4)
          memcpy(&l->dns[l->ndns++], o + i, 4);
        break;
      case OPT_SERVER_ID:
        if (len == 4) {
          memcpy(&l->server, o, 4);
          l->has_server = true;
        }
        break;
      case OPT_LEASE:
        if (len == 4) {
          uint32_t v;
          memcpy(&v, o, 4);
          l->lease_secs = ntohl(v);
        }
        break;
      case OPT_HOSTNAME: copy_str(l->hostname, sizeof(l->hostname), o, len); break;
      case OPT_DOMAIN: copy_str(l->domain, sizeof(l->domain), o, len); break;
      case OPT_ROOT_PATH: copy_str(l->root_path, sizeof(l->root_path), o, len); break;
    }
    o += len;
  }
  if (!l->has_netmask) {
    l->netmask.s_addr = htonl(0xffffff00u);
    l->has_netmask = true;
  }
  return type;
}

/* Sends type and waits for one of want; the send repeats with a doubling
 * timeout until deadline. */
static int
exchange(struct dhcp_state *st, int type, const struct net_lease *req,
         struct net_lease *reply, int want, uint64_t deadline)
{
  static uint8_t buf[2048];
  unsigned timeout = 1000;
  int ret;

  while (now_ms() < deadline) {
    uint64_t until;

    ret = dhcp_send(st, type, req);
    if (ret)
      return ret;
    until = now_ms() + timeout + (st->xid % 500);
    if (until > deadline)
      until = deadline;
    for (;;) {
      uint64_t now = now_ms();
      struct pollfd pfd = { .fd = st->fd, .events = POLLIN };
      struct sockaddr_ll from;
      socklen_t fl = sizeof(from);
      ssize_t n;
      int t;

      if (now >= until)
        break;
      if (poll(&pfd, 1, (int)(until - now)) <= 0)
        continue;
      n = recvfrom(st->fd, buf, sizeof(buf), 0, (struct sockaddr *)&from, &fl);
      if (n <= 0 || from.sll_pkttype == PACKET_OUTGOING)
        continue;
      t = dhcp_parse(st, buf, (size_t)n, reply);
      if (t == want || (want == DHCPACK && t == DHCPNAK))
        return t;
    }
    if (timeout < 8000)
      timeout *= 2;
  }
  return -ETIMEDOUT;
}

int
dhcp_run(const struct net_iface *ifc, struct net_lease *l, unsigned total_ms)
{
  struct dhcp_state st = { .ifc = ifc, .start = now_ms() };
  struct sockaddr_ll sll;
  struct net_lease offer;
  uint64_t deadline = st.start + total_ms;
  char a[INET_ADDRSTRLEN], s[INET_ADDRSTRLEN];
  int ret;

  st.fd = socket(AF_PACKET, SOCK_DGRAM | SOCK_CLOEXEC, htons(ETH_P_IP));
  if (st.fd < 0) {
    ret = -errno;
    say("DHCP: cannot open a packet socket: %s (is CONFIG_PACKET set?)", strerror(errno));
    return ret;
  }
  memset(&sll, 0, sizeof(sll));
  sll.sll_family = AF_PACKET;
  sll.sll_protocol = htons(ETH_P_IP);
  sll.sll_ifindex = ifc->ifindex;
  if (bind(st.fd, (struct sockaddr *)&sll, sizeof(sll))) {
    ret = -errno;
    say("DHCP: cannot bind to %s: %s", ifc->name, strerror(errno));
    goto out;
  }
  memcpy(&st.xid, ifc->mac + 2, 4);
  st.xid ^= (uint32_t)(now_ms() * 2654435761u);

  for (;;) {
    ret = exchange(&st, DHCPDISCOVER, NULL, &offer, DHCPOFFER, deadline);
    if (ret < 0)
      break;
    if (!offer.has_server)
      offer.server = offer.siaddr;
    ret = exchange(&st, DHCPREQUEST, &offer, l, DHCPACK, deadline);
    if (ret == DHCPACK)
      break;
    if (ret == DHCPNAK) {
      say("DHCP: server NAKed the offered address, starting over");
      continue;
    }
    break;
  }
  if (ret < 0) {
    say("DHCP on %s: no %s after %u s; check that a DHCP server serves "
        "this network (or use a static ip=)",
        ifc->name, ret == -ETIMEDOUT ? "answer" : "lease", total_ms / 1000);
    goto out;
  }
  if (!l->has_server)
    l->server = offer.server, l->has_server = offer.has_server;
  inet_ntop(AF_INET, &l->addr, a, sizeof(a));
  inet_ntop(AF_INET, &l->server, s, sizeof(s));
  say("DHCP: %s got %s from %s (lease %u s) in %llu ms", ifc->name, a, s, l->lease_secs,
      (unsigned long long)(now_ms() - st.start));
  ret = 0;
out:
  close(st.fd);
  return ret;
}
