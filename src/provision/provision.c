/* On-demand provisioning. Every managed name has one record; the record's state machine is
 *
 *   CHECKING (ask URL in flight) -> QUEUED (waiting for a job slot or a rate token) -> ISSUING
 *   ISSUING -> INSTALLING (persist off the loop) -> VALID (renewal timer armed)
 *   ISSUING -> FAILED (retry_at set; demand after retry_at starts again)
 *
 * A renewal runs the same QUEUED/ISSUING path while the record keeps its certificate (has_cert),
 * so the old certificate is served until the new one is swapped in. */
#include "acmedge/provision.h"
#include "provision_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "acmedge/log.h"
#include "acmedge/metrics.h"

#define SUB "provision"
#define DENY_SUPPRESS_MS 60000u  /* one domain_denied event per name per minute */
#define DENY_CACHE_MAX 10000u
#define PENDING_RETRY_AFTER_S 5u

static void pump(ae_provision *p);
static void start_job(ae_provision *p, ae_dom *d);
static void arm_timer(ae_dom *d, int64_t at);
static void arm_renewal(ae_dom *d);
static void ari_query(ae_dom *d);

double ae_backoff_delay(unsigned initial_s, unsigned max_s, unsigned n, double rnd01) {
  double d = initial_s ? (double)initial_s : 1.0;
  for (unsigned i = 1; i < n && d < (double)max_s; i++)
    d *= 2.0;
  if (max_s && d > (double)max_s)
    d = (double)max_s;
  /* ±50% jitter spreads retries of names that failed together (one CA outage). */
  return d * (0.5 + rnd01);
}

static double rnd01(void) { return (double)(random() % 1000000) / 1000000.0; }

static int64_t now_s(void) { return (int64_t)time(NULL); }

const char *ae_dom_state_name(const ae_dom *d) {
  switch (d->state) {
  case DS_CHECKING:
  case DS_QUEUED:
  case DS_ISSUING:
  case DS_INSTALLING:
    return d->has_cert ? "renewing" : "pending";
  case DS_VALID:
    return "valid";
  case DS_FAILED:
    return "failed";
  }
  return "pending";
}

static int dom_busy(const ae_dom *d) {
  return d->state == DS_CHECKING || d->state == DS_QUEUED || d->state == DS_ISSUING || d->state == DS_INSTALLING;
}

ae_dom *ae_dom_new(ae_provision *p, const char *name) {
  ae_dom *d = ae_calloc(1, sizeof(*d));
  d->p = p;
  snprintf(d->name, sizeof(d->name), "%s", name);
  uv_timer_init(p->deps.loop, &d->timer);
  d->timer.data = d;
  ae_strmap_put(&p->doms, name, d);
  return d;
}

static void dom_free_cb(uv_handle_t *h) {
  ae_dom *d = h->data;
  ae_provision *p = d->p;
  free(d->issuer);
  free(d->serial);
  free(d->cert_id);
  free(d->last_error);
  free(d->last_problem);
  free(d);
  p->closing_handles--;
  ae_provision_maybe_closed(p);
}

static void queue_remove(ae_provision *p, ae_dom *d) {
  if (!d->queued)
    return;
  ae_dom **pp = &p->qhead;
  while (*pp && *pp != d)
    pp = &(*pp)->qnext;
  if (*pp)
    *pp = d->qnext;
  if (p->qtail == d) {
    p->qtail = NULL;
    for (ae_dom *x = p->qhead; x; x = x->qnext)
      p->qtail = x;
  }
  d->qnext = NULL;
  d->queued = 0;
  p->qlen--;
}

/* Removes the record: cancels what it started, frees it in the timer's close callback. */
void ae_dom_remove(ae_provision *p, ae_dom *d) {
  queue_remove(p, d);
  if (d->preq) {
    ae_policy_cancel(d->preq);
    d->preq = NULL;
  }
  if (d->ari) {
    ae_acme_ari_cancel(d->ari);
    d->ari = NULL;
  }
  if (d->job) {
    ae_acme_job_cancel(d->job);
    d->job = NULL;
    p->active--;
    ae_metrics_add(AE_M_ORDERS_IN_FLIGHT, -1);
  }
  if (d->minting) {
    d->minting = 0;
    p->active--;
    ae_metrics_add(AE_M_ORDERS_IN_FLIGHT, -1);
  }
  ae_strmap_del(&p->doms, d->name);
  p->closing_handles++;
  uv_close((uv_handle_t *)&d->timer, dom_free_cb);
}

