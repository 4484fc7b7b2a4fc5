/* Keys (ECDSA P-256 / RSA-2048), JWK + RFC 7638 thumbprint, CSR, base64url and SHA-256.
 * Key material and signatures come from GnuTLS; encodings and hashes from nettle. */
#include "acmedge/crypto.h"

#include <gnutls/abstract.h>
#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <nettle/base64.h>
#include <nettle/sha2.h>
#include <stdlib.h>
#include <string.h>

#include "acmedge/log.h"

struct ae_key {
  ae_key_type type;
  gnutls_x509_privkey_t x509;
  gnutls_privkey_t priv;
  gnutls_pubkey_t pub;
};

/* Coordinates of a P-256 point are always 32 bytes in a JWK (RFC 7518 §6.2.1.2). */
#define AE_P256_COORD_LEN 32

/* ---------- base64url / SHA-256 ---------- */

int ae_b64url_encode(const void *data, size_t len, char **out) {
  if (!out || (!data && len))
    return AE_EINVAL;
  *out = NULL;
  if (len > (SIZE_MAX / 2))
    return AE_EINVAL;
  size_t cap = BASE64_ENCODE_LENGTH(len) + BASE64_ENCODE_FINAL_LENGTH + 1;
  char *buf = ae_malloc(cap);
  struct base64_encode_ctx ctx;
  base64url_encode_init(&ctx);
  size_t n = 0;
  if (len)
    n = base64_encode_update(&ctx, buf, len, data);
  n += base64_encode_final(&ctx, buf + n);
  /* JOSE uses the unpadded form (RFC 7515 §2). */
  while (n > 0 && buf[n - 1] == '=')
    n--;
  buf[n] = '\0';
  *out = buf;
  return 0;
}

static int b64url_char(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '_';
}

int ae_b64url_decode(const char *s, size_t slen, uint8_t **out, size_t *outlen) {
  if (!out || !outlen || (!s && slen))
    return AE_EINVAL;
  *out = NULL;
  *outlen = 0;
  size_t datalen = slen;
  while (datalen > 0 && s[datalen - 1] == '=')
    datalen--;
  size_t npad = slen - datalen;
  /* Padding, when present, must complete the last quantum exactly. */
  if (npad > 2 || (npad && (slen % 4) != 0))
    return AE_EINVAL;
  if (datalen % 4 == 1)
    return AE_EINVAL;
  for (size_t i = 0; i < datalen; i++)
    if (!b64url_char(s[i]))
      return AE_EINVAL;
  /* nettle only finishes a partial quantum when it sees the padding, so restore it. */
  size_t padded_len = (datalen + 3) / 4 * 4;
  char *tmp = ae_malloc(padded_len + 1);
  if (datalen)
    memcpy(tmp, s, datalen);
  for (size_t i = datalen; i < padded_len; i++)
    tmp[i] = '=';
  uint8_t *buf = ae_malloc(BASE64_DECODE_LENGTH(padded_len) + 1);
  struct base64_decode_ctx ctx;
  base64url_decode_init(&ctx);
  size_t n = 0;
  int ok = base64_decode_update(&ctx, &n, buf, padded_len, tmp) && base64_decode_final(&ctx);
  free(tmp);
  if (!ok) {
    free(buf);
    return AE_EINVAL;
  }
  buf[n] = 0;
  *out = buf;
  *outlen = n;
  return 0;
}

void ae_sha256(const void *data, size_t len, uint8_t out[32]) {
  struct sha256_ctx ctx;
  sha256_init(&ctx);
  if (len)
    sha256_update(&ctx, len, data);
  sha256_digest(&ctx, SHA256_DIGEST_SIZE, out);
}

/* ---------- keys ---------- */

static ae_key *key_wrap(gnutls_x509_privkey_t x509, ae_err *err) {
  gnutls_privkey_t priv = NULL;
  gnutls_pubkey_t pub = NULL;
  int rc = gnutls_privkey_init(&priv);
  if (rc >= 0)
    rc = gnutls_privkey_import_x509(priv, x509, 0);
  if (rc >= 0)
    rc = gnutls_pubkey_init(&pub);
  if (rc >= 0)
    rc = gnutls_pubkey_import_privkey(pub, priv, 0, 0);
  if (rc < 0) {
    ae_err_set(err, AE_ERR, "key setup failed: %s", gnutls_strerror(rc));
    if (pub)
      gnutls_pubkey_deinit(pub);
    if (priv)
      gnutls_privkey_deinit(priv);
    return NULL;
  }
  ae_key *k = ae_calloc(1, sizeof(*k));
  k->x509 = x509;
  k->priv = priv;
  k->pub = pub;
  return k;
}

