/* SPDX-License-Identifier: GPL-2.0-or-later */
/* nbdsrv: the fixed newstyle handshake (option haggling).
 *
 * The server speaks first (NBDMAGIC, IHAVEOPT, handshake flags), the
 * client answers with its flags, then sends options until one of them
 * (NBD_OPT_GO or NBD_OPT_EXPORT_NAME) moves the connection to the
 * transmission phase.  Every option gets a reply; options we do not know
 * get NBD_REP_ERR_UNSUP, malformed ones NBD_REP_ERR_INVALID, each with a
 * message saying what was wrong.  Only a broken framing (a bad magic) or
 * an unknown export on NBD_OPT_EXPORT_NAME, which has no error reply,
 * closes the connection.
 *
 * Options come whole (input.c cuts and checks their framing); each moves
 * the connection's stage on where it has to (conn_enter).
 *
 * Every client turned away (an unknown export, a refusal) is logged
 * without -v, rate-limited (log_limited): the admin of a lab whose
 * clients do not boot looks here first, and a flood must not fill the
 * disk.
 */
#include <config.h>

#include <endian.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "nbdsrv.h"

#define META_ALLOC_ID 1
#define META_ALLOC_NAME "base:allocation"

static struct log_limit unknown_export_log = LOG_LIMIT(LOG_WARNING, "unknown exports");

static void
outmsg_free_heap(struct outmsg *m)
{
  free(m);
}

/* Queues hdr (hlen bytes) followed by a copy of data (dlen bytes). */
static void
queue_copy(struct conn *c, const void *hdr, size_t hlen, const void *data, size_t dlen)
{
  struct outmsg *m = malloc(sizeof *m + dlen);

  if (!m) {
    conn_close(c, "out of memory");
    return;
  }
  memset(m, 0, sizeof *m);
  memcpy(m->hdr, hdr, hlen);
  m->iov[0] = (struct iovec){ m->hdr, hlen };
  m->niov = 1;
  if (dlen) {
    memcpy(m + 1, data, dlen);
    m->iov[1] = (struct iovec){ m + 1, dlen };
    m->niov = 2;
  }
  m->free = outmsg_free_heap;
  /* Counted: a client that never reads its replies must not make us
   * hold them without end (budget.c). */
  budget_msg_take(c, m, sizeof *m + dlen);
  conn_queue(c, m);
}

static void
opt_reply(struct conn *c, uint32_t type, const void *data, size_t len)
{
  struct nbd_fixed_new_option_reply r = {
    .magic = htobe64(NBD_REP_MAGIC),
    .option = htobe32(c->opt),
    .reply = htobe32(type),
    .replylen = htobe32(len),
  };
  queue_copy(c, &r, sizeof r, data, len);
}

static void
opt_error(struct conn *c, uint32_t type, const char *why)
{
  log_debug("%s: option %u: %s", c->peer, c->opt, why);
  opt_reply(c, type, why, strlen(why));
}

void
handshake_start(struct conn *c)
{
  struct nbd_new_handshake h = {
    .nbdmagic = htobe64(NBD_MAGIC),
    .version = htobe64(NBD_IHAVEOPT),
    .gflags = htobe16(NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES),
  };

  queue_copy(c, &h, sizeof h, NULL, 0);
}

static uint16_t
export_flags(const struct conn *c)
{
  uint16_t f = NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_FLUSH | NBD_FLAG_SEND_FUA |
               NBD_FLAG_SEND_TRIM | NBD_FLAG_SEND_WRITE_ZEROES | NBD_FLAG_SEND_FAST_ZERO |
               NBD_FLAG_SEND_CACHE | NBD_FLAG_CAN_MULTI_CONN;

  /* Every connection of one client shares one overlay, and a flush covers
   * all of it: that is what CAN_MULTI_CONN promises. */
  if (c->structured)
    f |= NBD_FLAG_SEND_DF;
  if (c->exp && export_readonly(c->exp))
    f = (f & ~(NBD_FLAG_SEND_TRIM | NBD_FLAG_SEND_WRITE_ZEROES | NBD_FLAG_SEND_FAST_ZERO |
               NBD_FLAG_SEND_FUA)) |
        NBD_FLAG_READ_ONLY;
  return f;
}

