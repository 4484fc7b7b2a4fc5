/* Reverse proxy, request side: the proxy's framing decision for each client request (head
 * scanner, llhttp over the accepted head, ae_req_analyze, the chunked body scanner; see
 * docs/http-framing.md), routing by Host and the head sent upstream. */
#include <stdlib.h>
#include <string.h>

#include "acmedge/common.h"
#include "acmedge/log.h"
#include "acmedge/metrics.h"
#include "proxy_client.h"

static void ch_size(void *ud, uint64_t size);
static void ch_data(void *ud, const char *at, size_t n);
static void ch_end(void *ud);


static int rq_begin(llhttp_t *p) {
  ae_pclient *c = p->data;
  ae_hmsg_reset(&c->req);
  return 0;
}

static int rq_url(llhttp_t *p, const char *at, size_t n) {
  ae_pclient *c = p->data;
  ae_hmsg_on_url(&c->req, at, n);
  return 0;
}

static int rq_field(llhttp_t *p, const char *at, size_t n) {
  ae_pclient *c = p->data;
  ae_hmsg_on_field(&c->req, at, n);
  return 0;
}

static int rq_value(llhttp_t *p, const char *at, size_t n) {
  ae_pclient *c = p->data;
  ae_hmsg_on_value(&c->req, at, n);
  return 0;
}

static int c_request_head(ae_pclient *c) {
  ae_proxy *px = c->px;
  llhttp_t *p = &c->rp;
  c->phase = P_BODY;
  c->minor = p->http_minor;
  c->method = p->method;
  c->t_client_io = ae_px_now(c);
  ae_metrics_count_label("proxy_requests", "h1");
  if (p->lenient_flags) {
    ae_px_reject(c, 400, "parser", "parser in lenient mode");
    return -1;
  }
  if (c->method == HTTP_CONNECT) {
    ae_px_reject(c, 405, "method", "CONNECT is not supported");
    return -1;
  }
  ae_reqinfo ri;
  const char *why = NULL;
  int st = ae_req_analyze(&c->req, p->http_major, p->http_minor, c->method == HTTP_GET, &ri, &why);
  if (st) {
    ae_px_reject(c, st, ri.reason ? ri.reason : "parser", why ? why : "bad request");
    return -1;
  }
  /* During a drain every response says Connection: close and the connection ends after it. */
  c->req_keepalive = llhttp_should_keep_alive(p) && !c->px->draining;
  c->req_body = ri.chunked ? 2 : (ri.has_cl && ri.cl > 0 ? 1 : 0);
  if (ri.chunked) {
    ae_cscan_reset(&c->cscan, ae_px_ms(ae_px_cfg(c)->proxy.max_header_bytes, AE_PX_DEF_MAX_HEADER_BYTES),
                   AE_CHUNK_EXT_MAX);
    c->cscan.ud = c;
    c->cscan.on_size = ch_size;
    c->cscan.on_data = ch_data;
    c->cscan.on_chunk_end = ch_end;
    c->cscan_on = 1;
  }
  /* Only WebSocket upgrades are tunnelled; any other Upgrade is dropped as hop-by-hop and the
   * connection stays HTTP/1.1. */
  if (p->upgrade && !ri.websocket)
    p->upgrade = 0;
  c->ws = ri.websocket;

  const char *sni = c->t ? c->t->sni : "";
  const char *hv = ri.host;
  size_t hl = ri.host_len;
  int from_sni = 0;
  if (!hv || !hl) {
    hv = sni;
    hl = strlen(sni);
    from_sni = 1;
  }
  if (hl && ae_host_normalize(hv, hl, c->host, sizeof(c->host)) != 0) {
    ae_px_reject(c, 400, "host", "invalid Host");
    return -1;
  }
  if (!hl)
    c->host[0] = 0;

  c->cfg = ae_config_ref(px->cfg);
  const ae_config *cfg = c->cfg;
  if (!from_sni && sni[0] && ae_strcasecmp(c->host, sni) != 0)
    return ae_px_local(c, 421, "Host does not match the TLS server name");

  const ae_route *route = ae_config_route(cfg, c->host);
  if (route)
    c->route_idx = (int)(route - cfg->routes);
  if (!route)
    return ae_px_local(c, 502, "no route for host");
  if (!c->t->is_tls && !route->plain_http)
    return ae_px_local(c, 502, "route not enabled for plain HTTP");
  c->pool = ae_ups_pool(&px->ups, route->upstream);
  if (!c->pool)
    return ae_px_local(c, 502, "invalid upstream address");

  ae_fwd fw;
  memset(&fw, 0, sizeof(fw));
  fw.method = llhttp_method_name((llhttp_method_t)c->method);
  fw.minor = c->minor;
  fw.client_ip = c->t->peer_ip;
  fw.trusted = cfg->ntrusted_proxies && ae_ip_in_list(c->t->peer_ip, cfg->trusted_proxies, cfg->ntrusted_proxies);
  fw.https = c->t->is_tls;
  fw.host = hv;
  fw.host_len = hl;
  fw.websocket = c->ws;
  fw.body = ri.chunked ? 2 : (ri.has_cl ? 1 : 0);
  fw.cl = ri.cl;
  c->uhead.len = 0;
  ae_build_upstream_head(&c->uhead, &c->req, &ri, &fw);
  int answered = 0, arc = ae_px_auth(c, route, &answered);
  if (answered)
    return arc;
  ae_px_connect(c, 0);
  return c->closing ? -1 : 0;
}