/* Decides the key type, refusing anything but P-256 ECDSA or RSA of a sane size. */
static int key_classify(ae_key *k, ae_err *err) {
  unsigned bits = 0;
  int alg = gnutls_pubkey_get_pk_algorithm(k->pub, &bits);
  if (alg == GNUTLS_PK_ECDSA) {
    gnutls_ecc_curve_t curve = GNUTLS_ECC_CURVE_INVALID;
    gnutls_datum_t x = {NULL, 0}, y = {NULL, 0};
    int rc = gnutls_pubkey_export_ecc_raw2(k->pub, &curve, &x, &y, GNUTLS_EXPORT_FLAG_NO_LZ);
    gnutls_free(x.data);
    gnutls_free(y.data);
    if (rc < 0)
      return ae_err_set(err, AE_EINVAL, "cannot read EC key: %s", gnutls_strerror(rc));
    if (curve != GNUTLS_ECC_CURVE_SECP256R1)
      return ae_err_set(err, AE_EINVAL, "unsupported EC curve %s (only P-256)",
                        gnutls_ecc_curve_get_name(curve) ? gnutls_ecc_curve_get_name(curve) : "?");
    k->type = AE_KEY_ECDSA_P256;
    return 0;
  }
  if (alg == GNUTLS_PK_RSA) {
    if (bits < 2048 || bits > 8192)
      return ae_err_set(err, AE_EINVAL, "unsupported RSA key size %u (2048..8192)", bits);
    k->type = AE_KEY_RSA_2048;
    return 0;
  }
  return ae_err_set(err, AE_EINVAL, "unsupported key algorithm %s",
                    gnutls_pk_algorithm_get_name(alg) ? gnutls_pk_algorithm_get_name(alg) : "?");
}

int ae_key_generate(ae_key_type type, ae_key **out, ae_err *err) {
  if (!out)
    return ae_err_set(err, AE_EINVAL, "no output for key");
  *out = NULL;
  gnutls_pk_algorithm_t alg;
  unsigned bits;
  if (type == AE_KEY_ECDSA_P256) {
    alg = GNUTLS_PK_ECDSA;
    bits = GNUTLS_CURVE_TO_BITS(GNUTLS_ECC_CURVE_SECP256R1);
  } else if (type == AE_KEY_RSA_2048) {
    alg = GNUTLS_PK_RSA;
    bits = 2048;
  } else {
    return ae_err_set(err, AE_EINVAL, "unknown key type %d", (int)type);
  }
  gnutls_x509_privkey_t x509 = NULL;
  int rc = gnutls_x509_privkey_init(&x509);
  if (rc >= 0)
    rc = gnutls_x509_privkey_generate(x509, alg, bits, 0);
  if (rc < 0) {
    if (x509)
      gnutls_x509_privkey_deinit(x509);
    return ae_err_set(err, AE_ERR, "key generation failed: %s", gnutls_strerror(rc));
  }
  ae_key *k = key_wrap(x509, err);
  if (!k) {
    gnutls_x509_privkey_deinit(x509);
    return err ? err->code : AE_ERR;
  }
  k->type = type;
  *out = k;
  return 0;
}

int ae_key_from_pem(const char *pem, size_t len, ae_key **out, ae_err *err) {
  if (!out)
    return ae_err_set(err, AE_EINVAL, "no output for key");
  *out = NULL;
  if (!pem || len == 0)
    return ae_err_set(err, AE_EINVAL, "empty private key");
  if (len > UINT32_MAX)
    return ae_err_set(err, AE_EINVAL, "private key too large");
  gnutls_x509_privkey_t x509 = NULL;
  int rc = gnutls_x509_privkey_init(&x509);
  if (rc < 0)
    return ae_err_set(err, AE_ENOMEM, "key init failed: %s", gnutls_strerror(rc));
  gnutls_datum_t d = {(unsigned char *)(uintptr_t)pem, (unsigned)len};
  /* import2 understands PKCS#8 (unencrypted), PKCS#1 and SEC1 PEM. */
  rc = gnutls_x509_privkey_import2(x509, &d, GNUTLS_X509_FMT_PEM, NULL, GNUTLS_PKCS_PLAIN);
  if (rc < 0) {
    gnutls_x509_privkey_deinit(x509);
    return ae_err_set(err, AE_EINVAL, "cannot parse private key: %s", gnutls_strerror(rc));
  }
  ae_key *k = key_wrap(x509, err);
  if (!k) {
    gnutls_x509_privkey_deinit(x509);
    return err ? err->code : AE_ERR;
  }
  rc = key_classify(k, err);
  if (rc < 0) {
    ae_key_free(k);
    return rc;
  }
  *out = k;
  return 0;
}