/* The export names, comma-separated, as many as fit in buf (len > 32). */
static void
export_names(char *buf, size_t len)
{
  const size_t tail = 32; /* kept for the end of a list cut short */
  unsigned n;
  const struct export *all = config_exports(&n);
  size_t o = 0;

  snprintf(buf, len, "(none)");
  for (unsigned i = 0; i < n; i++) {
    int k = snprintf(buf + o, len - tail - o, "%s%s", i ? ", " : "", all[i].name);
    if (k < 0 || (size_t)k >= len - tail - o) {
      /* Cut at the last whole name, and say how many there are. */
      snprintf(buf + o, len - o, "%s... (%u in all)", i ? ", " : "", n);
      return;
    }
    o += k;
  }
}

/* What the admin needs to see when a client asks for an export we do not
 * have: what it asked for (from the network: quoted) and what we have. */
static void
log_unknown_export(const struct conn *c, const struct export_request *req)
{
  char name[128], names[384];

  export_names(names, sizeof names);
  log_limited(&unknown_export_log, "%s: unknown export %s%s%s; the exports are: %s",
              c->peer, log_quote(name, sizeof name, req->name, strlen(req->name)),
              req->id[0] ? " as client " : "", req->id, names);
}

/* Parses the export name and finds the export and the client identity.
 * Returns the export, or NULL with *err set to an NBD_REP_ERR_*. */
static const struct export *
find_export(struct conn *c, const char *name, size_t len, struct export_request *req,
            uint32_t *err, const char **why)
{
  const struct export *exp;

  if (export_request_parse(name, len, req, why) < 0) {
    *err = NBD_REP_ERR_INVALID;
    return NULL;
  }
  if (!req->name[0]) {
    unsigned n;
    const struct export *all = config_exports(&n);
    if (n == 1)
      snprintf(req->name, sizeof req->name, "%s", all[0].name);
  }
  exp = config_find_export(req->name);
  if (!exp) {
    *err = NBD_REP_ERR_UNKNOWN;
    *why = "no such export (NBD_OPT_LIST shows the exports)";
    return NULL;
  }
  if (!req->id[0]) {
    /* Default identity: the client's address. */
    snprintf(req->id, sizeof req->id, "%s", c->peer);
  }
  if (__atomic_load_n(&exp->draining, __ATOMIC_RELAXED)) {
    *why = "the export is being drained: try again later";
    *err = NBD_REP_ERR_SHUTDOWN;
    return NULL;
  }
  *why = acl_check(exp, c->peer, req->id);
  if (*why) {
    *err = NBD_REP_ERR_POLICY;
    return NULL;
  }
  return exp;
}

static uint32_t
name_hash(const char *s, size_t len)
{
  uint32_t h = 2166136261u; /* FNV-1a */

  for (size_t i = 0; i < len; i++)
    h = (h ^ (unsigned char)s[i]) * 16777619u;
  return h | 1; /* never 0, which means none */
}

/* find_export(), and the log line of a client turned away. */
static const struct export *
lookup_export(struct conn *c, const char *name, size_t len, struct export_request *req,
              uint32_t *err, const char **why)
{
  const struct export *exp = find_export(c, name, len, req, err, why);
  char quoted[128];
  uint32_t h;

  if (exp)
    return exp;
  /* libnbd asks twice, with NBD_OPT_SET_META_CONTEXT and then
   * NBD_OPT_GO: one line says it. */
  h = name_hash(name, len);
  if (h == c->turned_away)
    return NULL;
  c->turned_away = h;
  if (*err == NBD_REP_ERR_UNKNOWN)
    log_unknown_export(c, req);
  else if (*err == NBD_REP_ERR_INVALID)
    acl_log_bad_request(c->peer, log_quote(quoted, sizeof quoted, name, len), *why);
  else
    acl_log_refusal(c->peer, req->name, req->id, *why);
  return NULL;
}

