/* The TLS listener: binds the https address, accepts connections into the per-connection state
 * machine (tls_conn.c), wakes held handshakes and drains connections on shutdown. */
#include <errno.h>
#include <pthread.h>
#include "tls_front_internal.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "acmedge/common.h"
#include "acmedge/config.h"
#include "acmedge/log.h"

/* TLS 1.3 and 1.2 only; AEAD suites with AES-GCM ahead of ChaCha20 (AES-NI is far faster here);
 * ECDHE only; X25519 and P-256 first so common clients never need a HelloRetryRequest; no SHA-1
 * signatures; the server's order wins; renegotiation only in its safe form (and the server ends
 * any connection that tries it). */
const char *const AE_TLS_PRIORITY =
  "NONE:+VERS-TLS1.3:+VERS-TLS1.2:"
  "+AES-128-GCM:+AES-256-GCM:+CHACHA20-POLY1305:+AEAD:"
  "+ECDHE-ECDSA:+ECDHE-RSA:"
  "+GROUP-X25519:+GROUP-SECP256R1:+GROUP-SECP384R1:+GROUP-X448:"
  "+SIGN-ECDSA-SECP256R1-SHA256:+SIGN-ECDSA-SECP384R1-SHA384:+SIGN-ECDSA-SECP521R1-SHA512:"
  "+SIGN-EdDSA-Ed25519:+SIGN-RSA-PSS-RSAE-SHA256:+SIGN-RSA-PSS-RSAE-SHA384:"
  "+SIGN-RSA-PSS-RSAE-SHA512:+SIGN-RSA-PSS-SHA256:+SIGN-RSA-PSS-SHA384:+SIGN-RSA-PSS-SHA512:"
  "+SIGN-ECDSA-SHA256:+SIGN-ECDSA-SHA384:+SIGN-ECDSA-SHA512:"
  "+SIGN-RSA-SHA256:+SIGN-RSA-SHA384:+SIGN-RSA-SHA512:"
  "+CTYPE-X509:+COMP-NULL:%SERVER_PRECEDENCE:%SAFE_RENEGOTIATION";

#define FRONT_BACKLOG 4096

static void front_apply_config(ae_tls_front *f, const ae_config *cfg) {
  f->handshake_timeout_ms = cfg->tls.handshake_timeout_ms ? cfg->tls.handshake_timeout_ms : 10000;
  f->idle_timeout_ms = cfg->tls.idle_timeout_ms ? cfg->tls.idle_timeout_ms : 60000;
  f->max_connections = cfg->tls.max_connections;
  f->wait_timeout_ms = cfg->on_demand.wait_timeout_ms ? cfg->on_demand.wait_timeout_ms : 8000;
  f->max_held = cfg->on_demand.max_held ? cfg->on_demand.max_held : 1000;
  f->proxy_protocol = cfg->listen_proxy_protocol;
  f->http2 = cfg->proxy.http2;
}

/* One ticket key for the whole process: a ticket issued on one worker loop resumes on another
 * (the kernel spreads a client's connections across loops). GnuTLS rotates keys derived from it. */
static gnutls_datum_t g_ticket_key;
static int g_ticket_rc;
static pthread_once_t g_ticket_once = PTHREAD_ONCE_INIT;

static void ticket_key_init(void) { g_ticket_rc = gnutls_session_ticket_key_generate(&g_ticket_key); }

static void front_release(ae_tls_front *f) {
  if (f->prio)
    gnutls_priority_deinit(f->prio);
  if (f->creds)
    gnutls_certificate_free_credentials(f->creds);
  free(f);
}

/* Only used when ae_tls_front_new fails after the listener handle exists. */
static void front_failed_closed(uv_handle_t *h) {
  front_release(h->data);
}

static void front_maybe_done(ae_tls_front *f) {
  if (!f->closing || f->front_handles > 0 || f->nconn > 0 || !f->close_cb)
    return;
  void (*cb)(void *) = f->close_cb;
  f->close_cb = NULL;
  cb(f->close_ud);
}

static void front_handle_closed(uv_handle_t *h) {
  ae_tls_front *f = h->data;
  f->front_handles--;
  front_maybe_done(f);
}

/* Closes the front's own timer and flusher once no connection needs them. */
static void front_close_timer(ae_tls_front *f) {
  if (uv_is_closing((uv_handle_t *)&f->close_timer))
    return;
  uv_timer_stop(&f->close_timer);
  uv_close((uv_handle_t *)&f->close_timer, front_handle_closed);
  uv_close((uv_handle_t *)&f->flusher, front_handle_closed);
}

void ae_tls_front_conn_gone(ae_tls_front *f) {
  if (f->closing && f->nconn == 0)
    front_close_timer(f);
  front_maybe_done(f);
}

static void front_on_connection(uv_stream_t *server, int status) {
  ae_tls_front *f = server->data;
  if (status < 0) {
    AE_WARN("tls", "accept failed: %s", uv_strerror(status));
    return;
  }
  /* libuv keeps calling back while accept() succeeds, so the backlog drains in one loop turn. */
  ae_tls_conn_accept(f);
}

