/* Unit tests for httpc against an in-process loopback HTTP server on the same libuv loop:
 * methods, headers, body cap, timeout, refused connections, cancel, concurrency, close with
 * a request in flight; plus Retry-After and Link parsing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <cmocka.h>

#include <gnutls/abstract.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include "acmedge/httpc.h"

/* ---------- loopback server ---------- */

#define SRV_BUF 65536

typedef struct srv srv;

typedef struct srv_conn {
  uv_tcp_t tcp;
  srv *s;
  char buf[SRV_BUF];
  size_t len;
  int closing;
  struct srv_conn *next;
} srv_conn;

struct srv {
  uv_tcp_t listener;
  int port;
  int requests;      /* complete requests received */
  int slow_requests; /* requests left unanswered on purpose */
  srv_conn *conns;
  char last_method[16];
  char last_ctype[128];
  char last_ua[128];
  char last_body[1024];
};

typedef struct {
  uv_write_t w;
  char *data;
} srv_write;

static void srv_conn_closed(uv_handle_t *h) {
  srv_conn *c = h->data;
  srv *s = c->s;
  for (srv_conn **pp = &s->conns; *pp; pp = &(*pp)->next) {
    if (*pp == c) {
      *pp = c->next;
      break;
    }
  }
  free(c);
}

static void srv_conn_close(srv_conn *c) {
  if (c->closing)
    return;
  c->closing = 1;
  uv_close((uv_handle_t *)&c->tcp, srv_conn_closed);
}

static void srv_written(uv_write_t *w, int status) {
  srv_write *sw = (srv_write *)w;
  free(sw->data);
  free(sw);
}

static void srv_send(srv_conn *c, const char *data, size_t len) {
  srv_write *sw = calloc(1, sizeof(*sw));
  assert_non_null(sw);
  sw->data = malloc(len);
  assert_non_null(sw->data);
  memcpy(sw->data, data, len);
  uv_buf_t b = uv_buf_init(sw->data, (unsigned)len);
  if (uv_write(&sw->w, (uv_stream_t *)&c->tcp, &b, 1, srv_written) < 0) {
    free(sw->data);
    free(sw);
  }
}

static void srv_respond(srv_conn *c, const char *status, const char *extra_headers, const char *body, size_t blen,
                        int head) {
  char hdr[2048];
  int n = snprintf(hdr, sizeof(hdr), "HTTP/1.1 %s\r\nContent-Length: %zu\r\n%s\r\n", status, blen,
                   extra_headers ? extra_headers : "");
  assert_true(n > 0 && (size_t)n < sizeof(hdr));
  srv_send(c, hdr, (size_t)n);
  if (blen && !head)
    srv_send(c, body, blen);
}

static const char *find_header(const char *hdrs, size_t hlen, const char *name, size_t *vlen) {
  size_t nl = strlen(name);
  const char *p = hdrs;
  const char *end = hdrs + hlen;
  while (p < end) {
    const char *eol = memchr(p, '\n', (size_t)(end - p));
    if (!eol)
      eol = end;
    if ((size_t)(eol - p) > nl + 1 && strncasecmp(p, name, nl) == 0 && p[nl] == ':') {
      const char *v = p + nl + 1;
      while (*v == ' ')
        v++;
      const char *ve = eol;
      while (ve > v && (ve[-1] == '\r' || ve[-1] == ' '))
        ve--;
      *vlen = (size_t)(ve - v);
      return v;
    }
    p = eol + 1;
  }
  return NULL;
}

static void copy_field(char *dst, size_t cap, const char *v, size_t n) {
  if (!v) {
    dst[0] = 0;
    return;
  }
  if (n >= cap)
    n = cap - 1;
  memcpy(dst, v, n);
  dst[n] = 0;
}

/* Handles one complete request; returns 0 to keep the connection, 1 when it was closed. */
static int srv_handle(srv_conn *c, const char *method, const char *path, const char *body, size_t blen) {
  srv *s = c->s;
  int head = strcmp(method, "HEAD") == 0;
  if (strcmp(path, "/get") == 0 || strcmp(path, "/nonce") == 0) {
    const char *b = "{\"ok\":true}";
    srv_respond(c, "200 OK",
                "Content-Type: application/json\r\n"
                "replay-NONCE: nonce-123\r\n"
                "Location: http://127.0.0.1/acct/1\r\n"
                "Link: <http://127.0.0.1/dir>;rel=\"index\"\r\n"
                "Link: <http://127.0.0.1/alt1>;rel=\"alternate\", <http://127.0.0.1/up>; rel=\"up\"\r\n"
                "Retry-After: 7\r\n",
                b, strlen(b), head);
  } else if (strncmp(path, "/id/", 4) == 0) {
    srv_respond(c, "200 OK", "Content-Type: text/plain\r\n", path + 4, strlen(path + 4), head);
  } else if (strcmp(path, "/echo") == 0) {
    srv_respond(c, "201 Created", "Content-Type: application/octet-stream\r\n", body, blen, head);
  } else if (strcmp(path, "/redirect") == 0) {
    srv_respond(c, "302 Found", "Location: http://127.0.0.1:1/elsewhere\r\n", "", 0, head);
  } else if (strcmp(path, "/problem") == 0) {
    const char *b = "{\"type\":\"urn:ietf:params:acme:error:badNonce\"}";
    srv_respond(c, "400 Bad Request", "Content-Type: application/problem+json\r\nReplay-Nonce: n2\r\n", b,
                strlen(b), head);
  } else if (strcmp(path, "/big") == 0 || strcmp(path, "/big-close") == 0) {
    size_t n = 5000;
    char *b = malloc(n);
    assert_non_null(b);
    memset(b, 'x', n);
    if (strcmp(path, "/big") == 0) {
      srv_respond(c, "200 OK", "", b, n, head);
    } else {
      /* No Content-Length: the client only learns the size while reading. */
      const char *h = "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n";
      srv_send(c, h, strlen(h));
      srv_send(c, b, n);
      free(b);
      srv_conn_close(c);
      return 1;
    }
    free(b);
  } else if (strcmp(path, "/slow") == 0) {
    s->slow_requests++;
  } else {
    srv_respond(c, "404 Not Found", "", "", 0, head);
  }
  return 0;
}

