/* Token verification after parsing: issuer → signature → time window → lifetime → revocation →
 * audience → channel binding. The order is part of the contract (docs/tokens.md): a reason code
 * must not depend on anything an attacker can vary after a failed earlier check. */
#include "acmedge/tokens.h"

#include <stdlib.h>
#include <string.h>

/* Signs and verifies "acmedge-cap-v1." || payload_b64: the context string keeps these signatures
 * from being valid for any other protocol that signs base64url text with the same key. */
static uint8_t *signed_bytes(const char *b64, size_t n, size_t *len) {
  const size_t cl = sizeof(AE_TOK_SIG_CONTEXT) - 1;
  uint8_t *m = ae_malloc(cl + n + 1);
  memcpy(m, AE_TOK_SIG_CONTEXT, cl);
  memcpy(m + cl, b64, n);
  *len = cl + n;
  return m;
}

static int ct_equal32(const uint8_t *a, const uint8_t *b) {
  volatile uint8_t d = 0;
  for (size_t i = 0; i < 32; i++)
    d |= a[i] ^ b[i];
  return d == 0;
}

static ae_tok_reason check_signed(const ae_tok_policy *p, const ae_tok_parsed *t) {
  const uint8_t *key = ae_tok_keyring_get(p->keys, t->claims.iss);
  if (!key)
    return AE_TOK_UNKNOWN_ISSUER;
  size_t n = 0;
  uint8_t *m = signed_bytes(t->payload_b64, t->payload_b64_len, &n);
  int ok = ae_ed25519_verify(key, m, n, t->sig);
  free(m);
  return ok ? AE_TOK_OK : AE_TOK_BAD_SIGNATURE;
}

ae_tok_reason ae_tok_check_claims(const ae_tok_policy *p, const ae_tok_claims *c, const uint8_t *binding,
                                  int64_t now) {
  int64_t leeway = p->leeway_s > 0 ? p->leeway_s : 0;
  /* iat in the future counts as not yet valid too: otherwise a far-future iat would let a token
   * pass the lifetime check below while being usable from nbf on. */
  if (now + leeway < c->nbf || now + leeway < c->iat)
    return AE_TOK_NOT_YET_VALID;
  if (now - leeway >= c->exp)
    return AE_TOK_EXPIRED;
  int64_t start = c->nbf < c->iat ? c->nbf : c->iat;
  if (p->max_ttl_s > 0 && c->exp - start > p->max_ttl_s)
    return AE_TOK_TOO_LONG_LIVED;
  if (p->revoked && ae_tok_revset_contains(p->revoked, c->jti, c->iss, c->sub))
    return AE_TOK_REVOKED;
  if (p->audience && *p->audience && strcmp(p->audience, c->aud) != 0)
    return AE_TOK_AUDIENCE_MISMATCH;
  if (!c->has_cnf)
    return p->require_bind ? AE_TOK_UNBOUND : AE_TOK_OK;
  if (!binding || !ct_equal32(binding, c->cnf))
    return AE_TOK_BINDING_MISMATCH;
  return AE_TOK_OK;
}

ae_tok_reason ae_tok_verify(const ae_tok_policy *p, const char *text, size_t len, const uint8_t *binding,
                            int64_t now, ae_tok_claims *claims) {
  memset(claims, 0, sizeof(*claims));
  ae_tok_parsed t;
  ae_tok_reason r = ae_tok_parse(text, len, &t);
  if (r == AE_TOK_OK)
    r = check_signed(p, &t);
  if (r == AE_TOK_OK)
    r = ae_tok_check_claims(p, &t.claims, binding, now);
  if (r != AE_TOK_OK) {
    ae_tok_claims_clear(&t.claims);
    return r;
  }
  *claims = t.claims;
  return AE_TOK_OK;
}

ae_tok_reason ae_tok_check_groups(const ae_tok_claims *c, char *const *groups, size_t n) {
  if (n == 0)
    return AE_TOK_OK;
  for (size_t i = 0; i < n; i++)
    for (size_t j = 0; j < c->ngroups; j++)
      if (strcmp(groups[i], c->groups[j]) == 0)
        return AE_TOK_OK;
  return AE_TOK_INSUFFICIENT_SCOPE;
}
