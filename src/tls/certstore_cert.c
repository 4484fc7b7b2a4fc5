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

#include <gnutls/abstract.h>
#include <gnutls/crypto.h>
#include <gnutls/x509.h>
#include <pthread.h>
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
  gnutls_privkey_t key;
  int64_t not_before;
  int64_t not_after;
  char serial[2 * 64 + 1];
  char *issuer;
  char **names;
  size_t nnames;
  gnutls_pcert_st pcerts[]; /* [0] the leaf (owned), then shared issuer entries (issuer_get) */
};

/* ---------- shared issuer certificates ---------- */

/* A parsed issuer certificate shared by every chain that carries it. The table is touched only
 * when a cert is built or freed, never during a handshake, so one mutex is enough. */
typedef struct issuer_ent {
  struct issuer_ent *next;
  uint64_t hash;
  size_t refs;
  gnutls_pcert_st pcert;
} issuer_ent;

#define ISSUER_BUCKETS 64

static pthread_mutex_t g_issuer_mu = PTHREAD_MUTEX_INITIALIZER;
static issuer_ent *g_issuers[ISSUER_BUCKETS];

static uint64_t der_hash(const unsigned char *p, size_t n) {
  uint64_t h = 1469598103934665603ull;
  for (size_t i = 0; i < n; i++) {
    h ^= p[i];
    h *= 1099511628211ull;
  }
  return h;
}

static issuer_ent *issuer_find_locked(uint64_t h, const gnutls_datum_t *der) {
  for (issuer_ent *e = g_issuers[h % ISSUER_BUCKETS]; e; e = e->next)
    if (e->hash == h && e->pcert.cert.size == der->size && memcmp(e->pcert.cert.data, der->data, der->size) == 0)
      return e;
  return NULL;
}

/* Fills *out with the shared parsed form of the certificate whose DER is der (a struct copy whose
 * pubkey and DER belong to the table; release with issuer_put). crt, when given, is that
 * certificate already parsed; otherwise a first use parses der. 0 or a GnuTLS error. */
static int issuer_get_der(const gnutls_datum_t *der, gnutls_x509_crt_t crt, gnutls_pcert_st *out) {
  uint64_t h = der_hash(der->data, der->size);
  pthread_mutex_lock(&g_issuer_mu);
  issuer_ent *e = issuer_find_locked(h, der);
  if (e) {
    e->refs++;
    *out = e->pcert;
  }
  pthread_mutex_unlock(&g_issuer_mu);
  if (e)
    return 0;
  /* Parsed outside the lock; another thread may have added the same certificate meanwhile. */
  issuer_ent *fresh = ae_calloc(1, sizeof(*fresh));
  int g = crt ? gnutls_pcert_import_x509(&fresh->pcert, crt, 0)
              : gnutls_pcert_import_x509_raw(&fresh->pcert, der, GNUTLS_X509_FMT_DER, 0);
  if (g < 0) {
    free(fresh);
    return g;
  }
  fresh->hash = h;
  fresh->refs = 1;
  pthread_mutex_lock(&g_issuer_mu);
  e = issuer_find_locked(h, der);
  if (e) {
    e->refs++;
    *out = e->pcert;
  } else {
    fresh->next = g_issuers[h % ISSUER_BUCKETS];
    g_issuers[h % ISSUER_BUCKETS] = fresh;
    *out = fresh->pcert;
  }
  pthread_mutex_unlock(&g_issuer_mu);
  if (e) {
    gnutls_pcert_deinit(&fresh->pcert);
    free(fresh);
  }
  return 0;
}

/* issuer_get_der for a parsed certificate. */
static int issuer_get(gnutls_x509_crt_t crt, gnutls_pcert_st *out) {
  gnutls_datum_t der = {NULL, 0};
  int g = gnutls_x509_crt_export2(crt, GNUTLS_X509_FMT_DER, &der);
  if (g < 0)
    return g;
  g = issuer_get_der(&der, crt, out);
  gnutls_free(der.data);
  return g;
}

/* Drops one reference taken by issuer_get; the last one frees the parsed certificate. */
static void issuer_put(const gnutls_pcert_st *p) {
  uint64_t h = der_hash(p->cert.data, p->cert.size);
  issuer_ent *gone = NULL;
  pthread_mutex_lock(&g_issuer_mu);
  for (issuer_ent **pp = &g_issuers[h % ISSUER_BUCKETS]; *pp; pp = &(*pp)->next) {
    if ((*pp)->pcert.cert.data == p->cert.data) {
      if (--(*pp)->refs == 0) {
        gone = *pp;
        *pp = gone->next;
      }
      break;
    }
  }
  pthread_mutex_unlock(&g_issuer_mu);
  if (gone) {
    gnutls_pcert_deinit(&gone->pcert);
    free(gone);
  }
}

/* ---------- ae_cert ---------- */

