/* Internal certificate authority: a persistent root, a short-lived intermediate that renews
 * itself, per-name leaf minting, a chain checker used before any certificate is installed, and a
 * bounded cache of minted leaves. Knows nothing about ACME. */
#ifndef ACMEDGE_CA_H
#define ACMEDGE_CA_H

#include <stdint.h>
#include <uv.h>
#include "acmedge/certstore.h"
#include "acmedge/common.h"
#include "acmedge/config.h"
#include "acmedge/events.h"
#include "acmedge/storage.h"

/* Defaults of the internal_ca.* keys. */
#define AE_CA_ROOT_LIFETIME_S (3600LL * 24 * 3650)
#define AE_CA_INTER_LIFETIME_S (3600LL * 24 * 7)
#define AE_CA_LEAF_LIFETIME_S (3600LL * 12)
#define AE_CA_CACHE_MAX 10000u
/* Subject CN of every intermediate the authority makes; ae_cert_issuer gives "CN=" this. */
#define AE_CA_INTERMEDIATE_CN "acmedge Internal Intermediate CA"
/* Storage directory of the one authority acmedge runs. */
#define AE_CA_ID "local"

typedef struct ae_ca ae_ca;

typedef struct ae_ca_opts {
  int64_t intermediate_lifetime_s; /* 0 = AE_CA_INTER_LIFETIME_S */
  int64_t leaf_lifetime_s;         /* 0 = AE_CA_LEAF_LIFETIME_S */
  int create;                      /* 1: generate what is missing; 0: load only (CLI, check) */
} ae_ca_opts;

/* Loads the authority from storage under pki/<AE_CA_ID>/ (root.crt, root.key, intermediate.crt,
 * intermediate.key), creating the missing root/intermediate when opts->create. A corrupt file, a
 * key readable by others or a key that does not match its certificate is an error naming the file.
 * The storage must outlive the CA. Caller owns *out (ae_ca_free). Thread-safe afterwards. */
int ae_ca_open(ae_storage *st, const ae_ca_opts *opts, ae_ca **out, ae_err *err);
/* Frees the authority (NULL is fine). */
void ae_ca_free(ae_ca *ca);
/* Replaces the intermediate (signed by the root, written to storage) when at most 20 % of its
 * life is left at time now; *rotated says whether it did. Thread-safe. */
int ae_ca_rotate_if_due(ae_ca *ca, int64_t now, int *rotated, ae_err *err);
/* Mints a leaf for one DNS name: fresh P-256 key, 16-byte random serial, CN + SAN, serverAuth,
 * SKI/AKI, backdated 60 s, lifetime clamped to the intermediate's notAfter. cert_pem is leaf +
 * intermediate, key_pem the leaf key (PKCS#8); both malloc'd, caller frees. Thread-safe; rotates
 * a due intermediate first. */
int ae_ca_mint_pem(ae_ca *ca, const char *name, int64_t now, char **cert_pem, char **key_pem, ae_err *err);
/* Same leaf as ae_ca_mint_pem, built directly into a served certificate (leaf + intermediate) with
 * no PEM export or parse. Caller owns the reference. */
int ae_ca_mint(ae_ca *ca, const char *name, int64_t now, ae_cert **out, ae_err *err);
/* Root certificate PEM (malloc'd, caller frees). */
char *ae_ca_root_pem(ae_ca *ca);
/* Current intermediate certificate PEM (malloc'd, caller frees). */
char *ae_ca_intermediate_pem(ae_ca *ca);
/* Multi-line human-readable status: subjects, validity, SHA-256 fingerprints (malloc'd). */
char *ae_ca_status_text(ae_ca *ca);
/* One intermediate rotation as reported by ae_ca_take_rotation (fingerprints "AB:CD:...", SHA-256). */
typedef struct ae_ca_rotation {
  char old_fp[128], new_fp[128];
  int64_t old_not_after, new_not_after;
} ae_ca_rotation;
/* 1 with *out filled when the intermediate changed since the last report (the first intermediate
 * of a new authority does not count), else 0. Each rotation is reported once. Thread-safe. */
