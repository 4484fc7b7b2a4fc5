/* Unit tests for the port-80 listener: a real listener on 127.0.0.1:0 driven by a loop thread,
 * raw blocking sockets as clients from the test thread. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "acmedge/challenge.h"
#include "acmedge/config.h"
#include "acmedge/http80.h"
#include "acmedge/log.h"
#include "acmedge/metrics.h"

#define TOKEN "tok_ABC-123xyz"
#define KEYAUTH "tok_ABC-123xyz.Zm9vYmFyYmF6dGh1bWJwcmludA"

/* ---------------------------------------------------------------------------------------- */
/* server fixture: the loop runs in its own thread */

typedef struct fixture {
  uv_loop_t loop;
  ae_config *cfg;
  ae_challenge *ch;
  ae_http80 *h;
  uv_async_t stop;
  uv_thread_t thr;
  int port;
  int closed;

  pthread_mutex_t mu; /* guards the hook records below */
  int host_calls;
  char last_host[256];
  int plain_calls;
  char plain_initial[8192];
  size_t plain_len;
  int plain_closed;

  /* c1.example.com / c2.example.com: states the test sets; they start as CHECKING */
  ae_h80_state check_state[2];
  unsigned check_retry[2];
  int check_calls[2];
  uv_async_t wake;    /* runs ae_http80_wake(wake_host) on the loop thread */
  char wake_host[256];
  int wakes_done;
  /* challenge look-ups: tokens starting with "late" are looked up, the rest answered 404 */
  int chal_calls;
  uv_async_t chal_wake; /* runs ae_http80_wake_challenge(chal_token) on the loop thread */
  char chal_token[128];
  int chal_wakes_done;
} fixture;

static int check_index(const char *host) {
  if (strcmp(host, "c1.example.com") == 0)
    return 0;
  if (strcmp(host, "c2.example.com") == 0)
    return 1;
  return -1;
}

static ae_h80_state hook_host_state(void *ud, const char *host, unsigned *retry_after_s) {
  fixture *f = ud;
  pthread_mutex_lock(&f->mu);
  f->host_calls++;
  snprintf(f->last_host, sizeof(f->last_host), "%s", host);
  int ci = check_index(host);
  if (ci >= 0) {
    f->check_calls[ci]++;
    ae_h80_state st = f->check_state[ci];
    *retry_after_s = f->check_retry[ci];
    pthread_mutex_unlock(&f->mu);
    return st;
  }
  pthread_mutex_unlock(&f->mu);
  if (strcmp(host, "pending.example.com") == 0) {
    *retry_after_s = 7;
    return AE_H80_PENDING;
  }
  if (strcmp(host, "failed.example.com") == 0) {
    *retry_after_s = 120;
    return AE_H80_FAILED;
  }
  if (strcmp(host, "valid.example.com") == 0)
    return AE_H80_VALID;
  if (strcmp(host, "mis.example.com") == 0)
    return AE_H80_MISDIRECTED;
  return AE_H80_DENY;
}

static int hook_plain_route(void *ud, const char *host) {
  (void)ud;
  return strcmp(host, "plain.example.com") == 0;
}

static void plain_on_read(void *ud, const char *data, ssize_t n) {
  (void)ud;
  (void)data;
  (void)n;
}

static void plain_on_close(void *ud) {
  fixture *f = ud;
  pthread_mutex_lock(&f->mu);
  f->plain_closed++;
  pthread_mutex_unlock(&f->mu);
}

static void hook_on_plain(void *ud, ae_transport *t, const char *initial, size_t len) {
  fixture *f = ud;
  pthread_mutex_lock(&f->mu);
  f->plain_calls++;
  f->plain_len = len < sizeof(f->plain_initial) ? len : sizeof(f->plain_initial);
  memcpy(f->plain_initial, initial, f->plain_len);
  pthread_mutex_unlock(&f->mu);
  t->ud = f;
  t->on_read = plain_on_read;
  t->on_close = plain_on_close;
  static const char resp[] = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nplain";
  ae_transport_write(t, resp, sizeof(resp) - 1);
  ae_transport_close(t);
}

static int hook_challenge_miss(void *ud, const char *token) {
  fixture *f = ud;
  pthread_mutex_lock(&f->mu);
  f->chal_calls++;
  pthread_mutex_unlock(&f->mu);
  return strncmp(token, "late", 4) == 0;
}

static void on_chal_wake(uv_async_t *a) {
  fixture *f = a->data;
  char tok[128];
  pthread_mutex_lock(&f->mu);
  snprintf(tok, sizeof(tok), "%s", f->chal_token);
  pthread_mutex_unlock(&f->mu);
  ae_http80_wake_challenge(f->h, tok);
  pthread_mutex_lock(&f->mu);
  f->chal_wakes_done++;
  pthread_mutex_unlock(&f->mu);
}

static void server_closed(void *ud) {
  fixture *f = ud;
  f->closed = 1;
}

static void on_wake(uv_async_t *a) {
  fixture *f = a->data;
  char host[256];
  pthread_mutex_lock(&f->mu);
  snprintf(host, sizeof(host), "%s", f->wake_host);
  pthread_mutex_unlock(&f->mu);
  ae_http80_wake(f->h, host);
  pthread_mutex_lock(&f->mu);
  f->wakes_done++;
  pthread_mutex_unlock(&f->mu);
}

static void on_stop(uv_async_t *a) {
  fixture *f = a->data;
  ae_http80_close(f->h, server_closed, f);
  uv_close((uv_handle_t *)a, NULL);
  uv_close((uv_handle_t *)&f->wake, NULL);
  uv_close((uv_handle_t *)&f->chal_wake, NULL);
}

static void loop_thread(void *arg) {
  fixture *f = arg;
  uv_run(&f->loop, UV_RUN_DEFAULT);
}

typedef void (*tweak_fn)(ae_config *cfg);

