/* JSON config loader (design §4): defaults, strict parsing, validation, refcounted snapshots.
 * Relative paths in the file are used as given, i.e. relative to the process's working directory. */
#include "acmedge/config.h"
#include "acmedge/log.h"
#include "acmedge/tokens.h"
#include "config_internal.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define AE_CONFIG_MAX_BYTES (4u * 1024u * 1024u)
#define AE_PATH_MAX_LEN 256

typedef struct pctx {
  const char *name;
  ae_err *err;
} pctx;

/* Every validation error goes through here: "FILE: field.path: problem". */
static int fail(pctx *c, const char *path, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(pctx *c, const char *path, const char *fmt, ...) {
  char msg[400];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);
  return ae_err_set(c->err, AE_EINVAL, "%s: %s: %s", c->name, path, msg);
}

/* Field paths are short; an over-long one (hostile key names) is truncated, never overflowed. */
static void join(char *out, size_t n, const char *parent, const char *key) {
  int r = (parent && *parent) ? snprintf(out, n, "%s.%s", parent, key) : snprintf(out, n, "%s", key);
  if (r < 0)
    out[0] = '\0';
}

static void join_index(char *out, size_t n, const char *parent, size_t i) {
  int r = snprintf(out, n, "%s[%zu]", parent, i);
  if (r < 0)
    out[0] = '\0';
}

static int check_keys(pctx *c, json_t *obj, const char *path, const char *const *keys) {
  const char *k;
  json_t *v;
  json_object_foreach(obj, k, v) {
    int known = 0;
    for (size_t i = 0; keys[i]; i++) {
      if (strcmp(keys[i], k) == 0) {
        known = 1;
        break;
      }
    }
    if (!known) {
      char p[AE_PATH_MAX_LEN];
      join(p, sizeof(p), path, k);
      return fail(c, p, "unknown key");
    }
  }
  return 0;
}

/* Looks up an optional sub-object; absent or null leaves *out NULL (defaults apply). */
static int get_object(pctx *c, json_t *parent, const char *key, const char *ppath, const char *const *keys,
                      json_t **out) {
  *out = NULL;
  json_t *v = json_object_get(parent, key);
  if (!v || json_is_null(v))
    return 0;
  char p[AE_PATH_MAX_LEN];
  join(p, sizeof(p), ppath, key);
  if (!json_is_object(v))
    return fail(c, p, "expected an object");
  int rc = check_keys(c, v, p, keys);
  if (rc)
    return rc;
  *out = v;
  return 0;
}

enum { STR_NULLABLE = 1, STR_EMPTY_IS_NULL = 2 };

static void set_str(char **dst, const char *v) {
  free(*dst);
  *dst = ae_strdup(v);
}

static int opt_str(pctx *c, json_t *obj, const char *key, const char *ppath, int flags, char **dst) {
  json_t *v = obj ? json_object_get(obj, key) : NULL;
  if (!v)
    return 0;
  char p[AE_PATH_MAX_LEN];
  join(p, sizeof(p), ppath, key);
  if (json_is_null(v)) {
    if (!(flags & STR_NULLABLE))
      return fail(c, p, "expected a string");
    set_str(dst, NULL);
    return 0;
  }
  if (!json_is_string(v))
    return fail(c, p, (flags & STR_NULLABLE) ? "expected a string or null" : "expected a string");
  const char *s = json_string_value(v);
  if (strlen(s) != json_string_length(v))
    return fail(c, p, "must not contain NUL characters");
  if (!*s) {
    if (!(flags & STR_EMPTY_IS_NULL))
      return fail(c, p, "must not be empty");
    set_str(dst, NULL);
    return 0;
  }
  set_str(dst, s);
  return 0;
}

static int opt_uint(pctx *c, json_t *obj, const char *key, const char *ppath, unsigned min, unsigned max,
                    unsigned *dst) {
  json_t *v = obj ? json_object_get(obj, key) : NULL;
  if (!v)
    return 0;
  char p[AE_PATH_MAX_LEN];
  join(p, sizeof(p), ppath, key);
  if (!json_is_integer(v) || json_integer_value(v) < (json_int_t)min || json_integer_value(v) > (json_int_t)max)
    return fail(c, p, "must be an integer between %u and %u", min, max);
  *dst = (unsigned)json_integer_value(v);
  return 0;
}

static int opt_bool(pctx *c, json_t *obj, const char *key, const char *ppath, int *dst) {
  json_t *v = obj ? json_object_get(obj, key) : NULL;
  if (!v)
    return 0;
  if (!json_is_boolean(v)) {
    char p[AE_PATH_MAX_LEN];
    join(p, sizeof(p), ppath, key);
    return fail(c, p, "expected true or false");
  }
  *dst = json_is_true(v);
  return 0;
}

/* names is NULL-terminated; *dst receives the index of the match. */
static int opt_enum(pctx *c, json_t *obj, const char *key, const char *ppath, const char *const *names, int *dst) {
  json_t *v = obj ? json_object_get(obj, key) : NULL;
  if (!v)
    return 0;
  if (json_is_string(v)) {
    for (int i = 0; names[i]; i++) {
      if (strcmp(names[i], json_string_value(v)) == 0) {
        *dst = i;
        return 0;
      }
    }
  }
  char p[AE_PATH_MAX_LEN], list[200] = "";
  join(p, sizeof(p), ppath, key);
  size_t off = 0;
  for (int i = 0; names[i] && off < sizeof(list); i++)
    off += (size_t)snprintf(list + off, sizeof(list) - off, "%s\"%s\"", i ? (names[i + 1] ? ", " : " or ") : "",
                            names[i]);
  return fail(c, p, "must be %s", list);
}

typedef int (*elem_check_fn)(pctx *c, const char *path, const char *s);

static void free_strv(char **v, size_t n) {
  if (!v)
    return;
  for (size_t i = 0; i < n; i++)
    free(v[i]);
  free(v);
}

