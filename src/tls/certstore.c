/* The name -> certificate table shared by every worker loop: sharded, bounded, CLOCK-evicted.
 *
 * Locking: the table is split into shards by name hash, each guarded by its own writer-preferring
 * rwlock, so a handshake on one worker never waits for an insert (a miss being loaded from
 * storage) that lands in another shard, and readers of one shard share its lock. A lookup takes
 * the shard's read lock, hashes the name without copying it, walks one bucket chain, sets the
 * entry's CLOCK bit and bumps the refcount of the hit before unlocking; it never allocates. The
 * lock (instead of a lock-free scheme) is what makes "no connection ever sees a freed cert"
 * trivially true: a writer cannot drop the store's reference while a reader sits between finding
 * an entry and taking its own reference. Writers drop replaced or evicted references only after
 * unlocking, so the potentially slow certificate teardown never runs under a lock.
 *
 * Bound: with max_entries set, each shard holds at most max_entries / nshards names, and with
 * max_bytes set at most max_bytes / nshards accounted bytes (ae_cert_bytes of each cert plus the
 * entry itself: see entry_bytes); an insert beyond either evicts with CLOCK (second chance): a lookup marks an entry, the hand clears marks
 * and takes the first unmarked entry. An evicted certificate in use by a connection lives on
 * through that connection's reference; the evict callback tells the owner (provisioning) so the
 * name is reloaded from storage on its next handshake. */
#include "acmedge/certstore.h"
#include "certstore_int.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#define NAME_MAX_LEN 255
#define SHARDS_MAX 64
/* Below this bound one shard keeps eviction exact (tests, tiny deployments). */
#define SHARDED_FROM 4096
#define NEG_DEFAULT_SLOTS 16384
/* A byte bound below SHARDED_FROM times this (about 16 MiB) keeps one shard. */
#define SHARD_BYTES_UNIT 4096

typedef struct entry {
  struct entry *next;          /* bucket chain */
  struct entry *rprev, *rnext; /* CLOCK ring */
  uint64_t hash;
  atomic_uchar used;           /* CLOCK bit, set by lookups under the read lock */
  uint32_t bytes;              /* accounted size: entry_bytes(cert, name) */
  ae_cert *cert;
  char name[];                 /* lowercase */
} entry;

typedef struct shard {
  pthread_rwlock_t lock;
  entry **buckets;
  size_t nbuckets; /* power of two */
  size_t count;
  size_t bytes;    /* sum of the entries' accounted sizes */
  entry *hand;     /* CLOCK hand; NULL when the shard is empty */
} shard;

struct ae_certstore {
  shard *shards;
  unsigned nshards; /* power of two */
  size_t cap;       /* per shard; 0 = unbounded */
  size_t cap_bytes; /* per shard; 0 = unbounded */
  size_t max_entries;
  size_t max_bytes;
  atomic_size_t evictions;
  pthread_rwlock_t def_lock;
  ae_cert *def;
  ae_certstore_evict_cb evict_cb;
  void *evict_ud;
  cs_negcache *neg;
};

/* Equality of a stored lowercase key with prefix+s, case-insensitively on s. */
static int key_equals(const char *key, const char *prefix, const char *s) {
  while (*prefix) {
    if (*key != *prefix)
      return 0;
    key++;
    prefix++;
  }
  while (*s) {
    if (*key != cs_lower(*s))
      return 0;
    key++;
    s++;
  }
  return *key == '\0';
}

/* malloc's per-chunk header and rounding to 16 bytes, as glibc charges them. */
static size_t chunk(size_t n) { return (n + 8 + 15) & ~(size_t)15; }

/* What an entry holds: the cert's accounted size plus the entry allocation (struct + name). A cert
 * shared by several names (a wildcard and an exact name) is charged to each: the bound errs on the
 * safe side. */
static uint32_t entry_bytes(const ae_cert *cert, size_t namelen) {
  size_t b = ae_cert_bytes(cert) + chunk(sizeof(entry) + namelen + 1);
  return b > UINT32_MAX ? UINT32_MAX : (uint32_t)b;
}

static shard *shard_of(const ae_certstore *cs, uint64_t h) { return &cs->shards[(h >> 40) & (cs->nshards - 1)]; }

