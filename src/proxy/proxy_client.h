/* Private: the proxy object and its per-client-connection state, shared by proxy.c (client side:
 * lifecycle), proxy_request.c (request parsing and routing), proxy_timer.c (client timeouts),
 * proxy_reply.c (access log and the proxy's own error responses) and proxy_exchange.c (upstream
 * side of one exchange). */
#ifndef ACMEDGE_PROXY_CLIENT_H
#define ACMEDGE_PROXY_CLIENT_H

#include <llhttp.h>
#include <stdint.h>

#include "acmedge/config.h"
#include "acmedge/proxy.h"
#include "acmedge/transport.h"
#include "proxy_int.h"
#include "upstream_response.h"

/* Write-queue level above which the other side stops being read, and the level at which it
 * resumes. */
#define AE_PX_HIGH_WATER (256u * 1024u)
#define AE_PX_LOW_WATER (64u * 1024u)
/* Pipelined request bytes buffered while an exchange is in progress. */
#define AE_PX_IN_CAP (64u * 1024u)
/* Response heads from upstreams may be larger than requests (cookies). */
#define AE_PX_RESP_HEAD_MIN (64u * 1024u)

/* Defaults for proxy.* values left at 0 in the config. */
#define AE_PX_DEF_HEADER_MS 10000u
#define AE_PX_DEF_IDLE_MS 60000u
#define AE_PX_DEF_CONNECT_MS 5000u
#define AE_PX_DEF_RESPONSE_MS 60000u
#define AE_PX_DEF_MAX_HEADER_BYTES 32768u
#define AE_PX_DEF_MAX_HEADERS 100u
#define AE_PX_DEF_MAX_LINE_BYTES 8192u

typedef struct ae_pclient ae_pclient;

struct ae_proxy {
  uv_loop_t *loop;
  ae_config *cfg;
  ae_upstreams ups;
  ae_pclient *clients;
  struct ae_h2conn *h2conns; /* HTTP/2 client connections (h2_conn.c) */
  struct ae_h2conn *h2dirty; /* HTTP/2 connections to flush at the end of this loop turn */
  uv_check_t h2check;        /* runs after the poll phase: flushes h2dirty */
  int h2check_init;
  unsigned nclients;    /* attached (transport not yet closed) */
  unsigned nalive;      /* client objects not yet freed */
  int closing;
  int draining;         /* ae_proxy_drain called */
  int ups_empty;
  void (*close_cb)(void *ud);
  void *close_ud;
};

/* Request-side phase of a client connection. */
enum { P_IDLE = 0, P_HEAD, P_BODY, P_TUNNEL };

/* Why client reading is stopped (bit mask). */
enum { RS_UPQ = 1, RS_INBUF = 2 };

struct ae_pclient {
  ae_proxy *px;
  ae_pclient *prev, *next;
  ae_transport *t;        /* NULL once the transport reported on_close */
  uv_timer_t timer;
  uint64_t armed;         /* deadline the timer is set for, 0 when stopped */
  int closing;

  /* request side */
  llhttp_t rp;
  ae_hscan rscan;
  int rscan_on;
  ae_hmsg req;
  ae_buf in;              /* client bytes not parsed yet (pipelining, paused parser) */
  int phase;
  int rp_paused;          /* parser stopped after a complete request until its exchange ends */
  unsigned rstop;         /* RS_* reasons reading is stopped */
  int reading;            /* read_start issued and not stopped */
  int read_eof;
  int in_drive;
  size_t rscan_fed;       /* bytes of the current head already scanned (held back from llhttp) */
  ae_cscan cscan;         /* the proxy's own framing of a chunked request body */
  int cscan_on;
  uint64_t t_idle;        /* P_IDLE since */
  uint64_t t_client_io;   /* last client read (body inactivity) */