/* Reads an array of strings (absent leaves *out untouched); check validates each element. */
static int opt_str_array(pctx *c, json_t *obj, const char *key, const char *ppath, int allow_null,
                         elem_check_fn check, char ***out, size_t *nout) {
  json_t *v = obj ? json_object_get(obj, key) : NULL;
  if (!v)
    return 0;
  char p[AE_PATH_MAX_LEN];
  join(p, sizeof(p), ppath, key);
  if (json_is_null(v) && allow_null) {
    free_strv(*out, *nout);
    *out = NULL;
    *nout = 0;
    return 0;
  }
  if (!json_is_array(v))
    return fail(c, p, "expected an array of strings");
  size_t n = json_array_size(v);
  char **arr = ae_calloc(n + 1, sizeof(char *));
  for (size_t i = 0; i < n; i++) {
    json_t *e = json_array_get(v, i);
    char ep[AE_PATH_MAX_LEN];
    join_index(ep, sizeof(ep), p, i);
    int rc = 0;
    if (!json_is_string(e) || strlen(json_string_value(e)) != json_string_length(e))
      rc = fail(c, ep, "expected a string");
    else if (check)
      rc = check(c, ep, json_string_value(e));
    if (rc) {
      free_strv(arr, i);
      return rc;
    }
    arr[i] = ae_strdup(json_string_value(e));
  }
  free_strv(*out, *nout);
  *out = arr;
  *nout = n;
  return 0;
}

static void lower_strv(char **v, size_t n) {
  for (size_t i = 0; i < n; i++)
    for (char *s = v[i]; *s; s++)
      if (*s >= 'A' && *s <= 'Z')
        *s = (char)(*s + 32);
}

static int check_pattern(pctx *c, const char *path, const char *s) {
  if (!ae_cfg_valid_pattern(s))
    return fail(c, path, "invalid host pattern '%s' (expected a host name, \"*.suffix\" or \"*\")", s);
  return 0;
}

/* An IP address, or a CIDR range "addr/prefix" (prefix <= 32 for IPv4, <= 128 for IPv6). */
static int check_ip(pctx *c, const char *path, const char *s) {
  char ip[64];
  const char *slash = strchr(s, '/');
  size_t n = slash ? (size_t)(slash - s) : strlen(s);
  if (n == 0 || n >= sizeof(ip))
    return fail(c, path, "expected an IP address or CIDR range");
  memcpy(ip, s, n);
  ip[n] = '\0';
  if (!ae_cfg_is_ip(ip))
    return fail(c, path, "expected an IP address or CIDR range");
  if (slash) {
    char *end = NULL;
    long bits = strtol(slash + 1, &end, 10);
    long max = strchr(ip, ':') ? 128 : 32;
    if (!slash[1] || *end || bits < 0 || bits > max)
      return fail(c, path, "bad prefix length in '%s'", s);
  }
  return 0;
}

static int check_event_type(pctx *c, const char *path, const char *s) {
  if (!ae_cfg_valid_event_type(s))
    return fail(c, path, "invalid event type '%s'", s);
  return 0;
}

/* ---- sections ---- */

static const char *const k_root[] = {"listen", "admin", "workers", "storage", "default_cert", "acme",
                                     "on_demand", "routes", "trusted_proxies", "proxy", "tls",
                                     "redirect_http", "events", "log", "internal_ca", "cap_tokens", "ocsp", "limits",
                                     "cert_cache", NULL};
static const char *const k_listen[] = {"https", "http", "admin", "proxy_protocol", NULL};
static const char *const k_limits[] = {"per_ip_connections", "per_ip_handshakes_per_s", "per_ip_new_names_per_min",
                                       "table_entries", NULL};
static const char *const k_admin[] = {"token", "tls", NULL};
static const char *const k_storage[] = {"path", NULL};
static const char *const k_default_cert[] = {"cert", "key", NULL};
static const char *const k_acme[] = {"directory", "ca_bundle", "email", "challenges", "key_type", "eab", NULL};
static const char *const k_eab[] = {"kid", "hmac_key", NULL};
static const char *const k_on_demand[] = {"enabled", "first_handshake", "wait_timeout_ms", "allow", "ask",
                                          "ask_timeout_ms", "max_concurrent", "max_queue", "max_held", "deny",
                                          "rate", "backoff", "fallback_cert", "dns_check", "fair_queue", NULL};
static const char *const k_internal_ca[] = {"enabled", "names", "leaf_lifetime_s", "intermediate_lifetime_s",
                                            "cache_max", NULL};
static const char *const k_fair_queue[] = {"max_share", NULL};
static const char *const k_dns_check[] = {"expect", "resolver", "timeout_ms", NULL};
static const char *const k_rate[] = {"per_minute", "burst", "per_3h", NULL};
static const char *const k_backoff[] = {"initial_s", "max_s", NULL};
static const char *const k_route[] = {"hosts", "upstream", "plain_http", "auth", NULL};
static const char *const k_proxy[] = {"header_timeout_ms", "idle_timeout_ms", "connect_timeout_ms",
                                      "response_timeout_ms", "total_timeout_ms", "max_header_bytes",
                                      "max_headers", "pool_idle_max", "pool_idle_timeout_ms",
                                      "max_header_line_bytes", "max_request_line_bytes", NULL};
static const char *const k_tls[] = {"handshake_timeout_ms", "idle_timeout_ms", "max_connections", NULL};
static const char *const k_events[] = {"hook", "hook_types", "hook_timeout_ms", "hook_max_concurrent", "buffer",
                                       NULL};
static const char *const k_log[] = {"level", "format", "file", NULL};
static const char *const k_ocsp[] = {"enabled", NULL};
static const char *const k_cert_cache[] = {"max_entries", "negative_ttl_ms", "negative_max", "preload", NULL};

#define DAY_MS 86400000u

