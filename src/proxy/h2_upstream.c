/* HTTP/2 front, upstream side of a stream: one HTTP/1.1 exchange on the shared keep-alive pool.
 * The response head is checked by the raw head scanner and parsed by llhttp, then submitted as
 * h2 HEADERS; the body (any framing) becomes DATA through a bounded per-stream buffer that pauses
 * the upstream when full. Bad upstream framing is a 502 (or a reset once the head went out) and
 * the upstream connection is closed; a connection is pooled only after a complete exchange. */
#include <stdlib.h>
#include <string.h>

#include "acmedge/common.h"
#include "acmedge/log.h"
#include "acmedge/metrics.h"
#include "h2_up.h"

static void u_on_connect(void *ud, int status);
static void u_on_read(void *ud, const char *data, ssize_t n);
static void u_on_drain(void *ud);
static void u_on_write_error(void *ud, int status);

static const ae_uconn_handler u_handler = {u_on_connect, u_on_read, u_on_drain, u_on_write_error};

static uint64_t st_now(const ae_h2stream *st) { return uv_now(st->hc->px->loop); }

/* Upstream events come from the poll phase: the connection is flushed once at the end of the
 * turn, with whatever other streams answered meanwhile. */
static void st_flush(ae_h2stream *st) { ae_h2_flush_soon(st->hc); }

/* ---------- response parsing ---------- */

static int rs_head(void *ud, llhttp_t *p) {
  ae_h2stream *st = ud;
  int code = p->status_code;
  st->t_up_io = st_now(st);
  if (code == 101) {
    llhttp_set_error_reason(p, "unexpected 101 Switching Protocols");
    return -1;
  }
  if (code < 200) {
    /* 100 and 103 (and other 1xx) go to the client as informational HEADERS before the final
     * response; a bounded number, so an upstream cannot flood the stream with them. */
    if (!st->submitted && st->ninterim < AE_H2_MAX_INTERIM && st->hc->s) {
      st->ninterim++;
      ae_buf store = {0};
      nghttp2_nv *nva = NULL;
      size_t n = ae_h2_response_nva(&st->ur.head, code, 0, &store, &nva);
      nghttp2_submit_headers(st->hc->s, NGHTTP2_FLAG_NONE, st->id, NULL, nva, n, NULL);
      free(nva);
      ae_buf_free(&store);
    }
    return 0;
  }
  st->status = code;
  st->resp_head = 1;
  st->t_resp_head = st_now(st);
  int nobody = st->method_head || code == 204 || code == 304;
  /* A known length is relayed as content-length (it lets clients show progress); DATA is
   * checked against it by the parser, which ends the body there. */
  int with_cl = (p->flags & F_CONTENT_LENGTH) && !(p->flags & F_CHUNKED) && code != 204;
  if ((p->flags & F_CONTENT_LENGTH) && p->content_length == 0 && !(p->flags & F_CHUNKED))
    nobody = 1;
  ae_buf store = {0};
  nghttp2_nv *nva = NULL;
  size_t n = ae_h2_response_nva(&st->ur.head, code, with_cl, &store, &nva);
  ae_h2s_submit(st, nva, n, !nobody);
  free(nva);
  ae_buf_free(&store);
  return st->method_head ? 1 : 0;
}

static void rs_body(void *ud, const char *at, size_t n) {
  ae_h2stream *st = ud;
  ae_buf_add(&st->rbody, at, n);
  st->bytes_out += n;
}

static void rs_complete(void *ud, int keep_alive) {
  ae_h2stream *st = ud;
  st->up_reusable = keep_alive && st->req_end;
  st->resp_done = 1;
}

/* Trailers are kept: they become the trailing HEADERS frame. */
static const ae_uresp_ops rs_ops = {rs_head, rs_body, NULL, NULL, rs_complete};

/* ---------- exchange ---------- */

