/* HTTP/2 front, connection side: one nghttp2 server session per client connection whose ALPN
 * selected h2. TLS plaintext goes through nghttp2_session_mem_recv; nghttp2_session_mem_send
 * output is written to the transport while less than AE_H2_OUT_CAP waits there, so that a client
 * that does not read fills nghttp2's own bounded queues (and its flood limits) instead of ours.
 * Streams (h2_stream.c) are HTTP/1.1 exchanges on the shared upstream pool. */
#include <stdlib.h>
#include <string.h>

#include "acmedge/common.h"
#include "acmedge/log.h"
#include "acmedge/metrics.h"
#include "h2_int.h"

static void hc_close(ae_h2conn *hc, int abort);

static uint64_t hc_now(const ae_h2conn *hc) { return uv_now(hc->px->loop); }

/* ---------- connection-level callbacks ---------- */

/* Takes one token from the connection's reset bucket; an empty bucket ends the connection with
 * GOAWAY ENHANCE_YOUR_CALM. nghttp2 1.52 bounds only the resets it receives, so the ones a client
 * provokes us into sending (MadeYouReset, CVE-2025-8671) are counted here with them. */
static void hc_reset_charge(ae_h2conn *hc, nghttp2_session *s, const char *what) {
  uint64_t now = hc_now(hc);
  uint64_t cap = (uint64_t)hc->reset_burst * 1000u;
  hc->reset_mt += (now - hc->t_reset) * AE_H2_RESET_RATE;
  if (hc->reset_mt > cap)
    hc->reset_mt = cap;
  hc->t_reset = now;
  if (hc->reset_mt >= 1000u) {
    hc->reset_mt -= 1000u;
    return;
  }
  if (hc->calm)
    return;
  hc->calm = 1;
  AE_INFO("proxy", "%s: h2: too many stream resets (last: %s), closing", hc->t ? hc->t->peer_ip : "-", what);
  ae_metrics_count_label("h2_events", "too_many_resets");
  nghttp2_session_terminate_session(s, NGHTTP2_ENHANCE_YOUR_CALM);
  hc->goaway = 1;
}

static int cb_begin_frame(nghttp2_session *s, const nghttp2_frame_hd *hd, void *ud) {
  ae_h2conn *hc = ud;
  /* A header block left open blocks the whole connection (RFC 9113 §6.10): bound its time. */
  if (hd->type == NGHTTP2_HEADERS && !(hd->flags & NGHTTP2_FLAG_END_HEADERS)) {
    if (!hc->t_hblock)
      hc->t_hblock = hc_now(hc);
  } else if (hd->type == NGHTTP2_CONTINUATION && (hd->flags & NGHTTP2_FLAG_END_HEADERS)) {
    hc->t_hblock = 0;
  }
  /* Frames that carry nothing and end nothing only cost us work (CVE-2019-9518). */
  if (hd->length == 0 && !(hd->flags & NGHTTP2_FLAG_END_STREAM) &&
      (hd->type == NGHTTP2_DATA || hd->type == NGHTTP2_HEADERS || hd->type == NGHTTP2_CONTINUATION)) {
    if (++hc->empty_frames > AE_H2_MAX_EMPTY_FRAMES) {
      AE_INFO("proxy", "%s: h2: too many empty frames, closing", hc->t ? hc->t->peer_ip : "-");
      ae_metrics_count_label("h2_events", "empty_frames");
      nghttp2_session_terminate_session(s, NGHTTP2_ENHANCE_YOUR_CALM);
      hc->goaway = 1;
    }
  }
  return 0;
}

static int cb_frame_recv(nghttp2_session *s, const nghttp2_frame *f, void *ud) {
  ae_h2conn *hc = ud;
  hc->t_active = hc_now(hc);
  if (f->hd.type == NGHTTP2_SETTINGS && (f->hd.flags & NGHTTP2_FLAG_ACK))
    hc->settings_acked = 1;
  else if (f->hd.type == NGHTTP2_HEADERS)
    hc->t_hblock = 0;
  else if (f->hd.type == NGHTTP2_RST_STREAM)
    hc_reset_charge(hc, s, "RST_STREAM received");
  return ae_h2s_on_frame_recv(s, f, ud);
}

