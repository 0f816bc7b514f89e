/* SPDX-License-Identifier: GPL-2.0-or-later */
/* bench/replay: replays a recorded boot trace from N concurrent NBD
 * clients, a boot storm.
 *
 *   replay [-n CLIENTS] [--host H] [--port P] [--export NAME] [--id PREFIX]
 *          [--source ADDR] [--depth trace|N] [--burst-gap USEC] [--threads T]
 *          [--timeout SECS] [--ramp MS] [--pace] [--verify] [--json]
 *          [--client-times FILE] TRACE[.gz]
 *   replay --stats TRACE[.gz]
 *
 * The trace is what nbdsrv --trace writes ("USEC EXPORT/ID TYPE OFFSET
 * LENGTH", '#' lines are comments), plain or gzip'd; the requests of its
 * first client are replayed.  Every client opens its own connection (export
 * NAME, or NAME@PREFIXnnnn with --id, so that nbdsrv gives each its own
 * identity and overlay) and issues the boot's requests in the trace's
 * order, as fast as the server answers (no think time: what is measured is
 * the server, not the guest's CPU).
 *
 * How much each client keeps in flight follows the trace (--depth trace,
 * the default).  The trace has arrival times only.  Requests that arrived
 * within --burst-gap (100 us) of the one before could not have waited for
 * its reply (a round trip through the guest takes longer: in the recorded
 * boot the gaps are either under 20 us or over 200 us), so they form a
 * burst and are issued together; the first request of a burst waits until
 * everything before it completed, as the guest evidently did.  The recorded
 * boot is mostly one request at a time with bursts of up to 15 (journal
 * commits, readahead).  --depth N instead keeps up to N requests in flight
 * in order, a flush waiting for all before it and holding back the next.
 *
 * Writes carry deterministic data: every 8-byte word is a function of the
 * client and the word's offset, so with --verify each client reads back
 * the first and the last extent it wrote (up to 64 KiB each) after its
 * boot and checks it got its own data back (it does not where the server
 * shares one overlay between clients).
 *
 * With --pace the clients keep the boot's own rhythm instead: the first
 * request of a burst also waits, after everything before it completed,
 * for as long as the trace shows between it and the request before (the
 * guest's think time, plus the recording's own, small, round trip), so a
 * client boots in the trace's time when the server answers at once, and
 * every microsecond the server makes it wait adds to that.  This is the
 * load of a real boot storm, where what matters is how much the server
 * adds to each boot; without --pace the server's throughput is measured.
 *
 * All clients start at once (the storm), or with --ramp MS one after the
 * other, evenly over MS milliseconds (machines switched on by hand).  With
 * --source ADDR client i connects from the IPv4 address ADDR + i, as a
 * lab's machines each have their own (bench/lab-storm.sh gives a network
 * namespace those addresses); --client-times FILE writes each client's
 * boot time, first-request latency and connect time, one line each.  They
 * are driven with libnbd's aio
 * API from one epoll loop per thread (--threads, default 1).  Reported:
 * total time until every client finished, time each needed, latency of
 * every request (p50/p99/max), of each client's first request and of its
 * connection (TCP + handshake), errors, and requests the server could not
 * take (a flush to a server without flush, say), skipped.
 */
#include <config.h>

#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <libnbd.h>
#include <zlib.h>

enum op { OP_READ, OP_WRITE, OP_FLUSH, OP_TRIM, OP_ZERO, OP_CACHE, OP_BSTATUS, OP_N };
static const char *const op_names[OP_N] = { "R", "W", "F", "T", "Z", "C", "B" };

struct req {
  uint64_t usec; /* arrival, from the trace */
  uint64_t offset;
  uint32_t length;
  uint8_t op;
  bool fua;
  bool wait; /* issued only once all earlier requests completed */
};

static struct req *reqs;
static size_t nreqs;
static char trace_client[256];
static size_t other_lines;
static uint32_t max_read;
static unsigned max_burst;

/* Options. */
static const char *host = "127.0.0.1";
static const char *port = "10809";
static const char *export_name = "";
static const char *id_prefix;
static unsigned nclients = 1;
static unsigned nthreads = 1;
static unsigned depth; /* 0: from the trace */
static unsigned burst_gap = 100;
static unsigned timeout_s = 600;
static unsigned ramp_ms; /* client i starts at i * ramp / N */
static bool verify, json, pace;
static const char *client_times;            /* --client-times FILE */
static bool have_source;                    /* --source: client i binds to source + i */
static uint32_t source_base;                /* host byte order */
static struct sockaddr_storage server_addr; /* resolved once, with --source */
static socklen_t server_addrlen;

#define MAX_DEPTH 128 /* the Linux nbd driver's queue depth */
#define VERIFY_MAX (64u << 10)

enum state { C_CONNECTING, C_RUNNING, C_VERIFY, C_DONE, C_FAILED };

struct client;

struct slot {
  struct client *c;
  uint32_t idx; /* request index, or UINT32_MAX - k: verify k */
  uint64_t t_issue;
  void *buf; /* write or verify buffer (malloc'd) */
  uint64_t offset;
  uint32_t length;
  bool done;
  int err;
  struct slot *next_free;
};

struct client {
  struct thread *t;
  struct nbd_handle *h;
  unsigned idx;
  int fd;
  uint32_t ev;
  enum state state;
  size_t next;
  unsigned inflight;
  unsigned cap;
  uint64_t t_start, t_connected, t_done; /* ns from the start */
  uint64_t last_complete;                /* ns, of its latest reply (--pace) */
  uint64_t pace_due;                     /* ns: in the thread's timer heap until */
  bool pace_queued;
  uint32_t *lat; /* per request, 100 ns units */
  uint32_t first_lat;
  bool can_flush, can_fua, can_trim, can_zero, can_cache;
  unsigned verify_left;
  struct slot *slots, *free_slots;
};

