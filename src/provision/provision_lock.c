/* Cluster-wide single issuance (docs/cluster.md): before ordering a name, take its lock in the
 * shared storage. The lock carries a fencing token; a heartbeat extends it every third of the
 * lease; an instance that cannot renew it in time, or learns it was taken over, stops its order
 * and never writes (self-fencing), and its commit is refused by the storage when the lock no
 * longer holds its token. An instance that finds the lock taken waits for the holder's
 * certificate, re-reading storage and retrying the lock, so after the holder dies (lease expiry)
 * someone else orders. Every lock operation (acquire, renewal, release) runs on a short-lived
 * thread of its own, never in the libuv thread pool: queued behind handshake-path storage reads,
 * a renewal would be late and make the holder fence itself, and an acquire would hold a job
 * slot longer than the lock asks. There are few of them at once: an acquire holds a job slot,
 * a renewal and a release belong to a held lock. The acquisition also reads the name's saved
 * order, which the job then continues (order resume); a failed order's record is deleted with
 * the lock's release. */
#include "provision_internal.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "acmedge/log.h"
#include "acmedge/metrics.h"

#define SUB "provision"

enum { LK_ACQUIRE, LK_RENEW, LK_UNLOCK };
enum { LR_ACQUIRED, LR_BUSY, LR_FOUND, LR_ERROR };

struct ae_plock {
  ae_provision *p;
  ae_dom *d;                /* NULL once the record is gone */
  char lname[600];          /* "cert:<ca>:<domain>" */
  char domain[256];         /* the record's name (the record may go while a work runs) */
  uint64_t token;           /* fencing token while held */
  int held, fenced;
  int slot;                 /* holds the record's job slot while no job runs yet */
  unsigned lease_ms;
  uint64_t last_ok_ms;      /* loop-clock time just before the last successful acquire/renew ran */
  int renewing;             /* a renewal is in flight */
  int drop_order;           /* the release also deletes the saved order (the job failed) */
  ae_storage_order *resume; /* saved order found by the acquisition, until the job takes it */
  unsigned refs;            /* the record, works in flight, the timer until closed */
  uv_timer_t timer;         /* heartbeat while held, retry while another instance holds it */
  int timer_closing;
};

typedef struct lock_work {
  uv_async_t done;          /* the operation's thread reports back on the loop */
  ae_plock *lk;
  int op, result, rc;
  uint64_t token, sent_ms;
  int64_t have_not_after;   /* acquire: the record's certificate, 0 when none */
  ae_cert *cert;            /* LR_FOUND: the stored certificate, parsed */
  ae_storage_order *order;  /* LR_ACQUIRED: the saved order of a previous holder */
  int drop_order;           /* LK_UNLOCK: delete the saved order first */
  ae_err order_err;         /* why a saved order could not be read */
  char cert_id[320];
  ae_err err;
} lock_work;

/* Milliseconds since the last successful acquire/renew started (monotonic clock, read now: the
 * loop's cached time may predate an operation thread's reading). */
static uint64_t since_ok(const ae_plock *lk) {
  uint64_t now = uv_hrtime() / 1000000;
  return now > lk->last_ok_ms ? now - lk->last_ok_ms : 0;
}

static void order_free(ae_storage_order *o) {
  if (o) {
    ae_storage_order_clear(o);
    free(o);
  }
}

static void lk_unref(ae_plock *lk) {
  if (--lk->refs == 0) {
    order_free(lk->resume);
    free(lk);
  }
}

/* Lock held and nothing stored: an order the previous holder saved. */
static void read_saved_order(lock_work *w, ae_storage *st) {
  ae_plock *lk = w->lk;
  ae_storage_order *o = ae_calloc(1, sizeof(*o));
  int r = ae_storage_order_get(st, lk->p->ca_host, lk->domain, o, &w->order_err);
  if (r == 0 && strcmp(o->ca_host, lk->p->ca_host) != 0)
    r = ae_err_set(&w->order_err, AE_EPROTO, "saved order is for CA %s, not %s", o->ca_host, lk->p->ca_host);
  if (r == 0) {
    w->order = o;
    return;
  }
  if (r == AE_ENOTFOUND)
    w->order_err.msg[0] = '\0';
  order_free(o);
}

