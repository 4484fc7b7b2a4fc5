/* Private state shared by the TLS listener (tls_front.c) and the per-connection state machine
 * (tls_hello.c, tls_conn.c, tls_io.c). Not a public interface. */
#ifndef ACMEDGE_TLS_FRONT_INTERNAL_H
#define ACMEDGE_TLS_FRONT_INTERNAL_H

#include <gnutls/abstract.h>
#include <gnutls/gnutls.h>
#include <stdint.h>
#include <uv.h>

#include "acmedge/clienthello.h"
#include "acmedge/ocsp.h"
#include "acmedge/tls_front.h"

/* Read buffer: one full TLS record (2^14 + 256 + 5) with room to spare. */
#define TC_IN_CAP (16384 + 2048)
/* While the ClientHello is peeked the buffer grows up to its cap plus the rest of the read that
 * completed it; GnuTLS then pulls the same bytes. */
#define TC_HELLO_CAP (AE_CH_MAX_BYTES + 2048)
/* Records without application data tolerated in a row (empty records, warning alerts). */
#define TC_MAX_JUNK 32
/* Non-fatal events tolerated during one handshake. */
#define TC_MAX_HS_WARNINGS 8
/* Writes up to this size are gathered per connection and sent once per loop iteration. */
#define TC_OBUF_CAP 8192
/* After close(): time to flush queued bytes, then to wait for the peer's FIN. */
#define TC_FLUSH_MS 30000
#define TC_LINGER_MS 2000

/* Connection states, in the order a connection normally walks through them. */
typedef enum {
  TC_READ_HELLO = 0, /* buffering and peeking the ClientHello */
  TC_HELD,           /* no certificate yet; waiting for ae_tls_front_wake or the wait timeout */
  TC_HANDSHAKE,      /* GnuTLS handshake running on the buffered bytes */
  TC_ESTABLISHED,    /* records flow; the upper layer (or the built-in responder) owns the data */
  TC_CLOSING         /* close_notify / FIN sent or handles closing; nothing is delivered upward */
} tc_state;

typedef struct tls_conn tls_conn;

struct tls_conn {
  ae_transport t;          /* public view handed to on_established; first member */
  ae_tls_front *f;
  tls_conn *prev, *next;   /* all connections of the front */
  tls_conn *hprev, *hnext; /* held connections of the front */
  uv_tcp_t tcp;
  uv_timer_t timer;        /* handshake, hold, idle, linger timeouts and deferred reads */
  uv_shutdown_t shutdown_req;
  tc_state state;
  int handles_open;
  gnutls_session_t session;
  ae_cert *cert;           /* reference held for the connection's lifetime; served by
                              tc_retrieve_cert */
  int kind;                /* metric counted when the handshake succeeds */
  ae_staple *staple;       /* OCSP staple handed to GnuTLS (reference), or NULL */
  gnutls_ocsp_data_st ocsp_data; /* points into staple; GnuTLS reads it during the handshake */

  char *obuf;              /* small writes gathered until the loop polls again */
  size_t olen;
  tls_conn *dnext;         /* front's list of connections with gathered output */
  uint8_t *in;             /* received, not yet consumed by GnuTLS (or the peek) */
  size_t in_off, in_len, in_cap;
  size_t hello_need;       /* the peek's verdict cannot change before in_len reaches this */

  uint64_t last_activity;  /* uv_now of the last byte moved in either direction */
  unsigned nwrites;        /* uv_write requests in flight */
  unsigned junk;           /* records since the last application data (empty records, alerts) */
  unsigned hs_warnings;    /* non-fatal events during the handshake */
  uint8_t rec_hdr[5];      /* record framing seen through the pull function */
  unsigned rec_hdr_have;
  size_t rec_body_left;
  uint32_t limit_ticket;   /* per-client limits slot, released when the connection ends */

  unsigned eof : 1;            /* the peer sent FIN or the socket failed */
  unsigned uv_reading : 1;
  unsigned want_read : 1;      /* the upper layer wants on_read */
  unsigned in_recv : 1;        /* inside the record receive loop */
  unsigned drive_pending : 1;  /* buffered data must be delivered from the timer */
  unsigned eof_delivered : 1;
  unsigned handed_over : 1;    /* on_established took the transport */
  unsigned challenge : 1;      /* tls-alpn-01 validation handshake */
  unsigned alpn_held : 1;      /* held for a tls-alpn-01 answer looked up elsewhere (TC_HELD) */
  unsigned tls_dead : 1;       /* the session failed: no more records, no close_notify */
  unsigned write_failed : 1;
  unsigned shut_started : 1;
  unsigned shut_done : 1;
  unsigned closing_handles : 1;
  unsigned hello_answered : 1;
  unsigned dirty : 1;          /* on the front's flush list */
  unsigned pp_done : 1;        /* PROXY protocol header consumed */
};

