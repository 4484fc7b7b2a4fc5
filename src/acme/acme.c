/* RFC 8555 client: the client object, job lifecycle, the request layer (nonce pool, JWS
 * signing, badNonce retry, accountDoesNotExist recovery). The account lives in acme_account.c,
 * the order flow in acme_order.c, renewal information (RFC 9773) in acme_ari.c, RFC 7807 problem
 * documents in acme_problem.c. */
#include "acme_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "acmedge/log.h"


/* ---------- client ---------- */

int ae_acme_new(uv_loop_t *loop, const ae_config *cfg, ae_storage *storage, ae_challenge *ch, ae_acme **out,
                ae_err *err) {
  if (loop == NULL || cfg == NULL || storage == NULL || ch == NULL || out == NULL)
    return ae_err_set(err, AE_EINVAL, "acme: missing loop, config, storage or challenge map");
  if (cfg->acme.directory == NULL || cfg->acme.directory[0] == '\0')
    return ae_err_set(err, AE_EINVAL, "acme: no directory URL configured");
  ae_acme *a = ae_calloc(1, sizeof(*a));
  if (ae_storage_ca_host(cfg->acme.directory, a->ca_host, sizeof(a->ca_host)) != 0 || a->ca_host[0] == '\0') {
    free(a);
    return ae_err_set(err, AE_EINVAL, "acme: cannot derive a host from directory URL '%s'", cfg->acme.directory);
  }
  int rc = ae_httpc_new(loop, &a->http, err);
  if (rc < 0) {
    free(a);
    return rc;
  }
  a->loop = loop;
  a->cfg = ae_config_ref((ae_config *)cfg);
  a->storage = storage;
  a->ch = ch;
  a->http01_ok = 1;
  a->tlsalpn01_ok = 1;
  snprintf(a->key_path, sizeof(a->key_path), "accounts/%s/account.key", a->ca_host);
  snprintf(a->json_path, sizeof(a->json_path), "accounts/%s/account.json", a->ca_host);
  *out = a;
  return 0;
}

void ae_acme_set_challenge_types(ae_acme *a, int http01, int tlsalpn01) {
  if (a == NULL) return;
  a->http01_ok = http01 != 0;
  a->tlsalpn01_ok = tlsalpn01 != 0;
}

unsigned ae_acme_jobs_in_flight(const ae_acme *a) { return a ? a->njobs : 0; }

static void nonce_put(ae_acme *a, const char *nonce) {
  if (nonce == NULL || nonce[0] == '\0' || strlen(nonce) > 256) return;
  if (a->nnonces == ACME_NONCE_POOL) {
    free(a->nonces[0]);
    memmove(a->nonces, a->nonces + 1, (ACME_NONCE_POOL - 1) * sizeof(a->nonces[0]));
    a->nnonces--;
  }
  a->nonces[a->nnonces++] = ae_strdup(nonce);
}

/* The newest nonce (least likely to have expired); caller frees. */
static char *nonce_take(ae_acme *a) {
  if (a->nnonces == 0) return NULL;
  return a->nonces[--a->nnonces];
}

static void maybe_closed(ae_acme *a) {
  if (a->closing && a->http_closed && a->nzombies == 0 && a->close_cb != NULL) {
    void (*cb)(void *) = a->close_cb;
    a->close_cb = NULL;
    cb(a->close_ud);
  }
}

/* ---------- jobs ---------- */

static void job_free(ae_acme_job *job) {
  free(job->domain);
  free(job->op.url);
  free(job->op.payload);
  free(job->op.kid);
  free(job->saved.url);
  free(job->saved.payload);
  free(job->order_url);
  free(job->finalize_url);
  free(job->cert_url);
  for (size_t i = 0; i < job->nauthz; i++) free(job->authz[i]);
  free(job->authz);
  free(job->chall_url);
  free(job->http_token);
  free(job->replaces);
  free(job->revoke_payload);
  ae_key_free(job->cert_key);
  ae_key_free(job->acct_key);
  free(job->acct_url);
  acme_resume_free(job);
  free(job);
}

static void job_maybe_free(ae_acme_job *job) {
  if (!job->ended || !job->timer_closed || job->work_busy) return;
  ae_acme *a = job->a;
  job_free(job);
  a->nzombies--;
  maybe_closed(a);
}

