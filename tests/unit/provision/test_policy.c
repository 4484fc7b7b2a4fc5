/* Unit tests for policy: name normalization, allow patterns, rate limits, the ask URL. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "acmedge/config.h"
#include "acmedge/log.h"
#include "acmedge/policy.h"

/* ---------------------------------------------------------------------------------------- */
/* helpers */

static ae_config *load_cfg(const char *json) {
  ae_config *cfg = NULL;
  ae_err err = {0};
  int r = ae_config_parse("test.json", json, &cfg, &err);
  if (r != 0)
    fail_msg("config: %s", err.msg);
  return cfg;
}

static void closed_flag(void *ud) {
  *(int *)ud = 1;
}

static void noop_cb(void *ud, int allowed, const char *reason) {
  (void)ud;
  (void)allowed;
  (void)reason;
  fail_msg("callback called for a decision known at once");
}

static void on_deadline(uv_timer_t *t) {
  *(int *)t->data = 1;
}

/* Runs the loop until *flag is non-zero or ms elapsed; returns *flag. */
static int run_until(uv_loop_t *loop, volatile int *flag, unsigned ms) {
  uv_timer_t deadline;
  int expired = 0;
  uv_timer_init(loop, &deadline);
  deadline.data = &expired;
  uv_timer_start(&deadline, on_deadline, ms, 0);
  while (!*flag && !expired)
    uv_run(loop, UV_RUN_ONCE);
  uv_close((uv_handle_t *)&deadline, NULL);
  uv_run(loop, UV_RUN_NOWAIT);
  return *flag;
}

/* ---------------------------------------------------------------------------------------- */
/* normalization */

static void expect_ok(const char *in, const char *want) {
  char out[256];
  const char *reason = "unset";
  int r = ae_policy_normalize(in, out, sizeof(out), &reason);
  if (r != 0)
    fail_msg("\"%s\" rejected: %s", in, reason ? reason : "(null)");
  assert_string_equal(out, want);
  assert_null(reason);
}

static void expect_bad(const char *in, const char *why) {
  char out[256];
  const char *reason = NULL;
  int r = ae_policy_normalize(in, out, sizeof(out), &reason);
  if (r != AE_EINVAL)
    fail_msg("\"%s\" accepted as \"%s\"", in, out);
  assert_non_null(reason);
  if (strcmp(reason, why) != 0)
    fail_msg("\"%s\": reason %s, expected %s", in, reason, why);
}

