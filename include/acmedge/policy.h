/* On-demand admission policy: hostname shape, on_demand.allow patterns, the ask URL (with a
 * cache and shared in-flight requests) and the new-order rate limits. Runs on one loop. */
#ifndef ACMEDGE_POLICY_H
#define ACMEDGE_POLICY_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>
#include "acmedge/common.h"
#include "acmedge/config.h"

typedef struct ae_policy ae_policy;
typedef struct ae_policy_req ae_policy_req;

/* Normalizes an SNI or Host value: strips a ":port" suffix (Host only; [v6]:port forms are IP
 * literals => invalid), lowercases, removes one trailing dot, validates DNS shape (LDH labels
 * 1..63, total <= 253, at least two labels, no IPv4/IPv6 literals, no '*', IDN only as punycode
 * xn-- (ASCII only), no leading/trailing hyphen in a label). Returns 0 and writes out, or
 * AE_EINVAL with *reason a static string: "invalid_name", "ip_literal", "wildcard", "too_long".
 * reason may be NULL. */
int ae_policy_normalize(const char *in, char *out, size_t outlen, const char **reason);

/* Creates a policy bound to loop; takes a reference on cfg. Caller owns *out
 * (ae_policy_close, then ae_policy_free). */
int ae_policy_new(uv_loop_t *loop, const ae_config *cfg, ae_policy **out, ae_err *err);

/* Reload: switches to cfg's allow/ask/rate settings (takes a reference, drops the old one). The
 * token bucket keeps its level, clamped to the new burst; the ask cache is cleared when the ask
 * URL changed. */
void ae_policy_set_config(ae_policy *p, const ae_config *cfg);

/* Static part: 1 when name passes on_demand.allow (non-empty list: a pattern matches; empty
 * list: 1 only if ask is set), else 0. name must already be normalized. */
int ae_policy_allowed(ae_policy *p, const char *name);

/* The same static check against a config snapshot; pure, so worker threads may call it. */
int ae_policy_allowed_cfg(const ae_config *cfg, const char *name);

/* Completion of an ask check; reason is static ("ask_denied", "ask_failed") or NULL when allowed. */
typedef void (*ae_policy_cb)(void *ud, int allowed, const char *reason);

/* Full decision: allow list, then ask. Returns 1 (allowed) or 0 (denied, *reason set:
 * "not_allowed", "ask_denied", "ask_failed") when known at once (no ask configured, or a
 * cached ask answer) — cb is NOT called then; or AE_EAGAIN when an ask request is in flight —
 * cb is called exactly once later, and *out (may be NULL) identifies the wait for
 * ae_policy_cancel (concurrent checks of the same name share one ask request). <0 other
 * errors, cb not called. name must already be normalized. */
int ae_policy_check(ae_policy *p, const char *name, ae_policy_cb cb, void *ud, ae_policy_req **out,
                    const char **reason);

/* Cancels one pending check: its cb is not called and r is freed. The shared ask request keeps
 * running for other waiters (its answer is still cached). */
void ae_policy_cancel(ae_policy_req *r);

/* Rate limit for new orders: token bucket (rate.per_minute refill, rate.burst capacity, starts
 * full) plus a hard cap of rate.per_3h orders in any rolling 3 hours (0 = no cap). Returns 0 and
 * consumes one if an order may start now; AE_ELIMIT and *wait_ms (time until one is available;
 * may be NULL) otherwise. now_ms is ae_now_ms(). */
int ae_policy_rate_take(ae_policy *p, uint64_t now_ms, uint64_t *wait_ms);

/* Whether an order for a name of registrable domain rd (may be NULL) may start now, without
 * taking anything: 0 yes; AE_ELIMIT no order at all may start before *wait_ms (bucket empty or
 * 3 h cap reached); AE_EAGAIN this one may not, others may (a new name while only the renewal
 * reserve is left, or rd has used its fair_queue.rate_share of the 3 h cap), *wait_ms until
 * that changes. Renewals (renewal = 1) count against neither. wait_ms may be NULL. */
int ae_policy_rate_check(ae_policy *p, uint64_t now_ms, const char *rd, int renewal, uint64_t *wait_ms);

/* Takes one order for rd after ae_policy_rate_check answered 0 at the same now_ms. */
void ae_policy_rate_commit(ae_policy *p, uint64_t now_ms, const char *rd, int renewal);

/* Names with a cached ask or DNS answer (<= on_demand.name_cache_max), and checks in flight. */
void ae_policy_counts(const ae_policy *p, size_t *cached, size_t *in_flight);

/* Cancels pending checks (callbacks not called) and closes the ask client; cb(ud) when done. */
void ae_policy_close(ae_policy *p, void (*cb)(void *ud), void *ud);

/* Frees after close completed (or when no ask request was ever started and close was called). */
void ae_policy_free(ae_policy *p);

#endif
