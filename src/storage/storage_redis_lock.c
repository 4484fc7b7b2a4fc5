/* Redis backend: the per-name issuance lock with fencing tokens, create-if-absent writes (one
 * shared account key), and shared challenge answers (docs/cluster.md). Synchronous like the rest
 * of the backend: callers run these in the thread pool. */
#include "storage_redis.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "storage_seal.h"

#define PUT_NEW_TRIES 8
#define CHALLENGE_TTL_MS 600000 /* longer than any validation; the owner's job ends long before */

/* Acquire: refuse while anyone holds the lease, else take a fresh token from the fence counter
 * (never reused, so a late writer's token is always lower than the current holder's). */
static const char *const lua_lock =
    "if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end\n"
    "local t = redis.call('INCR', KEYS[2])\n"
    "redis.call('SET', KEYS[1], t, 'PX', ARGV[1])\n"
    "return t\n";

/* Heartbeat: extend only our own lease. */
static const char *const lua_renew =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1 end\n"
    "return 0\n";

static const char *const lua_unlock =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end\n"
    "return 0\n";

/* Create-if-absent of one hash field, the sealed value bound to the hash's version like put_field. */
static const char *const lua_put_new =
    "if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then return {-1, ''} end\n"
    "local cur = redis.call('HGET', KEYS[1], 'ver') or '0'\n"
    "if cur ~= ARGV[3] then return {0, cur} end\n"
    "redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])\n"
    "return {1, cur}\n";

/* A challenge answer: stored with a TTL (readable by an instance that missed the message) and
 * PUBLISHed so every subscribed instance mirrors it before the CA is told to validate. */
static const char *const lua_challenge =
    "redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])\n"
    "return redis.call('PUBLISH', ARGV[3], ARGV[4])\n";

void rs_lock_key(const rs_storage *s, const char *name, char *buf, size_t len) { rs_name(s, buf, len, "lock:%s", name); }

int rs_eval_int(rs_storage *s, const char *what, int argc, const char **argv, long long *out, ae_err *err) {
  size_t argl[12];
  if (argc > 12)
    return ae_err_set(err, AE_EINVAL, "redis %s: too many arguments", what);
  for (int i = 0; i < argc; i++)
    argl[i] = strlen(argv[i]);
  redisReply *rep = NULL;
  int r = rs_cmd(s, what, &rep, argc, argv, argl, err);
  if (r != 0)
    return r;
  if (rep->type != REDIS_REPLY_INTEGER) {
    freeReplyObject(rep);
    return ae_err_set(err, AE_EPROTO, "redis %s: unexpected script reply", what);
  }
  *out = rep->integer;
  freeReplyObject(rep);
  return 0;
}

int rs_lock(ae_storage *st, const char *name, uint64_t *token, ae_err *err) {
  rs_storage *s = (rs_storage *)st;
  char lk[700], fk[200], lease[32];
  rs_lock_key(s, name, lk, sizeof(lk));
  rs_name(s, fk, sizeof(fk), "fence");
  snprintf(lease, sizeof(lease), "%u", s->lease_ms);
  const char *argv[] = {"EVAL", lua_lock, "2", lk, fk, lease};
  long long t = 0;
  int r = rs_eval_int(s, lk, 6, argv, &t, err);
  if (r != 0)
    return r;
  if (t <= 0)
    return ae_err_set(err, AE_EEXIST, "%s: held by another instance", lk);
  *token = (uint64_t)t;
  return 0;
}

int rs_lock_renew(ae_storage *st, const char *name, uint64_t token, ae_err *err) {
  rs_storage *s = (rs_storage *)st;
  char lk[700], tok[32], lease[32];
  rs_lock_key(s, name, lk, sizeof(lk));
  snprintf(tok, sizeof(tok), "%llu", (unsigned long long)token);
  snprintf(lease, sizeof(lease), "%u", s->lease_ms);
  const char *argv[] = {"EVAL", lua_renew, "1", lk, tok, lease};
  long long ok = 0;
  int r = rs_eval_int(s, lk, 6, argv, &ok, err);
  if (r != 0)
    return r;
  return ok == 1 ? 0 : ae_err_set(err, AE_ECANCELED, "%s: lease lapsed or taken over (our fence %s)", lk, tok);
}

