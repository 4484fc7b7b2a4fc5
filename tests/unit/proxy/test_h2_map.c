/* Unit tests for the HTTP/2 ↔ HTTP/1.1 field mapping (src/proxy/h2_map.c): the upstream request
 * head built from h2 fields (request line, Host from :authority, joined cookies, te dropped,
 * forwarding fields, body framing), the Host/:authority/SNI decisions (400/421), the decoded
 * header block bounds (431), and the h2 response fields made from an HTTP/1.1 head. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "../../../src/proxy/h2_map.h"

#define ADD(r, n, v) ae_h2req_add(r, n, strlen(n), v, strlen(v))

static void basic_req(ae_h2req *r, const char *method) {
  ae_h2req_init(r);
  ADD(r, ":method", method);
  ADD(r, ":scheme", "https");
  ADD(r, ":authority", "App.Example.test:8443");
  ADD(r, ":path", "/a/b?c=d");
}

static char *head_of(const ae_h2req *r, int body_mode) {
  ae_buf out = {0};
  ae_h2req_upstream_head(r, "192.0.2.7", 0, body_mode, &out);
  ae_buf_add(&out, "", 1);
  return out.d;
}

static void test_request_line_host_forwarding(void **st) {
  (void)st;
  ae_h2req r;
  basic_req(&r, "GET");
  ADD(&r, "accept", "*/*");
  ADD(&r, "x-forwarded-for", "6.6.6.6");
  ADD(&r, "x-forwarded-host", "evil.test");
  char *h = head_of(&r, 0);
  assert_true(strncmp(h, "GET /a/b?c=d HTTP/1.1\r\nHost: App.Example.test:8443\r\n", 52) == 0);
  assert_non_null(strstr(h, "\r\naccept: */*\r\n"));
  assert_non_null(strstr(h, "\r\nX-Forwarded-For: 192.0.2.7\r\n"));
  assert_non_null(strstr(h, "\r\nX-Forwarded-Proto: https\r\n"));
  assert_non_null(strstr(h, "\r\nX-Forwarded-Host: App.Example.test:8443\r\n"));
  assert_null(strstr(h, "6.6.6.6"));
  assert_null(strstr(h, "evil.test"));
  assert_null(strstr(h, ":authority"));
  assert_null(strstr(h, ":scheme"));
  assert_null(strstr(h, "Content-Length"));
  assert_null(strstr(h, "Transfer-Encoding"));
  assert_int_equal(strcmp(h + strlen(h) - 4, "\r\n\r\n"), 0);
  free(h);
  ae_h2req_free(&r);
}

static void test_cookies_joined_te_dropped(void **st) {
  (void)st;
  ae_h2req r;
  basic_req(&r, "GET");
  ADD(&r, "cookie", "a=1");
  ADD(&r, "x-mid", "m");
  ADD(&r, "cookie", "b=2");
  ADD(&r, "te", "trailers");
  ADD(&r, "cookie", "c=3");
  char *h = head_of(&r, 0);
  assert_non_null(strstr(h, "\r\ncookie: a=1; b=2; c=3\r\n"));
  /* exactly one cookie line */
  char *first = strstr(h, "cookie:");
  assert_null(strstr(first + 1, "cookie:"));
  assert_null(strstr(h, "\r\nte:"));
  assert_non_null(strstr(h, "\r\nx-mid: m\r\n"));
  free(h);
  ae_h2req_free(&r);
}

static void test_body_modes(void **st) {
  (void)st;
  ae_h2req r;
  basic_req(&r, "POST");
  assert_int_equal(ae_h2req_body_mode(&r, 1), 0);
  assert_int_equal(ae_h2req_body_mode(&r, 0), 2);
  char *h = head_of(&r, 2);
  assert_non_null(strstr(h, "\r\nTransfer-Encoding: chunked\r\n"));
  assert_null(strstr(h, "Content-Length"));
  free(h);
  ADD(&r, "content-length", "12345");
  assert_int_equal(ae_h2req_body_mode(&r, 0), 1);
  h = head_of(&r, 1);
  assert_non_null(strstr(h, "\r\nContent-Length: 12345\r\n"));
  assert_null(strstr(h, "content-length"));
  assert_null(strstr(h, "Transfer-Encoding"));
  free(h);
  ae_h2req_free(&r);
}

static void test_route_host(void **st) {
  (void)st;
  ae_h2req r;
  char host[256];
  const char *why = NULL;
  basic_req(&r, "GET");
  assert_int_equal(ae_h2req_route_host(&r, "app.example.test", host, sizeof(host), &why), 0);
  assert_string_equal(host, "app.example.test");
  assert_int_equal(ae_h2req_route_host(&r, "", host, sizeof(host), &why), 0);
  /* another name than the TLS server name */
  assert_int_equal(ae_h2req_route_host(&r, "other.example.test", host, sizeof(host), &why), 421);
  /* host equal to :authority (case, port) is fine; a different one is 400 */
  ADD(&r, "host", "app.example.TEST:8443");
  assert_int_equal(ae_h2req_route_host(&r, "app.example.test", host, sizeof(host), &why), 0);
  ae_h2req_free(&r);
  basic_req(&r, "GET");
  ADD(&r, "host", "evil.example.test");
  assert_int_equal(ae_h2req_route_host(&r, "app.example.test", host, sizeof(host), &why), 400);
  ae_h2req_free(&r);
  /* host alone (no :authority) routes */
  ae_h2req_init(&r);
  ADD(&r, ":method", "GET");
  ADD(&r, ":path", "/");
  ADD(&r, "host", "app.example.test");
  assert_int_equal(ae_h2req_route_host(&r, "app.example.test", host, sizeof(host), &why), 0);
  char *h = head_of(&r, 0);
  assert_true(strncmp(h, "GET / HTTP/1.1\r\nHost: app.example.test\r\n", 40) == 0);
  free(h);
  ae_h2req_free(&r);
  /* neither */
  ae_h2req_init(&r);
  ADD(&r, ":method", "GET");
  ADD(&r, ":path", "/");
  assert_int_equal(ae_h2req_route_host(&r, "app.example.test", host, sizeof(host), &why), 400);
  ae_h2req_free(&r);
}

