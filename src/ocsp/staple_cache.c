/* The read-through staple cache: certificate (issuer + serial) -> staple, fetch state, backoff.
 *
 * Handshakes only read: a hit hands out a staple reference; a miss or a half-expired staple asks
 * for exactly one fetch (the in_flight flag is the singleflight) and the handshake goes on without
 * waiting. Failures are never cached as answers: they only set a retry time, and the previous good
 * staple keeps being served until its own nextUpdate.
 *
 * Generations close the race between a fetch and an invalidation: every fetch carries the
 * generation it started under, an invalidation bumps it, and a completion with an old generation
 * is dropped. Generations come from one cache-wide counter, so an entry removed and created again
 * can never reuse a number an old fetch still holds.
 *
 * One mutex guards the table. The handshake path holds it for a hash lookup and a refcount bump;
 * the need callback runs after unlocking. */
#include "acmedge/ocsp.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BACKOFF_FIRST_S 2
#define BACKOFF_MAX_S 300

typedef struct entry {
  struct entry *next;
  uint64_t hash;
  ae_cert *cert;        /* reference: refreshes need the certificate */
  ae_staple *staple;    /* last verified good response, or NULL */
  uint64_t gen;
  int64_t retry_at;     /* no fetch before this after a failure */
  unsigned failures;
  unsigned in_flight : 1;
  unsigned revoked : 1;
  unsigned no_url : 1;
  char last_error[160];
  char key[];           /* issuer DN "|" serial */
} entry;

struct ae_ocsp_cache {
  pthread_mutex_t mu;
  entry **buckets;
  size_t nbuckets; /* power of two */
  size_t count;
  uint64_t next_gen;
  ae_ocsp_need_fn need;
  void *ud;
};

static uint64_t hash2(const char *a, const char *b) {
  uint64_t h = 1469598103934665603ull;
  for (const char *p = a; *p; p++) {
    h ^= (unsigned char)*p;
    h *= 1099511628211ull;
  }
  h ^= '|';
  h *= 1099511628211ull;
  for (const char *p = b; *p; p++) {
    h ^= (unsigned char)*p;
    h *= 1099511628211ull;
  }
  return h;
}

static int key_equals(const char *key, const char *issuer, const char *serial) {
  size_t n = strlen(issuer);
  return strncmp(key, issuer, n) == 0 && key[n] == '|' && strcmp(key + n + 1, serial) == 0;
}

static entry *find_locked(ae_ocsp_cache *c, ae_cert *cert, uint64_t h, entry ***link) {
  const char *issuer = ae_cert_issuer(cert), *serial = ae_cert_serial(cert);
  for (entry **pp = &c->buckets[h & (c->nbuckets - 1)]; *pp; pp = &(*pp)->next) {
    if ((*pp)->hash == h && key_equals((*pp)->key, issuer, serial)) {
      if (link)
        *link = pp;
      return *pp;
    }
  }
  return NULL;
}

static void grow_locked(ae_ocsp_cache *c) {
  size_t nb = c->nbuckets * 2;
  entry **nbk = ae_calloc(nb, sizeof(entry *));
  for (size_t i = 0; i < c->nbuckets; i++) {
    entry *e = c->buckets[i];
    while (e) {
      entry *next = e->next;
      e->next = nbk[e->hash & (nb - 1)];
      nbk[e->hash & (nb - 1)] = e;
      e = next;
    }
  }
  free(c->buckets);
  c->buckets = nbk;
  c->nbuckets = nb;
}

static entry *insert_locked(ae_ocsp_cache *c, ae_cert *cert, uint64_t h) {
  const char *issuer = ae_cert_issuer(cert), *serial = ae_cert_serial(cert);
  size_t ni = strlen(issuer), ns = strlen(serial);
  entry *e = ae_calloc(1, sizeof(*e) + ni + ns + 2);
  memcpy(e->key, issuer, ni);
  e->key[ni] = '|';
  memcpy(e->key + ni + 1, serial, ns + 1);
  e->hash = h;
  e->cert = ae_cert_ref(cert);
  e->gen = ++c->next_gen;
  if (c->count + 1 > c->nbuckets - c->nbuckets / 4)
    grow_locked(c);
  e->next = c->buckets[h & (c->nbuckets - 1)];
  c->buckets[h & (c->nbuckets - 1)] = e;
  c->count++;
  return e;
}

static void entry_free(entry *e) {
  ae_staple_unref(e->staple);
  ae_cert_unref(e->cert);
  free(e);
}

int ae_ocsp_cache_new(ae_ocsp_need_fn need, void *ud, ae_ocsp_cache **out) {
  ae_ocsp_cache *c = ae_calloc(1, sizeof(*c));
  if (pthread_mutex_init(&c->mu, NULL) != 0) {
    free(c);
    return AE_ENOMEM;
  }
  c->nbuckets = 64;
  c->buckets = ae_calloc(c->nbuckets, sizeof(entry *));
  c->need = need;
  c->ud = ud;
  *out = c;
  return 0;
}

