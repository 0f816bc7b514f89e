/* SPDX-License-Identifier: GPL-2.0-or-later */
/* nbdroot initrd agent: finding the NIC and configuring IPv4.
 *
 * The classic ioctls are enough for one interface: link up, one address,
 * one default route.  The address is configured without a lifetime, so it
 * stays when the booted system takes over (it must not deconfigure the
 * interface its root depends on), and what was learned is written to
 * /run/net-IFACE.conf in the format of klibc's ipconfig, which
 * initramfs-tools-based systems already read.
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <net/route.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "agent.h"
#include "io.h"

void
net_format_mac(const uint8_t m[6], char sep, char *buf)
{
  sprintf(buf, "%02x%c%02x%c%02x%c%02x%c%02x%c%02x", m[0], sep, m[1], sep, m[2], sep,
          m[3], sep, m[4], sep, m[5]);
}

static int
read_sys(const char *ifname, const char *attr, char *buf, size_t len)
{
  char path[128];
  ssize_t n;

  snprintf(path, sizeof(path), "/sys/class/net/%s/%s", ifname, attr);
  n = read_small_file(path, buf, len);
  return n < 0 ? (int)n : 0;
}

static bool
parse_mac(const char *s, uint8_t mac[6])
{
  unsigned v[6];

  if (sscanf(s, "%x:%x:%x:%x:%x:%x", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5]) != 6)
    return false;
  for (int i = 0; i < 6; i++)
    mac[i] = (uint8_t)v[i];
  return true;
}

/* One pass over /sys/class/net: the Ethernet interface BOOTIF= or ip=
 * names, or else the one with the lowest ifindex.  seen lists what was
 * there, for the error message. */
static int
scan(const struct agent_config *cfg, struct net_iface *ifc, char *seen, size_t seenlen)
{
  char buf[64];
  struct dirent *de;
  DIR *d;
  int best = -1;

  seen[0] = '\0';
  d = opendir("/sys/class/net");
  if (!d)
    return -errno;
  while ((de = readdir(d))) {
    uint8_t mac[6];
    int idx;

    if (de->d_name[0] == '.' || !strcmp(de->d_name, "lo") ||
        strlen(de->d_name) >= IF_NAMESIZE)
      continue;
    if (read_sys(de->d_name, "type", buf, sizeof(buf)) || atoi(buf) != 1)
      continue; /* ARPHRD_ETHER only */
    if (read_sys(de->d_name, "address", buf, sizeof(buf)) || !parse_mac(buf, mac))
      continue;
    snprintf(seen + strlen(seen), seenlen - strlen(seen), "%s%s %s", seen[0] ? ", " : "",
             de->d_name, buf);
    if (cfg->has_bootif && memcmp(mac, cfg->bootif, 6))
      continue;
    if (cfg->device[0] && strcmp(cfg->device, de->d_name))
      continue;
    if (read_sys(de->d_name, "ifindex", buf, sizeof(buf)))
      continue;
    idx = atoi(buf);
    if (best >= 0 && idx > best)
      continue;
    best = idx;
    memcpy(ifc->name, de->d_name, strlen(de->d_name) + 1); /* checked above */
    ifc->ifindex = idx;
    memcpy(ifc->mac, mac, 6);
  }
  closedir(d);
  return best >= 0 ? 0 : -ENODEV;
}

int
net_find_iface(const struct agent_config *cfg, struct net_iface *ifc, unsigned wait_ms)
{
  uint64_t end = now_ms() + wait_ms;
  char seen[512], want[64] = "any Ethernet interface";
  int ret;

  /* Drivers probe asynchronously after their module is loaded. */
  for (;;) {
    ret = scan(cfg, ifc, seen, sizeof(seen));
    if (!ret) {
      char mac[20];
      net_format_mac(ifc->mac, ':', mac);
      say("using interface %s (%s)", ifc->name, mac);
      return 0;
    }
    if (now_ms() >= end)
      break;
    sleep_ms(50);
  }
  if (cfg->has_bootif) {
    net_format_mac(cfg->bootif, ':', want);
    memmove(want + 7, want, strlen(want) + 1);
    memcpy(want, "BOOTIF=", 7);
  } else if (cfg->device[0]) {
    snprintf(want, sizeof(want), "ip= device %s", cfg->device);
  }
  say("no network interface matches %s after %u s (found: %s); check "
      "BOOTIF=/ip= and that the NIC's driver module is in the initrd",
      want, wait_ms / 1000, seen[0] ? seen : "none");
  return -ENODEV;
}