static void set_str(char **dst, const char *v) {
  free(*dst);
  *dst = v ? ae_strdup(v) : NULL;
}

/* Emits domain_denied at most once per name per minute: random-SNI floods must not flood the
 * event stream, the log and the hook. */
static void deny_event(ae_provision *p, const char *name, const char *reason, const char *source) {
  ae_metrics_count_label("denied", reason);
  uint64_t now = ae_now_ms();
  uint64_t *until = ae_strmap_get(&p->denied, name);
  if (until && *until > now)
    return;
  if (!until) {
    if (p->denied.count >= DENY_CACHE_MAX) {
      ae_strmap_foreach(&p->denied, ae_free_value_cb, NULL);
      ae_strmap_clear(&p->denied);
    }
    until = ae_malloc(sizeof(*until));
    ae_strmap_put(&p->denied, name, until);
  }
  *until = now + DENY_SUPPRESS_MS;
  json_t *det = json_object();
  json_object_set_new(det, "reason", json_string(reason));
  if (source)
    json_object_set_new(det, "source", json_string(source));
  ae_events_emit(p->deps.events, "domain_denied", name, det);
}

void ae_free_value_cb(void *ud, const char *key, void *value) {
  (void)ud;
  (void)key;
  free(value);
}

static void wake(ae_provision *p, const char *name) {
  /* Handshakes waiting for a stand-in leaf are woken when its mint completes: waking them now
   * (say, ACME failed within milliseconds) would hand them the default certificate. */
  if (ae_strmap_get(&p->fb_inflight, name))
    return;
  if (p->deps.wake)
    p->deps.wake(p->deps.wake_ud, name);
}

/* Puts an admitted record in line for a job slot; the queue is FIFO and bounded. */
static int admit(ae_provision *p, ae_dom *d) {
  if (p->qlen >= p->cfg->on_demand.max_queue) {
    return AE_ELIMIT;
  }
  ae_registrable_domain(d->name, d->rd, sizeof(d->rd));
  if (p->cfg->fair_queue.max_share < 1.0) {
    /* One registrable domain may hold only its share of the queue, so a flood of names under
     * one pattern leaves room for everybody else. */
    unsigned cap = (unsigned)(p->cfg->fair_queue.max_share * p->cfg->on_demand.max_queue), same = 0;
    if (cap == 0)
      cap = 1;
    for (ae_dom *x = p->qhead; x; x = x->qnext)
      same += strcmp(x->rd, d->rd) == 0;
    if (same >= cap) {
      AE_INFO(SUB, "%s: %s already holds %u queued name(s) (fair_queue.max_share)", d->name, d->rd, same);
      return AE_ELIMIT;
    }
  }
  d->state = DS_QUEUED;
  d->queued = 1;
  d->qnext = NULL;
  if (p->qtail)
    p->qtail->qnext = d;
  else
    p->qhead = d;
  p->qtail = d;
  p->qlen++;
  pump(p);
  return 0;
}

int ae_provision_admit(ae_provision *p, ae_dom *d) { return admit(p, d); }

static void rate_timer_cb(uv_timer_t *t) { pump(t->data); }

/* Starts queued jobs while a slot and a rate token are free. */
static void pump(ae_provision *p) {
  if (p->closing)
    return;
  while (p->qhead && p->active < p->cfg->on_demand.max_concurrent) {
    uint64_t wait_ms = 0;
    if (ae_policy_rate_take(p->deps.policy, ae_now_ms(), &wait_ms) != 0) {
      if (!uv_is_active((uv_handle_t *)&p->rate_timer)) {
        AE_INFO(SUB, "order rate limit reached; %u name(s) queued, next slot in %llu ms", p->qlen,
                (unsigned long long)wait_ms);
        uv_timer_start(&p->rate_timer, rate_timer_cb, wait_ms ? wait_ms : 100, 0);
      }
      return;
    }
    /* Round robin by registrable domain: the oldest name of another domain than the last one
     * started goes first, so a flood under one domain delays others by at most one order. */
    ae_dom *d = p->qhead;
    if (strcmp(d->rd, p->last_rd) == 0) {
      for (ae_dom *x = d->qnext; x; x = x->qnext) {
        if (strcmp(x->rd, p->last_rd) != 0) {
          d = x;
          break;
        }
      }
    }
    snprintf(p->last_rd, sizeof(p->last_rd), "%s", d->rd);
    queue_remove(p, d);
    start_job(p, d);
  }
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
  if (allowed && admit(p, d) == 0) {
    decided(p, name);
    return;
  }
  if (!allowed)
    AE_INFO(SUB, "%s: denied by ask or dns_check (%s)", name, reason ? reason : "denied");
  deny_event(p, name, allowed ? "queue_full" : (reason ? reason : "ask_denied"), NULL);
  ae_dom_remove(p, d);
  wake(p, name);
  decided(p, name);
}

