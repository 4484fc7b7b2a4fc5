/* Parsers of the acme, on_demand (with dns_check and fair_queue), internal_ca, routes, events and
 * limits sections of the config file, and the on_demand cross-field checks. */
#include "acmedge/config.h"
#include "config_internal.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

static const char *const k_limits[] = {"per_ip_connections", "per_ip_handshakes_per_s", "per_ip_new_names_per_min",
                                       "table_entries", NULL};
static const char *const k_acme[] = {"directory", "ca_bundle", "email", "challenges", "key_type", "eab", NULL};
static const char *const k_eab[] = {"kid", "hmac_key", NULL};
static const char *const k_on_demand[] = {"enabled", "first_handshake", "wait_timeout_ms", "allow", "ask",
                                          "ask_timeout_ms", "max_concurrent", "max_queue", "max_held", "deny",
                                          "rate", "backoff", "fallback_cert", "dns_check", "fair_queue",
                                          "name_cache_max", NULL};
static const char *const k_internal_ca[] = {"enabled", "names", "leaf_lifetime_s", "intermediate_lifetime_s",
                                            "cache_max", NULL};
static const char *const k_fair_queue[] = {"max_share", "rate_share", "renewal_reserve", "unasked_ttl_s", NULL};
static const char *const k_dns_check[] = {"expect", "resolver", "timeout_ms", NULL};
static const char *const k_rate[] = {"per_minute", "burst", "per_3h", NULL};
static const char *const k_backoff[] = {"initial_s", "max_s", NULL};
static const char *const k_route[] = {"hosts", "upstream", "plain_http", "auth", NULL};
static const char *const k_events[] = {"hook", "hook_types", "hook_timeout_ms", "hook_max_concurrent", "buffer",
                                       NULL};

static int check_email(pctx *c, const char *path, const char *s) {
  const char *at = strchr(s, '@');
  if (!at || at == s || !at[1] || strchr(at + 1, '@') || strpbrk(s, " \t\r\n<>,;\""))
    return cfg_fail(c, path, "expected an email address");
  return 0;
}

int cfg_parse_acme(pctx *c, json_t *root, ae_config *cfg) {
  json_t *o;
  int rc = cfg_get_object(c, root, "acme", "", k_acme, &o);
  if (rc || !o)
    return rc;
  if (json_object_get(o, "directory")) {
    /* The Pebble trust anchor default only makes sense with the Pebble directory default. */
    cfg_set_str(&cfg->acme.ca_bundle, NULL);
    if ((rc = cfg_opt_str(c, o, "directory", "acme", 0, &cfg->acme.directory)))
      return rc;
  }
  if ((rc = cfg_opt_str(c, o, "ca_bundle", "acme", CFG_STR_NULLABLE | CFG_STR_EMPTY_IS_NULL, &cfg->acme.ca_bundle)) ||
      (rc = cfg_opt_str(c, o, "email", "acme", CFG_STR_NULLABLE | CFG_STR_EMPTY_IS_NULL, &cfg->acme.email)))
    return rc;
  if (cfg->acme.email && (rc = check_email(c, "acme.email", cfg->acme.email)))
    return rc;
  json_t *ch = json_object_get(o, "challenges");
  if (ch) {
    if (!json_is_array(ch) || json_array_size(ch) == 0)
      return cfg_fail(c, "acme.challenges", "must be a non-empty array of \"http-01\" and/or \"tls-alpn-01\"");
    cfg->acme.http01 = cfg->acme.tlsalpn01 = cfg->acme.prefer_tlsalpn01 = 0;
    for (size_t i = 0; i < json_array_size(ch); i++) {
      json_t *e = json_array_get(ch, i);
      char ep[AE_PATH_MAX_LEN];
      cfg_join_index(ep, sizeof(ep), "acme.challenges", i);
      const char *s = json_is_string(e) ? json_string_value(e) : "";
      int *slot = NULL;
      if (strcmp(s, "http-01") == 0)
        slot = &cfg->acme.http01;
      else if (strcmp(s, "tls-alpn-01") == 0)
        slot = &cfg->acme.tlsalpn01;
      if (!slot)
        return cfg_fail(c, ep, "must be \"http-01\" or \"tls-alpn-01\"");
      if (*slot)
        return cfg_fail(c, ep, "duplicate challenge type");
      if (i == 0 && slot == &cfg->acme.tlsalpn01)
        cfg->acme.prefer_tlsalpn01 = 1;
      *slot = 1;
    }
  }
  static const char *const key_types[] = {"ecdsa-p256", "rsa-2048", NULL};
  if ((rc = cfg_opt_enum(c, o, "key_type", "acme", key_types, &cfg->acme.key_rsa)))
    return rc;
  json_t *eab = json_object_get(o, "eab");
  if (eab && !json_is_null(eab)) {
    if (!json_is_object(eab))
      return cfg_fail(c, "acme.eab", "expected an object or null");
    if ((rc = cfg_check_keys(c, eab, "acme.eab", k_eab)))
      return rc;
    if ((rc = cfg_opt_str(c, eab, "kid", "acme.eab", 0, &cfg->acme.eab_kid)) ||
        (rc = cfg_opt_str(c, eab, "hmac_key", "acme.eab", 0, &cfg->acme.eab_hmac_key)))
      return rc;
    if (!cfg->acme.eab_kid)
      return cfg_fail(c, "acme.eab.kid", "required when eab is set");
    if (!cfg->acme.eab_hmac_key)
      return cfg_fail(c, "acme.eab.hmac_key", "required when eab is set");
    for (const char *s = cfg->acme.eab_hmac_key; *s; s++) {
      char ch2 = *s;
      if (!((ch2 >= 'A' && ch2 <= 'Z') || (ch2 >= 'a' && ch2 <= 'z') || (ch2 >= '0' && ch2 <= '9') || ch2 == '-' ||
            ch2 == '_' || ch2 == '='))
        return cfg_fail(c, "acme.eab.hmac_key", "must be base64url");
    }
  }
  return 0;
}