static int cb_frame_send(nghttp2_session *s, const nghttp2_frame *f, void *ud) {
  ae_h2conn *hc = ud;
  if (f->hd.type == NGHTTP2_RST_STREAM) {
    ae_metrics_count_label("h2_events", "rst_sent");
    /* Resets for our own trouble (upstream failures) are not the client's doing. */
    uint32_t e = f->rst_stream.error_code;
    if (e != NGHTTP2_INTERNAL_ERROR && e != NGHTTP2_CANCEL)
      hc_reset_charge(hc, s, nghttp2_http2_strerror(e));
  } else if (f->hd.type == NGHTTP2_GOAWAY) {
    ae_metrics_count_label("h2_events", "goaway_sent");
  }
  return 0;
}

int ae_h2_admit_stream(ae_h2conn *hc, int32_t id) {
  if (hc->requests >= hc->max_requests) {
    nghttp2_submit_rst_stream(hc->s, NGHTTP2_FLAG_NONE, id, NGHTTP2_REFUSED_STREAM);
    return -1;
  }
  if (++hc->requests == hc->max_requests) {
    /* Streams up to this one are served; the client opens a new connection for the rest. */
    AE_INFO("proxy", "%s: h2: %u streams on this connection, final GOAWAY", hc->t ? hc->t->peer_ip : "-",
            hc->max_requests);
    ae_metrics_count_label("h2_events", "max_requests");
    nghttp2_submit_goaway(hc->s, NGHTTP2_FLAG_NONE, id, NGHTTP2_NO_ERROR, NULL, 0);
    hc->goaway = 1;
  }
  return 0;
}

static nghttp2_session_callbacks *g_cbs;
static uv_once_t g_cbs_once = UV_ONCE_INIT;

static void init_cbs(void) {
  nghttp2_session_callbacks *c;
  if (nghttp2_session_callbacks_new(&c) != 0)
    abort();
  nghttp2_session_callbacks_set_on_begin_frame_callback(c, cb_begin_frame);
  nghttp2_session_callbacks_set_on_begin_headers_callback(c, ae_h2s_on_begin_headers);
  nghttp2_session_callbacks_set_on_header_callback2(c, ae_h2s_on_header);
  nghttp2_session_callbacks_set_on_invalid_header_callback2(c, ae_h2s_on_invalid_header);
  nghttp2_session_callbacks_set_on_frame_recv_callback(c, cb_frame_recv);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(c, ae_h2s_on_data_chunk);
  nghttp2_session_callbacks_set_on_stream_close_callback(c, ae_h2s_on_stream_close);
  nghttp2_session_callbacks_set_on_frame_send_callback(c, cb_frame_send);
  g_cbs = c;
}

/* Built once per process and never changed (worker loops share it): sessions copy it. */
static nghttp2_session_callbacks *callbacks(void) {
  uv_once(&g_cbs_once, init_cbs);
  return g_cbs;
}

/* ---------- output ---------- */

static void hc_reading(ae_h2conn *hc, int on) {
  if (!hc->t || hc->closing || on == hc->reading)
    return;
  hc->reading = on;
  if (on)
    ae_transport_read_start(hc->t);
  else
    ae_transport_read_stop(hc->t);
}

void ae_h2_flush(ae_h2conn *hc) {
  if (hc->closing || !hc->t || hc->in_recv)
    return;
  if (ae_transport_queued(hc->t) == 0)
    hc->t_drain = hc_now(hc);
  /* mem_send yields one frame at a time; frames are gathered so that one TLS record carries many
   * (a response's HEADERS and DATA, and those of other streams answered in the same pass) instead
   * of one record per frame. */
  char acc[AE_H2_RECORD];
  size_t alen = 0;
  while (ae_transport_queued(hc->t) + alen < AE_H2_OUT_CAP) {
    const uint8_t *d = NULL;
    ssize_t n = nghttp2_session_mem_send(hc->s, &d);
    if (n < 0) {
      AE_INFO("proxy", "%s: h2: %s, closing", hc->t->peer_ip, nghttp2_strerror((int)n));
      hc_close(hc, 1);
      return;
    }
    if (n == 0)
      break;
    if (alen + (size_t)n > sizeof(acc)) {
      if (ae_transport_write(hc->t, acc, alen) < 0) {
        hc_close(hc, 1);
        return;
      }
      alen = 0;
    }
    if ((size_t)n >= sizeof(acc)) {
      if (ae_transport_write(hc->t, (const char *)d, (size_t)n) < 0) {
        hc_close(hc, 1);
        return;
      }
      continue;
    }
    memcpy(acc + alen, d, (size_t)n);
    alen += (size_t)n;
  }
  if (alen && ae_transport_write(hc->t, acc, alen) < 0) {
    hc_close(hc, 1);
    return;
  }
  if (!nghttp2_session_want_read(hc->s) && !nghttp2_session_want_write(hc->s)) {
    hc_close(hc, 0);
    return;
  }
  /* A full output queue stops the client: nghttp2 then stops taking frames that need answers. */
  hc_reading(hc, ae_transport_queued(hc->t) < AE_H2_OUT_CAP && nghttp2_session_want_read(hc->s));
  ae_h2_timer_update(hc);
}

