/* Cluster watcher (include/acmedge/cluster.h) on hiredis' async API and its libuv adapter.
 *
 * hiredis 0.14 has no reconnect and no async timeouts, and a PING on a subscribed connection is
 * never answered. So one 100 ms tick drives everything: it reconnects broken connections after a
 * jittered backoff (100 ms doubling to 5 s), drops a connection whose oldest command waited more
 * than 2 s, PUBLISHes a heartbeat every second on the command connection and drops the subscriber
 * when its own heartbeat has not come back for 3 s, and compares the generation counter every
 * reconcile period. Connections are only ever freed from the tick (never inside a hiredis
 * callback); a freed context has data NULL, which every callback checks first. */
#include "acmedge/cluster.h"

#include <adapters/libuv.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "acmedge/log.h"
#include "chal_gate.h"
#include "storage_redis.h"

#define SUB "storage"
#define TICK_MS 100
#define CMD_TIMEOUT_MS 2000
#define HB_MS 1000
#define HB_DEAD_MS 3000
#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000
#define FIFO_MAX 64
#define CHG_BATCH 500

typedef struct conn {
  struct ae_cluster *c;
  int sub;
  redisAsyncContext *ac;
  int ready;
  int broken;
  uint64_t since;      /* connect start */
  unsigned attempt;
  uint64_t next_try;
  uint64_t sent[FIFO_MAX];
  unsigned head, n;
  char why[200];
} conn;

struct ae_cluster {
  uv_loop_t *loop;
  rs_storage *st;
  char ca[256];
  char chan[200], genkey[200], chgkey[400];
  ae_cluster_hooks h;
  conn cmd, sub;
  uv_timer_t tick;
  unsigned reconcile_ms;
  uint64_t started, last_hb_tx, last_hb_rx, hb_seq, last_reconcile;
  int reconcile_now, reconcile_inflight;
  long long gen, target;
  int gen_known;
  int reported; /* -1 unknown, 0 down, 1 up */
  int closing;
  void (*close_cb)(void *);
  void *close_ud;
  /* challenge answers missed on pub/sub and read back from Redis (chal_gate.h) */
  ae_chal_gate gate;
  /* metrics */
  uint64_t reconnects, messages, reconciled, lat_count;
  double lat_sum;
};

static void start_connect(conn *k);

static void push_sent(conn *k) {
  if (k->n < FIFO_MAX) {
    k->sent[(k->head + k->n) % FIFO_MAX] = ae_now_ms();
    k->n++;
  }
}

static void pop_sent(conn *k) {
  if (k->n == 0)
    return;
  uint64_t t = k->sent[k->head];
  k->head = (k->head + 1) % FIFO_MAX;
  k->n--;
  k->c->lat_sum += (double)(ae_now_ms() - t) / 1000.0;
  k->c->lat_count++;
}

static void mark_broken(conn *k, const char *why) {
  if (!k->broken)
    snprintf(k->why, sizeof(k->why), "%s", why);
  k->broken = 1;
  k->ready = 0;
}

/* Sends one command; a full FIFO means Redis is not keeping up: the command is skipped. */
static int send_cmd(conn *k, redisCallbackFn *fn, const char *fmt, ...) {
  if (!k->ac || k->broken || k->n >= FIFO_MAX)
    return AE_EAGAIN;
  va_list ap;
  va_start(ap, fmt);
  int r = redisvAsyncCommand(k->ac, fn, k, fmt, ap);
  va_end(ap);
  if (r != REDIS_OK) {
    mark_broken(k, "cannot queue a command");
    return AE_EIO;
  }
  push_sent(k);
  return 0;
}

static conn *live(redisAsyncContext *ac, void *priv) { return ac && ac->data ? priv : NULL; }

static int reply_ok(conn *k, redisReply *r, const char *what) {
  pop_sent(k);
  if (!r) {
    mark_broken(k, "connection lost");
    return 0;
  }
  if (r->type == REDIS_REPLY_ERROR) {
    char why[200];
    snprintf(why, sizeof(why), "%s refused: %.150s", what, r->str);
    AE_ERROR(SUB, "redis %s: %s", k->c->st->address, why);
    mark_broken(k, why);
    return 0;
  }
  return 1;
}

static void on_auth(redisAsyncContext *ac, void *reply, void *priv) {
  conn *k = live(ac, priv);
  if (k)
    reply_ok(k, reply, "AUTH (storage.redis.password_file)");
}

