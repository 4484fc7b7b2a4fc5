/* Port-80 listener: accepts connections, reads and parses requests, hands plain_http routes to
 * the proxy. Answers are in http80_reply.c, requests held for an on-demand decision in
 * http80_hold.c. */
#include "http80_internal.h"

#include "acmedge/log.h"
#include "acmedge/metrics.h"
#include "acmedge/policy.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------------------------------- */
/* Settings */

static unsigned head_cap(const ae_config *cfg) {
  unsigned m = cfg->proxy.max_header_bytes;
  return (m > 0 && m < H80_HEAD_CAP) ? m : H80_HEAD_CAP;
}

static unsigned max_headers(const ae_config *cfg) {
  return cfg->proxy.max_headers ? cfg->proxy.max_headers : H80_HEADERS_DEFAULT;
}

unsigned ae_h80_timeout_for(const ae_config *cfg, int mode) {
  if (mode == TM_PARK) {
    unsigned ask = cfg->on_demand.ask_timeout_ms;
    return ask ? ask + H80_PARK_SLACK_MS : H80_PARK_DEFAULT_MS;
  }
  if (mode == TM_HEAD)
    return cfg->proxy.header_timeout_ms ? cfg->proxy.header_timeout_ms : H80_HEADER_TIMEOUT_DEFAULT;
  return cfg->proxy.idle_timeout_ms ? cfg->proxy.idle_timeout_ms : H80_IDLE_TIMEOUT_DEFAULT;
}

/* ---------------------------------------------------------------------------------------- */
/* Connection lifetime */

static void conn_unlist(h80_conn *c) {
  if (!c->in_list)
    return;
  ae_http80 *h = c->h;
  if (c->prev)
    c->prev->next = c->next;
  else
    h->conns = c->next;
  if (c->next)
    c->next->prev = c->prev;
  c->prev = c->next = NULL;
  c->in_list = 0;
  h->nopen--;
  ae_metrics_add(AE_M_CONN_OPEN, -1);
}

static void maybe_closed(ae_http80 *h) {
  if (h->closing && h->listener_closed && h->nalloc == 0 && h->close_cb) {
    void (*cb)(void *) = h->close_cb;
    h->close_cb = NULL;
    cb(h->close_ud);
  }
}

static void conn_timer_closed(uv_handle_t *handle) {
  h80_conn *c = handle->data;
  ae_http80 *h = c->h;
  free(c->buf);
  free(c->url);
  free(c);
  h->nalloc--;
  maybe_closed(h);
}

static void conn_on_close(void *ud) {
  h80_conn *c = ud;
  c->t = NULL;
  ae_h80_unpark(c);
  conn_unlist(c);
  uv_close((uv_handle_t *)&c->timer, conn_timer_closed);
}

void ae_h80_conn_close(h80_conn *c) {
  ae_h80_unpark(c);
  if (c->closing || !c->t)
    return;
  c->closing = 1;
  uv_timer_stop(&c->timer);
  ae_transport_close(c->t);
}

static void conn_timeout(uv_timer_t *timer);

void ae_h80_timer_set(h80_conn *c, int mode) {
  c->timer_mode = mode;
  uv_timer_start(&c->timer, conn_timeout, ae_h80_timeout_for(c->h->cfg, mode), 0);
}

static void hand_over(h80_conn *c) {
  ae_http80 *h = c->h;
  ae_transport *t = c->t;
  AE_DEBUG("http80", "plain HTTP for %s handed to the proxy (peer %s)", c->host, t->peer_ip);
  ae_metrics_inc(AE_M_HTTP80_REQUESTS);
  c->handed = 1;
  c->t = NULL;
  uv_timer_stop(&c->timer);
  ae_transport_read_stop(t);
  t->ud = NULL;
  t->on_read = NULL;
  t->on_drain = NULL;
  t->on_close = NULL;
  conn_unlist(c);
  h->hooks.on_plain(h->hooks.ud, t, c->buf, c->len);
  /* The conn (not the transport) is freed once its timer handle is closed. */
  uv_close((uv_handle_t *)&c->timer, conn_timer_closed);
}

/* ---------------------------------------------------------------------------------------- */
/* Parser callbacks */

static int head_grow(h80_conn *c, size_t n) {
  c->head_bytes += n;
  if (c->head_bytes > head_cap(c->h->cfg)) {
    c->too_large = 1;
    return -1;
  }
  return 0;
}

