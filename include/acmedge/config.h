/* JSON configuration (design §4): parsed and validated into an immutable snapshot. */
#ifndef ACMEDGE_CONFIG_H
#define ACMEDGE_CONFIG_H

#include <stddef.h>
#include <sys/socket.h>
#include "acmedge/common.h"

typedef struct ae_route {
  char **hosts;        /* patterns: exact, "*.suffix" (one label) or "*" */
  size_t nhosts;
  char *upstream;      /* "host:port", "[v6]:port" */
  int plain_http;      /* also proxy plain HTTP on port 80 for these hosts */
  struct ae_tok_route_auth *auth; /* auth.cap_tokens (tokens.h); NULL: open route */
} ae_route;

typedef struct ae_config {
  int _refs;                  /* atomic refcount, see ae_config_ref */
  char *path;                 /* the file this snapshot was read from */

  /* listen.* : NULL when disabled (JSON null or "") */
  char *listen_https;
  char *listen_http;
  char *listen_admin;         /* "host:port" or "unix:/path" or "/path" */
  char *admin_token;          /* admin.token; required for a non-loopback admin address */

  int workers;                /* 0 = number of cores */
  char *storage_path;
  int storage_redis;          /* storage.type "redis" (default "fs") */
  struct ae_storage_redis_cfg *redis; /* storage.redis when storage_redis, see storage.h */
  char *default_cert;         /* default_cert.cert */
  char *default_key;          /* default_cert.key */

  struct {
    char *directory;
    char *ca_bundle;          /* may be NULL: system trust store */
    char *email;              /* may be NULL */
    int http01;               /* "http-01" listed in challenges */
    int tlsalpn01;            /* "tls-alpn-01" listed in challenges */
    int prefer_tlsalpn01;     /* tls-alpn-01 listed before http-01 */
    int key_rsa;              /* key_type "rsa-2048" (else ecdsa-p256) */
    char *eab_kid;            /* eab.kid, NULL without EAB */
    char *eab_hmac_key;       /* eab.hmac_key, base64url */
  } acme;

  struct {
    int enabled;
    int first_wait;           /* first_handshake "wait" (else "default") */
    unsigned wait_timeout_ms;
    char **allow;
    size_t nallow;
    char *ask;                /* NULL when unset */
    unsigned ask_timeout_ms;  /* default 5000 */
    unsigned max_concurrent;
    unsigned max_queue;       /* names waiting for a job slot; default 1000 */
    unsigned max_held;        /* handshakes held in "wait" mode; default 1000 */
    int deny_alert;           /* on_demand.deny: "alert" sends a TLS alert instead of the default cert */
    double rate_per_minute;
    unsigned rate_burst;
    unsigned rate_per_3h;
    unsigned backoff_initial_s;
    unsigned backoff_max_s;
    int fallback_internal;    /* fallback_cert "internal": minted leaf while ACME is pending/failing */
  } on_demand;

  struct {                    /* internal_ca.* (docs/internal-ca.md) */
    int enabled;
    char **names;             /* patterns as in on_demand.allow, lowercased */
    size_t nnames;
    unsigned leaf_lifetime_s;         /* default 43200 */
    unsigned intermediate_lifetime_s; /* default 604800 */
    unsigned cache_max;               /* minted fallback leaves kept, default 10000 */
  } internal_ca;
  struct {                    /* cert_cache.*: bounded certificate cache, lazy loading */
    unsigned max_entries;     /* named certificates in memory, 0 = unbounded; default 100000 */
    unsigned long long max_bytes; /* memory those certificates hold, 0 = unbounded (default) */
    unsigned negative_ttl_ms; /* how long a name storage lacks is not looked up again; 10000 */
    unsigned negative_max;    /* slots of that negative cache; 16384 */
    int preload;              /* load every stored certificate at start (blocking); default off */
  } cert_cache;

  ae_route *routes;
  size_t nroutes;
  char **trusted_proxies;     /* peer IPs whose X-Forwarded-For is appended to, not replaced */
  size_t ntrusted_proxies;

  struct {                    /* proxy.* limits and timeouts (ms) */
    unsigned header_timeout_ms;   /* client request head read: 408 */
    unsigned idle_timeout_ms;     /* client keep-alive idle */
    unsigned connect_timeout_ms;  /* upstream connect: 504 */
    unsigned response_timeout_ms; /* upstream response head: 504 */
    unsigned total_timeout_ms;    /* whole exchange, 0 = none */
    unsigned max_header_bytes;    /* request line + headers: 431 */
    unsigned max_headers;         /* header count: 431 */
    unsigned pool_idle_max;       /* idle upstream connections kept per upstream */
    unsigned pool_idle_timeout_ms;
    unsigned max_header_line_bytes;  /* one request header field line: 431 */
    unsigned max_request_line_bytes; /* the request line: 414 */
    int http2;                    /* offer h2 in ALPN on the TLS front */
    unsigned h2_max_concurrent_streams; /* SETTINGS_MAX_CONCURRENT_STREAMS */
    unsigned h2_max_requests;     /* streams one HTTP/2 connection may start, then GOAWAY */
  } proxy;

  struct {
    unsigned handshake_timeout_ms; /* tls.handshake_timeout_ms, ClientHello + handshake */
    unsigned idle_timeout_ms;
    unsigned max_connections;
  } tls;

  struct {                    /* limits.*: per-client limits; all 0 (off) without the section */
    unsigned per_ip_connections;
    unsigned per_ip_handshakes_per_s;
    unsigned per_ip_new_names_per_min;
    unsigned table_entries;   /* fixed size of the per-address table */
  } limits;
  int listen_proxy_protocol;  /* listen.proxy_protocol: a PROXY v2 header precedes TLS */

  struct {                    /* on_demand.dns_check: enabled when the section is present */
    int enabled;
    char **expect;            /* IP literals the name must resolve to (at least one) */
    size_t nexpect;
    char *resolver;           /* "ip:port", NULL = the system's resolvers */
    unsigned timeout_ms;
  } dns_check;

  struct {                    /* on_demand.fair_queue */
    double max_share;         /* share of max_queue one registrable domain may hold (1 = no cap) */
    double rate_share;        /* share of rate.per_3h one registrable domain may use (default max_share) */
    double renewal_reserve;   /* share of rate.per_3h only renewals may use; default 0.1 */
    unsigned unasked_ttl_s;   /* drop a queued new name nobody asked for again for this long; 0 = never */
  } fair_queue;
  unsigned name_cache_max;    /* on_demand.name_cache_max: per-name state kept for names without a cert */

  int redirect_http;

  struct {
    char *hook;               /* program path, NULL when unset */
    char **hook_args;         /* extra argv entries (events.hook may be an array) */
    size_t nhook_args;
    char **hook_types;        /* filter, NULL = all */
    size_t nhook_types;
    unsigned hook_timeout_ms; /* default 10000 */
    unsigned hook_max_concurrent; /* default 4 */
    unsigned buffer;          /* ring size, default 1024 */
  } events;

  struct {
    int level;                /* ae_log_level */
    int json;
    char *file;               /* log file (reopened on SIGUSR1), NULL = stderr */
  } log;

  struct ae_tok_config *tokens; /* cap_tokens + admin.tls (tokens.h); NULL when neither is set */
  struct {
    int enabled;              /* ocsp.enabled: staple OCSP responses (default 1) */
  } ocsp;
} ae_config;

