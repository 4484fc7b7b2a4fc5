/* The intermediate's renewal timer: a renewal only at mint time would leave an idle server (all
 * leaves cached or stored) serving an intermediate until it expires, so a timer checks it too.
 * The renewal (keygen, sign, fsync'd write) runs in the thread pool; the loop only emits the event. */
#include "acmedge/ca.h"

#include <stdlib.h>
#include <time.h>

#include "acmedge/log.h"

#define SUB "ca"

struct ae_ca_rotor {
  uv_loop_t *loop;
  uv_timer_t timer;
  uv_work_t work;
  ae_ca *ca;
  ae_events *events;
  int busy;      /* a renewal is in the thread pool */
  int rc;        /* its result */
  ae_err err;
  int closing, timer_closed;
  void (*done)(void *ud);
  void *ud;
};

static void maybe_done(ae_ca_rotor *r) {
  if (!r->closing || r->busy || !r->timer_closed || !r->done)
    return;
  void (*done)(void *) = r->done;
  r->done = NULL;
  done(r->ud);
}

/* Emits ca_rotated for a rotation not reported yet (ours, a mint's or the start-up's). */
static void report(ae_ca_rotor *r) {
  ae_ca_rotation rot;
  if (!ae_ca_take_rotation(r->ca, &rot))
    return;
  char ona[40], nna[40];
  ae_time_rfc3339(rot.old_not_after, ona, sizeof(ona));
  ae_time_rfc3339(rot.new_not_after, nna, sizeof(nna));
  AE_INFO(SUB, "intermediate CA rotated: %s -> %s (valid until %s)", rot.old_fp, rot.new_fp, nna);
  ae_events_emit(r->events, "ca_rotated", NULL,
                 json_pack("{s:s,s:s,s:s,s:s}", "old_sha256", rot.old_fp, "new_sha256", rot.new_fp, "old_not_after",
                           ona, "not_after", nna));
}

static void work_cb(uv_work_t *w) {
  ae_ca_rotor *r = w->data;
  int rotated = 0;
  r->err = (ae_err){0};
  r->rc = ae_ca_rotate_if_due(r->ca, (int64_t)time(NULL), &rotated, &r->err);
}

static void after_cb(uv_work_t *w, int status) {
  ae_ca_rotor *r = w->data;
  r->busy = 0;
  if (status == 0 && r->rc != 0)
    AE_WARN(SUB, "intermediate CA renewal failed (retried at the next check): %s", r->err.msg);
  if (!r->closing)
    report(r);
  maybe_done(r);
}

static void tick(uv_timer_t *t) {
  ae_ca_rotor *r = t->data;
  if (r->busy || r->closing)
    return;
  r->work.data = r;
  if (uv_queue_work(r->loop, &r->work, work_cb, after_cb) == 0)
    r->busy = 1;
}

int ae_ca_rotor_start(uv_loop_t *loop, ae_ca *ca, ae_events *events, ae_ca_rotor **out, ae_err *err) {
  ae_ca_rotor *r = ae_calloc(1, sizeof(*r));
  r->loop = loop;
  r->ca = ca;
  r->events = events;
  uint64_t ms = (uint64_t)ae_ca_check_interval_s(ca) * 1000u;
  if (uv_timer_init(loop, &r->timer) != 0) {
    free(r);
    return ae_err_set(err, AE_ERR, "internal CA: cannot create the renewal timer");
  }
  r->timer.data = r;
  /* The first check comes at once: it reports a renewal done at start-up. */
  uv_timer_start(&r->timer, tick, 0, ms);
  *out = r;
  return 0;
}

static void timer_closed(uv_handle_t *h) {
  ae_ca_rotor *r = h->data;
  r->timer_closed = 1;
  maybe_done(r);
}

void ae_ca_rotor_close(ae_ca_rotor *r, void (*done)(void *ud), void *ud) {
  r->closing = 1;
  r->done = done;
  r->ud = ud;
  uv_timer_stop(&r->timer);
  uv_close((uv_handle_t *)&r->timer, timer_closed);
  /* A queued renewal that has not started is dropped (after_cb sees UV_ECANCELED). */
  if (r->busy)
    uv_cancel((uv_req_t *)&r->work);
}

void ae_ca_rotor_free(ae_ca_rotor *r) { free(r); }