/* Result of starting (or joining) issuance for a name. */
typedef enum { REQ_PENDING, REQ_VALID, REQ_FAILED, REQ_DENIED } req_result;

static req_result request(ae_provision *p, const char *name, const char *source, const char **why) {
  ae_dom *d = ae_strmap_get(&p->doms, name);
  if (d) {
    if (dom_busy(d))
      return REQ_PENDING;
    if (d->state == DS_VALID)
      return REQ_VALID;
    if (d->state == DS_FAILED && now_s() < d->retry_at)
      return REQ_FAILED;
  }
  /* Names the internal CA issues are listed by the operator: no allow/ask decision applies. */
  int internal = ae_config_internal_name(p->cfg, name);
  if (internal && !p->deps.ca) {
    /* Enabled by a reload: the CA starts with the process. Never fall back to ACME. */
    if (why)
      *why = "internal_ca_not_running";
    deny_event(p, name, "internal_ca_not_running", source);
    return REQ_DENIED;
  }
  if (!internal && !ae_policy_allowed(p->deps.policy, name)) {
    if (why)
      *why = "not_allowed";
    deny_event(p, name, "not_allowed", source);
    return REQ_DENIED;
  }
  if (!d)
    d = ae_dom_new(p, name);
  d->requested_ms = ae_now_ms();
  json_t *det = json_object();
  json_object_set_new(det, "source", json_string(source));
  ae_events_emit(p->deps.events, "domain_requested", name, det);

  const char *reason = NULL;
  int r = internal ? 1 : ae_policy_check(p->deps.policy, name, on_policy, d, &d->preq, &reason);
  if (r == AE_EAGAIN) {
    d->state = DS_CHECKING;
    return REQ_PENDING;
  }
  if (r == 1 && admit(p, d) == 0)
    return REQ_PENDING;
  if (r == 1)
    reason = "queue_full";
  else if (r < 0 || !reason)
    reason = "ask_failed";
  if (why)
    *why = reason;
  deny_event(p, name, reason, source);
  if (d->has_cert) {
    d->state = DS_VALID;
    return REQ_VALID;
  }
  ae_dom_remove(p, d);
  return REQ_DENIED;
}

static void on_progress(void *ud, const char *step, const char *detail) {
  ae_dom *d = ud;
  if (strcmp(step, "challenge_ready") == 0 || strcmp(step, "challenge_valid") == 0) {
    json_t *det = json_object();
    /* "type" is the event's own key (design §6), so the challenge type goes under "challenge". */
    if (detail)
      json_object_set_new(det, "challenge", json_string(detail));
    ae_events_emit(d->p->deps.events, step, d->name, det);
  }
}

static void schedule_retry_or_renewal(ae_dom *d);

