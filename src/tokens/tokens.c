/* Token parsing up to (and including) the JSON step: nothing here trusts the payload, so every
 * byte is checked before it is decoded and the JSON parse is bounded by AE_TOK_MAX_PAYLOAD. */
#include "acmedge/tokens.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

static const char *const k_reason[AE_TOK_REASON_COUNT] = {
    "ok",         "missing_prefix", "malformed",     "base64",         "json",
    "unknown_issuer", "bad_signature", "not_yet_valid", "expired",    "too_long_lived",
    "revoked",    "audience_mismatch", "unbound",    "binding_mismatch", "insufficient_scope"};

const char *ae_tok_reason_name(ae_tok_reason r) {
  return (unsigned)r < AE_TOK_REASON_COUNT ? k_reason[r] : "unknown";
}

void ae_tok_claims_clear(ae_tok_claims *c) {
  if (!c)
    return;
  free(c->iss);
  free(c->sub);
  free(c->aud);
  free(c->jti);
  for (size_t i = 0; i < c->ngroups; i++)
    free(c->groups[i]);
  free(c->groups);
  memset(c, 0, sizeof(*c));
}

/* ---------------------------------------------------------------- base64url */

static const char k_b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

char *ae_tok_b64_encode(const uint8_t *data, size_t n) {
  char *out = ae_malloc((n + 2) / 3 * 4 + 1);
  size_t o = 0, i = 0;
  for (; i + 2 < n; i += 3) {
    uint32_t v = (uint32_t)data[i] << 16 | (uint32_t)data[i + 1] << 8 | data[i + 2];
    out[o++] = k_b64[v >> 18];
    out[o++] = k_b64[(v >> 12) & 63];
    out[o++] = k_b64[(v >> 6) & 63];
    out[o++] = k_b64[v & 63];
  }
  if (n - i == 1) {
    uint32_t v = (uint32_t)data[i] << 16;
    out[o++] = k_b64[v >> 18];
    out[o++] = k_b64[(v >> 12) & 63];
  } else if (n - i == 2) {
    uint32_t v = (uint32_t)data[i] << 16 | (uint32_t)data[i + 1] << 8;
    out[o++] = k_b64[v >> 18];
    out[o++] = k_b64[(v >> 12) & 63];
    out[o++] = k_b64[(v >> 6) & 63];
  }
  out[o] = 0;
  return out;
}

static int b64_val(unsigned char ch) {
  if (ch >= 'A' && ch <= 'Z')
    return ch - 'A';
  if (ch >= 'a' && ch <= 'z')
    return ch - 'a' + 26;
  if (ch >= '0' && ch <= '9')
    return ch - '0' + 52;
  if (ch == '-')
    return 62;
  if (ch == '_')
    return 63;
  return -1;
}

int ae_tok_b64_decode(const char *s, size_t len, uint8_t *out, size_t cap, size_t *outlen) {
  if (len % 4 == 1)
    return AE_EINVAL;
  size_t need = len / 4 * 3 + (len % 4 ? len % 4 - 1 : 0);
  if (need > cap)
    return AE_ELIMIT;
  size_t o = 0;
  uint32_t acc = 0;
  int bits = 0;
  for (size_t i = 0; i < len; i++) {
    int v = b64_val((unsigned char)s[i]);
    if (v < 0)
      return AE_EINVAL;
    acc = (acc << 6) | (uint32_t)v;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out[o++] = (uint8_t)(acc >> bits);
      acc &= (1u << bits) - 1;
    }
  }
  /* Leftover bits must be zero, otherwise two texts would decode to the same bytes. */
  if (acc != 0)
    return AE_EINVAL;
  *outlen = o;
  return 0;
}

/* ---------------------------------------------------------------- JSON claims */

/* A string claim: non-empty, bounded, no control characters (sub and groups reach HTTP headers). */
static int claim_str(json_t *v, char **dst) {
  if (!json_is_string(v))
    return -1;
  const char *s = json_string_value(v);
  size_t n = json_string_length(v);
  if (n == 0 || n > AE_TOK_MAX_STR || strlen(s) != n)
    return -1;
  for (size_t i = 0; i < n; i++) {
    unsigned char ch = (unsigned char)s[i];
    if (ch < 0x20 || ch == 0x7f)
      return -1;
  }
  *dst = ae_strdup(s);
  return 0;
}

static int claim_time(json_t *v, int64_t *dst) {
  if (!json_is_integer(v) || json_integer_value(v) < 0)
    return -1;
  *dst = (int64_t)json_integer_value(v);
  return 0;
}

