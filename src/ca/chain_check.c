/* The chain check run before any certificate (ACME or internal) is installed: a chain that a
 * client would reject is refused with the precise reason instead of being served. */
#include "acmedge/ca.h"
#include "ca_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_CHAIN 8
#define FUTURE_SKEW_S 300  /* a CA clock slightly ahead of ours is not an error */

static void subject_of(gnutls_x509_crt_t c, char *buf, size_t len) {
  size_t n = len;
  if (gnutls_x509_crt_get_dn(c, buf, &n) < 0)
    snprintf(buf, len, "?");
}

static void issuer_of(gnutls_x509_crt_t c, char *buf, size_t len) {
  size_t n = len;
  if (gnutls_x509_crt_get_issuer_dn(c, buf, &n) < 0)
    snprintf(buf, len, "?");
}

static int check_link(gnutls_x509_crt_t *crts, unsigned i, ae_err *err) {
  gnutls_datum_t iss = {NULL, 0}, sub = {NULL, 0};
  char a[512], b[512];
  int same = gnutls_x509_crt_get_raw_issuer_dn(crts[i], &iss) >= 0 &&
             gnutls_x509_crt_get_raw_dn(crts[i + 1], &sub) >= 0 && iss.size == sub.size &&
             memcmp(iss.data, sub.data, iss.size) == 0;
  gnutls_free(iss.data);
  gnutls_free(sub.data);
  if (!same) {
    issuer_of(crts[i], a, sizeof(a));
    subject_of(crts[i + 1], b, sizeof(b));
    return ae_err_set(err, AE_EINVAL, "invalid chain: certificate %u issuer '%s' is not certificate %u subject '%s'",
                      i, a, i + 1, b);
  }
  unsigned char aki[64], ski[64];
  size_t akil = sizeof(aki), skil = sizeof(ski);
  unsigned crit = 0;
  if (gnutls_x509_crt_get_authority_key_id(crts[i], aki, &akil, &crit) >= 0 &&
      gnutls_x509_crt_get_subject_key_id(crts[i + 1], ski, &skil, &crit) >= 0 &&
      (akil != skil || memcmp(aki, ski, akil) != 0))
    return ae_err_set(err, AE_EINVAL,
                      "invalid chain: certificate %u authority key identifier differs from certificate %u subject "
                      "key identifier",
                      i, i + 1);
  if (!ca_signed_by(crts[i], crts[i + 1])) {
    subject_of(crts[i + 1], b, sizeof(b));
    return ae_err_set(err, AE_EINVAL,
                      "invalid chain: certificate %u signature does not verify with certificate %u ('%s'), or that "
                      "one may not sign certificates",
                      i, i + 1, b);
  }
  return 0;
}

static int check_times(gnutls_x509_crt_t *crts, unsigned n, int64_t now, ae_err *err) {
  for (unsigned i = 0; i < n; i++) {
    int64_t nb = (int64_t)gnutls_x509_crt_get_activation_time(crts[i]);
    int64_t na = (int64_t)gnutls_x509_crt_get_expiration_time(crts[i]);
    char t[40];
    if (nb > now + FUTURE_SKEW_S) {
      ae_time_rfc3339(nb, t, sizeof(t));
      return ae_err_set(err, AE_EINVAL, "invalid chain: certificate %u is not valid before %s", i, t);
    }
    if (na <= now) {
      ae_time_rfc3339(na, t, sizeof(t));
      return ae_err_set(err, AE_EINVAL, "invalid chain: certificate %u expired at %s", i, t);
    }
  }
  return 0;
}

/* A wildcard name ("*.example.com") is covered only by the same wildcard SAN; other names follow
 * RFC 6125 matching. */
static int covers(gnutls_x509_crt_t c, const char *name) {
  if (name[0] != '*')
    return gnutls_x509_crt_check_hostname2(c, name, 0) != 0;
  for (unsigned i = 0; i < 1024; i++) {
    char san[256];
    size_t len = sizeof(san);
    int t = gnutls_x509_crt_get_subject_alt_name(c, i, san, &len, NULL);
    if (t == GNUTLS_E_REQUESTED_DATA_NOT_AVAILABLE)
      break;
    if (t == GNUTLS_SAN_DNSNAME && ae_strcasecmp(san, name) == 0)
      return 1;
  }
  return 0;
}

int ae_chain_check(const char *cert_pem, size_t cert_len, const char *key_pem, size_t key_len, const char *name,
                   int64_t now, ae_err *err) {
  gnutls_x509_crt_t crts[MAX_CHAIN];
  unsigned n = MAX_CHAIN;
  gnutls_datum_t d = {(unsigned char *)cert_pem, (unsigned)cert_len};
  int g = gnutls_x509_crt_list_import(crts, &n, &d, GNUTLS_X509_FMT_PEM, 0);
  if (g < 0 || n == 0)
    return ae_err_set(err, AE_EINVAL, "invalid chain: cannot parse the certificates (%s)",
                      g < 0 ? gnutls_strerror(g) : "none found");
  gnutls_privkey_t key = NULL;
  int r = 0;
  for (unsigned i = 0; r == 0 && i + 1 < n; i++)
    r = check_link(crts, i, err);
  if (r == 0 && name && !covers(crts[0], name))
    r = ae_err_set(err, AE_EINVAL, "invalid chain: the certificate does not cover %s", name);
  if (r == 0)
    r = check_times(crts, n, now, err);
  if (r == 0 && key_pem) {
    if (ca_key_parse(key_pem, key_len, "invalid chain: private key", &key, err) != 0)
      r = AE_EINVAL;
    else if (!ca_key_matches(crts[0], key))
      r = ae_err_set(err, AE_EINVAL, "invalid chain: the private key does not match the certificate");
  }
  if (key)
    gnutls_privkey_deinit(key);
  for (unsigned i = 0; i < n; i++)
    gnutls_x509_crt_deinit(crts[i]);
  return r;
}
