/* SPDX-License-Identifier: GPL-2.0-or-later */
/* nbdsrv: overlays refused as damaged, for nbdsrv ctl list.
 *
 * An overlay whose files do not hold together (ovl_file_open says
 * -EUCLEAN: a damaged journal batch with valid ones after it, a map file
 * shorter than its header, a data file shorter than the map needs) is refused, never cut back or made again: its files stay as
 * they are for the admin (imgtool check-overlay).  Its client's agent
 * keeps reconnecting, so the refusal would otherwise only show in the
 * log, rate-limited; here it is kept, with the reason, until the overlay
 * opens again.
 *
 * Entries are never freed while the server runs: the message of one is
 * the reason a refused client is given (attach.c hands it to the
 * worker after the open failed), so it must outlive the open.  There are
 * as many as overlays were ever damaged.
 */
#include <config.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nbdsrv.h"

struct damaged {
  struct damaged *next;
  char key[512]; /* EXPORT/ID */
  char why[400]; /* what the client and the admin are told */
  bool current;  /* still refused (not opened since) */
};

static pthread_mutex_t damaged_lock = PTHREAD_MUTEX_INITIALIZER;
static struct damaged *damaged_list;

const char *
damaged_note(const char *key, const char *what)
{
  static const char nomem[] = "the client's overlay is damaged (see the server log)";
  struct damaged *d;
  char why[sizeof d->why];

  snprintf(
      why, sizeof why,
      "overlay %s is damaged: %s; refused, its files left as they are (imgtool check-overlay)",
      key, what);
  pthread_mutex_lock(&damaged_lock);
  for (d = damaged_list; d && strcmp(d->key, key); d = d->next)
    ;
  if (!d && (d = calloc(1, sizeof *d))) {
    snprintf(d->key, sizeof d->key, "%s", key);
    d->next = damaged_list;
    damaged_list = d;
  }
  if (d) {
    /* Rewritten only when it says something else: a worker may be
     * reading the reason it was given before. */
    if (strcmp(d->why, why))
      snprintf(d->why, sizeof d->why, "%s", why);
    d->current = true;
  }
  pthread_mutex_unlock(&damaged_lock);
  return d ? d->why : nomem;
}

void
damaged_clear(const char *key)
{
  pthread_mutex_lock(&damaged_lock);
  for (struct damaged *d = damaged_list; d; d = d->next)
    if (!strcmp(d->key, key))
      d->current = false;
  pthread_mutex_unlock(&damaged_lock);
}

void
damaged_each(void (*fn)(const char *key, const char *why, void *arg), void *arg)
{
  pthread_mutex_lock(&damaged_lock);
  for (struct damaged *d = damaged_list; d; d = d->next)
    if (d->current)
      fn(d->key, d->why, arg);
  pthread_mutex_unlock(&damaged_lock);
}

void
damaged_free(void)
{
  pthread_mutex_lock(&damaged_lock);
  while (damaged_list) {
    struct damaged *d = damaged_list;
    damaged_list = d->next;
    free(d);
  }
  pthread_mutex_unlock(&damaged_lock);
}