static void srv_process(srv_conn *c) {
  for (;;) {
    char *end = NULL;
    for (size_t i = 0; i + 3 < c->len; i++) {
      if (memcmp(c->buf + i, "\r\n\r\n", 4) == 0) {
        end = c->buf + i;
        break;
      }
    }
    if (!end)
      return;
    size_t hlen = (size_t)(end - c->buf) + 4;
    size_t cl_len = 0;
    const char *cl = find_header(c->buf, hlen, "Content-Length", &cl_len);
    size_t blen = cl ? (size_t)strtoul(cl, NULL, 10) : 0;
    if (hlen + blen > c->len)
      return;
    char method[16] = {0}, path[256] = {0};
    if (sscanf(c->buf, "%15s %255s", method, path) != 2) {
      srv_conn_close(c);
      return;
    }
    srv *s = c->s;
    s->requests++;
    snprintf(s->last_method, sizeof(s->last_method), "%s", method);
    size_t n = 0;
    const char *v = find_header(c->buf, hlen, "Content-Type", &n);
    copy_field(s->last_ctype, sizeof(s->last_ctype), v, n);
    v = find_header(c->buf, hlen, "User-Agent", &n);
    copy_field(s->last_ua, sizeof(s->last_ua), v, n);
    copy_field(s->last_body, sizeof(s->last_body), c->buf + hlen, blen);
    char body[1024];
    size_t bl = blen < sizeof(body) ? blen : sizeof(body);
    memcpy(body, c->buf + hlen, bl);
    memmove(c->buf, c->buf + hlen + blen, c->len - hlen - blen);
    c->len -= hlen + blen;
    if (srv_handle(c, method, path, body, bl))
      return;
  }
}

static void srv_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  srv_conn *c = h->data;
  buf->base = c->buf + c->len;
  buf->len = SRV_BUF - c->len;
}

static void srv_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf) {
  srv_conn *c = st->data;
  if (nread < 0 || c->len + (size_t)nread >= SRV_BUF) {
    srv_conn_close(c);
    return;
  }
  c->len += (size_t)nread;
  srv_process(c);
}

static void srv_on_conn(uv_stream_t *l, int status) {
  srv *s = l->data;
  assert_int_equal(status, 0);
  srv_conn *c = calloc(1, sizeof(*c));
  assert_non_null(c);
  c->s = s;
  assert_int_equal(uv_tcp_init(l->loop, &c->tcp), 0);
  c->tcp.data = c;
  c->next = s->conns;
  s->conns = c;
  assert_int_equal(uv_accept(l, (uv_stream_t *)&c->tcp), 0);
  assert_int_equal(uv_read_start((uv_stream_t *)&c->tcp, srv_alloc, srv_read), 0);
}

