/* The OCSP service on the control loop: turns the cache's fetch requests (queued from any thread)
 * into HTTP POSTs to the certificate's responder, verifies the answers, records them in the
 * cache, persists good staples, and reports revocations.
 *
 * Handshake threads only ever append to the pending list and poke a uv_async; everything else
 * (HTTP, storage, events) happens here, on the loop that owns those modules. */
#include "ocsp_internal.h"

#include <gnutls/ocsp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "acmedge/log.h"

#define SUB "ocsp"
#define FETCH_TIMEOUT_MS 10000u
#define FETCH_MAX_BODY (1024u * 1024u)
#define SWEEP_MS 5000u
#define URL_MAX 1024

typedef struct job {
  struct job *next, *prev;
  ae_ocsp *o;
  ae_cert *cert;
  uint64_t gen;
  ae_httpc_req *req;
  gnutls_x509_crt_t leaf, issuer;
  uint64_t started_ms;
} job;

int64_t ae_ocsp_now(void) { return (int64_t)time(NULL); }

/* Called from any thread by the cache: queue only. */
static void on_need(void *ud, ae_cert *cert, uint64_t gen) {
  ae_ocsp *o = ud;
  job *j = ae_calloc(1, sizeof(*j));
  j->o = o;
  j->cert = cert; /* the reference the cache handed us */
  j->gen = gen;
  pthread_mutex_lock(&o->mu);
  if (o->closing) {
    pthread_mutex_unlock(&o->mu);
    ae_cert_unref(cert);
    free(j);
    return;
  }
  j->next = o->pending;
  o->pending = j;
  /* Under the lock: close sets closing under it before closing the handle. */
  uv_async_send(&o->async);
  pthread_mutex_unlock(&o->mu);
}

static void job_free(job *j) {
  if (j->leaf)
    gnutls_x509_crt_deinit(j->leaf);
  if (j->issuer)
    gnutls_x509_crt_deinit(j->issuer);
  ae_cert_unref(j->cert);
  free(j);
}

static void job_unlink(job *j) {
  ae_ocsp *o = j->o;
  if (j->prev)
    j->prev->next = j->next;
  else
    o->running = j->next;
  if (j->next)
    j->next->prev = j->prev;
  j->next = j->prev = NULL;
}

const char *ae_ocsp_cert_domain(ae_cert *cert) {
  const char *n = ae_cert_name(cert, 0);
  return n ? n : "";
}

/* The entry was invalidated (revoked through ACME, renewed, deleted) while this fetch ran. */
static void log_discarded(job *j) {
  AE_DEBUG(SUB, "%s: OCSP answer for serial %s discarded: the entry changed meanwhile", ae_ocsp_cert_domain(j->cert),
           ae_cert_serial(j->cert));
}

/* Records a failed fetch: cache backoff, metric, event. */
static void fetch_failed(job *j, const char *outcome, const char *reason) {
  ae_ocsp *o = j->o;
  int rc = ae_ocsp_cache_complete(o->cache, j->cert, j->gen, AE_OCSP_FETCH_FAILED, NULL, reason, ae_ocsp_now());
  ae_ocsp_metrics_fetch(outcome);
  if (rc != 0) {
    log_discarded(j);
    return;
  }
  AE_WARN(SUB, "%s: OCSP staple for serial %s not refreshed: %s", ae_ocsp_cert_domain(j->cert),
          ae_cert_serial(j->cert), reason);
  json_t *det = json_object();
  json_object_set_new(det, "reason", json_string(reason));
  json_object_set_new(det, "serial", json_string(ae_cert_serial(j->cert)));
  ae_events_emit(o->deps.events, "ocsp_failed", ae_ocsp_cert_domain(j->cert), det);
}

static void fetch_revoked(job *j, const ae_ocsp_verdict *v) {
  ae_ocsp *o = j->o;
  const char *reason = ae_ocsp_reason_name(v->reason);
  ae_ocsp_metrics_fetch("revoked");
  if (ae_ocsp_cache_complete(o->cache, j->cert, j->gen, AE_OCSP_FETCH_REVOKED, NULL, reason, ae_ocsp_now()) != 0) {
    log_discarded(j);
    return;
  }
  const char *name = ae_ocsp_cert_domain(j->cert);
  AE_WARN(SUB, "%s: certificate %s is revoked (%s) according to its OCSP responder", name,
          ae_cert_serial(j->cert), reason);
  ae_ocsp_store_delete(o, name);
  json_t *det = json_object();
  json_object_set_new(det, "source", json_string("ocsp"));
  json_object_set_new(det, "reason", json_string(reason));
  json_object_set_new(det, "serial", json_string(ae_cert_serial(j->cert)));
  ae_events_emit(o->deps.events, "cert_revoked", name, det);
  if (o->deps.on_revoked)
    o->deps.on_revoked(o->deps.ud, name, j->cert, v->reason);
}

