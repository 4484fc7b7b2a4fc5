/* Certificates: a refcounted chain + key parsed once, ready for handshakes.
 *
 * Memory: a cert holds only what a handshake needs (the chain as GnuTLS pcerts, the private key)
 * plus a little metadata. TLS fronts share one credentials object and pick the cert per session
 * from a retrieve callback, because a credentials object per cert would carry its own (unused)
 * trust list and roughly double the cost of every cached name. Certificates after the leaf
 * (intermediates) are parsed once per distinct certificate and shared by every chain that
 * carries them: thousands of leaves of one CA name the same one or two intermediates. */
#include "acmedge/certstore.h"
#include "certstore_int.h"

#include "acmedge/crypto.h"

#include <gnutls/abstract.h>
#include <gnutls/crypto.h>
#include <gnutls/x509.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CERT_FILE_MAX (1024 * 1024)
#define NAME_MAX_LEN 255

struct ae_cert {
  atomic_int refs;
  unsigned npcerts;        /* entries of pcerts filled in */
  uint32_t bytes;          /* accounted size (ae_cert_bytes) */
  uint8_t ocsp_url;        /* the leaf names an http(s) OCSP responder (AIA) */
  gnutls_privkey_t key;
  int64_t not_before;
  int64_t not_after;
  char serial[2 * 64 + 1];
  char *issuer;
  char **names;
  size_t nnames;
  gnutls_pcert_st pcerts[]; /* [0] the leaf (owned), then shared issuer entries (cs_issuer_get) */
};

/* ---------- ae_cert ---------- */

static void cert_destroy(ae_cert *c) {
  if (c->npcerts > 0)
    gnutls_pcert_deinit(&c->pcerts[0]);
  for (unsigned i = 1; i < c->npcerts; i++)
    cs_issuer_put(&c->pcerts[i]);
  if (c->key)
    gnutls_privkey_deinit(c->key);
  for (size_t i = 0; i < c->nnames; i++)
    free(c->names[i]);
  free(c->names);
  free(c->issuer);
  free(c);
}

ae_cert *ae_cert_ref(ae_cert *c) {
  if (c)
    atomic_fetch_add_explicit(&c->refs, 1, memory_order_relaxed);
  return c;
}

void ae_cert_unref(ae_cert *c) {
  if (!c)
    return;
  if (atomic_fetch_sub_explicit(&c->refs, 1, memory_order_release) == 1) {
    /* Pairs with the release above so every other thread's last use happens before the free. */
    atomic_thread_fence(memory_order_acquire);
    cert_destroy(c);
  }
}

gnutls_pcert_st *ae_cert_pcerts(const ae_cert *c, unsigned *n) {
  *n = c->npcerts;
  /* GnuTLS's retrieve callback takes a non-const array; it only reads it. */
  return (gnutls_pcert_st *)(uintptr_t)c->pcerts;
}
gnutls_privkey_t ae_cert_privkey(const ae_cert *c) { return c->key; }
int64_t ae_cert_not_before(const ae_cert *c) { return c->not_before; }
int64_t ae_cert_not_after(const ae_cert *c) { return c->not_after; }
const char *ae_cert_serial(const ae_cert *c) { return c->serial; }
const char *ae_cert_issuer(const ae_cert *c) { return c->issuer ? c->issuer : ""; }
size_t ae_cert_name_count(const ae_cert *c) { return c->nnames; }
size_t ae_cert_bytes(const ae_cert *c) { return c->bytes; }
const char *ae_cert_name(const ae_cert *c, size_t i) { return i < c->nnames ? c->names[i] : NULL; }

static char lower_ascii(char ch) { return (ch >= 'A' && ch <= 'Z') ? (char)(ch + 32) : ch; }

static char *dup_lower(const char *s, size_t n) {
  char *d = ae_malloc(n + 1);
  for (size_t i = 0; i < n; i++)
    d[i] = lower_ascii(s[i]);
  d[n] = '\0';
  return d;
}

