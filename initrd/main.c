/* SPDX-License-Identifier: GPL-2.0-or-later */
/* nbdroot initrd agent: /init of the client's initramfs.
 *
 * The sequence: early mounts and console, kernel command line, modules,
 * NIC, DHCP or static address, NBD handshake, generic-netlink CONNECT,
 * mount, reconnect supervisor, switch_root, exec init.  In layered mode
 * (nbdroot.state=) two exports are attached, the base read-only and the
 * state disk, and the root is their overlay (layered.c).  Every step prints
 * one console line on failure; main() then retries (network steps) or
 * stops with a rescue message (configuration and mount errors).
 *
 * Run on a host as "nbdroot-agent --parse-cmdline LINE" it only parses LINE
 * and prints the configuration; as "nbdroot-agent --keep-prune DIR LIST" it
 * prunes the overlay upper directory DIR to the keep-list LIST as a new
 * base would (keep.c): both for tests, on the very code a boot runs.
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
static void __attribute__((noreturn))
rescue(const struct agent_config *cfg, const char *what)
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
static unsigned
backoff_ms(unsigned attempt, unsigned max_ms)
{
  unsigned ms = 500u << (attempt < 8 ? attempt : 8);

  if (ms > max_ms)
    ms = max_ms;
  return ms + (unsigned)(now_ms() % 250);
}

static void
boot_id(char *out, size_t len)
{
  char buf[64];
  size_t j = 0;

  if (read_small_file("/proc/sys/kernel/random/boot_id", buf, sizeof(buf)) <= 0)
    snprintf(buf, sizeof(buf), "t%llu", (unsigned long long)now_ms());
  for (size_t i = 0; buf[i] && j + 1 < len; i++)
    if (buf[i] != '-')
      out[j++] = buf[i];
  out[j] = '\0';
}

static int
setup_network(const struct agent_config *cfg, struct net_iface *ifc, struct net_lease *l)
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
static void
put_kv(FILE *f, const char *key, const char *val)
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
static void
write_state(const struct supervisor_args *sa, const char *mac, const char *bid,
            const char *base_id, int sv_pid)
{
  const struct sv_device *root = &sa->dev[0];
  char num[32];
  FILE *f = fopen("/run/nbdroot.conf", "we");

  if (!f) {
    say("cannot write /run/nbdroot.conf: %s", strerror(errno));
    return;
  }
  put_kv(f, "ROOT_MODE", sa->ndev > 1 ? "layered" : "block");
  snprintf(num, sizeof(num), "/dev/nbd%d", root->index);
  put_kv(f, "NBD_DEVICE", num);
  put_kv(f, "NBD_SERVER", root->target.host);
  put_kv(f, "NBD_PORT", root->target.port);
  put_kv(f, "NBD_EXPORT", root->target.name);
  snprintf(num, sizeof(num), "%llu", (unsigned long long)root->info.size);
  put_kv(f, "NBD_SIZE", num);
  snprintf(num, sizeof(num), "0x%x", root->info.flags);
  put_kv(f, "NBD_FLAGS", num);
  if (sa->ndev > 1) {
    snprintf(num, sizeof(num), "/dev/nbd%d", sa->dev[1].index);
    put_kv(f, "NBD_STATE_DEVICE", num);
    put_kv(f, "NBD_STATE_EXPORT", sa->dev[1].target.name);
    put_kv(f, "BASE_ID", base_id);
    put_kv(f, "BASE_MOUNT", LAYERED_BASE);
    put_kv(f, "STATE_MOUNT", LAYERED_STATE);
  }
  put_kv(f, "INTERFACE", sa->ifc.name);
  put_kv(f, "MAC", mac);
  put_kv(f, "BOOT_ID", bid);
  snprintf(num, sizeof(num), "%d", sv_pid > 0 ? sv_pid : 0);
  put_kv(f, "SUPERVISOR_PID", num);
  fclose(f);
}

static void
wait_for_node(const char *dev, unsigned ms)
{
  uint64_t end = now_ms() + ms;

  while (access(dev, F_OK) && now_ms() < end)
    sleep_ms(20);
}

/* The export name on the wire; the server keys the client's overlay by
 * the MAC and tells a new boot from a reconnect by the boot id (see
 * common/export-name.h).  Does not return if it is too long. */
static void
name_target(const struct agent_config *cfg, const char *name, const char *param,
            const char *mac, const char *bid, struct nbd_target *target)
{
  target->param = param;
  if (cmdline_wire_name(cfg, name, mac, bid, target->name, sizeof(target->name))) {
    say("export name '%s' with @%s,boot=%s is too long", name, mac, bid);
    rescue(cfg, "shorten the export name on the command line");
  }
}

/* DHCP's root-path (option 17) in dracut's form,
 * nbd:SERVER[:PORT][,SERVER[:PORT]...][/EXPORT...]: its servers, for a
 * command line that names none (the export stays the command line's). */
