/* Copying every stored object between two backends (`acmedge storage copy`): accounts, the
 * certificates with their keys, metadata and staples, and the internal CA's files. Each
 * certificate goes over as one bundle (the Redis backend writes it with one script, so its chain
 * and key never mismatch); every other object is one atomic put. An object already equal at the
 * destination is left alone, so a re-run changes nothing, and every write is read back and
 * compared. Private keys arrive 0600 on a filesystem and sealed in Redis (when encrypt_keys). */
#include "acmedge/storage.h"
#include "storage_redis.h"

#include <gnutls/x509.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define WALK_DEPTH 8

typedef struct keyvec {
  char **v;
  size_t n, cap;
} keyvec;

static void push(keyvec *kv, const char *s) {
  if (kv->n == kv->cap) {
    kv->cap = kv->cap ? kv->cap * 2 : 64;
    kv->v = ae_realloc(kv->v, kv->cap * sizeof(char *));
  }
  kv->v[kv->n++] = ae_strdup(s);
}

/* fs (or any backend that lists directories): a child is a directory when it can be listed. */
static int walk_list(ae_storage *st, const char *prefix, int depth, keyvec *kv, ae_err *err) {
  if (depth > WALK_DEPTH)
    return ae_err_set(err, AE_EINVAL, "storage '%s': directories nested deeper than %d", prefix, WALK_DEPTH);
  char **names = NULL;
  size_t n = 0;
  int r = ae_storage_list(st, prefix, &names, &n, err);
  if (r == AE_ENOTFOUND && depth == 0)
    return 0; /* an empty storage */
  if (r != 0)
    return r;
  for (size_t i = 0; r == 0 && i < n; i++) {
    char child[1024];
    snprintf(child, sizeof(child), "%s%s/", prefix, names[i]);
    char **sub = NULL;
    size_t m = 0;
    ae_err e = {0};
    int lr = ae_storage_list(st, child, &sub, &m, &e);
    if (lr == 0) {
      ae_storage_list_free(sub, m);
      r = walk_list(st, child, depth + 1, kv, err);
    } else if (lr == AE_ENOTFOUND) {
      child[strlen(child) - 1] = '\0';
      push(kv, child);
    } else {
      r = ae_err_set(err, lr, "%s", e.msg);
    }
  }
  ae_storage_list_free(names, n);
  return r;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

int ae_storage_walk(ae_storage *st, const char *const *ca_hints, size_t nhints, char ***keys, size_t *n, ae_err *err) {
  if (ae_storage_is_redis(st))
    return rs_walk((rs_storage *)st, ca_hints, nhints, keys, n, err);
  keyvec kv = {0};
  int r = walk_list(st, "", 0, &kv, err);
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

/* ---- copying ---- */

typedef struct copier {
  ae_storage *src, *dst;
  ae_storage_copy_stats *stats;
  void (*report)(void *ud, const char *object, const char *problem);
  void *ud;
} copier;

static void failed(copier *c, const char *object, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void failed(copier *c, const char *object, const char *fmt, ...) {
  char msg[1200];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);
  c->stats->failed++;
  if (c->report)
    c->report(c->ud, object, msg);
}

static const char *base_name(const char *key) {
  const char *s = strrchr(key, '/');
  return s ? s + 1 : key;
}

static int ends_with(const char *s, const char *suffix) {
  size_t a = strlen(s), b = strlen(suffix);
  return a >= b && strcmp(s + a - b, suffix) == 0;
}

/* Mode of an fs backend's file (0 when st is not fs or the file is missing). */
static unsigned fs_mode(ae_storage *st, const char *key) {
  if (ae_storage_is_redis(st))
    return 0;
  char path[4200];
  struct stat sb;
  snprintf(path, sizeof(path), "%s/%s", ae_storage_fs_root(st), key);
  return stat(path, &sb) == 0 ? (unsigned)(sb.st_mode & 07777) : 0;
}

/* Private objects: what acmedge writes private (account files, keys), what a source fs keeps
 * 0600, and anything holding a private key. */
static int is_private(copier *c, const char *key, const char *data, size_t len) {
  const char *b = base_name(key);
  if (strncmp(key, "accounts/", 9) == 0 || strcmp(b, "key.pem") == 0 || ends_with(b, ".key"))
    return 1;
  if (memmem(data, len, "PRIVATE KEY", 11))
    return 1;
  unsigned m = fs_mode(c->src, key);
  return m && (m & 077) == 0;
}

static int same(const char *a, size_t al, const char *b, size_t bl) { return al == bl && memcmp(a, b, al) == 0; }

static void wipe_free(char *p, size_t len) {
  if (p) {
    memset(p, 0, len);
    free(p);
  }
}

/* One plain object: read, skip when equal at the destination, put, read back. */
static void copy_one(copier *c, const char *key) {
  char *data = NULL, *have = NULL;
  size_t len = 0, hlen = 0;
  ae_err e = {0};
  if (ae_storage_get(c->src, key, &data, &len, &e) != 0) {
    failed(c, key, "cannot read it from the source: %s", e.msg);
    return;
  }
  int priv = is_private(c, key, data, len);
  int r = ae_storage_get(c->dst, key, &have, &hlen, &e);
  int mode_ok = !priv || (fs_mode(c->dst, key) & 077) == 0;
  if (r == 0 && same(data, len, have, hlen) && mode_ok) {
    c->stats->unchanged++;
  } else if (r != 0 && r != AE_ENOTFOUND) {
    failed(c, key, "cannot read it at the destination: %s", e.msg);
  } else if ((r = ae_storage_put(c->dst, key, data, len, priv, &e)) != 0) {
    failed(c, key, "cannot write it: %s", e.msg);
  } else {
    wipe_free(have, hlen);
    have = NULL;
    if (ae_storage_get(c->dst, key, &have, &hlen, &e) != 0)
      failed(c, key, "written but cannot be read back: %s", e.msg);
    else if (!same(data, len, have, hlen))
      failed(c, key, "written but reads back different (%zu bytes, expected %zu)", hlen, len);
    else
      c->stats->copied++;
  }
  wipe_free(data, len);
  wipe_free(have, hlen);
}

/* Leaf validity, for the destination's renewal order. */
static int leaf_validity(const char *pem, size_t len, int64_t *nb, int64_t *na) {
  gnutls_x509_crt_t crt;
  if (gnutls_x509_crt_init(&crt) < 0)
    return -1;
  gnutls_datum_t d = {(unsigned char *)pem, (unsigned)len};
  int r = gnutls_x509_crt_import(crt, &d, GNUTLS_X509_FMT_PEM);
  if (r >= 0) {
    *nb = (int64_t)gnutls_x509_crt_get_activation_time(crt);
    *na = (int64_t)gnutls_x509_crt_get_expiration_time(crt);
  }
  gnutls_x509_crt_deinit(crt);
  return r < 0 ? -1 : 0;
}

typedef struct blob {
  char *p;
  size_t len;
  int found;
} blob;

static int read_blob(ae_storage *st, const char *key, blob *b, ae_err *err) {
  memset(b, 0, sizeof(*b));
  ae_err e = {0};
  int r = ae_storage_get(st, key, &b->p, &b->len, &e);
  if (r == AE_ENOTFOUND)
    return 0;
  if (r != 0)
    return ae_err_set(err, r, "%s", e.msg);
  b->found = 1;
  return 0;
}

static int blob_same(const blob *a, const blob *b) {
  /* An empty meta is how a bundle without meta.json is kept by a backend that always has one. */
  if ((!a->found || a->len == 0) && (!b->found || b->len == 0))
    return 1;
  return a->found && b->found && same(a->p, a->len, b->p, b->len);
}

/* One certificate directory: chain, key and meta as one bundle, then its other files. */
static void copy_cert(copier *c, const char *ca, const char *dirname, char **files, size_t nfiles) {
  char obj[700], k[900], domain[300];
  snprintf(obj, sizeof(obj), "certs/%s/%s", ca, dirname);
  ae_storage_dirname_domain(dirname, domain, sizeof(domain));
  blob s[3] = {{0}}, d[3] = {{0}}; /* cert.pem, key.pem, meta.json */
  static const char *const names[3] = {"cert.pem", "key.pem", "meta.json"};
  ae_err e = {0};
  int ok = 1;
  for (int i = 0; ok && i < 3; i++) {
    snprintf(k, sizeof(k), "%s/%s", obj, names[i]);
    if (read_blob(c->src, k, &s[i], &e) != 0) {
      failed(c, obj, "cannot read %s from the source: %s", names[i], e.msg);
      ok = 0;
    }
  }
  if (ok && (!s[0].found || !s[1].found)) {
    failed(c, obj, "has no %s: not a complete certificate, not copied", s[0].found ? "key.pem" : "cert.pem");
    ok = 0;
  }
  for (int i = 0; ok && i < 3; i++) {
    snprintf(k, sizeof(k), "%s/%s", obj, names[i]);
    if (read_blob(c->dst, k, &d[i], &e) != 0) {
      failed(c, obj, "cannot read %s at the destination: %s", names[i], e.msg);
      ok = 0;
    }
  }
  if (ok) {
    snprintf(k, sizeof(k), "%s/key.pem", obj);
    int equal = blob_same(&s[0], &d[0]) && blob_same(&s[1], &d[1]) && blob_same(&s[2], &d[2]) &&
                (fs_mode(c->dst, k) & 077) == 0;
    int64_t nb = 0, na = 0;
    if (equal) {
      c->stats->unchanged++;
    } else if (leaf_validity(s[0].p, s[0].len, &nb, &na) != 0) {
      failed(c, obj, "cert.pem does not start with a readable certificate");
      ok = 0;
    } else {
      int r = 0;
      if (c->dst->ops->commit) {
        ae_storage_bundle b = {.ca_host = ca, .domain = domain, .chain = s[0].p, .key = s[1].p,
                               .meta = s[2].found ? s[2].p : "", .not_before = nb, .not_after = na};
        r = ae_storage_commit(c->dst, &b, &e);
      } else {
        /* Same order as ae_storage_commit, without inventing a meta.json the source lacks. */
        for (int i = 1; r == 0 && i >= 0; i--) {
          snprintf(k, sizeof(k), "%s/%s", obj, names[i]);
          r = ae_storage_put(c->dst, k, s[i].p, s[i].len, i == 1, &e);
        }
        snprintf(k, sizeof(k), "%s/meta.json", obj);
        if (r == 0 && s[2].found && s[2].len)
          r = ae_storage_put(c->dst, k, s[2].p, s[2].len, 0, &e);
      }
      if (r != 0) {
        failed(c, obj, "cannot write it: %s", e.msg);
        ok = 0;
      }
      for (int i = 0; ok && i < 3; i++) {
        free(d[i].p);
        snprintf(k, sizeof(k), "%s/%s", obj, names[i]);
        if (read_blob(c->dst, k, &d[i], &e) != 0 || !blob_same(&s[i], &d[i])) {
          failed(c, obj, "written but %s reads back different%s%s", names[i], e.msg[0] ? ": " : "", e.msg);
          ok = 0;
        }
      }
      if (ok)
        c->stats->copied++;
    }
  }
  for (int i = 0; i < 3; i++) {
    wipe_free(s[i].p, s[i].len);
    wipe_free(d[i].p, d[i].len);
  }
  if (!ok)
    return;
  for (size_t i = 0; i < nfiles; i++) {
    const char *b = base_name(files[i]);
    if (strcmp(b, "cert.pem") != 0 && strcmp(b, "key.pem") != 0 && strcmp(b, "meta.json") != 0)
      copy_one(c, files[i]);
  }
}

/* "certs/<ca>/<dir>/<file>": fills ca and dir, returns the length of "certs/<ca>/<dir>/". */
static size_t cert_prefix(const char *key, char *ca, size_t calen, char *dir, size_t dirlen) {
  if (strncmp(key, "certs/", 6) != 0)
    return 0;
  const char *a = key + 6, *b = strchr(a, '/'), *f = b ? strchr(b + 1, '/') : NULL;
  if (!b || !f || strchr(f + 1, '/') || b == a || f == b + 1 || !f[1])
    return 0;
  snprintf(ca, calen, "%.*s", (int)(b - a), a);
  snprintf(dir, dirlen, "%.*s", (int)(f - b - 1), b + 1);
  return (size_t)(f - key) + 1;
}

int ae_storage_copy(ae_storage *src, ae_storage *dst, const char *const *ca_hints, size_t nhints,
                    ae_storage_copy_stats *stats, void (*report)(void *ud, const char *object, const char *problem),
                    void *ud, ae_err *err) {
  memset(stats, 0, sizeof(*stats));
  char **keys = NULL;
  size_t n = 0;
  ae_err e = {0};
  int r = ae_storage_walk(src, ca_hints, nhints, &keys, &n, &e);
  if (r != 0)
    return ae_err_set(err, r, "listing the source: %s", e.msg);
  copier c = {src, dst, stats, report, ud};
  for (size_t i = 0; i < n;) {
    char ca[300], dir[300];
    size_t pl = cert_prefix(keys[i], ca, sizeof(ca), dir, sizeof(dir));
    if (!pl) {
      copy_one(&c, keys[i]);
      i++;
      continue;
    }
    size_t j = i + 1;
    while (j < n && strncmp(keys[j], keys[i], pl) == 0 && !strchr(keys[j] + pl, '/'))
      j++;
    copy_cert(&c, ca, dir, keys + i, j - i);
    i = j;
  }
  ae_storage_list_free(keys, n);
  return 0;
}
