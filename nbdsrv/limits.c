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

#include <arpa/inet.h>
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
  char addr[INET6_ADDRSTRLEN + 4]; /* limit_key() */
};

static pthread_mutex_t limits_lock = PTHREAD_MUTEX_INITIALIZER;
static struct addr_count *buckets[LIMIT_BUCKETS];
static unsigned total;

/* Connections over a limit that are still answered, with the reason,
 * until their handshake ends: a few, so that a flood of them cannot hold
 * every slot (the rest are closed at once). */
#define REFUSING_MAX 64
static unsigned refusing;

/* What a limit counts of addr: the address, or for IPv6 its /64 (one
 * host may hold a whole /64, and pick a new address per connection). */
static void
limit_key(const char *addr, char out[INET6_ADDRSTRLEN + 4])
{
  struct in6_addr a;
  char buf[INET6_ADDRSTRLEN];

  if (!strchr(addr, ':') || inet_pton(AF_INET6, addr, &a) != 1) {
    snprintf(out, INET6_ADDRSTRLEN + 4, "%s", addr);
    return;
  }
  memset(a.s6_addr + 8, 0, 8);
  inet_ntop(AF_INET6, &a, buf, sizeof buf);
  snprintf(out, INET6_ADDRSTRLEN + 4, "%s/64", buf);
}

static unsigned
hash_addr(const char *s)
{
  unsigned h = 2166136261u; /* FNV-1a */

  for (; *s; s++)
    h = (h ^ (unsigned char)*s) * 16777619u;
  return h % LIMIT_BUCKETS;
}

const char *
limits_enter(const char *peer)
{
  char addr[INET6_ADDRSTRLEN + 4];
  struct addr_count **pp, *a;
  const char *why = NULL;

  limit_key(peer, addr);
  pp = &buckets[hash_addr(addr)];
  pthread_mutex_lock(&limits_lock);
  for (a = *pp; a; a = a->next)
    if (strcmp(a->addr, addr) == 0)
      break;
  if (config.max_conns && total >= config.max_conns) {
    why =
        "the server has as many connections as it takes (max-connections): try again later";
  } else if (config.max_conns_per_addr && a && a->n >= config.max_conns_per_addr) {
    why = "too many connections from this address (max-connections-per-address)";
  } else if (!a && !(a = calloc(1, sizeof *a))) {
    why = "out of memory";
  } else {
    if (a->n == 0) {
      snprintf(a->addr, sizeof a->addr, "%s", addr);
      a->next = *pp;
      *pp = a;
    }
    a->n++;
    __atomic_add_fetch(&total, 1, __ATOMIC_RELAXED);
  }
  pthread_mutex_unlock(&limits_lock);
  return why;
}

void
limits_leave(const char *peer)
{
  char addr[INET6_ADDRSTRLEN + 4];
  struct addr_count **pp, *a;

  limit_key(peer, addr);
  pp = &buckets[hash_addr(addr)];
  pthread_mutex_lock(&limits_lock);
  for (; (a = *pp); pp = &a->next) {
    if (strcmp(a->addr, addr) != 0)
      continue;
    __atomic_sub_fetch(&total, 1, __ATOMIC_RELAXED);
    if (--a->n == 0) {
      *pp = a->next;
      free(a);
    }
    break;
  }
  pthread_mutex_unlock(&limits_lock);
}

bool
limits_enter_refusing(void)
{
  bool ok;

  pthread_mutex_lock(&limits_lock);
  ok = refusing < REFUSING_MAX;
  if (ok)
    refusing++;
  pthread_mutex_unlock(&limits_lock);
  return ok;
}

void
limits_leave_refusing(void)
{
  pthread_mutex_lock(&limits_lock);
  refusing--;
  pthread_mutex_unlock(&limits_lock);
}

/* Read without the lock: pacing wants a recent count, not an exact one. */
unsigned
limits_total(void)
{
  return __atomic_load_n(&total, __ATOMIC_RELAXED);
}