static fixture *start(int with_hooks, tweak_fn tweak) {
  fixture *f = calloc(1, sizeof(*f));
  pthread_mutex_init(&f->mu, NULL);
  f->check_state[0] = f->check_state[1] = AE_H80_CHECKING;
  assert_int_equal(uv_loop_init(&f->loop), 0);
  ae_err err = {0};
  int r = ae_config_parse("test.json",
                          "{\"listen\": {\"https\": \"127.0.0.1:8443\", \"http\": \"127.0.0.1:8080\"},"
                          " \"on_demand\": {\"allow\": [\"*\"]}}",
                          &f->cfg, &err);
  if (r != 0)
    fail_msg("config: %s", err.msg);
  free(f->cfg->listen_http);
  f->cfg->listen_http = strdup("127.0.0.1:0");
  if (tweak)
    tweak(f->cfg);
  assert_int_equal(ae_challenge_new(&f->ch), 0);
  assert_int_equal(ae_challenge_http01_put(f->ch, "a.example.com", TOKEN, KEYAUTH), 0);
  ae_http80_hooks hooks = {
    .ud = f,
    .host_state = hook_host_state,
    .plain_route = hook_plain_route,
    .on_plain = hook_on_plain,
    .challenge_miss = hook_challenge_miss,
  };
  r = ae_http80_new(&f->loop, f->cfg, f->ch, with_hooks ? &hooks : NULL, &f->h, &err);
  if (r != 0)
    fail_msg("http80: %s", err.msg);
  f->port = ae_http80_port(f->h);
  assert_true(f->port > 0);
  uv_async_init(&f->loop, &f->stop, on_stop);
  f->stop.data = f;
  uv_async_init(&f->loop, &f->wake, on_wake);
  f->wake.data = f;
  uv_async_init(&f->loop, &f->chal_wake, on_chal_wake);
  f->chal_wake.data = f;
  assert_int_equal(uv_thread_create(&f->thr, loop_thread, f), 0);
  return f;
}

static void stop(fixture *f) {
  uv_async_send(&f->stop);
  uv_thread_join(&f->thr);
  assert_int_equal(f->closed, 1);
  ae_http80_free(f->h);
  assert_int_equal(uv_loop_close(&f->loop), 0);
  ae_challenge_free(f->ch);
  ae_config_free(f->cfg);
  pthread_mutex_destroy(&f->mu);
  free(f);
}

/* ---------------------------------------------------------------------------------------- */
/* blocking client */

typedef struct client {
  int fd;
  char buf[65536];
  size_t len;
} client;

typedef struct response {
  int status;
  char head[8192];
  char body[8192];
  size_t body_len;
} response;

