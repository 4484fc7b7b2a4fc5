/* Order resume (docs/cluster.md): an order created under a cluster-wide issuance lock is saved
 * in storage with the new certificate key and CSR before any authorization is answered, so that
 * the instance that takes the name over after the holder died continues that order (answer the
 * authorizations, finalize, poll or download) instead of placing another one. */
#include "acme_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "acmedge/log.h"

#define ORDER_KEEP_MAX_S (7 * 24 * 3600)

static const char *jstr(json_t *o, const char *key) {
  json_t *v = json_object_get(o, key);
  return json_is_string(v) ? json_string_value(v) : NULL;
}

ae_acme_resume_action ae_acme_resume_decide(long http_status, const char *status, int64_t expires, int64_t now) {
  if (http_status != 200 || status == NULL)
    return AE_RESUME_NEW;
  if (expires > 0 && expires <= now)
    return AE_RESUME_NEW;
  if (strcmp(status, "pending") == 0)
    return AE_RESUME_AUTHZ;
  if (strcmp(status, "ready") == 0)
    return AE_RESUME_FINALIZE;
  if (strcmp(status, "processing") == 0)
    return AE_RESUME_POLL;
  if (strcmp(status, "valid") == 0)
    return AE_RESUME_DOWNLOAD;
  return AE_RESUME_NEW; /* invalid, or a status RFC 8555 does not know */
}

const char *ae_acme_resume_action_name(ae_acme_resume_action a) {
  switch (a) {
  case AE_RESUME_AUTHZ:
    return "authorizations";
  case AE_RESUME_FINALIZE:
    return "finalize";
  case AE_RESUME_POLL:
    return "poll";
  case AE_RESUME_DOWNLOAD:
    return "download";
  default:
    return "new";
  }
}

void acme_resume_free(ae_acme_job *job) {
  free(job->csr);
  job->csr = NULL;
  json_decref(job->saving_order);
  job->saving_order = NULL;
  ae_storage_order_clear(&job->save_rec);
  if (job->resume) {
    ae_storage_order_clear(job->resume);
    free(job->resume);
    job->resume = NULL;
  }
}

/* ---------- saving a new order ---------- */

int acme_order_saving(const ae_acme_job *job) {
  return job->fence > 0 && ae_storage_saves_orders(job->a->storage);
}

/* Thread pool: the key and CSR the order will be finalized with, then the fenced write. */
static void save_work(uv_work_t *w) {
  ae_acme_job *job = w->data;
  ae_acme *a = job->a;
  job->work_rc = 0;
  if (job->cert_key == NULL) {
    ae_key_type type = a->cfg->acme.key_rsa ? AE_KEY_RSA_2048 : AE_KEY_ECDSA_P256;
    if ((job->work_rc = ae_key_generate(type, &job->cert_key, &job->work_err)) != 0)
      return;
  }
  free(job->csr);
  job->csr = NULL;
  if ((job->work_rc = ae_csr_new(job->cert_key, job->domain, &job->csr, &job->work_err)) != 0)
    return;
  ae_storage_order *o = &job->save_rec;
  if ((job->work_rc = ae_key_to_pem(job->cert_key, &o->key_pem, &job->work_err)) != 0)
    return;
  o->csr = ae_strdup(job->csr);
  job->work_rc = ae_storage_order_put(a->storage, job->domain, o, &job->work_err);
}

static void save_done(uv_work_t *w, int status) {
  ae_acme_job *job = w->data;
  job->work_busy = 0;
  ae_storage_order_clear(&job->save_rec);
  if (job->ended) {
    acme_job_work_done(job);
    return;
  }
  json_t *order = job->saving_order;
  job->saving_order = NULL;
  if (status != 0 || job->cert_key == NULL || job->csr == NULL) {
    json_decref(order);
    acme_job_fail(job, job->work_rc < 0 ? job->work_rc : AE_ERR, "acmedge:internal",
                  job->work_err.msg[0] ? job->work_err.msg : "certificate key generation failed", 1, 0);
    return;
  }
  if (job->work_rc == AE_EEXIST) {
    /* A newer holder has the name: it continues or replaces this order, we stop here. */
    json_decref(order);
    acme_job_fail(job, AE_ECANCELED, "acmedge:lock-lost", job->work_err.msg, 1, 0);
    return;
  }
  if (job->work_rc != 0)
    AE_WARN(ACME_SUB, "%s: order %s not saved (%s); an instance taking over would order again", job->domain,
            job->order_url, job->work_err.msg);
  else
    AE_INFO(ACME_SUB, "%s: order %s saved for resume (fence %llu)", job->domain, job->order_url,
            (unsigned long long)job->fence);
  acme_order_dispatch(job, order, NULL);
  json_decref(order);
}

void acme_order_save(ae_acme_job *job, json_t *order) {
  ae_acme *a = job->a;
  int64_t now = (int64_t)time(NULL), expires = 0;
  const char *ex = jstr(order, "expires");
  if (ex == NULL || ae_time_parse_rfc3339(ex, &expires) != 0 || expires > now + ORDER_KEEP_MAX_S)
    expires = now + ORDER_KEEP_MAX_S;
  ae_storage_order *o = &job->save_rec;
  ae_storage_order_clear(o);
  o->url = ae_strdup(job->order_url);
  snprintf(o->ca_host, sizeof(o->ca_host), "%s", a->ca_host);
  o->fence = job->fence;
  o->created = now;
  o->expires = expires;
  json_decref(job->saving_order);
  job->saving_order = json_incref(order);
  job->work.data = job;
  job->work_busy = 1;
  int rc = uv_queue_work(a->loop, &job->work, save_work, save_done);
  if (rc != 0) {
    job->work_busy = 0;
    json_decref(job->saving_order);
    job->saving_order = NULL;
    ae_storage_order_clear(o);
    acme_job_fail(job, AE_ERR, "acmedge:internal", uv_strerror(rc), 1, 0);
  }
}