static void on_done(void *ud, const ae_acme_result *res) {
  ae_dom *d = ud;
  ae_provision *p = d->p;
  d->job = NULL;
  p->active--;
  ae_metrics_add(AE_M_ORDERS_IN_FLIGHT, -1);
  if (res->code == 0) {
    d->state = DS_INSTALLING;
    ae_provision_install(p, d->name, res->cert_pem, res->key_pem, res->challenge_type);
  } else {
    d->failures++;
    const ae_config *c = p->cfg;
    double delay = res->retryable
                       ? ae_backoff_delay(c->on_demand.backoff_initial_s, c->on_demand.backoff_max_s, d->failures, rnd01())
                       : (double)c->on_demand.backoff_max_s;
    int64_t retry_at = now_s() + (int64_t)ceil(delay);
    if (res->retry_after > retry_at)
      retry_at = res->retry_after;
    d->retry_at = retry_at;
    set_str(&d->last_error, res->detail ? res->detail : ae_strerror(res->code));
    set_str(&d->last_problem, res->problem);
    d->state = d->has_cert ? DS_VALID : DS_FAILED;
    char when[40];
    ae_time_rfc3339(retry_at, when, sizeof(when));
    AE_WARN(SUB, "%s: issuance failed (%s: %s); retry after %s", d->name, res->problem ? res->problem : "error",
            d->last_error, when);
    ae_metrics_inc(AE_M_ISSUE_FAILURE);
    ae_metrics_count_label("issue_failures", res->problem ? res->problem : "unknown");
    json_t *det = json_object();
    json_object_set_new(det, "problem", json_string(res->problem ? res->problem : "unknown"));
    json_object_set_new(det, "detail", json_string(d->last_error));
    json_object_set_new(det, "retry_at", json_string(when));
    json_object_set_new(det, "retryable", json_boolean(res->retryable));
    if (d->has_cert)
      json_object_set_new(det, "renewal", json_true());
    ae_events_emit(p->deps.events, "issuance_failed", d->name, det);
    if (d->revoked)
      ae_provision_revoked_failed(p, d);
    /* A renewal that failed retries by itself; a first issuance waits for demand after retry_at. */
    if (d->has_cert)
      arm_timer(d, retry_at);
    wake(p, d->name);
  }
  pump(p);
}

void ae_provision_job_done(void *dom, const ae_acme_result *res) { on_done(dom, res); }

static void start_job(ae_provision *p, ae_dom *d) {
  ae_acme_callbacks cbs = {.ud = d, .on_progress = on_progress, .on_done = on_done};
  ae_err err = {0};
  d->state = DS_ISSUING;
  p->active++;
  ae_metrics_add(AE_M_ORDERS_IN_FLIGHT, 1);
  ae_metrics_inc(AE_M_ISSUE_ATTEMPTS);
  if (d->has_cert)
    ae_metrics_inc(AE_M_RENEWALS);
  json_t *det = json_object();
  if (d->has_cert)
    json_object_set_new(det, "renewal", json_true());
  ae_events_emit(p->deps.events, "issuance_started", d->name, det);
  int r = ae_config_internal_name(p->cfg, d->name)
              ? (p->deps.ca ? ae_provision_mint_start(p, d, &err)
                            : ae_err_set(&err, AE_EINVAL, "%s: the internal CA is not running", d->name))
              : ae_acme_issue_renewal(p->deps.acme, d->name, d->has_cert ? d->cert_id : NULL, &cbs, &d->job, &err);
  if (r != 0) {
    d->job = NULL;
    /* Same path as a CA failure so backoff and events stay uniform. */
    ae_acme_result res = {.code = r, .problem = "acmedge:internal", .detail = err.msg, .retryable = 1};
    on_done(d, &res); /* releases the slot taken above */
  }
}

static void timer_cb(uv_timer_t *t) {
  ae_dom *d = t->data;
  ae_provision *p = d->p;
  if (dom_busy(d) || p->closing)
    return;
  if (d->ari_poll_at && d->ari_poll_at <= now_s() && now_s() < d->renew_at) {
    ari_query(d);
    arm_renewal(d);
    return;
  }
  /* Woken early (an ARI poll time that moved, or a timer armed against a loop clock that was stale
   * during a long start-up load): never renew before renew_at. */
  if (now_s() < d->renew_at) {
    arm_renewal(d);
    return;
  }
  if (d->has_cert)
    AE_INFO(SUB, "%s: renewing certificate (expires %lld)", d->name, (long long)d->not_after);
  if (admit(p, d) != 0) {
    /* Queue full: try again a little later rather than dropping a renewal. */
    arm_timer(d, now_s() + 60);
    d->state = d->has_cert ? DS_VALID : DS_FAILED;
  }
}

/* One timer per name serves both the renewal and the next ARI poll, whichever comes first. */
static void arm_renewal(ae_dom *d) {
  int64_t at = d->renew_at;
  if (d->ari_poll_at && d->ari_poll_at < at)
    at = d->ari_poll_at;
  int64_t delta = at - now_s();
  uint64_t ms = delta > 0 ? (uint64_t)delta * 1000u : 0;
  uv_timer_start(&d->timer, timer_cb, ms, 0);
}