static void fetch_good(job *j, const unsigned char *der, size_t len, const ae_ocsp_verdict *v) {
  ae_ocsp *o = j->o;
  ae_staple *st = NULL;
  if (ae_staple_new(der, len, v->this_update, v->next_update, AE_OCSP_GOOD, &st) != 0) {
    fetch_failed(j, "error", "cannot keep the response");
    return;
  }
  int rc = ae_ocsp_cache_complete(o->cache, j->cert, j->gen, AE_OCSP_FETCH_GOOD, st, NULL, ae_ocsp_now());
  ae_ocsp_metrics_fetch("good");
  if (rc == 0) {
    const char *name = ae_ocsp_cert_domain(j->cert);
    ae_ocsp_store_put(o, name, st);
    char nu[40];
    ae_time_rfc3339(v->next_update, nu, sizeof(nu));
    json_t *det = json_object();
    json_object_set_new(det, "serial", json_string(ae_cert_serial(j->cert)));
    json_object_set_new(det, "next_update", json_string(nu));
    ae_events_emit(o->deps.events, "ocsp_stapled", name, det);
  } else {
    log_discarded(j);
  }
  ae_staple_unref(st);
}

static void on_response(void *ud, const ae_http_response *resp) {
  job *j = ud;
  ae_ocsp *o = j->o;
  j->req = NULL;
  job_unlink(j);
  char why[300];
  if (resp->code != 0) {
    snprintf(why, sizeof(why), "responder unreachable: %s", resp->error[0] ? resp->error : ae_strerror(resp->code));
    fetch_failed(j, resp->code == AE_ELIMIT ? "too_large" : "unreachable", why);
  } else if (resp->status != 200) {
    snprintf(why, sizeof(why), "responder answered HTTP %ld", resp->status);
    fetch_failed(j, "http_error", why);
  } else {
    ae_ocsp_verdict v;
    ae_err err = {0};
    if (ae_ocsp_verify((const unsigned char *)resp->body, resp->body_len, j->leaf, j->issuer, ae_ocsp_now(), &v,
                       &err) != 0) {
      fetch_failed(j, "invalid", err.msg);
    } else if (v.status == AE_OCSP_GOOD) {
      fetch_good(j, (const unsigned char *)resp->body, resp->body_len, &v);
    } else if (v.status == AE_OCSP_REVOKED) {
      fetch_revoked(j, &v);
    } else {
      fetch_failed(j, "unknown", "responder does not know the certificate (status unknown)");
    }
  }
  (void)o;
  job_free(j);
}

static int import_der(const gnutls_datum_t *der, gnutls_x509_crt_t *out) {
  if (gnutls_x509_crt_init(out) < 0) {
    *out = NULL;
    return AE_ENOMEM;
  }
  if (gnutls_x509_crt_import(*out, der, GNUTLS_X509_FMT_DER) < 0) {
    gnutls_x509_crt_deinit(*out);
    *out = NULL;
    return AE_EINVAL;
  }
  return 0;
}

int ae_ocsp_cert_pair(ae_cert *cert, gnutls_x509_crt_t *leaf, gnutls_x509_crt_t *issuer) {
  unsigned n = 0;
  gnutls_pcert_st *pc = ae_cert_pcerts(cert, &n);
  *leaf = *issuer = NULL;
  /* Without the issuer in the chain neither the request nor the signature check is possible. */
  if (n < 2)
    return AE_ENOTFOUND;
  if (import_der(&pc[0].cert, leaf) != 0)
    return AE_EINVAL;
  if (import_der(&pc[1].cert, issuer) != 0) {
    gnutls_x509_crt_deinit(*leaf);
    *leaf = NULL;
    return AE_EINVAL;
  }
  return 0;
}

static void start_job(ae_ocsp *o, job *j) {
  char url[URL_MAX];
  ae_err err = {0};
  if (!o->enabled || ae_ocsp_cert_pair(j->cert, &j->leaf, &j->issuer) != 0 ||
      ae_ocsp_responder_url(j->leaf, url, sizeof(url)) != 0) {
    /* Quietly nothing to do (no responder, or no issuer to check against): never asked again. */
    ae_ocsp_cache_complete(o->cache, j->cert, j->gen, AE_OCSP_FETCH_NO_URL, NULL, NULL, ae_ocsp_now());
    AE_DEBUG(SUB, "%s: no OCSP responder for serial %s; not stapling", ae_ocsp_cert_domain(j->cert),
             ae_cert_serial(j->cert));
    job_free(j);
    return;
  }
  unsigned char *der = NULL;
  size_t len = 0;
  if (ae_ocsp_build_request(j->leaf, j->issuer, &der, &len, &err) != 0) {
    fetch_failed(j, "error", err.msg);
    job_free(j);
    return;
  }
  ae_http_request req = {.method = "POST",
                         .url = url,
                         .body = (const char *)der,
                         .body_len = len,
                         .content_type = "application/ocsp-request",
                         .timeout_ms = FETCH_TIMEOUT_MS,
                         .max_body = FETCH_MAX_BODY};
  j->started_ms = ae_now_ms();
  j->next = o->running;
  if (o->running)
    o->running->prev = j;
  o->running = j;
  int rc = ae_httpc_request(o->http, &req, on_response, j, &j->req, &err);
  free(der);
  if (rc != 0) {
    job_unlink(j);
    fetch_failed(j, "error", err.msg);
    job_free(j);
    return;
  }
  AE_DEBUG(SUB, "%s: asking %s about serial %s", ae_ocsp_cert_domain(j->cert), url, ae_cert_serial(j->cert));
}