int ae_tls_front_new(uv_loop_t *loop, const ae_config *cfg, ae_certstore *cs,
                     const ae_tls_front_hooks *hooks, ae_tls_front **out, ae_err *err) {
  if (!loop || !cfg || !cs || !out)
    return ae_err_set(err, AE_EINVAL, "tls front: missing argument");
  if (!cfg->listen_https || !cfg->listen_https[0])
    return ae_err_set(err, AE_EINVAL, "listen.https: not set");
  struct sockaddr_storage addr;
  if (ae_listen_sockaddr(cfg->listen_https, &addr) != 0)
    return ae_err_set(err, AE_EINVAL, "listen.https: bad address '%s' (expected IP:port or [IPv6]:port)",
                      cfg->listen_https);

  ae_tls_front *f = ae_calloc(1, sizeof(*f));
  f->loop = loop;
  f->cs = cs;
  if (hooks)
    f->hooks = *hooks;
  front_apply_config(f, cfg);

  const char *errpos = NULL;
  int r = gnutls_priority_init(&f->prio, AE_TLS_PRIORITY, &errpos);
  if (r < 0) {
    f->prio = NULL;
    front_release(f);
    return ae_err_set(err, AE_ERR, "tls priority string rejected at '%s': %s", errpos ? errpos : "?",
                      gnutls_strerror(r));
  }
  /* One credentials object per front instead of one per certificate: each carries a trust list
   * and bookkeeping a server never uses; the certificate comes from tc_retrieve_cert. */
  r = gnutls_certificate_allocate_credentials(&f->creds);
  if (r < 0) {
    f->creds = NULL;
    front_release(f);
    return ae_err_set(err, AE_ENOMEM, "tls credentials: %s", gnutls_strerror(r));
  }
  gnutls_certificate_set_retrieve_function3(f->creds, tc_retrieve_cert);
  pthread_once(&g_ticket_once, ticket_key_init);
  if (g_ticket_rc < 0) {
    front_release(f);
    return ae_err_set(err, AE_ERR, "session ticket key: %s", gnutls_strerror(g_ticket_rc));
  }
  f->ticket_key = g_ticket_key;

  /* With worker threads every loop binds its own listener to the same address; the kernel then
   * spreads new connections across them (SO_REUSEPORT). */
  unsigned nworkers = cfg->workers > 0 ? (unsigned)cfg->workers : uv_available_parallelism();
  uv_tcp_init_ex(loop, &f->listener, addr.ss_family);
  f->listener.data = f;
  r = 0;
  if (nworkers > 1) {
    uv_os_fd_t fd;
    int one = 1;
    r = uv_fileno((uv_handle_t *)&f->listener, &fd);
    if (r == 0 && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0)
      r = uv_translate_sys_error(errno);
  }
  if (r == 0)
    r = uv_tcp_bind(&f->listener, (struct sockaddr *)&addr, 0);
  if (r == 0)
    r = uv_listen((uv_stream_t *)&f->listener, FRONT_BACKLOG, front_on_connection);
  if (r != 0) {
    ae_err_set(err, AE_EIO, "listen.https: cannot listen on %s: %s", cfg->listen_https, uv_strerror(r));
    uv_close((uv_handle_t *)&f->listener, front_failed_closed);
    return AE_EIO;
  }
  struct sockaddr_storage bound;
  int len = sizeof(bound);
  if (uv_tcp_getsockname(&f->listener, (struct sockaddr *)&bound, &len) == 0) {
    if (bound.ss_family == AF_INET)
      f->port = ntohs(((struct sockaddr_in *)&bound)->sin_port);
    else
      f->port = ntohs(((struct sockaddr_in6 *)&bound)->sin6_port);
  }
  uv_timer_init(loop, &f->close_timer);
  f->close_timer.data = f;
  uv_prepare_init(loop, &f->flusher);
  f->flusher.data = f;
  f->front_handles = 3;
  AE_INFO("tls", "listening on %s (port %d)", cfg->listen_https, f->port);
  *out = f;
  return 0;
}

void ae_tls_front_set_config(ae_tls_front *f, const ae_config *cfg) {
  if (f && cfg)
    front_apply_config(f, cfg);
}

void ae_tls_front_wake(ae_tls_front *f, const char *name) {
  if (!f || !name)
    return;
  tls_conn *c = f->held;
  while (c) {
    /* Resuming unlinks c; its successor stays valid because frees only happen in callbacks. */
    tls_conn *next = c->hnext;
    if (!c->alpn_held && ae_strcasecmp(c->t.sni, name) == 0)
      ae_tls_conn_resume(c);
    c = next;
  }
}

void ae_tls_front_wake_alpn(ae_tls_front *f, const char *name) {
  if (!f || !name)
    return;
  tls_conn *c = f->held;
  while (c) {
    tls_conn *next = c->hnext;
    if (c->alpn_held && ae_strcasecmp(c->t.sni, name) == 0)
      ae_tls_conn_resume(c);
    c = next;
  }
}

static void front_deadline(uv_timer_t *t) {
  ae_tls_front *f = t->data;
  if (f->nconn > 0)
    AE_INFO("tls", "shutdown deadline: closing %u connection(s)", f->nconn);
  for (tls_conn *c = f->conns; c; c = c->next)
    ae_tls_conn_abort(c);
  front_close_timer(f);
}

void ae_tls_front_close(ae_tls_front *f, unsigned timeout_ms, void (*cb)(void *ud), void *ud) {
  if (!f || f->closing)
    return;
  f->closing = 1;
  f->close_cb = cb;
  f->close_ud = ud;
  uv_close((uv_handle_t *)&f->listener, front_handle_closed);
  /* Held handshakes would outwait the deadline: finish them now with what the store has. */
  for (tls_conn *c = f->held, *next; c; c = next) {
    next = c->hnext;
    ae_tls_conn_resume(c);
  }
  if (f->nconn == 0) {
    front_close_timer(f);
    return;
  }
  uv_timer_start(&f->close_timer, front_deadline, timeout_ms, 0);
}

void ae_tls_front_free(ae_tls_front *f) {
  if (f)
    front_release(f);
}

unsigned ae_tls_front_open_connections(const ae_tls_front *f) {
  return f ? f->nconn : 0;
}

unsigned ae_tls_front_held(const ae_tls_front *f) {
  return f ? f->nheld : 0;
}

int ae_tls_front_port(const ae_tls_front *f) {
  return f ? f->port : 0;
}
