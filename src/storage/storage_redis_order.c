/* Redis backend: the order in flight of each name (docs/cluster.md, "Order resume"). One STRING
 * "order:<ca>:<domain>" holding the record's JSON (key sealed), expiring with the order. Writes and
 * deletes compare the name's lock with the writer's fence in the same script, so an instance
 * whose lock lapsed cannot replace or drop the record of the holder that took over. The commit
 * script deletes the record with the certificate it produced. */
#include "storage_redis.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "storage_order.h"

#define ORDER_TTL_MIN_S 60

static const char *const lua_order_put =
    "if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end\n"
    "redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])\n"
    "return 1\n";

static const char *const lua_order_del =
    "if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end\n"
    "return redis.call('DEL', KEYS[1])\n";

void rs_order_key(const rs_storage *s, const char *ca_host, const char *domain, char *buf, size_t len) {
  rs_name(s, buf, len, "order:%s:%s", ca_host, domain);
}

static void keys_for(const rs_storage *s, const char *ca_host, const char *domain, char *ok, size_t oklen, char *lk,
                     size_t lklen) {
  char lname[600];
  rs_order_key(s, ca_host, domain, ok, oklen);
  snprintf(lname, sizeof(lname), "cert:%s:%s", ca_host, domain);
  rs_lock_key(s, lname, lk, lklen);
}

static int eval_fenced(rs_storage *s, const char *what, const char *script, const char *ok, const char *lk,
                       uint64_t fence, const char *value, const char *ttl, long long *out, ae_err *err) {
  char tok[32];
  snprintf(tok, sizeof(tok), "%llu", (unsigned long long)fence);
  const char *argv[] = {"EVAL", script, "2", ok, lk, tok, value, ttl};
  return rs_eval_int(s, what, value ? 8 : 6, argv, out, err);
}

int rs_order_put(ae_storage *st, const char *domain, const ae_storage_order *o, ae_err *err) {
  rs_storage *s = (rs_storage *)st;
  char ok[700], lk[700], ttl[32];
  keys_for(s, o->ca_host, domain, ok, sizeof(ok), lk, sizeof(lk));
  int64_t left = o->expires - (int64_t)time(NULL);
  if (left < ORDER_TTL_MIN_S)
    left = ORDER_TTL_MIN_S;
  snprintf(ttl, sizeof(ttl), "%lld", (long long)left * 1000);
  char *text = NULL;
  int r = ae_order_encode(o, s->encrypt ? s->key : NULL, ok, &text, err);
  if (r != 0)
    return r;
  if (strlen(text) > RS_VALUE_MAX) {
    free(text);
    return ae_err_set(err, AE_ELIMIT, "%s: order record over the size cap (%d)", ok, RS_VALUE_MAX);
  }
  long long done = 0;
  r = eval_fenced(s, ok, lua_order_put, ok, lk, o->fence, text, ttl, &done, err);
  free(text);
  if (r != 0)
    return r;
  return done == 1 ? 0
                   : ae_err_set(err, AE_EEXIST, "%s: refused: our issuance lock (fence %llu) lapsed or was taken over",
                                ok, (unsigned long long)o->fence);
}

int rs_order_get(ae_storage *st, const char *ca_host, const char *domain, ae_storage_order *o, ae_err *err) {
  rs_storage *s = (rs_storage *)st;
  char ok[700];
  rs_order_key(s, ca_host, domain, ok, sizeof(ok));
  redisReply *rep = NULL;
  int r = rs_cmdf(s, ok, &rep, err, "GET %s", ok);
  if (r != 0)
    return r;
  if (rep->type == REDIS_REPLY_NIL) {
    freeReplyObject(rep);
    return ae_err_set(err, AE_ENOTFOUND, "%s: no saved order", ok);
  }
  if (rep->type != REDIS_REPLY_STRING || rep->len > RS_VALUE_MAX) {
    freeReplyObject(rep);
    return ae_err_set(err, AE_EPROTO, "%s: saved order is not a string under the size cap", ok);
  }
  r = ae_order_decode(rep->str, rep->len, s->encrypt ? s->key : NULL, ok, o, err);
  freeReplyObject(rep);
  return r;
}

int rs_order_del(ae_storage *st, const char *ca_host, const char *domain, uint64_t fence, ae_err *err) {
  rs_storage *s = (rs_storage *)st;
  char ok[700], lk[700];
  keys_for(s, ca_host, domain, ok, sizeof(ok), lk, sizeof(lk));
  long long n = 0;
  return eval_fenced(s, ok, lua_order_del, ok, lk, fence, NULL, NULL, &n, err);
}