int cfg_parse_on_demand(pctx *c, json_t *root, ae_config *cfg) {
  json_t *o;
  int rc = cfg_get_object(c, root, "on_demand", "", k_on_demand, &o);
  if (rc || !o)
    return rc;
  static const char *const first[] = {"default", "wait", NULL};
  static const char *const deny[] = {"default", "alert", NULL};
  static const char *const fallback[] = {"default", "internal", NULL};
  const char *P = "on_demand";
  if ((rc = cfg_opt_bool(c, o, "enabled", P, &cfg->on_demand.enabled)) ||
      (rc = cfg_opt_enum(c, o, "first_handshake", P, first, &cfg->on_demand.first_wait)) ||
      (rc = cfg_opt_uint(c, o, "wait_timeout_ms", P, 1, 600000, &cfg->on_demand.wait_timeout_ms)) ||
      (rc = cfg_opt_str_array(c, o, "allow", P, 1, cfg_check_pattern, &cfg->on_demand.allow, &cfg->on_demand.nallow)) ||
      (rc = cfg_opt_str(c, o, "ask", P, CFG_STR_NULLABLE | CFG_STR_EMPTY_IS_NULL, &cfg->on_demand.ask)) ||
      (rc = cfg_opt_uint(c, o, "ask_timeout_ms", P, 1, 600000, &cfg->on_demand.ask_timeout_ms)) ||
      (rc = cfg_opt_uint(c, o, "max_concurrent", P, 1, 1024, &cfg->on_demand.max_concurrent)) ||
      (rc = cfg_opt_uint(c, o, "max_queue", P, 1, 1000000, &cfg->on_demand.max_queue)) ||
      (rc = cfg_opt_uint(c, o, "max_held", P, 1, 1000000, &cfg->on_demand.max_held)) ||
      (rc = cfg_opt_enum(c, o, "deny", P, deny, &cfg->on_demand.deny_alert)) ||
      (rc = cfg_opt_enum(c, o, "fallback_cert", P, fallback, &cfg->on_demand.fallback_internal)))
    return rc;
  cfg_lower_strv(cfg->on_demand.allow, cfg->on_demand.nallow);
  if (cfg->on_demand.ask && ae_cfg_check_url(cfg->on_demand.ask, 1) != 0)
    return cfg_fail(c, "on_demand.ask", "must be an http or https URL");
  json_t *r;
  if ((rc = cfg_get_object(c, o, "rate", P, k_rate, &r)))
    return rc;
  if (r) {
    json_t *pm = json_object_get(r, "per_minute");
    if (pm) {
      if (!json_is_number(pm) || !(json_number_value(pm) > 0) || json_number_value(pm) > 1e6)
        return cfg_fail(c, "on_demand.rate.per_minute", "must be a positive number");
      cfg->on_demand.rate_per_minute = json_number_value(pm);
    }
    if ((rc = cfg_opt_uint(c, r, "burst", "on_demand.rate", 1, 1000000, &cfg->on_demand.rate_burst)) ||
        (rc = cfg_opt_uint(c, r, "per_3h", "on_demand.rate", 1, 10000000, &cfg->on_demand.rate_per_3h)))
      return rc;
  }
  json_t *b;
  if ((rc = cfg_get_object(c, o, "backoff", P, k_backoff, &b)))
    return rc;
  if (b) {
    if ((rc = cfg_opt_uint(c, b, "initial_s", "on_demand.backoff", 1, 31536000, &cfg->on_demand.backoff_initial_s)) ||
        (rc = cfg_opt_uint(c, b, "max_s", "on_demand.backoff", 1, 31536000, &cfg->on_demand.backoff_max_s)))
      return rc;
  }
  return 0;
}

