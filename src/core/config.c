/* JSON config loader (design §4): defaults, strict parsing, validation, refcounted snapshots.
 * Relative paths in the file are used as given, i.e. relative to the process's working directory. */
#include "acmedge/config.h"
#include "acmedge/log.h"
#include "acmedge/storage.h"
#include "acmedge/tokens.h"
#include "config_internal.h"

#include <jansson.h>
#include <sys/stat.h>
#include <time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* How long a generated default pair may take to appear in full (start-up waits up to 5 s). */
#define DEFAULT_PAIR_WRITE_S 10

#define AE_CONFIG_MAX_BYTES (4u * 1024u * 1024u)

/* ---- sections ---- */

static const char *const k_root[] = {"listen", "admin", "workers", "storage", "default_cert", "acme",
                                     "on_demand", "routes", "trusted_proxies", "proxy", "tls",
                                     "redirect_http", "events", "log", "internal_ca", "cap_tokens", "ocsp", "limits",
                                     "cert_cache", NULL};
static const char *const k_listen[] = {"https", "http", "admin", "proxy_protocol", NULL};
static const char *const k_admin[] = {"token", "tls", NULL};
static const char *const k_storage[] = {"path", "type", "redis", NULL};
static const char *const k_default_cert[] = {"cert", "key", NULL};
static const char *const k_proxy[] = {"header_timeout_ms", "idle_timeout_ms", "connect_timeout_ms",
                                      "response_timeout_ms", "total_timeout_ms", "max_header_bytes",
                                      "max_headers", "pool_idle_max", "pool_idle_timeout_ms",
                                      "max_header_line_bytes", "max_request_line_bytes", "http2",
                                      "h2_max_concurrent_streams", "h2_max_requests", NULL};
static const char *const k_tls[] = {"handshake_timeout_ms", "idle_timeout_ms", "max_connections", NULL};
static const char *const k_log[] = {"level", "format", "file", NULL};
static const char *const k_ocsp[] = {"enabled", NULL};
static const char *const k_cert_cache[] = {"max_entries", "max_bytes", "negative_ttl_ms", "negative_max", "preload",
                                           NULL};

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
  cfg->proxy.http2 = 1;
  cfg->proxy.h2_max_concurrent_streams = 100;
  cfg->proxy.h2_max_requests = 1000000;
  cfg->tls.handshake_timeout_ms = 10000;
  cfg->tls.idle_timeout_ms = 60000;
  cfg->tls.max_connections = 20000;
  cfg->redirect_http = 1;
  cfg->fair_queue.max_share = 1.0;
  cfg->fair_queue.rate_share = -1.0; /* follows max_share unless set */
  cfg->fair_queue.renewal_reserve = 0.1;
  cfg->fair_queue.unasked_ttl_s = 600;
  cfg->name_cache_max = 10000;
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
        return cfg_fail(c, path, "unix socket path must be absolute and shorter than 108 bytes");
      return 0;
    }
  }
  char host[256];
  int port;
  if (ae_parse_hostport(addr, host, sizeof(host), &port) != 0 || !ae_cfg_is_ip(host))
    return cfg_fail(c, path, admin ? "expected IP:port, [IPv6]:port, unix:/path or /path"
                               : "expected IP:port or [IPv6]:port");
  return 0;
}

