/* SNI certificate cache: name -> refcounted certificate, parsed once, swapped atomically;
 * optionally bounded (CLOCK eviction) with a negative cache for names storage lacks. */
#ifndef ACMEDGE_CERTSTORE_H
#define ACMEDGE_CERTSTORE_H

#include <stdint.h>
#include <gnutls/abstract.h>
#include <gnutls/gnutls.h>
#include "acmedge/common.h"

/* An immutable certificate chain + key, parsed once and ready for handshakes (servers hand it to
 * GnuTLS from a certificate retrieve callback). Refcounted (atomic), shareable across threads;
 * freed when the last reference is dropped. */
typedef struct ae_cert ae_cert;

/* Builds a cert from PEM chain (leaf first) and PEM key. *out has one reference (caller's). */
int ae_cert_from_pem(const char *cert_pem, size_t cert_len, const char *key_pem, size_t key_len,
                     ae_cert **out, ae_err *err);
/* What ae_cert_from_pem_ids reads from the leaf beside the cert. */
typedef struct ae_cert_ids {
  char cert_id[320]; /* ARI certificate identifier (RFC 9773 4.1, as ae_acme_cert_id); "" without an AKI */
} ae_cert_ids;
/* Like ae_cert_from_pem for a stored pair: errors start with what (the name or file at fault),
 * and *ids (may be NULL) is filled from the same parse of the leaf. *out has one reference
 * (caller's). */
int ae_cert_from_pem_ids(const char *what, const char *cert_pem, size_t cert_len, const char *key_pem,
                         size_t key_len, ae_cert **out, ae_cert_ids *ids, ae_err *err);
/* Builds a cert from parts already in memory, nothing re-encoded or re-parsed: the signed leaf,
 * the DER of the certificates after it (issuers, shared between certs by DER) and the leaf's
 * ECDSA key. The caller vouches that key belongs to leaf (it made both); leaf, chain and key stay
 * the caller's and are only read. *out has one reference (caller's). */
int ae_cert_from_parts(gnutls_x509_crt_t leaf, const gnutls_datum_t *chain, unsigned nchain,
                       gnutls_x509_privkey_t key, ae_cert **out, ae_err *err);
/* Loads a cert from files; errors name the file. *out has one reference (caller's). */
int ae_cert_load_files(const char *cert_path, const char *key_path, ae_cert **out, ae_err *err);
/* Adds a reference; returns c. */
ae_cert *ae_cert_ref(ae_cert *c);
/* 1 when the leaf names an http(s) OCSP responder (AIA), read once when the cert was parsed. */
int ae_cert_has_ocsp_url(const ae_cert *c);
/* Drops a reference (NULL is fine). */
void ae_cert_unref(ae_cert *c);
/* The parsed chain (leaf first) for a certificate retrieve callback; *n gets its length. Owned by
 * the cert, valid while a reference is held; never modified or freed by the caller. */
gnutls_pcert_st *ae_cert_pcerts(const ae_cert *c, unsigned *n);
/* The leaf's private key; owned by the cert, valid while a reference is held. */
gnutls_privkey_t ae_cert_privkey(const ae_cert *c);
/* Leaf validity, as UNIX seconds. */
int64_t ae_cert_not_before(const ae_cert *c);
int64_t ae_cert_not_after(const ae_cert *c);
/* Leaf serial as lowercase hex and issuer DN; owned by the cert. */
const char *ae_cert_serial(const ae_cert *c);
const char *ae_cert_issuer(const ae_cert *c);
/* Returns 1 when the leaf's SAN (or CN without SAN) covers name (wildcards per RFC 6125). */
int ae_cert_covers(const ae_cert *c, const char *name);
/* The memory the cert holds, as accounted for cert_cache.max_bytes (docs/scale.md): its own
 * allocations, the leaf's DER and parsed public key, the private key; shared issuers excluded. */