static client *cl_connect(int port) {
  client *c = calloc(1, sizeof(*c));
  c->fd = socket(AF_INET, SOCK_STREAM, 0);
  assert_true(c->fd >= 0);
  struct timeval tv = {5, 0};
  setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  struct sockaddr_in a;
  memset(&a, 0, sizeof(a));
  a.sin_family = AF_INET;
  a.sin_port = htons((uint16_t)port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  assert_int_equal(connect(c->fd, (struct sockaddr *)&a, sizeof(a)), 0);
  return c;
}

static void cl_send(client *c, const char *s) {
  size_t n = strlen(s), off = 0;
  while (off < n) {
    ssize_t w = send(c->fd, s + off, n - off, MSG_NOSIGNAL);
    assert_true(w > 0);
    off += (size_t)w;
  }
}

static void cl_free(client *c) {
  close(c->fd);
  free(c);
}

/* Reads more bytes; 0 on EOF, -1 on timeout/error. */
static ssize_t cl_fill(client *c) {
  if (c->len >= sizeof(c->buf) - 1)
    return -1;
  ssize_t n = recv(c->fd, c->buf + c->len, sizeof(c->buf) - 1 - c->len, 0);
  if (n > 0) {
    c->len += (size_t)n;
    c->buf[c->len] = '\0';
  }
  return n;
}

static const char *hdr(const response *r, const char *name) {
  static char val[1024];
  size_t nl = strlen(name);
  for (const char *p = strstr(r->head, "\r\n"); p && p[2]; p = strstr(p + 2, "\r\n")) {
    const char *line = p + 2;
    if (strncasecmp(line, name, nl) == 0 && line[nl] == ':') {
      const char *v = line + nl + 1;
      while (*v == ' ')
        v++;
      const char *e = strstr(v, "\r\n");
      size_t vl = e ? (size_t)(e - v) : strlen(v);
      if (vl >= sizeof(val))
        vl = sizeof(val) - 1;
      memcpy(val, v, vl);
      val[vl] = '\0';
      return val;
    }
  }
  return NULL;
}

/* Reads one response; head_only: a HEAD response (no body despite Content-Length). */
static int cl_response(client *c, response *r, int head_only) {
  memset(r, 0, sizeof(*r));
  char *end;
  while (!(end = c->len ? strstr(c->buf, "\r\n\r\n") : NULL)) {
    if (cl_fill(c) <= 0)
      return -1;
  }
  size_t hl = (size_t)(end - c->buf) + 4;
  if (hl >= sizeof(r->head))
    return -1;
  memcpy(r->head, c->buf, hl);
  r->head[hl] = '\0';
  if (sscanf(r->head, "HTTP/1.1 %d", &r->status) != 1)
    return -1;
  const char *cl = hdr(r, "Content-Length");
  size_t blen = (cl && !head_only) ? (size_t)atol(cl) : 0;
  while (c->len < hl + blen) {
    if (cl_fill(c) <= 0)
      return -1;
  }
  if (blen >= sizeof(r->body))
    return -1;
  memcpy(r->body, c->buf + hl, blen);
  r->body[blen] = '\0';
  r->body_len = blen;
  memmove(c->buf, c->buf + hl + blen, c->len - hl - blen);
  c->len -= hl + blen;
  c->buf[c->len] = '\0';
  return 0;
}

/* 1 when the server closes the connection (EOF) without sending more bytes. */
static int cl_eof(client *c) {
  size_t before = c->len;
  ssize_t n;
  while ((n = cl_fill(c)) > 0)
    ;
  return n == 0 && c->len == before;
}

/* 1 when the server ended the connection by EOF or reset (an abort), not by a timeout. */
static int cl_gone(client *c) {
  ssize_t n;
  while ((n = cl_fill(c)) > 0)
    ;
  return n == 0 || (n < 0 && errno == ECONNRESET);
}

/* Sends one request on a fresh connection and reads the response. */
static void one(int port, const char *req, response *r, int head_only) {
  client *c = cl_connect(port);
  cl_send(c, req);
  assert_int_equal(cl_response(c, r, head_only), 0);
  cl_free(c);
}

static uint64_t mono_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* ---------------------------------------------------------------------------------------- */
/* tests */

static void test_challenge(void **state) {
  (void)state;
  fixture *f = start(1, NULL);
  response r;
  int64_t before = ae_metrics_get(AE_M_HTTP80_REQUESTS);

  /* the validator's form: Host with a port */
  one(f->port, "GET /.well-known/acme-challenge/" TOKEN " HTTP/1.1\r\nHost: a.example.com:5002\r\n"
      "Accept: */*\r\n\r\n", &r, 0);
  assert_int_equal(r.status, 200);
  assert_string_equal(r.body, KEYAUTH);
  assert_non_null(hdr(&r, "Content-Type"));
  assert_true(strncmp(hdr(&r, "Content-Type"), "text/plain", 10) == 0);

  /* regardless of Host (even none, or an unknown one) */
  one(f->port, "GET /.well-known/acme-challenge/" TOKEN " HTTP/1.0\r\n\r\n", &r, 0);
  assert_int_equal(r.status, 200);
  assert_string_equal(r.body, KEYAUTH);

  one(f->port, "HEAD /.well-known/acme-challenge/" TOKEN " HTTP/1.1\r\nHost: x.example.com\r\n\r\n", &r, 1);
  assert_int_equal(r.status, 200);
  assert_int_equal(atoi(hdr(&r, "Content-Length")), (int)strlen(KEYAUTH));

  one(f->port, "GET /.well-known/acme-challenge/unknownToken HTTP/1.1\r\nHost: a.example.com\r\n\r\n", &r, 0);
  assert_int_equal(r.status, 404);
  one(f->port, "GET /.well-known/acme-challenge/../etc HTTP/1.1\r\nHost: a.example.com\r\n\r\n", &r, 0);
  assert_int_equal(r.status, 404);
  one(f->port, "GET /.well-known/acme-challenge/" TOKEN "/x HTTP/1.1\r\nHost: a.example.com\r\n\r\n", &r, 0);
  assert_int_equal(r.status, 404);
  one(f->port, "GET /.well-known/acme-challenge/ HTTP/1.1\r\nHost: a.example.com\r\n\r\n", &r, 0);
  assert_int_equal(r.status, 404);
  one(f->port, "POST /.well-known/acme-challenge/" TOKEN " HTTP/1.1\r\nHost: a.example.com\r\n"
      "Content-Length: 3\r\n\r\nabc", &r, 0);
  assert_int_equal(r.status, 404);

  /* after the token is removed */
  ae_challenge_http01_del(f->ch, TOKEN);
  one(f->port, "GET /.well-known/acme-challenge/" TOKEN " HTTP/1.1\r\nHost: a.example.com\r\n\r\n", &r, 0);
  assert_int_equal(r.status, 404);

  /* the challenge path never consults the host state */
  pthread_mutex_lock(&f->mu);
  assert_int_equal(f->host_calls, 0);
  pthread_mutex_unlock(&f->mu);
  assert_int_equal(ae_metrics_get(AE_M_HTTP80_REQUESTS) - before, 9);
  stop(f);
}

static void test_host_states(void **state) {
  (void)state;
  fixture *f = start(1, NULL);
  response r;
  client *c = cl_connect(f->port);

  cl_send(c, "GET / HTTP/1.1\r\nHost: Pending.Example.com:80\r\n\r\n");
  assert_int_equal(cl_response(c, &r, 0), 0);
  assert_int_equal(r.status, 503);
  assert_string_equal(hdr(&r, "Retry-After"), "7");
  assert_string_equal(r.body, "certificate for pending.example.com is being issued, retry in 7 s\n");
  pthread_mutex_lock(&f->mu);
  assert_string_equal(f->last_host, "pending.example.com");
  pthread_mutex_unlock(&f->mu);

  cl_send(c, "GET /x HTTP/1.1\r\nHost: failed.example.com\r\n\r\n");
  assert_int_equal(cl_response(c, &r, 0), 0);
  assert_int_equal(r.status, 503);
  assert_string_equal(hdr(&r, "Retry-After"), "120");

  cl_send(c, "GET /some/path?x=1&y=2 HTTP/1.1\r\nHost: valid.example.com.\r\n\r\n");
  assert_int_equal(cl_response(c, &r, 0), 0);
  assert_int_equal(r.status, 308);
  assert_string_equal(hdr(&r, "Location"), "https://valid.example.com:8443/some/path?x=1&y=2");

  cl_send(c, "GET / HTTP/1.1\r\nHost: mis.example.com\r\n\r\n");
  assert_int_equal(cl_response(c, &r, 0), 0);
  assert_int_equal(r.status, 421);

  cl_send(c, "GET / HTTP/1.1\r\nHost: denied.example.com\r\n\r\n");
  assert_int_equal(cl_response(c, &r, 0), 0);
  assert_int_equal(r.status, 404);

  /* an address as Host: well-formed, nothing served */
  cl_send(c, "GET / HTTP/1.1\r\nHost: 127.0.0.1:80\r\n\r\n");
  assert_int_equal(cl_response(c, &r, 0), 0);
  assert_int_equal(r.status, 404);
  cl_send(c, "GET / HTTP/1.1\r\nHost: [::1]:80\r\n\r\n");
  assert_int_equal(cl_response(c, &r, 0), 0);
  assert_int_equal(r.status, 404);

  /* a broken Host: 400 and the connection is closed */
  cl_send(c, "GET / HTTP/1.1\r\nHost: bad_host.example.com\r\n\r\n");
  assert_int_equal(cl_response(c, &r, 0), 0);
  assert_int_equal(r.status, 400);
  assert_true(cl_eof(c));
  cl_free(c);

  one(f->port, "GET / HTTP/1.1\r\nUser-Agent: t\r\n\r\n", &r, 0);
  assert_int_equal(r.status, 400);
  one(f->port, "GET / HTTP/1.0\r\n\r\n", &r, 0);
  assert_int_equal(r.status, 400);
  one(f->port, "GET / HTTP/1.1\r\nHost: a.example.com\r\nHost: b.example.com\r\n\r\n", &r, 0);
  assert_int_equal(r.status, 400);
  one(f->port, "GET / HTTP/1.1\r\nHost: *.example.com\r\n\r\n", &r, 0);
  assert_int_equal(r.status, 400);
  one(f->port, "this is not http\r\n\r\n", &r, 0);
  assert_int_equal(r.status, 400);

  /* HEAD of a 503 keeps the headers, drops the body */
  one(f->port, "HEAD / HTTP/1.1\r\nHost: pending.example.com\r\n\r\n", &r, 1);
  assert_int_equal(r.status, 503);
  assert_string_equal(hdr(&r, "Retry-After"), "7");
  assert_int_equal(r.body_len, 0);
  stop(f);
}

static void tweak_no_redirect(ae_config *cfg) {
  cfg->redirect_http = 0;
}

static void tweak_https_443(ae_config *cfg) {
  free(cfg->listen_https);
  cfg->listen_https = strdup("0.0.0.0:443");
}

static void test_redirect_settings(void **state) {
  (void)state;
  response r;
  fixture *f = start(1, tweak_no_redirect);
  one(f->port, "GET / HTTP/1.1\r\nHost: valid.example.com\r\n\r\n", &r, 0);
  assert_int_equal(r.status, 404);
  stop(f);

  f = start(1, tweak_https_443);
  one(f->port, "GET / HTTP/1.1\r\nHost: valid.example.com\r\n\r\n", &r, 0);
  assert_int_equal(r.status, 308);
  assert_string_equal(hdr(&r, "Location"), "https://valid.example.com/");
  /* absolute-form target: only the path goes into Location */
  one(f->port, "GET http://valid.example.com/p?q HTTP/1.1\r\nHost: valid.example.com\r\n\r\n", &r, 0);
  assert_int_equal(r.status, 308);
  assert_string_equal(hdr(&r, "Location"), "https://valid.example.com/p?q");
  stop(f);

  /* without hooks every non-challenge request is a 404 */
  f = start(0, NULL);
  one(f->port, "GET / HTTP/1.1\r\nHost: valid.example.com\r\n\r\n", &r, 0);
  assert_int_equal(r.status, 404);
  one(f->port, "GET /.well-known/acme-challenge/" TOKEN " HTTP/1.1\r\nHost: a.example.com\r\n\r\n", &r, 0);
  assert_int_equal(r.status, 200);
  stop(f);
}

static void test_limits(void **state) {
  (void)state;
  fixture *f = start(1, NULL);
  response r;
  char *big = malloc(20000);
  char *val = malloc(9001);
  memset(val, 'v', 9000);
  val[9000] = '\0';
  snprintf(big, 20000, "GET / HTTP/1.1\r\nHost: valid.example.com\r\nX-Big: %s\r\n\r\n", val);
  client *c = cl_connect(f->port);
  cl_send(c, big);
  assert_int_equal(cl_response(c, &r, 0), 0);
  assert_int_equal(r.status, 431);
  assert_true(cl_eof(c));
  cl_free(c);

  /* too many header lines */
  size_t n = (size_t)snprintf(big, 20000, "GET / HTTP/1.1\r\nHost: valid.example.com\r\n");
  for (int i = 0; i < 120; i++)
    n += (size_t)snprintf(big + n, 20000 - n, "X-%d: 1\r\n", i);
  snprintf(big + n, 20000 - n, "\r\n");
  one(f->port, big, &r, 0);
  assert_int_equal(r.status, 431);

  /* just under the cap is fine */
  memset(val, 'v', 7000);
  val[7000] = '\0';
  snprintf(big, 20000, "GET / HTTP/1.1\r\nHost: valid.example.com\r\nX-Big: %s\r\n\r\n", val);
  one(f->port, big, &r, 0);
  assert_int_equal(r.status, 308);
  free(big);
  free(val);
  stop(f);
}

static void test_keepalive(void **state) {
  (void)state;
  fixture *f = start(1, NULL);
  response r;
  int64_t before = ae_metrics_get(AE_M_HTTP80_REQUESTS);
  client *c = cl_connect(f->port);
  /* two pipelined in one write, then a third later, then one with a body */
  cl_send(c, "GET /a HTTP/1.1\r\nHost: valid.example.com\r\n\r\n"
             "GET /.well-known/acme-challenge/" TOKEN " HTTP/1.1\r\nHost: valid.example.com\r\n\r\n");
  assert_int_equal(cl_response(c, &r, 0), 0);
  assert_int_equal(r.status, 308);
  assert_string_equal(hdr(&r, "Location"), "https://valid.example.com:8443/a");
  assert_int_equal(cl_response(c, &r, 0), 0);
  assert_int_equal(r.status, 200);
  assert_string_equal(r.body, KEYAUTH);
  cl_send(c, "POST /form HTTP/1.1\r\nHost: pending.example.com\r\nContent-Length: 5\r\n\r\nhello");
  assert_int_equal(cl_response(c, &r, 0), 0);
  assert_int_equal(r.status, 503);
  cl_send(c, "GET /b HTTP/1.1\r\nHost: valid.example.com\r\nConnection: close\r\n\r\n");
  assert_int_equal(cl_response(c, &r, 0), 0);
  assert_int_equal(r.status, 308);
  assert_string_equal(hdr(&r, "Connection"), "close");
  assert_true(cl_eof(c));
  cl_free(c);
  assert_int_equal(ae_metrics_get(AE_M_HTTP80_REQUESTS) - before, 4);
  stop(f);
}

static void tweak_short_timeouts(ae_config *cfg) {
  cfg->proxy.header_timeout_ms = 300;
  cfg->proxy.idle_timeout_ms = 400;
}

static void test_timeouts(void **state) {
  (void)state;
  fixture *f = start(1, tweak_short_timeouts);
  response r;

  /* a head that never completes: 408, then close */
  uint64_t t0 = mono_ms();
  client *c = cl_connect(f->port);
  cl_send(c, "GET / HTTP/1.1\r\nHost: valid.exa");
  assert_int_equal(cl_response(c, &r, 0), 0);
  assert_int_equal(r.status, 408);
  uint64_t dt = mono_ms() - t0;
  assert_true(dt >= 250 && dt < 3000);
  assert_true(cl_eof(c));
  cl_free(c);

  /* a connection that sends nothing at all */
  c = cl_connect(f->port);
  assert_int_equal(cl_response(c, &r, 0), 0);
  assert_int_equal(r.status, 408);
  cl_free(c);

  /* an idle keep-alive connection is closed quietly */
  c = cl_connect(f->port);
  cl_send(c, "GET / HTTP/1.1\r\nHost: denied.example.com\r\n\r\n");
  assert_int_equal(cl_response(c, &r, 0), 0);
  assert_int_equal(r.status, 404);
  t0 = mono_ms();
  assert_true(cl_eof(c));
  dt = mono_ms() - t0;
  assert_true(dt >= 300 && dt < 3000);
  cl_free(c);
  stop(f);
}

static void test_plain_handoff(void **state) {
  (void)state;
  fixture *f = start(1, NULL);
  response r;
  client *c = cl_connect(f->port);
  /* a first request answered by us, then one for a plain_http route sent in two parts */
  cl_send(c, "GET / HTTP/1.1\r\nHost: denied.example.com\r\n\r\n");
  assert_int_equal(cl_response(c, &r, 0), 0);
  assert_int_equal(r.status, 404);
  const char *p1 = "POST /api HTTP/1.1\r\nHost: plain.exa";
  const char *p2 = "mple.com\r\nContent-Length: 4\r\n\r\nbody";
  cl_send(c, p1);
  usleep(50000);
  cl_send(c, p2);
  assert_int_equal(cl_response(c, &r, 0), 0);
  assert_int_equal(r.status, 200);
  assert_string_equal(r.body, "plain");
  assert_true(cl_eof(c));
  cl_free(c);

  char want[256];
  snprintf(want, sizeof(want), "%s%s", p1, p2);
  for (int i = 0; i < 100; i++) {
    pthread_mutex_lock(&f->mu);
    int done = f->plain_closed;
    pthread_mutex_unlock(&f->mu);
    if (done)
      break;
    usleep(10000);
  }
  pthread_mutex_lock(&f->mu);
  assert_int_equal(f->plain_calls, 1);
  assert_int_equal(f->plain_closed, 1);
  /* the body may or may not have arrived with the head; the head must be there in full */
  assert_true(f->plain_len >= strlen(want) - 4 && f->plain_len <= strlen(want));
  assert_memory_equal(f->plain_initial, want, f->plain_len);
  pthread_mutex_unlock(&f->mu);
  stop(f);
}

static void test_close_with_open_connections(void **state) {
  (void)state;
  int64_t open_before = ae_metrics_get(AE_M_CONN_OPEN);
  fixture *f = start(1, NULL);
  response r;
  client *idle = cl_connect(f->port);
  cl_send(idle, "GET / HTTP/1.1\r\nHost: valid.example.com\r\n\r\n");
  assert_int_equal(cl_response(idle, &r, 0), 0);
  client *partial = cl_connect(f->port);
  cl_send(partial, "GET / HTTP/1.1\r\nHost: val");
  client *fresh = cl_connect(f->port);
  usleep(100000);
  assert_int_equal(ae_metrics_get(AE_M_CONN_OPEN) - open_before, 3);
  stop(f);
  assert_int_equal(ae_metrics_get(AE_M_CONN_OPEN), open_before);
  assert_true(cl_gone(idle));
  assert_true(cl_gone(partial));
  assert_true(cl_gone(fresh));
  cl_free(idle);
  cl_free(partial);
  cl_free(fresh);
}

static void tweak_ipv6(ae_config *cfg) {
  free(cfg->listen_http);
  cfg->listen_http = strdup("[::1]:0");
}

static void test_ipv6_listener(void **state) {
  (void)state;
  fixture *f = start(1, tweak_ipv6);
  int fd = socket(AF_INET6, SOCK_STREAM, 0);
  assert_true(fd >= 0);
  struct timeval tv = {5, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  struct sockaddr_in6 a;
  memset(&a, 0, sizeof(a));
  a.sin6_family = AF_INET6;
  a.sin6_port = htons((uint16_t)f->port);
  a.sin6_addr = in6addr_loopback;
  assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
  client *c = calloc(1, sizeof(*c));
  c->fd = fd;
  response r;
  cl_send(c, "GET / HTTP/1.1\r\nHost: pending.example.com\r\n\r\n");
  assert_int_equal(cl_response(c, &r, 0), 0);
  assert_int_equal(r.status, 503);
  cl_free(c);
  stop(f);
}

static void test_bad_listen(void **state) {
  (void)state;
  uv_loop_t loop;
  uv_loop_init(&loop);
  ae_config *cfg = NULL;
  ae_err err = {0};
  assert_int_equal(ae_config_parse("t.json", "{\"on_demand\": {\"allow\": [\"*\"]}}", &cfg, &err), 0);
  ae_challenge *ch = NULL;
  ae_challenge_new(&ch);
  ae_http80 *h = NULL;
  free(cfg->listen_http);
  cfg->listen_http = strdup("not-an-address");
  assert_int_equal(ae_http80_new(&loop, cfg, ch, NULL, &h, &err), AE_EINVAL);
  assert_non_null(strstr(err.msg, "not-an-address"));
  /* a port in use */
  fixture *f = start(0, NULL);
  char addr[64];
  snprintf(addr, sizeof(addr), "127.0.0.1:%d", f->port);
  free(cfg->listen_http);
  cfg->listen_http = strdup(addr);
  assert_true(ae_http80_new(&loop, cfg, ch, NULL, &h, &err) < 0);
  uv_run(&loop, UV_RUN_DEFAULT);
  stop(f);
  assert_int_equal(uv_loop_close(&loop), 0);
  ae_challenge_free(ch);
  ae_config_free(cfg);
}

/* ---------------------------------------------------------------------------------------- */
/* held requests (AE_H80_CHECKING) */

static void set_check(fixture *f, int idx, ae_h80_state st, unsigned retry) {
  pthread_mutex_lock(&f->mu);
  f->check_state[idx] = st;
  f->check_retry[idx] = retry;
  pthread_mutex_unlock(&f->mu);
}

static int check_calls(fixture *f, int idx) {
  pthread_mutex_lock(&f->mu);
  int n = f->check_calls[idx];
  pthread_mutex_unlock(&f->mu);
  return n;
}

/* Waits until host_state was asked n times for c<idx+1>; the request is held by then, since
 * holding happens in the same loop callback as the question. */
static void wait_calls(fixture *f, int idx, int n) {
  for (int i = 0; i < 500 && check_calls(f, idx) < n; i++)
    usleep(10000);
  assert_int_equal(check_calls(f, idx), n);
}

/* Runs ae_http80_wake(host) on the loop and waits until it returned. */
static void wake(fixture *f, const char *host) {
  pthread_mutex_lock(&f->mu);
  int before = f->wakes_done;
  snprintf(f->wake_host, sizeof(f->wake_host), "%s", host);
  pthread_mutex_unlock(&f->mu);
  uv_async_send(&f->wake);
  for (int i = 0; i < 500; i++) {
    pthread_mutex_lock(&f->mu);
    int done = f->wakes_done;
    pthread_mutex_unlock(&f->mu);
    if (done > before)
      return;
    usleep(10000);
  }
  fail_msg("wake(%s) did not run", host);
}

/* 1 when no byte arrives within ms. */
static int cl_quiet(client *c, int ms) {
  struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
  setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  size_t before = c->len;
  ssize_t n = cl_fill(c);
  int quiet = n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) && c->len == before;
  struct timeval back = {5, 0};
  setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &back, sizeof(back));
  return quiet;
}