static void
send_info_export(struct conn *c, uint64_t size, uint16_t flags)
{
  unsigned char buf[12];
  uint16_t t = htobe16(NBD_INFO_EXPORT), f = htobe16(flags);
  uint64_t s = htobe64(size);

  memcpy(buf, &t, 2);
  memcpy(buf + 2, &s, 8);
  memcpy(buf + 10, &f, 2);
  opt_reply(c, NBD_REP_INFO, buf, sizeof buf);
}

static void
send_info_string(struct conn *c, uint16_t type, const char *s)
{
  size_t n = strlen(s);
  char *buf = malloc(2 + n);
  uint16_t t = htobe16(type);

  if (!buf) {
    conn_close(c, "out of memory");
    return;
  }
  memcpy(buf, &t, 2);
  memcpy(buf + 2, s, n);
  opt_reply(c, NBD_REP_INFO, buf, 2 + n);
  free(buf);
}

static void
send_info_block_size(struct conn *c)
{
  uint16_t t = htobe16(NBD_INFO_BLOCK_SIZE);
  uint32_t v[3] = { htobe32(1), htobe32(OVL_BLOCK_SIZE), htobe32(c->max_request) };
  unsigned char buf[14];

  memcpy(buf, &t, 2);
  memcpy(buf + 2, v, 12);
  opt_reply(c, NBD_REP_INFO, buf, sizeof buf);
}

/* What NBD_INFO_DESCRIPTION says: for a shared read-only export the
 * identity of the base version the client reads (once NBD_OPT_GO gave
 * it one), for the agent to tell that its base changed; otherwise the
 * export's description. */
static const char *
description(const struct conn *c)
{
  if (c->exp->policy == POLICY_SHARED_READONLY && c->ovl)
    return c->ovl->base->identity;
  return c->exp->description;
}

/* The successful reply to NBD_OPT_INFO and NBD_OPT_GO. */
static void
send_info(struct conn *c, uint64_t size)
{
  const char *desc;

  send_info_export(c, size, export_flags(c));
  if (c->want_name)
    send_info_string(c, NBD_INFO_NAME, c->exp->name);
  if (c->want_desc && (desc = description(c))[0])
    send_info_string(c, NBD_INFO_DESCRIPTION, desc);
  send_info_block_size(c);
  opt_reply(c, NBD_REP_ACK, NULL, 0);
}

/* NBD_OPT_GO and NBD_OPT_EXPORT_NAME: the client's overlay, now or once
 * the attach thread opened it (then attach_collect() goes on). */
static void
start_attach(struct conn *c, const struct export_request *req)
{
  const char *why = NULL;
  int r;

  /* Input waits (kept) until the overlay is there. */
  conn_enter(c, CONN_ATTACHING);
  c->attach_since = time(NULL);
  r = attach_begin(c, c->exp, req, &why);
  if (r <= 0)
    handshake_attached(c, req->id, r, why);
}

