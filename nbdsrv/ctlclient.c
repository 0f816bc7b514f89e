/* SPDX-License-Identifier: GPL-2.0-or-later */
/* nbdsrv ctl: talks to a running nbdsrv over its control socket.
 *
 *   nbdsrv ctl [-s SOCKET] [--json] list
 *   nbdsrv ctl [-s SOCKET] [--json] exports
 *   nbdsrv ctl [-s SOCKET] kick ADDRESS|ID|EXPORT/ID
 *   nbdsrv ctl [-s SOCKET] reset EXPORT/ID
 *   nbdsrv ctl [-s SOCKET] move-id EXPORT/ID ADDRESS
 *   nbdsrv ctl [-s SOCKET] overlays EXPORT [--stale DAYS [--remove]]
 *   nbdsrv ctl [-s SOCKET] drain|resume EXPORT
 *   nbdsrv ctl [-s SOCKET] reload
 *
 * -c FILE takes the socket from the config file (control-socket), as the
 * server would.
 * Sends the command as one line and prints the answer (see ctl.c).  Exit
 * status: 0 done, 1 the server refused (its reason on stderr), 2 usage or
 * no server to talk to.
 */
#include <config.h>

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "io.h"
#include "nbdsrv.h"

static const char ctl_usage[] =
    "usage: nbdsrv ctl [-s SOCKET | -c FILE] [--json] COMMAND [ARG...]\n"
    "  list                     connected clients\n"
    "  exports                  exports: image version, state, clients, overlays\n"
    "  kick ADDRESS|ID|EXPORT/ID  close a client's connections\n"
    "  reset EXPORT/ID          delete a disconnected client's overlay\n"
    "  move-id EXPORT/ID ADDRESS  bind a client ID to another address\n"
    "  overlays EXPORT [--stale DAYS [--remove]]\n"
    "                           overlays on disk; those unwritten for DAYS days\n"
    "  fence NODE               run the fence-command: NODE's overlays freed\n"
    "  drain EXPORT             refuse new clients of an export\n"
    "  resume EXPORT            accept them again\n"
    "  reload                   read the configuration again; say what changed\n"
    "SOCKET defaults to /run/nbdsrv.sock, or the control-socket of the config\n"
    "file given with -c (nbdsrv.conf(5)).\n";

/* -c FILE: the file's control-socket, or NULL (said why). */
static const char *
socket_of_file(const char *file, char *path, size_t len)
{
  if (config_control_socket(file, path, len) < 0)
    return NULL;
  if (!path[0]) {
    fprintf(
        stderr,
        "nbdsrv ctl: %s sets control-socket = none: that server has no control socket\n",
        file);
    return NULL;
  }
  return path;
}

/* "CMD [ARG...] [--json]\n" into line: its length, or -1 (said why).
 * The server splits the line at spaces: no word may hold one. */
static int
command_line(int argc, char **argv, bool json, char *line, size_t len)
{
  size_t used = 0;

  for (int i = 0; i < argc; i++) {
    int n = snprintf(line + used, len - used, "%s%s", i ? " " : "", argv[i]);
    if (n < 0 || (size_t)n >= len - used || !argv[i][0] || strpbrk(argv[i], " \n\r\t")) {
      fprintf(stderr, "nbdsrv ctl: command too long or malformed\n");
      return -1;
    }
    used += n;
  }
  int n = snprintf(line + used, len - used, "%s\n", json ? " --json" : "");
  if (n < 0 || (size_t)n >= len - used) {
    fprintf(stderr, "nbdsrv ctl: command too long\n");
    return -1;
  }
  return (int)(used + n);
}

/* A connection to the control socket at path, or -1 (said why). */
static int
connect_to(const char *path)
{
  struct sockaddr_un sa = { .sun_family = AF_UNIX };
  int fd;

  if (strlen(path) >= sizeof sa.sun_path) {
    fprintf(stderr, "nbdsrv ctl: socket path %s is too long\n", path);
    return -1;
  }
  strcpy(sa.sun_path, path);
  fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
    fprintf(
        stderr,
        "nbdsrv ctl: cannot connect to %s: %s (is nbdsrv running, with this control-socket?)\n",
        path, strerror(errno));
    if (fd >= 0)
      close(fd);
    return -1;
  }
  return fd;
}

/* The server's answer: the first line is the verdict, "OK" (the rest
 * goes to stdout as it comes; exit status 0) or "ERR why" (to stderr;
 * 1); anything else is no answer (2). */
static int
relay_answer(int fd, const char *path)
{
  char buf[65536];
  size_t len = 0;

  for (;;) {
    ssize_t r = read(fd, buf + len, sizeof buf - 1 - len);

    if (r < 0 && errno == EINTR)
      continue;
    if (r <= 0)
      break;
    len += r;
    buf[len] = '\0';
    if (strchr(buf, '\n') || len == sizeof buf - 1)
      break;
  }
  buf[len] = '\0';
  if (strncmp(buf, "OK\n", 3) == 0) {
    fwrite(buf + 3, 1, len - 3, stdout);
    for (;;) {
      ssize_t r = read(fd, buf, sizeof buf);
      if (r < 0 && errno == EINTR)
        continue;
      if (r <= 0)
        break;
      fwrite(buf, 1, r, stdout);
    }
    return fflush(stdout) == 0 ? 0 : 2;
  }
  if (strncmp(buf, "ERR ", 4) == 0) {
    fprintf(stderr, "nbdsrv ctl: %s", buf + 4);
    if (len == 0 || buf[len - 1] != '\n')
      fputc('\n', stderr);
    return 1;
  }
  fprintf(stderr, "nbdsrv ctl: no answer from %s\n", path);
  return 2;
}

int
ctl_main(int argc, char **argv)
{
  static const struct option longopts[] = {
    { "socket", required_argument, NULL, 's' },
    { "config", required_argument, NULL, 'c' },
    { "json", no_argument, NULL, 'j' },
    { "help", no_argument, NULL, 'h' },
    { NULL, 0, NULL, 0 },
  };
  const char *path = "/run/nbdsrv.sock";
  char from_file[sizeof config.control_socket];
  char line[1024];
  bool json = false;
  int c, fd, n, rc;

  while ((c = getopt_long(argc, argv, "+s:c:h", longopts, NULL)) != -1) {
    switch (c) {
      case 's': path = optarg; break;
      case 'c':
        if (!(path = socket_of_file(optarg, from_file, sizeof from_file)))
          return 2;
        break;
      case 'j': json = true; break;
      case 'h': fputs(ctl_usage, stdout); return 0;
      default: fputs(ctl_usage, stderr); return 2;
    }
  }
  if (optind >= argc || argc - optind > 5) {
    fputs(ctl_usage, stderr);
    return 2;
  }
  n = command_line(argc - optind, argv + optind, json, line, sizeof line);
  if (n < 0 || (fd = connect_to(path)) < 0)
    return 2;
  if ((rc = full_write(fd, line, (size_t)n)) < 0) {
    fprintf(stderr, "nbdsrv ctl: cannot send the command: %s\n", strerror(-rc));
    close(fd);
    return 2;
  }
  shutdown(fd, SHUT_WR);
  rc = relay_answer(fd, path);
  close(fd);
  return rc;
}