static void on_select(redisAsyncContext *ac, void *reply, void *priv) {
  conn *k = live(ac, priv);
  if (!k || !reply_ok(k, reply, "SELECT"))
    return;
  if (!k->sub) {
    k->ready = 1;
    k->attempt = 0;
  }
}

static void changed(ae_cluster *c, const char *domain) {
  if (c->h.changed && !c->closing)
    c->h.changed(c->h.ud, domain);
}

static void on_chg(redisAsyncContext *ac, void *reply, void *priv) {
  conn *k = live(ac, priv);
  if (!k)
    return;
  ae_cluster *c = k->c;
  c->reconcile_inflight = 0;
  redisReply *r = reply;
  if (!reply_ok(k, r, "ZRANGEBYSCORE"))
    return;
  long long max = c->gen;
  size_t pairs = r->type == REDIS_REPLY_ARRAY ? r->elements / 2 : 0;
  for (size_t i = 0; i < pairs; i++) {
    redisReply *m = r->element[2 * i], *s = r->element[2 * i + 1];
    if (m->type != REDIS_REPLY_STRING || s->type != REDIS_REPLY_STRING)
      continue;
    long long g = strtoll(s->str, NULL, 10);
    if (g > max)
      max = g;
    c->reconciled++;
    AE_DEBUG(SUB, "reconcile: %s changed (generation %lld)", m->str, g);
    changed(c, m->str);
  }
  c->gen = pairs < CHG_BATCH && c->target > max ? c->target : max;
  if (pairs == CHG_BATCH)
    c->reconcile_now = 1;
}

static void on_gen(redisAsyncContext *ac, void *reply, void *priv) {
  conn *k = live(ac, priv);
  if (!k)
    return;
  ae_cluster *c = k->c;
  redisReply *r = reply;
  if (!reply_ok(k, r, "GET generation")) {
    c->reconcile_inflight = 0;
    return;
  }
  long long g = 0;
  if (r->type == REDIS_REPLY_STRING) {
    char *end = NULL;
    g = strtoll(r->str, &end, 10);
    if (!end || *end || g < 0) {
      AE_ERROR(SUB, "redis key %s holds '%.40s', not a generation number; not reconciling", c->genkey, r->str);
      c->reconcile_inflight = 0;
      return;
    }
  }
  if (!c->gen_known || g < c->gen) {
    /* First contact (lazy loading covers the rest), or the data set was replaced. */
    c->gen_known = 1;
    c->gen = g;
    c->reconcile_inflight = 0;
    return;
  }
  if (g == c->gen) {
    c->reconcile_inflight = 0;
    return;
  }
  c->target = g;
  AE_DEBUG(SUB, "generation %lld, ours %lld: reconciling", g, c->gen);
  if (send_cmd(k, on_chg, "ZRANGEBYSCORE %s (%lld +inf WITHSCORES LIMIT 0 %d", c->chgkey, c->gen, CHG_BATCH) != 0)
    c->reconcile_inflight = 0;
}

/* "cert <ca> <domain> <ver> <gen> <by>", "del <ca> <domain> 0 <gen>", "hb <instance> <seq>". */
static void on_message(ae_cluster *c, const char *msg, size_t len) {
  char buf[800];
  if (len >= sizeof(buf))
    return;
  memcpy(buf, msg, len);
  buf[len] = '\0';
  char *save = NULL;
  char *type = strtok_r(buf, " ", &save), *a = strtok_r(NULL, " ", &save), *b = strtok_r(NULL, " ", &save);
  if (!type || !a)
    return;
  if (strcmp(type, "chal") == 0) {
    /* "chal <http|alpn> <domain> <token> <keyauth>": mirrored so this instance answers the CA. */
    char *tok = strtok_r(NULL, " ", &save), *ka = strtok_r(NULL, " ", &save);
    if (b && tok && ka && c->h.challenge)
      c->h.challenge(c->h.ud, strcmp(a, "alpn") == 0, b, tok, ka);
    return;
  }
  if (strcmp(type, "hb") == 0) {
    if (strcmp(a, c->st->instance) == 0)
      c->last_hb_rx = ae_now_ms();
    return;
  }
  if ((strcmp(type, "cert") != 0 && strcmp(type, "del") != 0) || !b || strcmp(a, c->ca) != 0)
    return;
  strtok_r(NULL, " ", &save); /* version */
  char *gen = strtok_r(NULL, " ", &save), *by = strtok_r(NULL, " ", &save);
  long long g = gen ? strtoll(gen, NULL, 10) : 0;
  if (c->gen_known && g == c->gen + 1)
    c->gen = g; /* in sequence: nothing was missed */
  c->messages++;
  if (by && strcmp(by, c->st->instance) == 0)
    return; /* our own commit: already in memory */
  if (type[0] == 'd' && c->h.deleted && !c->closing)
    c->h.deleted(c->h.ud, b);
  else
    changed(c, b);
}