static void test_normalize(void **state) {
  (void)state;
  expect_ok("example.com", "example.com");
  expect_ok("WWW.Example.COM", "www.example.com");
  expect_ok("example.com.", "example.com");
  expect_ok("example.com:80", "example.com");
  expect_ok("Example.com.:5002", "example.com");
  expect_ok("xn--bcher-kva.example", "xn--bcher-kva.example");
  expect_ok("a-b.c-d.example", "a-b.c-d.example");
  expect_ok("1a.example.com", "1a.example.com");
  expect_ok("123.example.com", "123.example.com");

  expect_bad("", "invalid_name");
  expect_bad(".", "invalid_name");
  expect_bad("localhost", "invalid_name");
  expect_bad("localhost.", "invalid_name");
  expect_bad("example..com", "invalid_name");
  expect_bad(".example.com", "invalid_name");
  expect_bad("example.com..", "invalid_name");
  expect_bad("foo_bar.example.com", "invalid_name");
  expect_bad("-foo.example.com", "invalid_name");
  expect_bad("foo-.example.com", "invalid_name");
  expect_bad("b\xc3\xbc" "cher.example", "invalid_name");
  expect_bad("ex ample.com", "invalid_name");
  expect_bad("example.com:", "invalid_name");
  expect_bad("example.com:http", "invalid_name");
  expect_bad("example.com:99999", "invalid_name");
  expect_bad("foo.123", "invalid_name");

  expect_bad("*.example.com", "wildcard");
  expect_bad("*", "wildcard");
  expect_bad("a.*.example.com", "wildcard");

  expect_bad("127.0.0.1", "ip_literal");
  expect_bad("127.0.0.1:80", "ip_literal");
  expect_bad("10.1", "ip_literal");
  expect_bad("::1", "ip_literal");
  expect_bad("2001:db8::1", "ip_literal");
  expect_bad("[::1]", "ip_literal");
  expect_bad("[::1]:80", "ip_literal");

  /* label of 64, name of 254 */
  char buf[400];
  memset(buf, 'a', 64);
  snprintf(buf + 64, sizeof(buf) - 64, ".example.com");
  expect_bad(buf, "too_long");
  memset(buf, 'a', 63);
  snprintf(buf + 63, sizeof(buf) - 63, ".example.com");
  expect_ok(buf, buf);

  /* 4 labels of 63 + 3 dots = 255 > 253; 253 exactly is fine */
  char name[300];
  size_t n = 0;
  for (int i = 0; i < 4; i++) {
    memset(name + n, 'b', 63);
    n += 63;
    name[n++] = '.';
  }
  name[n - 1] = '\0';
  expect_bad(name, "too_long");
  name[249] = '\0';              /* 3 full labels + dots (192) + 57 chars = 249 */
  memset(name + 249, 'c', 4);
  name[253] = '\0';
  expect_ok(name, name);
  char dotted[310];
  snprintf(dotted, sizeof(dotted), "%s.", name);
  expect_ok(dotted, name);
  memset(dotted, 'z', 309);
  dotted[309] = '\0';
  expect_bad(dotted, "too_long");

  /* output buffer too small, NULL reason pointer */
  char tiny[4];
  const char *reason = NULL;
  assert_int_equal(ae_policy_normalize("example.com", tiny, sizeof(tiny), &reason), AE_EINVAL);
  assert_int_equal(ae_policy_normalize("EXAMPLE.com", buf, sizeof(buf), NULL), 0);
  assert_int_equal(ae_policy_normalize(NULL, buf, sizeof(buf), &reason), AE_EINVAL);
}

/* ---------------------------------------------------------------------------------------- */
/* allow patterns */

static void test_allow_patterns(void **state) {
  (void)state;
  uv_loop_t loop;
  uv_loop_init(&loop);
  ae_config *cfg = load_cfg("{\"on_demand\": {\"allow\": [\"example.org\", \"*.example.com\"]}}");
  ae_policy *p = NULL;
  ae_err err = {0};
  assert_int_equal(ae_policy_new(&loop, cfg, &p, &err), 0);

  assert_int_equal(ae_policy_allowed(p, "example.org"), 1);
  assert_int_equal(ae_policy_allowed(p, "a.example.org"), 0);
  assert_int_equal(ae_policy_allowed(p, "a.example.com"), 1);
  assert_int_equal(ae_policy_allowed(p, "a.b.example.com"), 0);
  assert_int_equal(ae_policy_allowed(p, "example.com"), 0);
  assert_int_equal(ae_policy_allowed(p, "badexample.com"), 0);

  const char *reason = NULL;
  assert_int_equal(ae_policy_check(p, "a.example.com", noop_cb, NULL, NULL, &reason), 1);
  assert_null(reason);
  assert_int_equal(ae_policy_check(p, "x.y.example.com", noop_cb, NULL, NULL, &reason), 0);
  assert_string_equal(reason, "not_allowed");

  /* reload: explicit "*" */
  ae_config *cfg2 = load_cfg("{\"on_demand\": {\"allow\": [\"*\"]}}");
  ae_policy_set_config(p, cfg2);
  assert_int_equal(ae_policy_allowed(p, "anything.example.net"), 1);
  assert_int_equal(ae_policy_check(p, "x.y.example.com", noop_cb, NULL, NULL, &reason), 1);

  /* empty allow: only with ask */
  ae_config *cfg3 = load_cfg("{\"on_demand\": {\"allow\": [], \"ask\": \"http://127.0.0.1:9/ask\"}}");
  ae_policy_set_config(p, cfg3);
  assert_int_equal(ae_policy_allowed(p, "anything.example.net"), 1);
  char *ask = cfg3->on_demand.ask;
  cfg3->on_demand.ask = NULL; /* a snapshot without ask and without allow (check refuses it) */
  assert_int_equal(ae_policy_allowed(p, "anything.example.net"), 0);
  cfg3->on_demand.ask = ask;

  int closed = 0;
  ae_policy_close(p, closed_flag, &closed);
  assert_true(run_until(&loop, &closed, 2000));
  ae_policy_free(p);
  ae_config_free(cfg);
  ae_config_free(cfg2);
  ae_config_free(cfg3);
  assert_int_equal(uv_loop_close(&loop), 0);
}

