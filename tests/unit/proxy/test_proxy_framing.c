/* Unit tests for the proxy's HTTP/1.1 framing decisions (RFC 9112 / 9110), one test per class:
 * each case is an annotated request byte string sent through ae_proxy_attach to a loopback
 * upstream that counts the requests it parses. Every case runs twice, once in one read and once
 * one byte per read, and must end the same way: a refused request never reaches the upstream
 * (0 smuggled requests), an accepted one reaches it exactly as often as it should. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "acmedge/log.h"
#include "acmedge/metrics.h"
#include "proxy_test_util.h"
#include "../../../src/proxy/proxy_client.h"

typedef struct env {
  upsrv *up;
  ae_config *cfg;
  ae_proxy *px;
  int closed;
} env;

static env *env_new(void) {
  env *e = ae_calloc(1, sizeof(*e));
  e->up = up_start(UP_ECHO);
  char json[1024];
  snprintf(json, sizeof(json),
           "{\"on_demand\":{\"enabled\":false},\"log\":{\"level\":\"warn\"},"
           "\"routes\":[{\"hosts\":[\"a.test\"],\"upstream\":\"127.0.0.1:%d\"}]}",
           e->up->port);
  ae_err err = {0};
  assert_int_equal(ae_config_parse("test", json, &e->cfg, &err), 0);
  assert_int_equal(ae_proxy_new(T_loop, e->cfg, &e->px, &err), 0);
  return e;
}

static void env_closed(void *ud) { ((env *)ud)->closed = 1; }
static int env_is_closed(void *ud) { return ((env *)ud)->closed; }

static void env_free(env *e) {
  ae_proxy_close(e->px, env_closed, e);
  assert_true(t_run_until(env_is_closed, e, 3000));
  ae_proxy_free(e->px);
  ae_config_free(e->cfg);
  up_stop(e->up);
  free(e);
}

typedef struct fcase {
  const char *name;   /* what the bytes exercise */
  const char *req;
  size_t len;         /* 0: strlen(req) */
  int status;         /* first response status */
  int upstream;       /* requests the upstream must parse */
  const char *body;   /* when set, must appear in what the upstream received */
} fcase;

/* Sends c->req whole (split = 0) or one byte per read and checks status and upstream count. */
static void run_one(env *e, const fcase *c, int split) {
  size_t len = c->len ? c->len : strlen(c->req);
  int before = e->up->requests;
  e->up->got.len = 0;
  fake *f = fake_new("a.test", "10.1.2.3");
  ae_proxy_attach(e->px, &f->t, NULL, 0);
  if (split) {
    for (size_t i = 0; i < len && !f->closed; i++)
      fake_send(f, c->req + i, 1);
  } else {
    fake_send(f, c->req, len);
  }
  t_resps rs;
  if (c->status >= 400) {
    /* A refusal closes the connection at once, well before any timeout (header_timeout is 10 s). */
    if (!t_run_until(fake_is_closed, f, 10000))
      fail_msg("%s (split %d): connection not closed", c->name, split);
    t_parse(f, &rs, 0);
  } else {
    int want = c->upstream > 1 ? c->upstream : 1;
    t_wait_responses(f, want, &rs, 10000);
  }
  if (rs.n < 1 || rs.r[0].status != c->status)
    fail_msg("%s (split %d): expected %d, got %d responses, first status %d", c->name, split, c->status, rs.n,
             rs.n ? rs.r[0].status : 0);
  if (c->status >= 400 && !t_has(&rs.r[0].head, "Connection: close"))
    fail_msg("%s (split %d): refusal without Connection: close", c->name, split);
  t_run_for(30);
  if (e->up->requests - before != c->upstream)
    fail_msg("%s (split %d): upstream parsed %d requests, expected %d", c->name, split, e->up->requests - before,
             c->upstream);
  if (c->body && !t_has(&e->up->got, c->body))
    fail_msg("%s (split %d): upstream did not receive %s", c->name, split, c->body);
  t_resps_free(&rs);
  if (!f->closed) {
    fake_eof(f);
    assert_true(t_run_until(fake_is_closed, f, 2000));
  }
  fake_free(f);
}

static void run_cases(const fcase *cs, size_t n) {
  env *e = env_new();
  for (size_t i = 0; i < n; i++) {
    run_one(e, &cs[i], 0);
    run_one(e, &cs[i], 1);
  }
  env_free(e);
}

#define POST_CHUNKED "POST /up HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n"
#define SMUGGLED "GET /smuggled HTTP/1.1\r\nHost: a.test\r\n\r\n"

