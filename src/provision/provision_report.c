/* Provisioning state as the admin API shows it: the managed-domains list and per-domain metrics.
 * Read-only views of the records kept by provision.c. */
#include "provision_internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

json_t *ae_dom_json(const ae_dom *d) {
  json_t *o = json_object();
  json_object_set_new(o, "domain", json_string(d->name));
  json_object_set_new(o, "state", json_string(ae_dom_state_name(d)));
  char buf[40];
  if (d->has_cert) {
    ae_time_rfc3339(d->not_after, buf, sizeof(buf));
    json_object_set_new(o, "not_after", json_string(buf));
  } else {
    json_object_set_new(o, "not_after", json_null());
  }
  /* issuer: who issued it (design §9: "acme" | "internal"); issuer_dn: the leaf's issuer DN. */
  json_object_set_new(o, "issuer", d->issuer ? json_string(ae_ca_issuer_kind(d->issuer)) : json_null());
  json_object_set_new(o, "issuer_dn", d->issuer ? json_string(d->issuer) : json_null());
  json_object_set_new(o, "serial", d->serial ? json_string(d->serial) : json_null());
  json_object_set_new(o, "last_error", d->last_error ? json_string(d->last_error) : json_null());
  json_object_set_new(o, "last_problem", d->last_problem ? json_string(d->last_problem) : json_null());
  if (d->retry_at) {
    ae_time_rfc3339(d->retry_at, buf, sizeof(buf));
    json_object_set_new(o, "retry_at", json_string(buf));
  } else {
    json_object_set_new(o, "retry_at", json_null());
  }
  if (d->has_cert && uv_is_active((uv_handle_t *)&d->timer)) {
    ae_time_rfc3339(d->renew_at, buf, sizeof(buf));
    json_object_set_new(o, "renew_at", json_string(buf));
  }
  return o;
}

json_t *ae_provision_domains_json(ae_provision *p) { return ae_provision_domains_query(p, 0, NULL, NULL); }

/* Per-domain series only for the soonest-expiring names: a series per name for a million names
 * is a denial of service on the scraper. Every name still counts in the expiry histogram. */
#define METRICS_DOMAINS_MAX 100

static int by_not_after(const void *a, const void *b) {
  const ae_dom *x = *(ae_dom *const *)a, *y = *(ae_dom *const *)b;
  return x->not_after < y->not_after ? -1 : x->not_after > y->not_after;
}

static const int64_t k_expiry_le[] = {86400, 7 * 86400, 14 * 86400, 30 * 86400, 60 * 86400, 90 * 86400};
#define NLE (sizeof(k_expiry_le) / sizeof(k_expiry_le[0]))

