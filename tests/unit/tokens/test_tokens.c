/* Capability tokens: Ed25519 vectors, base64url strictness, every reason code with a crafted
 * token, the pinned order, keyring refusals, revocation persistence, openssl interoperability. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "acmedge/tokens.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define NOW 1800000000LL

static void hex(const char *h, uint8_t *out, size_t n) {
  for (size_t i = 0; i < n; i++)
    sscanf(h + 2 * i, "%2hhx", &out[i]);
}

/* RFC 8032 §7.1 TEST 1..3 */
static const struct {
  const char *sk, *pk, *msg, *sig;
} k_vec[] = {
    {"9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
     "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a", "",
     "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"},
    {"4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
     "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c", "72",
     "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00"},
    {"c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
     "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025", "af82",
     "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a"},
};

static void test_rfc8032(void **state) {
  (void)state;
  for (size_t i = 0; i < AE_ARRAY_LEN(k_vec); i++) {
    uint8_t sk[32], pk[32], want_pk[32], msg[8], sig[64], want_sig[64];
    size_t ml = strlen(k_vec[i].msg) / 2;
    hex(k_vec[i].sk, sk, 32);
    hex(k_vec[i].pk, want_pk, 32);
    hex(k_vec[i].msg, msg, ml);
    hex(k_vec[i].sig, want_sig, 64);
    ae_ed25519_public(sk, pk);
    assert_memory_equal(pk, want_pk, 32);
    ae_ed25519_sign(sk, pk, msg, ml, sig);
    assert_memory_equal(sig, want_sig, 64);
    assert_int_equal(ae_ed25519_verify(pk, msg, ml, sig), 1);
    sig[5] ^= 1;
    assert_int_equal(ae_ed25519_verify(pk, msg, ml, sig), 0);
  }
}

static void test_b64_strict(void **state) {
  (void)state;
  uint8_t b[16];
  size_t n = 0;
  assert_int_equal(ae_tok_b64_decode("YWI", 3, b, sizeof(b), &n), 0);
  assert_int_equal(n, 2);
  assert_memory_equal(b, "ab", 2);
  assert_int_equal(ae_tok_b64_decode("YWI=", 4, b, sizeof(b), &n), AE_EINVAL);  /* padding */
  assert_int_equal(ae_tok_b64_decode("YWJ", 3, b, sizeof(b), &n), AE_EINVAL);   /* trailing bits */
  assert_int_equal(ae_tok_b64_decode("a+/b", 4, b, sizeof(b), &n), AE_EINVAL);  /* standard alphabet */
  assert_int_equal(ae_tok_b64_decode("YWJjZ", 5, b, sizeof(b), &n), AE_EINVAL); /* length 1 mod 4 */
  assert_int_equal(ae_tok_b64_decode("-_-_", 4, b, sizeof(b), &n), 0);
  char *e = ae_tok_b64_encode(b, n);
  assert_string_equal(e, "-_-_");
  free(e);
  assert_int_equal(ae_tok_b64_decode("AAAAAAAA", 8, b, 5, &n), AE_ELIMIT);
}

/* ---------------------------------------------------------------- fixture */

typedef struct {
  uint8_t seed[32], pub[32], seed2[32], pub2[32];
  ae_tok_keyring *kr;
  ae_tok_revset *rs;
  ae_tok_policy pol;
  uint8_t bind[32], other[32];
} fx;

static int setup(void **state) {
  fx *f = calloc(1, sizeof(*f));
  for (int i = 0; i < 32; i++) {
    f->seed[i] = (uint8_t)(i + 1);
    f->seed2[i] = (uint8_t)(200 - i);
    f->bind[i] = (uint8_t)(7 * i);
    f->other[i] = (uint8_t)(7 * i + 1);
  }
  ae_ed25519_public(f->seed, f->pub);
  ae_ed25519_public(f->seed2, f->pub2);
  char *k = ae_tok_b64_encode(f->pub, 32);
  json_t *o = json_pack("{s:s}", "ops", k);
  free(k);
  ae_err err = {0};
  assert_int_equal(ae_tok_keyring_from_json(o, "cap_tokens.keys", &f->kr, &err), 0);
  json_decref(o);
  assert_int_equal(ae_tok_revset_open(NULL, &f->rs, &err), 0);
  f->pol = (ae_tok_policy){.keys = f->kr, .revoked = f->rs, .audience = "edge-1", .leeway_s = 60,
                           .max_ttl_s = 86400};
  *state = f;
  return 0;
}

