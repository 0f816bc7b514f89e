/* nbdroot: logging to stderr (foreground) or syslog (daemon). */
#ifndef NBDROOT_LOG_H
#define NBDROOT_LOG_H

#include <stdbool.h>
#include <syslog.h>

extern int log_verbosity; /* LOG_INFO by default; -v raises to LOG_DEBUG */

void log_open(const char *ident, bool to_stderr);
void log_msg(int priority, const char *fmt, ...)
  __attribute__((format(printf, 2, 3)));

#define log_err(...)   log_msg(LOG_ERR, __VA_ARGS__)
#define log_warn(...)  log_msg(LOG_WARNING, __VA_ARGS__)
#define log_info(...)  log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...) do { if (log_verbosity >= LOG_DEBUG) log_msg(LOG_DEBUG, __VA_ARGS__); } while (0)

#endif