/* ---------------------------------------------------------------------------------------- */
/* rate limit with a fake clock */

static void test_rate(void **state) {
  (void)state;
  uv_loop_t loop;
  uv_loop_init(&loop);
  ae_config *cfg = load_cfg("{\"on_demand\": {\"allow\": [\"*\"], "
                            "\"rate\": {\"per_minute\": 60, \"burst\": 3, \"per_3h\": 5}}}");
  ae_policy *p = NULL;
  ae_err err = {0};
  assert_int_equal(ae_policy_new(&loop, cfg, &p, &err), 0);

  const uint64_t H3 = 3ull * 3600 * 1000;
  uint64_t t = 1000000, wait = 0;
  /* burst: three at once, then one token per second */
  assert_int_equal(ae_policy_rate_take(p, t, &wait), 0);
  assert_int_equal(wait, 0);
  assert_int_equal(ae_policy_rate_take(p, t, &wait), 0);
  assert_int_equal(ae_policy_rate_take(p, t, &wait), 0);
  assert_int_equal(ae_policy_rate_take(p, t, &wait), AE_ELIMIT);
  assert_int_equal(wait, 1000);
  assert_int_equal(ae_policy_rate_take(p, t + 250, &wait), AE_ELIMIT);
  assert_int_equal(wait, 750);
  assert_int_equal(ae_policy_rate_take(p, t + 1000, &wait), 0);          /* 4th order */
  assert_int_equal(ae_policy_rate_take(p, t + 1000, &wait), AE_ELIMIT);
  assert_int_equal(wait, 1000);
  /* a long pause refills only up to burst */
  assert_int_equal(ae_policy_rate_take(p, t + 60000, &wait), 0);         /* 5th order */
  /* per_3h cap: 5 orders since t; the next slot opens when the first leaves the window */
  assert_int_equal(ae_policy_rate_take(p, t + 60000, &wait), AE_ELIMIT);
  assert_int_equal(wait, H3 - 60000);
  assert_int_equal(ae_policy_rate_take(p, t + H3 - 1, &wait), AE_ELIMIT);
  assert_int_equal(wait, 1);
  assert_int_equal(ae_policy_rate_take(p, t + H3, &wait), 0);            /* first three left */
  assert_int_equal(ae_policy_rate_take(p, t + H3, &wait), 0);
  assert_int_equal(ae_policy_rate_take(p, t + H3, &wait), 0);
  /* bucket empty again (burst 3), window has 5 (t+1000, t+60000, 3 x t+H3) */
  assert_int_equal(ae_policy_rate_take(p, t + H3, &wait), AE_ELIMIT);
  assert_int_equal(wait, 1000);
  assert_int_equal(ae_policy_rate_take(p, t + H3 + 1000, &wait), 0);      /* t+1000 left the window */
  assert_int_equal(ae_policy_rate_take(p, t + H3 + 5000, &wait), AE_ELIMIT);
  assert_int_equal(wait, 55000);                                          /* t+60000 leaves */

  /* reload: the level is kept but clamped to the new burst; a larger cap frees slots */
  ae_config *cfg2 = load_cfg("{\"on_demand\": {\"allow\": [\"*\"], "
                             "\"rate\": {\"per_minute\": 6, \"burst\": 1, \"per_3h\": 100}}}");
  ae_policy_set_config(p, cfg2);
  uint64_t t2 = t + H3 + 100000;
  assert_int_equal(ae_policy_rate_take(p, t2, &wait), 0);
  assert_int_equal(ae_policy_rate_take(p, t2, &wait), AE_ELIMIT);
  assert_int_equal(wait, 10000);                                          /* 6 per minute */
  assert_int_equal(ae_policy_rate_take(p, t2 + 10000, NULL), 0);

  /* a smaller cap keeps the newest orders */
  ae_config *cfg3 = load_cfg("{\"on_demand\": {\"allow\": [\"*\"], "
                             "\"rate\": {\"per_minute\": 600000, \"burst\": 100, \"per_3h\": 2}}}");
  ae_policy_set_config(p, cfg3);
  assert_int_equal(ae_policy_rate_take(p, t2 + 20000, &wait), AE_ELIMIT);
  assert_int_equal(wait, H3 - 20000);                                     /* t2 leaves first */

  int closed = 0;
  ae_policy_close(p, closed_flag, &closed);
  assert_true(run_until(&loop, &closed, 2000));
  ae_policy_free(p);
  ae_config_free(cfg);
  ae_config_free(cfg2);
  ae_config_free(cfg3);
  assert_int_equal(uv_loop_close(&loop), 0);
}

