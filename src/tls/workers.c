/* Worker threads. Each owns a loop, a TLS front and a proxy; everything they share is either
 * immutable (config snapshots), refcounted atomically (certificates) or locked (cert store,
 * challenge map). Cross-thread messages go through a mutex-protected queue plus uv_async. */
#include "acmedge/workers.h"

#include <stdlib.h>
#include <string.h>

#include "acmedge/log.h"
#include "acmedge/policy.h"
#include "acmedge/proxy.h"
#include "acmedge/tls_front.h"

#define SUB "workers"

typedef enum { CMD_WAKE, CMD_WAKE_ALPN, CMD_CONFIG, CMD_STOP, CMD_MISS, CMD_INVALID, CMD_ALPN_MISS, CMD_LOADED } cmd_type;

typedef struct cmd {
  struct cmd *next;
  cmd_type type;
  int allowed;          /* CMD_MISS */
  unsigned drain_ms;    /* CMD_STOP */
  ae_config *cfg;       /* CMD_CONFIG: one reference */
  ae_cert *cert;        /* CMD_LOADED: one reference */
  char *cert_id;        /* CMD_LOADED: malloc'd, may be NULL */
  char name[256];
} cmd;

/* A mailbox: any thread posts, the owning loop drains. */
typedef struct mailbox {
  uv_mutex_t lock;
  uv_async_t async;
  cmd *head, *tail;
} mailbox;

typedef struct worker {
  struct ae_workers *ws;
  unsigned index;
  uv_thread_t thread;
  uv_loop_t loop;
  mailbox mb;
  ae_config *cfg;
  ae_tls_front *front;
  ae_proxy *proxy;
  int started;
  ae_err start_err;
  uv_sem_t ready;       /* posted once the listener is bound (or failed) */
} worker;

struct ae_workers {
  uv_loop_t *control;
  mailbox mb;           /* worker -> control: misses */
  ae_workers_hooks hooks;
  ae_certstore *certs;
  ae_challenge *challenges;
  worker *w;
  unsigned n;
  int stopped;
};

static void mb_post(mailbox *mb, cmd *c) {
  uv_mutex_lock(&mb->lock);
  c->next = NULL;
  if (mb->tail)
    mb->tail->next = c;
  else
    mb->head = c;
  mb->tail = c;
  uv_mutex_unlock(&mb->lock);
  uv_async_send(&mb->async);
}

static cmd *mb_take_all(mailbox *mb) {
  uv_mutex_lock(&mb->lock);
  cmd *c = mb->head;
  mb->head = mb->tail = NULL;
  uv_mutex_unlock(&mb->lock);
  return c;
}

static void free_cmds(cmd *c) {
  while (c) {
    cmd *n = c->next;
    ae_config_free(c->cfg);
    ae_cert_unref(c->cert);
    free(c->cert_id);
    free(c);
    c = n;
  }
}

/* ---- worker side ---- */

static ae_miss_action w_on_invalid_name(void *ud, const char *shown) {
  worker *w = ud;
  const ae_config *cfg = w->cfg;
  /* Only on-demand issuance reports denials (as for names outside allow). */
  if (cfg->on_demand.enabled) {
    cmd *c = ae_calloc(1, sizeof(*c));
    c->type = CMD_INVALID;
    snprintf(c->name, sizeof(c->name), "%s", shown);
    mb_post(&w->ws->mb, c);
  }
  return cfg->on_demand.deny_alert ? AE_MISS_ALERT : AE_MISS_DEFAULT;
}

