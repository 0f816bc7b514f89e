/* SPDX-License-Identifier: GPL-2.0-or-later */
/* nbdroot initrd agent: the reconnect supervisor.
 *
 * A child forked just before switch_root.  It stays behind with its root
 * in the (emptied) initramfs, so it never needs a page from the NBD device
 * it is repairing: it is mlocked, oom_score_adj -1000, and argv[0][0] is
 * '@' so systemd does not kill it at shutdown (see systemd's "root storage
 * daemons").  It keeps every device of the root connected: the root's
 * in block mode, the base's and the state disk's in layered mode; each
 * death is handled on its own, several in a row when one server restart
 * killed them all.
 *
 * How it learns that the connection died: the kernel multicasts
 * NBD_CMD_LINK_DEAD, and it also shuts the dead socket down, which poll()
 * on the supervisor's own reference to that socket sees as POLLHUP.  The
 * socket covers lost events (ENOBUFS) and an event that never came;
 * NBD_CMD_STATUS cannot, as it only says whether the device is configured.
 *
 * Then it reconnects with a back-off, to the server it had first, then to
 * the others of the agent's list in turn (the other devices then start
 * from the server that answered), checks that the export still has the
 * same size and flags (anything else would corrupt the mounted
 * filesystem), and hands the new socket over with NBD_CMD_RECONFIGURE.
 * The kernel answers success even when it had no dead connection to
 * replace; it sets the send timeout of a socket it adopts to the device's
 * request timeout, and that tells the two cases apart.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "agent.h"

char *supervisor_argv0;

/* Nothing to wait for but events; the timeout only bounds each poll(). */
#define IDLE_WAIT_MS 60000
/* When the socket shows a death first, how long its LINK_DEAD may take to
 * arrive: consumed now, it cannot be taken for the next death. */
#define EVENT_GRACE_MS 1000

static struct supervisor_args sv;

static bool
sock_dead(int sock)
{
  struct pollfd p = { .fd = sock, .events = 0 };

  return sock >= 0 && poll(&p, 1, 0) == 1 && (p.revents & (POLLHUP | POLLERR));
}

static uint64_t
dev_bit(const struct sv_device *d)
{
  return d->index < 64 ? 1ull << d->index : 0;
}

/* Waits up to ms for the kernel's event about d; other deaths seen on
 * the way are added to *dead. */
static bool
event_within(const struct sv_device *d, int ms, uint64_t *dead)
{
  uint64_t end = now_ms() + (uint64_t)ms, got;
  struct pollfd p = { .fd = sv.nl->mcast_fd, .events = POLLIN };

  while (sv.nl->mcast_fd >= 0 && now_ms() < end) {
    /* recv() also clears an overrun's POLLERR */
    if (poll(&p, 1, (int)(end - now_ms())) == 1 && !nbd_nl_recv_events(sv.nl, &got)) {
      *dead |= got;
      if (got & dev_bit(d))
        return true;
    }
  }
  return false;
}

/* Which devices need reattaching: a bit per index in the result, and
 * why in *how (0 link event, 1 socket only, 2 events lost). */
static uint64_t
wait_deaths(int timeout_ms, int *how)
{
  struct pollfd p[1 + SV_MAX_DEVICES];
  uint64_t dead = 0, all = 0;
  int r;

  p[0] = (struct pollfd){ .fd = sv.nl->mcast_fd, .events = POLLIN };
  for (int i = 0; i < sv.ndev; i++) {
    /* HUP and ERR are always reported */
    p[1 + i] = (struct pollfd){ .fd = sv.dev[i].sock, .events = 0 };
    all |= dev_bit(&sv.dev[i]);
  }
  *how = 0;
  if (poll(p, (nfds_t)(1 + sv.ndev), timeout_ms) <= 0)
    return 0;
  /* A netlink overrun shows as POLLERR, maybe without POLLIN; only
   * recv() clears it (with ENOBUFS), else poll() would spin. */
  if (p[0].revents & (POLLIN | POLLERR)) {
    r = nbd_nl_recv_events(sv.nl, &dead);
    if (r == -ENOBUFS) {
      for (int i = 0; i < sv.ndev; i++)
        if (sv.dev[i].sock < 0 || sock_dead(sv.dev[i].sock))
          dead |= dev_bit(&sv.dev[i]);
      *how = 2;
      return dead;
    }
  }
  for (int i = 0; i < sv.ndev; i++) {
    struct sv_device *d = &sv.dev[i];

    if (!(p[1 + i].revents & (POLLHUP | POLLERR)) || (dead & dev_bit(d)))
      continue;
    if (!event_within(d, EVENT_GRACE_MS, &dead))
      *how = 1;
    dead |= dev_bit(d);
  }
  return dead & all;
}

static bool
adopted(int sock)
{
  struct timeval tv;
  socklen_t len = sizeof(tv);

  if (!sv.io_timeout || getsockopt(sock, SOL_SOCKET, SO_SNDTIMEO, &tv, &len))
    return true; /* cannot tell */
  return tv.tv_sec || tv.tv_usec;
}

/* The one console line that says a device now lives on another server
 * (the export without the agent's @MAC,boot=ID). */
