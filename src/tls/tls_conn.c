/* One TLS client connection's state machine: dispatch of reads and timers by state, the GnuTLS
 * handshake, and the ae_transport handed to the upper layer once established. The ClientHello
 * peek and certificate choice are in tls_hello.c, the byte plumbing underneath in tls_io.c. */
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include "tls_front_internal.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "acmedge/common.h"
#include "acmedge/limits.h"
#include "acmedge/log.h"
#include "acmedge/metrics.h"
#include "acmedge/tokens.h"

static const gnutls_datum_t k_alpn_http = {(unsigned char *)"http/1.1", 8};
static const gnutls_datum_t k_alpn_acme = {(unsigned char *)"acme-tls/1", 10};
/* h2 first: with server precedence a client offering both gets HTTP/2. */
static const gnutls_datum_t k_alpn_h2_http[2] = {{(unsigned char *)"h2", 2}, {(unsigned char *)"http/1.1", 8}};

static void conn_drive(tls_conn *c);
static void conn_recv(tls_conn *c);

static void conn_reject(tls_conn *c, const char *reason) {
  AE_INFO("tls", "%s: closing %s: %s", c->t.peer_ip, tc_name(c), reason);
  ae_metrics_inc(AE_M_HS_FAILED);
  tc_close_handles(c, 1);
}


void tc_read_cb(uv_stream_t *s, ssize_t n, const uv_buf_t *buf) {
  tls_conn *c = s->data;
  (void)buf;
  if (n == 0 || c->closing_handles)
    return;
  if (n > 0) {
    c->in_len += (size_t)n;
  } else {
    if (n == UV_ENOBUFS && c->state != TC_CLOSING) {
      conn_reject(c, "ClientHello or record buffer overflow");
      return;
    }
    c->eof = 1;
    tc_reading(c, 0);
  }
  switch (c->state) {
  case TC_READ_HELLO:
    if (c->eof && c->in_len == 0) {
      AE_DEBUG("tls", "%s: closed before sending anything", c->t.peer_ip);
      tc_close_handles(c, 0);
      return;
    }
    tc_on_hello(c);
    return;
  case TC_HELD:
    if (c->eof) {
      AE_DEBUG("tls", "%s: %s gave up while held", c->t.peer_ip, tc_name(c));
      tc_close_handles(c, 0);
    }
    /* Extra bytes wait in the buffer for GnuTLS; a full buffer ends in UV_ENOBUFS above. */
    return;
  case TC_HANDSHAKE:
  case TC_ESTABLISHED:
    c->last_activity = uv_now(c->f->loop);
    conn_drive(c);
    return;
  case TC_CLOSING:
    c->in_off = c->in_len = 0;
    /* While the shutdown is pending, its callback closes (it sees eof). */
    if (c->eof && (!c->shut_started || c->shut_done))
      tc_close_handles(c, 0);
    return;
  }
}

/* ---- the handshake ------------------------------------------------------------------------ */

void tc_start_tls(tls_conn *c, ae_cert *cert, int kind) {
  ae_tls_front *f = c->f;
  c->cert = cert;
  c->kind = kind;
  c->state = TC_HANDSHAKE;
  int r = gnutls_init(&c->session, GNUTLS_SERVER | GNUTLS_NONBLOCK | GNUTLS_NO_SIGNAL);
  if (r < 0) {
    c->session = NULL;
    AE_ERROR("tls", "gnutls_init: %s", gnutls_strerror(r));
    tc_close_handles(c, 1);
    return;
  }
  gnutls_session_t s = c->session;
  r = gnutls_priority_set(s, f->prio);
  if (r >= 0)
    r = gnutls_credentials_set(s, GNUTLS_CRD_CERTIFICATE, f->creds);
  if (r >= 0 && !c->challenge)
    r = gnutls_session_ticket_enable_server(s, &f->ticket_key);
  if (r >= 0)
    r = gnutls_alpn_set_protocols(s, c->challenge ? &k_alpn_acme : f->http2 ? k_alpn_h2_http : &k_alpn_http,
                                  !c->challenge && f->http2 ? 2 : 1, GNUTLS_ALPN_SERVER_PRECEDENCE);
  if (r >= 0 && !c->challenge && ae_tok_runtime_wants_client_cert(c->t.sni))
    gnutls_certificate_server_set_request(s, GNUTLS_CERT_REQUEST); /* bound capability tokens */
  if (r < 0) {
    AE_ERROR("tls", "session setup: %s", gnutls_strerror(r));
    tc_close_handles(c, 1);
    return;
  }
  gnutls_session_set_ptr(s, c);
  gnutls_transport_set_ptr(s, c);
  gnutls_transport_set_pull_function(s, tc_pull);
  gnutls_transport_set_pull_timeout_function(s, tc_pull_timeout);
  gnutls_transport_set_vec_push_function(s, tc_vec_push);
  gnutls_handshake_set_timeout(s, 0);
  tc_arm(c, f->handshake_timeout_ms);
  if (!c->eof)
    tc_reading(c, 1);
  conn_drive(c);
}