static void set_defaults(ae_config *cfg) {
  cfg->listen_https = ae_strdup("0.0.0.0:443");
  cfg->listen_http = ae_strdup("0.0.0.0:80");
  cfg->listen_admin = ae_strdup("127.0.0.1:2020");
  cfg->workers = 0;
  cfg->storage_path = ae_strdup("/var/lib/acmedge");
  cfg->default_cert = ae_strdup("certs/default.crt");
  cfg->default_key = ae_strdup("certs/default.key");
  cfg->acme.directory = ae_strdup("https://localhost:14000/dir");
  cfg->acme.ca_bundle = ae_strdup("certs/pebble.minica.pem");
  cfg->acme.http01 = 1;
  cfg->acme.tlsalpn01 = 1;
  cfg->on_demand.enabled = 1;
  cfg->ocsp.enabled = 1;
  cfg->on_demand.wait_timeout_ms = 8000;
  cfg->on_demand.ask_timeout_ms = 5000;
  cfg->on_demand.max_concurrent = 8;
  cfg->on_demand.max_queue = 1000;
  cfg->on_demand.max_held = 1000;
  cfg->cert_cache.max_entries = 100000;
  cfg->cert_cache.negative_ttl_ms = 10000;
  cfg->cert_cache.negative_max = 16384;
  cfg->on_demand.rate_per_minute = 60;
  cfg->on_demand.rate_burst = 60;
  cfg->on_demand.rate_per_3h = 300;
  cfg->on_demand.backoff_initial_s = 60;
  cfg->on_demand.backoff_max_s = 86400;
  cfg->internal_ca.leaf_lifetime_s = 43200;
  cfg->internal_ca.intermediate_lifetime_s = 604800;
  cfg->internal_ca.cache_max = 10000;
  cfg->proxy.header_timeout_ms = 10000;
  cfg->proxy.idle_timeout_ms = 60000;
  cfg->proxy.connect_timeout_ms = 5000;
  cfg->proxy.response_timeout_ms = 60000;
  cfg->proxy.total_timeout_ms = 0;
  cfg->proxy.max_header_bytes = 32768;
  cfg->proxy.max_headers = 100;
  cfg->proxy.max_header_line_bytes = 8192;
  cfg->proxy.max_request_line_bytes = 8192;
  cfg->proxy.pool_idle_max = 32;
  cfg->proxy.pool_idle_timeout_ms = 60000;
  cfg->tls.handshake_timeout_ms = 10000;
  cfg->tls.idle_timeout_ms = 60000;
  cfg->tls.max_connections = 20000;
  cfg->redirect_http = 1;
  cfg->fair_queue.max_share = 1.0;
  cfg->events.hook_timeout_ms = 10000;
  cfg->events.hook_max_concurrent = 4;
  cfg->events.buffer = 1024;
  cfg->log.level = AE_LOG_INFO;
  cfg->log.json = 0;
}

/* kind: 0 = TCP listener (IP literal), 1 = admin (also unix socket paths). */
static int check_listen_addr(pctx *c, const char *path, const char *addr, int admin) {
  if (admin) {
    const char *sock = NULL;
    if (strncmp(addr, "unix:", 5) == 0)
      sock = addr + 5;
    else if (addr[0] == '/')
      sock = addr;
    if (sock) {
      if (sock[0] != '/' || strlen(sock) >= 108)
        return fail(c, path, "unix socket path must be absolute and shorter than 108 bytes");
      return 0;
    }
  }
  char host[256];
  int port;
  if (ae_parse_hostport(addr, host, sizeof(host), &port) != 0 || !ae_cfg_is_ip(host))
    return fail(c, path, admin ? "expected IP:port, [IPv6]:port, unix:/path or /path"
                               : "expected IP:port or [IPv6]:port");
  return 0;
}

static int parse_listen(pctx *c, json_t *root, ae_config *cfg) {
  json_t *o;
  int rc = get_object(c, root, "listen", "", k_listen, &o);
  if (rc || !o)
    return rc;
  if ((rc = opt_str(c, o, "https", "listen", STR_NULLABLE | STR_EMPTY_IS_NULL, &cfg->listen_https)) ||
      (rc = opt_str(c, o, "http", "listen", STR_NULLABLE | STR_EMPTY_IS_NULL, &cfg->listen_http)) ||
      (rc = opt_str(c, o, "admin", "listen", STR_NULLABLE | STR_EMPTY_IS_NULL, &cfg->listen_admin)) ||
      (rc = opt_bool(c, o, "proxy_protocol", "listen", &cfg->listen_proxy_protocol)))
    return rc;
  return 0;
}

static int validate_listen(pctx *c, ae_config *cfg) {
  int rc;
  if (cfg->listen_https && (rc = check_listen_addr(c, "listen.https", cfg->listen_https, 0)))
    return rc;
  if (cfg->listen_http && (rc = check_listen_addr(c, "listen.http", cfg->listen_http, 0)))
    return rc;
  if (cfg->listen_admin) {
    if ((rc = check_listen_addr(c, "listen.admin", cfg->listen_admin, 1)))
      return rc;
    const char *a = cfg->listen_admin;
    if (strncmp(a, "unix:", 5) != 0 && a[0] != '/') {
      char host[256];
      int port;
      ae_parse_hostport(a, host, sizeof(host), &port);
      if (!ae_cfg_is_loopback(host) && !cfg->admin_token && !(cfg->tokens && cfg->tokens->keys))
        return fail(c, "listen.admin", "non-loopback address requires admin.token");
    }
  }
  /* Two listeners on one address would fail to bind at start-up; say so now. */
  if (cfg->listen_https && cfg->listen_http && strcmp(cfg->listen_https, cfg->listen_http) == 0)
    return fail(c, "listen.http", "same address as listen.https");
  if (cfg->listen_admin && ((cfg->listen_https && strcmp(cfg->listen_admin, cfg->listen_https) == 0) ||
                            (cfg->listen_http && strcmp(cfg->listen_admin, cfg->listen_http) == 0)))
    return fail(c, "listen.admin", "same address as another listener");
  if (cfg->admin_token) {
    for (const char *s = cfg->admin_token; *s; s++) {
      unsigned char ch = (unsigned char)*s;
      if (ch <= ' ' || ch >= 0x7f)
        return fail(c, "admin.token", "must be printable ASCII without spaces");
    }
  }
  return 0;
}