static void test_limits_431(void **st) {
  (void)st;
  ae_h2req r;
  char host[256];
  const char *why = NULL;
  char name[16];
  basic_req(&r, "GET");
  for (int i = 0; i < 96; i++) {
    snprintf(name, sizeof(name), "x-f%d", i);
    ADD(&r, name, "v");
  }
  assert_int_equal(ae_h2req_route_host(&r, "", host, sizeof(host), &why), 0); /* 100 fields */
  ADD(&r, "x-one-more", "v");
  assert_int_equal(ae_h2req_route_host(&r, "", host, sizeof(host), &why), 431);
  ae_h2req_free(&r);

  basic_req(&r, "GET");
  char *big = malloc(40000);
  memset(big, 'a', 39999);
  big[39999] = 0;
  ADD(&r, "x-big1", big);
  assert_int_equal(ae_h2req_route_host(&r, "", host, sizeof(host), &why), 0);
  ADD(&r, "x-big2", big); /* 80 KB decoded in total */
  assert_int_equal(ae_h2req_route_host(&r, "", host, sizeof(host), &why), 431);
  /* nothing past the limit is stored */
  assert_true(r.m.b.len < 41000);
  free(big);
  ae_h2req_free(&r);
}

static ae_hmsg resp_of(const char *const *fv, size_t n) {
  ae_hmsg m = {0};
  for (size_t i = 0; i + 1 < n; i += 2) {
    ae_hmsg_on_field(&m, fv[i], strlen(fv[i]));
    ae_hmsg_on_value(&m, fv[i + 1], strlen(fv[i + 1]));
  }
  return m;
}

static const nghttp2_nv *nv_find(const nghttp2_nv *nva, size_t n, const char *name) {
  for (size_t i = 0; i < n; i++)
    if (nva[i].namelen == strlen(name) && memcmp(nva[i].name, name, nva[i].namelen) == 0)
      return &nva[i];
  return NULL;
}

static void test_response_fields(void **st) {
  (void)st;
  static const char *const fv[] = {"Content-Type", "text/html", "Connection", "close, X-Private",
                                   "X-Private", "secret", "Keep-Alive", "timeout=5",
                                   "Transfer-Encoding", "chunked", "Upgrade", "h2c",
                                   "Proxy-Connection", "keep-alive", "Set-Cookie", "a=1",
                                   "Set-Cookie", "b=2", "Content-Length", "10", "X-Mixed-CASE", " v "};
  ae_hmsg m = resp_of(fv, sizeof(fv) / sizeof(fv[0]));
  ae_buf store = {0};
  nghttp2_nv *nva = NULL;
  size_t n = ae_h2_response_nva(&m, 200, 1, &store, &nva);
  assert_true(n >= 1);
  assert_int_equal(nva[0].namelen, 7);
  assert_memory_equal(nva[0].name, ":status", 7);
  assert_memory_equal(nva[0].value, "200", 3);
  for (size_t i = 0; i < n; i++)
    for (size_t j = 0; j < nva[i].namelen; j++)
      assert_false(nva[i].name[j] >= 'A' && nva[i].name[j] <= 'Z');
  assert_null(nv_find(nva, n, "connection"));
  assert_null(nv_find(nva, n, "x-private"));
  assert_null(nv_find(nva, n, "keep-alive"));
  assert_null(nv_find(nva, n, "transfer-encoding"));
  assert_null(nv_find(nva, n, "upgrade"));
  assert_null(nv_find(nva, n, "proxy-connection"));
  assert_non_null(nv_find(nva, n, "content-type"));
  assert_non_null(nv_find(nva, n, "content-length"));
  const nghttp2_nv *x = nv_find(nva, n, "x-mixed-case");
  assert_non_null(x);
  assert_int_equal(x->valuelen, 1);
  assert_memory_equal(x->value, "v", 1);
  size_t cookies = 0;
  for (size_t i = 0; i < n; i++)
    cookies += nva[i].namelen == 10 && memcmp(nva[i].name, "set-cookie", 10) == 0;
  assert_int_equal(cookies, 2);
  free(nva);
  /* without the length (a body re-framed as DATA of unknown length) */
  n = ae_h2_response_nva(&m, 404, 0, &store, &nva);
  assert_memory_equal(nva[0].value, "404", 3);
  assert_null(nv_find(nva, n, "content-length"));
  free(nva);
  ae_buf_free(&store);
  ae_hmsg_free(&m);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_request_line_host_forwarding),
      cmocka_unit_test(test_cookies_joined_te_dropped),
      cmocka_unit_test(test_body_modes),
      cmocka_unit_test(test_route_host),
      cmocka_unit_test(test_limits_431),
      cmocka_unit_test(test_response_fields),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
