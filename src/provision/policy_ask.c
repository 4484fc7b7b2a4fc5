/* The ask URL and the DNS pre-check of the admission policy: one flight per name in flight shared by
 * its waiters, and one cache of the answers (allow, deny, failure) with their TTLs. */
#include "acmedge/policy.h"
#include "policy_internal.h"
#include "acmedge/log.h"

#include <stdlib.h>
#include <string.h>

#define ASK_TIMEOUT_DEFAULT_MS 5000u
#define ASK_TTL_ALLOW_MS (60u * 1000u)
#define ASK_TTL_DENY_MS (5u * 60u * 1000u)
/* A broken ask service must not deny names for minutes, but must not be hammered either. */
#define ASK_TTL_FAIL_MS (30u * 1000u)
/* Bounds the requests a flood of random allowed names can push at the ask service. */
#define ASK_INFLIGHT_MAX 256u
#define ASK_BODY_MAX (64u * 1024u)

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

void ae_policy_cache_clear(ae_policy *p) {
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
  while (p->cache.count >= p->cfg->name_cache_max && p->cache_head)
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

void ae_policy_cancel_flight(void *ud, const char *key, void *value) {
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

void ae_policy_counts(const ae_policy *p, size_t *cached, size_t *in_flight) {
  *cached = p->cache.count;
  *in_flight = p->nflights;
}
