/* Self-signed certificate generation (the built-in default certificate and tests). */
#include "acmedge/certstore.h"

#include <gnutls/crypto.h>
#include <gnutls/x509.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>


static int pem_dup(const gnutls_datum_t *d, char **out) {
  char *s = ae_malloc(d->size + 1);
  memcpy(s, d->data, d->size);
  s[d->size] = '\0';
  *out = s;
  return 0;
}

int ae_cert_generate_selfsigned(const char *cn, const char *const *names, size_t nnames, unsigned days,
                                char **cert_pem, char **key_pem, ae_err *err) {
  gnutls_x509_privkey_t key = NULL;
  gnutls_x509_crt_t crt = NULL;
  gnutls_datum_t cd = {NULL, 0}, kd = {NULL, 0};
  int rc = AE_ERR;
  const char *step = "init";
  int g;

  if (!cn || !*cn || days == 0)
    return ae_err_set(err, AE_EINVAL, "self-signed certificate: need a CN and a validity");

  step = "generate key";
  g = gnutls_x509_privkey_init(&key);
  if (g >= 0)
    g = gnutls_x509_privkey_generate(key, GNUTLS_PK_ECDSA, GNUTLS_CURVE_TO_BITS(GNUTLS_ECC_CURVE_SECP256R1), 0);
  if (g < 0)
    goto fail;

  step = "build certificate";
  g = gnutls_x509_crt_init(&crt);
  if (g < 0)
    goto fail;
  g = gnutls_x509_crt_set_version(crt, 3);
  if (g < 0)
    goto fail;
  unsigned char serial[16];
  g = gnutls_rnd(GNUTLS_RND_NONCE, serial, sizeof(serial));
  if (g < 0)
    goto fail;
  /* Positive and without a leading zero octet, so the DER INTEGER is exactly 16 bytes. */
  serial[0] = (unsigned char)((serial[0] & 0x7f) | 0x40);
  g = gnutls_x509_crt_set_serial(crt, serial, sizeof(serial));
  if (g < 0)
    goto fail;
  time_t now = time(NULL);
  /* Backdated a little so clients with a slightly slow clock accept it. */
  g = gnutls_x509_crt_set_activation_time(crt, now - 3600);
  if (g >= 0)
    g = gnutls_x509_crt_set_expiration_time(crt, now + (time_t)days * 86400);
  if (g < 0)
    goto fail;
  g = gnutls_x509_crt_set_dn_by_oid(crt, GNUTLS_OID_X520_COMMON_NAME, 0, cn, (unsigned)strlen(cn));
  if (g < 0)
    goto fail;
  for (size_t i = 0; i < nnames; i++) {
    if (!names || !names[i] || !*names[i])
      continue;
    step = "add subject alternative name";
    g = gnutls_x509_crt_set_subject_alt_name(crt, GNUTLS_SAN_DNSNAME, names[i], (unsigned)strlen(names[i]),
                                             GNUTLS_FSAN_APPEND);
    if (g < 0)
      goto fail;
  }
  step = "set extensions";
  g = gnutls_x509_crt_set_key(crt, key);
  if (g >= 0)
    g = gnutls_x509_crt_set_basic_constraints(crt, 0, -1);
  if (g >= 0)
    g = gnutls_x509_crt_set_key_usage(crt, GNUTLS_KEY_DIGITAL_SIGNATURE);
  if (g >= 0)
    g = gnutls_x509_crt_set_key_purpose_oid(crt, GNUTLS_KP_TLS_WWW_SERVER, 0);
  if (g < 0)
    goto fail;
  unsigned char kid[64];
  size_t kidlen = sizeof(kid);
  g = gnutls_x509_crt_get_key_id(crt, 0, kid, &kidlen);
  if (g >= 0)
    g = gnutls_x509_crt_set_subject_key_id(crt, kid, kidlen);
  if (g >= 0)
    g = gnutls_x509_crt_set_authority_key_id(crt, kid, kidlen);
  if (g < 0)
    goto fail;

  step = "sign";
  g = gnutls_x509_crt_sign2(crt, crt, key, GNUTLS_DIG_SHA256, 0);
  if (g < 0)
    goto fail;

  step = "export";
  g = gnutls_x509_crt_export2(crt, GNUTLS_X509_FMT_PEM, &cd);
  if (g >= 0)
    g = gnutls_x509_privkey_export2_pkcs8(key, GNUTLS_X509_FMT_PEM, NULL, GNUTLS_PKCS_PLAIN, &kd);
  if (g < 0)
    goto fail;

  pem_dup(&cd, cert_pem);
  pem_dup(&kd, key_pem);
  rc = 0;
  goto out;

fail:
  rc = ae_err_set(err, AE_ERR, "self-signed certificate: %s: %s", step, gnutls_strerror(g));
out:
  if (kd.data) {
    memset(kd.data, 0, kd.size);
    gnutls_free(kd.data);
  }
  gnutls_free(cd.data);
  if (crt)
    gnutls_x509_crt_deinit(crt);
  if (key)
    gnutls_x509_privkey_deinit(key);
  return rc;
}

