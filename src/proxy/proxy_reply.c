/* Reverse proxy, answers the proxy makes itself (a rejected request, or a well-formed one it
 * cannot route) and the access log line written once per exchange. */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "acmedge/common.h"
#include "acmedge/log.h"
#include "acmedge/metrics.h"
#include "proxy_client.h"

void ae_px_access_write(const ae_px_access *a) {
  char ts[40];
  ae_time_rfc3339((int64_t)time(NULL), ts, sizeof(ts));
  size_t plen = a->plen > 1024 ? 1024 : a->plen;
  ae_buf j = {0};
  ae_buf_reserve(&j, 256 + plen);
  ae_buf_adds(&j, "{\"time\":\"");
  ae_buf_adds(&j, ts);
  ae_buf_adds(&j, "\",\"client\":");
  ae_buf_addjson(&j, a->ip, strlen(a->ip));
  if (a->h2_stream) {
    ae_buf_adds(&j, ",\"protocol\":\"HTTP/2\",\"stream\":");
    ae_buf_addu(&j, a->h2_stream);
  }
  ae_buf_adds(&j, ",\"host\":");
  ae_buf_addjson(&j, a->host, strlen(a->host));
  ae_buf_adds(&j, ",\"method\":");
  ae_buf_addjson(&j, a->method, strlen(a->method));
  ae_buf_adds(&j, ",\"path\":");
  ae_buf_addjson(&j, a->path, plen);
  ae_buf_adds(&j, ",\"status\":");
  ae_buf_addu(&j, (uint64_t)a->status);
  ae_buf_adds(&j, ",\"bytes\":");
  ae_buf_addu(&j, a->bytes);
  ae_buf_adds(&j, ",\"upstream_ms\":");
  if (a->upstream_ms >= 0)
    ae_buf_addu(&j, (uint64_t)a->upstream_ms);
  else
    ae_buf_adds(&j, "null");
  ae_buf_adds(&j, ",\"upstream\":");
  if (a->pool) {
    const char *un = ae_upool_name(a->pool);
    ae_buf_addjson(&j, un, strlen(un));
  } else {
    ae_buf_adds(&j, "null");
  }
  ae_buf_adds(&j, "}");
  ae_buf_add(&j, "", 1);
  char msg[1200];
  snprintf(msg, sizeof(msg), "%s %s %s%.*s %d%s", a->ip, a->method, a->host, (int)plen, a->path, a->status,
           a->h2_stream ? " HTTP/2" : "");
  ae_log_structured(AE_LOG_INFO, "access", msg, j.d);
  ae_buf_free(&j);
}

void ae_px_access_log(ae_pclient *c) {
  if (c->logged)
    return;
  c->logged = 1;
  if (!ae_log_enabled(AE_LOG_INFO))
    return;
  /* Once the head was accepted the method is kept in c->method: the parser is reset after a
   * chunked body, which the proxy frames itself. */
  int m = c->phase >= P_BODY ? c->method : (int)c->rp.method;
  ae_px_access a = {
      .ip = c->t ? c->t->peer_ip : "-",
      .host = c->host,
      .method = c->req.ulen ? llhttp_method_name((llhttp_method_t)m) : "-",
      .path = c->req.ulen ? c->req.b.d + c->req.url : "-",
      .plen = c->req.ulen ? c->req.ulen : 1,
      .status = c->status,
      .bytes = c->bytes_out,
      .upstream_ms = c->t_resp_head && c->t_up_start ? (long long)(c->t_resp_head - c->t_up_start) : -1,
      .pool = c->pool && !c->local ? c->pool : NULL,
  };
  ae_px_access_write(&a);
}

void ae_px_reject(ae_pclient *c, int status, const char *reason, const char *why) {
  if (c->closing)
    return;
  if (reason) {
    AE_INFO("proxy", "%s: %d %s: refused (%s): %s", c->t ? c->t->peer_ip : "-", status, ae_status_text(status),
            reason, why);
    ae_metrics_count_label("http_rejected", reason);
  } else {
    AE_INFO("proxy", "%s: %d %s: %s", c->t ? c->t->peer_ip : "-", status, ae_status_text(status), why);
  }
  if (c->u) {
    ae_uconn_abort(c->u);
    c->u = NULL;
  }
  c->uout.len = 0;
  if (c->resp_head || c->local) {
    ae_px_access_log(c);
    ae_px_close(c, 1);
    return;
  }
  c->status = status;
  c->local = status;
  c->bytes_out = ae_build_error(&c->out, status, 0, c->minor);
  c->resp_done = 1;
  ae_px_access_log(c);
  ae_px_close(c, 0);
}

int ae_px_local(ae_pclient *c, int status, const char *why) {
  AE_WARN("proxy", "%s %s%.*s: %d %s: %s", c->t ? c->t->peer_ip : "-", c->host,
          (int)(c->req.ulen > 256 ? 256 : c->req.ulen), c->req.b.d ? c->req.b.d + c->req.url : "", status,
          ae_status_text(status), why);
  if (status >= 500)
    ae_metrics_inc(AE_M_UPSTREAM_ERRORS);
  c->pool = NULL;
  if (c->req_body) {
    /* Skipping an unwanted body costs more than a new connection. */
    ae_px_reject(c, status, NULL, why);
    return -1;
  }
  c->local = status;
  c->status = status;
  c->close_after = !c->req_keepalive || c->ws;
  c->bytes_out = ae_build_error(&c->out, status, !c->close_after, c->minor);
  c->resp_done = 1;
  return 0;
}