static int on_message_begin(llhttp_t *p) {
  h80_conn *c = p->data;
  c->started = 1;
  c->in_head = 1;
  c->head_bytes = 0;
  c->nheaders = 0;
  c->too_large = 0;
  free(c->url);
  c->url = NULL;
  c->url_len = 0;
  c->field_len = 0;
  c->field_is_host = 0;
  c->host_len = 0;
  c->host_over = 0;
  c->host_count = 0;
  c->host_raw[0] = '\0';
  c->host[0] = '\0';
  c->host_status = 0;
  c->event = EV_NONE;
  if (c->timer_mode != TM_HEAD)
    ae_h80_timer_set(c, TM_HEAD);
  return 0;
}

static int on_url(llhttp_t *p, const char *at, size_t n) {
  h80_conn *c = p->data;
  if (head_grow(c, n) < 0)
    return -1;
  c->url = ae_realloc(c->url, c->url_len + n + 1);
  memcpy(c->url + c->url_len, at, n);
  c->url_len += n;
  c->url[c->url_len] = '\0';
  return 0;
}

static int on_header_field(llhttp_t *p, const char *at, size_t n) {
  h80_conn *c = p->data;
  if (head_grow(c, n) < 0)
    return -1;
  for (size_t i = 0; i < n; i++) {
    if (c->field_len < sizeof(c->field) - 1)
      c->field[c->field_len] = at[i];
    c->field_len++;
  }
  return 0;
}

static int on_header_field_complete(llhttp_t *p) {
  h80_conn *c = p->data;
  c->nheaders++;
  if (c->nheaders > max_headers(c->h->cfg)) {
    c->too_large = 1;
    return -1;
  }
  c->field[c->field_len < sizeof(c->field) ? c->field_len : sizeof(c->field) - 1] = '\0';
  c->field_is_host = c->field_len == 4 && ae_strcasecmp(c->field, "host") == 0;
  c->field_len = 0;
  return head_grow(c, 4); /* ": " and CRLF */
}

static int on_header_value(llhttp_t *p, const char *at, size_t n) {
  h80_conn *c = p->data;
  if (head_grow(c, n) < 0)
    return -1;
  if (!c->field_is_host)
    return 0;
  if (c->host_count > 0) /* a second Host header: only the count matters */
    return 0;
  if (c->host_len + n > H80_HOST_MAX) {
    c->host_over = 1;
    return 0;
  }
  memcpy(c->host_raw + c->host_len, at, n);
  c->host_len += n;
  c->host_raw[c->host_len] = '\0';
  return 0;
}

static int on_header_value_complete(llhttp_t *p) {
  h80_conn *c = p->data;
  if (c->field_is_host)
    c->host_count++;
  c->field_is_host = 0;
  return 0;
}

static int classify_host(h80_conn *c) {
  if (c->host_count != 1 || c->host_over || c->host_len == 0)
    return 400;
  const char *reason = NULL;
  if (ae_policy_normalize(c->host_raw, c->host, sizeof(c->host), &reason) < 0) {
    c->host[0] = '\0';
    /* An address is a well-formed Host we simply serve nothing for. */
    return (reason && strcmp(reason, "ip_literal") == 0) ? 404 : 400;
  }
  return 0;
}

static int on_headers_complete(llhttp_t *p) {
  h80_conn *c = p->data;
  ae_http80 *h = c->h;
  c->in_head = 0;
  ae_h80_timer_set(c, TM_BODY);
  c->host_status = classify_host(c);
  const char *path = ae_h80_request_path(c);
  int challenge = ae_h80_is_challenge_path(path);
  if (!challenge && c->host_status == 0 && h->has_hooks && h->hooks.plain_route && h->hooks.on_plain &&
      h->hooks.plain_route(h->hooks.ud, c->host)) {
    c->event = EV_HANDOFF;
    return HPE_PAUSED;
  }
  return 0;
}

static int on_message_complete(llhttp_t *p) {
  h80_conn *c = p->data;
  c->event = EV_MESSAGE;
  return HPE_PAUSED;
}

/* ---------------------------------------------------------------------------------------- */
/* Read loop */

static void buf_consume(h80_conn *c, size_t n) {
  memmove(c->buf, c->buf + n, c->len - n);
  c->len -= n;
  c->parsed = c->parsed > n ? c->parsed - n : 0;
}

int ae_h80_after_answer(h80_conn *c) {
  if (c->closing || c->handed || c->parked)
    return -1;
  ae_h80_timer_set(c, c->len == 0 ? TM_IDLE : TM_HEAD);
  if (c->t && ae_transport_queued(c->t) > H80_WRITE_HIGH) {
    c->blocked = 1;
    ae_transport_read_stop(c->t);
    return -1;
  }
  return 0;
}

