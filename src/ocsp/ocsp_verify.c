/* OCSP requests and response verification with GnuTLS (pure functions, no I/O).
 *
 * verify_direct's return code alone means nothing: for a response signed by an unrelated key it
 * returns 0 and reports the problem in its status word, so both must be zero. check_crt reports a
 * mismatch with assorted error codes, so any non-zero value is a mismatch. */
#include "acmedge/ocsp.h"

#include <gnutls/ocsp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int ae_ocsp_responder_url(gnutls_x509_crt_t crt, char *buf, size_t len) {
  for (unsigned seq = 0; seq < 32; seq++) {
    gnutls_datum_t d = {NULL, 0};
    unsigned critical = 0;
    int g = gnutls_x509_crt_get_authority_info_access(crt, seq, GNUTLS_IA_OCSP_URI, &d, &critical);
    if (g == GNUTLS_E_UNKNOWN_ALGORITHM)
      continue; /* a CA Issuers entry or another access method */
    if (g < 0)
      return AE_ENOTFOUND;
    int ok = d.size > 7 && d.size < len && !memchr(d.data, '\0', d.size) &&
             (strncmp((const char *)d.data, "http://", 7) == 0 || strncmp((const char *)d.data, "https://", 8) == 0);
    if (ok) {
      memcpy(buf, d.data, d.size);
      buf[d.size] = '\0';
    }
    gnutls_free(d.data);
    if (ok)
      return 0;
  }
  return AE_ENOTFOUND;
}

int ae_ocsp_build_request(gnutls_x509_crt_t leaf, gnutls_x509_crt_t issuer, unsigned char **der, size_t *len,
                          ae_err *err) {
  gnutls_ocsp_req_t req = NULL;
  gnutls_datum_t d = {NULL, 0};
  /* No nonce: the answer is cached and stapled to many handshakes, and responders that
   * pre-sign (most of them) ignore nonces anyway. */
  int g = gnutls_ocsp_req_init(&req);
  if (g >= 0)
    g = gnutls_ocsp_req_add_cert(req, GNUTLS_DIG_SHA1, issuer, leaf);
  if (g >= 0)
    g = gnutls_ocsp_req_export(req, &d);
  if (req)
    gnutls_ocsp_req_deinit(req);
  if (g < 0)
    return ae_err_set(err, AE_EINVAL, "cannot build OCSP request: %s", gnutls_strerror(g));
  *der = ae_malloc(d.size);
  memcpy(*der, d.data, d.size);
  *len = d.size;
  gnutls_free(d.data);
  return 0;
}

static const char *resp_status_name(int st) {
  switch (st) {
  case GNUTLS_OCSP_RESP_MALFORMEDREQUEST:
    return "malformedRequest";
  case GNUTLS_OCSP_RESP_INTERNALERROR:
    return "internalError";
  case GNUTLS_OCSP_RESP_TRYLATER:
    return "tryLater";
  case GNUTLS_OCSP_RESP_SIGREQUIRED:
    return "sigRequired";
  case GNUTLS_OCSP_RESP_UNAUTHORIZED:
    return "unauthorized";
  default:
    return "unknown status";
  }
}

