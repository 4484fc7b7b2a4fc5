/* Process-wide metrics: lock-free counters, two small labelled families and one histogram,
 * rendered in the Prometheus text exposition format (version 0.0.4). */
#include "acmedge/metrics.h"
#include "acmedge/common.h"

#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static _Atomic int64_t g_values[AE_M__COUNT];

/* Labelled families. Label values come from peers (problem types) and policy (reasons), so the
 * table is bounded: past AE_LABEL_MAX distinct values everything lands in "other". */
#define AE_LABEL_MAX 64
#define AE_LABEL_LEN 128

typedef struct {
  char value[AE_LABEL_LEN];
  uint64_t count;
} label_slot;

typedef struct {
  const char *family;       /* key used by ae_metrics_count_label */
  const char *name;         /* exposed metric name */
  const char *label;        /* label key */
  const char *help;
  label_slot slots[AE_LABEL_MAX];
  size_t n;
} label_family;

static label_family g_families[] = {
    {"denied", "acmedge_denied_total", "reason", "Names refused on-demand issuance, by reason.", {{{0}, 0}}, 0},
    {"issue_failures", "acmedge_issuance_failures_total", "problem",
     "Failed issuance attempts, by ACME problem type (or local error class).", {{{0}, 0}}, 0},
    {"http_rejected", "acmedge_http_rejected_total", "reason",
     "Client requests the proxy refused before anything reached an upstream, by reason.", {{{0}, 0}}, 0},
    {"token_rejected", "acmedge_token_rejected_total", "reason",
     "Capability tokens refused (admin API and protected routes), by reason code.", {{{0}, 0}}, 0},
    {"token_verified", "acmedge_token_verified_total", "path",
     "Capability tokens accepted, by path: \"cached\" (signature verified earlier) or \"full\".", {{{0}, 0}}, 0},
    {"limited", "acmedge_limited_total", "limit", "Client connections or names refused by a per-client limit.",
     {{{0}, 0}}, 0},
    {"proxy_requests", "acmedge_proxy_requests_total", "protocol",
     "Client requests the proxy started to handle, by client protocol (h1, h2).", {{{0}, 0}}, 0},
    {"h2_events", "acmedge_h2_events_total", "event",
     "HTTP/2 connection events: connections, frames acmedge sent to end streams or connections, errors.",
     {{{0}, 0}}, 0},
};

/* Time-to-certificate histogram: from the first request for a name to its certificate. */
static const double g_ttc_bounds[] = {0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300};
#define AE_TTC_N (sizeof(g_ttc_bounds) / sizeof(g_ttc_bounds[0]))
static uint64_t g_ttc_counts[AE_TTC_N + 1]; /* last one: above every bound */
static double g_ttc_sum;
static uint64_t g_ttc_count;

static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;

void ae_metrics_add(ae_metric m, int64_t delta) {
  if ((unsigned)m >= AE_M__COUNT)
    return;
  atomic_fetch_add_explicit(&g_values[m], delta, memory_order_relaxed);
}

int64_t ae_metrics_get(ae_metric m) {
  if ((unsigned)m >= AE_M__COUNT)
    return 0;
  return atomic_load_explicit(&g_values[m], memory_order_relaxed);
}

