/* Config loader: design §4 example, defaults, every validation message, refcount, helpers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "acmedge/config.h"
#include "acmedge/log.h"

static char g_dir[64];
static char g_crt[128], g_key[128], g_ca[128], g_hook[128], g_noexec[128], g_keydir[128];

static void write_text(const char *path, const char *text, mode_t mode) {
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  fputs(text, f);
  fclose(f);
  assert_int_equal(chmod(path, mode), 0);
}

static int group_setup(void **state) {
  (void)state;
  snprintf(g_dir, sizeof(g_dir), "/tmp/ae_test_config.XXXXXX");
  if (!mkdtemp(g_dir))
    return -1;
  snprintf(g_crt, sizeof(g_crt), "%s/default.crt", g_dir);
  snprintf(g_key, sizeof(g_key), "%s/default.key", g_dir);
  snprintf(g_ca, sizeof(g_ca), "%s/ca.pem", g_dir);
  snprintf(g_hook, sizeof(g_hook), "%s/hook.sh", g_dir);
  snprintf(g_noexec, sizeof(g_noexec), "%s/noexec.sh", g_dir);
  snprintf(g_keydir, sizeof(g_keydir), "%s/keydir", g_dir);
  write_text(g_crt, "cert\n", 0644);
  write_text(g_key, "key\n", 0600);
  write_text(g_ca, "ca\n", 0644);
  write_text(g_hook, "#!/bin/sh\nexit 0\n", 0755);
  write_text(g_noexec, "#!/bin/sh\nexit 0\n", 0644);
  if (mkdir(g_keydir, 0700) != 0)
    return -1;
  return 0;
}

static int group_teardown(void **state) {
  (void)state;
  unlink(g_crt);
  unlink(g_key);
  unlink(g_ca);
  unlink(g_hook);
  unlink(g_noexec);
  rmdir(g_keydir);
  rmdir(g_dir);
  return 0;
}

/* Parses json as "x.json" and returns the snapshot (asserting success). */
static ae_config *parse_ok(const char *json) {
  ae_config *cfg = NULL;
  ae_err err = {0};
  int rc = ae_config_parse("x.json", json, &cfg, &err);
  if (rc != 0)
    fail_msg("unexpected error: %s (for %s)", err.msg, json);
  assert_non_null(cfg);
  return cfg;
}

/* Asserts that json is rejected with exactly the message "x.json: " + msg. */
static void expect_err(const char *json, const char *msg) {
  ae_config *cfg = NULL;
  ae_err err = {0};
  char want[600];
  snprintf(want, sizeof(want), "x.json: %s", msg);
  int rc = ae_config_parse("x.json", json, &cfg, &err);
  if (rc == 0)
    fail_msg("accepted but expected '%s': %s", want, json);
  assert_null(cfg);
  assert_int_equal(rc, AE_EINVAL);
  if (strcmp(err.msg, want) != 0)
    fail_msg("message mismatch\n  got:  %s\n  want: %s", err.msg, want);
}

/* Small on-demand policy fragment that passes the open-proxy check. */
#define OD "\"on_demand\":{\"allow\":[\"*\"]}"