static entry *find_locked(const shard *sh, uint64_t h, const char *prefix, const char *s, entry ***link) {
  entry **pp = &sh->buckets[h & (sh->nbuckets - 1)];
  for (; *pp; pp = &(*pp)->next) {
    if ((*pp)->hash == h && key_equals((*pp)->name, prefix, s)) {
      if (link)
        *link = pp;
      return *pp;
    }
  }
  return NULL;
}

static int rwlock_init(pthread_rwlock_t *l) {
  pthread_rwlockattr_t attr;
  pthread_rwlockattr_init(&attr);
  /* Readers come in a constant stream of handshakes; a swap must not wait for a lull. */
  pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
  int r = pthread_rwlock_init(l, &attr);
  pthread_rwlockattr_destroy(&attr);
  return r;
}

int ae_certstore_new_opts(const ae_certstore_opts *o, ae_certstore **out) {
  ae_certstore *cs = ae_calloc(1, sizeof(*cs));
  cs->max_entries = o ? o->max_entries : 0;
  cs->max_bytes = o ? o->max_bytes : 0;
  /* A small bound of either kind is kept by one shard so that it is exact (a share per shard
   * would round a few hundred entries or kilobytes down to almost nothing). */
  int small = (cs->max_entries > 0 && cs->max_entries < SHARDED_FROM) ||
              (cs->max_bytes > 0 && cs->max_bytes < SHARDED_FROM * SHARD_BYTES_UNIT);
  cs->nshards = small ? 1 : SHARDS_MAX;
  cs->cap = cs->max_entries ? cs->max_entries / cs->nshards : 0;
  cs->cap_bytes = cs->max_bytes ? cs->max_bytes / cs->nshards : 0;
  if (rwlock_init(&cs->def_lock) != 0) {
    free(cs);
    return AE_ENOMEM;
  }
  cs->shards = ae_calloc(cs->nshards, sizeof(shard));
  for (unsigned i = 0; i < cs->nshards; i++) {
    shard *sh = &cs->shards[i];
    if (rwlock_init(&sh->lock) != 0) {
      for (unsigned j = 0; j < i; j++) {
        pthread_rwlock_destroy(&cs->shards[j].lock);
        free(cs->shards[j].buckets);
      }
      free(cs->shards);
      pthread_rwlock_destroy(&cs->def_lock);
      free(cs);
      return AE_ENOMEM;
    }
    sh->nbuckets = 16;
    sh->buckets = ae_calloc(sh->nbuckets, sizeof(entry *));
  }
  cs->neg = cs_neg_new(o && o->negative_slots ? o->negative_slots : NEG_DEFAULT_SLOTS);
  atomic_init(&cs->evictions, 0);
  *out = cs;
  return 0;
}

int ae_certstore_new(ae_certstore **out) { return ae_certstore_new_opts(NULL, out); }

void ae_certstore_free(ae_certstore *cs) {
  if (!cs)
    return;
  for (unsigned s = 0; s < cs->nshards; s++) {
    shard *sh = &cs->shards[s];
    for (size_t i = 0; i < sh->nbuckets; i++) {
      entry *e = sh->buckets[i];
      while (e) {
        entry *next = e->next;
        ae_cert_unref(e->cert);
        free(e);
        e = next;
      }
    }
    free(sh->buckets);
    pthread_rwlock_destroy(&sh->lock);
  }
  free(cs->shards);
  ae_cert_unref(cs->def);
  pthread_rwlock_destroy(&cs->def_lock);
  cs_neg_free(cs->neg);
  free(cs);
}

void ae_certstore_set_evict_cb(ae_certstore *cs, ae_certstore_evict_cb cb, void *ud) {
  cs->evict_cb = cb;
  cs->evict_ud = ud;
}

static void grow_locked(shard *sh) {
  size_t nb = sh->nbuckets * 2;
  entry **nbk = ae_calloc(nb, sizeof(entry *));
  for (size_t i = 0; i < sh->nbuckets; i++) {
    entry *e = sh->buckets[i];
    while (e) {
      entry *next = e->next;
      size_t j = e->hash & (nb - 1);
      e->next = nbk[j];
      nbk[j] = e;
      e = next;
    }
  }
  free(sh->buckets);
  sh->buckets = nbk;
  sh->nbuckets = nb;
}