/* NBD_OPT_GO goes on in attach_begin() (then handshake_attached). */
static void
opt_info_go(struct conn *c, const struct client_option *o)
{
  const char *d = o->data, *why = NULL;
  uint32_t namelen, err;
  uint16_t nreq;
  struct export_request req;
  const struct export *exp;
  uint64_t size;

  if (o->len < 6) {
    opt_error(c, NBD_REP_ERR_INVALID, "option too short");
    return;
  }
  memcpy(&namelen, d, 4);
  namelen = be32toh(namelen);
  if (namelen > o->len - 6) {
    opt_error(c, NBD_REP_ERR_INVALID, "export name length exceeds the option");
    return;
  }
  memcpy(&nreq, d + 4 + namelen, 2);
  nreq = be16toh(nreq);
  if (o->len != 6 + namelen + 2u * nreq) {
    opt_error(c, NBD_REP_ERR_INVALID,
              "option length does not match its information requests");
    return;
  }
  c->want_name = c->want_desc = c->want_block_size = false;
  for (unsigned i = 0; i < nreq; i++) {
    uint16_t t;
    memcpy(&t, d + 6 + namelen + 2 * i, 2);
    t = be16toh(t);
    c->want_name |= t == NBD_INFO_NAME;
    c->want_desc |= t == NBD_INFO_DESCRIPTION;
    c->want_block_size |= t == NBD_INFO_BLOCK_SIZE;
  }
  exp = lookup_export(c, d + 4, namelen, &req, &err, &why);
  if (!exp) {
    opt_error(c, err, why);
    return;
  }
  c->exp = exp;
  if (c->opt == NBD_OPT_GO) {
    start_attach(c, &req);
    return;
  }
  if (overlay_peek_size(exp, req.id, &size) < 0)
    opt_error(c, NBD_REP_ERR_PLATFORM,
              "the export's image cannot be opened (see the server log)");
  else
    send_info(c, size); /* c->exp was for export_flags() only */
  c->exp = NULL;
  return;
}

static void
opt_export_name(struct conn *c, const struct client_option *o)
{
  const char *why = NULL;
  uint32_t err;
  struct export_request req;
  const struct export *exp;

  exp = lookup_export(c, o->data, o->len, &req, &err, &why);
  if (!exp) {
    /* NBD_OPT_EXPORT_NAME has no error reply: the spec says disconnect.
     * (lookup_export logged why.) */
    conn_close(c, NULL);
    return;
  }
  c->exp = exp;
  start_attach(c, &req);
}

static void
send_export_name_reply(struct conn *c)
{
  unsigned char buf[sizeof(struct nbd_export_name_reply) + 124];
  struct nbd_export_name_reply *r = (void *)buf;

  memset(buf, 0, sizeof buf);
  r->exportsize = htobe64(c->size);
  r->eflags = htobe16(c->eflags);
  /* The 124 zero bytes go as data: the header part of a message is
   * only sizeof m->hdr (40) bytes. */
  queue_copy(c, buf, sizeof *r, buf + sizeof *r,
             c->no_zeroes ? 0 : sizeof buf - sizeof *r);
}

/* The error reply for an overlay that could not be had (-errno r): a
 * refusal of the server's policy (an ID bound elsewhere, a limit on
 * overlays) is NBD_REP_ERR_POLICY, a fault on the server's side
 * NBD_REP_ERR_PLATFORM; either way the message says which. */
static uint32_t
attach_error(int r)
{
  switch (r) {
    case -EPERM:
    case -EACCES:
    case -EUSERS:
    case -EDQUOT:
    case -EBUSY:   /* served by another server (overlay-lock.c) */
    case -EUCLEAN: /* damaged: not served until the admin sees to it */
      return NBD_REP_ERR_POLICY;
    case -ESHUTDOWN: return NBD_REP_ERR_SHUTDOWN;
    default: return NBD_REP_ERR_PLATFORM;
  }
}

/* The end of NBD_OPT_GO and NBD_OPT_EXPORT_NAME, once attach.c has the
 * overlay. */
void
handshake_attached(struct conn *c, const char *id, int r, const char *why)
{
  char busy[sizeof c->exp->name + CLIENT_ID_MAX + 48];

  /* Given up on meanwhile (attach-timeout): the overlay goes with c. */
  if (c->stage != CONN_ATTACHING)
    return;
  if (r == -EBUSY) {
    /* Its lock is held (overlay-lock.c): the client's agent goes to
     * another server, which the message names as the reason. */
    snprintf(busy, sizeof busy, "overlay %s/%s is served by another server", c->exp->name,
             id);
    why = busy;
  }
  if (r < 0) {
    acl_log_refusal(c->peer, c->exp->name, id, why);
    c->exp = NULL;
    if (c->opt == NBD_OPT_EXPORT_NAME) {
      conn_close(c, NULL); /* no error reply there; attach.c logged why */
      return;
    }
    opt_error(c, attach_error(r), why);
    conn_enter(c, CONN_OPTIONS);
    return;
  }
  c->size = c->ovl->file.info.size;
  c->eflags = export_flags(c);
  log_info("%s: export %s, overlay %s (%s)", c->peer, c->exp->name,
           strchr(c->ovl->key, '/') + 1, policy_name(c->exp->policy));
  if (c->opt == NBD_OPT_EXPORT_NAME)
    send_export_name_reply(c);
  else
    send_info(c, c->size);
  conn_enter(c, CONN_TRANSMISSION);
}