void ae_h80_conn_process(h80_conn *c) {
  ae_http80 *h = c->h;
  while (!c->closing && !c->handed && !c->blocked && !c->parked && c->parsed < c->len) {
    const char *start = c->buf + c->parsed;
    llhttp_errno_t e = llhttp_execute(&c->parser, start, c->len - c->parsed);
    if (e == HPE_OK) {
      c->parsed = c->len;
      break;
    }
    if (e == HPE_PAUSED) {
      const char *pos = llhttp_get_error_pos(&c->parser);
      c->parsed = (size_t)(pos - c->buf);
      llhttp_resume(&c->parser);
      int ev = c->event;
      c->event = EV_NONE;
      if (ev == EV_HANDOFF) {
        hand_over(c);
        return;
      }
      if (ev == EV_MESSAGE) {
        c->started = 0;
        buf_consume(c, c->parsed);
        ae_h80_respond(c);
        if (ae_h80_after_answer(c) < 0)
          return;
      }
      continue;
    }
    /* A parse error: the request is answered (431/400) and the connection closed. */
    if (c->too_large) {
      AE_DEBUG("http80", "request head too large (peer %s)", c->t->peer_ip);
      ae_h80_send_response(c, 431, NULL, "request header fields too large\n", 0, 1);
    } else {
      AE_DEBUG("http80", "bad request from %s: %s", c->t->peer_ip, llhttp_errno_name(e));
      ae_h80_send_response(c, 400, NULL, "bad request\n", 0, 1);
    }
    return;
  }
  if (c->closing || c->handed || c->parked)
    return;
  if (!c->started) {
    buf_consume(c, c->parsed); /* blank lines between requests */
  } else if (!c->in_head) {
    buf_consume(c, c->parsed); /* body bytes are not needed once the head was seen */
  } else if (c->len > (size_t)head_cap(h->cfg) + 1024) {
    ae_h80_send_response(c, 431, NULL, "request header fields too large\n", 0, 1);
  }
}

static void conn_on_read(void *ud, const char *data, ssize_t n) {
  h80_conn *c = ud;
  if (c->closing || c->handed)
    return;
  if (n < 0) {
    ae_h80_conn_close(c);
    return;
  }
  if (n == 0)
    return;
  if (c->len + (size_t)n > c->cap) {
    size_t cap = c->cap ? c->cap : 4096;
    while (cap < c->len + (size_t)n)
      cap *= 2;
    c->buf = ae_realloc(c->buf, cap);
    c->cap = cap;
  }
  memcpy(c->buf + c->len, data, (size_t)n);
  c->len += (size_t)n;
  if (c->timer_mode == TM_BODY)
    ae_h80_timer_set(c, TM_BODY);
  ae_h80_conn_process(c);
}

static void conn_on_drain(void *ud) {
  h80_conn *c = ud;
  if (!c->blocked || c->closing || !c->t)
    return;
  c->blocked = 0;
  ae_transport_read_start(c->t);
  ae_h80_conn_process(c);
}

static void conn_timeout(uv_timer_t *timer) {
  h80_conn *c = timer->data;
  if (c->closing || c->handed)
    return;
  if (c->timer_mode == TM_PARK) {
    ae_h80_park_expired(c);
    return;
  }
  if (c->timer_mode == TM_IDLE) {
    ae_h80_conn_close(c);
    return;
  }
  AE_DEBUG("http80", "request timeout (peer %s)", c->t->peer_ip);
  ae_h80_send_response(c, 408, NULL, "request timeout\n", 0, 1);
}

/* ---------------------------------------------------------------------------------------- */
/* Listener */

static void reject_closed(uv_handle_t *handle) {
  free(handle);
}

static void on_connection(uv_stream_t *server, int status) {
  ae_http80 *h = server->data;
  if (status < 0) {
    AE_WARN("http80", "accept failed: %s", uv_strerror(status));
    return;
  }
  uv_tcp_t *tcp = ae_malloc(sizeof(*tcp));
  uv_tcp_init(h->loop, tcp);
  if (uv_accept(server, (uv_stream_t *)tcp) != 0) {
    uv_close((uv_handle_t *)tcp, reject_closed);
    return;
  }
  unsigned maxc = h->cfg->tls.max_connections ? h->cfg->tls.max_connections : H80_MAX_CONN_DEFAULT;
  if (h->closing || h->nopen >= maxc) {
    AE_DEBUG("http80", "connection refused: %zu open", h->nopen);
    uv_close((uv_handle_t *)tcp, reject_closed);
    return;
  }
  ae_transport *t = NULL;
  if (ae_transport_tcp_new(h->loop, tcp, &t) < 0) {
    uv_close((uv_handle_t *)tcp, reject_closed);
    return;
  }
  h80_conn *c = ae_calloc(1, sizeof(*c));
  c->h = h;
  c->t = t;
  uv_timer_init(h->loop, &c->timer);
  c->timer.data = c;
  llhttp_init(&c->parser, HTTP_REQUEST, &h->settings);
  c->parser.data = c;
  c->next = h->conns;
  if (h->conns)
    h->conns->prev = c;
  h->conns = c;
  c->in_list = 1;
  h->nopen++;
  h->nalloc++;
  ae_metrics_add(AE_M_CONN_OPEN, 1);
  t->ud = c;
  t->on_read = conn_on_read;
  t->on_drain = conn_on_drain;
  t->on_close = conn_on_close;
  ae_h80_timer_set(c, TM_HEAD);
  ae_transport_read_start(t);
}

