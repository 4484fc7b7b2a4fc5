/* ACME prerequisites shared by all jobs of a client: the directory and the account.
 *
 * One job at a time (the leader) fetches the directory and registers the account; jobs that
 * need them meanwhile wait and are resumed when the leader is done. The account key is
 * persisted before it is ever used, so a crash can never leave a registered account whose key
 * is lost. */
#include "acme_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "acmedge/log.h"

static void prereq_step(ae_acme_job *job);

/* A waiter resumes through acme_job_prereq again: the account may have been forgotten (another
 * job saw accountDoesNotExist) between the leader finishing and this timer firing. */
static void prereq_resume(ae_acme_job *job) { acme_job_prereq(job, job->after_prereq); }

static void prereq_done(ae_acme_job *job) {
  ae_acme *a = job->a;
  a->prereq_leader = NULL;
  job->in_prereq = 0;
  /* Resume the waiters from the loop, each through its own timer. */
  for (ae_acme_job *w = a->jobs; w != NULL; w = w->next) {
    if (w->waiting_prereq) {
      w->waiting_prereq = 0;
      acme_job_later(w, 0, prereq_resume);
    }
  }
  acme_step_fn after = job->after_prereq;
  job->after_prereq = NULL;
  after(job);
}

void acme_prereq_abandon(ae_acme *a, ae_acme_job *leader, const ae_acme_result *res) {
  if (a->prereq_leader != leader) return;
  a->prereq_leader = NULL;
  leader->in_prereq = 0;
  if (res == NULL) {
    /* The leader was cancelled: the first waiter takes over. */
    for (ae_acme_job *w = a->jobs; w != NULL; w = w->next) {
      if (w->waiting_prereq && w != leader) {
        w->waiting_prereq = 0;
        a->prereq_leader = w;
        w->in_prereq = 1;
        acme_job_later(w, 0, prereq_step);
        return;
      }
    }
    return;
  }
  /* The leader failed to reach the CA or register: the waiters would fail the same way, one
   * after the other. End them now with the same result. */
  size_t n = 0;
  for (ae_acme_job *w = a->jobs; w != NULL; w = w->next) {
    if (w->waiting_prereq && w != leader) n++;
  }
  if (n == 0) return;
  ae_acme_job **list = ae_calloc(n, sizeof(*list));
  size_t i = 0;
  for (ae_acme_job *w = a->jobs; w != NULL && i < n; w = w->next) {
    if (w->waiting_prereq && w != leader) list[i++] = w;
  }
  /* Job memory is released only from close callbacks, so these pointers stay valid even when
   * an on_done below cancels other jobs. */
  for (i = 0; i < n; i++) {
    if (list[i]->ended) continue;
    list[i]->waiting_prereq = 0;
    acme_job_fail(list[i], res->code, res->problem, res->detail, res->retryable, res->retry_after);
  }
  free(list);
}

void acme_job_prereq(ae_acme_job *job, acme_step_fn after) {
  ae_acme *a = job->a;
  job->after_prereq = after;
  if (a->have_dir && (job->ari || (a->account_url != NULL && a->account_key != NULL))) {
    job->after_prereq = NULL;
    after(job);
    return;
  }
  if (a->prereq_leader != NULL && a->prereq_leader != job) {
    AE_DEBUG(ACME_SUB, "%s: waiting for the directory/account", job->domain);
    job->waiting_prereq = 1;
    return;
  }
  a->prereq_leader = job;
  job->in_prereq = 1;
  prereq_step(job);
}

/* ---------- directory ---------- */

