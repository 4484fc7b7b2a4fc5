/* The cluster-wide view of stored certificates for /v1/domains: every name the CA's renew-at set
 * holds (one ZRANGE, never KEYS or SCAN), and for a page of names the version and committing
 * instance of each, read by one script per batch so a page costs a few round trips. */
#include "storage_redis.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define INFO_BATCH 500

static const char *const lua_info =
    "local out = {}\n"
    "for i, k in ipairs(KEYS) do\n"
    "  local v = redis.call('HMGET', k, 'ver', 'by', 'not_after')\n"
    "  out[i] = {v[1] or '', v[2] or '', v[3] or ''}\n"
    "end\n"
    "return out\n";

int ae_storage_cert_index(ae_storage *st, const char *ca_host, ae_storage_certref **out, size_t *n, ae_err *err) {
  *out = NULL;
  *n = 0;
  if (!ae_storage_is_redis(st))
    return ae_err_set(err, AE_EINVAL, "the cluster view needs the redis storage backend");
  rs_storage *s = (rs_storage *)st;
  char k[400];
  rs_name(s, k, sizeof(k), "exp:%s", ca_host);
  redisReply *rep = NULL;
  int r = rs_cmdf(s, k, &rep, err, "ZRANGE %s 0 -1 WITHSCORES", k);
  if (r != 0)
    return r;
  size_t pairs = rep->type == REDIS_REPLY_ARRAY ? rep->elements / 2 : 0;
  ae_storage_certref *v = ae_calloc(pairs + 1, sizeof(*v));
  size_t m = 0;
  for (size_t i = 0; i < pairs; i++) {
    redisReply *name = rep->element[2 * i], *score = rep->element[2 * i + 1];
    if (name->type != REDIS_REPLY_STRING || score->type != REDIS_REPLY_STRING || name->len >= sizeof(v[m].domain))
      continue;
    memcpy(v[m].domain, name->str, name->len);
    v[m].renew_at = (int64_t)strtoll(score->str, NULL, 10);
    m++;
  }
  freeReplyObject(rep);
  *out = v;
  *n = m;
  return 0;
}

int ae_storage_cert_info(ae_storage *st, const char *ca_host, ae_storage_certref *refs, size_t n, ae_err *err) {
  if (!ae_storage_is_redis(st))
    return ae_err_set(err, AE_EINVAL, "the cluster view needs the redis storage backend");
  rs_storage *s = (rs_storage *)st;
  for (size_t at = 0; at < n; at += INFO_BATCH) {
    size_t cnt = n - at < INFO_BATCH ? n - at : INFO_BATCH;
    const char **argv = ae_calloc(cnt + 3, sizeof(char *));
    size_t *argl = ae_calloc(cnt + 3, sizeof(size_t));
    char **keys = ae_calloc(cnt, sizeof(char *));
    char nk[32];
    snprintf(nk, sizeof(nk), "%zu", cnt);
    argv[0] = "EVAL";
    argv[1] = lua_info;
    argv[2] = nk;
    for (size_t i = 0; i < cnt; i++) {
      keys[i] = ae_malloc(700);
      rs_name(s, keys[i], 700, "cert:%s:%s", ca_host, refs[at + i].domain);
      argv[3 + i] = keys[i];
    }
    for (size_t i = 0; i < cnt + 3; i++)
      argl[i] = strlen(argv[i]);
    redisReply *rep = NULL;
    char what[300];
    snprintf(what, sizeof(what), "certificate versions under %scert:%s:", s->pfx, ca_host);
    int r = rs_cmd(s, what, &rep, (int)(cnt + 3), argv, argl, err);
    for (size_t i = 0; i < cnt; i++)
      free(keys[i]);
    free(keys);
    free(argv);
    free(argl);
    if (r != 0)
      return r;
    for (size_t i = 0; rep->type == REDIS_REPLY_ARRAY && i < rep->elements && i < cnt; i++) {
      redisReply *e = rep->element[i];
      ae_storage_certref *ref = &refs[at + i];
      if (e->type != REDIS_REPLY_ARRAY || e->elements != 3)
        continue;
      ref->version = e->element[0]->type == REDIS_REPLY_STRING ? strtoull(e->element[0]->str, NULL, 10) : 0;
      if (e->element[1]->type == REDIS_REPLY_STRING)
        snprintf(ref->by, sizeof(ref->by), "%s", e->element[1]->str);
      ref->not_after = e->element[2]->type == REDIS_REPLY_STRING ? strtoll(e->element[2]->str, NULL, 10) : 0;
    }
    freeReplyObject(rep);
  }
  return 0;
}