/* Appends printf output to a growing buffer. */
static void put(char **buf, size_t *cap, size_t *n, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static void put(char **buf, size_t *cap, size_t *n, const char *fmt, ...) {
  for (;;) {
    va_list ap;
    va_start(ap, fmt);
    int w = vsnprintf(*buf + *n, *cap - *n, fmt, ap);
    va_end(ap);
    if (w >= 0 && (size_t)w < *cap - *n) {
      *n += (size_t)w;
      return;
    }
    *cap = *cap * 2 + (w > 0 ? (size_t)w : 0);
    *buf = ae_realloc(*buf, *cap);
  }
}

char *ae_provision_metrics(ae_provision *p) {
  size_t cap = 4096, n = 0;
  char *buf = ae_malloc(cap);
  unsigned counts[3] = {0, 0, 0}; /* pending(+renewing), valid, failed */
  ae_dom **certs = ae_malloc((p->doms.count + 1) * sizeof(*certs));
  size_t nc = 0;
  uint64_t hist[NLE] = {0};
  double left_sum = 0;
  int64_t now = (int64_t)time(NULL);
  for (size_t i = 0; i < p->doms.cap; i++) {
    ae_dom *d = p->doms.slots[i].key ? p->doms.slots[i].value : NULL;
    if (!d)
      continue;
    if (d->state == DS_VALID)
      counts[1]++;
    else if (d->state == DS_FAILED)
      counts[2]++;
    else
      counts[0]++;
    if (!d->has_cert)
      continue;
    certs[nc++] = d;
    left_sum += (double)(d->not_after - now);
    for (size_t b = 0; b < NLE; b++)
      if (d->not_after - now <= k_expiry_le[b])
        hist[b]++;
  }
  qsort(certs, nc, sizeof(*certs), by_not_after);
  put(&buf, &cap, &n,
      "# HELP acmedge_certificate_expiration_timestamp_seconds Expiry (UNIX time) of the certificate served for a domain (the %d soonest in memory).\n"
      "# TYPE acmedge_certificate_expiration_timestamp_seconds gauge\n", METRICS_DOMAINS_MAX);
  for (size_t i = 0; i < nc && i < METRICS_DOMAINS_MAX; i++)
    put(&buf, &cap, &n, "acmedge_certificate_expiration_timestamp_seconds{domain=\"%s\"} %lld\n", certs[i]->name,
        (long long)certs[i]->not_after);
  free(certs);
  put(&buf, &cap, &n,
      "# HELP acmedge_certificate_expiry_seconds Time left until expiry of the certificates in memory.\n"
      "# TYPE acmedge_certificate_expiry_seconds histogram\n");
  for (size_t b = 0; b < NLE; b++)
    put(&buf, &cap, &n, "acmedge_certificate_expiry_seconds_bucket{le=\"%lld\"} %llu\n", (long long)k_expiry_le[b],
        (unsigned long long)hist[b]);
  put(&buf, &cap, &n, "acmedge_certificate_expiry_seconds_bucket{le=\"+Inf\"} %zu\n", nc);
  put(&buf, &cap, &n, "acmedge_certificate_expiry_seconds_sum %.0f\n", left_sum);
  put(&buf, &cap, &n, "acmedge_certificate_expiry_seconds_count %zu\n", nc);
  put(&buf, &cap, &n,
      "# HELP acmedge_certificates Managed domains by state.\n"
      "# TYPE acmedge_certificates gauge\n"
      "acmedge_certificates{state=\"pending\"} %u\n"
      "acmedge_certificates{state=\"valid\"} %u\n"
      "acmedge_certificates{state=\"failed\"} %u\n",
      counts[0], counts[1], counts[2]);
  put(&buf, &cap, &n,
      "# HELP acmedge_cert_cache_entries Certificates held in memory.\n"
      "# TYPE acmedge_cert_cache_entries gauge\n"
      "acmedge_cert_cache_entries %zu\n"
      "# HELP acmedge_cert_cache_max_entries Configured bound (cert_cache.max_entries, 0 = none).\n"
      "# TYPE acmedge_cert_cache_max_entries gauge\n"
      "acmedge_cert_cache_max_entries %zu\n"
      "# HELP acmedge_cert_cache_bytes Memory accounted to the certificates in memory (docs/scale.md).\n"
      "# TYPE acmedge_cert_cache_bytes gauge\n"
      "acmedge_cert_cache_bytes %zu\n"
      "# HELP acmedge_cert_cache_max_bytes Configured bound (cert_cache.max_bytes, 0 = none).\n"
      "# TYPE acmedge_cert_cache_max_bytes gauge\n"
      "acmedge_cert_cache_max_bytes %zu\n"
      "# HELP acmedge_cert_cache_evictions_total Certificates evicted from memory.\n"
      "# TYPE acmedge_cert_cache_evictions_total counter\n"
      "acmedge_cert_cache_evictions_total %llu\n"
      "# HELP acmedge_cert_cache_loads_total Reads of a name from storage on demand.\n"
      "# TYPE acmedge_cert_cache_loads_total counter\n"
      "acmedge_cert_cache_loads_total %llu\n"
      "# HELP acmedge_renewal_index_entries Stored names not in memory waiting for their renewal.\n"
      "# TYPE acmedge_renewal_index_entries gauge\n"
      "acmedge_renewal_index_entries %zu\n",
      ae_certstore_count(p->deps.certs), ae_certstore_max_entries(p->deps.certs), ae_certstore_bytes(p->deps.certs),
      ae_certstore_max_bytes(p->deps.certs),
      (unsigned long long)ae_certstore_evictions(p->deps.certs), (unsigned long long)p->lazy_loads,
      ae_renew_index_size(p));
  return buf;
}