static ae_miss_action w_on_miss(void *ud, const char *raw) {
  worker *w = ud;
  const ae_config *cfg = w->cfg;
  ae_miss_action deny = cfg->on_demand.deny_alert ? AE_MISS_ALERT : AE_MISS_DEFAULT;
  cmd *c = ae_calloc(1, sizeof(*c));
  c->type = CMD_MISS;
  const char *why = NULL;
  if (ae_policy_normalize(raw, c->name, sizeof(c->name), &why) != 0) {
    /* A DNS name the policy still refuses ("localhost"): reported like a hostile SNI. */
    free(c);
    return w_on_invalid_name(ud, raw);
  }
  /* Unless storage is known to lack the name, the control loop reads it from there first
   * (lazy start), whatever on-demand issuance would decide. */
  if (!ae_certstore_known_absent(w->ws->certs, c->name)) {
    c->allowed = ae_policy_allowed_cfg(cfg, c->name);
    mb_post(&w->ws->mb, c);
    return AE_MISS_HOLD;
  }
  if (!cfg->on_demand.enabled) {
    free(c);
    return AE_MISS_DEFAULT;
  }
  c->allowed = ae_policy_allowed_cfg(cfg, c->name) || ae_config_internal_name(cfg, c->name);
  mb_post(&w->ws->mb, c);
  if (!c->allowed)
    return deny;
  if (cfg->on_demand.fallback_internal && !ae_config_internal_name(cfg, c->name))
    return AE_MISS_FALLBACK;
  return cfg->on_demand.first_wait ? AE_MISS_HOLD : AE_MISS_DEFAULT;
}

/* A stored name read from the kernel's caches on this thread: served at once, or, when the hook
 * asks for the install first, held (NULL: the miss path holds it, and its CMD_MISS, queued behind
 * this CMD_LOADED, wakes it once installed). The control loop owns the provisioning state and
 * installs the certificate either way, so it is read once. */
static ae_cert *w_stored_cert(void *ud, const char *raw) {
  worker *w = ud;
  ae_workers *ws = w->ws;
  char name[256];
  const char *why = NULL;
  if (!ws->hooks.stored_cert || !ws->hooks.on_loaded || ae_policy_normalize(raw, name, sizeof(name), &why) != 0 ||
      ae_certstore_known_absent(ws->certs, name))
    return NULL;
  ae_cert_ids ids;
  int install_first = 0;
  ae_cert *cert = ws->hooks.stored_cert(ws->hooks.ud, name, &ids, &install_first);
  if (!cert)
    return NULL;
  cmd *c = ae_calloc(1, sizeof(*c));
  c->type = CMD_LOADED;
  snprintf(c->name, sizeof(c->name), "%s", name);
  c->cert = ae_cert_ref(cert);
  c->cert_id = ids.cert_id[0] ? ae_strdup(ids.cert_id) : NULL;
  mb_post(&ws->mb, c);
  if (install_first) {
    ae_cert_unref(cert);
    return NULL;
  }
  return cert;
}

static ae_cert *w_fallback_cert(void *ud, const char *name) {
  worker *w = ud;
  return w->ws->hooks.fallback_cert ? w->ws->hooks.fallback_cert(w->ws->hooks.ud, name) : NULL;
}

static ae_cert *w_alpn_cert(void *ud, const char *name) {
  worker *w = ud;
  return ae_challenge_alpn_get(w->ws->challenges, name);
}

/* The look-up runs on the control loop (where the storage watcher lives); its outcome comes back
 * as CMD_WAKE_ALPN, or the hold times out. */
static int w_alpn_miss(void *ud, const char *name) {
  worker *w = ud;
  if (!w->ws->hooks.alpn_miss)
    return 0;
  cmd *c = ae_calloc(1, sizeof(*c));
  c->type = CMD_ALPN_MISS;
  snprintf(c->name, sizeof(c->name), "%s", name);
  mb_post(&w->ws->mb, c);
  return 1;
}

static void w_established(void *ud, ae_transport *t) {
  worker *w = ud;
  ae_proxy_attach(w->proxy, t, NULL, 0);
}

static void w_closed_all(void *ud) {
  worker *w = ud;
  uv_close((uv_handle_t *)&w->mb.async, NULL);
}

static void w_front_closed(void *ud) {
  worker *w = ud;
  ae_proxy_close(w->proxy, w_closed_all, w);
}