static void srv_start(uv_loop_t *loop, srv *s) {
  memset(s, 0, sizeof(*s));
  assert_int_equal(uv_tcp_init(loop, &s->listener), 0);
  s->listener.data = s;
  struct sockaddr_in a;
  assert_int_equal(uv_ip4_addr("127.0.0.1", 0, &a), 0);
  assert_int_equal(uv_tcp_bind(&s->listener, (const struct sockaddr *)&a, 0), 0);
  assert_int_equal(uv_listen((uv_stream_t *)&s->listener, 64, srv_on_conn), 0);
  struct sockaddr_storage ss;
  int len = sizeof(ss);
  assert_int_equal(uv_tcp_getsockname(&s->listener, (struct sockaddr *)&ss, &len), 0);
  s->port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

static void srv_stop(srv *s) {
  uv_close((uv_handle_t *)&s->listener, NULL);
  for (srv_conn *c = s->conns; c; c = c->next)
    srv_conn_close(c);
}

/* ---------- fixture ---------- */

typedef struct {
  uv_loop_t loop;
  srv server;
  ae_httpc *c;
  int closed;
} fixture;

typedef struct {
  int calls;
  int code;
  long status;
  char body[8192];
  size_t body_len;
  char ctype[128], location[256], nonce[128], retry_after[64];
  int has_ctype, has_location, has_nonce, has_retry;
  size_t nlinks;
  char up[256], alternate[256], index[256];
  char error[256];
} result;

static void on_resp(void *ud, const ae_http_response *r) {
  result *res = ud;
  res->calls++;
  res->code = r->code;
  res->status = r->status;
  assert_non_null(r->body);
  assert_int_equal(strlen(r->body), r->body_len);
  res->body_len = r->body_len;
  copy_field(res->body, sizeof(res->body), r->body, r->body_len);
#define CP(field, dst, flag)                                        \
  do {                                                              \
    if (r->field) {                                                 \
      res->flag = 1;                                                \
      copy_field(res->dst, sizeof(res->dst), r->field, strlen(r->field)); \
    }                                                               \
  } while (0)
  CP(content_type, ctype, has_ctype);
  CP(location, location, has_location);
  CP(replay_nonce, nonce, has_nonce);
  CP(retry_after, retry_after, has_retry);
#undef CP
  res->nlinks = r->nlinks;
  ae_http_find_link(r, "up", res->up, sizeof(res->up));
  ae_http_find_link(r, "alternate", res->alternate, sizeof(res->alternate));
  ae_http_find_link(r, "index", res->index, sizeof(res->index));
  snprintf(res->error, sizeof(res->error), "%s", r->error);
}

static int setup(void **state) {
  fixture *f = calloc(1, sizeof(*f));
  if (!f)
    return -1;
  if (uv_loop_init(&f->loop) != 0)
    return -1;
  srv_start(&f->loop, &f->server);
  ae_err err = {0};
  if (ae_httpc_new(&f->loop, &f->c, &err) != 0)
    return -1;
  *state = f;
  return 0;
}

static void on_closed(void *ud) {
  fixture *f = ud;
  f->closed++;
}

static int teardown(void **state) {
  fixture *f = *state;
  if (f->c && !f->closed)
    ae_httpc_close(f->c, on_closed, f);
  srv_stop(&f->server);
  uv_run(&f->loop, UV_RUN_DEFAULT);
  assert_int_equal(f->closed, 1);
  ae_httpc_free(f->c);
  assert_int_equal(uv_loop_close(&f->loop), 0);
  free(f);
  return 0;
}

static int g_deadline_hit;
static void on_deadline(uv_timer_t *t) { g_deadline_hit = 1; }

/* Runs the loop until *counter >= target or ms elapse; returns 1 when the target was reached. */
static int run_until(fixture *f, int *counter, int target, unsigned ms) {
  uv_timer_t t;
  g_deadline_hit = 0;
  uv_timer_init(&f->loop, &t);
  uv_timer_start(&t, on_deadline, ms, 0);
  while (*counter < target && !g_deadline_hit)
    uv_run(&f->loop, UV_RUN_ONCE);
  uv_close((uv_handle_t *)&t, NULL);
  uv_run(&f->loop, UV_RUN_NOWAIT);
  return *counter >= target;
}

static void url(fixture *f, char *buf, size_t n, const char *path) {
  snprintf(buf, n, "http://127.0.0.1:%d%s", f->server.port, path);
}

static void start(fixture *f, const char *method, const char *path, const char *body, result *res,
                  ae_httpc_req **out) {
  char u[256];
  url(f, u, sizeof(u), path);
  ae_http_request req = {0};
  req.method = method;
  req.url = u;
  req.body = body;
  req.body_len = body ? strlen(body) : 0;
  req.content_type = body ? "application/jose+json" : NULL;
  ae_err err = {0};
  assert_int_equal(ae_httpc_request(f->c, &req, on_resp, res, out, &err), 0);
}

/* ---------- tests ---------- */

static void test_get_headers(void **state) {
  fixture *f = *state;
  result res = {0};
  start(f, "GET", "/get", NULL, &res, NULL);
  assert_true(run_until(f, &res.calls, 1, 5000));
  assert_int_equal(res.calls, 1);
  assert_int_equal(res.code, 0);
  assert_int_equal(res.status, 200);
  assert_string_equal(res.body, "{\"ok\":true}");
  assert_int_equal(res.body_len, 11);
  assert_string_equal(res.ctype, "application/json");
  assert_string_equal(res.nonce, "nonce-123");
  assert_string_equal(res.location, "http://127.0.0.1/acct/1");
  assert_string_equal(res.retry_after, "7");
  assert_int_equal(res.nlinks, 2);
  assert_string_equal(res.up, "http://127.0.0.1/up");
  assert_string_equal(res.alternate, "http://127.0.0.1/alt1");
  assert_string_equal(res.index, "http://127.0.0.1/dir");
  assert_string_equal(f->server.last_method, "GET");
  assert_string_equal(f->server.last_ua, "acmedge/" AE_VERSION);
  /* No further callbacks arrive later. */
  int never = 0;
  run_until(f, &never, 1, 100);
  assert_int_equal(res.calls, 1);
}

static void test_post_and_head(void **state) {
  fixture *f = *state;
  result post = {0}, head = {0}, prob = {0}, empty = {0};
  start(f, "POST", "/echo", "{\"protected\":\"x\"}", &post, NULL);
  assert_true(run_until(f, &post.calls, 1, 5000));
  assert_int_equal(post.code, 0);
  assert_int_equal(post.status, 201);
  assert_string_equal(post.body, "{\"protected\":\"x\"}");
  assert_string_equal(f->server.last_method, "POST");
  assert_string_equal(f->server.last_ctype, "application/jose+json");
  assert_string_equal(f->server.last_body, "{\"protected\":\"x\"}");

  /* POST with no body and no content type sends an empty body and no form content type. */
  start(f, "POST", "/echo", NULL, &empty, NULL);
  assert_true(run_until(f, &empty.calls, 1, 5000));
  assert_int_equal(empty.status, 201);
  assert_int_equal(empty.body_len, 0);
  assert_string_equal(empty.body, "");
  assert_string_equal(f->server.last_ctype, "");

  start(f, "HEAD", "/nonce", NULL, &head, NULL);
  assert_true(run_until(f, &head.calls, 1, 5000));
  assert_int_equal(head.code, 0);
  assert_int_equal(head.status, 200);
  assert_int_equal(head.body_len, 0);
  assert_string_equal(head.nonce, "nonce-123");
  assert_string_equal(f->server.last_method, "HEAD");

  start(f, "POST", "/problem", "{}", &prob, NULL);
  assert_true(run_until(f, &prob.calls, 1, 5000));
  assert_int_equal(prob.code, 0);
  assert_int_equal(prob.status, 400);
  assert_string_equal(prob.ctype, "application/problem+json");
  assert_string_equal(prob.nonce, "n2");
  assert_int_equal(prob.has_location, 0);
  assert_int_equal(prob.nlinks, 0);
}

static void test_no_redirect(void **state) {
  fixture *f = *state;
  result res = {0};
  start(f, "GET", "/redirect", NULL, &res, NULL);
  assert_true(run_until(f, &res.calls, 1, 5000));
  assert_int_equal(res.code, 0);
  assert_int_equal(res.status, 302);
  assert_string_equal(res.location, "http://127.0.0.1:1/elsewhere");
  assert_int_equal(f->server.requests, 1);
}

static void test_body_too_large(void **state) {
  fixture *f = *state;
  const char *paths[] = {"/big", "/big-close"};
  for (size_t i = 0; i < 2; i++) {
    result res = {0};
    char u[256];
    url(f, u, sizeof(u), paths[i]);
    ae_http_request req = {.method = "GET", .url = u, .max_body = 1000};
    ae_err err = {0};
    assert_int_equal(ae_httpc_request(f->c, &req, on_resp, &res, NULL, &err), 0);
    assert_true(run_until(f, &res.calls, 1, 5000));
    assert_int_equal(res.calls, 1);
    assert_int_equal(res.code, AE_ELIMIT);
    assert_non_null(strstr(res.error, "response too large"));
  }
  /* The same body fits under the default 1 MiB cap. */
  result ok = {0};
  start(f, "GET", "/big", NULL, &ok, NULL);
  assert_true(run_until(f, &ok.calls, 1, 5000));
  assert_int_equal(ok.code, 0);
  assert_int_equal(ok.body_len, 5000);
}

static void test_timeout(void **state) {
  fixture *f = *state;
  result res = {0};
  char u[256];
  url(f, u, sizeof(u), "/slow");
  ae_http_request req = {.method = "GET", .url = u, .timeout_ms = 300};
  ae_err err = {0};
  uint64_t t0 = uv_hrtime();
  assert_int_equal(ae_httpc_request(f->c, &req, on_resp, &res, NULL, &err), 0);
  assert_true(run_until(f, &res.calls, 1, 5000));
  uint64_t ms = (uv_hrtime() - t0) / 1000000u;
  assert_int_equal(res.calls, 1);
  assert_int_equal(res.code, AE_ETIMEDOUT);
  assert_int_equal(res.status, 0);
  assert_true(res.error[0] != 0);
  assert_true(ms >= 250 && ms < 3000);
  assert_int_equal(f->server.slow_requests, 1);
}

static void test_connection_refused(void **state) {
  fixture *f = *state;
  /* A port that was just free: bind, learn the number, close. */
  uv_tcp_t tmp;
  uv_tcp_init(&f->loop, &tmp);
  struct sockaddr_in a;
  uv_ip4_addr("127.0.0.1", 0, &a);
  assert_int_equal(uv_tcp_bind(&tmp, (const struct sockaddr *)&a, 0), 0);
  struct sockaddr_storage ss;
  int len = sizeof(ss);
  uv_tcp_getsockname(&tmp, (struct sockaddr *)&ss, &len);
  int port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
  uv_close((uv_handle_t *)&tmp, NULL);
  uv_run(&f->loop, UV_RUN_NOWAIT);

  char u[128];
  snprintf(u, sizeof(u), "http://127.0.0.1:%d/x", port);
  result res = {0};
  ae_http_request req = {.method = "GET", .url = u, .timeout_ms = 3000};
  ae_err err = {0};
  assert_int_equal(ae_httpc_request(f->c, &req, on_resp, &res, NULL, &err), 0);
  assert_true(run_until(f, &res.calls, 1, 5000));
  assert_int_equal(res.calls, 1);
  assert_true(res.code < 0);
  assert_int_equal(res.status, 0);
  assert_true(res.error[0] != 0);
  /* The client still works afterwards. */
  result ok = {0};
  start(f, "GET", "/get", NULL, &ok, NULL);
  assert_true(run_until(f, &ok.calls, 1, 5000));
  assert_int_equal(ok.status, 200);
}

static void test_bad_requests(void **state) {
  fixture *f = *state;
  result res = {0};
  ae_err err = {0};
  ae_httpc_req *r = (ae_httpc_req *)1;
  ae_http_request req = {.method = "GET", .url = "ftp://127.0.0.1/x"};
  assert_int_equal(ae_httpc_request(f->c, &req, on_resp, &res, &r, &err), AE_EINVAL);
  assert_null(r);
  req.url = "file:///etc/passwd";
  assert_int_equal(ae_httpc_request(f->c, &req, on_resp, &res, NULL, &err), AE_EINVAL);
  req.url = "http://127.0.0.1/a\r\nX: y";
  assert_int_equal(ae_httpc_request(f->c, &req, on_resp, &res, NULL, &err), AE_EINVAL);
  req.url = "http://127.0.0.1/x";
  req.method = "DELETE";
  assert_int_equal(ae_httpc_request(f->c, &req, on_resp, &res, NULL, &err), AE_EINVAL);
  req.method = "GET";
  assert_int_equal(ae_httpc_request(f->c, &req, NULL, &res, NULL, &err), AE_EINVAL);
  req.method = "POST";
  req.content_type = "text/plain\r\nX-Injected: 1";
  assert_int_equal(ae_httpc_request(f->c, &req, on_resp, &res, NULL, &err), AE_EINVAL);
  assert_true(err.msg[0] != 0);
  int never = 0;
  run_until(f, &never, 1, 50);
  assert_int_equal(res.calls, 0);
}

static void test_cancel(void **state) {
  fixture *f = *state;
  result a = {0}, b = {0}, c = {0};
  ae_httpc_req *ra = NULL, *rb = NULL;
  /* Cancelled before any I/O happened. */
  start(f, "GET", "/get", NULL, &a, &ra);
  assert_non_null(ra);
  ae_httpc_cancel(ra);
  /* Cancelled while the server holds it. */
  start(f, "GET", "/slow", NULL, &b, &rb);
  assert_true(run_until(f, &f->server.slow_requests, 1, 5000));
  ae_httpc_cancel(rb);
  ae_httpc_cancel(NULL);
  start(f, "GET", "/get", NULL, &c, NULL);
  assert_true(run_until(f, &c.calls, 1, 5000));
  int never = 0;
  run_until(f, &never, 1, 200);
  assert_int_equal(a.calls, 0);
  assert_int_equal(b.calls, 0);
  assert_int_equal(c.calls, 1);
  assert_int_equal(c.status, 200);
}

typedef struct {
  int calls[20];
  int total;
  int bad;
} multi_result;

typedef struct {
  multi_result *m;
  int idx;
} multi_ud;

static void on_multi(void *ud, const ae_http_response *r) {
  multi_ud *u = ud;
  u->m->calls[u->idx]++;
  u->m->total++;
  char expect[16];
  snprintf(expect, sizeof(expect), "%d", u->idx);
  if (r->code != 0 || r->status != 200 || strcmp(r->body, expect) != 0)
    u->m->bad++;
}

static void test_concurrent(void **state) {
  fixture *f = *state;
  multi_result m = {0};
  multi_ud uds[20];
  for (int i = 0; i < 20; i++) {
    uds[i].m = &m;
    uds[i].idx = i;
    char path[32], u[256];
    snprintf(path, sizeof(path), "/id/%d", i);
    url(f, u, sizeof(u), path);
    ae_http_request req = {.method = i % 2 ? "POST" : "GET", .url = u, .body = i % 2 ? "{}" : NULL,
                           .body_len = i % 2 ? 2 : 0};
    ae_err err = {0};
    assert_int_equal(ae_httpc_request(f->c, &req, on_multi, &uds[i], NULL, &err), 0);
  }
  assert_true(run_until(f, &m.total, 20, 10000));
  int never = 0;
  run_until(f, &never, 1, 100);
  assert_int_equal(m.total, 20);
  assert_int_equal(m.bad, 0);
  for (int i = 0; i < 20; i++)
    assert_int_equal(m.calls[i], 1);
  assert_int_equal(f->server.requests, 20);
}

/* Starting a new request from inside a callback works (the ACME engine chains requests). */
typedef struct {
  fixture *f;
  int stage;
  result second;
} chain_state;

static void on_chain(void *ud, const ae_http_response *r) {
  chain_state *cs = ud;
  cs->stage++;
  assert_int_equal(r->status, 200);
  start(cs->f, "GET", "/get", NULL, &cs->second, NULL);
}

static void test_request_from_callback(void **state) {
  fixture *f = *state;
  chain_state cs = {.f = f};
  char u[256];
  url(f, u, sizeof(u), "/get");
  ae_http_request req = {.method = "GET", .url = u};
  ae_err err = {0};
  assert_int_equal(ae_httpc_request(f->c, &req, on_chain, &cs, NULL, &err), 0);
  assert_true(run_until(f, &cs.second.calls, 1, 5000));
  assert_int_equal(cs.stage, 1);
  assert_int_equal(cs.second.status, 200);
}

static void test_close_in_flight(void **state) {
  fixture *f = *state;
  result a = {0}, b = {0};
  start(f, "GET", "/slow", NULL, &a, NULL);
  start(f, "GET", "/slow", NULL, &b, NULL);
  assert_true(run_until(f, &f->server.slow_requests, 2, 5000));
  ae_httpc_close(f->c, on_closed, f);
  /* Close is idempotent and refuses new work without calling back. */
  ae_httpc_close(f->c, on_closed, f);
  result c = {0};
  char u[256];
  url(f, u, sizeof(u), "/get");
  ae_http_request req = {.method = "GET", .url = u};
  ae_err err = {0};
  assert_int_equal(ae_httpc_request(f->c, &req, on_resp, &c, NULL, &err), AE_ECANCELED);
  assert_int_equal(f->closed, 0); /* the close callback is asynchronous */
  assert_true(run_until(f, &f->closed, 1, 5000));
  assert_int_equal(a.calls, 0);
  assert_int_equal(b.calls, 0);
  assert_int_equal(c.calls, 0);
  /* teardown checks uv_loop_close() == 0 */
}

/* Closing the client from inside a completion callback. */
static void on_close_inside(void *ud, const ae_http_response *r) {
  fixture *f = ud;
  ae_httpc_close(f->c, on_closed, f);
}

static void test_close_from_callback(void **state) {
  fixture *f = *state;
  result other = {0};
  char u[256];
  url(f, u, sizeof(u), "/get");
  ae_http_request req = {.method = "GET", .url = u};
  ae_err err = {0};
  start(f, "GET", "/slow", NULL, &other, NULL);
  assert_int_equal(ae_httpc_request(f->c, &req, on_close_inside, f, NULL, &err), 0);
  assert_true(run_until(f, &f->closed, 1, 5000));
  assert_int_equal(other.calls, 0);
}

static void test_keepalive_reuse(void **state) {
  fixture *f = *state;
  /* Sequential requests over a reused connection exercise poll handle release and re-creation. */
  for (int i = 0; i < 5; i++) {
    result res = {0};
    start(f, "GET", "/get", NULL, &res, NULL);
    assert_true(run_until(f, &res.calls, 1, 5000));
    assert_int_equal(res.status, 200);
  }
  int nconn = 0;
  for (srv_conn *c = f->server.conns; c; c = c->next)
    nconn++;
  assert_int_equal(nconn, 1);
}

/* ---------- HTTPS: a GnuTLS server on a helper thread with a throwaway certificate ---------- */

typedef struct {
  int lfd;
  int port;
  volatile int stop;
  int requests_served;
  gnutls_certificate_credentials_t cred;
  char ca_path[64];
  pthread_t thread;
} tls_srv;

static void tls_make_cert(tls_srv *t) {
  gnutls_x509_privkey_t key;
  gnutls_x509_crt_t crt;
  assert_int_equal(gnutls_x509_privkey_init(&key), 0);
  assert_int_equal(gnutls_x509_privkey_generate(key, GNUTLS_PK_ECDSA,
                                                GNUTLS_CURVE_TO_BITS(GNUTLS_ECC_CURVE_SECP256R1), 0), 0);
  assert_int_equal(gnutls_x509_crt_init(&crt), 0);
  assert_int_equal(gnutls_x509_crt_set_key(crt, key), 0);
  assert_int_equal(gnutls_x509_crt_set_version(crt, 3), 0);
  unsigned char serial[4] = {0x11, 0x22, 0x33, 0x44};
  assert_int_equal(gnutls_x509_crt_set_serial(crt, serial, sizeof(serial)), 0);
  time_t now = time(NULL);
  assert_int_equal(gnutls_x509_crt_set_activation_time(crt, now - 3600), 0);
  assert_int_equal(gnutls_x509_crt_set_expiration_time(crt, now + 3600), 0);
  assert_int_equal(gnutls_x509_crt_set_dn_by_oid(crt, GNUTLS_OID_X520_COMMON_NAME, 0, "localhost", 9), 0);
  unsigned char ip[4] = {127, 0, 0, 1};
  assert_int_equal(gnutls_x509_crt_set_subject_alt_name(crt, GNUTLS_SAN_IPADDRESS, ip, 4, GNUTLS_FSAN_APPEND), 0);
  assert_int_equal(gnutls_x509_crt_set_subject_alt_name(crt, GNUTLS_SAN_DNSNAME, "localhost", 9, GNUTLS_FSAN_APPEND), 0);
  assert_int_equal(gnutls_x509_crt_set_basic_constraints(crt, 1, -1), 0);
  assert_int_equal(gnutls_x509_crt_set_key_usage(crt, GNUTLS_KEY_DIGITAL_SIGNATURE | GNUTLS_KEY_KEY_CERT_SIGN), 0);
  assert_int_equal(gnutls_x509_crt_sign2(crt, crt, key, GNUTLS_DIG_SHA256, 0), 0);
  gnutls_datum_t pem = {NULL, 0};
  assert_int_equal(gnutls_x509_crt_export2(crt, GNUTLS_X509_FMT_PEM, &pem), 0);
  snprintf(t->ca_path, sizeof(t->ca_path), "/tmp/ae_httpc_ca_XXXXXX");
  int fd = mkstemp(t->ca_path);
  assert_true(fd >= 0);
  assert_int_equal(write(fd, pem.data, pem.size), (ssize_t)pem.size);
  close(fd);
  gnutls_free(pem.data);
  assert_int_equal(gnutls_certificate_allocate_credentials(&t->cred), 0);
  assert_int_equal(gnutls_certificate_set_x509_key(t->cred, &crt, 1, key), 0);
  gnutls_x509_crt_deinit(crt);
  gnutls_x509_privkey_deinit(key);
}

static void tls_serve_one(tls_srv *t, int fd) {
  gnutls_session_t sess;
  if (gnutls_init(&sess, GNUTLS_SERVER) < 0)
    return;
  gnutls_set_default_priority(sess);
  gnutls_credentials_set(sess, GNUTLS_CRD_CERTIFICATE, t->cred);
  gnutls_transport_set_int(sess, fd);
  gnutls_handshake_set_timeout(sess, 5000);
  int rc;
  do {
    rc = gnutls_handshake(sess);
  } while (rc < 0 && !gnutls_error_is_fatal(rc));
  if (rc == 0) {
    char req[4096];
    req[0] = 0;
    size_t have = 0;
    while (have < sizeof(req) - 1) {
      ssize_t n = gnutls_record_recv(sess, req + have, sizeof(req) - 1 - have);
      if (n <= 0)
        break;
      have += (size_t)n;
      req[have] = 0;
      if (strstr(req, "\r\n\r\n"))
        break;
    }
    if (!strstr(req, "\r\n\r\n")) {
      gnutls_deinit(sess);
      return;
    }
    t->requests_served++;
    const char *resp = "HTTP/1.1 200 OK\r\nContent-Length: 6\r\nReplay-Nonce: tls-nonce\r\nConnection: close\r\n\r\nsecure";
    gnutls_record_send(sess, resp, strlen(resp));
    gnutls_bye(sess, GNUTLS_SHUT_WR);
  }
  gnutls_deinit(sess);
}

static void *tls_thread(void *arg) {
  tls_srv *t = arg;
  while (!t->stop) {
    struct pollfd pfd = {.fd = t->lfd, .events = POLLIN};
    if (poll(&pfd, 1, 50) <= 0)
      continue;
    int fd = accept(t->lfd, NULL, NULL);
    if (fd < 0)
      continue;
    tls_serve_one(t, fd);
    close(fd);
  }
  return NULL;
}

static void tls_start(tls_srv *t) {
  memset(t, 0, sizeof(*t));
  tls_make_cert(t);
  t->lfd = socket(AF_INET, SOCK_STREAM, 0);
  assert_true(t->lfd >= 0);
  struct sockaddr_in a;
  memset(&a, 0, sizeof(a));
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  assert_int_equal(bind(t->lfd, (struct sockaddr *)&a, sizeof(a)), 0);
  assert_int_equal(listen(t->lfd, 8), 0);
  socklen_t len = sizeof(a);
  assert_int_equal(getsockname(t->lfd, (struct sockaddr *)&a, &len), 0);
  t->port = ntohs(a.sin_port);
  assert_int_equal(pthread_create(&t->thread, NULL, tls_thread, t), 0);
}

static void tls_stop(tls_srv *t) {
  t->stop = 1;
  pthread_join(t->thread, NULL);
  close(t->lfd);
  gnutls_certificate_free_credentials(t->cred);
  unlink(t->ca_path);
}

static void test_https(void **state) {
  fixture *f = *state;
  tls_srv t;
  tls_start(&t);
  char u[128];
  snprintf(u, sizeof(u), "https://127.0.0.1:%d/x", t.port);
  ae_err err = {0};

  /* Trusted through ca_bundle. */
  result ok = {0};
  ae_http_request req = {.method = "GET", .url = u, .ca_bundle = t.ca_path, .timeout_ms = 10000};
  assert_int_equal(ae_httpc_request(f->c, &req, on_resp, &ok, NULL, &err), 0);
  assert_true(run_until(f, &ok.calls, 1, 15000));
  assert_int_equal(ok.code, 0);
  assert_int_equal(ok.status, 200);
  assert_string_equal(ok.body, "secure");
  assert_string_equal(ok.nonce, "tls-nonce");

  /* Not trusted by an unrelated bundle: verification fails with a TLS error, no response. */
  result bad = {0};
  char other[64];
  snprintf(other, sizeof(other), "/tmp/ae_httpc_other_XXXXXX");
  int fd = mkstemp(other);
  assert_true(fd >= 0);
  tls_srv t2;
  memset(&t2, 0, sizeof(t2));
  tls_make_cert(&t2); /* a second, unrelated self-signed certificate */
  FILE *fp = fopen(t2.ca_path, "r");
  assert_non_null(fp);
  char pem[4096];
  size_t pemlen = fread(pem, 1, sizeof(pem), fp);
  fclose(fp);
  assert_true(pemlen > 0);
  assert_int_equal(write(fd, pem, pemlen), (ssize_t)pemlen);
  close(fd);
  unlink(t2.ca_path);
  gnutls_certificate_free_credentials(t2.cred);
  req.ca_bundle = other;
  assert_int_equal(ae_httpc_request(f->c, &req, on_resp, &bad, NULL, &err), 0);
  assert_true(run_until(f, &bad.calls, 1, 15000));
  assert_int_equal(bad.code, AE_EPROTO);
  assert_int_equal(bad.status, 0);
  assert_true(bad.error[0] != 0);
  unlink(other);
  tls_stop(&t);
  /* The client gave up before sending the request to the untrusted server. */
  assert_int_equal(t.requests_served, 1);
}

/* ---------- pure parsers ---------- */

static void test_retry_after(void **state) {
  (void)state;
  assert_int_equal(ae_http_retry_after_seconds("120"), 120);
  assert_int_equal(ae_http_retry_after_seconds(" 0 "), 0);
  assert_int_equal(ae_http_retry_after_seconds(NULL), -1);
  assert_int_equal(ae_http_retry_after_seconds(""), -1);
  assert_int_equal(ae_http_retry_after_seconds("-5"), -1);
  assert_int_equal(ae_http_retry_after_seconds("12abc"), -1);
  assert_int_equal(ae_http_retry_after_seconds("1.5"), -1);
  assert_int_equal(ae_http_retry_after_seconds("garbage"), -1);
  assert_int_equal(ae_http_retry_after_seconds("Mon, 99 Foo 2020 99:99:99 GMT"), -1);
  assert_int_equal(ae_http_retry_after_seconds("99999999999999999999999999"), -1);
  /* Dates in the past mean "now". */
  assert_int_equal(ae_http_retry_after_seconds("Sun, 06 Nov 1994 08:49:37 GMT"), 0);
  assert_int_equal(ae_http_retry_after_seconds("Sunday, 06-Nov-94 08:49:37 GMT"), 0);
  assert_int_equal(ae_http_retry_after_seconds("Sun Nov  6 08:49:37 1994"), 0);
  /* A date one hour ahead. */
  time_t later = time(NULL) + 3600;
  struct tm tm;
  gmtime_r(&later, &tm);
  char buf[64];
  static const char *const wd[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
  static const char *const mon[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                    "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  snprintf(buf, sizeof(buf), "%s, %02d %s %04d %02d:%02d:%02d GMT", wd[tm.tm_wday], tm.tm_mday, mon[tm.tm_mon],
           tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
  long s = ae_http_retry_after_seconds(buf);
  assert_true(s >= 3595 && s <= 3600);
}

static void test_find_link(void **state) {
  (void)state;
  char *links[] = {
      (char *)"<https://ca.test/dir>;rel=\"index\"",
      (char *)"<https://ca.test/a,b>; rel=\"alternate\" , <https://ca.test/chain/1>;rel=up",
      (char *)"<https://ca.test/x>; title=\"a, b; rel=up\"; rel=\"next\"",
      (char *)"<https://ca.test/multi>; rel=\"Describedby  UP2 other\"",
  };
  ae_http_response r;
  memset(&r, 0, sizeof(r));
  r.links = links;
  r.nlinks = 4;
  char out[128];
  assert_int_equal(ae_http_find_link(&r, "up", out, sizeof(out)), 0);
  assert_string_equal(out, "https://ca.test/chain/1");
  assert_int_equal(ae_http_find_link(&r, "alternate", out, sizeof(out)), 0);
  assert_string_equal(out, "https://ca.test/a,b");
  assert_int_equal(ae_http_find_link(&r, "index", out, sizeof(out)), 0);
  assert_string_equal(out, "https://ca.test/dir");
  /* rel inside another parameter's quoted value does not count. */
  assert_int_equal(ae_http_find_link(&r, "next", out, sizeof(out)), 0);
  assert_string_equal(out, "https://ca.test/x");
  /* One of several space-separated relation types, case-insensitive. */
  assert_int_equal(ae_http_find_link(&r, "other", out, sizeof(out)), 0);
  assert_string_equal(out, "https://ca.test/multi");
  assert_int_equal(ae_http_find_link(&r, "describedby", out, sizeof(out)), 0);
  assert_int_equal(ae_http_find_link(&r, "prev", out, sizeof(out)), AE_ENOTFOUND);
  assert_int_equal(ae_http_find_link(&r, "up", out, 10), AE_ELIMIT);

  /* Malformed values end the scan without crashing. */
  char *bad[] = {(char *)"", (char *)"no brackets; rel=up", (char *)"<unterminated; rel=up",
                 (char *)"<a>; rel=\"unterminated", (char *)"<a>;;;=;rel", (char *)"<a> junk ;rel=up"};
  r.links = bad;
  r.nlinks = AE_ARRAY_LEN(bad);
  assert_int_equal(ae_http_find_link(&r, "unterminated", out, sizeof(out)), 0);
  assert_string_equal(out, "a");
  assert_int_equal(ae_http_find_link(&r, "up", out, sizeof(out)), 0);
  assert_string_equal(out, "a");
  r.nlinks = 0;
  assert_int_equal(ae_http_find_link(&r, "up", out, sizeof(out)), AE_ENOTFOUND);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_get_headers, setup, teardown),
      cmocka_unit_test_setup_teardown(test_post_and_head, setup, teardown),
      cmocka_unit_test_setup_teardown(test_no_redirect, setup, teardown),
      cmocka_unit_test_setup_teardown(test_body_too_large, setup, teardown),
      cmocka_unit_test_setup_teardown(test_timeout, setup, teardown),
      cmocka_unit_test_setup_teardown(test_connection_refused, setup, teardown),
      cmocka_unit_test_setup_teardown(test_bad_requests, setup, teardown),
      cmocka_unit_test_setup_teardown(test_cancel, setup, teardown),
      cmocka_unit_test_setup_teardown(test_concurrent, setup, teardown),
      cmocka_unit_test_setup_teardown(test_request_from_callback, setup, teardown),
      cmocka_unit_test_setup_teardown(test_close_in_flight, setup, teardown),
      cmocka_unit_test_setup_teardown(test_close_from_callback, setup, teardown),
      cmocka_unit_test_setup_teardown(test_keepalive_reuse, setup, teardown),
      cmocka_unit_test_setup_teardown(test_https, setup, teardown),
      cmocka_unit_test(test_retry_after),
      cmocka_unit_test(test_find_link),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