static void test_design_example(void **state) {
  (void)state;
  char json[4096];
  snprintf(json, sizeof(json),
           "{\n"
           "  \"listen\":  { \"https\": \"0.0.0.0:443\", \"http\": \"0.0.0.0:80\", \"admin\": \"127.0.0.1:2020\" },\n"
           "  \"workers\": 0,\n"
           "  \"storage\": { \"path\": \"/var/lib/acmedge\" },\n"
           "  \"default_cert\": { \"cert\": \"%s\", \"key\": \"%s\" },\n"
           "  \"acme\": {\n"
           "    \"directory\": \"https://localhost:14000/dir\",\n"
           "    \"ca_bundle\": \"%s\",\n"
           "    \"email\": \"ops@example.com\",\n"
           "    \"challenges\": [\"http-01\", \"tls-alpn-01\"],\n"
           "    \"key_type\": \"ecdsa-p256\",\n"
           "    \"eab\": null\n"
           "  },\n"
           "  \"on_demand\": {\n"
           "    \"enabled\": true,\n"
           "    \"first_handshake\": \"default\",\n"
           "    \"wait_timeout_ms\": 8000,\n"
           "    \"allow\": [\"*.example.com\", \"example.org\"],\n"
           "    \"ask\": null,\n"
           "    \"max_concurrent\": 8,\n"
           "    \"rate\": { \"per_minute\": 60, \"burst\": 60, \"per_3h\": 300 },\n"
           "    \"backoff\": { \"initial_s\": 60, \"max_s\": 86400 }\n"
           "  },\n"
           "  \"routes\": [\n"
           "    { \"hosts\": [\"*.example.com\"], \"upstream\": \"127.0.0.1:8080\" },\n"
           "    { \"hosts\": [\"*\"], \"upstream\": \"127.0.0.1:8081\" }\n"
           "  ],\n"
           "  \"redirect_http\": true,\n"
           "  \"events\": { \"hook\": null, \"buffer\": 1024 },\n"
           "  \"log\": { \"level\": \"info\", \"format\": \"text\" }\n"
           "}\n",
           g_crt, g_key, g_ca);
  ae_config *cfg = parse_ok(json);
  assert_string_equal(cfg->path, "x.json");
  assert_string_equal(cfg->listen_https, "0.0.0.0:443");
  assert_string_equal(cfg->listen_http, "0.0.0.0:80");
  assert_string_equal(cfg->listen_admin, "127.0.0.1:2020");
  assert_null(cfg->admin_token);
  assert_int_equal(cfg->workers, 0);
  assert_string_equal(cfg->storage_path, "/var/lib/acmedge");
  assert_string_equal(cfg->default_cert, g_crt);
  assert_string_equal(cfg->default_key, g_key);
  assert_string_equal(cfg->acme.directory, "https://localhost:14000/dir");
  assert_string_equal(cfg->acme.ca_bundle, g_ca);
  assert_string_equal(cfg->acme.email, "ops@example.com");
  assert_true(cfg->acme.http01);
  assert_true(cfg->acme.tlsalpn01);
  assert_false(cfg->acme.prefer_tlsalpn01);
  assert_false(cfg->acme.key_rsa);
  assert_null(cfg->acme.eab_kid);
  assert_true(cfg->on_demand.enabled);
  assert_false(cfg->on_demand.first_wait);
  assert_int_equal(cfg->on_demand.wait_timeout_ms, 8000);
  assert_int_equal(cfg->on_demand.nallow, 2);
  assert_string_equal(cfg->on_demand.allow[0], "*.example.com");
  assert_string_equal(cfg->on_demand.allow[1], "example.org");
  assert_null(cfg->on_demand.ask);
  assert_int_equal(cfg->on_demand.max_concurrent, 8);
  assert_true(cfg->on_demand.rate_per_minute == 60.0);
  assert_int_equal(cfg->on_demand.rate_burst, 60);
  assert_int_equal(cfg->on_demand.rate_per_3h, 300);
  assert_int_equal(cfg->on_demand.backoff_initial_s, 60);
  assert_int_equal(cfg->on_demand.backoff_max_s, 86400);
  assert_int_equal(cfg->nroutes, 2);
  assert_int_equal(cfg->routes[0].nhosts, 1);
  assert_string_equal(cfg->routes[0].hosts[0], "*.example.com");
  assert_string_equal(cfg->routes[0].upstream, "127.0.0.1:8080");
  assert_false(cfg->routes[0].plain_http);
  assert_string_equal(cfg->routes[1].hosts[0], "*");
  assert_string_equal(cfg->routes[1].upstream, "127.0.0.1:8081");
  assert_true(cfg->redirect_http);
  assert_null(cfg->events.hook);
  assert_int_equal(cfg->events.buffer, 1024);
  assert_int_equal(cfg->log.level, AE_LOG_INFO);
  assert_false(cfg->log.json);
  ae_config_free(cfg);
}

static void test_defaults(void **state) {
  (void)state;
  ae_config *cfg = parse_ok("{" OD "}");
  assert_string_equal(cfg->listen_https, "0.0.0.0:443");
  assert_string_equal(cfg->listen_http, "0.0.0.0:80");
  assert_string_equal(cfg->listen_admin, "127.0.0.1:2020");
  assert_int_equal(cfg->workers, 0);
  assert_string_equal(cfg->storage_path, "/var/lib/acmedge");
  assert_string_equal(cfg->default_cert, "certs/default.crt");
  assert_string_equal(cfg->default_key, "certs/default.key");
  assert_string_equal(cfg->acme.directory, "https://localhost:14000/dir");
  assert_string_equal(cfg->acme.ca_bundle, "certs/pebble.minica.pem");
  assert_null(cfg->acme.email);
  assert_true(cfg->acme.http01 && cfg->acme.tlsalpn01);
  assert_false(cfg->acme.key_rsa);
  assert_true(cfg->on_demand.enabled);
  assert_false(cfg->on_demand.first_wait);
  assert_int_equal(cfg->on_demand.wait_timeout_ms, 8000);
  assert_int_equal(cfg->on_demand.ask_timeout_ms, 5000);
  assert_int_equal(cfg->on_demand.max_concurrent, 8);
  assert_int_equal(cfg->on_demand.max_queue, 1000);
  assert_int_equal(cfg->on_demand.max_held, 1000);
  assert_false(cfg->on_demand.deny_alert);
  assert_true(cfg->on_demand.rate_per_minute == 60.0);
  assert_int_equal(cfg->on_demand.rate_burst, 60);
  assert_int_equal(cfg->on_demand.rate_per_3h, 300);
  assert_int_equal(cfg->on_demand.backoff_initial_s, 60);
  assert_int_equal(cfg->on_demand.backoff_max_s, 86400);
  assert_int_equal(cfg->nroutes, 0);
  assert_int_equal(cfg->ntrusted_proxies, 0);
  assert_int_equal(cfg->proxy.header_timeout_ms, 10000);
  assert_int_equal(cfg->proxy.idle_timeout_ms, 60000);
  assert_int_equal(cfg->proxy.connect_timeout_ms, 5000);
  assert_int_equal(cfg->proxy.response_timeout_ms, 60000);
  assert_int_equal(cfg->proxy.total_timeout_ms, 0);
  assert_int_equal(cfg->proxy.max_header_bytes, 32768);
  assert_int_equal(cfg->proxy.max_headers, 100);
  assert_int_equal(cfg->proxy.pool_idle_max, 32);
  assert_int_equal(cfg->proxy.pool_idle_timeout_ms, 60000);
  assert_int_equal(cfg->tls.handshake_timeout_ms, 10000);
  assert_int_equal(cfg->tls.idle_timeout_ms, 60000);
  assert_int_equal(cfg->tls.max_connections, 20000);
  assert_true(cfg->redirect_http);
  assert_null(cfg->events.hook);
  assert_int_equal(cfg->events.nhook_args, 0);
  assert_null(cfg->events.hook_types);
  assert_int_equal(cfg->events.hook_timeout_ms, 10000);
  assert_int_equal(cfg->events.hook_max_concurrent, 4);
  assert_int_equal(cfg->events.buffer, 1024);
  assert_int_equal(cfg->log.level, AE_LOG_INFO);
  assert_false(cfg->log.json);
  ae_config_free(cfg);
}