void
handshake_attach_timeout(struct conn *c)
{
  char why[160];

  snprintf(why, sizeof why,
           "the server could not open this client's overlay "
           "within %u s (attach-timeout): try again later",
           config.attach_timeout);
  acl_log_refusal(c->peer, NULL, NULL, why);
  /* The job's result, when it comes, is for nobody (handshake_attached
   * looks at the stage). */
  attach_cancel(c);
  if (c->opt == NBD_OPT_EXPORT_NAME) {
    conn_close(c, NULL);
    return;
  }
  opt_error(c, NBD_REP_ERR_PLATFORM, why);
  conn_enter(c, CONN_ABORTING);
}

static void
opt_list(struct conn *c, const struct client_option *o)
{
  unsigned count;
  const struct export *all = config_exports(&count);

  if (o->len != 0) {
    opt_error(c, NBD_REP_ERR_INVALID, "NBD_OPT_LIST takes no data");
    return;
  }
  for (unsigned i = 0; i < count; i++) {
    const struct export *e = &all[i];
    size_t n = strlen(e->name), dn = strlen(e->description);
    char buf[4 + sizeof e->name + sizeof e->description];
    uint32_t len = htobe32(n);

    if (acl_check_address(e, c->peer))
      continue; /* not for this client's eyes */
    memcpy(buf, &len, 4);
    memcpy(buf + 4, e->name, n);
    memcpy(buf + 4 + n, e->description, dn);
    opt_reply(c, NBD_REP_SERVER, buf, 4 + n + dn);
  }
  opt_reply(c, NBD_REP_ACK, NULL, 0);
}

/* NBD_OPT_LIST_META_CONTEXT and NBD_OPT_SET_META_CONTEXT. */
static void
opt_meta_context(struct conn *c, const struct client_option *o)
{
  const char *d = o->data, *why;
  uint32_t namelen, nq, pos, err;
  struct export_request req;
  bool set = c->opt == NBD_OPT_SET_META_CONTEXT, match = false;

  if (set && !c->structured) {
    opt_error(c, NBD_REP_ERR_INVALID,
              "NBD_OPT_SET_META_CONTEXT needs structured replies first");
    return;
  }
  if (o->len < 8) {
    opt_error(c, NBD_REP_ERR_INVALID, "option too short");
    return;
  }
  memcpy(&namelen, d, 4);
  namelen = be32toh(namelen);
  if (namelen > o->len - 8) {
    opt_error(c, NBD_REP_ERR_INVALID, "export name length exceeds the option");
    return;
  }
  if (!lookup_export(c, d + 4, namelen, &req, &err, &why)) {
    opt_error(c, err, why);
    return;
  }
  memcpy(&nq, d + 4 + namelen, 4);
  nq = be32toh(nq);
  pos = 8 + namelen;
  /* Validate the whole option before replying anything. */
  for (uint32_t i = 0, p = pos; i < nq; i++) {
    uint32_t ql;
    if (o->len - p < 4) {
      opt_error(c, NBD_REP_ERR_INVALID, "query list runs past the option");
      return;
    }
    memcpy(&ql, d + p, 4);
    ql = be32toh(ql);
    if (ql > o->len - p - 4) {
      opt_error(c, NBD_REP_ERR_INVALID, "query length runs past the option");
      return;
    }
    p += 4 + ql;
    if (i + 1 == nq && p != o->len) {
      opt_error(c, NBD_REP_ERR_INVALID, "trailing bytes after the queries");
      return;
    }
  }
  if (nq == 0 && pos != o->len) {
    opt_error(c, NBD_REP_ERR_INVALID, "trailing bytes after the queries");
    return;
  }
  if (nq == 0 && !set)
    match = true; /* LIST with no query lists everything */
  for (uint32_t i = 0; i < nq; i++) {
    uint32_t ql;
    memcpy(&ql, d + pos, 4);
    ql = be32toh(ql);
    if ((ql == strlen(META_ALLOC_NAME) && !memcmp(d + pos + 4, META_ALLOC_NAME, ql)) ||
        (!set && ql == 5 && !memcmp(d + pos + 4, "base:", 5)))
      match = true;
    pos += 4 + ql;
  }
  if (set)
    c->meta_alloc = match;
  if (match) {
    char buf[4 + sizeof META_ALLOC_NAME];
    uint32_t id = htobe32(META_ALLOC_ID);
    memcpy(buf, &id, 4);
    memcpy(buf + 4, META_ALLOC_NAME, strlen(META_ALLOC_NAME));
    opt_reply(c, NBD_REP_META_CONTEXT, buf, 4 + strlen(META_ALLOC_NAME));
  }
  opt_reply(c, NBD_REP_ACK, NULL, 0);
}