int rs_unlock(ae_storage *st, const char *name, uint64_t token, ae_err *err) {
  rs_storage *s = (rs_storage *)st;
  char lk[700], tok[32];
  rs_lock_key(s, name, lk, sizeof(lk));
  snprintf(tok, sizeof(tok), "%llu", (unsigned long long)token);
  const char *argv[] = {"EVAL", lua_unlock, "1", lk, tok};
  long long n = 0;
  return rs_eval_int(s, lk, 5, argv, &n, err);
}

unsigned rs_lock_lease(const ae_storage *st) { return ((const rs_storage *)st)->lease_ms; }

int rs_put_new(ae_storage *st, const char *key, const void *data, size_t len, int private_, ae_err *err) {
  rs_storage *s = (rs_storage *)st;
  rs_key k;
  int r = rs_map_key(s, key, &k, err);
  if (r != 0)
    return r;
  if (k.kind != RK_ACCT && k.kind != RK_CERT) {
    /* Other keys have a single writer (the internal CA at start-up): read, then write. */
    char *cur = NULL;
    size_t n = 0;
    if ((r = st->ops->get(st, key, &cur, &n, err)) == 0) {
      free(cur);
      return ae_err_set(err, AE_EEXIST, "storage key '%s': exists", key);
    }
    return r == AE_ENOTFOUND ? st->ops->put(st, key, data, len, private_, err) : r;
  }
  if (len > RS_VALUE_MAX)
    return ae_err_set(err, AE_ELIMIT, "storage key '%s': value of %zu bytes is over the size cap (%d)", key, len,
                      RS_VALUE_MAX);
  char ver[32] = "0", what[1024];
  snprintf(what, sizeof(what), "HSETNX %s %s", k.rkey, k.field);
  for (int i = 0; i < PUT_NEW_TRIES; i++) {
    char *sealed = NULL;
    const char *v = data;
    size_t vl = len;
    if (private_ && s->encrypt) {
      char ad[1100];
      snprintf(ad, sizeof(ad), "%s|%s|%s", k.rkey, k.field, ver);
      if ((r = ae_seal(s->key, ad, data, len, &sealed, err)) != 0)
        return r;
      v = sealed;
      vl = strlen(sealed);
    }
    const char *argv[] = {"EVAL", lua_put_new, "1", k.rkey, k.field, v, ver};
    size_t argl[] = {4, strlen(lua_put_new), 1, strlen(k.rkey), strlen(k.field), vl, strlen(ver)};
    redisReply *rep = NULL;
    r = rs_cmd(s, what, &rep, 7, argv, argl, err);
    free(sealed);
    if (r != 0)
      return r;
    long long code = 0;
    if ((r = rs_script_reply(rep, what, &code, ver, sizeof(ver), err)) != 0)
      return r;
    if (code == 1)
      return 0;
    if (code == -1)
      return ae_err_set(err, AE_EEXIST, "storage key '%s': exists", key);
  }
  return ae_err_set(err, AE_EAGAIN, "redis %s: the hash kept changing; gave up", what);
}

int rs_share_challenge(ae_storage *st, int alpn, const char *domain, const char *token, const char *keyauth,
                       ae_err *err) {
  rs_storage *s = (rs_storage *)st;
  char ck[700], chan[200], ttl[32], msg[1200];
  if (alpn)
    rs_name(s, ck, sizeof(ck), "chal:alpn:%s", domain);
  else
    rs_name(s, ck, sizeof(ck), "chal:http:%s", token);
  rs_name(s, chan, sizeof(chan), "ev");
  snprintf(ttl, sizeof(ttl), "%d", CHALLENGE_TTL_MS);
  /* "chal <kind> <domain> <token> <keyauth>": tokens and key authorizations have no spaces. */
  snprintf(msg, sizeof(msg), "chal %s %s %s %s", alpn ? "alpn" : "http", domain, alpn ? "-" : token, keyauth);
  const char *argv[] = {"EVAL", lua_challenge, "1", ck, keyauth, ttl, chan, msg};
  long long n = 0;
  return rs_eval_int(s, ck, 8, argv, &n, err);
}
