/* Private to the policy family: policy.c (names, lifecycle, allow list), policy_ask.c (ask URL and
 * DNS pre-check with their answer cache), policy_rate.c (order rate limits). */
#ifndef ACMEDGE_POLICY_INTERNAL_H
#define ACMEDGE_POLICY_INTERNAL_H

#include "acmedge/policy.h"
#include "acmedge/dnscheck.h"
#include "acmedge/httpc.h"
#include "acmedge/strmap.h"

#define POLICY_NAME_MAX 253

typedef struct cache_entry {
  struct cache_entry *prev, *next; /* insertion order: head is the oldest */
  char *name;                      /* own copy of the map key */
  int allowed;
  const char *reason;
  uint64_t expires_ms;
} cache_entry;

typedef struct ask_flight ask_flight;

struct ae_policy_req {
  ae_policy_req *prev, *next;
  ask_flight *flight;
  ae_policy_cb cb;
  void *ud;
};

struct ask_flight {
  ae_policy *p;
  char name[POLICY_NAME_MAX + 1];
  ae_httpc_req *hreq;
  ae_dnscheck_req *dreq;  /* DNS pre-check, after ask (if any) allowed */
  ae_policy_req *waiters; /* doubly linked, head */
  int in_map;             /* still findable for new checks */
};

struct ae_policy {
  uv_loop_t *loop;
  ae_config *cfg;
  ae_httpc *httpc;
  ae_dnscheck *dns;         /* created when on_demand.dns_check is first enabled */
  int closing;

  ae_strmap cache;          /* name -> cache_entry */
  cache_entry *cache_head, *cache_tail;
  ae_strmap flights;        /* name -> ask_flight */
  size_t nflights;

  /* token bucket */
  double tokens;
  uint64_t bucket_ms;
  int bucket_started;

  /* rolling 3 h cap: ring of the start times of the most recent orders */
  uint64_t *ring;
  char **ring_rd;           /* registrable domain of each new-name order (own copy); NULL = renewal */
  ae_strmap rd_orders;      /* registrable domain -> orders in the window (uintptr_t) */
  size_t ring_cap;          /* == rate.per_3h when the cap is active, else 0 */
  size_t ring_len;
  size_t ring_head;         /* index of the oldest */

  void (*close_cb)(void *ud);
  void *close_ud;
};

/* Frees every cached ask/DNS answer and leaves the cache empty (policy_ask.c). */
void ae_policy_cache_clear(ae_policy *p);
/* strmap foreach callback: cancels a flight's waiters and requests, frees it (policy_ask.c). */
void ae_policy_cancel_flight(void *ud, const char *key, void *value);
/* Resizes the rolling 3 h ring for per_3h (0 or too large = no cap), keeping the newest entries
 * (policy_rate.c). */
void ae_policy_ring_configure(ae_policy *p, unsigned per_3h);
/* Frees the ring and the per-domain counts (policy_rate.c). */
void ae_policy_ring_free(ae_policy *p);

#endif
