/* Private interfaces shared by the proxy sources: httpmsg*.c (HTTP/1.1 buffers, head
 * scanning, request analysis and head rewriting), upstream.c (upstream connections and keep-alive pools) and proxy*.c
 * (clients, see proxy_client.h). */
#ifndef ACMEDGE_PROXY_INT_H
#define ACMEDGE_PROXY_INT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <uv.h>

#include "acmedge/config.h"
#include "acmedge/proxy.h"

/* ---------- growable byte buffer (httpmsg.c) ---------- */

typedef struct ae_buf {
  char *d;
  size_t len;
  size_t cap;
} ae_buf;

/* Makes room for extra more bytes. */
void ae_buf_reserve(ae_buf *b, size_t extra);
/* Appends n bytes. */
void ae_buf_add(ae_buf *b, const void *p, size_t n);
/* Appends a NUL-terminated string (without the NUL). */
void ae_buf_adds(ae_buf *b, const char *s);
/* Appends v in lower-case hex (chunk sizes). */
void ae_buf_addhex(ae_buf *b, uint64_t v);
/* Appends v in decimal. */
void ae_buf_addu(ae_buf *b, uint64_t v);
/* Appends s as a JSON string literal (quotes included). */
void ae_buf_addjson(ae_buf *b, const char *s, size_t n);
/* Drops the first n bytes. */
void ae_buf_consume(ae_buf *b, size_t n);
/* Empties the buffer; releases its memory when it grew beyond keep bytes. */
void ae_buf_shrink(ae_buf *b, size_t keep);
/* Releases the memory. */
void ae_buf_free(ae_buf *b);

/* ---------- raw head scanner (httpmsg_scan.c) ----------
 * Runs over the bytes of a request or response head before llhttp sees them and rejects what
 * llhttp 8.1 lets through or what must never reach an upstream: obs-fold, bare CR, bare LF, NUL
 * and other controls in field values, whitespace before the colon, and oversize heads. In request
 * mode the request line must be exactly `method SP target SP HTTP/d.d` (RFC 9112 §3). */

enum {
  AE_HS_MORE = 0,     /* head not complete yet; all bytes consumed */
  AE_HS_DONE = 1,     /* *used = bytes up to and including the final CRLF CRLF */
  AE_HS_BAD = -1,     /* malformed: 400 (or 502 for a response) */
  AE_HS_TOOBIG = -2,  /* head longer than max_bytes, or a field line over max_line: 431 */
  AE_HS_TOOMANY = -3, /* more than max_fields header lines: 431 */
  AE_HS_LONGLINE = -4,/* request line over max_rline: 414 */
  AE_HS_VERSION = -5  /* HTTP major version other than 1 (HTTP/2.0, HTTP/3.0): 505 */
};

/* Request head limits. */
typedef struct ae_hlimits {
  uint32_t head_bytes;          /* whole head, request line included */
  uint32_t line_bytes;          /* one field line */
  uint32_t request_line_bytes;  /* the request line */
  uint32_t fields;              /* number of field lines */
} ae_hlimits;

typedef struct ae_hscan {
  uint8_t st;
  uint8_t req;        /* request mode: the request line is checked too */
  uint8_t vpos, major, minor;
  uint8_t opt, star, mlen;
  uint32_t minor_at;  /* value of bytes at the version's minor digit (1-based offset in the head) */
  uint32_t bytes;
  uint32_t line;      /* bytes of the current line, CR/LF excluded */
  uint32_t fields;
  uint32_t max_bytes;
  uint32_t max_fields;
  uint32_t max_line;
  uint32_t max_rline;
  const char *why;    /* short reason for any negative result */
  const char *reason; /* metrics label for any negative result */
} ae_hscan;