static int parse_listen(pctx *c, json_t *root, ae_config *cfg) {
  json_t *o;
  int rc = cfg_get_object(c, root, "listen", "", k_listen, &o);
  if (rc || !o)
    return rc;
  if ((rc = cfg_opt_str(c, o, "https", "listen", CFG_STR_NULLABLE | CFG_STR_EMPTY_IS_NULL, &cfg->listen_https)) ||
      (rc = cfg_opt_str(c, o, "http", "listen", CFG_STR_NULLABLE | CFG_STR_EMPTY_IS_NULL, &cfg->listen_http)) ||
      (rc = cfg_opt_str(c, o, "admin", "listen", CFG_STR_NULLABLE | CFG_STR_EMPTY_IS_NULL, &cfg->listen_admin)) ||
      (rc = cfg_opt_bool(c, o, "proxy_protocol", "listen", &cfg->listen_proxy_protocol)))
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
        return cfg_fail(c, "listen.admin", "non-loopback address requires admin.token");
    }
  }
  /* Two listeners on one address would cfg_fail to bind at start-up; say so now. */
  if (cfg->listen_https && cfg->listen_http && strcmp(cfg->listen_https, cfg->listen_http) == 0)
    return cfg_fail(c, "listen.http", "same address as listen.https");
  if (cfg->listen_admin && ((cfg->listen_https && strcmp(cfg->listen_admin, cfg->listen_https) == 0) ||
                            (cfg->listen_http && strcmp(cfg->listen_admin, cfg->listen_http) == 0)))
    return cfg_fail(c, "listen.admin", "same address as another listener");
  if (cfg->admin_token) {
    for (const char *s = cfg->admin_token; *s; s++) {
      unsigned char ch = (unsigned char)*s;
      if (ch <= ' ' || ch >= 0x7f)
        return cfg_fail(c, "admin.token", "must be printable ASCII without spaces");
    }
  }
  return 0;
}