static void add_name(ae_cert *c, size_t *cap, const char *s, size_t n) {
  if (n == 0 || n > NAME_MAX_LEN || memchr(s, '\0', n))
    return;
  if (c->nnames == *cap) {
    *cap = *cap ? *cap * 2 : 4;
    c->names = ae_realloc(c->names, *cap * sizeof(char *));
  }
  c->names[c->nnames++] = dup_lower(s, n);
}

static void collect_names(ae_cert *c, gnutls_x509_crt_t leaf) {
  size_t cap = 0;
  for (unsigned seq = 0;; seq++) {
    char buf[NAME_MAX_LEN + 1];
    size_t size = sizeof(buf);
    int t = gnutls_x509_crt_get_subject_alt_name(leaf, seq, buf, &size, NULL);
    if (t == GNUTLS_E_SHORT_MEMORY_BUFFER)
      continue; /* longer than any DNS name can be */
    if (t < 0)
      break;
    if (t == GNUTLS_SAN_DNSNAME)
      add_name(c, &cap, buf, size);
  }
  if (c->nnames > 0)
    return;
  /* RFC 6125 6.4.4: the CN is only consulted when there is no dNSName SAN. */
  char cn[NAME_MAX_LEN + 1];
  size_t size = sizeof(cn);
  if (gnutls_x509_crt_get_dn_by_oid(leaf, GNUTLS_OID_X520_COMMON_NAME, 0, 0, cn, &size) == 0)
    add_name(c, &cap, cn, size);
}

static void collect_serial(ae_cert *c, gnutls_x509_crt_t leaf) {
  unsigned char raw[64];
  size_t size = sizeof(raw);
  c->serial[0] = '\0';
  if (gnutls_x509_crt_get_serial(leaf, raw, &size) < 0 || size == 0)
    return;
  /* Print the integer value: DER adds a 0x00 byte in front of a serial with the high bit set. */
  size_t start = 0;
  while (start + 1 < size && raw[start] == 0)
    start++;
  static const char hex[] = "0123456789abcdef";
  size_t o = 0;
  for (size_t i = start; i < size; i++) {
    c->serial[o++] = hex[raw[i] >> 4];
    c->serial[o++] = hex[raw[i] & 15];
  }
  c->serial[o] = '\0';
}

/* malloc's per-chunk header and rounding to 16 bytes, as glibc charges them. */
static size_t chunk(size_t n) { return (n + 8 + 15) & ~(size_t)15; }

/* The memory c holds beyond shared issuers (docs/scale.md): its own allocations, the leaf's DER
 * copy and parsed public key, and the private key (key_bytes). */
static size_t account(const ae_cert *c, size_t key_bytes) {
  size_t b = chunk(sizeof(*c) + c->npcerts * sizeof(c->pcerts[0])) + chunk(c->pcerts[0].cert.size) +
             CS_PUBKEY_BYTES + key_bytes + chunk(strlen(c->issuer) + 1);
  if (c->names) {
    size_t cap = 4;
    while (cap < c->nnames)
      cap *= 2;
    b += chunk(cap * sizeof(char *));
  }
  for (size_t i = 0; i < c->nnames; i++)
    b += chunk(strlen(c->names[i]) + 1);
  return b;
}

/* Whether the leaf names an http(s) OCSP responder: certificates without one (most ACME
 * certificates today) never enter the staple cache, so their handshakes take no staple lock and
 * their first load starts no OCSP job just to find there is nothing to fetch. */
static int has_ocsp_url(gnutls_x509_crt_t leaf) {
  for (unsigned seq = 0; seq < 32; seq++) {
    gnutls_datum_t d = {NULL, 0};
    int g = gnutls_x509_crt_get_authority_info_access(leaf, seq, GNUTLS_IA_OCSP_URI, &d, NULL);
    if (g == GNUTLS_E_UNKNOWN_ALGORITHM)
      continue; /* a CA Issuers entry or another access method */
    if (g < 0)
      return 0;
    int ok = d.size > 7 && (strncmp((const char *)d.data, "http://", 7) == 0 ||
                            (d.size > 8 && strncmp((const char *)d.data, "https://", 8) == 0));
    gnutls_free(d.data);
    if (ok)
      return 1;
  }
  return 0;
}