  /* current exchange */
  ae_config *cfg;         /* snapshot the request was routed with */
  int route_idx;
  ae_upool *pool;
  char host[256];
  int minor;
  int method;
  int req_keepalive;
  int req_body;           /* 0 none, 1 content-length, 2 chunked */
  int ws;                 /* WebSocket upgrade requested */
  int local;              /* status of a proxy-generated response, 0 if none */
  int req_done;
  uint64_t t_start;
  uint64_t t_req_done;

  ae_uconn *u;
  int u_reused;
  int retried;
  uint64_t t_up_start;
  uint64_t t_connected;
  uint64_t t_up_io;       /* last upstream read or drain */
  uint64_t t_client_drain;
  ae_buf uhead;           /* request head sent upstream, kept for a retry */
  ae_buf uout;            /* bytes for the upstream, flushed after each parse pass */
  int ups_rstop;          /* upstream reading stopped: client write queue is high */

  ae_uresp ur;            /* response parser */
  int resp_started;       /* a response byte arrived */
  int resp_head;          /* final response head parsed */
  int resp_done;
  int resp_src_chunked;   /* the upstream body is chunked */
  int ws101;
  int status;
  int framing;            /* AE_FRAME_* towards the client */
  int up_reusable;
  int close_after;
  int logged;             /* access log line written for this exchange */
  int up_write_dead;      /* a write to the upstream failed after it started answering */
  uint64_t bytes_out;
  uint64_t t_resp_head;
  ae_buf out;             /* bytes for the client, flushed after each pass */
};

/* The config the current exchange was routed with, else the proxy's current one. */
static inline const ae_config *ae_px_cfg(const ae_pclient *c) { return c->cfg ? c->cfg : c->px->cfg; }

/* Loop time in ms (cached by libuv per iteration). */
static inline uint64_t ae_px_now(const ae_pclient *c) { return uv_now(c->px->loop); }

/* proxy.c */
void ae_px_flush(ae_pclient *c);
void ae_px_close(ae_pclient *c, int abort);
void ae_px_finish(ae_pclient *c);
/* Checks write-queue levels on both sides and stops/starts reading accordingly. */
void ae_px_check_bp(ae_pclient *c);
/* Stops / resumes reading from the client for a reason (RS_*). */
void ae_px_rstop(ae_pclient *c, unsigned why);
void ae_px_rstart(ae_pclient *c, unsigned why);
unsigned ae_px_ms(unsigned v, unsigned def);

/* Calls the close callback once everything the proxy owns is gone. */
void ae_px_check_closed(ae_proxy *p);
/* The doubly linked lists of connections and streams (head: the list's first element; n: an
 * element with prev and next members). */
#define AE_PX_LINK(head, n)   \
  do {                        \
    (n)->prev = NULL;         \
    (n)->next = (head);       \
    if (head)                 \
      (head)->prev = (n);     \
    (head) = (n);             \
  } while (0)
#define AE_PX_UNLINK(head, n)         \
  do {                                \
    if ((n)->prev)                    \
      (n)->prev->next = (n)->next;    \
    else                              \
      (head) = (n)->next;             \
    if ((n)->next)                    \
      (n)->next->prev = (n)->prev;    \
    (n)->prev = (n)->next = NULL;     \
  } while (0)

/* Close steps shared by HTTP/1.1 clients and HTTP/2 connections: */
/* Stops a connection's timer (armed: its deadline, cleared) and closes or aborts its transport. */
void ae_px_conn_shut(ae_transport *t, uv_timer_t *timer, uint64_t *armed, int abort);
/* The transport reported on_close: the connection no longer counts as attached and its timer is
 * closed; freed (which must end with ae_px_conn_freed) releases the object afterwards. */
void ae_px_conn_gone(ae_proxy *p, uv_timer_t *timer, uv_close_cb freed);
/* A connection's memory was released: completes ae_proxy_close when it was the last. */
void ae_px_conn_freed(ae_proxy *p);

