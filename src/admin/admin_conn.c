/* Admin HTTP server connections: accepting, reading with llhttp (request limits, timeouts),
 * writing responses and closing. A complete request is handed to adm_handle_request (admin.c). */
#include "admin_internal.h"
#include "admin_ui.h"

#include "acmedge/log.h"

#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define ADM_MAX_HEADER_BYTES 16384
#define ADM_MAX_BODY (64 * 1024)
#define ADM_MAX_CONNS 128
#define ADM_REQUEST_TIMEOUT_MS 15000   /* first byte of a request to its end */
#define ADM_IDLE_TIMEOUT_MS 60000      /* keep-alive between requests */

typedef struct {
  uv_write_t req;
  adm_conn *c;
  uv_buf_t buf;
  char data[];
} adm_write;

static llhttp_settings_t g_settings;
static int g_settings_ready;

/* ------------------------------------------------------------------ writing */

static const char *reason_phrase(int status) {
  switch (status) {
  case 200: return "OK";
  case 202: return "Accepted";
  case 204: return "No Content";
  case 400: return "Bad Request";
  case 401: return "Unauthorized";
  case 403: return "Forbidden";
  case 404: return "Not Found";
  case 405: return "Method Not Allowed";
  case 408: return "Request Timeout";
  case 413: return "Payload Too Large";
  case 414: return "URI Too Long";
  case 431: return "Request Header Fields Too Large";
  case 500: return "Internal Server Error";
  case 503: return "Service Unavailable";
  default: return "Unknown";
  }
}

static void on_write(uv_write_t *req, int status) {
  adm_write *w = (adm_write *)req;
  adm_conn *c = w->c;
  free(w);
  c->writes_pending--;
  if (c->closing)
    return;
  if (status < 0) {
    AE_DEBUG("admin", "write failed: %s", uv_strerror(status));
    ae_adm_conn_close(c);
    return;
  }
  c->lag_ticks = 0;
  size_t queued = uv_stream_get_write_queue_size((uv_stream_t *)&c->io);
  if (c->close_after_write && c->writes_pending == 0) {
    if (!ae_adm_tls_bye(c)) /* a TLS close_notify goes out first, then this runs again */
      ae_adm_conn_close(c);
    return;
  }
  if (c->sse && c->lagging && queued == 0)
    ae_adm_sse_catch_up(c);
}

int ae_adm_conn_write(adm_conn *c, const char *data, size_t len) {
  if (c->closing)
    return UV_ECANCELED;
  if (c->tls)
    return c->tls_ready ? ae_adm_tls_send(c, data, len) : UV_ECANCELED;
  return ae_adm_conn_write_raw(c, data, len);
}

int ae_adm_conn_write_raw(adm_conn *c, const char *data, size_t len) {
  if (c->closing)
    return UV_ECANCELED;
  adm_write *w = ae_malloc(sizeof(*w) + len);
  memcpy(w->data, data, len);
  w->c = c;
  w->buf = uv_buf_init(w->data, (unsigned)len);
  int r = uv_write(&w->req, (uv_stream_t *)&c->io, &w->buf, 1, on_write);
  if (r < 0) {
    free(w);
    ae_adm_conn_close(c);
    return r;
  }
  c->writes_pending++;
  return 0;
}

void ae_adm_respond(adm_conn *c, int status, const char *ctype, const char *body, size_t blen,
                    const char *extra_headers) {
  int keep = !c->close_after_write && llhttp_should_keep_alive(&c->parser);
  if (!keep)
    c->close_after_write = 1;
  char head[1024];
  int n = snprintf(head, sizeof(head),
                   "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\nCache-Control: no-store\r\n%s%s\r\n",
                   status, reason_phrase(status), ctype, blen, extra_headers ? extra_headers : "",
                   keep ? "" : "Connection: close\r\n");
  if (n < 0 || (size_t)n >= sizeof(head))
    n = snprintf(head, sizeof(head), "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n");
  size_t total = (size_t)n + blen;
  char *out = ae_malloc(total ? total : 1);
  memcpy(out, head, (size_t)n);
  if (blen)
    memcpy(out + n, body, blen);
  ae_adm_conn_write(c, out, total);
  free(out);
}

