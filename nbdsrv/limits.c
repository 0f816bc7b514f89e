/* SPDX-License-Identifier: GPL-2.0-or-later */
/* nbdsrv: connection limits, in total and per source address.
 *
 * Every worker thread accepts on its own, so the counts are shared: a
 * small hash table of addresses under one mutex, taken once when a
 * connection is accepted and once when it closes.  A client that opens
 * connection after connection (a broken script, or an attack) is refused
 * at max-connections-per-address, while everyone else still gets in until
 * max-connections.
 */
#include <config.h>

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nbdsrv.h"

#define LIMIT_BUCKETS 1024

struct addr_count {
  struct addr_count *next;
  unsigned n;
  char addr[INET6_ADDRSTRLEN];
};

static pthread_mutex_t limits_lock = PTHREAD_MUTEX_INITIALIZER;
static struct addr_count *buckets[LIMIT_BUCKETS];
static unsigned total;

static unsigned
hash_addr(const char *s)
{
  unsigned h = 2166136261u;   /* FNV-1a */

  for (; *s; s++)
    h = (h ^ (unsigned char)*s) * 16777619u;
  return h % LIMIT_BUCKETS;
}

const char *
limits_enter(const char *addr)
{
  struct addr_count **pp = &buckets[hash_addr(addr)], *a;
  const char *why = NULL;

  pthread_mutex_lock(&limits_lock);
  for (a = *pp; a; a = a->next)
    if (strcmp(a->addr, addr) == 0)
      break;
  if (config.max_conns && total >= config.max_conns) {
    why = "max-connections reached";
  } else if (config.max_conns_per_addr && a && a->n >= config.max_conns_per_addr) {
    why = "max-connections-per-address reached";
  } else if (!a && !(a = calloc(1, sizeof *a))) {
    why = "out of memory";
  } else {
    if (a->n == 0) {
      snprintf(a->addr, sizeof a->addr, "%s", addr);
      a->next = *pp;
      *pp = a;
    }
    a->n++;
    total++;
  }
  pthread_mutex_unlock(&limits_lock);
  return why;
}

void
limits_leave(const char *addr)
{
  struct addr_count **pp = &buckets[hash_addr(addr)], *a;

  pthread_mutex_lock(&limits_lock);
  for (; (a = *pp); pp = &a->next) {
    if (strcmp(a->addr, addr) != 0)
      continue;
    total--;
    if (--a->n == 0) {
      *pp = a->next;
      free(a);
    }
    break;
  }
  pthread_mutex_unlock(&limits_lock);
}