static int teardown(void **state) {
  fx *f = *state;
  ae_tok_keyring_free(f->kr);
  ae_tok_revset_free(f->rs);
  free(f);
  return 0;
}

/* Builds "cap:" b64(json) "." b64(sig) where sig covers context || b64(json) (or, with raw_json,
 * the JSON itself); siglen lets a test cut or extend the signature. Caller frees. */
static char *craft(const uint8_t *seed, const uint8_t *pub, const char *json, int raw_json, size_t siglen) {
  char *p = ae_tok_b64_encode((const uint8_t *)json, strlen(json));
  char msg[8192];
  size_t ml;
  if (raw_json)
    ml = (size_t)snprintf(msg, sizeof(msg), "%s", json);
  else
    ml = (size_t)snprintf(msg, sizeof(msg), "%s%s", AE_TOK_SIG_CONTEXT, p);
  uint8_t sig[65] = {0};
  ae_ed25519_sign(seed, pub, (const uint8_t *)msg, ml, sig);
  char *s = ae_tok_b64_encode(sig, siglen);
  size_t n = strlen(p) + strlen(s) + 8;
  char *t = malloc(n);
  snprintf(t, n, "cap:%s.%s", p, s);
  free(p);
  free(s);
  return t;
}

/* A claims object with sensible defaults; fmt-style overrides are applied by the callers. */
static char *claims(const char *iss, const char *aud, long long nbf, long long iat, long long exp, const char *extra) {
  char *j = malloc(2048);
  snprintf(j, 2048,
           "{\"v\":1,\"iss\":\"%s\",\"sub\":\"alice\",\"aud\":\"%s\",\"groups\":[\"read\",\"team-a\"],"
           "\"exp\":%lld,\"nbf\":%lld,\"iat\":%lld,\"jti\":\"AAECAwQFBgcICQoLDA0ODw\"%s}",
           iss, aud, exp, nbf, iat, extra ? extra : "");
  return j;
}

static ae_tok_reason run(fx *f, const char *tok, const uint8_t *binding, ae_tok_claims *c) {
  ae_tok_claims tmp;
  ae_tok_reason r = ae_tok_verify(&f->pol, tok, strlen(tok), binding, NOW, c ? c : &tmp);
  if (!c)
    ae_tok_claims_clear(&tmp);
  return r;
}

static ae_tok_reason run_json(fx *f, const char *json) {
  char *t = craft(f->seed, f->pub, json, 0, 64);
  ae_tok_reason r = run(f, t, NULL, NULL);
  free(t);
  return r;
}

static void test_valid(void **state) {
  fx *f = *state;
  char *j = claims("ops", "edge-1", NOW, NOW, NOW + 3600, NULL);
  char *t = craft(f->seed, f->pub, j, 0, 64);
  ae_tok_claims c;
  assert_int_equal(run(f, t, NULL, &c), AE_TOK_OK);
  assert_string_equal(c.sub, "alice");
  assert_string_equal(c.iss, "ops");
  assert_int_equal(c.ngroups, 2);
  char *want[] = {"team-a"}, *none[] = {"ops"};
  assert_int_equal(ae_tok_check_groups(&c, want, 1), AE_TOK_OK);
  assert_int_equal(ae_tok_check_groups(&c, none, 1), AE_TOK_INSUFFICIENT_SCOPE);
  assert_string_equal(ae_tok_reason_name(ae_tok_check_groups(&c, none, 1)), "insufficient_scope");
  ae_tok_claims_clear(&c);
  free(t);
  free(j);
}

static void test_minted(void **state) {
  fx *f = *state;
  char *groups[] = {"read"};
  ae_tok_mint_args a = {.iss = "ops", .sub = "bob", .aud = "edge-1", .groups = groups, .ngroups = 1,
                        .now = NOW, .ttl_s = 600, .cnf = f->bind};
  char *t = NULL;
  ae_err err = {0};
  assert_int_equal(ae_tok_mint(f->seed, f->pub, &a, &t, &err), 0);
  ae_tok_claims c;
  assert_int_equal(run(f, t, f->bind, &c), AE_TOK_OK);
  assert_true(c.has_cnf);
  assert_true(strlen(c.jti) >= 22); /* 128 random bits */
  ae_tok_claims_clear(&c);
  assert_int_equal(run(f, t, f->other, NULL), AE_TOK_BINDING_MISMATCH);
  assert_int_equal(run(f, t, NULL, NULL), AE_TOK_BINDING_MISMATCH);
  char *t2 = NULL;
  assert_int_equal(ae_tok_mint(f->seed, f->pub, &a, &t2, &err), 0);
  assert_string_not_equal(t, t2); /* fresh jti each time */
  free(t);
  free(t2);
}