struct ae_tls_front {
  uv_loop_t *loop;
  ae_certstore *cs;
  ae_tls_front_hooks hooks;
  uv_tcp_t listener;
  uv_timer_t close_timer;
  uv_prepare_t flusher;         /* sends gathered output before the loop polls */
  tls_conn *dirty;
  int port;
  gnutls_priority_t prio;
  gnutls_certificate_credentials_t creds; /* shared by all sessions; holds no certificate */
  gnutls_datum_t ticket_key;

  /* Limits copied from the config snapshot (0 in the config means the default). */
  unsigned handshake_timeout_ms;
  unsigned idle_timeout_ms;     /* fallback idle limit for established connections */
  unsigned wait_timeout_ms;     /* longest hold */
  unsigned max_held;
  unsigned max_connections;     /* 0 = unlimited */
  int proxy_protocol;           /* listen.proxy_protocol: a PROXY v2 header precedes TLS */
  int http2;                    /* proxy.http2: offer h2 before http/1.1 in ALPN */

  unsigned nconn, nheld;
  tls_conn *conns;
  tls_conn *held;

  int closing;
  int front_handles;            /* listener, close timer and flusher still open */
  void (*close_cb)(void *ud);
  void *close_ud;
};

/* Connection internals shared by tls_hello.c (ClientHello phase), tls_conn.c (state machine) and
 * tls_io.c (byte plumbing). */
/* Which certificate a connection serves (tls_conn.c counts the metric on success). */
enum { TC_KIND_KNOWN = 1, TC_KIND_DEFAULT, TC_KIND_CHALLENGE };
/* Peeks at the buffered bytes (PROXY header, ClientHello) and chooses a certificate, holds or refuses. */
void tc_on_hello(tls_conn *c);
/* Creates the GnuTLS session for cert (borrowed reference kept in c) and starts the handshake. */
void tc_start_tls(tls_conn *c, ae_cert *cert, int kind);
static inline const char *tc_name(const tls_conn *c) { return c->t.sni[0] ? c->t.sni : "-"; }
/* (Re)starts the connection timer; its callback acts on the current state. */
void tc_arm(tls_conn *c, uint64_t ms);
void tc_timer_cb(uv_timer_t *t);
/* Removes c from the front's held list (no-op unless held); c is then in TC_READ_HELLO. */
void tc_unhold(tls_conn *c);
/* Closes both handles (reset = RST when allowed); the connection is freed after both closed. */
void tc_close_handles(tls_conn *c, int reset);
/* close_notify (if established), flush, FIN, short linger for the peer's FIN, then close. */
void tc_close_graceful(tls_conn *c);
/* Writes raw bytes in order (try_write, then one queued copy). 0, or -1 when the socket is gone. */
int tc_send(tls_conn *c, const giovec_t *iov, int iovcnt);
/* GnuTLS transport callbacks over the connection's buffer and socket. */
ssize_t tc_vec_push(gnutls_transport_ptr_t p, const giovec_t *iov, int iovcnt);
ssize_t tc_pull(gnutls_transport_ptr_t p, void *data, size_t len);
int tc_pull_timeout(gnutls_transport_ptr_t p, unsigned int ms);
/* Sends c's gathered output now (before a shutdown or a large write). 0 or -1. */
int tc_flush(tls_conn *c);
/* Prepare callback: flushes every connection with gathered output. */
void tc_flush_all(uv_prepare_t *p);
/* Starts/stops libuv reads into the connection buffer; data goes to tc_read_cb. */
void tc_reading(tls_conn *c, int on);
void tc_read_cb(uv_stream_t *s, ssize_t n, const uv_buf_t *buf);

/* GnuTLS certificate retrieve callback of the front's credentials: serves the chain and key of
 * the connection's cert (the session pointer is the tls_conn). */
int tc_retrieve_cert(gnutls_session_t s, const struct gnutls_cert_retr_st *info, gnutls_pcert_st **certs,
                     unsigned int *ncerts, gnutls_ocsp_data_st **ocsp, unsigned int *nocsp,
                     gnutls_privkey_t *key, unsigned int *flags);

/* Accepts one pending connection from the listener and starts its state machine. */
void ae_tls_conn_accept(ae_tls_front *f);
/* Resumes a held connection with whatever the store holds for its name now (or the default). */
void ae_tls_conn_resume(tls_conn *c);
/* Closes a connection at once (front shutdown deadline). */
void ae_tls_conn_abort(tls_conn *c);
/* Called by a connection after all its handles are closed and it is unlinked and freed. */
void ae_tls_front_conn_gone(ae_tls_front *f);

#endif
