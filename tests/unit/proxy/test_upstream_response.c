/* Unit tests for the upstream response parser shared by both client protocols
 * (src/proxy/upstream_response.c): heads, 1xx, chunk boundaries and trailers, read-until-close
 * bodies, bytes after the response, and malformed heads. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "../../../src/proxy/upstream_response.h"

typedef struct rec {
  int heads[8];
  int nheads;
  char body[256];
  size_t blen;
  int chunks, chunk_ends;
  int completes, keep;
} rec;

static int on_head(void *ud, llhttp_t *p) {
  rec *r = ud;
  if (r->nheads < 8)
    r->heads[r->nheads++] = p->status_code;
  return 0;
}

static void on_body(void *ud, const char *at, size_t n) {
  rec *r = ud;
  assert_true(r->blen + n < sizeof(r->body));
  memcpy(r->body + r->blen, at, n);
  r->blen += n;
}

static void on_chunk_size(void *ud, uint64_t size) {
  (void)size;
  ((rec *)ud)->chunks++;
}

static void on_chunk_end(void *ud) { ((rec *)ud)->chunk_ends++; }

static void on_complete(void *ud, int keep_alive) {
  rec *r = ud;
  r->completes++;
  r->keep = keep_alive;
}

static const ae_uresp_ops ops = {on_head, on_body, on_chunk_size, on_chunk_end, on_complete};

/* Feeds s one byte at a time (every split point must work); returns the last result. */
static int feed_bytes(ae_uresp *u, const char *s, size_t n, size_t *total) {
  int r = AE_UR_MORE;
  *total = 0;
  for (size_t i = 0; i < n && r == AE_UR_MORE; i++) {
    size_t used = 0;
    const char *why = NULL;
    r = ae_uresp_feed(u, s + i, 1, &used, &why);
    *total += used;
  }
  return r;
}

static void test_interim_chunked_trailers(void **state) {
  (void)state;
  ae_config cfg;
  memset(&cfg, 0, sizeof(cfg));
  rec r;
  memset(&r, 0, sizeof(r));
  ae_uresp u;
  memset(&u, 0, sizeof(u));
  ae_uresp_init(&u, &cfg, 1, &ops, &r);
  const char msg[] = "HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
                     "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-A: 1\r\n\r\n"
                     "5\r\nhello\r\n1\r\n!\r\n0\r\nX-Sum: 9\r\n\r\nEXTRA";
  size_t used = 0;
  assert_int_equal(feed_bytes(&u, msg, sizeof(msg) - 1, &used), AE_UR_DONE);
  assert_int_equal(used, sizeof(msg) - 1 - 5);
  assert_int_equal(r.nheads, 2);
  assert_int_equal(r.heads[0], 103);
  assert_int_equal(r.heads[1], 200);
  assert_int_equal(r.blen, 6);
  assert_memory_equal(r.body, "hello!", 6);
  assert_int_equal(r.chunks, 2);
  assert_int_equal(r.chunk_ends, 2);
  assert_int_equal(r.completes, 1);
  assert_true(r.keep);
  assert_int_equal(ae_hmsg_find(&u.head, "x-a", 0), 1);
  assert_int_equal(u.trail.nf, 1);
  assert_int_equal(ae_hmsg_find(&u.trail, "x-sum", 0), 0);
  /* Trailers not kept: the head stays as it was and trail stays empty. */
  memset(&r, 0, sizeof(r));
  ae_uresp_init(&u, &cfg, 0, &ops, &r);
  const char msg2[] = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX-Sum: 9\r\n\r\n";
  size_t used2 = 0;
  const char *why = NULL;
  assert_int_equal(ae_uresp_feed(&u, msg2, sizeof(msg2) - 1, &used2, &why), AE_UR_DONE);
  assert_int_equal(u.head.nf, 1);
  assert_int_equal(u.trail.nf, 0);
  ae_uresp_free(&u);
}

static void test_close_delimited_and_bad(void **state) {
  (void)state;
  ae_config cfg;
  memset(&cfg, 0, sizeof(cfg));
  rec r;
  memset(&r, 0, sizeof(r));
  ae_uresp u;
  memset(&u, 0, sizeof(u));
  ae_uresp_init(&u, &cfg, 0, &ops, &r);
  const char msg[] = "HTTP/1.1 200 OK\r\n\r\nuntil close";
  size_t used = 0;
  const char *why = NULL;
  assert_int_equal(ae_uresp_feed(&u, msg, sizeof(msg) - 1, &used, &why), AE_UR_MORE);
  assert_int_equal(used, sizeof(msg) - 1);
  assert_int_equal(r.completes, 0);
  assert_int_equal(ae_uresp_eof(&u), 1);
  assert_int_equal(r.completes, 1);
  assert_false(r.keep);
  assert_int_equal(r.blen, 11);
  /* A field line folded onto the next (obs-fold) is refused by the raw scanner. */
  ae_uresp_init(&u, &cfg, 0, &ops, &r);
  const char bad[] = "HTTP/1.1 200 OK\r\nX-A: 1\r\n folded\r\nContent-Length: 0\r\n\r\n";
  why = NULL;
  assert_int_equal(ae_uresp_feed(&u, bad, sizeof(bad) - 1, &used, &why), AE_UR_BAD);
  assert_non_null(why);
  /* Two conflicting lengths are refused by llhttp. */
  ae_uresp_init(&u, &cfg, 0, &ops, &r);
  const char bad2[] = "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab";
  why = NULL;
  assert_int_equal(ae_uresp_feed(&u, bad2, sizeof(bad2) - 1, &used, &why), AE_UR_BAD);
  assert_non_null(why);
  ae_uresp_free(&u);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_interim_chunked_trailers),
      cmocka_unit_test(test_close_delimited_and_bad),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
