/* Unit tests for crypto/jws: base64url and SHA-256 vectors, RFC 7638 thumbprint, RFC 7515 A.3
 * ES256 key and signature, our JWS (ES256/RS256) verified with GnuTLS, EAB HMAC verified with
 * nettle, PEM round trips, CSR contents and key/certificate matching. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>

#include <gnutls/abstract.h>
#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <nettle/hmac.h>

#include "acmedge/crypto.h"

/* ---------- helpers ---------- */

static uint8_t *b64d(const char *s, size_t *n) {
  uint8_t *out = NULL;
  size_t len = 0;
  assert_int_equal(ae_b64url_decode(s, strlen(s), &out, &len), 0);
  if (n)
    *n = len;
  return out;
}

static char *b64d_str(const char *s) { return (char *)b64d(s, NULL); }

static gnutls_datum_t datum_b64(const char *s) {
  size_t n = 0;
  uint8_t *p = b64d(s, &n);
  gnutls_datum_t d = {p, (unsigned)n};
  return d;
}

/* Public key built independently from a JWK, so a verification also checks the JWK. */
static gnutls_pubkey_t pubkey_from_jwk(json_t *jwk) {
  gnutls_pubkey_t pub = NULL;
  assert_int_equal(gnutls_pubkey_init(&pub), 0);
  const char *kty = json_string_value(json_object_get(jwk, "kty"));
  assert_non_null(kty);
  if (strcmp(kty, "EC") == 0) {
    assert_string_equal(json_string_value(json_object_get(jwk, "crv")), "P-256");
    gnutls_datum_t x = datum_b64(json_string_value(json_object_get(jwk, "x")));
    gnutls_datum_t y = datum_b64(json_string_value(json_object_get(jwk, "y")));
    assert_int_equal(x.size, 32);
    assert_int_equal(y.size, 32);
    assert_int_equal(gnutls_pubkey_import_ecc_raw(pub, GNUTLS_ECC_CURVE_SECP256R1, &x, &y), 0);
    free(x.data);
    free(y.data);
  } else {
    gnutls_datum_t n = datum_b64(json_string_value(json_object_get(jwk, "n")));
    gnutls_datum_t e = datum_b64(json_string_value(json_object_get(jwk, "e")));
    assert_true(n.size > 0 && n.data[0] != 0);
    assert_true(e.size > 0 && e.data[0] != 0);
    assert_int_equal(gnutls_pubkey_import_rsa_raw(pub, &n, &e), 0);
    free(n.data);
    free(e.data);
  }
  return pub;
}

/* Verifies a JWS signature over "protected.payload"; returns the GnuTLS result (>= 0 ok). */
static int verify_sig(gnutls_pubkey_t pub, const char *prot, const char *pay, const char *sig_b64,
                      int es256) {
  size_t nin = strlen(prot) + strlen(pay) + 2;
  char *input = malloc(nin);
  assert_non_null(input);
  snprintf(input, nin, "%s.%s", prot, pay);
  gnutls_datum_t data = {(unsigned char *)input, (unsigned)strlen(input)};
  size_t slen = 0;
  uint8_t *raw = b64d(sig_b64, &slen);
  int rc;
  if (es256) {
    assert_int_equal(slen, 64);
    gnutls_datum_t r = {raw, 32}, s = {raw + 32, 32}, der = {NULL, 0};
    assert_int_equal(gnutls_encode_rs_value(&der, &r, &s), 0);
    rc = gnutls_pubkey_verify_data2(pub, GNUTLS_SIGN_ECDSA_SHA256, 0, &data, &der);
    gnutls_free(der.data);
  } else {
    gnutls_datum_t sig = {raw, (unsigned)slen};
    rc = gnutls_pubkey_verify_data2(pub, GNUTLS_SIGN_RSA_SHA256, 0, &data, &sig);
  }
  free(raw);
  free(input);
  return rc;
}

static json_t *parse_json(const char *text) {
  json_error_t jerr;
  json_t *j = json_loads(text, 0, &jerr);
  assert_non_null(j);
  return j;
}

static const char *jstr(json_t *o, const char *k) { return json_string_value(json_object_get(o, k)); }

/* ---------- base64url / SHA-256 ---------- */

