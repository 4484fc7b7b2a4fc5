/* Enumerates every object the Redis backend holds as fs-layout storage keys, for
 * `acmedge storage copy`. Only the index structures are read (the CA set, the renew-at sets, the
 * directory sets, HKEYS of each hash): never KEYS or SCAN. Accounts are found for the CA hosts of
 * the CA set and those the caller names (an account exists before its CA's first certificate). */
#include "storage_redis.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WALK_DEPTH 8

typedef struct keyvec {
  char **v;
  size_t n, cap;
} keyvec;

static void push(keyvec *kv, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void push(keyvec *kv, const char *fmt, ...) {
  if (kv->n == kv->cap) {
    kv->cap = kv->cap ? kv->cap * 2 : 64;
    kv->v = ae_realloc(kv->v, kv->cap * sizeof(char *));
  }
  va_list ap;
  va_start(ap, fmt);
  char *s = NULL;
  if (vasprintf(&s, fmt, ap) < 0)
    s = NULL;
  va_end(ap);
  if (s)
    kv->v[kv->n++] = s;
}

static int str_el(const redisReply *r) { return r && r->type == REDIS_REPLY_STRING; }

/* Storage file name of a certificate hash field, NULL for bookkeeping fields (ver, fence, ...). */
static const char *cert_file(const char *field) {
  if (strcmp(field, "chain") == 0)
    return "cert.pem";
  if (strcmp(field, "key") == 0)
    return "key.pem";
  if (strcmp(field, "meta") == 0)
    return "meta.json";
  if (strncmp(field, "f:", 2) == 0 && field[2] && !strchr(field + 2, '/'))
    return field + 2;
  return NULL;
}

static int walk_ca(rs_storage *s, const char *ca, keyvec *kv, ae_err *err) {
  char rk[700];
  redisReply *rep = NULL;
  rs_name(s, rk, sizeof(rk), "acct:%s", ca);
  int r = rs_cmdf(s, rk, &rep, err, "HKEYS %s", rk);
  if (r != 0)
    return r;
  for (size_t i = 0; rep->type == REDIS_REPLY_ARRAY && i < rep->elements; i++)
    if (str_el(rep->element[i]) && !strchr(rep->element[i]->str, '/'))
      push(kv, "accounts/%s/%s", ca, rep->element[i]->str);
  freeReplyObject(rep);
  rs_name(s, rk, sizeof(rk), "exp:%s", ca);
  redisReply *doms = NULL;
  if ((r = rs_cmdf(s, rk, &doms, err, "ZRANGE %s 0 -1", rk)) != 0)
    return r;
  for (size_t i = 0; r == 0 && doms->type == REDIS_REPLY_ARRAY && i < doms->elements; i++) {
    if (!str_el(doms->element[i]))
      continue;
    const char *dom = doms->element[i]->str;
    char dir[300];
    ae_storage_domain_dirname(dom, dir, sizeof(dir));
    rs_name(s, rk, sizeof(rk), "cert:%s:%s", ca, dom);
    if ((r = rs_cmdf(s, rk, &rep, err, "HKEYS %s", rk)) != 0)
      break;
    for (size_t j = 0; rep->type == REDIS_REPLY_ARRAY && j < rep->elements; j++) {
      const char *f = str_el(rep->element[j]) ? cert_file(rep->element[j]->str) : NULL;
      if (f)
        push(kv, "certs/%s/%s/%s", ca, dir, f);
    }
    freeReplyObject(rep);
  }
  freeReplyObject(doms);
  return r;
}

/* The key/value tree: each directory set lists its children, files and directories alike. */
static int walk_kv(rs_storage *s, const char *path, int depth, keyvec *kv, ae_err *err) {
  if (depth > WALK_DEPTH)
    return ae_err_set(err, AE_EINVAL, "redis %sdir:%s: directories nested deeper than %d", s->pfx, path, WALK_DEPTH);
  char rk[700];
  redisReply *rep = NULL;
  rs_name(s, rk, sizeof(rk), "dir:%s", path);
  int r = rs_cmdf(s, rk, &rep, err, "SMEMBERS %s", rk);
  if (r != 0)
    return r;
  for (size_t i = 0; r == 0 && rep->type == REDIS_REPLY_ARRAY && i < rep->elements; i++) {
    if (!str_el(rep->element[i]) || !rep->element[i]->str[0] || strchr(rep->element[i]->str, '/'))
      continue;
    char child[600];
    snprintf(child, sizeof(child), "%s%s%s", path, path[0] ? "/" : "", rep->element[i]->str);
    if (depth == 0 && (strcmp(child, "certs") == 0 || strcmp(child, "accounts") == 0))
      continue; /* not kept as key/value entries */
    char fk[700], dk[700];
    rs_name(s, fk, sizeof(fk), "kv:%s", child);
    rs_name(s, dk, sizeof(dk), "dir:%s", child);
    redisReply *ex = NULL;
    if ((r = rs_cmdf(s, fk, &ex, err, "EXISTS %s", fk)) != 0)
      break;
    int file = ex->type == REDIS_REPLY_INTEGER && ex->integer > 0;
    freeReplyObject(ex);
    if (file)
      push(kv, "%s", child);
    if ((r = rs_cmdf(s, dk, &ex, err, "EXISTS %s", dk)) != 0)
      break;
    int dir = ex->type == REDIS_REPLY_INTEGER && ex->integer > 0;
    freeReplyObject(ex);
    if (dir)
      r = walk_kv(s, child, depth + 1, kv, err);
  }
  freeReplyObject(rep);
  return r;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

int rs_walk(rs_storage *s, const char *const *ca_hints, size_t nhints, char ***keys, size_t *n, ae_err *err) {
  keyvec kv = {0};
  char rk[200];
  redisReply *cas = NULL;
  rs_name(s, rk, sizeof(rk), "cas");
  int r = rs_cmdf(s, rk, &cas, err, "SMEMBERS %s", rk);
  if (r != 0)
    return r;
  size_t ncas = cas->type == REDIS_REPLY_ARRAY ? cas->elements : 0;
  for (size_t i = 0; r == 0 && i < ncas + nhints; i++) {
    const char *ca = i < ncas ? (str_el(cas->element[i]) ? cas->element[i]->str : NULL) : ca_hints[i - ncas];
    if (!ca || !*ca || strchr(ca, '/'))
      continue;
    int dup = 0; /* a hint that is also in the CA set */
    for (size_t j = 0; j < ncas && i >= ncas; j++)
      dup |= str_el(cas->element[j]) && strcmp(cas->element[j]->str, ca) == 0;
    for (size_t j = ncas; j < i; j++)
      dup |= strcmp(ca_hints[j - ncas], ca) == 0;
    if (!dup)
      r = walk_ca(s, ca, &kv, err);
  }
  freeReplyObject(cas);
  if (r == 0)
    r = walk_kv(s, "", 0, &kv, err);
  if (r != 0) {
    ae_storage_list_free(kv.v, kv.n);
    return r;
  }
  if (kv.n > 1)
    qsort(kv.v, kv.n, sizeof(char *), cmp_str);
  *keys = kv.v;
  *n = kv.n;
  return 0;
}
