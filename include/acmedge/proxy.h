/* HTTP/1.1 reverse proxy (one per event loop): parses client requests from an ae_transport with
 * llhttp, routes them by Host to an upstream "host:port" and streams request and response with
 * backpressure, keeping a bounded keep-alive pool of upstream connections per upstream. */
#ifndef ACMEDGE_PROXY_H
#define ACMEDGE_PROXY_H

#include <stddef.h>
#include <uv.h>
#include "acmedge/common.h"
#include "acmedge/config.h"
#include "acmedge/transport.h"

typedef struct ae_proxy ae_proxy;

/* Creates a proxy bound to loop using cfg (a reference is taken). *out is owned by the caller
 * (ae_proxy_close, then ae_proxy_free). */
int ae_proxy_new(uv_loop_t *loop, const ae_config *cfg, ae_proxy **out, ae_err *err);

/* Switches to a new config snapshot: requests that start from now on use its routes, limits and
 * timeouts; requests in flight keep the snapshot they started with. Refs cfg, unrefs the old one. */
void ae_proxy_set_config(ae_proxy *p, const ae_config *cfg);

/* Takes over a client transport (sets its callbacks; the proxy closes it when done). initial
 * holds bytes already read from it (may be NULL/0); they are copied. After ae_proxy_close the
 * transport is aborted at once. */
void ae_proxy_attach(ae_proxy *p, ae_transport *t, const char *initial, size_t len);

/* Starts the graceful drain (process shutdown; the TLS front stops accepting at the same time):
 * HTTP/2 connections get the GOAWAY notice, then the final GOAWAY, finish their streams and close.
 * ae_proxy_close later ends whatever is left. */
void ae_proxy_drain(ae_proxy *p);

/* Shuts down: closes idle pooled upstream connections, aborts every attached client connection
 * and its upstream side; cb(ud) runs once all handles are closed (cb may be NULL). */
void ae_proxy_close(ae_proxy *p, void (*cb)(void *ud), void *ud);

/* Frees the proxy after ae_proxy_close completed (or one that never attached anything). */
void ae_proxy_free(ae_proxy *p);

/* Number of client connections currently attached. */
unsigned ae_proxy_active(const ae_proxy *p);

/* Number of idle upstream connections currently kept in the pools (all upstreams). */
unsigned ae_proxy_pool_idle(const ae_proxy *p);

#endif
