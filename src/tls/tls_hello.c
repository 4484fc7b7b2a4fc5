/* The first phase of a TLS connection: the ClientHello peek (after an optional PROXY header), the
 * certificate choice (store, hold, alert, tls-alpn-01) and hand-made alerts for refused hellos.
 * The GnuTLS handshake and record phase that follows is in tls_conn.c. */
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

/* ---- ClientHello and certificate choice ----------------------------------------------------- */

/* Sends a fatal alert by hand (no session exists yet: plaintext record, TLS 1.2 record version)
 * and closes once it is flushed. */
static void conn_send_alert(tls_conn *c, uint8_t desc, const char *reason) {
  const uint8_t alert[7] = {0x15, 0x03, 0x03, 0x00, 0x02, 0x02, desc};
  giovec_t v = {(void *)alert, sizeof(alert)};
  AE_DEBUG("tls", "%s: refusing %s: %s (%s)", c->t.peer_ip, tc_name(c), reason, ae_tls_alert_name(desc));
  ae_metrics_inc(AE_M_HS_FAILED);
  if (tc_send(c, &v, 1) < 0) {
    tc_close_handles(c, 1);
    return;
  }
  tc_close_graceful(c);
}

static void conn_use_default(tls_conn *c) {
  ae_cert *cert = ae_certstore_default(c->f->cs);
  if (!cert) {
    AE_ERROR("tls", "%s: no default certificate for %s", c->t.peer_ip, tc_name(c));
    conn_send_alert(c, AE_ALERT_INTERNAL_ERROR, "no certificate");
    return;
  }
  tc_start_tls(c, cert, TC_KIND_DEFAULT);
}

/* The minted stand-in leaf for the connection's name, if one is ready (NULL otherwise). */
static ae_cert *conn_fallback_cert(tls_conn *c) {
  ae_tls_front *f = c->f;
  return f->hooks.fallback_cert && c->t.sni[0] ? f->hooks.fallback_cert(f->hooks.ud, c->t.sni) : NULL;
}

/* A host_name that is not a DNS name: never looked up, held or minted for; answered like a
 * denied name. */
static void conn_invalid_name(tls_conn *c, const ae_clienthello *ch) {
  ae_tls_front *f = c->f;
  AE_DEBUG("tls", "%s: SNI \"%s\" is not a DNS host name (%s)", c->t.peer_ip, ch->sni, ch->sni_fault);
  if (ae_limits_admit_name((struct sockaddr *)&c->t.peer, ch->sni) != 0) {
    tc_close_handles(c, 1);
    return;
  }
  ae_miss_action act = f->hooks.on_invalid_name ? f->hooks.on_invalid_name(f->hooks.ud, ch->sni) : AE_MISS_DEFAULT;
  if (c->closing_handles)
    return;
  if (act == AE_MISS_ALERT)
    conn_send_alert(c, AE_ALERT_UNRECOGNIZED_NAME, "SNI is not a DNS host name"); /* RFC 6066 §3 */
  else
    conn_use_default(c);
}

/* Puts c on the held list until a wake or the wait timeout. */
static void conn_hold(tls_conn *c) {
  ae_tls_front *f = c->f;
  c->state = TC_HELD;
  c->hprev = NULL;
  c->hnext = f->held;
  if (f->held)
    f->held->hprev = c;
  f->held = c;
  f->nheld++;
  ae_metrics_inc(AE_M_HS_HELD);
  AE_DEBUG("tls", "%s: holding %shandshake for %s", c->t.peer_ip, c->alpn_held ? "acme-tls/1 " : "", c->t.sni);
  tc_arm(c, f->wait_timeout_ms);
}

static ae_cert *conn_alpn_cert(tls_conn *c) {
  ae_tls_front *f = c->f;
  return f->hooks.alpn_challenge_cert ? f->hooks.alpn_challenge_cert(f->hooks.ud, c->t.sni) : NULL;
}

/* acme-tls/1: the validation certificate, or a hold while another instance's answer is read from
 * shared storage (this one missed its announcement), or a refusal. */
static void conn_choose_alpn(tls_conn *c, const ae_clienthello *ch) {
  ae_tls_front *f = c->f;
  ae_cert *cc = ch->has_sni ? conn_alpn_cert(c) : NULL;
  if (!cc && ch->has_sni && !ch->sni_invalid && f->hooks.alpn_miss && !f->closing && f->nheld < f->max_held &&
      f->hooks.alpn_miss(f->hooks.ud, c->t.sni)) {
    if (c->closing_handles)
      return;
    cc = conn_alpn_cert(c); /* the answer may be here already */
    if (!cc) {
      c->alpn_held = 1;
      conn_hold(c);
      return;
    }
  }
  if (!cc) {
    conn_send_alert(c, AE_ALERT_NO_APPLICATION_PROTOCOL, "acme-tls/1 without a pending challenge");
    return;
  }
  c->challenge = 1;
  tc_start_tls(c, cc, TC_KIND_CHALLENGE);
}

