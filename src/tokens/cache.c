/* Verified-token cache. An entry holds the claims of a token whose signature verified under the
 * keyring of generation `gen`; it is keyed by the SHA-256 of the exact token text, so a hit means
 * the same signed bytes. Only parsing and the signature are skipped: time, lifetime, revocation,
 * audience and binding are checked on every use, and an entry is dropped once the token expired. */
#include "acmedge/metrics.h"
#include "acmedge/tokens.h"

#include <nettle/sha2.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
  int used;
  uintptr_t gen;
  uint8_t key[SHA256_DIGEST_SIZE];
  ae_tok_claims c;
} slot;

struct ae_tok_cache {
  pthread_mutex_t mu;
  size_t n;
  slot *s;
};

ae_tok_cache *ae_tok_cache_new(size_t slots) {
  ae_tok_cache *tc = ae_calloc(1, sizeof(*tc));
  pthread_mutex_init(&tc->mu, NULL);
  tc->n = slots ? slots : 1;
  tc->s = ae_calloc(tc->n, sizeof(slot));
  return tc;
}

void ae_tok_cache_free(ae_tok_cache *tc) {
  if (!tc)
    return;
  for (size_t i = 0; i < tc->n; i++)
    ae_tok_claims_clear(&tc->s[i].c);
  free(tc->s);
  pthread_mutex_destroy(&tc->mu);
  free(tc);
}

static void copy_claims(ae_tok_claims *dst, const ae_tok_claims *src) {
  *dst = *src;
  dst->iss = ae_strdup(src->iss);
  dst->sub = ae_strdup(src->sub);
  dst->aud = ae_strdup(src->aud);
  dst->jti = ae_strdup(src->jti);
  dst->groups = ae_calloc(src->ngroups ? src->ngroups : 1, sizeof(char *));
  for (size_t i = 0; i < src->ngroups; i++)
    dst->groups[i] = ae_strdup(src->groups[i]);
}

ae_tok_reason ae_tok_cache_verify(ae_tok_cache *tc, uintptr_t gen, const ae_tok_policy *p, const char *text,
                                  size_t len, const uint8_t *binding, int64_t now, ae_tok_claims *claims) {
  memset(claims, 0, sizeof(*claims));
  if (!tc || len > AE_TOK_MAX_TEXT)
    return ae_tok_verify(p, text, len, binding, now, claims);
  uint8_t key[SHA256_DIGEST_SIZE];
  struct sha256_ctx h;
  sha256_init(&h);
  sha256_update(&h, len, (const uint8_t *)text);
  sha256_digest(&h, sizeof(key), key);
  size_t idx = ((size_t)key[0] | (size_t)key[1] << 8 | (size_t)key[2] << 16) % tc->n;

  pthread_mutex_lock(&tc->mu);
  slot *s = &tc->s[idx];
  int hit = s->used && s->gen == gen && memcmp(s->key, key, sizeof(key)) == 0;
  if (hit)
    copy_claims(claims, &s->c);
  pthread_mutex_unlock(&tc->mu);
  if (hit) {
    ae_tok_reason r = ae_tok_check_claims(p, claims, binding, now);
    if (r != AE_TOK_OK)
      ae_tok_claims_clear(claims);
    else
      ae_metrics_count_label("token_verified", "cached");
    return r;
  }
  ae_tok_reason r = ae_tok_verify(p, text, len, binding, now, claims);
  if (r != AE_TOK_OK)
    return r;
  pthread_mutex_lock(&tc->mu);
  s = &tc->s[idx];
  ae_tok_claims_clear(&s->c);
  copy_claims(&s->c, claims);
  memcpy(s->key, key, sizeof(key));
  s->gen = gen;
  s->used = 1;
  pthread_mutex_unlock(&tc->mu);
  ae_metrics_count_label("token_verified", "full");
  return AE_TOK_OK;
}
