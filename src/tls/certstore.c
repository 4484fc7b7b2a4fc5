/* SNI certificate cache: refcounted certificates parsed once, and a name -> cert hash table shared
 * by every worker loop.
 *
 * Locking: the table is guarded by a writer-preferring pthread rwlock. A lookup takes the read
 * lock, hashes the name without copying it, walks one bucket chain and bumps the refcount of the
 * hit before unlocking; it never allocates. The rwlock (instead of a lock-free scheme) is what
 * makes "no connection ever sees a freed cert" trivially true: a writer cannot drop the store's
 * reference while a reader sits between finding an entry and taking its own reference. Writers
 * (put/remove/set_default) are rare and drop replaced references only after unlocking, so the
 * potentially slow certificate teardown never runs under the lock.
 *
 * Memory: a cert holds only what a handshake needs (the chain as GnuTLS pcerts, the private key)
 * plus a little metadata. TLS fronts share one credentials object and pick the cert per session
 * from a retrieve callback, because a credentials object per cert would carry its own (unused)
 * trust list and roughly double the cost of every cached name. Certificates after the leaf
 * (intermediates) are parsed once per distinct certificate and shared by every chain that
 * carries them: thousands of leaves of one CA name the same one or two intermediates. */
#include "acmedge/certstore.h"

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

/* Fills *out with the shared parsed form of crt (a struct copy whose pubkey and DER belong to the
 * table; release with issuer_put). 0 or a GnuTLS error. */
