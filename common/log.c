/* SPDX-License-Identifier: GPL-2.0-or-later */
/* nbdroot: logging to stderr (foreground) or syslog (daemon).
 *
 * One line per message.  On stderr each line is prefixed with the program
 * name so that test logs interleaving several programs stay readable.
 *
 * Messages that a client can cause as often as it likes go through
 * log_limited(), so that a flood of bad connections cannot fill the disk
 * with log lines: per kind of message, at most LOG_LIMIT_PER_SECOND lines
 * a second, and one line that counts the others.
 */
#include <config.h>

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "clock.h"
#include "log.h"

int log_verbosity = LOG_INFO;
static bool log_to_stderr = true;
static const char *log_ident = "nbdroot";

/* Guards every struct log_limit and the list of them. */
static pthread_mutex_t limit_lock = PTHREAD_MUTEX_INITIALIZER;
static struct log_limit *limits;

void
log_open(const char *ident, bool to_stderr)
{
  log_ident = ident;
  log_to_stderr = to_stderr;
  if (!to_stderr)
    openlog(ident, LOG_PID | LOG_NDELAY, LOG_DAEMON);
}

static void __attribute__((format(printf, 2, 0)))
log_vmsg(int priority, const char *fmt, va_list ap)
{
  char line[2048]; /* room for two long paths (imgtool) */

  vsnprintf(line, sizeof line, fmt, ap);
  if (log_to_stderr) {
    /* One fprintf so that lines from several threads do not interleave. */
    fprintf(stderr, "%s: %s%s\n", log_ident,
            priority <= LOG_ERR       ? "error: "
            : priority == LOG_WARNING ? "warning: "
                                      : "",
            line);
  } else {
    syslog(priority, "%s", line);
  }
}

void
log_msg(int priority, const char *fmt, ...)
{
  va_list ap;

  if (priority > log_verbosity)
    return;
  va_start(ap, fmt);
  log_vmsg(priority, fmt, ap);
  va_end(ap);
}

static time_t
monotonic_second(void)
{
  return (time_t)(now_ms() / 1000);
}

/* Under limit_lock: makes now the second l counts, and returns how many
 * messages the second it counted before left out. */
static unsigned long
limit_roll(struct log_limit *l, time_t now)
{
  unsigned long gone = 0;

  if (l->second != now) {
    gone = l->suppressed;
    l->second = now;
    l->lines = 0;
    l->suppressed = 0;
  }
  return gone;
}

static void
log_suppressed(const struct log_limit *l, unsigned long n)
{
  if (n)
    log_msg(l->priority, "%lu similar messages suppressed (%s, at most %d a second)", n,
            l->kind, LOG_LIMIT_PER_SECOND);
}

void
log_limited(struct log_limit *l, const char *fmt, ...)
{
  time_t now = monotonic_second();
  unsigned long gone;
  bool write;
  va_list ap;

  if (l->priority > log_verbosity)
    return;
  pthread_mutex_lock(&limit_lock);
  if (!l->listed) {
    l->next = limits;
    limits = l;
    l->listed = true;
  }
  gone = limit_roll(l, now);
  write = l->lines < LOG_LIMIT_PER_SECOND;
  if (write)
    l->lines++;
  else
    l->suppressed++;
  pthread_mutex_unlock(&limit_lock);
  log_suppressed(l, gone);
  if (!write)
    return;
  va_start(ap, fmt);
  log_vmsg(l->priority, fmt, ap);
  va_end(ap);
}

void
log_limit_flush(bool all)
{
  time_t now = monotonic_second();
  struct log_limit *l;

  pthread_mutex_lock(&limit_lock);
  l = limits;
  pthread_mutex_unlock(&limit_lock);
  while (l) {
    unsigned long gone = 0;

    /* A second that is over: nothing more will be counted in it. */
    pthread_mutex_lock(&limit_lock);
    if (all || l->second != now) {
      gone = l->suppressed;
      l->suppressed = 0;
    }
    pthread_mutex_unlock(&limit_lock);
    log_suppressed(l, gone);
    pthread_mutex_lock(&limit_lock);
    l = l->next;
    pthread_mutex_unlock(&limit_lock);
  }
}

char *
log_quote(char *out, size_t outlen, const char *s, size_t len)
{
  size_t o = 0;

  out[o++] = '"';
  for (size_t i = 0; i < len; i++) {
    unsigned char ch = (unsigned char)s[i];
    char esc[8];
    size_t n;

    if (ch >= 0x20 && ch < 0x7f && ch != '"' && ch != '\\') {
      esc[0] = (char)ch;
      n = 1;
    } else {
      n = (size_t)snprintf(esc, sizeof esc, "\\x%02x", ch);
    }
    /* Room for it and the closing quote, and for "..." if more follows:
     * so that when a byte does not fit, the "..." always does. */
    if (o + n + (i + 1 < len ? 3 : 0) + 2 > outlen) {
      memcpy(out + o, "...", 3);
      o += 3;
      break;
    }
    memcpy(out + o, esc, n);
    o += n;
  }
  out[o++] = '"';
  out[o] = '\0';
  return out;
}
