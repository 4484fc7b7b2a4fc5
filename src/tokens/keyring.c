/* Issuer keyring: iss -> 32-byte Ed25519 public key, validated once at config load so that a
 * weak or mistyped key is a `check` error rather than a silent acceptance at request time. */
#include "acmedge/tokens.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
  char *iss;
  uint8_t key[32];
} kr_entry;

struct ae_tok_keyring {
  kr_entry *e;
  size_t n;
};

void ae_tok_keyring_free(ae_tok_keyring *kr) {
  if (!kr)
    return;
  for (size_t i = 0; i < kr->n; i++)
    free(kr->e[i].iss);
  free(kr->e);
  free(kr);
}

/* Issuer names follow the string claim rules so that every configured issuer can be matched. */
static int valid_iss(const char *s) {
  size_t n = strlen(s);
  if (n == 0 || n > AE_TOK_MAX_STR)
    return 0;
  for (size_t i = 0; i < n; i++)
    if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
      return 0;
  return 1;
}

int ae_tok_keyring_from_json(json_t *obj, const char *path, ae_tok_keyring **out, ae_err *err) {
  *out = NULL;
  if (!json_is_object(obj))
    return ae_err_set(err, AE_EINVAL, "%s: expected an object {\"issuer\": \"base64url key\"}", path);
  ae_tok_keyring *kr = ae_calloc(1, sizeof(*kr));
  kr->e = ae_calloc(json_object_size(obj) + 1, sizeof(kr_entry));
  const char *iss;
  json_t *v;
  int rc = 0;
  json_object_foreach(obj, iss, v) {
    if (!valid_iss(iss)) {
      rc = ae_err_set(err, AE_EINVAL, "%s: issuer name must be 1..%u printable characters", path, AE_TOK_MAX_STR);
      break;
    }
    for (size_t i = 0; i < kr->n; i++)
      if (strcmp(kr->e[i].iss, iss) == 0)
        rc = ae_err_set(err, AE_EINVAL, "%s.%s: duplicate issuer", path, iss);
    if (rc)
      break;
    uint8_t buf[48];
    size_t n = 0;
    if (!json_is_string(v) ||
        ae_tok_b64_decode(json_string_value(v), json_string_length(v), buf, sizeof(buf), &n) != 0) {
      rc = ae_err_set(err, AE_EINVAL, "%s.%s: expected a canonical base64url string without padding", path, iss);
      break;
    }
    if (n != 32) {
      rc = ae_err_set(err, AE_EINVAL, "%s.%s: an Ed25519 public key is 32 bytes, this one is %zu", path, iss, n);
      break;
    }
    if (ae_ed25519_weak_public(buf)) {
      rc = ae_err_set(err, AE_EINVAL, "%s.%s: small-order or non-canonical public key refused", path, iss);
      break;
    }
    kr->e[kr->n].iss = ae_strdup(iss);
    memcpy(kr->e[kr->n].key, buf, 32);
    kr->n++;
  }
  if (rc) {
    ae_tok_keyring_free(kr);
    return rc;
  }
  *out = kr;
  return 0;
}

const uint8_t *ae_tok_keyring_get(const ae_tok_keyring *kr, const char *iss) {
  if (!kr || !iss)
    return NULL;
  for (size_t i = 0; i < kr->n; i++)
    if (strcmp(kr->e[i].iss, iss) == 0)
      return kr->e[i].key;
  return NULL;
}

size_t ae_tok_keyring_count(const ae_tok_keyring *kr) { return kr ? kr->n : 0; }

int ae_tok_keyring_at(const ae_tok_keyring *kr, size_t i, const char **iss, const uint8_t **key) {
  if (!kr || i >= kr->n)
    return AE_ENOTFOUND;
  *iss = kr->e[i].iss;
  *key = kr->e[i].key;
  return 0;
}