/* 1 when c is a token character (RFC 9110 §5.6.2). */
int ae_is_tchar(unsigned char c);
/* Starts scanning a new response head (start line not checked) with the given limits. */
void ae_hscan_reset(ae_hscan *s, uint32_t max_bytes, uint32_t max_fields);
/* Starts scanning a new request head. */
void ae_hscan_reset_req(ae_hscan *s, const ae_hlimits *lim);
/* Feeds n bytes; returns an AE_HS_* code and, for AE_HS_DONE, the bytes that belong to the head. */
int ae_hscan_feed(ae_hscan *s, const char *p, size_t n, size_t *used);

/* ---------- chunked body scanner (httpmsg_chunk.c) ----------
 * Decides, independently of llhttp, where a chunked request body ends (RFC 9112 §7.1): strict
 * chunk-size lines (hex digits, no whitespace, bounded), chunk extensions parsed by their grammar
 * and bounded in total, exactly CRLF after each chunk's data, and a trailer section of well-formed
 * field lines. */

enum {
  AE_CS_MORE = 0,     /* body not complete; all bytes consumed */
  AE_CS_DONE = 1,     /* *used = bytes up to and including the final CRLF of the message */
  AE_CS_BAD = -1,     /* framing error: 400 */
  AE_CS_TOOBIG = -2   /* trailer section over its limit: 431 */
};

#define AE_CHUNK_EXT_MAX 4096u      /* chunk-extension bytes allowed per body */
#define AE_CHUNK_SIZE_DIGITS 64u    /* hex digits allowed in a chunk-size, leading zeros included */

typedef struct ae_cscan {
  uint8_t st;
  uint8_t sig;        /* significant hex digits of the size so far */
  uint8_t digits;     /* all hex digits of the size so far */
  uint64_t size;      /* chunk-size being read */
  uint64_t left;      /* chunk-data bytes still to come */
  uint32_t ext_bytes; /* chunk-extension bytes of the body so far */
  uint32_t ext_max;
  uint32_t trailer_bytes;
  uint32_t trailer_max;
  uint64_t data_bytes;/* chunk-data bytes of the body so far */
  const char *why;
  const char *reason;
  /* Optional sink, called as the body is recognised: a chunk-size line (size 0: the last chunk),
   * chunk data, and the CRLF that ends a chunk's data. Extensions and trailers are not passed on. */
  void *ud;
  void (*on_size)(void *ud, uint64_t size);
  void (*on_data)(void *ud, const char *p, size_t n);
  void (*on_chunk_end)(void *ud);
} ae_cscan;

/* Starts scanning a chunked body; trailer_max bounds the trailer section, ext_max the extensions.
 * The sink fields are cleared: set them after the reset. */
void ae_cscan_reset(ae_cscan *s, uint32_t trailer_max, uint32_t ext_max);
/* Feeds n body bytes; returns an AE_CS_* code and, for AE_CS_DONE, the bytes that belong to it. */
int ae_cscan_feed(ae_cscan *s, const char *p, size_t n, size_t *used);

/* ---------- parsed head (httpmsg.c) ---------- */

typedef struct ae_hfield {
  uint32_t name, nlen, val, vlen;   /* offsets into the message buffer */
} ae_hfield;

typedef struct ae_hmsg {
  ae_buf b;
  ae_hfield *f;
  uint32_t nf, fcap;
  uint32_t url, ulen;     /* request target, or reason phrase of a response */
  uint8_t cur;            /* 0 none, 1 url/status, 2 field name, 3 field value */
} ae_hmsg;

