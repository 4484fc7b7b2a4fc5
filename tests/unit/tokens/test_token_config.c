/* Config for capability tokens: cap_tokens, routes[].auth.cap_tokens, admin.tls — accepted
 * values land in the snapshot, every refusal names its field. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "acmedge/config.h"
#include "acmedge/tokens.h"

#define KEY "11qYAYKxCrfVS_7TyWQHOg7hcvPaYiMlrwIaaPcHURo"
#define BASE "\"listen\": {\"admin\": \"127.0.0.1:2020\"}, \"on_demand\": {\"enabled\": false}, \"default_cert\": {\"cert\": \"/nonexistent/c\", \"key\": \"/nonexistent/k\"}"

static int parse(const char *body, ae_config **cfg, ae_err *err) {
  char json[4096];
  snprintf(json, sizeof(json), "{" BASE "%s%s}", *body ? ", " : "", body);
  return ae_config_parse("t.json", json, cfg, err);
}

static void test_accepts(void **state) {
  (void)state;
  ae_config *cfg = NULL;
  ae_err err = {0};
  int rc = parse("\"cap_tokens\": {\"keys\": {\"ops\": \"" KEY "\"}, \"audience\": \"edge-1\", \"leeway_s\": 5,"
                 " \"max_ttl_s\": 600}, \"routes\": [{\"hosts\": [\"a.example.test\"], \"upstream\": \"127.0.0.1:9\","
                 " \"auth\": {\"cap_tokens\": {\"groups\": [\"team-a\"], \"bind\": true, \"audience\": \"svc\"}}},"
                 " {\"hosts\": [\"b.example.test\"], \"upstream\": \"127.0.0.1:9\"}]",
                 &cfg, &err);
  if (rc)
    fail_msg("%s", err.msg);
  assert_non_null(cfg->tokens);
  assert_string_equal(cfg->tokens->audience, "edge-1");
  assert_int_equal(cfg->tokens->leeway_s, 5);
  assert_int_equal(cfg->tokens->max_ttl_s, 600);
  assert_non_null(ae_tok_keyring_get(cfg->tokens->keys, "ops"));
  const ae_tok_route_auth *ra = cfg->routes[0].auth;
  assert_non_null(ra);
  assert_true(ra->bind);
  assert_false(ra->forward_token);
  assert_string_equal(ra->audience, "svc");
  assert_int_equal(ra->ngroups, 1);
  assert_null(cfg->routes[1].auth);
  ae_config_free(cfg);
  /* defaults */
  assert_int_equal(parse("\"cap_tokens\": {\"keys\": {\"ops\": \"" KEY "\"}, \"audience\": \"e\"}", &cfg, &err), 0);
  assert_int_equal(cfg->tokens->leeway_s, AE_TOK_DEFAULT_LEEWAY_S);
  assert_int_equal(cfg->tokens->max_ttl_s, AE_TOK_DEFAULT_MAX_TTL_S);
  ae_config_free(cfg);
  assert_int_equal(parse("", &cfg, &err), 0);
  assert_null(cfg->tokens);
  ae_config_free(cfg);
}

static void test_refuses(void **state) {
  (void)state;
  static const struct {
    const char *body, *field;
  } cases[] = {
      {"\"cap_tokens\": {\"audience\": \"e\"}", "cap_tokens.keys"},
      {"\"cap_tokens\": {\"keys\": {}, \"audience\": \"e\"}", "cap_tokens.keys"},
      {"\"cap_tokens\": {\"keys\": {\"ops\": \"AQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\"}, \"audience\": \"e\"}",
       "cap_tokens.keys.ops"},
      {"\"cap_tokens\": {\"keys\": {\"ops\": \"" KEY "\"}}", "cap_tokens.audience"},
      {"\"cap_tokens\": {\"keys\": {\"ops\": \"" KEY "\"}, \"audience\": \"\"}", "cap_tokens.audience"},
      {"\"cap_tokens\": {\"keys\": {\"ops\": \"" KEY "\"}, \"audience\": \"e\", \"max_ttl_s\": 0}", "cap_tokens"},
      {"\"cap_tokens\": {\"keys\": {\"ops\": \"" KEY "\"}, \"audience\": \"e\", \"extra\": 1}", "cap_tokens"},
      {"\"routes\": [{\"hosts\": [\"a.example.test\"], \"upstream\": \"127.0.0.1:9\", \"auth\": {\"cap_tokens\": {}}}]",
       "routes[0].auth.cap_tokens"},
      {"\"cap_tokens\": {\"keys\": {\"ops\": \"" KEY "\"}, \"audience\": \"e\"}, \"routes\": [{\"hosts\": "
       "[\"a.example.test\"], \"upstream\": \"127.0.0.1:9\", \"plain_http\": true, \"auth\": {\"cap_tokens\": {}}}]",
       "routes[0].auth.cap_tokens"},
      {"\"cap_tokens\": {\"keys\": {\"ops\": \"" KEY "\"}, \"audience\": \"e\"}, \"routes\": [{\"hosts\": "
       "[\"a.example.test\"], \"upstream\": \"127.0.0.1:9\", \"auth\": {\"cap_tokens\": {\"bind\": 1}}}]",
       "routes[0].auth.cap_tokens"},
      {"\"cap_tokens\": {\"keys\": {\"ops\": \"" KEY "\"}, \"audience\": \"e\"}, \"routes\": [{\"hosts\": "
       "[\"a.example.test\"], \"upstream\": \"127.0.0.1:9\", \"auth\": {\"cap_tokens\": {\"groups\": [\"\"]}}}]",
       "routes[0].auth.cap_tokens.groups[0]"},
      {"\"admin\": {\"tls\": {\"cert\": \"/nonexistent/a\", \"key\": \"/nonexistent/b\"}}", "admin.tls"},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    ae_config *cfg = NULL;
    ae_err err = {0};
    int rc = parse(cases[i].body, &cfg, &err);
    if (rc == 0) {
      ae_config_free(cfg);
      fail_msg("case %zu accepted: %s", i, cases[i].body);
    }
    char want[160];
    snprintf(want, sizeof(want), "t.json: %s", cases[i].field);
    if (!strstr(err.msg, want))
      fail_msg("case %zu: '%s' does not name %s", i, err.msg, cases[i].field);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_accepts),
      cmocka_unit_test(test_refuses),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