static void test_b64url_vectors(void **state) {
  (void)state;
  /* RFC 4648 §10 vectors, unpadded. */
  static const char *const plain[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
  static const char *const enc[] = {"", "Zg", "Zm8", "Zm9v", "Zm9vYg", "Zm9vYmE", "Zm9vYmFy"};
  for (size_t i = 0; i < 7; i++) {
    char *e = NULL;
    assert_int_equal(ae_b64url_encode(plain[i], strlen(plain[i]), &e), 0);
    assert_string_equal(e, enc[i]);
    free(e);
    size_t n = 99;
    uint8_t *d = NULL;
    assert_int_equal(ae_b64url_decode(enc[i], strlen(enc[i]), &d, &n), 0);
    assert_int_equal(n, strlen(plain[i]));
    assert_memory_equal(d, plain[i], n);
    free(d);
  }
  /* URL-safe alphabet: 0xfb 0xff -> "-_8" (standard base64 would be "+/8="). */
  const uint8_t bytes[] = {0xfb, 0xff};
  char *e = NULL;
  assert_int_equal(ae_b64url_encode(bytes, 2, &e), 0);
  assert_string_equal(e, "-_8");
  free(e);
  /* Padding is accepted on input. */
  uint8_t *d = NULL;
  size_t n = 0;
  assert_int_equal(ae_b64url_decode("Zg==", 4, &d, &n), 0);
  assert_int_equal(n, 1);
  assert_int_equal(d[0], 'f');
  free(d);
  assert_int_equal(ae_b64url_decode("Zm8=", 4, &d, &n), 0);
  assert_int_equal(n, 2);
  free(d);
  /* Invalid inputs. */
  static const char *const bad[] = {"Zm9v+", "Zm9v/", "Z", "Zg=", "Zm9v====", "Z=g=", "Zm 9v", "Zm9v\n", "Zg===", "="};
  for (size_t i = 0; i < AE_ARRAY_LEN(bad); i++) {
    d = (uint8_t *)"x";
    assert_int_equal(ae_b64url_decode(bad[i], strlen(bad[i]), &d, &n), AE_EINVAL);
    assert_null(d);
  }
  /* Length-bounded: only the first slen bytes are read. */
  assert_int_equal(ae_b64url_decode("Zm9v!!!", 4, &d, &n), 0);
  assert_int_equal(n, 3);
  assert_memory_equal(d, "foo", 3);
  free(d);
}

static void test_sha256_vector(void **state) {
  (void)state;
  static const uint8_t abc[32] = {0xba, 0x78, 0x16, 0xbf, 0x8f, 0x01, 0xcf, 0xea, 0x41, 0x41, 0x40,
                                  0xde, 0x5d, 0xae, 0x22, 0x23, 0xb0, 0x03, 0x61, 0xa3, 0x96, 0x17,
                                  0x7a, 0x9c, 0xb4, 0x10, 0xff, 0x61, 0xf2, 0x00, 0x15, 0xad};
  uint8_t out[32];
  ae_sha256("abc", 3, out);
  assert_memory_equal(out, abc, 32);
  static const uint8_t empty_prefix[4] = {0xe3, 0xb0, 0xc4, 0x42};
  ae_sha256("", 0, out);
  assert_memory_equal(out, empty_prefix, 4);
}

/* ---------- thumbprint ---------- */

static const char rfc7638_n[] =
    "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWK"
    "RXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMi"
    "cAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRw"
    "r3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw";

static void test_thumbprint_rfc7638(void **state) {
  (void)state;
  /* RFC 7638 §3.1, including the non-required members that must be ignored. */
  json_t *jwk = json_pack("{s:s, s:s, s:s, s:s, s:s}", "kty", "RSA", "n", rfc7638_n, "e", "AQAB",
                          "alg", "RS256", "kid", "2011-04-29");
  char tp[64];
  assert_int_equal(ae_jwk_thumbprint(jwk, tp, sizeof(tp)), 0);
  assert_string_equal(tp, "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs");
  char small[43];
  assert_int_equal(ae_jwk_thumbprint(jwk, small, sizeof(small)), AE_ELIMIT);
  assert_int_equal(ae_jwk_thumbprint(jwk, tp, 44), 0);

  /* The same key as a GnuTLS public key exports to exactly n and e. */
  gnutls_pubkey_t pub = pubkey_from_jwk(jwk);
  gnutls_datum_t m = {NULL, 0}, e = {NULL, 0};
  assert_int_equal(gnutls_pubkey_export_rsa_raw2(pub, &m, &e, GNUTLS_EXPORT_FLAG_NO_LZ), 0);
  char *nb = NULL;
  assert_int_equal(ae_b64url_encode(m.data, m.size, &nb), 0);
  assert_string_equal(nb, rfc7638_n);
  free(nb);
  gnutls_free(m.data);
  gnutls_free(e.data);
  gnutls_pubkey_deinit(pub);

  json_object_del(jwk, "e");
  assert_int_equal(ae_jwk_thumbprint(jwk, tp, sizeof(tp)), AE_EINVAL);
  json_decref(jwk);
  jwk = json_pack("{s:s, s:s}", "kty", "oct", "k", "AAAA");
  assert_int_equal(ae_jwk_thumbprint(jwk, tp, sizeof(tp)), AE_EINVAL);
  json_decref(jwk);
  assert_int_equal(ae_jwk_thumbprint(NULL, tp, sizeof(tp)), AE_EINVAL);
}

/* ---------- RFC 7515 A.3 (ES256) ---------- */

static const char a3_x[] = "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU";
static const char a3_y[] = "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0";
static const char a3_d[] = "jpsQnnGQmL-YBIffH1136cspYG6-0iY7X1fCE9-E9LI";

static ae_key *rfc7515_a3_key(void) {
  gnutls_x509_privkey_t x = NULL;
  assert_int_equal(gnutls_x509_privkey_init(&x), 0);
  gnutls_datum_t dx = datum_b64(a3_x), dy = datum_b64(a3_y), dd = datum_b64(a3_d);
  assert_int_equal(gnutls_x509_privkey_import_ecc_raw(x, GNUTLS_ECC_CURVE_SECP256R1, &dx, &dy, &dd), 0);
  free(dx.data);
  free(dy.data);
  free(dd.data);
  gnutls_datum_t pem = {NULL, 0};
  assert_int_equal(gnutls_x509_privkey_export2_pkcs8(x, GNUTLS_X509_FMT_PEM, NULL, GNUTLS_PKCS_PLAIN, &pem), 0);
  gnutls_x509_privkey_deinit(x);
  ae_key *k = NULL;
  ae_err err = {0};
  assert_int_equal(ae_key_from_pem((const char *)pem.data, pem.size, &k, &err), 0);
  gnutls_free(pem.data);
  return k;
}

static void test_rfc7515_a3(void **state) {
  (void)state;
  ae_key *k = rfc7515_a3_key();
  assert_int_equal(ae_key_get_type(k), AE_KEY_ECDSA_P256);
  json_t *jwk = ae_key_jwk(k);
  assert_non_null(jwk);
  assert_string_equal(jstr(jwk, "kty"), "EC");
  assert_string_equal(jstr(jwk, "crv"), "P-256");
  assert_string_equal(jstr(jwk, "x"), a3_x);
  assert_string_equal(jstr(jwk, "y"), a3_y);
  assert_int_equal(json_object_size(jwk), 4);

  /* The published signature verifies with our r||s handling, proving the verifier below. */
  gnutls_pubkey_t pub = pubkey_from_jwk(jwk);
  const char *prot = "eyJhbGciOiJFUzI1NiJ9";
  const char *pay = "eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ";
  const char *sig = "DtEhU3ljbEg8L38VWAfUAqOyKAM6-Xx-F4GawxaepmXFCgfTjDxw5djxLa8ISlSApmWQxfKTUJqPP3-Kg6NU1Q";
  assert_true(verify_sig(pub, prot, pay, sig, 1) >= 0);
  assert_true(verify_sig(pub, prot, "eyJpc3MiOiJqb2UifQ", sig, 1) < 0);

  /* Our JWS with this key verifies against the RFC's public key. */
  char *out = NULL;
  ae_err err = {0};
  assert_int_equal(ae_jws_sign(k, "https://ca.test/acct/1", "nonce-1", "https://ca.test/new-order",
                               "{\"a\":1}", &out, &err), 0);
  json_t *jws = parse_json(out);
  assert_true(verify_sig(pub, jstr(jws, "protected"), jstr(jws, "payload"), jstr(jws, "signature"), 1) >= 0);
  json_decref(jws);
  free(out);
  gnutls_pubkey_deinit(pub);
  json_decref(jwk);
  ae_key_free(k);
}

/* ---------- our JWS ---------- */

static void check_jws(ae_key *k, const char *kid, const char *nonce, const char *payload, int es256) {
  const char *url = "https://ca.test/acme/new-acct";
  char *out = NULL;
  ae_err err = {0};
  assert_int_equal(ae_jws_sign(k, kid, nonce, url, payload, &out, &err), 0);
  json_t *jws = parse_json(out);
  free(out);
  assert_int_equal(json_object_size(jws), 3);
  const char *prot = jstr(jws, "protected"), *pay = jstr(jws, "payload"), *sig = jstr(jws, "signature");
  assert_non_null(prot);
  assert_non_null(pay);
  assert_non_null(sig);

  char *hdr_text = b64d_str(prot);
  json_t *hdr = parse_json(hdr_text);
  free(hdr_text);
  assert_string_equal(jstr(hdr, "alg"), es256 ? "ES256" : "RS256");
  assert_string_equal(jstr(hdr, "url"), url);
  if (nonce)
    assert_string_equal(jstr(hdr, "nonce"), nonce);
  else
    assert_null(json_object_get(hdr, "nonce"));
  json_t *jwk = ae_key_jwk(k);
  if (kid) {
    assert_string_equal(jstr(hdr, "kid"), kid);
    assert_null(json_object_get(hdr, "jwk"));
  } else {
    assert_null(json_object_get(hdr, "kid"));
    assert_true(json_equal(json_object_get(hdr, "jwk"), jwk));
  }
  json_decref(hdr);

  if (!payload || !*payload) {
    assert_string_equal(pay, "");
  } else {
    char *p = b64d_str(pay);
    assert_string_equal(p, payload);
    free(p);
  }

  size_t slen = 0;
  free(b64d(sig, &slen));
  assert_int_equal(slen, es256 ? 64 : 256);
  gnutls_pubkey_t pub = pubkey_from_jwk(jwk);
  assert_true(verify_sig(pub, prot, pay, sig, es256) >= 0);
  /* A different payload ({"x":1}) must not verify with the same signature. */
  assert_true(verify_sig(pub, prot, "eyJ4IjoxfQ", sig, es256) < 0);
  gnutls_pubkey_deinit(pub);
  json_decref(jwk);
  json_decref(jws);
}

static void test_jws_es256(void **state) {
  (void)state;
  ae_key *k = NULL;
  ae_err err = {0};
  assert_int_equal(ae_key_generate(AE_KEY_ECDSA_P256, &k, &err), 0);
  assert_int_equal(ae_key_get_type(k), AE_KEY_ECDSA_P256);
  json_t *jwk = ae_key_jwk(k);
  assert_int_equal(json_object_size(jwk), 4);
  assert_int_equal(strlen(jstr(jwk, "x")), 43);
  assert_int_equal(strlen(jstr(jwk, "y")), 43);
  json_decref(jwk);
  /* Several rounds so that r or s with a leading zero byte (1/256 each) is likely exercised. */
  for (int i = 0; i < 40; i++)
    check_jws(k, NULL, "nonce-abc", "{\"termsOfServiceAgreed\":true}", 1);
  check_jws(k, "https://ca.test/acct/7", "n2", NULL, 1);
  check_jws(k, "https://ca.test/acct/7", "n3", "", 1);
  check_jws(k, NULL, NULL, "{}", 1);

  char *out = (char *)"x";
  assert_int_equal(ae_jws_sign(k, NULL, "n", NULL, "{}", &out, &err), AE_EINVAL);
  assert_null(out);
  assert_int_equal(ae_jws_sign(NULL, NULL, "n", "https://x", "{}", &out, &err), AE_EINVAL);
  ae_key_free(k);
}

static void test_jws_rs256(void **state) {
  (void)state;
  ae_key *k = NULL;
  ae_err err = {0};
  assert_int_equal(ae_key_generate(AE_KEY_RSA_2048, &k, &err), 0);
  assert_int_equal(ae_key_get_type(k), AE_KEY_RSA_2048);
  json_t *jwk = ae_key_jwk(k);
  assert_string_equal(jstr(jwk, "kty"), "RSA");
  assert_string_equal(jstr(jwk, "e"), "AQAB");
  size_t nlen = 0;
  uint8_t *n = b64d(jstr(jwk, "n"), &nlen);
  assert_int_equal(nlen, 256);
  assert_true(n[0] != 0);
  free(n);
  assert_int_equal(json_object_size(jwk), 3);
  char tp1[64], tp2[64];
  assert_int_equal(ae_key_thumbprint(k, tp1, sizeof(tp1)), 0);
  assert_int_equal(ae_jwk_thumbprint(jwk, tp2, sizeof(tp2)), 0);
  assert_string_equal(tp1, tp2);
  assert_int_equal(strlen(tp1), 43);
  json_decref(jwk);
  check_jws(k, NULL, "nonce-r", "{\"contact\":[\"mailto:a@b.test\"]}", 0);
  check_jws(k, "https://ca.test/acct/9", "nonce-s", NULL, 0);
  ae_key_free(k);
}

/* ---------- EAB ---------- */

static void test_eab(void **state) {
  (void)state;
  ae_key *k = NULL;
  ae_err err = {0};
  assert_int_equal(ae_key_generate(AE_KEY_ECDSA_P256, &k, &err), 0);
  json_t *jwk = ae_key_jwk(k);
  /* A 32-byte MAC key as CAs hand it out (base64url, unpadded). */
  const char *mac_b64 = "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W";
  json_t *eab = NULL;
  assert_int_equal(ae_jws_eab("kid-123", mac_b64, jwk, "https://ca.test/acme/new-acct", &eab, &err), 0);
  assert_int_equal(json_object_size(eab), 3);
  const char *prot = jstr(eab, "protected"), *pay = jstr(eab, "payload"), *sig = jstr(eab, "signature");

  char *hdr_text = b64d_str(prot);
  json_t *hdr = parse_json(hdr_text);
  free(hdr_text);
  assert_string_equal(jstr(hdr, "alg"), "HS256");
  assert_string_equal(jstr(hdr, "kid"), "kid-123");
  assert_string_equal(jstr(hdr, "url"), "https://ca.test/acme/new-acct");
  assert_null(json_object_get(hdr, "nonce"));
  assert_null(json_object_get(hdr, "jwk"));
  json_decref(hdr);

  char *pay_text = b64d_str(pay);
  json_t *pj = parse_json(pay_text);
  free(pay_text);
  assert_true(json_equal(pj, jwk));
  json_decref(pj);

  size_t keylen = 0;
  uint8_t *key = b64d(mac_b64, &keylen);
  assert_int_equal(keylen, 48);
  struct hmac_sha256_ctx ctx;
  hmac_sha256_set_key(&ctx, keylen, key);
  hmac_sha256_update(&ctx, strlen(prot), (const uint8_t *)prot);
  hmac_sha256_update(&ctx, 1, (const uint8_t *)".");
  hmac_sha256_update(&ctx, strlen(pay), (const uint8_t *)pay);
  uint8_t mac[32];
  hmac_sha256_digest(&ctx, 32, mac);
  free(key);
  size_t slen = 0;
  uint8_t *s = b64d(sig, &slen);
  assert_int_equal(slen, 32);
  assert_memory_equal(s, mac, 32);
  free(s);
  json_decref(eab);

  eab = (json_t *)1;
  assert_int_equal(ae_jws_eab("kid", "not base64!", jwk, "https://x", &eab, &err), AE_EINVAL);
  assert_null(eab);
  assert_int_equal(ae_jws_eab("kid", "", jwk, "https://x", &eab, &err), AE_EINVAL);
  assert_int_equal(ae_jws_eab(NULL, mac_b64, jwk, "https://x", &eab, &err), AE_EINVAL);
  assert_int_equal(ae_jws_eab("kid", mac_b64, NULL, "https://x", &eab, &err), AE_EINVAL);
  json_decref(jwk);
  ae_key_free(k);
}

/* ---------- PEM ---------- */

static void roundtrip(ae_key_type type) {
  ae_key *k = NULL, *k2 = NULL;
  ae_err err = {0};
  assert_int_equal(ae_key_generate(type, &k, &err), 0);
  char *pem = NULL;
  assert_int_equal(ae_key_to_pem(k, &pem, &err), 0);
  assert_non_null(strstr(pem, "-----BEGIN PRIVATE KEY-----"));
  assert_int_equal(ae_key_from_pem(pem, strlen(pem), &k2, &err), 0);
  assert_int_equal(ae_key_get_type(k2), type);
  json_t *a = ae_key_jwk(k), *b = ae_key_jwk(k2);
  assert_true(json_equal(a, b));
  json_decref(a);
  json_decref(b);
  char t1[64], t2[64];
  assert_int_equal(ae_key_thumbprint(k, t1, sizeof(t1)), 0);
  assert_int_equal(ae_key_thumbprint(k2, t2, sizeof(t2)), 0);
  assert_string_equal(t1, t2);
  assert_non_null(ae_key_gnutls_privkey(k2));
  assert_non_null(ae_key_gnutls_x509_privkey(k2));
  /* The reimported key signs for the original public key. */
  check_jws(k2, "https://ca.test/acct/1", "n", "{}", type == AE_KEY_ECDSA_P256);
  free(pem);
  ae_key_free(k);
  ae_key_free(k2);
}

static void test_pem_roundtrip(void **state) {
  (void)state;
  roundtrip(AE_KEY_ECDSA_P256);
  roundtrip(AE_KEY_RSA_2048);
}

static void test_pem_bad(void **state) {
  (void)state;
  ae_key *k = (ae_key *)1;
  ae_err err = {0};
  const char *junk = "-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n";
  assert_true(ae_key_from_pem(junk, strlen(junk), &k, &err) < 0);
  assert_null(k);
  assert_true(strlen(err.msg) > 0);
  assert_int_equal(ae_key_from_pem("", 0, &k, &err), AE_EINVAL);
  assert_int_equal(ae_key_from_pem(NULL, 10, &k, &err), AE_EINVAL);

  /* A P-384 key is a valid key but not one we accept. */
  gnutls_x509_privkey_t x = NULL;
  assert_int_equal(gnutls_x509_privkey_init(&x), 0);
  assert_int_equal(gnutls_x509_privkey_generate(x, GNUTLS_PK_ECDSA,
                                                GNUTLS_CURVE_TO_BITS(GNUTLS_ECC_CURVE_SECP384R1), 0), 0);
  gnutls_datum_t pem = {NULL, 0};
  assert_int_equal(gnutls_x509_privkey_export2(x, GNUTLS_X509_FMT_PEM, &pem), 0);
  gnutls_x509_privkey_deinit(x);
  assert_int_equal(ae_key_from_pem((const char *)pem.data, pem.size, &k, &err), AE_EINVAL);
  assert_null(k);
  assert_non_null(strstr(err.msg, "curve"));
  gnutls_free(pem.data);

  /* SEC1 ("EC PRIVATE KEY") form of P-256 is accepted. */
  assert_int_equal(gnutls_x509_privkey_init(&x), 0);
  assert_int_equal(gnutls_x509_privkey_generate(x, GNUTLS_PK_ECDSA,
                                                GNUTLS_CURVE_TO_BITS(GNUTLS_ECC_CURVE_SECP256R1), 0), 0);
  assert_int_equal(gnutls_x509_privkey_export2(x, GNUTLS_X509_FMT_PEM, &pem), 0);
  gnutls_x509_privkey_deinit(x);
  assert_non_null(strstr((const char *)pem.data, "EC PRIVATE KEY"));
  assert_int_equal(ae_key_from_pem((const char *)pem.data, pem.size, &k, &err), 0);
  assert_int_equal(ae_key_get_type(k), AE_KEY_ECDSA_P256);
  gnutls_free(pem.data);
  ae_key_free(k);
  ae_key_free(NULL);
}

/* ---------- CSR ---------- */

static gnutls_x509_crq_t parse_csr(const char *b64) {
  gnutls_datum_t der = datum_b64(b64);
  gnutls_x509_crq_t crq = NULL;
  assert_int_equal(gnutls_x509_crq_init(&crq), 0);
  assert_int_equal(gnutls_x509_crq_import(crq, &der, GNUTLS_X509_FMT_DER), 0);
  free(der.data);
  return crq;
}

static void check_csr(ae_key *k, const char *domain, int expect_cn) {
  char *csr = NULL;
  ae_err err = {0};
  assert_int_equal(ae_csr_new(k, domain, &csr, &err), 0);
  for (const char *c = csr; *c; c++)
    assert_true(*c != '=' && *c != '+' && *c != '/');
  gnutls_x509_crq_t crq = parse_csr(csr);
  free(csr);
  assert_true(gnutls_x509_crq_verify(crq, 0) >= 0);

  char san[300];
  size_t sanlen = sizeof(san);
  unsigned san_type = 0, critical = 0;
  assert_int_equal(gnutls_x509_crq_get_subject_alt_name(crq, 0, san, &sanlen, &san_type, &critical), GNUTLS_SAN_DNSNAME);
  assert_int_equal(sanlen, strlen(domain));
  assert_memory_equal(san, domain, sanlen);
  sanlen = sizeof(san);
  assert_true(gnutls_x509_crq_get_subject_alt_name(crq, 1, san, &sanlen, &san_type, &critical) < 0);

  char cn[300];
  size_t cnlen = sizeof(cn);
  int rc = gnutls_x509_crq_get_dn_by_oid(crq, GNUTLS_OID_X520_COMMON_NAME, 0, 0, cn, &cnlen);
  if (expect_cn) {
    assert_int_equal(rc, 0);
    assert_string_equal(cn, domain);
  } else {
    assert_true(rc < 0);
  }

  /* The CSR carries our public key. */
  unsigned char a[64], b[64];
  size_t alen = sizeof(a), blen = sizeof(b);
  assert_int_equal(gnutls_x509_crq_get_key_id(crq, GNUTLS_KEYID_USE_SHA256, a, &alen), 0);
  gnutls_pubkey_t pub = NULL;
  assert_int_equal(gnutls_pubkey_init(&pub), 0);
  assert_int_equal(gnutls_pubkey_import_privkey(pub, ae_key_gnutls_privkey(k), 0, 0), 0);
  assert_int_equal(gnutls_pubkey_get_key_id(pub, GNUTLS_KEYID_USE_SHA256, b, &blen), 0);
  assert_int_equal(alen, blen);
  assert_memory_equal(a, b, alen);
  gnutls_pubkey_deinit(pub);
  /* Signed with SHA-256. */
  int sa = gnutls_x509_crq_get_signature_algorithm(crq);
  assert_true(sa == GNUTLS_SIGN_ECDSA_SHA256 || sa == GNUTLS_SIGN_RSA_SHA256);
  gnutls_x509_crq_deinit(crq);
}

static void test_csr(void **state) {
  (void)state;
  ae_key *k = NULL;
  ae_err err = {0};
  assert_int_equal(ae_key_generate(AE_KEY_ECDSA_P256, &k, &err), 0);
  check_csr(k, "example.com", 1);
  check_csr(k, "a-very-long-label-that-goes-on-and-on.another-long-label.example.org", 0);
  char *csr = (char *)"x";
  assert_int_equal(ae_csr_new(k, "", &csr, &err), AE_EINVAL);
  assert_null(csr);
  assert_int_equal(ae_csr_new(k, "bad name.com", &csr, &err), AE_EINVAL);
  assert_int_equal(ae_csr_new(k, "bad\nname.com", &csr, &err), AE_EINVAL);
  assert_int_equal(ae_csr_new(k, NULL, &csr, &err), AE_EINVAL);
  ae_key_free(k);

  assert_int_equal(ae_key_generate(AE_KEY_RSA_2048, &k, &err), 0);
  check_csr(k, "rsa.example.net", 1);
  ae_key_free(k);
}

/* ---------- key vs certificate ---------- */

static char *self_signed(ae_key *k, const char *cn) {
  gnutls_x509_crt_t crt = NULL;
  assert_int_equal(gnutls_x509_crt_init(&crt), 0);
  gnutls_pubkey_t pub = NULL;
  assert_int_equal(gnutls_pubkey_init(&pub), 0);
  assert_int_equal(gnutls_pubkey_import_privkey(pub, ae_key_gnutls_privkey(k), 0, 0), 0);
  assert_int_equal(gnutls_x509_crt_set_pubkey(crt, pub), 0);
  assert_int_equal(gnutls_x509_crt_set_version(crt, 3), 0);
  unsigned char serial[8] = {1, 2, 3, 4, 5, 6, 7, 8};
  assert_int_equal(gnutls_x509_crt_set_serial(crt, serial, sizeof(serial)), 0);
  time_t now = time(NULL);
  assert_int_equal(gnutls_x509_crt_set_activation_time(crt, now - 60), 0);
  assert_int_equal(gnutls_x509_crt_set_expiration_time(crt, now + 86400), 0);
  assert_int_equal(gnutls_x509_crt_set_dn_by_oid(crt, GNUTLS_OID_X520_COMMON_NAME, 0, cn, strlen(cn)), 0);
  assert_int_equal(gnutls_x509_crt_privkey_sign(crt, crt, ae_key_gnutls_privkey(k), GNUTLS_DIG_SHA256, 0), 0);
  gnutls_datum_t pem = {NULL, 0};
  assert_int_equal(gnutls_x509_crt_export2(crt, GNUTLS_X509_FMT_PEM, &pem), 0);
  char *s = malloc(pem.size + 1);
  assert_non_null(s);
  memcpy(s, pem.data, pem.size);
  s[pem.size] = 0;
  gnutls_free(pem.data);
  gnutls_pubkey_deinit(pub);
  gnutls_x509_crt_deinit(crt);
  return s;
}

static void test_key_matches_cert(void **state) {
  (void)state;
  ae_key *a = NULL, *b = NULL;
  ae_err err = {0};
  assert_int_equal(ae_key_generate(AE_KEY_ECDSA_P256, &a, &err), 0);
  assert_int_equal(ae_key_generate(AE_KEY_ECDSA_P256, &b, &err), 0);
  char *ca = self_signed(a, "a.test");
  char *cb = self_signed(b, "b.test");
  assert_int_equal(ae_key_matches_cert(a, ca, strlen(ca)), 1);
  assert_int_equal(ae_key_matches_cert(b, ca, strlen(ca)), 0);
  assert_int_equal(ae_key_matches_cert(b, cb, strlen(cb)), 1);
  /* In a chain only the first certificate (the leaf) counts. */
  size_t n = strlen(ca) + strlen(cb) + 1;
  char *chain = malloc(n);
  assert_non_null(chain);
  snprintf(chain, n, "%s%s", ca, cb);
  assert_int_equal(ae_key_matches_cert(a, chain, strlen(chain)), 1);
  assert_int_equal(ae_key_matches_cert(b, chain, strlen(chain)), 0);
  assert_int_equal(ae_key_matches_cert(a, "garbage", 7), 0);
  assert_int_equal(ae_key_matches_cert(a, "", 0), 0);
  assert_int_equal(ae_key_matches_cert(a, NULL, 0), 0);
  /* Truncated PEM. */
  assert_int_equal(ae_key_matches_cert(a, ca, strlen(ca) / 2), 0);
  free(chain);
  free(ca);
  free(cb);
  ae_key_free(a);
  ae_key_free(b);
}

static void test_key_authorization(void **state) {
  (void)state;
  ae_key *k = NULL;
  ae_err err = {0};
  assert_int_equal(ae_key_generate(AE_KEY_ECDSA_P256, &k, &err), 0);
  char tp[64], ka[256];
  assert_int_equal(ae_key_thumbprint(k, tp, sizeof(tp)), 0);
  assert_int_equal(ae_key_authorization(k, "evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA", ka, sizeof(ka)), 0);
  char expect[256];
  snprintf(expect, sizeof(expect), "evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA.%s", tp);
  assert_string_equal(ka, expect);
  assert_int_equal(ae_key_authorization(k, "../etc/passwd", ka, sizeof(ka)), AE_EINVAL);
  assert_int_equal(ae_key_authorization(k, "", ka, sizeof(ka)), AE_EINVAL);
  assert_int_equal(ae_key_authorization(k, "abc", ka, 10), AE_ELIMIT);
  ae_key_free(k);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_b64url_vectors),   cmocka_unit_test(test_sha256_vector),
      cmocka_unit_test(test_thumbprint_rfc7638), cmocka_unit_test(test_rfc7515_a3),
      cmocka_unit_test(test_jws_es256),        cmocka_unit_test(test_jws_rs256),
      cmocka_unit_test(test_eab),              cmocka_unit_test(test_pem_roundtrip),
      cmocka_unit_test(test_pem_bad),          cmocka_unit_test(test_csr),
      cmocka_unit_test(test_key_matches_cert), cmocka_unit_test(test_key_authorization),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
