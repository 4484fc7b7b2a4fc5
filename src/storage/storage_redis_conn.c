/* Redis backend plumbing: a small pool of synchronous hiredis connections (used from the thread
 * pool; hiredis 0.14's sync API has connect and command timeouts, its async API has none), and
 * the mapping of storage keys onto the key layout (docs/cluster.md). */
#include "storage_redis.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void rs_name(const rs_storage *s, char *buf, size_t len, const char *fmt, ...) {
  size_t n = strlen(s->pfx);
  snprintf(buf, len, "%s", s->pfx);
  if (n >= len)
    return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf + n, len - n, fmt, ap);
  va_end(ap);
}

static int fail_conn(rs_storage *s, redisContext *c, ae_err *err) {
  int r = ae_err_set(err, AE_EIO, "redis %s: %s", s->address, c && c->errstr[0] ? c->errstr : "cannot connect");
  __atomic_store_n(&s->state, 0, __ATOMIC_RELAXED);
  return r;
}

int rs_connect(rs_storage *s, redisContext **out, ae_err *err) {
  struct timeval tv = {.tv_sec = RS_TIMEOUT_MS / 1000, .tv_usec = (RS_TIMEOUT_MS % 1000) * 1000};
  redisContext *c = s->unix_path ? redisConnectUnixWithTimeout(s->unix_path, tv) : redisConnectWithTimeout(s->host, s->port, tv);
  if (!c || c->err) {
    int r = fail_conn(s, c, err);
    if (c)
      redisFree(c);
    return r;
  }
  redisSetTimeout(c, tv);
  /* TCP only: on a Unix socket the call fails and leaves c->err set, which fails every command. */
  if (!s->unix_path)
    redisEnableKeepAlive(c);
  redisReply *rep = NULL;
  if (s->password) {
    rep = redisCommand(c, "AUTH %s", s->password);
    if (!rep || rep->type == REDIS_REPLY_ERROR) {
      int r = rep ? ae_err_set(err, AE_EPROTO, "redis %s: AUTH refused (storage.redis.password_file): %s", s->address,
                               rep->str)
                  : fail_conn(s, c, err);
      if (rep)
        freeReplyObject(rep);
      redisFree(c);
      return r;
    }
    freeReplyObject(rep);
  }
  rep = redisCommand(c, "SELECT %u", s->db);
  if (!rep || rep->type == REDIS_REPLY_ERROR) {
    int r = rep ? ae_err_set(err, AE_EPROTO, "redis %s: SELECT %u refused: %s", s->address, s->db, rep->str)
                : fail_conn(s, c, err);
    if (rep)
      freeReplyObject(rep);
    redisFree(c);
    return r;
  }
  freeReplyObject(rep);
  *out = c;
  return 0;
}

static int take(rs_storage *s, redisContext **out, ae_err *err) {
  pthread_mutex_lock(&s->mu);
  redisContext *c = s->npool ? s->pool[--s->npool] : NULL;
  pthread_mutex_unlock(&s->mu);
  if (c) {
    *out = c;
    return 0;
  }
  return rs_connect(s, out, err);
}

static void give(rs_storage *s, redisContext *c) {
  if (c->err) {
    redisFree(c);
    return;
  }
  pthread_mutex_lock(&s->mu);
  if (s->npool < RS_POOL_MAX) {
    s->pool[s->npool++] = c;
    c = NULL;
  }
  pthread_mutex_unlock(&s->mu);
  if (c)
    redisFree(c);
}

static int check_reply(rs_storage *s, redisContext *c, redisReply *rep, const char *what, redisReply **out,
                       ae_err *err) {
  if (!rep)
    return fail_conn(s, c, err);
  __atomic_store_n(&s->state, 1, __ATOMIC_RELAXED);
  if (rep->type == REDIS_REPLY_ERROR) {
    int r = ae_err_set(err, AE_EPROTO, "redis %s: %s", what, rep->str);
    freeReplyObject(rep);
    return r;
  }
  *out = rep;
  return 0;
}

int rs_cmd(rs_storage *s, const char *what, redisReply **out, int argc, const char **argv, const size_t *argvlen,
           ae_err *err) {
  redisContext *c = NULL;
  int r = take(s, &c, err);
  if (r != 0)
    return r;
  redisReply *rep = redisCommandArgv(c, argc, argv, argvlen);
  r = check_reply(s, c, rep, what, out, err);
  give(s, c);
  return r;
}