static void arm_timer(ae_dom *d, int64_t at) {
  d->renew_at = at;
  arm_renewal(d);
}

static void renewal_event(ae_dom *d, const char *source) {
  char when[40];
  ae_time_rfc3339(d->renew_at, when, sizeof(when));
  json_t *det = json_object();
  json_object_set_new(det, "at", json_string(when));
  if (source)
    json_object_set_new(det, "source", json_string(source));
  ae_events_emit(d->p->deps.events, "renewal_scheduled", d->name, det);
}

#define ARI_POLL_DEFAULT_S (6 * 3600)  /* RFC 9773 suggests polling a few times a day */
#define ARI_POLL_ERROR_S 3600
#define ARI_POLL_MIN_S 60
#define ARI_FIRST_POLL_MAX_S 300  /* default spread of the first poll after install or load */

/* The CA's suggested window (ARI) replaces our own 2/3-of-lifetime schedule: a random moment in
 * the window spreads renewals, and an early window (e.g. a revocation campaign) is honoured. */
static void ari_done(void *ud, int code, const struct ae_acme_renewal_info *info) {
  ae_dom *d = ud;
  d->ari = NULL;
  int64_t now = now_s();
  if (code == AE_ENOTFOUND) {
    d->ari_poll_at = 0; /* the CA offers no ARI: keep our schedule */
    arm_renewal(d);
    return;
  }
  int64_t next = code == 0 ? now + ARI_POLL_DEFAULT_S : now + ARI_POLL_ERROR_S;
  if (info->retry_after > now)
    next = info->retry_after;
  if (next < now + ARI_POLL_MIN_S)
    next = now + ARI_POLL_MIN_S;
  d->ari_poll_at = next;
  if (code == 0 && info->end > info->start) {
    int64_t at = info->start + (int64_t)((double)(info->end - info->start) * rnd01());
    if (at < now)
      at = now;
    if (at != d->renew_at && !dom_busy(d)) {
      d->renew_at = at;
      renewal_event(d, "ari");
    }
  }
  arm_renewal(d);
}

static void ari_query(ae_dom *d) {
  if (!d->cert_id || d->ari)
    return;
  ae_err err = {0};
  d->ari_poll_at = 0;
  if (ae_acme_renewal_info_by_id(d->p->deps.acme, d->cert_id, ari_done, d, &d->ari, &err) != 0) {
    d->ari = NULL;
    AE_DEBUG(SUB, "%s: renewal information not queried: %s", d->name, err.msg);
  }
}

/* Renews when a third of the lifetime remains (design §1), never earlier than now. */
static void schedule_retry_or_renewal(ae_dom *d) {
  if (strncmp(d->name, "*.", 2) == 0) {
    AE_INFO(SUB, "%s: wildcard certificates are not renewed automatically", d->name);
    return;
  }
  int64_t life = d->not_after - d->not_before;
  int64_t at = d->not_before + (life > 0 ? life * 2 / 3 : 0);
  if (at < now_s())
    at = now_s();
  arm_timer(d, at);
  renewal_event(d, NULL);
  /* Ask the CA too (ARI); its answer moves the renewal into its window. Spread over the first
   * minutes so a start-up with many stored certificates does not burst at the CA. */
  if (d->cert_id) {
    unsigned max = d->p->ari_first_poll_max_s;
    d->ari_poll_at = max ? now_s() + 1 + (int64_t)(rnd01() * (double)max) : now_s();
    arm_renewal(d);
  }
}

