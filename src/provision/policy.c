/* On-demand admission policy: name shape, allow patterns, lifecycle and config reloads. The ask URL
 * and DNS pre-check with their answer cache are in policy_ask.c, rate limits in policy_rate.c. */
#include "acmedge/policy.h"
#include "policy_internal.h"
#include "acmedge/hostname.h"
#include "acmedge/log.h"

#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------------------------------- */
/* Normalization */

static int all_digits(const char *s, size_t n) {
  if (n == 0)
    return 0;
  for (size_t i = 0; i < n; i++)
    if (s[i] < '0' || s[i] > '9')
      return 0;
  return 1;
}

static int fail(const char **reason, const char *why) {
  if (reason)
    *reason = why;
  return AE_EINVAL;
}

int ae_policy_normalize(const char *in, char *out, size_t outlen, const char **reason) {
  if (reason)
    *reason = NULL;
  if (!in || !out || outlen == 0)
    return fail(reason, "invalid_name");
  out[0] = '\0';
  size_t n = strnlen(in, POLICY_NAME_MAX + 16);
  if (n == 0)
    return fail(reason, "invalid_name");
  if (in[0] == '[')
    return fail(reason, "ip_literal");

  /* Strip ":port" (Host headers). Two or more colons can only be an unbracketed IPv6 literal. */
  const char *colon = memchr(in, ':', n);
  if (colon) {
    if (memchr(colon + 1, ':', n - (size_t)(colon - in) - 1))
      return fail(reason, "ip_literal");
    const char *port = colon + 1;
    size_t plen = n - (size_t)(port - in);
    if (plen == 0 || plen > 5 || !all_digits(port, plen) || atoi(port) > 65535)
      return fail(reason, "invalid_name");
    n = (size_t)(colon - in);
    if (n == 0)
      return fail(reason, "invalid_name");
  }
  if (in[n - 1] == '.')
    n--;
  if (n > POLICY_NAME_MAX)
    return fail(reason, "too_long");
  if (n == 0)
    return fail(reason, "invalid_name");

  char buf[POLICY_NAME_MAX + 1];
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)in[i];
    if (c == '*')
      return fail(reason, "wildcard");
    if (c >= 'A' && c <= 'Z')
      c = (unsigned char)(c - 'A' + 'a');
    buf[i] = (char)c;
  }
  buf[n] = '\0';

  /* Checked before label rules so "1.2.3.4" and "::1"-like values get the precise reason. */
  struct in_addr a4;
  struct in6_addr a6;
  if (inet_pton(AF_INET, buf, &a4) == 1 || inet_pton(AF_INET6, buf, &a6) == 1)
    return fail(reason, "ip_literal");

  ae_hostname_info info;
  if (ae_hostname_shape(buf, n, &info) != 0)
    return fail(reason, info.label_too_long ? "too_long" : "invalid_name");
  if (info.labels < 2)
    return fail(reason, "invalid_name");
  /* Short numeric forms such as "127.1" are addresses to resolvers and browsers. */
  if (info.all_numeric)
    return fail(reason, "ip_literal");
  /* A top-level label is never all digits (RFC 3696 §2). */
  if (info.last_numeric)
    return fail(reason, "invalid_name");
  if (n + 1 > outlen)
    return fail(reason, "too_long");
  memcpy(out, buf, n + 1);
  return 0;
}

/* ---------------------------------------------------------------------------------------- */
/* Lifecycle */

static void apply_config(ae_policy *p, const ae_config *cfg) {
  ae_config *old = p->cfg;
  int ask_changed = !old || (old->on_demand.ask == NULL) != (cfg->on_demand.ask == NULL) ||
                    (old->on_demand.ask && strcmp(old->on_demand.ask, cfg->on_demand.ask) != 0);
  p->cfg = ae_config_ref((ae_config *)cfg);
  if (old) {
    /* Cached DNS answers were judged against the old expect list and resolver. */
    if (ask_changed || old->dns_check.enabled || cfg->dns_check.enabled)
      ae_policy_cache_clear(p);
    if (p->dns && cfg->dns_check.enabled) {
      ae_err err = {0};
      if (ae_dnscheck_set_config(p->dns, cfg, &err) != 0)
        AE_ERROR("policy", "reload: %s", err.msg);
    }
    ae_config_free(old);
  }
  ae_policy_ring_configure(p, cfg->on_demand.rate_per_3h);
  if (p->tokens > (double)cfg->on_demand.rate_burst)
    p->tokens = (double)cfg->on_demand.rate_burst;
}

int ae_policy_new(uv_loop_t *loop, const ae_config *cfg, ae_policy **out, ae_err *err) {
  if (!loop || !cfg || !out)
    return ae_err_set(err, AE_EINVAL, "policy: missing loop or config");
  ae_policy *p = ae_calloc(1, sizeof(*p));
  p->loop = loop;
  ae_strmap_init(&p->cache);
  ae_strmap_init(&p->flights);
  ae_strmap_init(&p->rd_orders);
  int r = ae_httpc_new(loop, &p->httpc, err);
  if (r < 0) {
    free(p);
    return r;
  }
  apply_config(p, cfg);
  p->tokens = (double)cfg->on_demand.rate_burst;
  *out = p;
  return 0;
}

void ae_policy_set_config(ae_policy *p, const ae_config *cfg) {
  if (!p || !cfg || cfg == p->cfg)
    return;
  apply_config(p, cfg);
}

int ae_policy_allowed(ae_policy *p, const char *name) {
  if (!p)
    return 0;
  return ae_policy_allowed_cfg(p->cfg, name);
}

int ae_policy_allowed_cfg(const ae_config *cfg, const char *name) {
  if (!cfg || !name)
    return 0;
  if (cfg->on_demand.nallow == 0)
    return cfg->on_demand.ask != NULL;
  for (size_t i = 0; i < cfg->on_demand.nallow; i++)
    if (ae_host_match(cfg->on_demand.allow[i], name))
      return 1;
  return 0;
}


static void httpc_closed(void *ud) {
  ae_policy *p = ud;
  if (p->close_cb)
    p->close_cb(p->close_ud);
}

static void dns_closed(void *ud) {
  ae_policy *p = ud;
  ae_httpc_close(p->httpc, httpc_closed, p);
}

void ae_policy_close(ae_policy *p, void (*cb)(void *ud), void *ud) {
  if (!p || p->closing)
    return;
  p->closing = 1;
  p->close_cb = cb;
  p->close_ud = ud;
  ae_strmap_foreach(&p->flights, ae_policy_cancel_flight, NULL);
  ae_strmap_clear(&p->flights);
  ae_strmap_init(&p->flights);
  p->nflights = 0;
  if (p->dns)
    ae_dnscheck_close(p->dns, dns_closed, p);
  else
    ae_httpc_close(p->httpc, httpc_closed, p);
}

void ae_policy_free(ae_policy *p) {
  if (!p)
    return;
  ae_policy_cache_clear(p);
  ae_strmap_clear(&p->cache);
  ae_strmap_clear(&p->flights);
  ae_httpc_free(p->httpc);
  ae_dnscheck_free(p->dns);
  ae_policy_ring_free(p);
  ae_config_free(p->cfg);
  free(p);
}
