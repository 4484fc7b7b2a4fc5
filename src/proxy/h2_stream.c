/* HTTP/2 front, request side of a stream: collects the header block (with the decoded-size
 * bounds), routes it like an HTTP/1.1 request (Host/:authority/SNI checks, routes[].auth), starts
 * the upstream exchange (h2_upstream.c), forwards DATA with flow-control credit returned only
 * once the bytes left for the upstream, and answers with responses acmedge makes itself. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "acmedge/common.h"
#include "acmedge/log.h"
#include "acmedge/metrics.h"
#include "h2_int.h"
#include "h2_up.h"

static ae_h2stream *get_st(nghttp2_session *s, int32_t id) {
  return id > 0 ? nghttp2_session_get_stream_user_data(s, id) : NULL;
}

/* ---------- response body source ---------- */

static ssize_t dp_read(nghttp2_session *s, int32_t id, uint8_t *buf, size_t length, uint32_t *flags,
                       nghttp2_data_source *src, void *ud) {
  ae_h2stream *st = src->ptr;
  (void)s;
  (void)id;
  (void)ud;
  size_t n = st->rbody.len < length ? st->rbody.len : length;
  if (n) {
    memcpy(buf, st->rbody.d, n);
    ae_buf_consume(&st->rbody, n);
    ae_h2u_resume_reading(st);
  }
  if (st->rbody.len == 0 && st->resp_done) {
    *flags |= NGHTTP2_DATA_FLAG_EOF;
    if (st->ur.trail.nf && st->hc->s) {
      /* The upstream's chunked trailers end the stream as a trailing HEADERS frame. */
      ae_buf store = {0};
      nghttp2_nv *nva = NULL;
      size_t tn = ae_h2_response_nva(&st->ur.trail, 0, 0, &store, &nva);
      if (tn && nghttp2_submit_trailer(st->hc->s, st->id, nva, tn) == 0)
        *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
      free(nva);
      ae_buf_free(&store);
    }
    return (ssize_t)n;
  }
  if (n == 0) {
    st->deferred = 1;
    return NGHTTP2_ERR_DEFERRED;
  }
  return (ssize_t)n;
}

void ae_h2s_body_ready(ae_h2stream *st) {
  if (st->deferred && st->hc->s) {
    st->deferred = 0;
    nghttp2_session_resume_data(st->hc->s, st->id);
  }
}

int ae_h2s_submit(ae_h2stream *st, const nghttp2_nv *nva, size_t n, int body) {
  nghttp2_data_provider dp;
  dp.source.ptr = st;
  dp.read_callback = dp_read;
  st->submitted = 1;
  int r = nghttp2_submit_response(st->hc->s, st->id, nva, n, body ? &dp : NULL);
  if (r != 0)
    AE_WARN("proxy", "h2: stream %d: submit_response: %s", st->id, nghttp2_strerror(r));
  return r;
}

void ae_h2s_local(ae_h2stream *st, int status, const char *why) {
  if (st->submitted) {
    nghttp2_submit_rst_stream(st->hc->s, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_INTERNAL_ERROR);
    return;
  }
  ae_transport *t = st->hc->t;
  AE_INFO("proxy", "%s %s: h2 stream %d: %d %s: %s", t ? t->peer_ip : "-", st->host[0] ? st->host : "-", st->id,
          status, ae_status_text(status), why);
  if (status >= 500)
    ae_metrics_inc(AE_M_UPSTREAM_ERRORS);
  st->local = status;
  st->status = status;
  st->rbody.len = 0;
  char body[96];
  int bl = snprintf(body, sizeof(body), "%d %s\n", status, ae_status_text(status));
  ae_buf_add(&st->rbody, body, (size_t)bl);
  st->bytes_out = (uint64_t)bl;
  st->resp_done = 1;
  char sts[8], cl[16];
  snprintf(sts, sizeof(sts), "%03d", (status % 1000 + 1000) % 1000);
  int cll = snprintf(cl, sizeof(cl), "%d", bl);
  nghttp2_nv nva[] = {
      {(uint8_t *)":status", (uint8_t *)sts, 7, 3, NGHTTP2_NV_FLAG_NONE},
      {(uint8_t *)"content-type", (uint8_t *)"text/plain; charset=utf-8", 12, 25, NGHTTP2_NV_FLAG_NONE},
      {(uint8_t *)"content-length", (uint8_t *)cl, 14, (size_t)cll, NGHTTP2_NV_FLAG_NONE},
  };
  ae_h2s_submit(st, nva, AE_ARRAY_LEN(nva), 1);
}

/* ---------- flow control ---------- */

void ae_h2s_consume(ae_h2stream *st) {
  if (!st->unconsumed || !st->hc->s)
    return;
  nghttp2_session_consume(st->hc->s, st->id, (size_t)st->unconsumed);
  st->unconsumed = 0;
}

