/* SPDX-License-Identifier: GPL-2.0-or-later */
/* nbdroot initrd agent: private header shared by the agent's files.
 *
 * The agent is /init of the client's initramfs.  Every step returns -errno
 * and prints its own console line on failure, so main() only has to decide
 * whether to retry or to stop with a rescue message.
 */
#ifndef NBDROOT_AGENT_H
#define NBDROOT_AGENT_H

#include <net/if.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "clock.h" /* common/: now_ms, milliseconds since boot */
#include "util.h"  /* common/: ARRAY_SIZE */

#define AGENT_NAME "nbdroot"

/* ---- servers.c: the NBD servers a client may use (pure) -------------- */

#define SERVERS_MAX 8

struct nbd_server {
  char host[256]; /* an IPv4 or IPv6 literal, without brackets */
  char port[16];  /* decimal; "" until a default is given */
};

struct server_list {
  struct nbd_server s[SERVERS_MAX];
  unsigned n;
};

bool server_host_valid(const char *host);
/* Appends the n bytes at s, "SERVER[:PORT][,SERVER[:PORT]...]", to l,
 * leaving out servers l already has.  -EINVAL with err saying which item
 * is wrong, or that l would hold more than SERVERS_MAX. */
int servers_parse(const char *s, size_t n, struct server_list *l, char *err,
                  size_t errlen);
/* Appends one server unless l has it; -E2BIG if l is full. */
int servers_add(struct server_list *l, const char *host, const char *port);
/* Gives port to every server of l that has none. */
void servers_default_port(struct server_list *l, const char *port);
/* "HOST:PORT", or "[HOST]:PORT" for IPv6. */
void server_format(const struct nbd_server *sv, char *buf, size_t len);

/* ---- cmdline.c ------------------------------------------------------- */

enum ip_mode {
  IP_DEFAULT = 0, /* no ip= given: DHCP, as an NBD root needs a network */
  IP_DHCP,
  IP_STATIC,
  IP_OFF,
};

enum rescue_action { RESCUE_HALT = 0, RESCUE_POWEROFF, RESCUE_REBOOT };

struct agent_config {
  /* ip= */
  enum ip_mode ip_mode;
  struct in_addr client, ip_server, gw, netmask, dns[2];
  bool has_client, has_ip_server, has_gw, has_netmask;
  int ndns;
  char hostname[65];
  char device[IF_NAMESIZE];
  /* BOOTIF= */
  bool has_bootif;
  uint8_t bootif[6];
  /* root= / nbdroot= */
  bool nbd;       /* the root is on NBD (root=nbd: or nbdroot=) */
  char host[256]; /* literal address; "" means "from ip=/DHCP" */
  char port[16];  /* decimal */
  char export_name[256];
  bool export_given;            /* an export name was given (may be "") */
  int nbd_index;                /* -1: let the kernel pick */
  struct server_list fallbacks; /* tried after host:port, in order */
  char servers_opt[512];        /* nbdroot.servers= as given */
  char root[256];               /* the root= value as given */
  char fstype[32];              /* "" means "try the kernel's block filesystems" */
  char rootflags[256];
  char nbdopts[128]; /* dracut's nbd-client options: reported, unused */
  bool readonly;
  char init[256];
  /* nbdroot.* knobs (documented in nbdroot-agent(7)) */
  unsigned retries;      /* connect attempts before the rescue; 0 = forever */
  unsigned dead_timeout; /* NBD dead-connection timeout, seconds */
  unsigned io_timeout;   /* NBD request timeout, seconds */
  bool send_id;          /* append @MAC,boot=ID to the export name */
  enum rescue_action rescue;
  /* layered root (nbdroot.state=, nbdroot.keep=; see layered.c) */
  char state_export[256]; /* "" means block mode */
  char keep[512];         /* comma-separated absolute paths; "" keeps all */
};

/* Parses a kernel command line.  Pure: no I/O but for the error text.
 * Returns 0, or -EINVAL with err (of errlen bytes) saying which word is
 * wrong and why. */
int cmdline_parse(const char *line, struct agent_config *cfg, char *err, size_t errlen);
/* Prints the parsed configuration as KEY=VALUE lines (for tests). */
void cmdline_print(const struct agent_config *cfg, int fd);
/* The export name sent on the wire for name (the root's export or the
 * state export): NAME@MAC,boot=BOOTID unless nbdroot.send_id=0 (see
 * nbdroot-agent(7)).  -ENAMETOOLONG if it does not fit in len bytes. */
int cmdline_wire_name(const struct agent_config *cfg, const char *name, const char *mac,
                      const char *boot_id, char *out, size_t len);

/* ---- console.c: console output and time (calls no other agent file) -- */

/* One line on the console, prefixed with a kernel-style timestamp unless
 * console_timestamps(false) turned that off (--parse-cmdline on a host). */
void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Sleeps ms milliseconds (restarting on EINTR). */
void sleep_ms(unsigned ms);
void console_timestamps(bool on);

/* ---- modules.c ------------------------------------------------------- */

int modules_load(const char *list);

/* ---- net.c ----------------------------------------------------------- */

struct net_iface {
  char name[IF_NAMESIZE];
  int ifindex;
  uint8_t mac[6];
};

struct net_lease {
  struct in_addr addr, netmask, gw, server, siaddr, dns[2];
  bool has_netmask, has_gw, has_server;
  int ndns;
  uint32_t lease_secs;
  char hostname[65];
  char domain[65];
  char root_path[256];
};

