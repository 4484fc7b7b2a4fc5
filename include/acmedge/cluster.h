/* Cluster watcher of a shared (Redis) storage backend, on the control loop: keeps a command and a
 * subscriber connection to Redis (reconnecting with jittered backoff, 100 ms doubling to 5 s),
 * reports the backend's availability, and tells the owner which stored certificates changed —
 * from PUBLISHed commits at once, and from the generation counter every few seconds and after
 * every (re)subscribe, since pub/sub drops messages while a subscriber is away. */
#ifndef ACMEDGE_CLUSTER_H
#define ACMEDGE_CLUSTER_H

#include <stdint.h>
#include <uv.h>

#include "acmedge/common.h"
#include "acmedge/storage.h"

typedef struct ae_cluster ae_cluster;

typedef struct ae_cluster_hooks {
  void *ud;
  /* A stored certificate of our CA changed or was deleted by any instance (ours included). */
  void (*changed)(void *ud, const char *domain);
  /* An instance announced the deletion of domain's certificate (optional: changed runs instead
   * when NULL). A lost announcement reaches changed through the generation check. */
  void (*deleted)(void *ud, const char *domain);
  /* Redis became reachable again (up = 1) or unreachable (up = 0); why names the cause. */
  void (*state)(void *ud, int up, const char *why);
  /* Any instance published a challenge answer (alpn = 0: http-01 token, 1: tls-alpn-01 key
   * authorization for domain; token is "-" then). Optional. */
  void (*challenge)(void *ud, int alpn, const char *domain, const char *token, const char *keyauth);
  /* ae_cluster_fetch_challenge (alpn = 0, name: the token) or ae_cluster_fetch_alpn (alpn = 1,
   * name: the domain) found no answer in Redis either, or the look-up failed. Optional. */
  void (*challenge_absent)(void *ud, int alpn, const char *name);
} ae_cluster_hooks;

/* Starts watching st (a Redis backend) for ca_host's certificates; reconcile_ms is the period of
 * the generation check (0: 2000). hooks is copied. Caller owns *out: ae_cluster_close, then
 * ae_cluster_free. */
int ae_cluster_new(uv_loop_t *loop, ae_storage *st, const char *ca_host, unsigned reconcile_ms,
                   const ae_cluster_hooks *hooks, ae_cluster **out, ae_err *err);
/* Reads the http-01 answer for token from Redis, for a token whose announcement this instance
 * missed; a found answer arrives through hooks.challenge, a missing one through
 * hooks.challenge_absent. 0: a look-up started (or one for the same token is running);
 * AE_ENOTFOUND: missed within the last seconds; AE_ELIMIT: too many look-ups now (shared with
 * ae_cluster_fetch_alpn); AE_EAGAIN: not connected. */
int ae_cluster_fetch_challenge(ae_cluster *c, const char *token);
/* The same for the tls-alpn-01 key authorization of domain (chal:alpn:<domain>), for an
 * acme-tls/1 handshake held because this instance missed the announcement. */
int ae_cluster_fetch_alpn(ae_cluster *c, const char *domain);
/* 1 while both connections are up (commands answered, subscription active). */
int ae_cluster_up(const ae_cluster *c);
/* Instance id written with each commit and carried by events ("host/pid"); owned by c. */
const char *ae_cluster_instance(const ae_cluster *c);
/* malloc'd Prometheus text (backend state, reconnects, messages, reconciled changes, command
 * latency), caller frees. */
char *ae_cluster_metrics(const ae_cluster *c);
/* Drops both connections and stops the timers; cb(ud) runs once every handle is closed. */
void ae_cluster_close(ae_cluster *c, void (*cb)(void *ud), void *ud);
/* Frees a closed watcher (NULL is fine). */
void ae_cluster_free(ae_cluster *c);

#endif