struct thread {
  pthread_t tid;
  int ep;
  struct client *clients;
  unsigned n;
  unsigned active;
  char *scratch;        /* read data goes here, unlooked at */
  struct client **heap; /* --pace: clients waiting, earliest first */
  unsigned nheap;
  /* counters */
  uint64_t completed, errors, skipped, verified, mismatches, failed;
  char first_error[256];
};

static uint64_t t0;
static uint64_t deadline;

static uint64_t
now_ns(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + ts.tv_nsec;
}

static void
note_error(struct thread *t, const char *what, const char *msg)
{
  if (!t->first_error[0])
    snprintf(t->first_error, sizeof t->first_error, "%s: %s", what, msg ? msg : "?");
}

/* ---- the trace ---- */

static int
parse_op(const char *s, uint8_t *op, bool *fua)
{
  size_t n = strlen(s);

  *fua = n == 2 && s[1] == 'F' && (s[0] == 'W' || s[0] == 'Z');
  if (n != 1 && !*fua)
    return -1;
  for (unsigned i = 0; i < OP_N; i++)
    if (s[0] == op_names[i][0]) {
      *op = i;
      return 0;
    }
  return -1;
}

static int
cmp_req(const void *a, const void *b)
{
  const struct req *x = a, *y = b;
  return x->usec < y->usec ? -1 : x->usec > y->usec;
}

static int
load_trace(const char *path)
{
  gzFile f = gzopen(path, "rb");
  char line[512];
  size_t cap = 0, lineno = 0;
  bool sorted = true;

  if (!f) {
    fprintf(stderr, "replay: cannot open %s: %s\n", path, strerror(errno));
    return -1;
  }
  while (gzgets(f, line, sizeof line)) {
    char client[256], type[8];
    unsigned long long usec, off;
    unsigned long len;
    struct req r = { 0 };

    lineno++;
    if (line[0] == '#' || line[0] == '\n')
      continue;
    if (sscanf(line, "%llu %255s %7s %llu %lu", &usec, client, type, &off, &len) != 5 ||
        parse_op(type, &r.op, &r.fua) < 0 || len > UINT32_MAX) {
      fprintf(stderr, "replay: %s:%zu: not a trace line\n", path, lineno);
      gzclose(f);
      return -1;
    }
    if (!trace_client[0])
      snprintf(trace_client, sizeof trace_client, "%s", client);
    if (strcmp(client, trace_client) != 0) {
      other_lines++;
      continue;
    }
    r.usec = usec;
    r.offset = off;
    r.length = len;
    if (nreqs == cap) {
      cap = cap ? cap * 2 : 1024;
      reqs = realloc(reqs, cap * sizeof *reqs);
      if (!reqs) {
        perror("replay");
        exit(1);
      }
    }
    if (nreqs && usec < reqs[nreqs - 1].usec)
      sorted = false;
    reqs[nreqs++] = r;
  }
  gzclose(f);
  if (!nreqs) {
    fprintf(stderr, "replay: %s holds no requests\n", path);
    return -1;
  }
  /* One connection's lines come from one server thread, in order; sort
   * anyway (stable enough: equal times keep no particular order). */
  if (!sorted)
    qsort(reqs, nreqs, sizeof *reqs, cmp_req);
  return 0;
}

/* Which requests wait for all earlier ones, and how deep a client goes. */
static void
plan(void)
{
  unsigned burst = 0;

  max_burst = 0;
  for (size_t i = 0; i < nreqs; i++) {
    struct req *r = &reqs[i];

    if (depth == 0)
      r->wait = i == 0 || r->usec - reqs[i - 1].usec >= burst_gap;
    else
      r->wait = r->op == OP_FLUSH || (i > 0 && reqs[i - 1].op == OP_FLUSH);
    burst = r->wait ? 1 : burst + 1;
    if (burst > max_burst)
      max_burst = burst;
    if (r->op == OP_READ && r->length > max_read)
      max_read = r->length;
  }
}

static void
print_stats(void)
{
  uint64_t count[OP_N] = { 0 }, bytes[OP_N] = { 0 }, fua = 0;
  unsigned hist[MAX_DEPTH + 2] = { 0 }, burst = 0;

  for (size_t i = 0; i < nreqs; i++) {
    count[reqs[i].op]++;
    bytes[reqs[i].op] += reqs[i].length;
    fua += reqs[i].fua;
    if (reqs[i].wait && burst)
      hist[burst > MAX_DEPTH ? MAX_DEPTH + 1 : burst]++;
    burst = reqs[i].wait ? 1 : burst + 1;
  }
  hist[burst > MAX_DEPTH ? MAX_DEPTH + 1 : burst]++;
  printf("client %s: %zu requests over %.2f s", trace_client, nreqs,
         (reqs[nreqs - 1].usec - reqs[0].usec) / 1e6);
  if (other_lines)
    printf(" (%zu lines of other clients ignored)", other_lines);
  printf("\n");
  for (unsigned i = 0; i < OP_N; i++)
    if (count[i])
      printf("  %s %" PRIu64 " (%.2f MiB)\n", op_names[i], count[i],
             bytes[i] / 1048576.0);
  printf("  with FUA %" PRIu64 "\n", fua);
  printf("bursts (requests arriving within %u us of the one before):", burst_gap);
  for (unsigned i = 1; i <= MAX_DEPTH + 1; i++)
    if (hist[i])
      printf(" %u%s:%u", i, i > MAX_DEPTH ? "+" : "", hist[i]);
  printf("\nlargest burst %u\n", max_burst);
}