void ae_adm_respond_json(adm_conn *c, int status, json_t *j, const char *extra_headers) {
  char *s = j ? json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_ENCODE_ANY) : NULL;
  json_decref(j);
  if (!s) {
    static const char fallback[] = "{\"error\":\"internal error\"}\n";
    ae_adm_respond(c, 500, "application/json", fallback, sizeof(fallback) - 1, NULL);
    return;
  }
  size_t n = strlen(s);
  char *body = ae_malloc(n + 2);
  memcpy(body, s, n);
  body[n] = '\n';
  free(s);
  ae_adm_respond(c, status, "application/json", body, n + 1, extra_headers);
  free(body);
}

void ae_adm_respond_error(adm_conn *c, int status, const char *extra_headers, const char *fmt, ...) {
  char msg[600];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);
  ae_adm_respond_json(c, status, json_pack("{s:s}", "error", msg), extra_headers);
}

/* ------------------------------------------------------------------ parser callbacks */

static void reset_request(adm_conn *c) {
  c->in_request = 0;
  c->url_len = 0;
  c->hname_len = 0;
  c->hname_long = 0;
  c->hval_len = 0;
  c->hval_long = 0;
  c->header_bytes = 0;
  free(c->h_auth);
  free(c->h_last_event_id);
  free(c->h_origin);
  free(c->h_host);
  free(c->h_expect);
  c->h_auth = c->h_last_event_id = c->h_origin = c->h_host = c->h_expect = NULL;
  free(c->body);
  c->body = NULL;
  c->body_len = c->body_cap = 0;
  c->fail_status = 0;
  c->fail_msg = NULL;
}

static int fail(adm_conn *c, int status, const char *msg) {
  c->fail_status = status;
  c->fail_msg = msg;
  return -1;
}

static int count_header_bytes(adm_conn *c, size_t n) {
  c->header_bytes += n;
  if (c->header_bytes > ADM_MAX_HEADER_BYTES)
    return fail(c, 431, "request header too large");
  return 0;
}

static int on_message_begin(llhttp_t *p) {
  adm_conn *c = p->data;
  reset_request(c);
  c->in_request = 1;
  uv_timer_start(&c->timer, adm_on_conn_timer, ADM_REQUEST_TIMEOUT_MS, 0);
  return 0;
}

static int on_url(llhttp_t *p, const char *at, size_t n) {
  adm_conn *c = p->data;
  if (c->url_len + n > ADM_MAX_URL)
    return fail(c, 414, "request target too long");
  memcpy(c->url + c->url_len, at, n);
  c->url_len += n;
  return count_header_bytes(c, n);
}

static int on_header_field(llhttp_t *p, const char *at, size_t n) {
  adm_conn *c = p->data;
  if (c->hname_len + n >= sizeof(c->hname)) {
    c->hname_long = 1;
  } else {
    memcpy(c->hname + c->hname_len, at, n);
    c->hname_len += n;
  }
  return count_header_bytes(c, n);
}

static int on_header_value(llhttp_t *p, const char *at, size_t n) {
  adm_conn *c = p->data;
  if (c->hval_len + n > ADM_MAX_HVAL) {
    c->hval_long = 1;
  } else {
    memcpy(c->hval + c->hval_len, at, n);
    c->hval_len += n;
  }
  return count_header_bytes(c, n);
}

static int on_header_value_complete(llhttp_t *p) {
  adm_conn *c = p->data;
  char **slot = NULL;
  if (!c->hname_long) {
    c->hname[c->hname_len] = '\0';
    if (ae_strcasecmp(c->hname, "authorization") == 0)
      slot = &c->h_auth;
    else if (ae_strcasecmp(c->hname, "last-event-id") == 0)
      slot = &c->h_last_event_id;
    else if (ae_strcasecmp(c->hname, "origin") == 0)
      slot = &c->h_origin;
    else if (ae_strcasecmp(c->hname, "host") == 0)
      slot = &c->h_host;
    else if (ae_strcasecmp(c->hname, "expect") == 0)
      slot = &c->h_expect;
  }
  if (slot) {
    if (c->hval_long)
      return fail(c, 431, "header value too long");
    if (*slot) /* a repeated header of these kinds is ambiguous */
      return fail(c, 400, "repeated header");
    c->hval[c->hval_len] = '\0';
    *slot = ae_strdup(c->hval);
  }
  c->hname_len = 0;
  c->hname_long = 0;
  c->hval_len = 0;
  c->hval_long = 0;
  return 0;
}

