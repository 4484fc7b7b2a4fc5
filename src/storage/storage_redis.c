/* Redis storage backend (docs/cluster.md): one HASH per certificate written by one script, a
 * renew-at sorted set per CA as the listing (never KEYS or SCAN), a generation counter and a
 * change set that let every instance catch up on what it missed, and private keys sealed with
 * AES-256-GCM bound to their location. Calls are synchronous and run in the thread pool, like the
 * fs backend's. */
#include "storage_redis.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "acmedge/config.h"
#include "storage_seal.h"

#define CAS_TRIES 8

const char *const rs_lua_commit =
    "local cur = redis.call('HGET', KEYS[1], 'ver') or '0'\n"
    "local cv = tonumber(cur)\n"
    "if not cv then return redis.error_reply('field ver of ' .. KEYS[1] .. ' is not a number') end\n"
    "if cur ~= ARGV[1] then return {0, cur} end\n"
    "local f = tonumber(ARGV[2])\n"
    "local sf = tonumber(redis.call('HGET', KEYS[1], 'fence') or '0') or 0\n"
    "if f > 0 and sf >= f then return {-1, tostring(sf)} end\n"
    "if f > 0 and redis.call('GET', KEYS[6]) ~= ARGV[2] then return {-2, tostring(sf)} end\n"
    "if f < sf then f = sf end\n"
    "local nv = cv + 1\n"
    "redis.call('HSET', KEYS[1], 'chain', ARGV[3], 'key', ARGV[4], 'meta', ARGV[5], 'not_after', ARGV[6],"
    " 'ver', nv, 'fence', f, 'by', ARGV[8])\n"
    "redis.call('ZADD', KEYS[2], ARGV[7], ARGV[9])\n"
    "redis.call('ZADD', KEYS[7], 0, ARGV[9])\n"
    "redis.call('SADD', KEYS[5], ARGV[11])\n"
    "local g = redis.call('INCR', KEYS[3])\n"
    "redis.call('ZADD', KEYS[4], g, ARGV[9])\n"
    "redis.call('PUBLISH', ARGV[10], 'cert ' .. ARGV[11] .. ' ' .. ARGV[9] .. ' ' .. nv .. ' ' .. g .. ' ' .. ARGV[8])\n"
    "if tonumber(ARGV[2]) > 0 then redis.call('DEL', KEYS[8]) end\n"
    "return {1, tostring(nv)}\n";

const char *const rs_lua_put_field =
    "local cur = redis.call('HGET', KEYS[1], 'ver') or '0'\n"
    "if cur ~= ARGV[3] then return {0, cur} end\n"
    "redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])\n"
    "return {1, cur}\n";

const char *const rs_lua_del_cert =
    "local n = redis.call('DEL', KEYS[1])\n"
    "redis.call('ZREM', KEYS[2], ARGV[1])\n"
    "redis.call('ZREM', KEYS[5], ARGV[1])\n"
    "local g = redis.call('INCR', KEYS[3])\n"
    "redis.call('ZADD', KEYS[4], g, ARGV[1])\n"
    "redis.call('PUBLISH', ARGV[2], 'del ' .. ARGV[3] .. ' ' .. ARGV[1] .. ' 0 ' .. g)\n"
    "return n\n";

static void ad_for(char *buf, size_t len, const char *rkey, const char *field, const char *ver) {
  snprintf(buf, len, "%s|%s|%s", rkey, field, ver);
}

/* Opens a value read from Redis: sealed ones are decrypted under their location; a plain private
 * key while encryption is on is refused (it was not written by us). */