void
handshake_too_big(struct conn *c, uint32_t code)
{
  c->opt = code;
  opt_error(c, NBD_REP_ERR_TOO_BIG, "option data too large");
}

void
handshake_flags(struct conn *c, uint32_t flags)
{
  if (flags & ~(NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES)) {
    conn_close(c, "client sent unknown handshake flags");
    return;
  }
  c->no_zeroes = flags & NBD_FLAG_C_NO_ZEROES;
  conn_enter(c, CONN_OPTIONS);
}

/* Answers a whole option; the stage says what comes next (more options
 * unless the option said otherwise). */
/* A connection over a limit (limits.c): every option but NBD_OPT_ABORT
 * is refused with the reason, until the client gives up. */
static void
refuse_option(struct conn *c)
{
  if (c->opt == NBD_OPT_ABORT) {
    opt_reply(c, NBD_REP_ACK, NULL, 0);
    conn_enter(c, CONN_ABORTING);
  } else if (c->opt == NBD_OPT_EXPORT_NAME) {
    conn_close(c, NULL); /* no error reply there; logged at accept */
  } else {
    opt_error(c, NBD_REP_ERR_POLICY, c->refusal);
  }
}

void
handshake_option(struct conn *c, const struct client_option *o)
{
  c->opt = o->code;
  if (c->refusal) {
    refuse_option(c);
    return;
  }
  switch (o->code) {
    case NBD_OPT_EXPORT_NAME:
      opt_export_name(c, o);
      return; /* attaching, transmission or closed */
    case NBD_OPT_ABORT:
      opt_reply(c, NBD_REP_ACK, NULL, 0);
      conn_enter(c, CONN_ABORTING);
      return;
    case NBD_OPT_LIST: opt_list(c, o); return;
    case NBD_OPT_STRUCTURED_REPLY:
      if (o->len != 0) {
        opt_error(c, NBD_REP_ERR_INVALID, "NBD_OPT_STRUCTURED_REPLY takes no data");
        return;
      }
      c->structured = true;
      opt_reply(c, NBD_REP_ACK, NULL, 0);
      return;
    case NBD_OPT_INFO:
    case NBD_OPT_GO:
      opt_info_go(c, o); /* attaching: handshake_attached() goes on */
      return;
    case NBD_OPT_LIST_META_CONTEXT:
    case NBD_OPT_SET_META_CONTEXT: opt_meta_context(c, o); return;
    default: opt_error(c, NBD_REP_ERR_UNSUP, "option not supported by nbdsrv"); return;
  }
}
