/* Reverse proxy, upstream side of one exchange: takes a pooled or new upstream connection,
 * parses the response with llhttp (plus the raw head checks), re-frames it for the client,
 * applies the retry rule for stale pooled connections, reports 502/504, and runs the byte
 * tunnel after a WebSocket 101. */
#include <string.h>

#include "acmedge/common.h"
#include "acmedge/log.h"
#include "acmedge/metrics.h"
#include "proxy_client.h"

static void u_on_connect(void *ud, int status);
static void u_on_read(void *ud, const char *data, ssize_t n);
static void u_on_drain(void *ud);
static void u_on_write_error(void *ud, int status);

static const ae_uconn_handler u_handler = {u_on_connect, u_on_read, u_on_drain, u_on_write_error};

static int idempotent(int method) {
  return method == HTTP_GET || method == HTTP_HEAD || method == HTTP_OPTIONS || method == HTTP_TRACE ||
         method == HTTP_PUT || method == HTTP_DELETE;
}

void ae_px_connect(ae_pclient *c, int fresh) {
  c->t_up_start = ae_px_now(c);
  c->t_connected = 0;
  c->resp_started = c->resp_head = c->resp_done = 0;
  c->resp_src_chunked = 0;
  c->up_write_dead = 0;
  ae_uresp_init(&c->ur, ae_px_cfg(c), 0, &ae_px_resp_ops, c);
  int r = ae_uconn_acquire(&c->px->ups, c->pool, fresh, &u_handler, c, &c->u, &c->u_reused);
  if (r < 0) {
    c->u = NULL;
    ae_px_upstream_error(c, 502, uv_strerror(r));
    return;
  }
  if (c->u_reused) {
    c->t_connected = c->t_up_io = ae_px_now(c);
    ae_uconn_read_start(c->u);
  }
  ae_buf_add(&c->uout, c->uhead.d, c->uhead.len);
}

void ae_px_upstream_error(ae_pclient *c, int status, const char *why) {
  if (c->closing)
    return;
  AE_WARN("proxy", "%s %s%.*s: %d %s: %s (route %d, upstream %s)", c->t ? c->t->peer_ip : "-", c->host,
          (int)(c->req.ulen > 256 ? 256 : c->req.ulen), c->req.b.d ? c->req.b.d + c->req.url : "", status,
          ae_status_text(status), why, c->route_idx, c->pool ? ae_upool_name(c->pool) : "-");
  ae_metrics_inc(AE_M_UPSTREAM_ERRORS);
  if (c->u) {
    ae_uconn_abort(c->u);
    c->u = NULL;
  }
  c->uout.len = 0;
  if (c->resp_head || c->local) {
    /* Part of a response already went out: the client learns of the failure by the close. */
    if (c->status == 0)
      c->status = status;
    ae_px_access_log(c);
    ae_px_close(c, 1);
    return;
  }
  int keep = c->req_keepalive && (c->req_done || c->req_body == 0) && !c->ws;
  c->local = status;
  c->status = status;
  c->close_after = !keep;
  c->bytes_out = ae_build_error(&c->out, status, keep, c->minor);
  c->resp_done = 1;
  ae_px_finish(c);
}

void ae_px_up_timeout(ae_pclient *c, int connect) {
  ae_px_upstream_error(c, 504, connect ? "upstream connect timeout" : "upstream response timeout");
}

uint64_t ae_px_up_deadline(ae_pclient *c, int *connect) {
  *connect = 0;
  if (!c->u || c->phase == P_TUNNEL || c->resp_done)
    return 0;
  const ae_config *cfg = ae_px_cfg(c);
  if (!ae_uconn_connected(c->u)) {
    *connect = 1;
    return c->t_up_start + ae_px_ms(cfg->proxy.connect_timeout_ms, AE_PX_DEF_CONNECT_MS);
  }
  unsigned rt = ae_px_ms(cfg->proxy.response_timeout_ms, AE_PX_DEF_RESPONSE_MS);
  if (!c->resp_head) {
    if (c->req_done) {
      uint64_t from = c->t_req_done > c->t_connected ? c->t_req_done : c->t_connected;
      if (c->t_up_io > from)
        from = c->t_up_io;
      return from + rt;
    }
    /* Still sending the request: only an upstream that stops taking bytes is timed. */
    if (c->rstop & RS_UPQ)
      return c->t_up_io + rt;
    return 0;
  }
  if (c->ups_rstop)
    return 0;
  return c->t_up_io + rt;
}

/* ---------- response parsing ---------- */