void ae_ocsp_cache_free(ae_ocsp_cache *c) {
  if (!c)
    return;
  for (size_t i = 0; i < c->nbuckets; i++) {
    entry *e = c->buckets[i];
    while (e) {
      entry *next = e->next;
      entry_free(e);
      e = next;
    }
  }
  free(c->buckets);
  pthread_mutex_destroy(&c->mu);
  free(c);
}

/* Whether e wants a fetch at now; marks it in flight when it does. Lock held. */
static int claim_fetch_locked(entry *e, int64_t now) {
  if (e->in_flight || e->revoked || e->no_url || now < e->retry_at)
    return 0;
  if (e->staple && now < ae_staple_refresh_at(e->staple))
    return 0;
  e->in_flight = 1;
  return 1;
}

ae_staple *ae_ocsp_cache_get(ae_ocsp_cache *c, ae_cert *cert, int64_t now) {
  /* Nothing to staple without a responder: no lock, no entry, no job. */
  if (!c || !cert || !ae_cert_serial(cert)[0] || !ae_cert_has_ocsp_url(cert))
    return NULL;
  uint64_t h = hash2(ae_cert_issuer(cert), ae_cert_serial(cert));
  ae_staple *s = NULL;
  ae_cert *fetch = NULL;
  uint64_t gen = 0;
  pthread_mutex_lock(&c->mu);
  entry *e = find_locked(c, cert, h, NULL);
  if (!e && c->need)
    e = insert_locked(c, cert, h);
  if (e) {
    if (e->staple && !e->revoked && now < ae_staple_next_update(e->staple))
      s = ae_staple_ref(e->staple);
    if (c->need && claim_fetch_locked(e, now)) {
      fetch = ae_cert_ref(e->cert);
      gen = e->gen;
    }
  }
  pthread_mutex_unlock(&c->mu);
  if (fetch)
    c->need(c->ud, fetch, gen);
  return s;
}

static int64_t backoff_s(unsigned failures) {
  int64_t d = BACKOFF_FIRST_S;
  for (unsigned i = 1; i < failures && d < BACKOFF_MAX_S; i++)
    d *= 2;
  return d < BACKOFF_MAX_S ? d : BACKOFF_MAX_S;
}

int ae_ocsp_cache_complete(ae_ocsp_cache *c, ae_cert *cert, uint64_t gen, ae_ocsp_fetch_result result,
                           ae_staple *staple, const char *reason, int64_t now) {
  if (!c || !cert)
    return AE_EINVAL;
  uint64_t h = hash2(ae_cert_issuer(cert), ae_cert_serial(cert));
  ae_staple *old = NULL;
  int rc = 0;
  pthread_mutex_lock(&c->mu);
  entry *e = find_locked(c, cert, h, NULL);
  if (!e || e->gen != gen) {
    /* Invalidated or removed while the fetch ran: its answer describes a world that is gone. */
    rc = AE_ECANCELED;
  } else {
    e->in_flight = 0;
    switch (result) {
    case AE_OCSP_FETCH_GOOD:
      if (!staple) {
        rc = AE_EINVAL;
        break;
      }
      old = e->staple;
      e->staple = ae_staple_ref(staple);
      e->failures = 0;
      e->retry_at = 0;
      e->last_error[0] = '\0';
      break;
    case AE_OCSP_FETCH_REVOKED:
      old = e->staple;
      e->staple = NULL;
      e->revoked = 1;
      snprintf(e->last_error, sizeof(e->last_error), "%s", reason ? reason : "revoked");
      break;
    case AE_OCSP_FETCH_NO_URL:
      e->no_url = 1;
      break;
    case AE_OCSP_FETCH_FAILED:
    default:
      e->failures++;
      e->retry_at = now + backoff_s(e->failures);
      snprintf(e->last_error, sizeof(e->last_error), "%s", reason ? reason : "fetch failed");
      break;
    }
  }
  pthread_mutex_unlock(&c->mu);
  ae_staple_unref(old);
  return rc;
}

void ae_ocsp_cache_seed(ae_ocsp_cache *c, ae_cert *cert, ae_staple *staple) {
  if (!c || !cert || !staple || !ae_cert_serial(cert)[0])
    return;
  uint64_t h = hash2(ae_cert_issuer(cert), ae_cert_serial(cert));
  ae_staple *old = NULL;
  pthread_mutex_lock(&c->mu);
  entry *e = find_locked(c, cert, h, NULL);
  if (!e)
    e = insert_locked(c, cert, h);
  if (!e->revoked && (!e->staple || ae_staple_this_update(e->staple) < ae_staple_this_update(staple))) {
    old = e->staple;
    e->staple = ae_staple_ref(staple);
  }
  pthread_mutex_unlock(&c->mu);
  ae_staple_unref(old);
}