static int open_value(rs_storage *s, const char *ad, const char *what, const char *v, size_t len, char **out,
                      size_t *outlen, ae_err *err) {
  if (len > RS_VALUE_MAX)
    return ae_err_set(err, AE_ELIMIT, "redis %s: value of %zu bytes is over the size cap (%d)", what, len, RS_VALUE_MAX);
  if (ae_seal_is_sealed(v, len)) {
    if (!s->encrypt)
      return ae_err_set(err, AE_EPROTO, "redis %s: value is encrypted but storage.redis.encrypt_keys is false", what);
    return ae_unseal(s->key, ad, v, len, out, outlen, err);
  }
  if (s->encrypt && memmem(v, len, "PRIVATE KEY", 11))
    return ae_err_set(err, AE_EPROTO, "redis %s: private key stored unencrypted; refused while encrypt_keys is on", what);
  char *c = malloc(len + 1);
  if (!c)
    return ae_err_set(err, AE_ENOMEM, "out of memory");
  memcpy(c, v, len);
  c[len] = '\0';
  *out = c;
  *outlen = len;
  return 0;
}

static int is_str(const redisReply *r) { return r && (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS); }

/* Writes one hash field; a sealed value is bound to the hash's current version (compare and set). */
static int put_field(rs_storage *s, const rs_key *k, const void *data, size_t len, int private_, ae_err *err) {
  char what[1024];
  snprintf(what, sizeof(what), "HSET %s %s", k->rkey, k->field);
  if (!private_ || !s->encrypt) {
    redisReply *rep = NULL;
    int r = rs_cmdf(s, what, &rep, err, "HSET %s %s %b", k->rkey, k->field, data, len);
    if (r == 0)
      freeReplyObject(rep);
    return r;
  }
  char ver[32] = "0";
  for (int i = 0; i < CAS_TRIES; i++) {
    char ad[1100], *sealed = NULL;
    ad_for(ad, sizeof(ad), k->rkey, k->field, ver);
    int r = ae_seal(s->key, ad, data, len, &sealed, err);
    if (r != 0)
      return r;
    const char *argv[] = {"EVAL", rs_lua_put_field, "1", k->rkey, k->field, sealed, ver};
    size_t argl[] = {4, strlen(rs_lua_put_field), 1, strlen(k->rkey), strlen(k->field), strlen(sealed), strlen(ver)};
    redisReply *rep = NULL;
    r = rs_cmd(s, what, &rep, 7, argv, argl, err);
    free(sealed);
    if (r != 0)
      return r;
    int ok = rep->type == REDIS_REPLY_ARRAY && rep->elements == 2 && rep->element[0]->type == REDIS_REPLY_INTEGER;
    if (ok && rep->element[0]->integer == 1) {
      freeReplyObject(rep);
      return 0;
    }
    if (ok && is_str(rep->element[1]))
      snprintf(ver, sizeof(ver), "%.30s", rep->element[1]->str);
    freeReplyObject(rep);
    if (!ok)
      return ae_err_set(err, AE_EPROTO, "redis %s: unexpected script reply", what);
  }
  return ae_err_set(err, AE_EAGAIN, "redis %s: the hash kept changing; gave up", what);
}

static int put_kv(rs_storage *s, const rs_key *k, const void *data, size_t len, int private_, ae_err *err) {
  char *sealed = NULL;
  if (private_ && s->encrypt) {
    char ad[1100];
    ad_for(ad, sizeof(ad), k->rkey, "value", "0");
    int r = ae_seal(s->key, ad, data, len, &sealed, err);
    if (r != 0)
      return r;
    data = sealed;
    len = strlen(sealed);
  }
  redisReply *rep = NULL;
  int r = rs_cmdf(s, k->rkey, &rep, err, "SET %s %b", k->rkey, data, len);
  free(sealed);
  if (r != 0)
    return r;
  freeReplyObject(rep);
  /* Register the key in its directory and every ancestor, for list(). */
  char path[900], dirk[1024];
  snprintf(path, sizeof(path), "%s/%s", k->parent, k->base);
  const char *p = k->parent[0] ? path : k->base;
  size_t plen = strlen(p), start = 0;
  while (start < plen) {
    const char *next = strchr(p + start, '/');
    size_t end = next ? (size_t)(next - p) : plen;
    rs_name(s, dirk, sizeof(dirk), "dir:%.*s", start ? (int)(start - 1) : 0, p);
    if ((r = rs_cmdf(s, dirk, &rep, err, "SADD %s %b", dirk, p + start, end - start)) != 0)
      return r;
    freeReplyObject(rep);
    start = end + 1;
  }
  return 0;
}

