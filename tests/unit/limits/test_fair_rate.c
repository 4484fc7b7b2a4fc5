/* The fair shares of the rolling 3 h order cap (fake clock): one registrable domain may use only
 * fair_queue.rate_share of it, new names never the part kept for renewals
 * (fair_queue.renewal_reserve), and the per-domain counts stay bounded by the cap. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <uv.h>

#include "acmedge/config.h"
#include "acmedge/policy.h"

#define H3 (3ull * 3600ull * 1000ull)

static ae_config *load_cfg(const char *json) {
  ae_config *cfg = NULL;
  ae_err err = {0};
  if (ae_config_parse("test.json", json, &cfg, &err) != 0)
    fail_msg("config: %s", err.msg);
  return cfg;
}

static void closed_flag(void *ud) { *(int *)ud = 1; }

static ae_policy *policy_for(uv_loop_t *loop, ae_config *cfg) {
  ae_policy *p = NULL;
  ae_err err = {0};
  assert_int_equal(ae_policy_new(loop, cfg, &p, &err), 0);
  return p;
}

static void policy_done(uv_loop_t *loop, ae_policy *p) {
  int closed = 0;
  ae_policy_close(p, closed_flag, &closed);
  for (int i = 0; i < 1000 && !closed; i++)
    uv_run(loop, UV_RUN_NOWAIT);
  assert_true(closed);
  ae_policy_free(p);
}

/* Takes one order for rd if the policy lets it start at now. */
static int take(ae_policy *p, uint64_t now, const char *rd, int renewal, uint64_t *wait) {
  int r = ae_policy_rate_check(p, now, rd, renewal, wait);
  if (r == 0)
    ae_policy_rate_commit(p, now, rd, renewal);
  return r;
}

static void test_rate_share(void **state) {
  (void)state;
  uv_loop_t loop;
  uv_loop_init(&loop);
  /* 10 orders per 3 h, no bucket limit to speak of, one domain at most 30 % (3 orders). */
  ae_config *cfg = load_cfg("{\"on_demand\": {\"allow\": [\"*\"], \"rate\": {\"per_minute\": 600000, \"burst\": 1000,"
                            " \"per_3h\": 10}, \"fair_queue\": {\"rate_share\": 0.3, \"renewal_reserve\": 0}}}");
  ae_policy *p = policy_for(&loop, cfg);
  uint64_t t = 5000000, wait = 0;
  for (int i = 0; i < 3; i++)
    assert_int_equal(take(p, t + (uint64_t)i * 1000, "flood.test", 0, &wait), 0);
  /* The flood's share is used up: it waits for its first order to leave the window ... */
  assert_int_equal(take(p, t + 5000, "flood.test", 0, &wait), AE_EAGAIN);
  assert_int_equal(wait, H3 - 5000);
  /* ... while other domains still start. */
  assert_int_equal(take(p, t + 5000, "real.test", 0, &wait), 0);
  assert_int_equal(wait, 0);
  assert_int_equal(take(p, t + 5000, "other.test", 0, &wait), 0);
  /* The share is counted in the rolling window: one slot frees when the first order leaves. */
  assert_int_equal(take(p, t + H3, "flood.test", 0, &wait), 0);
  assert_int_equal(take(p, t + H3, "flood.test", 0, &wait), AE_EAGAIN);
  assert_int_equal(wait, 1000);
  /* A name without a registrable domain (rate_take) is not held by any share. */
  assert_int_equal(ae_policy_rate_take(p, t + H3, &wait), 0);
  policy_done(&loop, p);
  ae_config_free(cfg);
  assert_int_equal(uv_loop_close(&loop), 0);
}

static void test_renewal_reserve(void **state) {
  (void)state;
  uv_loop_t loop;
  uv_loop_init(&loop);
  /* 10 per 3 h, 20 % (2) kept for renewals; no share cap. */
  ae_config *cfg = load_cfg("{\"on_demand\": {\"allow\": [\"*\"], \"rate\": {\"per_minute\": 600000, \"burst\": 1000,"
                            " \"per_3h\": 10}, \"fair_queue\": {\"renewal_reserve\": 0.2}}}");
  ae_policy *p = policy_for(&loop, cfg);
  uint64_t t = 7000000, wait = 0;
  for (int i = 0; i < 8; i++)
    assert_int_equal(take(p, t + (uint64_t)i, "flood.test", 0, &wait), 0);
  /* New names have used their 8: the next one waits until the first leaves the window. */
  assert_int_equal(take(p, t + 100, "real.test", 0, &wait), AE_EAGAIN);
  assert_int_equal(wait, H3 - 100);
  /* Renewals still start, up to the whole cap. */
  assert_int_equal(take(p, t + 100, "flood.test", 1, &wait), 0);
  assert_int_equal(take(p, t + 100, "real.test", 1, &wait), 0);
  assert_int_equal(take(p, t + 100, "real.test", 1, &wait), AE_ELIMIT);
  assert_int_equal(wait, H3 - 100);
  /* Renewals count against the cap: once two new-name orders left the window, 8 remain (6 new,
   * 2 renewals), so new names still wait for a third one to leave. */
  assert_int_equal(take(p, t + H3 + 1, "real.test", 0, &wait), AE_EAGAIN);
  assert_int_equal(wait, 1);
  assert_int_equal(take(p, t + H3 + 2, "real.test", 0, &wait), 0);
  policy_done(&loop, p);
  ae_config_free(cfg);
  assert_int_equal(uv_loop_close(&loop), 0);
}

/* Without a 3 h cap neither share applies: the bucket alone limits. */
static void test_no_cap(void **state) {
  (void)state;
  uv_loop_t loop;
  uv_loop_init(&loop);
  /* per_3h above 2^20 keeps no ring (no cap). */
  ae_config *cfg = load_cfg("{\"on_demand\": {\"allow\": [\"*\"], \"rate\": {\"per_minute\": 60, \"burst\": 2,"
                            " \"per_3h\": 10000000}, \"fair_queue\": {\"rate_share\": 0.1}}}");
  ae_policy *p = policy_for(&loop, cfg);
  uint64_t wait = 0;
  assert_int_equal(take(p, 1000, "flood.test", 0, &wait), 0);
  assert_int_equal(take(p, 1000, "flood.test", 0, &wait), 0);
  assert_int_equal(take(p, 1000, "flood.test", 0, &wait), AE_ELIMIT);
  assert_int_equal(wait, 1000);
  policy_done(&loop, p);
  ae_config_free(cfg);
  assert_int_equal(uv_loop_close(&loop), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_rate_share),
      cmocka_unit_test(test_renewal_reserve),
      cmocka_unit_test(test_no_cap),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