static void w_on_async(uv_async_t *a) {
  worker *w = a->data;
  cmd *c = mb_take_all(&w->mb), *it;
  for (it = c; it; it = it->next) {
    switch (it->type) {
    case CMD_WAKE:
      if (w->front)
        ae_tls_front_wake(w->front, it->name);
      break;
    case CMD_WAKE_ALPN:
      if (w->front)
        ae_tls_front_wake_alpn(w->front, it->name);
      break;
    case CMD_CONFIG:
      ae_config_free(w->cfg);
      w->cfg = ae_config_ref(it->cfg);
      if (w->front)
        ae_tls_front_set_config(w->front, w->cfg);
      ae_proxy_set_config(w->proxy, w->cfg);
      break;
    case CMD_STOP:
      if (w->proxy)
        ae_proxy_drain(w->proxy);
      if (w->front)
        ae_tls_front_close(w->front, it->drain_ms, w_front_closed, w);
      else if (w->proxy)
        ae_proxy_close(w->proxy, w_closed_all, w);
      else
        w_closed_all(w);
      break;
    case CMD_MISS:
    case CMD_INVALID:
    case CMD_ALPN_MISS:
    case CMD_LOADED:
      break;
    }
  }
  free_cmds(c);
}

static void worker_main(void *arg) {
  worker *w = arg;
  ae_tls_front_hooks fh = {.ud = w, .on_miss = w_on_miss, .alpn_challenge_cert = w_alpn_cert, .alpn_miss = w_alpn_miss, .on_established = w_established,
                           .fallback_cert = w_fallback_cert, .on_invalid_name = w_on_invalid_name,
                           .stored_cert = w_stored_cert};
  if (ae_proxy_new(&w->loop, w->cfg, &w->proxy, &w->start_err) != 0 ||
      ae_tls_front_new(&w->loop, w->cfg, w->ws->certs, &fh, &w->front, &w->start_err) != 0) {
    uv_sem_post(&w->ready);
    /* The caller stops us: handles must still be closed on this loop. */
    uv_run(&w->loop, UV_RUN_DEFAULT);
    return;
  }
  w->started = 1;
  uv_sem_post(&w->ready);
  uv_run(&w->loop, UV_RUN_DEFAULT);
}

/* ---- control side ---- */

static void c_on_async(uv_async_t *a) {
  ae_workers *ws = a->data;
  cmd *c = mb_take_all(&ws->mb), *it;
  for (it = c; it; it = it->next) {
    if (it->type == CMD_MISS && ws->hooks.on_miss && !ws->stopped)
      ws->hooks.on_miss(ws->hooks.ud, it->name, it->allowed);
    if (it->type == CMD_INVALID && ws->hooks.on_invalid_name && !ws->stopped)
      ws->hooks.on_invalid_name(ws->hooks.ud, it->name);
    /* No look-up started: the held handshake is refused now, not at the end of its hold. */
    if (it->type == CMD_ALPN_MISS && ws->hooks.alpn_miss && !ws->stopped && !ws->hooks.alpn_miss(ws->hooks.ud, it->name))
      ae_workers_wake_alpn(ws, it->name);
    if (it->type == CMD_LOADED && ws->hooks.on_loaded && !ws->stopped)
      ws->hooks.on_loaded(ws->hooks.ud, it->name, it->cert, it->cert_id);
  }
  free_cmds(c);
}

static void post_all(ae_workers *ws, cmd_type type, const char *name, const ae_config *cfg, unsigned drain_ms) {
  for (unsigned i = 0; i < ws->n; i++) {
    cmd *c = ae_calloc(1, sizeof(*c));
    c->type = type;
    c->drain_ms = drain_ms;
    if (name)
      snprintf(c->name, sizeof(c->name), "%s", name);
    if (cfg)
      c->cfg = ae_config_ref((ae_config *)cfg);
    mb_post(&ws->w[i].mb, c);
  }
}