/* ---- deterministic write data ---- */

static uint64_t
mix64(uint64_t x)
{
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ull;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebull;
  x ^= x >> 31;
  return x;
}

/* The bytes client CLIENT writes at [OFF, OFF+LEN): word at absolute
 * offset o (8-aligned) is mix(client, o / 4096) + (o % 4096) / 8. */
static void
fill(unsigned char *dst, unsigned client, uint64_t off, uint32_t len)
{
  uint64_t a = off & ~7ull, end = off + len;

  while (a < end) {
    uint64_t base = mix64(((uint64_t)(client + 1) << 40) ^ (a >> 12));
    uint64_t blk_end = (a | 4095) + 1;
    for (; a < blk_end && a < end; a += 8) {
      uint64_t w = base + ((a & 4095) >> 3);
      unsigned char b[8];
      memcpy(b, &w, 8);
      for (unsigned k = 0; k < 8; k++)
        if (a + k >= off && a + k < end)
          dst[a + k - off] = b[k];
    }
  }
}

/* ---- clients ---- */

static void watch(struct client *c);

static struct slot *
slot_get(struct client *c)
{
  struct slot *s = c->free_slots;

  if (s) {
    c->free_slots = s->next_free;
    memset(s, 0, sizeof *s);
    s->c = c;
  }
  return s;
}

static int
complete_cb(void *user_data, int *error)
{
  struct slot *s = user_data;
  uint64_t lat = (now_ns() - s->t_issue) / 100 + 1; /* 0: none */

  s->done = true;
  s->err = *error;
  s->c->last_complete = now_ns();
  if (s->idx < nreqs) {
    s->c->lat[s->idx] = lat > UINT32_MAX ? UINT32_MAX : lat;
    if (s->idx == 0)
      s->c->first_lat = s->c->lat[0];
  }
  return 1;
}

static void
free_cb(void *user_data)
{
  struct slot *s = user_data;
  struct client *c = s->c;
  struct thread *t = c->t;

  c->inflight--;
  if (!s->done || s->err) {
    t->errors++;
    if (s->done)
      note_error(t, "request", strerror(s->err));
  } else {
    t->completed++;
    if (s->idx >= nreqs) {
      unsigned char *want = malloc(s->length);
      t->verified++;
      if (want) {
        fill(want, c->idx, s->offset, s->length);
        if (memcmp(want, s->buf, s->length) != 0)
          t->mismatches++;
        free(want);
      }
    }
  }
  if (s->idx >= nreqs)
    c->verify_left--;
  free(s->buf);
  s->buf = NULL;
  s->next_free = c->free_slots;
  c->free_slots = s;
}

/* ---- --pace: a binary heap of clients by the time they go on ---- */

static void
heap_swap(struct thread *t, unsigned a, unsigned b)
{
  struct client *x = t->heap[a];

  t->heap[a] = t->heap[b];
  t->heap[b] = x;
}

static void
heap_push(struct thread *t, struct client *c, uint64_t due)
{
  unsigned i = t->nheap++;

  c->pace_due = due;
  c->pace_queued = true;
  t->heap[i] = c;
  while (i > 0 && t->heap[(i - 1) / 2]->pace_due > due) {
    heap_swap(t, i, (i - 1) / 2);
    i = (i - 1) / 2;
  }
}

static struct client *
heap_pop(struct thread *t)
{
  struct client *top = t->heap[0];
  unsigned i = 0;

  t->heap[0] = t->heap[--t->nheap];
  for (;;) {
    unsigned l = 2 * i + 1, r = l + 1, m = i;
    if (l < t->nheap && t->heap[l]->pace_due < t->heap[m]->pace_due)
      m = l;
    if (r < t->nheap && t->heap[r]->pace_due < t->heap[m]->pace_due)
      m = r;
    if (m == i)
      break;
    heap_swap(t, i, m);
    i = m;
  }
  top->pace_queued = false;
  return top;
}

/* --pace: whether request r (a burst's first) must still wait for the
 * trace's think time; then the client is in the heap until it is over. */
static bool
pace_wait(struct client *c, size_t i)
{
  uint64_t due;

  if (!pace || i == 0 || !reqs[i].wait)
    return false;
  due = c->last_complete + (reqs[i].usec - reqs[i - 1].usec) * 1000u;
  if (now_ns() >= due)
    return false;
  if (!c->pace_queued)
    heap_push(c->t, c, due);
  return true;
}