void ae_hmsg_reset(ae_hmsg *m);
void ae_hmsg_free(ae_hmsg *m);
/* llhttp span accumulators. */
void ae_hmsg_on_url(ae_hmsg *m, const char *at, size_t n);
void ae_hmsg_on_field(ae_hmsg *m, const char *at, size_t n);
void ae_hmsg_on_value(ae_hmsg *m, const char *at, size_t n);
/* Pointers into the message (valid until it changes). */
static inline const char *ae_hmsg_name(const ae_hmsg *m, uint32_t i) { return m->b.d + m->f[i].name; }
static inline const char *ae_hmsg_val(const ae_hmsg *m, uint32_t i) { return m->b.d + m->f[i].val; }
/* Index of the first field called name (case-insensitive) at or after from, or -1. */
int ae_hmsg_find(const ae_hmsg *m, const char *name, uint32_t from);
/* 1 when a comma-separated list header (all its instances) contains token (case-insensitive). */
int ae_hmsg_has_token(const ae_hmsg *m, const char *name, const char *token);
/* Field-name helpers shared by the httpmsg*.c files: */
/* 1 when a (alen bytes) equals b (blen bytes) ignoring ASCII case. */
int hmsg_ieq(const char *a, size_t alen, const char *b, size_t blen);
/* 1 when a (alen bytes) equals the NUL-terminated lit ignoring ASCII case. */
int hmsg_ieqs(const char *a, size_t alen, const char *lit);
/* Trims spaces and tabs around the value span *p, *n in place. */
void hmsg_trim(const char **p, size_t *n);
/* Calls fn for each trimmed, non-empty element of a comma-separated list; returns fn's first
 * non-zero result, else 0. */
int hmsg_each_token(const char *v, size_t n, int (*fn)(void *, const char *, size_t), void *ud);

/* What the proxy needs to know about a request head; filled by ae_req_analyze. */
typedef struct ae_reqinfo {
  const char *host;       /* Host field value (trimmed), NULL when absent */
  size_t host_len;
  int chunked;            /* body is chunked (Transfer-Encoding: chunked) */
  int has_cl;
  uint64_t cl;
  int websocket;          /* Upgrade: websocket with Connection: upgrade on a GET */
  const char *target;     /* origin-form target to forward */
  size_t target_len;
  int target_slash;       /* prefix target with "/" (absolute-form with an empty path) */
  const char *reason;     /* metrics label when the request is refused */
} ae_reqinfo;

/* ---------- request analysis (httpmsg_analyze.c) ---------- */

/* Checks a parsed request head (RFC 9112 framing and Host rules, RFC 6455 handshake for an
 * Upgrade: websocket). Returns 0, or an HTTP status (400, 501) with a reason in *why and a metrics
 * label in ri->reason. http_minor/major are the request's version. */
int ae_req_analyze(const ae_hmsg *m, int major, int minor, int method_is_get, ae_reqinfo *ri,
                   const char **why);

/* Lowercases a Host value into out, without port, brackets or trailing dot; 0 when valid. */
int ae_host_normalize(const char *in, size_t n, char *out, size_t outlen);

/* ---------- hop-by-hop fields (httpmsg.c), trusted proxies and head rewriting (httpmsg_heads.c) */

/* 1 when name is hop-by-hop for the proxy (Connection, Keep-Alive, TE, Trailer(s),
 * Transfer-Encoding, Upgrade, Proxy-*), or listed in a Connection header of m. */
int ae_hdr_is_hop(const ae_hmsg *m, const char *name, size_t nlen);

/* 1 when ip equals an entry of list or lies in one given as CIDR ("10.0.0.0/8", "fd00::/8"). */
int ae_ip_in_list(const char *ip, char *const *list, size_t n);

typedef struct ae_fwd {
  const char *method;
  int minor;              /* client's HTTP/1.x minor version */
  const char *client_ip;
  int trusted;            /* append to the client's X-Forwarded-For instead of replacing it */
  int https;
  const char *host;       /* Host to send (the client's Host, or the SNI for HTTP/1.0) */
  size_t host_len;
  int websocket;
  int body;               /* 0 none, 1 content-length, 2 chunked */
  uint64_t cl;
} ae_fwd;

/* Appends the request head for the upstream (HTTP/1.1, hop-by-hop fields removed, forwarding
 * fields set) to out. */
void ae_build_upstream_head(ae_buf *out, const ae_hmsg *req, const ae_reqinfo *ri, const ae_fwd *fw);

enum { AE_FRAME_NONE = 0, AE_FRAME_CL = 1, AE_FRAME_CHUNKED = 2, AE_FRAME_CLOSE = 3 };

/* Appends the response head for the client: status line, end-to-end fields of resp, Via, the
 * framing field and Connection as asked. ws101 keeps Upgrade: websocket / Connection: Upgrade. */