void acme_job_work_done(ae_acme_job *job) { job_maybe_free(job); }

static void on_timer_closed(uv_handle_t *h) {
  ae_acme_job *job = h->data;
  job->timer_closed = 1;
  job_maybe_free(job);
}

void acme_job_unpublish(ae_acme_job *job) {
  if (job->http_token != NULL) {
    ae_challenge_http01_del(job->a->ch, job->http_token);
    free(job->http_token);
    job->http_token = NULL;
  }
  if (job->alpn_published) {
    ae_challenge_alpn_del(job->a->ch, job->domain);
    job->alpn_published = 0;
  }
}

/* Detaches the job from the client and releases its handles; memory goes in job_maybe_free. */
static void job_end(ae_acme_job *job) {
  ae_acme *a = job->a;
  job->ended = 1;
  acme_job_unpublish(job);
  if (job->req != NULL) {
    ae_httpc_cancel(job->req);
    job->req = NULL;
  }
  if (job->work_busy) uv_cancel((uv_req_t *)&job->work);
  if (job->prev != NULL)
    job->prev->next = job->next;
  else
    a->jobs = job->next;
  if (job->next != NULL) job->next->prev = job->prev;
  job->prev = job->next = NULL;
  if (job->ari)
    a->nari--;
  else
    a->njobs--;
  a->nzombies++;
  uv_timer_stop(&job->timer);
  uv_close((uv_handle_t *)&job->timer, on_timer_closed);
}

void acme_job_finish(ae_acme_job *job, const ae_acme_result *res) {
  ae_acme *a = job->a;
  if (job->ended) return;
  if (a->prereq_leader == job) acme_prereq_abandon(a, job, job->in_prereq ? res : NULL);
  job_end(job);
  if (job->cb.on_done != NULL) job->cb.on_done(job->cb.ud, res);
}

void acme_job_fail(ae_acme_job *job, int code, const char *problem, const char *detail, int retryable,
                   int64_t retry_after) {
  ae_acme_result res;
  memset(&res, 0, sizeof(res));
  res.code = code < 0 ? code : AE_ERR;
  res.problem = problem;
  res.detail = detail;
  res.retryable = retryable;
  res.retry_after = retry_after;
  res.challenge_type = job->used_type;
  res.order_url = job->order_url;
  if (job->ari && code == AE_ENOTFOUND)
    AE_DEBUG(ACME_SUB, "%s: %s", job->domain, detail ? detail : "no renewal information");
  else
    AE_WARN(ACME_SUB, "%s: %s failed: %s: %s%s", job->domain, job->ari ? "renewal information query" : "issuance",
            problem ? problem : "error", detail ? detail : "", retryable ? "" : " (not retryable)");
  acme_job_finish(job, &res);
}

void acme_job_succeed(ae_acme_job *job, const char *cert_pem, const char *key_pem) {
  ae_acme_result res;
  memset(&res, 0, sizeof(res));
  res.code = 0;
  res.retryable = 0;
  res.cert_pem = cert_pem;
  res.key_pem = key_pem;
  res.challenge_type = job->used_type;
  res.order_url = job->order_url;
  AE_INFO(ACME_SUB, "%s: certificate issued (order %s)", job->domain, job->order_url ? job->order_url : "?");
  acme_job_finish(job, &res);
}

int64_t acme_retry_after_abs(const ae_http_response *resp) {
  long s = ae_http_retry_after_seconds(resp->retry_after);
  if (s < 0) return 0;
  return (int64_t)time(NULL) + s;
}