static int rs_put(ae_storage *st, const char *key, const void *data, size_t len, int private_, ae_err *err) {
  rs_storage *s = (rs_storage *)st;
  rs_key k;
  int r = rs_map_key(s, key, &k, err);
  if (r != 0)
    return r;
  if (len > RS_VALUE_MAX)
    return ae_err_set(err, AE_ELIMIT, "storage key '%s': value of %zu bytes is over the size cap (%d)", key, len,
                      RS_VALUE_MAX);
  if (k.kind == RK_CERT || k.kind == RK_ACCT)
    return put_field(s, &k, data, len, private_, err);
  if (k.kind == RK_KV && !k.is_dir)
    return put_kv(s, &k, data, len, private_, err);
  return ae_err_set(err, AE_EINVAL, "storage key '%s': not a value key", key);
}

static int rs_get(ae_storage *st, const char *key, char **data, size_t *len, ae_err *err) {
  rs_storage *s = (rs_storage *)st;
  rs_key k;
  int r = rs_map_key(s, key, &k, err);
  if (r != 0)
    return r;
  redisReply *rep = NULL;
  char what[1024], ad[900];
  if (k.kind == RK_CERT || k.kind == RK_ACCT) {
    snprintf(what, sizeof(what), "%s field %s", k.rkey, k.field);
    if ((r = rs_cmdf(s, what, &rep, err, "HMGET %s %s ver", k.rkey, k.field)) != 0)
      return r;
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 2 || !is_str(rep->element[0])) {
      freeReplyObject(rep);
      return ae_err_set(err, AE_ENOTFOUND, "%s: not found", what);
    }
    ad_for(ad, sizeof(ad), k.rkey, k.field, is_str(rep->element[1]) ? rep->element[1]->str : "0");
    r = open_value(s, ad, what, rep->element[0]->str, rep->element[0]->len, data, len, err);
  } else if (k.kind == RK_KV && !k.is_dir) {
    if ((r = rs_cmdf(s, k.rkey, &rep, err, "GET %s", k.rkey)) != 0)
      return r;
    if (!is_str(rep)) {
      freeReplyObject(rep);
      return ae_err_set(err, AE_ENOTFOUND, "%s: not found", k.rkey);
    }
    ad_for(ad, sizeof(ad), k.rkey, "value", "0");
    r = open_value(s, ad, k.rkey, rep->str, rep->len, data, len, err);
  } else {
    return ae_err_set(err, AE_EINVAL, "storage key '%s': not a value key", key);
  }
  freeReplyObject(rep);
  return r;
}

static int del_kv(rs_storage *s, const char *path, int is_dir, int depth, ae_err *err) {
  char rk[700];
  redisReply *rep = NULL;
  int r;
  if (depth > 8)
    return ae_err_set(err, AE_EINVAL, "storage key '%s': too deep", path);
  if (is_dir) {
    rs_name(s, rk, sizeof(rk), "dir:%s", path);
    if ((r = rs_cmdf(s, rk, &rep, err, "SMEMBERS %s", rk)) != 0)
      return r;
    for (size_t i = 0; rep->type == REDIS_REPLY_ARRAY && i < rep->elements; i++) {
      char child[600];
      snprintf(child, sizeof(child), "%s/%s", path, rep->element[i]->str);
      char ck[700];
      rs_name(s, ck, sizeof(ck), "dir:%s", child);
      redisReply *ex = NULL;
      if ((r = rs_cmdf(s, ck, &ex, err, "EXISTS %s", ck)) != 0)
        break;
      int sub = ex->type == REDIS_REPLY_INTEGER && ex->integer > 0;
      freeReplyObject(ex);
      if ((r = del_kv(s, child, sub, depth + 1, err)) != 0 && r != AE_ENOTFOUND)
        break;
      r = 0;
    }
    freeReplyObject(rep);
    if (r != 0)
      return r;
  }
  rs_name(s, rk, sizeof(rk), "%s:%s", is_dir ? "dir" : "kv", path);
  if ((r = rs_cmdf(s, rk, &rep, err, "DEL %s", rk)) != 0)
    return r;
  freeReplyObject(rep);
  const char *slash = strrchr(path, '/');
  rs_name(s, rk, sizeof(rk), "dir:%.*s", slash ? (int)(slash - path) : 0, path);
  if ((r = rs_cmdf(s, rk, &rep, err, "SREM %s %s", rk, slash ? slash + 1 : path)) != 0)
    return r;
  freeReplyObject(rep);
  return 0;
}

