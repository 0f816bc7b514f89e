/* SPDX-License-Identifier: GPL-2.0-or-later */
/* nbdsrv: fencing a dead server before taking over its clients.
 *
 * A server that dies with its host keeps its overlay locks
 * (overlay-lock.c) until the distributed file system evicts its session
 * (CephFS: when the session times out, see nbdsrv(8)); and a host that
 * only looked dead (hung, cut off) may come back and write the overlays
 * another server now serves.  The file system's own eviction settles
 * both: CephFS client eviction drops the session's locks and blocklists
 * the client, whose writes fail from then on.
 *
 * Which command does that is the site's (`fence-command` in
 * nbdsrv.conf); `nbdsrv ctl fence NODE` runs it, explicitly, for one
 * node, with NBDSRV_FENCE_NODE=NODE in its environment.  It is never run
 * on a guess: only the admin knows that a node is dead rather than slow,
 * and fencing a live server cuts all of its clients off.  The command is
 * per node, not per overlay: one eviction frees every overlay of the
 * host, and needs no file of theirs (whose capabilities the dead host
 * still holds: touching them waits until it is evicted).
 *
 * The main thread runs it (ctl.c), waiting at most FENCE_TIMEOUT_S.
 */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"
#include "nbdsrv.h"
#include "util.h"

#define FENCE_TIMEOUT_S 120

extern char **environ;

/* environ plus NBDSRV_FENCE_NODE=node (malloc'ed array; its strings but
 * the last are environ's). */
static char **
fence_env(const char *node, char *var, size_t varlen)
{
  size_t n = 0, j = 0;
  char **env;

  while (environ[n])
    n++;
  env = calloc(n + 2, sizeof *env);
  if (!env)
    return NULL;
  for (size_t i = 0; i < n; i++)
    if (strncmp(environ[i], "NBDSRV_FENCE_NODE=", 18) != 0)
      env[j++] = environ[i];
  snprintf(var, varlen, "NBDSRV_FENCE_NODE=%s", node);
  env[j] = var;
  return env;
}

/* Starts sh -c cmd in a process group of its own, its stdout and stderr
 * into *out_fd, stdin /dev/null, signals as a fresh process has them. */
static int
spawn(const char *cmd, char **env, pid_t *pid, int *out_fd)
{
  posix_spawn_file_actions_t fa;
  posix_spawnattr_t at;
  sigset_t none, all;
  int p[2], r;
  char *argv[] = { "sh", "-c", (char *)cmd, NULL };

  if (pipe2(p, O_CLOEXEC) < 0)
    return -errno;
  sigemptyset(&none);
  sigfillset(&all);
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&fa, p[1], 1);
  posix_spawn_file_actions_adddup2(&fa, p[1], 2);
  posix_spawnattr_init(&at);
  /* The server blocks the signals its signalfd reads, and ignores
   * SIGPIPE: the command gets them back. */
  posix_spawnattr_setsigmask(&at, &none);
  posix_spawnattr_setsigdefault(&at, &all);
  posix_spawnattr_setpgroup(&at, 0);
  posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF |
                                    POSIX_SPAWN_SETPGROUP);
  r = posix_spawn(pid, "/bin/sh", &fa, &at, argv, env);
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&at);
  close(p[1]);
  if (r) {
    close(p[0]);
    return -r;
  }
  *out_fd = p[0];
  return 0;
}

/* Reads fd until EOF or the deadline into out (the rest is dropped).
 * Whether EOF came in time. */
static bool
collect(int fd, char *out, size_t outlen, uint64_t deadline_ms)
{
  size_t len = 0;
  char sink[512];

  for (;;) {
    struct pollfd p = { .fd = fd, .events = POLLIN };
    uint64_t now = now_ms();
    ssize_t n;

    if (now >= deadline_ms || poll(&p, 1, (int)(deadline_ms - now)) == 0)
      return false;
    if (len + 1 < outlen)
      n = read(fd, out + len, outlen - 1 - len);
    else
      n = read(fd, sink, sizeof sink);
    if (n == 0)
      return true;
    if (n < 0 && errno != EINTR && errno != EAGAIN)
      return true;
    if (n > 0 && len + 1 < outlen) {
      len += (size_t)n;
      out[len] = '\0';
    }
  }
}

int
fence_node(const char *node, char *out, size_t outlen, const char **why)
{
  char var[CLIENT_ID_MAX + 32];
  char **env;
  pid_t pid;
  int fd = -1, r, status;
  bool done;

  out[0] = '\0';
  if (!client_id_valid(node, strlen(node))) {
    *why = "a node name is 1 to 64 of A-Z a-z 0-9 . _ : -";
    return -EINVAL;
  }
  if (!config.fence_command[0]) {
    *why =
        "no fence-command in the configuration (nbdsrv.conf(5)): fence the node by hand";
    return -ENOENT;
  }
  env = fence_env(node, var, sizeof var);
  if (!env) {
    *why = "out of memory";
    return -ENOMEM;
  }
  log_info("fencing node %s: %s", node, config.fence_command);
  r = spawn(config.fence_command, env, &pid, &fd);
  free(env);
  if (r < 0) {
    *why = "cannot run the fence-command (see the server log)";
    log_err("fence-command: %s", strerror(-r));
    return r;
  }
  done = collect(fd, out, outlen, now_ms() + FENCE_TIMEOUT_S * 1000);
  close(fd);
  if (!done)
    kill(-pid, SIGKILL);
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
    ;
  if (!done) {
    *why = "the fence-command did not finish in 120 s: killed";
    log_err("fencing node %s: %s", node, *why);
    return -ETIMEDOUT;
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    *why = "the fence-command failed: the node is not fenced";
    log_err("fencing node %s: the fence-command failed (status %d): %s", node, status,
            out);
    return -EIO;
  }
  log_info("fenced node %s: its overlays are free for the next connection", node);
  return 0;
}
