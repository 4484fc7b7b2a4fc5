/* Bounded LRU cache of minted leaves, shared by every front-end thread. One mutex: entries are
 * looked up once per handshake of a name without a real certificate, so contention is low and
 * the critical sections are a hash probe and a list splice. */
#include "acmedge/ca.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "acmedge/strmap.h"

typedef struct lc_entry {
  struct lc_entry *prev, *next; /* LRU list, most recent first */
  ae_cert *cert;
  int64_t fresh_until;          /* two thirds into the leaf's life */
  char name[256];
} lc_entry;

struct ae_leafcache {
  pthread_mutex_t lock;
  ae_strmap map;                /* name -> lc_entry* */
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
  ae_strmap_del(&lc->map, e->name);
  free(e);
  return c;
}

int ae_leafcache_new(size_t max, ae_leafcache **out) {
  ae_leafcache *lc = ae_calloc(1, sizeof(*lc));
  pthread_mutex_init(&lc->lock, NULL);
  ae_strmap_init(&lc->map);
  lc->max = max ? max : AE_CA_CACHE_MAX;
  *out = lc;
  return 0;
}

void ae_leafcache_free(ae_leafcache *lc) {
  if (!lc)
    return;
  while (lc->head)
    ae_cert_unref(remove_e(lc, lc->head));
  ae_strmap_clear(&lc->map);
  pthread_mutex_destroy(&lc->lock);
  free(lc);
}

ae_cert *ae_leafcache_get(ae_leafcache *lc, const char *name, int64_t now) {
  char key[256];
  lower(name, key, sizeof(key));
  ae_cert *out = NULL, *stale = NULL;
  pthread_mutex_lock(&lc->lock);
  lc_entry *e = ae_strmap_get(&lc->map, key);
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
  lc_entry *e = ae_calloc(1, sizeof(*e));
  lower(name, e->name, sizeof(e->name));
  e->cert = ae_cert_ref(cert);
  int64_t nb = ae_cert_not_before(cert), na = ae_cert_not_after(cert);
  e->fresh_until = nb + (na - nb) * 2 / 3;
  ae_cert *old = NULL, *evicted = NULL;
  pthread_mutex_lock(&lc->lock);
  lc_entry *prev = ae_strmap_get(&lc->map, e->name);
  if (prev)
    old = remove_e(lc, prev);
  else if (lc->map.count >= lc->max && lc->tail) {
    evicted = remove_e(lc, lc->tail);
    lc->evictions++;
  }
  ae_strmap_put(&lc->map, e->name, e);
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
  lc_entry *e = ae_strmap_get(&lc->map, key);
  if (e)
    c = remove_e(lc, e);
  pthread_mutex_unlock(&lc->lock);
  ae_cert_unref(c);
}

size_t ae_leafcache_count(ae_leafcache *lc) {
  pthread_mutex_lock(&lc->lock);
  size_t n = lc->map.count;
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