int ae_ca_take_rotation(ae_ca *ca, ae_ca_rotation *out);
/* Seconds between two renewal checks: 1/40 of the intermediate lifetime, within 1..600. */
int64_t ae_ca_check_interval_s(const ae_ca *ca);

/* The renewal timer of a running server: every ae_ca_check_interval_s it renews a due
 * intermediate in the thread pool (never on the loop) and emits `ca_rotated` {old_sha256,
 * new_sha256, old_not_after, not_after} for every rotation, including those a mint or the start-up
 * performed. */
typedef struct ae_ca_rotor ae_ca_rotor;
/* Starts the timer on loop; ca and events must outlive the rotor. Caller owns *out. */
int ae_ca_rotor_start(uv_loop_t *loop, ae_ca *ca, ae_events *events, ae_ca_rotor **out, ae_err *err);
/* Stops the timer; done(ud) runs on the loop once no renewal is in flight and the handle is closed. */
void ae_ca_rotor_close(ae_ca_rotor *r, void (*done)(void *ud), void *ud);
/* Frees a closed rotor (NULL is fine). */
void ae_ca_rotor_free(ae_ca_rotor *r);

/* "internal" when issuer_dn (a leaf's issuer DN as ae_cert_issuer gives it) is the internal
 * intermediate's, "acme" otherwise, NULL for NULL. Static strings. */
const char *ae_ca_issuer_kind(const char *issuer_dn);

/* Counters for metrics: leaves minted, intermediates created by this process. */
uint64_t ae_ca_mints(ae_ca *ca);
uint64_t ae_ca_rotations(ae_ca *ca);

/* Checks a chain before it is installed for name: every certificate's issuer DN equals the next
 * one's subject, AKI equals the next SKI where both exist, each signature verifies with the next
 * certificate's key, the leaf covers name, key_pem is the leaf's key, and every certificate is
 * valid at now (notBefore may be up to 5 minutes ahead). 0, or AE_EINVAL with the reason. */
int ae_chain_check(const char *cert_pem, size_t cert_len, const char *key_pem, size_t key_len, const char *name,
                   int64_t now, ae_err *err);

/* A bounded, thread-safe cache of minted leaves keyed by lowercased name, least recently used
 * evicted first. An entry stops being returned once two thirds of its leaf's life have passed, so
 * a leaf is never served close to (or after) its expiry. */
typedef struct ae_leafcache ae_leafcache;

/* Creates a cache holding at most max entries (0 = AE_CA_CACHE_MAX). Caller owns *out. */
int ae_leafcache_new(size_t max, ae_leafcache **out);
/* Frees the cache and drops its references (NULL is fine). */
void ae_leafcache_free(ae_leafcache *lc);
/* A new reference to the fresh leaf for name (any case) at time now, or NULL. */
ae_cert *ae_leafcache_get(ae_leafcache *lc, const char *name, int64_t now);
/* Stores a leaf for name (the cache takes its own reference), evicting the least recently used
 * entry when full. */
void ae_leafcache_put(ae_leafcache *lc, const char *name, ae_cert *cert);
/* Removes name's leaf (the real certificate arrived); no-op when absent. */
void ae_leafcache_drop(ae_leafcache *lc, const char *name);
/* Entry count and counters (hits, misses, evictions). */
size_t ae_leafcache_count(ae_leafcache *lc);
void ae_leafcache_stats(ae_leafcache *lc, uint64_t *hits, uint64_t *misses, uint64_t *evictions);

/* Prometheus text of the CA's and the cache's counters and the mint latency histogram
 * (malloc'd, caller frees). lc may be NULL. */
char *ae_ca_metrics_render(ae_ca *ca, ae_leafcache *lc);
/* For `acmedge check`: with internal_ca enabled, the stored CA files (if any) must be readable,
 * parse, match their keys and have 0600 keys; errors name the file. Writes nothing. */
int ae_ca_check_config(const ae_config *cfg, ae_err *err);
/* `acmedge ca root|status [-c FILE]` (argv[0] is "ca"): prints the root PEM or the authority's
 * status from the configured storage. Returns the exit code. */
int ae_cli_ca(int argc, char **argv);

#endif