static void test_hold_wake(void **state) {
  (void)state;
  fixture *f = start(1, NULL);
  response r;
  client *c = cl_connect(f->port);

  /* held while the check runs; a denied name then gets 404, not 503 */
  cl_send(c, "GET / HTTP/1.1\r\nHost: C1.example.com:80\r\n\r\n");
  wait_calls(f, 0, 1);
  assert_true(cl_quiet(c, 200));
  set_check(f, 0, AE_H80_DENY, 0);
  wake(f, "c1.example.com");
  assert_int_equal(cl_response(c, &r, 0), 0);
  assert_int_equal(r.status, 404);
  assert_null(hdr(&r, "Retry-After"));
  assert_int_equal(check_calls(f, 0), 2);

  /* the connection reads again */
  cl_send(c, "GET /next HTTP/1.1\r\nHost: valid.example.com\r\n\r\n");
  assert_int_equal(cl_response(c, &r, 0), 0);
  assert_int_equal(r.status, 308);

  /* challenge requests are never held, whatever their Host */
  set_check(f, 0, AE_H80_CHECKING, 0);
  cl_send(c, "GET /.well-known/acme-challenge/" TOKEN " HTTP/1.1\r\nHost: c1.example.com\r\n\r\n");
  assert_int_equal(cl_response(c, &r, 0), 0);
  assert_int_equal(r.status, 200);
  assert_string_equal(r.body, KEYAUTH);
  assert_int_equal(check_calls(f, 0), 2);

  /* decided as pending: 503 with the hook's Retry-After */
  cl_send(c, "GET / HTTP/1.1\r\nHost: c1.example.com\r\n\r\n");
  wait_calls(f, 0, 3);
  assert_true(cl_quiet(c, 100));
  set_check(f, 0, AE_H80_PENDING, 7);
  wake(f, "c1.example.com");
  assert_int_equal(cl_response(c, &r, 0), 0);
  assert_int_equal(r.status, 503);
  assert_string_equal(hdr(&r, "Retry-After"), "7");
  assert_string_equal(r.body, "certificate for c1.example.com is being issued, retry in 7 s\n");

  /* a wake for another host leaves it held; so does a wake while the check still runs */
  set_check(f, 0, AE_H80_CHECKING, 0);
  cl_send(c, "GET / HTTP/1.1\r\nHost: c1.example.com\r\n\r\n");
  wait_calls(f, 0, 5);
  set_check(f, 0, AE_H80_DENY, 0);
  wake(f, "c2.example.com");
  wake(f, "example.com");
  assert_true(cl_quiet(c, 200));
  assert_int_equal(check_calls(f, 0), 5);
  assert_int_equal(check_calls(f, 1), 0);
  set_check(f, 0, AE_H80_CHECKING, 0);
  wake(f, "c1.example.com");
  assert_int_equal(check_calls(f, 0), 6);
  assert_true(cl_quiet(c, 200));
  set_check(f, 0, AE_H80_MISDIRECTED, 0);
  wake(f, "c1.example.com");
  assert_int_equal(cl_response(c, &r, 0), 0);
  assert_int_equal(r.status, 421);
  assert_int_equal(check_calls(f, 0), 7);

  /* two connections held for the same name are both answered by one wake */
  set_check(f, 0, AE_H80_CHECKING, 0);
  client *d = cl_connect(f->port);
  cl_send(c, "GET /a HTTP/1.1\r\nHost: c1.example.com\r\n\r\n");
  cl_send(d, "HEAD /b HTTP/1.1\r\nHost: c1.example.com\r\n\r\n");
  wait_calls(f, 0, 9);
  set_check(f, 0, AE_H80_VALID, 0);
  wake(f, "c1.example.com");
  assert_int_equal(cl_response(c, &r, 0), 0);
  assert_int_equal(r.status, 308);
  assert_string_equal(hdr(&r, "Location"), "https://c1.example.com:8443/a");
  assert_int_equal(cl_response(d, &r, 1), 0);
  assert_int_equal(r.status, 308);
  assert_string_equal(hdr(&r, "Location"), "https://c1.example.com:8443/b");
  assert_int_equal(r.body_len, 0);
  assert_int_equal(check_calls(f, 0), 11);
  cl_free(d);
  cl_free(c);
  stop(f);
}

