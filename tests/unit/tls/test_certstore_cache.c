/* Unit tests for the bounded certificate cache: CLOCK eviction, in-use certificates surviving
 * eviction (run under ASan), the eviction callback, sharded concurrent lookups during inserts,
 * and the fixed-size negative cache with its TTL. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "acmedge/certstore.h"
#include "acmedge/common.h"

static ae_cert *make_cert(const char *cn) {
  char *cpem = NULL, *kpem = NULL;
  ae_err err = {0};
  const char *names[] = {cn};
  if (ae_cert_generate_selfsigned(cn, names, 1, 30, &cpem, &kpem, &err) != 0)
    fail_msg("generate: %s", err.msg);
  ae_cert *c = NULL;
  if (ae_cert_from_pem(cpem, strlen(cpem), kpem, strlen(kpem), &c, &err) != 0)
    fail_msg("from_pem: %s", err.msg);
  free(cpem);
  free(kpem);
  return c;
}

typedef struct evlog {
  char names[64][64];
  size_t n;
} evlog;

static void on_evict(void *ud, const char *name, ae_cert *cert) {
  evlog *l = ud;
  assert_non_null(cert);
  assert_true(ae_cert_not_after(cert) > 0);
  if (l->n < 64)
    snprintf(l->names[l->n++], 64, "%s", name);
}

static void test_bound_and_eviction_order(void **state) {
  (void)state;
  ae_certstore_opts o = {.max_entries = 3};
  ae_certstore *cs = NULL;
  assert_int_equal(ae_certstore_new_opts(&o, &cs), 0);
  evlog log = {0};
  ae_certstore_set_evict_cb(cs, on_evict, &log);
  ae_cert *c = make_cert("x.test");
  const char *names[] = {"a.test", "b.test", "c.test"};
  for (int i = 0; i < 3; i++)
    assert_int_equal(ae_certstore_put(cs, names[i], c), 0);
  assert_int_equal(ae_certstore_count(cs), 3);
  assert_int_equal(log.n, 0);
  /* Every entry starts marked: the hand clears a, b, c in turn, then takes a (oldest). */
  assert_int_equal(ae_certstore_put(cs, "d.test", c), 0);
  assert_int_equal(ae_certstore_count(cs), 3);
  assert_int_equal(log.n, 1);
  assert_string_equal(log.names[0], "a.test");
  ae_cert *hit = ae_certstore_lookup(cs, "b.test"); /* marks b */
  assert_non_null(hit);
  ae_cert_unref(hit);
  assert_int_equal(ae_certstore_put(cs, "e.test", c), 0);
  assert_int_equal(log.n, 2);
  assert_string_equal(log.names[1], "c.test"); /* b was marked: second chance */
  assert_null(ae_certstore_lookup(cs, "a.test"));
  assert_null(ae_certstore_lookup(cs, "c.test"));
  hit = ae_certstore_lookup(cs, "b.test");
  assert_non_null(hit);
  ae_cert_unref(hit);
  assert_int_equal(ae_certstore_evictions(cs), 2);
  assert_int_equal(ae_certstore_max_entries(cs), 3);
  /* Replacing an existing name never evicts. */
  assert_int_equal(ae_certstore_put(cs, "e.test", c), 0);
  assert_int_equal(log.n, 2);
  ae_cert_unref(c);
  ae_certstore_free(cs);
}

/* The store drops its reference on eviction; a connection's reference keeps the cert usable
 * (ASan reports any use after free here). */
static void test_evicted_in_use_cert_lives(void **state) {
  (void)state;
  ae_certstore_opts o = {.max_entries = 2};
  ae_certstore *cs = NULL;
  assert_int_equal(ae_certstore_new_opts(&o, &cs), 0);
  ae_cert *a = make_cert("a.test");
  assert_int_equal(ae_certstore_put(cs, "a.test", a), 0);
  char serial[200];
  snprintf(serial, sizeof(serial), "%s", ae_cert_serial(a));
  ae_cert_unref(a); /* only the store holds it now */
  ae_cert *inuse = ae_certstore_lookup(cs, "a.test");
  assert_non_null(inuse);
  for (int i = 0; i < 6; i++) {
    char n[32];
    snprintf(n, sizeof(n), "n%d.test", i);
    ae_cert *c = make_cert(n);
    assert_int_equal(ae_certstore_put(cs, n, c), 0);
    ae_cert_unref(c);
  }
  assert_null(ae_certstore_lookup(cs, "a.test"));
  assert_true(ae_certstore_count(cs) <= 2);
  /* Still fully usable: metadata, names, chain and key. */
  assert_string_equal(ae_cert_serial(inuse), serial);
  assert_true(ae_cert_covers(inuse, "a.test"));
  unsigned n = 0;
  assert_non_null(ae_cert_pcerts(inuse, &n));
  assert_int_equal(n, 1);
  assert_non_null(ae_cert_privkey(inuse));
  ae_cert_unref(inuse);
  ae_certstore_free(cs);
}

typedef struct race {
  ae_certstore *cs;
  atomic_int stop;
  atomic_long hits;
} race;