/* ---------- stream lifecycle ---------- */

int ae_h2s_on_begin_headers(nghttp2_session *s, const nghttp2_frame *f, void *ud) {
  ae_h2conn *hc = ud;
  if (f->hd.type != NGHTTP2_HEADERS || f->headers.cat != NGHTTP2_HCAT_REQUEST)
    return 0;
  if (ae_h2_admit_stream(hc, f->hd.stream_id) != 0)
    return 0; /* refused: no stream data, its fields are decoded and dropped */
  ae_h2stream *st = ae_calloc(1, sizeof(*st));
  st->hc = hc;
  st->id = f->hd.stream_id;
  st->t_start = uv_now(hc->px->loop);
  ae_h2req_init(&st->rq);
  AE_PX_LINK(hc->streams, st);
  hc->nstreams++;
  nghttp2_session_set_stream_user_data(s, st->id, st);
  return 0;
}

/* Request trailer fields go upstream only in a chunked body's trailer section (a body with a
 * content-length has none: they are dropped). Fields that would change framing, routing or the
 * identity acmedge vouches for are dropped too, and the section is bounded like a header block. */
static void req_trailer(ae_h2stream *st, const char *n, size_t nl, const char *v, size_t vl) {
  static const char *const deny[] = {"content-length", "transfer-encoding", "host", "cookie", "authorization",
                                     "te", "trailer", "expect", "forwarded", "via", "content-type",
                                     "content-encoding", "content-range", "range"};
  static const char *const deny_prefix[] = {"x-forwarded-", "x-auth-", "proxy-", "x-real-ip"};
  if (st->body_mode != 2 || st->qtrail.len + nl + vl + 4 > AE_H2_MAX_FIELD_BYTES)
    return;
  for (size_t i = 0; i < AE_ARRAY_LEN(deny); i++)
    if (strlen(deny[i]) == nl && memcmp(deny[i], n, nl) == 0)
      return;
  for (size_t i = 0; i < AE_ARRAY_LEN(deny_prefix); i++) {
    size_t pl = strlen(deny_prefix[i]);
    if (nl >= pl && memcmp(deny_prefix[i], n, pl) == 0)
      return;
  }
  ae_buf_add(&st->qtrail, n, nl);
  ae_buf_add(&st->qtrail, ": ", 2);
  ae_buf_add(&st->qtrail, v, vl);
  ae_buf_add(&st->qtrail, "\r\n", 2);
}

int ae_h2s_on_header(nghttp2_session *s, const nghttp2_frame *f, nghttp2_rcbuf *name, nghttp2_rcbuf *value,
                     uint8_t flags, void *ud) {
  (void)flags;
  (void)ud;
  if (f->hd.type != NGHTTP2_HEADERS)
    return 0;
  ae_h2stream *st = get_st(s, f->hd.stream_id);
  if (!st)
    return 0;
  if (st->started) {
    nghttp2_vec tn = nghttp2_rcbuf_get_buf(name), tv = nghttp2_rcbuf_get_buf(value);
    req_trailer(st, (const char *)tn.base, tn.len, (const char *)tv.base, tv.len);
    return 0;
  }
  nghttp2_vec n = nghttp2_rcbuf_get_buf(name), v = nghttp2_rcbuf_get_buf(value);
  ae_h2req_add(&st->rq, (const char *)n.base, n.len, (const char *)v.base, v.len);
  return 0;
}

int ae_h2s_on_invalid_header(nghttp2_session *s, const nghttp2_frame *f, nghttp2_rcbuf *name,
                             nghttp2_rcbuf *value, uint8_t flags, void *ud) {
  (void)s;
  (void)value;
  (void)flags;
  ae_h2conn *hc = ud;
  nghttp2_vec n = nghttp2_rcbuf_get_buf(name);
  /* RFC 9113 §8.2.1: malformed, and never forwarded; nghttp2 resets with PROTOCOL_ERROR. */
  AE_INFO("proxy", "%s: h2 stream %d: invalid field \"%.*s\": reset", hc->t ? hc->t->peer_ip : "-", f->hd.stream_id,
          (int)(n.len > 64 ? 64 : n.len), (const char *)n.base);
  ae_metrics_count_label("http_rejected", "h2_invalid_field");
  return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
}

