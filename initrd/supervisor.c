/* nbdroot initrd agent: the reconnect supervisor.
 *
 * A child forked just before switch_root.  It stays behind with its root
 * in the (emptied) initramfs, so it never needs a page from the NBD device
 * it is repairing: it is mlocked, oom_score_adj -1000, and argv[0][0] is
 * '@' so systemd does not kill it at shutdown (see systemd's "root storage
 * daemons").  It waits for NBD_CMD_LINK_DEAD; then it reconnects with a
 * back-off and hands the new socket to the kernel with
 * NBD_CMD_RECONFIGURE, after checking that the export still has the same
 * size and flags (anything else would corrupt the mounted filesystem).
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "agent.h"

char *supervisor_argv0;

/* Poll interval when no link event comes: we also reconnect when an event
 * was lost (ENOBUFS); RECONFIGURE on a healthy device fails harmlessly. */
#define IDLE_WAIT_MS 60000

static int reattach(const struct supervisor_args *a)
{
  struct nbd_export_info info;
  uint64_t t0 = now_ms();
  int sock, ret;

  for (unsigned i = 0;; i++) {
    unsigned ms = 250u << (i < 5 ? i : 5); /* 0.25 .. 8 s */

    sock = nbd_connect_export(&a->target, &info, i > 0);
    if (sock >= 0) {
      if (info.size != a->info.size || info.flags != a->info.flags) {
        say("supervisor: export '%s' changed (size %llu -> %llu, flags 0x%x "
            "-> 0x%x); not reattaching /dev/nbd%d, retrying", a->target.name,
            (unsigned long long)a->info.size, (unsigned long long)info.size,
            a->info.flags, info.flags, a->index);
        close(sock);
      } else {
        ret = nbd_nl_reconfigure(a->nl, a->index, sock);
        close(sock);
        if (!ret) {
          say("supervisor: /dev/nbd%d reconnected to %s:%s after %llu ms, %u "
              "attempts", a->index, a->target.host, a->target.port,
              (unsigned long long)(now_ms() - t0), i + 1);
          return 0;
        }
        if (ret == -ENOSPC || ret == -EINVAL) {
          /* no dead socket to replace: the link is fine after all */
          return ret;
        }
        say("supervisor: NBD_CMD_RECONFIGURE /dev/nbd%d failed: %s",
            a->index, strerror(-ret));
      }
    } else if (i == 0) {
      say("supervisor: reconnecting /dev/nbd%d to %s:%s (retrying every "
          "few seconds)", a->index, a->target.host, a->target.port);
    }
    sleep_ms(ms);
  }
}

static void __attribute__((noreturn)) supervise(const struct supervisor_args *a)
{
  for (;;) {
    int r = nbd_nl_wait_link_dead(a->nl, IDLE_WAIT_MS);

    if (r == a->index) {
      say("supervisor: /dev/nbd%d lost its connection to %s:%s", a->index,
          a->target.host, a->target.port);
      reattach(a);
    } else if (r == -ENOBUFS) {
      reattach(a);
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
    return c == 'k' ? 0 : -ECHILD;
  }

  close(p[0]);
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
  supervise(a);
}