size_t ae_cert_bytes(const ae_cert *c);
/* The intermediates parsed once and shared by every chain that carries them: how many distinct
 * certificates the table holds and how many chain references point at them (either may be NULL). */
void ae_cert_issuer_stats(size_t *distinct, size_t *refs);
/* Number of SAN DNS names and the i-th (owned by the cert). */
size_t ae_cert_name_count(const ae_cert *c);
const char *ae_cert_name(const ae_cert *c, size_t i);

/* Generates a self-signed ECDSA P-256 cert (CN, SKI, AKI, validity days) as PEM strings
 * (malloc'd, caller frees). names may be NULL. */
int ae_cert_generate_selfsigned(const char *cn, const char *const *names, size_t nnames, unsigned days,
                                char **cert_pem, char **key_pem, ae_err *err);

typedef struct ae_certstore ae_certstore;

/* Store options: max_entries bounds the named certificates held and max_bytes the memory they
 * hold (ae_cert_bytes + the entry; 0 = unbounded; beyond either the coldest names are evicted,
 * CLOCK); negative_slots sizes the cache of names storage lacks (0 = 16384). */
typedef struct ae_certstore_opts {
  size_t max_entries;
  size_t max_bytes;
  size_t negative_slots;
} ae_certstore_opts;

/* Called once per evicted name (store locks not held, on the thread that called put), with the
 * lowercase name and the evicted cert (borrowed: valid during the call). */
typedef void (*ae_certstore_evict_cb)(void *ud, const char *name, ae_cert *cert);

/* Creates an empty, unbounded store. Caller owns it (ae_certstore_free). */
int ae_certstore_new(ae_certstore **out);
/* Creates an empty store with options (o may be NULL). Caller owns it (ae_certstore_free). */
int ae_certstore_new_opts(const ae_certstore_opts *o, ae_certstore **out);
/* Sets the eviction callback (before the store is shared between threads). */
void ae_certstore_set_evict_cb(ae_certstore *cs, ae_certstore_evict_cb cb, void *ud);
/* The configured bound (0 = unbounded) and the number of evictions so far. */
size_t ae_certstore_max_entries(const ae_certstore *cs);
uint64_t ae_certstore_evictions(ae_certstore *cs);
/* The configured byte bound (0 = unbounded) and the bytes accounted to the entries now. */
size_t ae_certstore_max_bytes(const ae_certstore *cs);
size_t ae_certstore_bytes(ae_certstore *cs);
/* Negative cache (thread-safe, fixed size): remembers for ttl_ms that storage lacks name. */
void ae_certstore_mark_absent(ae_certstore *cs, const char *name, uint64_t ttl_ms);
/* Returns 1 while name is remembered as absent from storage. */
int ae_certstore_known_absent(ae_certstore *cs, const char *name);
/* Forgets an absent mark (a certificate for name was just stored). put() does this too. */
void ae_certstore_forget_absent(ae_certstore *cs, const char *name);
/* Frees the store and drops its references (certs in use by connections live on). */
void ae_certstore_free(ae_certstore *cs);
/* Installs or replaces name -> cert (store takes its own reference). Thread-safe. Names are
 * lowercase; "*.example.com" is a wildcard entry. */
int ae_certstore_put(ae_certstore *cs, const char *name, ae_cert *cert);
/* Removes name; returns AE_ENOTFOUND when absent. Thread-safe. */
int ae_certstore_remove(ae_certstore *cs, const char *name);
/* Exact match, then one-label wildcard. Returns a new reference (caller unrefs) or NULL.
 * Thread-safe; no allocation. Expired certificates are still returned (caller decides). */
ae_cert *ae_certstore_lookup(ae_certstore *cs, const char *name);
/* Sets the default certificate (store takes a reference). */
void ae_certstore_set_default(ae_certstore *cs, ae_cert *cert);
/* Returns a new reference to the default certificate or NULL. */
ae_cert *ae_certstore_default(ae_certstore *cs);
/* Number of named entries. */
size_t ae_certstore_count(ae_certstore *cs);

#endif
