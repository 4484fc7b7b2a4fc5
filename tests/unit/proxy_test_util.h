/* Test helpers for the proxy unit tests: an in-memory ae_transport, an in-process libuv upstream
 * with several behaviours, a response parser and loop-driving helpers. Header-only (static). */
#ifndef ACMEDGE_TEST_PROXY_UTIL_H
#define ACMEDGE_TEST_PROXY_UTIL_H

#include <llhttp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "acmedge/common.h"
#include "acmedge/config.h"
#include "acmedge/proxy.h"
#include "../../src/proxy/proxy_int.h"

static uv_loop_t *T_loop;
static uv_timer_t T_ticker;

static void t_tick(uv_timer_t *t) { (void)t; }

static void t_loop_init(void) {
  T_loop = uv_default_loop();
  uv_timer_init(T_loop, &T_ticker);
  uv_timer_start(&T_ticker, t_tick, 5, 5);
}

static void t_loop_done(void) {
  uv_close((uv_handle_t *)&T_ticker, NULL);
  for (int i = 0; i < 100 && uv_run(T_loop, UV_RUN_NOWAIT); i++) {
  }
}

/* Runs the loop until cond(ud) or ms elapsed; returns cond's final value. */
static int t_run_until(int (*cond)(void *), void *ud, int ms) {
  uv_update_time(T_loop);
  uint64_t end = uv_now(T_loop) + (uint64_t)ms;
  while (!cond(ud)) {
    if (uv_now(T_loop) > end)
      return 0;
    uv_run(T_loop, UV_RUN_ONCE);
  }
  return 1;
}

static int t_never(void *ud) {
  (void)ud;
  return 0;
}

static void t_run_for(int ms) { t_run_until(t_never, NULL, ms); }

/* ---------- fake client transport ---------- */

typedef struct fake {
  ae_transport t;
  ae_buf out;
  int reading;
  int close_called;
  int abort_called;
  int closed;            /* on_close delivered */
  size_t queued;         /* reported write queue size */
  uv_timer_t tm;
  int tm_closed;
} fake;

static int fk_write(ae_transport *t, const char *d, size_t n) {
  fake *f = (fake *)t;
  if (f->close_called || f->abort_called)
    return -1;
  ae_buf_add(&f->out, d, n);
  return 0;
}
static size_t fk_queued(ae_transport *t) { return ((fake *)t)->queued; }
static void fk_read_stop(ae_transport *t) { ((fake *)t)->reading = 0; }
static void fk_read_start(ae_transport *t) { ((fake *)t)->reading = 1; }
static void fk_fire_close(uv_timer_t *tm) {
  fake *f = tm->data;
  if (f->closed)
    return;
  f->closed = 1;
  if (f->t.on_close)
    f->t.on_close(f->t.ud);
}
static void fk_close(ae_transport *t) {
  fake *f = (fake *)t;
  if (f->close_called || f->abort_called)
    return;
  f->close_called = 1;
  uv_timer_start(&f->tm, fk_fire_close, 0, 0);
}
static void fk_abort(ae_transport *t) {
  fake *f = (fake *)t;
  if (f->close_called || f->abort_called)
    return;
  f->abort_called = 1;
  uv_timer_start(&f->tm, fk_fire_close, 0, 0);
}
static const ae_transport_ops fk_ops = {fk_write, fk_queued, fk_read_stop, fk_read_start, fk_close, fk_abort};

static fake *fake_new(const char *sni, const char *peer_ip) {
  fake *f = ae_calloc(1, sizeof(*f));
  f->t.ops = &fk_ops;
  f->t.loop = T_loop;
  snprintf(f->t.sni, sizeof(f->t.sni), "%s", sni ? sni : "");
  f->t.is_tls = 1;
  snprintf(f->t.peer_ip, sizeof(f->t.peer_ip), "%s", peer_ip ? peer_ip : "10.1.2.3");
  f->t.local_port = 443;
  uv_timer_init(T_loop, &f->tm);
  f->tm.data = f;
  return f;
}