/* Row 1: where a chunked body ends is the proxy's decision; every deviation is a 400. */
static void test_row1_chunked_framing(void **state) {
  (void)state;
  static const fcase cs[] = {
      {"chunk data followed by a request instead of CRLF (the desync)",
       POST_CHUNKED "5\r\nhello" SMUGGLED "0\r\n\r\n", 0, 400, 0, NULL},
      {"chunk data followed by two other bytes", POST_CHUNKED "5\r\nhelloXX0\r\n\r\n", 0, 400, 0, NULL},
      {"chunk data followed by bare LF", POST_CHUNKED "5\r\nhello\n0\r\n\r\n", 0, 400, 0, NULL},
      {"chunk data followed by bare CR", POST_CHUNKED "5\r\nhello\r0\r\n\r\n", 0, 400, 0, NULL},
      {"chunk longer than its size", POST_CHUNKED "3\r\nhello\r\n0\r\n\r\n", 0, 400, 0, NULL},
      {"size line: leading zeros are valid", POST_CHUNKED "0005\r\nhello\r\n000\r\n\r\n", 0, 200, 1,
       "5\r\nhello\r\n0\r\n\r\n"},
      {"size line: 17 hex digits overflow", POST_CHUNKED "10000000000000005\r\nhello\r\n0\r\n\r\n", 0, 400, 0, NULL},
      {"size line: space after the size", POST_CHUNKED "5 \r\nhello\r\n0\r\n\r\n", 0, 400, 0, NULL},
      {"size line: space before the size", POST_CHUNKED " 5\r\nhello\r\n0\r\n\r\n", 0, 400, 0, NULL},
      {"size line: sign", POST_CHUNKED "+5\r\nhello\r\n0\r\n\r\n", 0, 400, 0, NULL},
      {"size line: 0x prefix", POST_CHUNKED "0x5\r\nhello\r\n0\r\n\r\n", 0, 400, 0, NULL},
      {"size line: empty", POST_CHUNKED "\r\nhello\r\n0\r\n\r\n", 0, 400, 0, NULL},
      {"size line: bare LF", POST_CHUNKED "5\nhello\r\n0\r\n\r\n", 0, 400, 0, NULL},
      {"last-chunk: bare LF ends the body", POST_CHUNKED "5\r\nhello\r\n0\r\n\n", 0, 400, 0, NULL},
      {"last-chunk: bare LF after the size", POST_CHUNKED "0\n\r\n", 0, 400, 0, NULL},
      {"trailer: obs-fold", POST_CHUNKED "0\r\nX-T: a\r\n b\r\n\r\n", 0, 400, 0, NULL},
      {"trailer: no colon", POST_CHUNKED "0\r\nX-T\r\n\r\n", 0, 400, 0, NULL},
      {"trailer: space before colon", POST_CHUNKED "0\r\nX-T : a\r\n\r\n", 0, 400, 0, NULL},
      {"trailer: bare CR", POST_CHUNKED "0\r\nX-T: a\rb\r\n\r\n", 0, 400, 0, NULL},
      {"trailer: valid, dropped", POST_CHUNKED "5\r\nhello\r\n0\r\nX-T: a\r\n\r\n", 0, 200, 1, "5\r\nhello\r\n0\r\n\r\n"},
      {"a pipelined request after a valid chunked body is a second request", POST_CHUNKED "5\r\nhello\r\n0\r\n\r\n" SMUGGLED,
       0, 200, 2, NULL},
  };
  run_cases(cs, AE_ARRAY_LEN(cs));
}

/* Row 2: chunk extensions are valid, dropped, and bounded (4 KiB per body). */
static void test_row2_chunk_extensions(void **state) {
  (void)state;
  static char one_big[8192], many[16384];
  int k = snprintf(one_big, sizeof(one_big), "%s5;x=", POST_CHUNKED);
  memset(one_big + k, 'a', 4200);
  snprintf(one_big + k + 4200, sizeof(one_big) - (size_t)k - 4200, "\r\nhello\r\n0\r\n\r\n");
  /* 300 chunks with a 16-byte extension each: none is big, together they pass 4 KiB. */
  k = snprintf(many, sizeof(many), "%s", POST_CHUNKED);
  for (int i = 0; i < 300; i++)
    k += snprintf(many + k, sizeof(many) - (size_t)k, "1;ext=0123456789\r\nx\r\n");
  snprintf(many + k, sizeof(many) - (size_t)k, "0\r\n\r\n");
  const fcase cs[] = {
      {"extensions with token and quoted values are dropped",
       POST_CHUNKED "5;a=b;c=\"d e\\\"f\" ; g\r\nhello\r\n0;last\r\n\r\n", 0, 200, 1, "\r\n\r\n5\r\nhello\r\n0\r\n\r\n"},
      {"extension name missing", POST_CHUNKED "5;\r\nhello\r\n0\r\n\r\n", 0, 400, 0, NULL},
      {"extension with a control character", POST_CHUNKED "5;a=\"\x01\"\r\nhello\r\n0\r\n\r\n", 0, 400, 0, NULL},
      {"extension with a bare LF", POST_CHUNKED "5;a\nhello\r\n0\r\n\r\n", 0, 400, 0, NULL},
      {"one extension over 4 KiB", one_big, 0, 400, 0, NULL},
      {"extensions of one body over 4 KiB in total", many, 0, 400, 0, NULL},
  };
  run_cases(cs, AE_ARRAY_LEN(cs));
}

