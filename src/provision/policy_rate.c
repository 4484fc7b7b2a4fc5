/* Order rate limits of the admission policy: a token bucket (rate_per_minute, rate_burst) and a
 * rolling 3 h cap (rate_per_3h). */
#include "acmedge/policy.h"
#include "policy_internal.h"

#include <math.h>
#include <stdlib.h>

#define WINDOW_3H_MS (3ull * 3600ull * 1000ull)
/* Larger per_3h values are treated as no cap: the ring would only cost memory. */
#define PER3H_RING_MAX (1u << 20)

/* ---------------------------------------------------------------------------------------- */
/* Rate limiting */

static int bucket_active(const ae_config *cfg) {
  return cfg->on_demand.rate_per_minute > 0 && cfg->on_demand.rate_burst > 0;
}

void ae_policy_ring_configure(ae_policy *p, unsigned per_3h) {
  size_t cap = (per_3h > 0 && per_3h <= PER3H_RING_MAX) ? per_3h : 0;
  if (cap == p->ring_cap)
    return;
  uint64_t *ring = cap ? ae_calloc(cap, sizeof(*ring)) : NULL;
  size_t keep = p->ring_len < cap ? p->ring_len : cap;
  /* Keep the newest entries: they decide when the window frees up. */
  for (size_t i = 0; i < keep; i++)
    ring[i] = p->ring[(p->ring_head + p->ring_len - keep + i) % p->ring_cap];
  free(p->ring);
  p->ring = ring;
  p->ring_cap = cap;
  p->ring_len = keep;
  p->ring_head = 0;
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

int ae_policy_rate_take(ae_policy *p, uint64_t now_ms, uint64_t *wait_ms) {
  if (!p)
    return AE_EINVAL;
  const ae_config *cfg = p->cfg;
  uint64_t wait = 0;

  while (p->ring_len > 0 && p->ring[p->ring_head] + WINDOW_3H_MS <= now_ms) {
    p->ring_head = (p->ring_head + 1) % p->ring_cap;
    p->ring_len--;
  }
  if (p->ring_cap > 0 && p->ring_len >= p->ring_cap)
    wait = p->ring[p->ring_head] + WINDOW_3H_MS - now_ms;

  int bucket = bucket_active(cfg);
  if (bucket) {
    bucket_refill(p, now_ms);
    if (p->tokens < 1.0) {
      double ms = (1.0 - p->tokens) * 60000.0 / cfg->on_demand.rate_per_minute;
      uint64_t bw = (uint64_t)ceil(ms);
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
  if (bucket)
    p->tokens -= 1.0;
  if (p->ring_cap > 0) {
    p->ring[(p->ring_head + p->ring_len) % p->ring_cap] = now_ms;
    p->ring_len++;
  }
  if (wait_ms)
    *wait_ms = 0;
  return 0;
}