static void count_status(int st) {
  if (st < 200)
    ae_metrics_inc(AE_M_UPSTREAM_1XX);
  else if (st < 300)
    ae_metrics_inc(AE_M_UPSTREAM_2XX);
  else if (st < 400)
    ae_metrics_inc(AE_M_UPSTREAM_3XX);
  else if (st < 500)
    ae_metrics_inc(AE_M_UPSTREAM_4XX);
  else
    ae_metrics_inc(AE_M_UPSTREAM_5XX);
}

static int rs_head(void *ud, llhttp_t *p) {
  ae_pclient *c = ud;
  int st = p->status_code;
  c->t_up_io = ae_px_now(c);
  if (st == 101) {
    if (!c->ws || !ae_hmsg_has_token(&c->ur.head, "upgrade", "websocket")) {
      llhttp_set_error_reason(p, "unexpected 101 Switching Protocols");
      return -1;
    }
    count_status(st);
    c->ws101 = 1;
    c->status = 101;
    c->resp_head = 1;
    c->t_resp_head = ae_px_now(c);
    ae_build_client_head(&c->out, &c->ur.head, 101, c->minor, AE_FRAME_NONE, 0, 1, 1);
    return 0;
  }
  if (st < 200) {
    /* HTTP/1.0 clients do not understand interim responses. */
    if (c->minor >= 1)
      ae_build_client_head(&c->out, &c->ur.head, st, 1, AE_FRAME_NONE, 0, 1, 0);
    return 0;
  }
  count_status(st);
  c->status = st;
  c->resp_head = 1;
  c->t_resp_head = ae_px_now(c);
  int head = c->method == HTTP_HEAD;
  int framing;
  uint64_t cl = 0;
  if (head || st == 204 || st == 304) {
    framing = AE_FRAME_NONE;
    if ((p->flags & F_CONTENT_LENGTH) && st != 204) {
      framing = AE_FRAME_CL;
      cl = p->content_length;
    }
  } else if (p->flags & F_CHUNKED) {
    framing = c->minor ? AE_FRAME_CHUNKED : AE_FRAME_CLOSE;
  } else if (p->flags & F_CONTENT_LENGTH) {
    framing = AE_FRAME_CL;
    cl = p->content_length;
  } else {
    /* Read-until-close body: re-chunked for HTTP/1.1 clients so their connection survives. */
    framing = c->minor ? AE_FRAME_CHUNKED : AE_FRAME_CLOSE;
  }
  c->framing = framing;
  c->resp_src_chunked = (p->flags & F_CHUNKED) != 0;
  int keep = c->req_keepalive && framing != AE_FRAME_CLOSE && c->req_done && !c->ws && !c->px->closing &&
             !c->read_eof;
  c->close_after = !keep;
  ae_build_client_head(&c->out, &c->ur.head, st, c->minor, framing, cl, keep, 0);
  /* A HEAD response has no body whatever its fields say; framing NONE/CL emits nothing. */
  if (head)
    c->framing = AE_FRAME_NONE;
  return head ? 1 : 0;
}

static void rs_body(void *ud, const char *at, size_t n) {
  ae_pclient *c = ud;
  /* A chunked upstream body keeps its chunk boundaries (see rs_chunk_header); anything else is
   * framed per piece. */
  if (c->framing == AE_FRAME_CHUNKED && !c->resp_src_chunked) {
    ae_buf_reserve(&c->out, n + 24);
    ae_buf_addhex(&c->out, n);
    ae_buf_add(&c->out, "\r\n", 2);
    ae_buf_add(&c->out, at, n);
    ae_buf_add(&c->out, "\r\n", 2);
  } else {
    ae_buf_add(&c->out, at, n);
  }
  c->bytes_out += n;
}

static void rs_chunk_size(void *ud, uint64_t size) {
  ae_pclient *c = ud;
  if (c->framing == AE_FRAME_CHUNKED) {
    ae_buf_addhex(&c->out, size);
    ae_buf_add(&c->out, "\r\n", 2);
  }
}

static void rs_chunk_end(void *ud) {
  ae_pclient *c = ud;
  if (c->framing == AE_FRAME_CHUNKED)
    ae_buf_add(&c->out, "\r\n", 2);
}

static void rs_complete(void *ud, int keep_alive) {
  ae_pclient *c = ud;
  c->up_reusable = keep_alive && !c->ws101 && c->req_done && !c->up_write_dead;
  if (c->framing == AE_FRAME_CHUNKED)
    ae_buf_add(&c->out, "0\r\n\r\n", 5);
  c->resp_done = 1;
}