/* Bytes from the client to the proxy. */
static void fake_send(fake *f, const char *d, size_t n) {
  if (!f->closed && f->t.on_read)
    f->t.on_read(f->t.ud, d, (ssize_t)n);
}
static void fake_sends(fake *f, const char *s) { fake_send(f, s, strlen(s)); }
static void fake_eof(fake *f) {
  if (!f->closed && f->t.on_read)
    f->t.on_read(f->t.ud, NULL, UV_EOF);
}

static void fk_tm_closed(uv_handle_t *h) { ((fake *)h->data)->tm_closed = 1; }
static int fk_tm_is_closed(void *ud) { return ((fake *)ud)->tm_closed; }

static void fake_free(fake *f) {
  uv_close((uv_handle_t *)&f->tm, fk_tm_closed);
  t_run_until(fk_tm_is_closed, f, 1000);
  ae_buf_free(&f->out);
  free(f);
}

static int fake_is_closed(void *ud) { return ((fake *)ud)->closed; }

/* ---------- response parsing on the client side ---------- */

#define T_MAX_RESP 16
typedef struct t_resp {
  int status;
  ae_buf head;   /* "name: value\n" lines */
  ae_buf body;
  int complete;
} t_resp;

typedef struct t_resps {
  t_resp r[T_MAX_RESP];
  int n;
  int complete;
  int error;
  int head_req;  /* responses are to HEAD requests */
} t_resps;

static int tr_begin(llhttp_t *p) {
  t_resps *rs = p->data;
  if (rs->n < T_MAX_RESP)
    rs->n++;
  return 0;
}
static t_resp *tr_cur(llhttp_t *p) {
  t_resps *rs = p->data;
  return &rs->r[rs->n ? rs->n - 1 : 0];
}
static int tr_field(llhttp_t *p, const char *at, size_t n) {
  ae_buf_add(&tr_cur(p)->head, at, n);
  return 0;
}
static int tr_field_done(llhttp_t *p) {
  ae_buf_add(&tr_cur(p)->head, ": ", 2);
  return 0;
}
static int tr_value(llhttp_t *p, const char *at, size_t n) {
  ae_buf_add(&tr_cur(p)->head, at, n);
  return 0;
}
static int tr_value_done(llhttp_t *p) {
  ae_buf_add(&tr_cur(p)->head, "\n", 1);
  return 0;
}
static int tr_hc(llhttp_t *p) {
  t_resp *r = tr_cur(p);
  r->status = p->status_code;
  return ((t_resps *)p->data)->head_req ? 1 : 0;
}
static int tr_body(llhttp_t *p, const char *at, size_t n) {
  ae_buf_add(&tr_cur(p)->body, at, n);
  return 0;
}
static int tr_mc(llhttp_t *p) {
  tr_cur(p)->complete = 1;
  ((t_resps *)p->data)->complete++;
  return 0;
}
static const llhttp_settings_t tr_settings = {
    .on_message_begin = tr_begin,
    .on_header_field = tr_field,
    .on_header_field_complete = tr_field_done,
    .on_header_value = tr_value,
    .on_header_value_complete = tr_value_done,
    .on_headers_complete = tr_hc,
    .on_body = tr_body,
    .on_message_complete = tr_mc,
};

static void t_resps_free(t_resps *rs) {
  for (int i = 0; i < T_MAX_RESP; i++) {
    ae_buf_free(&rs->r[i].head);
    ae_buf_free(&rs->r[i].body);
  }
  memset(rs, 0, sizeof(*rs));
}

/* Parses everything the proxy wrote so far into rs (overwritten, not freed: t_resps_free). */
static void t_parse(const fake *f, t_resps *rs, int head_req) {
  memset(rs, 0, sizeof(*rs));
  rs->head_req = head_req;
  llhttp_t p;
  llhttp_init(&p, HTTP_RESPONSE, &tr_settings);
  p.data = rs;
  if (f->out.len) {
    llhttp_errno_t e = llhttp_execute(&p, f->out.d, f->out.len);
    if (e != HPE_OK)
      rs->error = 1;
  }
  for (int i = 0; i < rs->n; i++) {
    ae_buf_add(&rs->r[i].head, "", 1);
    rs->r[i].head.len--;
    ae_buf_add(&rs->r[i].body, "", 1);
    rs->r[i].body.len--;
  }
}

