/* On-demand provisioning: one job per name (singleflight), concurrency cap and FIFO queue, rate
 * limits, backoff with jitter, persist + hot-swap on success, renewal timers, events. Runs on the
 * control loop. */
#ifndef ACMEDGE_PROVISION_H
#define ACMEDGE_PROVISION_H

#include <jansson.h>
#include <uv.h>
#include "acmedge/acme.h"
#include "acmedge/ca.h"
#include "acmedge/certstore.h"
#include "acmedge/config.h"
#include "acmedge/events.h"
#include "acmedge/http80.h"
#include "acmedge/policy.h"
#include "acmedge/storage.h"
#include "acmedge/tls_front.h"

typedef struct ae_provision ae_provision;

typedef struct ae_provision_deps {
  uv_loop_t *loop;
  ae_certstore *certs;
  ae_storage *storage;
  ae_acme *acme;
  ae_policy *policy;
  ae_events *events;
  const char *ca_host;   /* storage directory of the CA, see ae_storage_ca_host */
  /* Called when a name's handshakes held in "wait" mode should re-check the store. */
  void (*wake)(void *ud, const char *name);
  void *wake_ud;
  /* Called when an asynchronous policy decision (the ask URL) for name is known, allowed or not:
   * port-80 requests held meanwhile can be answered. May be NULL; uses wake_ud. */
  void (*decided)(void *ud, const char *name);
  /* Internal CA for names matching internal_ca.names (NULL when disabled; not owned). */
  ae_ca *ca;
  /* Stand-in leaves for on_demand.fallback_cert "internal" (NULL when unused; not owned). */
  ae_leafcache *leaves;
  /* name's certificate is about to change from old_cert to new_cert (either may be NULL; loaded:
   * read from storage at start). Lets the OCSP staples follow. May be NULL; uses wake_ud. */
  void (*cert_changed)(void *ud, const char *name, ae_cert *old_cert, ae_cert *new_cert, int loaded);
} ae_provision_deps;

/* Creates the provisioner (refs cfg; keeps the deps' pointers, not owned). Caller owns *out. */
int ae_provision_new(const ae_provision_deps *deps, const ae_config *cfg, ae_provision **out, ae_err *err);
/* Applies a reloaded config (on_demand limits, backoff). */
void ae_provision_set_config(ae_provision *p, const ae_config *cfg);
/* Loads every certificate found in storage into the cert store (event cert_loaded each) and
 * schedules renewals. Returns the number loaded in *count. */
int ae_provision_load(ae_provision *p, size_t *count, ae_err *err);
/* Lazy start: indexes stored certificates for renewal in the background (thread pool) instead
 * of loading them; names are read from storage on first use. Returns at once. */
int ae_provision_start_index(ae_provision *p, ae_err *err);
/* Cert store eviction callback (ud = the provisioner): an idle evicted name leaves memory and
 * its renewal moves to the index. Call on the provisioner's loop only. */
void ae_provision_evicted(void *ud, const char *name, ae_cert *cert);
/* Another instance committed (or deleted) name in shared storage: a name this instance holds,
 * waits for or knows as absent is read again and hot-swapped. */
void ae_provision_storage_changed(ae_provision *p, const char *name);
/* Another instance announced that it deleted name from shared storage: as storage_changed, and
 * a name this instance knows only from its renewal index is read too, so it leaves the index. */
void ae_provision_storage_removed(ae_provision *p, const char *name);
/* New reference: the renewal index of stored names not in memory, {"ready", "stored_at_start",
 * "pending", "soonest": [{"domain", "renew_at"}] (at most max, soonest first)}. */
json_t *ae_provision_renewal_index_json(ae_provision *p, size_t max);
/* Any thread: name's stored pair (normalized name, exact entry only) read from the kernel's
 * caches without blocking and parsed; *cert gets one reference (caller's). Nonzero when it is
 * not at hand (absent, not cached, unusable, or a backend that cannot answer without waiting):
 * then the miss path reads it in the thread pool. */
int ae_provision_read_cached(ae_provision *p, const char *name, ae_cert **cert, ae_cert_ids *ids);
/* Control loop: a worker served name with cert from ae_provision_read_cached; installs it (record,
 * renewal, cert_loaded) unless it is in memory already or a read in flight will. cert stays the
 * caller's. */
void ae_provision_loaded(ae_provision *p, const char *name, ae_cert *cert, const char *cert_id);
/* TLS miss path: decides default / hold / alert for an SNI without a certificate and starts
 * issuance when policy allows. */
ae_miss_action ae_provision_on_sni(ae_provision *p, const char *name);
/* A handshake whose SNI is not a DNS host name (shown: printable rendition): domain_denied with
 * reason invalid_name (suppressed per name like every denial) when on-demand issuance is on, and
 * the deny action. Nothing is looked up, stored or minted. */
