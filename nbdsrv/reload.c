/* SPDX-License-Identifier: GPL-2.0-or-later */
/* nbdsrv: what a reload changed, key by key and export by export.
 *
 * A reload (SIGHUP, nbdsrv ctl reload) compares the running
 * configuration with the one just read, through the key table: every
 * key's value is shown as the file would write it, and two values differ
 * when their text does.  Each difference is one log line ("max-request
 * changed: 1M -> 2M", "export lab: allow changed", "export new: added"),
 * also handed to whoever asked for the reload (nbdsrv ctl).
 */
#include <config.h>

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "log.h"
#include "nbdsrv.h"

#define VALUE_MAX 4096

struct report {
  reload_echo_fn *echo;
  void *ctx;
  unsigned changes;
};

static void __attribute__((format(printf, 3, 4)))
tell(struct report *rp, int priority, const char *fmt, ...)
{
  char line[2 * VALUE_MAX + 512];
  va_list ap;

  va_start(ap, fmt);
  vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  log_msg(priority, "reload: %s", line);
  if (rp->echo)
    rp->echo(line, rp->ctx);
  rp->changes++;
}

static void
report_generic(struct report *rp, const struct config *old, const struct config *next)
{
  static char a[VALUE_MAX], b[VALUE_MAX];

  for (unsigned i = 0; i < nkeys; i++) {
    const struct key *k = &keys[i];

    if (k->scope != KEY_GENERIC)
      continue;
    key_format(k, old, a, sizeof a);
    key_format(k, next, b, sizeof b);
    if (strcmp(a, b) == 0)
      continue;
    if (k->restart)
      tell(rp, LOG_WARNING, "'%s' changed, which takes effect only after a restart",
           k->name);
    else
      tell(rp, LOG_INFO, "%s changed: %s -> %s", k->name, a, b);
  }
}

static void
report_export(struct report *rp, const struct export *old, const struct export *next)
{
  static char a[VALUE_MAX], b[VALUE_MAX];

  for (unsigned i = 0; i < nkeys; i++) {
    const struct key *k = &keys[i];

    if (k->scope != KEY_EXPORT)
      continue;
    key_format(k, old, a, sizeof a);
    key_format(k, next, b, sizeof b);
    if (strcmp(a, b) == 0)
      continue;
    /* Lists can be long: only say that they changed. */
    if (k->repeatable)
      tell(rp, LOG_INFO, "export %s: %s changed", next->name, k->name);
    else
      tell(rp, LOG_INFO, "export %s: %s changed: %s -> %s", next->name, k->name, a, b);
  }
}

static const struct export *
find(const struct export *v, unsigned n, const char *name)
{
  for (unsigned i = 0; i < n; i++)
    if (strcmp(v[i].name, name) == 0)
      return &v[i];
  return NULL;
}

unsigned
reload_report(const struct config *old, const struct config *next, reload_echo_fn *echo,
              void *ctx)
{
  struct report rp = { echo, ctx, 0 };

  report_generic(&rp, old, next);
  for (unsigned i = 0; i < next->nexports; i++) {
    const struct export *o = find(old->exports, old->nexports, next->exports[i].name);
    if (o)
      report_export(&rp, o, &next->exports[i]);
    else
      tell(&rp, LOG_INFO, "export %s: added", next->exports[i].name);
  }
  for (unsigned i = 0; i < old->nexports; i++)
    if (!find(next->exports, next->nexports, old->exports[i].name))
      tell(&rp, LOG_INFO, "export %s: removed (its connected clients carry on)",
           old->exports[i].name);
  return rp.changes;
}

void
reload_apply(struct config *live, const struct config *next)
{
  for (unsigned i = 0; i < nkeys; i++) {
    const struct key *k = &keys[i];

    if (k->scope == KEY_GENERIC && !k->restart)
      memcpy((char *)live + k->offset, (const char *)next + k->offset, k->size);
  }
}
