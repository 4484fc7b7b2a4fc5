/* HTTPS on the admin listener (admin.tls {cert, key, client_ca}): GnuTLS over the connection's libuv
 * stream, with a client certificate requested (never required) and, when client_ca is set, verified
 * against it. The certificate's SHA-256 is what capability tokens with `cnf` are bound to; it is
 * taken from the peer certificate after every handshake, full or resumed, with the same function
 * the proxy front uses for bound tokens on protected routes (ae_tok_peer_cert_hash). */
#include "admin_internal.h"

#include "acmedge/log.h"
#include "acmedge/tls_front.h"
#include "acmedge/tokens.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define ADM_TLS_IN_MAX (64 * 1024) /* undecrypted bytes buffered per connection */

struct adm_tls {
  gnutls_certificate_credentials_t creds;
  gnutls_priority_t prio;
  gnutls_datum_t ticket_key;
  int verify_ca; /* client_ca configured: presented certificates must chain to it */
};

static const char k_plain_reply[] =
    "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 50\r\n"
    "Connection: close\r\n\r\nthis admin port speaks HTTPS only: use https://\r\n\n";

/* The handshake's verdict on a presented client certificate (no certificate is fine: bound tokens
 * then fail with binding_mismatch, everything else works as without TLS client authentication). */
static int verify_client(gnutls_session_t s) {
  unsigned n = 0;
  if (!gnutls_certificate_get_peers(s, &n) || n == 0)
    return 0;
  unsigned status = 0;
  if (gnutls_certificate_verify_peers2(s, &status) < 0 || status != 0)
    return GNUTLS_E_CERTIFICATE_ERROR;
  return 0;
}

int ae_adm_tls_new(const struct ae_tok_config *tc, adm_tls **out, ae_err *err) {
  *out = NULL;
  if (!tc || !tc->admin_tls_cert)
    return 0;
  adm_tls *t = ae_calloc(1, sizeof(*t));
  const char *errpos = NULL;
  int r = gnutls_certificate_allocate_credentials(&t->creds);
  if (r < 0) {
    t->creds = NULL;
    ae_adm_tls_free(t);
    return ae_err_set(err, AE_ENOMEM, "admin.tls: credentials: %s", gnutls_strerror(r));
  }
  r = gnutls_certificate_set_x509_key_file(t->creds, tc->admin_tls_cert, tc->admin_tls_key, GNUTLS_X509_FMT_PEM);
  if (r < 0) {
    ae_adm_tls_free(t);
    return ae_err_set(err, AE_EINVAL, "admin.tls: cert %s / key %s: %s", tc->admin_tls_cert, tc->admin_tls_key,
                      gnutls_strerror(r));
  }
  if (tc->admin_tls_client_ca) {
    r = gnutls_certificate_set_x509_trust_file(t->creds, tc->admin_tls_client_ca, GNUTLS_X509_FMT_PEM);
    if (r <= 0) {
      ae_adm_tls_free(t);
      return ae_err_set(err, AE_EINVAL, "admin.tls: client_ca %s: %s", tc->admin_tls_client_ca,
                        r == 0 ? "no certificate in the file" : gnutls_strerror(r));
    }
    t->verify_ca = 1;
    gnutls_certificate_set_verify_function(t->creds, verify_client);
  }
  r = gnutls_priority_init(&t->prio, AE_TLS_PRIORITY, &errpos);
  if (r < 0) {
    t->prio = NULL;
    ae_adm_tls_free(t);
    return ae_err_set(err, AE_ERR, "admin.tls: priority string: %s", gnutls_strerror(r));
  }
  /* A ticket key of its own: a session resumed here must have been authenticated here, never on
   * the proxy front (which does not check client certificates against client_ca). */
  r = gnutls_session_ticket_key_generate(&t->ticket_key);
  if (r < 0) {
    t->ticket_key.data = NULL;
    ae_adm_tls_free(t);
    return ae_err_set(err, AE_ERR, "admin.tls: session ticket key: %s", gnutls_strerror(r));
  }
  *out = t;
  return 0;
}

void ae_adm_tls_free(adm_tls *t) {
  if (!t)
    return;
  if (t->creds)
    gnutls_certificate_free_credentials(t->creds);
  if (t->prio)
    gnutls_priority_deinit(t->prio);
  if (t->ticket_key.data) {
    memset(t->ticket_key.data, 0, t->ticket_key.size);
    gnutls_free(t->ticket_key.data);
  }
  free(t);
}