static int check_email(pctx *c, const char *path, const char *s) {
  const char *at = strchr(s, '@');
  if (!at || at == s || !at[1] || strchr(at + 1, '@') || strpbrk(s, " \t\r\n<>,;\""))
    return fail(c, path, "expected an email address");
  return 0;
}

static int parse_acme(pctx *c, json_t *root, ae_config *cfg) {
  json_t *o;
  int rc = get_object(c, root, "acme", "", k_acme, &o);
  if (rc || !o)
    return rc;
  if (json_object_get(o, "directory")) {
    /* The Pebble trust anchor default only makes sense with the Pebble directory default. */
    set_str(&cfg->acme.ca_bundle, NULL);
    if ((rc = opt_str(c, o, "directory", "acme", 0, &cfg->acme.directory)))
      return rc;
  }
  if ((rc = opt_str(c, o, "ca_bundle", "acme", STR_NULLABLE | STR_EMPTY_IS_NULL, &cfg->acme.ca_bundle)) ||
      (rc = opt_str(c, o, "email", "acme", STR_NULLABLE | STR_EMPTY_IS_NULL, &cfg->acme.email)))
    return rc;
  if (cfg->acme.email && (rc = check_email(c, "acme.email", cfg->acme.email)))
    return rc;
  json_t *ch = json_object_get(o, "challenges");
  if (ch) {
    if (!json_is_array(ch) || json_array_size(ch) == 0)
      return fail(c, "acme.challenges", "must be a non-empty array of \"http-01\" and/or \"tls-alpn-01\"");
    cfg->acme.http01 = cfg->acme.tlsalpn01 = cfg->acme.prefer_tlsalpn01 = 0;
    for (size_t i = 0; i < json_array_size(ch); i++) {
      json_t *e = json_array_get(ch, i);
      char ep[AE_PATH_MAX_LEN];
      join_index(ep, sizeof(ep), "acme.challenges", i);
      const char *s = json_is_string(e) ? json_string_value(e) : "";
      int *slot = NULL;
      if (strcmp(s, "http-01") == 0)
        slot = &cfg->acme.http01;
      else if (strcmp(s, "tls-alpn-01") == 0)
        slot = &cfg->acme.tlsalpn01;
      if (!slot)
        return fail(c, ep, "must be \"http-01\" or \"tls-alpn-01\"");
      if (*slot)
        return fail(c, ep, "duplicate challenge type");
      if (i == 0 && slot == &cfg->acme.tlsalpn01)
        cfg->acme.prefer_tlsalpn01 = 1;
      *slot = 1;
    }
  }
  static const char *const key_types[] = {"ecdsa-p256", "rsa-2048", NULL};
  if ((rc = opt_enum(c, o, "key_type", "acme", key_types, &cfg->acme.key_rsa)))
    return rc;
  json_t *eab = json_object_get(o, "eab");
  if (eab && !json_is_null(eab)) {
    if (!json_is_object(eab))
      return fail(c, "acme.eab", "expected an object or null");
    if ((rc = check_keys(c, eab, "acme.eab", k_eab)))
      return rc;
    if ((rc = opt_str(c, eab, "kid", "acme.eab", 0, &cfg->acme.eab_kid)) ||
        (rc = opt_str(c, eab, "hmac_key", "acme.eab", 0, &cfg->acme.eab_hmac_key)))
      return rc;
    if (!cfg->acme.eab_kid)
      return fail(c, "acme.eab.kid", "required when eab is set");
    if (!cfg->acme.eab_hmac_key)
      return fail(c, "acme.eab.hmac_key", "required when eab is set");
    for (const char *s = cfg->acme.eab_hmac_key; *s; s++) {
      char ch2 = *s;
      if (!((ch2 >= 'A' && ch2 <= 'Z') || (ch2 >= 'a' && ch2 <= 'z') || (ch2 >= '0' && ch2 <= '9') || ch2 == '-' ||
            ch2 == '_' || ch2 == '='))
        return fail(c, "acme.eab.hmac_key", "must be base64url");
    }
  }
  return 0;
}

