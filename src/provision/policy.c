/* On-demand admission policy: name shape, allow patterns, ask URL and DNS pre-check with one
 * answer cache, rate limits. */
#include "acmedge/policy.h"
#include "acmedge/dnscheck.h"
#include "acmedge/hostname.h"
#include "acmedge/httpc.h"
#include "acmedge/log.h"
#include "acmedge/strmap.h"

#include <arpa/inet.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define POLICY_NAME_MAX 253
#define ASK_TIMEOUT_DEFAULT_MS 5000u
#define ASK_TTL_ALLOW_MS (60u * 1000u)
#define ASK_TTL_DENY_MS (5u * 60u * 1000u)
/* A broken ask service must not deny names for minutes, but must not be hammered either. */
#define ASK_TTL_FAIL_MS (30u * 1000u)
#define ASK_CACHE_MAX 10000u
/* Bounds the requests a flood of random allowed names can push at the ask service. */
#define ASK_INFLIGHT_MAX 256u
#define ASK_BODY_MAX (64u * 1024u)
#define WINDOW_3H_MS (3ull * 3600ull * 1000ull)
/* Larger per_3h values are treated as no cap: the ring would only cost memory. */
#define PER3H_RING_MAX (1u << 20)

/* ---------------------------------------------------------------------------------------- */
/* Normalization */

static int all_digits(const char *s, size_t n) {
  if (n == 0)
    return 0;
  for (size_t i = 0; i < n; i++)
    if (s[i] < '0' || s[i] > '9')
      return 0;
  return 1;
}

static int fail(const char **reason, const char *why) {
  if (reason)
    *reason = why;
  return AE_EINVAL;
}

int ae_policy_normalize(const char *in, char *out, size_t outlen, const char **reason) {
  if (reason)
    *reason = NULL;
  if (!in || !out || outlen == 0)
    return fail(reason, "invalid_name");
  out[0] = '\0';
  size_t n = strnlen(in, POLICY_NAME_MAX + 16);
  if (n == 0)
    return fail(reason, "invalid_name");
  if (in[0] == '[')
    return fail(reason, "ip_literal");

  /* Strip ":port" (Host headers). Two or more colons can only be an unbracketed IPv6 literal. */
  const char *colon = memchr(in, ':', n);
  if (colon) {
    if (memchr(colon + 1, ':', n - (size_t)(colon - in) - 1))
      return fail(reason, "ip_literal");
    const char *port = colon + 1;
    size_t plen = n - (size_t)(port - in);
    if (plen == 0 || plen > 5 || !all_digits(port, plen) || atoi(port) > 65535)
      return fail(reason, "invalid_name");
    n = (size_t)(colon - in);
    if (n == 0)
      return fail(reason, "invalid_name");
  }
  if (in[n - 1] == '.')
    n--;
  if (n > POLICY_NAME_MAX)
    return fail(reason, "too_long");
  if (n == 0)
    return fail(reason, "invalid_name");

  char buf[POLICY_NAME_MAX + 1];
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)in[i];
    if (c == '*')
      return fail(reason, "wildcard");
    if (c >= 'A' && c <= 'Z')
      c = (unsigned char)(c - 'A' + 'a');
    buf[i] = (char)c;
  }
  buf[n] = '\0';

  /* Checked before label rules so "1.2.3.4" and "::1"-like values get the precise reason. */
  struct in_addr a4;
  struct in6_addr a6;
  if (inet_pton(AF_INET, buf, &a4) == 1 || inet_pton(AF_INET6, buf, &a6) == 1)
    return fail(reason, "ip_literal");

  ae_hostname_info info;
  if (ae_hostname_shape(buf, n, &info) != 0)
    return fail(reason, info.label_too_long ? "too_long" : "invalid_name");
  if (info.labels < 2)
    return fail(reason, "invalid_name");
  /* Short numeric forms such as "127.1" are addresses to resolvers and browsers. */
  if (info.all_numeric)
    return fail(reason, "ip_literal");
  /* A top-level label is never all digits (RFC 3696 §2). */
  if (info.last_numeric)
    return fail(reason, "invalid_name");
  if (n + 1 > outlen)
    return fail(reason, "too_long");
  memcpy(out, buf, n + 1);
  return 0;
}