/* Parses and validates the file; on error returns <0 and writes "FILE: field.path: problem"
 * into err. On success *out is owned by the caller (ae_config_free). */
int ae_config_load(const char *path, ae_config **out, ae_err *err);

/* Same as ae_config_load but from a string; name is used in messages. */
int ae_config_parse(const char *name, const char *json, ae_config **out, ae_err *err);

/* Adds a reference to a snapshot (modules holding one across a reload keep it alive). */
ae_config *ae_config_ref(ae_config *cfg);
/* Drops a reference; the last one frees the snapshot. NULL is fine. */
void ae_config_free(ae_config *cfg);

/* Splits "host:port", "[v6]:port" into host (no brackets) and port; 0 on success. */
int ae_parse_hostport(const char *s, char *host, size_t hostlen, int *port);

/* Turns a listen address ("ip:port", "[v6]:port", "localhost:port"; port 0 = any free port, which
 * tests use) into a socket address; AE_EINVAL when it is not an IP literal with a port. */
int ae_listen_sockaddr(const char *s, struct sockaddr_storage *out);

/* The first route whose hosts patterns match host (routes are tried in order), or NULL. Owned by cfg. */
const ae_route *ae_config_route(const ae_config *cfg, const char *host);

/* 1 when the internal CA is enabled and name matches one of internal_ca.names. */
int ae_config_internal_name(const ae_config *cfg, const char *name);

/* Matches a host name against a pattern: exact, "*.suffix" (exactly one extra label) or "*". */
int ae_host_match(const char *pattern, const char *host);

#endif