static void on_directory(ae_acme_job *job, const ae_http_response *resp) {
  ae_acme *a = job->a;
  if (resp->code < 0 || resp->status != 200) {
    acme_job_fail_resp(job, resp, "directory");
    return;
  }
  json_t *dir = acme_resp_json(job, resp, "directory");
  if (dir == NULL) return;
  const char *nn = json_string_value(json_object_get(dir, "newNonce"));
  const char *na = json_string_value(json_object_get(dir, "newAccount"));
  const char *no = json_string_value(json_object_get(dir, "newOrder"));
  if (nn == NULL || na == NULL || no == NULL || nn[0] == '\0' || na[0] == '\0' || no[0] == '\0') {
    json_decref(dir);
    acme_job_fail(job, AE_EPROTO, "acmedge:bad-response", "directory: newNonce, newAccount or newOrder missing", 1,
                  0);
    return;
  }
  free(a->url_new_nonce);
  free(a->url_new_account);
  free(a->url_new_order);
  a->url_new_nonce = ae_strdup(nn);
  a->url_new_account = ae_strdup(na);
  a->url_new_order = ae_strdup(no);
  /* renewalInfo is optional (RFC 9773): without it the caller keeps its own schedule. */
  const char *ri = json_string_value(json_object_get(dir, "renewalInfo"));
  free(a->url_renewal_info);
  a->url_renewal_info = (ri != NULL && ri[0] != '\0') ? ae_strdup(ri) : NULL;
  const char *rc = json_string_value(json_object_get(dir, "revokeCert"));
  free(a->url_revoke_cert);
  a->url_revoke_cert = (rc != NULL && rc[0] != '\0') ? ae_strdup(rc) : NULL;
  a->eab_required = json_is_true(json_object_get(json_object_get(dir, "meta"), "externalAccountRequired"));
  a->have_dir = 1;
  json_decref(dir);
  AE_DEBUG(ACME_SUB, "%s: directory loaded from %s%s", job->domain, a->cfg->acme.directory,
           a->url_renewal_info ? " (renewalInfo offered)" : "");
  /* Renewal information queries waiting for this leader need nothing more: let them go now
   * rather than after the account is registered (or failed to be). */
  for (ae_acme_job *w = a->jobs; w != NULL; w = w->next) {
    if (w->waiting_prereq && w->ari && w != job) {
      w->waiting_prereq = 0;
      acme_job_later(w, 0, prereq_resume);
    }
  }
  prereq_step(job);
}

/* ---------- account key and account.json ---------- */

/* Reads account.key (and the URL from account.json), or generates and persists a new key. Runs
 * in the thread pool: on a shared storage each read is a network round trip, which must not
 * stall the loop. Touches only the storage and the client's fixed paths; the outcome goes into
 * the job's acct_* fields and is applied on the loop by account_loaded_cb. */
static void account_work(uv_work_t *w) {
  ae_acme_job *job = w->data;
  ae_acme *a = job->a;
  ae_err *err = &job->work_err;
  for (int attempt = 0;; attempt++) {
    char *pem = NULL;
    size_t len = 0;
    int rc = ae_storage_get(a->storage, a->key_path, &pem, &len, err);
    if (rc == 0) {
      ae_key *k = NULL;
      ae_err kerr = {0};
      rc = ae_key_from_pem(pem, len, &k, &kerr);
      free(pem);
      if (rc < 0) {
        ae_err_set(err, rc, "%s: %s", a->key_path, kerr.msg);
        job->acct_fatal = 1;
        job->work_rc = rc;
        return;
      }
      job->acct_key = k;
      char *js = NULL;
      size_t jslen = 0;
      ae_err jerr = {0};
      if (ae_storage_get(a->storage, a->json_path, &js, &jslen, &jerr) == 0) {
        json_error_t perr;
        json_t *o = json_loadb(js, jslen, 0, &perr);
        const char *url = json_string_value(json_object_get(o, "url"));
        if (url != NULL && url[0] != '\0') job->acct_url = ae_strdup(url);
        json_decref(o);
        free(js);
      }
      job->work_rc = 0;
      return;
    }
    if (rc != AE_ENOTFOUND) {
      char msg[sizeof(err->msg)];
      snprintf(msg, sizeof(msg), "%s", err->msg);
      ae_err_set(err, rc, "reading %s: %s", a->key_path, msg);
      job->work_rc = rc;
      return;
    }
    /* Account keys are always ECDSA P-256; acme.key_type is for certificate keys. */
    ae_key *k = NULL;
    ae_err kerr = {0};
    rc = ae_key_generate(AE_KEY_ECDSA_P256, &k, &kerr);
    if (rc == 0) rc = ae_key_to_pem(k, &pem, &kerr);
    if (rc < 0) {
      ae_key_free(k);
      ae_err_set(err, rc, "%s", kerr.msg);
      job->acct_internal = 1;
      job->work_rc = rc;
      return;
    }
    /* Create-if-absent: instances sharing the storage that start empty at once all generate a
     * key, one of them is stored, and the others adopt it, so the CA sees one account. */
    rc = ae_storage_put_new(a->storage, a->key_path, pem, strlen(pem), 1, &kerr);
    memset(pem, 0, strlen(pem));
    free(pem);
    if (rc == AE_EEXIST && attempt == 0) {
      ae_key_free(k);
      job->account_adopted = 1;
      continue;
    }
    if (rc < 0) {
      ae_key_free(k);
      ae_err_set(err, rc, "persisting %s: %s", a->key_path, kerr.msg);
      job->work_rc = rc;
      return;
    }
    job->acct_key = k;
    job->acct_generated = 1;
    job->work_rc = 0;
    return;
  }
}