static int parse_root(pctx *c, json_t *root, ae_config *cfg) {
  int rc;
  if (!json_is_object(root))
    return ae_err_set(c->err, AE_EINVAL, "%s: expected a JSON object at the top level", c->name);
  if ((rc = cfg_check_keys(c, root, "", k_root)))
    return rc;
  if ((rc = parse_listen(c, root, cfg)))
    return rc;
  json_t *o;
  if ((rc = cfg_get_object(c, root, "admin", "", k_admin, &o)))
    return rc;
  if (o && (rc = cfg_opt_str(c, o, "token", "admin", CFG_STR_NULLABLE | CFG_STR_EMPTY_IS_NULL, &cfg->admin_token)))
    return rc;
  unsigned workers = 0;
  if ((rc = cfg_opt_uint(c, root, "workers", "", 0, 256, &workers)))
    return rc;
  cfg->workers = (int)workers;
  if ((rc = cfg_get_object(c, root, "storage", "", k_storage, &o)))
    return rc;
  if (o && (rc = cfg_opt_str(c, o, "path", "storage", 0, &cfg->storage_path)))
    return rc;
  if (o && (rc = ae_storage_config_parse(c->name, o, cfg, c->err)))
    return rc;
  if ((rc = cfg_get_object(c, root, "default_cert", "", k_default_cert, &o)))
    return rc;
  if (o && ((rc = cfg_opt_str(c, o, "cert", "default_cert", 0, &cfg->default_cert)) ||
            (rc = cfg_opt_str(c, o, "key", "default_cert", 0, &cfg->default_key))))
    return rc;
  if ((rc = cfg_parse_acme(c, root, cfg)) || (rc = cfg_parse_on_demand(c, root, cfg)) || (rc = cfg_parse_routes(c, root, cfg)) ||
      (rc = cfg_parse_internal_ca(c, root, cfg)))
    return rc;
  if ((rc = ae_tok_config_parse(c->name, root, cfg, c->err)))
    return rc;
  if ((rc = cfg_opt_str_array(c, root, "trusted_proxies", "", 1, cfg_check_ip, &cfg->trusted_proxies,
                          &cfg->ntrusted_proxies)))
    return rc;
  if ((rc = cfg_get_object(c, root, "proxy", "", k_proxy, &o)))
    return rc;
  if (o) {
    const char *P = "proxy";
    if ((rc = cfg_opt_uint(c, o, "header_timeout_ms", P, 1, DAY_MS, &cfg->proxy.header_timeout_ms)) ||
        (rc = cfg_opt_uint(c, o, "idle_timeout_ms", P, 1, DAY_MS, &cfg->proxy.idle_timeout_ms)) ||
        (rc = cfg_opt_uint(c, o, "connect_timeout_ms", P, 1, DAY_MS, &cfg->proxy.connect_timeout_ms)) ||
        (rc = cfg_opt_uint(c, o, "response_timeout_ms", P, 1, DAY_MS, &cfg->proxy.response_timeout_ms)) ||
        (rc = cfg_opt_uint(c, o, "total_timeout_ms", P, 0, DAY_MS, &cfg->proxy.total_timeout_ms)) ||
        (rc = cfg_opt_uint(c, o, "max_header_bytes", P, 1024, 1048576, &cfg->proxy.max_header_bytes)) ||
        (rc = cfg_opt_uint(c, o, "max_headers", P, 1, 10000, &cfg->proxy.max_headers)) ||
        (rc = cfg_opt_uint(c, o, "max_header_line_bytes", P, 256, 1048576, &cfg->proxy.max_header_line_bytes)) ||
        (rc = cfg_opt_uint(c, o, "max_request_line_bytes", P, 256, 1048576, &cfg->proxy.max_request_line_bytes)) ||
        (rc = cfg_opt_uint(c, o, "pool_idle_max", P, 0, 100000, &cfg->proxy.pool_idle_max)) ||
        (rc = cfg_opt_uint(c, o, "pool_idle_timeout_ms", P, 1, DAY_MS, &cfg->proxy.pool_idle_timeout_ms)) ||
        (rc = cfg_opt_bool(c, o, "http2", P, &cfg->proxy.http2)) ||
        (rc = cfg_opt_uint(c, o, "h2_max_concurrent_streams", P, 1, 1000, &cfg->proxy.h2_max_concurrent_streams)) ||
        (rc = cfg_opt_uint(c, o, "h2_max_requests", P, 1, 100000000, &cfg->proxy.h2_max_requests)))
      return rc;
  }
  if ((rc = cfg_get_object(c, root, "tls", "", k_tls, &o)))
    return rc;
  if (o && ((rc = cfg_opt_uint(c, o, "handshake_timeout_ms", "tls", 1, 600000, &cfg->tls.handshake_timeout_ms)) ||
            (rc = cfg_opt_uint(c, o, "idle_timeout_ms", "tls", 1, DAY_MS, &cfg->tls.idle_timeout_ms)) ||
            (rc = cfg_opt_uint(c, o, "max_connections", "tls", 1, 10000000, &cfg->tls.max_connections))))
    return rc;
  if ((rc = cfg_parse_limits(c, root, cfg)) || (rc = cfg_parse_dns_check(c, root, cfg)) ||
      (rc = cfg_parse_fair_queue(c, root, cfg)))
    return rc;
  if ((rc = cfg_opt_bool(c, root, "redirect_http", "", &cfg->redirect_http)))
    return rc;
  if ((rc = cfg_parse_events(c, root, cfg)))
    return rc;
  if ((rc = cfg_get_object(c, root, "cert_cache", "", k_cert_cache, &o)))
    return rc;
  if (o && ((rc = cfg_opt_uint(c, o, "max_entries", "cert_cache", 0, 100000000, &cfg->cert_cache.max_entries)) ||
            (rc = cfg_opt_uint(c, o, "negative_ttl_ms", "cert_cache", 0, 3600000, &cfg->cert_cache.negative_ttl_ms)) ||
            (rc = cfg_opt_uint(c, o, "negative_max", "cert_cache", 1, 10000000, &cfg->cert_cache.negative_max)) ||
            (rc = cfg_opt_bool(c, o, "preload", "cert_cache", &cfg->cert_cache.preload))))
    return rc;
  json_t *mb = o ? json_object_get(o, "max_bytes") : NULL;
  if (mb) { /* bytes: beyond cfg_opt_uint's 32 bits */
    if (!json_is_integer(mb) || json_integer_value(mb) < 0 || json_integer_value(mb) > (json_int_t)1 << 40)
      return cfg_fail(c, "cert_cache.max_bytes", "must be an integer between 0 and %lld", (long long)1 << 40);
    cfg->cert_cache.max_bytes = (unsigned long long)json_integer_value(mb);
  }
  if ((rc = cfg_get_object(c, root, "log", "", k_log, &o)))
    return rc;
  if (o) {
    static const char *const levels[] = {"debug", "info", "warn", "error", NULL};
    static const char *const formats[] = {"text", "json", NULL};
    int lvl = cfg->log.level;
    if ((rc = cfg_opt_enum(c, o, "level", "log", levels, &lvl)) || (rc = cfg_opt_enum(c, o, "format", "log", formats, &cfg->log.json)) ||
        (rc = cfg_opt_str(c, o, "file", "log", CFG_STR_NULLABLE | CFG_STR_EMPTY_IS_NULL, &cfg->log.file)))
      return rc;
    cfg->log.level = lvl;
  }
  if ((rc = cfg_get_object(c, root, "ocsp", "", k_ocsp, &o)))
    return rc;
  if (o && (rc = cfg_opt_bool(c, o, "enabled", "ocsp", &cfg->ocsp.enabled)))
    return rc;
  return 0;
}