static int on_headers_complete(llhttp_t *p) {
  adm_conn *c = p->data;
  if ((p->flags & F_CONTENT_LENGTH) && p->content_length > ADM_MAX_BODY)
    return fail(c, 413, "request body too large (limit 64 KiB)");
  if (c->h_expect && ae_strcasecmp(c->h_expect, "100-continue") == 0) {
    static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
    ae_adm_conn_write(c, cont, sizeof(cont) - 1);
  }
  return 0;
}

static int on_body(llhttp_t *p, const char *at, size_t n) {
  adm_conn *c = p->data;
  if (c->body_len + n > ADM_MAX_BODY)
    return fail(c, 413, "request body too large (limit 64 KiB)");
  if (c->body_len + n + 1 > c->body_cap) {
    c->body_cap = (c->body_len + n + 1) * 2;
    if (c->body_cap > ADM_MAX_BODY + 1)
      c->body_cap = ADM_MAX_BODY + 1;
    c->body = ae_realloc(c->body, c->body_cap);
  }
  memcpy(c->body + c->body_len, at, n);
  c->body_len += n;
  return 0;
}

static int on_message_complete(llhttp_t *p) {
  adm_conn *c = p->data;
  if (!llhttp_should_keep_alive(p))
    c->close_after_write = 1;
  adm_handle_request(c);
  reset_request(c);
  if (c->closing)
    return HPE_PAUSED;
  if (c->sse || c->close_after_write)
    return HPE_PAUSED; /* nothing after this request is read */
  uv_timer_start(&c->timer, adm_on_conn_timer, ADM_IDLE_TIMEOUT_MS, 0);
  return 0;
}

/* ------------------------------------------------------------------ connections */

void adm_maybe_done(ae_admin *a) {
  if (!a->closing || a->close_cb_done || a->listening || a->heartbeat_open || a->nalive)
    return;
  a->close_cb_done = 1;
  if (a->close_cb)
    a->close_cb(a->close_ud);
}

static void on_conn_handle_closed(uv_handle_t *h) {
  adm_conn *c = h->data;
  if (--c->open_handles > 0)
    return;
  ae_admin *a = c->a;
  reset_request(c);
  ae_adm_tls_conn_free(c);
  if (c->pending)
    c->pending->c = NULL;
  free(c);
  a->nalive--;
  adm_maybe_done(a);
}

void ae_adm_conn_close(adm_conn *c) {
  if (c->closing)
    return;
  c->closing = 1;
  ae_admin *a = c->a;
  if (c->sub) {
    ae_events_unsubscribe(a->ev, c->sub);
    c->sub = NULL;
  }
  if (c->prev)
    c->prev->next = c->next;
  else
    a->conns = c->next;
  if (c->next)
    c->next->prev = c->prev;
  c->prev = c->next = NULL;
  a->nconns--;
  uv_close((uv_handle_t *)&c->timer, on_conn_handle_closed);
  uv_close((uv_handle_t *)&c->io, on_conn_handle_closed);
}

void adm_on_conn_timer(uv_timer_t *t) {
  adm_conn *c = t->data;
  if (c->closing || c->sse)
    return;
  if (c->in_request) {
    c->close_after_write = 1;
    ae_adm_respond_error(c, 408, NULL, "request not received in time");
    llhttp_pause(&c->parser);
    return;
  }
  ae_adm_conn_close(c);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  adm_conn *c = h->data;
  (void)suggested;
  /* One shared buffer: each read is consumed before the next is requested. */
  if (c->a->rbuf_busy) {
    buf->base = NULL;
    buf->len = 0;
    return;
  }
  c->a->rbuf_busy = 1;
  buf->base = c->a->rbuf;
  buf->len = sizeof(c->a->rbuf);
}