static void test_extensions(void **state) {
  (void)state;
  char json[2048];
  snprintf(json, sizeof(json),
           "{\"listen\":{\"https\":\"[::1]:8443\",\"http\":null,\"admin\":\"\"},"
           "\"admin\":{\"token\":\"s3cret-token\"},"
           "\"acme\":{\"directory\":\"http://127.0.0.1:14000/dir\",\"challenges\":[\"tls-alpn-01\",\"http-01\"],"
           "\"key_type\":\"rsa-2048\",\"eab\":{\"kid\":\"kid-1\",\"hmac_key\":\"aGVsbG8_-w\"}},"
           "\"on_demand\":{\"enabled\":true,\"first_handshake\":\"wait\",\"allow\":[],\"ask\":\"http://127.0.0.1:9/ask\","
           "\"ask_timeout_ms\":250,\"max_queue\":5,\"max_held\":7,\"deny\":\"alert\",\"rate\":{\"per_minute\":0.5}},"
           "\"routes\":[{\"hosts\":[\"API.Example.com\",\"*.x.test\"],\"upstream\":\"backend.internal:9000\",\"plain_http\":true}],"
           "\"trusted_proxies\":[\"10.0.0.1\",\"::1\"],"
           "\"proxy\":{\"header_timeout_ms\":1,\"idle_timeout_ms\":2,\"connect_timeout_ms\":3,\"response_timeout_ms\":4,"
           "\"total_timeout_ms\":5,\"max_header_bytes\":2048,\"max_headers\":6,\"pool_idle_max\":0,\"pool_idle_timeout_ms\":8},"
           "\"tls\":{\"handshake_timeout_ms\":9,\"idle_timeout_ms\":10,\"max_connections\":11},"
           "\"redirect_http\":false,"
           "\"events\":{\"hook\":[\"%s\",\"--flag\",\"two\"],\"hook_types\":[\"cert_issued\",\"issuance_failed\"],"
           "\"hook_timeout_ms\":12,\"hook_max_concurrent\":13,\"buffer\":14},"
           "\"log\":{\"level\":\"debug\",\"format\":\"json\"}}",
           g_hook);
  ae_config *cfg = parse_ok(json);
  assert_string_equal(cfg->listen_https, "[::1]:8443");
  assert_null(cfg->listen_http);
  assert_null(cfg->listen_admin);
  assert_string_equal(cfg->admin_token, "s3cret-token");
  assert_string_equal(cfg->acme.directory, "http://127.0.0.1:14000/dir");
  /* An explicit directory drops the Pebble trust anchor default: system store. */
  assert_null(cfg->acme.ca_bundle);
  assert_true(cfg->acme.http01 && cfg->acme.tlsalpn01 && cfg->acme.prefer_tlsalpn01);
  assert_true(cfg->acme.key_rsa);
  assert_string_equal(cfg->acme.eab_kid, "kid-1");
  assert_string_equal(cfg->acme.eab_hmac_key, "aGVsbG8_-w");
  assert_true(cfg->on_demand.first_wait);
  assert_int_equal(cfg->on_demand.nallow, 0);
  assert_string_equal(cfg->on_demand.ask, "http://127.0.0.1:9/ask");
  assert_int_equal(cfg->on_demand.ask_timeout_ms, 250);
  assert_int_equal(cfg->on_demand.max_queue, 5);
  assert_int_equal(cfg->on_demand.max_held, 7);
  assert_true(cfg->on_demand.deny_alert);
  assert_true(cfg->on_demand.rate_per_minute == 0.5);
  assert_int_equal(cfg->nroutes, 1);
  assert_int_equal(cfg->routes[0].nhosts, 2);
  assert_string_equal(cfg->routes[0].hosts[0], "api.example.com"); /* stored lower-case */
  assert_string_equal(cfg->routes[0].upstream, "backend.internal:9000");
  assert_true(cfg->routes[0].plain_http);
  assert_int_equal(cfg->ntrusted_proxies, 2);
  assert_string_equal(cfg->trusted_proxies[1], "::1");
  assert_int_equal(cfg->proxy.header_timeout_ms, 1);
  assert_int_equal(cfg->proxy.idle_timeout_ms, 2);
  assert_int_equal(cfg->proxy.connect_timeout_ms, 3);
  assert_int_equal(cfg->proxy.response_timeout_ms, 4);
  assert_int_equal(cfg->proxy.total_timeout_ms, 5);
  assert_int_equal(cfg->proxy.max_header_bytes, 2048);
  assert_int_equal(cfg->proxy.max_headers, 6);
  assert_int_equal(cfg->proxy.pool_idle_max, 0);
  assert_int_equal(cfg->proxy.pool_idle_timeout_ms, 8);
  assert_int_equal(cfg->tls.handshake_timeout_ms, 9);
  assert_int_equal(cfg->tls.idle_timeout_ms, 10);
  assert_int_equal(cfg->tls.max_connections, 11);
  assert_false(cfg->redirect_http);
  assert_string_equal(cfg->events.hook, g_hook);
  assert_int_equal(cfg->events.nhook_args, 2);
  assert_string_equal(cfg->events.hook_args[0], "--flag");
  assert_string_equal(cfg->events.hook_args[1], "two");
  assert_int_equal(cfg->events.nhook_types, 2);
  assert_string_equal(cfg->events.hook_types[1], "issuance_failed");
  assert_int_equal(cfg->events.hook_timeout_ms, 12);
  assert_int_equal(cfg->events.hook_max_concurrent, 13);
  assert_int_equal(cfg->events.buffer, 14);
  assert_int_equal(cfg->log.level, AE_LOG_DEBUG);
  assert_true(cfg->log.json);
  ae_config_free(cfg);

  /* String hook, unix admin socket, allow ["*"] with on_demand disabled. */
  snprintf(json, sizeof(json),
           "{\"listen\":{\"admin\":\"unix:/run/acmedge.sock\"},\"events\":{\"hook\":\"%s\"},"
           "\"on_demand\":{\"enabled\":false}}",
           g_hook);
  cfg = parse_ok(json);
  assert_string_equal(cfg->listen_admin, "unix:/run/acmedge.sock");
  assert_string_equal(cfg->events.hook, g_hook);
  assert_int_equal(cfg->events.nhook_args, 0);
  assert_false(cfg->on_demand.enabled);
  ae_config_free(cfg);

  /* Non-loopback admin is fine with a token; a bare absolute path is a unix socket. */
  ae_config_free(parse_ok("{\"listen\":{\"admin\":\"0.0.0.0:2020\"},\"admin\":{\"token\":\"t0k3n\"}," OD "}"));
  ae_config_free(parse_ok("{\"listen\":{\"admin\":\"/tmp/admin.sock\"}," OD "}"));
  ae_config_free(parse_ok("{\"listen\":{\"admin\":\"[::1]:2020\"}," OD "}"));
  /* ask alone decides when allow is empty. */
  ae_config_free(parse_ok("{\"on_demand\":{\"ask\":\"https://127.0.0.1:1/check\"}}"));
}