int ae_cert_has_ocsp_url(const ae_cert *c) { return c && c->ocsp_url; }

/* Validity, serial, issuer DN, names and the accounted size, all read from the parsed leaf. */
static void collect_meta(ae_cert *c, gnutls_x509_crt_t leaf, size_t key_bytes) {
  c->ocsp_url = (uint8_t)has_ocsp_url(leaf);
  c->not_before = (int64_t)gnutls_x509_crt_get_activation_time(leaf);
  c->not_after = (int64_t)gnutls_x509_crt_get_expiration_time(leaf);
  collect_serial(c, leaf);
  gnutls_datum_t dn = {NULL, 0};
  if (gnutls_x509_crt_get_issuer_dn3(leaf, &dn, 0) >= 0 && dn.data) {
    c->issuer = ae_malloc(dn.size + 1);
    memcpy(c->issuer, dn.data, dn.size);
    c->issuer[dn.size] = '\0';
    gnutls_free(dn.data);
  } else {
    c->issuer = ae_strdup("");
  }
  collect_names(c, leaf);
  c->bytes = (uint32_t)account(c, key_bytes);
}

/* GnuTLS's wording for "there is no PEM block of that kind" reads like an internal error. */
static const char *pem_problem(int g) {
  if (g >= 0 || g == GNUTLS_E_REQUESTED_DATA_NOT_AVAILABLE || g == GNUTLS_E_BASE64_UNEXPECTED_HEADER_ERROR ||
      g == GNUTLS_E_NO_CERTIFICATE_FOUND)
    return "no PEM block of the expected type found";
  return gnutls_strerror(g);
}

/* Labels prefix every error message ("" for PEM input, "path: " for files, "name (certificate): "
 * for a stored pair); mismatch is the whole message for a key of another certificate. */
typedef struct labels {
  const char *cert;
  const char *key;
  const char *mismatch;
} labels;

#define CHAIN_MAX 16

/* The next certificate PEM block in [p, end): *blk gets it from its BEGIN line to the end of its
 * END line and *next points past it. 1 found, 0 none, -1 a BEGIN line without an END line. The
 * headers are those GnuTLS's own list import accepts. */
static int next_block(const char *p, const char *end, gnutls_datum_t *blk, const char **next) {
  static const char b1[] = "-----BEGIN CERTIFICATE", b2[] = "-----BEGIN X509 CERTIFICATE", e[] = "-----END ";
  size_t n = (size_t)(end - p);
  const char *s1 = memmem(p, n, b1, sizeof(b1) - 1), *s2 = memmem(p, n, b2, sizeof(b2) - 1);
  const char *s = !s1 ? s2 : !s2 ? s1 : s1 < s2 ? s1 : s2;
  if (!s)
    return 0;
  const char *t = memmem(s + 10, (size_t)(end - s - 10), e, sizeof(e) - 1);
  if (!t)
    return -1;
  const char *eol = memchr(t, '\n', (size_t)(end - t));
  if (!eol) {
    /* The END line must be complete ("-----END CERTIFICATE-----"), newline or not. */
    const char *dashes = memmem(t + sizeof(e) - 1, (size_t)(end - t) - (sizeof(e) - 1), "-----", 5);
    if (!dashes)
      return -1;
    eol = end - 1;
  }
  blk->data = (unsigned char *)(uintptr_t)s;
  blk->size = (unsigned)(eol + 1 - s);
  *next = eol + 1;
  return 1;
}