/* Staple source shared by every front (main loop and workers); set once at start-up. */
static _Atomic(ae_ocsp_cache *) g_staples;

void ae_tls_set_staples(ae_ocsp_cache *cache) { atomic_store(&g_staples, cache); }

/* Hands the certificate's OCSP staple, if the cache has a valid one, to GnuTLS. Only issued
 * certificates are stapled: the default and challenge certificates have no responder. */
static void attach_staple(tls_conn *c, gnutls_ocsp_data_st **ocsp, unsigned int *nocsp) {
  ae_ocsp_cache *cache = atomic_load(&g_staples);
  if (!cache || c->kind != TC_KIND_KNOWN)
    return;
  if (!c->staple)
    c->staple = ae_ocsp_cache_get(cache, c->cert, (int64_t)time(NULL));
  ae_ocsp_count_handshake(c->staple != NULL);
  if (!c->staple)
    return;
  size_t len = 0;
  const unsigned char *der = ae_staple_der(c->staple, &len);
  c->ocsp_data.version = 0;
  c->ocsp_data.response.data = (unsigned char *)(uintptr_t)der;
  c->ocsp_data.response.size = (unsigned)len;
  c->ocsp_data.exptime = (time_t)ae_staple_next_update(c->staple);
  *ocsp = &c->ocsp_data;
  *nocsp = 1;
}

int tc_retrieve_cert(gnutls_session_t s, const struct gnutls_cert_retr_st *info, gnutls_pcert_st **certs,
                     unsigned int *ncerts, gnutls_ocsp_data_st **ocsp, unsigned int *nocsp,
                     gnutls_privkey_t *key, unsigned int *flags) {
  (void)info;
  tls_conn *c = gnutls_session_get_ptr(s);
  *ocsp = NULL;
  *nocsp = 0;
  /* No GNUTLS_CERT_RETR_DEINIT_ALL: the cert stays owned by the connection's reference, which
   * outlives the session. */
  *flags = 0;
  if (!c || !c->cert) {
    *certs = NULL;
    *ncerts = 0;
    *key = NULL;
    return -1;
  }
  *certs = ae_cert_pcerts(c->cert, ncerts);
  *key = ae_cert_privkey(c->cert);
  attach_staple(c, ocsp, nocsp);
  return 0;
}

/* ---- established: the transport ----------------------------------------------------------- */

/* The upper layer runs its own idle timers; the fallback for its connections is twice as
 * long so that those fire first. */
static uint64_t conn_idle_ms(const tls_conn *c) {
  return c->handed_over ? 2 * (uint64_t)c->f->idle_timeout_ms : c->f->idle_timeout_ms;
}

static void conn_hello_read(void *ud, const char *data, ssize_t n) {
  tls_conn *c = ud;
  (void)data;
  if (n > 0 && !c->hello_answered) {
    char body[300], resp[512];
    c->hello_answered = 1;
    int blen = snprintf(body, sizeof(body), "hello %s\n", c->t.sni[0] ? c->t.sni : "(no sni)");
    int rlen = snprintf(resp, sizeof(resp),
                        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n"
                        "Connection: close\r\n\r\n%s",
                        blen, body);
    ae_transport_write(&c->t, resp, (size_t)rlen);
    ae_transport_close(&c->t);
  } else if (n < 0) {
    ae_transport_close(&c->t);
  }
}

/* The client's Finished is the last thing it sends before its request, and we answer nothing to
 * it (TLS 1.3 tickets already left with our flight). A client with Nagle on would then hold its
 * request until our delayed ACK (~40 ms): acknowledge at once instead. */
