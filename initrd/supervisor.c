/* nbdroot initrd agent: the reconnect supervisor.
 *
 * A child forked just before switch_root.  It stays behind with its root
 * in the (emptied) initramfs, so it never needs a page from the NBD device
 * it is repairing: it is mlocked, oom_score_adj -1000, and argv[0][0] is
 * '@' so systemd does not kill it at shutdown (see systemd's "root storage
 * daemons").
 *
 * How it learns that the connection died: the kernel multicasts
 * NBD_CMD_LINK_DEAD, and it also shuts the dead socket down, which poll()
 * on the supervisor's own reference to that socket sees as POLLHUP.  The
 * socket covers lost events (ENOBUFS) and an event that never came;
 * NBD_CMD_STATUS cannot, as it only says whether the device is configured.
 *
 * Then it reconnects with a back-off, checks that the export still has the
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

enum sv_event { SV_NONE, SV_LINK_DEAD, SV_SOCK_DEAD, SV_EVENTS_LOST };

static struct supervisor_args sv;

static bool sock_dead(int sock)
{
  struct pollfd p = { .fd = sock, .events = 0 };

  return sock >= 0 && poll(&p, 1, 0) == 1 &&
         (p.revents & (POLLHUP | POLLERR));
}

/* Waits for the kernel's event for our device, up to ms. */
static bool event_within(int ms)
{
  uint64_t end = now_ms() + (uint64_t)ms;
  struct pollfd p = { .fd = sv.nl->mcast_fd, .events = POLLIN };

  while (sv.nl->mcast_fd >= 0 && now_ms() < end) {
    if (poll(&p, 1, (int)(end - now_ms())) == 1 &&
        nbd_nl_recv_event(sv.nl) == sv.index)
      return true; /* recv() also clears an overrun's POLLERR */
  }
  return false;
}

static enum sv_event wait_event(int timeout_ms)
{
  struct pollfd p[2] = {
    { .fd = sv.nl->mcast_fd, .events = POLLIN },
    { .fd = sv.sock, .events = 0 }, /* HUP and ERR are always reported */
  };

  if (poll(p, 2, timeout_ms) <= 0)
    return SV_NONE;
  /* A netlink overrun shows as POLLERR, maybe without POLLIN; only
   * recv() clears it (with ENOBUFS), else poll() would spin. */
  if (p[0].revents & (POLLIN | POLLERR)) {
    int r = nbd_nl_recv_event(sv.nl);

    if (r == sv.index)
      return SV_LINK_DEAD;
    if (r == -ENOBUFS)
      return sv.sock < 0 || sock_dead(sv.sock) ? SV_EVENTS_LOST : SV_NONE;
  }
  if (p[1].revents & (POLLHUP | POLLERR))
    return event_within(EVENT_GRACE_MS) ? SV_LINK_DEAD : SV_SOCK_DEAD;
  return SV_NONE;
}

static bool adopted(int sock)
{
  struct timeval tv;
  socklen_t len = sizeof(tv);

  if (!sv.io_timeout || getsockopt(sock, SOL_SOCKET, SO_SNDTIMEO, &tv, &len))
    return true; /* cannot tell */
  return tv.tv_sec || tv.tv_usec;
}

static void reattach(void)
{
  struct nbd_export_info info;
  uint64_t t0 = now_ms();
  bool told_changed = false;
  int sock, ret;

  for (unsigned i = 0;; i++) {
    unsigned ms = 250u << (i < 5 ? i : 5); /* 0.25 .. 8 s */

    net_repair(&sv.ifc, &sv.lease);
    sock = nbd_connect_export(&sv.target, &info, i > 0);
    if (sock < 0) {
      if (i == 0)
        say("supervisor: reconnecting /dev/nbd%d to %s:%s (retrying every "
            "few seconds)", sv.index, sv.target.host, sv.target.port);
      sleep_ms(ms);
      continue;
    }
    if (info.size != sv.info.size || info.flags != sv.info.flags) {
      if (!told_changed)
        say("supervisor: export '%s' changed (size %llu -> %llu, flags 0x%x "
            "-> 0x%x); not reattaching /dev/nbd%d to it, retrying until it "
            "is back as it was", sv.target.name,
            (unsigned long long)sv.info.size, (unsigned long long)info.size,
            sv.info.flags, info.flags, sv.index);
      told_changed = true;
      close(sock);
      sleep_ms(ms);
      continue;
    }
    ret = nbd_nl_reconfigure(sv.nl, sv.index, sock);
    if (ret) {
      say("supervisor: NBD_CMD_RECONFIGURE /dev/nbd%d failed: %s; retrying",
          sv.index, strerror(-ret));
      close(sock);
      sleep_ms(ms);
      continue;
    }
    if (!adopted(sock)) {
      close(sock);
      say("supervisor: /dev/nbd%d had no dead connection to replace",
          sv.index);
      /* Our reference is stale if it looks dead while the kernel's is
       * alive: stop watching it, rely on the events. */
      if (sock_dead(sv.sock)) {
        close(sv.sock);
        sv.sock = -1;
      }
      return;
    }
    if (sv.sock >= 0)
      close(sv.sock);
    sv.sock = sock;
    say("supervisor: /dev/nbd%d reconnected to %s:%s after %llu ms, %u "
        "attempts", sv.index, sv.target.host, sv.target.port,
        (unsigned long long)(now_ms() - t0), i + 1);
    return;
  }
}

static void __attribute__((noreturn)) supervise(void)
{
  for (;;) {
    switch (wait_event(IDLE_WAIT_MS)) {
    case SV_LINK_DEAD:
      say("supervisor: /dev/nbd%d lost its connection to %s:%s", sv.index,
          sv.target.host, sv.target.port);
      reattach();
      break;
    case SV_SOCK_DEAD:
      say("supervisor: /dev/nbd%d lost its connection to %s:%s (seen on "
          "the socket, no link event)", sv.index, sv.target.host,
          sv.target.port);
      reattach();
      break;
    case SV_EVENTS_LOST:
      say("supervisor: link events were lost; checking /dev/nbd%d",
          sv.index);
      reattach();
      break;
    case SV_NONE:
      break;
    }
  }
}

int supervisor_start(const struct supervisor_args *a)
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
  sv.nl->watch_index = sv.index;
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