/* Issues one request; returns false when it must wait. */
static bool
issue_one(struct client *c)
{
  const struct req *r = &reqs[c->next];
  struct slot *s;
  nbd_completion_callback cb;
  int64_t cookie = 0;
  uint32_t flags = 0;
  bool sup;

  if (c->inflight >= c->cap || (r->wait && c->inflight > 0) || pace_wait(c, c->next))
    return false;
  switch (r->op) {
    case OP_FLUSH: sup = c->can_flush; break;
    case OP_TRIM: sup = c->can_trim; break;
    case OP_ZERO: sup = c->can_zero; break;
    case OP_CACHE: sup = c->can_cache; break;
    case OP_BSTATUS: sup = false; break; /* needs a meta context: not replayed */
    default: sup = true; break;
  }
  if (!sup) {
    c->t->skipped++;
    c->next++;
    return true;
  }
  s = slot_get(c);
  if (!s)
    return false;
  s->idx = c->next;
  if (r->fua && c->can_fua)
    flags |= LIBNBD_CMD_FLAG_FUA;
  cb = (nbd_completion_callback){ .callback = complete_cb,
                                  .user_data = s,
                                  .free = free_cb };
  c->inflight++;
  c->next++;
  s->t_issue = now_ns();
  switch (r->op) {
    case OP_READ:
      cookie = nbd_aio_pread(c->h, c->t->scratch, r->length, r->offset, cb, 0);
      break;
    case OP_WRITE:
      s->buf = malloc(r->length ? r->length : 1);
      if (!s->buf) {
        perror("replay");
        exit(1);
      }
      fill(s->buf, c->idx, r->offset, r->length);
      cookie = nbd_aio_pwrite(c->h, s->buf, r->length, r->offset, cb, flags);
      break;
    case OP_FLUSH: cookie = nbd_aio_flush(c->h, cb, 0); break;
    case OP_TRIM: cookie = nbd_aio_trim(c->h, r->length, r->offset, cb, flags); break;
    case OP_ZERO: cookie = nbd_aio_zero(c->h, r->length, r->offset, cb, flags); break;
    case OP_CACHE: cookie = nbd_aio_cache(c->h, r->length, r->offset, cb, 0); break;
  }
  if (cookie < 0)
    note_error(c->t, "issuing a request", nbd_get_error());
  return true;
}

/* The first and the last write of the trace, up to VERIFY_MAX each,
 * unless a later trim or zero covers part of them. */
static size_t verify_idx[2];
static unsigned nverify;

static void
plan_verify(void)
{
  size_t first = SIZE_MAX, last = SIZE_MAX;

  for (size_t i = 0; i < nreqs; i++)
    if (reqs[i].op == OP_WRITE && reqs[i].length) {
      if (first == SIZE_MAX)
        first = i;
      last = i;
    }
  nverify = 0;
  if (first == SIZE_MAX)
    return;
  for (unsigned k = 0; k < 2; k++) {
    size_t w = k ? last : first;
    uint64_t lo = reqs[w].offset,
             hi = lo + (reqs[w].length < VERIFY_MAX ? reqs[w].length : VERIFY_MAX);
    bool ok = !(k && last == first);
    for (size_t i = w + 1; ok && i < nreqs; i++)
      if ((reqs[i].op == OP_TRIM || reqs[i].op == OP_ZERO) && reqs[i].offset < hi &&
          reqs[i].offset + reqs[i].length > lo)
        ok = false;
    if (ok)
      verify_idx[nverify++] = w;
  }
}

static void
start_verify(struct client *c)
{
  c->verify_left = 0;
  for (unsigned k = 0; k < nverify; k++) {
    const struct req *r = &reqs[verify_idx[k]];
    uint32_t len = r->length < VERIFY_MAX ? r->length : VERIFY_MAX;
    struct slot *s = slot_get(c);
    nbd_completion_callback cb;

    if (!s)
      break;
    s->idx = UINT32_MAX - k;
    s->offset = r->offset;
    s->length = len;
    s->buf = malloc(len);
    if (!s->buf) {
      perror("replay");
      exit(1);
    }
    cb = (nbd_completion_callback){ .callback = complete_cb,
                                    .user_data = s,
                                    .free = free_cb };
    c->inflight++;
    c->verify_left++;
    s->t_issue = now_ns();
    if (nbd_aio_pread(c->h, s->buf, len, r->offset, cb, 0) < 0)
      note_error(c->t, "issuing a verify read", nbd_get_error());
  }
}

static void
finish(struct client *c, enum state st)
{
  if (c->state == C_DONE || c->state == C_FAILED)
    return;
  if (st == C_DONE)
    nbd_aio_disconnect(c->h, 0);
  else
    c->t->failed++;
  c->state = st;
  c->t->active--;
}

static void
advance(struct client *c)
{
  struct nbd_handle *h = c->h;

  if (c->state == C_CONNECTING) {
    if (nbd_aio_is_ready(h)) {
      c->t_connected = now_ns() - t0;
      c->can_flush = nbd_can_flush(h) == 1;
      c->can_fua = nbd_can_fua(h) == 1;
      c->can_trim = nbd_can_trim(h) == 1;
      c->can_zero = nbd_can_zero(h) == 1;
      c->can_cache = nbd_can_cache(h) == 1;
      c->state = C_RUNNING;
    } else if (nbd_aio_is_dead(h) || nbd_aio_is_closed(h)) {
      note_error(c->t, "connecting", nbd_get_error());
      finish(c, C_FAILED);
    }
  }
  if (c->state == C_RUNNING || c->state == C_VERIFY) {
    if (nbd_aio_is_dead(h) || nbd_aio_is_closed(h)) {
      note_error(c->t, "connection lost", nbd_get_error());
      finish(c, C_FAILED);
    }
  }
  if (c->state == C_RUNNING) {
    while (c->next < nreqs && issue_one(c))
      ;
    if (c->next == nreqs && c->inflight == 0) {
      c->t_done = now_ns() - t0;
      if (verify && nverify) {
        c->state = C_VERIFY;
        start_verify(c);
      } else {
        finish(c, C_DONE);
      }
    }
  }
  if (c->state == C_VERIFY && c->inflight == 0)
    finish(c, C_DONE);
  watch(c);
}

