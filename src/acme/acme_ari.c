/* ACME Renewal Information (RFC 9773): the certificate identifier, and the query of the CA's
 * renewalInfo endpoint. A query is an ACME job of its own kind: it shares the client's cached
 * directory (and waits for a job already fetching it), needs no account, and ends through the
 * job machinery so cancellation and close behave as for issuance. */
#include "acme_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <gnutls/gnutls.h>
#include <gnutls/x509.h>

#include "acmedge/log.h"

#define ARI_MAX_PEM (1024u * 1024u)
#define ARI_URL_MAX 2048

/* ---------- certificate identifier ---------- */

int ae_acme_cert_id(const char *cert_pem, char *out, size_t outlen, ae_err *err) {
  if (out != NULL && outlen > 0) out[0] = '\0';
  if (cert_pem == NULL || out == NULL || outlen == 0) return ae_err_set(err, AE_EINVAL, "cert id: missing argument");
  size_t len = strnlen(cert_pem, ARI_MAX_PEM + 1);
  if (len == 0 || len > ARI_MAX_PEM) return ae_err_set(err, AE_EINVAL, "cert id: empty or oversized PEM");
  gnutls_x509_crt_t crt;
  if (gnutls_x509_crt_init(&crt) < 0) return ae_err_set(err, AE_ENOMEM, "cert id: cannot allocate certificate");
  /* PEM import takes the first certificate of a chain: the leaf. */
  gnutls_datum_t d = {(unsigned char *)(uintptr_t)cert_pem, (unsigned)len};
  int grc = gnutls_x509_crt_import(crt, &d, GNUTLS_X509_FMT_PEM);
  if (grc < 0) {
    gnutls_x509_crt_deinit(crt);
    return ae_err_set(err, AE_EINVAL, "cert id: not a PEM certificate: %s", gnutls_strerror(grc));
  }
  unsigned char aki[128], serial[64];
  size_t aki_len = sizeof(aki), serial_len = sizeof(serial);
  unsigned critical = 0;
  grc = gnutls_x509_crt_get_authority_key_id(crt, aki, &aki_len, &critical);
  if (grc < 0 || aki_len == 0) {
    gnutls_x509_crt_deinit(crt);
    return ae_err_set(err, AE_EINVAL, "cert id: certificate has no Authority Key Identifier keyIdentifier (%s)",
                      grc < 0 ? gnutls_strerror(grc) : "empty");
  }
  /* GnuTLS returns the INTEGER's content octets as encoded, leading 0x00 included, which is
   * what RFC 9773 §4.1 asks for. */
  grc = gnutls_x509_crt_get_serial(crt, serial, &serial_len);
  gnutls_x509_crt_deinit(crt);
  if (grc < 0 || serial_len == 0)
    return ae_err_set(err, AE_EINVAL, "cert id: cannot read the serial number (%s)",
                      grc < 0 ? gnutls_strerror(grc) : "empty");
  char *a64 = NULL, *s64 = NULL;
  if (ae_b64url_encode(aki, aki_len, &a64) < 0 || ae_b64url_encode(serial, serial_len, &s64) < 0) {
    free(a64);
    free(s64);
    return ae_err_set(err, AE_ENOMEM, "cert id: base64url encoding failed");
  }
  int n = snprintf(out, outlen, "%s.%s", a64, s64);
  free(a64);
  free(s64);
  if (n < 0 || (size_t)n >= outlen) {
    out[0] = '\0';
    return ae_err_set(err, AE_EINVAL, "cert id: needs %d bytes, buffer has %zu", n + 1, outlen);
  }
  return 0;
}

/* ---------- renewalInfo query ---------- */

static void ari_fail(ae_acme_job *job, int code, const char *problem, const char *detail) {
  acme_job_fail(job, code, problem, detail, 1, 0);
}

