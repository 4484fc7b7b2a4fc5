/* Sealing private keys for a shared store: round trip, and refusal of a value moved to another
 * location, altered, or opened with another key; config parsing of storage.type/redis. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "../../../src/storage/storage_seal.h"
#include "acmedge/config.h"
#include "acmedge/storage.h"

static const unsigned char K1[32] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16,
                                     17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32};
static const char PEM[] = "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg\n-----END PRIVATE KEY-----\n";

static void test_round_trip(void **state) {
  (void)state;
  char *sealed = NULL, *plain = NULL;
  size_t len = 0;
  ae_err err = {0};
  assert_int_equal(ae_seal(K1, "p{ns}:cert:ca:a.example|key|1", PEM, strlen(PEM), &sealed, &err), 0);
  assert_non_null(strstr(sealed, "aeenc1:"));
  assert_null(strstr(sealed, "PRIVATE KEY"));
  assert_true(ae_seal_is_sealed(sealed, strlen(sealed)));
  assert_int_equal(ae_unseal(K1, "p{ns}:cert:ca:a.example|key|1", sealed, strlen(sealed), &plain, &len, &err), 0);
  assert_int_equal(len, strlen(PEM));
  assert_string_equal(plain, PEM);
  free(plain);
  /* Two seals of the same key differ (random nonce). */
  char *again = NULL;
  assert_int_equal(ae_seal(K1, "p{ns}:cert:ca:a.example|key|1", PEM, strlen(PEM), &again, &err), 0);
  assert_string_not_equal(sealed, again);
  free(again);
  free(sealed);
}

static void test_refusals(void **state) {
  (void)state;
  char *sealed = NULL, *plain = NULL;
  size_t len = 0;
  ae_err err = {0};
  const char *ad = "p{ns}:cert:ca:a.example|key|3";
  assert_int_equal(ae_seal(K1, ad, PEM, strlen(PEM), &sealed, &err), 0);
  /* Another name, field or version. */
  assert_int_equal(ae_unseal(K1, "p{ns}:cert:ca:b.example|key|3", sealed, strlen(sealed), &plain, &len, &err), AE_EPROTO);
  assert_non_null(strstr(err.msg, "b.example"));
  assert_int_equal(ae_unseal(K1, "p{ns}:cert:ca:a.example|meta|3", sealed, strlen(sealed), &plain, &len, &err), AE_EPROTO);
  assert_int_equal(ae_unseal(K1, "p{ns}:cert:ca:a.example|key|2", sealed, strlen(sealed), &plain, &len, &err), AE_EPROTO);
  /* Another key. */
  unsigned char k2[32];
  memcpy(k2, K1, 32);
  k2[31] ^= 1;
  assert_int_equal(ae_unseal(k2, ad, sealed, strlen(sealed), &plain, &len, &err), AE_EPROTO);
  /* One altered character, a truncated value, a plain value. */
  size_t n = strlen(sealed);
  sealed[n - 3] = sealed[n - 3] == 'A' ? 'B' : 'A';
  assert_int_equal(ae_unseal(K1, ad, sealed, n, &plain, &len, &err), AE_EPROTO);
  assert_int_equal(ae_unseal(K1, ad, sealed, 12, &plain, &len, &err), AE_EPROTO);
  assert_int_equal(ae_unseal(K1, ad, PEM, strlen(PEM), &plain, &len, &err), AE_EPROTO);
  assert_false(ae_seal_is_sealed(PEM, strlen(PEM)));
  free(sealed);
}

static int parse(const char *text, ae_config *cfg, ae_err *err) {
  json_error_t je;
  json_t *o = json_loads(text, 0, &je);
  assert_non_null(o);
  int r = ae_storage_config_parse("t.json", o, cfg, err);
  json_decref(o);
  return r;
}

static void test_config(void **state) {
  (void)state;
  ae_config cfg;
  ae_err err = {0};
  memset(&cfg, 0, sizeof(cfg));
  assert_int_equal(parse("{\"type\": \"fs\"}", &cfg, &err), 0);
  assert_int_equal(cfg.storage_redis, 0);
  assert_null(cfg.redis);
  assert_int_equal(parse("{\"type\": \"redis\"}", &cfg, &err), AE_EINVAL);
  assert_non_null(strstr(err.msg, "storage.redis.key_file"));
  ae_storage_config_free(&cfg);
  memset(&cfg, 0, sizeof(cfg));
  assert_int_equal(parse("{\"type\": \"redis\", \"redis\": {\"encrypt_keys\": false, \"address\": \"[::1]:7000\", "
                         "\"db\": 3, \"prefix\": \"edge-1\", \"lock_lease_ms\": 3000}}",
                         &cfg, &err),
                   0);
  assert_int_equal(cfg.storage_redis, 1);
  assert_string_equal(cfg.redis->host, "::1");
  assert_int_equal(cfg.redis->port, 7000);
  assert_int_equal(cfg.redis->db, 3);
  assert_int_equal(cfg.redis->lock_lease_ms, 3000);
  assert_string_equal(cfg.redis->prefix, "edge-1");
  ae_storage_config_free(&cfg);
  const char *bad[][2] = {
      {"{\"type\": 1}", "storage.type"},
      {"{\"type\": \"redis\", \"redis\": {\"encrypt_keys\": false, \"address\": \"redis.local:6379\"}}", "storage.redis.address"},
      {"{\"type\": \"redis\", \"redis\": {\"encrypt_keys\": false, \"address\": \"127.0.0.1:0\"}}", "storage.redis.address"},
      {"{\"type\": \"redis\", \"redis\": {\"encrypt_keys\": false, \"address\": \"unix:rel\"}}", "storage.redis.address"},
      {"{\"type\": \"redis\", \"redis\": {\"encrypt_keys\": false, \"db\": 16}}", "storage.redis.db"},
      {"{\"type\": \"redis\", \"redis\": {\"encrypt_keys\": false, \"prefix\": \"a b\"}}", "storage.redis.prefix"},
      {"{\"type\": \"redis\", \"redis\": {\"encrypt_keys\": false, \"lock_lease_ms\": 5}}", "storage.redis.lock_lease_ms"},
      {"{\"type\": \"redis\", \"redis\": {\"encrypt_keys\": false, \"bogus\": 1}}", "storage.redis.bogus"},
      {"{\"type\": \"redis\", \"redis\": {\"key_file\": \"/nonexistent/k\"}}", "storage.redis.key_file"},
      {"{\"type\": \"redis\", \"redis\": {\"encrypt_keys\": false, \"password_file\": \"/nonexistent/p\"}}",
       "storage.redis.password_file"},
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    memset(&cfg, 0, sizeof(cfg));
    err.msg[0] = '\0';
    assert_int_equal(parse(bad[i][0], &cfg, &err), AE_EINVAL);
    if (!strstr(err.msg, bad[i][1]))
      fail_msg("%s: error '%s' does not name %s", bad[i][0], err.msg, bad[i][1]);
    ae_storage_config_free(&cfg);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_round_trip),
      cmocka_unit_test(test_refusals),
      cmocka_unit_test(test_config),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