/* Row 3: Transfer-Encoding must be exactly chunked (OWS allowed), in HTTP/1.1, without CL. */
static void test_row3_transfer_encoding(void **state) {
  (void)state;
  static const fcase cs[] = {
      {"OWS and HTAB around chunked",
       "POST / HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: \t chunked\t \r\n\r\n5\r\nhello\r\n0\r\n\r\n", 0, 200, 1,
       "5\r\nhello\r\n0\r\n\r\n"},
      {"unknown coding before chunked",
       "POST / HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 0, 501, 0, NULL},
      {"unknown coding alone", "POST / HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: foo\r\n\r\n", 0, 400, 0, NULL},
      {"chunked not last",
       "POST / HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n", 0, 400, 0, NULL},
      {"chunked twice",
       "POST / HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n", 0, 400, 0, NULL},
      {"chunked with a parameter",
       "POST / HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked;q=1\r\n\r\n0\r\n\r\n", 0, 400, 0, NULL},
      {"TE in HTTP/1.0", "POST / HTTP/1.0\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 0, 400, 0,
       NULL},
      {"TE with Content-Length",
       "POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 0, 400, 0,
       NULL},
      {"TE with Content-Length, other order",
       "POST / HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n", 0, 400, 0,
       NULL},
  };
  run_cases(cs, AE_ARRAY_LEN(cs));
}

/* Row 4: the request line is exactly method SP target SP HTTP/d.d. */
static void test_row4_request_line(void **state) {
  (void)state;
  static char longline[10000];
  int k = snprintf(longline, sizeof(longline), "GET /");
  memset(longline + k, 'a', 9000);
  snprintf(longline + k + 9000, sizeof(longline) - (size_t)k - 9000, " HTTP/1.1\r\nHost: a.test\r\n\r\n");
  const fcase cs[] = {
      {"double SP after the method", "GET  / HTTP/1.1\r\nHost: a.test\r\n\r\n", 0, 400, 0, NULL},
      {"double SP before the version", "GET /  HTTP/1.1\r\nHost: a.test\r\n\r\n", 0, 400, 0, NULL},
      {"leading whitespace", " GET / HTTP/1.1\r\nHost: a.test\r\n\r\n", 0, 400, 0, NULL},
      {"trailing whitespace", "GET / HTTP/1.1 \r\nHost: a.test\r\n\r\n", 0, 400, 0, NULL},
      {"HTAB as separator", "GET\t/ HTTP/1.1\r\nHost: a.test\r\n\r\n", 0, 400, 0, NULL},
      {"bare CR in the target", "GET /a\rb HTTP/1.1\r\nHost: a.test\r\n\r\n", 0, 400, 0, NULL},
      {"bare CR after the version", "GET / HTTP/1.1\rHost: a.test\r\n\r\n", 0, 400, 0, NULL},
      {"* with GET", "GET * HTTP/1.1\r\nHost: a.test\r\n\r\n", 0, 400, 0, NULL},
      {"* with OPTIONS is forwarded", "OPTIONS * HTTP/1.1\r\nHost: a.test\r\n\r\n", 0, 200, 1, "OPTIONS * HTTP/1.1\r\n"},
      {"HTTP/0.9 style (no version) is refused at once", "GET /\r\n", 0, 400, 0, NULL},
      {"HTTP/1.2 is handled as HTTP/1.1", "GET /v HTTP/1.2\r\nHost: a.test\r\n\r\n", 0, 200, 1, "GET /v HTTP/1.1\r\n"},
      {"HTTP/1.10 is not a version", "GET / HTTP/1.10\r\nHost: a.test\r\n\r\n", 0, 400, 0, NULL},
      {"lower-case http", "GET / http/1.1\r\nHost: a.test\r\n\r\n", 0, 400, 0, NULL},
      {"HTTP/2.0", "GET / HTTP/2.0\r\nHost: a.test\r\n\r\n", 0, 505, 0, NULL},
      {"HTTP/3.0", "GET / HTTP/3.0\r\nHost: a.test\r\n\r\n", 0, 505, 0, NULL},
      {"HTTP/2 connection preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 0, 505, 0, NULL},
      {"request line over 8 KiB", longline, 0, 414, 0, NULL},
  };
  run_cases(cs, AE_ARRAY_LEN(cs));
}

/* Appends "GET / HTTP/1.1", Host, then n fields of about line bytes each. */
static void head_with_fields(ae_buf *b, int n, size_t line) {
  ae_buf_adds(b, "GET / HTTP/1.1\r\nHost: a.test\r\n");
  for (int i = 0; i < n; i++) {
    char nm[32];
    int k = snprintf(nm, sizeof(nm), "X-F%d: ", i);
    ae_buf_add(b, nm, (size_t)k);
    for (size_t j = (size_t)k; j < line; j++)
      ae_buf_add(b, "v", 1);
    ae_buf_adds(b, "\r\n");
  }
  ae_buf_adds(b, "\r\n");
}

/* Row 5: 32 KiB per head, 8 KiB per field line, 100 fields. */
static void test_row5_header_limits(void **state) {
  (void)state;
  ae_buf ok20k = {0}, line9k = {0}, total40k = {0}, f101 = {0}, f99 = {0}, ok8k = {0};
  head_with_fields(&ok20k, 20, 1024);
  head_with_fields(&ok8k, 1, 8000);
  head_with_fields(&line9k, 1, 9 * 1024);
  head_with_fields(&total40k, 40, 1024);
  head_with_fields(&f99, 99, 8);   /* with Host: 100 fields */
  head_with_fields(&f101, 100, 8); /* with Host: 101 fields */
  ae_buf_add(&ok20k, "", 1);
  ae_buf_add(&ok8k, "", 1);
  ae_buf_add(&line9k, "", 1);
  ae_buf_add(&total40k, "", 1);
  ae_buf_add(&f99, "", 1);
  ae_buf_add(&f101, "", 1);
  const fcase cs[] = {
      {"20 KiB head of 1 KiB lines", ok20k.d, 0, 200, 1, NULL},
      {"one field line of 8000 bytes", ok8k.d, 0, 200, 1, NULL},
      {"one field line of 9 KiB", line9k.d, 0, 431, 0, NULL},
      {"head of 40 KiB", total40k.d, 0, 431, 0, NULL},
      {"100 fields", f99.d, 0, 200, 1, NULL},
      {"101 fields", f101.d, 0, 431, 0, NULL},
  };
  run_cases(cs, AE_ARRAY_LEN(cs));
  ae_buf_free(&ok20k);
  ae_buf_free(&ok8k);
  ae_buf_free(&line9k);
  ae_buf_free(&total40k);
  ae_buf_free(&f99);
  ae_buf_free(&f101);
}

#define WS_HEAD "GET /ws HTTP/1.1\r\nHost: a.test\r\nUpgrade: websocket\r\n"
#define WS_KEY "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"

/* Row 6: Upgrade: websocket only as a complete RFC 6455 handshake (the complete one is tunnelled
 * in test_proxy.c test_websocket_tunnel). */
static void test_row6_websocket(void **state) {
  (void)state;
  static const fcase cs[] = {
      {"no Connection: upgrade", WS_HEAD WS_KEY "Sec-WebSocket-Version: 13\r\n\r\n", 0, 400, 0, NULL},
      {"no key", WS_HEAD "Connection: upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n", 0, 400, 0, NULL},
      {"key not 16 bytes", WS_HEAD "Connection: upgrade\r\nSec-WebSocket-Key: abc=\r\nSec-WebSocket-Version: 13\r\n\r\n",
       0, 400, 0, NULL},
      {"version 12", WS_HEAD "Connection: upgrade\r\n" WS_KEY "Sec-WebSocket-Version: 12\r\n\r\n", 0, 400, 0, NULL},
      {"POST", "POST /ws HTTP/1.1\r\nHost: a.test\r\nUpgrade: websocket\r\nConnection: upgrade\r\n" WS_KEY
               "Sec-WebSocket-Version: 13\r\nContent-Length: 0\r\n\r\n",
       0, 400, 0, NULL},
      {"another Upgrade is not honoured and not forwarded",
       "GET / HTTP/1.1\r\nHost: a.test\r\nConnection: upgrade\r\nUpgrade: h2c\r\n\r\n", 0, 200, 1, NULL},
  };
  run_cases(cs, AE_ARRAY_LEN(cs));
  /* The upgrade the proxy does not honour never reaches the upstream. */
  env *e = env_new();
  run_one(e, &cs[AE_ARRAY_LEN(cs) - 1], 0);
  assert_false(t_has(&e->up->got, "Upgrade"));
  assert_false(t_has(&e->up->got, "h2c"));
  env_free(e);
}

/* Other head rules kept from before: field syntax, Content-Length, Host. */
static void test_head_fields(void **state) {
  (void)state;
  static const char nul[] = "GET / HTTP/1.1\r\nHost: a.test\r\nX: a\0b\r\n\r\n";
  static const fcase cs[] = {
      {"obs-fold", "GET / HTTP/1.1\r\nHost: a.test\r\nX: a\r\n b\r\n\r\n", 0, 400, 0, NULL},
      {"whitespace before colon", "GET / HTTP/1.1\r\nHost: a.test\r\nX : a\r\n\r\n", 0, 400, 0, NULL},
      {"NUL in a value", nul, sizeof(nul) - 1, 400, 0, NULL},
      {"bare CR in a value", "GET / HTTP/1.1\r\nHost: a.test\r\nX: a\rb\r\n\r\n", 0, 400, 0, NULL},
      {"bare LF in a value", "GET / HTTP/1.1\r\nHost: a.test\r\nX: a\nb\r\n\r\n", 0, 400, 0, NULL},
      {"differing Content-Length", "POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
       0, 400, 0, NULL},
      {"Content-Length with a sign", "POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: +1\r\n\r\na", 0, 400, 0, NULL},
      {"Content-Length not digits", "POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 1a\r\n\r\na", 0, 400, 0, NULL},
      {"Host missing in HTTP/1.1", "GET / HTTP/1.1\r\n\r\n", 0, 400, 0, NULL},
      {"Host twice", "GET / HTTP/1.1\r\nHost: a.test\r\nHost: a.test\r\n\r\n", 0, 400, 0, NULL},
      {"Content-Length body", "POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 5\r\n\r\nhello", 0, 200, 1,
       "\r\n\r\nhello"},
  };
  run_cases(cs, AE_ARRAY_LEN(cs));
}

/* Row 7: refusals are counted by reason in /metrics. */
static void test_row7_metrics(void **state) {
  (void)state;
  static const fcase cs[] = {
      {"desync", POST_CHUNKED "5\r\nhello" SMUGGLED "0\r\n\r\n", 0, 400, 0, NULL},
      {"ext", POST_CHUNKED "5;\r\nhello\r\n0\r\n\r\n", 0, 400, 0, NULL},
      {"version", "GET / HTTP/3.0\r\nHost: a.test\r\n\r\n", 0, 505, 0, NULL},
      {"request line", "GET  / HTTP/1.1\r\nHost: a.test\r\n\r\n", 0, 400, 0, NULL},
      {"TE", "POST / HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 0, 501, 0, NULL},
      {"websocket", WS_HEAD "\r\n", 0, 400, 0, NULL},
  };
  ae_metrics_reset();
  env *e = env_new();
  for (size_t i = 0; i < AE_ARRAY_LEN(cs); i++)
    run_one(e, &cs[i], 0);
  env_free(e);
  char *m = ae_metrics_render();
  static const char *const want[] = {
      "acmedge_http_rejected_total{reason=\"chunk_framing\"} 2", "acmedge_http_rejected_total{reason=\"version\"} 1",
      "acmedge_http_rejected_total{reason=\"request_line\"} 1",
      "acmedge_http_rejected_total{reason=\"transfer_encoding\"} 1",
      "acmedge_http_rejected_total{reason=\"websocket\"} 1"};
  for (size_t i = 0; i < AE_ARRAY_LEN(want); i++)
    if (!strstr(m, want[i]))
      fail_msg("metrics lack %s:\n%s", want[i], m);
  free(m);
}

static int setup(void **state) {
  (void)state;
  t_loop_init();
  ae_log_set_level(AE_LOG_ERROR);
  return 0;
}

static int teardown(void **state) {
  (void)state;
  t_loop_done();
  return 0;
}

int main(void) {
  (void)t_closed_port; /* shared helpers this file does not need */
  (void)fake_sends;
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_row1_chunked_framing), cmocka_unit_test(test_row2_chunk_extensions),
      cmocka_unit_test(test_row3_transfer_encoding), cmocka_unit_test(test_row4_request_line),
      cmocka_unit_test(test_row5_header_limits), cmocka_unit_test(test_row6_websocket),
      cmocka_unit_test(test_head_fields), cmocka_unit_test(test_row7_metrics),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