/* ---------------------------------------------------------------------------------------- */
/* ask, against a loopback HTTP server on the same loop */

typedef struct ask_server {
  uv_tcp_t tcp;
  int port;
  int requests;
  char last_target[256];
  int open_conns;
  struct ask_conn *conns;
} ask_server;

typedef struct ask_conn {
  uv_tcp_t tcp;
  ask_server *srv;
  struct ask_conn *next;
  char buf[2048];
  size_t len;
  int answered;
} ask_conn;

static void ask_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b) {
  ask_conn *c = h->data;
  (void)hint;
  b->base = c->buf + c->len;
  b->len = sizeof(c->buf) - 1 - c->len;
}

static void ask_conn_closed(uv_handle_t *h) {
  ask_conn *c = h->data;
  ask_server *s = c->srv;
  for (ask_conn **pp = &s->conns; *pp; pp = &(*pp)->next) {
    if (*pp == c) {
      *pp = c->next;
      break;
    }
  }
  s->open_conns--;
  free(c);
}

static void ask_written(uv_write_t *w, int status) {
  (void)status;
  free(w);
}

static void ask_read(uv_stream_t *st, ssize_t n, const uv_buf_t *b) {
  ask_conn *c = st->data;
  (void)b;
  if (n < 0) {
    if (!uv_is_closing((uv_handle_t *)st))
      uv_close((uv_handle_t *)st, ask_conn_closed);
    return;
  }
  c->len += (size_t)n;
  c->buf[c->len] = '\0';
  char *end = strstr(c->buf, "\r\n\r\n");
  if (!end || c->answered)
    return;
  c->answered = 1;
  c->srv->requests++;
  char target[256] = "";
  sscanf(c->buf, "GET %255s", target);
  snprintf(c->srv->last_target, sizeof(c->srv->last_target), "%s", target);
  const char *dom = strstr(target, "domain=");
  dom = dom ? dom + 7 : "";
  const char *resp = NULL;
  if (strncmp(dom, "ok", 2) == 0)
    resp = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
  else if (strncmp(dom, "no", 2) == 0)
    resp = "HTTP/1.1 403 Forbidden\r\nContent-Length: 2\r\n\r\nno";
  if (!resp) /* "slow...": never answered */
    return;
  uv_write_t *w = malloc(sizeof(*w));
  uv_buf_t wb = uv_buf_init((char *)resp, (unsigned)strlen(resp));
  uv_write(w, st, &wb, 1, ask_written);
  /* A fresh connection per request keeps the request count exact. */
  c->len = 0;
  c->answered = 0;
}

