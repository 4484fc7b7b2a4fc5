/* Admin HTTP API (design §5): domains, Server-Sent Events, Prometheus metrics, health, on a
 * loopback TCP address or a unix socket. Runs on the control loop. */
#ifndef ACMEDGE_ADMIN_H
#define ACMEDGE_ADMIN_H

#include <stddef.h>
#include <jansson.h>
#include <uv.h>

#include "acmedge/common.h"
#include "acmedge/config.h"
#include "acmedge/events.h"

typedef struct ae_admin ae_admin;
/* A request answered later (POST /v1/domains/{name}/revoke waits for the CA). */
typedef struct ae_admin_reply ae_admin_reply;
/* Sends the deferred answer (body stolen, may be NULL) and frees r; a client that went away
 * meanwhile gets nothing. Exactly once per reply handed to a hook. */
void ae_admin_reply_send(ae_admin_reply *r, int status, json_t *body);

/* What the admin API asks of the rest of the process. Every callback runs on the control loop and
 * must not block; a NULL callback makes its endpoint answer 500. */
typedef struct ae_admin_hooks {
  void *ud;
  /* New reference to a JSON array of {"domain","state","not_after","issuer","last_error","retry_at"}. */
  json_t *(*list_domains)(void *ud);
  /* Starts provisioning through policy: 0 -> 202; AE_EINVAL -> 400; any other code -> 403 with err->msg. */
  int (*add_domain)(void *ud, const char *name, ae_err *err);
  /* Forgets a name: 0 -> 200 {"deleted":name}; AE_ENOTFOUND -> 404; AE_EINVAL -> 400; else 500. */
  int (*delete_domain)(void *ud, const char *name, ae_err *err);
  /* malloc'd Prometheus text appended to /metrics (per-domain series), or NULL. */
  char *(*extra_metrics)(void *ud);
  /* malloc'd PEM of the internal CA root for GET /v1/pki/root, or NULL (404: not enabled). */
  char *(*pki_root)(void *ud);
  /* Revokes name's certificate with an RFC 5280 reason (-1: none) and answers through reply
   * later (ae_admin_reply_send). Returning <0 answers at once (reply not used): AE_ENOTFOUND ->
   * 404, AE_EINVAL -> 400, else 500. */
  int (*revoke_domain)(void *ud, const char *name, int reason, ae_admin_reply *reply, ae_err *err);
  /* New reference to one page {"domains": [...], "next": NAME or null} of at most limit names
   * after `after` (NULL = first page), only names in `state` when not NULL. NULL hook: query
   * parameters are ignored and the whole list is returned. */
  json_t *(*list_domains_page)(void *ud, size_t limit, const char *after, const char *state);
  /* Starts renewing name's certificate now; <0 with err set: AE_ENOTFOUND -> 404, AE_EAGAIN ->
   * 503 (stored name being read), AE_EEXIST -> 409 (an order runs), AE_ELIMIT -> 503. */
  int (*renew_domain)(void *ud, const char *name, ae_err *err);
  /* Optional: answers GET /v1/domains later through reply (ae_admin_reply_send with 200 and the
   * body), for a cluster-wide view read from shared storage off the loop. limit 0 with no after
   * and no state asks for the plain array, else for a page as list_domains_page. Returns 0 when
   * it will answer; any error code falls back to list_domains / list_domains_page at once. */
  int (*list_domains_async)(void *ud, size_t limit, const char *after, const char *state, ae_admin_reply *reply);
  /* NULL when healthy, else a static reason: /healthz answers 200 "degraded: <reason>". */
  const char *(*degraded)(void *ud);
} ae_admin_hooks;

/* Starts listening on cfg->listen_admin ("host:port", "[v6]:port", "unix:/path" or "/path"); a NULL
 * address gives an admin object that serves nothing. Refuses a non-loopback TCP address without
 * cfg->admin_token. hooks is copied. On success *out is owned by the caller: ae_admin_close, then
 * ae_admin_free. ev must outlive the admin object. */
int ae_admin_new(uv_loop_t *loop, const ae_config *cfg, ae_events *ev, const ae_admin_hooks *hooks, ae_admin **out,
                 ae_err *err);
/* Applies a reloaded config: the token takes effect at once; a changed listen address is only
 * logged (it needs a restart). cfg is not retained. */
void ae_admin_set_config(ae_admin *a, const ae_config *cfg);
/* TCP port actually bound (useful with port 0), 0 for a unix socket or no listener. */
int ae_admin_port(const ae_admin *a);
/* Sets the SSE heartbeat interval (default 15000 ms, or $ACMEDGE_ADMIN_HEARTBEAT_MS). */
void ae_admin_set_heartbeat_ms(ae_admin *a, unsigned ms);
/* Sets how many bytes may wait in an SSE client's write queue before it stops being written and
 * later catches up from the ring (default 256 KiB). */
void ae_admin_set_sse_queue_limit(ae_admin *a, size_t bytes);
/* Closes the listener and every connection; cb(ud) runs once all handles are closed. */
void ae_admin_close(ae_admin *a, void (*cb)(void *ud), void *ud);
/* Frees the object after its close callback has run. NULL is fine. */
void ae_admin_free(ae_admin *a);

#endif