static void test_prefix_shape_base64(void **state) {
  fx *f = *state;
  char *j = claims("ops", "edge-1", NOW, NOW, NOW + 3600, NULL);
  char *t = craft(f->seed, f->pub, j, 0, 64);
  char buf[4096];
  assert_int_equal(run(f, "Bearer xyz", NULL, NULL), AE_TOK_MISSING_PREFIX);
  snprintf(buf, sizeof(buf), "Cap:%s", t + 4);
  assert_int_equal(run(f, buf, NULL, NULL), AE_TOK_MISSING_PREFIX);
  assert_int_equal(run(f, "", NULL, NULL), AE_TOK_MISSING_PREFIX);
  assert_int_equal(run(f, "cap:abc", NULL, NULL), AE_TOK_MALFORMED);
  assert_int_equal(run(f, "cap:.abc", NULL, NULL), AE_TOK_MALFORMED);
  assert_int_equal(run(f, "cap:abc.", NULL, NULL), AE_TOK_MALFORMED);
  snprintf(buf, sizeof(buf), "%s.extra", t);
  assert_int_equal(run(f, buf, NULL, NULL), AE_TOK_BASE64);
  snprintf(buf, sizeof(buf), "%s==", t);
  assert_int_equal(run(f, buf, NULL, NULL), AE_TOK_BASE64);
  /* '-' and '_' swapped for the standard alphabet's '+' and '/' somewhere in the payload */
  strcpy(buf, t);
  buf[6] = '+';
  assert_int_equal(run(f, buf, NULL, NULL), AE_TOK_BASE64);
  buf[6] = '/';
  assert_int_equal(run(f, buf, NULL, NULL), AE_TOK_BASE64);
  /* non-canonical trailing bits: the last signature char of a 64-byte sig carries 4 unused bits */
  strcpy(buf, t);
  char *last = buf + strlen(buf) - 1;
  *last = *last == 'A' ? 'B' : (*last == 'B' ? 'C' : 'B');
  ae_tok_reason r = run(f, buf, NULL, NULL);
  assert_true(r == AE_TOK_BASE64);
  free(t);
  free(j);
}

static void test_sizes(void **state) {
  fx *f = *state;
  char *j = claims("ops", "edge-1", NOW, NOW, NOW + 3600, NULL);
  char *t63 = craft(f->seed, f->pub, j, 0, 63), *t65 = craft(f->seed, f->pub, j, 0, 65);
  assert_int_equal(run(f, t63, NULL, NULL), AE_TOK_BAD_SIGNATURE);
  assert_int_equal(run(f, t65, NULL, NULL), AE_TOK_BAD_SIGNATURE);
  free(t63);
  free(t65);
  /* 4097-byte payload (padded with spaces, still valid JSON) vs exactly 4096 */
  char *big = malloc(5000);
  size_t jl = strlen(j);
  memcpy(big, j, jl - 1);
  memset(big + jl - 1, ' ', 4097 - jl);
  strcpy(big + 4096, "}");
  assert_int_equal(strlen(big), 4097);
  assert_int_equal(run_json(f, big), AE_TOK_MALFORMED);
  strcpy(big + 4095, "}");
  assert_int_equal(strlen(big), 4096);
  assert_int_equal(run_json(f, big), AE_TOK_OK);
  free(big);
  /* text beyond AE_TOK_MAX_TEXT is refused before decoding */
  char *huge = malloc(AE_TOK_MAX_TEXT + 16);
  strcpy(huge, "cap:");
  memset(huge + 4, 'A', AE_TOK_MAX_TEXT + 8);
  huge[AE_TOK_MAX_TEXT + 12] = 0;
  huge[100] = '.';
  assert_int_equal(run(f, huge, NULL, NULL), AE_TOK_MALFORMED);
  free(huge);
  free(j);
}

