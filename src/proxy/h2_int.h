/* Private: the HTTP/2 front of the proxy. h2_conn.c owns one nghttp2 server session per client
 * connection (transport I/O, settings, flood bounds, timers); h2_stream.c runs each stream as one
 * HTTP/1.1 exchange on the upstream keep-alive pool; h2_map.c maps the fields. */
#ifndef ACMEDGE_H2_INT_H
#define ACMEDGE_H2_INT_H

#include <llhttp.h>
#include <nghttp2/nghttp2.h>
#include <stdint.h>

#include "h2_map.h"
#include "proxy_client.h"

/* Stop asking nghttp2 for output once this much waits in the transport, so that its own
 * outbound-ACK flood limit applies instead of our queue growing. */
#define AE_H2_OUT_CAP (32u * 1024u)
/* Frames gathered per transport write: one full TLS record. */
#define AE_H2_RECORD 16384u
#define AE_H2_STREAM_WINDOW 65535
#define AE_H2_CONN_WINDOW (1 << 20)
/* Response bytes buffered per stream before the upstream stops being read. */
#define AE_H2_RESP_CAP (128u * 1024u)
/* Connection-level bounds against abuse (see docs/http2.md). */
#define AE_H2_MAX_EMPTY_FRAMES 100u
/* Resets a connection may cause (RST_STREAM received, and RST_STREAM sent for a client's fault,
 * refused streams included: MadeYouReset): a bucket of max(MCS, AE_H2_RESET_BURST_MIN) tokens
 * refilled at AE_H2_RESET_RATE per second; an empty bucket is GOAWAY ENHANCE_YOUR_CALM. */
#define AE_H2_RESET_BURST_MIN 100u
#define AE_H2_RESET_RATE 10u
/* Drain: the final GOAWAY follows the notice after this (about one round trip on any sane path,
 * so streams the client sent before seeing the notice are still served). */
#define AE_H2_GOAWAY_DELAY_MS 1000u
/* Interim (1xx) responses relayed per stream; more are dropped. */
#define AE_H2_MAX_INTERIM 8u

typedef struct ae_h2conn ae_h2conn;
typedef struct ae_h2stream ae_h2stream;

struct ae_h2stream {
  ae_h2conn *hc;
  ae_h2stream *prev, *next;
  int32_t id;
  ae_h2req rq;
  int started;            /* the request head was handled (upstream or local answer) */
  int req_end;            /* END_STREAM received */
  int body_mode;          /* 0 none, 1 content-length, 2 chunked */
  uint64_t body_rx;       /* request DATA bytes received */
  uint64_t unconsumed;    /* received DATA bytes not yet given back to the flow-control windows */
  ae_config *cfg;
  ae_upool *pool;
  char host[256];
  int method_head;
  ae_uconn *u;
  int u_reused, retried;
  uint64_t t_start, t_up_start, t_connected, t_up_io, t_resp_head;
  ae_uresp ur;            /* response parser; its trail holds a chunked response's trailers */
  int resp_head, resp_done, up_reusable;
  int status;
  int local;              /* status of a response acmedge made itself */
  int submitted;          /* response HEADERS submitted */
  int deferred;           /* the data provider is waiting for bytes */
  int ups_rstop;          /* upstream reading paused: rbody over its cap */
  int logged;
  ae_buf rbody;           /* response body bytes not yet taken by nghttp2 */
  ae_buf uhead;           /* request head sent upstream, kept for a retry */
  ae_buf qtrail;          /* request trailer lines for a chunked upstream body */
  unsigned ninterim;      /* 1xx responses relayed */
  uint64_t bytes_out;
};

struct ae_h2conn {
  ae_proxy *px;
  ae_h2conn *prev, *next;
  ae_transport *t;        /* NULL once the transport reported on_close */
  nghttp2_session *s;
  uv_timer_t timer;
  uint64_t armed;
  int closing;
  int reading;
  int rstop;              /* reading paused: output queue full */
  int in_recv;            /* inside mem_recv: no re-entrant flush */
  int settings_acked;
  int goaway;             /* GOAWAY submitted (shutdown or abuse) */
  int calm;               /* GOAWAY ENHANCE_YOUR_CALM for resets submitted */
  int draining;           /* GOAWAY notice sent (process drain); final GOAWAY due at t_notice + delay */
  uint64_t t_notice;
  ae_h2stream *streams;
  unsigned nstreams;
  unsigned empty_frames;  /* DATA/HEADERS/CONTINUATION without payload nor END_STREAM */
  uint64_t reset_mt;      /* reset bucket, in thousandths of a token */
  uint64_t t_reset;       /* last refill of the bucket */
  unsigned reset_burst;
  uint64_t requests;      /* streams started (the h2_max_requests bound) */
  unsigned max_requests;
  uint64_t t_hblock;      /* a header block is open (HEADERS without END_HEADERS) since, 0 none */
  uint64_t t_open, t_active, t_drain;
  int dirty;              /* on px->h2dirty */
  ae_h2conn *dnext;
};

/* h2_conn.c */
/* Sends what nghttp2 has queued (bounded by AE_H2_OUT_CAP) and closes the connection when the
 * session is done. */
void ae_h2_flush(ae_h2conn *hc);
/* Flushes the connection at the end of the current loop turn (after the poll phase), so that the
 * responses of several upstreams read in one turn share TLS records. For events of the poll
 * phase only (upstream reads and writes): elsewhere use ae_h2_flush. */
void ae_h2_flush_soon(ae_h2conn *hc);
/* Re-arms the connection timer for its earliest deadline (streams included). */
void ae_h2_timer_update(ae_h2conn *hc);
/* Admits one more stream (the h2_max_requests bound): 0, or -1 when the stream must be refused;
 * reaching the bound sends the final GOAWAY so the client moves to a new connection. */
int ae_h2_admit_stream(ae_h2conn *hc, int32_t id);

/* h2_stream.c */
/* nghttp2 callbacks of the request side. */
int ae_h2s_on_begin_headers(nghttp2_session *s, const nghttp2_frame *f, void *ud);
int ae_h2s_on_header(nghttp2_session *s, const nghttp2_frame *f, nghttp2_rcbuf *name, nghttp2_rcbuf *value,
                     uint8_t flags, void *ud);
int ae_h2s_on_invalid_header(nghttp2_session *s, const nghttp2_frame *f, nghttp2_rcbuf *name,
                             nghttp2_rcbuf *value, uint8_t flags, void *ud);
int ae_h2s_on_frame_recv(nghttp2_session *s, const nghttp2_frame *f, void *ud);
int ae_h2s_on_data_chunk(nghttp2_session *s, uint8_t flags, int32_t id, const uint8_t *data, size_t len, void *ud);
int ae_h2s_on_stream_close(nghttp2_session *s, int32_t id, uint32_t error_code, void *ud);
/* Frees a stream after its nghttp2 stream is gone (or the connection is), aborting any upstream
 * exchange still in progress. */
void ae_h2s_free(ae_h2stream *st);
/* Earliest upstream deadline of a stream (0 none), and applies it when due (504). */
uint64_t ae_h2s_deadline(ae_h2stream *st);
void ae_h2s_timeout(ae_h2stream *st);

#endif