static void timer_closed(uv_handle_t *h) {
  ae_plock *lk = h->data;
  ae_provision *p = lk->p;
  p->closing_handles--;
  lk_unref(lk);
  ae_provision_maybe_closed(p);
}

/* On the operation's thread. Acquire also reads the stored certificate: the lock's previous
 * holder may have committed it (then there is nothing to order), and while another instance
 * holds the lock the waiter picks the result up here. */
static void work_cb(lock_work *w) {
  ae_plock *lk = w->lk;
  ae_storage *st = lk->p->deps.storage;
  /* The lease starts after this moment; time spent starting the thread does not count (the same
   * monotonic clock as the loop's). */
  w->sent_ms = uv_hrtime() / 1000000;
  if (w->op == LK_RENEW) {
    w->rc = ae_storage_lock_renew(st, lk->lname, w->token, &w->err);
    return;
  }
  if (w->op == LK_UNLOCK) {
    if (w->drop_order && ae_storage_order_del(st, lk->p->ca_host, lk->domain, w->token, &w->order_err) != 0)
      w->drop_order = -1;
    w->rc = ae_storage_unlock(st, lk->lname, w->token, &w->err);
    return;
  }
  w->rc = ae_storage_lock(st, lk->lname, &w->token, &w->err);
  if (w->rc != 0 && w->rc != AE_EEXIST) {
    w->result = LR_ERROR;
    return;
  }
  w->result = w->rc == 0 ? LR_ACQUIRED : LR_BUSY;
  char *chain = NULL, *key = NULL;
  size_t clen = 0, klen = 0;
  ae_err e = {0};
  if (ae_storage_get_cert(st, lk->p->ca_host, lk->domain, &chain, &clen, &key, &klen, &e) == 0) {
    ae_cert *c = NULL;
    if (ae_cert_from_pem(chain, clen, key, klen, &c, &e) == 0) {
      if (ae_cert_not_after(c) > w->have_not_after) {
        ae_err idle = {0};
        if (ae_acme_cert_id(chain, w->cert_id, sizeof(w->cert_id), &idle) != 0)
          w->cert_id[0] = '\0';
        w->cert = c;
      } else {
        ae_cert_unref(c);
      }
    }
    free(chain);
    if (key) {
      memset(key, 0, klen);
      free(key);
    }
  }
  if (w->cert) {
    if (w->result == LR_ACQUIRED)
      ae_storage_unlock(st, lk->lname, w->token, &e);
    w->result = LR_FOUND;
  } else if (w->result == LR_ACQUIRED) {
    read_saved_order(w, st);
  }
}

static void after_cb(lock_work *w);

/* An operation's thread: a few Redis calls, each bounded by the backend's command timeout. */
static void *op_thread(void *arg) {
  lock_work *w = arg;
  work_cb(w);
  uv_async_send(&w->done);
  return NULL;
}

static void op_closed(uv_handle_t *h) {
  lock_work *w = h->data;
  w->lk->p->closing_handles--;
  after_cb(w); /* frees w */
}

static void op_done(uv_async_t *a) {
  lock_work *w = a->data;
  w->lk->p->closing_handles++;
  uv_close((uv_handle_t *)&w->done, op_closed);
}

/* Runs an operation on a detached thread of its own (uv_async_send is safe against the close in
 * op_done: libuv waits for a sender still inside it); its outcome reaches after_cb on the loop. */
static void start_op(lock_work *w, uv_loop_t *loop) {
  if (uv_async_init(loop, &w->done, op_done) != 0) {
    w->rc = ae_err_set(&w->err, AE_ERR, "cannot start a storage lock operation");
    w->result = LR_ERROR;
    after_cb(w);
    return;
  }
  w->done.data = w;
  pthread_attr_t at;
  pthread_t th;
  int r = pthread_attr_init(&at);
  if (r == 0) {
    pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
    r = pthread_create(&th, &at, op_thread, w);
    pthread_attr_destroy(&at);
  }
  if (r != 0) {
    /* Reported like an unreachable storage: a renewal is tried again at the next heartbeat, an
     * acquire with the name's next attempt, a release is left to the lease. */
    w->rc = ae_err_set(&w->err, AE_ERR, "cannot start a storage lock thread");
    w->result = LR_ERROR;
    uv_async_send(&w->done);
  }
}