typedef struct {
  fake *f;
  int want;
  t_resps rs;
} t_wait;

static int t_have_responses(void *ud) {
  t_wait *w = ud;
  t_resps_free(&w->rs);
  t_parse(w->f, &w->rs, 0);
  return w->rs.complete >= w->want || w->rs.error;
}

/* Runs until f got want complete responses (parsed into *rs) or ms elapsed. */
static int t_wait_responses(fake *f, int want, t_resps *rs, int ms) {
  t_wait w;
  memset(&w, 0, sizeof(w));
  w.f = f;
  w.want = want;
  int ok = t_run_until(t_have_responses, &w, ms);
  *rs = w.rs;
  return ok && w.rs.complete >= want;
}

static int t_has(const ae_buf *b, const char *s) {
  size_t n = strlen(s);
  if (!b->d || b->len < n)
    return 0;
  for (size_t i = 0; i + n <= b->len; i++)
    if (memcmp(b->d + i, s, n) == 0)
      return 1;
  return 0;
}

/* ---------- in-process upstream ---------- */

typedef enum {
  UP_ECHO = 0,      /* 200, body = the raw request bytes; X-Up-Conn names the connection */
  UP_CHUNKED,       /* chunked response with an extension and a trailer */
  UP_CLOSE_DELIM,   /* no framing: body until close */
  UP_GARBAGE,       /* not HTTP */
  UP_SILENT,        /* reads, never answers */
  UP_BIGHEAD,       /* response head over 64 KiB */
  UP_EARLY_CLOSE,   /* closes when a request is complete */
  UP_WS,            /* 101, then echoes bytes */
  UP_CLOSE_SECOND,  /* answers the first request of a connection, closes on the second */
  UP_NOREAD,        /* never reads */
  UP_BIG,           /* 200 with big_size bytes of body */
  UP_HOPRESP,       /* response with hop-by-hop fields */
  UP_CONTINUE       /* 100 Continue, then an echo */
} up_mode;

typedef struct upsrv upsrv;
typedef struct upconn {
  uv_tcp_t tcp;
  upsrv *s;
  llhttp_t p;
  ae_buf cur;
  size_t fed;
  int id;
  int nreq;
  int ws;
  int is_head;
  int closing;
  struct upconn *next;
} upconn;

struct upsrv {
  uv_tcp_t listen;
  int port;
  up_mode mode;
  int accepts;
  int requests;
  ae_buf got;
  size_t big_size;
  upconn *conns;
  int listen_closed;
  int open_conns;
};

typedef struct {
  uv_write_t req;
  char data[];
} up_wreq;

static void up_write_cb(uv_write_t *r, int status) {
  (void)status;
  free(r);
}

static void up_write(upconn *c, const char *d, size_t n) {
  if (c->closing || n == 0)
    return;
  up_wreq *w = ae_malloc(sizeof(*w) + n);
  memcpy(w->data, d, n);
  uv_buf_t b = uv_buf_init(w->data, (unsigned)n);
  if (uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, up_write_cb) != 0)
    free(w);
}

static void up_conn_closed(uv_handle_t *h) {
  upconn *c = h->data;
  upsrv *s = c->s;
  upconn **pp = &s->conns;
  while (*pp && *pp != c)
    pp = &(*pp)->next;
  if (*pp)
    *pp = c->next;
  s->open_conns--;
  ae_buf_free(&c->cur);
  free(c);
}

static void up_close(upconn *c) {
  if (c->closing)
    return;
  c->closing = 1;
  uv_close((uv_handle_t *)&c->tcp, up_conn_closed);
}

static int up_mc(llhttp_t *p) {
  upconn *c = p->data;
  c->is_head = p->method == HTTP_HEAD;
  c->ws = p->upgrade;
  return HPE_PAUSED;
}