static void conn_choose_cert(tls_conn *c, const ae_clienthello *ch) {
  ae_tls_front *f = c->f;
  if (ae_clienthello_has_alpn(ch, "acme-tls/1")) {
    conn_choose_alpn(c, ch);
    return;
  }
  if (ch->sni_invalid) {
    conn_invalid_name(c, ch);
    return;
  }
  if (!ch->has_sni) {
    conn_use_default(c);
    return;
  }
  ae_cert *cert = ae_certstore_lookup(f->cs, c->t.sni);
  if (cert) {
    tc_start_tls(c, cert, TC_KIND_KNOWN);
    return;
  }
  if (ae_limits_admit_name((struct sockaddr *)&c->t.peer, c->t.sni) != 0) {
    tc_close_handles(c, 1);
    return;
  }
  /* A stored name already in the kernel's caches: served now, nothing held. */
  if (f->hooks.stored_cert && (cert = f->hooks.stored_cert(f->hooks.ud, c->t.sni)) != NULL) {
    tc_start_tls(c, cert, TC_KIND_KNOWN);
    return;
  }
  ae_miss_action act = f->hooks.on_miss ? f->hooks.on_miss(f->hooks.ud, c->t.sni) : AE_MISS_DEFAULT;
  if (c->closing_handles)
    return;
  if (act == AE_MISS_FALLBACK) {
    ae_cert *fb = conn_fallback_cert(c);
    if (fb) {
      tc_start_tls(c, fb, TC_KIND_DEFAULT);
      return;
    }
    act = AE_MISS_HOLD; /* the mint wakes us */
  }
  if (act == AE_MISS_ALERT) {
    conn_send_alert(c, AE_ALERT_UNRECOGNIZED_NAME, "policy refuses the name"); /* RFC 6066 §3 */
    return;
  }
  if (act == AE_MISS_HOLD && !f->closing && f->nheld < f->max_held) {
    /* The hook may have installed the certificate already. */
    cert = ae_certstore_lookup(f->cs, c->t.sni);
    if (cert) {
      tc_start_tls(c, cert, TC_KIND_KNOWN);
      return;
    }
    conn_hold(c);
    return;
  }
  conn_use_default(c);
}

void tc_on_hello(tls_conn *c) {
  if (c->f->proxy_protocol && !c->pp_done) {
    int pr = ae_limits_proxy_header(c->in, &c->in_len, c->eof, &c->t.peer, c->t.peer_ip, sizeof(c->t.peer_ip),
                                    &c->limit_ticket);
    if (pr == AE_EAGAIN)
      return;
    if (pr != 0) {
      tc_close_handles(c, 1);
      return;
    }
    c->pp_done = 1;
    if (c->in_len == 0) {
      if (c->eof)
        tc_close_handles(c, 0);
      return;
    }
  }
  ae_clienthello ch;
  /* The verdict cannot change before hello_need bytes are in: a hello sent in many small pieces
   * is parsed a few times, not once per read. */
  if (c->in_len < c->hello_need && !c->eof)
    return;
  int r = ae_clienthello_parse(c->in, c->in_len, &ch);
  if (r == AE_CH_NEED_MORE) {
    c->hello_need = ch.need;
    if (c->eof) {
      AE_INFO("tls", "%s: closing: truncated ClientHello", c->t.peer_ip);
      conn_send_alert(c, AE_ALERT_DECODE_ERROR, "truncated ClientHello");
    }
    return;
  }
  if (r != AE_CH_OK) {
    AE_INFO("tls", "%s: closing: %s (%s)", c->t.peer_ip, ch.reason, ae_tls_alert_name(ch.alert));
    /* A name GnuTLS could not take either: refused, but reported like any invalid name. */
    if (ch.sni_invalid && c->f->hooks.on_invalid_name)
      (void)c->f->hooks.on_invalid_name(c->f->hooks.ud, ch.sni);
    conn_send_alert(c, ch.alert, ch.reason);
    return;
  }
  snprintf(c->t.sni, sizeof(c->t.sni), "%s", ch.has_sni ? ch.sni : "");
  conn_choose_cert(c, &ch);
}

void ae_tls_conn_resume(tls_conn *c) {
  if (c->state != TC_HELD || c->closing_handles)
    return;
  tc_unhold(c);
  if (c->alpn_held) {
    c->alpn_held = 0;
    ae_cert *cc = conn_alpn_cert(c);
    if (!cc) {
      conn_send_alert(c, AE_ALERT_NO_APPLICATION_PROTOCOL, "acme-tls/1: no answer here or in shared storage");
      return;
    }
    AE_DEBUG("tls", "%s: acme-tls/1 for %s answered after the look-up", c->t.peer_ip, c->t.sni);
    c->challenge = 1;
    tc_start_tls(c, cc, TC_KIND_CHALLENGE);
    return;
  }
  ae_cert *cert = ae_certstore_lookup(c->f->cs, c->t.sni);
  if (cert)
    tc_start_tls(c, cert, TC_KIND_KNOWN);
  else if ((cert = conn_fallback_cert(c)) != NULL)
    tc_start_tls(c, cert, TC_KIND_DEFAULT);
  else
    conn_use_default(c);
}