/* ---------- continuing a saved order ---------- */

/* Forgets the saved order and places a new one (whose save replaces the record). */
static void resume_abandon(ae_acme_job *job, const char *why) {
  AE_INFO(ACME_SUB, "%s: saved order %s %s; placing a new order", job->domain, job->resume->url, why);
  ae_storage_order_clear(job->resume);
  free(job->resume);
  job->resume = NULL;
  free(job->order_url);
  free(job->finalize_url);
  job->order_url = job->finalize_url = NULL;
  for (size_t i = 0; i < job->nauthz; i++)
    free(job->authz[i]);
  free(job->authz);
  job->authz = NULL;
  job->nauthz = job->iauthz = 0;
  ae_key_free(job->cert_key);
  job->cert_key = NULL;
  free(job->csr);
  job->csr = NULL;
  acme_order_new(job);
}

/* 1 when the order is for exactly our one name. */
static int order_is_ours(ae_acme_job *job, json_t *order) {
  json_t *ids = json_object_get(order, "identifiers");
  if (!json_is_array(ids) || json_array_size(ids) != 1)
    return 0;
  const char *v = jstr(json_array_get(ids, 0), "value");
  return v != NULL && strcasecmp(v, job->domain) == 0;
}

static void on_resume(ae_acme_job *job, const ae_http_response *resp) {
  json_t *order = NULL;
  if (resp->code == 0 && resp->status == 200 && resp->body != NULL) {
    json_error_t je;
    order = json_loadb(resp->body, resp->body_len, 0, &je);
  }
  int64_t now = (int64_t)time(NULL), expires = 0;
  const char *ex = jstr(order, "expires");
  if (ex != NULL && ae_time_parse_rfc3339(ex, &expires) != 0)
    expires = 0;
  ae_acme_resume_action act =
      ae_acme_resume_decide(resp->code < 0 ? -1 : resp->status, json_is_object(order) ? jstr(order, "status") : NULL,
                            expires, now);
  char why[160];
  if (act != AE_RESUME_NEW && !order_is_ours(job, order)) {
    act = AE_RESUME_NEW;
    snprintf(why, sizeof(why), "is for other identifiers");
  } else if (resp->code < 0) {
    snprintf(why, sizeof(why), "cannot be read (%.100s)", resp->error[0] ? resp->error : "no answer");
  } else if (resp->status != 200 || !json_is_object(order)) {
    snprintf(why, sizeof(why), "is gone or unreadable (HTTP %ld)", resp->status);
  } else {
    snprintf(why, sizeof(why), "is %.40s%s", jstr(order, "status") ? jstr(order, "status") : "without status",
             expires > 0 && expires <= now ? " and expired" : "");
  }
  ae_key *key = NULL;
  ae_err err = {0};
  if (act != AE_RESUME_NEW && ae_key_from_pem(job->resume->key_pem, strlen(job->resume->key_pem), &key, &err) != 0) {
    act = AE_RESUME_NEW;
    snprintf(why, sizeof(why), "has an unusable key (%.100s)", err.msg);
  }
  json_t *authz = json_object_get(order, "authorizations");
  const char *fin = jstr(order, "finalize");
  if (act == AE_RESUME_AUTHZ &&
      (!json_is_array(authz) || json_array_size(authz) == 0 || json_array_size(authz) > ACME_MAX_AUTHZ)) {
    act = AE_RESUME_NEW;
    snprintf(why, sizeof(why), "is pending without authorizations");
  }
  if (act == AE_RESUME_NEW) {
    ae_key_free(key);
    json_decref(order);
    resume_abandon(job, why);
    return;
  }
  AE_INFO(ACME_SUB, "%s: saved order %s %s: continuing with %s", job->domain, job->resume->url, why,
          ae_acme_resume_action_name(act));
  free(job->order_url);
  job->order_url = ae_strdup(job->resume->url);
  free(job->finalize_url);
  job->finalize_url = fin ? ae_strdup(fin) : NULL;
  job->cert_key = key;
  free(job->csr);
  job->csr = ae_strdup(job->resume->csr);
  if (json_is_array(authz) && json_array_size(authz) <= ACME_MAX_AUTHZ) {
    job->authz = ae_calloc(json_array_size(authz) + 1, sizeof(char *));
    size_t i;
    json_t *v;
    json_array_foreach(authz, i, v) {
      if (json_is_string(v))
        job->authz[job->nauthz++] = ae_strdup(json_string_value(v));
    }
  }
  job->poll_deadline = ae_now_ms() + ACME_POLL_TOTAL_MS;
  if (job->cb.on_progress != NULL)
    job->cb.on_progress(job->cb.ud, "order_resumed", job->order_url);
  if (!job->ended)
    acme_order_dispatch(job, order, resp);
  json_decref(order);
}

void acme_resume_fetch(ae_acme_job *job) {
  AE_INFO(ACME_SUB, "%s: resuming order %s (saved under fence %llu)", job->domain, job->resume->url,
          (unsigned long long)job->resume->fence);
  acme_post(job, job->resume->url, NULL, 0, on_resume);
}
