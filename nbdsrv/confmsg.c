/* SPDX-License-Identifier: GPL-2.0-or-later */
/* nbdsrv: messages about the configuration, and the file they cite.
 *
 * Design notes
 * ------------
 * The parser (config.c), the table of keys (keys.c) and the checks
 * (check.c) all report what is wrong with a configuration through
 * config_err() and config_warn().  Before the server runs, a person at a
 * terminal reads them on stderr; once it runs (config_messages_to_log),
 * a reload's messages go to the log, and the last error is kept for
 * nbdsrv ctl reload to show.  This file calls nothing of the
 * configuration's, so that every part of it can report here without
 * the parts calling each other in a circle.
 *
 * Must never happen: a message of a running server on a stderr nobody
 * reads; an error lost for nbdsrv ctl reload.
 */
#include <config.h>

#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>

#include "log.h"
#include "nbdsrv.h"

/* Set once the server runs: from then on, configuration errors (of a
 * reload) go to the log, not to a terminal nobody watches. */
static bool config_running;

/* The last error, for nbdsrv ctl reload to show. */
static char last_error[1024];

const char *
config_last_error(void)
{
  return last_error;
}

static void __attribute__((format(printf, 2, 0)))
config_say(int priority, const char *fmt, va_list ap)
{
  char line[1024];

  vsnprintf(line, sizeof line, fmt, ap);
  if (priority == LOG_ERR)
    snprintf(last_error, sizeof last_error, "%s", line);
  if (config_running)
    log_msg(priority, "%s", line);
  else
    fprintf(stderr, "nbdsrv: %s%s\n", priority == LOG_WARNING ? "warning: " : "", line);
}

void
config_err(const char *fmt, ...)
{
  va_list ap;

  va_start(ap, fmt);
  config_say(LOG_ERR, fmt, ap);
  va_end(ap);
}

void
config_warn(const char *fmt, ...)
{
  va_list ap;

  va_start(ap, fmt);
  config_say(LOG_WARNING, fmt, ap);
  va_end(ap);
}

void
config_messages_to_log(void)
{
  config_running = true;
}

/* The config file's absolute path, or "" when there is none. */
static char config_file_path[PATH_MAX];

void
config_set_file_name(const char *path)
{
  snprintf(config_file_path, sizeof config_file_path, "%s", path);
}

const char *
config_file_name(void)
{
  return config_file_path;
}
