/* Config keys of the abuse defences: limits.*, listen.proxy_protocol, on_demand.dns_check and
 * on_demand.fair_queue -- defaults, values taken over, and errors naming the field at fault. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "acmedge/config.h"

static ae_config *parse_ok(const char *json) {
  ae_config *cfg = NULL;
  ae_err err = {0};
  if (ae_config_parse("x.json", json, &cfg, &err) != 0)
    fail_msg("unexpected error: %s (for %s)", err.msg, json);
  return cfg;
}

static void expect_err(const char *json, const char *field) {
  ae_config *cfg = NULL;
  ae_err err = {0};
  int rc = ae_config_parse("x.json", json, &cfg, &err);
  if (rc == 0)
    fail_msg("accepted, expected an error naming %s: %s", field, json);
  assert_null(cfg);
  if (!strstr(err.msg, field))
    fail_msg("error '%s' does not name %s", err.msg, field);
}

static void test_defaults_off(void **state) {
  (void)state;
  ae_config *cfg = parse_ok("{\"on_demand\":{\"allow\":[\"*\"]}}");
  assert_int_equal(cfg->limits.per_ip_connections, 0);
  assert_int_equal(cfg->limits.per_ip_handshakes_per_s, 0);
  assert_int_equal(cfg->limits.per_ip_new_names_per_min, 0);
  assert_int_equal(cfg->listen_proxy_protocol, 0);
  assert_int_equal(cfg->dns_check.enabled, 0);
  assert_true(cfg->fair_queue.max_share == 1.0);
  ae_config_free(cfg);
}

static void test_limits_section(void **state) {
  (void)state;
  ae_config *cfg = parse_ok("{\"on_demand\":{\"allow\":[\"*\"]},\"limits\":{\"per_ip_connections\":7}}");
  assert_int_equal(cfg->limits.per_ip_connections, 7);
  assert_int_equal(cfg->limits.per_ip_handshakes_per_s, 50);
  assert_int_equal(cfg->limits.per_ip_new_names_per_min, 30);
  assert_int_equal(cfg->limits.table_entries, 16384);
  ae_config_free(cfg);
  expect_err("{\"on_demand\":{\"allow\":[\"*\"]},\"limits\":{\"per_ip_conections\":7}}", "limits.per_ip_conections");
  expect_err("{\"on_demand\":{\"allow\":[\"*\"]},\"limits\":{\"per_ip_connections\":-1}}", "limits.per_ip_connections");
  expect_err("{\"on_demand\":{\"allow\":[\"*\"]},\"limits\":{\"table_entries\":8}}", "limits.table_entries");
  expect_err("{\"on_demand\":{\"allow\":[\"*\"]},\"listen\":{\"proxy_protocol\":\"yes\"}}", "listen.proxy_protocol");
}

static void test_dns_check(void **state) {
  (void)state;
  ae_config *cfg = parse_ok("{\"on_demand\":{\"allow\":[\"*\"],\"dns_check\":{\"expect\":[\"203.0.113.7\","
                            "\"2001:db8::7\"],\"resolver\":\"127.0.0.1:5353\"}}}");
  assert_int_equal(cfg->dns_check.enabled, 1);
  assert_int_equal(cfg->dns_check.nexpect, 2);
  assert_string_equal(cfg->dns_check.resolver, "127.0.0.1:5353");
  assert_int_equal(cfg->dns_check.timeout_ms, 2000);
  ae_config_free(cfg);
  cfg = parse_ok("{\"on_demand\":{\"allow\":[\"*\"],\"dns_check\":null}}");
  assert_int_equal(cfg->dns_check.enabled, 0);
  ae_config_free(cfg);
  expect_err("{\"on_demand\":{\"allow\":[\"*\"],\"dns_check\":{\"expect\":[]}}}", "on_demand.dns_check.expect");
  expect_err("{\"on_demand\":{\"allow\":[\"*\"],\"dns_check\":{\"expect\":[\"proxy.example.com\"]}}}",
             "on_demand.dns_check.expect[0]");
  expect_err("{\"on_demand\":{\"allow\":[\"*\"],\"dns_check\":{\"expect\":[\"192.0.2.1\"],\"resolver\":\"dns.example\"}}}",
             "on_demand.dns_check.resolver");
  expect_err("{\"on_demand\":{\"allow\":[\"*\"],\"dns_check\":{\"expect\":[\"192.0.2.1\"],\"timeout_ms\":0}}}",
             "on_demand.dns_check.timeout_ms");
  expect_err("{\"on_demand\":{\"allow\":[\"*\"],\"dns_check\":{\"expect\":[\"192.0.2.1\"],\"ttl\":1}}}",
             "on_demand.dns_check.ttl");
}

static void test_fair_queue(void **state) {
  (void)state;
  ae_config *cfg = parse_ok("{\"on_demand\":{\"allow\":[\"*\"],\"fair_queue\":{\"max_share\":0.25}}}");
  assert_true(cfg->fair_queue.max_share == 0.25);
  assert_true(cfg->fair_queue.rate_share == 0.25); /* follows max_share */
  assert_true(cfg->fair_queue.renewal_reserve == 0.1);
  assert_int_equal(cfg->fair_queue.unasked_ttl_s, 600);
  assert_int_equal(cfg->name_cache_max, 10000);
  ae_config_free(cfg);
  cfg = parse_ok("{\"on_demand\":{\"allow\":[\"*\"],\"name_cache_max\":500,\"fair_queue\":{\"max_share\":0.5,"
                 "\"rate_share\":0.2,\"renewal_reserve\":0,\"unasked_ttl_s\":0}}}");
  assert_true(cfg->fair_queue.rate_share == 0.2);
  assert_true(cfg->fair_queue.renewal_reserve == 0.0);
  assert_int_equal(cfg->fair_queue.unasked_ttl_s, 0);
  assert_int_equal(cfg->name_cache_max, 500);
  ae_config_free(cfg);
  cfg = parse_ok("{\"on_demand\":{\"allow\":[\"*\"]}}");
  assert_true(cfg->fair_queue.rate_share == 1.0);
  ae_config_free(cfg);
  expect_err("{\"on_demand\":{\"allow\":[\"*\"],\"fair_queue\":{\"rate_share\":0}}}", "on_demand.fair_queue.rate_share");
  expect_err("{\"on_demand\":{\"allow\":[\"*\"],\"fair_queue\":{\"renewal_reserve\":1}}}",
             "on_demand.fair_queue.renewal_reserve");
  expect_err("{\"on_demand\":{\"allow\":[\"*\"],\"fair_queue\":{\"renewal_reserve\":\"10%\"}}}",
             "on_demand.fair_queue.renewal_reserve");
  expect_err("{\"on_demand\":{\"allow\":[\"*\"],\"fair_queue\":{\"unasked_ttl_s\":-5}}}",
             "on_demand.fair_queue.unasked_ttl_s");
  expect_err("{\"on_demand\":{\"allow\":[\"*\"],\"fair_queue\":{\"max_age\":5}}}", "on_demand.fair_queue.max_age");
  expect_err("{\"on_demand\":{\"allow\":[\"*\"],\"name_cache_max\":10}}", "on_demand.name_cache_max");
  expect_err("{\"on_demand\":{\"allow\":[\"*\"],\"fair_queue\":{\"max_share\":0}}}", "on_demand.fair_queue.max_share");
  expect_err("{\"on_demand\":{\"allow\":[\"*\"],\"fair_queue\":{\"max_share\":1.5}}}", "on_demand.fair_queue.max_share");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_defaults_off),
      cmocka_unit_test(test_limits_section),
      cmocka_unit_test(test_dns_check),
      cmocka_unit_test(test_fair_queue),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
