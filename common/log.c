/* nbdroot: logging to stderr (foreground) or syslog (daemon).
 *
 * One line per message.  On stderr each line is prefixed with the program
 * name so that test logs interleaving several programs stay readable.
 */
#include <config.h>

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "log.h"

int log_verbosity = LOG_INFO;
static bool log_to_stderr = true;
static const char *log_ident = "nbdroot";

void
log_open(const char *ident, bool to_stderr)
{
  log_ident = ident;
  log_to_stderr = to_stderr;
  if (!to_stderr)
    openlog(ident, LOG_PID | LOG_NDELAY, LOG_DAEMON);
}

void
log_msg(int priority, const char *fmt, ...)
{
  va_list ap;
  char line[1024];

  if (priority > log_verbosity)
    return;
  va_start(ap, fmt);
  vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  if (log_to_stderr) {
    /* One fprintf so that lines from several threads do not interleave. */
    fprintf(stderr, "%s: %s%s\n", log_ident,
            priority <= LOG_ERR ? "error: " :
            priority == LOG_WARNING ? "warning: " : "", line);
  } else {
    syslog(priority, "%s", line);
  }
}