static void ask_accept(uv_stream_t *server, int status) {
  ask_server *s = server->data;
  if (status < 0)
    return;
  ask_conn *c = calloc(1, sizeof(*c));
  c->srv = s;
  uv_tcp_init(server->loop, &c->tcp);
  c->tcp.data = c;
  c->next = s->conns;
  s->conns = c;
  s->open_conns++;
  if (uv_accept(server, (uv_stream_t *)&c->tcp) == 0)
    uv_read_start((uv_stream_t *)&c->tcp, ask_alloc, ask_read);
  else
    uv_close((uv_handle_t *)&c->tcp, ask_conn_closed);
}

static void ask_server_start(uv_loop_t *loop, ask_server *s) {
  memset(s, 0, sizeof(*s));
  struct sockaddr_in a;
  uv_ip4_addr("127.0.0.1", 0, &a);
  assert_int_equal(uv_tcp_init(loop, &s->tcp), 0);
  s->tcp.data = s;
  assert_int_equal(uv_tcp_bind(&s->tcp, (const struct sockaddr *)&a, 0), 0);
  assert_int_equal(uv_listen((uv_stream_t *)&s->tcp, 64, ask_accept), 0);
  struct sockaddr_in b;
  int len = sizeof(b);
  uv_tcp_getsockname(&s->tcp, (struct sockaddr *)&b, &len);
  s->port = ntohs(b.sin_port);
}

static void ask_server_stop(ask_server *s) {
  uv_close((uv_handle_t *)&s->tcp, NULL);
  for (ask_conn *c = s->conns; c; c = c->next)
    if (!uv_is_closing((uv_handle_t *)&c->tcp))
      uv_close((uv_handle_t *)&c->tcp, ask_conn_closed);
}

typedef struct waiter {
  int called;
  int allowed;
  const char *reason;
} waiter;

static void waiter_cb(void *ud, int allowed, const char *reason) {
  waiter *w = ud;
  w->called++;
  w->allowed = allowed;
  w->reason = reason;
}

static ae_config *ask_cfg(int port, const char *query, unsigned timeout_ms) {
  char json[512];
  snprintf(json, sizeof(json),
           "{\"on_demand\": {\"allow\": [\"*.example.com\"], \"ask\": \"http://127.0.0.1:%d/ask%s\", "
           "\"ask_timeout_ms\": %u}}",
           port, query, timeout_ms);
  return load_cfg(json);
}

