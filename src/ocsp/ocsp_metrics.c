/* OCSP metrics: handshakes with and without a staple (counted on every TLS thread, so atomics),
 * fetches by outcome, and the age of the staples being served. Rendered next to the core
 * metrics on /metrics. */
#include "ocsp_internal.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static _Atomic int64_t g_stapled, g_unstapled;

static const char *const k_outcomes[] = {"good", "revoked", "unknown", "invalid", "http_error", "unreachable",
                                         "too_large", "error"};
static _Atomic int64_t g_fetches[AE_ARRAY_LEN(k_outcomes)];

void ae_ocsp_count_handshake(int stapled) {
  atomic_fetch_add_explicit(stapled ? &g_stapled : &g_unstapled, 1, memory_order_relaxed);
}

void ae_ocsp_metrics_fetch(const char *outcome) {
  for (size_t i = 0; i < AE_ARRAY_LEN(k_outcomes); i++) {
    if (strcmp(k_outcomes[i], outcome) == 0) {
      atomic_fetch_add_explicit(&g_fetches[i], 1, memory_order_relaxed);
      return;
    }
  }
  atomic_fetch_add_explicit(&g_fetches[AE_ARRAY_LEN(k_outcomes) - 1], 1, memory_order_relaxed);
}

/* Appends printf output to a growing buffer. */
static void cat(char **buf, size_t *len, size_t *cap, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static void cat(char **buf, size_t *len, size_t *cap, const char *fmt, ...) {
  for (;;) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(*buf + *len, *cap - *len, fmt, ap);
    va_end(ap);
    if (n < 0)
      return;
    if ((size_t)n < *cap - *len) {
      *len += (size_t)n;
      return;
    }
    *cap = (*cap + (size_t)n + 1) * 2;
    *buf = ae_realloc(*buf, *cap);
  }
}

char *ae_ocsp_metrics(ae_ocsp *o) {
  size_t cap = 2048, len = 0;
  char *b = ae_malloc(cap);
  b[0] = '\0';
  cat(&b, &len, &cap,
      "# HELP acmedge_ocsp_stapled_handshakes_total Handshakes that carried an OCSP staple.\n"
      "# TYPE acmedge_ocsp_stapled_handshakes_total counter\nacmedge_ocsp_stapled_handshakes_total %lld\n"
      "# HELP acmedge_ocsp_unstapled_handshakes_total Handshakes of issued certificates without a staple.\n"
      "# TYPE acmedge_ocsp_unstapled_handshakes_total counter\nacmedge_ocsp_unstapled_handshakes_total %lld\n",
      (long long)atomic_load(&g_stapled), (long long)atomic_load(&g_unstapled));
  cat(&b, &len, &cap,
      "# HELP acmedge_ocsp_fetches_total OCSP responder requests by outcome.\n"
      "# TYPE acmedge_ocsp_fetches_total counter\n");
  for (size_t i = 0; i < AE_ARRAY_LEN(k_outcomes); i++)
    cat(&b, &len, &cap, "acmedge_ocsp_fetches_total{outcome=\"%s\"} %lld\n", k_outcomes[i],
        (long long)atomic_load(&g_fetches[i]));
  size_t entries = 0, stapled = 0;
  int64_t oldest = 0;
  if (o) {
    int64_t now = ae_ocsp_now();
    ae_ocsp_cache_counts(o->cache, now, &entries, &stapled);
    oldest = ae_ocsp_cache_oldest_this_update(o->cache, now);
    oldest = oldest > 0 && oldest <= now ? now - oldest : 0;
  }
  cat(&b, &len, &cap,
      "# HELP acmedge_ocsp_cache_entries Certificates tracked by the staple cache.\n"
      "# TYPE acmedge_ocsp_cache_entries gauge\nacmedge_ocsp_cache_entries %zu\n"
      "# HELP acmedge_ocsp_staples Servable staples in the cache.\n"
      "# TYPE acmedge_ocsp_staples gauge\nacmedge_ocsp_staples %zu\n"
      "# HELP acmedge_ocsp_staple_age_max_seconds Age (now - thisUpdate) of the oldest servable staple.\n"
      "# TYPE acmedge_ocsp_staple_age_max_seconds gauge\nacmedge_ocsp_staple_age_max_seconds %lld\n",
      entries, stapled, (long long)oldest);
  return b;
}

void ae_ocsp_domain_json(ae_ocsp *o, ae_cert *cert, json_t *obj) {
  if (!o || !cert || !obj)
    return;
  ae_ocsp_info info;
  int64_t now = ae_ocsp_now();
  ae_ocsp_cache_info(o->cache, cert, now, &info);
  json_t *j = json_object();
  json_object_set_new(j, "state", json_string(o->enabled ? info.state : "disabled"));
  if (info.next_update) {
    char t[40];
    ae_time_rfc3339(info.this_update, t, sizeof(t));
    json_object_set_new(j, "this_update", json_string(t));
    ae_time_rfc3339(info.next_update, t, sizeof(t));
    json_object_set_new(j, "next_update", json_string(t));
  }
  if (info.last_error[0])
    json_object_set_new(j, "last_error", json_string(info.last_error));
  json_object_set_new(obj, "ocsp", j);
}
