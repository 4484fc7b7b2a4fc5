/* libFuzzer target for the capability token parser (src/tokens/tokens.c): everything before the
 * signature check runs on attacker bytes. Besides sanitizer reports it checks that accepted
 * tokens hold well-formed claims, that base64url decoding is canonical (decode then encode gives
 * back the input) and that parsing is deterministic. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "acmedge/tokens.h"

#define CHECK(cond)                                                                \
  do {                                                                             \
    if (!(cond)) {                                                                 \
      fprintf(stderr, "invariant failed: %s (%s:%d)\n", #cond, __FILE__, __LINE__); \
      abort();                                                                     \
    }                                                                              \
  } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_str(const char *s) {
  CHECK(s && *s && strlen(s) <= AE_TOK_MAX_STR);
  for (const char *p = s; *p; p++)
    CHECK((unsigned char)*p >= 0x20 && *p != 0x7f);
}

static void check_b64(const uint8_t *data, size_t size) {
  uint8_t out[1024];
  size_t n = 0;
  if (size > 1300 || ae_tok_b64_decode((const char *)data, size, out, sizeof(out), &n) != 0)
    return;
  char *e = ae_tok_b64_encode(out, n);
  CHECK(strlen(e) == size && memcmp(e, data, size) == 0);
  free(e);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char *copy = malloc(size ? size : 1);
  if (!copy)
    abort();
  memcpy(copy, data, size);
  check_b64(data, size);
  ae_tok_parsed t;
  ae_tok_reason r = ae_tok_parse(copy, size, &t);
  CHECK(r <= AE_TOK_JSON || r == AE_TOK_BAD_SIGNATURE); /* the sizes step owns a wrong signature length */
  if (r == AE_TOK_OK) {
    const ae_tok_claims *c = &t.claims;
    check_str(c->iss);
    check_str(c->sub);
    check_str(c->aud);
    check_str(c->jti);
    CHECK(c->ngroups <= AE_TOK_MAX_GROUPS);
    for (size_t i = 0; i < c->ngroups; i++) {
      check_str(c->groups[i]);
      CHECK(!strchr(c->groups[i], ','));
    }
    CHECK(c->exp >= 0 && c->nbf >= 0 && c->iat >= 0);
    CHECK(t.payload_b64 > copy && t.payload_b64 + t.payload_b64_len < copy + size);
  }
  ae_tok_parsed t2;
  CHECK(ae_tok_parse(copy, size, &t2) == r);
  ae_tok_claims_clear(&t.claims);
  ae_tok_claims_clear(&t2.claims);
  free(copy);
  return 0;
}
