/* Provisioning on a shared (cluster) storage.
 * - A name another instance deleted is dropped from memory here too, so every instance stops
 *   serving it as soon as the change reaches it (PUBLISH, or the generation reconcile).
 * - Failure backoff is shared: the CA counts failed validations per account and name, and the
 *   account is shared, so a failure is recorded in storage until its retry time, and every
 *   instance reads that record before it orders the name. */
#include "provision_internal.h"

#include <stdlib.h>
#include <string.h>

#include "acmedge/log.h"
#include "acmedge/metrics.h"

#define SUB "provision"

void ae_provision_storage_deleted(ae_provision *p, const char *name) {
  if (p->closing)
    return;
  ae_dom *d = ae_strmap_get(&p->doms, name);
  ae_cert *c = ae_certstore_lookup(p->deps.certs, name);
  /* The lookup falls back to a wildcard entry, which is another stored name. */
  const char *first = c ? ae_cert_name(c, 0) : NULL;
  int cached = c && first && strcmp(first, name) == 0;
  ae_cert_unref(c);
  if (d && ae_dom_busy(d) && !d->has_cert) {
    /* An order of ours runs for it: its commit is newer than the delete. */
    AE_INFO(SUB, "%s: deleted by another instance while an order runs here; keeping the order", name);
    return;
  }
  size_t indexed = ae_renew_index_remove(p, name);
  if (!cached && !d && !indexed)
    return; /* nothing in memory: the instance that deleted it already said so */
  if (cached) {
    ae_provision_cert_changed(p, name, NULL, 0);
    ae_certstore_remove(p->deps.certs, name);
  }
  if (d)
    ae_dom_remove(p, d);
  json_t *det = json_object();
  json_object_set_new(det, "source", json_string("cluster"));
  ae_events_emit(p->deps.events, "domain_deleted", name, det);
  AE_INFO(SUB, "%s: deleted from the shared storage by another instance; forgotten here", name);
  ae_provision_wake(p, name);
}

void ae_provision_storage_removed(ae_provision *p, const char *name) {
  if (p->closing)
    return;
  /* A commit elsewhere does not read names known only from the renewal index (lazy loading),
   * but a delete must leave the index, or this instance keeps counting the name and reads it
   * again at its renewal time. The read confirms the delete (the name may be stored again by
   * now); finding nothing ends in ae_provision_storage_deleted. Deletes are rare, so the linear
   * index lookup is affordable here and not on every commit. */
  if (ae_renew_index_has(p, name)) {
    ae_provision_load_name(p, name, "cluster");
    return;
  }
  ae_provision_storage_changed(p, name);
}

/* ---- shared failure backoff ---- */

typedef struct gate_req {
  uv_work_t req;
  ae_provision *p;
  char name[256];
  uint64_t seq;
  int rc;
  ae_storage_fail f;
  ae_err err;
} gate_req;

static uint64_t g_gate_seq; /* control loop only */

static void gate_work(uv_work_t *req) {
  gate_req *g = req->data;
  g->rc = ae_storage_fail_get(g->p->deps.storage, g->p->ca_host, g->name, &g->f, &g->err);
}

/* d's attempt ends as failed on another instance's record: same state, timer and event as a
 * failure of our own, but nothing is recorded again (that would stretch the backoff). */
static void gated(ae_provision *p, ae_dom *d, const ae_storage_fail *f) {
  p->active--;
  ae_metrics_add(AE_M_ORDERS_IN_FLIGHT, -1);
  if (f->failures > d->failures)
    d->failures = f->failures;
  d->retry_at = f->retry_at;
  char msg[700];
  snprintf(msg, sizeof(msg), "%s (failed on %s; shared backoff)", f->detail[0] ? f->detail : "issuance failed",
           f->by[0] ? f->by : "another instance");
  ae_dom_set_str(&d->last_error, msg);
  ae_dom_set_str(&d->last_problem, f->problem[0] ? f->problem : NULL);
  d->state = d->has_cert ? DS_VALID : DS_FAILED;
  char when[40];
  ae_time_rfc3339(f->retry_at, when, sizeof(when));
  AE_INFO(SUB, "%s: failed on %s, not ordering before %s (shared backoff)", d->name,
          f->by[0] ? f->by : "another instance", when);
  json_t *det = json_object();
  json_object_set_new(det, "problem", json_string(f->problem[0] ? f->problem : "unknown"));
  json_object_set_new(det, "detail", json_string(msg));
  json_object_set_new(det, "retry_at", json_string(when));
  json_object_set_new(det, "retryable", json_true());
  json_object_set_new(det, "shared", json_true());
  json_object_set_new(det, "failed_on", json_string(f->by));
  if (d->has_cert)
    json_object_set_new(det, "renewal", json_true());
  ae_events_emit(p->deps.events, "issuance_failed", d->name, det);
  if (d->has_cert)
    ae_dom_arm_timer(d, f->retry_at);
  else
    ae_provision_failed_track(p, d);
  ae_provision_wake(p, d->name);
}

