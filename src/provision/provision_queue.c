/* Issuance job queue: admission (bounded FIFO, fair share per registrable domain, renewals
 * outside the bounds, unasked names dropped), the pump that starts jobs under the concurrency cap
 * and the order rate limits, and job completion (install on success, backoff on failure). */
#include "acmedge/provision.h"
#include "provision_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "acmedge/log.h"
#include "acmedge/metrics.h"

#define SUB "provision"

static void start_job(ae_provision *p, ae_dom *d);

void ae_provision_queue_remove(ae_provision *p, ae_dom *d) {
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
  if (d->qrenewal)
    p->qrenewals--;
  d->qrenewal = 0;
}

/* Drops queued new names nobody asked for again within fair_queue.unasked_ttl_s: a real name's
 * clients keep retrying it, a random name from a flood is asked for once. */
static void drop_unasked(ae_provision *p) {
  unsigned ttl = p->cfg->fair_queue.unasked_ttl_s;
  if (ttl == 0)
    return;
  uint64_t now = ae_now_ms();
  ae_dom *d = p->qhead;
  while (d) {
    ae_dom *next = d->qnext;
    if (!d->qrenewal && !d->pinned && !d->has_cert && now - d->asked_ms > (uint64_t)ttl * 1000u) {
      char name[256];
      snprintf(name, sizeof(name), "%s", d->name);
      AE_INFO(SUB, "%s: dropped from the order queue, not asked for again in %u s (fair_queue.unasked_ttl_s)", name,
              ttl);
      ae_provision_deny_event(p, name, "unasked", "queue");
      ae_dom_remove(p, d);
      ae_provision_wake(p, name);
    }
    d = next;
  }
}

/* Puts an admitted record in line for a job slot. New names: bounded FIFO (max_queue), at most
 * max_share of it per registrable domain. Renewals are outside both bounds (there is one per
 * certificate at most), so a flood of new names can never keep a renewal out of the queue. */
static int admit(ae_provision *p, ae_dom *d) {
  int renewal = d->has_cert;
  ae_registrable_domain(d->name, d->rd, sizeof(d->rd));
  if (!renewal) {
    drop_unasked(p);
    if (p->qlen - p->qrenewals >= p->cfg->on_demand.max_queue)
      return AE_ELIMIT;
  }
  if (!renewal && p->cfg->fair_queue.max_share < 1.0) {
    /* One registrable domain may hold only its share of the queue, so a flood of names under
     * one pattern leaves room for everybody else. */
    unsigned cap = (unsigned)(p->cfg->fair_queue.max_share * p->cfg->on_demand.max_queue), same = 0;
    if (cap == 0)
      cap = 1;
    for (ae_dom *x = p->qhead; x; x = x->qnext)
      same += !x->qrenewal && strcmp(x->rd, d->rd) == 0;
    if (same >= cap) {
      AE_INFO(SUB, "%s: %s already holds %u queued name(s) (fair_queue.max_share)", d->name, d->rd, same);
      return AE_ELIMIT;
    }
  }
  d->state = DS_QUEUED;
  d->queued = 1;
  d->qrenewal = renewal;
  d->qnext = NULL;
  if (p->qtail)
    p->qtail->qnext = d;
  else
    p->qhead = d;
  p->qtail = d;
  p->qlen++;
  p->qrenewals += (unsigned)renewal;
  ae_provision_pump(p);
  return 0;
}

int ae_provision_admit(ae_provision *p, ae_dom *d) { return admit(p, d); }

static void rate_timer_cb(uv_timer_t *t) { ae_provision_pump(t->data); }

/* Picks the next queued record that may start now: renewals first (FIFO), then new names round
 * robin by registrable domain (the oldest name of another domain than the last one started goes
 * first, so a flood under one domain delays others by at most one order), skipping names the
 * rate limits hold back (their domain's share of the 3 h cap, the renewal reserve). NULL when
 * none may start; *wait_ms then says when to look again (0 = when something changes). */
static ae_dom *pick(ae_provision *p, uint64_t now, uint64_t *wait_ms) {
  uint64_t best = 0;
  *wait_ms = 0;
  for (int pass = 0; pass < 3; pass++) {
    for (ae_dom *x = p->qhead; x; x = x->qnext) {
      int same = strcmp(x->rd, p->last_rd) == 0;
      if (pass == 0 ? !x->qrenewal : (x->qrenewal || same != (pass == 2)))
        continue;
      uint64_t w = 0;
      int r = ae_policy_rate_check(p->deps.policy, now, x->rd, x->qrenewal, &w);
      if (r == 0)
        return x;
      if (r != AE_EAGAIN) {
        *wait_ms = w ? w : 100;
        return NULL; /* nothing at all may start before w */
      }
      if (best == 0 || w < best)
        best = w;
    }
  }
  *wait_ms = best;
  return NULL;
}