int cfg_parse_internal_ca(pctx *c, json_t *root, ae_config *cfg) {
  json_t *o;
  int rc = cfg_get_object(c, root, "internal_ca", "", k_internal_ca, &o);
  if (rc || !o)
    return rc;
  const char *P = "internal_ca";
  if ((rc = cfg_opt_bool(c, o, "enabled", P, &cfg->internal_ca.enabled)) ||
      (rc = cfg_opt_str_array(c, o, "names", P, 1, cfg_check_pattern, &cfg->internal_ca.names, &cfg->internal_ca.nnames)) ||
      (rc = cfg_opt_uint(c, o, "leaf_lifetime_s", P, 60, 90 * 86400, &cfg->internal_ca.leaf_lifetime_s)) ||
      (rc = cfg_opt_uint(c, o, "intermediate_lifetime_s", P, 120, 3650 * 86400, &cfg->internal_ca.intermediate_lifetime_s)) ||
      (rc = cfg_opt_uint(c, o, "cache_max", P, 1, 10000000, &cfg->internal_ca.cache_max)))
    return rc;
  cfg_lower_strv(cfg->internal_ca.names, cfg->internal_ca.nnames);
  if (cfg->internal_ca.nnames && !cfg->internal_ca.enabled)
    return cfg_fail(c, "internal_ca.names", "needs internal_ca.enabled: true");
  return 0;
}

int ae_config_internal_name(const ae_config *cfg, const char *name) {
  if (!cfg->internal_ca.enabled)
    return 0;
  for (size_t i = 0; i < cfg->internal_ca.nnames; i++)
    if (ae_host_match(cfg->internal_ca.names[i], name))
      return 1;
  return 0;
}

int cfg_validate_on_demand(pctx *c, ae_config *cfg) {
  if (cfg->on_demand.fallback_internal && !cfg->internal_ca.enabled)
    return cfg_fail(c, "on_demand.fallback_cert", "\"internal\" needs internal_ca.enabled: true");
  if (cfg->on_demand.backoff_initial_s > cfg->on_demand.backoff_max_s)
    return cfg_fail(c, "on_demand.backoff.initial_s", "must not exceed on_demand.backoff.max_s");
  if (cfg->on_demand.enabled && cfg->on_demand.nallow == 0 && !cfg->on_demand.ask)
    return cfg_fail(c, "on_demand.allow",
                "empty allow and no ask would issue for any name; set \"allow\": [\"*\"] explicitly");
  return 0;
}