static void ack_now(tls_conn *c) {
#ifdef TCP_QUICKACK
  uv_os_fd_t fd;
  int one = 1;
  if (uv_fileno((uv_handle_t *)&c->tcp, &fd) == 0)
    (void)setsockopt(fd, IPPROTO_TCP, TCP_QUICKACK, &one, sizeof(one));
#else
  (void)c;
#endif
}

static void conn_established(tls_conn *c) {
  ae_tls_front *f = c->f;
  c->state = TC_ESTABLISHED;
  c->junk = 0;
  c->last_activity = uv_now(f->loop);
  if (c->kind == TC_KIND_CHALLENGE) {
    ae_metrics_inc(AE_M_HS_CHALLENGE);
    AE_INFO("tls", "%s: tls-alpn-01 handshake for %s done", c->t.peer_ip, c->t.sni);
    tc_close_graceful(c);
    return;
  }
  ae_metrics_inc(c->kind == TC_KIND_KNOWN ? AE_M_HS_KNOWN : AE_M_HS_DEFAULT);
  c->t.has_client_cert = ae_tok_peer_cert_hash(c->session, c->t.client_cert_sha256) == 0;
  gnutls_datum_t proto = {NULL, 0};
  c->t.alpn_h2 = gnutls_alpn_get_selected_protocol(c->session, &proto) == 0 && proto.size == 2 &&
                 memcmp(proto.data, "h2", 2) == 0;
  ack_now(c);
  tc_arm(c, conn_idle_ms(c));
  c->want_read = 1;
  if (f->hooks.on_established) {
    c->handed_over = 1;
    f->hooks.on_established(f->hooks.ud, &c->t);
  } else {
    c->t.ud = c;
    c->t.on_read = conn_hello_read;
  }
  if (c->state == TC_ESTABLISHED && c->want_read)
    conn_recv(c);
}

static void conn_handshake(tls_conn *c) {
  size_t before = c->in_off;
  for (;;) {
    int r = gnutls_handshake(c->session);
    if (r == 0) {
      conn_established(c);
      return;
    }
    if (r == GNUTLS_E_AGAIN || r == GNUTLS_E_INTERRUPTED) {
      /* GnuTLS also says AGAIN after a handshake message fragment; go on while bytes remain and
       * the last call consumed some. */
      if (c->in_off < c->in_len && c->in_off != before) {
        before = c->in_off;
        continue;
      }
      if (c->eof && c->in_off == c->in_len)
        break;
      return;
    }
    if (!gnutls_error_is_fatal(r) && ++c->hs_warnings <= TC_MAX_HS_WARNINGS)
      continue;
    /* Debug: clients rejecting the default certificate would otherwise log a line per retry. */
    AE_DEBUG("tls", "%s: handshake for %s failed: %s", c->t.peer_ip, tc_name(c), gnutls_strerror(r));
    /* A peer that closed its side can still read our alert; one that sent a fatal alert gets
     * none back (RFC 8446 §6.2). */
    if (!c->write_failed && r != GNUTLS_E_PULL_ERROR && r != GNUTLS_E_FATAL_ALERT_RECEIVED) {
      if (gnutls_error_is_fatal(r))
        gnutls_alert_send_appropriate(c->session, r);
      else /* too many warnings or rehandshake requests during one handshake */
        gnutls_alert_send(c->session, GNUTLS_AL_FATAL, GNUTLS_A_UNEXPECTED_MESSAGE);
    }
    break;
  }
  c->tls_dead = 1;
  ae_metrics_inc(AE_M_HS_FAILED);
  tc_close_graceful(c);
}

static void conn_deliver_end(tls_conn *c, ssize_t code) {
  if (c->eof_delivered)
    return;
  c->eof_delivered = 1;
  c->want_read = 0;
  tc_reading(c, 0);
  if (c->t.on_read)
    c->t.on_read(c->t.ud, NULL, code);
}