static int up_hc(llhttp_t *p) {
  upconn *c = p->data;
  if (c->s->mode == UP_CONTINUE) {
    static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
    up_write(c, cont, sizeof(cont) - 1);
  }
  return 0;
}

static const llhttp_settings_t up_settings = {.on_message_complete = up_mc, .on_headers_complete = up_hc};

static void up_respond(upconn *c, const char *req, size_t reqlen) {
  upsrv *s = c->s;
  char head[512];
  int hl;
  s->requests++;
  c->nreq++;
  switch (s->mode) {
  case UP_ECHO:
  case UP_CONTINUE:
  case UP_CLOSE_SECOND:
    if (s->mode == UP_CLOSE_SECOND && c->nreq >= 2) {
      up_close(c);
      return;
    }
    hl = snprintf(head, sizeof(head), "HTTP/1.1 200 OK\r\nX-Up-Conn: %d\r\nContent-Length: %zu\r\n\r\n", c->id, reqlen);
    up_write(c, head, (size_t)hl);
    if (!c->is_head)
      up_write(c, req, reqlen);
    break;
  case UP_CHUNKED: {
    static const char r[] = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6;ext=1\r\n world\r\n"
                            "0\r\nX-Trailer: t\r\n\r\n";
    up_write(c, r, sizeof(r) - 1);
    break;
  }
  case UP_CLOSE_DELIM: {
    static const char r[] = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nbody-until-close";
    up_write(c, r, sizeof(r) - 1);
    up_close(c);
    break;
  }
  case UP_GARBAGE: {
    static const char r[] = "garbage\r\n\r\n";
    up_write(c, r, sizeof(r) - 1);
    break;
  }
  case UP_SILENT:
  case UP_NOREAD:
    break;
  case UP_BIGHEAD: {
    size_t n = 70000;
    char *r = ae_malloc(n + 100);
    int k = snprintf(r, 100, "HTTP/1.1 200 OK\r\nX-Big: ");
    memset(r + k, 'a', n);
    memcpy(r + k + n, "\r\nContent-Length: 0\r\n\r\n", 23);
    up_write(c, r, (size_t)k + n + 23);
    free(r);
    break;
  }
  case UP_EARLY_CLOSE:
    up_close(c);
    break;
  case UP_WS: {
    static const char r[] = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                            "Sec-WebSocket-Accept: x\r\n\r\n";
    up_write(c, r, sizeof(r) - 1);
    c->ws = 2;
    break;
  }
  case UP_BIG: {
    hl = snprintf(head, sizeof(head), "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\n\r\n", s->big_size);
    up_write(c, head, (size_t)hl);
    char *body = ae_malloc(s->big_size);
    memset(body, 'x', s->big_size);
    up_write(c, body, s->big_size);
    free(body);
    break;
  }
  case UP_HOPRESP: {
    static const char r[] = "HTTP/1.1 200 OK\r\nConnection: X-Up-Private\r\nX-Up-Private: 1\r\nKeep-Alive: timeout=5\r\n"
                            "X-Kept: yes\r\nContent-Length: 2\r\n\r\nok";
    up_write(c, r, sizeof(r) - 1);
    break;
  }
  }
}

static void up_alloc(uv_handle_t *h, size_t sz, uv_buf_t *b) {
  (void)h;
  b->base = ae_malloc(sz);
  b->len = sz;
}