void ae_ocsp_cache_invalidate(ae_ocsp_cache *c, ae_cert *cert) {
  if (!c || !cert)
    return;
  uint64_t h = hash2(ae_cert_issuer(cert), ae_cert_serial(cert));
  ae_staple *old = NULL;
  pthread_mutex_lock(&c->mu);
  entry *e = find_locked(c, cert, h, NULL);
  if (e) {
    old = e->staple;
    e->staple = NULL;
    e->gen = ++c->next_gen;
    /* The old fetch's completion will be dropped; a new one may start right away. */
    e->in_flight = 0;
    e->failures = 0;
    e->retry_at = 0;
  }
  pthread_mutex_unlock(&c->mu);
  ae_staple_unref(old);
}

void ae_ocsp_cache_remove(ae_ocsp_cache *c, ae_cert *cert) {
  if (!c || !cert)
    return;
  uint64_t h = hash2(ae_cert_issuer(cert), ae_cert_serial(cert));
  entry **link = NULL;
  pthread_mutex_lock(&c->mu);
  entry *e = find_locked(c, cert, h, &link);
  if (e) {
    *link = e->next;
    c->count--;
  }
  pthread_mutex_unlock(&c->mu);
  if (e)
    entry_free(e);
}

size_t ae_ocsp_cache_refresh_due(ae_ocsp_cache *c, int64_t now) {
  if (!c || !c->need)
    return 0;
  size_t n = 0, cap = 0;
  ae_cert **certs = NULL;
  uint64_t *gens = NULL;
  pthread_mutex_lock(&c->mu);
  for (size_t i = 0; i < c->nbuckets; i++) {
    for (entry *e = c->buckets[i]; e; e = e->next) {
      /* Only entries that were fetched before: a name nobody connects to needs no staple. */
      if (!e->staple && e->failures == 0)
        continue;
      if (!claim_fetch_locked(e, now))
        continue;
      if (n == cap) {
        cap = cap ? cap * 2 : 16;
        certs = ae_realloc(certs, cap * sizeof(*certs));
        gens = ae_realloc(gens, cap * sizeof(*gens));
      }
      certs[n] = ae_cert_ref(e->cert);
      gens[n] = e->gen;
      n++;
    }
  }
  pthread_mutex_unlock(&c->mu);
  for (size_t i = 0; i < n; i++)
    c->need(c->ud, certs[i], gens[i]);
  free(certs);
  free(gens);
  return n;
}

int ae_ocsp_cache_info(ae_ocsp_cache *c, ae_cert *cert, int64_t now, ae_ocsp_info *out) {
  memset(out, 0, sizeof(*out));
  out->state = "none";
  if (!c || !cert)
    return AE_ENOTFOUND;
  if (c->need && !ae_cert_has_ocsp_url(cert)) {
    out->state = "no_responder"; /* known from the parse: never entered the cache */
    return 0;
  }
  uint64_t h = hash2(ae_cert_issuer(cert), ae_cert_serial(cert));
  pthread_mutex_lock(&c->mu);
  entry *e = find_locked(c, cert, h, NULL);
  if (e) {
    out->failures = e->failures;
    snprintf(out->last_error, sizeof(out->last_error), "%s", e->last_error);
    if (e->staple) {
      out->this_update = ae_staple_this_update(e->staple);
      out->next_update = ae_staple_next_update(e->staple);
    }
    if (e->revoked)
      out->state = "revoked";
    else if (e->no_url)
      out->state = "no_responder";
    else if (e->staple && now < out->next_update)
      out->state = now < ae_staple_refresh_at(e->staple) ? "good" : "stale";
    else if (e->failures > 0)
      out->state = "failed";
    else
      out->state = "pending";
  }
  pthread_mutex_unlock(&c->mu);
  return e ? 0 : AE_ENOTFOUND;
}

void ae_ocsp_cache_counts(ae_ocsp_cache *c, int64_t now, size_t *entries, size_t *stapled) {
  size_t n = 0, s = 0;
  if (c) {
    pthread_mutex_lock(&c->mu);
    n = c->count;
    for (size_t i = 0; i < c->nbuckets; i++)
      for (entry *e = c->buckets[i]; e; e = e->next)
        if (e->staple && !e->revoked && now < ae_staple_next_update(e->staple))
          s++;
    pthread_mutex_unlock(&c->mu);
  }
  if (entries)
    *entries = n;
  if (stapled)
    *stapled = s;
}

int64_t ae_ocsp_cache_oldest_this_update(ae_ocsp_cache *c, int64_t now) {
  int64_t oldest = 0;
  if (!c)
    return 0;
  pthread_mutex_lock(&c->mu);
  for (size_t i = 0; i < c->nbuckets; i++)
    for (entry *e = c->buckets[i]; e; e = e->next)
      if (e->staple && !e->revoked && now < ae_staple_next_update(e->staple) &&
          (oldest == 0 || ae_staple_this_update(e->staple) < oldest))
        oldest = ae_staple_this_update(e->staple);
  pthread_mutex_unlock(&c->mu);
  return oldest;
}
