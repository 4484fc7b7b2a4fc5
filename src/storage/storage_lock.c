/* Cluster coordination through the backend, with single-process defaults: the issuance lock
 * (a backend without one has a single writer, so the lock always succeeds with token 0),
 * create-if-absent writes, shared challenge answers and saved orders. */
#include <stdlib.h>
#include <string.h>

#include "acmedge/storage.h"

int ae_storage_lock(ae_storage *st, const char *name, uint64_t *token, ae_err *err) {
  *token = 0;
  return st->ops->lock ? st->ops->lock(st, name, token, err) : 0;
}

int ae_storage_lock_renew(ae_storage *st, const char *name, uint64_t token, ae_err *err) {
  return st->ops->lock_renew && token ? st->ops->lock_renew(st, name, token, err) : 0;
}

int ae_storage_unlock(ae_storage *st, const char *name, uint64_t token, ae_err *err) {
  return st->ops->unlock && token ? st->ops->unlock(st, name, token, err) : 0;
}

unsigned ae_storage_lock_lease(const ae_storage *st) {
  return st->ops->lock && st->ops->lock_lease ? st->ops->lock_lease(st) : 0;
}

int ae_storage_put_new(ae_storage *st, const char *key, const void *data, size_t len, int private_, ae_err *err) {
  if (st->ops->put_new)
    return st->ops->put_new(st, key, data, len, private_, err);
  char *cur = NULL;
  size_t n = 0;
  int r = ae_storage_get(st, key, &cur, &n, err);
  if (r == 0) {
    free(cur);
    return ae_err_set(err, AE_EEXIST, "%s: exists", key);
  }
  if (r != AE_ENOTFOUND)
    return r;
  return ae_storage_put(st, key, data, len, private_, err);
}

int ae_storage_share_challenge(ae_storage *st, int alpn, const char *domain, const char *token, const char *keyauth,
                               ae_err *err) {
  return st->ops->share_challenge ? st->ops->share_challenge(st, alpn, domain, token, keyauth, err) : 0;
}

int ae_storage_shares_challenges(const ae_storage *st) { return st->ops->share_challenge != NULL; }

int ae_storage_order_put(ae_storage *st, const char *domain, const ae_storage_order *o, ae_err *err) {
  return st->ops->order_put ? st->ops->order_put(st, domain, o, err) : 0;
}

int ae_storage_order_get(ae_storage *st, const char *ca_host, const char *domain, ae_storage_order *o, ae_err *err) {
  memset(o, 0, sizeof(*o));
  if (!st->ops->order_get)
    return ae_err_set(err, AE_ENOTFOUND, "%s: no saved order", domain);
  return st->ops->order_get(st, ca_host, domain, o, err);
}

int ae_storage_order_del(ae_storage *st, const char *ca_host, const char *domain, uint64_t fence, ae_err *err) {
  return st->ops->order_del && fence ? st->ops->order_del(st, ca_host, domain, fence, err) : 0;
}

int ae_storage_saves_orders(const ae_storage *st) { return st->ops->order_put != NULL; }

void ae_storage_order_clear(ae_storage_order *o) {
  if (!o)
    return;
  if (o->key_pem) {
    memset(o->key_pem, 0, strlen(o->key_pem));
    free(o->key_pem);
  }
  free(o->url);
  free(o->csr);
  memset(o, 0, sizeof(*o));
}
