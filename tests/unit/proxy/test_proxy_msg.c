/* Unit tests for the proxy's HTTP message helpers (src/proxy/httpmsg*.c): raw head scanner, request
 * framing analysis, Host normalisation, trusted-proxy matching and head rewriting. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <llhttp.h>
#include <stdlib.h>
#include <string.h>

#include "../../../src/proxy/proxy_int.h"

static int scan(const char *s, size_t n, uint32_t maxb, uint32_t maxf, size_t *used) {
  ae_hscan h;
  ae_hscan_reset(&h, maxb, maxf);
  size_t u = 0;
  int r = ae_hscan_feed(&h, s, n, &u);
  if (used)
    *used = u;
  return r;
}

#define SCAN(lit) scan(lit, sizeof(lit) - 1, 16384, 100, NULL)

static void test_hscan_ok(void **state) {
  (void)state;
  size_t used = 0;
  const char req[] = "GET / HTTP/1.1\r\nHost: a\r\nX-A:b\t c\r\n\r\nBODY";
  assert_int_equal(scan(req, sizeof(req) - 1, 16384, 100, &used), AE_HS_DONE);
  assert_int_equal(used, sizeof(req) - 1 - 4);
  /* Leading empty lines are tolerated, as RFC 9112 §2.2 allows. */
  assert_int_equal(SCAN("\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n"), AE_HS_DONE);
  assert_int_equal(SCAN("GET / HTTP/1.1\r\nHost: a\r\n"), AE_HS_MORE);
  /* Byte-at-a-time feeding reaches the same result. */
  ae_hscan h;
  ae_hscan_reset(&h, 16384, 100);
  int r = AE_HS_MORE;
  for (size_t i = 0; i < sizeof(req) - 1 && r == AE_HS_MORE; i++)
    r = ae_hscan_feed(&h, req + i, 1, &used);
  assert_int_equal(r, AE_HS_DONE);
}

static void test_hscan_bad(void **state) {
  (void)state;
  assert_int_equal(SCAN("GET / HTTP/1.1\r\nHost: a\r\nX: b\r\n c\r\n\r\n"), AE_HS_BAD);   /* obs-fold */
  assert_int_equal(SCAN("GET / HTTP/1.1\r\nHost: a\r\nX: b\r\n\tc\r\n\r\n"), AE_HS_BAD);  /* obs-fold tab */
  assert_int_equal(SCAN("GET / HTTP/1.1\nHost: a\r\n\r\n"), AE_HS_BAD);                  /* bare LF */
  assert_int_equal(SCAN("GET / HTTP/1.1\r\nHost: a\n\r\n"), AE_HS_BAD);                  /* bare LF */
  assert_int_equal(SCAN("GET / HTTP/1.1\r\nHost: a\r\n\n"), AE_HS_BAD);                  /* bare LF end */
  assert_int_equal(SCAN("GET / HTTP/1.1\r\nHost: a\rX: b\r\n\r\n"), AE_HS_BAD);          /* bare CR */
  assert_int_equal(SCAN("GET / HTTP/1.1\r\nHost : a\r\n\r\n"), AE_HS_BAD);               /* space before colon */
  assert_int_equal(SCAN("GET / HTTP/1.1\r\nHost\t: a\r\n\r\n"), AE_HS_BAD);              /* tab before colon */
  assert_int_equal(SCAN("GET / HTTP/1.1\r\n: a\r\n\r\n"), AE_HS_BAD);                    /* empty name */
  assert_int_equal(SCAN("GET / HTTP/1.1\r\nNoColon\r\n\r\n"), AE_HS_BAD);
  assert_int_equal(SCAN("GET / HTTP/1.1\r\nX: a\x01\r\n\r\n"), AE_HS_BAD);              /* control char */
  assert_int_equal(SCAN("GET / HTTP/1.1\r\nX: a\x7f\r\n\r\n"), AE_HS_BAD);
  const char nul[] = "GET / HTTP/1.1\r\nX: a\0b\r\n\r\n";
  assert_int_equal(scan(nul, sizeof(nul) - 1, 16384, 100, NULL), AE_HS_BAD);
  assert_int_equal(SCAN("\nGET / HTTP/1.1\r\n\r\n"), AE_HS_BAD);
}