static void listener_closed(uv_handle_t *handle) {
  ae_http80 *h = handle->data;
  h->listener_closed = 1;
  maybe_closed(h);
}

int ae_http80_new(uv_loop_t *loop, const ae_config *cfg, ae_challenge *ch, const ae_http80_hooks *hooks,
                  ae_http80 **out, ae_err *err) {
  if (!loop || !cfg || !out)
    return ae_err_set(err, AE_EINVAL, "http80: missing loop or config");
  if (!cfg->listen_http || !cfg->listen_http[0])
    return ae_err_set(err, AE_EINVAL, "http80: listen.http is not set");
  struct sockaddr_storage ss;
  if (ae_listen_sockaddr(cfg->listen_http, &ss) < 0)
    return ae_err_set(err, AE_EINVAL, "http80: listen.http: bad address \"%s\"", cfg->listen_http);

  ae_http80 *h = ae_calloc(1, sizeof(*h));
  h->loop = loop;
  h->ch = ch;
  if (hooks) {
    h->hooks = *hooks;
    h->has_hooks = 1;
  }
  llhttp_settings_init(&h->settings);
  h->settings.on_message_begin = on_message_begin;
  h->settings.on_url = on_url;
  h->settings.on_header_field = on_header_field;
  h->settings.on_header_field_complete = on_header_field_complete;
  h->settings.on_header_value = on_header_value;
  h->settings.on_header_value_complete = on_header_value_complete;
  h->settings.on_headers_complete = on_headers_complete;
  h->settings.on_message_complete = on_message_complete;

  uv_tcp_init(loop, &h->listener);
  h->listener.data = h;
  int r = uv_tcp_bind(&h->listener, (const struct sockaddr *)&ss, 0);
  if (r == 0)
    r = uv_listen((uv_stream_t *)&h->listener, 511, on_connection);
  if (r < 0) {
    ae_err_set(err, AE_EIO, "http80: cannot listen on %s: %s", cfg->listen_http, uv_strerror(r));
    /* The handle is closed asynchronously; h is released by the close callback. */
    h->closing = 1;
    h->close_cb = free;
    h->close_ud = h;
    uv_close((uv_handle_t *)&h->listener, listener_closed);
    return AE_EIO;
  }
  struct sockaddr_storage bound;
  int blen = sizeof(bound);
  if (uv_tcp_getsockname(&h->listener, (struct sockaddr *)&bound, &blen) == 0)
    h->port = ntohs(bound.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&bound)->sin6_port
                                                 : ((struct sockaddr_in *)&bound)->sin_port);
  h->cfg = ae_config_ref((ae_config *)cfg);
  AE_INFO("http80", "listening on %s (port %d)", cfg->listen_http, h->port);
  *out = h;
  return 0;
}

void ae_http80_set_config(ae_http80 *h, const ae_config *cfg) {
  if (!h || !cfg || cfg == h->cfg)
    return;
  ae_config *old = h->cfg;
  h->cfg = ae_config_ref((ae_config *)cfg);
  ae_config_free(old);
}

void ae_http80_close(ae_http80 *h, void (*cb)(void *ud), void *ud) {
  if (!h || h->closing)
    return;
  h->closing = 1;
  h->close_cb = cb;
  h->close_ud = ud;
  uv_close((uv_handle_t *)&h->listener, listener_closed);
  for (h80_conn *c = h->conns; c; c = c->next) {
    /* Abort even those closing gracefully: a slow peer must not hold up shutdown. Held
     * requests are dropped with their connection. */
    ae_h80_unpark(c);
    if (c->t) {
      c->closing = 1;
      uv_timer_stop(&c->timer);
      ae_transport_abort(c->t);
    }
  }
}

void ae_http80_free(ae_http80 *h) {
  if (!h)
    return;
  ae_config_free(h->cfg);
  free(h);
}

int ae_http80_port(const ae_http80 *h) {
  return h ? h->port : -1;
}