void acme_job_fail_resp(ae_acme_job *job, const ae_http_response *resp, const char *what) {
  char detail[ACME_DETAIL_MAX + ACME_SUBPROBLEMS_MAX + 128];
  if (resp->code < 0 && resp->status == 0) {
    snprintf(detail, sizeof(detail), "%s: CA unreachable: %s", what, resp->error[0] ? resp->error : ae_strerror(resp->code));
    acme_job_fail(job, resp->code, "acmedge:ca-unreachable", detail, 1, 0);
    return;
  }
  if (resp->code < 0) {
    snprintf(detail, sizeof(detail), "%s: bad response (HTTP %ld): %s", what, resp->status,
             resp->error[0] ? resp->error : ae_strerror(resp->code));
    acme_job_fail(job, AE_EPROTO, "acmedge:bad-response", detail, 1, 0);
    return;
  }
  ae_acme_problem p;
  if (resp->status >= 400 && ae_acme_problem_parse(resp->body, resp->body_len, &p) == 0) {
    snprintf(detail, sizeof(detail), "%s%s%s%s", p.detail ? p.detail : "(no detail)", p.subproblems ? " [" : "",
             p.subproblems ? p.subproblems : "", p.subproblems ? "]" : "");
    int64_t ra = acme_retry_after_abs(resp);
    int code = acme_problem_is(p.type, "rateLimited") ? AE_ELIMIT : AE_EPROTO;
    acme_job_fail(job, code, p.type, detail, ae_acme_problem_retryable(p.type), ra);
    ae_acme_problem_clear(&p);
    return;
  }
  snprintf(detail, sizeof(detail), "%s: unexpected HTTP %ld from CA", what, resp->status);
  acme_job_fail(job, AE_EPROTO, "acmedge:bad-response", detail, 1, acme_retry_after_abs(resp));
}

static int ct_is_json(const char *ct) {
  if (ct == NULL) return 0;
  for (const char *p = ct; *p != '\0' && *p != ';'; p++) {
    if (strncasecmp(p, "json", 4) == 0) return 1;
  }
  return 0;
}

json_t *acme_resp_json(ae_acme_job *job, const ae_http_response *resp, const char *what) {
  char detail[256];
  if (!ct_is_json(resp->content_type)) {
    snprintf(detail, sizeof(detail), "%s: expected JSON, got content type '%.80s'", what,
             resp->content_type ? resp->content_type : "(none)");
    acme_job_fail(job, AE_EPROTO, "acmedge:bad-response", detail, 1, 0);
    return NULL;
  }
  json_error_t jerr;
  json_t *root = resp->body_len > 0 ? json_loadb(resp->body, resp->body_len, 0, &jerr) : NULL;
  if (root == NULL || !json_is_object(root)) {
    snprintf(detail, sizeof(detail), "%s: response is not a JSON object%s%.120s", what, root ? "" : ": ",
             root ? "" : (resp->body_len > 0 ? jerr.text : "empty body"));
    json_decref(root);
    acme_job_fail(job, AE_EPROTO, "acmedge:bad-response", detail, 1, 0);
    return NULL;
  }
  return root;
}

static void on_timer(uv_timer_t *t) {
  ae_acme_job *job = t->data;
  acme_step_fn fn = job->timer_fn;
  job->timer_fn = NULL;
  if (fn != NULL && !job->ended) fn(job);
}

void acme_job_later(ae_acme_job *job, unsigned delay_ms, acme_step_fn fn) {
  job->timer_fn = fn;
  uv_timer_start(&job->timer, on_timer, delay_ms, 0);
}

void acme_poll_later(ae_acme_job *job, const ae_http_response *resp, acme_step_fn fn, const char *what) {
  uint64_t now = ae_now_ms();
  if (now >= job->poll_deadline) {
    char detail[256];
    snprintf(detail, sizeof(detail), "%s: still not done after %u s", what, ACME_POLL_TOTAL_MS / 1000);
    acme_job_fail(job, AE_ETIMEDOUT, "acmedge:timeout", detail, 1, 0);
    return;
  }
  unsigned delay = job->poll_delay_ms ? job->poll_delay_ms : ACME_POLL_FIRST_MS;
  long ra = resp ? ae_http_retry_after_seconds(resp->retry_after) : -1;
  if (ra > 0) {
    uint64_t ms = (uint64_t)ra * 1000u;
    if (ms > ACME_RETRY_AFTER_CAP_MS) ms = ACME_RETRY_AFTER_CAP_MS;
    if (ms > delay) delay = (unsigned)ms;
  }
  job->poll_delay_ms = job->poll_delay_ms ? job->poll_delay_ms * 3 / 2 : ACME_POLL_FIRST_MS * 3 / 2;
  if (job->poll_delay_ms > ACME_POLL_MAX_MS) job->poll_delay_ms = ACME_POLL_MAX_MS;
  AE_DEBUG(ACME_SUB, "%s: %s pending, polling again in %u ms", job->domain, what, delay);
  acme_job_later(job, delay, fn);
}

