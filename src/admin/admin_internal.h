/* Private to admin.c (auth, routing, lifecycle), admin_conn.c (connections, parsing, writing),
 * admin_listen.c (listening sockets), admin_api.c (JSON/text endpoints) and admin_sse.c (the /v1/events stream). */
#ifndef ACMEDGE_ADMIN_INTERNAL_H
#define ACMEDGE_ADMIN_INTERNAL_H

#include "acmedge/admin.h"

#include <gnutls/gnutls.h>
#include <llhttp.h>
#include <nettle/sha2.h>
#include <stdint.h>

#define ADM_MAX_URL 4096
#define ADM_MAX_HVAL 8192
#define ADM_READ_BUF 65536

typedef struct adm_conn adm_conn;
typedef struct adm_tls adm_tls;

struct ae_admin {
  uv_loop_t *loop;
  ae_events *ev;
  ae_admin_hooks hooks;

  union {
    uv_tcp_t tcp;
    uv_pipe_t pipe;
  } listener;
  int listening;      /* listener handle initialised and not yet closed */
  int is_unix;
  int loopback;       /* TCP listener on a loopback address */
  int port;
  char *listen_addr;  /* as configured, to notice changes on reload */
  char *unix_path;    /* socket file we created, unlinked at close */

  char *token;        /* NULL: no authentication */
  uint8_t token_hash[SHA256_DIGEST_SIZE];

  uv_timer_t heartbeat;
  int heartbeat_open;
  unsigned heartbeat_ms;
  size_t sse_queue_limit;

  adm_conn *conns;   /* open connections */
  unsigned nconns;
  unsigned nalive;   /* connections whose memory is not yet freed (closing ones included) */

  int closing;
  void (*close_cb)(void *ud);
  void *close_ud;
  int close_cb_done;

  char rbuf[ADM_READ_BUF];
  int rbuf_busy;

  adm_tls *tls;        /* admin.tls: HTTPS listener (admin_tls.c); NULL for plain HTTP */
  char tbuf[16384];    /* decrypted bytes of one record, consumed before the next */
};

struct adm_conn {
  ae_admin *a;
  union {
    uv_tcp_t tcp;
    uv_pipe_t pipe;
  } io;
  uv_timer_t timer;
  int open_handles;
  int closing;
  int close_after_write;
  unsigned writes_pending;
  adm_conn *prev, *next;

  llhttp_t parser;
  /* current request */
  int in_request;
  char url[ADM_MAX_URL + 1];
  size_t url_len;
  char hname[32];
  size_t hname_len;
  int hname_long;
  char hval[ADM_MAX_HVAL + 1];
  size_t hval_len;
  int hval_long;
  size_t header_bytes;
  char *h_auth, *h_last_event_id, *h_origin, *h_host, *h_expect;
  char *body;
  size_t body_len, body_cap;
  int fail_status;     /* set by a parser callback that refuses the request */
  const char *fail_msg;

  struct ae_admin_reply *pending; /* deferred answer in progress (revoke) */

  /* SSE */
  int sse;
  ae_events_sub *sub;
  uint64_t last_sent;
  int lagging;
  int lag_ticks;

  /* TLS (admin_tls.c) */
  gnutls_session_t tls;  /* NULL on a plain listener */
  char *tin;             /* received, not yet decrypted bytes */
  size_t tin_len, tin_off, tin_cap;
  int tls_ready, tls_eof, tls_seen_bytes, tls_bye_sent;
  int has_client_cert;   /* client_cert_sha256 holds the verified client certificate's hash */
  uint8_t client_cert_sha256[32];
};

/* A deferred answer (ae_admin_reply_send); c is NULL once the connection is gone. */
struct ae_admin_reply {
  adm_conn *c;
};

/* admin.c */

/* Authenticates, checks Origin/Host and dispatches one complete request to its endpoint. */
void adm_handle_request(adm_conn *c);

/* admin_conn.c */

/* Fills the shared llhttp settings once (callbacks of the request parser). */
void adm_init_settings(void);
/* Runs the close callback once the admin is closing and no listener, heartbeat or connection is left. */
void adm_maybe_done(ae_admin *a);
/* Connection timer callback: answers 408 to a request not received in time, closes idle ones. */
void adm_on_conn_timer(uv_timer_t *t);
/* Queues a copy of data (encrypted on a TLS connection); returns 0 or a negative error (the
 * connection is then closed). */
int ae_adm_conn_write(adm_conn *c, const char *data, size_t len);
/* Queues a copy of data on the socket as is; 0 or a negative uv error (the connection is then closed). */
int ae_adm_conn_write_raw(adm_conn *c, const char *data, size_t len);
/* Hands received request bytes (decrypted on TLS) to the HTTP parser. */
void ae_adm_conn_feed(adm_conn *c, const char *data, size_t n);
/* The peer finished sending: answers what is pending, then closes. */
void ae_adm_conn_eof(adm_conn *c);
/* Unlinks the connection and closes its handles; its memory goes in the last close callback. */
void ae_adm_conn_close(adm_conn *c);
/* Sends a complete response; extra_headers are full "Name: value\r\n" lines or NULL. */
void ae_adm_respond(adm_conn *c, int status, const char *ctype, const char *body, size_t blen,
                    const char *extra_headers);