static void up_fail(ae_h2stream *st, int status, const char *why) {
  ae_transport *t = st->hc->t;
  AE_WARN("proxy", "%s %s: h2 stream %d: upstream %s: %s", t ? t->peer_ip : "-", st->host, st->id,
          st->pool ? ae_upool_name(st->pool) : "-", why);
  if (st->u) {
    ae_uconn_abort(st->u);
    st->u = NULL;
  }
  if (st->submitted) {
    ae_metrics_inc(AE_M_UPSTREAM_ERRORS);
    if (!st->status)
      st->status = status;
    nghttp2_submit_rst_stream(st->hc->s, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_INTERNAL_ERROR);
  } else {
    ae_h2s_local(st, status, why);
  }
  /* Request bytes still arriving are dropped: their credit goes back at once. */
  ae_h2s_consume(st);
  st_flush(st);
}

/* The response is complete: the upstream connection goes back to the pool when the whole request
 * went out too, and is closed otherwise. */
static void up_done(ae_h2stream *st) {
  if (st->u && (st->req_end || !st->up_reusable)) {
    ae_uconn_release(st->u, st->up_reusable && st->req_end);
    st->u = NULL;
  } else if (st->u) {
    /* Answered before the request body ended: that body can no longer be framed safely. */
    ae_uconn_abort(st->u);
    st->u = NULL;
  }
  ae_h2s_consume(st);
  ae_h2s_body_ready(st);
  st_flush(st);
}

void ae_h2u_start(ae_h2stream *st, const ae_buf *head) {
  st->t_up_start = st_now(st);
  st->t_connected = 0;
  st->resp_head = st->resp_done = 0;
  ae_uresp_init(&st->ur, st->cfg, 1, &rs_ops, st);
  int r = ae_uconn_acquire(&st->hc->px->ups, st->pool, st->retried, &u_handler, st, &st->u, &st->u_reused);
  if (r < 0) {
    st->u = NULL;
    up_fail(st, 502, uv_strerror(r));
    return;
  }
  if (st->u_reused) {
    st->t_connected = st->t_up_io = st_now(st);
    ae_uconn_read_start(st->u);
  }
  ae_uconn_write(st->u, head->d, head->len);
  /* Kept for the one retry a request without body may get on a stale pooled connection. */
  if (st->body_mode == 0 && !st->retried) {
    st->uhead.len = 0;
    ae_buf_add(&st->uhead, head->d, head->len);
  }
}

void ae_h2u_body(ae_h2stream *st, const char *data, size_t len) {
  if (!st->u || st->resp_done) {
    ae_h2s_consume(st);
    return;
  }
  if (st->body_mode == 2) {
    char hx[24];
    int hl = snprintf(hx, sizeof(hx), "%zx\r\n", len);
    ae_uconn_write(st->u, hx, (size_t)hl);
  }
  ae_uconn_write(st->u, data, len);
  if (st->body_mode == 2)
    ae_uconn_write(st->u, "\r\n", 2);
  if (ae_uconn_queued(st->u) == 0)
    ae_h2s_consume(st);
}

void ae_h2u_request_end(ae_h2stream *st) {
  if (st->u && st->body_mode == 2 && !st->resp_done) {
    ae_uconn_write(st->u, "0\r\n", 3);
    if (st->qtrail.len)
      ae_uconn_write(st->u, st->qtrail.d, st->qtrail.len);
    ae_uconn_write(st->u, "\r\n", 2);
  }
  if (st->u && st->resp_done)
    up_done(st);
}

void ae_h2u_stop(ae_h2stream *st) {
  if (st->u) {
    /* Reset or torn down mid-exchange: the connection's state is unknown, never reuse it. */
    ae_uconn_abort(st->u);
    st->u = NULL;
  }
}

void ae_h2u_resume_reading(ae_h2stream *st) {
  if (st->ups_rstop && st->rbody.len <= AE_H2_RESP_CAP / 2) {
    st->ups_rstop = 0;
    st->t_up_io = st_now(st);
    if (st->u)
      ae_uconn_read_start(st->u);
  }
}

