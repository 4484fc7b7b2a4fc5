/* Test helper: a self-signed RSA certificate made with GnuTLS, for tests that need a non-ECDSA
 * certificate (ae_cert_generate_selfsigned makes ECDSA P-256 only). Header-only: include it from
 * one test file. */
#ifndef AE_CERTSTORE_TEST_UTIL_H
#define AE_CERTSTORE_TEST_UTIL_H

#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Makes an RSA key of the given size and a self-signed server certificate for cn (and name as
 * its only DNS SAN when not NULL, ocsp_url as its AIA OCSP responder when not NULL). *cert_pem
 * and *key_pem (PKCS#8) are malloc'd. 0 or a GnuTLS error code. */
static inline int ae_test_make_rsa_cert_ocsp(const char *cn, const char *name, unsigned bits, const char *ocsp_url,
                                             char **cert_pem, char **key_pem) {
  gnutls_x509_privkey_t key = NULL;
  gnutls_x509_crt_t crt = NULL;
  gnutls_datum_t cd = {NULL, 0}, kd = {NULL, 0};
  unsigned char serial[12], kid[64];
  size_t kidlen = sizeof(kid);
  time_t now = time(NULL);
  int g = gnutls_x509_privkey_init(&key);
  if (g >= 0)
    g = gnutls_x509_privkey_generate(key, GNUTLS_PK_RSA, bits, 0);
  if (g >= 0)
    g = gnutls_x509_crt_init(&crt);
  if (g >= 0)
    g = gnutls_x509_crt_set_version(crt, 3);
  if (g >= 0)
    g = gnutls_rnd(GNUTLS_RND_NONCE, serial, sizeof(serial));
  if (g >= 0) {
    serial[0] = (unsigned char)((serial[0] & 0x7f) | 0x40);
    g = gnutls_x509_crt_set_serial(crt, serial, sizeof(serial));
  }
  if (g >= 0)
    g = gnutls_x509_crt_set_activation_time(crt, now - 3600);
  if (g >= 0)
    g = gnutls_x509_crt_set_expiration_time(crt, now + 30 * 86400);
  if (g >= 0)
    g = gnutls_x509_crt_set_dn_by_oid(crt, GNUTLS_OID_X520_COMMON_NAME, 0, cn, (unsigned)strlen(cn));
  if (g >= 0 && name)
    g = gnutls_x509_crt_set_subject_alt_name(crt, GNUTLS_SAN_DNSNAME, name, (unsigned)strlen(name),
                                             GNUTLS_FSAN_APPEND);
  if (g >= 0 && ocsp_url) {
    gnutls_datum_t url = {(unsigned char *)ocsp_url, (unsigned)strlen(ocsp_url)};
    g = gnutls_x509_crt_set_authority_info_access(crt, GNUTLS_IA_OCSP_URI, &url);
  }
  if (g >= 0)
    g = gnutls_x509_crt_set_key(crt, key);
  if (g >= 0)
    g = gnutls_x509_crt_set_basic_constraints(crt, 0, -1);
  if (g >= 0)
    g = gnutls_x509_crt_set_key_usage(crt, GNUTLS_KEY_DIGITAL_SIGNATURE | GNUTLS_KEY_KEY_ENCIPHERMENT);
  if (g >= 0)
    g = gnutls_x509_crt_get_key_id(crt, 0, kid, &kidlen);
  if (g >= 0)
    g = gnutls_x509_crt_set_subject_key_id(crt, kid, kidlen);
  if (g >= 0)
    g = gnutls_x509_crt_sign2(crt, crt, key, GNUTLS_DIG_SHA256, 0);
  if (g >= 0)
    g = gnutls_x509_crt_export2(crt, GNUTLS_X509_FMT_PEM, &cd);
  if (g >= 0)
    g = gnutls_x509_privkey_export2_pkcs8(key, GNUTLS_X509_FMT_PEM, NULL, GNUTLS_PKCS_PLAIN, &kd);
  if (g >= 0) {
    *cert_pem = calloc(1, cd.size + 1);
    *key_pem = calloc(1, kd.size + 1);
    if (!*cert_pem || !*key_pem)
      abort();
    memcpy(*cert_pem, cd.data, cd.size);
    memcpy(*key_pem, kd.data, kd.size);
    g = 0;
  }
  gnutls_free(cd.data);
  gnutls_free(kd.data);
  if (crt)
    gnutls_x509_crt_deinit(crt);
  if (key)
    gnutls_x509_privkey_deinit(key);
  return g;
}

/* The same without an OCSP responder. */
static inline int ae_test_make_rsa_cert(const char *cn, const char *name, unsigned bits, char **cert_pem,
                                        char **key_pem) {
  return ae_test_make_rsa_cert_ocsp(cn, name, bits, NULL, cert_pem, key_pem);
}

#endif
