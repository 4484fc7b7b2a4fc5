/* Staple cache: read-through, singleflight, backoff, freshness and the generation race. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "acmedge/certstore.h"
#include "acmedge/ocsp.h"
#include "certstore_test_util.h"

typedef struct needs {
  atomic_int calls;
  uint64_t last_gen;
  ae_cert *last_cert;
  pthread_mutex_t mu;
} needs;

static void on_need(void *ud, ae_cert *cert, uint64_t gen) {
  needs *n = ud;
  pthread_mutex_lock(&n->mu);
  atomic_fetch_add(&n->calls, 1);
  n->last_gen = gen;
  ae_cert_unref(n->last_cert);
  n->last_cert = cert;
  pthread_mutex_unlock(&n->mu);
}

static ae_cert *make_cert_plain(const char *cn) {
  char *cp = NULL, *kp = NULL;
  ae_err err = {0};
  ae_cert *c = NULL;
  assert_int_equal(ae_cert_generate_selfsigned(cn, NULL, 0, 30, &cp, &kp, &err), 0);
  assert_int_equal(ae_cert_from_pem(cp, strlen(cp), kp, strlen(kp), &c, &err), 0);
  free(cp);
  free(kp);
  return c;
}

/* The cache only takes leaves that name a responder, so the fixtures carry an AIA OCSP URI. */
static ae_cert *make_cert(const char *cn) {
  char *cp = NULL, *kp = NULL;
  ae_err err = {0};
  ae_cert *c = NULL;
  assert_int_equal(ae_test_make_rsa_cert_ocsp(cn, cn, 2048, "http://127.0.0.1:9/ocsp", &cp, &kp), 0);
  assert_int_equal(ae_cert_from_pem(cp, strlen(cp), kp, strlen(kp), &c, &err), 0);
  assert_true(ae_cert_has_ocsp_url(c));
  free(cp);
  free(kp);
  return c;
}

static ae_staple *make_staple(int64_t this_update, int64_t next_update) {
  static const unsigned char der[] = {0x30, 0x03, 0x0a, 0x01, 0x00};
  ae_staple *s = NULL;
  assert_int_equal(ae_staple_new(der, sizeof(der), this_update, next_update, AE_OCSP_GOOD, &s), 0);
  return s;
}

typedef struct fx {
  needs n;
  ae_ocsp_cache *c;
  ae_cert *cert;
} fx;

static int setup(void **state) {
  fx *f = calloc(1, sizeof(*f));
  pthread_mutex_init(&f->n.mu, NULL);
  assert_int_equal(ae_ocsp_cache_new(on_need, &f->n, &f->c), 0);
  f->cert = make_cert("a.example.com");
  *state = f;
  return 0;
}

static int teardown(void **state) {
  fx *f = *state;
  ae_ocsp_cache_free(f->c);
  ae_cert_unref(f->cert);
  ae_cert_unref(f->n.last_cert);
  pthread_mutex_destroy(&f->n.mu);
  free(f);
  return 0;
}

static void test_miss_asks_once(void **state) {
  fx *f = *state;
  assert_null(ae_ocsp_cache_get(f->c, f->cert, 1000));
  assert_int_equal(atomic_load(&f->n.calls), 1);
  assert_ptr_equal(f->n.last_cert, f->cert);
  /* In flight: later handshakes neither wait nor ask again. */
  for (int i = 0; i < 10; i++)
    assert_null(ae_ocsp_cache_get(f->c, f->cert, 1000 + i));
  assert_int_equal(atomic_load(&f->n.calls), 1);
  ae_ocsp_info info;
  assert_int_equal(ae_ocsp_cache_info(f->c, f->cert, 1000, &info), 0);
  assert_string_equal(info.state, "pending");
}

typedef struct th_arg {
  fx *f;
  int hits;
} th_arg;

static void *hammer(void *p) {
  th_arg *a = p;
  for (int i = 0; i < 2000; i++) {
    ae_staple *s = ae_ocsp_cache_get(a->f->c, a->f->cert, 1000);
    if (s)
      a->hits++;
    ae_staple_unref(s);
  }
  return NULL;
}

