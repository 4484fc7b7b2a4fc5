/* Shared intermediates: the certificates after the leaf, parsed once per distinct certificate.
 *
 * Thousands of leaves of one CA carry the same one or two intermediates. A chain's intermediates
 * are identified by their DER bytes (hash, then byte comparison), so a leaf loaded from storage
 * whose intermediate is already known costs a base64 decode and a hash for it, not an X.509 parse
 * and a public-key import. Each entry is refcounted by the chains that hold it and freed with the
 * last one. The table is touched only when a cert is built or freed, never during a handshake, so
 * one mutex is enough. */
#include "certstore_int.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "acmedge/certstore.h"
#include "acmedge/common.h"

typedef struct issuer_ent {
  struct issuer_ent *next;
  uint64_t hash;
  size_t refs;
  gnutls_pcert_st pcert;
} issuer_ent;

#define ISSUER_BUCKETS 64

static pthread_mutex_t g_issuer_mu = PTHREAD_MUTEX_INITIALIZER;
static issuer_ent *g_issuers[ISSUER_BUCKETS];
static size_t g_distinct, g_refs;

static uint64_t der_hash(const unsigned char *p, size_t n) {
  uint64_t h = 1469598103934665603ull;
  for (size_t i = 0; i < n; i++) {
    h ^= p[i];
    h *= 1099511628211ull;
  }
  return h;
}

static issuer_ent *find_locked(uint64_t h, const gnutls_datum_t *der) {
  for (issuer_ent *e = g_issuers[h % ISSUER_BUCKETS]; e; e = e->next)
    if (e->hash == h && e->pcert.cert.size == der->size && memcmp(e->pcert.cert.data, der->data, der->size) == 0)
      return e;
  return NULL;
}

/* Takes a reference on the entry for der when there is one; 1 when found. */
static int take_locked(uint64_t h, const gnutls_datum_t *der, gnutls_pcert_st *out) {
  issuer_ent *e = find_locked(h, der);
  if (!e)
    return 0;
  e->refs++;
  g_refs++;
  *out = e->pcert;
  return 1;
}

int cs_issuer_get(const gnutls_datum_t *der, gnutls_pcert_st *out) {
  uint64_t h = der_hash(der->data, der->size);
  pthread_mutex_lock(&g_issuer_mu);
  int found = take_locked(h, der, out);
  pthread_mutex_unlock(&g_issuer_mu);
  if (found)
    return 0;
  /* Parsed outside the lock; another thread may add the same certificate meanwhile. */
  issuer_ent *fresh = ae_calloc(1, sizeof(*fresh));
  int g = gnutls_pcert_import_x509_raw(&fresh->pcert, der, GNUTLS_X509_FMT_DER, 0);
  if (g < 0) {
    free(fresh);
    return g;
  }
  fresh->hash = h;
  fresh->refs = 1;
  pthread_mutex_lock(&g_issuer_mu);
  found = take_locked(h, der, out);
  if (!found) {
    fresh->next = g_issuers[h % ISSUER_BUCKETS];
    g_issuers[h % ISSUER_BUCKETS] = fresh;
    g_distinct++;
    g_refs++;
    *out = fresh->pcert;
  }
  pthread_mutex_unlock(&g_issuer_mu);
  if (found) {
    gnutls_pcert_deinit(&fresh->pcert);
    free(fresh);
  }
  return 0;
}

void cs_issuer_put(const gnutls_pcert_st *p) {
  uint64_t h = der_hash(p->cert.data, p->cert.size);
  issuer_ent *gone = NULL;
  pthread_mutex_lock(&g_issuer_mu);
  for (issuer_ent **pp = &g_issuers[h % ISSUER_BUCKETS]; *pp; pp = &(*pp)->next) {
    if ((*pp)->pcert.cert.data == p->cert.data) {
      g_refs--;
      if (--(*pp)->refs == 0) {
        gone = *pp;
        *pp = gone->next;
        g_distinct--;
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

void ae_cert_issuer_stats(size_t *distinct, size_t *refs) {
  pthread_mutex_lock(&g_issuer_mu);
  if (distinct)
    *distinct = g_distinct;
  if (refs)
    *refs = g_refs;
  pthread_mutex_unlock(&g_issuer_mu);
}