static void on_sub(redisAsyncContext *ac, void *reply, void *priv) {
  conn *k = live(ac, priv);
  if (!k)
    return;
  redisReply *r = reply;
  if (!r || r->type != REDIS_REPLY_ARRAY || r->elements < 3 || r->element[0]->type != REDIS_REPLY_STRING) {
    if (!r || r->type == REDIS_REPLY_ERROR)
      reply_ok(k, r, "SUBSCRIBE");
    return;
  }
  const char *kind = r->element[0]->str;
  if (strcmp(kind, "subscribe") == 0) {
    pop_sent(k);
    k->ready = 1;
    k->attempt = 0;
    k->c->last_hb_rx = ae_now_ms();
    k->c->reconcile_now = 1; /* whatever was published while we were away is lost */
    AE_DEBUG(SUB, "subscribed to %s", k->c->chan);
  } else if (strcmp(kind, "message") == 0 && r->element[2]->type == REDIS_REPLY_STRING) {
    on_message(k->c, r->element[2]->str, r->element[2]->len);
  }
}

static void on_hb(redisAsyncContext *ac, void *reply, void *priv) {
  conn *k = live(ac, priv);
  if (k)
    reply_ok(k, reply, "PUBLISH");
}

static void on_connect(const redisAsyncContext *ac, int status) {
  conn *k = ac->data;
  if (!k)
    return;
  if (status != REDIS_OK) {
    /* hiredis frees the context after this callback. */
    mark_broken(k, ac->errstr[0] ? ac->errstr : "cannot connect");
    k->ac = NULL;
  }
}

static void on_disconnect(const redisAsyncContext *ac, int status) {
  (void)status;
  conn *k = ac->data;
  if (!k)
    return;
  mark_broken(k, ac->errstr[0] ? ac->errstr : "connection closed");
  k->ac = NULL; /* freed by hiredis after this callback */
}

static void schedule_retry(conn *k) {
  unsigned base = BACKOFF_MIN_MS << (k->attempt < 6 ? k->attempt : 6);
  if (base > BACKOFF_MAX_MS)
    base = BACKOFF_MAX_MS;
  unsigned jitter = (unsigned)((double)(base / 2) * ((double)rand() / ((double)RAND_MAX + 1.0)));
  k->next_try = ae_now_ms() + base / 2 + jitter;
  k->attempt++;
}

static void teardown(conn *k) {
  if (k->ac) {
    redisAsyncContext *ac = k->ac;
    k->ac = NULL;
    ac->data = NULL;
    redisAsyncFree(ac);
  }
  k->ready = 0;
  k->n = 0;
  k->head = 0;
}

static void start_connect(conn *k) {
  rs_storage *s = k->c->st;
  k->broken = 0;
  k->why[0] = '\0';
  k->n = 0;
  k->head = 0;
  k->since = ae_now_ms();
  redisAsyncContext *ac = s->unix_path ? redisAsyncConnectUnix(s->unix_path) : redisAsyncConnect(s->host, s->port);
  if (!ac || ac->err) {
    mark_broken(k, ac && ac->errstr[0] ? ac->errstr : "cannot connect");
    if (ac)
      redisAsyncFree(ac);
    return;
  }
  ac->data = k;
  if (redisLibuvAttach(ac, k->c->loop) != REDIS_OK) {
    ac->data = NULL;
    redisAsyncFree(ac);
    mark_broken(k, "cannot attach to the event loop");
    return;
  }
  redisAsyncSetConnectCallback(ac, on_connect);
  redisAsyncSetDisconnectCallback(ac, on_disconnect);
  k->ac = ac;
  k->c->reconnects++;
  /* Pipelined before the connection completes; hiredis sends them once it does. */
  if (s->password)
    send_cmd(k, on_auth, "AUTH %s", s->password);
  send_cmd(k, on_select, "SELECT %u", s->db);
  if (k->sub)
    send_cmd(k, on_sub, "SUBSCRIBE %s", k->c->chan);
}