/* Keeps the client's socket registered for what libnbd waits for. */
static void
watch(struct client *c)
{
  int fd = -1;
  uint32_t ev = 0;

  if (c->state != C_DONE && c->state != C_FAILED) {
    unsigned dir = nbd_aio_get_direction(c->h);
    fd = nbd_aio_get_fd(c->h);
    if (dir & LIBNBD_AIO_DIRECTION_READ)
      ev |= EPOLLIN;
    if (dir & LIBNBD_AIO_DIRECTION_WRITE)
      ev |= EPOLLOUT;
  }
  if (fd != c->fd) {
    if (c->fd >= 0 && c->ev)
      epoll_ctl(c->t->ep, EPOLL_CTL_DEL, c->fd, NULL); /* may be closed */
    c->fd = fd;
    c->ev = 0;
  }
  if (fd < 0 || ev == c->ev)
    return;
  struct epoll_event e = { .events = ev, .data.ptr = c };
  int rc = epoll_ctl(c->t->ep,
                     !c->ev ? EPOLL_CTL_ADD
                     : !ev  ? EPOLL_CTL_DEL
                            : EPOLL_CTL_MOD,
                     fd, &e);
  if (rc < 0) {
    note_error(c->t, "epoll_ctl", strerror(errno));
    finish(c, C_FAILED);
    return;
  }
  c->ev = ev;
}

/* --source: a non-blocking connect from the client's own address, handed
 * to libnbd while the TCP handshake is still under way (libnbd waits for
 * the server's greeting, which comes once the socket is connected). */