/* ---------- lifecycle ---------- */

static void hc_freed(uv_handle_t *h) {
  ae_h2conn *hc = h->data;
  ae_proxy *p = hc->px;
  free(hc);
  ae_px_conn_freed(p);
}

static void hc_free_streams(ae_h2conn *hc) {
  while (hc->streams)
    ae_h2s_free(hc->streams);
}

static void hc_close(ae_h2conn *hc, int abort) {
  if (hc->closing)
    return;
  hc->closing = 1;
  hc_free_streams(hc);
  ae_px_conn_shut(hc->t, &hc->timer, &hc->armed, abort);
}

static void hc_undirty(ae_h2conn *hc) {
  if (!hc->dirty)
    return;
  ae_h2conn **pp = &hc->px->h2dirty;
  while (*pp && *pp != hc)
    pp = &(*pp)->dnext;
  if (*pp)
    *pp = hc->dnext;
  hc->dirty = 0;
  hc->dnext = NULL;
}

static void flush_dirty(uv_check_t *h) {
  ae_proxy *p = h->data;
  while (p->h2dirty) {
    ae_h2conn *hc = p->h2dirty;
    p->h2dirty = hc->dnext;
    hc->dirty = 0;
    hc->dnext = NULL;
    ae_h2_flush(hc);
  }
  uv_check_stop(h);
}

static void check_closed(uv_handle_t *h) { ae_px_conn_freed(h->data); }

void ae_h2_flush_soon(ae_h2conn *hc) {
  ae_proxy *p = hc->px;
  if (hc->closing || !hc->t || hc->dirty)
    return;
  if (p->closing) {
    ae_h2_flush(hc);
    return;
  }
  if (!p->h2check_init) {
    uv_check_init(p->loop, &p->h2check);
    p->h2check.data = p;
    p->h2check_init = 1;
    p->nalive++; /* the handle's close completes like a connection's */
  }
  hc->dirty = 1;
  hc->dnext = p->h2dirty;
  p->h2dirty = hc;
  uv_check_start(&p->h2check, flush_dirty);
}

static void hc_on_close(void *ud) {
  ae_h2conn *hc = ud;
  ae_proxy *p = hc->px;
  hc_undirty(hc);
  hc->closing = 1;
  hc->t = NULL;
  hc_free_streams(hc);
  nghttp2_session_del(hc->s);
  hc->s = NULL;
  AE_PX_UNLINK(p->h2conns, hc);
  ae_px_conn_gone(p, &hc->timer, hc_freed);
}

static void hc_on_read(void *ud, const char *data, ssize_t n) {
  ae_h2conn *hc = ud;
  if (hc->closing || !hc->t)
    return;
  if (n < 0) {
    hc->reading = 0;
    hc_close(hc, 0);
    return;
  }
  if (n == 0)
    return;
  hc->in_recv = 1;
  ssize_t r = nghttp2_session_mem_recv(hc->s, (const uint8_t *)data, (size_t)n);
  hc->in_recv = 0;
  if (hc->closing)
    return;
  if (r < 0) {
    AE_INFO("proxy", "%s: h2: %s, closing", hc->t->peer_ip, nghttp2_strerror((int)r));
    ae_metrics_count_label("h2_events", r == NGHTTP2_ERR_BAD_CLIENT_MAGIC ? "bad_preface"
                                         : r == NGHTTP2_ERR_FLOODED        ? "flooded"
                                                                           : "connection_error");
    /* Whatever nghttp2 queued (a GOAWAY) goes out before the close. */
    const uint8_t *d = NULL;
    ssize_t m;
    while ((m = nghttp2_session_mem_send(hc->s, &d)) > 0 && ae_transport_queued(hc->t) < AE_H2_OUT_CAP)
      ae_transport_write(hc->t, (const char *)d, (size_t)m);
    hc_close(hc, 0);
    return;
  }
  ae_h2_flush(hc);
}

static void hc_on_drain(void *ud) {
  ae_h2conn *hc = ud;
  if (hc->closing)
    return;
  hc->t_drain = hc_now(hc);
  ae_h2_flush(hc);
}

