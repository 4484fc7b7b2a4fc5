/* Negative cache of the certificate store: names storage recently did not have.
 *
 * Direct-mapped by hash, so its size is fixed at creation whatever a random-SNI flood sends: a
 * new name simply overwrites whatever shared its slot. Only the 64-bit hash is kept; a collision
 * would at worst make a stored name look absent for one TTL. A mutex is enough: the cache is read
 * on the miss path only, never for a cached certificate. */
#include "certstore_int.h"

#include <pthread.h>
#include <stdlib.h>

#include "acmedge/common.h"

typedef struct neg_slot {
  uint64_t hash;
  uint64_t expires_ms;
} neg_slot;

struct cs_negcache {
  pthread_mutex_t mu;
  size_t n;
  neg_slot *slots;
};

cs_negcache *cs_neg_new(size_t slots) {
  cs_negcache *c = ae_calloc(1, sizeof(*c));
  pthread_mutex_init(&c->mu, NULL);
  c->n = slots ? slots : 1;
  c->slots = ae_calloc(c->n, sizeof(neg_slot));
  return c;
}

void cs_neg_free(cs_negcache *c) {
  if (!c)
    return;
  pthread_mutex_destroy(&c->mu);
  free(c->slots);
  free(c);
}

size_t cs_neg_slots(const cs_negcache *c) { return c->n; }

void cs_neg_put(cs_negcache *c, const char *name, uint64_t now_ms, uint64_t ttl_ms) {
  uint64_t h = cs_hash_name("", name);
  pthread_mutex_lock(&c->mu);
  neg_slot *s = &c->slots[h % c->n];
  s->hash = h;
  s->expires_ms = now_ms + ttl_ms;
  pthread_mutex_unlock(&c->mu);
}

int cs_neg_has(cs_negcache *c, const char *name, uint64_t now_ms) {
  uint64_t h = cs_hash_name("", name);
  pthread_mutex_lock(&c->mu);
  neg_slot *s = &c->slots[h % c->n];
  int hit = s->hash == h && s->expires_ms > now_ms;
  pthread_mutex_unlock(&c->mu);
  return hit;
}

void cs_neg_del(cs_negcache *c, const char *name) {
  uint64_t h = cs_hash_name("", name);
  pthread_mutex_lock(&c->mu);
  neg_slot *s = &c->slots[h % c->n];
  if (s->hash == h)
    s->expires_ms = 0;
  pthread_mutex_unlock(&c->mu);
}