static void account_loaded_cb(uv_work_t *w, int status) {
  ae_acme_job *job = w->data;
  ae_acme *a = job->a;
  job->work_busy = 0;
  ae_key *k = job->acct_key;
  char *url = job->acct_url;
  job->acct_key = NULL;
  job->acct_url = NULL;
  if (job->ended) {
    ae_key_free(k);
    free(url);
    acme_job_work_done(job);
    return;
  }
  if (status != 0 || job->work_rc < 0 || k == NULL) {
    ae_key_free(k);
    free(url);
    int rc = job->work_rc < 0 ? job->work_rc : AE_ERR;
    const char *msg = job->work_err.msg[0] ? job->work_err.msg : "loading the account key failed";
    if (job->acct_fatal)
      acme_job_fail(job, rc, "acmedge:account-key", msg, 0, 0);
    else
      acme_job_fail(job, rc, job->acct_internal ? "acmedge:internal" : "acmedge:storage", msg, 1, 0);
    return;
  }
  if (job->account_adopted)
    AE_INFO(ACME_SUB, "%s: another instance stored an account key first; using it", job->domain);
  if (job->acct_generated) {
    AE_INFO(ACME_SUB, "%s: generated account key %s", job->domain, a->key_path);
  } else {
    AE_INFO(ACME_SUB, "%s: using stored account key %s%s%s", job->domain, a->key_path, url ? ", account " : "",
            url ? url : "");
  }
  ae_key_free(a->account_key);
  a->account_key = k;
  free(a->account_url);
  a->account_url = url;
  a->account_loaded = 1;
  prereq_step(job);
}

/* Starts reading (or creating) the account key off the loop; prereq_step resumes when done. */
static void account_load(ae_acme_job *job) {
  job->work_rc = 0;
  memset(&job->work_err, 0, sizeof(job->work_err));
  job->acct_fatal = job->acct_internal = job->acct_generated = 0;
  job->work.data = job;
  job->work_busy = 1;
  int rc = uv_queue_work(job->a->loop, &job->work, account_work, account_loaded_cb);
  if (rc != 0) {
    job->work_busy = 0;
    acme_job_fail(job, AE_ERR, "acmedge:internal", uv_strerror(rc), 1, 0);
  }
}

static void account_save_json(ae_acme_job *job) {
  ae_acme *a = job->a;
  char now[40];
  ae_time_rfc3339((int64_t)time(NULL), now, sizeof(now));
  json_t *o = json_object();
  json_object_set_new(o, "url", json_string(a->account_url));
  json_object_set_new(o, "directory", json_string(a->cfg->acme.directory));
  json_t *contact = json_array();
  if (a->cfg->acme.email != NULL && a->cfg->acme.email[0] != '\0') {
    char mail[512];
    snprintf(mail, sizeof(mail), "mailto:%s", a->cfg->acme.email);
    json_array_append_new(contact, json_string(mail));
  }
  json_object_set_new(o, "contact", contact);
  json_object_set_new(o, "created", json_string(now));
  char *text = json_dumps(o, JSON_INDENT(2) | JSON_SORT_KEYS);
  json_decref(o);
  if (text == NULL) return;
  ae_err err = {0};
  /* Losing account.json only costs one newAccount call (same key, same account), so a failed
   * write is logged, not fatal. */
  if (ae_storage_put(a->storage, a->json_path, text, strlen(text), 1, &err) < 0)
    AE_WARN(ACME_SUB, "%s: could not save %s: %s", job->domain, a->json_path, err.msg);
  free(text);
}