/* ---------------------------------------------------------------------------------------- */
/* State */

typedef struct cache_entry {
  struct cache_entry *prev, *next; /* insertion order: head is the oldest */
  char *name;                      /* own copy of the map key */
  int allowed;
  const char *reason;
  uint64_t expires_ms;
} cache_entry;

typedef struct ask_flight ask_flight;

struct ae_policy_req {
  ae_policy_req *prev, *next;
  ask_flight *flight;
  ae_policy_cb cb;
  void *ud;
};

struct ask_flight {
  ae_policy *p;
  char name[POLICY_NAME_MAX + 1];
  ae_httpc_req *hreq;
  ae_dnscheck_req *dreq;  /* DNS pre-check, after ask (if any) allowed */
  ae_policy_req *waiters; /* doubly linked, head */
  int in_map;             /* still findable for new checks */
};

struct ae_policy {
  uv_loop_t *loop;
  ae_config *cfg;
  ae_httpc *httpc;
  ae_dnscheck *dns;         /* created when on_demand.dns_check is first enabled */
  int closing;

  ae_strmap cache;          /* name -> cache_entry */
  cache_entry *cache_head, *cache_tail;
  ae_strmap flights;        /* name -> ask_flight */
  size_t nflights;

  /* token bucket */
  double tokens;
  uint64_t bucket_ms;
  int bucket_started;

  /* rolling 3 h cap: ring of the start times of the most recent orders */
  uint64_t *ring;
  size_t ring_cap;          /* == rate.per_3h when the cap is active, else 0 */
  size_t ring_len;
  size_t ring_head;         /* index of the oldest */

  void (*close_cb)(void *ud);
  void *close_ud;
};

/* ---------------------------------------------------------------------------------------- */
/* Ask cache */

static void cache_unlink(ae_policy *p, cache_entry *e) {
  if (e->prev)
    e->prev->next = e->next;
  else
    p->cache_head = e->next;
  if (e->next)
    e->next->prev = e->prev;
  else
    p->cache_tail = e->prev;
}

static void cache_remove(ae_policy *p, cache_entry *e) {
  cache_unlink(p, e);
  ae_strmap_del(&p->cache, e->name);
  free(e->name);
  free(e);
}

static void cache_clear(ae_policy *p) {
  while (p->cache_head)
    cache_remove(p, p->cache_head);
  ae_strmap_clear(&p->cache);
  ae_strmap_init(&p->cache);
}

static cache_entry *cache_get(ae_policy *p, const char *name, uint64_t now) {
  cache_entry *e = ae_strmap_get(&p->cache, name);
  if (e && e->expires_ms <= now) {
    cache_remove(p, e);
    return NULL;
  }
  return e;
}

static void cache_put(ae_policy *p, const char *name, int allowed, const char *reason, uint64_t ttl) {
  cache_entry *old = ae_strmap_get(&p->cache, name);
  if (old)
    cache_remove(p, old);
  while (p->cache.count >= ASK_CACHE_MAX && p->cache_head)
    cache_remove(p, p->cache_head);
  cache_entry *e = ae_calloc(1, sizeof(*e));
  e->name = ae_strdup(name);
  e->allowed = allowed;
  e->reason = reason;
  e->expires_ms = ae_now_ms() + ttl;
  e->prev = p->cache_tail;
  if (p->cache_tail)
    p->cache_tail->next = e;
  else
    p->cache_head = e;
  p->cache_tail = e;
  ae_strmap_put(&p->cache, name, e);
}

/* ---------------------------------------------------------------------------------------- */
/* Rate limiting */