/* 1 when path was modified less than secs seconds ago. */
static int file_younger_than(const char *path, int secs) {
  struct stat st;
  return path && stat(path, &st) == 0 && time(NULL) - st.st_mtime < secs;
}

/* Cross-field and file-system checks, after every field parsed. */
static int validate(pctx *c, ae_config *cfg, int ca_bundle_explicit) {
  int rc;
  char problem[200];
  if ((rc = validate_listen(c, cfg)) || (rc = cfg_validate_on_demand(c, cfg)))
    return rc;
  if (ae_cfg_check_url(cfg->acme.directory, 2) != 0)
    return cfg_fail(c, "acme.directory", "must be an https URL (http only for a loopback host)");
  if (cfg->acme.ca_bundle && ca_bundle_explicit) {
    rc = ae_cfg_check_readable(cfg->acme.ca_bundle, problem, sizeof(problem));
    if (rc)
      return cfg_fail(c, "acme.ca_bundle", "%s: %s", cfg->acme.ca_bundle, problem);
  }
  /* A missing pair is generated at start-up; half a pair or an unreadable file is a mistake. */
  int crc = ae_cfg_check_readable(cfg->default_cert, problem, sizeof(problem));
  if (crc && crc != AE_ENOTFOUND)
    return cfg_fail(c, "default_cert.cert", "%s: %s", cfg->default_cert, problem);
  char kproblem[200];
  int krc = ae_cfg_check_readable(cfg->default_key, kproblem, sizeof(kproblem));
  if (krc && krc != AE_ENOTFOUND)
    return cfg_fail(c, "default_cert.key", "%s: %s", cfg->default_key, kproblem);
  if (crc == 0 && krc == AE_ENOTFOUND)
    return cfg_fail(c, "default_cert.key", "%s: %s (the certificate file exists)", cfg->default_key, kproblem);
  /* The generated pair is written key first (the key is the create-only claim): a key younger
   * than DEFAULT_PAIR_WRITE_S without its certificate is another instance writing the pair now,
   * and start-up waits for it. */
  if (krc == 0 && crc == AE_ENOTFOUND && !file_younger_than(cfg->default_key, DEFAULT_PAIR_WRITE_S))
    return cfg_fail(c, "default_cert.cert", "%s: %s (the key file exists)", cfg->default_cert, problem);
  if (cfg->events.hook) {
    rc = ae_cfg_check_executable(cfg->events.hook, problem, sizeof(problem));
    if (rc)
      return cfg_fail(c, "events.hook", "%s: %s", cfg->events.hook, problem);
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
  ae_storage_config_free(cfg);
  free(cfg->default_cert);
  free(cfg->default_key);
  free(cfg->acme.directory);
  free(cfg->acme.ca_bundle);
  free(cfg->acme.email);
  free(cfg->acme.eab_kid);
  free(cfg->acme.eab_hmac_key);
  cfg_free_strv(cfg->on_demand.allow, cfg->on_demand.nallow);
  free(cfg->on_demand.ask);
  cfg_free_strv(cfg->internal_ca.names, cfg->internal_ca.nnames);
  for (size_t i = 0; i < cfg->nroutes; i++) {
    cfg_free_strv(cfg->routes[i].hosts, cfg->routes[i].nhosts);
    free(cfg->routes[i].upstream);
  }
  ae_tok_config_free(cfg);
  free(cfg->routes);
  cfg_free_strv(cfg->trusted_proxies, cfg->ntrusted_proxies);
  cfg_free_strv(cfg->dns_check.expect, cfg->dns_check.nexpect);
  free(cfg->dns_check.resolver);
  free(cfg->events.hook);
  cfg_free_strv(cfg->events.hook_args, cfg->events.nhook_args);
  cfg_free_strv(cfg->events.hook_types, cfg->events.nhook_types);
  free(cfg->log.file);
  free(cfg);
}