/* Reads one RFC 3339 member of suggestedWindow; on failure ends the job and returns <0. */
static int window_time(ae_acme_job *job, json_t *win, const char *key, int64_t *out) {
  json_t *v = json_object_get(win, key);
  const char *s = json_string_value(v);
  char detail[256];
  if (s == NULL) {
    snprintf(detail, sizeof(detail), "renewalInfo: suggestedWindow.%s is missing or not a string", key);
    ari_fail(job, AE_EPROTO, "acmedge:bad-response", detail);
    return AE_EPROTO;
  }
  if (ae_time_parse_rfc3339(s, out) != 0) {
    snprintf(detail, sizeof(detail), "renewalInfo: suggestedWindow.%s '%.64s' is not an RFC 3339 time", key, s);
    ari_fail(job, AE_EPROTO, "acmedge:bad-response", detail);
    return AE_EPROTO;
  }
  return 0;
}

/* Keeps explanationURL only when it is a plain http(s) URL that fits: it ends up in logs and
 * admin output. */
static void copy_explanation(ae_acme_job *job, json_t *root) {
  const char *u = json_string_value(json_object_get(root, "explanationURL"));
  if (u == NULL) return;
  size_t n = strlen(u);
  int ok = n < sizeof(job->ari_info.explanation_url) &&
           (strncmp(u, "https://", 8) == 0 || strncmp(u, "http://", 7) == 0);
  for (size_t i = 0; ok && i < n; i++) {
    unsigned char c = (unsigned char)u[i];
    if (c <= 0x20 || c == 0x7f) ok = 0;
  }
  if (!ok) {
    AE_DEBUG(ACME_SUB, "%s: ignoring unusable explanationURL", job->domain);
    return;
  }
  memcpy(job->ari_info.explanation_url, u, n + 1);
}

static void on_renewal_info(ae_acme_job *job, const ae_http_response *resp) {
  if (resp->code == 0 && resp->status == 404) {
    /* The CA does not know this certificate (e.g. another CA issued it): same outcome for the
     * caller as a CA without ARI. */
    char detail[128];
    snprintf(detail, sizeof(detail), "renewalInfo: the CA does not know this certificate (HTTP 404)");
    acme_job_fail(job, AE_ENOTFOUND, "acmedge:no-renewal-info", detail, 1, acme_retry_after_abs(resp));
    return;
  }
  if (resp->code < 0 || resp->status != 200) {
    acme_job_fail_resp(job, resp, "renewalInfo");
    return;
  }
  json_t *root = acme_resp_json(job, resp, "renewalInfo");
  if (root == NULL) return;
  json_t *win = json_object_get(root, "suggestedWindow");
  if (!json_is_object(win)) {
    json_decref(root);
    ari_fail(job, AE_EPROTO, "acmedge:bad-response", "renewalInfo: suggestedWindow is missing or not an object");
    return;
  }
  int64_t start = 0, end = 0;
  if (window_time(job, win, "start", &start) < 0 || window_time(job, win, "end", &end) < 0) {
    json_decref(root);
    return;
  }
  if (end <= start) {
    json_decref(root);
    char detail[160];
    snprintf(detail, sizeof(detail), "renewalInfo: suggestedWindow end (%lld) is not after start (%lld)",
             (long long)end, (long long)start);
    ari_fail(job, AE_EPROTO, "acmedge:bad-response", detail);
    return;
  }
  memset(&job->ari_info, 0, sizeof(job->ari_info));
  job->ari_info.start = start;
  job->ari_info.end = end;
  job->ari_info.retry_after = acme_retry_after_abs(resp);
  copy_explanation(job, root);
  json_decref(root);
  char s1[40], s2[40];
  ae_time_rfc3339(start, s1, sizeof(s1));
  ae_time_rfc3339(end, s2, sizeof(s2));
  AE_INFO(ACME_SUB, "%s: CA suggests renewing between %s and %s", job->domain, s1, s2);
  ae_acme_result res;
  memset(&res, 0, sizeof(res));
  res.code = 0;
  acme_job_finish(job, &res);
}

