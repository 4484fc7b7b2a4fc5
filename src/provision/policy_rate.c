/* Order rate limits of the admission policy: a token bucket (rate_per_minute, rate_burst) and a
 * rolling 3 h cap (rate_per_3h), of which one registrable domain may use only its share
 * (fair_queue.rate_share) and new names may not use the part kept for renewals
 * (fair_queue.renewal_reserve). */
#include "acmedge/policy.h"
#include "policy_internal.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define WINDOW_3H_MS (3ull * 3600ull * 1000ull)
/* Larger per_3h values are treated as no cap: the ring would only cost memory. */
#define PER3H_RING_MAX (1u << 20)

static int bucket_active(const ae_config *cfg) {
  return cfg->on_demand.rate_per_minute > 0 && cfg->on_demand.rate_burst > 0;
}

/* Counts one more (delta 1) or one less (delta -1) order of rd in the window. */
static void rd_count(ae_policy *p, const char *rd, int delta) {
  if (!rd)
    return;
  uintptr_t n = (uintptr_t)ae_strmap_get(&p->rd_orders, rd);
  if (delta < 0 && n <= 1)
    ae_strmap_del(&p->rd_orders, rd);
  else
    ae_strmap_put(&p->rd_orders, rd, (void *)(n + (uintptr_t)(delta > 0 ? 1 : -1)));
}

static void ring_pop(ae_policy *p) {
  char **slot = &p->ring_rd[p->ring_head];
  rd_count(p, *slot, -1);
  free(*slot);
  *slot = NULL;
  p->ring_head = (p->ring_head + 1) % p->ring_cap;
  p->ring_len--;
}

void ae_policy_ring_configure(ae_policy *p, unsigned per_3h) {
  size_t cap = (per_3h > 0 && per_3h <= PER3H_RING_MAX) ? per_3h : 0;
  if (cap == p->ring_cap)
    return;
  /* Keep the newest entries: they decide when the window frees up. */
  while (p->ring_len > cap)
    ring_pop(p);
  uint64_t *ring = cap ? ae_calloc(cap, sizeof(*ring)) : NULL;
  char **ring_rd = cap ? ae_calloc(cap, sizeof(*ring_rd)) : NULL;
  for (size_t i = 0; i < p->ring_len; i++) {
    size_t j = (p->ring_head + i) % p->ring_cap;
    ring[i] = p->ring[j];
    ring_rd[i] = p->ring_rd[j];
  }
  free(p->ring);
  free(p->ring_rd);
  p->ring = ring;
  p->ring_rd = ring_rd;
  p->ring_cap = cap;
  p->ring_head = 0;
}

void ae_policy_ring_free(ae_policy *p) {
  while (p->ring_len > 0)
    ring_pop(p);
  free(p->ring);
  free(p->ring_rd);
  p->ring = NULL;
  p->ring_rd = NULL;
  p->ring_cap = 0;
  ae_strmap_clear(&p->rd_orders);
}

static void bucket_refill(ae_policy *p, uint64_t now) {
  const ae_config *cfg = p->cfg;
  if (!p->bucket_started) {
    p->bucket_started = 1;
    p->bucket_ms = now;
    return;
  }
  if (now > p->bucket_ms) {
    p->tokens += (double)(now - p->bucket_ms) * cfg->on_demand.rate_per_minute / 60000.0;
    p->bucket_ms = now;
  }
  if (p->tokens > (double)cfg->on_demand.rate_burst)
    p->tokens = (double)cfg->on_demand.rate_burst;
}

/* Start time of the i-th oldest order in the window. */
static uint64_t ring_at(const ae_policy *p, size_t i) { return p->ring[(p->ring_head + i) % p->ring_cap]; }

/* Orders of the window that new names may use; the rest is kept for renewals. */
static size_t new_name_slots(const ae_policy *p) {
  size_t reserved = (size_t)floor(p->cfg->fair_queue.renewal_reserve * (double)p->ring_cap);
  return reserved < p->ring_cap ? p->ring_cap - reserved : 0;
}

/* Orders of the window one registrable domain may use (at least one). */
static size_t share_slots(const ae_policy *p) {
  size_t n = (size_t)floor(p->cfg->fair_queue.rate_share * (double)p->ring_cap);
  return n ? n : 1;
}

/* Time until the oldest order of rd leaves the window. */
static uint64_t rd_wait(const ae_policy *p, const char *rd, uint64_t now_ms) {
  for (size_t i = 0; i < p->ring_len; i++) {
    const char *x = p->ring_rd[(p->ring_head + i) % p->ring_cap];
    if (x && strcmp(x, rd) == 0)
      return ring_at(p, i) + WINDOW_3H_MS - now_ms;
  }
  return 1;
}

int ae_policy_rate_check(ae_policy *p, uint64_t now_ms, const char *rd, int renewal, uint64_t *wait_ms) {
  if (!p)
    return AE_EINVAL;
  const ae_config *cfg = p->cfg;
  uint64_t wait = 0;
  if (wait_ms)
    *wait_ms = 0;
  while (p->ring_len > 0 && ring_at(p, 0) + WINDOW_3H_MS <= now_ms)
    ring_pop(p);
  if (p->ring_cap > 0 && p->ring_len >= p->ring_cap)
    wait = ring_at(p, 0) + WINDOW_3H_MS - now_ms;
  if (bucket_active(cfg)) {
    bucket_refill(p, now_ms);
    if (p->tokens < 1.0) {
      uint64_t bw = (uint64_t)ceil((1.0 - p->tokens) * 60000.0 / cfg->on_demand.rate_per_minute);
      if (bw == 0)
        bw = 1;
      if (bw > wait)
        wait = bw;
    }
  }
  if (wait > 0) {
    if (wait_ms)
      *wait_ms = wait;
    return AE_ELIMIT;
  }
  if (renewal || p->ring_cap == 0)
    return 0;
  /* A new name: the reserve must stay free, and its domain must be within its share. */
  size_t slots = new_name_slots(p);
  if (p->ring_len >= slots) {
    if (wait_ms)
      *wait_ms = slots ? ring_at(p, p->ring_len - slots) + WINDOW_3H_MS - now_ms : WINDOW_3H_MS;
    return AE_EAGAIN;
  }
  if (rd && cfg->fair_queue.rate_share < 1.0 &&
      (uintptr_t)ae_strmap_get(&p->rd_orders, rd) >= share_slots(p)) {
    if (wait_ms)
      *wait_ms = rd_wait(p, rd, now_ms);
    return AE_EAGAIN;
  }
  return 0;
}

void ae_policy_rate_commit(ae_policy *p, uint64_t now_ms, const char *rd, int renewal) {
  if (!p)
    return;
  if (bucket_active(p->cfg)) {
    bucket_refill(p, now_ms);
    p->tokens -= 1.0;
  }
  if (p->ring_cap == 0)
    return;
  if (p->ring_len >= p->ring_cap)
    ring_pop(p); /* only after a reload shrank the cap below the orders already started */
  size_t i = (p->ring_head + p->ring_len) % p->ring_cap;
  p->ring[i] = now_ms;
  p->ring_rd[i] = renewal || !rd ? NULL : ae_strdup(rd);
  rd_count(p, p->ring_rd[i], 1);
  p->ring_len++;
}

int ae_policy_rate_take(ae_policy *p, uint64_t now_ms, uint64_t *wait_ms) {
  int r = ae_policy_rate_check(p, now_ms, NULL, 0, wait_ms);
  if (r == AE_EAGAIN)
    r = AE_ELIMIT;
  if (r == 0)
    ae_policy_rate_commit(p, now_ms, NULL, 0);
  return r;
}
