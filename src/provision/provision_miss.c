/* Demand for a name: TLS handshakes (SNI), port-80 requests and admin requests that miss the
 * certificate cache, the allow/ask decision that admits a name to the job queue, and rate-limited
 * domain_denied events. */
#include "acmedge/provision.h"
#include "provision_internal.h"

#include <string.h>

#include "acmedge/log.h"
#include "acmedge/metrics.h"

#define SUB "provision"
#define DENY_SUPPRESS_MS 60000u  /* one domain_denied event per name per minute */
#define PENDING_RETRY_AFTER_S 5u

/* Emits domain_denied at most once per name per minute: random-SNI floods must not flood the
 * event stream, the log and the hook. */
void ae_provision_deny_event(ae_provision *p, const char *name, const char *reason, const char *source) {
  ae_metrics_count_label("denied", reason);
  if (ae_provision_deny_suppressed(p, name, ae_now_ms(), DENY_SUPPRESS_MS))
    return;
  json_t *det = json_object();
  json_object_set_new(det, "reason", json_string(reason));
  if (source)
    json_object_set_new(det, "source", json_string(source));
  ae_events_emit(p->deps.events, "domain_denied", name, det);
}


static void decided(ae_provision *p, const char *name) {
  if (p->deps.decided)
    p->deps.decided(p->deps.wake_ud, name);
}

static void on_policy(void *ud, int allowed, const char *reason) {
  ae_dom *d = ud;
  ae_provision *p = d->p;
  char name[256];
  snprintf(name, sizeof(name), "%s", d->name);
  d->preq = NULL;
  if (allowed && ae_provision_admit(p, d) == 0) {
    decided(p, name);
    return;
  }
  if (!allowed)
    AE_INFO(SUB, "%s: denied by ask or dns_check (%s)", name, reason ? reason : "denied");
  ae_provision_deny_event(p, name, allowed ? "queue_full" : (reason ? reason : "ask_denied"), NULL);
  ae_dom_remove(p, d);
  ae_provision_wake(p, name);
  decided(p, name);
}

/* Result of starting (or joining) issuance for a name. */
typedef enum { REQ_PENDING, REQ_VALID, REQ_FAILED, REQ_DENIED } req_result;

static req_result request(ae_provision *p, const char *name, const char *source, const char **why) {
  ae_dom *d = ae_strmap_get(&p->doms, name);
  if (d) {
    if (ae_dom_busy(d)) {
      /* Asked for again: a queued name stays (fair_queue.unasked_ttl_s). */
      d->asked_ms = ae_now_ms();
      d->pinned |= strcmp(source, "api") == 0;
      return REQ_PENDING;
    }
    if (d->state == DS_VALID)
      return REQ_VALID;
    if (d->state == DS_FAILED && ae_provision_now_s() < d->retry_at)
      return REQ_FAILED;
  }
  /* Names the internal CA issues are listed by the operator: no allow/ask decision applies. */
  int internal = ae_config_internal_name(p->cfg, name);
  if (internal && !p->deps.ca) {
    /* Enabled by a reload: the CA starts with the process. Never fall back to ACME. */
    if (why)
      *why = "internal_ca_not_running";
    ae_provision_deny_event(p, name, "internal_ca_not_running", source);
    return REQ_DENIED;
  }
  if (!internal && !ae_policy_allowed(p->deps.policy, name)) {
    if (why)
      *why = "not_allowed";
    ae_provision_deny_event(p, name, "not_allowed", source);
    return REQ_DENIED;
  }
  if (!d)
    d = ae_dom_new(p, name);
  d->requested_ms = d->asked_ms = ae_now_ms();
  d->pinned = strcmp(source, "api") == 0;
  json_t *det = json_object();
  json_object_set_new(det, "source", json_string(source));
  ae_events_emit(p->deps.events, "domain_requested", name, det);

  const char *reason = NULL;
  int r = internal ? 1 : ae_policy_check(p->deps.policy, name, on_policy, d, &d->preq, &reason);
  if (r == AE_EAGAIN) {
    d->state = DS_CHECKING;
    return REQ_PENDING;
  }
  if (r == 1 && ae_provision_admit(p, d) == 0)
    return REQ_PENDING;
  if (r == 1)
    reason = "queue_full";
  else if (r < 0 || !reason)
    reason = "ask_failed";
  if (why)
    *why = reason;
  ae_provision_deny_event(p, name, reason, source);
  if (d->has_cert) {
    d->state = DS_VALID;
    return REQ_VALID;
  }
  ae_dom_remove(p, d);
  return REQ_DENIED;
}

