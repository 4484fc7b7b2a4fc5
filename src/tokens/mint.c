/* Token minting and issuer key files (PKCS#8 PEM, the format `openssl genpkey -algorithm ed25519`
 * writes, so keys can come from either tool). */
#include "acmedge/tokens.h"

#include <gnutls/abstract.h>
#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <stdlib.h>
#include <string.h>

int ae_tok_mint(const uint8_t seed[32], const uint8_t pub[32], const ae_tok_mint_args *a, char **out, ae_err *err) {
  *out = NULL;
  if (!a->iss || !*a->iss || !a->sub || !*a->sub || !a->aud || !*a->aud)
    return ae_err_set(err, AE_EINVAL, "iss, sub and aud must be non-empty");
  if (a->ttl_s <= 0)
    return ae_err_set(err, AE_EINVAL, "ttl must be positive");
  char *jti = NULL;
  if (a->jti)
    jti = ae_strdup(a->jti);
  else {
    uint8_t rnd[16];
    if (gnutls_rnd(GNUTLS_RND_NONCE, rnd, sizeof(rnd)) != 0)
      return ae_err_set(err, AE_ERR, "no randomness for the token id");
    jti = ae_tok_b64_encode(rnd, sizeof(rnd));
  }
  json_t *groups = json_array();
  for (size_t i = 0; i < a->ngroups; i++)
    json_array_append_new(groups, json_string(a->groups[i]));
  json_t *o = json_pack("{s:i,s:s,s:s,s:s,s:o,s:I,s:I,s:I,s:s}", "v", 1, "iss", a->iss, "sub", a->sub, "aud",
                        a->aud, "groups", groups, "exp", (json_int_t)(a->now + a->ttl_s), "nbf",
                        (json_int_t)a->now, "iat", (json_int_t)a->now, "jti", jti);
  free(jti);
  if (!o)
    return ae_err_set(err, AE_EINVAL, "claims are not valid UTF-8 strings");
  if (a->cnf) {
    char *c = ae_tok_b64_encode(a->cnf, 32);
    json_object_set_new(o, "cnf", json_string(c));
    free(c);
  }
  char *js = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
  json_decref(o);
  if (!js)
    return ae_err_set(err, AE_ENOMEM, "cannot serialise the claims");
  size_t jl = strlen(js);
  if (jl > AE_TOK_MAX_PAYLOAD) {
    free(js);
    return ae_err_set(err, AE_ELIMIT, "payload is %zu bytes, more than %u", jl, AE_TOK_MAX_PAYLOAD);
  }
  char *p = ae_tok_b64_encode((const uint8_t *)js, jl);
  free(js);
  size_t pl = strlen(p), cl = sizeof(AE_TOK_SIG_CONTEXT) - 1;
  uint8_t *m = ae_malloc(cl + pl);
  memcpy(m, AE_TOK_SIG_CONTEXT, cl);
  memcpy(m + cl, p, pl);
  uint8_t sig[64];
  ae_ed25519_sign(seed, pub, m, cl + pl, sig);
  free(m);
  char *s = ae_tok_b64_encode(sig, sizeof(sig));
  size_t n = sizeof(AE_TOK_PREFIX) + pl + 1 + strlen(s);
  *out = ae_malloc(n);
  snprintf(*out, n, AE_TOK_PREFIX "%s.%s", p, s);
  free(p);
  free(s);
  return 0;
}

int ae_tok_key_load(const char *path, uint8_t seed[32], uint8_t pub[32], ae_err *err) {
  char *pem = NULL;
  size_t len = 0;
  int rc = ae_read_file(path, 64 * 1024, &pem, &len, err);
  if (rc)
    return rc;
  gnutls_x509_privkey_t xk = NULL;
  gnutls_datum_t d = {(unsigned char *)pem, (unsigned)len};
  gnutls_datum_t x = {0}, k = {0};
  gnutls_ecc_curve_t curve = 0;
  rc = AE_EINVAL;
  if (gnutls_x509_privkey_init(&xk) == 0 &&
      gnutls_x509_privkey_import2(xk, &d, GNUTLS_X509_FMT_PEM, NULL, GNUTLS_PKCS_PLAIN) == 0 &&
      gnutls_x509_privkey_get_pk_algorithm(xk) == GNUTLS_PK_EDDSA_ED25519 &&
      gnutls_x509_privkey_export_ecc_raw(xk, &curve, &x, NULL, &k) == 0 && k.size == 32 && x.size == 32) {
    memcpy(seed, k.data, 32);
    ae_ed25519_public(seed, pub);
    rc = memcmp(pub, x.data, 32) == 0 ? 0 : AE_EINVAL;
  }
  if (k.data) {
    gnutls_memset(k.data, 0, k.size);
    gnutls_free(k.data);
  }
  gnutls_free(x.data);
  gnutls_x509_privkey_deinit(xk);
  gnutls_memset(pem, 0, len);
  free(pem);
  if (rc)
    return ae_err_set(err, rc, "%s: not an unencrypted PKCS#8 Ed25519 private key", path);
  return 0;
}