static void test_json(void **state) {
  fx *f = *state;
  const char *bad[] = {
      "[]",
      "{}",
      "not json",
      "{\"v\":1,\"iss\":\"ops\",\"sub\":\"alice\",\"aud\":\"edge-1\",\"groups\":[],\"nbf\":1,\"iat\":1,\"jti\":\"x\"}",
      "{\"v\":1,\"iss\":\"ops\",\"sub\":\"alice\",\"aud\":\"edge-1\",\"groups\":[],\"exp\":\"1\",\"nbf\":1,\"iat\":1,\"jti\":\"x\"}",
      "{\"v\":1,\"iss\":\"ops\",\"sub\":\"alice\",\"aud\":\"edge-1\",\"groups\":[],\"exp\":-1,\"nbf\":1,\"iat\":1,\"jti\":\"x\"}",
      "{\"v\":1,\"iss\":\"ops\",\"sub\":\"alice\",\"aud\":\"edge-1\",\"groups\":[],\"exp\":1.5,\"nbf\":1,\"iat\":1,\"jti\":\"x\"}",
      "{\"v\":1,\"iss\":\"ops\",\"sub\":\"alice\",\"sub\":\"bob\",\"aud\":\"edge-1\",\"groups\":[],\"exp\":1800003600,\"nbf\":1,\"iat\":1,\"jti\":\"x\"}",
      "{\"v\":1,\"iss\":\"ops\",\"sub\":\"al\\u0000ice\",\"aud\":\"edge-1\",\"groups\":[],\"exp\":1800003600,\"nbf\":1,\"iat\":1,\"jti\":\"x\"}",
      "{\"v\":1,\"iss\":\"ops\",\"sub\":\"al\\r\\nice\",\"aud\":\"edge-1\",\"groups\":[],\"exp\":1800003600,\"nbf\":1,\"iat\":1,\"jti\":\"x\"}",
      "{\"v\":2,\"iss\":\"ops\",\"sub\":\"alice\",\"aud\":\"edge-1\",\"groups\":[],\"exp\":1800003600,\"nbf\":1,\"iat\":1,\"jti\":\"x\"}",
      "{\"v\":1,\"iss\":\"ops\",\"sub\":\"alice\",\"aud\":\"edge-1\",\"groups\":\"read\",\"exp\":1800003600,\"nbf\":1,\"iat\":1,\"jti\":\"x\"}",
      "{\"v\":1,\"iss\":\"ops\",\"sub\":\"alice\",\"aud\":\"edge-1\",\"groups\":[\"a,b\"],\"exp\":1800003600,\"nbf\":1,\"iat\":1,\"jti\":\"x\"}",
      "{\"v\":1,\"iss\":\"ops\",\"sub\":\"alice\",\"aud\":\"edge-1\",\"groups\":[],\"exp\":1800003600,\"nbf\":1,\"iat\":1,\"jti\":\"x\",\"role\":\"root\"}",
      "{\"v\":1,\"iss\":\"ops\",\"sub\":\"alice\",\"aud\":\"edge-1\",\"groups\":[],\"exp\":1800003600,\"nbf\":1,\"iat\":1,\"jti\":\"x\",\"cnf\":\"AAAA\"}",
      "{\"v\":1,\"iss\":\"ops\",\"sub\":\"\",\"aud\":\"edge-1\",\"groups\":[],\"exp\":1800003600,\"nbf\":1,\"iat\":1,\"jti\":\"x\"}",
  };
  for (size_t i = 0; i < AE_ARRAY_LEN(bad); i++) {
    ae_tok_reason r = run_json(f, bad[i]);
    if (r != AE_TOK_JSON)
      fail_msg("case %zu: %s -> %s", i, bad[i], ae_tok_reason_name(r));
  }
}

