/* RFC 8555 section 7.6: certificate revocation, signed with the account key (kid). The CA's
 * answer is passed on as is: callers surface alreadyRevoked or badRevocationReason verbatim. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "acme_internal.h"
#include "acmedge/crypto.h"
#include "acmedge/log.h"

static void on_revoked(ae_acme_job *job, const ae_http_response *resp) {
  if (resp->code == 0 && resp->status == 200) {
    ae_acme_result res;
    memset(&res, 0, sizeof(res));
    AE_INFO(ACME_SUB, "%s: certificate revoked", job->domain);
    acme_job_finish(job, &res);
    return;
  }
  acme_job_fail_resp(job, resp, "revokeCert");
}

static void revoke_send(ae_acme_job *job) {
  if (job->a->url_revoke_cert == NULL) {
    acme_job_fail(job, AE_EPROTO, "acmedge:unsupported", "the CA's directory has no revokeCert", 0, 0);
    return;
  }
  acme_post(job, job->a->url_revoke_cert, job->revoke_payload, 0, on_revoked);
}

static void revoke_begin(ae_acme_job *job) { acme_job_prereq(job, revoke_send); }

int ae_acme_revoke(ae_acme *a, const unsigned char *cert_der, size_t len, int reason, const ae_acme_callbacks *cb,
                   ae_acme_job **out, ae_err *err) {
  if (out != NULL) *out = NULL;
  if (a == NULL || cert_der == NULL || len == 0 || cb == NULL) return ae_err_set(err, AE_EINVAL, "acme: missing argument");
  if (a->closing) return ae_err_set(err, AE_ECANCELED, "acme: client is closing");
  char *b64 = NULL;
  if (ae_b64url_encode(cert_der, len, &b64) != 0) return ae_err_set(err, AE_ENOMEM, "acme: cannot encode certificate");
  json_t *body = json_pack("{s:s}", "certificate", b64);
  free(b64);
  /* Sent as given: the CA judges the reason (7 and > 10 are its badRevocationReason). */
  if (reason >= 0) json_object_set_new(body, "reason", json_integer(reason));
  char *payload = json_dumps(body, JSON_COMPACT);
  json_decref(body);
  if (payload == NULL) return ae_err_set(err, AE_ENOMEM, "acme: cannot encode revocation");
  ae_acme_job *job = acme_job_new(a, "revoke", sizeof(*job), 0, err);
  if (job == NULL) {
    free(payload);
    return AE_ERR;
  }
  job->revoke_payload = payload;
  job->cb = *cb;
  acme_job_later(job, 0, revoke_begin);
  if (out != NULL) *out = job;
  return 0;
}
