/* Per-client limits in a fixed-size, set-associative table. Addresses are hashed with a secret
 * per-process key into sets of LIM_WAYS entries; a full set evicts its least recently seen entry
 * that holds no open connection. Memory is allocated once: a flood of distinct source addresses
 * churns the table but never grows it. */
#include "acmedge/limits.h"

#include <netinet/in.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#define LIM_WAYS 8u
#define LIM_MIN_ENTRIES 64u
#define LIM_MAX_ENTRIES (1u << 24)

typedef struct {
  uint8_t key[16];     /* IPv4 as ::ffff:a.b.c.d, IPv6 truncated to its /64 */
  uint32_t conns;      /* open connections */
  uint32_t last_s;     /* last activity (monotonic seconds), for eviction */
  uint32_t hs_window;  /* second the handshake count belongs to */
  uint32_t hs_count;
  uint32_t nm_window;  /* minute the new-name count belongs to */
  uint32_t nm_count;
  uint8_t used;
} lim_entry;

struct ae_limits {
  pthread_mutex_t lock;
  ae_limits_conf conf;
  uint64_t seed[2];
  uint32_t nsets;
  lim_entry *entries; /* nsets * LIM_WAYS */
};

static void lim_key(const struct sockaddr *sa, uint8_t key[16]) {
  memset(key, 0, 16);
  if (sa->sa_family == AF_INET) {
    const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
    key[10] = key[11] = 0xff;
    memcpy(key + 12, &in->sin_addr, 4);
  } else if (sa->sa_family == AF_INET6) {
    const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
    const uint8_t *a = in6->sin6_addr.s6_addr;
    /* A v4-mapped peer on a dual-stack socket is the same client as its IPv4 form. */
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (memcmp(a, mapped, 12) == 0)
      memcpy(key, a, 16);
    else
      memcpy(key, a, 8);
  }
}

/* Keyed mixing (multiply-xorshift rounds): the attacker does not know the seed, so cannot aim
 * many addresses at one set. */
static uint64_t lim_hash(const ae_limits *l, const uint8_t key[16]) {
  uint64_t a, b;
  memcpy(&a, key, 8);
  memcpy(&b, key + 8, 8);
  uint64_t h = l->seed[0] ^ a;
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdULL;
  h ^= b ^ l->seed[1];
  h ^= h >> 33;
  h *= 0xc4ceb9fe1a85ec53ULL;
  h ^= h >> 29;
  h *= 0x9e3779b97f4a7c15ULL;
  h ^= h >> 32;
  return h;
}

int ae_limits_new(const ae_limits_conf *conf, ae_limits **out, ae_err *err) {
  if (!conf || !out)
    return ae_err_set(err, AE_EINVAL, "limits: missing argument");
  unsigned n = conf->table_entries ? conf->table_entries : 16384;
  if (n < LIM_MIN_ENTRIES)
    n = LIM_MIN_ENTRIES;
  if (n > LIM_MAX_ENTRIES)
    return ae_err_set(err, AE_EINVAL, "limits.table_entries: at most %u", LIM_MAX_ENTRIES);
  ae_limits *l = ae_calloc(1, sizeof(*l));
  l->nsets = (n + LIM_WAYS - 1) / LIM_WAYS;
  l->entries = ae_calloc((size_t)l->nsets * LIM_WAYS, sizeof(lim_entry));
  l->conf = *conf;
  if (getrandom(l->seed, sizeof(l->seed), 0) != (ssize_t)sizeof(l->seed)) {
    free(l->entries);
    free(l);
    return ae_err_set(err, AE_EIO, "limits: no random seed for the address table");
  }
  pthread_mutex_init(&l->lock, NULL);
  *out = l;
  return 0;
}

void ae_limits_free(ae_limits *l) {
  if (!l)
    return;
  pthread_mutex_destroy(&l->lock);
  free(l->entries);
  free(l);
}

void ae_limits_set_conf(ae_limits *l, const ae_limits_conf *conf) {
  if (!l || !conf)
    return;
  pthread_mutex_lock(&l->lock);
  unsigned size = l->conf.table_entries;
  l->conf = *conf;
  l->conf.table_entries = size;
  pthread_mutex_unlock(&l->lock);
}

/* The entry for key (found, free or evicted), or NULL when every way holds open connections.
 * Called with the lock held. */