/* Starts queued jobs while a slot and a rate token are free. */
void ae_provision_pump(ae_provision *p) {
  if (p->closing)
    return;
  drop_unasked(p);
  while (p->qhead && p->active < p->cfg->on_demand.max_concurrent) {
    uint64_t now = ae_now_ms(), wait_ms = 0;
    ae_dom *d = pick(p, now, &wait_ms);
    if (!d) {
      /* Held back: look again when a token or a share frees up, and in time to drop names
       * nobody asks for any more. */
      unsigned ttl = p->cfg->fair_queue.unasked_ttl_s;
      if (ttl && (wait_ms == 0 || wait_ms > (uint64_t)ttl * 1000u))
        wait_ms = (uint64_t)ttl * 1000u;
      int active = uv_is_active((uv_handle_t *)&p->rate_timer);
      if (wait_ms && (!active || uv_timer_get_due_in(&p->rate_timer) > wait_ms)) {
        if (!active)
          AE_INFO(SUB, "order rate limit reached; %u name(s) queued, next slot in %llu ms", p->qlen,
                  (unsigned long long)wait_ms);
        uv_timer_start(&p->rate_timer, rate_timer_cb, wait_ms, 0);
      }
      return;
    }
    ae_policy_rate_commit(p->deps.policy, now, d->rd, d->qrenewal);
    snprintf(p->last_rd, sizeof(p->last_rd), "%s", d->rd);
    ae_provision_queue_remove(p, d);
    start_job(p, d);
  }
}

static void on_progress(void *ud, const char *step, const char *detail) {
  ae_dom *d = ud;
  if (strcmp(step, "challenge_ready") == 0 || strcmp(step, "challenge_valid") == 0) {
    json_t *det = json_object();
    /* "type" is the event's own key (design §6), so the challenge type goes under "challenge". */
    if (detail)
      json_object_set_new(det, "challenge", json_string(detail));
    ae_events_emit(d->p->deps.events, step, d->name, det);
  } else if (strcmp(step, "order_resumed") == 0) {
    /* A cluster instance took over another's saved order instead of placing a new one. */
    json_t *det = json_object();
    if (detail)
      json_object_set_new(det, "order", json_string(detail));
    ae_events_emit(d->p->deps.events, step, d->name, det);
  }
}

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
    ae_provision_lock_drop_order(d); /* a final failure: no one resumes this order */
    ae_provision_lock_end(p, d);
    d->failures++;
    const ae_config *c = p->cfg;
    double delay = res->retryable
                       ? ae_backoff_delay(c->on_demand.backoff_initial_s, c->on_demand.backoff_max_s, d->failures, ae_provision_rnd01())
                       : (double)c->on_demand.backoff_max_s;
    int64_t retry_at = ae_provision_now_s() + (int64_t)ceil(delay);
    if (res->retry_after > retry_at)
      retry_at = res->retry_after;
    d->retry_at = retry_at;
    ae_provision_fail_share(p, d, res, retry_at);
    ae_dom_set_str(&d->last_error, res->detail ? res->detail : ae_strerror(res->code));
    ae_dom_set_str(&d->last_problem, res->problem);
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
      ae_dom_arm_timer(d, retry_at);
    else
      ae_provision_failed_track(p, d);
    ae_provision_wake(p, d->name);
  }
  ae_provision_pump(p);
}

void ae_provision_job_done(void *dom, const ae_acme_result *res) { on_done(dom, res); }

static void start_job(ae_provision *p, ae_dom *d) {
  d->state = DS_ISSUING;
  p->active++;
  ae_metrics_add(AE_M_ORDERS_IN_FLIGHT, 1);
  if (ae_provision_gate(p, d))
    return; /* another instance may have failed this name: ae_provision_job_go follows */
  ae_provision_job_go(p, d);
}

void ae_provision_job_go(ae_provision *p, ae_dom *d) {
  ae_metrics_inc(AE_M_ISSUE_ATTEMPTS);
  if (d->has_cert)
    ae_metrics_inc(AE_M_RENEWALS);
  json_t *det = json_object();
  if (d->has_cert)
    json_object_set_new(det, "renewal", json_true());
  ae_events_emit(p->deps.events, "issuance_started", d->name, det);
  if (ae_provision_lock_needed(p, d)) {
    ae_provision_lock_begin(p, d); /* orders once the cluster-wide lock is ours */
    return;
  }
  ae_provision_issue_locked(p, d);
}

void ae_provision_issue_locked(ae_provision *p, ae_dom *d) {
  ae_acme_callbacks cbs = {.ud = d, .on_progress = on_progress, .on_done = on_done};
  ae_err err = {0};
  /* Under a cluster lock the order is saved with its fence, or a saved one is continued. */
  ae_acme_issue_opts o = {.replaces_cert_id = d->has_cert ? d->cert_id : NULL};
  if (ae_provision_lock_fence(d, &o.fence) != 0)
    o.fence = 0;
  o.resume = ae_provision_lock_take_resume(d);
  int r = ae_config_internal_name(p->cfg, d->name)
              ? (p->deps.ca ? ae_provision_mint_start(p, d, &err)
                            : ae_err_set(&err, AE_EINVAL, "%s: the internal CA is not running", d->name))
              : ae_acme_issue_with(p->deps.acme, d->name, &o, &cbs, &d->job, &err);
  if (o.resume) {
    ae_storage_order_clear(o.resume);
    free(o.resume);
  }
  if (r != 0) {
    d->job = NULL;
    /* Same path as a CA failure so backoff and events stay uniform. */
    ae_acme_result res = {.code = r, .problem = "acmedge:internal", .detail = err.msg, .retryable = 1};
    on_done(d, &res); /* releases the slot taken above */
  }
}