static int issuer_get(gnutls_x509_crt_t crt, gnutls_pcert_st *out) {
  gnutls_datum_t der = {NULL, 0};
  int g = gnutls_x509_crt_export2(crt, GNUTLS_X509_FMT_DER, &der);
  if (g < 0)
    return g;
  uint64_t h = der_hash(der.data, der.size);
  pthread_mutex_lock(&g_issuer_mu);
  issuer_ent *e = issuer_find_locked(h, &der);
  if (e) {
    e->refs++;
    *out = e->pcert;
  }
  pthread_mutex_unlock(&g_issuer_mu);
  if (e) {
    gnutls_free(der.data);
    return 0;
  }
  /* Parsed outside the lock; another thread may have added the same certificate meanwhile. */
  issuer_ent *fresh = ae_calloc(1, sizeof(*fresh));
  g = gnutls_pcert_import_x509(&fresh->pcert, crt, 0);
  if (g < 0) {
    gnutls_free(der.data);
    free(fresh);
    return g;
  }
  fresh->hash = h;
  fresh->refs = 1;
  pthread_mutex_lock(&g_issuer_mu);
  e = issuer_find_locked(h, &der);
  if (e) {
    e->refs++;
    *out = e->pcert;
  } else {
    fresh->next = g_issuers[h % ISSUER_BUCKETS];
    g_issuers[h % ISSUER_BUCKETS] = fresh;
    *out = fresh->pcert;
  }
  pthread_mutex_unlock(&g_issuer_mu);
  gnutls_free(der.data);
  if (e) {
    gnutls_pcert_deinit(&fresh->pcert);
    free(fresh);
  }
  return 0;
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

  c->not_before = (int64_t)gnutls_x509_crt_get_activation_time(crts[0]);
  c->not_after = (int64_t)gnutls_x509_crt_get_expiration_time(crts[0]);
  collect_serial(c, crts[0]);
  gnutls_datum_t dn = {NULL, 0};
  if (gnutls_x509_crt_get_issuer_dn3(crts[0], &dn, 0) >= 0 && dn.data) {
    c->issuer = ae_malloc(dn.size + 1);
    memcpy(c->issuer, dn.data, dn.size);
    c->issuer[dn.size] = '\0';
    gnutls_free(dn.data);
  } else {
    c->issuer = ae_strdup("");
  }
  collect_names(c, crts[0]);

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

/* ---------- self-signed generation ---------- */

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

/* ---------- the store ---------- */

typedef struct entry {
  struct entry *next;
  uint64_t hash;
  ae_cert *cert;
  char name[]; /* lowercase */
} entry;

struct ae_certstore {
  pthread_rwlock_t lock;
  entry **buckets;
  size_t nbuckets; /* power of two */
  size_t count;
  ae_cert *def;
};

/* FNV-1a over the lowercased bytes of prefix then s, so a wildcard key can be hashed in place. */
static uint64_t hash_name(const char *prefix, const char *s) {
  uint64_t h = 1469598103934665603ull;
  for (const char *p = prefix; *p; p++) {
    h ^= (unsigned char)lower_ascii(*p);
    h *= 1099511628211ull;
  }
  for (const char *p = s; *p; p++) {
    h ^= (unsigned char)lower_ascii(*p);
    h *= 1099511628211ull;
  }
  return h;
}

/* Equality of a stored lowercase key with prefix+s, case-insensitively on s. */
static int key_equals(const char *key, const char *prefix, const char *s) {
  while (*prefix) {
    if (*key != *prefix)
      return 0;
    key++;
    prefix++;
  }
  while (*s) {
    if (*key != lower_ascii(*s))
      return 0;
    key++;
    s++;
  }
  return *key == '\0';
}

static entry *find_locked(const ae_certstore *cs, const char *prefix, const char *s, entry ***link) {
  uint64_t h = hash_name(prefix, s);
  entry **pp = &cs->buckets[h & (cs->nbuckets - 1)];
  for (; *pp; pp = &(*pp)->next) {
    if ((*pp)->hash == h && key_equals((*pp)->name, prefix, s)) {
      if (link)
        *link = pp;
      return *pp;
    }
  }
  return NULL;
}

int ae_certstore_new(ae_certstore **out) {
  ae_certstore *cs = ae_calloc(1, sizeof(*cs));
  pthread_rwlockattr_t attr;
  pthread_rwlockattr_init(&attr);
  /* Readers come in a constant stream of handshakes; a swap must not wait for a lull. */
  pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
  int r = pthread_rwlock_init(&cs->lock, &attr);
  pthread_rwlockattr_destroy(&attr);
  if (r != 0) {
    free(cs);
    return AE_ENOMEM;
  }
  cs->nbuckets = 64;
  cs->buckets = ae_calloc(cs->nbuckets, sizeof(entry *));
  *out = cs;
  return 0;
}

void ae_certstore_free(ae_certstore *cs) {
  if (!cs)
    return;
  for (size_t i = 0; i < cs->nbuckets; i++) {
    entry *e = cs->buckets[i];
    while (e) {
      entry *next = e->next;
      ae_cert_unref(e->cert);
      free(e);
      e = next;
    }
  }
  free(cs->buckets);
  ae_cert_unref(cs->def);
  pthread_rwlock_destroy(&cs->lock);
  free(cs);
}

static void grow_locked(ae_certstore *cs) {
  size_t nb = cs->nbuckets * 2;
  entry **nbk = ae_calloc(nb, sizeof(entry *));
  for (size_t i = 0; i < cs->nbuckets; i++) {
    entry *e = cs->buckets[i];
    while (e) {
      entry *next = e->next;
      size_t j = e->hash & (nb - 1);
      e->next = nbk[j];
      nbk[j] = e;
      e = next;
    }
  }
  free(cs->buckets);
  cs->buckets = nbk;
  cs->nbuckets = nb;
}

int ae_certstore_put(ae_certstore *cs, const char *name, ae_cert *cert) {
  if (!cs || !name || !cert)
    return AE_EINVAL;
  size_t n = strlen(name);
  if (n == 0 || n > NAME_MAX_LEN)
    return AE_EINVAL;
  /* Allocated before locking so the write lock is held only for pointer updates. */
  entry *fresh = ae_malloc(sizeof(entry) + n + 1);
  for (size_t i = 0; i < n; i++)
    fresh->name[i] = lower_ascii(name[i]);
  fresh->name[n] = '\0';
  fresh->hash = hash_name("", fresh->name);
  fresh->cert = ae_cert_ref(cert);
  ae_cert *old = NULL;

  pthread_rwlock_wrlock(&cs->lock);
  entry *e = find_locked(cs, "", fresh->name, NULL);
  if (e) {
    old = e->cert;
    e->cert = fresh->cert;
  } else {
    if (cs->count + 1 > cs->nbuckets - cs->nbuckets / 4)
      grow_locked(cs);
    size_t j = fresh->hash & (cs->nbuckets - 1);
    fresh->next = cs->buckets[j];
    cs->buckets[j] = fresh;
    cs->count++;
    fresh = NULL;
  }
  pthread_rwlock_unlock(&cs->lock);

  free(fresh);
  ae_cert_unref(old);
  return 0;
}

int ae_certstore_remove(ae_certstore *cs, const char *name) {
  if (!cs || !name)
    return AE_EINVAL;
  entry **link = NULL;
  pthread_rwlock_wrlock(&cs->lock);
  entry *e = find_locked(cs, "", name, &link);
  if (e) {
    *link = e->next;
    cs->count--;
  }
  pthread_rwlock_unlock(&cs->lock);
  if (!e)
    return AE_ENOTFOUND;
  ae_cert_unref(e->cert);
  free(e);
  return 0;
}

ae_cert *ae_certstore_lookup(ae_certstore *cs, const char *name) {
  if (!cs || !name || !*name)
    return NULL;
  /* The wildcard candidate replaces exactly one non-empty leading label, and never lands on a
   * TLD-level parent ("*.com"). */
  const char *dot = strchr(name, '.');
  const char *parent = (dot && dot != name && dot[1] && strchr(dot + 1, '.')) ? dot + 1 : NULL;
  ae_cert *c = NULL;
  pthread_rwlock_rdlock(&cs->lock);
  entry *e = find_locked(cs, "", name, NULL);
  if (!e && parent)
    e = find_locked(cs, "*.", parent, NULL);
  if (e)
    c = ae_cert_ref(e->cert);
  pthread_rwlock_unlock(&cs->lock);
  return c;
}

void ae_certstore_set_default(ae_certstore *cs, ae_cert *cert) {
  ae_cert_ref(cert);
  pthread_rwlock_wrlock(&cs->lock);
  ae_cert *old = cs->def;
  cs->def = cert;
  pthread_rwlock_unlock(&cs->lock);
  ae_cert_unref(old);
}

ae_cert *ae_certstore_default(ae_certstore *cs) {
  pthread_rwlock_rdlock(&cs->lock);
  ae_cert *c = ae_cert_ref(cs->def);
  pthread_rwlock_unlock(&cs->lock);
  return c;
}

size_t ae_certstore_count(ae_certstore *cs) {
  pthread_rwlock_rdlock(&cs->lock);
  size_t n = cs->count;
  pthread_rwlock_unlock(&cs->lock);
  return n;
}
