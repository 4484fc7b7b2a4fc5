/* The TLS listener: peeks the ClientHello, picks a certificate by SNI, runs GnuTLS over libuv
 * and hands established connections to an application handler (the proxy). */
#ifndef ACMEDGE_TLS_FRONT_H
#define ACMEDGE_TLS_FRONT_H

#include <uv.h>
#include "acmedge/common.h"
#include "acmedge/certstore.h"
#include "acmedge/transport.h"
#include "acmedge/config.h"

typedef struct ae_tls_front ae_tls_front;

/* What to do with an SNI that has no certificate in the store. */
typedef enum {
  AE_MISS_DEFAULT = 0,  /* handshake now with the default certificate */
  AE_MISS_HOLD = 1,     /* hold the handshake until ae_tls_front_wake(name) or the wait timeout */
  AE_MISS_ALERT = 2,    /* refuse: send unrecognized_name alert and close */
  AE_MISS_FALLBACK = 3  /* a minted leaf for this name (fallback_cert hook) when ready, else hold
                           until ae_tls_front_wake(name), then store / leaf / default */
} ae_miss_action;

typedef struct ae_tls_front_hooks {
  void *ud;
  /* Called on the loop for every ClientHello whose SNI (valid DNS name, lowercased) has no
   * certificate. May start provisioning. NULL => always default. */
  ae_miss_action (*on_miss)(void *ud, const char *name);
  /* ALPN "acme-tls/1" offered: return a new reference to the tls-alpn-01 cert for name, or NULL
   * (then the connection is closed). */
  ae_cert *(*alpn_challenge_cert)(void *ud, const char *name);
  /* acme-tls/1 offered for name (a DNS name) and alpn_challenge_cert has nothing: 1 when the
   * answer is being looked up elsewhere (shared storage); the handshake is then held until
   * ae_tls_front_wake_alpn(name) or the wait timeout, and answered from alpn_challenge_cert or
   * refused. 0: refuse now. NULL => 0. */
  int (*alpn_miss)(void *ud, const char *name);
  /* An established connection (ALPN http/1.1 or none): the handler takes over t (sets its
   * callbacks). NULL => a minimal "hello <sni>" HTTP response is written and closed. */
  void (*on_established)(void *ud, ae_transport *t);
  /* Any thread: a new reference to a minted stand-in leaf for name (on_demand.fallback_cert
   * "internal"), or NULL. NULL hook => none. */
  ae_cert *(*fallback_cert)(void *ud, const char *name);
  /* Called on the loop for a ClientHello whose host_name is not a DNS name (shown: a printable
   * rendition): reports it and answers AE_MISS_DEFAULT or AE_MISS_ALERT (ignored when the peek
   * already refuses the hello for that name). NULL => default. */
  ae_miss_action (*on_invalid_name)(void *ud, const char *shown);
  /* Called on the loop for a ClientHello whose SNI has no certificate, before on_miss: a new
   * reference to the stored certificate for name when storage has it at hand without blocking
   * (then the handshake is served at once, on_miss is not called), else NULL. NULL hook => none. */
  ae_cert *(*stored_cert)(void *ud, const char *name);
} ae_tls_front_hooks;

/* Binds and listens on cfg->listen_https. The front keeps pointers to cs (not owned). */
int ae_tls_front_new(uv_loop_t *loop, const ae_config *cfg, ae_certstore *cs,
                     const ae_tls_front_hooks *hooks, ae_tls_front **out, ae_err *err);
/* Applies timeouts/limits of a new config snapshot (listen address changes need a restart). */
void ae_tls_front_set_config(ae_tls_front *f, const ae_config *cfg);
/* Held handshakes for name (AE_MISS_HOLD) re-check the store now: the installed cert or, if
 * there is still none, the default certificate. */
void ae_tls_front_wake(ae_tls_front *f, const char *name);
/* Held acme-tls/1 handshakes for name (alpn_miss) re-check the challenge answers now: the
 * tls-alpn-01 certificate or, if there is still none, a no_application_protocol alert. */
void ae_tls_front_wake_alpn(ae_tls_front *f, const char *name);
/* Stops accepting; open connections finish (bounded by timeout_ms, then aborted); cb when all
 * handles are closed. */
void ae_tls_front_close(ae_tls_front *f, unsigned timeout_ms, void (*cb)(void *ud), void *ud);
/* Frees after close completed. */
void ae_tls_front_free(ae_tls_front *f);
/* Current open connections and held handshakes. */
unsigned ae_tls_front_open_connections(const ae_tls_front *f);
unsigned ae_tls_front_held(const ae_tls_front *f);
/* Bound port (useful with port 0 in tests). */
int ae_tls_front_port(const ae_tls_front *f);

/* Sets the OCSP staple cache every front consults at handshake time (NULL: no stapling).
 * Process-wide, thread-safe; the cache must outlive every front. */
struct ae_ocsp_cache;
void ae_tls_set_staples(struct ae_ocsp_cache *cache);
/* The GnuTLS priority string used for every handshake. */
extern const char *const AE_TLS_PRIORITY;

#endif