static void test_hscan_limits(void **state) {
  (void)state;
  char big[200];
  memset(big, 'a', sizeof(big));
  memcpy(big, "GET /", 5);
  assert_int_equal(scan(big, sizeof(big), 100, 100, NULL), AE_HS_TOOBIG);
  assert_int_equal(SCAN("GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\n\r\n"), AE_HS_DONE);
  assert_int_equal(scan("GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n", 37, 16384, 2, NULL), AE_HS_TOOMANY);
}

/* Request-mode scanner: feeds whole and one byte at a time; both must agree. */
static int rscan(const char *s, size_t n, const char **reason) {
  ae_hlimits lim = {32768, 8192, 8192, 100};
  ae_hscan a, b;
  ae_hscan_reset_req(&a, &lim);
  ae_hscan_reset_req(&b, &lim);
  size_t u = 0;
  int ra = ae_hscan_feed(&a, s, n, &u);
  int rb = AE_HS_MORE;
  for (size_t i = 0; i < n && rb == AE_HS_MORE; i++)
    rb = ae_hscan_feed(&b, s + i, 1, &u);
  assert_int_equal(ra, rb);
  if (reason)
    *reason = a.reason;
  return ra;
}
#define RSCAN(lit) rscan(lit, sizeof(lit) - 1, NULL)