const ae_uresp_ops ae_px_resp_ops = {rs_head, rs_body, rs_chunk_size, rs_chunk_end, rs_complete};

/* ---------- upstream events ---------- */

static void u_on_connect(void *ud, int status) {
  ae_pclient *c = ud;
  if (status < 0) {
    c->u = NULL;  /* already gone */
    ae_px_upstream_error(c, 502, uv_strerror(status));
    ae_px_timer_update(c);
    return;
  }
  c->t_connected = c->t_up_io = ae_px_now(c);
  ae_px_check_bp(c);
  ae_px_timer_update(c);
}

static void u_failed(ae_pclient *c, int err) {
  if (c->phase == P_TUNNEL) {
    ae_px_close(c, 0);
    return;
  }
  if (!c->resp_started && c->u_reused && !c->retried && c->req_body == 0 && idempotent(c->method) && c->req_done) {
    /* A pooled connection the upstream had closed: the request can go again, once, on a new
     * connection, since nothing of it was answered and it has no body to replay. */
    AE_DEBUG("proxy", "retrying on a new connection to %s after %s", ae_upool_name(c->pool), uv_strerror(err));
    ae_uconn_abort(c->u);
    c->u = NULL;
    c->retried = 1;
    ae_px_connect(c, 1);
    ae_px_flush(c);
    ae_px_timer_update(c);
    return;
  }
  if (!c->resp_head) {
    ae_px_upstream_error(c, 502,
                         err == UV_EOF ? "upstream closed the connection before responding" : uv_strerror(err));
    return;
  }
  /* A close-delimited body ends at EOF; llhttp_finish completes it. */
  if (err == UV_EOF) {
    if (ae_uresp_eof(&c->ur)) {
      c->up_reusable = 0;
      ae_px_flush(c);
      ae_px_finish(c);
      return;
    }
  }
  ae_px_upstream_error(c, 502, err == UV_EOF ? "upstream closed the connection mid-response" : uv_strerror(err));
}

static void u_on_read(void *ud, const char *data, ssize_t n) {
  ae_pclient *c = ud;
  if (c->closing)
    return;
  c->t_up_io = ae_px_now(c);
  if (n < 0) {
    u_failed(c, (int)n);
    return;
  }
  if (c->phase == P_TUNNEL) {
    if (c->t)
      ae_transport_write(c->t, data, (size_t)n);
    ae_px_check_bp(c);
    return;
  }
  if (c->resp_done) {
    c->up_reusable = 0;
    return;
  }
  c->resp_started = 1;
  size_t off = 0, len = (size_t)n;
  const char *why = NULL;
  if (ae_uresp_feed(&c->ur, data, len, &off, &why) == AE_UR_BAD) {
    ae_px_upstream_error(c, 502, why);
    return;
  }
  if (c->closing)
    return;
  if (c->resp_done) {
    if (c->ws101) {
      ae_px_start_tunnel(c, data + off, len - off);
      return;
    }
    if (off < len)
      c->up_reusable = 0;
    ae_px_flush(c);
    ae_px_finish(c);
    return;
  }
  ae_px_flush(c);
  ae_px_timer_update(c);
}

static void u_on_drain(void *ud) {
  ae_pclient *c = ud;
  if (c->closing)
    return;
  c->t_up_io = ae_px_now(c);
  ae_px_check_bp(c);
  ae_px_timer_update(c);
}

static void u_on_write_error(void *ud, int status) {
  ae_pclient *c = ud;
  if (c->closing)
    return;
  if (c->resp_started && c->phase != P_TUNNEL) {
    /* The upstream answered (perhaps early, e.g. 413) and stopped reading: let the response
     * finish, but the connection cannot be reused. */
    c->up_write_dead = 1;
    c->up_reusable = 0;
    return;
  }
  u_failed(c, status);
}

void ae_px_start_tunnel(ae_pclient *c, const char *rest, size_t n) {
  c->phase = P_TUNNEL;
  ae_px_access_log(c);
  if (n)
    ae_buf_add(&c->out, rest, n);
  /* Bytes the client sent after its upgrade request belong to the new protocol. */
  if (c->in.len) {
    ae_buf_add(&c->uout, c->in.d, c->in.len);
    c->in.len = 0;
  }
  c->rp_paused = 0;
  c->t_client_io = c->t_up_io = ae_px_now(c);
  ae_px_flush(c);
  ae_px_rstart(c, RS_INBUF);
  if (c->read_eof) {
    ae_px_close(c, 0);
    return;
  }
  ae_px_timer_update(c);
}