static void test_concurrent_misses_one_fetch(void **state) {
  fx *f = *state;
  pthread_t th[8];
  th_arg args[8];
  for (int i = 0; i < 8; i++) {
    args[i] = (th_arg){f, 0};
    assert_int_equal(pthread_create(&th[i], NULL, hammer, &args[i]), 0);
  }
  for (int i = 0; i < 8; i++)
    pthread_join(th[i], NULL);
  assert_int_equal(atomic_load(&f->n.calls), 1);
  for (int i = 0; i < 8; i++)
    assert_int_equal(args[i].hits, 0);
}

static void test_good_served_until_next_update(void **state) {
  fx *f = *state;
  assert_null(ae_ocsp_cache_get(f->c, f->cert, 1000));
  ae_staple *st = make_staple(1000, 1200); /* refresh at 1100 */
  assert_int_equal(ae_ocsp_cache_complete(f->c, f->cert, f->n.last_gen, AE_OCSP_FETCH_GOOD, st, NULL, 1001), 0);
  ae_staple_unref(st);

  ae_staple *got = ae_ocsp_cache_get(f->c, f->cert, 1050);
  assert_non_null(got);
  ae_staple_unref(got);
  assert_int_equal(atomic_load(&f->n.calls), 1); /* fresh: no refresh before half validity */
  got = ae_ocsp_cache_get(f->c, f->cert, 1099);
  ae_staple_unref(got);
  assert_int_equal(atomic_load(&f->n.calls), 1);
  ae_ocsp_info info;
  ae_ocsp_cache_info(f->c, f->cert, 1099, &info);
  assert_string_equal(info.state, "good");

  /* Half validity: one background refresh, the old staple still goes out meanwhile. */
  got = ae_ocsp_cache_get(f->c, f->cert, 1100);
  assert_non_null(got);
  ae_staple_unref(got);
  assert_int_equal(atomic_load(&f->n.calls), 2);
  got = ae_ocsp_cache_get(f->c, f->cert, 1150);
  assert_non_null(got);
  ae_staple_unref(got);
  assert_int_equal(atomic_load(&f->n.calls), 2);

  /* Never served at or past nextUpdate. */
  assert_null(ae_ocsp_cache_get(f->c, f->cert, 1200));
  assert_null(ae_ocsp_cache_get(f->c, f->cert, 5000));
}

static void test_failure_keeps_previous_and_backs_off(void **state) {
  fx *f = *state;
  assert_null(ae_ocsp_cache_get(f->c, f->cert, 1000));
  ae_staple *st = make_staple(1000, 2000);
  ae_ocsp_cache_complete(f->c, f->cert, f->n.last_gen, AE_OCSP_FETCH_GOOD, st, NULL, 1000);
  ae_staple_unref(st);
  ae_staple *got = ae_ocsp_cache_get(f->c, f->cert, 1500); /* refresh starts */
  assert_int_equal(atomic_load(&f->n.calls), 2);
  ae_staple_unref(got);
  assert_int_equal(
      ae_ocsp_cache_complete(f->c, f->cert, f->n.last_gen, AE_OCSP_FETCH_FAILED, NULL, "HTTP 500", 1500), 0);
  /* The previous good staple is still served, and no fetch before the backoff ends. */
  got = ae_ocsp_cache_get(f->c, f->cert, 1501);
  assert_non_null(got);
  ae_staple_unref(got);
  assert_int_equal(atomic_load(&f->n.calls), 2);
  ae_ocsp_info info;
  ae_ocsp_cache_info(f->c, f->cert, 1501, &info);
  assert_string_equal(info.state, "stale");
  assert_int_equal(info.failures, 1);
  assert_string_equal(info.last_error, "HTTP 500");
  /* Backoff passed: asks again; the error was not cached as an answer. */
  got = ae_ocsp_cache_get(f->c, f->cert, 1510);
  ae_staple_unref(got);
  assert_int_equal(atomic_load(&f->n.calls), 3);
  /* A second failure doubles the wait. */
  ae_ocsp_cache_complete(f->c, f->cert, f->n.last_gen, AE_OCSP_FETCH_FAILED, NULL, "timeout", 1510);
  ae_staple_unref(ae_ocsp_cache_get(f->c, f->cert, 1512));
  assert_int_equal(atomic_load(&f->n.calls), 3);
  ae_staple_unref(ae_ocsp_cache_get(f->c, f->cert, 1514));
  assert_int_equal(atomic_load(&f->n.calls), 4);
}