ae_miss_action ae_provision_on_invalid_sni(ae_provision *p, const char *shown);
/* Port-80 path: classifies a Host for a non-challenge request, starting issuance when allowed. */
ae_h80_state ae_provision_on_http(ae_provision *p, const char *host, unsigned *retry_after_s);
/* Admin path: requests issuance for name (policy applies). 0 when accepted or already managed;
 * AE_EINVAL for a bad name; AE_ELIMIT when denied (err says why). */
int ae_provision_request(ae_provision *p, const char *name, const char *source, ae_err *err);
/* Forgets name: cancels its job, removes it from the cert store and from storage. */
int ae_provision_forget(ae_provision *p, const char *name, ae_err *err);
/* name's certificate with serial (lowercase hex) is revoked: order a replacement now (every
 * order uses a new key); if that fails the revoked certificate stops being served and the name
 * goes to "failed". AE_ENOTFOUND when name does not serve that serial. */
int ae_provision_revoked(ae_provision *p, const char *name, const char *serial, ae_err *err);
/* Outcome of ae_provision_revoke: code 0, or the CA's problem type and detail (NULL when none). */
typedef void (*ae_provision_revoke_fn)(void *ud, int code, const char *problem, const char *detail,
                                       const char *serial);
/* Revokes name's served certificate at the CA (account key, RFC 5280 reason or -1). On success,
 * before done runs: its staple is dropped (cert_changed with no new certificate), cert_revoked
 * (source acme) is emitted and a replacement is ordered (ae_provision_revoked). AE_ENOTFOUND when
 * name has no certificate of its own; done is then never called. */
int ae_provision_revoke(ae_provision *p, const char *name, int reason, ae_provision_revoke_fn done, void *ud,
                        ae_err *err);
/* Renews name's certificate now (an operator's "renew now"): a new order with a new key goes
 * through the usual queue and events (renewal_scheduled with source "api", then cert_renewed).
 * AE_ENOTFOUND when name has no certificate in memory, AE_EAGAIN when a stored name is being read
 * first (ask again), AE_EEXIST when an order for it is already running, AE_ELIMIT when the queue
 * is full (retried in 60 s). */
int ae_provision_renew_now(ae_provision *p, const char *name, ae_err *err);
/* New reference: JSON array of managed domains (design §5): records in memory and stored names
 * known to the renewal index (state "valid", "in_memory": false). */
json_t *ae_provision_domains_json(ae_provision *p);
/* New reference: with limit > 0, {"domains": [...], "next": NAME or null} holding the first
 * limit names after `after` (NULL = from the start) in byte order; with limit 0, the whole
 * array as ae_provision_domains_json. state (NULL = any) keeps only names in that state. */
json_t *ae_provision_domains_query(ae_provision *p, size_t limit, const char *after, const char *state);
/* Same, with the stored names taken from stored (a shared storage's list of every instance's
 * certificates) instead of this instance's renewal index. New reference. */
json_t *ae_provision_domains_query_stored(ae_provision *p, size_t limit, const char *after, const char *state,
                                          const ae_storage_certref *stored, size_t nstored);
/* How many of the n stored names have a record in memory (their page entry comes from the
 * record, so they do not count towards filling a page with stored names). */
size_t ae_provision_records_among(ae_provision *p, const ae_storage_certref *refs, size_t n);
/* Per-domain Prometheus series (malloc'd text, caller frees). */
char *ae_provision_metrics(ae_provision *p);

/* Sizes of the per-name state (each bounded by configuration; see docs/abuse.md). */
typedef struct {
  size_t records;  /* managed names in memory (certificates, pending, failed) */
  size_t queued;   /* waiting for an order: <= max_queue + queued renewals */
  size_t failed;   /* failed first issuances kept: <= name_cache_max */
  size_t loads;    /* storage reads in flight: <= name_cache_max */
  size_t denied;   /* names whose domain_denied event is suppressed: <= name_cache_max */
} ae_provision_name_counts;

/* Fills out with the current sizes. */
void ae_provision_counts(const ae_provision *p, ae_provision_name_counts *out);
/* Cancels jobs and timers; cb when every handle is closed. */
void ae_provision_close(ae_provision *p, void (*cb)(void *ud), void *ud);
/* Frees after close completed. */
void ae_provision_free(ae_provision *p);

/* Backoff delay in seconds for the n-th consecutive failure (n >= 1): initial * 2^(n-1) capped at
 * max, then scaled by a factor in [0.5, 1.5) from rnd01 (a uniform [0,1) sample). */
double ae_backoff_delay(unsigned initial_s, unsigned max_s, unsigned n, double rnd01);

#endif