/* The request head is complete: answer it or start its upstream exchange. */
static void st_start(ae_h2stream *st, int end_stream) {
  ae_h2conn *hc = st->hc;
  ae_proxy *px = hc->px;
  st->started = 1;
  ae_metrics_count_label("proxy_requests", "h2");
  const char *why = NULL;
  int status = ae_h2req_route_host(&st->rq, hc->t ? hc->t->sni : "", st->host, sizeof(st->host), &why);
  if (status) {
    if (status != 421)
      ae_metrics_count_label("http_rejected", status == 431 ? "header_too_large" : "host");
    ae_h2s_local(st, status, why);
    return;
  }
  st->cfg = ae_config_ref(px->cfg);
  const ae_route *route = ae_config_route(st->cfg, st->host);
  if (!route) {
    ae_h2s_local(st, 502, "no route for host");
    return;
  }
  st->pool = ae_ups_pool(&px->ups, route->upstream);
  if (!st->pool) {
    ae_h2s_local(st, 502, "invalid upstream address");
    return;
  }
  st->body_mode = ae_h2req_body_mode(&st->rq, end_stream);
  st->method_head = st->rq.has_method && strcmp(st->rq.ps.d + st->rq.method, "HEAD") == 0;
  const ae_config *cfg = st->cfg;
  int trusted = cfg->ntrusted_proxies && ae_ip_in_list(hc->t->peer_ip, cfg->trusted_proxies, cfg->ntrusted_proxies);
  ae_buf head = {0};
  ae_h2req_upstream_head(&st->rq, hc->t->peer_ip, trusted, st->body_mode, &head);
  int auth = ae_px_auth_head(route, &st->rq.m, hc->t, st->host, &head);
  if (auth) {
    ae_buf_free(&head);
    ae_h2s_local(st, auth, "token rejected");
    return;
  }
  ae_h2u_start(st, &head);
  ae_buf_free(&head);
}

static void st_request_end(ae_h2stream *st) {
  if (st->req_end)
    return;
  st->req_end = 1;
  ae_h2u_request_end(st);
}

int ae_h2s_on_frame_recv(nghttp2_session *s, const nghttp2_frame *f, void *ud) {
  (void)ud;
  ae_h2stream *st = get_st(s, f->hd.stream_id);
  if (!st)
    return 0;
  int end = (f->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
  if (f->hd.type == NGHTTP2_HEADERS) {
    if (!st->started)
      st_start(st, end);
    if (end)
      st_request_end(st);
  } else if (f->hd.type == NGHTTP2_DATA && end) {
    st_request_end(st);
  }
  return 0;
}

int ae_h2s_on_data_chunk(nghttp2_session *s, uint8_t flags, int32_t id, const uint8_t *data, size_t len, void *ud) {
  (void)flags;
  (void)ud;
  ae_h2stream *st = get_st(s, id);
  if (!st) {
    nghttp2_session_consume_connection(s, len);
    return 0;
  }
  st->body_rx += len;
  st->unconsumed += len;
  ae_h2u_body(st, (const char *)data, len);
  return 0;
}

int ae_h2s_on_stream_close(nghttp2_session *s, int32_t id, uint32_t error_code, void *ud) {
  (void)ud;
  ae_h2stream *st = get_st(s, id);
  if (!st)
    return 0;
  /* Credit for bytes that will never be written upstream goes back to the connection window. */
  if (st->unconsumed)
    nghttp2_session_consume_connection(s, (size_t)st->unconsumed);
  st->unconsumed = 0;
  if (error_code != NGHTTP2_NO_ERROR && !st->status)
    st->status = 499;
  nghttp2_session_set_stream_user_data(s, id, NULL);
  ae_h2s_free(st);
  return 0;
}

void ae_h2s_free(ae_h2stream *st) {
  ae_h2conn *hc = st->hc;
  ae_h2u_stop(st);
  ae_h2s_access_log(st);
  AE_PX_UNLINK(hc->streams, st);
  hc->nstreams--;
  if (hc->nstreams == 0)
    hc->t_active = uv_now(hc->px->loop);
  ae_h2req_free(&st->rq);
  ae_uresp_free(&st->ur);
  ae_buf_free(&st->rbody);
  ae_buf_free(&st->uhead);
  ae_buf_free(&st->qtrail);
  ae_config_free(st->cfg);
  free(st);
}

void ae_h2s_access_log(ae_h2stream *st) {
  if (st->logged || !st->started)
    return;
  st->logged = 1;
  if (!ae_log_enabled(AE_LOG_INFO))
    return;
  const ae_h2req *r = &st->rq;
  ae_px_access a = {
      .ip = st->hc->t ? st->hc->t->peer_ip : "-",
      .host = st->host,
      .method = r->has_method ? r->ps.d + r->method : "-",
      .path = r->has_path ? r->ps.d + r->path : "-",
      .plen = r->has_path ? r->plen : 1,
      .status = st->status,
      .bytes = st->bytes_out,
      .upstream_ms = st->t_resp_head && st->t_up_start ? (long long)(st->t_resp_head - st->t_up_start) : -1,
      .pool = st->pool && !st->local ? st->pool : NULL,
      .h2_stream = (uint32_t)st->id,
  };
  ae_px_access_write(&a);
}