int ae_workers_start(uv_loop_t *control, unsigned n, const ae_config *cfg, ae_certstore *cs, ae_challenge *ch,
                     const ae_workers_hooks *hooks, ae_workers **out, ae_err *err) {
  ae_workers *ws = ae_calloc(1, sizeof(*ws));
  ws->control = control;
  ws->hooks = *hooks;
  ws->certs = cs;
  ws->challenges = ch;
  ws->n = n;
  ws->w = ae_calloc(n, sizeof(*ws->w));
  uv_mutex_init(&ws->mb.lock);
  uv_async_init(control, &ws->mb.async, c_on_async);
  ws->mb.async.data = ws;
  *out = ws;
  for (unsigned i = 0; i < n; i++) {
    worker *w = &ws->w[i];
    w->ws = ws;
    w->index = i + 1;
    w->cfg = ae_config_ref((ae_config *)cfg);
    uv_loop_init(&w->loop);
    uv_mutex_init(&w->mb.lock);
    uv_async_init(&w->loop, &w->mb.async, w_on_async);
    w->mb.async.data = w;
    uv_sem_init(&w->ready, 0);
    if (uv_thread_create(&w->thread, worker_main, w) != 0) {
      ws->n = i;
      uv_sem_destroy(&w->ready);
      uv_close((uv_handle_t *)&w->mb.async, NULL);
      uv_run(&w->loop, UV_RUN_DEFAULT);
      uv_loop_close(&w->loop);
      uv_mutex_destroy(&w->mb.lock);
      ae_config_free(w->cfg);
      return ae_err_set(err, AE_ERR, "cannot start worker thread %u", i + 1);
    }
    uv_sem_wait(&w->ready);
    if (!w->started) {
      ws->n = i + 1; /* this one runs until stopped; later ones were never created */
      return ae_err_set(err, w->start_err.code ? w->start_err.code : AE_ERR, "worker %u: %s", i + 1, w->start_err.msg);
    }
  }
  AE_INFO(SUB, "%u worker thread(s) serving TLS beside the main loop", n);
  return 0;
}

void ae_workers_wake(ae_workers *ws, const char *name) {
  if (ws && !ws->stopped)
    post_all(ws, CMD_WAKE, name, NULL, 0);
}

void ae_workers_wake_alpn(ae_workers *ws, const char *name) {
  if (ws && !ws->stopped)
    post_all(ws, CMD_WAKE_ALPN, name, NULL, 0);
}

void ae_workers_set_config(ae_workers *ws, const ae_config *cfg) {
  if (ws && !ws->stopped)
    post_all(ws, CMD_CONFIG, NULL, cfg, 0);
}

void ae_workers_stop(ae_workers *ws, unsigned drain_ms) {
  if (!ws || ws->stopped)
    return;
  ws->stopped = 1;
  post_all(ws, CMD_STOP, NULL, NULL, drain_ms);
  uv_close((uv_handle_t *)&ws->mb.async, NULL);
}

void ae_workers_join_free(ae_workers *ws) {
  if (!ws)
    return;
  for (unsigned i = 0; i < ws->n; i++) {
    worker *w = &ws->w[i];
    uv_thread_join(&w->thread);
    ae_tls_front_free(w->front);
    ae_proxy_free(w->proxy);
    free_cmds(mb_take_all(&w->mb));
    int r = uv_loop_close(&w->loop);
    if (r != 0)
      AE_WARN(SUB, "worker %u: loop closed with open handles (%s)", w->index, uv_strerror(r));
    uv_mutex_destroy(&w->mb.lock);
    uv_sem_destroy(&w->ready);
    ae_config_free(w->cfg);
  }
  free_cmds(mb_take_all(&ws->mb));
  uv_mutex_destroy(&ws->mb.lock);
  free(ws->w);
  free(ws);
}

unsigned ae_workers_count(const ae_workers *ws) { return ws ? ws->n : 0; }