static void test_unknown_keys(void **state) {
  (void)state;
  expect_err("{\"foo\":1}", "foo: unknown key");
  expect_err("{\"listen\":{\"htps\":\"0.0.0.0:443\"}}", "listen.htps: unknown key");
  expect_err("{\"admin\":{\"tokn\":\"x\"}}", "admin.tokn: unknown key");
  expect_err("{\"storage\":{\"dir\":\"/x\"}}", "storage.dir: unknown key");
  expect_err("{\"default_cert\":{\"chain\":\"x\"}}", "default_cert.chain: unknown key");
  expect_err("{\"acme\":{\"url\":\"x\"}}", "acme.url: unknown key");
  expect_err("{\"acme\":{\"eab\":{\"kid\":\"a\",\"hmac_key\":\"b\",\"alg\":\"HS256\"}}}", "acme.eab.alg: unknown key");
  expect_err("{\"on_demand\":{\"allow\":[\"*\"],\"allowed\":[]}}", "on_demand.allowed: unknown key");
  expect_err("{\"on_demand\":{\"allow\":[\"*\"],\"rate\":{\"per_hour\":1}}}", "on_demand.rate.per_hour: unknown key");
  expect_err("{\"on_demand\":{\"allow\":[\"*\"],\"backoff\":{\"factor\":2}}}", "on_demand.backoff.factor: unknown key");
  expect_err("{" OD ",\"routes\":[{\"hosts\":[\"*\"],\"upstream\":\"127.0.0.1:1\"},"
             "{\"hosts\":[\"*\"],\"upstream\":\"127.0.0.1:2\",\"weight\":3}]}",
             "routes[1].weight: unknown key");
  expect_err("{" OD ",\"proxy\":{\"read_timeout_ms\":1}}", "proxy.read_timeout_ms: unknown key");
  expect_err("{" OD ",\"tls\":{\"ciphers\":\"x\"}}", "tls.ciphers: unknown key");
  expect_err("{" OD ",\"events\":{\"hooks\":null}}", "events.hooks: unknown key");
  expect_err("{" OD ",\"log\":{\"path\":\"x\"}}", "log.path: unknown key");
  expect_err("{" OD ",\"log\":{\"file\":7}}", "log.file: expected a string or null");
}

static void test_ocsp_section(void **state) {
  (void)state;
  ae_config *cfg = parse_ok("{" OD "}");
  assert_int_equal(cfg->ocsp.enabled, 1); /* on by default */
  ae_config_free(cfg);
  cfg = parse_ok("{" OD ",\"ocsp\":{\"enabled\":false}}");
  assert_int_equal(cfg->ocsp.enabled, 0);
  ae_config_free(cfg);
  expect_err("{" OD ",\"ocsp\":{\"enabled\":\"yes\"}}", "ocsp.enabled: expected true or false");
  expect_err("{" OD ",\"ocsp\":true}", "ocsp: expected an object");
  expect_err("{" OD ",\"ocsp\":{\"refresh\":1}}", "ocsp.refresh: unknown key");
}