static void cert_destroy(ae_cert *c) {
  if (c->npcerts > 0)
    gnutls_pcert_deinit(&c->pcerts[0]);
  for (unsigned i = 1; i < c->npcerts; i++)
    issuer_put(&c->pcerts[i]);
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

/* Validity, serial, issuer DN, names and the accounted size, all read from the parsed leaf. */
static void collect_meta(ae_cert *c, gnutls_x509_crt_t leaf, size_t key_bytes) {
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

/* Labels prefix every error message: "" for PEM input, "path: " for files. */
typedef struct labels {
  const char *cert;
  const char *key;
  const char *cert_path; /* NULL for PEM input */
} labels;

static int cert_build(const char *cert_pem, size_t cert_len, const char *key_pem, size_t key_len,
                      const labels *lb, ae_cert **out, ae_err *err) {
  gnutls_x509_crt_t *crts = NULL;
  unsigned ncrts = 0;
  gnutls_x509_privkey_t key = NULL;
  ae_cert *c = NULL;
  int rc = AE_EINVAL;

  if (!cert_pem || cert_len == 0)
    return ae_err_set(err, AE_EINVAL, "%sno certificate found", lb->cert);
  if (!key_pem || key_len == 0)
    return ae_err_set(err, AE_EINVAL, "%sno private key found", lb->key);
  if (cert_len > UINT32_MAX || key_len > UINT32_MAX)
    return ae_err_set(err, AE_EINVAL, "%stoo large", lb->cert);

  gnutls_datum_t cd = {(unsigned char *)(uintptr_t)cert_pem, (unsigned)cert_len};
  int g = gnutls_x509_crt_list_import2(&crts, &ncrts, &cd, GNUTLS_X509_FMT_PEM, 0);
  if (g < 0 || ncrts == 0) {
    ae_err_set(err, AE_EINVAL, "%scannot parse certificate: %s", lb->cert, pem_problem(g));
    goto out;
  }

  gnutls_datum_t kd = {(unsigned char *)(uintptr_t)key_pem, (unsigned)key_len};
  g = gnutls_x509_privkey_init(&key);
  if (g >= 0)
    g = gnutls_x509_privkey_import2(key, &kd, GNUTLS_X509_FMT_PEM, NULL, GNUTLS_PKCS_PLAIN);
  if (g < 0) {
    ae_err_set(err, AE_EINVAL, "%scannot parse private key: %s", lb->key, pem_problem(g));
    goto out;
  }

  /* GnuTLS refuses a mismatched pair too, but with a generic message; checking the key ids
   * first lets the error say which files disagree. */
  unsigned char kid1[64], kid2[64];
  size_t k1 = sizeof(kid1), k2 = sizeof(kid2);
  if (gnutls_x509_crt_get_key_id(crts[0], 0, kid1, &k1) < 0 ||
      gnutls_x509_privkey_get_key_id(key, 0, kid2, &k2) < 0 || k1 != k2 || memcmp(kid1, kid2, k1) != 0) {
    if (lb->cert_path)
      ae_err_set(err, AE_EINVAL, "%sprivate key does not match certificate %s", lb->key, lb->cert_path);
    else
      ae_err_set(err, AE_EINVAL, "private key does not match certificate");
    goto out;
  }

  c = ae_calloc(1, sizeof(*c) + ncrts * sizeof(c->pcerts[0]));
  atomic_init(&c->refs, 1);
  /* Parsed once here, so each handshake hands GnuTLS the chain and key without re-parsing. */
  for (; c->npcerts < ncrts; c->npcerts++) {
    unsigned i = c->npcerts;
    g = i == 0 ? gnutls_pcert_import_x509(&c->pcerts[0], crts[0], 0) : issuer_get(crts[i], &c->pcerts[i]);
    if (g < 0) {
      ae_err_set(err, AE_EINVAL, "%scannot use certificate %u of the chain: %s", lb->cert, c->npcerts + 1,
                 gnutls_strerror(g));
      goto out;
    }
  }
  size_t key_bytes = 0;
  if (cs_key_compact(key, &c->key, &key_bytes) == 1) {
    gnutls_x509_privkey_deinit(key);
    key = NULL;
    goto key_done;
  }
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
  collect_meta(c, crts[0], key_bytes);

  *out = c;
  c = NULL;
  rc = 0;

out:
  if (c)
    cert_destroy(c);
  if (key)
    gnutls_x509_privkey_deinit(key);
  for (unsigned i = 0; i < ncrts; i++)
    gnutls_x509_crt_deinit(crts[i]);
  gnutls_free(crts);
  return rc;
}

int ae_cert_from_pem(const char *cert_pem, size_t cert_len, const char *key_pem, size_t key_len,
                     ae_cert **out, ae_err *err) {
  labels lb = {"", "", NULL};
  return cert_build(cert_pem, cert_len, key_pem, key_len, &lb, out, err);
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
  if (cs_key_compact(key, &c->key, &key_bytes) != 1) {
    c->key = NULL;
    cert_destroy(c);
    return ae_err_set(err, AE_EINVAL, "certificate parts: the key is not an ECDSA P-256/P-384 key");
  }
  int g = gnutls_pcert_import_x509(&c->pcerts[0], leaf, 0);
  if (g >= 0)
    c->npcerts = 1;
  for (unsigned i = 0; g >= 0 && i < nchain; i++) {
    g = issuer_get_der(&chain[i], NULL, &c->pcerts[i + 1]);
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
  char cl[4200], kl[4200];
  snprintf(cl, sizeof(cl), "%s: ", cert_path);
  snprintf(kl, sizeof(kl), "%s: ", key_path);
  labels lb = {cl, kl, cert_path};
  rc = cert_build(cpem, clen, kpem, klen, &lb, out, err);
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