static void up_read(uv_stream_t *st, ssize_t n, const uv_buf_t *b) {
  upconn *c = st->data;
  if (n < 0) {
    free(b->base);
    up_close(c);
    return;
  }
  if (n == 0 || c->closing) {
    free(b->base);
    return;
  }
  ae_buf_add(&c->s->got, b->base, (size_t)n);
  if (c->ws == 2) {
    up_write(c, b->base, (size_t)n);
    free(b->base);
    return;
  }
  ae_buf_add(&c->cur, b->base, (size_t)n);
  free(b->base);
  /* c->cur holds the current request's bytes; c->fed of them went through llhttp already. */
  while (c->fed < c->cur.len && !c->closing && c->ws != 2) {
    const char *start = c->cur.d + c->fed;
    llhttp_errno_t e = llhttp_execute(&c->p, start, c->cur.len - c->fed);
    if (e == HPE_OK) {
      c->fed = c->cur.len;
      break;
    }
    if (e == HPE_PAUSED) {
      size_t end = c->fed + (size_t)(llhttp_get_error_pos(&c->p) - start);
      llhttp_resume(&c->p);
      up_respond(c, c->cur.d, end);
      ae_buf_consume(&c->cur, end);
      c->fed = 0;
      continue;
    }
    if (e == HPE_PAUSED_UPGRADE)
      break;
    up_close(c);
    return;
  }
}

static void up_accept(uv_stream_t *ls, int status) {
  upsrv *s = ls->data;
  if (status < 0)
    return;
  upconn *c = ae_calloc(1, sizeof(*c));
  c->s = s;
  uv_tcp_init(T_loop, &c->tcp);
  c->tcp.data = c;
  if (uv_accept(ls, (uv_stream_t *)&c->tcp) != 0) {
    c->closing = 1;
    s->open_conns++;
    uv_close((uv_handle_t *)&c->tcp, up_conn_closed);
    return;
  }
  c->id = ++s->accepts;
  s->open_conns++;
  c->next = s->conns;
  s->conns = c;
  llhttp_init(&c->p, HTTP_REQUEST, &up_settings);
  c->p.data = c;
  if (s->mode != UP_NOREAD)
    uv_read_start((uv_stream_t *)&c->tcp, up_alloc, up_read);
}

/* An upstream listening on 127.0.0.1 (v6 = 0) or [::1] (v6 = 1), port chosen by the kernel. */
static upsrv *up_start_at(up_mode mode, int v6) {
  upsrv *s = ae_calloc(1, sizeof(*s));
  s->mode = mode;
  uv_tcp_init(T_loop, &s->listen);
  s->listen.data = s;
  struct sockaddr_storage a;
  if (v6)
    uv_ip6_addr("::1", 0, (struct sockaddr_in6 *)&a);
  else
    uv_ip4_addr("127.0.0.1", 0, (struct sockaddr_in *)&a);
  if (uv_tcp_bind(&s->listen, (const struct sockaddr *)&a, 0) != 0 ||
      uv_listen((uv_stream_t *)&s->listen, 128, up_accept) != 0) {
    fprintf(stderr, "upstream listen failed\n");
    abort();
  }
  struct sockaddr_storage ss;
  int len = sizeof(ss);
  uv_tcp_getsockname(&s->listen, (struct sockaddr *)&ss, &len);
  s->port = v6 ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port) : ntohs(((struct sockaddr_in *)&ss)->sin_port);
  return s;
}

static upsrv *up_start(up_mode mode) { return up_start_at(mode, 0); }

static void up_listen_closed(uv_handle_t *h) { ((upsrv *)h->data)->listen_closed = 1; }
static int up_all_closed(void *ud) {
  upsrv *s = ud;
  return s->listen_closed && s->open_conns == 0;
}

static void up_stop(upsrv *s) {
  uv_close((uv_handle_t *)&s->listen, up_listen_closed);
  for (upconn *c = s->conns; c; c = c->next)
    up_close(c);
  t_run_until(up_all_closed, s, 2000);
  ae_buf_free(&s->got);
  free(s);
}

/* A loopback port with nothing listening. */
static int t_closed_port(void) {
  uv_tcp_t t;
  uv_tcp_init(T_loop, &t);
  struct sockaddr_in a;
  uv_ip4_addr("127.0.0.1", 0, &a);
  uv_tcp_bind(&t, (const struct sockaddr *)&a, 0);
  struct sockaddr_storage ss;
  int len = sizeof(ss);
  uv_tcp_getsockname(&t, (struct sockaddr *)&ss, &len);
  int port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
  uv_close((uv_handle_t *)&t, NULL);
  uv_run(T_loop, UV_RUN_NOWAIT);
  return port;
}

#endif
