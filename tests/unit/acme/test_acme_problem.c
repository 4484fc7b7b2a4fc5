/* Unit tests for RFC 7807 problem documents: parsing of canned CA answers and the retry
 * classification table. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "acmedge/acme.h"

static int parse(const char *json, ae_acme_problem *p) { return ae_acme_problem_parse(json, strlen(json), p); }

static void test_full(void **state) {
  (void)state;
  ae_acme_problem p;
  const char *doc = "{\"type\":\"urn:ietf:params:acme:error:rejectedIdentifier\","
                    "\"detail\":\"Order included an identifier for which issuance is forbidden by policy: "
                    "\\\"blocked.example.test\\\"\",\"status\":400}";
  assert_int_equal(parse(doc, &p), 0);
  assert_string_equal(p.type, "urn:ietf:params:acme:error:rejectedIdentifier");
  assert_string_equal(p.detail,
                      "Order included an identifier for which issuance is forbidden by policy: \"blocked.example.test\"");
  assert_int_equal(p.status, 400);
  assert_null(p.subproblems);
  assert_int_equal(ae_acme_problem_retryable(p.type), 0);
  ae_acme_problem_clear(&p);
  assert_null(p.type);
  assert_null(p.detail);
  ae_acme_problem_clear(&p); /* twice is fine */
}

static void test_subproblems(void **state) {
  (void)state;
  ae_acme_problem p;
  const char *doc =
      "{\"type\":\"urn:ietf:params:acme:error:malformed\",\"detail\":\"Some of the identifiers requested were "
      "rejected\",\"subproblems\":["
      "{\"type\":\"urn:ietf:params:acme:error:malformed\",\"detail\":\"Invalid underscore in DNS name\","
      "\"identifier\":{\"type\":\"dns\",\"value\":\"_example.org\"}},"
      "{\"type\":\"urn:ietf:params:acme:error:rejectedIdentifier\",\"detail\":\"This CA will not issue for "
      "example.net\",\"identifier\":{\"type\":\"dns\",\"value\":\"example.net\"}},"
      "42, {\"detail\":\"no type\"}]}";
  assert_int_equal(parse(doc, &p), 0);
  assert_string_equal(p.type, "urn:ietf:params:acme:error:malformed");
  assert_int_equal(p.status, 0);
  assert_non_null(p.subproblems);
  assert_string_equal(p.subproblems, "_example.org: malformed: Invalid underscore in DNS name; "
                                     "example.net: rejectedIdentifier: This CA will not issue for example.net; "
                                     "?: ?: no type");
  ae_acme_problem_clear(&p);

  /* An empty subproblems array is no subproblems. */
  assert_int_equal(parse("{\"type\":\"urn:ietf:params:acme:error:compound\",\"subproblems\":[]}", &p), 0);
  assert_null(p.subproblems);
  ae_acme_problem_clear(&p);

  /* Many subproblems are capped, not overflowing. */
  char *big = malloc(200000);
  size_t used = (size_t)snprintf(big, 200000, "{\"type\":\"x\",\"subproblems\":[");
  for (int i = 0; i < 1000; i++)
    used += (size_t)snprintf(big + used, 200000 - used, "%s{\"type\":\"t\",\"detail\":\"detail number %d\"}",
                             i ? "," : "", i);
  snprintf(big + used, 200000 - used, "]}");
  assert_int_equal(parse(big, &p), 0);
  assert_non_null(p.subproblems);
  assert_true(strlen(p.subproblems) < 4096);
  assert_non_null(strstr(p.subproblems, "detail number 0"));
  ae_acme_problem_clear(&p);
  free(big);
}

static void test_missing_fields(void **state) {
  (void)state;
  ae_acme_problem p;
  /* RFC 7807: no type means about:blank. */
  assert_int_equal(parse("{}", &p), 0);
  assert_string_equal(p.type, "about:blank");
  assert_null(p.detail);
  assert_int_equal(p.status, 0);
  assert_null(p.subproblems);
  ae_acme_problem_clear(&p);

  /* Wrong member types are ignored, not trusted. */
  assert_int_equal(parse("{\"type\":17,\"detail\":[\"x\"],\"status\":\"500\",\"subproblems\":{}}", &p), 0);
  assert_string_equal(p.type, "about:blank");
  assert_null(p.detail);
  assert_int_equal(p.status, 0);
  assert_null(p.subproblems);
  ae_acme_problem_clear(&p);

  assert_int_equal(parse("{\"detail\":\"only detail\",\"status\":503}", &p), 0);
  assert_string_equal(p.type, "about:blank");
  assert_string_equal(p.detail, "only detail");
  assert_int_equal(p.status, 503);
  ae_acme_problem_clear(&p);

  /* Out-of-range status. */
  assert_int_equal(parse("{\"type\":\"a\",\"status\":-4}", &p), 0);
  assert_int_equal(p.status, 0);
  ae_acme_problem_clear(&p);
}

