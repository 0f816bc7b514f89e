/* nbdroot initrd agent: /init of the client's initramfs.
 *
 * The sequence: early mounts and console, kernel command line, modules,
 * NIC, DHCP or static address, NBD handshake, generic-netlink CONNECT,
 * mount, reconnect supervisor, switch_root, exec init.  Every step prints
 * one console line on failure; main() then retries (network steps) or
 * stops with a rescue message (configuration and mount errors).
 *
 * Run on a host as "nbdroot-agent --parse-cmdline LINE" it only parses LINE
 * and prints the configuration, for tests.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/reboot.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent.h"
#include "io.h"

#define MODULE_LIST "/etc/nbdroot/modules"
#define NEWROOT "/newroot"

/* PID 1 must never exit (the kernel would panic without telling why), so
 * the rescue either waits forever or powers off/reboots as asked. */
static void __attribute__((noreturn)) rescue(const struct agent_config *cfg,
                                             const char *what)
{
  enum rescue_action act = cfg ? cfg->rescue : RESCUE_HALT;
  static const char *const acts[] = {
    "halting here (nbdroot.rescue=reboot retries from the start)",
    "powering off (nbdroot.rescue=poweroff)",
    "rebooting in 10 s (nbdroot.rescue=reboot)",
  };

  say("RESCUE: boot stopped: %s; %s", what, acts[act]);
  sync();
  if (act == RESCUE_POWEROFF) {
    reboot(RB_POWER_OFF);
  } else if (act == RESCUE_REBOOT) {
    sleep_ms(10000);
    reboot(RB_AUTOBOOT);
  }
  for (;;) {
    sleep_ms(600000);
    say("RESCUE: still stopped: %s", what);
  }
}

/* A back-off that grows to max_ms; the jitter keeps many clients that lost
 * the same server from coming back in lockstep. */
static unsigned backoff_ms(unsigned attempt, unsigned max_ms)
{
  unsigned ms = 500u << (attempt < 8 ? attempt : 8);

  if (ms > max_ms)
    ms = max_ms;
  return ms + (unsigned)(now_ms() % 250);
}

static void boot_id(char *out, size_t len)
{
  char buf[64];
  size_t j = 0;

  if (read_small_file("/proc/sys/kernel/random/boot_id", buf, sizeof(buf)) <=
      0)
    snprintf(buf, sizeof(buf), "t%llu", (unsigned long long)now_ms());
  for (size_t i = 0; buf[i] && j + 1 < len; i++)
    if (buf[i] != '-')
      out[j++] = buf[i];
  out[j] = '\0';
}

static int setup_network(const struct agent_config *cfg, struct net_iface *ifc,
                         struct net_lease *l)
{
  int ret;

  ret = net_find_iface(cfg, ifc, 20000);
  if (ret)
    return ret;
  ret = net_link_up(ifc);
  if (ret)
    return ret;
  memset(l, 0, sizeof(*l));
  if (cfg->ip_mode == IP_STATIC) {
    l->addr = cfg->client;
    l->netmask = cfg->netmask;
    l->has_netmask = cfg->has_netmask;
    l->gw = cfg->gw;
    l->has_gw = cfg->has_gw;
    l->server = cfg->ip_server;
    l->has_server = cfg->has_ip_server;
    l->dns[0] = cfg->dns[0];
    l->dns[1] = cfg->dns[1];
    l->ndns = cfg->ndns;
    snprintf(l->hostname, sizeof(l->hostname), "%s", cfg->hostname);
  } else {
    for (unsigned i = 0;; i++) {
      ret = dhcp_run(ifc, l, 30000);
      if (!ret)
        break;
      if (cfg->retries && i + 1 >= cfg->retries)
        return ret;
      sleep_ms(backoff_ms(i, 10000));
    }
    if (cfg->hostname[0])
      snprintf(l->hostname, sizeof(l->hostname), "%s", cfg->hostname);
  }
  ret = net_configure(ifc, l);
  if (ret)
    return ret;
  if (l->hostname[0])
    sethostname(l->hostname, strlen(l->hostname));
  net_write_conf(ifc, l, cfg->ip_mode == IP_STATIC ? "none" : "dhcp");
  return 0;
}