int rs_script_reply(redisReply *rep, const char *what, long long *code, char *ver, size_t vlen, ae_err *err) {
  int ok = rep->type == REDIS_REPLY_ARRAY && rep->elements == 2 && rep->element[0]->type == REDIS_REPLY_INTEGER &&
           (rep->element[1]->type == REDIS_REPLY_STRING || rep->element[1]->type == REDIS_REPLY_STATUS);
  if (ok) {
    *code = rep->element[0]->integer;
    snprintf(ver, vlen, "%.30s", rep->element[1]->str);
  }
  freeReplyObject(rep);
  return ok ? 0 : ae_err_set(err, AE_EPROTO, "redis %s: unexpected script reply", what);
}

int rs_cmdf(rs_storage *s, const char *what, redisReply **out, ae_err *err, const char *fmt, ...) {
  redisContext *c = NULL;
  int r = take(s, &c, err);
  if (r != 0)
    return r;
  va_list ap;
  va_start(ap, fmt);
  redisReply *rep = redisvCommand(c, fmt, ap);
  va_end(ap);
  r = check_reply(s, c, rep, what, out, err);
  give(s, c);
  return r;
}

static const char *cert_field(const char *file) {
  if (strcmp(file, "cert.pem") == 0)
    return "chain";
  if (strcmp(file, "key.pem") == 0)
    return "key";
  if (strcmp(file, "meta.json") == 0)
    return "meta";
  return NULL;
}

/* Same rules as the fs backend: relative, no empty, "." or ".." components, no control bytes. */
static int split(const char *key, char comps[4][256], size_t *n, int *dir) {
  size_t len = strlen(key);
  *n = 0;
  *dir = len > 0 && key[len - 1] == '/';
  if (len == 0 || len > 600 || key[0] == '/')
    return AE_EINVAL;
  size_t start = 0, end = *dir ? len - 1 : len;
  for (size_t i = 0; i <= end; i++) {
    if (i < end && ((unsigned char)key[i] < 0x20 || key[i] == 0x7f))
      return AE_EINVAL;
    if (i == end || key[i] == '/') {
      size_t cl = i - start;
      if (cl == 0 || cl >= 256 || (cl == 1 && key[start] == '.') || (cl == 2 && key[start] == '.' && key[start + 1] == '.'))
        return AE_EINVAL;
      if (*n < 4) {
        memcpy(comps[*n], key + start, cl);
        comps[*n][cl] = '\0';
      }
      (*n)++;
      start = i + 1;
    }
  }
  return 0;
}

int rs_map_key(const rs_storage *s, const char *key, rs_key *k, ae_err *err) {
  char c[4][256];
  size_t n = 0;
  int dir = 0;
  memset(k, 0, sizeof(*k));
  if (!key || split(key, c, &n, &dir) != 0)
    return ae_err_set(err, AE_EINVAL, "invalid storage key '%s'", key ? key : "(null)");
  if (strcmp(c[0], "certs") == 0 && n >= 2 && n <= 4) {
    snprintf(k->ca, sizeof(k->ca), "%s", c[1]);
    if (n == 2) {
      k->kind = RK_CERTS_LIST;
      return 0;
    }
    ae_storage_dirname_domain(c[2], k->domain, sizeof(k->domain));
    rs_name(s, k->rkey, sizeof(k->rkey), "cert:%s:%s", k->ca, k->domain);
    if (n == 3) {
      k->kind = RK_CERT_DIR;
      return 0;
    }
    if (dir)
      return ae_err_set(err, AE_EINVAL, "storage key '%s': nothing is stored below a certificate file", key);
    const char *f = cert_field(c[3]);
    if (f)
      snprintf(k->field, sizeof(k->field), "%s", f);
    else
      snprintf(k->field, sizeof(k->field), "f:%.80s", c[3]);
    k->kind = RK_CERT;
    return 0;
  }
  if (strcmp(c[0], "certs") == 0 && n == 1) {
    k->kind = RK_CAS_LIST;
    return 0;
  }
  if (strcmp(c[0], "accounts") == 0 && n == 3 && !dir) {
    snprintf(k->ca, sizeof(k->ca), "%s", c[1]);
    rs_name(s, k->rkey, sizeof(k->rkey), "acct:%s", k->ca);
    snprintf(k->field, sizeof(k->field), "%.90s", c[2]);
    k->kind = RK_ACCT;
    return 0;
  }
  /* Anything else (internal CA files, staples of other layouts): one string per key, and a set
   * per directory so listing never needs KEYS or SCAN. */
  size_t len = strlen(key) - (size_t)dir;
  const char *slash = memrchr(key, '/', len);
  k->kind = RK_KV;
  k->is_dir = dir;
  rs_name(s, k->rkey, sizeof(k->rkey), "kv:%.*s", (int)len, key);
  snprintf(k->parent, sizeof(k->parent), "%.*s", slash ? (int)(slash - key) : 0, key);
  snprintf(k->base, sizeof(k->base), "%.*s", slash ? (int)(len - (size_t)(slash - key) - 1) : (int)len,
           slash ? slash + 1 : key);
  return 0;
}