void ae_metrics_count_label(const char *family, const char *label) {
  if (!family)
    return;
  if (!label || !*label)
    label = "unknown";
  label_family *f = NULL;
  for (size_t i = 0; i < AE_ARRAY_LEN(g_families); i++) {
    if (strcmp(g_families[i].family, family) == 0) {
      f = &g_families[i];
      break;
    }
  }
  if (!f)
    return;
  /* Long values are truncated so that the table stays fixed-size. */
  char key[AE_LABEL_LEN];
  snprintf(key, sizeof(key), "%s", label);
  pthread_mutex_lock(&g_lock);
  label_slot *slot = NULL;
  for (size_t i = 0; i < f->n; i++) {
    if (strcmp(f->slots[i].value, key) == 0) {
      slot = &f->slots[i];
      break;
    }
  }
  if (!slot) {
    if (f->n < AE_LABEL_MAX - 1) {
      slot = &f->slots[f->n++];
      snprintf(slot->value, sizeof(slot->value), "%s", key);
    } else {
      /* The last slot is reserved for the overflow bucket. */
      slot = &f->slots[AE_LABEL_MAX - 1];
      if (f->n < AE_LABEL_MAX) {
        f->n = AE_LABEL_MAX;
        snprintf(slot->value, sizeof(slot->value), "other");
      }
    }
  }
  slot->count++;
  pthread_mutex_unlock(&g_lock);
}

void ae_metrics_observe_ttc(double seconds) {
  if (!(seconds >= 0) || isinf(seconds)) /* also rejects NaN */
    return;
  size_t b = AE_TTC_N;
  for (size_t i = 0; i < AE_TTC_N; i++) {
    if (seconds <= g_ttc_bounds[i]) {
      b = i;
      break;
    }
  }
  pthread_mutex_lock(&g_lock);
  g_ttc_counts[b]++;
  g_ttc_sum += seconds;
  g_ttc_count++;
  pthread_mutex_unlock(&g_lock);
}

void ae_metrics_reset(void) {
  for (size_t i = 0; i < AE_M__COUNT; i++)
    atomic_store(&g_values[i], 0);
  pthread_mutex_lock(&g_lock);
  for (size_t i = 0; i < AE_ARRAY_LEN(g_families); i++) {
    memset(g_families[i].slots, 0, sizeof(g_families[i].slots));
    g_families[i].n = 0;
  }
  memset(g_ttc_counts, 0, sizeof(g_ttc_counts));
  g_ttc_sum = 0;
  g_ttc_count = 0;
  pthread_mutex_unlock(&g_lock);
}

/* Growable output buffer. */
typedef struct {
  char *p;
  size_t len, cap;
} sbuf;

static void sb_printf(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(sbuf *b, const char *fmt, ...) {
  for (;;) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
    va_end(ap);
    if (n < 0)
      return;
    if ((size_t)n < b->cap - b->len) {
      b->len += (size_t)n;
      return;
    }
    b->cap = (b->cap + (size_t)n + 1) * 2;
    b->p = ae_realloc(b->p, b->cap);
  }
}

/* Label values escape backslash, double quote and line feed (exposition format rules). */
static void sb_label_value(sbuf *b, const char *v) {
  for (const char *c = v; *c; c++) {
    if (*c == '\\')
      sb_printf(b, "\\\\");
    else if (*c == '"')
      sb_printf(b, "\\\"");
    else if (*c == '\n')
      sb_printf(b, "\\n");
    else
      sb_printf(b, "%c", *c);
  }
}

