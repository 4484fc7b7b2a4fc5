/* The cluster-wide view of stored certificates for /v1/domains: a page of the names stored for a
 * CA in byte order (ZRANGEBYLEX on the lexical index, never KEYS or SCAN), and for a page of names
 * the version and committing instance of each, read by one script per batch so a page costs a few
 * round trips. */
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

/* A page of the lexical name index name:<ca> (every member scored 0, so ZRANGEBYLEX pages it in
 * byte order), each name with its renew-at from exp:<ca>. The index is written by the commit and
 * delete scripts next to exp:<ca>; a store written before it existed (or out of step with it)
 * has it rebuilt here once from exp:<ca>, and a name without a renew-at is dropped from it. */
static const char *const lua_page =
    "local e = redis.call('ZCARD', KEYS[1])\n"
    "if redis.call('ZCARD', KEYS[2]) ~= e then\n"
    "  redis.call('DEL', KEYS[2])\n"
    "  local all = redis.call('ZRANGE', KEYS[1], 0, -1)\n"
    "  local args = {}\n"
    "  for _, d in ipairs(all) do\n"
    "    args[#args + 1] = 0\n"
    "    args[#args + 1] = d\n"
    "    if #args >= 2000 then redis.call('ZADD', KEYS[2], unpack(args)) args = {} end\n"
    "  end\n"
    "  if #args > 0 then redis.call('ZADD', KEYS[2], unpack(args)) end\n"
    "end\n"
    "local names = redis.call('ZRANGEBYLEX', KEYS[2], ARGV[1], '+', 'LIMIT', 0, tonumber(ARGV[2]))\n"
    "local out = {}\n"
    "for _, d in ipairs(names) do\n"
    "  local sc = redis.call('ZSCORE', KEYS[1], d)\n"
    "  if sc then out[#out + 1] = {d, sc} else redis.call('ZREM', KEYS[2], d) end\n"
    "end\n"
    "return {#names, out}\n";

#define INDEX_CHUNK 10000

/* Appends one page to *v (grown as needed); *got = names the index returned (a short page ends). */
static int read_page(rs_storage *s, const char *ca_host, const char *after, size_t max, ae_storage_certref **v,
                     size_t *m, size_t *cap, size_t *got, ae_err *err) {
  char exp[400], names[400], from[300], lim[32];
  rs_name(s, exp, sizeof(exp), "exp:%s", ca_host);
  rs_name(s, names, sizeof(names), "name:%s", ca_host);
  if (after && *after)
    snprintf(from, sizeof(from), "(%s", after);
  else
    snprintf(from, sizeof(from), "-");
  snprintf(lim, sizeof(lim), "%zu", max);
  const char *argv[] = {"EVAL", lua_page, "2", exp, names, from, lim};
  size_t argl[7];
  for (int i = 0; i < 7; i++)
    argl[i] = strlen(argv[i]);
  redisReply *rep = NULL;
  char what[500];
  snprintf(what, sizeof(what), "page of %s", names);
  int r = rs_cmd(s, what, &rep, 7, argv, argl, err);
  if (r != 0)
    return r;
  if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 2 || rep->element[0]->type != REDIS_REPLY_INTEGER ||
      rep->element[1]->type != REDIS_REPLY_ARRAY) {
    freeReplyObject(rep);
    return ae_err_set(err, AE_EPROTO, "redis %s: unexpected reply", what);
  }
  *got = (size_t)rep->element[0]->integer;
  redisReply *list = rep->element[1];
  if (*m + list->elements + 1 > *cap) {
    *cap = *m + list->elements + 1;
    *v = ae_realloc(*v, *cap * sizeof(**v));
  }
  for (size_t i = 0; i < list->elements; i++) {
    redisReply *e = list->element[i];
    if (e->type != REDIS_REPLY_ARRAY || e->elements != 2 || e->element[0]->type != REDIS_REPLY_STRING ||
        e->element[1]->type != REDIS_REPLY_STRING || e->element[0]->len >= sizeof((*v)[0].domain))
      continue;
    ae_storage_certref *ref = &(*v)[*m];
    memset(ref, 0, sizeof(*ref));
    memcpy(ref->domain, e->element[0]->str, e->element[0]->len);
    ref->renew_at = (int64_t)strtoll(e->element[1]->str, NULL, 10);
    (*m)++;
  }
  freeReplyObject(rep);
  return 0;
}

int ae_storage_cert_page(ae_storage *st, const char *ca_host, const char *after, size_t max,
                         ae_storage_certref **out, size_t *n, ae_err *err) {
  *out = NULL;
  *n = 0;
  if (!ae_storage_is_redis(st))
    return ae_err_set(err, AE_EINVAL, "the cluster view needs the redis storage backend");
  if (max == 0)
    return ae_err_set(err, AE_EINVAL, "a page of stored names needs a size");
  ae_storage_certref *v = NULL;
  size_t m = 0, cap = 0, got = 0;
  int r = read_page((rs_storage *)st, ca_host, after, max, &v, &m, &cap, &got, err);
  if (r != 0) {
    free(v);
    return r;
  }
  *out = v ? v : ae_calloc(1, sizeof(*v));
  *n = m;
  return 0;
}

int ae_storage_cert_index(ae_storage *st, const char *ca_host, ae_storage_certref **out, size_t *n, ae_err *err) {
  *out = NULL;
  *n = 0;
  if (!ae_storage_is_redis(st))
    return ae_err_set(err, AE_EINVAL, "the cluster view needs the redis storage backend");
  rs_storage *s = (rs_storage *)st;
  ae_storage_certref *v = NULL;
  size_t m = 0, cap = 0;
  char after[256] = "";
  /* In chunks, so no single reply holds a million names. */
  for (;;) {
    size_t got = 0;
    int r = read_page(s, ca_host, after, INDEX_CHUNK, &v, &m, &cap, &got, err);
    if (r != 0) {
      free(v);
      return r;
    }
    if (got < INDEX_CHUNK)
      break;
    snprintf(after, sizeof(after), "%s", m ? v[m - 1].domain : "");
  }
  *out = v ? v : ae_calloc(1, sizeof(*v));
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