/* ---- transport callbacks ------------------------------------------------------------------- */

static ssize_t tls_pull(gnutls_transport_ptr_t p, void *data, size_t len) {
  adm_conn *c = p;
  size_t avail = c->tin_len - c->tin_off;
  if (avail == 0) {
    if (c->tls_eof)
      return 0;
    gnutls_transport_set_errno(c->tls, EAGAIN);
    return -1;
  }
  size_t n = len < avail ? len : avail;
  memcpy(data, c->tin + c->tin_off, n);
  c->tin_off += n;
  return (ssize_t)n;
}

static int tls_pull_timeout(gnutls_transport_ptr_t p, unsigned int ms) {
  adm_conn *c = p;
  (void)ms;
  if (c->tin_len > c->tin_off || c->tls_eof)
    return 1;
  gnutls_transport_set_errno(c->tls, EAGAIN);
  return -1;
}

static ssize_t tls_push(gnutls_transport_ptr_t p, const void *data, size_t len) {
  adm_conn *c = p;
  /* The write is queued with its own copy, so GnuTLS never sees EAGAIN from us. */
  if (ae_adm_conn_write_raw(c, data, len) != 0) {
    gnutls_transport_set_errno(c->tls, EPIPE);
    return -1;
  }
  return (ssize_t)len;
}

int ae_adm_tls_conn_start(adm_conn *c) {
  adm_tls *t = c->a->tls;
  int r = gnutls_init(&c->tls, GNUTLS_SERVER | GNUTLS_NONBLOCK | GNUTLS_NO_SIGNAL);
  if (r < 0) {
    c->tls = NULL;
    AE_ERROR("admin", "gnutls_init: %s", gnutls_strerror(r));
    return AE_ERR;
  }
  r = gnutls_priority_set(c->tls, t->prio);
  if (r >= 0)
    r = gnutls_credentials_set(c->tls, GNUTLS_CRD_CERTIFICATE, t->creds);
  if (r >= 0)
    r = gnutls_session_ticket_enable_server(c->tls, &t->ticket_key);
  if (r < 0) {
    AE_ERROR("admin", "TLS session setup: %s", gnutls_strerror(r));
    return AE_ERR;
  }
  /* Requested, not required: a client without a certificate still uses static or unbound tokens. */
  gnutls_certificate_server_set_request(c->tls, GNUTLS_CERT_REQUEST);
  gnutls_transport_set_ptr(c->tls, c);
  gnutls_transport_set_pull_function(c->tls, tls_pull);
  gnutls_transport_set_pull_timeout_function(c->tls, tls_pull_timeout);
  gnutls_transport_set_push_function(c->tls, tls_push);
  gnutls_handshake_set_timeout(c->tls, 0);
  return 0;
}

/* After a handshake: the binding input. A resumed session carries the certificate of the handshake
 * it resumes; it is checked against client_ca again (the verify callback only runs on full
 * handshakes) and hashed the same way. */
static void tls_established(adm_conn *c) {
  c->tls_ready = 1;
  c->has_client_cert = 0;
  unsigned n = 0;
  int present = gnutls_certificate_get_peers(c->tls, &n) && n > 0;
  if (present && c->a->tls->verify_ca && verify_client(c->tls) != 0) {
    AE_INFO("admin", "TLS client certificate of a resumed session no longer verifies; ignoring it");
    present = 0;
  }
  if (present)
    c->has_client_cert = ae_tok_peer_cert_hash(c->tls, c->client_cert_sha256) == 0;
  AE_DEBUG("admin", "TLS %s handshake done (%s client certificate)",
           gnutls_session_is_resumed(c->tls) ? "resumed" : "full", c->has_client_cert ? "with" : "no");
}

/* Sends the answer for a client speaking plain HTTP to the TLS port, then closes. */
static void refuse_plain(adm_conn *c) {
  AE_INFO("admin", "plain HTTP request on the TLS admin port refused");
  c->close_after_write = 1;
  ae_adm_conn_write_raw(c, k_plain_reply, sizeof(k_plain_reply) - 1);
}

static int tls_fatal(adm_conn *c, const char *what, int r) {
  AE_INFO("admin", "TLS %s: %s", what, gnutls_strerror(r));
  if (r != GNUTLS_E_PUSH_ERROR && r != GNUTLS_E_PREMATURE_TERMINATION)
    gnutls_alert_send_appropriate(c->tls, r);
  c->close_after_write = 1;
  if (c->writes_pending == 0)
    ae_adm_conn_close(c);
  return -1;
}