static int rs_del(ae_storage *st, const char *key, ae_err *err) {
  rs_storage *s = (rs_storage *)st;
  rs_key k;
  int r = rs_map_key(s, key, &k, err);
  if (r != 0)
    return r;
  redisReply *rep = NULL;
  if (k.kind == RK_CERT_DIR) {
    char exp[400], gen[200], chg[400], chan[200], names[400];
    rs_name(s, exp, sizeof(exp), "exp:%s", k.ca);
    rs_name(s, gen, sizeof(gen), "gen");
    rs_name(s, chg, sizeof(chg), "chg:%s", k.ca);
    rs_name(s, chan, sizeof(chan), "ev");
    rs_name(s, names, sizeof(names), "name:%s", k.ca);
    const char *argv[] = {"EVAL", rs_lua_del_cert, "5", k.rkey, exp, gen, chg, names, k.domain, chan, k.ca};
    size_t argl[11];
    for (int i = 0; i < 11; i++)
      argl[i] = strlen(argv[i]);
    if ((r = rs_cmd(s, k.rkey, &rep, 11, argv, argl, err)) != 0)
      return r;
    int existed = rep->type == REDIS_REPLY_INTEGER && rep->integer > 0;
    freeReplyObject(rep);
    return existed ? 0 : ae_err_set(err, AE_ENOTFOUND, "%s: not found", k.rkey);
  }
  if (k.kind == RK_CERT || k.kind == RK_ACCT) {
    if ((r = rs_cmdf(s, k.rkey, &rep, err, "HDEL %s %s", k.rkey, k.field)) != 0)
      return r;
    int existed = rep->type == REDIS_REPLY_INTEGER && rep->integer > 0;
    freeReplyObject(rep);
    return existed ? 0 : ae_err_set(err, AE_ENOTFOUND, "%s %s: not found", k.rkey, k.field);
  }
  if (k.kind == RK_KV) {
    char path[900];
    snprintf(path, sizeof(path), "%s%s%s", k.parent, k.parent[0] ? "/" : "", k.base);
    return del_kv(s, path, k.is_dir, 0, err);
  }
  return ae_err_set(err, AE_EINVAL, "storage key '%s': cannot be deleted", key);
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static int rs_list(ae_storage *st, const char *prefix, char ***names, size_t *n, ae_err *err) {
  rs_storage *s = (rs_storage *)st;
  rs_key k;
  int r = rs_map_key(s, prefix, &k, err);
  if (r != 0)
    return r;
  char rk[700];
  redisReply *rep = NULL;
  if (k.kind == RK_CERTS_LIST) {
    rs_name(s, rk, sizeof(rk), "exp:%s", k.ca);
    r = rs_cmdf(s, rk, &rep, err, "ZRANGE %s 0 -1", rk);
  } else if (k.kind == RK_CAS_LIST) {
    rs_name(s, rk, sizeof(rk), "cas");
    r = rs_cmdf(s, rk, &rep, err, "SMEMBERS %s", rk);
  } else if (k.kind == RK_KV) {
    rs_name(s, rk, sizeof(rk), "dir:%s%s%s", k.parent, k.parent[0] ? "/" : "", k.base);
    r = rs_cmdf(s, rk, &rep, err, "SMEMBERS %s", rk);
  } else {
    return ae_err_set(err, AE_EINVAL, "storage prefix '%s': not a directory", prefix);
  }
  if (r != 0)
    return r;
  if (rep->type != REDIS_REPLY_ARRAY || rep->elements == 0) {
    freeReplyObject(rep);
    return ae_err_set(err, AE_ENOTFOUND, "%s: empty", rk);
  }
  char **v = ae_calloc(rep->elements, sizeof(char *));
  size_t m = 0;
  for (size_t i = 0; i < rep->elements; i++) {
    if (!is_str(rep->element[i]))
      continue;
    char dir[300];
    if (k.kind == RK_CERTS_LIST)
      ae_storage_domain_dirname(rep->element[i]->str, dir, sizeof(dir));
    else
      snprintf(dir, sizeof(dir), "%s", rep->element[i]->str);
    v[m++] = ae_strdup(dir);
  }
  freeReplyObject(rep);
  qsort(v, m, sizeof(char *), cmp_str);
  *names = v;
  *n = m;
  return 0;
}

static int rs_commit(ae_storage *st, const ae_storage_bundle *b, ae_err *err) {
  rs_storage *s = (rs_storage *)st;
  char hk[700], exp[400], gen[200], chg[400], cas[200], chan[200], lk[700], lname[600], names[400], ok[700];
  rs_name(s, hk, sizeof(hk), "cert:%s:%s", b->ca_host, b->domain);
  rs_order_key(s, b->ca_host, b->domain, ok, sizeof(ok)); /* the order this commit ends */
  snprintf(lname, sizeof(lname), "cert:%s:%s", b->ca_host, b->domain);
  rs_lock_key(s, lname, lk, sizeof(lk));
  rs_name(s, exp, sizeof(exp), "exp:%s", b->ca_host);
  rs_name(s, names, sizeof(names), "name:%s", b->ca_host);
  rs_name(s, gen, sizeof(gen), "gen");
  rs_name(s, chg, sizeof(chg), "chg:%s", b->ca_host);
  rs_name(s, cas, sizeof(cas), "cas");
  rs_name(s, chan, sizeof(chan), "ev");
  size_t total = strlen(b->chain) + strlen(b->key) + strlen(b->meta);
  if (total > RS_VALUE_MAX)
    return ae_err_set(err, AE_ELIMIT, "%s: bundle of %zu bytes is over the size cap (%d)", hk, total, RS_VALUE_MAX);
  char ver[32] = "0";
  char what[1024];
  snprintf(what, sizeof(what), "commit %s", hk);
  for (int i = 0; i < CAS_TRIES; i++) {
    char ad[1100], next[32], *sealed = NULL;
    snprintf(next, sizeof(next), "%lld", strtoll(ver, NULL, 10) + 1);
    ad_for(ad, sizeof(ad), hk, "key", next);
    const char *keyv = b->key;
    if (s->encrypt) {
      int r = ae_seal(s->key, ad, b->key, strlen(b->key), &sealed, err);
      if (r != 0)
        return r;
      keyv = sealed;
    }
    char fence[32], na[32], ra[32];
    snprintf(fence, sizeof(fence), "%llu", (unsigned long long)b->fence);
    snprintf(na, sizeof(na), "%lld", (long long)b->not_after);
    int64_t renew = b->not_before + (b->not_after - b->not_before) * 2 / 3;
    snprintf(ra, sizeof(ra), "%lld", (long long)renew);
    const char *argv[] = {"EVAL", rs_lua_commit, "8", hk,   exp,     gen, chg,         cas,       lk,   names, ok,
                          ver,    fence,         b->chain, keyv, b->meta, na, ra, s->instance, b->domain, chan, b->ca_host};
    size_t argl[22];
    for (int j = 0; j < 22; j++)
      argl[j] = strlen(argv[j]);
    redisReply *rep = NULL;
    int r = rs_cmd(s, what, &rep, 22, argv, argl, err);
    free(sealed);
    if (r != 0)
      return r;
    long long code = 0;
    if ((r = rs_script_reply(rep, what, &code, ver, sizeof(ver), err)) != 0)
      return r;
    if (code == 1)
      return 0;
    if (code == -1)
      return ae_err_set(err, AE_EEXIST, "%s: refused: a newer lock holder (fence %s) already committed; ours is %s", hk,
                        ver, fence);
    if (code == -2)
      return ae_err_set(err, AE_EEXIST, "%s: refused: our issuance lock (fence %s) lapsed or was taken over", hk, fence);
  }
  return ae_err_set(err, AE_EAGAIN, "redis %s: the certificate kept changing; gave up", what);
}

static int rs_get_cert(ae_storage *st, const char *ca_host, const char *domain, char **chain, size_t *chain_len,
                       char **key, size_t *key_len, ae_err *err) {
  rs_storage *s = (rs_storage *)st;
  char hk[700], ad[1100];
  rs_name(s, hk, sizeof(hk), "cert:%s:%s", ca_host, domain);
  redisReply *rep = NULL;
  int r = rs_cmdf(s, hk, &rep, err, "HMGET %s chain key ver", hk);
  if (r != 0)
    return r;
  if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 3 || !is_str(rep->element[0])) {
    freeReplyObject(rep);
    return ae_err_set(err, AE_ENOTFOUND, "%s: not found", hk);
  }
  if (!is_str(rep->element[1])) {
    freeReplyObject(rep);
    return ae_err_set(err, AE_EPROTO, "redis %s: has a chain but no key", hk);
  }
  ad_for(ad, sizeof(ad), hk, "key", is_str(rep->element[2]) ? rep->element[2]->str : "0");
  char what[1024];
  snprintf(what, sizeof(what), "%s field chain", hk);
  r = open_value(s, "", what, rep->element[0]->str, rep->element[0]->len, chain, chain_len, err);
  if (r == 0) {
    snprintf(what, sizeof(what), "%s field key", hk);
    r = open_value(s, ad, what, rep->element[1]->str, rep->element[1]->len, key, key_len, err);
    if (r != 0) {
      free(*chain);
      *chain = NULL;
    }
  }
  freeReplyObject(rep);
  return r;
}