static void conn_recv(tls_conn *c) {
  size_t before = c->in_off;
  c->in_recv = 1;
  while (c->state == TC_ESTABLISHED && c->want_read && !c->tls_dead) {
    gnutls_packet_t pkt = NULL;
    ssize_t r = gnutls_record_recv_packet(c->session, &pkt);
    if (r > 0) {
      gnutls_datum_t d;
      gnutls_packet_get(pkt, &d, NULL);
      c->junk = 0;
      c->last_activity = uv_now(c->f->loop);
      if (c->t.on_read)
        c->t.on_read(c->t.ud, (const char *)d.data, (ssize_t)d.size);
      gnutls_packet_deinit(pkt);
      continue;
    }
    if (pkt)
      gnutls_packet_deinit(pkt);
    if (r == 0) {
      conn_deliver_end(c, UV_EOF);
      break;
    }
    if (r == GNUTLS_E_AGAIN) {
      if (c->in_off < c->in_len && c->in_off != before) {
        before = c->in_off;
        continue;
      }
      if (c->eof && c->in_off == c->in_len)
        conn_deliver_end(c, UV_EOF);
      break;
    }
    if (r == GNUTLS_E_INTERRUPTED || r == GNUTLS_E_WARNING_ALERT_RECEIVED)
      continue;
    if (r == GNUTLS_E_REHANDSHAKE) {
      /* A client-initiated renegotiation (TLS 1.2): refuse it with the warning RFC 5246 §7.2.2
       * defines, then close in order (close_notify). Reading on would leave GnuTLS holding the
       * client's second ClientHello, and no client goes on after a refused renegotiation. */
      AE_INFO("tls", "%s: %s: renegotiation refused, closing", c->t.peer_ip, tc_name(c));
      gnutls_alert_send(c->session, GNUTLS_AL_WARNING, GNUTLS_A_NO_RENEGOTIATION);
      tc_close_graceful(c);
      conn_deliver_end(c, UV_EPROTO);
      if (!c->closing_handles)
        tc_reading(c, 1); /* linger: wait for the peer's FIN */
      break;
    } else if (r == GNUTLS_E_PREMATURE_TERMINATION) {
      conn_deliver_end(c, UV_EOF);
      break;
    } else if (!c->tls_dead) {
      AE_DEBUG("tls", "%s: %s: record error: %s", c->t.peer_ip, tc_name(c), gnutls_strerror(r));
      if (!c->write_failed && r != GNUTLS_E_FATAL_ALERT_RECEIVED)
        gnutls_alert_send_appropriate(c->session, (int)r);
    } else if (!c->write_failed) {
      /* tc_pull cut off a flood of records without data. */
      gnutls_alert_send(c->session, GNUTLS_AL_FATAL, GNUTLS_A_UNEXPECTED_MESSAGE);
    }
    c->tls_dead = 1;
    /* The alert leaves and our FIN follows before the upper layer hears of the end, so that
     * its close (or abort) cannot turn the alert into a reset. */
    tc_close_graceful(c);
    conn_deliver_end(c, UV_EPROTO);
    if (!c->closing_handles)
      tc_reading(c, 1); /* linger: wait for the peer's FIN */
    break;
  }
  c->in_recv = 0;
  if (c->state != TC_ESTABLISHED)
    return;
  if (c->in && c->in_off == c->in_len) {
    free(c->in);
    c->in = NULL;
    c->in_off = c->in_len = 0;
  }
  tc_reading(c, c->want_read && !c->eof_delivered);
}

static void conn_drive(tls_conn *c) {
  if (c->state == TC_HANDSHAKE)
    conn_handshake(c);
  else if (c->state == TC_ESTABLISHED) {
    if (c->want_read)
      conn_recv(c);
    else if (c->eof && !c->eof_delivered)
      tc_reading(c, 0);
  }
}

static int tls_t_write(ae_transport *t, const char *data, size_t len) {
  tls_conn *c = (tls_conn *)t;
  if (c->state != TC_ESTABLISHED || c->tls_dead || c->write_failed)
    return AE_ECANCELED;
  size_t off = 0;
  while (off < len) {
    ssize_t r = gnutls_record_send(c->session, data + off, len - off);
    if (r == GNUTLS_E_INTERRUPTED)
      continue;
    if (r < 0) {
      AE_DEBUG("tls", "%s: send failed: %s", c->t.peer_ip, gnutls_strerror((int)r));
      c->tls_dead = 1;
      tc_close_handles(c, 1);
      return AE_EIO;
    }
    off += (size_t)r;
  }
  return 0;
}

static size_t tls_t_queued(ae_transport *t) {
  tls_conn *c = (tls_conn *)t;
  return uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp) + c->olen;
}

static void tls_t_read_stop(ae_transport *t) {
  tls_conn *c = (tls_conn *)t;
  c->want_read = 0;
  if (!c->in_recv)
    tc_reading(c, 0);
}