/* ---------- timers ---------- */

static unsigned idle_ms(const ae_h2conn *hc) {
  return ae_px_ms(hc->px->cfg->proxy.idle_timeout_ms, AE_PX_DEF_IDLE_MS);
}

static unsigned header_ms(const ae_h2conn *hc) {
  return ae_px_ms(hc->px->cfg->proxy.header_timeout_ms, AE_PX_DEF_HEADER_MS);
}

/* The connection's own deadline: preface/SETTINGS ACK and header-block completion
 * (proxy.header_timeout_ms), idle without streams, or a client that stopped reading
 * (proxy.idle_timeout_ms). Idle counts complete frames only, so a byte drip does not hold a
 * connection open. */
static uint64_t hc_deadline(ae_h2conn *hc, const char **why) {
  uint64_t d = 0;
  *why = NULL;
#define CONSIDER(x, w)     \
  do {                     \
    uint64_t x_ = (x);     \
    if (!d || x_ < d) {    \
      d = x_;              \
      *why = (w);          \
    }                      \
  } while (0)
  if (!hc->settings_acked)
    CONSIDER(hc->t_open + header_ms(hc), "no preface or SETTINGS ACK in time");
  if (hc->t_hblock)
    CONSIDER(hc->t_hblock + header_ms(hc), "header block not completed in time");
  if (hc->nstreams == 0)
    CONSIDER(hc->t_active + idle_ms(hc), "idle");
  if (hc->t && ae_transport_queued(hc->t) > 0)
    CONSIDER(hc->t_drain + idle_ms(hc), "client stopped reading");
#undef CONSIDER
  return d;
}

/* When the final GOAWAY of a drain is due (0: none pending). */
static uint64_t hc_final_due(const ae_h2conn *hc) {
  return hc->draining && !hc->goaway ? hc->t_notice + AE_H2_GOAWAY_DELAY_MS : 0;
}

/* The final GOAWAY: streams up to the last one nghttp2 handed us are served, later ones are not
 * processed (the client may retry them elsewhere). */
static void hc_final_goaway(ae_h2conn *hc) {
  int32_t last = nghttp2_session_get_last_proc_stream_id(hc->s);
  hc->goaway = 1;
  nghttp2_submit_goaway(hc->s, NGHTTP2_FLAG_NONE, last, NGHTTP2_NO_ERROR, NULL, 0);
}

static void hc_drain(ae_h2conn *hc) {
  if (hc->closing || hc->draining)
    return;
  hc->draining = 1;
  hc->t_notice = hc_now(hc);
  if (!hc->goaway)
    nghttp2_submit_shutdown_notice(hc->s);
  ae_h2_flush(hc);
}

void ae_h2_drain_all(ae_proxy *p) {
  ae_h2conn *hc = p->h2conns;
  while (hc) {
    ae_h2conn *next = hc->next;
    hc_drain(hc);
    hc = next;
  }
}

static void hc_timer_cb(uv_timer_t *t) {
  ae_h2conn *hc = t->data;
  hc->armed = 0;
  if (hc->closing)
    return;
  uint64_t now = hc_now(hc);
  uint64_t fd = hc_final_due(hc);
  if (fd && fd <= now)
    hc_final_goaway(hc);
  const char *why = NULL;
  uint64_t d = hc_deadline(hc, &why);
  if (d && d <= now) {
    AE_INFO("proxy", "%s: h2: %s, closing", hc->t ? hc->t->peer_ip : "-", why);
    int queued = hc->t && ae_transport_queued(hc->t) > 0;
    if (!queued)
      nghttp2_session_terminate_session(hc->s, NGHTTP2_NO_ERROR);
    const uint8_t *b = NULL;
    ssize_t m;
    while (!queued && hc->t && (m = nghttp2_session_mem_send(hc->s, &b)) > 0)
      ae_transport_write(hc->t, (const char *)b, (size_t)m);
    hc_close(hc, queued);
    return;
  }
  ae_h2stream *st = hc->streams;
  while (st) {
    ae_h2stream *next = st->next;
    uint64_t sd = ae_h2s_deadline(st);
    if (sd && sd <= now)
      ae_h2s_timeout(st);
    st = next;
  }
  ae_h2_flush(hc);
  if (!hc->closing)
    ae_h2_timer_update(hc);
}