static int parse_on_demand(pctx *c, json_t *root, ae_config *cfg) {
  json_t *o;
  int rc = get_object(c, root, "on_demand", "", k_on_demand, &o);
  if (rc || !o)
    return rc;
  static const char *const first[] = {"default", "wait", NULL};
  static const char *const deny[] = {"default", "alert", NULL};
  static const char *const fallback[] = {"default", "internal", NULL};
  const char *P = "on_demand";
  if ((rc = opt_bool(c, o, "enabled", P, &cfg->on_demand.enabled)) ||
      (rc = opt_enum(c, o, "first_handshake", P, first, &cfg->on_demand.first_wait)) ||
      (rc = opt_uint(c, o, "wait_timeout_ms", P, 1, 600000, &cfg->on_demand.wait_timeout_ms)) ||
      (rc = opt_str_array(c, o, "allow", P, 1, check_pattern, &cfg->on_demand.allow, &cfg->on_demand.nallow)) ||
      (rc = opt_str(c, o, "ask", P, STR_NULLABLE | STR_EMPTY_IS_NULL, &cfg->on_demand.ask)) ||
      (rc = opt_uint(c, o, "ask_timeout_ms", P, 1, 600000, &cfg->on_demand.ask_timeout_ms)) ||
      (rc = opt_uint(c, o, "max_concurrent", P, 1, 1024, &cfg->on_demand.max_concurrent)) ||
      (rc = opt_uint(c, o, "max_queue", P, 1, 1000000, &cfg->on_demand.max_queue)) ||
      (rc = opt_uint(c, o, "max_held", P, 1, 1000000, &cfg->on_demand.max_held)) ||
      (rc = opt_enum(c, o, "deny", P, deny, &cfg->on_demand.deny_alert)) ||
      (rc = opt_enum(c, o, "fallback_cert", P, fallback, &cfg->on_demand.fallback_internal)))
    return rc;
  lower_strv(cfg->on_demand.allow, cfg->on_demand.nallow);
  if (cfg->on_demand.ask && ae_cfg_check_url(cfg->on_demand.ask, 1) != 0)
    return fail(c, "on_demand.ask", "must be an http or https URL");
  json_t *r;
  if ((rc = get_object(c, o, "rate", P, k_rate, &r)))
    return rc;
  if (r) {
    json_t *pm = json_object_get(r, "per_minute");
    if (pm) {
      if (!json_is_number(pm) || !(json_number_value(pm) > 0) || json_number_value(pm) > 1e6)
        return fail(c, "on_demand.rate.per_minute", "must be a positive number");
      cfg->on_demand.rate_per_minute = json_number_value(pm);
    }
    if ((rc = opt_uint(c, r, "burst", "on_demand.rate", 1, 1000000, &cfg->on_demand.rate_burst)) ||
        (rc = opt_uint(c, r, "per_3h", "on_demand.rate", 1, 10000000, &cfg->on_demand.rate_per_3h)))
      return rc;
  }
  json_t *b;
  if ((rc = get_object(c, o, "backoff", P, k_backoff, &b)))
    return rc;
  if (b) {
    if ((rc = opt_uint(c, b, "initial_s", "on_demand.backoff", 1, 31536000, &cfg->on_demand.backoff_initial_s)) ||
        (rc = opt_uint(c, b, "max_s", "on_demand.backoff", 1, 31536000, &cfg->on_demand.backoff_max_s)))
      return rc;
  }
  return 0;
}