static void tweak_short_ask(ae_config *cfg) {
  cfg->on_demand.ask_timeout_ms = 200;
}

static void test_hold_timeout(void **state) {
  (void)state;
  fixture *f = start(1, tweak_short_ask);
  response r;
  client *c = cl_connect(f->port);

  /* still undecided when the hold ends (ask_timeout_ms + 1 s): 503, Retry-After 5 */
  uint64_t t0 = mono_ms();
  cl_send(c, "GET / HTTP/1.1\r\nHost: c1.example.com\r\n\r\n");
  assert_int_equal(cl_response(c, &r, 0), 0);
  uint64_t dt = mono_ms() - t0;
  assert_int_equal(r.status, 503);
  assert_string_equal(hdr(&r, "Retry-After"), "5");
  assert_true(dt >= 1100 && dt < 4000);
  assert_int_equal(check_calls(f, 0), 2); /* asked once more at the end of the hold */

  /* decided meanwhile but nobody woke it: the question at the end of the hold answers it */
  cl_send(c, "GET / HTTP/1.1\r\nHost: c1.example.com\r\n\r\n");
  wait_calls(f, 0, 3);
  set_check(f, 0, AE_H80_DENY, 0);
  t0 = mono_ms();
  assert_int_equal(cl_response(c, &r, 0), 0);
  assert_int_equal(r.status, 404);
  assert_true(mono_ms() - t0 >= 500);
  assert_int_equal(check_calls(f, 0), 4);

  /* keep-alive goes on */
  cl_send(c, "GET / HTTP/1.1\r\nHost: valid.example.com\r\nConnection: close\r\n\r\n");
  assert_int_equal(cl_response(c, &r, 0), 0);
  assert_int_equal(r.status, 308);
  assert_true(cl_eof(c));
  cl_free(c);
  stop(f);
}