static void test_issuer_signature(void **state) {
  fx *f = *state;
  char *j = claims("ops", "edge-1", NOW, NOW, NOW + 3600, NULL);
  char *t = craft(f->seed2, f->pub2, j, 0, 64); /* another key */
  assert_int_equal(run(f, t, NULL, NULL), AE_TOK_BAD_SIGNATURE);
  free(t);
  t = craft(f->seed, f->pub, j, 1, 64); /* over the JSON, not its base64url */
  assert_int_equal(run(f, t, NULL, NULL), AE_TOK_BAD_SIGNATURE);
  free(t);
  /* a tampered payload: same JSON with one byte changed, old signature kept */
  t = craft(f->seed, f->pub, j, 0, 64);
  char *j2 = strdup(j);
  j2[strlen(j2) - 3] ^= 1; /* inside the jti */
  char *t2 = craft(f->seed, f->pub, j2, 0, 64);
  char *dot = strchr(t, '.'), *dot2 = strchr(t2, '.');
  char buf[4096];
  snprintf(buf, sizeof(buf), "%.*s%s", (int)(dot2 - t2), t2, dot);
  assert_int_equal(run(f, buf, NULL, NULL), AE_TOK_BAD_SIGNATURE);
  free(t);
  free(t2);
  free(j2);
  /* an unknown issuer is reported before the signature is looked at */
  char *ju = claims("nobody", "edge-1", NOW, NOW, NOW + 3600, NULL);
  t = craft(f->seed2, f->pub2, ju, 0, 64);
  assert_int_equal(run(f, t, NULL, NULL), AE_TOK_UNKNOWN_ISSUER);
  free(t);
  free(ju);
  free(j);
}

static ae_tok_reason run_times(fx *f, long long nbf, long long iat, long long exp) {
  char *j = claims("ops", "edge-1", nbf, iat, exp, NULL);
  ae_tok_reason r = run_json(f, j);
  free(j);
  return r;
}

static void test_times(void **state) {
  fx *f = *state;
  f->pol.leeway_s = 0;
  assert_int_equal(run_times(f, NOW - 10, NOW - 10, NOW), AE_TOK_EXPIRED); /* exp == now */
  assert_int_equal(run_times(f, NOW - 10, NOW - 10, NOW + 1), AE_TOK_OK);
  assert_int_equal(run_times(f, NOW + 1, NOW, NOW + 100), AE_TOK_NOT_YET_VALID);
  assert_int_equal(run_times(f, NOW, NOW, NOW + 100), AE_TOK_OK);
  f->pol.leeway_s = 60;
  assert_int_equal(run_times(f, NOW - 100, NOW - 100, NOW - 60), AE_TOK_EXPIRED);
  assert_int_equal(run_times(f, NOW - 100, NOW - 100, NOW - 59), AE_TOK_OK);
  assert_int_equal(run_times(f, NOW + 60, NOW, NOW + 100), AE_TOK_OK);
  assert_int_equal(run_times(f, NOW + 61, NOW, NOW + 100), AE_TOK_NOT_YET_VALID);
  assert_int_equal(run_times(f, NOW, NOW + 61, NOW + 100), AE_TOK_NOT_YET_VALID);
  /* lifetime: exactly max passes, one more second does not; a later iat does not hide an early nbf */
  assert_int_equal(run_times(f, NOW, NOW, NOW + 86400), AE_TOK_OK);
  assert_int_equal(run_times(f, NOW, NOW, NOW + 86401), AE_TOK_TOO_LONG_LIVED);
  assert_int_equal(run_times(f, NOW - 86400, NOW, NOW + 100), AE_TOK_TOO_LONG_LIVED);
  /* order: expired beats a wrong audience */
  char *j = claims("ops", "other", NOW - 100, NOW - 100, NOW - 61, NULL);
  assert_int_equal(run_json(f, j), AE_TOK_EXPIRED);
  free(j);
}

