/* Process-wide counters and gauges (atomic, any thread) rendered in Prometheus text format. */
#ifndef ACMEDGE_METRICS_H
#define ACMEDGE_METRICS_H

#include <stdint.h>

typedef enum {
  AE_M_HS_KNOWN = 0,        /* handshakes by outcome */
  AE_M_HS_DEFAULT,
  AE_M_HS_HELD,
  AE_M_HS_FAILED,
  AE_M_HS_CHALLENGE,        /* tls-alpn-01 validation handshakes */
  AE_M_CONN_OPEN,           /* gauge: open client connections (TLS + port 80) */
  AE_M_ISSUE_ATTEMPTS,
  AE_M_ISSUE_SUCCESS,
  AE_M_ISSUE_FAILURE,
  AE_M_ORDERS_IN_FLIGHT,    /* gauge */
  AE_M_RENEWALS,
  AE_M_UPSTREAM_1XX,
  AE_M_UPSTREAM_2XX,
  AE_M_UPSTREAM_3XX,
  AE_M_UPSTREAM_4XX,
  AE_M_UPSTREAM_5XX,
  AE_M_UPSTREAM_ERRORS,     /* proxy-generated 502/504 */
  AE_M_HTTP80_REQUESTS,
  AE_M__COUNT
} ae_metric;

/* Adds delta to a counter or gauge. Lock-free. */
void ae_metrics_add(ae_metric m, int64_t delta);
static inline void ae_metrics_inc(ae_metric m) { ae_metrics_add(m, 1); }
/* Current value. */
int64_t ae_metrics_get(ae_metric m);
/* Counts one event in a labelled family: "denied" by reason, "issue_failures" by problem type. */
void ae_metrics_count_label(const char *family, const char *label);
/* Records a time-to-certificate observation (seconds) in the histogram. */
void ae_metrics_observe_ttc(double seconds);
/* Appends the Prometheus text of all process metrics to a malloc'd string (caller frees). Per-domain
 * series are added by the caller (admin) from provisioning state. */
char *ae_metrics_render(void);
/* Resets everything (tests). */
void ae_metrics_reset(void);

#endif