/* ---------- newAccount ---------- */

static void on_new_account(ae_acme_job *job, const ae_http_response *resp) {
  ae_acme *a = job->a;
  if (resp->code < 0 || (resp->status != 200 && resp->status != 201)) {
    acme_job_fail_resp(job, resp, "newAccount");
    return;
  }
  json_t *acct = acme_resp_json(job, resp, "newAccount");
  if (acct == NULL) return;
  const char *status = json_string_value(json_object_get(acct, "status"));
  if (status != NULL && strcmp(status, "valid") != 0) {
    char detail[128];
    snprintf(detail, sizeof(detail), "account status is '%.40s'", status);
    json_decref(acct);
    acme_job_fail(job, AE_EPROTO, "acmedge:account-deactivated", detail, 0, 0);
    return;
  }
  json_decref(acct);
  if (resp->location == NULL || resp->location[0] == '\0') {
    acme_job_fail(job, AE_EPROTO, "acmedge:bad-response", "newAccount: no Location header", 1, 0);
    return;
  }
  free(a->account_url);
  a->account_url = ae_strdup(resp->location);
  AE_INFO(ACME_SUB, "%s: account %s %s", job->domain, a->account_url,
          resp->status == 201 ? "registered" : "already registered");
  account_save_json(job);
  prereq_step(job);
}

static void new_account(ae_acme_job *job) {
  ae_acme *a = job->a;
  json_t *payload = json_object();
  json_object_set_new(payload, "termsOfServiceAgreed", json_true());
  if (a->cfg->acme.email != NULL && a->cfg->acme.email[0] != '\0') {
    char mail[512];
    snprintf(mail, sizeof(mail), "mailto:%s", a->cfg->acme.email);
    json_object_set_new(payload, "contact", json_pack("[s]", mail));
  }
  if (a->cfg->acme.eab_kid != NULL && a->cfg->acme.eab_hmac_key != NULL) {
    json_t *jwk = ae_key_jwk(a->account_key);
    json_t *eab = NULL;
    ae_err err = {0};
    int rc = jwk ? ae_jws_eab(a->cfg->acme.eab_kid, a->cfg->acme.eab_hmac_key, jwk, a->url_new_account, &eab, &err)
                 : ae_err_set(&err, AE_ERR, "cannot build the account JWK");
    json_decref(jwk);
    if (rc < 0) {
      json_decref(payload);
      char detail[600];
      snprintf(detail, sizeof(detail), "external account binding: %s", err.msg);
      acme_job_fail(job, rc, "acmedge:account-key", detail, 0, 0);
      return;
    }
    json_object_set_new(payload, "externalAccountBinding", eab);
  }
  char *text = json_dumps(payload, JSON_COMPACT);
  json_decref(payload);
  AE_INFO(ACME_SUB, "%s: registering account at %s", job->domain, a->url_new_account);
  acme_post(job, a->url_new_account, text ? text : "{}", 1, on_new_account);
  free(text);
}

static void prereq_step(ae_acme_job *job) {
  ae_acme *a = job->a;
  if (!a->have_dir) {
    acme_get(job, a->cfg->acme.directory, on_directory);
    return;
  }
  if (job->ari) {
    prereq_done(job);
    return;
  }
  if (!a->account_loaded) {
    account_load(job);
    return;
  }
  if (a->account_url == NULL) {
    new_account(job);
    return;
  }
  prereq_done(job);
}