int ae_key_to_pem(const ae_key *k, char **pem, ae_err *err) {
  if (!k || !pem)
    return ae_err_set(err, AE_EINVAL, "no key");
  *pem = NULL;
  gnutls_datum_t d = {NULL, 0};
  int rc = gnutls_x509_privkey_export2_pkcs8(k->x509, GNUTLS_X509_FMT_PEM, NULL, GNUTLS_PKCS_PLAIN, &d);
  if (rc < 0)
    return ae_err_set(err, AE_ERR, "key export failed: %s", gnutls_strerror(rc));
  char *s = ae_malloc((size_t)d.size + 1);
  memcpy(s, d.data, d.size);
  s[d.size] = '\0';
  /* The buffer held private key material: scrub before handing it back to the allocator. */
  gnutls_memset(d.data, 0, d.size);
  gnutls_free(d.data);
  *pem = s;
  return 0;
}

void ae_key_free(ae_key *k) {
  if (!k)
    return;
  gnutls_pubkey_deinit(k->pub);
  gnutls_privkey_deinit(k->priv);
  gnutls_x509_privkey_deinit(k->x509);
  free(k);
}

ae_key_type ae_key_get_type(const ae_key *k) { return k->type; }

void *ae_key_gnutls_privkey(const ae_key *k) { return k ? k->priv : NULL; }

void *ae_key_gnutls_x509_privkey(const ae_key *k) { return k ? k->x509 : NULL; }

/* ---------- JWK ---------- */

/* base64url of an unsigned big-endian integer: leading zero bytes removed, then left-padded
 * to width when width > 0. */
static json_t *b64_uint(const gnutls_datum_t *v, size_t width) {
  const unsigned char *p = v->data;
  size_t n = v->size;
  while (n > 1 && p[0] == 0) {
    p++;
    n--;
  }
  uint8_t pad[AE_P256_COORD_LEN];
  if (width) {
    if (n > width || width > sizeof(pad))
      return NULL;
    memset(pad, 0, width);
    memcpy(pad + (width - n), p, n);
    p = pad;
    n = width;
  }
  char *s = NULL;
  if (ae_b64url_encode(p, n, &s) < 0)
    return NULL;
  json_t *j = json_string(s);
  free(s);
  return j;
}

json_t *ae_key_jwk(const ae_key *k) {
  if (!k)
    return NULL;
  json_t *jwk = NULL;
  if (k->type == AE_KEY_ECDSA_P256) {
    gnutls_ecc_curve_t curve;
    gnutls_datum_t x = {NULL, 0}, y = {NULL, 0};
    if (gnutls_pubkey_export_ecc_raw2(k->pub, &curve, &x, &y, GNUTLS_EXPORT_FLAG_NO_LZ) < 0)
      return NULL;
    json_t *jx = b64_uint(&x, AE_P256_COORD_LEN);
    json_t *jy = b64_uint(&y, AE_P256_COORD_LEN);
    gnutls_free(x.data);
    gnutls_free(y.data);
    if (jx && jy && curve == GNUTLS_ECC_CURVE_SECP256R1)
      jwk = json_pack("{s:s, s:s, s:o, s:o}", "crv", "P-256", "kty", "EC", "x", jx, "y", jy);
    else {
      json_decref(jx);
      json_decref(jy);
    }
  } else {
    gnutls_datum_t m = {NULL, 0}, e = {NULL, 0};
    if (gnutls_pubkey_export_rsa_raw2(k->pub, &m, &e, GNUTLS_EXPORT_FLAG_NO_LZ) < 0)
      return NULL;
    json_t *jn = b64_uint(&m, 0);
    json_t *je = b64_uint(&e, 0);
    gnutls_free(m.data);
    gnutls_free(e.data);
    if (jn && je)
      jwk = json_pack("{s:o, s:s, s:o}", "e", je, "kty", "RSA", "n", jn);
    else {
      json_decref(jn);
      json_decref(je);
    }
  }
  return jwk;
}

int ae_jwk_thumbprint(json_t *jwk, char *out, size_t outlen) {
  if (!json_is_object(jwk) || !out)
    return AE_EINVAL;
  const char *kty = json_string_value(json_object_get(jwk, "kty"));
  static const char *const ec_members[] = {"crv", "kty", "x", "y", NULL};
  static const char *const rsa_members[] = {"e", "kty", "n", NULL};
  const char *const *members;
  if (kty && strcmp(kty, "EC") == 0)
    members = ec_members;
  else if (kty && strcmp(kty, "RSA") == 0)
    members = rsa_members;
  else
    return AE_EINVAL;
  /* RFC 7638 §3.2: only the required members, sorted, no whitespace. */
  json_t *canon = json_object();
  for (size_t i = 0; members[i]; i++) {
    json_t *v = json_object_get(jwk, members[i]);
    if (!json_is_string(v)) {
      json_decref(canon);
      return AE_EINVAL;
    }
    json_object_set(canon, members[i], v);
  }
  char *text = json_dumps(canon, JSON_COMPACT | JSON_SORT_KEYS);
  json_decref(canon);
  if (!text)
    return AE_ENOMEM;
  uint8_t digest[32];
  ae_sha256(text, strlen(text), digest);
  free(text);
  char *b64 = NULL;
  int rc = ae_b64url_encode(digest, sizeof(digest), &b64);
  if (rc < 0)
    return rc;
  size_t n = strlen(b64);
  if (n + 1 > outlen) {
    free(b64);
    return AE_ELIMIT;
  }
  memcpy(out, b64, n + 1);
  free(b64);
  return 0;
}