int net_find_iface(const struct agent_config *cfg, struct net_iface *ifc,
                   unsigned wait_ms);
int net_link_up(const struct net_iface *ifc);
int net_configure(const struct net_iface *ifc, const struct net_lease *l);
int net_repair(const struct net_iface *ifc, const struct net_lease *l);
int net_write_conf(const struct net_iface *ifc, const struct net_lease *l,
                   const char *proto);
void net_format_mac(const uint8_t mac[6], char sep, char *buf);

/* ---- dhcp.c ---------------------------------------------------------- */

int dhcp_run(const struct net_iface *ifc, struct net_lease *l, unsigned total_ms);

/* ---- nbd-handshake.c ------------------------------------------------- */

struct nbd_target {
  char host[256];
  char port[16];
  char name[512];    /* the export name sent on the wire */
  const char *param; /* the command line words that name it, for hints */
};

struct nbd_export_info {
  uint64_t size;
  uint16_t flags;
  char description[256]; /* NBD_INFO_DESCRIPTION, "" if the server sent none */
};

/* Connects and negotiates; returns a connected socket fd or -errno.  On
 * failure *fatal is set when retrying cannot help (e.g. unknown export
 * is still retried: the server may be reconfigured; a protocol error is
 * fatal). */
int nbd_connect_export(const struct nbd_target *t, struct nbd_export_info *info,
                       bool quiet);
/* The servers of l in turn from l->s[*cur], each once and each bounded as
 * above: the first that answers wins, and *cur and t's host and port then
 * name it.  Returns its socket, or the last server's -errno. */
int nbd_connect_any(const struct server_list *l, unsigned *cur, struct nbd_target *t,
                    struct nbd_export_info *info, bool quiet);

/* ---- nbd-netlink.c --------------------------------------------------- */

struct nbd_nl {
  int fd;       /* request socket */
  int mcast_fd; /* subscribed to nbd_mc_group, or -1 */
  uint16_t family;
  uint32_t seq;
};

int nbd_nl_open(struct nbd_nl *nl);
/* readonly makes the kernel's device read-only whatever the server said. */
int nbd_nl_connect(struct nbd_nl *nl, int sock, int index,
                   const struct nbd_export_info *info, bool readonly, unsigned io_timeout,
                   unsigned dead_timeout);
int nbd_nl_reconfigure(struct nbd_nl *nl, int index, int sock);
/* Reads every queued event without blocking.  Returns 0 and sets bit N of
 * *dead for each /dev/nbdN (N < 64) whose link died, -EAGAIN when there
 * was none, -ENOBUFS when events were lost. */
int nbd_nl_recv_events(struct nbd_nl *nl, uint64_t *dead);

/* ---- switch-root.c --------------------------------------------------- */

int mount_early(void);
int mount_root(const struct agent_config *cfg, const char *dev, const char *target);
/* Whether the root at root has an executable init (errno set if not). */
bool init_missing(const char *root, const char *init);
void split_flags(const char *opts, unsigned long *flags, char *data, size_t datalen);
int switch_root(const char *newroot, const char *init);

/* ---- layered.c: the overlayfs root of layered mode --------------------- */

#define LAYERED_DIR "/run/nbdroot"
#define LAYERED_BASE LAYERED_DIR "/base"
#define LAYERED_STATE LAYERED_DIR "/state"

/* Whether the kernel (with the initrd's modules loaded) has overlayfs;
 * says what to do if not. */
bool layered_supported(void);
/* The identity of the base on base_dev: its description (if the server
 * sent one), size, and a checksum of its first blocks.  -errno. */
int layered_base_id(const char *base_dev, const struct nbd_export_info *info, char *out,
                    size_t len);
/* Mounts base_dev read-only at LAYERED_BASE and state_dev (ext4) at
 * LAYERED_STATE, prunes the upper layer to the keep-list if base_id
 * changed, and mounts the overlay on target.  Prints one line on failure. */
int layered_mount(const struct agent_config *cfg, const char *base_dev,
                  const char *state_dev, const char *base_id, const char *target);

/* ---- keep.c: what of the upper layer survives a new base ------------- */

struct keep_counts {
  unsigned removed; /* entries removed (files, whiteouts, directories) */
  unsigned kept;    /* keep-list paths present in the upper layer */
};

/* Removes from the overlay upper directory upper_fd everything outside
 * the comma-separated keep-list (whiteouts and opaque markers included;
 * the directories above a kept path stay, made transparent).  -errno. */
int keep_prune(int upper_fd, const char *keep, struct keep_counts *n);

/* ---- supervisor.c ---------------------------------------------------- */

/* One device the supervisor keeps connected. */
struct sv_device {
  struct nbd_target target;
  struct nbd_export_info info;
  int index;
  int sock; /* the socket handed to the kernel */
};

#define SV_MAX_DEVICES 2 /* block mode: the root; layered: base and state */

struct supervisor_args {
  struct nbd_nl *nl;
  struct sv_device dev[SV_MAX_DEVICES];
  int ndev;
  /* Where the exports are, in order of choice, and the one in use: every
   * device goes to the server the first one reconnected to. */
  struct server_list servers;
  unsigned server;
  unsigned io_timeout;  /* as given to NBD_CMD_CONNECT */
  struct net_iface ifc; /* to repair the network the root needs */
  struct net_lease lease;
};

/* argv[0] of PID 1; the supervisor marks it with '@'. */
extern char *supervisor_argv0;
/* Forks the supervisor; returns its pid or -errno. */
int supervisor_start(const struct supervisor_args *a);

#endif