static void tls_t_read_start(ae_transport *t) {
  tls_conn *c = (tls_conn *)t;
  if (c->want_read || c->state != TC_ESTABLISHED || c->eof_delivered)
    return;
  c->want_read = 1;
  if (c->in_recv)
    return;
  /* Bytes may already be buffered: deliver them from the loop, not from inside the caller. */
  if ((c->in && c->in_len > c->in_off) || gnutls_record_check_pending(c->session) > 0 || c->eof) {
    c->drive_pending = 1;
    tc_arm(c, 0);
    return;
  }
  tc_reading(c, 1);
}

static void tls_t_close(ae_transport *t) {
  tc_close_graceful((tls_conn *)t);
}

static void tls_t_abort(ae_transport *t) {
  tc_close_handles((tls_conn *)t, 1);
}

static const ae_transport_ops tls_ops = {
  .write = tls_t_write,
  .write_queue_size = tls_t_queued,
  .read_stop = tls_t_read_stop,
  .read_start = tls_t_read_start,
  .close = tls_t_close,
  .abort = tls_t_abort,
};

void tc_timer_cb(uv_timer_t *t) {
  tls_conn *c = t->data;
  ae_tls_front *f = c->f;
  switch (c->state) {
  case TC_READ_HELLO:
    conn_reject(c, "ClientHello timeout");
    return;
  case TC_HANDSHAKE:
    conn_reject(c, "handshake timeout");
    return;
  case TC_HELD:
    AE_DEBUG("tls", "%s: hold for %s timed out", c->t.peer_ip, c->t.sni);
    ae_tls_conn_resume(c);
    return;
  case TC_ESTABLISHED: {
    if (c->drive_pending) {
      c->drive_pending = 0;
      conn_recv(c);
      if (c->state != TC_ESTABLISHED)
        return;
    }
    uint64_t now = uv_now(f->loop), idle = conn_idle_ms(c);
    uint64_t quiet = now - c->last_activity;
    if (quiet >= idle && c->nwrites == 0) {
      AE_DEBUG("tls", "%s: %s idle, closing", c->t.peer_ip, tc_name(c));
      if (c->handed_over)
        tc_close_handles(c, 1);
      else
        tc_close_graceful(c);
      return;
    }
    tc_arm(c, quiet >= idle ? idle : idle - quiet);
    return;
  }
  case TC_CLOSING:
    tc_close_handles(c, 1);
    return;
  }
}

/* ---- accepting ---------------------------------------------------------------------------- */

static void conn_reject_closed(uv_handle_t *h) {
  free(h->data);
}

void ae_tls_conn_accept(ae_tls_front *f) {
  tls_conn *c = ae_calloc(1, sizeof(*c));
  uv_tcp_init(f->loop, &c->tcp);
  c->tcp.data = c;
  if (uv_accept((uv_stream_t *)&f->listener, (uv_stream_t *)&c->tcp) != 0) {
    uv_close((uv_handle_t *)&c->tcp, conn_reject_closed);
    return;
  }
  if (f->closing || (f->max_connections && f->nconn >= f->max_connections)) {
    AE_DEBUG("tls", "connection refused: %u open (limit %u)", f->nconn, f->max_connections);
    if (uv_tcp_close_reset(&c->tcp, conn_reject_closed) != 0)
      uv_close((uv_handle_t *)&c->tcp, conn_reject_closed);
    return;
  }
  if (ae_limits_accept(&c->tcp, f->proxy_protocol, &c->limit_ticket) != 0) {
    if (uv_tcp_close_reset(&c->tcp, conn_reject_closed) != 0)
      uv_close((uv_handle_t *)&c->tcp, conn_reject_closed);
    return;
  }
  c->f = f;
  c->tcp.data = c;
  uv_timer_init(f->loop, &c->timer);
  c->timer.data = c;
  c->state = TC_READ_HELLO;
  c->t.ops = &tls_ops;
  c->t.loop = f->loop;
  c->t.is_tls = 1;
  c->t.local_port = f->port;
  uv_tcp_nodelay(&c->tcp, 1);
  int len = sizeof(c->t.peer);
  if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&c->t.peer, &len) == 0)
    uv_ip_name((struct sockaddr *)&c->t.peer, c->t.peer_ip, sizeof(c->t.peer_ip));
  c->next = f->conns;
  if (f->conns)
    f->conns->prev = c;
  f->conns = c;
  f->nconn++;
  ae_metrics_add(AE_M_CONN_OPEN, 1);
  tc_arm(c, f->handshake_timeout_ms);
  tc_reading(c, 1);
}