static int bucket_active(const ae_config *cfg) {
  return cfg->on_demand.rate_per_minute > 0 && cfg->on_demand.rate_burst > 0;
}

static void ring_configure(ae_policy *p, unsigned per_3h) {
  size_t cap = (per_3h > 0 && per_3h <= PER3H_RING_MAX) ? per_3h : 0;
  if (cap == p->ring_cap)
    return;
  uint64_t *ring = cap ? ae_calloc(cap, sizeof(*ring)) : NULL;
  size_t keep = p->ring_len < cap ? p->ring_len : cap;
  /* Keep the newest entries: they decide when the window frees up. */
  for (size_t i = 0; i < keep; i++)
    ring[i] = p->ring[(p->ring_head + p->ring_len - keep + i) % p->ring_cap];
  free(p->ring);
  p->ring = ring;
  p->ring_cap = cap;
  p->ring_len = keep;
  p->ring_head = 0;
}

static void bucket_refill(ae_policy *p, uint64_t now) {
  const ae_config *cfg = p->cfg;
  if (!p->bucket_started) {
    p->bucket_started = 1;
    p->bucket_ms = now;
    return;
  }
  if (now > p->bucket_ms) {
    p->tokens += (double)(now - p->bucket_ms) * cfg->on_demand.rate_per_minute / 60000.0;
    p->bucket_ms = now;
  }
  if (p->tokens > (double)cfg->on_demand.rate_burst)
    p->tokens = (double)cfg->on_demand.rate_burst;
}

int ae_policy_rate_take(ae_policy *p, uint64_t now_ms, uint64_t *wait_ms) {
  if (!p)
    return AE_EINVAL;
  const ae_config *cfg = p->cfg;
  uint64_t wait = 0;

  while (p->ring_len > 0 && p->ring[p->ring_head] + WINDOW_3H_MS <= now_ms) {
    p->ring_head = (p->ring_head + 1) % p->ring_cap;
    p->ring_len--;
  }
  if (p->ring_cap > 0 && p->ring_len >= p->ring_cap)
    wait = p->ring[p->ring_head] + WINDOW_3H_MS - now_ms;

  int bucket = bucket_active(cfg);
  if (bucket) {
    bucket_refill(p, now_ms);
    if (p->tokens < 1.0) {
      double ms = (1.0 - p->tokens) * 60000.0 / cfg->on_demand.rate_per_minute;
      uint64_t bw = (uint64_t)ceil(ms);
      if (bw == 0)
        bw = 1;
      if (bw > wait)
        wait = bw;
    }
  }
  if (wait > 0) {
    if (wait_ms)
      *wait_ms = wait;
    return AE_ELIMIT;
  }
  if (bucket)
    p->tokens -= 1.0;
  if (p->ring_cap > 0) {
    p->ring[(p->ring_head + p->ring_len) % p->ring_cap] = now_ms;
    p->ring_len++;
  }
  if (wait_ms)
    *wait_ms = 0;
  return 0;
}

/* ---------------------------------------------------------------------------------------- */
/* Lifecycle */

static void apply_config(ae_policy *p, const ae_config *cfg) {
  ae_config *old = p->cfg;
  int ask_changed = !old || (old->on_demand.ask == NULL) != (cfg->on_demand.ask == NULL) ||
                    (old->on_demand.ask && strcmp(old->on_demand.ask, cfg->on_demand.ask) != 0);
  p->cfg = ae_config_ref((ae_config *)cfg);
  if (old) {
    /* Cached DNS answers were judged against the old expect list and resolver. */
    if (ask_changed || old->dns_check.enabled || cfg->dns_check.enabled)
      cache_clear(p);
    if (p->dns && cfg->dns_check.enabled) {
      ae_err err = {0};
      if (ae_dnscheck_set_config(p->dns, cfg, &err) != 0)
        AE_ERROR("policy", "reload: %s", err.msg);
    }
    ae_config_free(old);
  }
  ring_configure(p, cfg->on_demand.rate_per_3h);
  if (p->tokens > (double)cfg->on_demand.rate_burst)
    p->tokens = (double)cfg->on_demand.rate_burst;
}