static void test_revoked(void **state) {
  fx *f = *state;
  char *j = claims("ops", "edge-1", NOW, NOW, NOW + 3600, NULL);
  char *t = craft(f->seed, f->pub, j, 0, 64);
  ae_err err = {0};
  int ch = 0;
  assert_int_equal(ae_tok_revset_add(f->rs, "AAECAwQFBgcICQoLDA0ODw", NULL, NULL, &ch, &err), 0);
  assert_int_equal(ch, 1);
  assert_int_equal(ae_tok_revset_add(f->rs, "AAECAwQFBgcICQoLDA0ODw", NULL, NULL, &ch, &err), 0);
  assert_int_equal(ch, 0);
  assert_int_equal(run(f, t, NULL, NULL), AE_TOK_REVOKED);
  assert_int_equal(ae_tok_revset_remove(f->rs, "AAECAwQFBgcICQoLDA0ODw", NULL, NULL, &ch, &err), 0);
  assert_int_equal(ch, 1);
  assert_int_equal(run(f, t, NULL, NULL), AE_TOK_OK);
  assert_int_equal(ae_tok_revset_add(f->rs, NULL, "ops", "alice", &ch, &err), 0);
  /* order: revoked beats unbound */
  f->pol.require_bind = 1;
  assert_int_equal(run(f, t, NULL, NULL), AE_TOK_REVOKED);
  assert_int_equal(ae_tok_revset_remove(f->rs, NULL, "ops", "alice", &ch, &err), 0);
  assert_int_equal(run(f, t, NULL, NULL), AE_TOK_UNBOUND);
  assert_int_equal(run(f, t, f->bind, NULL), AE_TOK_UNBOUND); /* even with a client cert */
  f->pol.require_bind = 0;
  assert_int_equal(run(f, t, NULL, NULL), AE_TOK_OK);
  assert_int_equal(ae_tok_revset_add(f->rs, NULL, "ops", NULL, &ch, &err), AE_EINVAL);
  free(t);
  free(j);
}

static void test_audience_binding(void **state) {
  fx *f = *state;
  char *j = claims("ops", "edge-2", NOW, NOW, NOW + 3600, NULL);
  assert_int_equal(run_json(f, j), AE_TOK_AUDIENCE_MISMATCH);
  f->pol.audience = NULL;
  assert_int_equal(run_json(f, j), AE_TOK_OK);
  free(j);
  f->pol.audience = "edge-1";
  char *c = ae_tok_b64_encode(f->bind, 32), extra[128];
  snprintf(extra, sizeof(extra), ",\"cnf\":\"%s\"", c);
  free(c);
  j = claims("ops", "edge-1", NOW, NOW, NOW + 3600, extra);
  char *t = craft(f->seed, f->pub, j, 0, 64);
  f->pol.require_bind = 1;
  assert_int_equal(run(f, t, f->bind, NULL), AE_TOK_OK);
  assert_int_equal(run(f, t, f->other, NULL), AE_TOK_BINDING_MISMATCH);
  assert_int_equal(run(f, t, NULL, NULL), AE_TOK_BINDING_MISMATCH);
  free(t);
  free(j);
}

static void test_keyring(void **state) {
  (void)state;
  const char *bad[] = {
      "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",  /* y = 0 */
      "AQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",  /* identity */
      "AQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAIA",  /* identity with the sign bit */
      "JuiVj8KyJ7BFw_SJ8u-Y8NXfrAXTxjM5sTgCiG1T_AU",  /* order 8 */
      "xxdqcD1N2E-6PAt2DRBnDyogU_osOczGTsf9d5KsA3o",  /* order 8 */
      "7P________________________________________38",  /* p - 1 */
      "7f________________________________________38",  /* p */
      "7v________________________________________38",  /* p + 1 */
      "AAAA",                                          /* 3 bytes */
      "11qYAYKxCrfVS_7TyWQHOg7hcvPaYiMlrwIaaPcHURoA", /* 33 bytes */
      "11qYAYKxCrfVS_7TyWQHOg7hcvPaYiMlrwIaaPcHURo=", /* padding */
      "11qYAYKxCrfVS/7TyWQHOg7hcvPaYiMlrwIaaPcHURo",  /* standard alphabet */
      "11qYAYKxCrfVS_7TyWQHOg7hcvPaYiMlrwIaaPcHURp",  /* non-canonical trailing bits */
  };
  ae_err err = {0};
  ae_tok_keyring *kr = NULL;
  for (size_t i = 0; i < AE_ARRAY_LEN(bad); i++) {
    json_t *o = json_pack("{s:s}", "ops", bad[i]);
    int rc = ae_tok_keyring_from_json(o, "cap_tokens.keys", &kr, &err);
    json_decref(o);
    if (rc != AE_EINVAL)
      fail_msg("key %zu (%s) accepted", i, bad[i]);
    assert_non_null(strstr(err.msg, "cap_tokens.keys.ops"));
  }
  json_t *o = json_pack("{s:s,s:s}", "ops", "11qYAYKxCrfVS_7TyWQHOg7hcvPaYiMlrwIaaPcHURo", "ci",
                        "PUAXw-hDiVqStwqnTRt-vJyYLM8uxJaMwM1V8Sr0Zgw");
  assert_int_equal(ae_tok_keyring_from_json(o, "k", &kr, &err), 0);
  json_decref(o);
  assert_int_equal(ae_tok_keyring_count(kr), 2);
  const char *iss;
  const uint8_t *key;
  assert_int_equal(ae_tok_keyring_at(kr, 1, &iss, &key), 0);
  assert_string_equal(iss, "ci");
  ae_tok_keyring_free(kr);
  /* why the refusal matters: nettle accepts R = identity, S = 0 under the identity key */
  uint8_t id[32] = {1}, sig[64] = {1};
  assert_int_equal(ae_ed25519_verify(id, (const uint8_t *)"anything", 8, sig), 1);
}