static void test_type_errors(void **state) {
  (void)state;
  expect_err("[]", "expected a JSON object at the top level");
  expect_err("{\"listen\":\"0.0.0.0:443\"}", "listen: expected an object");
  expect_err("{\"listen\":{\"https\":443}}", "listen.https: expected a string or null");
  expect_err("{\"workers\":\"4\"}", "workers: must be an integer between 0 and 256");
  expect_err("{\"workers\":2.5}", "workers: must be an integer between 0 and 256");
  expect_err("{\"storage\":{\"path\":\"\"}}", "storage.path: must not be empty");
  expect_err("{\"storage\":{\"path\":null}}", "storage.path: expected a string");
  expect_err("{\"redirect_http\":\"yes\"}", "redirect_http: expected true or false");
  expect_err("{\"on_demand\":{\"enabled\":1}}", "on_demand.enabled: expected true or false");
  expect_err("{\"on_demand\":{\"allow\":\"*\"}}", "on_demand.allow: expected an array of strings");
  expect_err("{\"on_demand\":{\"allow\":[\"*\",7]}}", "on_demand.allow[1]: expected a string");
  expect_err("{\"routes\":{}}", "routes: expected an array");
  expect_err("{\"routes\":[\"127.0.0.1:1\"]}", "routes[0]: expected an object");
  expect_err("{" OD ",\"trusted_proxies\":\"10.0.0.1\"}", "trusted_proxies: expected an array of strings");
  expect_err("{" OD ",\"events\":{\"hook\":5}}", "events.hook: expected a program path, an array [path, args...] or null");
  expect_err("{\"acme\":{\"eab\":\"kid\"}}", "acme.eab: expected an object or null");
}

static void test_range_errors(void **state) {
  (void)state;
  expect_err("{\"workers\":257}", "workers: must be an integer between 0 and 256");
  expect_err("{\"workers\":-1}", "workers: must be an integer between 0 and 256");
  expect_err("{\"on_demand\":{\"allow\":[\"*\"],\"rate\":{\"per_minute\":0}}}",
             "on_demand.rate.per_minute: must be a positive number");
  expect_err("{\"on_demand\":{\"allow\":[\"*\"],\"rate\":{\"per_minute\":-3}}}",
             "on_demand.rate.per_minute: must be a positive number");
  expect_err("{\"on_demand\":{\"allow\":[\"*\"],\"rate\":{\"per_minute\":\"60\"}}}",
             "on_demand.rate.per_minute: must be a positive number");
  expect_err("{\"on_demand\":{\"allow\":[\"*\"],\"rate\":{\"burst\":0}}}",
             "on_demand.rate.burst: must be an integer between 1 and 1000000");
  expect_err("{\"on_demand\":{\"allow\":[\"*\"],\"max_concurrent\":0}}",
             "on_demand.max_concurrent: must be an integer between 1 and 1024");
  expect_err("{\"on_demand\":{\"allow\":[\"*\"],\"wait_timeout_ms\":0}}",
             "on_demand.wait_timeout_ms: must be an integer between 1 and 600000");
  expect_err("{\"on_demand\":{\"allow\":[\"*\"],\"backoff\":{\"initial_s\":100,\"max_s\":10}}}",
             "on_demand.backoff.initial_s: must not exceed on_demand.backoff.max_s");
  expect_err("{" OD ",\"events\":{\"buffer\":0}}", "events.buffer: must be an integer between 1 and 1000000");
  expect_err("{" OD ",\"events\":{\"buffer\":1000001}}", "events.buffer: must be an integer between 1 and 1000000");
  expect_err("{" OD ",\"proxy\":{\"max_header_bytes\":100}}",
             "proxy.max_header_bytes: must be an integer between 1024 and 1048576");
  expect_err("{" OD ",\"tls\":{\"handshake_timeout_ms\":0}}",
             "tls.handshake_timeout_ms: must be an integer between 1 and 600000");
  expect_err("{" OD ",\"events\":{\"hook_max_concurrent\":0}}",
             "events.hook_max_concurrent: must be an integer between 1 and 1024");
}

static void test_enum_errors(void **state) {
  (void)state;
  expect_err("{" OD ",\"log\":{\"level\":\"loud\"}}", "log.level: must be \"debug\", \"info\", \"warn\" or \"error\"");
  expect_err("{" OD ",\"log\":{\"format\":\"xml\"}}", "log.format: must be \"text\" or \"json\"");
  expect_err("{\"acme\":{\"key_type\":\"rsa-4096\"}}", "acme.key_type: must be \"ecdsa-p256\" or \"rsa-2048\"");
  expect_err("{\"on_demand\":{\"allow\":[\"*\"],\"first_handshake\":\"later\"}}",
             "on_demand.first_handshake: must be \"default\" or \"wait\"");
  expect_err("{\"on_demand\":{\"allow\":[\"*\"],\"deny\":\"drop\"}}", "on_demand.deny: must be \"default\" or \"alert\"");
  expect_err("{\"acme\":{\"challenges\":[]}}",
             "acme.challenges: must be a non-empty array of \"http-01\" and/or \"tls-alpn-01\"");
  expect_err("{\"acme\":{\"challenges\":[\"http-01\",\"dns-01\"]}}",
             "acme.challenges[1]: must be \"http-01\" or \"tls-alpn-01\"");
  expect_err("{\"acme\":{\"challenges\":[\"http-01\",\"http-01\"]}}", "acme.challenges[1]: duplicate challenge type");
  expect_err("{" OD ",\"events\":{\"hook_types\":[\"Cert-Issued\"]}}",
             "events.hook_types[0]: invalid event type 'Cert-Issued'");
}