/* ---------- request layer ---------- */

static void op_send(ae_acme_job *job);

static int http_start(ae_acme_job *job, const char *method, const char *url, const char *body,
                      const char *ctype, ae_httpc_cb cb) {
  ae_acme *a = job->a;
  ae_http_request req;
  memset(&req, 0, sizeof(req));
  req.method = method;
  req.url = url;
  req.body = body;
  req.body_len = body ? strlen(body) : 0;
  req.content_type = ctype;
  req.ca_bundle = a->cfg->acme.ca_bundle;
  req.timeout_ms = ACME_HTTP_TIMEOUT_MS;
  req.max_body = ACME_MAX_BODY;
  ae_err err = {0};
  int rc = ae_httpc_request(a->http, &req, cb, job, &job->req, &err);
  if (rc < 0) {
    job->req = NULL;
    char detail[600];
    snprintf(detail, sizeof(detail), "%s %s: %s", method, url, err.msg);
    acme_job_fail(job, rc, "acmedge:ca-unreachable", detail, 1, 0);
  }
  return rc;
}

static void on_plain_resp(void *ud, const ae_http_response *resp) {
  ae_acme_job *job = ud;
  job->req = NULL;
  if (job->ended) return;
  nonce_put(job->a, resp->replay_nonce);
  acme_resp_fn fn = job->op.fn;
  fn(job, resp);
}

void acme_get(ae_acme_job *job, const char *url, acme_resp_fn fn) {
  job->op.fn = fn;
  AE_DEBUG(ACME_SUB, "%s: GET %s", job->domain, url);
  http_start(job, "GET", url, NULL, NULL, on_plain_resp);
}

static void on_nonce_resp(void *ud, const ae_http_response *resp) {
  ae_acme_job *job = ud;
  job->req = NULL;
  if (job->ended) return;
  if (resp->code < 0 || resp->status == 0) {
    acme_job_fail_resp(job, resp, "newNonce");
    return;
  }
  nonce_put(job->a, resp->replay_nonce);
  if (job->a->nnonces == 0) {
    char detail[128];
    snprintf(detail, sizeof(detail), "newNonce: no Replay-Nonce in the response (HTTP %ld)", resp->status);
    acme_job_fail(job, AE_EPROTO, "acmedge:bad-response", detail, 1, 0);
    return;
  }
  op_send(job);
}

static void op_resend(ae_acme_job *job) {
  char *url = job->saved.url, *payload = job->saved.payload;
  acme_resp_fn fn = job->saved.fn;
  job->saved.url = job->saved.payload = NULL;
  job->saved.fn = NULL;
  acme_post(job, url, payload, 0, fn);
  free(url);
  free(payload);
}

static void on_op_resp(void *ud, const ae_http_response *resp) {
  ae_acme_job *job = ud;
  ae_acme *a = job->a;
  job->req = NULL;
  if (job->ended) return;
  nonce_put(a, resp->replay_nonce);
  if (resp->code == 0 && resp->status >= 400) {
    ae_acme_problem p;
    if (ae_acme_problem_parse(resp->body, resp->body_len, &p) == 0) {
      int bad_nonce = acme_problem_is(p.type, "badNonce");
      int no_account = acme_problem_is(p.type, "accountDoesNotExist");
      ae_acme_problem_clear(&p);
      if (bad_nonce && ++job->op.nonce_tries < ACME_BADNONCE_TRIES) {
        AE_DEBUG(ACME_SUB, "%s: badNonce from %s, retrying (%d)", job->domain, job->op.url, job->op.nonce_tries);
        op_send(job);
        return;
      }
      if (no_account && !job->op.use_jwk && !job->account_recovered) {
        /* The CA forgot the account (e.g. it was reset): register the same key again and
         * resend this request, within this job. */
        AE_WARN(ACME_SUB, "%s: CA does not know account %s any more; registering again", job->domain,
                job->op.kid ? job->op.kid : "?");
        job->account_recovered = 1;
        if (a->account_url != NULL && job->op.kid != NULL && strcmp(a->account_url, job->op.kid) == 0) {
          free(a->account_url);
          a->account_url = NULL;
        }
        free(job->saved.url);
        free(job->saved.payload);
        job->saved.url = ae_strdup(job->op.url);
        job->saved.payload = job->op.payload ? ae_strdup(job->op.payload) : NULL;
        job->saved.fn = job->op.fn;
        acme_job_prereq(job, op_resend);
        return;
      }
    }
  }
  acme_resp_fn fn = job->op.fn;
  fn(job, resp);
}