static int parse_internal_ca(pctx *c, json_t *root, ae_config *cfg) {
  json_t *o;
  int rc = get_object(c, root, "internal_ca", "", k_internal_ca, &o);
  if (rc || !o)
    return rc;
  const char *P = "internal_ca";
  if ((rc = opt_bool(c, o, "enabled", P, &cfg->internal_ca.enabled)) ||
      (rc = opt_str_array(c, o, "names", P, 1, check_pattern, &cfg->internal_ca.names, &cfg->internal_ca.nnames)) ||
      (rc = opt_uint(c, o, "leaf_lifetime_s", P, 60, 90 * 86400, &cfg->internal_ca.leaf_lifetime_s)) ||
      (rc = opt_uint(c, o, "intermediate_lifetime_s", P, 3600, 3650 * 86400, &cfg->internal_ca.intermediate_lifetime_s)) ||
      (rc = opt_uint(c, o, "cache_max", P, 1, 10000000, &cfg->internal_ca.cache_max)))
    return rc;
  lower_strv(cfg->internal_ca.names, cfg->internal_ca.nnames);
  if (cfg->internal_ca.nnames && !cfg->internal_ca.enabled)
    return fail(c, "internal_ca.names", "needs internal_ca.enabled: true");
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

static int validate_on_demand(pctx *c, ae_config *cfg) {
  if (cfg->on_demand.fallback_internal && !cfg->internal_ca.enabled)
    return fail(c, "on_demand.fallback_cert", "\"internal\" needs internal_ca.enabled: true");
  if (cfg->on_demand.backoff_initial_s > cfg->on_demand.backoff_max_s)
    return fail(c, "on_demand.backoff.initial_s", "must not exceed on_demand.backoff.max_s");
  if (cfg->on_demand.enabled && cfg->on_demand.nallow == 0 && !cfg->on_demand.ask)
    return fail(c, "on_demand.allow",
                "empty allow and no ask would issue for any name; set \"allow\": [\"*\"] explicitly");
  return 0;
}

static int parse_routes(pctx *c, json_t *root, ae_config *cfg) {
  json_t *v = json_object_get(root, "routes");
  if (!v || json_is_null(v))
    return 0;
  if (!json_is_array(v))
    return fail(c, "routes", "expected an array");
  size_t n = json_array_size(v);
  cfg->routes = ae_calloc(n ? n : 1, sizeof(ae_route));
  for (size_t i = 0; i < n; i++) {
    json_t *r = json_array_get(v, i);
    char p[AE_PATH_MAX_LEN], hp[AE_PATH_MAX_LEN];
    join_index(p, sizeof(p), "routes", i);
    if (!json_is_object(r))
      return fail(c, p, "expected an object");
    int rc = check_keys(c, r, p, k_route);
    if (rc)
      return rc;
    ae_route *rt = &cfg->routes[i];
    cfg->nroutes = i + 1; /* so a partial route is freed */
    json_t *hosts = json_object_get(r, "hosts");
    join(hp, sizeof(hp), p, "hosts");
    if (!hosts)
      return fail(c, hp, "required");
    if ((rc = opt_str_array(c, r, "hosts", p, 0, check_pattern, &rt->hosts, &rt->nhosts)))
      return rc;
    if (rt->nhosts == 0)
      return fail(c, hp, "must list at least one host pattern");
    lower_strv(rt->hosts, rt->nhosts);
    join(hp, sizeof(hp), p, "upstream");
    if (!json_object_get(r, "upstream"))
      return fail(c, hp, "required");
    if ((rc = opt_str(c, r, "upstream", p, 0, &rt->upstream)))
      return rc;
    char host[256];
    int port;
    if (ae_parse_hostport(rt->upstream, host, sizeof(host), &port) != 0 ||
        (!ae_cfg_is_ip(host) && !ae_cfg_valid_hostname(host)))
      return fail(c, hp, "expected host:port");
    if ((rc = opt_bool(c, r, "plain_http", p, &rt->plain_http)))
      return rc;
  }
  return 0;
}

static int parse_events(pctx *c, json_t *root, ae_config *cfg) {
  json_t *o;
  int rc = get_object(c, root, "events", "", k_events, &o);
  if (rc || !o)
    return rc;
  json_t *h = json_object_get(o, "hook");
  if (h && json_is_array(h)) {
    char **argv = NULL;
    size_t argc = 0;
    if ((rc = opt_str_array(c, o, "hook", "events", 0, NULL, &argv, &argc)))
      return rc;
    if (argc == 0 || !argv[0][0]) {
      free_strv(argv, argc);
      return fail(c, "events.hook", "must name a program");
    }
    cfg->events.hook = argv[0];
    cfg->events.nhook_args = argc - 1;
    if (argc > 1) {
      cfg->events.hook_args = ae_calloc(argc, sizeof(char *));
      memcpy(cfg->events.hook_args, argv + 1, (argc - 1) * sizeof(char *));
    }
    free(argv);
  } else if (h && !json_is_null(h) && !json_is_string(h)) {
    return fail(c, "events.hook", "expected a program path, an array [path, args...] or null");
  } else if ((rc = opt_str(c, o, "hook", "events", STR_NULLABLE | STR_EMPTY_IS_NULL, &cfg->events.hook))) {
    return rc;
  }
  if ((rc = opt_str_array(c, o, "hook_types", "events", 1, check_event_type, &cfg->events.hook_types,
                          &cfg->events.nhook_types)) ||
      (rc = opt_uint(c, o, "hook_timeout_ms", "events", 1, 3600000, &cfg->events.hook_timeout_ms)) ||
      (rc = opt_uint(c, o, "hook_max_concurrent", "events", 1, 1024, &cfg->events.hook_max_concurrent)) ||
      (rc = opt_uint(c, o, "buffer", "events", 1, 1000000, &cfg->events.buffer)))
    return rc;
  return 0;
}

/* limits.*: a present section turns the per-client limits on with defaults for missing fields. */
static int parse_limits(pctx *c, json_t *root, ae_config *cfg) {
  json_t *o;
  int rc = get_object(c, root, "limits", "", k_limits, &o);
  if (rc || !o)
    return rc;
  cfg->limits.per_ip_connections = 256;
  cfg->limits.per_ip_handshakes_per_s = 50;
  cfg->limits.per_ip_new_names_per_min = 30;
  cfg->limits.table_entries = 16384;
  const char *L = "limits";
  if ((rc = opt_uint(c, o, "per_ip_connections", L, 0, 10000000, &cfg->limits.per_ip_connections)) ||
      (rc = opt_uint(c, o, "per_ip_handshakes_per_s", L, 0, 10000000, &cfg->limits.per_ip_handshakes_per_s)) ||
      (rc = opt_uint(c, o, "per_ip_new_names_per_min", L, 0, 10000000, &cfg->limits.per_ip_new_names_per_min)) ||
      (rc = opt_uint(c, o, "table_entries", L, 64, 16777216, &cfg->limits.table_entries)))
    return rc;
  return 0;
}

/* An IP literal without a range (dns_check.expect). */
static int check_ip_only(pctx *c, const char *path, const char *s) {
  if (!ae_cfg_is_ip(s))
    return fail(c, path, "expected an IP address");
  return 0;
}

/* on_demand.dns_check: present (and not null) turns the DNS pre-check on. */
static int parse_dns_check(pctx *c, json_t *root, ae_config *cfg) {
  json_t *od = json_object_get(root, "on_demand"), *o;
  if (!json_is_object(od) || json_is_null(json_object_get(od, "dns_check")))
    return 0;
  int rc = get_object(c, od, "dns_check", "on_demand", k_dns_check, &o);
  if (rc || !o)
    return rc;
  const char *P = "on_demand.dns_check";
  cfg->dns_check.enabled = 1;
  cfg->dns_check.timeout_ms = 2000;
  if ((rc = opt_str_array(c, o, "expect", P, 0, check_ip_only, &cfg->dns_check.expect, &cfg->dns_check.nexpect)) ||
      (rc = opt_str(c, o, "resolver", P, STR_NULLABLE | STR_EMPTY_IS_NULL, &cfg->dns_check.resolver)) ||
      (rc = opt_uint(c, o, "timeout_ms", P, 1, 60000, &cfg->dns_check.timeout_ms)))
    return rc;
  if (cfg->dns_check.nexpect == 0)
    return fail(c, "on_demand.dns_check.expect", "must list at least one IP address (this proxy's public addresses)");
  char host[256];
  int port;
  if (cfg->dns_check.resolver && (ae_parse_hostport(cfg->dns_check.resolver, host, sizeof(host), &port) != 0 ||
                                  !ae_cfg_is_ip(host) || port <= 0))
    return fail(c, "on_demand.dns_check.resolver", "expected null or IP:port");
  return 0;
}

/* on_demand.fair_queue: how much of the order queue one registrable domain may hold. */
static int parse_fair_queue(pctx *c, json_t *root, ae_config *cfg) {
  json_t *od = json_object_get(root, "on_demand"), *o;
  if (!json_is_object(od))
    return 0;
  int rc = get_object(c, od, "fair_queue", "on_demand", k_fair_queue, &o);
  if (rc || !o)
    return rc;
  json_t *v = json_object_get(o, "max_share");
  if (v) {
    if (!json_is_number(v) || !(json_number_value(v) > 0) || json_number_value(v) > 1)
      return fail(c, "on_demand.fair_queue.max_share", "must be a number in (0, 1]");
    cfg->fair_queue.max_share = json_number_value(v);
  }
  return 0;
}

static int parse_root(pctx *c, json_t *root, ae_config *cfg) {
  int rc;
  if (!json_is_object(root))
    return ae_err_set(c->err, AE_EINVAL, "%s: expected a JSON object at the top level", c->name);
  if ((rc = check_keys(c, root, "", k_root)))
    return rc;
  if ((rc = parse_listen(c, root, cfg)))
    return rc;
  json_t *o;
  if ((rc = get_object(c, root, "admin", "", k_admin, &o)))
    return rc;
  if (o && (rc = opt_str(c, o, "token", "admin", STR_NULLABLE | STR_EMPTY_IS_NULL, &cfg->admin_token)))
    return rc;
  unsigned workers = 0;
  if ((rc = opt_uint(c, root, "workers", "", 0, 256, &workers)))
    return rc;
  cfg->workers = (int)workers;
  if ((rc = get_object(c, root, "storage", "", k_storage, &o)))
    return rc;
  if (o && (rc = opt_str(c, o, "path", "storage", 0, &cfg->storage_path)))
    return rc;
  if ((rc = get_object(c, root, "default_cert", "", k_default_cert, &o)))
    return rc;
  if (o && ((rc = opt_str(c, o, "cert", "default_cert", 0, &cfg->default_cert)) ||
            (rc = opt_str(c, o, "key", "default_cert", 0, &cfg->default_key))))
    return rc;
  if ((rc = parse_acme(c, root, cfg)) || (rc = parse_on_demand(c, root, cfg)) || (rc = parse_routes(c, root, cfg)) ||
      (rc = parse_internal_ca(c, root, cfg)))
    return rc;
  if ((rc = ae_tok_config_parse(c->name, root, cfg, c->err)))
    return rc;
  if ((rc = opt_str_array(c, root, "trusted_proxies", "", 1, check_ip, &cfg->trusted_proxies,
                          &cfg->ntrusted_proxies)))
    return rc;
  if ((rc = get_object(c, root, "proxy", "", k_proxy, &o)))
    return rc;
  if (o) {
    const char *P = "proxy";
    if ((rc = opt_uint(c, o, "header_timeout_ms", P, 1, DAY_MS, &cfg->proxy.header_timeout_ms)) ||
        (rc = opt_uint(c, o, "idle_timeout_ms", P, 1, DAY_MS, &cfg->proxy.idle_timeout_ms)) ||
        (rc = opt_uint(c, o, "connect_timeout_ms", P, 1, DAY_MS, &cfg->proxy.connect_timeout_ms)) ||
        (rc = opt_uint(c, o, "response_timeout_ms", P, 1, DAY_MS, &cfg->proxy.response_timeout_ms)) ||
        (rc = opt_uint(c, o, "total_timeout_ms", P, 0, DAY_MS, &cfg->proxy.total_timeout_ms)) ||
        (rc = opt_uint(c, o, "max_header_bytes", P, 1024, 1048576, &cfg->proxy.max_header_bytes)) ||
        (rc = opt_uint(c, o, "max_headers", P, 1, 10000, &cfg->proxy.max_headers)) ||
        (rc = opt_uint(c, o, "max_header_line_bytes", P, 256, 1048576, &cfg->proxy.max_header_line_bytes)) ||
        (rc = opt_uint(c, o, "max_request_line_bytes", P, 256, 1048576, &cfg->proxy.max_request_line_bytes)) ||
        (rc = opt_uint(c, o, "pool_idle_max", P, 0, 100000, &cfg->proxy.pool_idle_max)) ||
        (rc = opt_uint(c, o, "pool_idle_timeout_ms", P, 1, DAY_MS, &cfg->proxy.pool_idle_timeout_ms)))
      return rc;
  }
  if ((rc = get_object(c, root, "tls", "", k_tls, &o)))
    return rc;
  if (o && ((rc = opt_uint(c, o, "handshake_timeout_ms", "tls", 1, 600000, &cfg->tls.handshake_timeout_ms)) ||
            (rc = opt_uint(c, o, "idle_timeout_ms", "tls", 1, DAY_MS, &cfg->tls.idle_timeout_ms)) ||
            (rc = opt_uint(c, o, "max_connections", "tls", 1, 10000000, &cfg->tls.max_connections))))
    return rc;
  if ((rc = parse_limits(c, root, cfg)) || (rc = parse_dns_check(c, root, cfg)) ||
      (rc = parse_fair_queue(c, root, cfg)))
    return rc;
  if ((rc = opt_bool(c, root, "redirect_http", "", &cfg->redirect_http)))
    return rc;
  if ((rc = parse_events(c, root, cfg)))
    return rc;
  if ((rc = get_object(c, root, "cert_cache", "", k_cert_cache, &o)))
    return rc;
  if (o && ((rc = opt_uint(c, o, "max_entries", "cert_cache", 0, 100000000, &cfg->cert_cache.max_entries)) ||
            (rc = opt_uint(c, o, "negative_ttl_ms", "cert_cache", 0, 3600000, &cfg->cert_cache.negative_ttl_ms)) ||
            (rc = opt_uint(c, o, "negative_max", "cert_cache", 1, 10000000, &cfg->cert_cache.negative_max)) ||
            (rc = opt_bool(c, o, "preload", "cert_cache", &cfg->cert_cache.preload))))
    return rc;
  if ((rc = get_object(c, root, "log", "", k_log, &o)))
    return rc;
  if (o) {
    static const char *const levels[] = {"debug", "info", "warn", "error", NULL};
    static const char *const formats[] = {"text", "json", NULL};
    int lvl = cfg->log.level;
    if ((rc = opt_enum(c, o, "level", "log", levels, &lvl)) || (rc = opt_enum(c, o, "format", "log", formats, &cfg->log.json)) ||
        (rc = opt_str(c, o, "file", "log", STR_NULLABLE | STR_EMPTY_IS_NULL, &cfg->log.file)))
      return rc;
    cfg->log.level = lvl;
  }
  if ((rc = get_object(c, root, "ocsp", "", k_ocsp, &o)))
    return rc;
  if (o && (rc = opt_bool(c, o, "enabled", "ocsp", &cfg->ocsp.enabled)))
    return rc;
  return 0;
}

/* Cross-field and file-system checks, after every field parsed. */
static int validate(pctx *c, ae_config *cfg, int ca_bundle_explicit) {
  int rc;
  char problem[200];
  if ((rc = validate_listen(c, cfg)) || (rc = validate_on_demand(c, cfg)))
    return rc;
  if (ae_cfg_check_url(cfg->acme.directory, 2) != 0)
    return fail(c, "acme.directory", "must be an https URL (http only for a loopback host)");
  if (cfg->acme.ca_bundle && ca_bundle_explicit) {
    rc = ae_cfg_check_readable(cfg->acme.ca_bundle, problem, sizeof(problem));
    if (rc)
      return fail(c, "acme.ca_bundle", "%s: %s", cfg->acme.ca_bundle, problem);
  }
  /* A missing pair is generated at start-up; half a pair or an unreadable file is a mistake. */
  int crc = ae_cfg_check_readable(cfg->default_cert, problem, sizeof(problem));
  if (crc && crc != AE_ENOTFOUND)
    return fail(c, "default_cert.cert", "%s: %s", cfg->default_cert, problem);
  char kproblem[200];
  int krc = ae_cfg_check_readable(cfg->default_key, kproblem, sizeof(kproblem));
  if (krc && krc != AE_ENOTFOUND)
    return fail(c, "default_cert.key", "%s: %s", cfg->default_key, kproblem);
  if (crc == 0 && krc == AE_ENOTFOUND)
    return fail(c, "default_cert.key", "%s: %s (the certificate file exists)", cfg->default_key, kproblem);
  if (krc == 0 && crc == AE_ENOTFOUND)
    return fail(c, "default_cert.cert", "%s: %s (the key file exists)", cfg->default_cert, problem);
  if (cfg->events.hook) {
    rc = ae_cfg_check_executable(cfg->events.hook, problem, sizeof(problem));
    if (rc)
      return fail(c, "events.hook", "%s: %s", cfg->events.hook, problem);
  }
  return 0;
}

int ae_config_parse(const char *name, const char *json, ae_config **out, ae_err *err) {
  pctx c = {name ? name : "config", err};
  *out = NULL;
  if (!json)
    return ae_err_set(err, AE_EINVAL, "%s: no content", c.name);
  json_error_t jerr;
  json_t *root = json_loads(json, JSON_REJECT_DUPLICATES, &jerr);
  if (!root)
    return ae_err_set(err, AE_EINVAL, "%s: line %d column %d: %s", c.name, jerr.line, jerr.column, jerr.text);
  ae_config *cfg = ae_calloc(1, sizeof(*cfg));
  cfg->_refs = 1;
  cfg->path = ae_strdup(c.name);
  set_defaults(cfg);
  int rc = parse_root(&c, root, cfg);
  int ca_explicit = 0;
  if (rc == 0) {
    json_t *acme = json_object_get(root, "acme");
    ca_explicit = acme && json_is_object(acme) && json_object_get(acme, "ca_bundle") != NULL;
    rc = validate(&c, cfg, ca_explicit);
  }
  json_decref(root);
  if (rc) {
    ae_config_free(cfg);
    return rc;
  }
  *out = cfg;
  return 0;
}

int ae_config_load(const char *path, ae_config **out, ae_err *err) {
  *out = NULL;
  if (!path || !*path)
    return ae_err_set(err, AE_EINVAL, "no config file given");
  char *buf = NULL;
  size_t len = 0;
  int rc = ae_read_file(path, AE_CONFIG_MAX_BYTES, &buf, &len, err);
  if (rc)
    return rc; /* ae_read_file's message already reads "PATH: reason" */
  if (strlen(buf) != len) {
    free(buf);
    return ae_err_set(err, AE_EINVAL, "%s: contains a NUL byte", path);
  }
  rc = ae_config_parse(path, buf, out, err);
  free(buf);
  return rc;
}

ae_config *ae_config_ref(ae_config *cfg) {
  if (cfg)
    __atomic_add_fetch(&cfg->_refs, 1, __ATOMIC_RELAXED);
  return cfg;
}

void ae_config_free(ae_config *cfg) {
  if (!cfg)
    return;
  if (__atomic_sub_fetch(&cfg->_refs, 1, __ATOMIC_ACQ_REL) != 0)
    return;
  free(cfg->path);
  free(cfg->listen_https);
  free(cfg->listen_http);
  free(cfg->listen_admin);
  free(cfg->admin_token);
  free(cfg->storage_path);
  free(cfg->default_cert);
  free(cfg->default_key);
  free(cfg->acme.directory);
  free(cfg->acme.ca_bundle);
  free(cfg->acme.email);
  free(cfg->acme.eab_kid);
  free(cfg->acme.eab_hmac_key);
  free_strv(cfg->on_demand.allow, cfg->on_demand.nallow);
  free(cfg->on_demand.ask);
  free_strv(cfg->internal_ca.names, cfg->internal_ca.nnames);
  for (size_t i = 0; i < cfg->nroutes; i++) {
    free_strv(cfg->routes[i].hosts, cfg->routes[i].nhosts);
    free(cfg->routes[i].upstream);
  }
  ae_tok_config_free(cfg);
  free(cfg->routes);
  free_strv(cfg->trusted_proxies, cfg->ntrusted_proxies);
  free_strv(cfg->dns_check.expect, cfg->dns_check.nexpect);
  free(cfg->dns_check.resolver);
  free(cfg->events.hook);
  free_strv(cfg->events.hook_args, cfg->events.nhook_args);
  free_strv(cfg->events.hook_types, cfg->events.nhook_types);
  free(cfg->log.file);
  free(cfg);
}