void ae_provision_wake_name(ae_provision *p, const char *name) {
  ae_provision_wake(p, name);
  decided(p, name);
}

/* on_demand.fallback_cert "internal": an allowed ACME name whose issuance is pending or failing
 * gets a stand-in leaf. Not while ask still decides: only allowed names ever get one. */
static int wants_stand_in(ae_provision *p, const char *name, req_result rr) {
  ae_dom *d = ae_strmap_get(&p->doms, name);
  return (rr == REQ_PENDING || rr == REQ_FAILED) && p->cfg->on_demand.fallback_internal && p->deps.leaves && d &&
         d->state != DS_CHECKING && !ae_config_internal_name(p->cfg, name);
}

void ae_provision_not_stored(ae_provision *p, const char *name, const char *source) {
  if (p->closing)
    return;
  if (strcmp(source, "cluster") == 0) {
    ae_provision_storage_deleted(p, name); /* another instance deleted it */
    return;
  }
  if (strcmp(source, "renewal") == 0)
    return; /* deleted from storage since it was indexed: nothing to do */
  if (strcmp(source, "http") == 0 || (strcmp(source, "sni") == 0 && !p->cfg->on_demand.enabled)) {
    /* Port 80 asks again on its wake; a handshake takes the default certificate. */
    ae_provision_wake_name(p, name);
    return;
  }
  const char *why = NULL;
  req_result r = request(p, name, source, &why);
  ae_dom *d = ae_strmap_get(&p->doms, name);
  /* A handshake held for the storage read (every new name's first one, workers included) takes
   * the stand-in like any other: the mint wakes it. */
  if (strcmp(source, "sni") == 0 && wants_stand_in(p, name, r)) {
    ae_provision_fallback(p, name);
    return;
  }
  if (r == REQ_PENDING && d && d->state == DS_CHECKING)
    return; /* the ask answer wakes the waiters */
  if (r == REQ_PENDING && p->cfg->on_demand.first_wait)
    decided(p, name); /* held handshakes wait for the certificate itself */
  else
    ae_provision_wake_name(p, name);
}


static ae_miss_action deny_action(ae_provision *p) { return p->cfg->on_demand.deny_alert ? AE_MISS_ALERT : AE_MISS_DEFAULT; }

ae_miss_action ae_provision_on_invalid_sni(ae_provision *p, const char *shown) {
  if (p->closing)
    return AE_MISS_DEFAULT;
  if (p->cfg->on_demand.enabled)
    ae_provision_deny_event(p, shown, "invalid_name", "sni");
  return deny_action(p);
}