static void ring_insert_locked(shard *sh, entry *e) {
  if (!sh->hand) {
    e->rprev = e->rnext = e;
    sh->hand = e;
    return;
  }
  /* Just behind the hand: a new entry is the last one the hand reaches. */
  entry *h = sh->hand;
  e->rnext = h;
  e->rprev = h->rprev;
  h->rprev->rnext = e;
  h->rprev = e;
}

static void ring_remove_locked(shard *sh, entry *e) {
  if (e->rnext == e) {
    sh->hand = NULL;
  } else {
    e->rprev->rnext = e->rnext;
    e->rnext->rprev = e->rprev;
    if (sh->hand == e)
      sh->hand = e->rnext;
  }
  e->rnext = e->rprev = NULL;
}

static void unlink_locked(shard *sh, entry *e) {
  entry **pp = &sh->buckets[e->hash & (sh->nbuckets - 1)];
  while (*pp && *pp != e)
    pp = &(*pp)->next;
  if (*pp)
    *pp = e->next;
  ring_remove_locked(sh, e);
  sh->count--;
  sh->bytes -= e->bytes;
}

/* Evicts until the shard is within its bound; victims are chained through next for the caller
 * to release after unlocking. keep is never chosen (the entry being inserted). */
static entry *evict_locked(ae_certstore *cs, shard *sh, entry *keep) {
  entry *victims = NULL;
  /* Two turns of the hand clear every mark, so the loop always finds a victim. */
  size_t budget = 2 * sh->count + 2;
  while (((cs->cap && sh->count > cs->cap) || (cs->cap_bytes && sh->bytes > cs->cap_bytes)) && sh->hand &&
         budget-- > 0) {
    entry *e = sh->hand;
    if (e == keep || atomic_exchange_explicit(&e->used, 0, memory_order_relaxed)) {
      sh->hand = e->rnext;
      continue;
    }
    unlink_locked(sh, e);
    e->next = victims;
    victims = e;
  }
  return victims;
}

static void release_victims(ae_certstore *cs, entry *v) {
  while (v) {
    entry *next = v->next;
    atomic_fetch_add_explicit(&cs->evictions, 1, memory_order_relaxed);
    if (cs->evict_cb)
      cs->evict_cb(cs->evict_ud, v->name, v->cert);
    ae_cert_unref(v->cert);
    free(v);
    v = next;
  }
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
    fresh->name[i] = cs_lower(name[i]);
  fresh->name[n] = '\0';
  fresh->hash = cs_hash_name("", fresh->name);
  fresh->cert = ae_cert_ref(cert);
  fresh->bytes = entry_bytes(cert, n);
  /* Marked: the name was just asked for; the first turn of the hand spares it. */
  atomic_init(&fresh->used, 1);
  ae_cert *old = NULL;
  entry *victims = NULL;
  shard *sh = shard_of(cs, fresh->hash);

  cs_neg_del(cs->neg, fresh->name);
  pthread_rwlock_wrlock(&sh->lock);
  entry *e = find_locked(sh, fresh->hash, "", fresh->name, NULL);
  if (e) {
    old = e->cert;
    e->cert = fresh->cert;
    sh->bytes = sh->bytes - e->bytes + fresh->bytes;
    e->bytes = fresh->bytes;
    atomic_store_explicit(&e->used, 1, memory_order_relaxed);
    /* A larger replacement can push the shard over its byte bound. */
    victims = evict_locked(cs, sh, e);
  } else {
    if (sh->count + 1 > sh->nbuckets - sh->nbuckets / 4)
      grow_locked(sh);
    size_t j = fresh->hash & (sh->nbuckets - 1);
    fresh->next = sh->buckets[j];
    sh->buckets[j] = fresh;
    ring_insert_locked(sh, fresh);
    sh->count++;
    sh->bytes += fresh->bytes;
    victims = evict_locked(cs, sh, fresh);
    fresh = NULL;
  }
  pthread_rwlock_unlock(&sh->lock);

  free(fresh);
  ae_cert_unref(old);
  release_victims(cs, victims);
  return 0;
}