int ae_policy_new(uv_loop_t *loop, const ae_config *cfg, ae_policy **out, ae_err *err) {
  if (!loop || !cfg || !out)
    return ae_err_set(err, AE_EINVAL, "policy: missing loop or config");
  ae_policy *p = ae_calloc(1, sizeof(*p));
  p->loop = loop;
  ae_strmap_init(&p->cache);
  ae_strmap_init(&p->flights);
  int r = ae_httpc_new(loop, &p->httpc, err);
  if (r < 0) {
    free(p);
    return r;
  }
  apply_config(p, cfg);
  p->tokens = (double)cfg->on_demand.rate_burst;
  *out = p;
  return 0;
}

void ae_policy_set_config(ae_policy *p, const ae_config *cfg) {
  if (!p || !cfg || cfg == p->cfg)
    return;
  apply_config(p, cfg);
}

int ae_policy_allowed(ae_policy *p, const char *name) {
  if (!p)
    return 0;
  return ae_policy_allowed_cfg(p->cfg, name);
}

int ae_policy_allowed_cfg(const ae_config *cfg, const char *name) {
  if (!cfg || !name)
    return 0;
  if (cfg->on_demand.nallow == 0)
    return cfg->on_demand.ask != NULL;
  for (size_t i = 0; i < cfg->on_demand.nallow; i++)
    if (ae_host_match(cfg->on_demand.allow[i], name))
      return 1;
  return 0;
}

/* ---------------------------------------------------------------------------------------- */
/* Ask */

static void waiter_unlink(ae_policy_req *r) {
  ask_flight *f = r->flight;
  if (r->prev)
    r->prev->next = r->next;
  else
    f->waiters = r->next;
  if (r->next)
    r->next->prev = r->prev;
  r->prev = r->next = NULL;
}

static void flight_forget(ae_policy *p, ask_flight *f) {
  if (f->in_map) {
    ae_strmap_del(&p->flights, f->name);
    f->in_map = 0;
    p->nflights--;
  }
}

static void log_decision(const char *name, int allowed, const char *reason, const char *how) {
  if (allowed)
    AE_DEBUG("policy", "%s allowed (%s)", name, how);
  else
    AE_INFO("policy", "%s denied: %s (%s)", name, reason, how);
}

/* Caches the final answer and completes every waiter of the flight, then frees it. */
static void flight_finish(ask_flight *f, int allowed, const char *reason, uint64_t ttl, const char *how) {
  ae_policy *p = f->p;
  flight_forget(p, f);
  if (!p->closing)
    cache_put(p, f->name, allowed, reason, ttl);
  log_decision(f->name, allowed, reason, how);

  /* Each waiter is unlinked before its callback, so callbacks may cancel other waiters. */
  while (f->waiters && !p->closing) {
    ae_policy_req *r = f->waiters;
    waiter_unlink(r);
    ae_policy_cb cb = r->cb;
    void *cud = r->ud;
    free(r);
    cb(cud, allowed, reason);
  }
  while (f->waiters) {
    ae_policy_req *r = f->waiters;
    waiter_unlink(r);
    free(r);
  }
  free(f);
}

static void dns_checked(void *ud, ae_dns_verdict v, unsigned ttl_s, const char *detail) {
  ask_flight *f = ud;
  f->dreq = NULL;
  char how[192];
  snprintf(how, sizeof(how), "dns_check: %s", detail ? detail : "");
  if (v == AE_DNS_FAILED)
    AE_WARN("policy", "DNS check for %s failed, denying (fail closed): %s", f->name, detail ? detail : "");
  if (v == AE_DNS_MATCH)
    flight_finish(f, 1, NULL, (uint64_t)ttl_s * 1000u, how);
  else
    flight_finish(f, 0, v == AE_DNS_MISMATCH ? "dns_mismatch" : "dns_failed", (uint64_t)ttl_s * 1000u, how);
}

