/* SPDX-License-Identifier: GPL-2.0-or-later */
/* nbdroot: logging to stderr (foreground) or syslog (daemon). */
#ifndef NBDROOT_LOG_H
#define NBDROOT_LOG_H

#include <stdbool.h>
#include <stddef.h>
#include <syslog.h>
#include <time.h>

extern int log_verbosity; /* LOG_INFO by default; -v raises to LOG_DEBUG */

void log_open(const char *ident, bool to_stderr);
void log_msg(int priority, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_err(...) log_msg(LOG_ERR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARNING, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...)                 \
  do {                                 \
    if (log_verbosity >= LOG_DEBUG)    \
      log_msg(LOG_DEBUG, __VA_ARGS__); \
  } while (0)

/* A kind of message that others can cause at will (a refused client, an
 * unknown export, a full disk): at most LOG_LIMIT_PER_SECOND lines of one
 * kind are written per second; the rest are counted, and once their
 * second is over one line says how many were left out.  Define one per
 * kind with LOG_LIMIT; the fields are log.c's. */
#define LOG_LIMIT_PER_SECOND 10
struct log_limit {
  const char *kind; /* plural, for "suppressed N KIND" */
  int priority;
  time_t second;            /* CLOCK_MONOTONIC second being counted */
  unsigned lines;           /* written in that second */
  unsigned long suppressed; /* left out in that second */
  bool listed;              /* on the list log_limit_flush() walks */
  struct log_limit *next;
};
#define LOG_LIMIT(prio, kind_)          \
  {                                     \
    .kind = (kind_), .priority = (prio) \
  }

void log_limited(struct log_limit *l, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Writes the "suppressed" lines of seconds that are over (all: of the
 * current one too, at exit); call it about once a second, so that the
 * count of a flood that stopped is not kept back until the next message
 * of its kind. */
void log_limit_flush(bool all);

/* s[0..len) as a quoted string fit for a log line, whatever bytes it
 * holds (it may come from the network): printable ASCII as is, '"', '\\'
 * and anything else escaped as \xNN, cut short with "..." to fit out,
 * which must hold at least 8 bytes.  Returns out. */
char *log_quote(char *out, size_t outlen, const char *s, size_t len);

#endif
