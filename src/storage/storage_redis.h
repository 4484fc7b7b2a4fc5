/* Private to the storage family: the Redis backend's connection pool, key layout and scripts,
 * shared by the synchronous storage operations (thread pool) and the cluster watcher (loop). */
#ifndef AE_STORAGE_REDIS_H
#define AE_STORAGE_REDIS_H

#include <hiredis.h>
#include <pthread.h>
#include <stdint.h>

#include "acmedge/storage.h"

#define RS_POOL_MAX 8
#define RS_VALUE_MAX (1024 * 1024) /* size cap of one stored value */
#define RS_TIMEOUT_MS 2000

typedef struct rs_storage {
  ae_storage base; /* first, see storage.h */
  char *host, *unix_path, *password, *address;
  int port;
  unsigned db;
  int encrypt;
  unsigned char key[32];
  char pfx[96];      /* "<prefix>{ns}:" */
  char instance[96]; /* written as "by" with each commit */
  pthread_mutex_t mu;
  redisContext *pool[RS_POOL_MAX];
  size_t npool;
  int state;         /* atomic: 1 the last command reached Redis, 0 it did not */
  unsigned lease_ms; /* issuance lock lease (storage.redis.lock_lease_ms) */
} rs_storage;

/* Kinds of storage keys, see rs_map_key. */
enum { RK_CERT, RK_CERT_DIR, RK_CERTS_LIST, RK_CAS_LIST, RK_ACCT, RK_KV };

typedef struct rs_key {
  int kind;
  char rkey[700];   /* the Redis key (hash for RK_CERT/RK_ACCT, string for RK_KV) */
  char field[96];   /* hash field */
  char ca[256];
  char domain[256];
  char parent[600]; /* RK_KV: directory and base name, for the listing sets */
  char base[256];
  int is_dir;       /* RK_KV with a trailing '/' */
} rs_key;

/* Maps a storage key ("certs/<ca>/<dir>/cert.pem", ...) to its Redis key and field. */
int rs_map_key(const rs_storage *s, const char *key, rs_key *out, ae_err *err);
/* Writes "<pfx><suffix>" into buf. */
void rs_name(const rs_storage *s, char *buf, size_t len, const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* Runs one command (argv form) on a pooled connection. *out owned by caller (freeReplyObject).
 * AE_EIO: Redis unreachable; AE_EPROTO: Redis answered with an error (message names what). */
int rs_cmd(rs_storage *s, const char *what, redisReply **out, int argc, const char **argv, const size_t *argvlen,
           ae_err *err);
/* Reads the {code, version} reply of the put/commit scripts and frees rep: 0 with *code and ver
 * filled, AE_EPROTO naming `what` when the reply has another shape. */
int rs_script_reply(redisReply *rep, const char *what, long long *code, char *ver, size_t vlen, ae_err *err);
/* Runs a command (argv form, at most 12 arguments) whose reply is an integer, into *out;
 * AE_EPROTO naming `what` for any other reply. */
int rs_eval_int(rs_storage *s, const char *what, int argc, const char **argv, long long *out, ae_err *err);
/* Same with printf-style hiredis format. */
int rs_cmdf(rs_storage *s, const char *what, redisReply **out, ae_err *err, const char *fmt, ...);
/* Opens one connection (authenticated, db selected); caller frees with redisFree. */
int rs_connect(rs_storage *s, redisContext **out, ae_err *err);

/* 1 when st is a Redis backend. */
int rs_is(const ae_storage *st);

/* Issuance lock, create-if-absent and shared challenges (storage_redis_lock.c); see
 * ae_storage_ops for each one's contract. */
int rs_lock(ae_storage *st, const char *name, uint64_t *token, ae_err *err);
int rs_lock_renew(ae_storage *st, const char *name, uint64_t token, ae_err *err);
int rs_unlock(ae_storage *st, const char *name, uint64_t token, ae_err *err);
unsigned rs_lock_lease(const ae_storage *st);
int rs_put_new(ae_storage *st, const char *key, const void *data, size_t len, int private_, ae_err *err);
int rs_share_challenge(ae_storage *st, int alpn, const char *domain, const char *token, const char *keyauth,
                       ae_err *err);
/* Saved orders (storage_redis_order.c); see ae_storage_ops. */
int rs_order_put(ae_storage *st, const char *domain, const ae_storage_order *o, ae_err *err);
int rs_order_get(ae_storage *st, const char *ca_host, const char *domain, ae_storage_order *o, ae_err *err);
int rs_order_del(ae_storage *st, const char *ca_host, const char *domain, uint64_t fence, ae_err *err);
/* Writes the saved order's key ("<pfx>order:<ca>:<domain>") into buf. */
void rs_order_key(const rs_storage *s, const char *ca_host, const char *domain, char *buf, size_t len);
/* Writes the lock key of name ("<pfx>lock:<name>") into buf. */
void rs_lock_key(const rs_storage *s, const char *name, char *buf, size_t len);
/* Every stored object as a sorted list of fs-layout keys (storage_redis_walk.c); accounts of the
 * CA set and of ca_hints. Caller frees with ae_storage_list_free. */
int rs_walk(rs_storage *s, const char *const *ca_hints, size_t nhints, char ***keys, size_t *n, ae_err *err);

/* The Lua scripts (storage_redis_lua.c). */
extern const char *const rs_lua_commit;
extern const char *const rs_lua_put_field;
extern const char *const rs_lua_del_cert;

#endif