static void *reader(void *arg) {
  race *r = arg;
  char n[32];
  unsigned i = 0;
  while (!atomic_load(&r->stop)) {
    snprintf(n, sizeof(n), "h%u.test", i++ % 6000);
    ae_cert *c = ae_certstore_lookup(r->cs, n);
    if (c) {
      /* Touch the cert as a handshake would while writers evict around us. */
      if (ae_cert_not_after(c) <= 0 || ae_cert_serial(c)[0] == '\0')
        fail_msg("broken cert");
      atomic_fetch_add(&r->hits, 1);
      ae_cert_unref(c);
    }
  }
  return NULL;
}

/* A sharded store (bound above the single-shard threshold) under concurrent lookups while one
 * writer inserts well past the bound: the count never exceeds it and nothing is used after free. */
static void test_sharded_concurrent_eviction(void **state) {
  (void)state;
  ae_certstore_opts o = {.max_entries = 4096};
  ae_certstore *cs = NULL;
  assert_int_equal(ae_certstore_new_opts(&o, &cs), 0);
  ae_cert *certs[4];
  for (int i = 0; i < 4; i++) {
    char n[32];
    snprintf(n, sizeof(n), "k%d.test", i);
    certs[i] = make_cert(n);
  }
  race r = {.cs = cs};
  pthread_t th[2];
  for (int i = 0; i < 2; i++)
    assert_int_equal(pthread_create(&th[i], NULL, reader, &r), 0);
  for (unsigned i = 0; i < 12000; i++) {
    char n[32];
    snprintf(n, sizeof(n), "h%u.test", i % 6000);
    assert_int_equal(ae_certstore_put(cs, n, certs[i % 4]), 0);
    assert_true(ae_certstore_count(cs) <= 4096);
  }
  atomic_store(&r.stop, 1);
  for (int i = 0; i < 2; i++)
    pthread_join(th[i], NULL);
  assert_true(ae_certstore_count(cs) <= 4096);
  assert_true(ae_certstore_count(cs) >= 4096 - 64);
  /* The first 6,000 puts are all new names, so at least 6,000 - 4,096 were evicted; how many of
   * the second pass's names were still present depends on which ones the readers kept warm. */
  assert_true(ae_certstore_evictions(cs) >= 6000 - 4096);
  for (int i = 0; i < 4; i++)
    ae_cert_unref(certs[i]);
  ae_certstore_free(cs);
}

static void test_unbounded_never_evicts(void **state) {
  (void)state;
  ae_certstore *cs = NULL;
  assert_int_equal(ae_certstore_new(&cs), 0);
  ae_cert *c = make_cert("x.test");
  for (unsigned i = 0; i < 5000; i++) {
    char n[32];
    snprintf(n, sizeof(n), "u%u.test", i);
    assert_int_equal(ae_certstore_put(cs, n, c), 0);
  }
  assert_int_equal(ae_certstore_count(cs), 5000);
  assert_int_equal(ae_certstore_evictions(cs), 0);
  ae_cert_unref(c);
  ae_certstore_free(cs);
}

static void test_negative_cache(void **state) {
  (void)state;
  ae_certstore_opts o = {.negative_slots = 8};
  ae_certstore *cs = NULL;
  assert_int_equal(ae_certstore_new_opts(&o, &cs), 0);
  assert_false(ae_certstore_known_absent(cs, "gone.test"));
  ae_certstore_mark_absent(cs, "gone.test", 60000);
  assert_true(ae_certstore_known_absent(cs, "gone.test"));
  assert_true(ae_certstore_known_absent(cs, "GONE.test")); /* case-insensitive */
  assert_false(ae_certstore_known_absent(cs, "other.test"));
  /* Bounded: a flood of names never grows it past its slots; at most 8 are remembered. */
  for (unsigned i = 0; i < 10000; i++) {
    char n[32];
    snprintf(n, sizeof(n), "flood%u.test", i);
    ae_certstore_mark_absent(cs, n, 60000);
  }
  unsigned remembered = 0;
  for (unsigned i = 0; i < 10000; i++) {
    char n[32];
    snprintf(n, sizeof(n), "flood%u.test", i);
    remembered += (unsigned)ae_certstore_known_absent(cs, n);
  }
  assert_true(remembered <= 8);
  assert_true(remembered >= 1);
  /* TTL. */
  ae_certstore_mark_absent(cs, "short.test", 30);
  assert_true(ae_certstore_known_absent(cs, "short.test"));
  usleep(80 * 1000);
  assert_false(ae_certstore_known_absent(cs, "short.test"));
  /* Installing a certificate clears the mark at once. */
  ae_certstore_mark_absent(cs, "late.test", 60000);
  assert_true(ae_certstore_known_absent(cs, "late.test"));
  ae_cert *c = make_cert("late.test");
  assert_int_equal(ae_certstore_put(cs, "late.test", c), 0);
  assert_false(ae_certstore_known_absent(cs, "late.test"));
  ae_certstore_mark_absent(cs, "f.test", 60000);
  ae_certstore_forget_absent(cs, "f.test");
  assert_false(ae_certstore_known_absent(cs, "f.test"));
  ae_cert_unref(c);
  ae_certstore_free(cs);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_bound_and_eviction_order),
      cmocka_unit_test(test_evicted_in_use_cert_lives),
      cmocka_unit_test(test_sharded_concurrent_eviction),
      cmocka_unit_test(test_unbounded_never_evicts),
      cmocka_unit_test(test_negative_cache),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
