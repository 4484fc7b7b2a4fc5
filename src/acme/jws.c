/* JWS in flattened JSON serialization (RFC 7515 §7.2.2) as ACME uses it (RFC 8555 §6.2):
 * ES256/RS256 account signatures, HS256 external account binding, key authorizations. */
#include <gnutls/abstract.h>
#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <nettle/hmac.h>
#include <stdlib.h>
#include <string.h>

#include "acmedge/crypto.h"

#define AE_ES256_HALF 32

/* Copies an unsigned big-endian integer into out[width], left-padded; leading zeros of the DER
 * encoding are dropped first. */
static int fixed_width(const gnutls_datum_t *v, uint8_t *out, size_t width) {
  const unsigned char *p = v->data;
  size_t n = v->size;
  while (n > 0 && p[0] == 0) {
    p++;
    n--;
  }
  if (n > width)
    return AE_EPROTO;
  memset(out, 0, width - n);
  if (n)
    memcpy(out + (width - n), p, n);
  return 0;
}

/* Signs "protected.payload" with the account key; *sig_b64 malloc'd. */
static int sign_input(const ae_key *k, const char *input, char **sig_b64, ae_err *err) {
  gnutls_privkey_t priv = ae_key_gnutls_privkey(k);
  ae_key_type type = ae_key_get_type(k);
  gnutls_sign_algorithm_t alg = type == AE_KEY_ECDSA_P256 ? GNUTLS_SIGN_ECDSA_SHA256 : GNUTLS_SIGN_RSA_SHA256;
  gnutls_datum_t data = {(unsigned char *)(uintptr_t)input, (unsigned)strlen(input)};
  gnutls_datum_t sig = {NULL, 0};
  int rc = gnutls_privkey_sign_data2(priv, alg, 0, &data, &sig);
  if (rc < 0)
    return ae_err_set(err, AE_ERR, "JWS signing failed: %s", gnutls_strerror(rc));
  if (type == AE_KEY_RSA_2048) {
    rc = ae_b64url_encode(sig.data, sig.size, sig_b64);
    gnutls_free(sig.data);
    return rc < 0 ? ae_err_set(err, rc, "JWS encoding failed") : 0;
  }
  /* GnuTLS yields a DER SEQUENCE{r,s}; JWS ES256 wants the fixed-size r||s (RFC 7518 §3.4). */
  gnutls_datum_t r = {NULL, 0}, s = {NULL, 0};
  rc = gnutls_decode_rs_value(&sig, &r, &s);
  gnutls_free(sig.data);
  if (rc < 0)
    return ae_err_set(err, AE_ERR, "cannot decode ECDSA signature: %s", gnutls_strerror(rc));
  uint8_t raw[2 * AE_ES256_HALF];
  int rc1 = fixed_width(&r, raw, AE_ES256_HALF);
  int rc2 = fixed_width(&s, raw + AE_ES256_HALF, AE_ES256_HALF);
  gnutls_free(r.data);
  gnutls_free(s.data);
  if (rc1 < 0 || rc2 < 0)
    return ae_err_set(err, AE_ERR, "ECDSA signature component too large");
  rc = ae_b64url_encode(raw, sizeof(raw), sig_b64);
  return rc < 0 ? ae_err_set(err, rc, "JWS encoding failed") : 0;
}

/* base64url of the compact JSON text of obj; *out malloc'd. */
static int b64_json(json_t *obj, char **out) {
  char *text = json_dumps(obj, JSON_COMPACT | JSON_SORT_KEYS);
  if (!text)
    return AE_ENOMEM;
  int rc = ae_b64url_encode(text, strlen(text), out);
  free(text);
  return rc;
}

/* "a.b" in a fresh buffer. */
static char *join_dot(const char *a, const char *b) {
  size_t na = strlen(a), nb = strlen(b);
  char *s = ae_malloc(na + nb + 2);
  memcpy(s, a, na);
  s[na] = '.';
  memcpy(s + na + 1, b, nb + 1);
  return s;
}

