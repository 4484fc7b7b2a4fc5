/* Admission of challenge look-ups in Redis: one look-up per key (later askers join it), the
 * in-flight and per-second bounds, the remembered miss and its expiry, and http/alpn keys kept
 * apart. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include "../../../src/storage/chal_gate.h"
#include "acmedge/common.h"

static void test_singleflight(void **state) {
  (void)state;
  ae_chal_gate g;
  memset(&g, 0, sizeof(g));
  uint64_t k = ae_chal_gate_key("alpn", "a.example.test");
  assert_int_equal(ae_chal_gate_admit(&g, k, 1000), 0);
  /* A second handshake for the same name joins the look-up in flight. */
  assert_int_equal(ae_chal_gate_admit(&g, k, 1001), AE_EAGAIN);
  assert_int_equal(g.ninflight, 1);
  assert_int_equal(g.used, 1);
  /* Found: not remembered as a miss, a later look-up may start again. */
  ae_chal_gate_done(&g, k, 0, 1002);
  assert_int_equal(g.ninflight, 0);
  assert_int_equal(ae_chal_gate_admit(&g, k, 1003), 0);
}

static void test_negative_cache(void **state) {
  (void)state;
  ae_chal_gate g;
  memset(&g, 0, sizeof(g));
  uint64_t k = ae_chal_gate_key("http", "Tok_abc");
  assert_int_equal(ae_chal_gate_admit(&g, k, 5000), 0);
  ae_chal_gate_done(&g, k, 1, 5000);
  assert_int_equal(ae_chal_gate_admit(&g, k, 5001), AE_ENOTFOUND);
  assert_int_equal(ae_chal_gate_admit(&g, k, 5000 + AE_CHAL_GATE_NEG_MS - 1), AE_ENOTFOUND);
  assert_int_equal(ae_chal_gate_admit(&g, k, 5000 + AE_CHAL_GATE_NEG_MS), 0);
  /* A failed look-up (Redis did not answer) is not a miss. */
  ae_chal_gate_done(&g, k, 0, 20000);
  assert_int_equal(ae_chal_gate_admit(&g, k, 20001), 0);
}

static void test_kinds_apart(void **state) {
  (void)state;
  ae_chal_gate g;
  memset(&g, 0, sizeof(g));
  uint64_t h = ae_chal_gate_key("http", "same"), a = ae_chal_gate_key("alpn", "same");
  assert_true(h != a);
  assert_int_equal(ae_chal_gate_admit(&g, h, 100), 0);
  ae_chal_gate_done(&g, h, 1, 100);
  assert_int_equal(ae_chal_gate_admit(&g, a, 101), 0);
  /* The separator is part of the key: "ab:c" and "a:bc" differ. */
  assert_true(ae_chal_gate_key("ab", "c") != ae_chal_gate_key("a", "bc"));
}

static void test_bounds(void **state) {
  (void)state;
  ae_chal_gate g;
  memset(&g, 0, sizeof(g));
  char name[32];
  uint64_t keys[AE_CHAL_GATE_INFLIGHT];
  for (unsigned i = 0; i < AE_CHAL_GATE_INFLIGHT; i++) {
    snprintf(name, sizeof(name), "n%u", i);
    keys[i] = ae_chal_gate_key("alpn", name);
    assert_int_equal(ae_chal_gate_admit(&g, keys[i], 3000), 0);
  }
  assert_int_equal(ae_chal_gate_admit(&g, ae_chal_gate_key("alpn", "over"), 3000), AE_ELIMIT);
  /* Ending any one of them frees a slot (order does not matter). */
  ae_chal_gate_done(&g, keys[3], 0, 3001);
  assert_int_equal(ae_chal_gate_admit(&g, ae_chal_gate_key("alpn", "over"), 3001), 0);
  for (unsigned i = 0; i < AE_CHAL_GATE_INFLIGHT; i++)
    ae_chal_gate_done(&g, i == 3 ? ae_chal_gate_key("alpn", "over") : keys[i], 1, 3002);
  assert_int_equal(g.ninflight, 0);
  /* Per second: AE_CHAL_GATE_PER_S starts, then refused until the next second. */
  unsigned started = 0;
  for (unsigned i = 0; i < 100; i++) {
    snprintf(name, sizeof(name), "s%u", i);
    uint64_t k = ae_chal_gate_key("http", name);
    int r = ae_chal_gate_admit(&g, k, 7100);
    if (r == 0) {
      started++;
      ae_chal_gate_done(&g, k, 0, 7100);
    } else {
      assert_int_equal(r, AE_ELIMIT);
    }
  }
  assert_int_equal(started, AE_CHAL_GATE_PER_S);
  assert_int_equal(ae_chal_gate_admit(&g, ae_chal_gate_key("http", "next"), 8000), 0);
}

static void test_negative_ring(void **state) {
  (void)state;
  ae_chal_gate g;
  memset(&g, 0, sizeof(g));
  char name[32];
  /* More misses than the ring holds: the oldest is forgotten, the newest remembered. */
  for (unsigned i = 0; i <= AE_CHAL_GATE_NEG_N; i++) {
    snprintf(name, sizeof(name), "m%u", i);
    uint64_t k = ae_chal_gate_key("http", name);
    g.used = 0;
    assert_int_equal(ae_chal_gate_admit(&g, k, 1000), 0);
    ae_chal_gate_done(&g, k, 1, 1000);
  }
  g.used = 0;
  assert_int_equal(ae_chal_gate_admit(&g, ae_chal_gate_key("http", "m0"), 1001), 0);
  snprintf(name, sizeof(name), "m%u", AE_CHAL_GATE_NEG_N);
  assert_int_equal(ae_chal_gate_admit(&g, ae_chal_gate_key("http", name), 1001), AE_ENOTFOUND);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_singleflight), cmocka_unit_test(test_negative_cache), cmocka_unit_test(test_kinds_apart),
      cmocka_unit_test(test_bounds),       cmocka_unit_test(test_negative_ring),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
