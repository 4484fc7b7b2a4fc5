/* Extra front-end event loops (design §2 "Workers"): each thread runs its own TLS listener on the
 * shared port (SO_REUSEPORT) and its own proxy, sharing the certificate store and the challenge
 * map. Decisions that need provisioning state are posted to the control loop. */
#ifndef ACMEDGE_WORKERS_H
#define ACMEDGE_WORKERS_H

#include <uv.h>
#include "acmedge/certstore.h"
#include "acmedge/challenge.h"
#include "acmedge/common.h"
#include "acmedge/config.h"

typedef struct ae_workers ae_workers;

typedef struct ae_workers_hooks {
  void *ud;
  /* On the control loop: a worker saw a ClientHello for name (normalized) without a certificate
   * and policy's static checks passed (or failed: allowed = 0, for the denial event). The control
   * side starts issuance, and calls ae_workers_wake(name) when held handshakes should re-check. */
  void (*on_miss)(void *ud, const char *name, int allowed);
  /* On a worker thread: a new reference to the minted stand-in leaf for name, or NULL (see
   * ae_tls_front_hooks.fallback_cert). May be NULL. */
  ae_cert *(*fallback_cert)(void *ud, const char *name);
  /* On the control loop: a worker saw a ClientHello whose host_name is not a DNS name (shown: a
   * printable rendition), for the denial event. May be NULL. */
  void (*on_invalid_name)(void *ud, const char *shown);
  /* On the control loop: a worker holds an acme-tls/1 handshake for name (no answer there);
   * return 1 when a look-up started whose outcome calls ae_workers_wake_alpn(name), 0 to have
   * it refused now. NULL: such handshakes are refused at once, never held. */
  int (*alpn_miss)(void *ud, const char *name);
  /* On a worker thread: a new reference to name's stored certificate (normalized name) when
   * storage has it at hand without blocking, ids filled; else NULL. *install_first set: the
   * handshake is not answered with it but held, and its miss, posted after on_loaded, finds the
   * name installed and wakes it (the install adds what the handshake needs, e.g. a stored OCSP
   * staple). May be NULL. */
  ae_cert *(*stored_cert)(void *ud, const char *name, ae_cert_ids *ids, int *install_first);
  /* On the control loop: a worker read name's certificate with stored_cert; install it (cert
   * stays the caller's). Needed with stored_cert. */
  void (*on_loaded)(void *ud, const char *name, ae_cert *cert, const char *cert_id);
} ae_workers_hooks;

/* Starts n worker threads (n >= 1) bound to cfg->listen_https. Caller owns *out. */
int ae_workers_start(uv_loop_t *control, unsigned n, const ae_config *cfg, ae_certstore *cs, ae_challenge *ch,
                     const ae_workers_hooks *hooks, ae_workers **out, ae_err *err);
/* Asks every worker to re-check handshakes held for name. Callable from the control loop. */
void ae_workers_wake(ae_workers *w, const char *name);
/* Asks every worker to re-check acme-tls/1 handshakes held for name. Callable from the control loop. */
void ae_workers_wake_alpn(ae_workers *w, const char *name);
/* Hands a reloaded config to every worker (front timeouts, proxy routes). */
void ae_workers_set_config(ae_workers *w, const ae_config *cfg);
/* Stops accepting on every worker; they drain for up to drain_ms, then exit. Closes the control
 * loop's handle (so the control loop can end). */
void ae_workers_stop(ae_workers *w, unsigned drain_ms);
/* Joins the threads (after stop) and frees everything. NULL is fine. */
void ae_workers_join_free(ae_workers *w);
/* Number of worker threads. */
unsigned ae_workers_count(const ae_workers *w);

#endif
