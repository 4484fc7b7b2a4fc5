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

#endif