static void header(sbuf *b, const char *name, const char *type, const char *help) {
  sb_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void simple(sbuf *b, const char *name, const char *type, const char *help, ae_metric m) {
  header(b, name, type, help);
  sb_printf(b, "%s %lld\n", name, (long long)ae_metrics_get(m));
}

char *ae_metrics_render(void) {
  sbuf b = {ae_malloc(4096), 0, 4096};
  b.p[0] = '\0';

  static const struct {
    const char *outcome;
    ae_metric m;
  } hs[] = {{"known", AE_M_HS_KNOWN},
            {"default", AE_M_HS_DEFAULT},
            {"held", AE_M_HS_HELD},
            {"failed", AE_M_HS_FAILED},
            {"challenge", AE_M_HS_CHALLENGE}};
  header(&b, "acmedge_handshakes_total", "counter",
         "TLS handshakes by outcome: known certificate, default certificate, held for issuance, failed, "
         "tls-alpn-01 challenge.");
  for (size_t i = 0; i < AE_ARRAY_LEN(hs); i++)
    sb_printf(&b, "acmedge_handshakes_total{outcome=\"%s\"} %lld\n", hs[i].outcome,
              (long long)ae_metrics_get(hs[i].m));

  simple(&b, "acmedge_open_connections", "gauge", "Open client connections (TLS and port 80).", AE_M_CONN_OPEN);
  simple(&b, "acmedge_issuance_attempts_total", "counter", "Certificate issuance attempts started.",
         AE_M_ISSUE_ATTEMPTS);
  simple(&b, "acmedge_issuance_successes_total", "counter", "Certificates issued.", AE_M_ISSUE_SUCCESS);
  simple(&b, "acmedge_orders_in_flight", "gauge", "ACME orders currently in progress.", AE_M_ORDERS_IN_FLIGHT);
  simple(&b, "acmedge_renewals_total", "counter", "Certificates renewed.", AE_M_RENEWALS);

  static const struct {
    const char *cls;
    ae_metric m;
  } up[] = {{"1xx", AE_M_UPSTREAM_1XX}, {"2xx", AE_M_UPSTREAM_2XX}, {"3xx", AE_M_UPSTREAM_3XX},
            {"4xx", AE_M_UPSTREAM_4XX}, {"5xx", AE_M_UPSTREAM_5XX}, {"error", AE_M_UPSTREAM_ERRORS}};
  header(&b, "acmedge_upstream_responses_total", "counter",
         "Proxied responses by status class; error counts responses generated because the upstream failed.");
  for (size_t i = 0; i < AE_ARRAY_LEN(up); i++)
    sb_printf(&b, "acmedge_upstream_responses_total{class=\"%s\"} %lld\n", up[i].cls,
              (long long)ae_metrics_get(up[i].m));

  simple(&b, "acmedge_http80_requests_total", "counter", "Requests served on the plain HTTP listener.",
         AE_M_HTTP80_REQUESTS);

  pthread_mutex_lock(&g_lock);
  for (size_t i = 0; i < AE_ARRAY_LEN(g_families); i++) {
    const label_family *f = &g_families[i];
    header(&b, f->name, "counter", f->help);
    uint64_t sum = 0;
    for (size_t j = 0; j < f->n; j++) {
      sb_printf(&b, "%s{%s=\"", f->name, f->label);
      sb_label_value(&b, f->slots[j].value);
      sb_printf(&b, "\"} %llu\n", (unsigned long long)f->slots[j].count);
      sum += f->slots[j].count;
    }
    /* Failures counted through the plain counter without a problem type still show up. */
    if (strcmp(f->family, "issue_failures") == 0) {
      int64_t plain = ae_metrics_get(AE_M_ISSUE_FAILURE);
      if (plain > 0 && (uint64_t)plain > sum)
        sb_printf(&b, "%s{%s=\"unspecified\"} %llu\n", f->name, f->label, (unsigned long long)((uint64_t)plain - sum));
    }
  }
  header(&b, "acmedge_time_to_certificate_seconds", "histogram",
         "Seconds from the first request for a name to its installed certificate.");
  uint64_t cum = 0;
  for (size_t i = 0; i < AE_TTC_N; i++) {
    cum += g_ttc_counts[i];
    sb_printf(&b, "acmedge_time_to_certificate_seconds_bucket{le=\"%g\"} %llu\n", g_ttc_bounds[i],
              (unsigned long long)cum);
  }
  cum += g_ttc_counts[AE_TTC_N];
  sb_printf(&b, "acmedge_time_to_certificate_seconds_bucket{le=\"+Inf\"} %llu\n", (unsigned long long)cum);
  sb_printf(&b, "acmedge_time_to_certificate_seconds_sum %.9g\n", g_ttc_sum);
  sb_printf(&b, "acmedge_time_to_certificate_seconds_count %llu\n", (unsigned long long)g_ttc_count);
  pthread_mutex_unlock(&g_lock);
  return b.p;
}
