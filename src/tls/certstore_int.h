/* Private to the certstore files: name hashing shared by the table and the negative cache. */
#ifndef ACMEDGE_CERTSTORE_INT_H
#define ACMEDGE_CERTSTORE_INT_H

#include <stddef.h>
#include <stdint.h>

static inline char cs_lower(char ch) { return (ch >= 'A' && ch <= 'Z') ? (char)(ch + 32) : ch; }

/* FNV-1a over the lowercased bytes of prefix then s, so a wildcard key can be hashed in place. */
static inline uint64_t cs_hash_name(const char *prefix, const char *s) {
  uint64_t h = 1469598103934665603ull;
  for (const char *p = prefix; *p; p++) {
    h ^= (unsigned char)cs_lower(*p);
    h *= 1099511628211ull;
  }
  for (const char *p = s; *p; p++) {
    h ^= (unsigned char)cs_lower(*p);
    h *= 1099511628211ull;
  }
  return h;
}

typedef struct cs_negcache cs_negcache;

/* A bounded, direct-mapped set of recently missed name hashes with an expiry each. */
cs_negcache *cs_neg_new(size_t slots);
void cs_neg_free(cs_negcache *n);
void cs_neg_put(cs_negcache *n, const char *name, uint64_t now_ms, uint64_t ttl_ms);
int cs_neg_has(cs_negcache *n, const char *name, uint64_t now_ms);
void cs_neg_del(cs_negcache *n, const char *name);
size_t cs_neg_slots(const cs_negcache *n);

/* Accounted sizes of GnuTLS objects a cert holds (docs/scale.md, "How a cached name is
 * accounted"): measured with GnuTLS 3.7 as the heap growth per object, including malloc's
 * per-chunk overhead. The external (compact) key wrapper is the gnutls_privkey_st alone; an
 * x509 key adds its bignums and ASN.1 tree; a parsed public key is its struct plus bignums. */
#define CS_EXT_PRIVKEY_BYTES 128
#define CS_X509_PRIVKEY_BYTES 2000
#define CS_PUBKEY_BYTES 690

#include <gnutls/abstract.h>
#include <gnutls/x509.h>

/* For ECDSA P-256/P-384 keys: builds in *out an external key that signs with the scalar k alone
 * (big-endian bytes as GnuTLS exports them; caller owns *out, gnutls_privkey_deinit) and sets
 * *bytes to its accounted size; returns 1. Returns 0 (nothing allocated) for another curve or a
 * scalar that does not fit it: the caller keeps the GnuTLS form. k is only read. */
int cs_key_compact(gnutls_ecc_curve_t curve, const gnutls_datum_t *k, gnutls_privkey_t *out, size_t *bytes);

/* The shared parsed form of the intermediate whose DER is der: a struct copy whose DER and public
 * key belong to the table (release with cs_issuer_put). Parses der only when no chain holds that
 * certificate yet. 0 or a GnuTLS error. Thread-safe. */
int cs_issuer_get(const gnutls_datum_t *der, gnutls_pcert_st *out);
/* Drops one reference taken by cs_issuer_get; the last one frees the parsed certificate. */
void cs_issuer_put(const gnutls_pcert_st *p);

#endif