static void test_ask(void **state) {
  (void)state;
  uv_loop_t loop;
  uv_loop_init(&loop);
  ask_server srv;
  ask_server_start(&loop, &srv);
  ae_config *cfg = ask_cfg(srv.port, "", 300);
  ae_policy *p = NULL;
  ae_err err = {0};
  assert_int_equal(ae_policy_new(&loop, cfg, &p, &err), 0);
  const char *reason = NULL;

  /* names outside allow never reach ask */
  assert_int_equal(ae_policy_check(p, "ok.example.org", waiter_cb, NULL, NULL, &reason), 0);
  assert_string_equal(reason, "not_allowed");

  /* two concurrent checks share one request */
  waiter w1 = {0}, w2 = {0};
  ae_policy_req *r1 = NULL, *r2 = NULL;
  assert_int_equal(ae_policy_check(p, "ok.example.com", waiter_cb, &w1, &r1, &reason), AE_EAGAIN);
  assert_int_equal(ae_policy_check(p, "ok.example.com", waiter_cb, &w2, &r2, &reason), AE_EAGAIN);
  assert_non_null(r1);
  assert_non_null(r2);
  assert_true(run_until(&loop, &w2.called, 3000));
  run_until(&loop, &w1.called, 1000);
  assert_int_equal(w1.called, 1);
  assert_int_equal(w2.called, 1);
  assert_int_equal(w1.allowed, 1);
  assert_int_equal(w2.allowed, 1);
  assert_null(w1.reason);
  assert_int_equal(srv.requests, 1);
  assert_string_equal(srv.last_target, "/ask?domain=ok.example.com");

  /* cached: answered at once, no second request */
  reason = "x";
  assert_int_equal(ae_policy_check(p, "ok.example.com", waiter_cb, &w1, NULL, &reason), 1);
  assert_null(reason);
  assert_int_equal(srv.requests, 1);

  /* a denial, then cached */
  waiter w3 = {0};
  assert_int_equal(ae_policy_check(p, "no.example.com", waiter_cb, &w3, NULL, &reason), AE_EAGAIN);
  assert_true(run_until(&loop, &w3.called, 3000));
  assert_int_equal(w3.allowed, 0);
  assert_string_equal(w3.reason, "ask_denied");
  assert_int_equal(srv.requests, 2);
  assert_int_equal(ae_policy_check(p, "no.example.com", waiter_cb, &w3, NULL, &reason), 0);
  assert_string_equal(reason, "ask_denied");
  assert_int_equal(w3.called, 1);
  assert_int_equal(srv.requests, 2);

  /* no answer within ask_timeout_ms: denied */
  waiter w4 = {0};
  uint64_t t0 = uv_now(&loop);
  assert_int_equal(ae_policy_check(p, "slow.example.com", waiter_cb, &w4, NULL, &reason), AE_EAGAIN);
  assert_true(run_until(&loop, &w4.called, 5000));
  uv_update_time(&loop);
  assert_int_equal(w4.allowed, 0);
  assert_string_equal(w4.reason, "ask_failed");
  assert_true(uv_now(&loop) - t0 >= 250);
  assert_true(uv_now(&loop) - t0 < 3000);
  assert_int_equal(srv.requests, 3);

  /* cancel one of two waiters: only the other is called */
  waiter w5 = {0}, w6 = {0};
  ae_policy_req *r5 = NULL;
  assert_int_equal(ae_policy_check(p, "ok2.example.com", waiter_cb, &w5, &r5, &reason), AE_EAGAIN);
  assert_int_equal(ae_policy_check(p, "ok2.example.com", waiter_cb, &w6, NULL, &reason), AE_EAGAIN);
  ae_policy_cancel(r5);
  assert_true(run_until(&loop, &w6.called, 3000));
  assert_int_equal(w5.called, 0);
  assert_int_equal(w6.allowed, 1);
  assert_int_equal(srv.requests, 4);

  /* reload to an ask URL with a query: "&domain=", and the cache starts empty */
  ae_config *cfg2 = ask_cfg(srv.port, "?key=s3cret", 300);
  ae_policy_set_config(p, cfg2);
  waiter w7 = {0};
  assert_int_equal(ae_policy_check(p, "ok.example.com", waiter_cb, &w7, NULL, &reason), AE_EAGAIN);
  assert_true(run_until(&loop, &w7.called, 3000));
  assert_int_equal(w7.allowed, 1);
  assert_string_equal(srv.last_target, "/ask?key=s3cret&domain=ok.example.com");
  assert_int_equal(srv.requests, 5);

  /* close with a check in flight: its callback is never called */
  waiter w8 = {0};
  assert_int_equal(ae_policy_check(p, "slow2.example.com", waiter_cb, &w8, NULL, &reason), AE_EAGAIN);
  int closed = 0;
  ae_policy_close(p, closed_flag, &closed);
  assert_int_equal(ae_policy_check(p, "ok.example.com", waiter_cb, &w8, NULL, &reason), AE_ECANCELED);
  assert_true(run_until(&loop, &closed, 3000));
  assert_int_equal(w8.called, 0);
  ae_policy_free(p);
  ae_config_free(cfg);
  ae_config_free(cfg2);

  ask_server_stop(&srv);
  uv_run(&loop, UV_RUN_DEFAULT);
  assert_int_equal(srv.open_conns, 0);
  assert_int_equal(uv_loop_close(&loop), 0);
}

int main(void) {
  ae_log_set_level(AE_LOG_WARN);
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_normalize),
    cmocka_unit_test(test_allow_patterns),
    cmocka_unit_test(test_rate),
    cmocka_unit_test(test_ask),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