static void op_send(ae_acme_job *job) {
  ae_acme *a = job->a;
  char *nonce = nonce_take(a);
  if (nonce == NULL) {
    if (a->url_new_nonce == NULL) {
      acme_job_fail(job, AE_ERR, "acmedge:internal", "no newNonce URL", 1, 0);
      return;
    }
    http_start(job, "HEAD", a->url_new_nonce, NULL, NULL, on_nonce_resp);
    return;
  }
  const char *kid = job->op.use_jwk ? NULL : a->account_url;
  if (!job->op.use_jwk && kid == NULL) {
    free(nonce);
    acme_job_fail(job, AE_ERR, "acmedge:internal", "signed request without an account", 1, 0);
    return;
  }
  free(job->op.kid);
  job->op.kid = ae_strdup(kid);
  char *body = NULL;
  ae_err err = {0};
  int rc = ae_jws_sign(a->account_key, kid, nonce, job->op.url, job->op.payload, &body, &err);
  free(nonce);
  if (rc < 0) {
    acme_job_fail(job, rc, "acmedge:internal", err.msg, 1, 0);
    return;
  }
  AE_DEBUG(ACME_SUB, "%s: POST %s%s", job->domain, job->op.url, job->op.payload ? "" : " (as GET)");
  http_start(job, "POST", job->op.url, body, "application/jose+json", on_op_resp);
  free(body);
}

void acme_post(ae_acme_job *job, const char *url, const char *payload, int use_jwk, acme_resp_fn fn) {
  /* url/payload may point into the previous op's strings: copy before freeing. */
  char *u = ae_strdup(url);
  char *p = payload ? ae_strdup(payload) : NULL;
  free(job->op.url);
  free(job->op.payload);
  job->op.url = u;
  job->op.payload = p;
  job->op.use_jwk = use_jwk;
  job->op.nonce_tries = 0;
  job->op.fn = fn;
  op_send(job);
}

/* ---------- public job API ---------- */

/* A DNS name we can order: LDH labels, no wildcard (dns-01 is not supported). */
static int domain_ok(const char *d, char *out, size_t outlen) {
  size_t n = strlen(d);
  if (n == 0 || n > 253 || n >= outlen) return 0;
  size_t label = 0;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)d[i];
    if (c >= 'A' && c <= 'Z') c = (unsigned char)(c - 'A' + 'a');
    if (c == '.') {
      if (label == 0 || d[i - 1] == '-') return 0;
      label = 0;
    } else if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_') {
      if (c == '-' && label == 0) return 0;
      if (++label > 63) return 0;
    } else {
      return 0;
    }
    out[i] = (char)c;
  }
  out[n] = '\0';
  return label > 0 && d[n - 1] != '-';
}

static void job_begin(ae_acme_job *job) { acme_order_start(job); }

ae_acme_job *acme_job_new(ae_acme *a, const char *label, size_t size, int ari, ae_err *err) {
  ae_acme_job *job = ae_calloc(1, size);
  job->a = a;
  job->domain = ae_strdup(label);
  job->ari = ari;
  if (uv_timer_init(a->loop, &job->timer) != 0) {
    free(job->domain);
    free(job);
    ae_err_set(err, AE_ERR, "acme: timer init failed");
    return NULL;
  }
  job->timer.data = job;
  job->next = a->jobs;
  if (a->jobs != NULL) a->jobs->prev = job;
  a->jobs = job;
  if (ari)
    a->nari++;
  else
    a->njobs++;
  return job;
}

/* A certID as ae_acme_cert_id makes it: two non-empty base64url parts joined by one dot. */
static int cert_id_ok(const char *id) {
  size_t n = strlen(id), dots = 0;
  if (n < 3 || n > 300 || id[0] == '.' || id[n - 1] == '.') return 0;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)id[i];
    if (c == '.') {
      if (++dots > 1) return 0;
    } else if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
                 c == '_')) {
      return 0;
    }
  }
  return dots == 1;
}