static void rs_free(ae_storage *st) {
  rs_storage *s = (rs_storage *)st;
  for (size_t i = 0; i < s->npool; i++)
    redisFree(s->pool[i]);
  pthread_mutex_destroy(&s->mu);
  free(s->host);
  free(s->unix_path);
  if (s->password) {
    memset(s->password, 0, strlen(s->password));
    free(s->password);
  }
  free(s->address);
  memset(s->key, 0, sizeof(s->key));
  free(s);
}

static const ae_storage_ops rs_ops = {.put = rs_put,
                                      .get = rs_get,
                                      .del = rs_del,
                                      .list = rs_list,
                                      .free = rs_free,
                                      .commit = rs_commit,
                                      .get_cert = rs_get_cert,
                                      .lock = rs_lock,
                                      .lock_renew = rs_lock_renew,
                                      .unlock = rs_unlock,
                                      .put_new = rs_put_new,
                                      .share_challenge = rs_share_challenge,
                                      .lock_lease = rs_lock_lease,
                                      .order_put = rs_order_put,
                                      .order_get = rs_order_get,
                                      .order_del = rs_order_del};

int rs_is(const ae_storage *st) { return st->ops == &rs_ops; }

/* Opens the Redis backend (no connection yet: the first command connects). Caller owns *out. */
int ae_storage_redis_new(const ae_storage_redis_cfg *c, ae_storage **out, ae_err *err) {
  rs_storage *s = ae_calloc(1, sizeof(*s));
  s->base.ops = &rs_ops;
  s->host = c->host ? ae_strdup(c->host) : NULL;
  s->unix_path = c->unix_path ? ae_strdup(c->unix_path) : NULL;
  s->password = c->password ? ae_strdup(c->password) : NULL;
  s->address = ae_strdup(c->address);
  s->port = c->port;
  s->db = c->db;
  s->encrypt = c->encrypt_keys;
  memcpy(s->key, c->key, sizeof(s->key));
  snprintf(s->pfx, sizeof(s->pfx), "%s{ns}:", c->prefix);
  char host[64] = "";
  gethostname(host, sizeof(host) - 1);
  snprintf(s->instance, sizeof(s->instance), "%.60s/%ld", host, (long)getpid());
  pthread_mutex_init(&s->mu, NULL);
  s->state = 1;
  s->lease_ms = c->lock_lease_ms ? c->lock_lease_ms : 15000;
  (void)err;
  *out = &s->base;
  return 0;
}