int cfg_parse_routes(pctx *c, json_t *root, ae_config *cfg) {
  json_t *v = json_object_get(root, "routes");
  if (!v || json_is_null(v))
    return 0;
  if (!json_is_array(v))
    return cfg_fail(c, "routes", "expected an array");
  size_t n = json_array_size(v);
  cfg->routes = ae_calloc(n ? n : 1, sizeof(ae_route));
  for (size_t i = 0; i < n; i++) {
    json_t *r = json_array_get(v, i);
    char p[AE_PATH_MAX_LEN], hp[AE_PATH_MAX_LEN];
    cfg_join_index(p, sizeof(p), "routes", i);
    if (!json_is_object(r))
      return cfg_fail(c, p, "expected an object");
    int rc = cfg_check_keys(c, r, p, k_route);
    if (rc)
      return rc;
    ae_route *rt = &cfg->routes[i];
    cfg->nroutes = i + 1; /* so a partial route is freed */
    json_t *hosts = json_object_get(r, "hosts");
    cfg_join(hp, sizeof(hp), p, "hosts");
    if (!hosts)
      return cfg_fail(c, hp, "required");
    if ((rc = cfg_opt_str_array(c, r, "hosts", p, 0, cfg_check_pattern, &rt->hosts, &rt->nhosts)))
      return rc;
    if (rt->nhosts == 0)
      return cfg_fail(c, hp, "must list at least one host pattern");
    cfg_lower_strv(rt->hosts, rt->nhosts);
    cfg_join(hp, sizeof(hp), p, "upstream");
    if (!json_object_get(r, "upstream"))
      return cfg_fail(c, hp, "required");
    if ((rc = cfg_opt_str(c, r, "upstream", p, 0, &rt->upstream)))
      return rc;
    char host[256];
    int port;
    if (ae_parse_hostport(rt->upstream, host, sizeof(host), &port) != 0 ||
        (!ae_cfg_is_ip(host) && !ae_cfg_valid_hostname(host)))
      return cfg_fail(c, hp, "expected host:port");
    if ((rc = cfg_opt_bool(c, r, "plain_http", p, &rt->plain_http)))
      return rc;
  }
  return 0;
}

int cfg_parse_events(pctx *c, json_t *root, ae_config *cfg) {
  json_t *o;
  int rc = cfg_get_object(c, root, "events", "", k_events, &o);
  if (rc || !o)
    return rc;
  json_t *h = json_object_get(o, "hook");
  if (h && json_is_array(h)) {
    char **argv = NULL;
    size_t argc = 0;
    if ((rc = cfg_opt_str_array(c, o, "hook", "events", 0, NULL, &argv, &argc)))
      return rc;
    if (argc == 0 || !argv[0][0]) {
      cfg_free_strv(argv, argc);
      return cfg_fail(c, "events.hook", "must name a program");
    }
    cfg->events.hook = argv[0];
    cfg->events.nhook_args = argc - 1;
    if (argc > 1) {
      cfg->events.hook_args = ae_calloc(argc, sizeof(char *));
      memcpy(cfg->events.hook_args, argv + 1, (argc - 1) * sizeof(char *));
    }
    free(argv);
  } else if (h && !json_is_null(h) && !json_is_string(h)) {
    return cfg_fail(c, "events.hook", "expected a program path, an array [path, args...] or null");
  } else if ((rc = cfg_opt_str(c, o, "hook", "events", CFG_STR_NULLABLE | CFG_STR_EMPTY_IS_NULL, &cfg->events.hook))) {
    return rc;
  }
  if ((rc = cfg_opt_str_array(c, o, "hook_types", "events", 1, cfg_check_event_type, &cfg->events.hook_types,
                          &cfg->events.nhook_types)) ||
      (rc = cfg_opt_uint(c, o, "hook_timeout_ms", "events", 1, 3600000, &cfg->events.hook_timeout_ms)) ||
      (rc = cfg_opt_uint(c, o, "hook_max_concurrent", "events", 1, 1024, &cfg->events.hook_max_concurrent)) ||
      (rc = cfg_opt_uint(c, o, "buffer", "events", 1, 1000000, &cfg->events.buffer)))
    return rc;
  return 0;
}

/* limits.*: a present section turns the per-client limits on with defaults for missing fields. */
int cfg_parse_limits(pctx *c, json_t *root, ae_config *cfg) {
  json_t *o;
  int rc = cfg_get_object(c, root, "limits", "", k_limits, &o);
  if (rc || !o)
    return rc;
  cfg->limits.per_ip_connections = 256;
  cfg->limits.per_ip_handshakes_per_s = 50;
  cfg->limits.per_ip_new_names_per_min = 30;
  cfg->limits.table_entries = 16384;
  const char *L = "limits";
  if ((rc = cfg_opt_uint(c, o, "per_ip_connections", L, 0, 10000000, &cfg->limits.per_ip_connections)) ||
      (rc = cfg_opt_uint(c, o, "per_ip_handshakes_per_s", L, 0, 10000000, &cfg->limits.per_ip_handshakes_per_s)) ||
      (rc = cfg_opt_uint(c, o, "per_ip_new_names_per_min", L, 0, 10000000, &cfg->limits.per_ip_new_names_per_min)) ||
      (rc = cfg_opt_uint(c, o, "table_entries", L, 64, 16777216, &cfg->limits.table_entries)))
    return rc;
  return 0;
}