void ae_adm_tls_on_data(adm_conn *c, const char *data, size_t n, int eof) {
  if (c->close_after_write)
    return;
  if (!c->tls_seen_bytes && n > 0) {
    c->tls_seen_bytes = 1;
    /* A TLS connection starts with a handshake record (22); a letter is a plain HTTP method. */
    if ((data[0] >= 'A' && data[0] <= 'Z') || (data[0] >= 'a' && data[0] <= 'z')) {
      refuse_plain(c);
      return;
    }
  }
  if (c->tin_off == c->tin_len)
    c->tin_off = c->tin_len = 0;
  if (n > 0) {
    if (c->tin_len + n > ADM_TLS_IN_MAX) {
      AE_INFO("admin", "TLS client sent too much unprocessed data; closing");
      ae_adm_conn_close(c);
      return;
    }
    if (c->tin_len + n > c->tin_cap) {
      if (c->tin_len > c->tin_off) /* tin is NULL until the first bytes arrive */
        memmove(c->tin, c->tin + c->tin_off, c->tin_len - c->tin_off);
      c->tin_len -= c->tin_off;
      c->tin_off = 0;
      if (c->tin_len + n > c->tin_cap) {
        c->tin_cap = ADM_TLS_IN_MAX;
        c->tin = ae_realloc(c->tin, c->tin_cap);
      }
    }
    memcpy(c->tin + c->tin_len, data, n);
    c->tin_len += n;
  }
  if (eof)
    c->tls_eof = 1;
  if (!c->tls_ready) {
    int r = gnutls_handshake(c->tls);
    if (r == GNUTLS_E_AGAIN || r == GNUTLS_E_INTERRUPTED) {
      if (c->tls_eof)
        ae_adm_conn_close(c);
      return;
    }
    if (r < 0) {
      tls_fatal(c, "handshake", r);
      return;
    }
    tls_established(c);
  }
  char *buf = c->a->tbuf;
  for (;;) {
    if (c->closing || c->close_after_write || c->sse)
      return;
    ssize_t got = gnutls_record_recv(c->tls, buf, sizeof(c->a->tbuf));
    if (got > 0) {
      ae_adm_conn_feed(c, buf, (size_t)got);
      continue;
    }
    if (got == GNUTLS_E_AGAIN || got == GNUTLS_E_INTERRUPTED)
      break;
    if (got == 0 || got == GNUTLS_E_PREMATURE_TERMINATION) {
      c->tls_eof = 1;
      break;
    }
    if (got == GNUTLS_E_REHANDSHAKE) {
      /* Client-initiated renegotiation is refused, as on the proxy front. */
      gnutls_alert_send(c->tls, GNUTLS_AL_WARNING, GNUTLS_A_NO_RENEGOTIATION);
      continue;
    }
    if (!gnutls_error_is_fatal((int)got))
      continue;
    tls_fatal(c, "receive", (int)got);
    return;
  }
  if (c->tls_eof)
    ae_adm_conn_eof(c);
}

int ae_adm_tls_send(adm_conn *c, const char *data, size_t len) {
  int retries = 0;
  while (len > 0) {
    ssize_t r = gnutls_record_send(c->tls, data, len);
    /* The push callback never blocks, so a retry is not expected; it stays bounded anyway. */
    if ((r == GNUTLS_E_AGAIN || r == GNUTLS_E_INTERRUPTED) && ++retries < 4)
      continue;
    if (r < 0) {
      AE_DEBUG("admin", "TLS send: %s", gnutls_strerror((int)r));
      ae_adm_conn_close(c);
      return AE_EIO;
    }
    data += r;
    len -= (size_t)r;
  }
  return 0;
}

int ae_adm_tls_bye(adm_conn *c) {
  if (!c->tls || !c->tls_ready || c->tls_bye_sent)
    return 0;
  c->tls_bye_sent = 1;
  unsigned before = c->writes_pending;
  gnutls_bye(c->tls, GNUTLS_SHUT_WR);
  return c->writes_pending > before;
}

void ae_adm_tls_conn_free(adm_conn *c) {
  if (c->tls)
    gnutls_deinit(c->tls);
  c->tls = NULL;
  free(c->tin);
  c->tin = NULL;
}