static void report(ae_cluster *c) {
  int up = c->cmd.ready && c->sub.ready;
  if (up == c->reported)
    return;
  if (up) {
    if (c->reported == 0) {
      AE_INFO(SUB, "redis %s reachable again", c->st->address);
      if (c->h.state)
        c->h.state(c->h.ud, 1, "reconnected");
    }
    c->reported = 1;
    return;
  }
  /* Grace at start-up: the first connection takes a moment. */
  if (c->reported == -1 && ae_now_ms() - c->started < 1500)
    return;
  const char *why = c->cmd.why[0] ? c->cmd.why : c->sub.why[0] ? c->sub.why : "not connected";
  AE_ERROR(SUB, "redis %s unreachable (%s): serving cached certificates, no new orders", c->st->address, why);
  c->reported = 0;
  if (c->h.state)
    c->h.state(c->h.ud, 0, why);
}

static void tick_conn(conn *k, uint64_t now) {
  if (k->ac && !k->broken) {
    if (!k->ready && now - k->since > CMD_TIMEOUT_MS)
      mark_broken(k, "connect timed out");
    else if (k->n && now - k->sent[k->head] > CMD_TIMEOUT_MS)
      mark_broken(k, "command timed out");
  }
  if (k->broken) {
    teardown(k);
    k->broken = 0;
    schedule_retry(k);
    return;
  }
  if (!k->ac && now >= k->next_try)
    start_connect(k);
}

static void on_tick(uv_timer_t *t) {
  ae_cluster *c = t->data;
  uint64_t now = ae_now_ms();
  /* A subscriber that no longer receives our own heartbeats is dead even if TCP says otherwise. */
  if (c->sub.ready && c->cmd.ready && now - c->last_hb_rx > HB_DEAD_MS && now - c->cmd.since > HB_DEAD_MS)
    mark_broken(&c->sub, "subscriber heard no heartbeat");
  tick_conn(&c->cmd, now);
  tick_conn(&c->sub, now);
  if (c->cmd.ready && now - c->last_hb_tx >= HB_MS) {
    c->last_hb_tx = now;
    char msg[160];
    snprintf(msg, sizeof(msg), "hb %s %llu", c->st->instance, (unsigned long long)++c->hb_seq);
    send_cmd(&c->cmd, on_hb, "PUBLISH %s %s", c->chan, msg);
  }
  if (c->cmd.ready && !c->reconcile_inflight && (c->reconcile_now || now - c->last_reconcile >= c->reconcile_ms)) {
    c->reconcile_now = 0;
    c->last_reconcile = now;
    if (send_cmd(&c->cmd, on_gen, "GET %s", c->genkey) == 0)
      c->reconcile_inflight = 1;
  }
  report(c);
}

typedef struct chal_fetch {
  ae_cluster *c;
  uint64_t key;
  int alpn;       /* 0: http-01 token, 1: tls-alpn-01 domain */
  char name[256]; /* the token or the domain */
} chal_fetch;

/* Also called with a NULL reply (and a NULL ac->data) when the connection is torn down: the
 * held request or handshake is then answered at once instead of at the end of its hold. */
static void on_chal(redisAsyncContext *ac, void *reply, void *priv) {
  chal_fetch *f = priv;
  ae_cluster *c = f->c;
  conn *k = ac && ac->data ? &c->cmd : NULL;
  redisReply *r = reply;
  int found = 0, absent = 0;
  if (k && reply_ok(k, r, "GET challenge")) {
    if (r->type == REDIS_REPLY_STRING && r->len < 512) {
      found = 1;
      if (f->alpn)
        AE_INFO(SUB, "%s: tls-alpn-01 answer read from redis (its announcement was missed)", f->name);
      else
        AE_INFO(SUB, "challenge %.8s... read from redis (its announcement was missed)", f->name);
      if (c->h.challenge && !c->closing)
        c->h.challenge(c->h.ud, f->alpn, f->alpn ? f->name : "-", f->alpn ? "-" : f->name, r->str);
    } else {
      absent = 1;
    }
  }
  ae_chal_gate_done(&c->gate, f->key, absent, ae_now_ms());
  if (!found && c->h.challenge_absent && !c->closing)
    c->h.challenge_absent(c->h.ud, f->alpn, f->name);
  free(f);
}