static int
connect_from_source(struct client *c)
{
  struct sockaddr_in src = { .sin_family = AF_INET,
                             .sin_addr.s_addr = htonl(source_base + c->idx) };
  int one = 1;
  int fd = socket(server_addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

  if (fd < 0) {
    note_error(c->t, "socket", strerror(errno));
    return -1;
  }
  /* Thousands of clients from their own addresses: let connect() pick
   * the port, so that bind() does not reserve one per address. */
  setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
  if (bind(fd, (struct sockaddr *)&src, sizeof src) < 0 ||
      (connect(fd, (struct sockaddr *)&server_addr, server_addrlen) < 0 &&
       errno != EINPROGRESS)) {
    char a[INET_ADDRSTRLEN];
    note_error(c->t, inet_ntop(AF_INET, &src.sin_addr, a, sizeof a), strerror(errno));
    close(fd);
    return -1;
  }
  /* The handle owns the socket from here on, also when this fails. */
  if (nbd_aio_connect_socket(c->h, fd) < 0) {
    note_error(c->t, "connecting", nbd_get_error());
    return -1;
  }
  return 0;
}

static int
start_connect(struct client *c)
{
  if (have_source)
    return connect_from_source(c);
  if (nbd_aio_connect_tcp(c->h, host, port) < 0) {
    note_error(c->t, "connecting", nbd_get_error());
    return -1;
  }
  return 0;
}

static void *
run_thread(void *arg)
{
  struct thread *t = arg;
  struct epoll_event evs[256];

  unsigned started = 0;

  while (t->active > 0) {
    uint64_t now = now_ns(), wake = deadline;
    uint64_t wait_ns;
    int n;

    if (now >= deadline)
      break;
    /* Start the clients whose time has come. */
    while (started < t->n) {
      struct client *c = &t->clients[started];
      uint64_t at = t0 + (uint64_t)ramp_ms * 1000000u * c->idx / nclients;
      if (at > now) {
        wake = at < wake ? at : wake;
        break;
      }
      started++;
      c->t_start = now_ns() - t0;
      if (start_connect(c) < 0) {
        finish(c, C_FAILED);
        continue;
      }
      advance(c);
    }
    /* Clients whose think time is over. */
    while (t->nheap > 0 && t->heap[0]->pace_due <= now)
      advance(heap_pop(t));
    if (t->nheap > 0 && t->heap[0]->pace_due < wake)
      wake = t->heap[0]->pace_due;
    /* Think times are often a few hundred microseconds: a timeout in
     * milliseconds would stretch every boot. */
    wait_ns = wake - now < 1000000000u ? wake - now : 1000000000u;
    n = epoll_pwait2(t->ep, evs, sizeof evs / sizeof evs[0],
                     &(struct timespec){ .tv_sec = wait_ns / 1000000000u,
                                         .tv_nsec = wait_ns % 1000000000u },
                     NULL);
    if (n < 0 && errno != EINTR) {
      note_error(t, "epoll_wait", strerror(errno));
      break;
    }
    for (int i = 0; i < n; i++) {
      struct client *c = evs[i].data.ptr;
      uint32_t e = evs[i].events;
      unsigned dir;

      if (c->state == C_DONE || c->state == C_FAILED)
        continue;
      dir = nbd_aio_get_direction(c->h);
      if ((e & (EPOLLIN | EPOLLHUP | EPOLLERR)) && (dir & LIBNBD_AIO_DIRECTION_READ))
        nbd_aio_notify_read(c->h);
      dir = nbd_aio_get_direction(c->h);
      if ((e & (EPOLLOUT | EPOLLHUP | EPOLLERR)) && (dir & LIBNBD_AIO_DIRECTION_WRITE))
        nbd_aio_notify_write(c->h);
      if ((e & (EPOLLHUP | EPOLLERR)) && !(dir & LIBNBD_AIO_DIRECTION_BOTH) &&
          c->state == C_CONNECTING) {
        note_error(t, "connecting", "socket error");
        finish(c, C_FAILED);
      }
      advance(c);
    }
  }
  return NULL;
}

/* ---- reporting ---- */

static int
cmp_u32(const void *a, const void *b)
{
  uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
  return x < y ? -1 : x > y;
}

struct pct {
  double p50, p90, p99, max;
  size_t n;
};

/* Percentiles (nearest rank) of V[0..N), in the unit of V times SCALE. */
static struct pct
percentiles(uint32_t *v, size_t n, double scale)
{
  struct pct p = { 0, 0, 0, 0, n };

  if (!n)
    return p;
  qsort(v, n, sizeof *v, cmp_u32);
  p.p50 = v[(n * 50 + 99) / 100 - 1] * scale;
  p.p90 = v[(n * 90 + 99) / 100 - 1] * scale;
  p.p99 = v[(n * 99 + 99) / 100 - 1] * scale;
  p.max = v[n - 1] * scale;
  return p;
}

static void
usage(FILE *f)
{
  fprintf(
      f,
      "usage: replay [-n CLIENTS] [--host H] [--port P] [--export NAME] [--id PREFIX]\n"
      "              [--source ADDR] [--depth trace|N] [--burst-gap USEC] [--threads T]\n"
      "              [--timeout SECS] [--ramp MS] [--pace] [--verify] [--json]\n"
      "              [--client-times FILE] TRACE[.gz]\n"
      "       replay --stats [--burst-gap USEC] TRACE[.gz]\n");
}

static unsigned
parse_num(const char *s, const char *what, unsigned lo, unsigned hi)
{
  char *end;
  unsigned long v;

  errno = 0;
  v = strtoul(s, &end, 10);
  if (errno || end == s || *end || v < lo || v > hi) {
    fprintf(stderr, "replay: %s must be a number from %u to %u\n", what, lo, hi);
    exit(2);
  }
  return v;
}

static void
parse_source(const char *s)
{
  struct in_addr a;

  if (inet_pton(AF_INET, s, &a) != 1) {
    fprintf(stderr, "replay: --source %s: not an IPv4 address\n", s);
    exit(2);
  }
  source_base = ntohl(a.s_addr);
  have_source = true;
}

/* --source: the server's address, resolved once for every client. */
static void
resolve_server(void)
{
  struct addrinfo hints = { .ai_family = AF_INET, .ai_socktype = SOCK_STREAM }, *ai;
  int r = getaddrinfo(host, port, &hints, &ai);

  if (r != 0) {
    fprintf(stderr, "replay: %s:%s: %s\n", host, port, gai_strerror(r));
    exit(2);
  }
  if ((uint64_t)source_base + nclients > UINT32_MAX + 1ull) {
    fprintf(stderr, "replay: --source leaves no room for %u addresses\n", nclients);
    exit(2);
  }
  memcpy(&server_addr, ai->ai_addr, ai->ai_addrlen);
  server_addrlen = ai->ai_addrlen;
  freeaddrinfo(ai);
}

/* --client-times: one line per client (boot time, first-request latency,
 * connect time; "-" where the client never got there), for plots. */
static void
write_client_times(const struct client *clients)
{
  FILE *f = fopen(client_times, "w");

  if (!f) {
    fprintf(stderr, "replay: %s: %s\n", client_times, strerror(errno));
    return;
  }
  fprintf(f, "# client done_s first_us connect_us\n");
  for (unsigned i = 0; i < nclients; i++) {
    const struct client *c = &clients[i];
    fprintf(f, "%u ", i);
    if (c->state == C_DONE)
      fprintf(f, "%.6f ", (c->t_done - c->t_start) / 1e9);
    else
      fprintf(f, "- ");
    if (c->first_lat)
      fprintf(f, "%.1f ", c->first_lat / 10.0);
    else
      fprintf(f, "- ");
    if (c->t_connected)
      fprintf(f, "%.1f\n", (c->t_connected - c->t_start) / 1e3);
    else
      fprintf(f, "-\n");
  }
  if (fclose(f) != 0)
    fprintf(stderr, "replay: %s: %s\n", client_times, strerror(errno));
}

int
main(int argc, char **argv)
{
  static const struct option lopts[] = {
    { "clients", required_argument, NULL, 'n' },
    { "host", required_argument, NULL, 'H' },
    { "port", required_argument, NULL, 'p' },
    { "export", required_argument, NULL, 'e' },
    { "id", required_argument, NULL, 'i' },
    { "depth", required_argument, NULL, 'd' },
    { "burst-gap", required_argument, NULL, 'g' },
    { "threads", required_argument, NULL, 't' },
    { "timeout", required_argument, NULL, 'T' },
    { "ramp", required_argument, NULL, 'r' },
    { "verify", no_argument, NULL, 'V' },
    { "source", required_argument, NULL, 'S' },
    { "client-times", required_argument, NULL, 'C' },
    { "pace", no_argument, NULL, 'P' },
    { "json", no_argument, NULL, 'j' },
    { "stats", no_argument, NULL, 's' },
    { "help", no_argument, NULL, 'h' },
    { NULL, 0, NULL, 0 },
  };
  bool stats = false;
  struct thread *threads;
  struct client *clients;
  struct rlimit rl;
  struct rusage ru;
  int opt;

  while ((opt = getopt_long(argc, argv, "n:h", lopts, NULL)) != -1) {
    switch (opt) {
      case 'n': nclients = parse_num(optarg, "--clients", 1, 100000); break;
      case 'H': host = optarg; break;
      case 'p': port = optarg; break;
      case 'e': export_name = optarg; break;
      case 'i': id_prefix = optarg; break;
      case 'd':
        depth =
            strcmp(optarg, "trace") == 0 ? 0 : parse_num(optarg, "--depth", 1, MAX_DEPTH);
        break;
      case 'g': burst_gap = parse_num(optarg, "--burst-gap", 0, 10000000); break;
      case 't': nthreads = parse_num(optarg, "--threads", 1, 64); break;
      case 'T': timeout_s = parse_num(optarg, "--timeout", 1, 86400); break;
      case 'r': ramp_ms = parse_num(optarg, "--ramp", 0, 3600000); break;
      case 'V': verify = true; break;
      case 'S': parse_source(optarg); break;
      case 'C': client_times = optarg; break;
      case 'P': pace = true; break;
      case 'j': json = true; break;
      case 's': stats = true; break;
      case 'h': usage(stdout); return 0;
      default: usage(stderr); return 2;
    }
  }
  if (optind != argc - 1) {
    usage(stderr);
    return 2;
  }
  if (load_trace(argv[optind]) < 0)
    return 1;
  plan();
  plan_verify();
  if (stats) {
    print_stats();
    free(reqs);
    return 0;
  }
  if (nthreads > nclients)
    nthreads = nclients;
  if (have_source)
    resolve_server();

  /* A socket per client, and a margin. */
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < nclients + 64u) {
    rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max > nclients + 64u
                      ? nclients + 64u
                      : rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur < nclients + 64u) {
      fprintf(stderr, "replay: cannot raise the open-files limit to %u\n",
              nclients + 64u);
      return 1;
    }
  }
  signal(SIGPIPE, SIG_IGN);

  threads = calloc(nthreads, sizeof *threads);
  clients = calloc(nclients, sizeof *clients);
  if (!threads || !clients) {
    perror("replay");
    return 1;
  }
  unsigned cap = depth ? depth : max_burst;
  if (cap > MAX_DEPTH)
    cap = MAX_DEPTH;
  if (cap < 1)
    cap = 1;
  for (unsigned i = 0; i < nthreads; i++) {
    struct thread *t = &threads[i];
    t->ep = epoll_create1(EPOLL_CLOEXEC);
    t->scratch = malloc(max_read ? max_read : 1);
    t->clients = &clients[(size_t)nclients * i / nthreads];
    t->n = (size_t)nclients * (i + 1) / nthreads - (size_t)nclients * i / nthreads;
    t->active = t->n;
    t->heap = calloc(t->n, sizeof *t->heap);
    if (t->ep < 0 || !t->scratch || !t->heap) {
      perror("replay");
      return 1;
    }
  }
  for (unsigned i = 0; i < nclients; i++) {
    struct client *c = &clients[i];
    char name[512];
    unsigned nslots = cap + 2;

    for (unsigned k = 0; k < nthreads; k++)
      if (c >= threads[k].clients && c < threads[k].clients + threads[k].n)
        c->t = &threads[k];
    c->idx = i;
    c->fd = -1;
    c->cap = cap;
    c->lat = calloc(nreqs, sizeof *c->lat);
    c->slots = calloc(nslots, sizeof *c->slots);
    c->h = nbd_create();
    if (!c->lat || !c->slots || !c->h) {
      fprintf(stderr, "replay: %s\n", c->h ? strerror(errno) : nbd_get_error());
      return 1;
    }
    for (unsigned k = 0; k < nslots; k++) {
      c->slots[k].next_free = c->free_slots;
      c->free_slots = &c->slots[k];
    }
    if (id_prefix)
      snprintf(name, sizeof name, "%s@%s%04u", export_name, id_prefix, i);
    else
      snprintf(name, sizeof name, "%s", export_name);
    if (nbd_set_export_name(c->h, name) < 0) {
      fprintf(stderr, "replay: %s\n", nbd_get_error());
      return 1;
    }
  }

  t0 = now_ns();
  deadline = t0 + (uint64_t)timeout_s * 1000000000u;
  for (unsigned i = 0; i < nthreads; i++)
    if (pthread_create(&threads[i].tid, NULL, run_thread, &threads[i]) != 0) {
      fprintf(stderr, "replay: cannot start a thread\n");
      return 1;
    }
  for (unsigned i = 0; i < nthreads; i++)
    pthread_join(threads[i].tid, NULL);
  uint64_t t_end = now_ns() - t0;

  /* Totals. */
  uint64_t completed = 0, errors = 0, skipped = 0, verified = 0, mismatches = 0;
  unsigned failed = 0, finished = 0, unfinished = 0;
  const char *first_error = "";
  for (unsigned i = 0; i < nthreads; i++) {
    struct thread *t = &threads[i];
    completed += t->completed;
    errors += t->errors;
    skipped += t->skipped;
    verified += t->verified;
    mismatches += t->mismatches;
    failed += t->failed;
    if (!first_error[0] && t->first_error[0])
      first_error = t->first_error;
  }
  uint32_t *lat = malloc((nreqs * nclients + 1) * sizeof *lat);
  uint32_t *oplat = malloc((nreqs * nclients + 1) * sizeof *oplat);
  uint32_t *first = malloc((nclients + 1) * sizeof *first);
  uint32_t *conn = malloc((nclients + 1) * sizeof *conn);
  uint32_t *done = malloc((nclients + 1) * sizeof *done);
  size_t nlat = 0, nfirst = 0, nconn = 0, ndone = 0;
  uint64_t last_done = 0;
  unsigned stuck_connecting = 0;
  if (!lat || !oplat || !first || !conn || !done) {
    perror("replay");
    return 1;
  }
  for (unsigned i = 0; i < nclients; i++) {
    struct client *c = &clients[i];
    if (c->state == C_DONE) {
      finished++;
      done[ndone++] = (c->t_done - c->t_start) / 1000000; /* ms */
      if (c->t_done > last_done)
        last_done = c->t_done;
    } else if (c->state != C_FAILED) {
      unfinished++;
      stuck_connecting += c->state == C_CONNECTING;
    }
    if (c->t_connected)
      conn[nconn++] = (c->t_connected - c->t_start) / 100;
    if (c->first_lat)
      first[nfirst++] = c->first_lat;
    for (size_t k = 0; k < nreqs; k++)
      if (c->lat[k])
        lat[nlat++] = c->lat[k];
  }
  /* by request type */
  struct pct pop[OP_N];
  for (unsigned o = 0; o < OP_N; o++) {
    size_t n = 0;
    for (unsigned i = 0; i < nclients; i++)
      for (size_t k = 0; k < nreqs; k++)
        if (reqs[k].op == o && clients[i].lat[k])
          oplat[n++] = clients[i].lat[k];
    pop[o] = percentiles(oplat, n, 0.1);
  }
  struct pct pl = percentiles(lat, nlat, 0.1), pf = percentiles(first, nfirst, 0.1),
             pc = percentiles(conn, nconn, 0.1), pd = percentiles(done, ndone, 0.001);
  bool all = finished == nclients;
  double total = (all ? last_done : t_end) / 1e9;
  getrusage(RUSAGE_SELF, &ru);
  double cpu = ru.ru_utime.tv_sec + ru.ru_stime.tv_sec +
               (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;

  if (json) {
    printf(
        "{\"clients\": %u, \"requests_per_client\": %zu, \"depth\": \"%s\", "
        "\"max_depth\": %u, \"finished\": %u, \"failed\": %u, \"unfinished\": %u, "
        "\"timed_out\": %s, \"total_s\": %.3f, \"client_done_p50_s\": %.3f, "
        "\"client_done_p90_s\": %.3f, \"client_done_p99_s\": %.3f, "
        "\"client_done_max_s\": %.3f, "
        "\"completed\": %" PRIu64 ", \"errors\": %" PRIu64 ", \"skipped\": %" PRIu64 ", "
        "\"lat_p50_us\": %.1f, \"lat_p99_us\": %.1f, \"lat_max_us\": %.1f, "
        "\"first_p50_us\": %.1f, \"first_p99_us\": %.1f, \"first_max_us\": %.1f, "
        "\"connect_p50_us\": %.1f, \"connect_p99_us\": %.1f, \"connect_max_us\": %.1f, "
        "\"verified\": %" PRIu64 ", \"mismatches\": %" PRIu64 ", "
        "\"unfinished_connecting\": %u, \"ramp_ms\": %u, \"client_cpu_s\": %.3f",
        nclients, nreqs, depth ? "fixed" : "trace", cap, finished, failed, unfinished,
        unfinished ? "true" : "false", total, pd.p50, pd.p90, pd.p99, pd.max, completed,
        errors, skipped, pl.p50, pl.p99, pl.max, pf.p50, pf.p99, pf.max, pc.p50, pc.p99,
        pc.max, verified, mismatches, stuck_connecting, ramp_ms, cpu);
    for (unsigned o = 0; o < OP_N; o++)
      if (pop[o].n)
        printf(", \"%s_p50_us\": %.1f, \"%s_p99_us\": %.1f, \"%s_max_us\": %.1f",
               op_names[o], pop[o].p50, op_names[o], pop[o].p99, op_names[o], pop[o].max);
    printf("}\n");
  } else {
    printf(
        "replay: %zu requests per client, depth %s (up to %u), %u clients, %u thread%s\n",
        nreqs, depth ? "fixed" : "from the trace", cap, nclients, nthreads,
        nthreads == 1 ? "" : "s");
    printf("finished %u, failed %u, unfinished %u", finished, failed, unfinished);
    if (unfinished)
      printf(" (timed out; %u of them still connecting)", stuck_connecting);
    printf("\n");
    printf("total time %.3f s%s; per client p50 %.3f s", total,
           all ? "" : " (until the timeout)", pd.p50);
    if (ramp_ms)
      printf(" (clients started over %u ms)", ramp_ms);
    printf("\n");
    printf("requests completed %" PRIu64 ", errors %" PRIu64 ", skipped %" PRIu64 "\n",
           completed, errors, skipped);
    printf("latency us: p50 %.1f, p99 %.1f, max %.1f (%zu requests)\n", pl.p50, pl.p99,
           pl.max, pl.n);
    for (unsigned o = 0; o < OP_N; o++)
      if (pop[o].n)
        printf("  %s: p50 %.1f, p99 %.1f, max %.1f (%zu)\n", op_names[o], pop[o].p50,
               pop[o].p99, pop[o].max, pop[o].n);
    printf("first request latency us: p50 %.1f, p99 %.1f, max %.1f\n", pf.p50, pf.p99,
           pf.max);
    printf("connect (TCP + handshake) us: p50 %.1f, p99 %.1f, max %.1f\n", pc.p50, pc.p99,
           pc.max);
    if (verify)
      printf("verify: %" PRIu64 " extents read back, %" PRIu64
             " not the client's own data\n",
             verified, mismatches);
    printf("replay CPU %.2f s\n", cpu);
  }
  if (first_error[0])
    fprintf(stderr, "replay: first error: %s\n", first_error);
  if (client_times)
    write_client_times(clients);
  bool ok = all && !errors;

  /* Everything goes back, so that a sanitizer build finds real leaks. */
  free(lat);
  free(oplat);
  free(first);
  free(conn);
  free(done);
  for (unsigned i = 0; i < nclients; i++) {
    nbd_close(clients[i].h); /* retires every command: free_cb frees its buffer */
    free(clients[i].slots);
    free(clients[i].lat);
  }
  for (unsigned i = 0; i < nthreads; i++) {
    close(threads[i].ep);
    free(threads[i].scratch);
    free(threads[i].heap);
  }
  free(clients);
  free(threads);
  free(reqs);
  return ok ? 0 : 1;
}