static void test_revset_persist(void **state) {
  (void)state;
  char dir[] = "/tmp/ae_tok_XXXXXX";
  assert_non_null(mkdtemp(dir));
  char path[128];
  snprintf(path, sizeof(path), "%s/revoked.json", dir);
  ae_err err = {0};
  ae_tok_revset *rs = NULL;
  int ch = 0;
  assert_int_equal(ae_tok_revset_open(path, &rs, &err), 0);
  assert_int_equal(ae_tok_revset_add(rs, "j1", NULL, NULL, &ch, &err), 0);
  assert_int_equal(ae_tok_revset_add(rs, NULL, "ops", "bob", &ch, &err), 0);
  ae_tok_revset_free(rs);
  assert_int_equal(ae_tok_revset_open(path, &rs, &err), 0);
  assert_true(ae_tok_revset_contains(rs, "j1", "x", "y"));
  assert_true(ae_tok_revset_contains(rs, "j2", "ops", "bob"));
  assert_false(ae_tok_revset_contains(rs, "j2", "ops", "alice"));
  ae_tok_revset_free(rs);
  FILE *fp = fopen(path, "w");
  fputs("{\"jti\": [1], \"subjects\": []}", fp);
  fclose(fp);
  assert_int_equal(ae_tok_revset_open(path, &rs, &err), AE_EINVAL);
  assert_non_null(strstr(err.msg, "revoked.json"));
  unlink(path);
  rmdir(dir);
}

/* A second implementation signs: openssl genpkey + pkeyutl -rawin (skipped only when the
 * openssl binary is absent, which setup.sh installs). */
static void test_openssl_interop(void **state) {
  fx *f = *state;
  if (system("openssl version >/dev/null 2>&1") != 0)
    skip();
  char dir[] = "/tmp/ae_tok_ossl_XXXXXX";
  assert_non_null(mkdtemp(dir));
  char *j = claims("ossl", "edge-1", NOW, NOW, NOW + 600, NULL);
  char *p = ae_tok_b64_encode((const uint8_t *)j, strlen(j));
  char cmd[4096];
  snprintf(cmd, sizeof(cmd),
           "cd %s && openssl genpkey -algorithm ed25519 -out k.pem 2>/dev/null && "
           "openssl pkey -in k.pem -pubout -outform DER | tail -c 32 > pub.bin && "
           "printf '%%s' '%s%s' > msg.txt && "
           "openssl pkeyutl -sign -rawin -inkey k.pem -in msg.txt -out sig.bin",
           dir, AE_TOK_SIG_CONTEXT, p);
  assert_int_equal(system(cmd), 0);
  uint8_t pub[32], sig[64];
  char fn[128];
  snprintf(fn, sizeof(fn), "%s/pub.bin", dir);
  FILE *fp = fopen(fn, "rb");
  assert_int_equal(fread(pub, 1, 32, fp), 32);
  fclose(fp);
  snprintf(fn, sizeof(fn), "%s/sig.bin", dir);
  fp = fopen(fn, "rb");
  assert_int_equal(fread(sig, 1, 64, fp), 64);
  fclose(fp);
  snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
  assert_int_equal(system(cmd), 0);
  char *kb = ae_tok_b64_encode(pub, 32), *sb = ae_tok_b64_encode(sig, 64);
  json_t *o = json_pack("{s:s}", "ossl", kb);
  ae_tok_keyring *kr = NULL;
  ae_err err = {0};
  assert_int_equal(ae_tok_keyring_from_json(o, "k", &kr, &err), 0);
  json_decref(o);
  char tok[4096];
  snprintf(tok, sizeof(tok), "cap:%s.%s", p, sb);
  ae_tok_policy pol = f->pol;
  pol.keys = kr;
  ae_tok_claims c;
  assert_int_equal(ae_tok_verify(&pol, tok, strlen(tok), NULL, NOW, &c), AE_TOK_OK);
  assert_string_equal(c.iss, "ossl");
  ae_tok_claims_clear(&c);
  tok[10] ^= 1;
  assert_int_not_equal(ae_tok_verify(&pol, tok, strlen(tok), NULL, NOW, &c), AE_TOK_OK);
  ae_tok_keyring_free(kr);
  free(kb);
  free(sb);
  free(p);
  free(j);
}

