/* Persistence interface (design §7) and the filesystem backend. Keys are relative paths such as
 * "certs/127.0.0.1_14000/a.example.com/cert.pem". Calls are synchronous; run them off the loop
 * (uv_queue_work) where latency matters. */
#ifndef ACMEDGE_STORAGE_H
#define ACMEDGE_STORAGE_H

#include <stddef.h>
#include <stdint.h>
#include "acmedge/common.h"

typedef struct ae_storage ae_storage;
struct ae_config;

/* One certificate as stored: chain (PEM, leaf first), private key (PEM) and meta (JSON). */
typedef struct ae_storage_bundle {
  const char *ca_host;  /* see ae_storage_ca_host */
  const char *domain;   /* "*.example.com" for a wildcard */
  const char *chain, *key, *meta;
  int64_t not_before, not_after; /* leaf validity (unix seconds), for the renewal order */
  uint64_t fence;       /* lock fencing token of the writer, 0 without a lock */
} ae_storage_bundle;

/* An ACME order in flight, saved so that the instance taking a name over after its lock holder
 * died continues it instead of placing another one (docs/cluster.md). Strings malloc'd; see
 * ae_storage_order_clear. */
typedef struct ae_storage_order {
  char *url;         /* the order URL */
  char *key_pem;     /* the new certificate's private key (plain here, sealed at rest) */
  char *csr;         /* base64url DER CSR for that key, sent at finalize */
  char ca_host[256]; /* see ae_storage_ca_host */
  uint64_t fence;    /* lock token of the instance that placed it */
  int64_t created, expires; /* unix seconds; the record is forgotten at expires */
} ae_storage_order;

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
  /* Optional (NULL: put three files). Writes one certificate's chain, key and meta together, so a
   * reader never sees a cert with another version's key. fence > 0 refuses the write (AE_EEXIST)
   * when the stored bundle carries a fence >= this one. */
  int (*commit)(ae_storage *st, const ae_storage_bundle *b, ae_err *err);
  /* Optional (NULL: two gets). Reads chain and key of one stored certificate consistently
   * (both malloc'd, caller frees); AE_ENOTFOUND when absent, AE_EIO when storage is unreachable. */
  int (*get_cert)(ae_storage *st, const char *ca_host, const char *domain, char **chain, size_t *chain_len,
                  char **key, size_t *key_len, ae_err *err);
  /* Optional (NULL: one process, no lock needed). Takes the cluster-wide issuance lock of name for
   * the backend's lease and fills *token with a fencing token larger than every earlier one;
   * AE_EEXIST when another holder has it, AE_EIO when storage is unreachable. */
  int (*lock)(ae_storage *st, const char *name, uint64_t *token, ae_err *err);
  /* Extends the lease of a lock we hold; AE_ECANCELED when it is no longer ours (lapsed or taken). */
  int (*lock_renew)(ae_storage *st, const char *name, uint64_t token, ae_err *err);
  /* Releases the lock when it is still ours (compare and delete). */
  int (*unlock)(ae_storage *st, const char *name, uint64_t token, ae_err *err);
  /* Optional (NULL: get, then put). Writes key only when absent; AE_EEXIST when it exists. */
  int (*put_new)(ae_storage *st, const char *key, const void *data, size_t len, int private_, ae_err *err);
  /* Optional (NULL: nothing shared). Stores a challenge answer for every instance (with a TTL)
   * and announces it: alpn = 0 for an http-01 token, 1 for a tls-alpn-01 key authorization. */
  int (*share_challenge)(ae_storage *st, int alpn, const char *domain, const char *token, const char *keyauth,
                         ae_err *err);
  /* Lease of the issuance lock in milliseconds. */
  unsigned (*lock_lease)(const ae_storage *st);
  /* Optional (NULL: orders are not saved; a single process has nobody to resume them). Saves o
   * under o->ca_host/domain until o->expires; refused with AE_EEXIST unless the name's issuance
   * lock still holds o->fence. */
  int (*order_put)(ae_storage *st, const char *domain, const ae_storage_order *o, ae_err *err);
  /* Reads a saved order into *o (caller clears it); AE_ENOTFOUND when none, AE_EPROTO when the
   * record is unreadable (garbage, or a key that does not open here). */
  int (*order_get)(ae_storage *st, const char *ca_host, const char *domain, ae_storage_order *o, ae_err *err);
  /* Deletes the saved order when the name's issuance lock still holds fence. */
  int (*order_del)(ae_storage *st, const char *ca_host, const char *domain, uint64_t fence, ae_err *err);
  /* Optional (NULL: never). get without blocking, safe on an event loop: AE_EAGAIN when the
   * value is not at hand (the caller then uses get in the thread pool). */
  int (*get_nowait)(ae_storage *st, const char *key, char **data, size_t *len, ae_err *err);
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

