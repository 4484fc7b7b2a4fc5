/* Per-client limits (connections, handshake rate, new on-demand names) kept in a fixed-size table
 * so that memory does not grow with the number of addresses an attacker controls. IPv4 addresses
 * count one by one, IPv6 addresses by their /64. */
#ifndef ACMEDGE_LIMITS_H
#define ACMEDGE_LIMITS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "acmedge/common.h"

typedef struct ae_config ae_config;
typedef struct ae_limits ae_limits;

/* Limit values; 0 disables that limit. */
typedef struct ae_limits_conf {
  unsigned per_ip_connections;       /* open connections per client */
  unsigned per_ip_handshakes_per_s;  /* new connections per client per second */
  unsigned per_ip_new_names_per_min; /* on-demand names without a certificate per client per minute */
  unsigned table_entries;            /* fixed table size (rounded up to a multiple of 8) */
} ae_limits_conf;

/* Which limit refused a client. */
typedef enum {
  AE_LIMIT_NONE = 0,
  AE_LIMIT_CONNECTIONS,
  AE_LIMIT_HANDSHAKES,
  AE_LIMIT_NEW_NAMES
} ae_limit_kind;

/* Creates a table sized once by conf->table_entries (all memory allocated here). *out is owned by
 * the caller (ae_limits_free). */
int ae_limits_new(const ae_limits_conf *conf, ae_limits **out, ae_err *err);
/* Frees the table. NULL is fine. */
void ae_limits_free(ae_limits *l);
/* Replaces the limit values (not the table size). Thread-safe. */
void ae_limits_set_conf(ae_limits *l, const ae_limits_conf *conf);

/* Admits a new connection from sa at now_ms: 0 and *ticket (pass it to ae_limits_conn_close; 0
 * means untracked), or AE_ELIMIT with *kind naming the limit hit. Thread-safe. */
int ae_limits_conn_open(ae_limits *l, const struct sockaddr *sa, uint64_t now_ms, uint32_t *ticket,
                        ae_limit_kind *kind);
/* Ends a connection admitted with ticket. Thread-safe. */
void ae_limits_conn_close(ae_limits *l, uint32_t ticket);
/* Counts one new on-demand name asked for by sa: 0, or AE_ELIMIT when over the per-minute limit. */
int ae_limits_new_name(ae_limits *l, const struct sockaddr *sa, uint64_t now_ms);
/* Bytes held by the table (constant after ae_limits_new). */
size_t ae_limits_memory(const ae_limits *l);
/* Entries currently in use (at most the table size). */
size_t ae_limits_tracked(ae_limits *l);
/* Short name of a limit for logs and metric labels ("per_ip_connections", ...). */
const char *ae_limit_name(ae_limit_kind kind);

/* ---- the process-wide instance used by the listeners ---- */

/* Fills conf from cfg->limits (all zero when the "limits" section is absent). */
void ae_limits_conf_from_config(const ae_config *cfg, ae_limits_conf *conf);
/* Creates (first call) or updates the process-wide table from cfg. Call on start and reload from
 * the main thread before listeners accept. */
int ae_limits_global_configure(const ae_config *cfg, ae_err *err);
/* Frees the process-wide table (shutdown, after every listener closed). */
void ae_limits_global_free(void);
/* Listener hook for a new connection: 0 and *ticket, or AE_ELIMIT after a capped log line and a
 * metric. Always 0 with ticket 0 when no limits are configured. */
int ae_limits_admit(const struct sockaddr *peer, uint32_t *ticket);
/* Listener hook when a connection admitted by ae_limits_admit ends. */
void ae_limits_release(uint32_t ticket);
/* Listener hook before a name without a certificate triggers on-demand work: 0 or AE_ELIMIT
 * (logged, counted). */
int ae_limits_admit_name(const struct sockaddr *peer, const char *name);

/* Adds a reference to the snapshot given to ae_limits_global_configure (NULL before); the caller
 * drops it with ae_config_free. */
ae_config *ae_limits_global_config(void);
/* Logs a refused client ("IP: closing: what"), capped per second with the limit refusals. */
void ae_limits_log_refusal(const struct sockaddr *peer, const char *what);

/* ---- the calls the TLS listener makes (limits_conn.c) ---- */

typedef struct uv_tcp_s uv_tcp_t;
/* On accept: admits tcp's peer (0 and *ticket) or refuses it (AE_ELIMIT, logged and counted). On a
 * PROXY protocol listener the client is not known yet: 0 with ticket 0, see ae_limits_proxy_header. */
int ae_limits_accept(uv_tcp_t *tcp, int proxy_protocol, uint32_t *ticket);
/* On a PROXY protocol listener, with the first bytes buffered in in[0..*in_len): AE_EAGAIN until
 * the header is complete; then checks that the sender is in trusted_proxies (when set), replaces
 * *peer / peer_ip with the client from the header, removes the header from in, admits the client
 * (ae_limits_admit) and returns 0. AE_EPROTO (bad header, eof, untrusted sender) or AE_ELIMIT:
 * close the connection; the reason is already logged. */
int ae_limits_proxy_header(uint8_t *in, size_t *in_len, int eof, struct sockaddr_storage *peer, char *peer_ip,
                           size_t peer_ip_len, uint32_t *ticket);

#endif
