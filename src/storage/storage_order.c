/* Text form of a saved order: one JSON object {"v":1, "url", "key", "csr", "ca", "fence",
 * "created", "expires"}. The key is sealed (storage_seal.c) with the record's location and the
 * writer's fence as associated data: a record copied under another name does not open. */
#include "storage_order.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "storage_seal.h"

static void ad_for(char *buf, size_t len, const char *where, uint64_t fence) {
  snprintf(buf, len, "%s|key|%llu", where, (unsigned long long)fence);
}

int ae_order_encode(const ae_storage_order *o, const unsigned char *seal_key, const char *where, char **out,
                    ae_err *err) {
  *out = NULL;
  if (!o->url || !o->key_pem || !o->csr || !o->ca_host[0] || !o->fence)
    return ae_err_set(err, AE_EINVAL, "%s: order record without url, key, csr, CA or fence", where);
  char *sealed = NULL;
  const char *keyv = o->key_pem;
  if (seal_key) {
    char ad[1100];
    ad_for(ad, sizeof(ad), where, o->fence);
    int r = ae_seal(seal_key, ad, o->key_pem, strlen(o->key_pem), &sealed, err);
    if (r != 0)
      return r;
    keyv = sealed;
  }
  json_t *j = json_pack("{s:i,s:s,s:s,s:s,s:s,s:I,s:I,s:I}", "v", 1, "url", o->url, "key", keyv, "csr", o->csr, "ca",
                        o->ca_host, "fence", (json_int_t)o->fence, "created", (json_int_t)o->created, "expires",
                        (json_int_t)o->expires);
  free(sealed);
  char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;
  json_decref(j);
  if (!text)
    return ae_err_set(err, AE_ENOMEM, "%s: cannot encode the order record", where);
  *out = text;
  return 0;
}

int ae_order_decode(const char *text, size_t len, const unsigned char *seal_key, const char *where,
                    ae_storage_order *o, ae_err *err) {
  memset(o, 0, sizeof(*o));
  json_error_t je;
  json_t *j = json_loadb(text, len, 0, &je);
  if (!json_is_object(j)) {
    json_decref(j);
    return ae_err_set(err, AE_EPROTO, "%s: order record is not a JSON object", where);
  }
  const char *url = NULL, *key = NULL, *csr = NULL, *ca = NULL;
  json_int_t v = 0, fence = 0, created = 0, expires = 0;
  if (json_unpack(j, "{s:I,s:s,s:s,s:s,s:s,s:I,s:I,s:I}", "v", &v, "url", &url, "key", &key, "csr", &csr, "ca", &ca,
                  "fence", &fence, "created", &created, "expires", &expires) != 0 ||
      v != 1 || fence <= 0 || strlen(ca) >= sizeof(o->ca_host)) {
    json_decref(j);
    return ae_err_set(err, AE_EPROTO, "%s: order record lacks a field or has a wrong type", where);
  }
  char *plain = NULL;
  size_t plen = 0;
  int r = 0;
  if (seal_key) {
    char ad[1100];
    ad_for(ad, sizeof(ad), where, (uint64_t)fence);
    r = ae_unseal(seal_key, ad, key, strlen(key), &plain, &plen, err);
  } else if (ae_seal_is_sealed(key, strlen(key))) {
    r = ae_err_set(err, AE_EPROTO, "%s: the order's key is encrypted but encrypt_keys is false", where);
  } else {
    plain = ae_strdup(key);
  }
  if (r == 0) {
    o->url = ae_strdup(url);
    o->key_pem = plain;
    o->csr = ae_strdup(csr);
    snprintf(o->ca_host, sizeof(o->ca_host), "%s", ca);
    o->fence = (uint64_t)fence;
    o->created = created;
    o->expires = expires;
  }
  json_decref(j);
  return r;
}