void ae_provision_installed(ae_provision *p, const char *name, ae_cert *cert, const char *cert_id, int loaded,
                            const char *err) {
  ae_dom *d = ae_strmap_get(&p->doms, name);
  if (loaded && cert && d && dom_busy(d)) {
    /* Read back after an eviction while a renewal runs: serve it, leave the record's state
     * machine to the job in flight. */
    ae_certstore_put(p->deps.certs, name, cert);
    wake(p, name);
    return;
  }
  if (!d) {
    if (!loaded)
      return; /* forgotten while persisting */
    d = ae_dom_new(p, name);
  }
  if (!cert) {
    d->failures++;
    d->retry_at = now_s() + (int64_t)ae_backoff_delay(p->cfg->on_demand.backoff_initial_s,
                                                      p->cfg->on_demand.backoff_max_s, d->failures, rnd01());
    /* A chain refused by ae_chain_check is the CA's fault, not the disk's. */
    const char *problem = err && strncmp(err, "invalid chain", 13) == 0 ? "acmedge:invalid_chain" : "acmedge:storage";
    set_str(&d->last_error, err);
    set_str(&d->last_problem, problem);
    d->state = d->has_cert ? DS_VALID : DS_FAILED;
    char when[40];
    ae_time_rfc3339(d->retry_at, when, sizeof(when));
    json_t *det = json_object();
    json_object_set_new(det, "problem", json_string(problem));
    json_object_set_new(det, "detail", json_string(err ? err : "install failed"));
    json_object_set_new(det, "retry_at", json_string(when));
    json_object_set_new(det, "retryable", json_true());
    ae_events_emit(p->deps.events, "issuance_failed", name, det);
    if (d->has_cert)
      arm_timer(d, d->retry_at);
    wake(p, name);
    return;
  }
  int renewed = d->has_cert && !loaded;
  d->has_cert = 1;
  d->not_before = ae_cert_not_before(cert);
  d->not_after = ae_cert_not_after(cert);
  set_str(&d->issuer, ae_cert_issuer(cert));
  set_str(&d->serial, ae_cert_serial(cert));
  set_str(&d->cert_id, cert_id);
  d->ari_poll_at = 0;
  if (d->ari) {
    ae_acme_ari_cancel(d->ari);
    d->ari = NULL;
  }
  char na[40];
  ae_time_rfc3339(d->not_after, na, sizeof(na));
  if (loaded) {
    json_t *det = json_object();
    json_object_set_new(det, "serial", json_string(d->serial ? d->serial : ""));
    json_object_set_new(det, "not_after", json_string(na));
    ae_events_emit(p->deps.events, "cert_loaded", name, det);
  } else {
    json_t *det = json_object();
    json_object_set_new(det, "serial", json_string(d->serial ? d->serial : ""));
    json_object_set_new(det, "not_after", json_string(na));
    json_object_set_new(det, "issuer", json_string(ae_config_internal_name(p->cfg, name) ? "internal" : "acme"));
    ae_events_emit(p->deps.events, renewed ? "cert_renewed" : "cert_issued", name, det);
  }
  ae_provision_cert_changed(p, name, cert, loaded);
  ae_certstore_put(p->deps.certs, name, cert);
  if (p->deps.leaves)
    ae_leafcache_drop(p->deps.leaves, name); /* the real certificate replaces the stand-in */
  d->revoked = 0;
  if (!loaded) {
    ae_metrics_inc(AE_M_ISSUE_SUCCESS);
    if (!renewed && d->requested_ms)
      ae_metrics_observe_ttc((double)(ae_now_ms() - d->requested_ms) / 1000.0);
    json_t *det = json_object();
    json_object_set_new(det, "serial", json_string(d->serial ? d->serial : ""));
    json_object_set_new(det, "not_after", json_string(na));
    ae_events_emit(p->deps.events, "cert_installed", name, det);
    AE_INFO(SUB, "%s: certificate %s installed (expires %s)", name, renewed ? "renewed and" : "issued and", na);
  }
  d->state = DS_VALID;
  d->failures = 0;
  d->retry_at = 0;
  set_str(&d->last_error, NULL);
  set_str(&d->last_problem, NULL);
  schedule_retry_or_renewal(d);
  wake(p, name);
}

void ae_provision_wake_name(ae_provision *p, const char *name) {
  wake(p, name);
  decided(p, name);
}