static bool
root_path_servers(const struct net_lease *lease, struct server_list *l)
{
  const char *rp = lease->root_path, *end;
  char why[200];

  if (strncmp(rp, "nbd:", 4))
    return false;
  rp += 4;
  end = rp + strcspn(rp, "/");
  if (servers_parse(rp, (size_t)(end - rp), l, why, sizeof(why))) {
    say("ignoring DHCP's root-path '%s': %s", lease->root_path, why);
    l->n = 0;
    return false;
  }
  return true;
}

/* The servers to try, in order: the first from the command line, else
 * from DHCP's root-path, ip= or DHCP; then the command line's others.
 * Does not return if there is none. */
static void
choose_servers(const struct agent_config *cfg, const struct net_lease *lease,
               struct server_list *l)
{
  char host[INET6_ADDRSTRLEN];

  l->n = 0;
  if (cfg->host[0]) {
    servers_add(l, cfg->host, cfg->port);
  } else if (root_path_servers(lease, l)) {
    say("no server in nbdroot=, using DHCP's root-path %s", lease->root_path);
  } else if (lease->has_server || lease->siaddr.s_addr) {
    struct in_addr a = lease->siaddr.s_addr ? lease->siaddr : lease->server;
    inet_ntop(AF_INET, &a, host, sizeof(host));
    servers_add(l, host, cfg->port);
    say("no server in nbdroot=, using %s from %s", host,
        cfg->ip_mode == IP_STATIC ? "ip=" : "DHCP");
  } else {
    say("no NBD server: nbdroot= has none and neither ip= nor DHCP gave one");
    rescue(cfg, "fix nbdroot=SERVER,EXPORT");
  }
  servers_default_port(l, cfg->port);
  for (unsigned i = 0; i < cfg->fallbacks.n; i++)
    if (servers_add(l, cfg->fallbacks.s[i].host, cfg->fallbacks.s[i].port))
      say("more than %d servers: not using %s", SERVERS_MAX, cfg->fallbacks.s[i].host);
}

/* The first server, its port and the name to ask it for.  Does not return
 * if the name is too long. */
static void
choose_target(const struct agent_config *cfg, const struct server_list *servers,
              const char *mac, const char *bid, struct nbd_target *target)
{
  snprintf(target->host, sizeof(target->host), "%s", servers->s[0].host);
  snprintf(target->port, sizeof(target->port), "%s", servers->s[0].port);
  name_target(cfg, cfg->export_name, "root=/nbdroot=", mac, bid, target);
}

/* The socket of a finished handshake with the first of the servers that
 * answers, from servers->s[*cur] on, retried with backoff as often as
 * nbdroot.retries= allows; *cur then says which.  Does not return if the
 * retries run out. */
static int
connect_export(const struct agent_config *cfg, const struct server_list *servers,
               unsigned *cur, struct nbd_target *target, struct nbd_export_info *info)
{
  for (unsigned i = 0;; i++) {
    int sock = nbd_connect_any(servers, cur, target, info, false);
    unsigned ms;

    if (sock >= 0)
      return sock;
    if (cfg->retries && i + 1 >= cfg->retries) {
      if (servers->n > 1)
        say("giving up after %u attempts to reach any of %u servers", i + 1, servers->n);
      else
        say("giving up after %u attempts to reach %s:%s", i + 1, target->host,
            target->port);
      rescue(cfg, "NBD server unreachable or export refused");
    }
    ms = backoff_ms(i, 10000);
    say("retrying in %u.%u s (attempt %u of %u)", ms / 1000, ms % 1000 / 100, i + 2,
        cfg->retries);
    sleep_ms(ms);
  }
}

/* Handshake with the first server of sa's that answers, from the one in
 * use on, then NBD_CMD_CONNECT of d->target; fills d.  Does not return on
 * failure. */
static void
attach(const struct agent_config *cfg, struct supervisor_args *sa, struct sv_device *d,
       int index, bool readonly, char *dev, size_t devlen)
{
  struct nbd_nl *nl = sa->nl;

  d->sock = connect_export(cfg, &sa->servers, &sa->server, &d->target, &d->info);
  d->index = nbd_nl_connect(nl, d->sock, index, &d->info, readonly, cfg->io_timeout,
                            cfg->dead_timeout);
  if (d->index < 0)
    rescue(cfg, "cannot attach the NBD device");
  snprintf(dev, devlen, "/dev/nbd%d", d->index);
  say("%s: %s:%s export '%s', %llu bytes, flags 0x%x%s", dev, d->target.host,
      d->target.port, d->target.name, (unsigned long long)d->info.size, d->info.flags,
      readonly ? ", attached read-only" : "");
  wait_for_node(dev, 5000);
}