static lim_entry *lim_slot(ae_limits *l, const uint8_t key[16], uint32_t now_s, size_t *index) {
  size_t base = (size_t)(lim_hash(l, key) % l->nsets) * LIM_WAYS;
  lim_entry *set = l->entries + base;
  lim_entry *victim = NULL;
  for (unsigned i = 0; i < LIM_WAYS; i++) {
    if (set[i].used && memcmp(set[i].key, key, 16) == 0) {
      *index = base + i;
      set[i].last_s = now_s;
      return &set[i];
    }
  }
  for (unsigned i = 0; i < LIM_WAYS; i++) {
    lim_entry *e = &set[i];
    if (!e->used) {
      victim = e;
      break;
    }
    if (e->conns == 0 && (!victim || e->last_s < victim->last_s))
      victim = e;
  }
  if (!victim)
    return NULL;
  memset(victim, 0, sizeof(*victim));
  memcpy(victim->key, key, 16);
  victim->used = 1;
  victim->last_s = now_s;
  *index = (size_t)(victim - l->entries);
  return victim;
}

static int lim_enabled(const ae_limits_conf *c) {
  return c->per_ip_connections || c->per_ip_handshakes_per_s || c->per_ip_new_names_per_min;
}

int ae_limits_conn_open(ae_limits *l, const struct sockaddr *sa, uint64_t now_ms, uint32_t *ticket,
                        ae_limit_kind *kind) {
  *ticket = 0;
  if (kind)
    *kind = AE_LIMIT_NONE;
  if (!l || !sa || (sa->sa_family != AF_INET && sa->sa_family != AF_INET6))
    return 0;
  uint8_t key[16];
  lim_key(sa, key);
  uint32_t now_s = (uint32_t)(now_ms / 1000);
  int rc = 0;
  pthread_mutex_lock(&l->lock);
  if (!lim_enabled(&l->conf))
    goto out;
  size_t idx;
  lim_entry *e = lim_slot(l, key, now_s, &idx);
  /* Every way busy with open connections: the global connection cap bounds this case, and
   * refusing here would let unrelated addresses in the same set lock a client out. */
  if (!e)
    goto out;
  if (e->hs_window != now_s) {
    e->hs_window = now_s;
    e->hs_count = 0;
  }
  if (l->conf.per_ip_handshakes_per_s && e->hs_count >= l->conf.per_ip_handshakes_per_s) {
    rc = AE_ELIMIT;
    if (kind)
      *kind = AE_LIMIT_HANDSHAKES;
    goto out;
  }
  if (l->conf.per_ip_connections && e->conns >= l->conf.per_ip_connections) {
    rc = AE_ELIMIT;
    if (kind)
      *kind = AE_LIMIT_CONNECTIONS;
    goto out;
  }
  e->hs_count++;
  e->conns++;
  *ticket = (uint32_t)idx + 1;
out:
  pthread_mutex_unlock(&l->lock);
  return rc;
}

void ae_limits_conn_close(ae_limits *l, uint32_t ticket) {
  if (!l || ticket == 0)
    return;
  pthread_mutex_lock(&l->lock);
  size_t idx = ticket - 1;
  /* Entries with open connections are never evicted, so the ticket still names its entry. */
  if (idx < (size_t)l->nsets * LIM_WAYS && l->entries[idx].conns > 0)
    l->entries[idx].conns--;
  pthread_mutex_unlock(&l->lock);
}

int ae_limits_new_name(ae_limits *l, const struct sockaddr *sa, uint64_t now_ms) {
  if (!l || !sa || (sa->sa_family != AF_INET && sa->sa_family != AF_INET6))
    return 0;
  uint8_t key[16];
  lim_key(sa, key);
  uint32_t now_s = (uint32_t)(now_ms / 1000);
  uint32_t minute = now_s / 60;
  int rc = 0;
  pthread_mutex_lock(&l->lock);
  if (l->conf.per_ip_new_names_per_min) {
    size_t idx;
    lim_entry *e = lim_slot(l, key, now_s, &idx);
    if (e) {
      if (e->nm_window != minute) {
        e->nm_window = minute;
        e->nm_count = 0;
      }
      if (e->nm_count >= l->conf.per_ip_new_names_per_min)
        rc = AE_ELIMIT;
      else
        e->nm_count++;
    }
  }
  pthread_mutex_unlock(&l->lock);
  return rc;
}

size_t ae_limits_memory(const ae_limits *l) {
  return l ? sizeof(*l) + (size_t)l->nsets * LIM_WAYS * sizeof(lim_entry) : 0;
}

size_t ae_limits_tracked(ae_limits *l) {
  if (!l)
    return 0;
  size_t n = 0;
  pthread_mutex_lock(&l->lock);
  for (size_t i = 0; i < (size_t)l->nsets * LIM_WAYS; i++)
    n += l->entries[i].used;
  pthread_mutex_unlock(&l->lock);
  return n;
}

const char *ae_limit_name(ae_limit_kind kind) {
  switch (kind) {
  case AE_LIMIT_CONNECTIONS:
    return "per_ip_connections";
  case AE_LIMIT_HANDSHAKES:
    return "per_ip_handshakes_per_s";
  case AE_LIMIT_NEW_NAMES:
    return "per_ip_new_names_per_min";
  case AE_LIMIT_NONE:
    break;
  }
  return "none";
}