static void test_address_errors(void **state) {
  (void)state;
  expect_err("{\"listen\":{\"https\":\"nope\"}}", "listen.https: expected IP:port or [IPv6]:port");
  expect_err("{\"listen\":{\"http\":\"127.0.0.1:0\"}}", "listen.http: expected IP:port or [IPv6]:port");
  expect_err("{\"listen\":{\"https\":\"example.com:443\"}}", "listen.https: expected IP:port or [IPv6]:port");
  expect_err("{\"listen\":{\"admin\":\"localhost\"}}", "listen.admin: expected IP:port, [IPv6]:port, unix:/path or /path");
  expect_err("{\"listen\":{\"admin\":\"unix:relative.sock\"}}",
             "listen.admin: unix socket path must be absolute and shorter than 108 bytes");
  expect_err("{\"listen\":{\"https\":\"127.0.0.1:8443\",\"http\":\"127.0.0.1:8443\"}," OD "}",
             "listen.http: same address as listen.https");
  expect_err("{\"listen\":{\"http\":\"127.0.0.1:2020\"}," OD "}", "listen.admin: same address as another listener");
  expect_err("{\"listen\":{\"admin\":\"0.0.0.0:2020\"}}", "listen.admin: non-loopback address requires admin.token");
  expect_err("{\"listen\":{\"admin\":\"[::]:2020\"}}", "listen.admin: non-loopback address requires admin.token");
  expect_err("{" OD ",\"admin\":{\"token\":\"has space\"}}", "admin.token: must be printable ASCII without spaces");
  expect_err("{" OD ",\"routes\":[{\"hosts\":[\"*\"],\"upstream\":\"127.0.0.1:1\"},{\"hosts\":[\"a.test\"],\"upstream\":\"nohost\"}]}",
             "routes[1].upstream: expected host:port");
  expect_err("{" OD ",\"routes\":[{\"hosts\":[\"*\"],\"upstream\":\"127.0.0.1:65536\"}]}",
             "routes[0].upstream: expected host:port");
  expect_err("{" OD ",\"routes\":[{\"hosts\":[\"*\"]}]}", "routes[0].upstream: required");
  expect_err("{" OD ",\"routes\":[{\"upstream\":\"127.0.0.1:1\"}]}", "routes[0].hosts: required");
  expect_err("{" OD ",\"routes\":[{\"hosts\":[],\"upstream\":\"127.0.0.1:1\"}]}",
             "routes[0].hosts: must list at least one host pattern");
  expect_err("{" OD ",\"routes\":[{\"hosts\":[\"a b\"],\"upstream\":\"127.0.0.1:1\"}]}",
             "routes[0].hosts[0]: invalid host pattern 'a b' (expected a host name, \"*.suffix\" or \"*\")");
  expect_err("{\"on_demand\":{\"allow\":[\"*.*.example.com\"]}}",
             "on_demand.allow[0]: invalid host pattern '*.*.example.com' (expected a host name, \"*.suffix\" or \"*\")");
  expect_err("{\"on_demand\":{\"allow\":[\"-bad.example.com\"]}}",
             "on_demand.allow[0]: invalid host pattern '-bad.example.com' (expected a host name, \"*.suffix\" or \"*\")");
  expect_err("{" OD ",\"trusted_proxies\":[\"10.0.0.1\",\"proxy.local\"]}", "trusted_proxies[1]: expected an IP address or CIDR range");
  expect_err("{" OD ",\"trusted_proxies\":[\"10.0.0.0/33\"]}", "trusted_proxies[0]: bad prefix length in '10.0.0.0/33'");
  expect_err("{" OD ",\"trusted_proxies\":[\"10.0.0.0/\"]}", "trusted_proxies[0]: bad prefix length in '10.0.0.0/'");
  expect_err("{\"on_demand\":{\"ask\":\"ftp://127.0.0.1/ask\"}}", "on_demand.ask: must be an http or https URL");
  expect_err("{\"on_demand\":{\"ask\":\"not a url\"}}", "on_demand.ask: must be an http or https URL");
  expect_err("{" OD ",\"acme\":{\"directory\":\"http://acme.example.com/dir\"}}",
             "acme.directory: must be an https URL (http only for a loopback host)");
  expect_err("{" OD ",\"acme\":{\"directory\":\"https://\"}}",
             "acme.directory: must be an https URL (http only for a loopback host)");
  expect_err("{" OD ",\"acme\":{\"email\":\"ops.example.com\"}}", "acme.email: expected an email address");
  expect_err("{" OD ",\"acme\":{\"eab\":{\"kid\":\"k\"}}}", "acme.eab.hmac_key: required when eab is set");
  expect_err("{" OD ",\"acme\":{\"eab\":{\"kid\":\"k\",\"hmac_key\":\"a+b/\"}}}", "acme.eab.hmac_key: must be base64url");
}

static void test_open_on_demand(void **state) {
  (void)state;
  const char *msg = "on_demand.allow: empty allow and no ask would issue for any name; set \"allow\": [\"*\"] explicitly";
  expect_err("{}", msg);
  expect_err("{\"on_demand\":{}}", msg);
  expect_err("{\"on_demand\":{\"allow\":[],\"ask\":\"\"}}", msg);
  expect_err("{\"on_demand\":{\"allow\":null,\"ask\":null}}", msg);
}

