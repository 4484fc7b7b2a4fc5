/* Certificate building for the internal CA on GnuTLS: key generation, the extension set of roots,
 * intermediates and leaves, signing, PEM import/export. */
#include "ca_internal.h"

#include <nettle/bignum.h>
#include <nettle/ecc-curve.h>
#include <nettle/ecc.h>
#include <nettle/ecdsa.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int gt_fail(ae_err *err, const char *step, int g) {
  return ae_err_set(err, AE_ERR, "internal CA: %s: %s", step, gnutls_strerror(g));
}

int ca_keygen(gnutls_privkey_t *out, ae_err *err) {
  gnutls_privkey_t k = NULL;
  int g = gnutls_privkey_init(&k);
  if (g >= 0)
    g = gnutls_privkey_generate2(k, GNUTLS_PK_ECDSA, GNUTLS_CURVE_TO_BITS(GNUTLS_ECC_CURVE_SECP256R1), 0, NULL, 0);
  if (g < 0) {
    gnutls_privkey_deinit(k);
    return gt_fail(err, "generate key", g);
  }
  *out = k;
  return 0;
}

static void key_rnd(void *ctx, size_t n, uint8_t *dst) {
  (void)ctx;
  if (gnutls_rnd(GNUTLS_RND_KEY, dst, n) < 0)
    abort(); /* a key from a failed generator could be guessed */
}

/* Big-endian, left-padded to 32 bytes. */
static void mpz_be32(mpz_t v, unsigned char out[32]) {
  size_t n = nettle_mpz_sizeinbase_256_u(v);
  memset(out, 0, 32);
  if (n <= 32)
    nettle_mpz_get_str_256(n, out + (32 - n), v);
}

int ca_leaf_keygen(gnutls_x509_privkey_t *key, gnutls_pubkey_t *pub, unsigned char ski[CA_SKI_LEN], ae_err *err) {
  /* nettle directly rather than gnutls_x509_privkey_generate2: GnuTLS then validates the key it
   * just made by deriving the public point a second time, which is half the cost of the keygen
   * (the same nettle code made the point in the first place). */
  const struct ecc_curve *curve = nettle_get_secp_256r1();
  struct ecc_point p;
  struct ecc_scalar d;
  mpz_t x, y, z;
  unsigned char xb[32], yb[32], zb[32];
  ecc_point_init(&p, curve);
  ecc_scalar_init(&d, curve);
  mpz_init(x);
  mpz_init(y);
  mpz_init(z);
  ecdsa_generate_keypair(&p, &d, NULL, key_rnd);
  ecc_point_get(&p, x, y);
  ecc_scalar_get(&d, z);
  mpz_be32(x, xb);
  mpz_be32(y, yb);
  mpz_be32(z, zb);
  gnutls_datum_t dx = {xb, 32}, dy = {yb, 32}, dz = {zb, 32};
  gnutls_x509_privkey_t k = NULL;
  gnutls_pubkey_t pk = NULL;
  int g = gnutls_x509_privkey_init(&k);
  if (g >= 0)
    g = gnutls_x509_privkey_import_ecc_raw(k, GNUTLS_ECC_CURVE_SECP256R1, &dx, &dy, &dz);
  if (g >= 0)
    g = gnutls_pubkey_init(&pk);
  if (g >= 0)
    g = gnutls_pubkey_import_ecc_raw(pk, GNUTLS_ECC_CURVE_SECP256R1, &dx, &dy);
  if (g >= 0) {
    /* RFC 5280 4.2.1.2 method (1): SHA-1 of the subjectPublicKey bits, the uncompressed point,
     * hashed as is instead of encoding a SubjectPublicKeyInfo first. */
    unsigned char pt[65];
    pt[0] = 0x04;
    memcpy(pt + 1, xb, 32);
    memcpy(pt + 33, yb, 32);
    g = gnutls_hash_fast(GNUTLS_DIG_SHA1, pt, sizeof(pt), ski);
  }
  gnutls_memset(zb, 0, sizeof(zb));
  mpz_clear(x);
  mpz_clear(y);
  mpz_clear(z);
  ecc_point_clear(&p);
  ecc_scalar_clear(&d);
  if (g < 0) {
    gnutls_pubkey_deinit(pk);
    gnutls_x509_privkey_deinit(k);
    return gt_fail(err, "generate key", g);
  }
  *key = k;
  *pub = pk;
  return 0;
}