static void test_hold_disconnect(void **state) {
  (void)state;
  int64_t open_before = ae_metrics_get(AE_M_CONN_OPEN);
  fixture *f = start(1, NULL);

  /* the client leaves while held; the wake then answers into a closed socket */
  client *a = cl_connect(f->port);
  cl_send(a, "GET / HTTP/1.1\r\nHost: c1.example.com\r\n\r\n");
  wait_calls(f, 0, 1);
  cl_free(a);
  usleep(50000);
  set_check(f, 0, AE_H80_DENY, 0);
  wake(f, "c1.example.com");
  for (int i = 0; i < 300 && ae_metrics_get(AE_M_CONN_OPEN) != open_before; i++)
    usleep(10000);
  assert_int_equal(ae_metrics_get(AE_M_CONN_OPEN), open_before);

  /* one left held after its client went away, one still connected: shutdown drops both */
  set_check(f, 1, AE_H80_CHECKING, 0);
  client *b = cl_connect(f->port);
  client *c = cl_connect(f->port);
  cl_send(b, "GET / HTTP/1.1\r\nHost: c2.example.com\r\n\r\n");
  cl_send(c, "GET / HTTP/1.1\r\nHost: c2.example.com\r\n\r\n");
  wait_calls(f, 1, 2);
  cl_free(b);
  usleep(50000);
  assert_int_equal(ae_metrics_get(AE_M_CONN_OPEN) - open_before, 2);
  stop(f); /* asserts the loop closes with nothing left */
  assert_int_equal(ae_metrics_get(AE_M_CONN_OPEN), open_before);
  assert_true(cl_gone(c));
  cl_free(c);
}