static void queue_op(ae_plock *lk, int op) {
  ae_provision *p = lk->p;
  lock_work *w = ae_calloc(1, sizeof(*w));
  w->lk = lk;
  w->op = op;
  w->token = lk->token;
  w->sent_ms = uv_now(p->deps.loop);
  w->have_not_after = lk->d && lk->d->has_cert ? lk->d->not_after : 0;
  if (op == LK_UNLOCK) {
    w->drop_order = lk->drop_order;
    lk->drop_order = 0;
  }
  lk->refs++;
  p->bg++;
  start_op(w, p->deps.loop);
}

static void stop_timer(ae_plock *lk) {
  if (!lk->timer_closing)
    uv_timer_stop(&lk->timer);
}

/* Stops the order and keeps the record from writing: the lock is (or may be) someone else's. */
static void self_fence(ae_plock *lk, const char *why) {
  ae_dom *d = lk->d;
  lk->held = 0;
  lk->fenced = 1;
  stop_timer(lk);
  AE_WARN(SUB, "%s: issuance lock lost (%s); stopping the order, nothing will be written", d ? d->name : lk->lname, why);
  if (d && d->job) {
    ae_acme_job_cancel(d->job);
    ae_acme_result res = {.code = AE_ECANCELED, .problem = "acmedge:lock-lost", .detail = why, .retryable = 1};
    ae_provision_job_done(d, &res); /* releases the slot; on_done sets d->job = NULL */
  }
}

static void heartbeat_cb(uv_timer_t *t) {
  ae_plock *lk = t->data;
  if (!lk->held)
    return;
  /* Self-fencing deadline: the lease may expire in Redis any moment after lease - heartbeat. */
  if (since_ok(lk) >= lk->lease_ms - lk->lease_ms / 3) {
    self_fence(lk, "no successful lease renewal in time");
    return;
  }
  if (!lk->renewing) {
    lk->renewing = 1;
    queue_op(lk, LK_RENEW);
  }
}

static void retry_cb(uv_timer_t *t) {
  ae_plock *lk = t->data;
  if (lk->d && !lk->p->closing)
    queue_op(lk, LK_ACQUIRE);
}

static void acquired(ae_plock *lk, lock_work *w) {
  ae_dom *d = lk->d;
  ae_provision *p = lk->p;
  switch (w->result) {
  case LR_ACQUIRED: {
    lk->token = w->token;
    lk->held = 1;
    lk->fenced = 0;
    lk->last_ok_ms = w->sent_ms;
    unsigned beat = lk->lease_ms / 3 ? lk->lease_ms / 3 : 1;
    uv_timer_start(&lk->timer, heartbeat_cb, beat, beat);
    AE_INFO(SUB, "%s: issuance lock taken (fence %llu)", d->name, (unsigned long long)lk->token);
    if (w->order_err.msg[0])
      AE_WARN(SUB, "%s: saved order not usable, ordering anew: %s", d->name, w->order_err.msg);
    order_free(lk->resume);
    lk->resume = w->order; /* the job continues it (ae_provision_lock_take_resume) */
    w->order = NULL;
    lk->slot = 0; /* the job owns it now */
    ae_provision_issue_locked(p, d);
    return;
  }
  case LR_BUSY: {
    unsigned wait = lk->lease_ms / 3 ? lk->lease_ms / 3 : 1;
    if (wait > 1000)
      wait = 1000;
    AE_DEBUG(SUB, "%s: another instance holds the issuance lock; waiting for its certificate", d->name);
    uv_timer_start(&lk->timer, retry_cb, wait, 0);
    return;
  }
  case LR_FOUND:
    AE_INFO(SUB, "%s: certificate committed by another instance; no order needed", d->name);
    lk->slot = 0;
    p->active--;
    ae_metrics_add(AE_M_ORDERS_IN_FLIGHT, -1);
    d->state = DS_VALID; /* so the install below runs its whole path */
    ae_provision_installed(p, d->name, w->cert, w->cert_id[0] ? w->cert_id : NULL, 1, NULL);
    ae_provision_pump(p);
    return;
  default: {
    /* Storage unreachable: no lock, so no order. */
    ae_acme_result res = {.code = w->rc, .problem = "acmedge:storage", .detail = w->err.msg, .retryable = 1};
    lk->slot = 0;
    ae_provision_job_done(d, &res);
    return;
  }
  }
}

