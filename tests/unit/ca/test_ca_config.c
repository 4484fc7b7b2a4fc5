/* Unit tests for the internal_ca.* and on_demand.fallback_cert config keys. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "acmedge/config.h"

static ae_config *parse(const char *json, ae_err *err) {
  ae_config *cfg = NULL;
  int rc = ae_config_parse("x.json", json, &cfg, err);
  if (rc != 0)
    return NULL;
  return cfg;
}

static void test_defaults(void **state) {
  (void)state;
  ae_err err = {0};
  ae_config *cfg = parse("{\"on_demand\":{\"allow\":[\"*\"]}}", &err);
  assert_non_null(cfg);
  assert_int_equal(cfg->internal_ca.enabled, 0);
  assert_int_equal(cfg->internal_ca.leaf_lifetime_s, 43200);
  assert_int_equal(cfg->internal_ca.intermediate_lifetime_s, 604800);
  assert_int_equal(cfg->internal_ca.cache_max, 10000);
  assert_int_equal(cfg->on_demand.fallback_internal, 0);
  assert_false(ae_config_internal_name(cfg, "a.internal.test"));
  ae_config_free(cfg);
}

static void test_values(void **state) {
  (void)state;
  ae_err err = {0};
  ae_config *cfg = parse("{\"on_demand\":{\"allow\":[\"*\"],\"fallback_cert\":\"internal\"},"
                         "\"internal_ca\":{\"enabled\":true,\"names\":[\"*.Internal.Test\",\"db.corp\"],"
                         "\"leaf_lifetime_s\":3600,\"intermediate_lifetime_s\":86400,\"cache_max\":5}}",
                         &err);
  if (!cfg)
    fail_msg("%s", err.msg);
  assert_int_equal(cfg->on_demand.fallback_internal, 1);
  assert_int_equal(cfg->internal_ca.leaf_lifetime_s, 3600);
  assert_int_equal(cfg->internal_ca.cache_max, 5);
  assert_true(ae_config_internal_name(cfg, "a.internal.test"));
  assert_true(ae_config_internal_name(cfg, "db.corp"));
  assert_false(ae_config_internal_name(cfg, "a.b.internal.test"));
  assert_false(ae_config_internal_name(cfg, "internal.test"));
  ae_config_free(cfg);
}

static void expect_err(const char *json, const char *want) {
  ae_err err = {0};
  ae_config *cfg = parse(json, &err);
  if (cfg)
    fail_msg("accepted: %s", json);
  if (!strstr(err.msg, want))
    fail_msg("message '%s' lacks '%s'", err.msg, want);
}

static void test_errors(void **state) {
  (void)state;
  expect_err("{\"on_demand\":{\"allow\":[\"*\"],\"fallback_cert\":\"internal\"}}", "on_demand.fallback_cert");
  expect_err("{\"on_demand\":{\"allow\":[\"*\"],\"fallback_cert\":\"other\"}}", "on_demand.fallback_cert");
  expect_err("{\"on_demand\":{\"allow\":[\"*\"]},\"internal_ca\":{\"names\":[\"a.test\"]}}", "internal_ca.names");
  expect_err("{\"on_demand\":{\"allow\":[\"*\"]},\"internal_ca\":{\"enabled\":true,\"names\":[\"a..test\"]}}",
             "internal_ca.names");
  expect_err("{\"on_demand\":{\"allow\":[\"*\"]},\"internal_ca\":{\"enabled\":true,\"leaf_lifetime_s\":10}}",
             "internal_ca.leaf_lifetime_s");
  /* Under two minutes the renewal (20 % of lifetime + 60 s backdate left) would come later than
   * 30 s before expiry, where a clamped leaf (backdated 60 s) is already two thirds through its
   * life when minted: stale at birth. */
  expect_err("{\"on_demand\":{\"allow\":[\"*\"]},\"internal_ca\":{\"enabled\":true,\"intermediate_lifetime_s\":119}}",
             "internal_ca.intermediate_lifetime_s");
  expect_err("{\"on_demand\":{\"allow\":[\"*\"]},\"internal_ca\":{\"enabled\":true,\"cache_max\":0}}",
             "internal_ca.cache_max");
  expect_err("{\"on_demand\":{\"allow\":[\"*\"]},\"internal_ca\":{\"enabled\":true,\"bogus\":1}}", "internal_ca.bogus");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_defaults),
      cmocka_unit_test(test_values),
      cmocka_unit_test(test_errors),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