static void test_hold_pipelined(void **state) {
  (void)state;
  fixture *f = start(1, NULL);
  response r;
  client *c = cl_connect(f->port);
  cl_send(c, "GET /1 HTTP/1.1\r\nHost: c1.example.com\r\n\r\n"
             "GET /2 HTTP/1.1\r\nHost: valid.example.com\r\n\r\n"
             "HEAD /3 HTTP/1.1\r\nHost: c2.example.com\r\n\r\n"
             "GET /4 HTTP/1.1\r\nHost: valid.example.com\r\nConnection: close\r\n\r\n");
  wait_calls(f, 0, 1);
  assert_true(cl_quiet(c, 200));
  /* nothing behind the held request was looked at */
  pthread_mutex_lock(&f->mu);
  assert_int_equal(f->host_calls, 1);
  pthread_mutex_unlock(&f->mu);
  /* c2's request is not held yet: this wake finds nothing */
  wake(f, "c2.example.com");
  assert_int_equal(check_calls(f, 1), 0);

  set_check(f, 0, AE_H80_DENY, 0);
  wake(f, "c1.example.com");
  assert_int_equal(cl_response(c, &r, 0), 0);
  assert_int_equal(r.status, 404);
  assert_int_equal(cl_response(c, &r, 0), 0);
  assert_int_equal(r.status, 308);
  assert_string_equal(hdr(&r, "Location"), "https://valid.example.com:8443/2");
  /* the third is held in turn, and the fourth waits behind it */
  wait_calls(f, 1, 1);
  assert_true(cl_quiet(c, 200));
  set_check(f, 1, AE_H80_PENDING, 9);
  wake(f, "c2.example.com");
  assert_int_equal(cl_response(c, &r, 1), 0);
  assert_int_equal(r.status, 503);
  assert_string_equal(hdr(&r, "Retry-After"), "9");
  assert_int_equal(r.body_len, 0);
  assert_int_equal(cl_response(c, &r, 0), 0);
  assert_int_equal(r.status, 308);
  assert_string_equal(hdr(&r, "Location"), "https://valid.example.com:8443/4");
  assert_true(cl_eof(c));
  cl_free(c);
  stop(f);
}