static void after_cb(lock_work *w) {
  ae_plock *lk = w->lk;
  ae_provision *p = lk->p;
  p->bg--;
  if (w->op == LK_ACQUIRE) {
    if (!lk->d || p->closing) {
      if (w->result == LR_ACQUIRED) { /* the record went away meanwhile: give the lock back */
        lk->token = w->token;
        queue_op(lk, LK_UNLOCK);
      }
    } else {
      acquired(lk, w);
    }
  } else if (w->op == LK_RENEW) {
    lk->renewing = 0;
    if (lk->held && w->token == lk->token) {
      if (w->rc == 0)
        lk->last_ok_ms = w->sent_ms;
      else if (w->rc == AE_ECANCELED)
        self_fence(lk, w->err.msg);
      else
        AE_WARN(SUB, "%s: lease renewal failed: %s", lk->lname, w->err.msg);
    }
  } else {
    if (w->drop_order < 0)
      AE_WARN(SUB, "%s: deleting the saved order: %s", lk->lname, w->order_err.msg);
    else if (w->drop_order)
      AE_INFO(SUB, "%s: saved order deleted after the failure (if the lock was still ours)", lk->domain);
    if (w->rc != 0)
      AE_WARN(SUB, "%s: releasing the issuance lock: %s", lk->lname, w->err.msg);
  }
  order_free(w->order);
  ae_cert_unref(w->cert);
  free(w);
  lk_unref(lk);
  ae_provision_maybe_closed(p);
}

int ae_provision_lock_needed(const ae_provision *p, const ae_dom *d) {
  return ae_storage_lock_lease(p->deps.storage) > 0 && !ae_config_internal_name(p->cfg, d->name);
}

void ae_provision_lock_begin(ae_provision *p, ae_dom *d) {
  ae_plock *lk = d->lk;
  if (!lk) {
    lk = ae_calloc(1, sizeof(*lk));
    lk->p = p;
    lk->d = d;
    lk->refs = 2; /* the record and the timer */
    snprintf(lk->lname, sizeof(lk->lname), "cert:%s:%s", p->ca_host, d->name);
    snprintf(lk->domain, sizeof(lk->domain), "%s", d->name);
    uv_timer_init(p->deps.loop, &lk->timer);
    lk->timer.data = lk;
    d->lk = lk;
  }
  lk->lease_ms = ae_storage_lock_lease(p->deps.storage);
  lk->fenced = 0;
  lk->drop_order = 0;
  lk->slot = 1;
  queue_op(lk, LK_ACQUIRE);
}

int ae_provision_lock_fence(const ae_dom *d, uint64_t *fence) {
  *fence = 0;
  ae_plock *lk = d ? d->lk : NULL;
  if (!lk)
    return 0;
  if (!lk->held || lk->fenced)
    return AE_ECANCELED;
  /* The heartbeat may not have run yet after a long pause (SIGSTOP, overload): judge by time. */
  if (since_ok(lk) >= lk->lease_ms - lk->lease_ms / 3)
    return AE_ECANCELED;
  *fence = lk->token;
  return 0;
}

void ae_provision_lock_end(ae_provision *p, ae_dom *d) {
  ae_plock *lk = d ? d->lk : NULL;
  if (!lk)
    return;
  stop_timer(lk);
  if (lk->held) {
    lk->held = 0;
    queue_op(lk, LK_UNLOCK);
  }
  (void)p;
}

ae_storage_order *ae_provision_lock_take_resume(ae_dom *d) {
  ae_plock *lk = d ? d->lk : NULL;
  if (!lk)
    return NULL;
  ae_storage_order *o = lk->resume;
  lk->resume = NULL;
  return o;
}

void ae_provision_lock_drop_order(ae_dom *d) {
  if (d && d->lk && d->lk->held)
    d->lk->drop_order = 1;
}

void ae_provision_lock_detach(ae_provision *p, ae_dom *d) {
  ae_plock *lk = d->lk;
  if (!lk)
    return;
  ae_provision_lock_end(p, d);
  if (lk->slot) { /* still waiting for the lock: the slot is ours to give back */
    lk->slot = 0;
    p->active--;
    ae_metrics_add(AE_M_ORDERS_IN_FLIGHT, -1);
  }
  d->lk = NULL;
  lk->d = NULL;
  lk->timer_closing = 1;
  p->closing_handles++;
  uv_close((uv_handle_t *)&lk->timer, timer_closed);
  lk_unref(lk); /* the record's reference */
}