static void on_async(uv_async_t *a) {
  ae_ocsp *o = a->data;
  pthread_mutex_lock(&o->mu);
  job *list = o->pending;
  o->pending = NULL;
  pthread_mutex_unlock(&o->mu);
  while (list) {
    job *j = list;
    list = list->next;
    j->next = NULL;
    if (o->closing)
      job_free(j);
    else
      start_job(o, j);
  }
}

static void on_sweep(uv_timer_t *t) {
  ae_ocsp *o = t->data;
  if (o->enabled)
    ae_ocsp_cache_refresh_due(o->cache, ae_ocsp_now());
}

int ae_ocsp_new(const ae_ocsp_deps *deps, const ae_config *cfg, ae_ocsp **out, ae_err *err) {
  ae_ocsp *o = ae_calloc(1, sizeof(*o));
  o->deps = *deps;
  o->ca_host = ae_strdup(deps->ca_host ? deps->ca_host : "");
  o->enabled = cfg ? cfg->ocsp.enabled : 1;
  pthread_mutex_init(&o->mu, NULL);
  int rc = ae_httpc_new(deps->loop, &o->http, err);
  if (rc != 0) {
    pthread_mutex_destroy(&o->mu);
    free(o->ca_host);
    free(o);
    return rc;
  }
  ae_ocsp_cache_new(on_need, o, &o->cache);
  uv_async_init(deps->loop, &o->async, on_async);
  o->async.data = o;
  uv_timer_init(deps->loop, &o->sweep);
  o->sweep.data = o;
  uv_timer_start(&o->sweep, on_sweep, SWEEP_MS, SWEEP_MS);
  *out = o;
  return 0;
}

void ae_ocsp_set_config(ae_ocsp *o, const ae_config *cfg) {
  if (o && cfg)
    o->enabled = cfg->ocsp.enabled;
}

ae_ocsp_cache *ae_ocsp_staples(ae_ocsp *o) { return o && o->enabled ? o->cache : NULL; }

int ae_ocsp_enabled(const ae_ocsp *o) { return o && o->enabled; }

void ae_ocsp_cert_changed(ae_ocsp *o, const char *name, ae_cert *old_cert, ae_cert *new_cert, int loaded) {
  if (!o)
    return;
  if (old_cert && old_cert != new_cert) {
    ae_ocsp_cache_remove(o->cache, old_cert);
    /* The stored staple belongs to the certificate that is going away. */
    if (!loaded)
      ae_ocsp_store_delete(o, name);
  }
  /* A stored staple only exists for a certificate with a responder. */
  if (new_cert && loaded && o->enabled && ae_cert_has_ocsp_url(new_cert))
    ae_ocsp_store_load(o, name, new_cert);
}

void ae_ocsp_invalidate(ae_ocsp *o, const char *name, ae_cert *cert) {
  if (!o || !cert)
    return;
  ae_ocsp_cache_invalidate(o->cache, cert);
  ae_ocsp_store_delete(o, name);
}

static void closed_handle(uv_handle_t *h) {
  ae_ocsp *o = h->data;
  if (--o->open_handles == 0 && o->close_cb)
    o->close_cb(o->close_ud);
}

static void http_closed(void *ud) {
  ae_ocsp *o = ud;
  if (--o->open_handles == 0 && o->close_cb)
    o->close_cb(o->close_ud);
}

void ae_ocsp_close(ae_ocsp *o, void (*cb)(void *ud), void *ud) {
  pthread_mutex_lock(&o->mu);
  o->closing = 1;
  job *list = o->pending;
  o->pending = NULL;
  pthread_mutex_unlock(&o->mu);
  while (list) {
    job *j = list;
    list = list->next;
    job_free(j);
  }
  while (o->running) {
    job *j = o->running;
    job_unlink(j);
    if (j->req)
      ae_httpc_cancel(j->req);
    job_free(j);
  }
  o->close_cb = cb;
  o->close_ud = ud;
  o->open_handles = 3;
  uv_timer_stop(&o->sweep);
  uv_close((uv_handle_t *)&o->sweep, closed_handle);
  uv_close((uv_handle_t *)&o->async, closed_handle);
  ae_httpc_close(o->http, http_closed, o);
}

void ae_ocsp_free(ae_ocsp *o) {
  if (!o)
    return;
  ae_httpc_free(o->http);
  ae_ocsp_cache_free(o->cache);
  pthread_mutex_destroy(&o->mu);
  free(o->ca_host);
  free(o);
}