int ae_jws_sign(const ae_key *k, const char *kid, const char *nonce, const char *url,
                const char *payload, char **out, ae_err *err) {
  if (!out)
    return ae_err_set(err, AE_EINVAL, "JWS: no output");
  *out = NULL;
  if (!k || !url || !*url)
    return ae_err_set(err, AE_EINVAL, "JWS: key and url are required");
  ae_key_type type = ae_key_get_type(k);
  json_t *hdr = json_pack("{s:s, s:s}", "alg", type == AE_KEY_ECDSA_P256 ? "ES256" : "RS256", "url", url);
  if (!hdr)
    return ae_err_set(err, AE_ENOMEM, "JWS: header allocation failed");
  /* A nonce is absent only in nested JWS (key change inner object, RFC 8555 §7.3.5). */
  if (nonce)
    json_object_set_new(hdr, "nonce", json_string(nonce));
  if (kid) {
    json_object_set_new(hdr, "kid", json_string(kid));
  } else {
    json_t *jwk = ae_key_jwk(k);
    if (!jwk) {
      json_decref(hdr);
      return ae_err_set(err, AE_ERR, "JWS: cannot export public key");
    }
    json_object_set_new(hdr, "jwk", jwk);
  }
  char *prot = NULL;
  int rc = b64_json(hdr, &prot);
  json_decref(hdr);
  if (rc < 0)
    return ae_err_set(err, rc, "JWS: header encoding failed");
  char *pay = NULL;
  /* POST-as-GET (RFC 8555 §6.3) sends the empty string as payload, which encodes to "". */
  const char *p = payload ? payload : "";
  rc = ae_b64url_encode(p, strlen(p), &pay);
  if (rc < 0) {
    free(prot);
    return ae_err_set(err, rc, "JWS: payload encoding failed");
  }
  char *input = join_dot(prot, pay);
  char *sig = NULL;
  rc = sign_input(k, input, &sig, err);
  free(input);
  if (rc < 0) {
    free(prot);
    free(pay);
    return rc;
  }
  json_t *jws = json_pack("{s:s, s:s, s:s}", "protected", prot, "payload", pay, "signature", sig);
  free(prot);
  free(pay);
  free(sig);
  if (!jws)
    return ae_err_set(err, AE_ENOMEM, "JWS: allocation failed");
  *out = json_dumps(jws, JSON_COMPACT);
  json_decref(jws);
  if (!*out)
    return ae_err_set(err, AE_ENOMEM, "JWS: serialisation failed");
  return 0;
}

int ae_jws_eab(const char *kid, const char *hmac_key_b64url, json_t *account_jwk,
               const char *url, json_t **out, ae_err *err) {
  if (!out)
    return ae_err_set(err, AE_EINVAL, "EAB: no output");
  *out = NULL;
  if (!kid || !*kid || !hmac_key_b64url || !json_is_object(account_jwk) || !url || !*url)
    return ae_err_set(err, AE_EINVAL, "EAB: kid, HMAC key, account key and url are required");
  uint8_t *key = NULL;
  size_t keylen = 0;
  if (ae_b64url_decode(hmac_key_b64url, strlen(hmac_key_b64url), &key, &keylen) < 0 || keylen == 0) {
    free(key);
    return ae_err_set(err, AE_EINVAL, "EAB: HMAC key is not valid base64url");
  }
  json_t *hdr = json_pack("{s:s, s:s, s:s}", "alg", "HS256", "kid", kid, "url", url);
  char *prot = NULL, *pay = NULL;
  int rc = hdr ? b64_json(hdr, &prot) : AE_ENOMEM;
  json_decref(hdr);
  if (rc >= 0)
    rc = b64_json(account_jwk, &pay);
  if (rc < 0) {
    gnutls_memset(key, 0, keylen);
    free(key);
    free(prot);
    free(pay);
    return ae_err_set(err, rc, "EAB: encoding failed");
  }
  char *input = join_dot(prot, pay);
  struct hmac_sha256_ctx ctx;
  hmac_sha256_set_key(&ctx, keylen, key);
  hmac_sha256_update(&ctx, strlen(input), (const uint8_t *)input);
  uint8_t mac[SHA256_DIGEST_SIZE];
  hmac_sha256_digest(&ctx, sizeof(mac), mac);
  gnutls_memset(&ctx, 0, sizeof(ctx));
  gnutls_memset(key, 0, keylen);
  free(key);
  free(input);
  char *sig = NULL;
  rc = ae_b64url_encode(mac, sizeof(mac), &sig);
  if (rc < 0) {
    free(prot);
    free(pay);
    return ae_err_set(err, rc, "EAB: encoding failed");
  }
  *out = json_pack("{s:s, s:s, s:s}", "protected", prot, "payload", pay, "signature", sig);
  free(prot);
  free(pay);
  free(sig);
  if (!*out)
    return ae_err_set(err, AE_ENOMEM, "EAB: allocation failed");
  return 0;
}

int ae_key_authorization(const ae_key *k, const char *token, char *out, size_t outlen) {
  if (!k || !token || !out || !*token)
    return AE_EINVAL;
  /* Tokens are base64url (RFC 8555 §8.1); anything else is a CA bug or an attack. */
  for (const char *c = token; *c; c++) {
    char ch = *c;
    int ok = (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
             ch == '-' || ch == '_';
    if (!ok)
      return AE_EINVAL;
  }
  char tp[64];
  int rc = ae_key_thumbprint(k, tp, sizeof(tp));
  if (rc < 0)
    return rc;
  size_t nt = strlen(token), np = strlen(tp);
  if (nt + 1 + np + 1 > outlen)
    return AE_ELIMIT;
  memcpy(out, token, nt);
  out[nt] = '.';
  memcpy(out + nt + 1, tp, np + 1);
  return 0;
}