/* Starts (or joins) the look-up of chal:<http|alpn>:<name>; see ae_cluster_fetch_challenge. */
static int fetch(ae_cluster *c, int alpn, const char *name) {
  if (!c || c->closing || !c->cmd.ready || strlen(name) >= sizeof(((chal_fetch *)0)->name))
    return AE_EAGAIN;
  const char *kind = alpn ? "alpn" : "http";
  uint64_t key = ae_chal_gate_key(kind, name), now = ae_now_ms();
  int g = ae_chal_gate_admit(&c->gate, key, now);
  if (g == AE_EAGAIN)
    return 0; /* joined: that look-up's answer wakes this asker too */
  if (g != 0)
    return g;
  chal_fetch *f = ae_calloc(1, sizeof(*f));
  f->c = c;
  f->key = key;
  f->alpn = alpn;
  snprintf(f->name, sizeof(f->name), "%s", name);
  char rkey[400];
  rs_name(c->st, rkey, sizeof(rkey), "chal:%s:%s", kind, name);
  conn *k = &c->cmd;
  if (k->n >= FIFO_MAX || redisAsyncCommand(k->ac, on_chal, f, "GET %s", rkey) != REDIS_OK) {
    ae_chal_gate_done(&c->gate, key, 0, now);
    free(f);
    return AE_EAGAIN;
  }
  push_sent(k);
  return 0;
}

int ae_cluster_fetch_challenge(ae_cluster *c, const char *token) { return fetch(c, 0, token); }

int ae_cluster_fetch_alpn(ae_cluster *c, const char *domain) { return fetch(c, 1, domain); }

int ae_cluster_new(uv_loop_t *loop, ae_storage *st, const char *ca_host, unsigned reconcile_ms,
                   const ae_cluster_hooks *hooks, ae_cluster **out, ae_err *err) {
  if (!rs_is(st))
    return ae_err_set(err, AE_EINVAL, "the cluster watcher needs the redis storage backend");
  ae_cluster *c = ae_calloc(1, sizeof(*c));
  c->loop = loop;
  c->st = (rs_storage *)st;
  snprintf(c->ca, sizeof(c->ca), "%s", ca_host);
  rs_name(c->st, c->chan, sizeof(c->chan), "ev");
  rs_name(c->st, c->genkey, sizeof(c->genkey), "gen");
  rs_name(c->st, c->chgkey, sizeof(c->chgkey), "chg:%s", ca_host);
  c->h = *hooks;
  c->reconcile_ms = reconcile_ms ? reconcile_ms : 2000;
  c->reported = -1;
  c->started = ae_now_ms();
  c->cmd.c = c->sub.c = c;
  c->sub.sub = 1;
  uv_timer_init(loop, &c->tick);
  c->tick.data = c;
  start_connect(&c->cmd);
  start_connect(&c->sub);
  uv_timer_start(&c->tick, on_tick, TICK_MS, TICK_MS);
  *out = c;
  return 0;
}

int ae_cluster_up(const ae_cluster *c) { return c && c->cmd.ready && c->sub.ready; }

const char *ae_cluster_instance(const ae_cluster *c) { return c->st->instance; }

char *ae_cluster_metrics(const ae_cluster *c) {
  char *out = NULL;
  if (asprintf(&out,
               "# HELP acmedge_storage_up 1 while the shared storage (Redis) answers and the subscription is active.\n"
               "# TYPE acmedge_storage_up gauge\nacmedge_storage_up %d\n"
               "# HELP acmedge_storage_connects_total Connection attempts to Redis (command and subscriber).\n"
               "# TYPE acmedge_storage_connects_total counter\nacmedge_storage_connects_total %llu\n"
               "# HELP acmedge_storage_messages_total Change messages received from other instances and ours.\n"
               "# TYPE acmedge_storage_messages_total counter\nacmedge_storage_messages_total %llu\n"
               "# HELP acmedge_storage_reconciled_total Changes found by the generation check (missed messages).\n"
               "# TYPE acmedge_storage_reconciled_total counter\nacmedge_storage_reconciled_total %llu\n"
               "# HELP acmedge_storage_command_seconds Latency of Redis commands sent by the event loop.\n"
               "# TYPE acmedge_storage_command_seconds summary\n"
               "acmedge_storage_command_seconds_sum %.6f\nacmedge_storage_command_seconds_count %llu\n",
               ae_cluster_up(c), (unsigned long long)c->reconnects, (unsigned long long)c->messages,
               (unsigned long long)c->reconciled, c->lat_sum, (unsigned long long)c->lat_count) < 0)
    return NULL;
  return out;
}

static void tick_closed(uv_handle_t *h) {
  ae_cluster *c = h->data;
  if (c->close_cb)
    c->close_cb(c->close_ud);
}

void ae_cluster_close(ae_cluster *c, void (*cb)(void *ud), void *ud) {
  c->closing = 1;
  c->close_cb = cb;
  c->close_ud = ud;
  teardown(&c->cmd);
  teardown(&c->sub);
  uv_timer_stop(&c->tick);
  uv_close((uv_handle_t *)&c->tick, tick_closed);
}

void ae_cluster_free(ae_cluster *c) { free(c); }