static int rq_headers_complete(llhttp_t *p) {
  ae_pclient *c = p->data;
  return c_request_head(c);
}

/* A Content-Length body is forwarded as it comes. */
static int rq_body(llhttp_t *p, const char *at, size_t n) {
  ae_pclient *c = p->data;
  if (c->u && !c->up_write_dead)
    ae_buf_add(&c->uout, at, n);
  return 0;
}

/* A chunked request body never reaches llhttp: the proxy's scanner frames it and re-frames it for
 * the upstream with the client's chunk sizes, minus extensions and trailers. */
static void ch_size(void *ud, uint64_t size) {
  ae_pclient *c = ud;
  if (size && c->u && !c->up_write_dead) {
    ae_buf_addhex(&c->uout, size);
    ae_buf_add(&c->uout, "\r\n", 2);
  }
}

static void ch_data(void *ud, const char *at, size_t n) {
  ae_pclient *c = ud;
  if (c->u && !c->up_write_dead)
    ae_buf_add(&c->uout, at, n);
}

static void ch_end(void *ud) {
  ae_pclient *c = ud;
  if (c->u && !c->up_write_dead)
    ae_buf_add(&c->uout, "\r\n", 2);
}

/* The request is complete: the next pipelined one waits until this exchange is over. */
static void c_request_done(ae_pclient *c) {
  c->req_done = 1;
  c->t_req_done = ae_px_now(c);
  if (c->u && c->req_body == 2 && !c->up_write_dead)
    ae_buf_add(&c->uout, "0\r\n\r\n", 5);
  c->rp_paused = 1;
  if (c->resp_done)
    ae_px_finish(c);
}

static int rq_message_complete(llhttp_t *p) {
  c_request_done(p->data);
  return HPE_PAUSED;
}

const llhttp_settings_t ae_px_req_settings = {
    .on_message_begin = rq_begin,
    .on_url = rq_url,
    .on_header_field = rq_field,
    .on_header_value = rq_value,
    .on_headers_complete = rq_headers_complete,
    .on_body = rq_body,
    .on_message_complete = rq_message_complete,
};

static void c_begin(ae_pclient *c) {
  const ae_config *cfg = c->px->cfg;
  c->phase = P_HEAD;
  c->t_start = ae_px_now(c);
  ae_hlimits lim = {ae_px_ms(cfg->proxy.max_header_bytes, AE_PX_DEF_MAX_HEADER_BYTES),
                    ae_px_ms(cfg->proxy.max_header_line_bytes, AE_PX_DEF_MAX_LINE_BYTES),
                    ae_px_ms(cfg->proxy.max_request_line_bytes, AE_PX_DEF_MAX_LINE_BYTES),
                    ae_px_ms(cfg->proxy.max_headers, AE_PX_DEF_MAX_HEADERS)};
  ae_hscan_reset_req(&c->rscan, &lim);
  c->rscan_on = 1;
  c->rscan_fed = 0;
  c->cscan_on = 0;
  ae_px_timer_update(c);
}

/* Answers a head the scanner refused. */
static void c_head_refused(ae_pclient *c, int r) {
  int status = r == AE_HS_BAD ? 400 : r == AE_HS_LONGLINE ? 414 : r == AE_HS_VERSION ? 505 : 431;
  ae_px_reject(c, status, c->rscan.reason, c->rscan.why);
}

static int ieq_prefix(const char *a, const char *lit, size_t n) {
  for (size_t i = 0; i < n; i++) {
    char x = a[i];
    if (x >= 'A' && x <= 'Z')
      x = (char)(x + 32);
    if (x != lit[i])
      return 0;
  }
  return 1;
}

/* llhttp 8.1 knows HTTP/1.0 and 1.1 only, and refuses an HTAB after "chunked" that RFC 9110 §5.6.3
 * allows as OWS. The scanner has accepted the head already, so llhttp is given a copy in which a
 * later 1.x minor reads as 1.1 (RFC 9110 §2.5) and HTAB in Transfer-Encoding (hop-by-hop, never
 * forwarded) reads as SP. Returns head itself when nothing needs rewriting. */
