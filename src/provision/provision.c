/* On-demand provisioning. Every managed name has one record; the record's state machine is
 *
 *   CHECKING (ask URL in flight) -> QUEUED (waiting for a job slot or a rate token) -> ISSUING
 *   ISSUING -> INSTALLING (persist off the loop) -> VALID (renewal timer armed)
 *   ISSUING -> FAILED (retry_at set; demand after retry_at starts again)
 *
 * A renewal runs the same QUEUED/ISSUING path while the record keeps its certificate (has_cert),
 * so the old certificate is served until the new one is swapped in.
 *
 * This file holds the record's lifecycle (create, remove, free) and the provisioner's own
 * (create, reload, forget, close). The job queue is in provision_queue.c, renewal scheduling in
 * provision_renewal.c, cache misses (SNI, port 80, admin) in provision_miss.c. */
#include "acmedge/provision.h"
#include "provision_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "acmedge/log.h"
#include "acmedge/metrics.h"

#define SUB "provision"

double ae_backoff_delay(unsigned initial_s, unsigned max_s, unsigned n, double rnd01) {
  double d = initial_s ? (double)initial_s : 1.0;
  for (unsigned i = 1; i < n && d < (double)max_s; i++)
    d *= 2.0;
  if (max_s && d > (double)max_s)
    d = (double)max_s;
  /* ±50% jitter spreads retries of names that failed together (one CA outage). */
  return d * (0.5 + rnd01);
}

double ae_provision_rnd01(void) { return (double)(random() % 1000000) / 1000000.0; }

int64_t ae_provision_now_s(void) { return (int64_t)time(NULL); }

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

int ae_dom_busy(const ae_dom *d) {
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


/* Removes the record: cancels what it started, frees it in the timer's close callback. */
void ae_dom_remove(ae_provision *p, ae_dom *d) {
  ae_provision_queue_remove(p, d);
  ae_provision_lock_detach(p, d);
  ae_provision_failed_untrack(p, d);
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
  if (d->gating) {
    d->gating = 0;
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

void ae_dom_set_str(char **dst, const char *v) {
  free(*dst);
  *dst = v ? ae_strdup(v) : NULL;
}


void ae_free_value_cb(void *ud, const char *key, void *value) {
  (void)ud;
  (void)key;
  free(value);
}

void ae_provision_wake(ae_provision *p, const char *name) {
  /* Handshakes waiting for a stand-in leaf are woken when its mint completes: waking them now
   * (say, ACME failed within milliseconds) would hand them the default certificate. */
  if (ae_strmap_get(&p->fb_inflight, name))
    return;
  if (p->deps.wake)
    p->deps.wake(p->deps.wake_ud, name);
}

/* ---- public entry points ---- */

int ae_provision_new(const ae_provision_deps *deps, const ae_config *cfg, ae_provision **out, ae_err *err) {
  ae_provision *p = ae_calloc(1, sizeof(*p));
  p->deps = *deps;
  p->ca_host = ae_strdup(deps->ca_host);
  p->cfg = ae_config_ref((ae_config *)cfg);
  ae_strmap_init(&p->doms);
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
  ae_provision_deny_reset(p);
  ae_provision_pump(p);
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
  ae_renew_index_remove(p, name); /* or the list would still show it */
  if (d)
    ae_dom_remove(p, d);
  snprintf(key, sizeof(key), "certs/%s/%s/", p->ca_host, dir);
  ae_err e2 = {0};
  int r = ae_storage_del(p->deps.storage, key, &e2);
  if (r != 0 && r != AE_ENOTFOUND)
    AE_WARN(SUB, "%s: removing stored certificate: %s", name, e2.msg);
  ae_events_emit(p->deps.events, "domain_deleted", name, NULL);
  AE_INFO(SUB, "%s: forgotten", name);
  ae_provision_wake(p, name);
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
  ae_provision_deny_reset(p);
  ae_strmap_clear(&p->fb_inflight);
  ae_config_free(p->cfg);
  free(p->ca_host);
  free(p);
}