/* Splits a PEM chain into DER certificates (gnutls_free each). 0 or AE_EINVAL with err set. */
static int chain_der(const char *pem, size_t len, const labels *lb, gnutls_datum_t *der, unsigned *n, ae_err *err) {
  const char *p = pem, *end = pem + len;
  *n = 0;
  for (;;) {
    gnutls_datum_t blk;
    const char *next = NULL;
    int f = next_block(p, end, &blk, &next);
    if (f == 0)
      break;
    if (f < 0)
      return ae_err_set(err, AE_EINVAL, "%scannot parse certificate %u of the chain: truncated PEM block (no END line)",
                        lb->cert, *n + 1);
    if (*n == CHAIN_MAX)
      return ae_err_set(err, AE_EINVAL, "%smore than %d certificates in the chain", lb->cert, CHAIN_MAX);
    int g = gnutls_pem_base64_decode2(NULL, &blk, &der[*n]);
    if (g < 0 || der[*n].size == 0) {
      if (g >= 0)
        gnutls_free(der[*n].data);
      der[*n].data = NULL;
      return ae_err_set(err, AE_EINVAL, "%scannot parse certificate %u of the chain: bad base64: %s", lb->cert,
                        *n + 1, g < 0 ? gnutls_strerror(g) : "empty");
    }
    (*n)++;
    p = next;
  }
  if (*n == 0)
    return ae_err_set(err, AE_EINVAL, "%scannot parse certificate: %s", lb->cert, pem_problem(0));
  return 0;
}

static void strip_lz(gnutls_datum_t *d) {
  while (d->size > 0 && d->data[0] == 0) {
    d->data++;
    d->size--;
  }
}

/* 1 when the leaf's public point is the key's (x, y), 0 otherwise. */
static int ec_point_matches(gnutls_pubkey_t pub, gnutls_ecc_curve_t curve, gnutls_datum_t x, gnutls_datum_t y) {
  gnutls_ecc_curve_t pc;
  gnutls_datum_t px = {NULL, 0}, py = {NULL, 0};
  if (gnutls_pubkey_export_ecc_raw2(pub, &pc, &px, &py, 0) < 0)
    return 0;
  gnutls_datum_t a = px, b = py;
  strip_lz(&a);
  strip_lz(&b);
  strip_lz(&x);
  strip_lz(&y);
  int ok = pc == curve && a.size == x.size && b.size == y.size && memcmp(a.data, x.data, x.size) == 0 &&
           memcmp(b.data, y.data, y.size) == 0;
  gnutls_free(px.data);
  gnutls_free(py.data);
  return ok;
}

/* For a key of another type than ECDSA: the key ids (hashes of the public key) must agree. */
static int key_id_matches(gnutls_x509_crt_t leaf, gnutls_x509_privkey_t key) {
  unsigned char kid1[64], kid2[64];
  size_t k1 = sizeof(kid1), k2 = sizeof(kid2);
  return gnutls_x509_crt_get_key_id(leaf, 0, kid1, &k1) >= 0 && gnutls_x509_privkey_get_key_id(key, 0, kid2, &k2) >= 0 &&
         k1 == k2 && memcmp(kid1, kid2, k1) == 0;
}

/* The ARI certificate identifier (RFC 9773 4.1): base64url(AKI keyIdentifier) "." base64url(serial
 * content octets, as encoded). Left empty when the leaf has no AKI (not an ACME certificate). */
static void ari_id(gnutls_x509_crt_t leaf, char *out, size_t outlen) {
  unsigned char aki[128], serial[64];
  size_t aki_len = sizeof(aki), serial_len = sizeof(serial);
  unsigned critical = 0;
  out[0] = '\0';
  if (gnutls_x509_crt_get_authority_key_id(leaf, aki, &aki_len, &critical) < 0 || aki_len == 0 ||
      gnutls_x509_crt_get_serial(leaf, serial, &serial_len) < 0 || serial_len == 0)
    return;
  char *a64 = NULL, *s64 = NULL;
  if (ae_b64url_encode(aki, aki_len, &a64) >= 0 && ae_b64url_encode(serial, serial_len, &s64) >= 0) {
    int n = snprintf(out, outlen, "%s.%s", a64, s64);
    if (n < 0 || (size_t)n >= outlen)
      out[0] = '\0';
  }
  free(a64);
  free(s64);
}