/* Layered mode: the base read-only, the state disk beside it, the
 * overlay of the two on NEWROOT.  Does not return on failure. */
static void
layered_root(const struct agent_config *cfg, struct supervisor_args *sa, const char *mac,
             const char *bid, char *base_id, size_t idlen)
{
  char base_dev[32], state_dev[32];
  int ret;

  attach(cfg, sa, &sa->dev[0], cfg->nbd_index, true, base_dev, sizeof(base_dev));
  sa->dev[1].target = sa->dev[0].target;
  name_target(cfg, cfg->state_export, "nbdroot.state=", mac, bid, &sa->dev[1].target);
  attach(cfg, sa, &sa->dev[1], -1, false, state_dev, sizeof(state_dev));
  sa->ndev = 2;
  ret = layered_base_id(base_dev, &sa->dev[0].info, base_id, idlen);
  if (ret) {
    say("cannot read the base on %s: %s", base_dev, strerror(-ret));
    rescue(cfg, "the base export cannot be read");
  }
  if (layered_mount(cfg, base_dev, state_dev, base_id, NEWROOT))
    rescue(cfg, "cannot assemble the layered root (see the line above)");
}

static int
agent_main(void)
{
  static struct agent_config cfg;
  static struct net_lease lease;
  static struct nbd_nl nl;
  static struct supervisor_args sa;
  char cmdline[4096], err[512], mac[20], bid[40], dev[80], base_id[512] = "";
  uint64_t t0 = now_ms();
  int ret;

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
  if (cfg.state_export[0] && !layered_supported())
    rescue(&cfg, "no overlayfs for the layered root");

  ret = setup_network(&cfg, &sa.ifc, &lease);
  if (ret)
    rescue(&cfg, "no network (see the line above)");
  sa.lease = lease;

  net_format_mac(sa.ifc.mac, '-', mac);
  boot_id(bid, sizeof(bid));
  choose_servers(&cfg, &lease, &sa.servers);
  choose_target(&cfg, &sa.servers, mac, bid, &sa.dev[0].target);
  if (cfg.nbdopts[0])
    say("ignoring dracut's nbd-client options '%s' in root=; the agent "
        "has its own (nbdroot.timeout=, nbdroot.dead_timeout=, ...)",
        cfg.nbdopts);

  ret = nbd_nl_open(&nl);
  if (ret)
    rescue(&cfg, "the kernel's NBD netlink interface is missing");
  sa.nl = &nl;
  sa.io_timeout = cfg.io_timeout;
  if (cfg.state_export[0]) {
    layered_root(&cfg, &sa, mac, bid, base_id, sizeof(base_id));
    snprintf(dev, sizeof(dev), "overlayfs (base /dev/nbd%d, state /dev/nbd%d)",
             sa.dev[0].index, sa.dev[1].index);
  } else {
    attach(&cfg, &sa, &sa.dev[0], cfg.nbd_index, false, dev, sizeof(dev));
    sa.ndev = 1;
    if (mount_root(&cfg, dev, NEWROOT))
      rescue(&cfg, "cannot mount the root filesystem");
  }

  ret = supervisor_start(&sa);
  if (ret < 0)
    say("warning: no reconnect supervisor (%s): a lost connection will not "
        "be repaired",
        strerror(-ret));
  /* the kernel and the supervisor hold their own references */
  for (int i = 0; i < sa.ndev; i++)
    close(sa.dev[i].sock);
  write_state(&sa, mac, bid, base_id, ret);

  say("switching root to %s after %llu ms, exec %s", dev,
      (unsigned long long)(now_ms() - t0), cfg.init);
  ret = switch_root(NEWROOT, cfg.init);
  rescue(&cfg, "switch_root failed");
  return ret;
}

/* --keep-prune DIR LIST: keep_prune() on a host directory. */
static int
keep_prune_dir(const char *dir, const char *keep)
{
  struct keep_counts n;
  int fd, ret;

  console_timestamps(false);
  fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  ret = fd < 0 ? -errno : keep_prune(fd, keep, &n);
  if (fd >= 0)
    close(fd);
  if (ret) {
    say("cannot prune %s to the keep-list %s: %s", dir, keep, strerror(-ret));
    return 1;
  }
  printf("removed %u entries, kept %u\n", n.removed, n.kept);
  return 0;
}

int
main(int argc, char **argv)
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
  if (argc == 4 && !strcmp(argv[1], "--keep-prune"))
    return keep_prune_dir(argv[2], argv[3]);
  if (getpid() != 1) {
    fprintf(stderr,
            "usage: %s --parse-cmdline LINE | --keep-prune DIR LIST\n"
            "  (as /init of an initramfs it boots the root from NBD; see "
            "nbdroot-agent(7))\n",
            argv[0]);
    return 2;
  }
  supervisor_argv0 = argv[0];
  return agent_main();
}
