/* Cluster coordination through the backend, with single-process defaults: the issuance lock
 * (a backend without one has a single writer, so the lock always succeeds with token 0),
 * create-if-absent writes and shared challenge answers. */
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