/* Positive, 16 bytes, no leading zero octet: at least 118 random bits, unique in practice. */
static int random_serial(gnutls_x509_crt_t crt) {
  unsigned char serial[16];
  int g = gnutls_rnd(GNUTLS_RND_NONCE, serial, sizeof(serial));
  if (g < 0)
    return g;
  serial[0] = (unsigned char)((serial[0] & 0x7f) | 0x40);
  return gnutls_x509_crt_set_serial(crt, serial, sizeof(serial));
}

/* SKI = ski, or derived from pub when ski is NULL; AKI = aki (the issuer's SKI), or the own SKI
 * when aki is NULL (self-signed). */
static int set_key_ids(gnutls_x509_crt_t crt, gnutls_pubkey_t pub, const unsigned char *ski,
                       const unsigned char *aki, size_t akilen) {
  unsigned char kid[64];
  size_t kidlen = sizeof(kid);
  int g = 0;
  if (ski) {
    memcpy(kid, ski, CA_SKI_LEN);
    kidlen = CA_SKI_LEN;
  } else if ((g = gnutls_pubkey_get_key_id(pub, GNUTLS_KEYID_USE_SHA1, kid, &kidlen)) < 0) {
    return g;
  }
  if ((g = gnutls_x509_crt_set_subject_key_id(crt, kid, kidlen)) < 0)
    return g;
  return aki ? gnutls_x509_crt_set_authority_key_id(crt, aki, akilen)
             : gnutls_x509_crt_set_authority_key_id(crt, kid, kidlen);
}

int ca_issuer_ski(gnutls_x509_crt_t issuer, unsigned char *ski, size_t *len) {
  unsigned crit = 0;
  return gnutls_x509_crt_get_subject_key_id(issuer, ski, len, &crit);
}

static int set_body(gnutls_x509_crt_t crt, const ca_tmpl *t, gnutls_pubkey_t pub, const unsigned char *ski,
                    const unsigned char *aki, size_t akilen, const char **step) {
  int g;
  *step = "set key";
  if ((g = gnutls_x509_crt_set_pubkey(crt, pub)) < 0 || (g = gnutls_x509_crt_set_version(crt, 3)) < 0)
    return g;
  *step = "set serial";
  if ((g = random_serial(crt)) < 0)
    return g;
  *step = "set validity";
  if ((g = gnutls_x509_crt_set_activation_time(crt, (time_t)t->not_before)) < 0 ||
      (g = gnutls_x509_crt_set_expiration_time(crt, (time_t)t->not_after)) < 0)
    return g;
  *step = "set subject";
  if ((g = gnutls_x509_crt_set_dn_by_oid(crt, GNUTLS_OID_X520_COMMON_NAME, 0, t->cn, (unsigned)strlen(t->cn))) < 0)
    return g;
  if (t->dns) {
    *step = "set subject alternative name";
    if ((g = gnutls_x509_crt_set_subject_alt_name(crt, GNUTLS_SAN_DNSNAME, t->dns, (unsigned)strlen(t->dns),
                                                  GNUTLS_FSAN_SET)) < 0)
      return g;
  }
  *step = "set extensions";
  if ((g = gnutls_x509_crt_set_basic_constraints(crt, t->is_ca ? 1 : 0, t->is_ca ? t->pathlen : -1)) < 0)
    return g;
  if (t->is_ca) {
    g = gnutls_x509_crt_set_key_usage(crt, GNUTLS_KEY_KEY_CERT_SIGN | GNUTLS_KEY_CRL_SIGN);
  } else {
    g = gnutls_x509_crt_set_key_usage(crt, GNUTLS_KEY_DIGITAL_SIGNATURE);
    if (g >= 0)
      g = gnutls_x509_crt_set_key_purpose_oid(crt, GNUTLS_KP_TLS_WWW_SERVER, 0);
  }
  if (g < 0)
    return g;
  *step = "set key identifiers";
  return set_key_ids(crt, pub, ski, aki, akilen);
}