static int cert_build(const char *cert_pem, size_t cert_len, const char *key_pem, size_t key_len,
                      const labels *lb, ae_cert **out, ae_cert_ids *ids, ae_err *err) {
  gnutls_datum_t der[CHAIN_MAX];
  unsigned nder = 0;
  gnutls_x509_crt_t leaf = NULL;
  gnutls_x509_privkey_t key = NULL;
  gnutls_datum_t ex = {NULL, 0}, ey = {NULL, 0}, ek = {NULL, 0};
  gnutls_ecc_curve_t curve = GNUTLS_ECC_CURVE_INVALID;
  ae_cert *c = NULL;
  int rc = AE_EINVAL;

  if (!cert_pem || cert_len == 0)
    return ae_err_set(err, AE_EINVAL, "%sno certificate found", lb->cert);
  if (!key_pem || key_len == 0)
    return ae_err_set(err, AE_EINVAL, "%sno private key found", lb->key);
  if (cert_len > UINT32_MAX || key_len > UINT32_MAX)
    return ae_err_set(err, AE_EINVAL, "%stoo large", lb->cert);

  if (chain_der(cert_pem, cert_len, lb, der, &nder, err) < 0)
    goto out;
  /* Only the leaf is parsed as X.509: its fields are read below, the intermediates only served. */
  int g = gnutls_x509_crt_init(&leaf);
  if (g >= 0)
    g = gnutls_x509_crt_import(leaf, &der[0], GNUTLS_X509_FMT_DER);
  if (g < 0) {
    ae_err_set(err, AE_EINVAL, "%scannot parse certificate: %s", lb->cert, gnutls_strerror(g));
    goto out;
  }

  gnutls_datum_t kd = {(unsigned char *)(uintptr_t)key_pem, (unsigned)key_len};
  g = gnutls_x509_privkey_init(&key);
  /* PKCS#8 is what acmedge writes; the generic import tries the legacy PEM types first. */
  if (g >= 0 && gnutls_x509_privkey_import_pkcs8(key, &kd, GNUTLS_X509_FMT_PEM, NULL, GNUTLS_PKCS_PLAIN) < 0) {
    gnutls_x509_privkey_deinit(key);
    g = gnutls_x509_privkey_init(&key);
    if (g >= 0)
      g = gnutls_x509_privkey_import2(key, &kd, GNUTLS_X509_FMT_PEM, NULL, GNUTLS_PKCS_PLAIN);
  }
  if (g < 0) {
    ae_err_set(err, AE_EINVAL, "%scannot parse private key: %s", lb->key, pem_problem(g));
    goto out;
  }

  c = ae_calloc(1, sizeof(*c) + nder * sizeof(c->pcerts[0]));
  atomic_init(&c->refs, 1);
  g = gnutls_pcert_import_x509(&c->pcerts[0], leaf, 0);
  if (g < 0) {
    ae_err_set(err, AE_EINVAL, "%scannot use certificate 1 of the chain: %s", lb->cert, gnutls_strerror(g));
    goto out;
  }
  c->npcerts = 1;

  /* GnuTLS would refuse a mismatched pair at the first handshake, with a generic message; checking
   * here lets the error say which files disagree. */
  int is_ec = gnutls_x509_privkey_get_pk_algorithm(key) == GNUTLS_PK_ECDSA &&
              gnutls_x509_privkey_export_ecc_raw(key, &curve, &ex, &ey, &ek) >= 0;
  if (is_ec ? !ec_point_matches(c->pcerts[0].pubkey, curve, ex, ey) : !key_id_matches(leaf, key)) {
    ae_err_set(err, AE_EINVAL, "%s", lb->mismatch);
    goto out;
  }

  for (; c->npcerts < nder; c->npcerts++) {
    unsigned i = c->npcerts;
    g = cs_issuer_get(&der[i], &c->pcerts[i]);
    if (g < 0) {
      ae_err_set(err, AE_EINVAL, "%scannot use certificate %u of the chain: %s", lb->cert, i + 1, gnutls_strerror(g));
      goto out;
    }
  }

  size_t key_bytes = 0;
  if (is_ec && cs_key_compact(curve, &ek, &c->key, &key_bytes) == 1)
    goto key_done;
  unsigned bits = 0;
  /* RSA keeps n, e, d, p, q and three CRT values, each twice (bignum and ASN.1 tree). */
  key_bytes = CS_X509_PRIVKEY_BYTES +
              (gnutls_x509_privkey_get_pk_algorithm2(key, &bits) == GNUTLS_PK_RSA ? (size_t)bits * 9 / 8 : 0);
  g = gnutls_privkey_init(&c->key);
  if (g < 0) {
    c->key = NULL;
    rc = AE_ENOMEM;
    ae_err_set(err, rc, "%scannot allocate private key: %s", lb->key, gnutls_strerror(g));
    goto out;
  }
  /* The privkey takes the parsed key over (no copy); it is released with the privkey. */
  g = gnutls_privkey_import_x509(c->key, key, GNUTLS_PRIVKEY_IMPORT_AUTO_RELEASE);
  if (g < 0) {
    ae_err_set(err, AE_EINVAL, "%scannot use private key: %s", lb->key, gnutls_strerror(g));
    goto out;
  }
  key = NULL;

key_done:
  collect_meta(c, leaf, key_bytes);
  if (ids)
    ari_id(leaf, ids->cert_id, sizeof(ids->cert_id));

  *out = c;
  c = NULL;
  rc = 0;

out:
  if (c)
    cert_destroy(c);
  if (key)
    gnutls_x509_privkey_deinit(key);
  if (leaf)
    gnutls_x509_crt_deinit(leaf);
  for (unsigned i = 0; i < nder; i++)
    gnutls_free(der[i].data);
  gnutls_free(ex.data);
  gnutls_free(ey.data);
  if (ek.data) {
    gnutls_memset(ek.data, 0, ek.size);
    gnutls_free(ek.data);
  }
  return rc;
}