int ae_ocsp_verify(const unsigned char *der, size_t len, gnutls_x509_crt_t leaf, gnutls_x509_crt_t issuer,
                   int64_t now, ae_ocsp_verdict *out, ae_err *err) {
  gnutls_ocsp_resp_t resp = NULL;
  int rc = AE_EPROTO;
  if (!der || len == 0 || len > UINT32_MAX)
    return ae_err_set(err, AE_EPROTO, "empty OCSP response");
  int g = gnutls_ocsp_resp_init(&resp);
  if (g < 0)
    return ae_err_set(err, AE_ENOMEM, "OCSP: %s", gnutls_strerror(g));
  gnutls_datum_t d = {(unsigned char *)(uintptr_t)der, (unsigned)len};
  g = gnutls_ocsp_resp_import(resp, &d);
  if (g < 0) {
    ae_err_set(err, rc, "unparsable OCSP response: %s", gnutls_strerror(g));
    goto out;
  }
  int st = gnutls_ocsp_resp_get_status(resp);
  if (st != GNUTLS_OCSP_RESP_SUCCESSFUL) {
    ae_err_set(err, rc, "OCSP responder answered %s", st < 0 ? gnutls_strerror(st) : resp_status_name(st));
    goto out;
  }
  unsigned cert_status = 0;
  int reason = -1;
  time_t this_u = 0, next_u = 0, rev_t = 0;
  g = gnutls_ocsp_resp_get_single(resp, 0, NULL, NULL, NULL, NULL, &cert_status, &this_u, &next_u, &rev_t,
                                  (unsigned *)&reason);
  if (g < 0) {
    ae_err_set(err, rc, "OCSP response without a single response: %s", gnutls_strerror(g));
    goto out;
  }
  if (gnutls_ocsp_resp_check_crt(resp, 0, leaf) != 0) {
    ae_err_set(err, rc, "OCSP response is for another certificate");
    goto out;
  }
  unsigned vst = 0;
  g = gnutls_ocsp_resp_verify_direct(resp, issuer, &vst, 0);
  if (g < 0 || vst != 0) {
    ae_err_set(err, rc, "OCSP response signature not from the issuer or its delegated responder (%s, status 0x%x)",
               g < 0 ? gnutls_strerror(g) : "verified", vst);
    goto out;
  }
  if (this_u == (time_t)-1 || (int64_t)this_u > now + AE_OCSP_SKEW_S) {
    ae_err_set(err, rc, "OCSP thisUpdate is in the future");
    goto out;
  }
  if (next_u == (time_t)-1 || next_u == 0) {
    ae_err_set(err, rc, "OCSP response has no nextUpdate");
    goto out;
  }
  if ((int64_t)next_u <= now) {
    ae_err_set(err, rc, "OCSP response expired (nextUpdate passed)");
    goto out;
  }
  if ((int64_t)next_u <= (int64_t)this_u) {
    ae_err_set(err, rc, "OCSP nextUpdate is not after thisUpdate");
    goto out;
  }
  time_t not_after = gnutls_x509_crt_get_expiration_time(leaf);
  if (not_after != (time_t)-1 && next_u > not_after) {
    ae_err_set(err, rc, "OCSP nextUpdate is after the certificate's notAfter");
    goto out;
  }
  memset(out, 0, sizeof(*out));
  switch (cert_status) {
  case GNUTLS_OCSP_CERT_GOOD:
    out->status = AE_OCSP_GOOD;
    break;
  case GNUTLS_OCSP_CERT_REVOKED:
    out->status = AE_OCSP_REVOKED;
    break;
  default:
    out->status = AE_OCSP_UNKNOWN;
    break;
  }
  out->this_update = (int64_t)this_u;
  out->next_update = (int64_t)next_u;
  out->revoked_at = out->status == AE_OCSP_REVOKED ? (int64_t)rev_t : 0;
  out->reason = out->status == AE_OCSP_REVOKED ? reason : -1;
  /* GnuTLS reports an absent reason as GNUTLS_X509_CRLREASON_UNSPECIFIED (0) already. */
  rc = 0;
out:
  gnutls_ocsp_resp_deinit(resp);
  return rc;
}

static const char *const k_reasons[] = {
    "unspecified",          "keyCompromise", "cACompromise",   "affiliationChanged",
    "superseded",           "cessationOfOperation", "certificateHold", NULL /* 7 is unused */,
    "removeFromCRL",        "privilegeWithdrawn",   "aACompromise",
};

const char *ae_ocsp_reason_name(int reason) {
  if (reason < 0 || reason >= (int)AE_ARRAY_LEN(k_reasons) || !k_reasons[reason])
    return "unspecified";
  return k_reasons[reason];
}

int ae_ocsp_reason_parse(const char *s, int *out) {
  if (!s || !*s)
    return AE_EINVAL;
  if (s[0] >= '0' && s[0] <= '9') {
    char *end = NULL;
    long v = strtol(s, &end, 10);
    if (*end || v < 0 || v > 10)
      return AE_EINVAL;
    *out = (int)v;
    return 0;
  }
  for (size_t i = 0; i < AE_ARRAY_LEN(k_reasons); i++) {
    if (k_reasons[i] && ae_strcasecmp(k_reasons[i], s) == 0) {
      *out = (int)i;
      return 0;
    }
  }
  return AE_EINVAL;
}