int ca_sign(const ca_tmpl *t, gnutls_privkey_t key, gnutls_x509_crt_t issuer, gnutls_privkey_t issuer_key,
            gnutls_x509_crt_t *out, ae_err *err) {
  gnutls_x509_crt_t crt = NULL, fin = NULL;
  gnutls_pubkey_t pub = NULL;
  gnutls_datum_t der = {NULL, 0};
  unsigned char aki[64];
  size_t akilen = sizeof(aki);
  const char *step = "init";
  int g = gnutls_x509_crt_init(&crt);
  if (g >= 0)
    g = gnutls_pubkey_init(&pub);
  if (g >= 0) {
    step = "public key";
    g = gnutls_pubkey_import_privkey(pub, key, 0, 0);
  }
  if (g >= 0 && issuer) {
    step = "issuer key identifier";
    g = ca_issuer_ski(issuer, aki, &akilen);
  }
  if (g >= 0)
    g = set_body(crt, t, pub, NULL, issuer ? aki : NULL, akilen, &step);
  if (g >= 0) {
    step = "sign";
    /* The issuer DN is copied from the issuer certificate, so it byte-matches its subject. */
    g = gnutls_x509_crt_privkey_sign(crt, issuer ? issuer : crt, issuer ? issuer_key : key, GNUTLS_DIG_SHA256, 0);
  }
  if (g >= 0) {
    step = "export";
    g = gnutls_x509_crt_export2(crt, GNUTLS_X509_FMT_DER, &der);
  }
  /* A CA certificate signs others: re-imported so GnuTLS reads its DN and key ids from the
   * encoded form, as from one loaded from storage. */
  if (g >= 0)
    g = gnutls_x509_crt_init(&fin);
  if (g >= 0)
    g = gnutls_x509_crt_import(fin, &der, GNUTLS_X509_FMT_DER);
  gnutls_free(der.data);
  gnutls_pubkey_deinit(pub);
  gnutls_x509_crt_deinit(crt);
  if (g < 0) {
    if (fin)
      gnutls_x509_crt_deinit(fin);
    return gt_fail(err, step, g);
  }
  *out = fin;
  return 0;
}

int ca_sign_leaf(const ca_tmpl *t, gnutls_pubkey_t pub, const unsigned char *ski, const unsigned char *aki, size_t akilen,
                 gnutls_x509_crt_t issuer, gnutls_privkey_t issuer_key, gnutls_x509_crt_t *out, ae_err *err) {
  gnutls_x509_crt_t crt = NULL;
  const char *step = "init";
  int g = gnutls_x509_crt_init(&crt);
  if (g >= 0)
    g = set_body(crt, t, pub, ski, aki, akilen, &step);
  if (g >= 0) {
    step = "sign";
    /* The issuer DN is copied from the issuer certificate, so it byte-matches its subject. */
    g = gnutls_x509_crt_privkey_sign(crt, issuer, issuer_key, GNUTLS_DIG_SHA256, 0);
  }
  if (g < 0) {
    if (crt)
      gnutls_x509_crt_deinit(crt);
    return gt_fail(err, step, g);
  }
  /* A leaf is never an issuer: the signed structure serves as is, without the DER round trip
   * a CA certificate gets (a certificate init and a full parse, about a fifth of a mint). */
  *out = crt;
  return 0;
}

static char *datum_str(const gnutls_datum_t *d) {
  char *s = ae_malloc(d->size + 1);
  memcpy(s, d->data, d->size);
  s[d->size] = '\0';
  return s;
}

int ca_crt_pem(gnutls_x509_crt_t crt, char **out, ae_err *err) {
  gnutls_datum_t d = {NULL, 0};
  int g = gnutls_x509_crt_export2(crt, GNUTLS_X509_FMT_PEM, &d);
  if (g < 0)
    return gt_fail(err, "export certificate", g);
  *out = datum_str(&d);
  gnutls_free(d.data);
  return 0;
}

int ca_xkey_pem(gnutls_x509_privkey_t key, char **out, ae_err *err) {
  gnutls_datum_t d = {NULL, 0};
  int g = gnutls_x509_privkey_export2_pkcs8(key, GNUTLS_X509_FMT_PEM, NULL, GNUTLS_PKCS_PLAIN, &d);
  if (g < 0)
    return gt_fail(err, "export key", g);
  *out = datum_str(&d);
  gnutls_memset(d.data, 0, d.size);
  gnutls_free(d.data);
  return 0;
}