void ae_adm_conn_eof(adm_conn *c) {
  if (c->closing)
    return;
  /* A client that half-closes after its request still gets the whole response. */
  if (!c->sse && c->writes_pending > 0) {
    c->close_after_write = 1;
    uv_read_stop((uv_stream_t *)&c->io);
    return;
  }
  ae_adm_conn_close(c);
}

void ae_adm_conn_feed(adm_conn *c, const char *data, size_t n) {
  if (c->closing || c->sse || c->close_after_write || llhttp_get_errno(&c->parser) == HPE_PAUSED)
    return; /* the request that mattered has been read; the rest is ignored */
  if (!c->in_request)
    uv_timer_start(&c->timer, adm_on_conn_timer, ADM_REQUEST_TIMEOUT_MS, 0);
  llhttp_errno_t e = llhttp_execute(&c->parser, data, n);
  if (c->closing)
    return;
  if (e == HPE_OK || e == HPE_PAUSED)
    return;
  c->close_after_write = 1;
  if (c->fail_status) { /* one of our callbacks refused the request (HPE_USER or HPE_CB_*) */
    ae_adm_respond_error(c, c->fail_status, NULL, "%s", c->fail_msg ? c->fail_msg : "bad request");
  } else {
    ae_adm_respond_error(c, 400, NULL, "malformed request: %s", llhttp_get_error_reason(&c->parser) ? llhttp_get_error_reason(&c->parser) : llhttp_errno_name(e));
  }
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  adm_conn *c = s->data;
  ae_admin *a = c->a;
  if (buf->base == a->rbuf)
    a->rbuf_busy = 0;
  if (c->closing)
    return;
  if (nread < 0) {
    if (nread == UV_EOF)
      ae_adm_conn_eof(c);
    else
      ae_adm_conn_close(c);
    return;
  }
  if (nread == 0)
    return;
  if (c->tls)
    ae_adm_tls_on_data(c, buf->base, (size_t)nread, 0);
  else
    ae_adm_conn_feed(c, buf->base, (size_t)nread);
}

void ae_adm_on_connection(uv_stream_t *server, int status) {
  ae_admin *a = server->data;
  if (status < 0 || a->closing)
    return;
  adm_conn *c = ae_calloc(1, sizeof(*c));
  c->a = a;
  if (a->is_unix)
    uv_pipe_init(a->loop, &c->io.pipe, 0);
  else
    uv_tcp_init(a->loop, &c->io.tcp);
  uv_timer_init(a->loop, &c->timer);
  c->io.tcp.data = c;
  c->timer.data = c;
  c->open_handles = 2;
  c->next = a->conns;
  if (a->conns)
    a->conns->prev = c;
  a->conns = c;
  a->nconns++;
  a->nalive++;
  if (uv_accept(server, (uv_stream_t *)&c->io) != 0) {
    ae_adm_conn_close(c);
    return;
  }
  if (a->nconns > ADM_MAX_CONNS) {
    AE_WARN("admin", "too many admin connections (%d); refusing one", ADM_MAX_CONNS);
    ae_adm_conn_close(c);
    return;
  }
  if (a->tls && ae_adm_tls_conn_start(c) != 0) {
    ae_adm_conn_close(c);
    return;
  }
  llhttp_init(&c->parser, HTTP_REQUEST, &g_settings);
  c->parser.data = c;
  uv_timer_start(&c->timer, adm_on_conn_timer, ADM_REQUEST_TIMEOUT_MS, 0);
  if (uv_read_start((uv_stream_t *)&c->io, on_alloc, on_read) != 0)
    ae_adm_conn_close(c);
}

void adm_init_settings(void) {
  if (g_settings_ready)
    return;
  llhttp_settings_init(&g_settings);
  g_settings.on_message_begin = on_message_begin;
  g_settings.on_url = on_url;
  g_settings.on_header_field = on_header_field;
  g_settings.on_header_value = on_header_value;
  g_settings.on_header_value_complete = on_header_value_complete;
  g_settings.on_headers_complete = on_headers_complete;
  g_settings.on_body = on_body;
  g_settings.on_message_complete = on_message_complete;
  g_settings_ready = 1;
}