/* Sends j as a JSON response, taking the reference (NULL answers 500). */
void ae_adm_respond_json(adm_conn *c, int status, json_t *j, const char *extra_headers);
/* Sends {"error": formatted message}. */
void ae_adm_respond_error(adm_conn *c, int status, const char *extra_headers, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Listener callback: accepts one connection and starts reading requests from it. */
void ae_adm_on_connection(uv_stream_t *server, int status);

/* admin_listen.c */

/* Binds and listens on addr ("host:port", "[v6]:port", "unix:/path" or "/path"). On failure the
 * listener handle may be initialised (a->listening); the caller closes it. */
int ae_adm_listen(ae_admin *a, const char *addr, ae_err *err);

/* admin_tls.c */

struct ae_tok_config;
/* Loads admin.tls (certificate, key, client_ca) from tc; *out stays NULL when admin.tls is unset.
 * Caller owns *out (ae_adm_tls_free). */
int ae_adm_tls_new(const struct ae_tok_config *tc, adm_tls **out, ae_err *err);
/* Frees the listener's TLS state (NULL is fine). */
void ae_adm_tls_free(adm_tls *t);
/* Creates the connection's server session (client certificate requested); 0 or AE_ERR. */
int ae_adm_tls_conn_start(adm_conn *c);
/* Consumes bytes from the socket (eof: the peer closed): handshake, then decrypted request bytes
 * to ae_adm_conn_feed. A plain HTTP request is answered with 400 and closed. */
void ae_adm_tls_on_data(adm_conn *c, const char *data, size_t n, int eof);
/* Encrypts and queues data; 0, or AE_EIO with the connection closed. */
int ae_adm_tls_send(adm_conn *c, const char *data, size_t len);
/* Queues close_notify once; 1 when a write was queued (close when it completes), else 0. */
int ae_adm_tls_bye(adm_conn *c);
/* Frees the connection's session and buffer. */
void ae_adm_tls_conn_free(adm_conn *c);

/* admin_api.c */

/* GET /healthz. */
void ae_adm_api_healthz(adm_conn *c);
/* GET /v1/pki/root: the internal CA root PEM (404 when the internal CA is off). */
void ae_adm_api_pki_root(adm_conn *c);
/* GET /metrics: process metrics followed by the hook's per-domain series. */
void ae_adm_api_metrics(adm_conn *c);
/* GET /v1/domains. */
void ae_adm_api_domains_list(adm_conn *c, const char *query);
/* POST /v1/domains with body {"domain": name}. */
void ae_adm_api_domains_post(adm_conn *c);
/* DELETE /v1/domains/<raw>, raw still percent-encoded. */
void ae_adm_api_domains_delete(adm_conn *c, const char *raw);
/* POST /v1/domains/{name}/renew: starts a renewal now and answers 202 (raw still percent-encoded). */
void ae_adm_api_domains_renew(adm_conn *c, const char *raw);
/* POST /v1/domains/{name}/revoke {"reason": N}: answered later through an ae_admin_reply. */
void ae_adm_api_domains_revoke(adm_conn *c, const char *raw);

/* admin_tokens.c */

/* Authenticates and authorises one request (static token or capability token, group ->
 * permission); answers 401/403 itself and returns 0, or returns 1 to proceed. static_ok: the
 * static admin.token check passed (trivially when none is configured). */
int ae_adm_authorize(adm_conn *c, int method, int static_ok);
/* POST /v1/tokens/revoke (revoke 1) or /v1/tokens/unrevoke (0): {"jti"} or {"iss","sub"}. */
void ae_adm_api_tokens_revoke(adm_conn *c, int revoke);
/* GET /v1/tokens/keys: the keyring as [{"iss","key"}]. */
void ae_adm_api_tokens_keys(adm_conn *c);
/* Dispatches /v1/tokens/<rest>. */
void ae_adm_route_tokens(adm_conn *c, int method, const char *rest);
/* admin_ui.c */

/* GET /ui, /ui/<file>: the embedded web console (public; its data calls are authenticated). */
void ae_adm_ui_serve(adm_conn *c, int method, const char *path);

/* admin_sse.c */

/* Sets the SSE defaults (heartbeat interval, honouring $ACMEDGE_ADMIN_HEARTBEAT_MS; queue limit). */
void ae_adm_sse_defaults(ae_admin *a);
/* GET /v1/events: answers the stream head, subscribes and replays from Last-Event-ID or ?since=. */
void ae_adm_sse_start(adm_conn *c, const char *query);
/* Resumes a lagging stream from the ring once its write queue has drained. */
void ae_adm_sse_catch_up(adm_conn *c);
/* Heartbeat timer callback: pings every stream and drops the ones that stopped reading. */
void ae_adm_sse_on_heartbeat(uv_timer_t *t);

#endif