static void test_hscan_request_line(void **state) {
  (void)state;
  const char *reason = NULL;
  assert_int_equal(RSCAN("GET / HTTP/1.1\r\nHost: a\r\n\r\n"), AE_HS_DONE);
  assert_int_equal(RSCAN("OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n"), AE_HS_DONE);
  assert_int_equal(RSCAN("GET / HTTP/1.9\r\nHost: a\r\n\r\n"), AE_HS_DONE);
  assert_int_equal(RSCAN("\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n"), AE_HS_DONE);
  assert_int_equal(RSCAN("GET  / HTTP/1.1\r\n\r\n"), AE_HS_BAD);          /* double SP */
  assert_int_equal(RSCAN("GET /  HTTP/1.1\r\n\r\n"), AE_HS_BAD);
  assert_int_equal(RSCAN(" GET / HTTP/1.1\r\n\r\n"), AE_HS_BAD);          /* leading SP */
  assert_int_equal(RSCAN("GET / HTTP/1.1 \r\n\r\n"), AE_HS_BAD);          /* trailing SP */
  assert_int_equal(RSCAN("GET\t/ HTTP/1.1\r\n\r\n"), AE_HS_BAD);
  assert_int_equal(RSCAN("GET /\rx HTTP/1.1\r\n\r\n"), AE_HS_BAD);        /* bare CR */
  assert_int_equal(RSCAN("GET / HTTP/1.1\rx\r\n\r\n"), AE_HS_BAD);
  assert_int_equal(RSCAN("GET * HTTP/1.1\r\n\r\n"), AE_HS_BAD);           /* * without OPTIONS */
  assert_int_equal(RSCAN("OPTION * HTTP/1.1\r\n\r\n"), AE_HS_BAD);
  assert_int_equal(RSCAN("OPTIONSX * HTTP/1.1\r\n\r\n"), AE_HS_BAD);
  assert_int_equal(RSCAN("GET /*x HTTP/1.1\r\nHost: a\r\n\r\n"), AE_HS_DONE);
  /* HTTP/0.9 shape: refused as soon as its line ends, without waiting for more. */
  assert_int_equal(RSCAN("GET /\r\n"), AE_HS_BAD);
  assert_int_equal(rscan("GET / HTTP/2.0\r\n", 16, &reason), AE_HS_VERSION);
  assert_string_equal(reason, "version");
  assert_int_equal(RSCAN("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), AE_HS_VERSION);
  assert_int_equal(RSCAN("GET / HTTP/0.9\r\n\r\n"), AE_HS_BAD);
  assert_int_equal(RSCAN("GET / HTTP/1.10\r\n\r\n"), AE_HS_BAD);
  assert_int_equal(RSCAN("GET / HTTP/1\r\n\r\n"), AE_HS_BAD);
  assert_int_equal(RSCAN("GET / HTTPS/1.1\r\n\r\n"), AE_HS_BAD);
  assert_int_equal(RSCAN("G(T / HTTP/1.1\r\n\r\n"), AE_HS_BAD);          /* not a token */
  /* Field names are tokens in requests (RFC 9110 §5.1). */
  assert_int_equal(RSCAN("GET / HTTP/1.1\r\nX-A!#$%&'*+.^_`|~: v\r\n\r\n"), AE_HS_DONE);
  assert_int_equal(RSCAN("GET / HTTP/1.1\r\nX(A): v\r\n\r\n"), AE_HS_BAD);
  assert_int_equal(RSCAN("GET / HTTP/1.1\r\nX\"A: v\r\n\r\n"), AE_HS_BAD);
  assert_int_equal(RSCAN("GET / HTTP/1.1\r\n\xc3\xa9: v\r\n\r\n"), AE_HS_BAD);
  assert_int_equal(RSCAN("GET / HTTP/1.1\r\n@: v\r\n\r\n"), AE_HS_BAD);
  /* The minor digit is located for the 1.x -> 1.1 rewrite. */
  ae_hlimits lim = {32768, 8192, 8192, 100};
  ae_hscan h;
  ae_hscan_reset_req(&h, &lim);
  size_t u = 0;
  assert_int_equal(ae_hscan_feed(&h, "\r\nGET / HTTP/1.2\r\n\r\n", 22, &u), AE_HS_DONE);
  assert_int_equal(h.minor, 2);
  assert_int_equal(h.minor_at, 16);
  assert_int_equal(("\r\nGET / HTTP/1.2")[h.minor_at - 1], '2');
}

static void test_hscan_request_limits(void **state) {
  (void)state;
  const char *reason = NULL;
  ae_buf b = {0};
  ae_buf_adds(&b, "GET /");
  for (int i = 0; i < 8200; i++)
    ae_buf_add(&b, "a", 1);
  ae_buf_adds(&b, " HTTP/1.1\r\n\r\n");
  assert_int_equal(rscan(b.d, b.len, &reason), AE_HS_LONGLINE);
  assert_string_equal(reason, "uri_too_long");
  b.len = 0;
  ae_buf_adds(&b, "GET / HTTP/1.1\r\n");
  for (int i = 0; i < 20; i++) {
    ae_buf_adds(&b, "X-Long: ");
    for (int j = 0; j < 1014; j++)
      ae_buf_add(&b, "v", 1);
    ae_buf_adds(&b, "\r\n");
  }
  ae_buf_adds(&b, "\r\n");
  assert_int_equal(rscan(b.d, b.len, NULL), AE_HS_DONE); /* 20 KiB of 1 KiB lines */
  b.len = 0;
  ae_buf_adds(&b, "GET / HTTP/1.1\r\nX: ");
  for (int j = 0; j < 8190; j++)
    ae_buf_add(&b, "v", 1);
  ae_buf_adds(&b, "\r\n\r\n");
  assert_int_equal(rscan(b.d, b.len, &reason), AE_HS_TOOBIG); /* one line over 8 KiB */
  assert_string_equal(reason, "header_too_large");
  b.len = 0;
  ae_buf_adds(&b, "GET / HTTP/1.1\r\n");
  for (int i = 0; i < 101; i++)
    ae_buf_adds(&b, "X: v\r\n");
  ae_buf_adds(&b, "\r\n");
  assert_int_equal(rscan(b.d, b.len, &reason), AE_HS_TOOMANY);
  assert_string_equal(reason, "too_many_headers");
  ae_buf_free(&b);
}

/* Chunked body scanner: whole and byte-at-a-time agree; returns the code, *used and the reason. */
static int cscan(const char *s, size_t n, size_t *used, const char **reason) {
  ae_cscan a, b;
  ae_cscan_reset(&a, 1024, AE_CHUNK_EXT_MAX);
  ae_cscan_reset(&b, 1024, AE_CHUNK_EXT_MAX);
  size_t ua = 0, ub = 0, tot = 0;
  int ra = ae_cscan_feed(&a, s, n, &ua);
  int rb = AE_CS_MORE;
  for (size_t i = 0; i < n && rb == AE_CS_MORE; i++) {
    rb = ae_cscan_feed(&b, s + i, 1, &ub);
    tot += rb == AE_CS_MORE ? 1 : ub;
  }
  assert_int_equal(ra, rb);
  if (ra == AE_CS_DONE)
    assert_int_equal(ua, tot);
  if (used)
    *used = ua;
  if (reason)
    *reason = a.reason;
  return ra;
}
#define CSCAN(lit) cscan(lit, sizeof(lit) - 1, NULL, NULL)

static void test_cscan_framing(void **state) {
  (void)state;
  size_t used = 0;
  const char *reason = NULL;
  const char ok[] = "5\r\nhello\r\n0\r\n\r\nGET / HTTP/1.1\r\n";
  assert_int_equal(cscan(ok, sizeof(ok) - 1, &used, NULL), AE_CS_DONE);
  assert_int_equal(used, 15);                                      /* the next request is not ours */
  assert_int_equal(CSCAN("0005\r\nhello\r\n00\r\n\r\n"), AE_CS_DONE); /* leading zeros */
  assert_int_equal(CSCAN("A\r\n0123456789\r\n0\r\n\r\n"), AE_CS_DONE);
  assert_int_equal(CSCAN("0\r\nX-T: a\r\nY: \r\n\r\n"), AE_CS_DONE);     /* trailers */
  assert_int_equal(CSCAN("5\r\nhel"), AE_CS_MORE);
  /* The desync class: whatever follows chunk data must be exactly CRLF. */
  assert_int_equal(cscan("5\r\nhelloXX0\r\n\r\n", 16, NULL, &reason), AE_CS_BAD);
  assert_string_equal(reason, "chunk_framing");
  assert_int_equal(CSCAN("5\r\nhelloGET / HTTP/1.1\r\n\r\n0\r\n\r\n"), AE_CS_BAD);
  assert_int_equal(CSCAN("5\r\nhello\n0\r\n\r\n"), AE_CS_BAD);
  assert_int_equal(CSCAN("5\r\nhello\r0\r\n\r\n"), AE_CS_BAD);
  assert_int_equal(CSCAN("3\r\nhello\r\n0\r\n\r\n"), AE_CS_BAD);
  /* Size line. */
  assert_int_equal(CSCAN("\r\nhello\r\n"), AE_CS_BAD);
  assert_int_equal(CSCAN(" 5\r\nhello\r\n"), AE_CS_BAD);
  assert_int_equal(CSCAN("5 \r\nhello\r\n"), AE_CS_BAD);
  assert_int_equal(CSCAN("+5\r\nhello\r\n"), AE_CS_BAD);
  assert_int_equal(CSCAN("-5\r\nhello\r\n"), AE_CS_BAD);
  assert_int_equal(CSCAN("0x5\r\nhello\r\n"), AE_CS_BAD);
  assert_int_equal(CSCAN("5\nhello\r\n"), AE_CS_BAD);
  assert_int_equal(CSCAN("5\rhello\r\n"), AE_CS_BAD);
  assert_int_equal(CSCAN("fffffffffffffff\r\n"), AE_CS_MORE);        /* 15 digits: large but valid */
  assert_int_equal(CSCAN("1000000000000000\r\n"), AE_CS_BAD);        /* 16 significant digits */
  assert_int_equal(CSCAN("10000000000000005\r\n"), AE_CS_BAD);       /* wraps 64 bits */
  char zeros[80];
  memset(zeros, '0', sizeof(zeros));
  memcpy(zeros + 70, "5\r\n", 3);
  assert_int_equal(cscan(zeros, 73, NULL, NULL), AE_CS_BAD);          /* over 64 digits */
  /* Last chunk and trailer section. */
  assert_int_equal(CSCAN("0\r\n\n"), AE_CS_BAD);
  assert_int_equal(CSCAN("0\n\r\n"), AE_CS_BAD);
  assert_int_equal(CSCAN("0\r\n\rX"), AE_CS_BAD);
  assert_int_equal(CSCAN("0\r\nX: a\r\n b\r\n\r\n"), AE_CS_BAD);     /* obs-fold */
  assert_int_equal(CSCAN("0\r\nX : a\r\n\r\n"), AE_CS_BAD);
  assert_int_equal(CSCAN("0\r\nX\r\n\r\n"), AE_CS_BAD);
  assert_int_equal(CSCAN("0\r\nX: a\rb\r\n\r\n"), AE_CS_BAD);
  assert_int_equal(CSCAN("0\r\nX: a\nb\r\n\r\n"), AE_CS_BAD);
  char big[1200];
  memcpy(big, "0\r\nX: ", 6);
  memset(big + 6, 'a', sizeof(big) - 6);
  assert_int_equal(cscan(big, sizeof(big), NULL, &reason), AE_CS_TOOBIG);
  assert_string_equal(reason, "header_too_large");
}

static void test_cscan_extensions(void **state) {
  (void)state;
  const char *reason = NULL;
  assert_int_equal(CSCAN("5;a\r\nhello\r\n0\r\n\r\n"), AE_CS_DONE);
  assert_int_equal(CSCAN("5;a=b;c=\"d e\\\"f\"\r\nhello\r\n0;z=1\r\n\r\n"), AE_CS_DONE);
  assert_int_equal(CSCAN("5 ; a = b ;c\r\nhello\r\n0\r\n\r\n"), AE_CS_DONE); /* BWS */
  assert_int_equal(CSCAN("5;\r\nhello\r\n"), AE_CS_BAD);
  assert_int_equal(CSCAN("5;a=\r\nhello\r\n"), AE_CS_BAD);
  assert_int_equal(CSCAN("5;a \r\nhello\r\n"), AE_CS_BAD);
  assert_int_equal(CSCAN("5;a=\"x\r\nhello\r\n"), AE_CS_BAD);        /* unterminated quote */
  assert_int_equal(CSCAN("5;a=\"\x01\"\r\nhello\r\n"), AE_CS_BAD);
  assert_int_equal(CSCAN("5;a=b c\r\nhello\r\n"), AE_CS_BAD);
  assert_int_equal(CSCAN("5;a\nhello\r\n"), AE_CS_BAD);
  assert_int_equal(CSCAN("5;(\r\nhello\r\n"), AE_CS_BAD);
  /* Bounded: one extension, or the total over the body, above 4 KiB. */
  ae_buf b = {0};
  ae_buf_adds(&b, "5;x=");
  for (int i = 0; i < 4200; i++)
    ae_buf_add(&b, "a", 1);
  ae_buf_adds(&b, "\r\nhello\r\n0\r\n\r\n");
  assert_int_equal(cscan(b.d, b.len, NULL, &reason), AE_CS_BAD);
  assert_string_equal(reason, "chunk_ext");
  b.len = 0;
  for (int i = 0; i < 300; i++)
    ae_buf_adds(&b, "1;ext=0123456789\r\nx\r\n");
  ae_buf_adds(&b, "0\r\n\r\n");
  assert_int_equal(cscan(b.d, b.len, NULL, &reason), AE_CS_BAD);
  assert_string_equal(reason, "chunk_ext");
  b.len = 0;
  for (int i = 0; i < 200; i++)
    ae_buf_adds(&b, "1;ext=0123456789\r\nx\r\n");
  ae_buf_adds(&b, "0\r\n\r\n");
  assert_int_equal(cscan(b.d, b.len, NULL, NULL), AE_CS_DONE);      /* 3000 bytes: within */
  ae_buf_free(&b);
}

/* Parses a request head with llhttp into m (the way the proxy does). */
typedef struct {
  ae_hmsg m;
  int done;
} parsed;

static int p_url(llhttp_t *p, const char *at, size_t n) {
  ae_hmsg_on_url(&((parsed *)p->data)->m, at, n);
  return 0;
}
static int p_field(llhttp_t *p, const char *at, size_t n) {
  ae_hmsg_on_field(&((parsed *)p->data)->m, at, n);
  return 0;
}
static int p_value(llhttp_t *p, const char *at, size_t n) {
  ae_hmsg_on_value(&((parsed *)p->data)->m, at, n);
  return 0;
}
static int p_hc(llhttp_t *p) {
  ((parsed *)p->data)->done = 1;
  return HPE_PAUSED;
}

static const llhttp_settings_t psettings = {
    .on_url = p_url, .on_header_field = p_field, .on_header_value = p_value, .on_headers_complete = p_hc};

static int analyze(const char *head, parsed *pd, ae_reqinfo *ri, const char **why) {
  memset(pd, 0, sizeof(*pd));
  llhttp_t p;
  llhttp_init(&p, HTTP_REQUEST, &psettings);
  p.data = pd;
  llhttp_errno_t e = llhttp_execute(&p, head, strlen(head));
  if (e != HPE_PAUSED || !pd->done)
    return -1;
  return ae_req_analyze(&pd->m, p.http_major, p.http_minor, p.method == HTTP_GET, ri, why);
}

static void test_req_analyze(void **state) {
  (void)state;
  parsed pd;
  ae_reqinfo ri;
  const char *why;
  assert_int_equal(analyze("GET /x HTTP/1.1\r\nHost: a.test\r\n\r\n", &pd, &ri, &why), 0);
  assert_int_equal(ri.host_len, 6);
  assert_memory_equal(ri.host, "a.test", 6);
  assert_int_equal(ri.target_len, 2);
  ae_hmsg_free(&pd.m);

  assert_int_equal(analyze("GET /x HTTP/1.1\r\n\r\n", &pd, &ri, &why), 400);  /* no Host */
  ae_hmsg_free(&pd.m);
  assert_int_equal(analyze("GET /x HTTP/1.0\r\n\r\n", &pd, &ri, &why), 0);    /* 1.0 may omit it */
  assert_null(ri.host);
  ae_hmsg_free(&pd.m);
  assert_int_equal(analyze("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", &pd, &ri, &why), 400);
  ae_hmsg_free(&pd.m);
  assert_int_equal(analyze("GET / HTTP/1.1\r\nHost: a b\r\n\r\n", &pd, &ri, &why), 400);
  ae_hmsg_free(&pd.m);

  assert_int_equal(analyze("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n", &pd, &ri, &why), 0);
  assert_true(ri.chunked);
  ae_hmsg_free(&pd.m);
  assert_int_equal(analyze("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", &pd, &ri, &why), 400);
  ae_hmsg_free(&pd.m);
  assert_int_equal(analyze("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", &pd, &ri, &why),
                   501);
  ae_hmsg_free(&pd.m);
  assert_int_equal(analyze("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", &pd, &ri, &why), 400);
  ae_hmsg_free(&pd.m);
  assert_int_equal(analyze("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n", &pd, &ri, &why), 0);
  assert_true(ri.has_cl);
  assert_int_equal(ri.cl, 5);
  ae_hmsg_free(&pd.m);

  /* Absolute-form must agree with Host and is forwarded in origin-form. */
  assert_int_equal(analyze("GET http://a.test/p?q HTTP/1.1\r\nHost: a.test\r\n\r\n", &pd, &ri, &why), 0);
  assert_int_equal(ri.target_len, 4);
  assert_memory_equal(ri.target, "/p?q", 4);
  ae_hmsg_free(&pd.m);
  assert_int_equal(analyze("GET http://b.test/p HTTP/1.1\r\nHost: a.test\r\n\r\n", &pd, &ri, &why), 400);
  ae_hmsg_free(&pd.m);

  /* A complete RFC 6455 opening handshake is an upgrade. */
#define WS_OK_FIELDS "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
  assert_int_equal(analyze("GET /ws HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n"
                           WS_OK_FIELDS "\r\n", &pd, &ri, &why),
                   0);
  assert_true(ri.websocket);
  ae_hmsg_free(&pd.m);
  /* Other Upgrade values are not honoured: the request stays plain HTTP (Upgrade is hop-by-hop). */
  assert_int_equal(analyze("GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n", &pd, &ri, &why), 0);
  assert_false(ri.websocket);
  ae_hmsg_free(&pd.m);
}

/* Row 6: every incomplete WebSocket handshake is refused (400), never forwarded half-upgraded. */
static void test_req_websocket_incomplete(void **state) {
  (void)state;
  static const struct {
    const char *name, *head;
  } bad[] = {
      {"no Connection: upgrade", "GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n" WS_OK_FIELDS "\r\n"},
      {"POST", "POST /ws HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: websocket\r\n" WS_OK_FIELDS "\r\n"},
      {"HTTP/1.0", "GET /ws HTTP/1.0\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: websocket\r\n" WS_OK_FIELDS "\r\n"},
      {"no key", "GET /ws HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: websocket\r\n"
                 "Sec-WebSocket-Version: 13\r\n\r\n"},
      {"short key", "GET /ws HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: websocket\r\n"
                    "Sec-WebSocket-Key: k\r\nSec-WebSocket-Version: 13\r\n\r\n"},
      {"key of 17 bytes", "GET /ws HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: websocket\r\n"
                          "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZXg=\r\nSec-WebSocket-Version: 13\r\n\r\n"},
      {"key not base64", "GET /ws HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: websocket\r\n"
                         "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25j*Q==\r\nSec-WebSocket-Version: 13\r\n\r\n"},
      {"two keys", "GET /ws HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: websocket\r\n" WS_OK_FIELDS
                   "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"},
      {"no version", "GET /ws HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: websocket\r\n"
                     "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"},
      {"version 8", "GET /ws HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: websocket\r\n"
                    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n"},
      {"body", "GET /ws HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: websocket\r\nContent-Length: 3\r\n"
               WS_OK_FIELDS "\r\n"},
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    parsed pd;
    ae_reqinfo ri;
    const char *why = NULL;
    int st = analyze(bad[i].head, &pd, &ri, &why);
    if (st != 400 || ri.websocket || !ri.reason || strcmp(ri.reason, "websocket") != 0)
      fail_msg("%s: status %d, reason %s", bad[i].name, st, ri.reason ? ri.reason : "(none)");
    ae_hmsg_free(&pd.m);
  }
}

static void test_host_normalize(void **state) {
  (void)state;
  char out[256];
  assert_int_equal(ae_host_normalize("Example.COM:8443", 16, out, sizeof(out)), 0);
  assert_string_equal(out, "example.com");
  assert_int_equal(ae_host_normalize("a.test.", 7, out, sizeof(out)), 0);
  assert_string_equal(out, "a.test");
  assert_int_equal(ae_host_normalize("[::1]:443", 9, out, sizeof(out)), 0);
  assert_string_equal(out, "::1");
  assert_int_equal(ae_host_normalize("a.test:x", 8, out, sizeof(out)), AE_EINVAL);
  assert_int_equal(ae_host_normalize("a/b", 3, out, sizeof(out)), AE_EINVAL);
  assert_int_equal(ae_host_normalize("user@a", 6, out, sizeof(out)), AE_EINVAL);
  assert_int_equal(ae_host_normalize("", 0, out, sizeof(out)), AE_EINVAL);
  assert_int_equal(ae_host_normalize("[::1", 4, out, sizeof(out)), AE_EINVAL);
}

static void test_ip_in_list(void **state) {
  (void)state;
  char *list[] = {"10.0.0.0/8", "192.168.1.7", "fd00::/8"};
  assert_true(ae_ip_in_list("10.1.2.3", list, 3));
  assert_true(ae_ip_in_list("192.168.1.7", list, 3));
  assert_false(ae_ip_in_list("192.168.1.8", list, 3));
  assert_true(ae_ip_in_list("fd12::1", list, 3));
  assert_false(ae_ip_in_list("fe80::1", list, 3));
  assert_true(ae_ip_in_list("::ffff:10.9.9.9", list, 3));
  assert_false(ae_ip_in_list("11.0.0.1", list, 3));
  assert_false(ae_ip_in_list("garbage", list, 3));
  assert_false(ae_ip_in_list("10.1.2.3", list, 0));
}

static int contains(const ae_buf *b, const char *s) {
  size_t n = strlen(s);
  if (b->len < n)
    return 0;
  for (size_t i = 0; i + n <= b->len; i++)
    if (memcmp(b->d + i, s, n) == 0)
      return 1;
  return 0;
}

static void test_upstream_head(void **state) {
  (void)state;
  parsed pd;
  ae_reqinfo ri;
  const char *why;
  const char *req = "POST /p HTTP/1.1\r\nHost: a.test\r\nConnection: keep-alive, X-Private\r\nX-Private: 1\r\n"
                    "Keep-Alive: 5\r\nTE: trailers\r\nTrailer: X\r\nProxy-Authorization: secret\r\n"
                    "Upgrade: h2c\r\nX-Forwarded-For: 6.6.6.6\r\nX-Forwarded-Proto: http\r\n"
                    "X-Forwarded-Host: evil\r\nForwarded: for=6.6.6.6\r\nX-Kept:  v  \r\n"
                    "Transfer-Encoding: chunked\r\n\r\n";
  assert_int_equal(analyze(req, &pd, &ri, &why), 0);
  ae_fwd fw = {.method = "POST", .minor = 1, .client_ip = "10.1.2.3", .trusted = 0, .https = 1,
               .host = "a.test", .host_len = 6, .body = 2};
  ae_buf out = {0};
  ae_build_upstream_head(&out, &pd.m, &ri, &fw);
  ae_buf_add(&out, "", 1);
  assert_true(contains(&out, "POST /p HTTP/1.1\r\nHost: a.test\r\n"));
  assert_true(contains(&out, "\r\nX-Kept: v\r\n"));
  assert_true(contains(&out, "\r\nX-Forwarded-For: 10.1.2.3\r\n"));
  assert_true(contains(&out, "\r\nX-Forwarded-Proto: https\r\n"));
  assert_true(contains(&out, "\r\nX-Forwarded-Host: a.test\r\n"));
  assert_true(contains(&out, "\r\nVia: 1.1 acmedge\r\n"));
  assert_true(contains(&out, "\r\nTransfer-Encoding: chunked\r\n\r\n"));
  assert_false(contains(&out, "X-Private"));
  assert_false(contains(&out, "Keep-Alive"));
  assert_false(contains(&out, "TE:"));
  assert_false(contains(&out, "Trailer"));
  assert_false(contains(&out, "Proxy-"));
  assert_false(contains(&out, "Upgrade"));
  assert_false(contains(&out, "6.6.6.6"));
  assert_false(contains(&out, "evil"));
  assert_false(contains(&out, "Connection"));

  fw.trusted = 1;
  out.len = 0;
  ae_build_upstream_head(&out, &pd.m, &ri, &fw);
  ae_buf_add(&out, "", 1);
  assert_true(contains(&out, "\r\nX-Forwarded-For: 6.6.6.6, 10.1.2.3\r\n"));
  assert_true(contains(&out, "\r\nForwarded: for=6.6.6.6\r\n"));
  ae_buf_free(&out);
  ae_hmsg_free(&pd.m);
}

static void test_client_head_and_error(void **state) {
  (void)state;
  ae_hmsg m;
  memset(&m, 0, sizeof(m));
  ae_hmsg_on_url(&m, "Fine", 4);
  ae_hmsg_on_field(&m, "Connection", 10);
  ae_hmsg_on_value(&m, "X-Up", 4);
  ae_hmsg_on_field(&m, "X-Up", 4);
  ae_hmsg_on_value(&m, "1", 1);
  ae_hmsg_on_field(&m, "Content-Length", 14);
  ae_hmsg_on_value(&m, "99", 2);
  ae_hmsg_on_field(&m, "Set-Cookie", 10);
  ae_hmsg_on_value(&m, "a=b", 3);
  ae_buf out = {0};
  ae_build_client_head(&out, &m, 200, 1, AE_FRAME_CHUNKED, 0, 1, 0);
  ae_buf_add(&out, "", 1);
  assert_true(contains(&out, "HTTP/1.1 200 Fine\r\n"));
  assert_true(contains(&out, "Set-Cookie: a=b\r\n"));
  assert_true(contains(&out, "Transfer-Encoding: chunked\r\n"));
  assert_false(contains(&out, "X-Up"));
  assert_false(contains(&out, "Content-Length"));
  assert_false(contains(&out, "Connection"));
  out.len = 0;
  ae_build_client_head(&out, &m, 200, 0, AE_FRAME_CL, 12, 1, 0);
  ae_buf_add(&out, "", 1);
  assert_true(contains(&out, "Content-Length: 12\r\nConnection: keep-alive\r\n\r\n"));
  out.len = 0;
  size_t bl = ae_build_error(&out, 502, 0, 1);
  ae_buf_add(&out, "", 1);
  assert_true(contains(&out, "HTTP/1.1 502 Bad Gateway\r\n"));
  assert_true(contains(&out, "Connection: close\r\n"));
  assert_true(bl > 0 && bl < 64);
  ae_buf_free(&out);
  ae_hmsg_free(&m);
}

static void test_buf_helpers(void **state) {
  (void)state;
  ae_buf b = {0};
  ae_buf_addhex(&b, 0);
  ae_buf_addhex(&b, 255);
  ae_buf_addu(&b, 0);
  ae_buf_addu(&b, 1234567890123ULL);
  ae_buf_addjson(&b, "a\"\\\n\x01", 5);
  ae_buf_add(&b, "", 1);
  assert_string_equal(b.d, "0ff01234567890123\"a\\\"\\\\\\u000a\\u0001\"");
  ae_buf_consume(&b, 3);
  assert_int_equal(b.d[0], '0');
  ae_buf_shrink(&b, 0);
  assert_null(b.d);
  ae_buf_free(&b);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_hscan_ok), cmocka_unit_test(test_req_websocket_incomplete),
      cmocka_unit_test(test_hscan_request_line), cmocka_unit_test(test_hscan_request_limits),
      cmocka_unit_test(test_cscan_framing), cmocka_unit_test(test_cscan_extensions),       cmocka_unit_test(test_hscan_bad),
      cmocka_unit_test(test_hscan_limits),   cmocka_unit_test(test_req_analyze),
      cmocka_unit_test(test_host_normalize), cmocka_unit_test(test_ip_in_list),
      cmocka_unit_test(test_upstream_head),  cmocka_unit_test(test_client_head_and_error),
      cmocka_unit_test(test_buf_helpers),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
