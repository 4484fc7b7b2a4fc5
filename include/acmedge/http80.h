/* The port-80 listener: ACME http-01 answers, 503 while a certificate is being issued, 308 to
 * https for names with a certificate, and hand-over of plain_http routes to the proxy. */
#ifndef ACMEDGE_HTTP80_H
#define ACMEDGE_HTTP80_H

#include <stddef.h>
#include <uv.h>
#include "acmedge/common.h"
#include "acmedge/config.h"
#include "acmedge/challenge.h"
#include "acmedge/transport.h"

typedef struct ae_http80 ae_http80;

/* What port 80 should answer for a host (non-challenge requests). */
typedef enum {
  AE_H80_DENY = 0,     /* 404 */
  AE_H80_MISDIRECTED,  /* 421 */
  AE_H80_PENDING,      /* 503 + Retry-After */
  AE_H80_VALID,        /* 308 to https when redirect_http, else 404 */
  AE_H80_FAILED,       /* 503 + Retry-After until retry_at */
  AE_H80_CHECKING      /* the decision is in flight: the request is held until ae_http80_wake for
                        * its host, or until on_demand.ask_timeout_ms + 1 s (then 503) */
} ae_h80_state;

typedef struct ae_http80_hooks {
  void *ud;
  /* host (normalized, port stripped) of a non-challenge request: classify, possibly starting
   * issuance (source "http"). Sets *retry_after_s for 503 answers. May return AE_H80_CHECKING
   * (then the hook's owner calls ae_http80_wake(host) once the decision is known). */
  ae_h80_state (*host_state)(void *ud, const char *host, unsigned *retry_after_s);
  /* 1 when host has a route with plain_http: the connection is handed over to on_plain (with
   * the bytes read so far). May be NULL. */
  int (*plain_route)(void *ud, const char *host);
  /* Takes ownership of t (its callbacks are cleared; the new owner sets them and calls
   * ae_transport_read_start). initial/len: every byte read on the connection that has not been
   * answered yet, starting with the current request; valid only during the call. */
  void (*on_plain)(void *ud, ae_transport *t, const char *initial, size_t len);
  /* An http-01 token this instance has no answer for: 1 when the owner started a look-up
   * elsewhere (then the request is held until ae_http80_wake_challenge(token) or its hold timer,
   * and answered from the challenge map), 0 to answer 404 now. May be NULL. */
  int (*challenge_miss)(void *ud, const char *token);
} ae_http80_hooks;

/* Starts listening on cfg->listen_http (takes a reference on cfg). hooks is copied and may be
 * NULL (every non-challenge request -> 404). ch is borrowed and must outlive the listener.
 * Caller owns *out (ae_http80_close, then ae_http80_free). */
int ae_http80_new(uv_loop_t *loop, const ae_config *cfg, ae_challenge *ch, const ae_http80_hooks *hooks,
                  ae_http80 **out, ae_err *err);

/* Reload: new timeouts and redirect settings apply to new requests (the listen address is not
 * changed; that needs a restart). Takes a reference on cfg. */
void ae_http80_set_config(ae_http80 *h, const ae_config *cfg);

/* Stops accepting, closes every connection (handed-over ones are not ours any more); cb(ud)
 * when all handles are closed. */
void ae_http80_close(ae_http80 *h, void (*cb)(void *ud), void *ud);

/* Re-asks host_state for every request held (AE_H80_CHECKING) for host (normalized name) and
 * answers those that are decided now; call on the listener's loop. host is borrowed. */
void ae_http80_wake(ae_http80 *h, const char *host);

/* Answers every request held for the http-01 token (see challenge_miss) from the challenge map
 * now; call on the listener's loop. token is borrowed. */
void ae_http80_wake_challenge(ae_http80 *h, const char *token);

/* Frees after close completed. */
void ae_http80_free(ae_http80 *h);

/* The bound port (useful when listening on port 0). */
int ae_http80_port(const ae_http80 *h);

#endif