/* Writes a certificate bundle through the backend's commit, or as key, cert, meta files. */
int ae_storage_commit(ae_storage *st, const ae_storage_bundle *b, ae_err *err);
/* Reads a stored certificate's chain and key (malloc'd, caller frees); AE_ENOTFOUND when absent. */
int ae_storage_get_cert(ae_storage *st, const char *ca_host, const char *domain, char **chain, size_t *chain_len,
                        char **key, size_t *key_len, ae_err *err);
/* ae_storage_get_cert without blocking (any thread): AE_EAGAIN when the backend cannot answer
 * from memory or the kernel's caches; then call ae_storage_get_cert off the loop. */
int ae_storage_get_cert_nowait(ae_storage *st, const char *ca_host, const char *domain, char **chain,
                               size_t *chain_len, char **key, size_t *key_len, ae_err *err);
/* Takes name's issuance lock (see ae_storage_ops.lock); token 0 and success without a lock. */
int ae_storage_lock(ae_storage *st, const char *name, uint64_t *token, ae_err *err);
/* Extends a held lock; 0 without a lock. */
int ae_storage_lock_renew(ae_storage *st, const char *name, uint64_t token, ae_err *err);
/* Releases a held lock; 0 without a lock. */
int ae_storage_unlock(ae_storage *st, const char *name, uint64_t token, ae_err *err);
/* Lease of the backend's issuance lock in ms; 0 when the backend has none (one process). */
unsigned ae_storage_lock_lease(const ae_storage *st);
/* Creates key only when absent (AE_EEXIST when present). */
int ae_storage_put_new(ae_storage *st, const char *key, const void *data, size_t len, int private_, ae_err *err);
/* Shares a challenge answer with every instance; 0 when the backend shares nothing. */
int ae_storage_share_challenge(ae_storage *st, int alpn, const char *domain, const char *token, const char *keyauth,
                               ae_err *err);
/* Saves an order in flight (see ae_storage_ops.order_put); 0 when the backend saves none. */
int ae_storage_order_put(ae_storage *st, const char *domain, const ae_storage_order *o, ae_err *err);
/* Reads a saved order; AE_ENOTFOUND when none or the backend saves none. */
int ae_storage_order_get(ae_storage *st, const char *ca_host, const char *domain, ae_storage_order *o, ae_err *err);
/* Deletes a saved order under fence; 0 when the backend saves none. */
int ae_storage_order_del(ae_storage *st, const char *ca_host, const char *domain, uint64_t fence, ae_err *err);
/* 1 when the backend saves orders in flight. */
int ae_storage_saves_orders(const ae_storage *st);
/* Frees the strings of o (the key wiped first) and zeroes it. */
void ae_storage_order_clear(ae_storage_order *o);
/* 1 when the backend shares challenge answers between instances. */
int ae_storage_shares_challenges(const ae_storage *st);
/* storage.redis (config): parsed and checked by ae_storage_config_parse. */
typedef struct ae_storage_redis_cfg {
  char *address;         /* as written: "ip:port" or "unix:/path" */
  char *host;            /* numeric IP, NULL for a Unix socket */
  int port;
  char *unix_path;       /* NULL for TCP */
  unsigned db;
  char *password;        /* contents of password_file (first line), NULL without */
  char *prefix;          /* "acmedge" */
  int encrypt_keys;      /* 1 unless "encrypt_keys": false */
  unsigned char key[32]; /* from key_file when encrypt_keys */
  unsigned lock_lease_ms;
} ae_storage_redis_cfg;

/* Parses the "storage" object's "type" and "redis" members into cfg (file names the config in
 * errors). Reads password_file and key_file, refusing a key file readable by others. */
int ae_storage_config_parse(const char *file, void *storage_json, struct ae_config *cfg, ae_err *err);
/* Frees what ae_storage_config_parse stored in cfg. */
void ae_storage_config_free(struct ae_config *cfg);

/* Opens the Redis backend; connections open on first use. Caller owns *out. */
int ae_storage_redis_new(const ae_storage_redis_cfg *c, ae_storage **out, ae_err *err);
/* Checks that a Redis backend answers (connect, AUTH, SELECT, PING); 0 for other backends. */
int ae_storage_ping(ae_storage *st, ae_err *err);
/* 1 when st is a Redis backend. */
int ae_storage_is_redis(const ae_storage *st);