/* h2_conn.c */
/* Takes over a transport whose ALPN selected h2 (same contract as ae_proxy_attach). */
void ae_h2_attach(ae_proxy *p, ae_transport *t, const char *initial, size_t len);
/* Aborts every HTTP/2 connection (proxy shutdown). */
void ae_h2_abort_all(ae_proxy *p);
/* Starts the GOAWAY drain on every HTTP/2 connection. */
void ae_h2_drain_all(ae_proxy *p);

/* proxy_request.c */
/* llhttp callbacks for client requests. */
extern const llhttp_settings_t ae_px_req_settings;
/* Runs the framing checks and llhttp over data (from the start of the current request's unparsed
 * bytes); returns the bytes consumed: the rest belongs to a later request, or to a head not
 * complete yet, and waits in c->in. */
size_t ae_px_parse(ae_pclient *c, const char *data, size_t n);

/* proxy_timer.c */
/* Sets the connection's timer for its earliest deadline (or stops it when there is none). */
void ae_px_timer_update(ae_pclient *c);

/* proxy_reply.c */
/* One access log record, shared by HTTP/1.1 exchanges and HTTP/2 streams. */
typedef struct {
  const char *ip, *host, *method, *path; /* path is plen bytes, not NUL-terminated */
  size_t plen;
  int status;
  uint64_t bytes;
  long long upstream_ms;  /* -1: no upstream answer */
  const ae_upool *pool;   /* NULL: answered by the proxy itself */
  uint32_t h2_stream;     /* 0: HTTP/1.1 */
} ae_px_access;
/* Writes one access log line (JSON details plus a one-line summary); copies nothing it keeps. */
void ae_px_access_write(const ae_px_access *a);
/* Writes the access log line of the current exchange (once). */
void ae_px_access_log(ae_pclient *c);
/* Answers a bad request with status and closes the connection. reason is the metrics label of
 * acmedge_http_rejected_total (NULL: not a refusal of the request, e.g. an unroutable body). */
void ae_px_reject(ae_pclient *c, int status, const char *reason, const char *why);
/* A response the proxy makes itself for a well-formed request (421, 502 without route); -1 when
 * the connection had to be closed instead (a request body follows). */
int ae_px_local(ae_pclient *c, int status, const char *why);

/* proxy_auth.c */
/* Applies routes[].auth to the request whose upstream head is in c->uhead: strips client-sent
 * X-Auth-* fields on every route; on a protected route verifies the bearer token and either adds
 * the verified X-Auth-Sub/X-Auth-Groups (returns 0, *answered 0) or answers 401/403 itself
 * (*answered 1; the return value is then what ae_px_local would return). */
int ae_px_auth(ae_pclient *c, const ae_route *route, int *answered);
/* The check behind ae_px_auth for any front: strips acmedge-owned fields from the upstream head
 * uhead, verifies the token of a protected route and adds the verified identity. Returns 0, or
 * 401/403 when the request must be answered with that status instead. */
int ae_px_auth_head(const ae_route *route, const ae_hmsg *req, const ae_transport *t, const char *host,
                    ae_buf *uhead);

/* proxy_exchange.c */
/* What the response parser hands to an HTTP/1.1 client. */
extern const ae_uresp_ops ae_px_resp_ops;
/* Starts forwarding the current request (head already in c->uhead); fresh forces a new
 * connection. Errors become a 502 through ae_px_upstream_error. */
void ae_px_connect(ae_pclient *c, int fresh);
/* Reports an upstream failure: an error response when nothing was sent yet, else an abort. */
void ae_px_upstream_error(ae_pclient *c, int status, const char *why);
/* Starts the byte tunnel after a 101; rest holds bytes already read from the upstream. */
void ae_px_start_tunnel(ae_pclient *c, const char *rest, size_t n);
/* Next deadline of the upstream side (0 = none) and whether it is the connect phase. */
uint64_t ae_px_up_deadline(ae_pclient *c, int *connect);
/* Applies an upstream-side timeout. */
void ae_px_up_timeout(ae_pclient *c, int connect);

#endif