/* Starts the DNS stage of a flight: 0, or <0 (logged) when it could not start. */
static int dns_stage(ask_flight *f) {
  ae_policy *p = f->p;
  ae_err err = {0};
  int r = 0;
  if (!p->dns)
    r = ae_dnscheck_new(p->loop, p->cfg, &p->dns, &err);
  if (r == 0)
    r = ae_dnscheck_start(p->dns, f->name, dns_checked, f, &f->dreq);
  if (r != 0)
    AE_WARN("policy", "DNS check for %s not started, denying (fail closed): %s", f->name,
            err.msg[0] ? err.msg : ae_strerror(r));
  return r;
}

static void ask_done(void *ud, const ae_http_response *resp) {
  ask_flight *f = ud;
  ae_policy *p = f->p;
  f->hreq = NULL;

  int allowed = 0;
  const char *reason;
  uint64_t ttl;
  if (resp->code == 0 && resp->status == 200) {
    allowed = 1;
    reason = NULL;
    ttl = ASK_TTL_ALLOW_MS;
  } else if (resp->code == 0 && resp->status > 0) {
    reason = "ask_denied";
    ttl = ASK_TTL_DENY_MS;
  } else {
    reason = "ask_failed";
    ttl = ASK_TTL_FAIL_MS;
    AE_WARN("policy", "ask request for %s failed: %s", f->name,
            resp->error[0] ? resp->error : ae_strerror(resp->code));
  }
  if (allowed && !p->closing && p->cfg->dns_check.enabled) {
    if (dns_stage(f) == 0)
      return;
    allowed = 0;
    reason = "dns_failed";
    ttl = ASK_TTL_FAIL_MS;
  }
  char how[64];
  snprintf(how, sizeof(how), "ask answered %ld", resp->status);
  flight_finish(f, allowed, reason, ttl, how);
}

/* A flight without ask: straight to the DNS pre-check. */
static int dns_flight_start(ae_policy *p, const char *name, ask_flight **out) {
  if (p->nflights >= ASK_INFLIGHT_MAX)
    return AE_ELIMIT;
  ask_flight *f = ae_calloc(1, sizeof(*f));
  f->p = p;
  snprintf(f->name, sizeof(f->name), "%s", name);
  f->in_map = 1;
  p->nflights++;
  ae_strmap_put(&p->flights, name, f);
  *out = f;
  return 0;
}

static int ask_start(ae_policy *p, const char *name, ask_flight **out) {
  const ae_config *cfg = p->cfg;
  if (p->nflights >= ASK_INFLIGHT_MAX)
    return AE_ELIMIT;
  size_t ulen = strlen(cfg->on_demand.ask) + strlen(name) + 16;
  char *url = ae_malloc(ulen);
  snprintf(url, ulen, "%s%cdomain=%s", cfg->on_demand.ask, strchr(cfg->on_demand.ask, '?') ? '&' : '?',
           name);
  ask_flight *f = ae_calloc(1, sizeof(*f));
  f->p = p;
  snprintf(f->name, sizeof(f->name), "%s", name);
  ae_http_request req = {
    .method = "GET",
    .url = url,
    .timeout_ms = cfg->on_demand.ask_timeout_ms ? cfg->on_demand.ask_timeout_ms : ASK_TIMEOUT_DEFAULT_MS,
    .max_body = ASK_BODY_MAX,
  };
  f->in_map = 1;
  p->nflights++;
  ae_strmap_put(&p->flights, name, f);
  ae_err err = {0};
  int r = ae_httpc_request(p->httpc, &req, ask_done, f, &f->hreq, &err);
  free(url);
  if (r < 0) {
    AE_WARN("policy", "ask request for %s not started: %s", name, err.msg);
    flight_forget(p, f);
    free(f);
    return r;
  }
  *out = f;
  return 0;
}

