/* SPDX-License-Identifier: GPL-2.0-or-later */
/* nbdsrv: command line, start-up, signals and the janitor.
 *
 * The main thread opens the listening sockets (so that address errors are
 * reported before anything else happens), starts the worker threads, then
 * only waits for signals and, once a second, runs the overlay janitor.
 * SIGTERM/SIGINT: workers stop accepting, finish what is in flight and
 * exit; then every overlay is synced and closed, and the server exits 0.
 */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "log.h"
#include "nbdsrv.h"
#include "util.h"

/* The janitor tells the attach thread about overlays it closes. */
static const struct janitor_hooks janitor_hooks = {
  .waiting = attach_waiting,
  .closed = attach_overlay_closed,
};

static int
open_listeners(int *fds, unsigned *nfds)
{
  *nfds = 0;
  for (unsigned i = 0; i < config.nlisten; i++) {
    const struct listen_addr *la = &config.listen[i];
    struct addrinfo hints = { .ai_socktype = SOCK_STREAM,
                              .ai_flags = AI_PASSIVE | AI_NUMERICSERV };
    struct addrinfo *res, *ai;
    int r = getaddrinfo(la->host[0] ? la->host : NULL, la->port, &hints, &res);

    if (r) {
      fprintf(stderr, "nbdsrv: cannot resolve listen address '%s': %s\n", la->host,
              gai_strerror(r));
      return -EINVAL;
    }
    for (ai = res; ai; ai = ai->ai_next) {
      int one = 1, fd;

      if (*nfds == NBDSRV_MAX_LISTEN)
        break;
      fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
      if (fd < 0)
        continue;
      setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
      if (ai->ai_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
      if (listen_bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, 4096) < 0) {
        int e = errno;
        char host[256], port[32];
        getnameinfo(ai->ai_addr, ai->ai_addrlen, host, sizeof host, port, sizeof port,
                    NI_NUMERICHOST | NI_NUMERICSERV);
        fprintf(
            stderr, "nbdsrv: cannot listen on %s port %s: %s%s\n", host, port,
            strerror(e),
            e == EADDRINUSE
                ? " (another server is using it: stop it or pick another port with -l)"
                : "");
        close(fd);
        freeaddrinfo(res);
        return -e;
      }
      fds[(*nfds)++] = fd;
    }
    freeaddrinfo(res);
  }
  if (*nfds == 0) {
    fprintf(stderr, "nbdsrv: no address to listen on\n");
    return -EINVAL;
  }
  return 0;
}

/* Checks up front what would otherwise fail per client. */
static int
check_exports(void)
{
  int r = config_check(&config);

  if (r < 0)
    return r;
  r = mkdir_durable(config.overlay_dir);
  if (r < 0) {
    fprintf(stderr, "nbdsrv: cannot create overlay directory %s: %s\n",
            config.overlay_dir, strerror(-r));
    return r;
  }
  if (access(config.overlay_dir, W_OK | X_OK) < 0) {
    fprintf(stderr, "nbdsrv: overlay directory %s is not writable: %s\n",
            config.overlay_dir, strerror(errno));
    return -errno;
  }
  return 0;
}

static void
raise_nofile(void)
{
  struct rlimit rl;

  /* Each client needs a socket and two overlay files. */
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < 8192)
    log_warn(
        "open file limit is %llu: that serves about %llu clients; raise it (ulimit -n, LimitNOFILE=)",
        (unsigned long long)rl.rlim_cur, (unsigned long long)rl.rlim_cur / 3);
}

static int
write_pidfile(void)
{
  char tmp[PATH_MAX + 8];
  FILE *fp;

  if (!config.pidfile[0])
    return 0;
  /* Written whole then renamed: whoever waits for it never reads half. */
  snprintf(tmp, sizeof tmp, "%s.tmp", config.pidfile);
  fp = fopen(tmp, "w");
  if (!fp || fprintf(fp, "%d\n", (int)getpid()) < 0 || fclose(fp) != 0 ||
      rename(tmp, config.pidfile) < 0) {
    log_err("cannot write pid file %s: %s", config.pidfile, strerror(errno));
    return -errno;
  }
  return 0;
}

/* systemd's readiness protocol (Type=notify), without libsystemd: one
 * datagram to $NOTIFY_SOCKET.  Nothing happens when it is not set. */
static void
notify_systemd(const char *state)
{
  const char *path = getenv("NOTIFY_SOCKET");
  struct sockaddr_un sa = { .sun_family = AF_UNIX };
  socklen_t len;
  int fd;

  if (!path || (path[0] != '/' && path[0] != '@') || strlen(path) >= sizeof sa.sun_path)
    return;
  memcpy(sa.sun_path, path, strlen(path));
  if (sa.sun_path[0] == '@')
    sa.sun_path[0] = '\0'; /* abstract namespace */
  len = offsetof(struct sockaddr_un, sun_path) + strlen(path);
  fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return;
  if (sendto(fd, state, strlen(state), MSG_NOSIGNAL, (struct sockaddr *)&sa, len) < 0)
    log_warn("cannot notify systemd (%s): %s", path, strerror(errno));
  close(fd);
}

/* The control socket: a configured path must work; the default one may
 * be taken by another instance, or unwritable for a user: then this
 * server goes without, and says so. */
static int
open_control_socket(void)
{
  int fd;

  if (!config.control_socket[0])
    return -1;
  fd = ctl_listen(config.control_socket);
  if (fd >= 0 || config.control_socket_set)
    return fd;
  log_warn(
      "no control socket (nbdsrv ctl will not reach this server): set control-socket to a path of its own, or to none");
  return -1;
}