static int
ifreq_sock(void)
{
  int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);

  if (s < 0)
    say("cannot create an IPv4 socket: %s", strerror(errno));
  return s < 0 ? -errno : s;
}

static int
set_up(int s, const char *name)
{
  struct ifreq ifr;

  memset(&ifr, 0, sizeof(ifr));
  snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", name);
  if (ioctl(s, SIOCGIFFLAGS, &ifr))
    return -errno;
  ifr.ifr_flags |= IFF_UP;
  if (ioctl(s, SIOCSIFFLAGS, &ifr))
    return -errno;
  return 0;
}

int
net_link_up(const struct net_iface *ifc)
{
  char buf[16];
  uint64_t end;
  int s, ret;

  s = ifreq_sock();
  if (s < 0)
    return s;
  set_up(s, "lo");
  ret = set_up(s, ifc->name);
  close(s);
  if (ret) {
    say("cannot bring %s up: %s", ifc->name, strerror(-ret));
    return ret;
  }
  /* DHCP packets sent before the carrier is there are lost. */
  end = now_ms() + 10000;
  while (now_ms() < end) {
    if (!read_sys(ifc->name, "carrier", buf, sizeof(buf)) && buf[0] == '1')
      return 0;
    sleep_ms(20);
  }
  say("%s: no carrier after 10 s; check the cable/switch port (trying "
      "anyway)",
      ifc->name);
  return 0;
}

static void
set_sin(struct sockaddr *sa, struct in_addr a)
{
  struct sockaddr_in sin = { .sin_family = AF_INET, .sin_addr = a };

  memcpy(sa, &sin, sizeof(sin));
}

/* The default route through l->gw, if there is one; an existing one is
 * fine. */
static int
add_default_route(int s, const struct net_iface *ifc, const struct net_lease *l)
{
  struct in_addr any = { 0 };
  struct rtentry rt;

  if (!l->has_gw || !l->gw.s_addr)
    return 0;
  memset(&rt, 0, sizeof(rt));
  set_sin(&rt.rt_dst, any);
  set_sin(&rt.rt_genmask, any);
  set_sin(&rt.rt_gateway, l->gw);
  rt.rt_flags = RTF_UP | RTF_GATEWAY;
  rt.rt_dev = (char *)ifc->name;
  if (ioctl(s, SIOCADDRT, &rt) && errno != EEXIST)
    return -errno;
  return 0;
}

int
net_configure(const struct net_iface *ifc, const struct net_lease *l)
{
  char a[INET_ADDRSTRLEN], m[INET_ADDRSTRLEN], g[INET_ADDRSTRLEN] = "none";
  struct ifreq ifr;
  struct in_addr bcast;
  int s, ret = 0;

  inet_ntop(AF_INET, &l->addr, a, sizeof(a));
  inet_ntop(AF_INET, &l->netmask, m, sizeof(m));
  if (l->has_gw)
    inet_ntop(AF_INET, &l->gw, g, sizeof(g));
  s = ifreq_sock();
  if (s < 0)
    return s;
  memset(&ifr, 0, sizeof(ifr));
  snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", ifc->name);
  set_sin(&ifr.ifr_addr, l->addr);
  if (ioctl(s, SIOCSIFADDR, &ifr)) {
    ret = -errno;
    say("cannot set address %s on %s: %s", a, ifc->name, strerror(errno));
    goto out;
  }
  if (l->has_netmask) {
    set_sin(&ifr.ifr_netmask, l->netmask);
    if (ioctl(s, SIOCSIFNETMASK, &ifr)) {
      ret = -errno;
      say("cannot set netmask %s on %s: %s", m, ifc->name, strerror(errno));
      goto out;
    }
    bcast.s_addr = l->addr.s_addr | ~l->netmask.s_addr;
    set_sin(&ifr.ifr_broadaddr, bcast);
    ioctl(s, SIOCSIFBRDADDR, &ifr);
  }
  ret = add_default_route(s, ifc, l);
  if (ret) {
    say("cannot add the default route via %s on %s: %s; is the gateway "
        "in %s/%s?",
        g, ifc->name, strerror(-ret), a, m);
    goto out;
  }
  say("%s: address %s netmask %s gateway %s", ifc->name, a, m, g);
out:
  close(s);
  return ret;
}

