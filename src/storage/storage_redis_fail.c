/* Per-name failure state shared by every instance of a cluster (docs/cluster.md): the CA counts
 * failed validations per account and name, and the account is shared, so a name that failed on
 * one instance must not be retried by another before its backoff ends. One HASH per name whose
 * TTL is the backoff: Redis forgets it when the name may be tried again. The fs backend serves one
 * process, whose own backoff is enough: there the calls do nothing. */
#include "storage_redis.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* A later failure never shortens a backoff another instance set. */
static const char *const lua_fail_put =
    "local cur = tonumber(redis.call('HGET', KEYS[1], 'retry_at') or '0') or 0\n"
    "if cur > tonumber(ARGV[1]) then return 0 end\n"
    "redis.call('HSET', KEYS[1], 'retry_at', ARGV[1], 'failures', ARGV[2], 'problem', ARGV[3], 'detail', ARGV[4],"
    " 'by', ARGV[5])\n"
    "redis.call('PEXPIREAT', KEYS[1], ARGV[6])\n"
    "return 1\n";

static void fail_key(rs_storage *s, const char *ca, const char *domain, char *buf, size_t len) {
  rs_name(s, buf, len, "fail:%s:%s", ca, domain);
}

int ae_storage_fail_put(ae_storage *st, const char *ca_host, const char *domain, const ae_storage_fail *f,
                        ae_err *err) {
  if (!ae_storage_is_redis(st))
    return 0;
  rs_storage *s = (rs_storage *)st;
  char k[700], at[32], n[32], pxat[32];
  fail_key(s, ca_host, domain, k, sizeof(k));
  if (f->retry_at <= (int64_t)time(NULL))
    return 0; /* nothing to wait for */
  snprintf(at, sizeof(at), "%lld", (long long)f->retry_at);
  snprintf(n, sizeof(n), "%u", f->failures);
  snprintf(pxat, sizeof(pxat), "%lld", (long long)f->retry_at * 1000);
  const char *argv[] = {"EVAL", lua_fail_put, "1", k, at, n, f->problem, f->detail, s->instance, pxat};
  size_t argl[10];
  for (int i = 0; i < 10; i++)
    argl[i] = strlen(argv[i]);
  redisReply *rep = NULL;
  int r = rs_cmd(s, k, &rep, 10, argv, argl, err);
  if (r == 0)
    freeReplyObject(rep);
  return r;
}

int ae_storage_fail_get(ae_storage *st, const char *ca_host, const char *domain, ae_storage_fail *f, ae_err *err) {
  memset(f, 0, sizeof(*f));
  if (!ae_storage_is_redis(st))
    return ae_err_set(err, AE_ENOTFOUND, "%s: no shared failure state", domain);
  rs_storage *s = (rs_storage *)st;
  char k[700];
  fail_key(s, ca_host, domain, k, sizeof(k));
  redisReply *rep = NULL;
  int r = rs_cmdf(s, k, &rep, err, "HMGET %s retry_at failures problem detail by", k);
  if (r != 0)
    return r;
  if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 5 || rep->element[0]->type != REDIS_REPLY_STRING) {
    freeReplyObject(rep);
    return ae_err_set(err, AE_ENOTFOUND, "%s: not found", k);
  }
  char *end = NULL;
  long long at = strtoll(rep->element[0]->str, &end, 10);
  if (!end || *end || at <= 0) {
    r = ae_err_set(err, AE_EPROTO, "%s: retry_at '%.40s' is not a time", k, rep->element[0]->str);
    freeReplyObject(rep);
    return r;
  }
  f->retry_at = at;
  if (rep->element[1]->type == REDIS_REPLY_STRING)
    f->failures = (unsigned)strtoul(rep->element[1]->str, NULL, 10);
  char *dst[3] = {f->problem, f->detail, f->by};
  size_t cap[3] = {sizeof(f->problem), sizeof(f->detail), sizeof(f->by)};
  for (int i = 0; i < 3; i++)
    if (rep->element[2 + i]->type == REDIS_REPLY_STRING)
      snprintf(dst[i], cap[i], "%s", rep->element[2 + i]->str);
  freeReplyObject(rep);
  return 0;
}

int ae_storage_fail_del(ae_storage *st, const char *ca_host, const char *domain, ae_err *err) {
  if (!ae_storage_is_redis(st))
    return 0;
  rs_storage *s = (rs_storage *)st;
  char k[700];
  fail_key(s, ca_host, domain, k, sizeof(k));
  redisReply *rep = NULL;
  int r = rs_cmdf(s, k, &rep, err, "DEL %s", k);
  if (r == 0)
    freeReplyObject(rep);
  return r;
}