static void test_file_errors(void **state) {
  (void)state;
  char json[1024], want[600];
  char missing[160];
  snprintf(missing, sizeof(missing), "%s/missing.pem", g_dir);

  /* Neither file exists: generated at first start. */
  snprintf(json, sizeof(json), "{" OD ",\"default_cert\":{\"cert\":\"%s/none.crt\",\"key\":\"%s/none.key\"}}", g_dir,
           g_dir);
  ae_config_free(parse_ok(json));

  snprintf(json, sizeof(json), "{" OD ",\"default_cert\":{\"cert\":\"%s\",\"key\":\"%s\"}}", g_crt, missing);
  snprintf(want, sizeof(want), "default_cert.key: %s: No such file or directory (the certificate file exists)", missing);
  expect_err(json, want);

  /* A key without its certificate: while young, another instance writing the generated pair
   * (start-up waits for it); once older than that, a mistake. */
  snprintf(json, sizeof(json), "{" OD ",\"default_cert\":{\"cert\":\"%s\",\"key\":\"%s\"}}", missing, g_key);
  struct timespec now_times[2] = {{0, UTIME_NOW}, {0, UTIME_NOW}};
  assert_int_equal(utimensat(AT_FDCWD, g_key, now_times, 0), 0);
  ae_config_free(parse_ok(json));
  struct timespec old_times[2] = {{time(NULL) - 60, 0}, {time(NULL) - 60, 0}};
  assert_int_equal(utimensat(AT_FDCWD, g_key, old_times, 0), 0);
  snprintf(want, sizeof(want), "default_cert.cert: %s: No such file or directory (the key file exists)", missing);
  expect_err(json, want);

  /* A key path that cannot be read as a file (works as root, unlike chmod 000). */
  snprintf(json, sizeof(json), "{" OD ",\"default_cert\":{\"cert\":\"%s\",\"key\":\"%s\"}}", g_crt, g_keydir);
  snprintf(want, sizeof(want), "default_cert.key: %s: not a regular file", g_keydir);
  expect_err(json, want);

  if (geteuid() != 0) {
    char locked[160];
    snprintf(locked, sizeof(locked), "%s/locked.key", g_dir);
    write_text(locked, "key\n", 0000);
    snprintf(json, sizeof(json), "{" OD ",\"default_cert\":{\"cert\":\"%s\",\"key\":\"%s\"}}", g_crt, locked);
    snprintf(want, sizeof(want), "default_cert.key: %s: Permission denied", locked);
    expect_err(json, want);
    unlink(locked);
  }

  snprintf(json, sizeof(json), "{" OD ",\"acme\":{\"ca_bundle\":\"%s\"}}", missing);
  snprintf(want, sizeof(want), "acme.ca_bundle: %s: No such file or directory", missing);
  expect_err(json, want);

  snprintf(json, sizeof(json), "{" OD ",\"events\":{\"hook\":\"%s\"}}", g_noexec);
  snprintf(want, sizeof(want), "events.hook: %s: not executable", g_noexec);
  expect_err(json, want);

  snprintf(json, sizeof(json), "{" OD ",\"events\":{\"hook\":[\"%s\",\"arg\"]}}", missing);
  snprintf(want, sizeof(want), "events.hook: %s: No such file or directory", missing);
  expect_err(json, want);

  expect_err("{" OD ",\"events\":{\"hook\":[]}}", "events.hook: must name a program");
}

static void test_json_syntax(void **state) {
  (void)state;
  ae_config *cfg = NULL;
  ae_err err = {0};
  assert_int_equal(ae_config_parse("x.json", "{\n  \"workers\": ,\n}", &cfg, &err), AE_EINVAL);
  assert_null(cfg);
  assert_non_null(strstr(err.msg, "x.json: line 2 column "));
  assert_int_equal(ae_config_parse("x.json", "{\"workers\":1,\"workers\":2}", &cfg, &err), AE_EINVAL);
  assert_non_null(strstr(err.msg, "x.json: line 1 column "));
  assert_non_null(strstr(err.msg, "duplicate"));
  assert_int_equal(ae_config_parse("x.json", "{} trailing", &cfg, &err), AE_EINVAL);
  assert_int_equal(ae_config_parse("x.json", "", &cfg, &err), AE_EINVAL);
  assert_int_equal(ae_config_parse("x.json", NULL, &cfg, &err), AE_EINVAL);
}

static void test_load_file(void **state) {
  (void)state;
  char path[160], missing[160];
  snprintf(path, sizeof(path), "%s/acmedge.json", g_dir);
  snprintf(missing, sizeof(missing), "%s/nope.json", g_dir);
  write_text(path, "{\"workers\": 2, " OD "}\n", 0644);
  ae_config *cfg = NULL;
  ae_err err = {0};
  assert_int_equal(ae_config_load(path, &cfg, &err), 0);
  assert_string_equal(cfg->path, path);
  assert_int_equal(cfg->workers, 2);
  ae_config_free(cfg);

  write_text(path, "{\"workers\": 999, " OD "}\n", 0644);
  assert_true(ae_config_load(path, &cfg, &err) < 0);
  assert_null(cfg);
  char want[400];
  snprintf(want, sizeof(want), "%s: workers: must be an integer between 0 and 256", path);
  assert_string_equal(err.msg, want);

  assert_true(ae_config_load(missing, &cfg, &err) < 0);
  snprintf(want, sizeof(want), "%s: No such file or directory", missing);
  assert_string_equal(err.msg, want);
  unlink(path);
}

static void test_refcount(void **state) {
  (void)state;
  ae_config *cfg = parse_ok("{" OD "}");
  assert_int_equal(cfg->_refs, 1);
  assert_ptr_equal(ae_config_ref(cfg), cfg);
  assert_ptr_equal(ae_config_ref(cfg), cfg);
  assert_int_equal(cfg->_refs, 3);
  ae_config_free(cfg);
  ae_config_free(cfg);
  assert_int_equal(cfg->_refs, 1);
  assert_string_equal(cfg->listen_https, "0.0.0.0:443"); /* still alive */
  ae_config_free(cfg);                                   /* last one frees (ASan checks) */
  ae_config_free(NULL);
  assert_null(ae_config_ref(NULL));
}

