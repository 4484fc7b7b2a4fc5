/* Bounded LRU cache of minted leaves, shared by every front-end thread. One mutex: entries are
 * looked up once per handshake of a name without a real certificate, so contention is low and
 * the critical sections are a hash probe and a list splice. */
#include "acmedge/ca.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "acmedge/strmap.h"

/* Intrusive entries (hash chain and LRU links in the entry, the name stored once, inline): a cached
 * leaf must cost no more than the same certificate in the certificate store (bench/ca.sh). */
typedef struct lc_entry {
  struct lc_entry *prev, *next; /* LRU list, most recent first */
  struct lc_entry *hnext;       /* bucket chain (the hash is recomputed when needed: 8 bytes less) */
  ae_cert *cert;
  int64_t fresh_until;          /* two thirds into the leaf's life */
  char name[];                  /* lowercase */
} lc_entry;

struct ae_leafcache {
  pthread_mutex_t lock;
  lc_entry **buckets;
  size_t nbuckets;              /* power of two */
  size_t count;
  lc_entry *head, *tail;
  size_t max;
  uint64_t hits, misses, evictions;
};

static void lower(const char *in, char *out, size_t len) {
  size_t i = 0;
  for (; in[i] && i + 1 < len; i++)
    out[i] = (char)(in[i] >= 'A' && in[i] <= 'Z' ? in[i] + 32 : in[i]);
  out[i] = '\0';
}

static lc_entry *find(ae_leafcache *lc, const char *key, size_t h) {
  for (lc_entry *e = lc->buckets[h & (lc->nbuckets - 1)]; e; e = e->hnext)
    if (strcmp(e->name, key) == 0)
      return e;
  return NULL;
}

static void hash_insert(ae_leafcache *lc, lc_entry *e) {
  lc_entry **b = &lc->buckets[ae_strhash(e->name) & (lc->nbuckets - 1)];
  e->hnext = *b;
  *b = e;
}

static void hash_remove(ae_leafcache *lc, lc_entry *e) {
  lc_entry **pp = &lc->buckets[ae_strhash(e->name) & (lc->nbuckets - 1)];
  while (*pp && *pp != e)
    pp = &(*pp)->hnext;
  if (*pp)
    *pp = e->hnext;
}

/* Doubles the table once it holds more entries than buckets (chains stay ~1 long). */
static void maybe_grow(ae_leafcache *lc) {
  if (lc->count < lc->nbuckets)
    return;
  size_t n = lc->nbuckets * 2;
  lc_entry **nb = ae_calloc(n, sizeof(*nb));
  for (size_t i = 0; i < lc->nbuckets; i++) {
    lc_entry *e = lc->buckets[i];
    while (e) {
      lc_entry *next = e->hnext;
      size_t h = ae_strhash(e->name) & (n - 1);
      e->hnext = nb[h];
      nb[h] = e;
      e = next;
    }
  }
  free(lc->buckets);
  lc->buckets = nb;
  lc->nbuckets = n;
}

static void unlink_e(ae_leafcache *lc, lc_entry *e) {
  if (e->prev)
    e->prev->next = e->next;
  else
    lc->head = e->next;
  if (e->next)
    e->next->prev = e->prev;
  else
    lc->tail = e->prev;
  e->prev = e->next = NULL;
}

static void push_front(ae_leafcache *lc, lc_entry *e) {
  e->prev = NULL;
  e->next = lc->head;
  if (lc->head)
    lc->head->prev = e;
  lc->head = e;
  if (!lc->tail)
    lc->tail = e;
}

/* Unlinks and unregisters e; returns its cert for the caller to unref outside the lock. */
static ae_cert *remove_e(ae_leafcache *lc, lc_entry *e) {
  ae_cert *c = e->cert;
  unlink_e(lc, e);
  hash_remove(lc, e);
  lc->count--;
  free(e);
  return c;
}

int ae_leafcache_new(size_t max, ae_leafcache **out) {
  ae_leafcache *lc = ae_calloc(1, sizeof(*lc));
  pthread_mutex_init(&lc->lock, NULL);
  lc->nbuckets = 64;
  lc->buckets = ae_calloc(lc->nbuckets, sizeof(*lc->buckets));
  lc->max = max ? max : AE_CA_CACHE_MAX;
  *out = lc;
  return 0;
}

void ae_leafcache_free(ae_leafcache *lc) {
  if (!lc)
    return;
  while (lc->head)
    ae_cert_unref(remove_e(lc, lc->head));
  free(lc->buckets);
  pthread_mutex_destroy(&lc->lock);
  free(lc);
}

ae_cert *ae_leafcache_get(ae_leafcache *lc, const char *name, int64_t now) {
  char key[256];
  lower(name, key, sizeof(key));
  ae_cert *out = NULL, *stale = NULL;
  pthread_mutex_lock(&lc->lock);
  lc_entry *e = find(lc, key, ae_strhash(key));
  if (e && now < e->fresh_until) {
    unlink_e(lc, e);
    push_front(lc, e);
    out = ae_cert_ref(e->cert);
    lc->hits++;
  } else {
    if (e)
      stale = remove_e(lc, e);
    lc->misses++;
  }
  pthread_mutex_unlock(&lc->lock);
  ae_cert_unref(stale);
  return out;
}

void ae_leafcache_put(ae_leafcache *lc, const char *name, ae_cert *cert) {
  char key[256];
  lower(name, key, sizeof(key));
  size_t klen = strlen(key);
  lc_entry *e = ae_calloc(1, sizeof(*e) + klen + 1);
  memcpy(e->name, key, klen + 1);
  e->cert = ae_cert_ref(cert);
  int64_t nb = ae_cert_not_before(cert), na = ae_cert_not_after(cert);
  e->fresh_until = nb + (na - nb) * 2 / 3;
  ae_cert *old = NULL, *evicted = NULL;
  pthread_mutex_lock(&lc->lock);
  lc_entry *prev = find(lc, e->name, ae_strhash(e->name));
  if (prev)
    old = remove_e(lc, prev);
  else if (lc->count >= lc->max && lc->tail) {
    evicted = remove_e(lc, lc->tail);
    lc->evictions++;
  }
  hash_insert(lc, e);
  lc->count++;
  maybe_grow(lc);
  push_front(lc, e);
  pthread_mutex_unlock(&lc->lock);
  ae_cert_unref(old);
  ae_cert_unref(evicted);
}

void ae_leafcache_drop(ae_leafcache *lc, const char *name) {
  char key[256];
  lower(name, key, sizeof(key));
  ae_cert *c = NULL;
  pthread_mutex_lock(&lc->lock);
  lc_entry *e = find(lc, key, ae_strhash(key));
  if (e)
    c = remove_e(lc, e);
  pthread_mutex_unlock(&lc->lock);
  ae_cert_unref(c);
}

size_t ae_leafcache_count(ae_leafcache *lc) {
  pthread_mutex_lock(&lc->lock);
  size_t n = lc->count;
  pthread_mutex_unlock(&lc->lock);
  return n;
}

void ae_leafcache_stats(ae_leafcache *lc, uint64_t *hits, uint64_t *misses, uint64_t *evictions) {
  pthread_mutex_lock(&lc->lock);
  *hits = lc->hits;
  *misses = lc->misses;
  *evictions = lc->evictions;
  pthread_mutex_unlock(&lc->lock);
}