static int chal_calls(fixture *f) {
  pthread_mutex_lock(&f->mu);
  int n = f->chal_calls;
  pthread_mutex_unlock(&f->mu);
  return n;
}

static void wait_chal_calls(fixture *f, int n) {
  for (int i = 0; i < 500 && chal_calls(f) < n; i++)
    usleep(10000);
  assert_int_equal(chal_calls(f), n);
}

/* Runs ae_http80_wake_challenge(token) on the loop and waits until it returned. */
static void chal_wake(fixture *f, const char *token) {
  pthread_mutex_lock(&f->mu);
  int before = f->chal_wakes_done;
  snprintf(f->chal_token, sizeof(f->chal_token), "%s", token);
  pthread_mutex_unlock(&f->mu);
  uv_async_send(&f->chal_wake);
  for (int i = 0; i < 500; i++) {
    pthread_mutex_lock(&f->mu);
    int done = f->chal_wakes_done;
    pthread_mutex_unlock(&f->mu);
    if (done > before)
      return;
    usleep(10000);
  }
  fail_msg("chal_wake(%s) did not run", token);
}

/* A missed http-01 token the owner looks up elsewhere: held, then answered from the map. */
static void test_challenge_lookup(void **state) {
  (void)state;
  fixture *f = start(1, NULL);
  response r;
  client *c = cl_connect(f->port);

  /* found by the look-up: 200, and the connection goes on */
  cl_send(c, "GET /.well-known/acme-challenge/lateTok HTTP/1.1\r\nHost: a.example.com\r\n\r\n");
  wait_chal_calls(f, 1);
  assert_true(cl_quiet(c, 200));
  assert_int_equal(ae_challenge_http01_put(f->ch, "a.example.com", "lateTok", "lateTok.dGh1bWI"), 0);
  chal_wake(f, "otherTok"); /* another token's answer leaves this request held */
  assert_true(cl_quiet(c, 100));
  chal_wake(f, "lateTok");
  assert_int_equal(cl_response(c, &r, 0), 0);
  assert_int_equal(r.status, 200);
  assert_string_equal(r.body, "lateTok.dGh1bWI");

  /* not found by the look-up: 404 at the wake */
  cl_send(c, "GET /.well-known/acme-challenge/lateGone HTTP/1.1\r\nHost: a.example.com\r\n\r\n");
  wait_chal_calls(f, 2);
  chal_wake(f, "lateGone");
  assert_int_equal(cl_response(c, &r, 0), 0);
  assert_int_equal(r.status, 404);

  /* no look-up started: 404 at once; a malformed token is never offered */
  cl_send(c, "GET /.well-known/acme-challenge/nope HTTP/1.1\r\nHost: a.example.com\r\n\r\n");
  assert_int_equal(cl_response(c, &r, 0), 0);
  assert_int_equal(r.status, 404);
  assert_int_equal(chal_calls(f), 3);
  cl_send(c, "GET /.well-known/acme-challenge/late.x HTTP/1.1\r\nHost: a.example.com\r\n\r\n");
  assert_int_equal(cl_response(c, &r, 0), 0);
  assert_int_equal(r.status, 404);
  assert_int_equal(chal_calls(f), 3);

  cl_free(c);
  stop(f);

  /* nobody answers: the hold timer does (404), and a host wake does not touch it */
  f = start(1, tweak_short_ask);
  c = cl_connect(f->port);
  cl_send(c, "GET /.well-known/acme-challenge/lateSlow HTTP/1.1\r\nHost: c1.example.com\r\n\r\n");
  wait_chal_calls(f, 1);
  set_check(f, 0, AE_H80_VALID, 0);
  wake(f, "c1.example.com");
  assert_int_equal(cl_response(c, &r, 0), 0);
  assert_int_equal(r.status, 404);
  assert_int_equal(check_calls(f, 0), 0);
  cl_free(c);
  stop(f);
}

int main(void) {
  ae_log_set_level(AE_LOG_WARN);
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_challenge),
    cmocka_unit_test(test_host_states),
    cmocka_unit_test(test_redirect_settings),
    cmocka_unit_test(test_limits),
    cmocka_unit_test(test_keepalive),
    cmocka_unit_test(test_timeouts),
    cmocka_unit_test(test_plain_handoff),
    cmocka_unit_test(test_close_with_open_connections),
    cmocka_unit_test(test_ipv6_listener),
    cmocka_unit_test(test_bad_listen),
    cmocka_unit_test(test_hold_wake),
    cmocka_unit_test(test_hold_timeout),
    cmocka_unit_test(test_hold_disconnect),
    cmocka_unit_test(test_challenge_lookup),
    cmocka_unit_test(test_hold_pipelined),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