static int idempotent(const ae_h2stream *st) {
  static const char *const m[] = {"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"};
  const char *x = st->rq.has_method ? st->rq.ps.d + st->rq.method : "";
  for (size_t i = 0; i < AE_ARRAY_LEN(m); i++)
    if (strcmp(x, m[i]) == 0)
      return 1;
  return 0;
}

static void u_on_connect(void *ud, int status) {
  ae_h2stream *st = ud;
  if (status < 0) {
    st->u = NULL;
    up_fail(st, 502, uv_strerror(status));
    return;
  }
  st->t_connected = st->t_up_io = st_now(st);
  if (st->u && ae_uconn_queued(st->u) == 0)
    ae_h2s_consume(st);
  st_flush(st);
}

static void u_failed(ae_h2stream *st, int err) {
  if (!st->resp_head && st->u_reused && !st->retried && st->body_mode == 0 && st->req_end && idempotent(st) &&
      st->ur.scan.bytes == 0) {
    /* A pooled connection the upstream had closed: nothing was answered and there is no body
     * to replay, so the request goes once more on a new connection. */
    ae_uconn_abort(st->u);
    st->u = NULL;
    st->retried = 1;
    ae_buf head = st->uhead;
    memset(&st->uhead, 0, sizeof(st->uhead));
    ae_h2u_start(st, &head);
    ae_buf_free(&head);
    st_flush(st);
    return;
  }
  if (st->resp_head && err == UV_EOF) {
    if (ae_uresp_eof(&st->ur)) {
      st->up_reusable = 0;
      up_done(st);
      return;
    }
  }
  up_fail(st, 502, err == UV_EOF ? "upstream closed the connection" : uv_strerror(err));
}

static void u_on_read(void *ud, const char *data, ssize_t n) {
  ae_h2stream *st = ud;
  st->t_up_io = st_now(st);
  if (n < 0) {
    u_failed(st, (int)n);
    return;
  }
  if (st->resp_done)
    return;
  size_t off = 0, len = (size_t)n;
  const char *why = NULL;
  if (ae_uresp_feed(&st->ur, data, len, &off, &why) == AE_UR_BAD) {
    up_fail(st, 502, why);
    return;
  }
  if (st->resp_done) {
    if (off < len)
      st->up_reusable = 0; /* bytes after the response: the upstream is out of step */
    up_done(st);
    return;
  }
  if (st->rbody.len > AE_H2_RESP_CAP && st->u && !st->ups_rstop) {
    st->ups_rstop = 1;
    ae_uconn_read_stop(st->u);
  }
  ae_h2s_body_ready(st);
  st_flush(st);
}

static void u_on_drain(void *ud) {
  ae_h2stream *st = ud;
  st->t_up_io = st_now(st);
  ae_h2s_consume(st);
  st_flush(st);
}

static void u_on_write_error(void *ud, int status) {
  ae_h2stream *st = ud;
  if (st->resp_head) {
    st->up_reusable = 0;
    return;
  }
  u_failed(st, status);
}

/* ---------- timeouts ---------- */

uint64_t ae_h2s_deadline(ae_h2stream *st) {
  if (!st->u || st->resp_done)
    return 0;
  const ae_config *cfg = st->cfg;
  if (!ae_uconn_connected(st->u))
    return st->t_up_start + ae_px_ms(cfg->proxy.connect_timeout_ms, AE_PX_DEF_CONNECT_MS);
  if (st->ups_rstop)
    return 0;
  unsigned rt = ae_px_ms(cfg->proxy.response_timeout_ms, AE_PX_DEF_RESPONSE_MS);
  if (!st->resp_head && !st->req_end)
    return 0; /* still receiving the request: the client's flow control paces it */
  uint64_t from = st->t_up_io > st->t_connected ? st->t_up_io : st->t_connected;
  return from + rt;
}

void ae_h2s_timeout(ae_h2stream *st) {
  int connect = st->u && !ae_uconn_connected(st->u);
  up_fail(st, 504, connect ? "upstream connect timeout" : "upstream response timeout");
}