static const char *c_head_for_llhttp(ae_pclient *c, const char *head, size_t len, ae_buf *tmp) {
  static const char te[] = "\r\ntransfer-encoding:";
  const size_t tel = sizeof(te) - 1;
  int fix_minor = c->rscan.minor > 1 && c->rscan.minor_at >= 1 && c->rscan.minor_at <= len;
  int has_tab = memchr(head, '\t', len) != NULL;
  if (!fix_minor && !has_tab)
    return head;
  tmp->len = 0;
  ae_buf_add(tmp, head, len);
  if (fix_minor)
    tmp->d[c->rscan.minor_at - 1] = '1';
  for (size_t i = 0; has_tab && i + tel <= len; i++) {
    if (tmp->d[i] != '\r' || !ieq_prefix(tmp->d + i, te, tel))
      continue;
    for (size_t j = i + tel; j < len && tmp->d[j] != '\r'; j++)
      if (tmp->d[j] == '\t')
        tmp->d[j] = ' ';
  }
  return tmp->d;
}

/* Metrics label for a request llhttp refuses after the scanner accepted it. */
static const char *llhttp_reason(llhttp_errno_t e, const char *text) {
  switch (e) {
  case HPE_INVALID_TRANSFER_ENCODING:
    return "transfer_encoding";
  case HPE_UNEXPECTED_CONTENT_LENGTH: /* duplicate, or together with Transfer-Encoding */
    return text && strstr(text, "Transfer-Encoding") ? "transfer_encoding" : "content_length";
  case HPE_INVALID_CONTENT_LENGTH:
    return "content_length";
  case HPE_INVALID_METHOD:
  case HPE_INVALID_URL:
  case HPE_INVALID_VERSION:
    return "request_line";
  case HPE_INVALID_HEADER_TOKEN:
    return "header_syntax";
  default:
    return "parser";
  }
}

/* Runs llhttp over bytes the scanners accepted; returns the bytes it consumed, or -1 when the
 * request was refused. */
static ssize_t c_llhttp(ae_pclient *c, const char *base, size_t len) {
  llhttp_errno_t e = llhttp_execute(&c->rp, base, len);
  if (c->closing)
    return -1;
  if (e == HPE_PAUSED) {
    size_t done = (size_t)(llhttp_get_error_pos(&c->rp) - base);
    llhttp_resume(&c->rp);
    return (ssize_t)done;
  }
  if (e != HPE_OK) {
    const char *reason = llhttp_get_error_reason(&c->rp);
    ae_px_reject(c, 400, llhttp_reason(e, reason), reason ? reason : llhttp_errno_name(e));
    return -1;
  }
  return (ssize_t)len;
}

/* Parses one step of data (from the start of the current request's unparsed bytes): the head is
 * held back until the scanner has seen all of it, so llhttp only ever parses a head the proxy
 * accepted; a chunked body is framed by the proxy's own scanner alone. Returns the bytes consumed
 * (0: more input needed) or -1 when the connection is being closed. */
static ssize_t c_step(ae_pclient *c, const char *data, size_t n, ae_buf *tmp) {
  if (c->rscan_on) {
    size_t used = 0;
    int r = ae_hscan_feed(&c->rscan, data + c->rscan_fed, n - c->rscan_fed, &used);
    if (r < 0) {
      c_head_refused(c, r);
      return -1;
    }
    c->rscan_fed += used;
    if (r != AE_HS_DONE)
      return 0;
    c->rscan_on = 0;
    size_t head = c->rscan_fed;
    const char *base = c_head_for_llhttp(c, data, head, tmp);
    ssize_t done = c_llhttp(c, base, head);
    if (done < 0)
      return -1;
    /* A head ends with its empty line; a request without body completes there too. */
    if ((size_t)done != head && !c->rp_paused) {
      ae_px_reject(c, 400, "parser", "request head parsed differently");
      return -1;
    }
    return (ssize_t)head;
  }
  if (c->cscan_on) {
    size_t used = 0;
    int r = ae_cscan_feed(&c->cscan, data, n, &used);
    if (r < 0) {
      ae_px_reject(c, r == AE_CS_TOOBIG ? 431 : 400, c->cscan.reason, c->cscan.why);
      return -1;
    }
    if (r == AE_CS_DONE) {
      c->cscan_on = 0;
      llhttp_reset(&c->rp);
      c_request_done(c);
      if (c->closing)
        return -1;
    }
    return (ssize_t)used;
  }
  return c_llhttp(c, data, n);
}

size_t ae_px_parse(ae_pclient *c, const char *data, size_t n) {
  size_t off = 0;
  ae_buf tmp = {0};
  while (off < n && !c->closing && !c->rp_paused && c->phase != P_TUNNEL) {
    if (c->phase == P_IDLE)
      c_begin(c);
    ssize_t done = c_step(c, data + off, n - off, &tmp);
    if (done <= 0)
      break;
    off += (size_t)done;
  }
  ae_buf_free(&tmp);
  return c->closing ? n : off;
}