ae_miss_action ae_provision_on_sni(ae_provision *p, const char *raw) {
  char name[256];
  const char *why = NULL;
  if (p->closing)
    return AE_MISS_DEFAULT;
  /* The parser let through a DNS name the policy still refuses ("localhost"): the same answer
   * and reason as for any SNI that is not a host name. */
  if (ae_policy_normalize(raw, name, sizeof(name), &why) != 0)
    return ae_provision_on_invalid_sni(p, raw);
  /* Storage first: a stored name is served, never ordered again. */
  if (ae_provision_need_load(p, name)) {
    if (ae_provision_loads_full(p) && !ae_strmap_get(&p->loads, name))
      return AE_MISS_DEFAULT; /* a flood of unknown names: no more reads in flight */
    ae_provision_load_name(p, name, "sni");
    return AE_MISS_HOLD;
  }
  ae_cert *have = ae_certstore_lookup(p->deps.certs, name);
  if (have) {
    /* Loaded since the worker missed it: wake that worker's held handshake. */
    ae_cert_unref(have);
    ae_provision_wake(p, name);
    return AE_MISS_HOLD;
  }
  if (!p->cfg->on_demand.enabled)
    return AE_MISS_DEFAULT;
  req_result rr = request(p, name, "sni", &why);
  if (wants_stand_in(p, name, rr))
    return ae_provision_fallback(p, name);
  switch (rr) {
  case REQ_PENDING:
    return p->cfg->on_demand.first_wait ? AE_MISS_HOLD : AE_MISS_DEFAULT;
  case REQ_DENIED:
    return deny_action(p);
  default:
    return AE_MISS_DEFAULT;
  }
}

static unsigned retry_after_for(ae_dom *d) {
  if (d && d->state == DS_FAILED) {
    int64_t left = d->retry_at - ae_provision_now_s();
    return left > 0 ? (unsigned)left : 1u;
  }
  return PENDING_RETRY_AFTER_S;
}

ae_h80_state ae_provision_on_http(ae_provision *p, const char *host, unsigned *retry_after_s) {
  ae_cert *c = ae_certstore_lookup(p->deps.certs, host);
  if (c) {
    int fresh = ae_cert_not_after(c) > ae_provision_now_s();
    ae_cert_unref(c);
    if (fresh)
      return AE_H80_VALID;
  }
  /* Port 80 only redirects or answers for a name; a name outside the policy is not worth a
   * storage read here (TLS still serves one placed in storage by hand). */
  if (ae_policy_allowed(p->deps.policy, host) && ae_provision_need_load(p, host)) {
    if (ae_provision_loads_full(p) && !ae_strmap_get(&p->loads, host)) {
      *retry_after_s = PENDING_RETRY_AFTER_S;
      return AE_H80_PENDING; /* a flood of unknown names: no more reads in flight */
    }
    ae_provision_load_name(p, host, "http");
    /* Read from the kernel's caches at once: valid now, nothing to wait for. */
    if ((c = ae_certstore_lookup(p->deps.certs, host)) != NULL) {
      ae_cert_unref(c);
      return AE_H80_VALID;
    }
    return AE_H80_CHECKING;
  }
  if (!p->cfg->on_demand.enabled || p->closing)
    return AE_H80_DENY;
  const char *why = NULL;
  req_result r = request(p, host, "http", &why);
  ae_dom *d = ae_strmap_get(&p->doms, host);
  switch (r) {
  case REQ_PENDING:
    /* While ask decides, port 80 holds the request: a name it denies must get 404, not 503. */
    if (d && d->state == DS_CHECKING)
      return AE_H80_CHECKING;
    *retry_after_s = retry_after_for(d);
    return AE_H80_PENDING;
  case REQ_FAILED:
    *retry_after_s = retry_after_for(d);
    return AE_H80_FAILED;
  case REQ_VALID:
    return AE_H80_VALID;
  default:
    return AE_H80_DENY;
  }
}

int ae_provision_request(ae_provision *p, const char *raw, const char *source, ae_err *err) {
  char name[256];
  const char *why = NULL;
  if (ae_policy_normalize(raw, name, sizeof(name), &why) != 0)
    return ae_err_set(err, AE_EINVAL, "invalid domain name '%s': %s", raw, why ? why : "invalid_name");
  if (ae_policy_allowed(p->deps.policy, name) && ae_provision_need_load(p, name)) {
    ae_provision_load_name(p, name, source);
    return 0;
  }
  switch (request(p, name, source, &why)) {
  case REQ_DENIED:
    return ae_err_set(err, AE_ELIMIT, "%s: denied by policy (%s)", name, why ? why : "denied");
  default:
    return 0;
  }
}