static int claim_groups(json_t *v, ae_tok_claims *c) {
  if (!json_is_array(v) || json_array_size(v) > AE_TOK_MAX_GROUPS)
    return -1;
  size_t n = json_array_size(v);
  c->groups = ae_calloc(n ? n : 1, sizeof(char *));
  for (size_t i = 0; i < n; i++) {
    char *g = NULL;
    /* A comma would make X-Auth-Groups ambiguous. */
    if (claim_str(json_array_get(v, i), &g) || strchr(g, ',') || strchr(g, ' ')) {
      free(g);
      return -1;
    }
    c->groups[c->ngroups++] = g;
  }
  return 0;
}

static int claim_cnf(json_t *v, ae_tok_claims *c) {
  if (!json_is_string(v))
    return -1;
  size_t n = 0;
  if (ae_tok_b64_decode(json_string_value(v), json_string_length(v), c->cnf, sizeof(c->cnf), &n) || n != 32)
    return -1;
  c->has_cnf = 1;
  return 0;
}

static const char *const k_claims[] = {"v", "iss", "sub", "aud", "groups", "exp", "nbf", "iat", "jti", "cnf", NULL};

static int parse_claims(const uint8_t *buf, size_t n, ae_tok_claims *c) {
  /* JSON_ALLOW_NUL is not set, so "\u0000" inside a string is a parse error. */
  json_t *o = json_loadb((const char *)buf, n, JSON_REJECT_DUPLICATES, NULL);
  int rc = -1;
  if (!o || !json_is_object(o))
    goto out;
  const char *key;
  json_t *val;
  json_object_foreach(o, key, val) {
    int known = 0;
    for (size_t i = 0; k_claims[i]; i++)
      known |= strcmp(key, k_claims[i]) == 0;
    if (!known)
      goto out;
  }
  json_t *ver = json_object_get(o, "v");
  if (!json_is_integer(ver) || json_integer_value(ver) != 1)
    goto out;
  if (claim_str(json_object_get(o, "iss"), &c->iss) || claim_str(json_object_get(o, "sub"), &c->sub) ||
      claim_str(json_object_get(o, "aud"), &c->aud) || claim_str(json_object_get(o, "jti"), &c->jti) ||
      claim_groups(json_object_get(o, "groups"), c) || claim_time(json_object_get(o, "exp"), &c->exp) ||
      claim_time(json_object_get(o, "nbf"), &c->nbf) || claim_time(json_object_get(o, "iat"), &c->iat))
    goto out;
  json_t *cnf = json_object_get(o, "cnf");
  if (cnf && claim_cnf(cnf, c))
    goto out;
  rc = 0;
out:
  json_decref(o);
  return rc;
}

/* ---------------------------------------------------------------- parse */

ae_tok_reason ae_tok_parse(const char *text, size_t len, ae_tok_parsed *out) {
  memset(out, 0, sizeof(*out));
  const size_t plen = sizeof(AE_TOK_PREFIX) - 1;
  if (!text || len < plen || memcmp(text, AE_TOK_PREFIX, plen) != 0)
    return AE_TOK_MISSING_PREFIX;
  if (len > AE_TOK_MAX_TEXT)
    return AE_TOK_MALFORMED;
  const char *p = text + plen;
  size_t rest = len - plen;
  const char *dot = memchr(p, '.', rest);
  if (!dot || dot == p || dot == text + len - 1)
    return AE_TOK_MALFORMED;
  size_t pl = (size_t)(dot - p), sl = len - plen - pl - 1;
  const char *sp = dot + 1;

  uint8_t sig[72];
  size_t siglen = 0;
  int rc = ae_tok_b64_decode(sp, sl, sig, sizeof(sig), &siglen);
  if (rc == AE_EINVAL)
    return AE_TOK_BASE64;
  uint8_t *payload = ae_malloc(pl / 4 * 3 + 3);
  size_t paylen = 0;
  int prc = ae_tok_b64_decode(p, pl, payload, pl / 4 * 3 + 3, &paylen);
  ae_tok_reason r = AE_TOK_OK;
  if (prc == AE_EINVAL)
    r = AE_TOK_BASE64;
  else if (prc != 0 || paylen > AE_TOK_MAX_PAYLOAD)
    r = AE_TOK_MALFORMED;
  else if (rc != 0 || siglen != 64)
    r = AE_TOK_BAD_SIGNATURE;
  else if (parse_claims(payload, paylen, &out->claims) != 0) {
    ae_tok_claims_clear(&out->claims);
    r = AE_TOK_JSON;
  }
  free(payload);
  if (r != AE_TOK_OK)
    return r;
  memcpy(out->sig, sig, 64);
  out->payload_b64 = p;
  out->payload_b64_len = pl;
  return AE_TOK_OK;
}