void ae_build_client_head(ae_buf *out, const ae_hmsg *resp, int status, int client_minor, int framing,
                          uint64_t cl, int keep_alive, int ws101);

/* Appends a short proxy-generated response (text/plain body naming the status); returns the
 * body length. */
size_t ae_build_error(ae_buf *out, int status, int keep_alive, int client_minor);

/* Reason phrase for a status the proxy generates. */
const char *ae_status_text(int status);

/* ---------- upstream connections (upstream.c) ---------- */

typedef struct ae_upool ae_upool;
typedef struct ae_uconn ae_uconn;

/* Events of an upstream connection, delivered to its current owner. */
typedef struct ae_uconn_handler {
  /* Connected (status 0) or failed (<0: a uv error code). Only for new connections. */
  void (*on_connect)(void *ud, int status);
  /* Response bytes, or n < 0 for EOF / error (uv code). data is valid only during the call. */
  void (*on_read)(void *ud, const char *data, ssize_t n);
  /* The write queue fell to zero after having been non-empty. */
  void (*on_drain)(void *ud);
  /* A write failed (uv code); the connection is unusable. */
  void (*on_write_error)(void *ud, int status);
} ae_uconn_handler;

/* Shared per-proxy state used by upstream.c. */
typedef struct ae_upstreams {
  uv_loop_t *loop;
  ae_upool *pools;
  uv_timer_t sweep;       /* expires idle pooled connections */
  int sweep_init;
  unsigned idle_total;
  unsigned live;          /* connections whose memory is not yet freed */
  int closing;
  void (*on_empty)(void *ud);   /* live dropped to 0 while closing (sweep timer closed too) */
  void *on_empty_ud;
  unsigned idle_max;
  uint64_t idle_timeout_ms;
  char rbuf[65536];       /* read buffer shared by all upstream reads of this loop */
} ae_upstreams;

/* Initializes the shared state. */
void ae_ups_init(ae_upstreams *u, uv_loop_t *loop);
/* Applies pool limits (pool_idle_max, pool_idle_timeout_ms; 0 = default). */
void ae_ups_set_limits(ae_upstreams *u, unsigned idle_max, unsigned idle_timeout_ms);
/* Closes idle connections and the sweep timer; on_empty runs once nothing is left (possibly
 * immediately). Active connections must be closed by their owners. */
void ae_ups_close(ae_upstreams *u, void (*on_empty)(void *ud), void *ud);
/* Frees the pools (after close completed). */
void ae_ups_free(ae_upstreams *u);

/* The pool for an upstream string ("host:port"), created on first use; NULL when the string is
 * not a valid host:port. */
ae_upool *ae_ups_pool(ae_upstreams *u, const char *upstream);
/* The upstream string of a pool. */
const char *ae_upool_name(const ae_upool *p);

/* Gets a connection for pool: an idle pooled one when fresh is 0 and one exists (*reused = 1,
 * already connected: no on_connect), else a new one (resolve + connect; on_connect follows
 * unless this returns an error, in which case nothing is called). */
int ae_uconn_acquire(ae_upstreams *u, ae_upool *pool, int fresh, const ae_uconn_handler *h, void *ud,
                     ae_uconn **out, int *reused);
/* Queues bytes (copied); before the connection is up they wait in a pending buffer. 0 or <0. */
int ae_uconn_write(ae_uconn *c, const char *data, size_t n);
/* Bytes not yet handed to the kernel. */
size_t ae_uconn_queued(const ae_uconn *c);
void ae_uconn_read_start(ae_uconn *c);
void ae_uconn_read_stop(ae_uconn *c);
/* Gives the connection back: kept idle in its pool when reusable and the pool has room, else
 * closed. The owner gets no more events. */
void ae_uconn_release(ae_uconn *c, int reusable);
/* Closes at once; the owner gets no more events. */
void ae_uconn_abort(ae_uconn *c);
/* 1 once the TCP connection is established. */
int ae_uconn_connected(const ae_uconn *c);

#endif