int ae_cert_from_pem(const char *cert_pem, size_t cert_len, const char *key_pem, size_t key_len,
                     ae_cert **out, ae_err *err) {
  labels lb = {"", "", "private key does not match certificate"};
  return cert_build(cert_pem, cert_len, key_pem, key_len, &lb, out, NULL, err);
}

int ae_cert_from_pem_ids(const char *what, const char *cert_pem, size_t cert_len, const char *key_pem,
                         size_t key_len, ae_cert **out, ae_cert_ids *ids, ae_err *err) {
  char cl[300], kl[300], ml[320];
  snprintf(cl, sizeof(cl), "%s (certificate): ", what);
  snprintf(kl, sizeof(kl), "%s (private key): ", what);
  snprintf(ml, sizeof(ml), "%s: private key does not match certificate", what);
  labels lb = {cl, kl, ml};
  if (ids)
    ids->cert_id[0] = '\0';
  return cert_build(cert_pem, cert_len, key_pem, key_len, &lb, out, ids, err);
}

int ae_cert_from_parts(gnutls_x509_crt_t leaf, const gnutls_datum_t *chain, unsigned nchain,
                       gnutls_x509_privkey_t key, ae_cert **out, ae_err *err) {
  if (!leaf || !key || (nchain > 0 && !chain))
    return ae_err_set(err, AE_EINVAL, "certificate parts: no leaf or no key");
  ae_cert *c = ae_calloc(1, sizeof(*c) + (nchain + 1) * sizeof(c->pcerts[0]));
  atomic_init(&c->refs, 1);
  size_t key_bytes = 0;
  /* Only ECDSA keys have the compact form; the parts come from code that makes P-256 keys, so
   * anything else is a programming error, refused rather than stored at full size. */
  gnutls_ecc_curve_t curve = GNUTLS_ECC_CURVE_INVALID;
  gnutls_datum_t ex = {NULL, 0}, ey = {NULL, 0}, ek = {NULL, 0};
  int compact = gnutls_x509_privkey_get_pk_algorithm(key) == GNUTLS_PK_ECDSA &&
                gnutls_x509_privkey_export_ecc_raw(key, &curve, &ex, &ey, &ek) >= 0 &&
                cs_key_compact(curve, &ek, &c->key, &key_bytes) == 1;
  gnutls_free(ex.data);
  gnutls_free(ey.data);
  if (ek.data) {
    gnutls_memset(ek.data, 0, ek.size);
    gnutls_free(ek.data);
  }
  if (!compact) {
    c->key = NULL;
    cert_destroy(c);
    return ae_err_set(err, AE_EINVAL, "certificate parts: the key is not an ECDSA P-256/P-384 key");
  }
  int g = gnutls_pcert_import_x509(&c->pcerts[0], leaf, 0);
  if (g >= 0)
    c->npcerts = 1;
  for (unsigned i = 0; g >= 0 && i < nchain; i++) {
    g = cs_issuer_get(&chain[i], &c->pcerts[i + 1]);
    if (g >= 0)
      c->npcerts++;
  }
  if (g < 0) {
    ae_err_set(err, AE_EINVAL, "certificate parts: cannot use certificate %u of the chain: %s", c->npcerts + 1,
               gnutls_strerror(g));
    cert_destroy(c);
    return AE_EINVAL;
  }
  collect_meta(c, leaf, key_bytes);
  *out = c;
  return 0;
}