static void test_generation_race(void **state) {
  fx *f = *state;
  assert_null(ae_ocsp_cache_get(f->c, f->cert, 1000));
  uint64_t old_gen = f->n.last_gen;
  /* The revoke lands while that fetch is still out. */
  ae_ocsp_cache_invalidate(f->c, f->cert);
  ae_staple *st = make_staple(1000, 2000);
  assert_int_equal(ae_ocsp_cache_complete(f->c, f->cert, old_gen, AE_OCSP_FETCH_GOOD, st, NULL, 1001),
                   AE_ECANCELED);
  /* The stale "good" was not re-inserted: nothing to serve, and a new fetch starts. */
  assert_null(ae_ocsp_cache_get(f->c, f->cert, 1002));
  assert_int_equal(atomic_load(&f->n.calls), 2);
  assert_true(f->n.last_gen != old_gen);
  /* Only the fetch of the current generation may write. */
  assert_int_equal(ae_ocsp_cache_complete(f->c, f->cert, f->n.last_gen, AE_OCSP_FETCH_GOOD, st, NULL, 1003), 0);
  ae_staple *got = ae_ocsp_cache_get(f->c, f->cert, 1004);
  assert_ptr_equal(got, st);
  ae_staple_unref(got);

  /* Invalidation also drops a staple already cached. */
  ae_ocsp_cache_invalidate(f->c, f->cert);
  assert_null(ae_ocsp_cache_get(f->c, f->cert, 1005));

  /* Removing and re-creating the entry cannot revive an old generation either. */
  uint64_t gen_before_remove = f->n.last_gen;
  ae_ocsp_cache_remove(f->c, f->cert);
  assert_int_equal(
      ae_ocsp_cache_complete(f->c, f->cert, gen_before_remove, AE_OCSP_FETCH_GOOD, st, NULL, 1006),
      AE_ECANCELED);
  assert_null(ae_ocsp_cache_get(f->c, f->cert, 1007));
  assert_true(f->n.last_gen > gen_before_remove);
  assert_int_equal(
      ae_ocsp_cache_complete(f->c, f->cert, gen_before_remove, AE_OCSP_FETCH_GOOD, st, NULL, 1008),
      AE_ECANCELED);
  assert_null(ae_ocsp_cache_get(f->c, f->cert, 1009));
  ae_staple_unref(st);
}

static void test_revoked_and_no_url_stop_fetching(void **state) {
  fx *f = *state;
  ae_cert *other = make_cert("b.example.com");
  assert_null(ae_ocsp_cache_get(f->c, f->cert, 1000));
  ae_staple *st = make_staple(1000, 1100);
  ae_ocsp_cache_complete(f->c, f->cert, f->n.last_gen, AE_OCSP_FETCH_GOOD, st, NULL, 1000);
  ae_staple_unref(st);
  ae_staple_unref(ae_ocsp_cache_get(f->c, f->cert, 1060));
  assert_int_equal(atomic_load(&f->n.calls), 2);
  ae_ocsp_cache_complete(f->c, f->cert, f->n.last_gen, AE_OCSP_FETCH_REVOKED, NULL, "keyCompromise", 1060);
  assert_null(ae_ocsp_cache_get(f->c, f->cert, 1061));
  assert_null(ae_ocsp_cache_get(f->c, f->cert, 9000));
  assert_int_equal(atomic_load(&f->n.calls), 2);
  ae_ocsp_info info;
  ae_ocsp_cache_info(f->c, f->cert, 1061, &info);
  assert_string_equal(info.state, "revoked");

  assert_null(ae_ocsp_cache_get(f->c, other, 1000));
  assert_int_equal(atomic_load(&f->n.calls), 3);
  ae_ocsp_cache_complete(f->c, other, f->n.last_gen, AE_OCSP_FETCH_NO_URL, NULL, NULL, 1000);
  for (int i = 0; i < 5; i++)
    assert_null(ae_ocsp_cache_get(f->c, other, 1000 + i * 1000));
  assert_int_equal(atomic_load(&f->n.calls), 3);
  ae_ocsp_cache_info(f->c, other, 1000, &info);
  assert_string_equal(info.state, "no_responder");
  ae_cert_unref(other);
}