int ae_policy_check(ae_policy *p, const char *name, ae_policy_cb cb, void *ud, ae_policy_req **out,
                    const char **reason) {
  if (out)
    *out = NULL;
  if (reason)
    *reason = NULL;
  if (!p || !name || !cb || strlen(name) > POLICY_NAME_MAX)
    return AE_EINVAL;
  if (p->closing)
    return AE_ECANCELED;
  const ae_config *cfg = p->cfg;

  if (!ae_policy_allowed(p, name)) {
    if (reason)
      *reason = "not_allowed";
    log_decision(name, 0, "not_allowed", "allow list");
    return 0;
  }
  if (!cfg->on_demand.ask && !cfg->dns_check.enabled) {
    log_decision(name, 1, NULL, "allow list");
    return 1;
  }
  cache_entry *e = cache_get(p, name, ae_now_ms());
  if (e) {
    if (!e->allowed && reason)
      *reason = e->reason;
    log_decision(name, e->allowed, e->reason, "cached answer");
    return e->allowed;
  }
  ask_flight *f = ae_strmap_get(&p->flights, name);
  if (!f) {
    int r = cfg->on_demand.ask ? ask_start(p, name, &f) : dns_flight_start(p, name, &f);
    if (r == AE_ELIMIT) {
      const char *why = cfg->on_demand.ask ? "ask_failed" : "dns_failed";
      if (reason)
        *reason = why;
      log_decision(name, 0, why, "too many checks in flight");
      return 0;
    }
    if (r < 0)
      return r;
    if (!cfg->on_demand.ask && dns_stage(f) != 0) {
      flight_forget(p, f);
      free(f);
      if (reason)
        *reason = "dns_failed";
      log_decision(name, 0, "dns_failed", "dns_check not started");
      return 0;
    }
  }
  ae_policy_req *req = ae_calloc(1, sizeof(*req));
  req->flight = f;
  req->cb = cb;
  req->ud = ud;
  req->next = f->waiters;
  if (f->waiters)
    f->waiters->prev = req;
  f->waiters = req;
  if (out)
    *out = req;
  return AE_EAGAIN;
}

void ae_policy_cancel(ae_policy_req *r) {
  if (!r)
    return;
  waiter_unlink(r);
  free(r);
}

static void cancel_flight(void *ud, const char *key, void *value) {
  (void)ud;
  (void)key;
  ask_flight *f = value;
  while (f->waiters)
    ae_policy_cancel(f->waiters);
  if (f->hreq)
    ae_httpc_cancel(f->hreq);
  if (f->dreq)
    ae_dnscheck_cancel(f->dreq);
  free(f);
}

static void httpc_closed(void *ud) {
  ae_policy *p = ud;
  if (p->close_cb)
    p->close_cb(p->close_ud);
}

static void dns_closed(void *ud) {
  ae_policy *p = ud;
  ae_httpc_close(p->httpc, httpc_closed, p);
}

void ae_policy_close(ae_policy *p, void (*cb)(void *ud), void *ud) {
  if (!p || p->closing)
    return;
  p->closing = 1;
  p->close_cb = cb;
  p->close_ud = ud;
  ae_strmap_foreach(&p->flights, cancel_flight, NULL);
  ae_strmap_clear(&p->flights);
  ae_strmap_init(&p->flights);
  p->nflights = 0;
  if (p->dns)
    ae_dnscheck_close(p->dns, dns_closed, p);
  else
    ae_httpc_close(p->httpc, httpc_closed, p);
}

void ae_policy_free(ae_policy *p) {
  if (!p)
    return;
  cache_clear(p);
  ae_strmap_clear(&p->cache);
  ae_strmap_clear(&p->flights);
  ae_httpc_free(p->httpc);
  ae_dnscheck_free(p->dns);
  free(p->ring);
  ae_config_free(p->cfg);
  free(p);
}