static void test_parse_hostport(void **state) {
  (void)state;
  char host[64];
  int port = 0;
  assert_int_equal(ae_parse_hostport("127.0.0.1:8443", host, sizeof(host), &port), 0);
  assert_string_equal(host, "127.0.0.1");
  assert_int_equal(port, 8443);
  assert_int_equal(ae_parse_hostport("[::1]:443", host, sizeof(host), &port), 0);
  assert_string_equal(host, "::1");
  assert_int_equal(port, 443);
  assert_int_equal(ae_parse_hostport("[2001:db8::7]:65535", host, sizeof(host), &port), 0);
  assert_string_equal(host, "2001:db8::7");
  assert_int_equal(port, 65535);
  assert_int_equal(ae_parse_hostport("backend.internal:1", host, sizeof(host), &port), 0);
  assert_string_equal(host, "backend.internal");
  assert_int_equal(port, 1);

  static const char *const bad[] = {
      "127.0.0.1",      "127.0.0.1:",    ":80",          "127.0.0.1:0",   "127.0.0.1:65536", "127.0.0.1:99999",
      "127.0.0.1:-1",   "127.0.0.1:+80", "127.0.0.1:8a", "::1:80",        "[::1]",           "[::1]80",
      "[]:80",          "[nothost]:80",  "a b:80",       "host:80:90",    "",                "127.0.0.1:0080000",
      "[::1]:443extra", "ho\x01st:1"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    port = -7;
    if (ae_parse_hostport(bad[i], host, sizeof(host), &port) == 0)
      fail_msg("accepted '%s'", bad[i]);
    assert_int_equal(port, -7);
  }
  /* Host buffer too small is an error, not a truncation. */
  char tiny[4];
  assert_int_not_equal(ae_parse_hostport("127.0.0.1:80", tiny, sizeof(tiny), &port), 0);
  assert_int_not_equal(ae_parse_hostport(NULL, host, sizeof(host), &port), 0);
}

static void test_host_match(void **state) {
  (void)state;
  assert_true(ae_host_match("*", "anything.example"));
  assert_true(ae_host_match("*", "x"));
  assert_false(ae_host_match("*", ""));
  assert_true(ae_host_match("*.example.com", "a.example.com"));
  assert_true(ae_host_match("*.example.com", "A.Example.COM"));
  assert_false(ae_host_match("*.example.com", "example.com"));
  assert_false(ae_host_match("*.example.com", "a.b.example.com"));
  assert_false(ae_host_match("*.example.com", ".example.com"));
  assert_false(ae_host_match("*.example.com", "aexample.com"));
  assert_false(ae_host_match("*.example.com", "a.example.com.evil"));
  assert_true(ae_host_match("example.org", "EXAMPLE.org"));
  assert_false(ae_host_match("example.org", "www.example.org"));
  assert_false(ae_host_match("example.org", "example.or"));
  assert_false(ae_host_match(NULL, "a"));
  assert_false(ae_host_match("a", NULL));
}

/* Listen addresses for binding: port 0 allowed (tests bind ephemeral ports), IP literals only. */
static void test_listen_sockaddr(void **state) {
  (void)state;
  struct sockaddr_storage ss;
  assert_int_equal(ae_listen_sockaddr("127.0.0.1:0", &ss), 0);
  assert_int_equal(ss.ss_family, AF_INET);
  assert_int_equal(ae_listen_sockaddr("[::1]:8443", &ss), 0);
  assert_int_equal(ss.ss_family, AF_INET6);
  assert_int_equal(ntohs(((struct sockaddr_in6 *)&ss)->sin6_port), 8443);
  assert_int_equal(ae_listen_sockaddr("localhost:2020", &ss), 0);
  assert_int_equal(ntohs(((struct sockaddr_in *)&ss)->sin_port), 2020);
  assert_int_equal(ae_listen_sockaddr("example.com:80", &ss), AE_EINVAL);
  assert_int_equal(ae_listen_sockaddr("127.0.0.1:65536", &ss), AE_EINVAL);
  assert_int_equal(ae_listen_sockaddr("127.0.0.1", &ss), AE_EINVAL);
  assert_int_equal(ae_listen_sockaddr("::1:80", &ss), AE_EINVAL);
  /* The config parser itself still refuses port 0. */
  char host[64];
  int port;
  assert_int_equal(ae_parse_hostport("127.0.0.1:0", host, sizeof(host), &port), AE_EINVAL);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_listen_sockaddr),
      cmocka_unit_test(test_design_example), cmocka_unit_test(test_defaults),       cmocka_unit_test(test_extensions),
      cmocka_unit_test(test_unknown_keys),   cmocka_unit_test(test_ocsp_section), cmocka_unit_test(test_type_errors),    cmocka_unit_test(test_range_errors),
      cmocka_unit_test(test_enum_errors),    cmocka_unit_test(test_address_errors), cmocka_unit_test(test_open_on_demand),
      cmocka_unit_test(test_file_errors),    cmocka_unit_test(test_json_syntax),    cmocka_unit_test(test_load_file),
      cmocka_unit_test(test_refcount),       cmocka_unit_test(test_parse_hostport), cmocka_unit_test(test_host_match),
  };
  return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
