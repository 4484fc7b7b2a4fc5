/* Unit tests for the minted-leaf cache: hits, case folding, LRU bound, freshness, drop. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "acmedge/ca.h"

static ae_cert *make_cert(const char *name) {
  char *cp = NULL, *kp = NULL;
  ae_err err = {0};
  const char *names[1] = {name};
  assert_int_equal(ae_cert_generate_selfsigned(name, names, 1, 1, &cp, &kp, &err), 0);
  ae_cert *c = NULL;
  assert_int_equal(ae_cert_from_pem(cp, strlen(cp), kp, strlen(kp), &c, &err), 0);
  free(cp);
  free(kp);
  return c;
}

static void test_hit_same_object_and_case(void **state) {
  (void)state;
  ae_leafcache *lc = NULL;
  assert_int_equal(ae_leafcache_new(0, &lc), 0);
  int64_t now = (int64_t)time(NULL);
  ae_cert *c = make_cert("a.int.test");
  assert_null(ae_leafcache_get(lc, "a.int.test", now));
  ae_leafcache_put(lc, "A.Int.Test", c);
  ae_cert *g1 = ae_leafcache_get(lc, "a.int.test", now), *g2 = ae_leafcache_get(lc, "A.INT.TEST", now);
  assert_ptr_equal(g1, c);
  assert_ptr_equal(g2, c);
  assert_int_equal(ae_leafcache_count(lc), 1);
  uint64_t h, m, e;
  ae_leafcache_stats(lc, &h, &m, &e);
  assert_int_equal(h, 2);
  assert_int_equal(m, 1);
  assert_int_equal(e, 0);
  ae_cert_unref(g1);
  ae_cert_unref(g2);
  ae_leafcache_drop(lc, "A.INT.test");
  assert_null(ae_leafcache_get(lc, "a.int.test", now));
  assert_int_equal(ae_leafcache_count(lc), 0);
  ae_cert_unref(c);
  ae_leafcache_free(lc);
}

static void test_lru_bound(void **state) {
  (void)state;
  ae_leafcache *lc = NULL;
  assert_int_equal(ae_leafcache_new(3, &lc), 0);
  int64_t now = (int64_t)time(NULL);
  ae_cert *c = make_cert("x.test");
  ae_leafcache_put(lc, "n1.test", c);
  ae_leafcache_put(lc, "n2.test", c);
  ae_leafcache_put(lc, "n3.test", c);
  /* n1 used: n2 is now the least recently used and goes first. */
  ae_cert_unref(ae_leafcache_get(lc, "n1.test", now));
  ae_leafcache_put(lc, "n4.test", c);
  assert_int_equal(ae_leafcache_count(lc), 3);
  ae_cert *g = ae_leafcache_get(lc, "n2.test", now);
  assert_null(g);
  for (int i = 0; i < 100; i++) {
    char n[32];
    snprintf(n, sizeof(n), "m%d.test", i);
    ae_leafcache_put(lc, n, c);
    assert_true(ae_leafcache_count(lc) <= 3);
  }
  uint64_t h, m, e;
  ae_leafcache_stats(lc, &h, &m, &e);
  assert_int_equal(e, 101);
  ae_cert_unref(c);
  ae_leafcache_free(lc);
}

/* Thousands of names (the table grows many times): every one found under any case, drops and
 * evictions leave exactly the others, and the LRU order survives the growth. */
static void test_many_names(void **state) {
  (void)state;
  enum { N = 5000 };
  ae_leafcache *lc = NULL;
  assert_int_equal(ae_leafcache_new(N, &lc), 0);
  int64_t now = (int64_t)time(NULL);
  ae_cert *c = make_cert("x.test");
  char n[64];
  for (int i = 0; i < N; i++) {
    snprintf(n, sizeof(n), "Name%d.Many.Test", i);
    ae_leafcache_put(lc, n, c);
  }
  assert_int_equal(ae_leafcache_count(lc), N);
  for (int i = 0; i < N; i += 2) {
    snprintf(n, sizeof(n), "name%d.many.test", i);
    ae_leafcache_drop(lc, n);
  }
  assert_int_equal(ae_leafcache_count(lc), N / 2);
  for (int i = 0; i < N; i++) {
    snprintf(n, sizeof(n), "NAME%d.MANY.TEST", i);
    ae_cert *g = ae_leafcache_get(lc, n, now);
    if (i % 2)
      assert_ptr_equal(g, c);
    else
      assert_null(g);
    ae_cert_unref(g);
  }
  /* Full again: the next put evicts name1 (least recently used after the pass above). */
  for (int i = 0; i < N / 2; i++) {
    snprintf(n, sizeof(n), "more%d.many.test", i);
    ae_leafcache_put(lc, n, c);
  }
  assert_int_equal(ae_leafcache_count(lc), N);
  ae_leafcache_put(lc, "last.many.test", c);
  assert_int_equal(ae_leafcache_count(lc), N);
  assert_null(ae_leafcache_get(lc, "name1.many.test", now));
  ae_cert *g = ae_leafcache_get(lc, "name3.many.test", now);
  assert_ptr_equal(g, c);
  ae_cert_unref(g);
  ae_cert_unref(c);
  ae_leafcache_free(lc);
}

static void test_never_stale(void **state) {
  (void)state;
  ae_leafcache *lc = NULL;
  assert_int_equal(ae_leafcache_new(10, &lc), 0);
  ae_cert *c = make_cert("e.test");
  int64_t nb = ae_cert_not_before(c), na = ae_cert_not_after(c);
  ae_leafcache_put(lc, "e.test", c);
  ae_cert *g = ae_leafcache_get(lc, "e.test", nb + (na - nb) / 2);
  assert_ptr_equal(g, c);
  ae_cert_unref(g);
  /* Past two thirds of the life, and after expiry: never returned, and the entry is gone. */
  assert_null(ae_leafcache_get(lc, "e.test", nb + (na - nb) * 2 / 3 + 1));
  assert_int_equal(ae_leafcache_count(lc), 0);
  ae_leafcache_put(lc, "e.test", c);
  assert_null(ae_leafcache_get(lc, "e.test", na + 1));
  ae_cert_unref(c);
  ae_leafcache_free(lc);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_hit_same_object_and_case),
      cmocka_unit_test(test_lru_bound),
      cmocka_unit_test(test_many_names),
      cmocka_unit_test(test_never_stale),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