void ae_provision_not_stored(ae_provision *p, const char *name, const char *source) {
  if (p->closing)
    return;
  if (strcmp(source, "renewal") == 0)
    return; /* deleted from storage since it was indexed: nothing to renew */
  if (strcmp(source, "http") == 0 || (strcmp(source, "sni") == 0 && !p->cfg->on_demand.enabled)) {
    /* Port 80 asks again on its wake; a handshake takes the default certificate. */
    ae_provision_wake_name(p, name);
    return;
  }
  const char *why = NULL;
  req_result r = request(p, name, source, &why);
  ae_dom *d = ae_strmap_get(&p->doms, name);
  if (r == REQ_PENDING && d && d->state == DS_CHECKING)
    return; /* the ask answer wakes the waiters */
  if (r == REQ_PENDING && p->cfg->on_demand.first_wait)
    decided(p, name); /* held handshakes wait for the certificate itself */
  else
    ae_provision_wake_name(p, name);
}

/* ---- public entry points ---- */

int ae_provision_new(const ae_provision_deps *deps, const ae_config *cfg, ae_provision **out, ae_err *err) {
  ae_provision *p = ae_calloc(1, sizeof(*p));
  p->deps = *deps;
  p->ca_host = ae_strdup(deps->ca_host);
  p->cfg = ae_config_ref((ae_config *)cfg);
  ae_strmap_init(&p->doms);
  ae_strmap_init(&p->denied);
  ae_strmap_init(&p->fb_inflight);
  ae_strmap_init(&p->loads);
  ae_renew_index_init(p);
  uv_timer_init(deps->loop, &p->rate_timer);
  p->rate_timer.data = p;
  /* Test hook: ACMEDGE_ARI_FIRST_POLL_MAX_S bounds the first ARI poll's random delay (seconds,
   * 0 = poll at once, at most a day); unset or unparsable keeps the default. Read once here. */
  p->ari_first_poll_max_s = ARI_FIRST_POLL_MAX_S;
  const char *hook = getenv("ACMEDGE_ARI_FIRST_POLL_MAX_S");
  if (hook && *hook) {
    char *end = NULL;
    unsigned long v = strtoul(hook, &end, 10);
    if (end && *end == '\0' && hook[0] != '-' && v <= 86400)
      p->ari_first_poll_max_s = (unsigned)v;
  }
  srandom((unsigned)(time(NULL) ^ (uintptr_t)p));
  *out = p;
  (void)err;
  return 0;
}

void ae_provision_set_config(ae_provision *p, const ae_config *cfg) {
  ae_config *old = p->cfg;
  p->cfg = ae_config_ref((ae_config *)cfg);
  ae_config_free(old);
  /* Forget denials: a name the old allow list refused may be welcome now. */
  ae_strmap_foreach(&p->denied, ae_free_value_cb, NULL);
  ae_strmap_clear(&p->denied);
  pump(p);
}

static ae_miss_action deny_action(ae_provision *p) { return p->cfg->on_demand.deny_alert ? AE_MISS_ALERT : AE_MISS_DEFAULT; }

ae_miss_action ae_provision_on_sni(ae_provision *p, const char *raw) {
  char name[256];
  const char *why = NULL;
  if (p->closing)
    return AE_MISS_DEFAULT;
  if (ae_policy_normalize(raw, name, sizeof(name), &why) != 0) {
    if (p->cfg->on_demand.enabled)
      deny_event(p, raw, why ? why : "invalid_name", "sni");
    return deny_action(p);
  }
  /* Storage first: a stored name is served, never ordered again. */
  if (ae_provision_need_load(p, name)) {
    ae_provision_load_name(p, name, "sni");
    return AE_MISS_HOLD;
  }
  ae_cert *have = ae_certstore_lookup(p->deps.certs, name);
  if (have) {
    /* Loaded since the worker missed it: wake that worker's held handshake. */
    ae_cert_unref(have);
    wake(p, name);
    return AE_MISS_HOLD;
  }
  if (!p->cfg->on_demand.enabled)
    return AE_MISS_DEFAULT;
  req_result rr = request(p, name, "sni", &why);
  ae_dom *fd = ae_strmap_get(&p->doms, name);
  /* Not while ask still decides: only allowed names ever get a stand-in leaf. */
  if ((rr == REQ_PENDING || rr == REQ_FAILED) && p->cfg->on_demand.fallback_internal && p->deps.leaves && fd &&
      fd->state != DS_CHECKING && !ae_config_internal_name(p->cfg, name))
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
    int64_t left = d->retry_at - now_s();
    return left > 0 ? (unsigned)left : 1u;
  }
  return PENDING_RETRY_AFTER_S;
}