static void test_refresh_due_and_seed(void **state) {
  fx *f = *state;
  ae_cert *other = make_cert("c.example.com");
  /* Seeded from storage: served at once, no fetch. */
  ae_staple *st = make_staple(1000, 1200);
  ae_ocsp_cache_seed(f->c, f->cert, st);
  ae_staple *got = ae_ocsp_cache_get(f->c, f->cert, 1010);
  assert_ptr_equal(got, st);
  ae_staple_unref(got);
  assert_int_equal(atomic_load(&f->n.calls), 0);
  /* An older staple does not replace a newer one. */
  ae_staple *older = make_staple(900, 1200);
  ae_ocsp_cache_seed(f->c, f->cert, older);
  got = ae_ocsp_cache_get(f->c, f->cert, 1010);
  assert_ptr_equal(got, st);
  ae_staple_unref(got);
  ae_staple_unref(older);
  /* Not yet half-way: nothing due. */
  assert_int_equal(ae_ocsp_cache_refresh_due(f->c, 1050), 0);
  assert_int_equal(ae_ocsp_cache_refresh_due(f->c, 1100), 1);
  assert_int_equal(ae_ocsp_cache_refresh_due(f->c, 1101), 0); /* already in flight */
  size_t entries = 0, stapled = 0;
  ae_ocsp_cache_counts(f->c, 1101, &entries, &stapled);
  assert_int_equal(entries, 1);
  assert_int_equal(stapled, 1);
  ae_ocsp_cache_counts(f->c, 1200, &entries, &stapled);
  assert_int_equal(stapled, 0);
  ae_staple_unref(st);
  ae_cert_unref(other);
}

static void test_no_responder_never_enters(void **state) {
  fx *f = *state;
  ae_cert *plain = make_cert_plain("d.example.com");
  assert_false(ae_cert_has_ocsp_url(plain));
  for (int i = 0; i < 5; i++)
    assert_null(ae_ocsp_cache_get(f->c, plain, 1000 + i));
  assert_int_equal(atomic_load(&f->n.calls), 0);
  size_t entries = 1, stapled = 1;
  ae_ocsp_cache_counts(f->c, 1000, &entries, &stapled);
  assert_int_equal(entries, 0);
  ae_ocsp_info info;
  assert_int_equal(ae_ocsp_cache_info(f->c, plain, 1000, &info), 0);
  assert_string_equal(info.state, "no_responder");
  ae_cert_unref(plain);
}

static void test_reasons(void **state) {
  (void)state;
  int r = -1;
  assert_int_equal(ae_ocsp_reason_parse("keyCompromise", &r), 0);
  assert_int_equal(r, 1);
  assert_int_equal(ae_ocsp_reason_parse("KEYCOMPROMISE", &r), 0);
  assert_int_equal(r, 1);
  assert_int_equal(ae_ocsp_reason_parse("4", &r), 0);
  assert_int_equal(r, 4);
  assert_int_equal(ae_ocsp_reason_parse("7", &r), 0); /* unused in RFC 5280, the CA decides */
  assert_int_equal(ae_ocsp_reason_parse("11", &r), AE_EINVAL);
  assert_int_equal(ae_ocsp_reason_parse("bogus", &r), AE_EINVAL);
  assert_int_equal(ae_ocsp_reason_parse("", &r), AE_EINVAL);
  assert_string_equal(ae_ocsp_reason_name(4), "superseded");
  assert_string_equal(ae_ocsp_reason_name(99), "unspecified");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_miss_asks_once, setup, teardown),
      cmocka_unit_test_setup_teardown(test_concurrent_misses_one_fetch, setup, teardown),
      cmocka_unit_test_setup_teardown(test_good_served_until_next_update, setup, teardown),
      cmocka_unit_test_setup_teardown(test_failure_keeps_previous_and_backs_off, setup, teardown),
      cmocka_unit_test_setup_teardown(test_generation_race, setup, teardown),
      cmocka_unit_test_setup_teardown(test_revoked_and_no_url_stop_fetching, setup, teardown),
      cmocka_unit_test_setup_teardown(test_refresh_due_and_seed, setup, teardown),
      cmocka_unit_test_setup_teardown(test_no_responder_never_enters, setup, teardown),
      cmocka_unit_test(test_reasons),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
