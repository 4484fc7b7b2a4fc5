/* Persistence interface (design §7) and the filesystem backend. Keys are relative paths such as
 * "certs/127.0.0.1_14000/a.example.com/cert.pem". Calls are synchronous; run them off the loop
 * (uv_queue_work) where latency matters. */
#ifndef ACMEDGE_STORAGE_H
#define ACMEDGE_STORAGE_H

#include <stddef.h>
#include "acmedge/common.h"

typedef struct ae_storage ae_storage;

typedef struct ae_storage_ops {
  /* Writes atomically; private_ selects mode 0600 (else 0644). */
  int (*put)(ae_storage *st, const char *key, const void *data, size_t len, int private_, ae_err *err);
  /* Reads a value (malloc'd, NUL-terminated, caller frees); AE_ENOTFOUND when absent. */
  int (*get)(ae_storage *st, const char *key, char **data, size_t *len, ae_err *err);
  /* Deletes a key, or a "directory" prefix recursively when the key ends with '/'. */
  int (*del)(ae_storage *st, const char *key, ae_err *err);
  /* Lists direct children names of a prefix directory (malloc'd array of malloc'd strings). */
  int (*list)(ae_storage *st, const char *prefix, char ***names, size_t *n, ae_err *err);
  void (*free)(ae_storage *st);
} ae_storage_ops;

/* Backends embed this struct first. */
struct ae_storage {
  const ae_storage_ops *ops;
};

/* Opens the fs backend rooted at path (created 0700 when missing). Caller owns *out. */
int ae_storage_fs_new(const char *path, ae_storage **out, ae_err *err);
/* Returns the root path of an fs backend (owned by it). */
const char *ae_storage_fs_root(ae_storage *st);

static inline int ae_storage_put(ae_storage *st, const char *k, const void *d, size_t n, int priv, ae_err *e) { return st->ops->put(st, k, d, n, priv, e); }
static inline int ae_storage_get(ae_storage *st, const char *k, char **d, size_t *n, ae_err *e) { return st->ops->get(st, k, d, n, e); }
static inline int ae_storage_del(ae_storage *st, const char *k, ae_err *e) { return st->ops->del(st, k, e); }
static inline int ae_storage_list(ae_storage *st, const char *p, char ***names, size_t *n, ae_err *e) { return st->ops->list(st, p, names, n, e); }
static inline void ae_storage_free(ae_storage *st) { if (st) st->ops->free(st); }

/* "<host>" or "<host>_<port>" from an ACME directory URL, into buf. */
int ae_storage_ca_host(const char *directory_url, char *buf, size_t len);
/* Directory name for a domain: "*.example.com" -> "wildcard_.example.com". */
void ae_storage_domain_dirname(const char *domain, char *buf, size_t len);
/* Inverse of ae_storage_domain_dirname. */
void ae_storage_dirname_domain(const char *dirname, char *buf, size_t len);
/* Frees a list returned by list(). */
void ae_storage_list_free(char **names, size_t n);

#endif