ae_h80_state ae_provision_on_http(ae_provision *p, const char *host, unsigned *retry_after_s) {
  ae_cert *c = ae_certstore_lookup(p->deps.certs, host);
  if (c) {
    int fresh = ae_cert_not_after(c) > now_s();
    ae_cert_unref(c);
    if (fresh)
      return AE_H80_VALID;
  }
  /* Port 80 only redirects or answers for a name; a name outside the policy is not worth a
   * storage read here (TLS still serves one placed in storage by hand). */
  if (ae_policy_allowed(p->deps.policy, host) && ae_provision_need_load(p, host)) {
    ae_provision_load_name(p, host, "http");
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

int ae_provision_forget(ae_provision *p, const char *raw, ae_err *err) {
  char name[256];
  snprintf(name, sizeof(name), "%s", raw);
  for (char *c = name; *c; c++)
    if (*c >= 'A' && *c <= 'Z')
      *c = (char)(*c + 32);
  ae_dom *d = ae_strmap_get(&p->doms, name);
  ae_provision_cert_changed(p, name, NULL, 0);
  int in_store = ae_certstore_remove(p->deps.certs, name) == 0;
  ae_provision_cancel_load(p, name);
  char dir[300], key[600];
  ae_storage_domain_dirname(name, dir, sizeof(dir));
  if (!d && !in_store) {
    /* Stored but never loaded (lazy start) is still managed. */
    char *probe = NULL;
    size_t plen = 0;
    ae_err pe = {0};
    snprintf(key, sizeof(key), "certs/%s/%s/cert.pem", p->ca_host, dir);
    if (ae_storage_get(p->deps.storage, key, &probe, &plen, &pe) != 0)
      return ae_err_set(err, AE_ENOTFOUND, "%s: not managed", name);
    free(probe);
  }
  ae_certstore_mark_absent(p->deps.certs, name, p->cfg->cert_cache.negative_ttl_ms);
  if (d)
    ae_dom_remove(p, d);
  snprintf(key, sizeof(key), "certs/%s/%s/", p->ca_host, dir);
  ae_err e2 = {0};
  int r = ae_storage_del(p->deps.storage, key, &e2);
  if (r != 0 && r != AE_ENOTFOUND)
    AE_WARN(SUB, "%s: removing stored certificate: %s", name, e2.msg);
  ae_events_emit(p->deps.events, "domain_deleted", name, NULL);
  AE_INFO(SUB, "%s: forgotten", name);
  wake(p, name);
  return 0;
}

static void rate_closed(uv_handle_t *h) {
  ae_provision *p = h->data;
  p->closing_handles--;
  ae_provision_maybe_closed(p);
}

void ae_provision_maybe_closed(ae_provision *p) {
  if (p->closing && p->closing_handles == 0 && p->installs == 0 && p->bg == 0 && p->close_cb) {
    void (*cb)(void *) = p->close_cb;
    p->close_cb = NULL;
    cb(p->close_ud);
  }
}

static void collect_cb(void *ud, const char *key, void *value) {
  (void)key;
  ae_dom ***list = ud;
  **list = value;
  (*list)++;
}

void ae_provision_close(ae_provision *p, void (*cb)(void *ud), void *ud) {
  p->closing = 1;
  p->close_cb = cb;
  p->close_ud = ud;
  size_t n = p->doms.count;
  ae_dom **all = ae_calloc(n + 1, sizeof(*all)), **it = all;
  ae_strmap_foreach(&p->doms, collect_cb, &it);
  for (size_t i = 0; i < n; i++)
    ae_dom_remove(p, all[i]);
  free(all);
  p->closing_handles++;
  uv_close((uv_handle_t *)&p->rate_timer, rate_closed);
  p->ri_timer_on = 0;
  p->closing_handles++;
  uv_close((uv_handle_t *)&p->ri_timer, rate_closed);
}

void ae_provision_free(ae_provision *p) {
  if (!p)
    return;
  ae_strmap_clear(&p->doms);
  ae_strmap_clear(&p->loads);
  ae_renew_index_close(p);
  ae_strmap_foreach(&p->denied, ae_free_value_cb, NULL);
  ae_strmap_clear(&p->denied);
  ae_strmap_clear(&p->fb_inflight);
  ae_config_free(p->cfg);
  free(p->ca_host);
  free(p);
}