/* For the supervisor, when the root's connection is down: the booted
 * system may have taken the interface down or flushed the address the
 * root depends on (an "ifdown", a DHCP client that starts by flushing),
 * and then no reconnection can work.  Only ioctls here: /proc and /sys
 * are not reachable from the supervisor's root.  An interface that has
 * another address is left alone: someone configured it on purpose.
 * Returns 1 when something was repaired, 0 when all was in place. */
int
net_repair(const struct net_iface *ifc, const struct net_lease *l)
{
  char a[INET_ADDRSTRLEN];
  struct ifreq ifr;
  int s, ret = 0;

  inet_ntop(AF_INET, &l->addr, a, sizeof(a));
  s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (s < 0)
    return -errno;
  memset(&ifr, 0, sizeof(ifr));
  snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", ifc->name);
  if (!ioctl(s, SIOCGIFFLAGS, &ifr) && !(ifr.ifr_flags & IFF_UP)) {
    say("supervisor: %s is down, but the root needs it: bringing it up "
        "(check what the booted system does with %s)",
        ifc->name, ifc->name);
    ifr.ifr_flags |= IFF_UP;
    if (ioctl(s, SIOCSIFFLAGS, &ifr))
      say("supervisor: cannot bring %s up: %s", ifc->name, strerror(errno));
    /* taking a link down drops its routes, not its addresses */
    add_default_route(s, ifc, l);
    ret = 1;
  }
  memset(&ifr, 0, sizeof(ifr));
  snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", ifc->name);
  if (ioctl(s, SIOCGIFADDR, &ifr) && errno == EADDRNOTAVAIL) {
    say("supervisor: %s lost its address %s, but the root needs it: "
        "restoring it (check what the booted system does with %s)",
        ifc->name, a, ifc->name);
    net_configure(ifc, l);
    ret = 1;
  }
  close(s);
  return ret;
}

/* Best effort: the boot goes on without it. */
int
net_write_conf(const struct net_iface *ifc, const struct net_lease *l, const char *proto)
{
  char path[64], a[4][INET_ADDRSTRLEN], d[2][INET_ADDRSTRLEN];
  struct in_addr bcast = { l->addr.s_addr | ~l->netmask.s_addr };
  FILE *f;

  inet_ntop(AF_INET, &l->addr, a[0], sizeof(a[0]));
  inet_ntop(AF_INET, &l->netmask, a[1], sizeof(a[1]));
  inet_ntop(AF_INET, &bcast, a[2], sizeof(a[2]));
  if (l->has_gw)
    inet_ntop(AF_INET, &l->gw, a[3], sizeof(a[3]));
  else
    strcpy(a[3], "0.0.0.0");
  for (int i = 0; i < 2; i++) {
    if (i < l->ndns)
      inet_ntop(AF_INET, &l->dns[i], d[i], sizeof(d[i]));
    else
      strcpy(d[i], "0.0.0.0");
  }
  snprintf(path, sizeof(path), "/run/net-%s.conf", ifc->name);
  f = fopen(path, "we");
  if (!f) {
    say("cannot write %s: %s", path, strerror(errno));
    return -errno;
  }
  fprintf(f,
          "DEVICE='%s'\nPROTO='%s'\nIPV4ADDR='%s'\nIPV4NETMASK='%s'\n"
          "IPV4BROADCAST='%s'\nIPV4GATEWAY='%s'\nIPV4DNS0='%s'\n"
          "IPV4DNS1='%s'\nHOSTNAME='%s'\nDNSDOMAIN='%s'\nROOTPATH='%s'\n"
          "DHCPLEASETIME='%u'\n",
          ifc->name, proto, a[0], a[1], a[2], a[3], d[0], d[1], l->hostname, l->domain,
          l->root_path, l->lease_secs);
  fclose(f);
  return 0;
}