/* Opens the backend cfg->storage_type names (fs or redis). Caller owns *out. */
int ae_storage_open(const struct ae_config *cfg, ae_storage **out, ae_err *err);

/* "<host>" or "<host>_<port>" from an ACME directory URL, into buf. */
int ae_storage_ca_host(const char *directory_url, char *buf, size_t len);
/* Directory name for a domain: "*.example.com" -> "wildcard_.example.com". */
void ae_storage_domain_dirname(const char *domain, char *buf, size_t len);
/* Inverse of ae_storage_domain_dirname. */
void ae_storage_dirname_domain(const char *dirname, char *buf, size_t len);
/* Frees a list returned by list(). */
void ae_storage_list_free(char **names, size_t n);

/* A name's last issuance failure as every instance of a cluster sees it. */
typedef struct ae_storage_fail {
  int64_t retry_at;   /* unix seconds: no instance orders the name before */
  unsigned failures;  /* consecutive failures, drives the next backoff */
  char problem[200];  /* the CA's problem type */
  char detail[400];
  char by[96];        /* instance that failed */
} ae_storage_fail;

/* Records name's failure until f->retry_at (Redis: a hash expiring then; a longer backoff already
 * recorded is kept). The fs backend does nothing: one process keeps its own backoff. */
int ae_storage_fail_put(ae_storage *st, const char *ca_host, const char *domain, const ae_storage_fail *f,
                        ae_err *err);
/* Reads name's shared failure into *f; AE_ENOTFOUND when none (always on fs), AE_EIO unreachable. */
int ae_storage_fail_get(ae_storage *st, const char *ca_host, const char *domain, ae_storage_fail *f, ae_err *err);
/* Forgets name's shared failure (a deleted name starts afresh); 0 on fs. */
int ae_storage_fail_del(ae_storage *st, const char *ca_host, const char *domain, ae_err *err);

/* One stored certificate as the cluster view shows it. */
typedef struct ae_storage_certref {
  char domain[256];
  int64_t renew_at;
  uint64_t version;   /* 0: not stored (any more) */
  int64_t not_after;
  char by[96];        /* instance that committed it */
} ae_storage_certref;

/* Every certificate stored for ca_host (Redis: the lexical name index, read in chunks), in byte
 * order with renew_at filled; *out malloc'd (caller frees). AE_EINVAL for a backend without a
 * shared index (fs). */
int ae_storage_cert_index(ae_storage *st, const char *ca_host, ae_storage_certref **out, size_t *n, ae_err *err);
/* At most max stored names of ca_host after `after` (NULL or "": from the first) in byte order,
 * renew_at filled; *out malloc'd (caller frees). AE_EINVAL on fs. */
int ae_storage_cert_page(ae_storage *st, const char *ca_host, const char *after, size_t max,
                         ae_storage_certref **out, size_t *n, ae_err *err);
/* Fills version, not_after and by of each ref from storage (a few round trips per page). */
int ae_storage_cert_info(ae_storage *st, const char *ca_host, ae_storage_certref *refs, size_t n, ae_err *err);

/* Outcome of ae_storage_copy, counted per object (a certificate bundle is one object). */
typedef struct ae_storage_copy_stats {
  size_t copied, unchanged, failed;
} ae_storage_copy_stats;

/* Every stored object of st as a sorted list of storage keys ("certs/<ca>/<dir>/cert.pem", ...).
 * A Redis backend finds accounts of the CA hosts it has certificates for and of ca_hints. Caller
 * frees with ae_storage_list_free. */
int ae_storage_walk(ae_storage *st, const char *const *ca_hints, size_t nhints, char ***keys, size_t *n, ae_err *err);
/* Copies every object of src into dst (see storage_copy.c): bundles committed whole, objects
 * equal at dst left alone, each write read back. report(ud, object, problem) is called for each
 * object that failed (the copy goes on); stats counts them. <0 only when src cannot be listed. */
int ae_storage_copy(ae_storage *src, ae_storage *dst, const char *const *ca_hints, size_t nhints,
                    ae_storage_copy_stats *stats, void (*report)(void *ud, const char *object, const char *problem),
                    void *ud, ae_err *err);
/* `acmedge storage copy --from CONFIG --to CONFIG`; returns the process exit code. */
int ae_storage_cli(int argc, char **argv);

#endif