/* --check-config: says what it found; the exit status. */
static int
check_only(void)
{
  if (config_check_listen(&config) < 0)
    return 1;
  config_warn_unpinned(&config);
  printf("nbdsrv: configuration OK: %u export%s, overlays in %s\n", config.nexports,
         config.nexports == 1 ? "" : "s", config.overlay_dir);
  for (unsigned i = 0; i < config.nexports; i++)
    printf("  %s: %s (%s%s)\n", config.exports[i].name, config.exports[i].image,
           policy_name(config.exports[i].policy),
           config.exports[i].readonly ? ", read-only" : "");
  if (log_verbosity >= LOG_DEBUG)
    config_print(stdout, &config);
  config_free();
  config_free_cli();
  return 0;
}

/* SIGTERM, SIGINT and SIGHUP are blocked in every thread, for the main
 * thread's signalfd. */
static void
block_signals(sigset_t *sigs)
{
  /* A client that goes away mid-reply must not kill the server: sends use
   * MSG_NOSIGNAL, but splice to a socket has no such flag. */
  signal(SIGPIPE, SIG_IGN);
  sigemptyset(sigs);
  sigaddset(sigs, SIGTERM);
  sigaddset(sigs, SIGINT);
  sigaddset(sigs, SIGHUP);
  pthread_sigmask(SIG_BLOCK, sigs, NULL);
}

/* The worker threads on the listening sockets: 0 or -errno. */
static int
start_serving(const int *fds, unsigned nfds)
{
  unsigned nthreads = config.threads;
  int r;

  if (nthreads == 0) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    nthreads = n > 0 ? (unsigned)n : 1;
  }
  r = config_start();
  if (r == 0) {
    config_warn_unpinned(&config);
    overlay_rename_old_macs(); /* before any client can open one */
    overlay_remove_leftovers();
    r = journal_compactor_start();
  }
  if (r == 0)
    r = workers_start(fds, nfds, nthreads);
  if (r < 0) {
    log_err("cannot start the worker threads: %s", strerror(-r));
    return r;
  }
  for (unsigned i = 0; i < config.nlisten; i++)
    log_info("listening on %s port %s",
             config.listen[i].host[0] ? config.listen[i].host : "*",
             config.listen[i].port);
  log_info("%u exports, overlays in %s, %u worker threads", config.nexports,
           config.overlay_dir, nthreads);
  return 0;
}

/* The main thread: signals, the control socket, and once a second the
 * janitor, until SIGTERM or SIGINT. */
static void
main_loop(int sfd, int ctl_fd)
{
  for (;;) {
    struct pollfd p[2] = { { .fd = sfd, .events = POLLIN },
                           { .fd = ctl_fd, .events = POLLIN } };
    struct signalfd_siginfo si;
    int sig = 0;

    if (poll(p, ctl_fd >= 0 ? 2 : 1, 1000) > 0) {
      if ((p[0].revents & POLLIN) && read(sfd, &si, sizeof si) == sizeof si)
        sig = (int)si.ssi_signo;
      if (ctl_fd >= 0 && (p[1].revents & POLLIN))
        ctl_serve(ctl_fd);
    }
    if (sig == SIGTERM || sig == SIGINT) {
      log_info("signal %d: finishing in-flight requests and exiting", sig);
      return;
    }
    if (sig == SIGHUP) {
      log_info("SIGHUP: reloading the configuration");
      notify_systemd("RELOADING=1");
      config_reload(NULL, NULL);
      notify_systemd("READY=1");
    }
    overlay_janitor(false, &janitor_hooks);
    /* The count of a flood of log lines that stopped. */
    log_limit_flush(false);
  }
}

/* After main_loop: in-flight requests finish, then everything closes. */
static void
shut_down(int sfd, int ctl_fd, const int *fds, unsigned nfds)
{
  notify_systemd("STOPPING=1");
  close(sfd);
  if (ctl_fd >= 0) {
    close(ctl_fd);
    unlink(config.control_socket);
  }
  workers_stop();
  workers_join();
  for (unsigned i = 0; i < nfds; i++)
    close(fds[i]);
  journal_compactor_stop();
  overlay_janitor(true, &janitor_hooks);
  damaged_free();
  trace_close();
  log_limit_flush(true);
  if (config.pidfile[0])
    unlink(config.pidfile);
  config_free();
  config_free_cli();
  log_info("stopped");
}

int
main(int argc, char **argv)
{
  int fds[NBDSRV_MAX_LISTEN];
  unsigned nfds;
  sigset_t sigs;
  int sfd, ctl_fd;

  if (argc > 1 && strcmp(argv[1], "ctl") == 0)
    return ctl_main(argc - 1, argv + 1);
  if (config_parse_args(argc, argv) < 0)
    return 2;
  log_open("nbdsrv", config.foreground);
  if (check_exports() < 0)
    return 1;
  if (config.check_only)
    return check_only();
  if (open_listeners(fds, &nfds) < 0 || (config.trace[0] && trace_open(config.trace) < 0))
    return 1;
  ctl_fd = open_control_socket();
  if (ctl_fd < 0 && config.control_socket[0] && config.control_socket_set)
    return 1;
  if (!config.foreground && daemon(0, 0) < 0) {
    perror("nbdsrv: daemon");
    return 1;
  }
  raise_nofile();
  block_signals(&sigs);
  if (start_serving(fds, nfds) < 0)
    return 1;
  if (write_pidfile() < 0) {
    workers_stop();
    workers_join();
    return 1;
  }
  notify_systemd("READY=1");
  sfd = signalfd(-1, &sigs, SFD_CLOEXEC);
  if (sfd < 0) {
    log_err("signalfd: %s", strerror(errno));
    workers_stop();
    workers_join();
    return 1;
  }
  main_loop(sfd, ctl_fd);
  shut_down(sfd, ctl_fd, fds, nfds);
  return 0;
}
