/* Renewal scheduling: swapping an installed or loaded certificate into its record, the per-name
 * renewal timer (two thirds into the lifetime), and ARI polls that move renewals into the CA's
 * suggested window. */
#include "acmedge/provision.h"
#include "provision_internal.h"

#include <string.h>

#include "acmedge/log.h"
#include "acmedge/metrics.h"

#define SUB "provision"
#define ARI_POLL_DEFAULT_S (6 * 3600)  /* RFC 9773 suggests polling a few times a day */
#define ARI_POLL_ERROR_S 3600
#define ARI_POLL_MIN_S 60

static void arm_renewal(ae_dom *d);
static void ari_query(ae_dom *d);

static void timer_cb(uv_timer_t *t) {
  ae_dom *d = t->data;
  ae_provision *p = d->p;
  if (ae_dom_busy(d) || p->closing)
    return;
  if (d->ari_poll_at && d->ari_poll_at <= ae_provision_now_s() && ae_provision_now_s() < d->renew_at) {
    ari_query(d);
    arm_renewal(d);
    return;
  }
  /* Woken early (an ARI poll time that moved, or a timer armed against a loop clock that was stale
   * during a long start-up load): never renew before renew_at. */
  if (ae_provision_now_s() < d->renew_at) {
    arm_renewal(d);
    return;
  }
  if (d->has_cert)
    AE_INFO(SUB, "%s: renewing certificate (expires %lld)", d->name, (long long)d->not_after);
  if (ae_provision_admit(p, d) != 0) {
    /* Queue full: try again a little later rather than dropping a renewal. */
    ae_dom_arm_timer(d, ae_provision_now_s() + 60);
    d->state = d->has_cert ? DS_VALID : DS_FAILED;
  }
}

/* One timer per name serves both the renewal and the next ARI poll, whichever comes first. */
static void arm_renewal(ae_dom *d) {
  int64_t at = d->renew_at;
  if (d->ari_poll_at && d->ari_poll_at < at)
    at = d->ari_poll_at;
  int64_t delta = at - ae_provision_now_s();
  uint64_t ms = delta > 0 ? (uint64_t)delta * 1000u : 0;
  uv_timer_start(&d->timer, timer_cb, ms, 0);
}

void ae_dom_arm_timer(ae_dom *d, int64_t at) {
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

int ae_provision_renew_now(ae_provision *p, const char *name, ae_err *err) {
  ae_dom *d = ae_strmap_get(&p->doms, name);
  if (!d && ae_provision_need_load(p, name)) {
    /* Stored but not in memory yet: read it (a name storage lacks is never ordered from here). */
    ae_provision_load_name(p, name, "renewal");
    return ae_err_set(err, AE_EAGAIN, "%s: reading the stored certificate first; ask again", name);
  }
  if (!d || !d->has_cert)
    return ae_err_set(err, AE_ENOTFOUND, "%s: no certificate to renew", name);
  if (ae_dom_busy(d) || d->job)
    return ae_err_set(err, AE_EEXIST, "%s: an order for it is already running", name);
  d->renew_at = ae_provision_now_s();
  renewal_event(d, "api");
  AE_INFO(SUB, "%s: renewing certificate on request (expires %lld)", d->name, (long long)d->not_after);
  if (ae_provision_admit(p, d) != 0) {
    d->state = DS_VALID;
    ae_dom_arm_timer(d, ae_provision_now_s() + 60);
    return ae_err_set(err, AE_ELIMIT, "%s: issuance queue full; renewal retried in 60 s", name);
  }
  return 0;
}


/* The CA's suggested window (ARI) replaces our own 2/3-of-lifetime schedule: a random moment in
 * the window spreads renewals, and an early window (e.g. a revocation campaign) is honoured. */
static void ari_done(void *ud, int code, const struct ae_acme_renewal_info *info) {
  ae_dom *d = ud;
  d->ari = NULL;
  int64_t now = ae_provision_now_s();
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
    int64_t at = info->start + (int64_t)((double)(info->end - info->start) * ae_provision_rnd01());
    if (at < now)
      at = now;
    if (at != d->renew_at && !ae_dom_busy(d)) {
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
  if (at < ae_provision_now_s())
    at = ae_provision_now_s();
  ae_dom_arm_timer(d, at);
  renewal_event(d, NULL);
  /* Ask the CA too (ARI); its answer moves the renewal into its window. Spread over the first
   * minutes so a start-up with many stored certificates does not burst at the CA. */
  if (d->cert_id) {
    unsigned max = d->p->ari_first_poll_max_s;
    d->ari_poll_at = max ? ae_provision_now_s() + 1 + (int64_t)(ae_provision_rnd01() * (double)max) : ae_provision_now_s();
    arm_renewal(d);
  }
}

void ae_provision_installed(ae_provision *p, const char *name, ae_cert *cert, const char *cert_id, int loaded,
                            const char *err) {
  ae_dom *d = ae_strmap_get(&p->doms, name);
  if (loaded && cert && d && ae_dom_busy(d)) {
    /* Read back after an eviction while a renewal runs: serve it, leave the record's state
     * machine to the job in flight. */
    ae_certstore_put(p->deps.certs, name, cert);
    ae_provision_wake(p, name);
    return;
  }
  if (!d) {
    if (!loaded)
      return; /* forgotten while persisting */
    d = ae_dom_new(p, name);
  }
  if (!cert) {
    d->failures++;
    d->retry_at = ae_provision_now_s() + (int64_t)ae_backoff_delay(p->cfg->on_demand.backoff_initial_s,
                                                      p->cfg->on_demand.backoff_max_s, d->failures, ae_provision_rnd01());
    /* A chain refused by ae_chain_check is the CA's fault, not the disk's. */
    const char *problem = err && strncmp(err, "invalid chain", 13) == 0 ? "acmedge:invalid_chain" : "acmedge:storage";
    ae_dom_set_str(&d->last_error, err);
    ae_dom_set_str(&d->last_problem, problem);
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
      ae_dom_arm_timer(d, d->retry_at);
    ae_provision_wake(p, name);
    return;
  }
  int renewed = d->has_cert && !loaded;
  d->has_cert = 1;
  d->not_before = ae_cert_not_before(cert);
  d->not_after = ae_cert_not_after(cert);
  ae_dom_set_str(&d->issuer, ae_cert_issuer(cert));
  ae_dom_set_str(&d->serial, ae_cert_serial(cert));
  ae_dom_set_str(&d->cert_id, cert_id);
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
    const char *kind = ae_ca_issuer_kind(ae_cert_issuer(cert));
    json_object_set_new(det, "issuer", json_string(kind ? kind : "acme"));
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
  ae_dom_set_str(&d->last_error, NULL);
  ae_dom_set_str(&d->last_problem, NULL);
  schedule_retry_or_renewal(d);
  ae_provision_wake(p, name);
}
