/* Prometheus series of the internal CA: mints, intermediates, leaf cache, mint latency. */
#include "acmedge/ca.h"
#include "ca_internal.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const double k_bounds[] = {0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.05};
#define NB (sizeof(k_bounds) / sizeof(k_bounds[0]))
static atomic_uint_fast64_t g_buckets[NB + 1];
static atomic_uint_fast64_t g_sum_us;

void ca_observe_mint(double seconds) {
  size_t i = 0;
  while (i < NB && seconds > k_bounds[i])
    i++;
  atomic_fetch_add(&g_buckets[i], 1);
  atomic_fetch_add(&g_sum_us, (uint_fast64_t)(seconds * 1e6));
}

char *ae_ca_metrics_render(ae_ca *ca, ae_leafcache *lc) {
  size_t cap = 4096, o = 0;
  char *s = ae_malloc(cap);
  uint64_t hits = 0, misses = 0, ev = 0;
  size_t count = 0;
  if (lc) {
    ae_leafcache_stats(lc, &hits, &misses, &ev);
    count = ae_leafcache_count(lc);
  }
  o += (size_t)snprintf(s + o, cap - o,
                        "# TYPE acmedge_internal_ca_mints_total counter\nacmedge_internal_ca_mints_total %llu\n"
                        "# TYPE acmedge_internal_ca_intermediates_total counter\n"
                        "acmedge_internal_ca_intermediates_total %llu\n"
                        "# TYPE acmedge_fallback_leaf_cache_entries gauge\nacmedge_fallback_leaf_cache_entries %zu\n"
                        "# TYPE acmedge_fallback_leaf_cache_hits_total counter\n"
                        "acmedge_fallback_leaf_cache_hits_total %llu\n"
                        "# TYPE acmedge_fallback_leaf_cache_misses_total counter\n"
                        "acmedge_fallback_leaf_cache_misses_total %llu\n"
                        "# TYPE acmedge_fallback_leaf_cache_evictions_total counter\n"
                        "acmedge_fallback_leaf_cache_evictions_total %llu\n"
                        "# TYPE acmedge_internal_ca_mint_seconds histogram\n",
                        (unsigned long long)ae_ca_mints(ca), (unsigned long long)ae_ca_rotations(ca), count,
                        (unsigned long long)hits, (unsigned long long)misses, (unsigned long long)ev);
  uint64_t cum = 0;
  for (size_t i = 0; i <= NB; i++) {
    cum += (uint64_t)atomic_load(&g_buckets[i]);
    if (i < NB)
      o += (size_t)snprintf(s + o, cap - o, "acmedge_internal_ca_mint_seconds_bucket{le=\"%g\"} %llu\n", k_bounds[i],
                            (unsigned long long)cum);
    else
      o += (size_t)snprintf(s + o, cap - o, "acmedge_internal_ca_mint_seconds_bucket{le=\"+Inf\"} %llu\n",
                            (unsigned long long)cum);
  }
  snprintf(s + o, cap - o, "acmedge_internal_ca_mint_seconds_sum %.6f\nacmedge_internal_ca_mint_seconds_count %llu\n",
           (double)atomic_load(&g_sum_us) / 1e6, (unsigned long long)cum);
  return s;
}