void ae_h2_timer_update(ae_h2conn *hc) {
  if (hc->closing)
    return;
  const char *why;
  uint64_t d = hc_deadline(hc, &why);
  uint64_t fd = hc_final_due(hc);
  if (fd && (!d || fd < d))
    d = fd;
  for (ae_h2stream *st = hc->streams; st; st = st->next) {
    uint64_t sd = ae_h2s_deadline(st);
    if (sd && (!d || sd < d))
      d = sd;
  }
  if (d == hc->armed)
    return;
  uint64_t now = hc_now(hc);
  hc->armed = d;
  if (!d) {
    uv_timer_stop(&hc->timer);
    return;
  }
  uv_timer_start(&hc->timer, hc_timer_cb, d > now ? d - now : 0, 0);
}

/* ---------- public ---------- */

static int hc_session(ae_h2conn *hc, unsigned mcs) {
  nghttp2_option *opt;
  if (nghttp2_option_new(&opt) != 0)
    return -1;
  /* Window updates only after the bytes left for the upstream: back-pressure end to end. */
  nghttp2_option_set_no_auto_window_update(opt, 1);
#ifdef AE_HAVE_NGHTTP2_RST_RATE
  nghttp2_option_set_stream_reset_rate_limit(opt, 1000, 33);
#endif
#ifdef AE_HAVE_NGHTTP2_MAX_CONT
  nghttp2_option_set_max_continuations(opt, 8);
#endif
  int r = nghttp2_session_server_new2(&hc->s, callbacks(), hc, opt);
  nghttp2_option_del(opt);
  if (r != 0)
    return -1;
  nghttp2_settings_entry iv[] = {
      {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, mcs},
      {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, AE_H2_STREAM_WINDOW},
      {NGHTTP2_SETTINGS_NO_RFC7540_PRIORITIES, 1},
      {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, AE_H2_MAX_FIELD_BYTES},
  };
  if (nghttp2_submit_settings(hc->s, NGHTTP2_FLAG_NONE, iv, AE_ARRAY_LEN(iv)) != 0 ||
      nghttp2_session_set_local_window_size(hc->s, NGHTTP2_FLAG_NONE, 0, AE_H2_CONN_WINDOW) != 0)
    return -1;
  return 0;
}

void ae_h2_attach(ae_proxy *p, ae_transport *t, const char *initial, size_t len) {
  ae_h2conn *hc = ae_calloc(1, sizeof(*hc));
  hc->px = p;
  hc->t = t;
  unsigned mcs = p->cfg->proxy.h2_max_concurrent_streams ? p->cfg->proxy.h2_max_concurrent_streams : 100;
  if (hc_session(hc, mcs) != 0) {
    AE_ERROR("proxy", "%s: h2: cannot create the session", t->peer_ip);
    if (hc->s)
      nghttp2_session_del(hc->s);
    free(hc);
    t->ud = NULL;
    t->on_read = NULL;
    t->on_drain = NULL;
    t->on_close = NULL;
    ae_transport_abort(t);
    return;
  }
  uv_timer_init(p->loop, &hc->timer);
  hc->timer.data = hc;
  hc->t_open = hc->t_active = hc->t_drain = hc->t_reset = uv_now(p->loop);
  hc->reset_burst = mcs > AE_H2_RESET_BURST_MIN ? mcs : AE_H2_RESET_BURST_MIN;
  hc->reset_mt = (uint64_t)hc->reset_burst * 1000u;
  hc->max_requests = p->cfg->proxy.h2_max_requests ? p->cfg->proxy.h2_max_requests : 1000000u;
  AE_PX_LINK(p->h2conns, hc);
  p->nclients++;
  p->nalive++;
  ae_metrics_count_label("h2_events", "connection");
  t->ud = hc;
  t->on_read = hc_on_read;
  t->on_drain = hc_on_drain;
  t->on_close = hc_on_close;
  ae_h2_flush(hc);
  if (initial && len && !hc->closing)
    hc_on_read(hc, initial, (ssize_t)len);
  if (!hc->closing)
    hc_reading(hc, ae_transport_queued(t) < AE_H2_OUT_CAP);
  if (p->draining)
    hc_drain(hc);
}

void ae_h2_abort_all(ae_proxy *p) {
  ae_h2conn *hc = p->h2conns;
  while (hc) {
    ae_h2conn *next = hc->next;
    hc_close(hc, 1);
    hc = next;
  }
  if (p->h2check_init) {
    p->h2check_init = 0;
    uv_close((uv_handle_t *)&p->h2check, check_closed);
  }
}