/* KEY='VALUE' with the value quoted for a POSIX shell. */
static void put_kv(FILE *f, const char *key, const char *val)
{
  fprintf(f, "%s='", key);
  for (; *val; val++) {
    if (*val == '\'')
      fputs("'\\''", f);
    else
      fputc(*val, f);
  }
  fputs("'\n", f);
}

/* What the booted system may want to know about its root (and the
 * supervisor it must leave alone).  /run moves into the new root, so the
 * file is there after switch_root.  Best effort. */
static void write_state(const struct nbd_target *t, const char *dev,
                        const struct nbd_export_info *info,
                        const struct net_iface *ifc, const char *mac,
                        const char *bid, int sv_pid)
{
  char num[32];
  FILE *f = fopen("/run/nbdroot.conf", "we");

  if (!f) {
    say("cannot write /run/nbdroot.conf: %s", strerror(errno));
    return;
  }
  put_kv(f, "NBD_DEVICE", dev);
  put_kv(f, "NBD_SERVER", t->host);
  put_kv(f, "NBD_PORT", t->port);
  put_kv(f, "NBD_EXPORT", t->name);
  snprintf(num, sizeof(num), "%llu", (unsigned long long)info->size);
  put_kv(f, "NBD_SIZE", num);
  snprintf(num, sizeof(num), "0x%x", info->flags);
  put_kv(f, "NBD_FLAGS", num);
  put_kv(f, "INTERFACE", ifc->name);
  put_kv(f, "MAC", mac);
  put_kv(f, "BOOT_ID", bid);
  snprintf(num, sizeof(num), "%d", sv_pid > 0 ? sv_pid : 0);
  put_kv(f, "SUPERVISOR_PID", num);
  fclose(f);
}

static void wait_for_node(const char *dev, unsigned ms)
{
  uint64_t end = now_ms() + ms;

  while (access(dev, F_OK) && now_ms() < end)
    sleep_ms(20);
}

/* The server (from the command line, else from ip= or DHCP), its port
 * and the name to ask it for.  Does not return if there is none. */
static void choose_target(const struct agent_config *cfg,
                          const struct net_lease *lease, const char *mac,
                          const char *bid, struct nbd_target *target)
{
  if (cfg->host[0]) {
    snprintf(target->host, sizeof(target->host), "%s", cfg->host);
  } else if (lease->has_server || lease->siaddr.s_addr) {
    struct in_addr a = lease->siaddr.s_addr ? lease->siaddr : lease->server;
    inet_ntop(AF_INET, &a, target->host, sizeof(target->host));
    say("no server in nbdroot=, using %s from %s", target->host,
        cfg->ip_mode == IP_STATIC ? "ip=" : "DHCP");
  } else {
    say("no NBD server: nbdroot= has none and neither ip= nor DHCP gave one");
    rescue(cfg, "fix nbdroot=SERVER,EXPORT");
  }
  snprintf(target->port, sizeof(target->port), "%s", cfg->port);
  /* The server keys the client's overlay by the MAC and tells a new boot
   * from a reconnect by the boot id (see common/export-name.h). */
  if (cmdline_wire_name(cfg, mac, bid, target->name, sizeof(target->name))) {
    say("export name '%s' with @%s,boot=%s is too long", cfg->export_name,
        mac, bid);
    rescue(cfg, "shorten the export name in root=/nbdroot=");
  }
}

/* The socket of a finished handshake, retried with backoff as often as
 * nbdroot.retries= allows.  Does not return if the retries run out. */
static int connect_export(const struct agent_config *cfg,
                          const struct nbd_target *target,
                          struct nbd_export_info *info)
{
  for (unsigned i = 0;; i++) {
    int sock = nbd_connect_export(target, info, false);
    unsigned ms;

    if (sock >= 0)
      return sock;
    if (cfg->retries && i + 1 >= cfg->retries) {
      say("giving up after %u attempts to reach %s:%s", i + 1, target->host,
          target->port);
      rescue(cfg, "NBD server unreachable or export refused");
    }
    ms = backoff_ms(i, 10000);
    say("retrying in %u.%u s (attempt %u of %u)", ms / 1000, ms % 1000 / 100,
        i + 2, cfg->retries);
    sleep_ms(ms);
  }
}