int ae_certstore_remove(ae_certstore *cs, const char *name) {
  if (!cs || !name)
    return AE_EINVAL;
  uint64_t h = cs_hash_name("", name);
  shard *sh = shard_of(cs, h);
  pthread_rwlock_wrlock(&sh->lock);
  entry *e = find_locked(sh, h, "", name, NULL);
  if (e)
    unlink_locked(sh, e);
  pthread_rwlock_unlock(&sh->lock);
  if (!e)
    return AE_ENOTFOUND;
  ae_cert_unref(e->cert);
  free(e);
  return 0;
}

static ae_cert *lookup_one(ae_certstore *cs, const char *prefix, const char *s) {
  uint64_t h = cs_hash_name(prefix, s);
  shard *sh = shard_of(cs, h);
  ae_cert *c = NULL;
  pthread_rwlock_rdlock(&sh->lock);
  entry *e = find_locked(sh, h, prefix, s, NULL);
  if (e) {
    /* Only written when clear: a hot entry's cache line is not dirtied on every handshake. */
    if (!atomic_load_explicit(&e->used, memory_order_relaxed))
      atomic_store_explicit(&e->used, 1, memory_order_relaxed);
    c = ae_cert_ref(e->cert);
  }
  pthread_rwlock_unlock(&sh->lock);
  return c;
}

ae_cert *ae_certstore_lookup(ae_certstore *cs, const char *name) {
  if (!cs || !name || !*name)
    return NULL;
  /* The wildcard candidate replaces exactly one non-empty leading label, and never lands on a
   * TLD-level parent ("*.com"). */
  const char *dot = strchr(name, '.');
  const char *parent = (dot && dot != name && dot[1] && strchr(dot + 1, '.')) ? dot + 1 : NULL;
  ae_cert *c = lookup_one(cs, "", name);
  if (!c && parent)
    c = lookup_one(cs, "*.", parent);
  return c;
}

void ae_certstore_set_default(ae_certstore *cs, ae_cert *cert) {
  ae_cert_ref(cert);
  pthread_rwlock_wrlock(&cs->def_lock);
  ae_cert *old = cs->def;
  cs->def = cert;
  pthread_rwlock_unlock(&cs->def_lock);
  ae_cert_unref(old);
}

ae_cert *ae_certstore_default(ae_certstore *cs) {
  pthread_rwlock_rdlock(&cs->def_lock);
  ae_cert *c = ae_cert_ref(cs->def);
  pthread_rwlock_unlock(&cs->def_lock);
  return c;
}

size_t ae_certstore_count(ae_certstore *cs) {
  size_t n = 0;
  for (unsigned s = 0; s < cs->nshards; s++) {
    pthread_rwlock_rdlock(&cs->shards[s].lock);
    n += cs->shards[s].count;
    pthread_rwlock_unlock(&cs->shards[s].lock);
  }
  return n;
}

size_t ae_certstore_max_entries(const ae_certstore *cs) { return cs->max_entries; }

size_t ae_certstore_max_bytes(const ae_certstore *cs) { return cs->max_bytes; }

size_t ae_certstore_bytes(ae_certstore *cs) {
  size_t n = 0;
  for (unsigned s = 0; s < cs->nshards; s++) {
    pthread_rwlock_rdlock(&cs->shards[s].lock);
    n += cs->shards[s].bytes;
    pthread_rwlock_unlock(&cs->shards[s].lock);
  }
  return n;
}

uint64_t ae_certstore_evictions(ae_certstore *cs) {
  return (uint64_t)atomic_load_explicit(&cs->evictions, memory_order_relaxed);
}

void ae_certstore_mark_absent(ae_certstore *cs, const char *name, uint64_t ttl_ms) {
  cs_neg_put(cs->neg, name, ae_now_ms(), ttl_ms);
}

int ae_certstore_known_absent(ae_certstore *cs, const char *name) { return cs_neg_has(cs->neg, name, ae_now_ms()); }

void ae_certstore_forget_absent(ae_certstore *cs, const char *name) { cs_neg_del(cs->neg, name); }