/* An IP literal without a range (dns_check.expect). */
static int check_ip_only(pctx *c, const char *path, const char *s) {
  if (!ae_cfg_is_ip(s))
    return cfg_fail(c, path, "expected an IP address");
  return 0;
}

/* on_demand.dns_check: present (and not null) turns the DNS pre-check on. */
int cfg_parse_dns_check(pctx *c, json_t *root, ae_config *cfg) {
  json_t *od = json_object_get(root, "on_demand"), *o;
  if (!json_is_object(od) || json_is_null(json_object_get(od, "dns_check")))
    return 0;
  int rc = cfg_get_object(c, od, "dns_check", "on_demand", k_dns_check, &o);
  if (rc || !o)
    return rc;
  const char *P = "on_demand.dns_check";
  cfg->dns_check.enabled = 1;
  cfg->dns_check.timeout_ms = 2000;
  if ((rc = cfg_opt_str_array(c, o, "expect", P, 0, check_ip_only, &cfg->dns_check.expect, &cfg->dns_check.nexpect)) ||
      (rc = cfg_opt_str(c, o, "resolver", P, CFG_STR_NULLABLE | CFG_STR_EMPTY_IS_NULL, &cfg->dns_check.resolver)) ||
      (rc = cfg_opt_uint(c, o, "timeout_ms", P, 1, 60000, &cfg->dns_check.timeout_ms)))
    return rc;
  if (cfg->dns_check.nexpect == 0)
    return cfg_fail(c, "on_demand.dns_check.expect", "must list at least one IP address (this proxy's public addresses)");
  char host[256];
  int port;
  if (cfg->dns_check.resolver && (ae_parse_hostport(cfg->dns_check.resolver, host, sizeof(host), &port) != 0 ||
                                  !ae_cfg_is_ip(host) || port <= 0))
    return cfg_fail(c, "on_demand.dns_check.resolver", "expected null or IP:port");
  return 0;
}

/* Reads an optional share into *out: a number in (0, 1], or in [0, 1) when zero_ok. */
static int opt_share(pctx *c, json_t *o, const char *key, const char *field, int zero_ok, double *out) {
  json_t *v = json_object_get(o, key);
  if (!v)
    return 0;
  double x = json_is_number(v) ? json_number_value(v) : -1.0;
  if (zero_ok ? !(x >= 0 && x < 1) : !(x > 0 && x <= 1))
    return cfg_fail(c, field, zero_ok ? "must be a number in [0, 1)" : "must be a number in (0, 1]");
  *out = x;
  return 0;
}

/* on_demand.fair_queue: how much of the order queue and of the 3 h order cap one registrable
 * domain may hold, the part of the cap kept for renewals, and when unasked queued names go; and
 * on_demand.name_cache_max. */
int cfg_parse_fair_queue(pctx *c, json_t *root, ae_config *cfg) {
  json_t *od = json_object_get(root, "on_demand"), *o = NULL;
  int rc = 0;
  if (json_is_object(od)) {
    if ((rc = cfg_opt_uint(c, od, "name_cache_max", "on_demand", 100, 10000000, &cfg->name_cache_max)) ||
        (rc = cfg_get_object(c, od, "fair_queue", "on_demand", k_fair_queue, &o)))
      return rc;
  }
  const char *P = "on_demand.fair_queue";
  if (o && ((rc = opt_share(c, o, "max_share", "on_demand.fair_queue.max_share", 0, &cfg->fair_queue.max_share)) ||
            (rc = opt_share(c, o, "rate_share", "on_demand.fair_queue.rate_share", 0, &cfg->fair_queue.rate_share)) ||
            (rc = opt_share(c, o, "renewal_reserve", "on_demand.fair_queue.renewal_reserve", 1,
                            &cfg->fair_queue.renewal_reserve)) ||
            (rc = cfg_opt_uint(c, o, "unasked_ttl_s", P, 0, 86400, &cfg->fair_queue.unasked_ttl_s))))
    return rc;
  if (cfg->fair_queue.rate_share < 0)
    cfg->fair_queue.rate_share = cfg->fair_queue.max_share;
  return 0;
}