int ae_cert_load_files(const char *cert_path, const char *key_path, ae_cert **out, ae_err *err) {
  char *cpem = NULL, *kpem = NULL;
  size_t clen = 0, klen = 0;
  int rc = ae_read_file(cert_path, CERT_FILE_MAX, &cpem, &clen, err);
  if (rc < 0)
    return rc; /* the message already names the file */
  rc = ae_read_file(key_path, CERT_FILE_MAX, &kpem, &klen, err);
  if (rc < 0) {
    free(cpem);
    return rc;
  }
  char cl[4200], kl[4200], ml[8400];
  snprintf(cl, sizeof(cl), "%s: ", cert_path);
  snprintf(kl, sizeof(kl), "%s: ", key_path);
  snprintf(ml, sizeof(ml), "%s: private key does not match certificate %s", key_path, cert_path);
  labels lb = {cl, kl, ml};
  rc = cert_build(cpem, clen, kpem, klen, &lb, out, NULL, err);
  free(cpem);
  /* The key buffer held secret material. */
  memset(kpem, 0, klen);
  free(kpem);
  return rc;
}

/* Matches a presented identifier (exact or "*.<rest>") against a lowercased-or-not name. */
static int name_matches(const char *pattern, const char *name) {
  if (ae_strcasecmp(pattern, name) == 0)
    return 1;
  if (pattern[0] != '*' || pattern[1] != '.')
    return 0;
  const char *rest = pattern + 2;
  /* A wildcard directly under a TLD ("*.com") covers nothing. */
  if (!strchr(rest, '.'))
    return 0;
  const char *dot = strchr(name, '.');
  if (!dot || dot == name)
    return 0;
  return ae_strcasecmp(rest, dot + 1) == 0;
}

int ae_cert_covers(const ae_cert *c, const char *name) {
  if (!c || !name || !*name)
    return 0;
  for (size_t i = 0; i < c->nnames; i++)
    if (name_matches(c->names[i], name))
      return 1;
  return 0;
}