static void ari_send(ae_acme_job *job) {
  ae_acme *a = job->a;
  const ae_acme_ari_req *r = (const ae_acme_ari_req *)job;
  if (a->url_renewal_info == NULL) {
    acme_job_fail(job, AE_ENOTFOUND, "acmedge:no-renewal-info", "the CA's directory has no renewalInfo", 0, 0);
    return;
  }
  size_t base = strlen(a->url_renewal_info);
  while (base > 0 && a->url_renewal_info[base - 1] == '/') base--;
  char url[ARI_URL_MAX];
  int n = snprintf(url, sizeof(url), "%.*s/%s", (int)base, a->url_renewal_info, r->cert_id);
  if (n < 0 || (size_t)n >= sizeof(url)) {
    ari_fail(job, AE_EPROTO, "acmedge:bad-response", "renewalInfo: URL too long");
    return;
  }
  /* RFC 9773 §4.1: a plain unauthenticated GET, so no nonce or account is involved. */
  acme_get(job, url, on_renewal_info);
}

static void ari_begin(ae_acme_job *job) { acme_job_prereq(job, ari_send); }

/* on_done of a query job: ud is the job, still allocated until its timer closes. */
static void ari_on_done(void *ud, const ae_acme_result *res) {
  ae_acme_job *job = ud;
  struct ae_acme_renewal_info info;
  if (res->code == 0) {
    info = job->ari_info;
  } else {
    memset(&info, 0, sizeof(info));
    info.retry_after = res->retry_after;
  }
  job->ari_cb(job->ari_ud, res->code, &info);
}

int ae_acme_renewal_info(ae_acme *a, const char *cert_pem, ae_acme_ari_cb cb, void *ud, ae_acme_ari_req **out,
                         ae_err *err) {
  if (out != NULL) *out = NULL;
  if (cert_pem == NULL) return ae_err_set(err, AE_EINVAL, "acme: missing argument");
  char id[ACME_CERT_ID_MAX];
  int rc = ae_acme_cert_id(cert_pem, id, sizeof(id), err);
  if (rc < 0) return rc;
  return ae_acme_renewal_info_by_id(a, id, cb, ud, out, err);
}

int ae_acme_renewal_info_by_id(ae_acme *a, const char *cert_id, ae_acme_ari_cb cb, void *ud, ae_acme_ari_req **out,
                               ae_err *err) {
  if (out != NULL) *out = NULL;
  if (a == NULL || cert_id == NULL || cb == NULL) return ae_err_set(err, AE_EINVAL, "acme: missing argument");
  if (a->closing) return ae_err_set(err, AE_ECANCELED, "acme: client is closing");
  char id[ACME_CERT_ID_MAX];
  if (strlen(cert_id) >= sizeof(id) || cert_id[0] == '\0')
    return ae_err_set(err, AE_EINVAL, "acme: bad certificate identifier");
  snprintf(id, sizeof(id), "%s", cert_id);
  char label[sizeof(id) + 8];
  snprintf(label, sizeof(label), "ari %s", id);
  ae_acme_job *job = acme_job_new(a, label, sizeof(ae_acme_ari_req), 1, err);
  if (job == NULL) return AE_ERR;
  memcpy(((ae_acme_ari_req *)job)->cert_id, id, sizeof(id));
  job->ari_cb = cb;
  job->ari_ud = ud;
  job->cb.ud = job;
  job->cb.on_done = ari_on_done;
  AE_DEBUG(ACME_SUB, "%s: renewal information query started", job->domain);
  /* From the loop, so cb never runs inside this call even when the directory is cached. */
  acme_job_later(job, 0, ari_begin);
  if (out != NULL) *out = (ae_acme_ari_req *)job;
  return 0;
}

void ae_acme_ari_cancel(ae_acme_ari_req *r) {
  if (r != NULL) ae_acme_job_cancel(&r->job);
}