static int agent_main(void)
{
  static struct agent_config cfg;
  static struct net_iface ifc;
  static struct net_lease lease;
  static struct nbd_target target;
  static struct nbd_nl nl;
  static struct supervisor_args sa;
  struct nbd_export_info info;
  char cmdline[4096], err[512], mac[20], bid[40], dev[32];
  uint64_t t0 = now_ms();
  int ret, sock = -1, index;

  ret = mount_early();
  if (ret)
    rescue(NULL, "early mounts failed");
  say("agent started (kernel uptime %llu ms)", (unsigned long long)t0);

  ret = read_small_file("/proc/cmdline", cmdline, sizeof(cmdline));
  if (ret < 0)
    rescue(NULL, "cannot read /proc/cmdline");
  if (cmdline_parse(cmdline, &cfg, err, sizeof(err))) {
    say("bad kernel command line: %s", err);
    rescue(&cfg, "fix the kernel command line");
  }

  modules_load(MODULE_LIST);

  ret = setup_network(&cfg, &ifc, &lease);
  if (ret)
    rescue(&cfg, "no network (see the line above)");

  net_format_mac(ifc.mac, '-', mac);
  boot_id(bid, sizeof(bid));
  choose_target(&cfg, &lease, mac, bid, &target);
  if (cfg.nbdopts[0])
    say("ignoring dracut's nbd-client options '%s' in root=; the agent "
        "has its own (nbdroot.timeout=, nbdroot.dead_timeout=, ...)",
        cfg.nbdopts);

  ret = nbd_nl_open(&nl);
  if (ret)
    rescue(&cfg, "the kernel's NBD netlink interface is missing");
  sock = connect_export(&cfg, &target, &info);

  index = nbd_nl_connect(&nl, sock, cfg.nbd_index, &info, cfg.io_timeout,
                         cfg.dead_timeout);
  if (index < 0)
    rescue(&cfg, "cannot attach the NBD device");
  snprintf(dev, sizeof(dev), "/dev/nbd%d", index);
  say("%s: %s:%s export '%s', %llu bytes, flags 0x%x", dev, target.host,
      target.port, target.name, (unsigned long long)info.size, info.flags);
  wait_for_node(dev, 5000);

  ret = mount_root(&cfg, dev, NEWROOT);
  if (ret)
    rescue(&cfg, "cannot mount the root filesystem");

  sa.nl = &nl;
  sa.target = target;
  sa.info = info;
  sa.index = index;
  sa.sock = sock;
  sa.io_timeout = cfg.io_timeout;
  sa.ifc = ifc;
  sa.lease = lease;
  ret = supervisor_start(&sa);
  if (ret < 0)
    say("warning: no reconnect supervisor (%s): a lost connection will not "
        "be repaired", strerror(-ret));
  /* the kernel and the supervisor hold their own references */
  close(sock);
  write_state(&target, dev, &info, &ifc, mac, bid, ret);

  say("switching root to %s after %llu ms, exec %s", dev,
      (unsigned long long)(now_ms() - t0), cfg.init);
  ret = switch_root(NEWROOT, cfg.init);
  rescue(&cfg, "switch_root failed");
  return ret;
}

int main(int argc, char **argv)
{
  if (argc == 3 && !strcmp(argv[1], "--parse-cmdline")) {
    struct agent_config cfg;
    char err[512];

    console_timestamps(false);
    if (cmdline_parse(argv[2], &cfg, err, sizeof(err))) {
      say("bad kernel command line: %s", err);
      return 1;
    }
    cmdline_print(&cfg, STDOUT_FILENO);
    return 0;
  }
  if (getpid() != 1) {
    fprintf(stderr,
            "usage: %s --parse-cmdline LINE\n"
            "  (as /init of an initramfs it boots the root from NBD; see "
            "nbdroot-agent(7))\n", argv[0]);
    return 2;
  }
  supervisor_argv0 = argv[0];
  return agent_main();
}