static void gate_after(uv_work_t *req, int status) {
  gate_req *g = req->data;
  ae_provision *p = g->p;
  p->bg--;
  ae_dom *d = p->closing ? NULL : ae_strmap_get(&p->doms, g->name);
  if (d && d->gating && d->gate_seq == g->seq) {
    d->gating = 0;
    if (status == 0 && g->rc == 0 && g->f.retry_at > ae_provision_now_s()) {
      gated(p, d, &g->f);
      ae_provision_pump(p);
    } else {
      if (status != 0 || (g->rc != 0 && g->rc != AE_ENOTFOUND))
        AE_WARN(SUB, "%s: cannot read the shared failure state, ordering anyway: %s", g->name,
                status ? "cancelled" : g->err.msg);
      ae_provision_job_go(p, d);
    }
  }
  free(g);
  ae_provision_maybe_closed(p);
}

int ae_provision_gate(ae_provision *p, ae_dom *d) {
  if (!ae_storage_is_redis(p->deps.storage) || ae_config_internal_name(p->cfg, d->name))
    return 0;
  gate_req *g = ae_calloc(1, sizeof(*g));
  g->req.data = g;
  g->p = p;
  snprintf(g->name, sizeof(g->name), "%s", d->name);
  g->seq = ++g_gate_seq;
  if (uv_queue_work(p->deps.loop, &g->req, gate_work, gate_after) != 0) {
    free(g);
    return 0;
  }
  p->bg++;
  d->gating = 1;
  d->gate_seq = g->seq;
  return 1;
}

typedef struct share_req {
  uv_work_t req;
  ae_provision *p;
  char name[256];
  ae_storage_fail f;
} share_req;

static void share_work(uv_work_t *req) {
  share_req *s = req->data;
  ae_err err = {0};
  if (ae_storage_fail_put(s->p->deps.storage, s->p->ca_host, s->name, &s->f, &err) != 0)
    AE_WARN(SUB, "%s: cannot share the failure with the other instances: %s", s->name, err.msg);
}

static void share_after(uv_work_t *req, int status) {
  (void)status;
  share_req *s = req->data;
  ae_provision *p = s->p;
  p->bg--;
  free(s);
  ae_provision_maybe_closed(p);
}

void ae_provision_fail_share(ae_provision *p, ae_dom *d, const ae_acme_result *res, int64_t retry_at) {
  /* Only the CA's own refusals count against the shared account; a local problem (timeout,
   * storage, internal CA) may not exist on another instance. */
  if (!ae_storage_is_redis(p->deps.storage) || !res->problem ||
      strncmp(res->problem, "urn:ietf:params:acme:error:", 27) != 0 || ae_config_internal_name(p->cfg, d->name))
    return;
  share_req *s = ae_calloc(1, sizeof(*s));
  s->req.data = s;
  s->p = p;
  snprintf(s->name, sizeof(s->name), "%s", d->name);
  s->f.retry_at = retry_at;
  s->f.failures = d->failures;
  snprintf(s->f.problem, sizeof(s->f.problem), "%s", res->problem);
  snprintf(s->f.detail, sizeof(s->f.detail), "%s", res->detail ? res->detail : "");
  if (uv_queue_work(p->deps.loop, &s->req, share_work, share_after) != 0) {
    free(s);
    return;
  }
  p->bg++;
}