static void
say_switched(const struct sv_device *d)
{
  const char *name = d->target.name;
  bool v6 = strchr(d->target.host, ':') != NULL;

  say("switched to server %s%s%s:%s (%.*s)", v6 ? "[" : "", d->target.host, v6 ? "]" : "",
      d->target.port, (int)strcspn(name, "@"), name);
}

static void
reattach(struct sv_device *d)
{
  struct nbd_export_info info;
  struct nbd_server before;
  uint64_t t0 = now_ms();
  bool told_changed = false;
  int sock, ret;

  snprintf(before.host, sizeof(before.host), "%s", d->target.host);
  snprintf(before.port, sizeof(before.port), "%s", d->target.port);
  for (unsigned i = 0;; i++) {
    unsigned ms = 250u << (i < 5 ? i : 5); /* 0.25 .. 8 s */

    net_repair(&sv.ifc, &sv.lease);
    sock = nbd_connect_any(&sv.servers, &sv.server, &d->target, &info, i > 0);
    if (sock < 0) {
      if (i == 0)
        say("supervisor: reconnecting /dev/nbd%d to %s:%s%s (retrying every "
            "few seconds)",
            d->index, d->target.host, d->target.port,
            sv.servers.n > 1 ? " or the other servers" : "");
      sleep_ms(ms);
      continue;
    }
    if (info.size != d->info.size || info.flags != d->info.flags) {
      if (!told_changed)
        say("supervisor: export '%s' on %s:%s changed (size %llu -> %llu, "
            "flags 0x%x -> 0x%x); not reattaching /dev/nbd%d to it, retrying "
            "until it is back as it was",
            d->target.name, d->target.host, d->target.port,
            (unsigned long long)d->info.size, (unsigned long long)info.size,
            d->info.flags, info.flags, d->index);
      told_changed = true;
      close(sock);
      /* the next round starts with the next server */
      sv.server = (sv.server + 1) % sv.servers.n;
      sleep_ms(ms);
      continue;
    }
    ret = nbd_nl_reconfigure(sv.nl, d->index, sock);
    if (ret) {
      say("supervisor: NBD_CMD_RECONFIGURE /dev/nbd%d failed: %s; retrying", d->index,
          strerror(-ret));
      close(sock);
      sleep_ms(ms);
      continue;
    }
    if (!adopted(sock)) {
      close(sock);
      say("supervisor: /dev/nbd%d had no dead connection to replace", d->index);
      /* the kernel keeps the connection it has */
      snprintf(d->target.host, sizeof(d->target.host), "%s", before.host);
      snprintf(d->target.port, sizeof(d->target.port), "%s", before.port);
      /* Our reference is stale if it looks dead while the kernel's is
       * alive: stop watching it, rely on the events. */
      if (sock_dead(d->sock)) {
        close(d->sock);
        d->sock = -1;
      }
      return;
    }
    if (d->sock >= 0)
      close(d->sock);
    d->sock = sock;
    say("supervisor: /dev/nbd%d reconnected to %s:%s after %llu ms, %u "
        "attempts",
        d->index, d->target.host, d->target.port, (unsigned long long)(now_ms() - t0),
        i + 1);
    if (strcmp(d->target.host, before.host) || strcmp(d->target.port, before.port))
      say_switched(d);
    return;
  }
}

static void __attribute__((noreturn)) supervise(void)
{
  static const char *const why[] = {
    "",
    " (seen on the socket, no link event)",
    " (link events were lost)",
  };

  for (;;) {
    int how;
    uint64_t dead = wait_deaths(IDLE_WAIT_MS, &how);

    for (int i = 0; i < sv.ndev; i++) {
      struct sv_device *d = &sv.dev[i];

      if (!(dead & dev_bit(d)))
        continue;
      say("supervisor: /dev/nbd%d lost its connection to %s:%s%s", d->index,
          d->target.host, d->target.port, why[how]);
      reattach(d);
    }
  }
}

int
supervisor_start(const struct supervisor_args *a)
{
  int p[2], fd;
  pid_t pid;
  char c;

  if (pipe2(p, O_CLOEXEC))
    return -errno;
  pid = fork();
  if (pid < 0) {
    close(p[0]);
    close(p[1]);
    return -errno;
  }
  if (pid > 0) {
    /* Wait until the child has set itself up under /proc, which the
     * parent is about to move. */
    close(p[1]);
    if (read(p[0], &c, 1) != 1)
      c = 0;
    close(p[0]);
    return c == 'k' ? pid : -ECHILD;
  }

  close(p[0]);
  sv = *a;
  if (supervisor_argv0)
    supervisor_argv0[0] = '@';
  prctl(PR_SET_NAME, "nbdroot-sv", 0, 0, 0);
  setsid();
  signal(SIGHUP, SIG_IGN);
  signal(SIGPIPE, SIG_IGN);
  fd = open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC);
  if (fd < 0 || write(fd, "-1000", 5) != 5)
    say("supervisor: cannot set oom_score_adj: %s", strerror(errno));
  if (fd >= 0)
    close(fd);
  if (mlockall(MCL_CURRENT | MCL_FUTURE))
    say("supervisor: mlockall failed: %s", strerror(errno));
  c = 'k';
  if (write(p[1], &c, 1) != 1) {
    /* the parent goes on without us */
  }
  close(p[1]);
  supervise();
}
