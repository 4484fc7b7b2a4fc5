/* OCSP stapling: immutable staples, the read-through staple cache (singleflight, generations,
 * backoff), response verification, and the service that fetches, persists and serves them. */
#ifndef ACMEDGE_OCSP_H
#define ACMEDGE_OCSP_H

#include <stddef.h>
#include <stdint.h>
#include <gnutls/x509.h>

#include <jansson.h>
#include <uv.h>

#include "acmedge/certstore.h"
#include "acmedge/common.h"
#include "acmedge/config.h"
#include "acmedge/events.h"
#include "acmedge/storage.h"

/* OCSP single-response status values (RFC 6960 CertStatus). */
enum { AE_OCSP_GOOD = 0, AE_OCSP_REVOKED = 1, AE_OCSP_UNKNOWN = 2 };

/* ---------- staples ---------- */

/* An immutable, verified OCSP response (DER) ready to be stapled. Refcounted (atomic), shareable
 * across threads; freed with the last reference. */
typedef struct ae_staple ae_staple;

/* Copies der into a new staple with one reference (caller's). */
int ae_staple_new(const unsigned char *der, size_t len, int64_t this_update, int64_t next_update, int status,
                  ae_staple **out);
/* Adds a reference; returns s. */
ae_staple *ae_staple_ref(ae_staple *s);
/* Drops a reference (NULL is fine). */
void ae_staple_unref(ae_staple *s);
/* The DER bytes (owned by the staple, valid while a reference is held); *len gets the size. */
const unsigned char *ae_staple_der(const ae_staple *s, size_t *len);
/* thisUpdate / nextUpdate as UNIX seconds, and the certificate status (AE_OCSP_*). */
int64_t ae_staple_this_update(const ae_staple *s);
int64_t ae_staple_next_update(const ae_staple *s);
int ae_staple_status(const ae_staple *s);
/* Time after which the staple should be refreshed: halfway between thisUpdate and nextUpdate. */
int64_t ae_staple_refresh_at(const ae_staple *s);

/* ---------- the staple cache (thread-safe, no I/O, time passed in) ---------- */

typedef struct ae_ocsp_cache ae_ocsp_cache;

/* Asks for a fetch of cert's response; gen identifies the entry's generation at the start and
 * must be handed back to ae_ocsp_cache_complete. Called without the cache lock, on the thread
 * that noticed the need (a handshake thread too): it must only queue work. It receives a new
 * reference to cert (the callee owns it). */
typedef void (*ae_ocsp_need_fn)(void *ud, ae_cert *cert, uint64_t gen);

/* Creates an empty cache. need may be NULL (nothing is ever fetched). Caller owns *out. */
int ae_ocsp_cache_new(ae_ocsp_need_fn need, void *ud, ae_ocsp_cache **out);
/* Frees the cache and every entry (staples in use by handshakes live on). */
void ae_ocsp_cache_free(ae_ocsp_cache *c);

/* Handshake path: returns a new staple reference to send for cert, or NULL. Never waits: a
 * missing or half-expired entry asks for one fetch (singleflight) unless one is in flight, the
 * entry is in backoff, has no responder, or was found revoked. A staple past its nextUpdate is
 * never returned. */
ae_staple *ae_ocsp_cache_get(ae_ocsp_cache *c, ae_cert *cert, int64_t now);

/* Outcome of one fetch, for ae_ocsp_cache_complete. */
typedef enum {
  AE_OCSP_FETCH_GOOD = 0,   /* staple holds a verified "good" response */
  AE_OCSP_FETCH_REVOKED,    /* verified "revoked": stop stapling and never fetch again */
  AE_OCSP_FETCH_FAILED,     /* anything else: keep the previous staple, retry with backoff */
  AE_OCSP_FETCH_NO_URL      /* the certificate names no responder: never fetch again */
} ae_ocsp_fetch_result;

/* Records the result of the fetch started for generation gen. staple (GOOD only) is taken as a
 * new reference by the cache. Returns 0 when stored, AE_ECANCELED when the entry was invalidated
 * or removed since the fetch started (nothing is written). reason (may be NULL) is kept as the
 * entry's last error for FAILED. */
int ae_ocsp_cache_complete(ae_ocsp_cache *c, ae_cert *cert, uint64_t gen, ae_ocsp_fetch_result result,
                           ae_staple *staple, const char *reason, int64_t now);

/* Installs a staple loaded from storage (no fetch involved) for cert, when it is newer than the
 * entry's. Takes its own reference. */
void ae_ocsp_cache_seed(ae_ocsp_cache *c, ae_cert *cert, ae_staple *staple);

/* Drops cert's staple and bumps the entry's generation, so a fetch already in flight cannot
 * store its result; the next handshake starts a new fetch. */
void ae_ocsp_cache_invalidate(ae_ocsp_cache *c, ae_cert *cert);
/* Removes cert's entry (certificate replaced or forgotten); in-flight fetches are discarded. */
void ae_ocsp_cache_remove(ae_ocsp_cache *c, ae_cert *cert);

/* Asks for a fetch of every entry whose staple is due for refresh (or whose backoff passed
 * after a failure). Returns how many fetches were asked for. */
size_t ae_ocsp_cache_refresh_due(ae_ocsp_cache *c, int64_t now);

