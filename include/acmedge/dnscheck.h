/* DNS pre-check for on-demand names (on_demand.dns_check): resolves A and AAAA (CNAMEs followed)
 * with c-ares on the libuv loop and tells whether any address is one of the expected ones. */
#ifndef ACMEDGE_DNSCHECK_H
#define ACMEDGE_DNSCHECK_H

#include <stdint.h>
#include <uv.h>

#include "acmedge/common.h"
#include "acmedge/config.h"

typedef struct ae_dnscheck ae_dnscheck;
typedef struct ae_dnscheck_req ae_dnscheck_req;

typedef enum {
  AE_DNS_MATCH = 0,    /* an address of the name is in expect */
  AE_DNS_MISMATCH,     /* the name resolves elsewhere, or not at all */
  AE_DNS_FAILED        /* resolver unreachable, timeout, SERVFAIL: unknown */
} ae_dns_verdict;

/* Completion: verdict, seconds the answer may be cached (record TTL, clamped), a short detail. */
typedef void (*ae_dnscheck_cb)(void *ud, ae_dns_verdict v, unsigned ttl_s, const char *detail);

/* Creates a resolver on loop configured from cfg->dns_check. *out owned by the caller
 * (ae_dnscheck_close, then ae_dnscheck_free). */
int ae_dnscheck_new(uv_loop_t *loop, const ae_config *cfg, ae_dnscheck **out, ae_err *err);
/* Applies a new snapshot's expect list, resolver and timeout (reload). */
int ae_dnscheck_set_config(ae_dnscheck *d, const ae_config *cfg, ae_err *err);
/* Starts a check of name: 0 and *out (for ae_dnscheck_cancel); cb runs exactly once later, never
 * from inside this call. <0 on error, cb not called. */
int ae_dnscheck_start(ae_dnscheck *d, const char *name, ae_dnscheck_cb cb, void *ud, ae_dnscheck_req **out);
/* Cancels a started check: its cb is not called. */
void ae_dnscheck_cancel(ae_dnscheck_req *r);
/* Cancels every check (callbacks not called), closes the handles; cb(ud) when done. */
void ae_dnscheck_close(ae_dnscheck *d, void (*cb)(void *ud), void *ud);
/* Frees after close completed. NULL is fine. */
void ae_dnscheck_free(ae_dnscheck *d);

#endif
