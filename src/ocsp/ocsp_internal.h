/* Private to the OCSP service files (ocsp_service.c, ocsp_store.c, ocsp_metrics.c). */
#ifndef ACMEDGE_OCSP_INTERNAL_H
#define ACMEDGE_OCSP_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>

#include "acmedge/httpc.h"
#include "acmedge/ocsp.h"

struct job;

struct ae_ocsp {
  ae_ocsp_deps deps;
  char *ca_host;
  atomic_int enabled; /* set on reload (loop), read by handshake threads */
  ae_ocsp_cache *cache;
  ae_httpc *http;
  uv_async_t async;          /* handshake threads wake the loop for queued fetches */
  uv_timer_t sweep;          /* background refresh of staples past half validity */
  pthread_mutex_t mu;        /* guards pending and closing */
  struct job *pending;       /* queued by the cache's need callback, any thread */
  struct job *running;       /* HTTP requests in flight (loop only) */
  int closing;
  int open_handles;
  void (*close_cb)(void *ud);
  void *close_ud;
};

/* Wall-clock UNIX seconds (OCSP times are absolute). */
int64_t ae_ocsp_now(void);
/* The name a certificate is served and stored under: its first DNS name. */
const char *ae_ocsp_cert_domain(ae_cert *cert);
/* Parses cert's leaf and issuer (the chain's second certificate); caller deinits both.
 * AE_ENOTFOUND when the chain has no issuer. */
int ae_ocsp_cert_pair(ae_cert *cert, gnutls_x509_crt_t *leaf, gnutls_x509_crt_t *issuer);

/* Persistence beside the certificate: certs/<ca-host>/<domain>/ocsp.der, written atomically. */
void ae_ocsp_store_put(ae_ocsp *o, const char *name, ae_staple *st);
void ae_ocsp_store_delete(ae_ocsp *o, const char *name);
/* Loads name's stored staple into the cache when it verifies for cert and is still valid;
 * deletes a corrupt, foreign or expired file. */
void ae_ocsp_store_load(ae_ocsp *o, const char *name, ae_cert *cert);

/* Counts one finished fetch by outcome ("good", "revoked", "unknown", "invalid", ...). */
void ae_ocsp_metrics_fetch(const char *outcome);

#endif