/* A snapshot of one entry for status displays. */
typedef struct ae_ocsp_info {
  const char *state;        /* "none", "pending", "good", "stale", "revoked", "failed", "no_responder" */
  int64_t this_update;      /* 0 without a staple */
  int64_t next_update;
  unsigned failures;        /* consecutive failed fetches */
  char last_error[160];
} ae_ocsp_info;

/* Fills *out for cert; returns AE_ENOTFOUND when the cache has no entry (state "none"). */
int ae_ocsp_cache_info(ae_ocsp_cache *c, ae_cert *cert, int64_t now, ae_ocsp_info *out);
/* thisUpdate of the oldest servable staple at now, 0 when none. */
int64_t ae_ocsp_cache_oldest_this_update(ae_ocsp_cache *c, int64_t now);
/* Number of entries and number holding a servable staple at now. */
void ae_ocsp_cache_counts(ae_ocsp_cache *c, int64_t now, size_t *entries, size_t *stapled);

/* ---------- requests and verification (pure, no I/O) ---------- */

/* Copies the first AIA OCSP URL (http or https) of crt into buf. AE_ENOTFOUND when none. */
int ae_ocsp_responder_url(gnutls_x509_crt_t crt, char *buf, size_t len);
/* Builds a DER OCSP request (SHA-1 CertID, no nonce) for leaf issued by issuer. *der is malloc'd
 * (caller frees). */
int ae_ocsp_build_request(gnutls_x509_crt_t leaf, gnutls_x509_crt_t issuer, unsigned char **der, size_t *len,
                          ae_err *err);

/* What a verified response says. */
typedef struct ae_ocsp_verdict {
  int status;               /* AE_OCSP_* */
  int64_t this_update;
  int64_t next_update;
  int64_t revoked_at;       /* revoked only */
  int reason;               /* RFC 5280 CRLReason, revoked only; -1 when absent */
} ae_ocsp_verdict;

/* Largest thisUpdate in the future accepted (clock skew), seconds. */
#define AE_OCSP_SKEW_S 300

/* Parses and verifies a DER response for leaf issued by issuer at time now: successful status,
 * the single response matches leaf, signed by issuer or by a responder certificate carrying
 * id-kp-OCSPSigning issued by issuer, thisUpdate not in the future beyond AE_OCSP_SKEW_S,
 * nextUpdate present, after now and not after leaf's notAfter. Errors say which check failed. */
int ae_ocsp_verify(const unsigned char *der, size_t len, gnutls_x509_crt_t leaf, gnutls_x509_crt_t issuer,
                   int64_t now, ae_ocsp_verdict *out, ae_err *err);

/* RFC 5280 reason name for a CRLReason number ("keyCompromise"), or "unspecified". */
const char *ae_ocsp_reason_name(int reason);
/* Parses a reason name (case-insensitive) or number 0..10 into *out. AE_EINVAL otherwise. */
int ae_ocsp_reason_parse(const char *s, int *out);

/* ---------- the service (control loop) ---------- */

typedef struct ae_ocsp ae_ocsp;

typedef struct ae_ocsp_deps {
  uv_loop_t *loop;
  ae_storage *storage;   /* staples are kept beside the certificates; may be NULL */
  const char *ca_host;   /* storage directory of the CA, see ae_storage_ca_host */
  ae_events *events;
  /* The responder says cert (served for name) is revoked: replace it. May be NULL. */
  void (*on_revoked)(void *ud, const char *name, ae_cert *cert, int reason);
  void *ud;
} ae_ocsp_deps;

/* Creates the service on deps->loop (keeps the deps' pointers, not owned). Caller owns *out
 * (ae_ocsp_close, then ae_ocsp_free). */
int ae_ocsp_new(const ae_ocsp_deps *deps, const ae_config *cfg, ae_ocsp **out, ae_err *err);
/* Applies ocsp.enabled of a reloaded config. */
void ae_ocsp_set_config(ae_ocsp *o, const ae_config *cfg);
/* Whether stapling is on. */
int ae_ocsp_enabled(const ae_ocsp *o);
/* The staple cache handshakes read (owned by the service), or NULL when stapling is off. */
ae_ocsp_cache *ae_ocsp_staples(ae_ocsp *o);
/* name's certificate changes from old_cert to new_cert (either may be NULL): the old one's staple
 * is dropped (and its stored file when not loading); a certificate loaded from storage (loaded)
 * gets its stored staple back when still valid. Control loop only. */
void ae_ocsp_cert_changed(ae_ocsp *o, const char *name, ae_cert *old_cert, ae_cert *new_cert, int loaded);
/* Drops cert's staple now (stored copy too) so that no fetch started earlier can bring it back. */
void ae_ocsp_invalidate(ae_ocsp *o, const char *name, ae_cert *cert);
/* Adds "ocsp" (state, next_update, last_error) to a /v1/domains object for cert. */
void ae_ocsp_domain_json(ae_ocsp *o, ae_cert *cert, json_t *obj);
/* Prometheus text of the OCSP series (malloc'd, caller frees). */
char *ae_ocsp_metrics(ae_ocsp *o);
/* Counts one handshake of a certificate with (stapled = 1) or without a staple. Thread-safe. */
void ae_ocsp_count_handshake(int stapled);
/* Cancels fetches and closes handles; cb when done. */
void ae_ocsp_close(ae_ocsp *o, void (*cb)(void *ud), void *ud);
/* Frees after close completed. */
void ae_ocsp_free(ae_ocsp *o);

#endif