int ae_key_thumbprint(const ae_key *k, char *out, size_t outlen) {
  json_t *jwk = ae_key_jwk(k);
  if (!jwk)
    return AE_EINVAL;
  int rc = ae_jwk_thumbprint(jwk, out, outlen);
  json_decref(jwk);
  return rc;
}

int ae_key_matches_cert(const ae_key *k, const char *cert_pem, size_t len) {
  if (!k || !cert_pem || len == 0 || len > UINT32_MAX)
    return 0;
  gnutls_x509_crt_t crt = NULL;
  if (gnutls_x509_crt_init(&crt) < 0)
    return 0;
  int match = 0;
  gnutls_datum_t d = {(unsigned char *)(uintptr_t)cert_pem, (unsigned)len};
  /* With PEM input GnuTLS imports the first certificate, which is the leaf in a chain. */
  if (gnutls_x509_crt_import(crt, &d, GNUTLS_X509_FMT_PEM) >= 0) {
    unsigned char a[64], b[64];
    size_t alen = sizeof(a), blen = sizeof(b);
    if (gnutls_x509_crt_get_key_id(crt, GNUTLS_KEYID_USE_SHA256, a, &alen) >= 0 &&
        gnutls_pubkey_get_key_id(k->pub, GNUTLS_KEYID_USE_SHA256, b, &blen) >= 0)
      match = alen == blen && memcmp(a, b, alen) == 0;
  }
  gnutls_x509_crt_deinit(crt);
  return match;
}

/* ---------- CSR ---------- */

/* A DNS name as it can appear in a CSR: printable, no spaces, bounded. The CA checks the rest. */
static int csr_name_ok(const char *d) {
  size_t n = strlen(d);
  if (n == 0 || n > 253)
    return 0;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)d[i];
    if (c <= 0x20 || c >= 0x7f)
      return 0;
  }
  return 1;
}

int ae_csr_new(const ae_key *k, const char *domain, char **b64url_der, ae_err *err) {
  if (!k || !domain || !b64url_der)
    return ae_err_set(err, AE_EINVAL, "CSR: missing key or domain");
  *b64url_der = NULL;
  if (!csr_name_ok(domain))
    return ae_err_set(err, AE_EINVAL, "CSR: invalid domain name");
  gnutls_x509_crq_t crq = NULL;
  int rc = gnutls_x509_crq_init(&crq);
  if (rc < 0)
    return ae_err_set(err, AE_ENOMEM, "CSR init failed: %s", gnutls_strerror(rc));
  size_t dlen = strlen(domain);
  rc = gnutls_x509_crq_set_version(crq, 1);
  /* The CN is limited to 64 characters (RFC 5280 ub-common-name); longer names go in the SAN only,
   * which is what CAs read anyway. */
  if (rc >= 0 && dlen <= 64)
    rc = gnutls_x509_crq_set_dn_by_oid(crq, GNUTLS_OID_X520_COMMON_NAME, 0, domain, (unsigned)dlen);
  if (rc >= 0)
    rc = gnutls_x509_crq_set_subject_alt_name(crq, GNUTLS_SAN_DNSNAME, domain, (unsigned)dlen,
                                              GNUTLS_FSAN_SET);
  if (rc >= 0)
    rc = gnutls_x509_crq_set_pubkey(crq, k->pub);
  if (rc >= 0)
    rc = gnutls_x509_crq_privkey_sign(crq, k->priv, GNUTLS_DIG_SHA256, 0);
  gnutls_datum_t der = {NULL, 0};
  if (rc >= 0)
    rc = gnutls_x509_crq_export2(crq, GNUTLS_X509_FMT_DER, &der);
  gnutls_x509_crq_deinit(crq);
  if (rc < 0) {
    gnutls_free(der.data);
    return ae_err_set(err, AE_ERR, "CSR creation failed: %s", gnutls_strerror(rc));
  }
  rc = ae_b64url_encode(der.data, der.size, b64url_der);
  gnutls_free(der.data);
  if (rc < 0)
    return ae_err_set(err, rc, "CSR encoding failed");
  return 0;
}