/* The cache skips only the signature: revocation, expiry, binding and the key generation still
 * apply to a cached token. */
static void test_cache(void **state) {
  fx *f = *state;
  char *j = claims("ops", "edge-1", NOW, NOW, NOW + 600, NULL);
  char *t = craft(f->seed, f->pub, j, 0, 64);
  ae_tok_cache *tc = ae_tok_cache_new(16);
  ae_tok_claims c;
  assert_int_equal(ae_tok_cache_verify(tc, 1, &f->pol, t, strlen(t), NULL, NOW, &c), AE_TOK_OK);
  ae_tok_claims_clear(&c);
  assert_int_equal(ae_tok_cache_verify(tc, 1, &f->pol, t, strlen(t), NULL, NOW, &c), AE_TOK_OK);
  assert_string_equal(c.sub, "alice");
  ae_tok_claims_clear(&c);
  ae_err err = {0};
  int ch = 0;
  assert_int_equal(ae_tok_revset_add(f->rs, NULL, "ops", "alice", &ch, &err), 0);
  assert_int_equal(ae_tok_cache_verify(tc, 1, &f->pol, t, strlen(t), NULL, NOW, &c), AE_TOK_REVOKED);
  assert_int_equal(ae_tok_revset_remove(f->rs, NULL, "ops", "alice", &ch, &err), 0);
  assert_int_equal(ae_tok_cache_verify(tc, 1, &f->pol, t, strlen(t), NULL, NOW + 700, &c), AE_TOK_EXPIRED);
  /* a new generation with another key for "ops": the cached signature no longer counts */
  char *k2 = ae_tok_b64_encode(f->pub2, 32);
  json_t *o = json_pack("{s:s}", "ops", k2);
  free(k2);
  ae_tok_keyring *kr2 = NULL;
  assert_int_equal(ae_tok_keyring_from_json(o, "k", &kr2, &err), 0);
  json_decref(o);
  ae_tok_policy p2 = f->pol;
  p2.keys = kr2;
  assert_int_equal(ae_tok_cache_verify(tc, 2, &p2, t, strlen(t), NULL, NOW, &c), AE_TOK_BAD_SIGNATURE);
  /* a tampered copy is another key in the cache and fails on its own */
  t[strlen(t) - 2] ^= 1;
  assert_int_not_equal(ae_tok_cache_verify(tc, 1, &f->pol, t, strlen(t), NULL, NOW, &c), AE_TOK_OK);
  ae_tok_keyring_free(kr2);
  ae_tok_cache_free(tc);
  free(t);
  free(j);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_rfc8032),
      cmocka_unit_test(test_b64_strict),
      cmocka_unit_test_setup_teardown(test_valid, setup, teardown),
      cmocka_unit_test_setup_teardown(test_minted, setup, teardown),
      cmocka_unit_test_setup_teardown(test_prefix_shape_base64, setup, teardown),
      cmocka_unit_test_setup_teardown(test_sizes, setup, teardown),
      cmocka_unit_test_setup_teardown(test_json, setup, teardown),
      cmocka_unit_test_setup_teardown(test_issuer_signature, setup, teardown),
      cmocka_unit_test_setup_teardown(test_times, setup, teardown),
      cmocka_unit_test_setup_teardown(test_revoked, setup, teardown),
      cmocka_unit_test_setup_teardown(test_audience_binding, setup, teardown),
      cmocka_unit_test_setup_teardown(test_cache, setup, teardown),
      cmocka_unit_test(test_keyring),
      cmocka_unit_test(test_revset_persist),
      cmocka_unit_test_setup_teardown(test_openssl_interop, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