int ca_key_pem(gnutls_privkey_t key, char **out, ae_err *err) {
  gnutls_x509_privkey_t xk = NULL;
  int g = gnutls_privkey_export_x509(key, &xk);
  if (g < 0)
    return gt_fail(err, "export key", g);
  int r = ca_xkey_pem(xk, out, err);
  gnutls_x509_privkey_deinit(xk);
  return r;
}

int ca_crt_parse(const char *pem, size_t len, const char *label, gnutls_x509_crt_t *out, ae_err *err) {
  gnutls_x509_crt_t crt = NULL;
  gnutls_datum_t d = {(unsigned char *)pem, (unsigned)len};
  int g = gnutls_x509_crt_init(&crt);
  if (g >= 0)
    g = gnutls_x509_crt_import(crt, &d, GNUTLS_X509_FMT_PEM);
  if (g < 0) {
    if (crt)
      gnutls_x509_crt_deinit(crt);
    return ae_err_set(err, AE_EINVAL, "%s: not a PEM certificate (%s)", label, gnutls_strerror(g));
  }
  *out = crt;
  return 0;
}

int ca_key_parse(const char *pem, size_t len, const char *label, gnutls_privkey_t *out, ae_err *err) {
  gnutls_privkey_t k = NULL;
  gnutls_datum_t d = {(unsigned char *)pem, (unsigned)len};
  int g = gnutls_privkey_init(&k);
  if (g >= 0)
    g = gnutls_privkey_import_x509_raw(k, &d, GNUTLS_X509_FMT_PEM, NULL, 0);
  if (g < 0) {
    gnutls_privkey_deinit(k);
    /* The GnuTLS message is generic and says nothing about the key material itself. */
    return ae_err_set(err, AE_EINVAL, "%s: not a PEM private key (%s)", label, gnutls_strerror(g));
  }
  *out = k;
  return 0;
}

int ca_key_matches(gnutls_x509_crt_t crt, gnutls_privkey_t key) {
  gnutls_pubkey_t a = NULL, b = NULL;
  unsigned char ia[64], ib[64];
  size_t la = sizeof(ia), lb = sizeof(ib);
  int ok = gnutls_pubkey_init(&a) >= 0 && gnutls_pubkey_init(&b) >= 0 && gnutls_pubkey_import_x509(a, crt, 0) >= 0 &&
           gnutls_pubkey_import_privkey(b, key, 0, 0) >= 0 &&
           gnutls_pubkey_get_key_id(a, GNUTLS_KEYID_USE_SHA256, ia, &la) >= 0 &&
           gnutls_pubkey_get_key_id(b, GNUTLS_KEYID_USE_SHA256, ib, &lb) >= 0 && la == lb && memcmp(ia, ib, la) == 0;
  gnutls_pubkey_deinit(a);
  gnutls_pubkey_deinit(b);
  return ok;
}

int ca_signed_by(gnutls_x509_crt_t child, gnutls_x509_crt_t parent) {
  unsigned status = 0;
  /* Times are checked separately (with a precise message); here only signature and CA rights. */
  unsigned flags = GNUTLS_VERIFY_DISABLE_TIME_CHECKS | GNUTLS_VERIFY_DISABLE_TRUSTED_TIME_CHECKS;
  int g = gnutls_x509_crt_verify(child, &parent, 1, flags, &status);
  return g >= 0 && status == 0;
}

void ca_fingerprint(gnutls_x509_crt_t crt, char *buf, size_t len) {
  unsigned char fp[32];
  size_t fplen = sizeof(fp);
  buf[0] = '\0';
  if (gnutls_x509_crt_get_fingerprint(crt, GNUTLS_DIG_SHA256, fp, &fplen) < 0)
    return;
  size_t o = 0;
  for (size_t i = 0; i < fplen && o + 4 <= len; i++)
    o += (size_t)snprintf(buf + o, len - o, i ? ":%02X" : "%02X", fp[i]);
}