int ae_acme_issue_with(ae_acme *a, const char *domain, const ae_acme_issue_opts *o, const ae_acme_callbacks *cb,
                       ae_acme_job **out, ae_err *err) {
  if (out != NULL) *out = NULL;
  if (a == NULL || domain == NULL || cb == NULL || o == NULL)
    return ae_err_set(err, AE_EINVAL, "acme: missing argument");
  if (a->closing) return ae_err_set(err, AE_ECANCELED, "acme: client is closing");
  char name[256];
  if (!domain_ok(domain, name, sizeof(name)))
    return ae_err_set(err, AE_EINVAL, "acme: '%.80s' is not a name we can order (wildcards need dns-01)", domain);
  const char *replaces_cert_id = o->replaces_cert_id;
  if (replaces_cert_id != NULL && replaces_cert_id[0] != '\0' && !cert_id_ok(replaces_cert_id))
    return ae_err_set(err, AE_EINVAL, "acme: '%.80s' is not an ARI certificate identifier", replaces_cert_id);
  ae_acme_job *job = acme_job_new(a, name, sizeof(*job), 0, err);
  if (job == NULL) return AE_ERR;
  job->cb = *cb;
  job->fence = o->fence;
  if (o->resume != NULL && o->resume->url != NULL && o->resume->key_pem != NULL) {
    job->resume = ae_calloc(1, sizeof(*job->resume));
    *job->resume = *o->resume; /* taken over */
    memset(o->resume, 0, sizeof(*o->resume));
  }
  if (replaces_cert_id != NULL && replaces_cert_id[0] != '\0') job->replaces = ae_strdup(replaces_cert_id);
  AE_INFO(ACME_SUB, "%s: issuance started%s%s", job->domain, job->replaces ? ", replacing " : "",
          job->replaces ? job->replaces : "");
  /* The first step runs from the loop so on_done is never called from inside this function. */
  acme_job_later(job, 0, job_begin);
  if (out != NULL) *out = job;
  return 0;
}

int ae_acme_issue_renewal(ae_acme *a, const char *domain, const char *replaces_cert_id, const ae_acme_callbacks *cb,
                          ae_acme_job **out, ae_err *err) {
  ae_acme_issue_opts o = {.replaces_cert_id = replaces_cert_id};
  return ae_acme_issue_with(a, domain, &o, cb, out, err);
}

int ae_acme_issue(ae_acme *a, const char *domain, const ae_acme_callbacks *cb, ae_acme_job **out, ae_err *err) {
  return ae_acme_issue_renewal(a, domain, NULL, cb, out, err);
}

void ae_acme_job_cancel(ae_acme_job *job) {
  if (job == NULL || job->ended) return;
  ae_acme *a = job->a;
  AE_INFO(ACME_SUB, "%s: %s cancelled", job->domain, job->ari ? "renewal information query" : "issuance");
  if (a->prereq_leader == job) acme_prereq_abandon(a, job, NULL);
  job_end(job);
}

static void on_http_closed(void *ud) {
  ae_acme *a = ud;
  a->http_closed = 1;
  maybe_closed(a);
}

void ae_acme_close(ae_acme *a, void (*cb)(void *ud), void *ud) {
  if (a == NULL || a->closing) return;
  a->closing = 1;
  a->close_cb = cb;
  a->close_ud = ud;
  a->prereq_leader = NULL;
  while (a->jobs != NULL) {
    a->jobs->waiting_prereq = 0;
    job_end(a->jobs);
  }
  ae_httpc_close(a->http, on_http_closed, a);
}

void ae_acme_free(ae_acme *a) {
  if (a == NULL) return;
  ae_httpc_free(a->http);
  for (size_t i = 0; i < a->nnonces; i++) free(a->nonces[i]);
  free(a->url_new_nonce);
  free(a->url_new_account);
  free(a->url_new_order);
  free(a->url_renewal_info);
  free(a->url_revoke_cert);
  free(a->account_url);
  ae_key_free(a->account_key);
  ae_config_free(a->cfg);
  free(a);
}
