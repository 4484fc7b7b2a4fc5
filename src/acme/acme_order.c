/* One issuance: newOrder -> authorizations (challenge published, answered, polled) ->
 * finalize with a CSR (certificate key generated off the loop) -> poll the order -> download
 * and check the chain. Every step ends the job with a clear problem when the CA's answer is
 * not what RFC 8555 says it should be. */
#include "acme_internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "acmedge/certstore.h"
#include "acmedge/challenge.h"
#include "acmedge/log.h"

#define CLOCK_SKEW_S 300

static void authz_next(ae_acme_job *job);
static void challenge_ask(ae_acme_job *job);
static void share_work(uv_work_t *w);
static void share_done(uv_work_t *w, int status);
static void finalize_begin(ae_acme_job *job);
static void order_poll(ae_acme_job *job);
static void cert_download(ae_acme_job *job);

static void progress(ae_acme_job *job, const char *step, const char *detail) {
  if (job->cb.on_progress != NULL) job->cb.on_progress(job->cb.ud, step, detail);
}

static const char *jstr(json_t *o, const char *key) {
  json_t *v = json_object_get(o, key);
  return json_is_string(v) ? json_string_value(v) : NULL;
}

static void fail_bad(ae_acme_job *job, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void fail_bad(ae_acme_job *job, const char *fmt, ...) {
  char detail[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(detail, sizeof(detail), fmt, ap);
  va_end(ap);
  acme_job_fail(job, AE_EPROTO, "acmedge:bad-response", detail, 1, 0);
}

/* Ends the job with an "error" problem object embedded in an order or challenge, or with
 * fallback_type when there is none. */
static void fail_embedded(ae_acme_job *job, json_t *problem, const char *fallback_type, const char *fallback_detail) {
  ae_acme_problem p;
  memset(&p, 0, sizeof(p));
  char *text = json_is_object(problem) ? json_dumps(problem, JSON_COMPACT) : NULL;
  if (text != NULL && ae_acme_problem_parse(text, strlen(text), &p) == 0) {
    char detail[1024 + 2048 + 8];
    snprintf(detail, sizeof(detail), "%s%s%s%s", p.detail ? p.detail : fallback_detail, p.subproblems ? " [" : "",
             p.subproblems ? p.subproblems : "", p.subproblems ? "]" : "");
    acme_job_fail(job, AE_EPROTO, p.type, detail, ae_acme_problem_retryable(p.type), 0);
  } else {
    acme_job_fail(job, AE_EPROTO, fallback_type, fallback_detail, ae_acme_problem_retryable(fallback_type), 0);
  }
  ae_acme_problem_clear(&p);
  free(text);
}

/* ---------- order object ---------- */

/* Acts on an order's status (after newOrder, finalize, or a poll). Consumes nothing. */
void acme_order_dispatch(ae_acme_job *job, json_t *order, const ae_http_response *resp) {
  const char *status = jstr(order, "status");
  if (status == NULL) {
    fail_bad(job, "order without status");
    return;
  }
  const char *fin = jstr(order, "finalize");
  if (fin != NULL && job->finalize_url == NULL) job->finalize_url = ae_strdup(fin);
  if (strcmp(status, "pending") == 0) {
    if (job->iauthz < job->nauthz) {
      authz_next(job);
    } else {
      /* All our authorizations are valid; the CA has not moved the order on yet. */
      acme_poll_later(job, resp, order_poll, "order");
    }
  } else if (strcmp(status, "ready") == 0) {
    if (job->finalize_url == NULL) {
      fail_bad(job, "order without finalize URL");
    } else if (job->finalize_tries >= 3) {
      fail_bad(job, "order stays ready after finalize");
    } else {
      finalize_begin(job);
    }
  } else if (strcmp(status, "processing") == 0) {
    acme_poll_later(job, resp, order_poll, "order");
  } else if (strcmp(status, "valid") == 0) {
    const char *cert = jstr(order, "certificate");
    if (cert == NULL || cert[0] == '\0') {
      fail_bad(job, "valid order without certificate URL");
      return;
    }
    free(job->cert_url);
    job->cert_url = ae_strdup(cert);
    cert_download(job);
  } else if (strcmp(status, "invalid") == 0) {
    fail_embedded(job, json_object_get(order, "error"), "acmedge:order-invalid", "the CA marked the order invalid");
  } else {
    fail_bad(job, "order has unknown status '%.40s'", status);
  }
}

static void on_order_poll(ae_acme_job *job, const ae_http_response *resp) {
  if (resp->code < 0 || resp->status != 200) {
    acme_job_fail_resp(job, resp, "order");
    return;
  }
  json_t *order = acme_resp_json(job, resp, "order");
  if (order == NULL) return;
  acme_order_dispatch(job, order, resp);
  json_decref(order);
}

static void order_poll(ae_acme_job *job) { acme_post(job, job->order_url, NULL, 0, on_order_poll); }


/* 1 when a newOrder that carried "replaces" was refused because of that field: the certificate
 * was already replaced (RFC 9773 alreadyReplaced), or the CA objects to the field itself. */
static int problem_about_replaces(const ae_http_response *resp) {
  if (resp->code < 0 || resp->status < 400 || resp->status >= 500) return 0;
  ae_acme_problem p;
  if (ae_acme_problem_parse(resp->body, resp->body_len, &p) != 0) return 0;
  int hit = acme_problem_is(p.type, "alreadyReplaced") ||
            ((resp->status == 400 || resp->status == 409) && p.detail != NULL && strcasestr(p.detail, "replace") != NULL);
  ae_acme_problem_clear(&p);
  return hit;
}

static void on_new_order(ae_acme_job *job, const ae_http_response *resp) {
  if (job->replaces_sent && !job->replaces_dropped && problem_about_replaces(resp)) {
    /* Renewing matters more than the CA linking the orders: ask again without the field. */
    AE_WARN(ACME_SUB, "%s: the CA refused \"replaces\" %s (HTTP %ld); ordering without it", job->domain,
            job->replaces, resp->status);
    job->replaces_dropped = 1;
    acme_order_new(job);
    return;
  }
  if (resp->code < 0 || (resp->status != 201 && resp->status != 200)) {
    acme_job_fail_resp(job, resp, "newOrder");
    return;
  }
  json_t *order = acme_resp_json(job, resp, "newOrder");
  if (order == NULL) return;
  if (resp->location == NULL || resp->location[0] == '\0') {
    json_decref(order);
    fail_bad(job, "newOrder: no Location header");
    return;
  }
  json_t *authz = json_object_get(order, "authorizations");
  const char *fin = jstr(order, "finalize");
  if (!json_is_array(authz) || json_array_size(authz) == 0 || json_array_size(authz) > ACME_MAX_AUTHZ ||
      fin == NULL) {
    json_decref(order);
    fail_bad(job, "newOrder: authorizations or finalize missing");
    return;
  }
  job->order_url = ae_strdup(resp->location);
  job->finalize_url = ae_strdup(fin);
  job->authz = ae_calloc(json_array_size(authz), sizeof(char *));
  size_t i;
  json_t *v;
  json_array_foreach(authz, i, v) {
    if (!json_is_string(v)) {
      json_decref(order);
      fail_bad(job, "newOrder: authorization URL is not a string");
      return;
    }
    job->authz[job->nauthz++] = ae_strdup(json_string_value(v));
  }
  AE_INFO(ACME_SUB, "%s: order %s created (%zu authorization%s)", job->domain, job->order_url, job->nauthz,
          job->nauthz == 1 ? "" : "s");
  progress(job, "order_created", job->order_url);
  if (job->ended) {
    json_decref(order);
    return;
  }
  job->poll_deadline = ae_now_ms() + ACME_POLL_TOTAL_MS;
  if (acme_order_saving(job))
    acme_order_save(job, order); /* dispatches once the order is saved for a takeover */
  else
    acme_order_dispatch(job, order, resp);
  json_decref(order);
}

void acme_order_new(ae_acme_job *job) {
  json_t *payload = json_pack("{s:[{s:s,s:s}]}", "identifiers", "type", "dns", "value", job->domain);
  /* RFC 9773 §5: only a CA that offers renewalInfo understands "replaces". */
  job->replaces_sent = 0;
  if (payload != NULL && job->replaces != NULL && !job->replaces_dropped && job->a->url_renewal_info != NULL) {
    json_object_set_new(payload, "replaces", json_string(job->replaces));
    job->replaces_sent = 1;
  }
  char *text = payload ? json_dumps(payload, JSON_COMPACT) : NULL;
  json_decref(payload);
  if (text == NULL) {
    acme_job_fail(job, AE_ENOMEM, "acmedge:internal", "cannot build newOrder payload", 1, 0);
    return;
  }
  AE_INFO(ACME_SUB, "%s: creating order%s%s", job->domain, job->replaces_sent ? ", replacing " : "",
          job->replaces_sent ? job->replaces : "");
  acme_post(job, job->a->url_new_order, text, 0, on_new_order);
  free(text);
}

void acme_order_start(ae_acme_job *job) { acme_job_prereq(job, job->resume ? acme_resume_fetch : acme_order_new); }

/* ---------- authorizations and challenges ---------- */

static void on_authz(ae_acme_job *job, const ae_http_response *resp);

static void authz_poll_start(ae_acme_job *job) { acme_post(job, job->authz[job->iauthz], NULL, 0, on_authz); }

static void on_challenge_posted(ae_acme_job *job, const ae_http_response *resp) {
  if (resp->code < 0 || resp->status != 200) {
    acme_job_fail_resp(job, resp, "challenge");
    return;
  }
  json_t *ch = acme_resp_json(job, resp, "challenge");
  if (ch == NULL) return;
  json_decref(ch);
  job->poll_delay_ms = 0;
  acme_poll_later(job, resp, authz_poll_start, "authorization");
}

/* Picks a challenge of an authorization we can answer, in preference order. */
static json_t *pick_challenge(ae_acme_job *job, json_t *challenges, const char **type_out) {
  ae_acme *a = job->a;
  const char *order[2];
  int http_ok = a->cfg->acme.http01 && a->http01_ok;
  int alpn_ok = a->cfg->acme.tlsalpn01 && a->tlsalpn01_ok;
  size_t n = 0;
  if (a->cfg->acme.prefer_tlsalpn01) {
    if (alpn_ok) order[n++] = "tls-alpn-01";
    if (http_ok) order[n++] = "http-01";
  } else {
    if (http_ok) order[n++] = "http-01";
    if (alpn_ok) order[n++] = "tls-alpn-01";
  }
  for (size_t k = 0; k < n; k++) {
    size_t i;
    json_t *c;
    json_array_foreach(challenges, i, c) {
      const char *t = jstr(c, "type");
      if (t != NULL && strcmp(t, order[k]) == 0) {
        *type_out = order[k];
        return c;
      }
    }
  }
  return NULL;
}

static void challenge_respond(ae_acme_job *job, json_t *authz) {
  ae_acme *a = job->a;
  json_t *challenges = json_object_get(authz, "challenges");
  if (!json_is_array(challenges)) {
    fail_bad(job, "authorization without challenges");
    return;
  }
  json_t *ident = json_object_get(authz, "identifier");
  const char *ival = jstr(ident, "value");
  if (ival == NULL || strcasecmp(ival, job->domain) != 0) {
    fail_bad(job, "authorization is for another identifier '%.80s'", ival ? ival : "(none)");
    return;
  }
  const char *type = NULL;
  json_t *c = pick_challenge(job, challenges, &type);
  if (c == NULL) {
    acme_job_fail(job, AE_EINVAL, "acmedge:no-challenge",
                  "the CA offered no challenge type that is enabled and can be answered now", 0, 0);
    return;
  }
  const char *url = jstr(c, "url");
  const char *token = jstr(c, "token");
  const char *cstatus = jstr(c, "status");
  if (url == NULL || token == NULL || !ae_challenge_token_valid(token)) {
    fail_bad(job, "%s challenge without a valid url/token", type);
    return;
  }
  char keyauth[512];
  if (ae_key_authorization(a->account_key, token, keyauth, sizeof(keyauth)) < 0) {
    acme_job_fail(job, AE_ERR, "acmedge:internal", "cannot compute the key authorization", 1, 0);
    return;
  }
  ae_err err = {0};
  int rc;
  if (strcmp(type, "http-01") == 0) {
    rc = ae_challenge_http01_put(a->ch, job->domain, token, keyauth);
    if (rc == 0) {
      free(job->http_token);
      job->http_token = ae_strdup(token);
    } else {
      ae_err_set(&err, rc, "cannot publish the http-01 token");
    }
  } else {
    rc = ae_challenge_alpn_put(a->ch, job->domain, keyauth, &err);
    if (rc == 0) job->alpn_published = 1;
  }
  if (rc < 0) {
    acme_job_fail(job, rc, "acmedge:internal", err.msg, 1, 0);
    return;
  }
  free(job->chall_url);
  job->chall_url = ae_strdup(url);
  job->chall_type = type;
  job->chall_processing = cstatus != NULL && (strcmp(cstatus, "processing") == 0 || strcmp(cstatus, "valid") == 0);
  if (ae_storage_shares_challenges(a->storage)) {
    /* Every instance must be able to answer before the CA is told to validate: write the answer
     * to the shared storage (off the loop) first. */
    snprintf(job->share_keyauth, sizeof(job->share_keyauth), "%s", keyauth);
    snprintf(job->share_token, sizeof(job->share_token), "%s", token);
    job->share_alpn = strcmp(type, "http-01") != 0;
    job->work.data = job;
    job->work_busy = 1;
    rc = uv_queue_work(a->loop, &job->work, share_work, share_done);
    if (rc != 0) {
      job->work_busy = 0;
      acme_job_fail(job, AE_ERR, "acmedge:internal", uv_strerror(rc), 1, 0);
    }
    return;
  }
  challenge_ask(job);
}

static void challenge_ask(ae_acme_job *job) {
  AE_INFO(ACME_SUB, "%s: %s challenge published, asking the CA to validate", job->domain, job->chall_type);
  progress(job, "challenge_ready", job->chall_type);
  if (job->ended) return;
  job->poll_deadline = ae_now_ms() + ACME_POLL_TOTAL_MS;
  job->poll_delay_ms = 0;
  if (job->chall_processing) {
    /* Already being validated (e.g. after the request was resent): just poll. */
    acme_poll_later(job, NULL, authz_poll_start, "authorization");
    return;
  }
  acme_post(job, job->chall_url, "{}", 0, on_challenge_posted);
}

static void share_work(uv_work_t *w) {
  ae_acme_job *job = w->data;
  job->share_rc = ae_storage_share_challenge(job->a->storage, job->share_alpn, job->domain,
                                             job->share_alpn ? "-" : job->share_token, job->share_keyauth,
                                             &job->share_err);
}

static void share_done(uv_work_t *w, int status) {
  ae_acme_job *job = w->data;
  job->work_busy = 0;
  if (job->ended) {
    acme_job_work_done(job);
    return;
  }
  if (status != 0 || job->share_rc != 0) {
    /* Another instance could not answer; asking the CA now would likely fail the authorization. */
    acme_job_fail(job, job->share_rc ? job->share_rc : AE_ERR, "acmedge:storage",
                  job->share_err.msg[0] ? job->share_err.msg : "cannot share the challenge answer", 1, 0);
    return;
  }
  challenge_ask(job);
}

/* The challenge of authz whose error explains an invalid authorization. */
static json_t *failed_challenge_error(ae_acme_job *job, json_t *authz) {
  json_t *challenges = json_object_get(authz, "challenges");
  size_t i;
  json_t *c;
  json_t *any = NULL;
  json_array_foreach(challenges, i, c) {
    json_t *e = json_object_get(c, "error");
    if (!json_is_object(e)) continue;
    const char *u = jstr(c, "url");
    if (job->chall_url != NULL && u != NULL && strcmp(u, job->chall_url) == 0) return e;
    if (any == NULL) any = e;
  }
  return any;
}

static void on_authz(ae_acme_job *job, const ae_http_response *resp) {
  if (resp->code < 0 || resp->status != 200) {
    acme_job_fail_resp(job, resp, "authorization");
    return;
  }
  json_t *authz = acme_resp_json(job, resp, "authorization");
  if (authz == NULL) return;
  const char *status = jstr(authz, "status");
  if (status == NULL) {
    json_decref(authz);
    fail_bad(job, "authorization without status");
    return;
  }
  if (strcmp(status, "valid") == 0) {
    if (job->chall_url != NULL) {
      AE_INFO(ACME_SUB, "%s: %s challenge valid", job->domain, job->chall_type);
      job->used_type = job->chall_type;
      acme_job_unpublish(job);
      progress(job, "challenge_valid", job->chall_type);
    } else {
      AE_INFO(ACME_SUB, "%s: authorization already valid (reused)", job->domain);
    }
    json_decref(authz);
    if (job->ended) return;
    free(job->chall_url);
    job->chall_url = NULL;
    job->iauthz++;
    authz_next(job);
    return;
  }
  if (strcmp(status, "pending") == 0) {
    if (job->chall_url == NULL) {
      challenge_respond(job, authz);
    } else {
      acme_poll_later(job, resp, authz_poll_start, "authorization");
    }
    json_decref(authz);
    return;
  }
  /* invalid, deactivated, expired, revoked: the job ends with the CA's reason. */
  char fallback[128];
  snprintf(fallback, sizeof(fallback), "authorization is %.40s", status);
  fail_embedded(job, failed_challenge_error(job, authz), "acmedge:authz-invalid", fallback);
  json_decref(authz);
}

static void authz_next(ae_acme_job *job) {
  if (job->iauthz >= job->nauthz) {
    finalize_begin(job);
    return;
  }
  free(job->chall_url);
  job->chall_url = NULL;
  AE_DEBUG(ACME_SUB, "%s: fetching authorization %s", job->domain, job->authz[job->iauthz]);
  acme_post(job, job->authz[job->iauthz], NULL, 0, on_authz);
}

/* ---------- finalize ---------- */

static void on_finalize(ae_acme_job *job, const ae_http_response *resp) {
  if (resp->code == 0 && resp->status >= 400) {
    ae_acme_problem p;
    if (ae_acme_problem_parse(resp->body, resp->body_len, &p) == 0) {
      int not_ready = acme_problem_is(p.type, "orderNotReady");
      ae_acme_problem_clear(&p);
      if (not_ready) {
        acme_poll_later(job, resp, order_poll, "order");
        return;
      }
    }
  }
  if (resp->code < 0 || resp->status != 200) {
    acme_job_fail_resp(job, resp, "finalize");
    return;
  }
  json_t *order = acme_resp_json(job, resp, "finalize");
  if (order == NULL) return;
  job->poll_delay_ms = 0;
  acme_order_dispatch(job, order, resp);
  json_decref(order);
}

static void finalize_send(ae_acme_job *job) {
  char *csr = NULL;
  ae_err err = {0};
  /* A saved (or resumed) order finalizes with the CSR saved with it. */
  int rc = job->csr ? ((csr = ae_strdup(job->csr)) ? 0 : AE_ENOMEM)
                    : ae_csr_new(job->cert_key, job->domain, &csr, &err);
  if (rc < 0) {
    acme_job_fail(job, rc, "acmedge:internal", err.msg, 1, 0);
    return;
  }
  json_t *payload = json_pack("{s:s}", "csr", csr);
  free(csr);
  char *text = payload ? json_dumps(payload, JSON_COMPACT) : NULL;
  json_decref(payload);
  if (text == NULL) {
    acme_job_fail(job, AE_ENOMEM, "acmedge:internal", "cannot build finalize payload", 1, 0);
    return;
  }
  job->finalize_tries++;
  job->finalized = 1;
  AE_INFO(ACME_SUB, "%s: finalizing order", job->domain);
  acme_post(job, job->finalize_url, text, 0, on_finalize);
  free(text);
}

static void keygen_work(uv_work_t *w) {
  ae_acme_job *job = w->data;
  ae_key_type type = job->a->cfg->acme.key_rsa ? AE_KEY_RSA_2048 : AE_KEY_ECDSA_P256;
  job->work_rc = ae_key_generate(type, &job->cert_key, &job->work_err);
}

static void keygen_done(uv_work_t *w, int status) {
  ae_acme_job *job = w->data;
  job->work_busy = 0;
  if (job->ended) {
    /* Cancelled meanwhile: the job's memory (cert_key included) can go now. */
    acme_job_work_done(job);
    return;
  }
  if (status != 0 || job->work_rc < 0 || job->cert_key == NULL) {
    acme_job_fail(job, job->work_rc < 0 ? job->work_rc : AE_ERR, "acmedge:internal",
                  job->work_err.msg[0] ? job->work_err.msg : "certificate key generation failed", 1, 0);
    return;
  }
  finalize_send(job);
}

static void finalize_begin(ae_acme_job *job) {
  if (job->finalize_url == NULL) {
    fail_bad(job, "order without finalize URL");
    return;
  }
  if (job->cert_key != NULL) {
    finalize_send(job);
    return;
  }
  job->work.data = job;
  job->work_busy = 1;
  int rc = uv_queue_work(job->a->loop, &job->work, keygen_work, keygen_done);
  if (rc != 0) {
    job->work_busy = 0;
    acme_job_fail(job, AE_ERR, "acmedge:internal", uv_strerror(rc), 1, 0);
  }
}

/* ---------- certificate ---------- */

static void on_certificate(ae_acme_job *job, const ae_http_response *resp) {
  if (resp->code < 0 || resp->status != 200) {
    acme_job_fail_resp(job, resp, "certificate download");
    return;
  }
  const char *ct = resp->content_type;
  /* Accept application/pem-certificate-chain and lenient variants, but not JSON or HTML. */
  if (ct != NULL && (strcasestr(ct, "json") != NULL || strcasestr(ct, "html") != NULL)) {
    fail_bad(job, "certificate download: unexpected content type '%.80s'", ct);
    return;
  }
  if (resp->body == NULL || resp->body_len == 0 || strstr(resp->body, "-----BEGIN CERTIFICATE-----") == NULL) {
    fail_bad(job, "certificate download: no PEM certificate in the response");
    return;
  }
  if (!ae_key_matches_cert(job->cert_key, resp->body, resp->body_len)) {
    fail_bad(job, "certificate does not match the key of our CSR");
    return;
  }
  char *key_pem = NULL;
  ae_err err = {0};
  if (ae_key_to_pem(job->cert_key, &key_pem, &err) < 0) {
    acme_job_fail(job, AE_ERR, "acmedge:internal", err.msg, 1, 0);
    return;
  }
  ae_cert *cert = NULL;
  int rc = ae_cert_from_pem(resp->body, resp->body_len, key_pem, strlen(key_pem), &cert, &err);
  if (rc < 0) {
    memset(key_pem, 0, strlen(key_pem));
    free(key_pem);
    fail_bad(job, "certificate chain unusable: %.400s", err.msg);
    return;
  }
  int64_t now = (int64_t)time(NULL);
  const char *why = NULL;
  if (!ae_cert_covers(cert, job->domain))
    why = "certificate does not cover the requested name";
  else if (ae_cert_not_before(cert) > now + CLOCK_SKEW_S)
    why = "certificate is not valid yet";
  else if (ae_cert_not_after(cert) <= now)
    why = "certificate has already expired";
  if (why == NULL)
    AE_INFO(ACME_SUB, "%s: certificate downloaded (serial %s)", job->domain, ae_cert_serial(cert));
  ae_cert_unref(cert);
  if (why != NULL) {
    memset(key_pem, 0, strlen(key_pem));
    free(key_pem);
    fail_bad(job, "%s", why);
    return;
  }
  /* The result strings must outlive the callback's stack frame only for its duration. */
  char *chain = ae_malloc(resp->body_len + 1);
  memcpy(chain, resp->body, resp->body_len);
  chain[resp->body_len] = '\0';
  acme_job_succeed(job, chain, key_pem);
  free(chain);
  memset(key_pem, 0, strlen(key_pem));
  free(key_pem);
}

static void cert_download(ae_acme_job *job) {
  if (job->cert_key == NULL) {
    fail_bad(job, "order is valid but we never finalized it");
    return;
  }
  AE_INFO(ACME_SUB, "%s: downloading certificate", job->domain);
  acme_post(job, job->cert_url, NULL, 0, on_certificate);
}