static void test_control_chars_and_length(void **state) {
  (void)state;
  ae_acme_problem p;
  assert_int_equal(parse("{\"type\":\"urn:ietf:params:acme:error:dns\",\"detail\":\"line1\\nline2\\u001b[31m\"}", &p), 0);
  assert_string_equal(p.detail, "line1 line2 [31m");
  ae_acme_problem_clear(&p);

  size_t n = 100000;
  char *doc = malloc(n + 64);
  size_t used = (size_t)snprintf(doc, n + 64, "{\"type\":\"x\",\"detail\":\"");
  memset(doc + used, 'd', n - used - 8);
  used = n - 8;
  snprintf(doc + used, 64, "\"}");
  assert_int_equal(parse(doc, &p), 0);
  assert_non_null(p.detail);
  assert_true(strlen(p.detail) <= 1024);
  ae_acme_problem_clear(&p);
  free(doc);
}

static void test_bad_documents(void **state) {
  (void)state;
  ae_acme_problem p;
  assert_int_equal(parse("not json at all", &p), AE_EPROTO);
  assert_null(p.type);
  assert_int_equal(parse("<html><body>502 Bad Gateway</body></html>", &p), AE_EPROTO);
  assert_int_equal(parse("{\"type\":\"urn:ietf:params:acme:error:badNonce\",\"detail\":\"JWS has an inv", &p),
                   AE_EPROTO);
  assert_null(p.type);
  assert_int_equal(parse("[1,2,3]", &p), AE_EPROTO);
  assert_int_equal(parse("\"string\"", &p), AE_EPROTO);
  assert_int_equal(parse("null", &p), AE_EPROTO);
  assert_int_equal(parse("{\"type\":\"a\"} trailing", &p), AE_EPROTO);
  assert_int_equal(ae_acme_problem_parse(NULL, 0, &p), AE_EPROTO);
  assert_int_equal(ae_acme_problem_parse("{}", 0, &p), AE_EPROTO);
  assert_int_equal(ae_acme_problem_parse("{}", 2, NULL), AE_EINVAL);
  /* Embedded NUL: the length counts, the text is not valid JSON. */
  assert_int_equal(ae_acme_problem_parse("{\"type\":\"a\0\"}", 12, &p), AE_EPROTO);
  /* Larger than the 1 MiB response cap. */
  size_t big = 1024 * 1024 + 16;
  char *doc = malloc(big);
  memset(doc, ' ', big);
  doc[0] = '{';
  doc[big - 1] = '}';
  assert_int_equal(ae_acme_problem_parse(doc, big, &p), AE_EPROTO);
  free(doc);
}

static void test_classification(void **state) {
  (void)state;
  static const struct {
    const char *type;
    int retryable;
  } cases[] = {
      {"urn:ietf:params:acme:error:badNonce", 1},
      {"urn:ietf:params:acme:error:serverInternal", 1},
      {"urn:ietf:params:acme:error:rateLimited", 1},
      {"urn:ietf:params:acme:error:connection", 1},
      {"urn:ietf:params:acme:error:dns", 1},
      {"urn:ietf:params:acme:error:tls", 1},
      {"urn:ietf:params:acme:error:incorrectResponse", 1},
      {"urn:ietf:params:acme:error:unauthorized", 1},
      {"urn:ietf:params:acme:error:accountDoesNotExist", 1},
      {"urn:ietf:params:acme:error:orderNotReady", 1},
      {"urn:ietf:params:acme:error:rejectedIdentifier", 0},
      {"urn:ietf:params:acme:error:unsupportedIdentifier", 0},
      {"urn:ietf:params:acme:error:caa", 0},
      {"urn:ietf:params:acme:error:malformed", 0},
      {"urn:ietf:params:acme:error:badCSR", 0},
      {"urn:ietf:params:acme:error:invalidContact", 0},
      {"urn:ietf:params:acme:error:unsupportedContact", 0},
      {"urn:ietf:params:acme:error:externalAccountRequired", 0},
      {"urn:ietf:params:acme:error:userActionRequired", 0},
      {"urn:ietf:params:acme:error:badRevocationReason", 0},
      {"urn:ietf:params:acme:error:badPublicKey", 0},
      {"urn:ietf:params:acme:error:badSignatureAlgorithm", 0},
      {"urn:ietf:params:acme:error:compound", 0},
      /* short names */
      {"rejectedIdentifier", 0},
      {"caa", 0},
      {"badNonce", 1},
      {"rateLimited", 1},
      /* local problems */
      {"acmedge:ca-unreachable", 1},
      {"acmedge:bad-response", 1},
      {"acmedge:timeout", 1},
      {"acmedge:no-challenge", 0},
      {"acmedge:account-key", 0},
      /* unknown and absent types default to retryable (backoff bounds the cost) */
      {"urn:ietf:params:acme:error:somethingNew", 1},
      {"about:blank", 1},
      {"", 1},
      {NULL, 1},
      /* prefix must match exactly */
      {"urn:ietf:params:acme:error:", 1},
      {"xurn:ietf:params:acme:error:caa", 1},
      {"urn:ietf:params:acme:error:caaX", 1},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    int got = ae_acme_problem_retryable(cases[i].type);
    if (got != cases[i].retryable) fail_msg("type %s: retryable=%d, want %d", cases[i].type ? cases[i].type : "NULL", got, cases[i].retryable);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_full),
      cmocka_unit_test(test_subproblems),
      cmocka_unit_test(test_missing_fields),
      cmocka_unit_test(test_control_chars_and_length),
      cmocka_unit_test(test_bad_documents),
      cmocka_unit_test(test_classification),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
