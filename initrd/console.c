/* SPDX-License-Identifier: GPL-2.0-or-later */
/* nbdroot initrd agent: console output and time.
 *
 * Every file of the agent reports through say(), so this file
 * must call into no other file of the agent: it sits below all of them.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

#include "agent.h"

static bool timestamps = true;

void
console_timestamps(bool on)
{
  timestamps = on;
}

void
sleep_ms(unsigned ms)
{
  struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000 };

  while (nanosleep(&ts, &ts) && errno == EINTR)
    ;
}

/* The timestamp has the kernel's format, so the agent's lines read in
 * order with the kernel's on the console. */
void
say(const char *fmt, ...)
{
  char buf[1024];
  struct timespec ts;
  va_list ap;
  int n = 0;

  if (timestamps) {
    clock_gettime(CLOCK_MONOTONIC, &ts);
    n = snprintf(buf, sizeof(buf), "[%5ld.%06ld] ", (long)ts.tv_sec, ts.tv_nsec / 1000);
  }
  n += snprintf(buf + n, sizeof(buf) - (size_t)n, AGENT_NAME ": ");
  va_start(ap, fmt);
  n += vsnprintf(buf + n, sizeof(buf) - (size_t)n - 1, fmt, ap);
  va_end(ap);
  if (n > (int)sizeof(buf) - 2)
    n = (int)sizeof(buf) - 2;
  buf[n++] = '\n';
  if (write(STDERR_FILENO, buf, (size_t)n) < 0) {
    /* nowhere else to report it */
  }
}
