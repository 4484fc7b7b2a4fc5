/* Backend-independent storage entry points: choosing a backend from the config, and the
 * bundle operations for backends that only store files. */
#include "acmedge/config.h"
#include "acmedge/storage.h"
#include "storage_redis.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void bundle_key(const ae_storage_bundle *b, const char *file, char *buf, size_t len) {
  char dir[300];
  ae_storage_domain_dirname(b->domain, dir, sizeof(dir));
  snprintf(buf, len, "certs/%s/%s/%s", b->ca_host, dir, file);
}

int ae_storage_commit(ae_storage *st, const ae_storage_bundle *b, ae_err *err) {
  if (st->ops->commit)
    return st->ops->commit(st, b, err);
  /* Key before cert: a crash in between leaves a pair the loader rejects, never a torn file. */
  char key[700];
  int r;
  bundle_key(b, "key.pem", key, sizeof(key));
  if ((r = ae_storage_put(st, key, b->key, strlen(b->key), 1, err)) != 0)
    return r;
  bundle_key(b, "cert.pem", key, sizeof(key));
  if ((r = ae_storage_put(st, key, b->chain, strlen(b->chain), 0, err)) != 0)
    return r;
  bundle_key(b, "meta.json", key, sizeof(key));
  return ae_storage_put(st, key, b->meta, strlen(b->meta), 0, err);
}

/* The pair as two gets (of get or get_nowait): cert, then key. */
static int get_pair(ae_storage *st, int (*get)(ae_storage *, const char *, char **, size_t *, ae_err *),
                    const char *ca_host, const char *domain, char **chain, size_t *chain_len, char **key,
                    size_t *key_len, ae_err *err) {
  ae_storage_bundle b = {.ca_host = ca_host, .domain = domain};
  char k[700];
  bundle_key(&b, "cert.pem", k, sizeof(k));
  int r = get(st, k, chain, chain_len, err);
  if (r != 0)
    return r;
  bundle_key(&b, "key.pem", k, sizeof(k));
  r = get(st, k, key, key_len, err);
  if (r != 0) {
    free(*chain);
    *chain = NULL;
  }
  return r;
}

int ae_storage_get_cert(ae_storage *st, const char *ca_host, const char *domain, char **chain, size_t *chain_len,
                        char **key, size_t *key_len, ae_err *err) {
  if (st->ops->get_cert)
    return st->ops->get_cert(st, ca_host, domain, chain, chain_len, key, key_len, err);
  return get_pair(st, st->ops->get, ca_host, domain, chain, chain_len, key, key_len, err);
}

int ae_storage_get_cert_nowait(ae_storage *st, const char *ca_host, const char *domain, char **chain,
                               size_t *chain_len, char **key, size_t *key_len, ae_err *err) {
  /* A backend with its own get_cert reads the pair consistently over the network: not here. */
  if (st->ops->get_cert || !st->ops->get_nowait)
    return ae_err_set(err, AE_EAGAIN, "%s: storage cannot be read without waiting", domain);
  return get_pair(st, st->ops->get_nowait, ca_host, domain, chain, chain_len, key, key_len, err);
}

int ae_storage_is_redis(const ae_storage *st) { return st && rs_is(st); }

int ae_storage_ping(ae_storage *st, ae_err *err) {
  if (!ae_storage_is_redis(st))
    return 0;
  redisReply *rep = NULL;
  int r = rs_cmdf((rs_storage *)st, "PING", &rep, err, "PING");
  if (r == 0)
    freeReplyObject(rep);
  return r;
}

int ae_storage_open(const ae_config *cfg, ae_storage **out, ae_err *err) {
  if (cfg->storage_redis && cfg->redis)
    return ae_storage_redis_new(cfg->redis, out, err);
  return ae_storage_fs_new(cfg->storage_path, out, err);
}
