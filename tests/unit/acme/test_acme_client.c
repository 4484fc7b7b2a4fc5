/* The ACME client against a scripted fake CA on loopback (plain HTTP on the same libuv loop):
 * the happy path with a real CSR-signed certificate, and the CA misbehaving — non-JSON,
 * truncated, oversized and wrongly typed responses, missing fields, a chain for another key or
 * name, badNonce forever, accountDoesNotExist, rateLimited, invalid authorizations — plus
 * cancellation and close with jobs in flight. Also ACME Renewal Information (RFC 9773): the
 * certificate identifier against the RFC's example, renewalInfo queries (window, Retry-After,
 * bad answers, no ARI, cancel) and "replaces" in newOrder. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <cmocka.h>

#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <jansson.h>
#include <uv.h>

#include "acmedge/acme.h"
#include "acmedge/challenge.h"
#include "acmedge/config.h"
#include "acmedge/crypto.h"
#include "acmedge/log.h"
#include "acmedge/storage.h"

#include "fake_ca.h"

/* ---------- fixture ---------- */

typedef struct fx {
  uv_loop_t loop;
  fake_ca ca;
  char dir[256];
  ae_config *cfg;
  ae_storage *st;
  ae_challenge *ch;
  ae_acme *acme;
  int done, closed, progress_ready, progress_valid, progress_order;
  int synchronous;
  int in_issue;
  ae_acme_result res;
  char problem[256], detail[2048];
  char *cert_pem, *key_pem;
  char challenge_type[32];
  /* renewalInfo results */
  int ari_done, ari_code, ari_sync, in_ari;
  struct ae_acme_renewal_info ari_info;
} fx;

static void on_progress(void *ud, const char *step, const char *detail) {
  fx *f = ud;
  (void)detail;
  if (strcmp(step, "challenge_ready") == 0) f->progress_ready++;
  if (strcmp(step, "challenge_valid") == 0) f->progress_valid++;
  if (strcmp(step, "order_created") == 0) f->progress_order++;
}

static void on_done(void *ud, const ae_acme_result *res) {
  fx *f = ud;
  f->done++;
  if (f->in_issue) f->synchronous = 1;
  f->res = *res;
  snprintf(f->problem, sizeof(f->problem), "%s", res->problem ? res->problem : "");
  snprintf(f->detail, sizeof(f->detail), "%s", res->detail ? res->detail : "");
  snprintf(f->challenge_type, sizeof(f->challenge_type), "%s", res->challenge_type ? res->challenge_type : "");
  free(f->cert_pem);
  free(f->key_pem);
  f->cert_pem = res->cert_pem ? strdup(res->cert_pem) : NULL;
  f->key_pem = res->key_pem ? strdup(res->key_pem) : NULL;
}

static int setup(void **state) {
  fx *f = calloc(1, sizeof(*f));
  ae_log_set_level(AE_LOG_ERROR);
  uv_loop_init(&f->loop);
  fake_ca_start(&f->loop, &f->ca);
  snprintf(f->dir, sizeof(f->dir), "/tmp/ae-acme-unit.XXXXXX");
  assert_non_null(mkdtemp(f->dir));
  char json[2048];
  snprintf(json, sizeof(json),
           "{\"storage\":{\"path\":\"%s/st\"},\"acme\":{\"directory\":\"http://127.0.0.1:%d/dir\","
           "\"email\":\"ops@example.test\",\"challenges\":[\"http-01\"]},\"on_demand\":{\"enabled\":false},"
           "\"listen\":{\"https\":null,\"http\":null,\"admin\":null}}",
           f->dir, f->ca.port);
  ae_err err = {0};
  if (ae_config_parse("test", json, &f->cfg, &err) != 0) fail_msg("config: %s", err.msg);
  assert_int_equal(ae_storage_fs_new(f->cfg->storage_path, &f->st, &err), 0);
  assert_int_equal(ae_challenge_new(&f->ch), 0);
  f->ca.ch = f->ch;
  assert_int_equal(ae_acme_new(&f->loop, f->cfg, f->st, f->ch, &f->acme, &err), 0);
  *state = f;
  return 0;
}

static void on_closed(void *ud) { ((fx *)ud)->closed = 1; }
static int teardown(void **state) {
  fx *f = *state;
  ae_acme_close(f->acme, on_closed, f);
  for (int i = 0; i < 1000 && !f->closed; i++) uv_run(&f->loop, UV_RUN_ONCE);
  assert_true(f->closed);
  ae_acme_free(f->acme);
  uv_close((uv_handle_t *)&f->ca.server, NULL);
  uv_run(&f->loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(&f->loop), 0);
  /* After every job, nothing stays published. */
  assert_int_equal(ae_challenge_count(f->ch), 0);
  ae_challenge_free(f->ch);
  ae_storage_free(f->st);
  ae_config_free(f->cfg);
  gnutls_x509_crt_deinit(f->ca.ca_crt);
  gnutls_x509_privkey_deinit(f->ca.ca_key);
  free(f->cert_pem);
  free(f->key_pem);
  char cmd[300];
  snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
  assert_int_equal(system(cmd), 0);
  free(f);
  return 0;
}

static void on_deadline(uv_timer_t *t) { *(int *)t->data = 1; }

/* Runs the loop until the job ended (bounded to 20 s). */
static void run_job(fx *f, const char *domain) {
  ae_acme_callbacks cb = {.ud = f, .on_progress = on_progress, .on_done = on_done};
  ae_err err = {0};
  f->in_issue = 1;
  assert_int_equal(ae_acme_issue(f->acme, domain, &cb, NULL, &err), 0);
  f->in_issue = 0;
  assert_int_equal(f->done, 0);
  uv_timer_t deadline;
  int expired = 0;
  uv_timer_init(&f->loop, &deadline);
  deadline.data = &expired;
  uv_timer_start(&deadline, on_deadline, 20000, 0);
  while (!f->done && !expired) uv_run(&f->loop, UV_RUN_ONCE);
  uv_close((uv_handle_t *)&deadline, NULL);
  uv_run(&f->loop, UV_RUN_NOWAIT);
  assert_false(expired);
  assert_int_equal(f->done, 1);
  assert_false(f->synchronous);
  assert_int_equal(ae_acme_jobs_in_flight(f->acme), 0);
}

/* ---------- ARI helpers ---------- */

static const unsigned char RFC_AKI[20] = {0x69, 0x88, 0x5B, 0x6B, 0x87, 0x46, 0x40, 0x41, 0xE1, 0xB3,
                                          0x7B, 0x84, 0x7B, 0xA0, 0xAE, 0x2C, 0xDE, 0x01, 0xC8, 0xD4};
static const unsigned char RFC_SERIAL[5] = {0x00, 0x87, 0x65, 0x43, 0x21};
#define RFC_CERT_ID "aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE"

/* A self-signed PEM certificate with the given Authority Key Identifier (none when aki is
 * NULL) and serial content octets. Caller frees. */
static char *make_cert(const unsigned char *aki, size_t aki_len, const unsigned char *serial, size_t serial_len) {
  gnutls_x509_privkey_t key;
  gnutls_x509_crt_t crt;
  assert_int_equal(gnutls_x509_privkey_init(&key), 0);
  assert_int_equal(
      gnutls_x509_privkey_generate(key, GNUTLS_PK_ECDSA, GNUTLS_CURVE_TO_BITS(GNUTLS_ECC_CURVE_SECP256R1), 0), 0);
  assert_int_equal(gnutls_x509_crt_init(&crt), 0);
  assert_int_equal(gnutls_x509_crt_set_key(crt, key), 0);
  assert_int_equal(gnutls_x509_crt_set_version(crt, 3), 0);
  assert_int_equal(gnutls_x509_crt_set_dn_by_oid(crt, GNUTLS_OID_X520_COMMON_NAME, 0, "ari.example.test", 16), 0);
  assert_int_equal(gnutls_x509_crt_set_serial(crt, serial, serial_len), 0);
  if (aki != NULL) assert_int_equal(gnutls_x509_crt_set_authority_key_id(crt, aki, aki_len), 0);
  time_t now = time(NULL);
  gnutls_x509_crt_set_activation_time(crt, now - 60);
  gnutls_x509_crt_set_expiration_time(crt, now + 86400);
  assert_int_equal(gnutls_x509_crt_sign2(crt, crt, key, GNUTLS_DIG_SHA256, 0), 0);
  gnutls_datum_t pem = {NULL, 0};
  assert_int_equal(gnutls_x509_crt_export2(crt, GNUTLS_X509_FMT_PEM, &pem), 0);
  char *out = malloc(pem.size + 1);
  memcpy(out, pem.data, pem.size);
  out[pem.size] = '\0';
  gnutls_free(pem.data);
  gnutls_x509_crt_deinit(crt);
  gnutls_x509_privkey_deinit(key);
  return out;
}

static void on_ari(void *ud, int code, const struct ae_acme_renewal_info *info) {
  fx *f = ud;
  f->ari_done++;
  if (f->in_ari) f->ari_sync = 1;
  f->ari_code = code;
  assert_non_null(info);
  f->ari_info = *info;
}

/* Runs the loop until pred_count reaches want or ms passed; returns 1 when it did. */
static int run_until(fx *f, const int *count, int want, unsigned ms) {
  uv_timer_t deadline;
  int expired = 0;
  uv_timer_init(&f->loop, &deadline);
  deadline.data = &expired;
  uv_timer_start(&deadline, on_deadline, ms, 0);
  while (*count < want && !expired) uv_run(&f->loop, UV_RUN_ONCE);
  uv_close((uv_handle_t *)&deadline, NULL);
  uv_run(&f->loop, UV_RUN_NOWAIT);
  return *count >= want;
}

/* Queries renewalInfo for the RFC example certificate and waits for cb (bounded). */
static void run_ari(fx *f) {
  char *pem = make_cert(RFC_AKI, sizeof(RFC_AKI), RFC_SERIAL, sizeof(RFC_SERIAL));
  ae_err err = {0};
  f->ari_done = 0;
  f->in_ari = 1;
  int rc = ae_acme_renewal_info(f->acme, pem, on_ari, f, NULL, &err);
  f->in_ari = 0;
  free(pem);
  if (rc != 0) fail_msg("ae_acme_renewal_info: %s", err.msg);
  assert_int_equal(f->ari_done, 0);
  assert_true(run_until(f, &f->ari_done, 1, 20000));
  assert_int_equal(f->ari_done, 1);
  assert_false(f->ari_sync);
}

static int storage_has(fx *f, const char *rel) {
  char path[1024];
  snprintf(path, sizeof(path), "%s/st/%s", f->dir, rel);
  return access(path, F_OK) == 0;
}

static void expect_fail(fx *f, const char *problem, int retryable) {
  if (strcmp(f->problem, problem) != 0) fail_msg("problem '%s' (%s), want '%s'", f->problem, f->detail, problem);
  assert_true(f->res.code < 0);
  assert_int_equal(f->res.retryable, retryable);
  assert_null(f->cert_pem);
  assert_true(f->detail[0] != '\0');
}

/* ---------- tests ---------- */

static void test_success(void **state) {
  fx *f = *state;
  f->ca.authz_mode = AUTHZ_CHALLENGE_OK;
  run_job(f, "X.Example.Test");
  if (f->res.code != 0) fail_msg("failed: %s %s", f->problem, f->detail);
  assert_non_null(f->cert_pem);
  assert_non_null(f->key_pem);
  assert_non_null(strstr(f->key_pem, "PRIVATE KEY"));
  assert_string_equal(f->challenge_type, "http-01");
  assert_int_equal(f->progress_order, 1);
  assert_int_equal(f->progress_ready, 1);
  assert_int_equal(f->progress_valid, 1);
  assert_int_equal(f->ca.challenge_seen_published, 1);
  assert_int_equal(f->ca.n_account, 1);
  assert_int_equal(f->ca.n_order, 1);
  assert_int_equal(f->ca.n_finalize, 1);
  /* The account is persisted, the certificate is not (provisioning stores it). */
  char rel[300];
  snprintf(rel, sizeof(rel), "accounts/127.0.0.1_%d/account.key", f->ca.port);
  assert_true(storage_has(f, rel));
  snprintf(rel, sizeof(rel), "accounts/127.0.0.1_%d/account.json", f->ca.port);
  assert_true(storage_has(f, rel));
  assert_false(storage_has(f, "certs"));

  /* A second job reuses the directory and the account: no newAccount, one newNonce at most. */
  free(f->cert_pem);
  free(f->key_pem);
  f->cert_pem = f->key_pem = NULL;
  f->done = 0;
  f->ca.authz_mode = AUTHZ_VALID;
  run_job(f, "x.example.test");
  assert_int_equal(f->res.code, 0);
  assert_int_equal(f->ca.n_account, 1);
  assert_int_equal(f->ca.n_order, 2);
  assert_string_equal(f->challenge_type, ""); /* authorization was already valid */
}

static void test_dir_not_json(void **state) {
  fx *f = *state;
  f->ca.dir_mode = DIR_NOT_JSON;
  run_job(f, "x.example.test");
  expect_fail(f, "acmedge:bad-response", 1);
  assert_false(storage_has(f, "accounts"));
}

static void test_dir_missing_fields(void **state) {
  fx *f = *state;
  f->ca.dir_mode = DIR_MISSING;
  run_job(f, "x.example.test");
  expect_fail(f, "acmedge:bad-response", 1);
  assert_non_null(strstr(f->detail, "newOrder"));
}

static void test_dir_wrong_content_type(void **state) {
  fx *f = *state;
  f->ca.dir_mode = DIR_HTML;
  run_job(f, "x.example.test");
  expect_fail(f, "acmedge:bad-response", 1);
  assert_non_null(strstr(f->detail, "text/html"));
}

static void test_dir_oversized(void **state) {
  fx *f = *state;
  f->ca.dir_mode = DIR_HUGE;
  run_job(f, "x.example.test");
  expect_fail(f, "acmedge:bad-response", 1);
}

static void test_dir_truncated(void **state) {
  fx *f = *state;
  f->ca.dir_mode = DIR_TRUNCATED;
  run_job(f, "x.example.test");
  assert_true(f->res.code < 0);
  assert_int_equal(f->res.retryable, 1);
  assert_true(strcmp(f->problem, "acmedge:bad-response") == 0 || strcmp(f->problem, "acmedge:ca-unreachable") == 0);
}

static void test_dir_connection_closed(void **state) {
  fx *f = *state;
  f->ca.dir_mode = DIR_CLOSED;
  run_job(f, "x.example.test");
  expect_fail(f, "acmedge:ca-unreachable", 1);
}

static void test_ca_down(void **state) {
  fx *f = *state;
  /* Nothing listens there any more. */
  uv_close((uv_handle_t *)&f->ca.server, NULL);
  uv_run(&f->loop, UV_RUN_NOWAIT);
  uv_tcp_init(&f->loop, &f->ca.server); /* teardown closes it again */
  run_job(f, "x.example.test");
  expect_fail(f, "acmedge:ca-unreachable", 1);
}

static void test_order_missing_authorizations(void **state) {
  fx *f = *state;
  f->ca.order_mode = ORDER_NO_AUTHZ;
  run_job(f, "x.example.test");
  expect_fail(f, "acmedge:bad-response", 1);
}

static void test_bad_nonce_forever(void **state) {
  fx *f = *state;
  f->ca.always_bad_nonce = 1;
  run_job(f, "x.example.test");
  expect_fail(f, "urn:ietf:params:acme:error:badNonce", 1);
  assert_int_equal(f->ca.n_post, 10); /* bounded retries */
}

static void test_account_does_not_exist(void **state) {
  fx *f = *state;
  f->ca.order_mode = ORDER_NO_ACCOUNT_ONCE;
  run_job(f, "x.example.test");
  if (f->res.code != 0) fail_msg("failed: %s %s", f->problem, f->detail);
  assert_int_equal(f->ca.n_account, 2); /* registered again within the job */
  assert_int_equal(f->ca.n_order, 2);
}

static void test_rate_limited(void **state) {
  fx *f = *state;
  f->ca.order_mode = ORDER_RATE_LIMITED;
  int64_t before = (int64_t)time(NULL);
  run_job(f, "x.example.test");
  expect_fail(f, "urn:ietf:params:acme:error:rateLimited", 1);
  assert_true(f->res.retry_after >= before + 119);
  assert_true(f->res.retry_after <= (int64_t)time(NULL) + 121);
  assert_int_equal(f->ca.n_order, 1);
  assert_non_null(strstr(f->detail, "too many"));
}

static void test_challenge_invalid(void **state) {
  fx *f = *state;
  f->ca.authz_mode = AUTHZ_CHALLENGE_FAILS;
  run_job(f, "x.example.test");
  expect_fail(f, "urn:ietf:params:acme:error:connection", 1);
  assert_non_null(strstr(f->detail, "Connection refused"));
  assert_int_equal(f->progress_ready, 1);
  assert_int_equal(f->progress_valid, 0);
  assert_int_equal(ae_challenge_count(f->ch), 0);
}

static void test_order_invalid(void **state) {
  fx *f = *state;
  f->ca.order_mode = ORDER_INVALID_AFTER_FINALIZE;
  run_job(f, "x.example.test");
  expect_fail(f, "urn:ietf:params:acme:error:badCSR", 0);
  assert_non_null(strstr(f->detail, "CSR rejected"));
}

static void test_cert_other_key(void **state) {
  fx *f = *state;
  f->ca.cert_mode = CERT_OTHER_KEY;
  run_job(f, "x.example.test");
  expect_fail(f, "acmedge:bad-response", 1);
  assert_non_null(strstr(f->detail, "key"));
  assert_false(storage_has(f, "certs"));
}

static void test_cert_other_name(void **state) {
  fx *f = *state;
  f->ca.cert_mode = CERT_OTHER_NAME;
  run_job(f, "x.example.test");
  expect_fail(f, "acmedge:bad-response", 1);
  assert_non_null(strstr(f->detail, "name"));
}

static void test_cert_expired(void **state) {
  fx *f = *state;
  f->ca.cert_mode = CERT_EXPIRED;
  run_job(f, "x.example.test");
  expect_fail(f, "acmedge:bad-response", 1);
  assert_non_null(strstr(f->detail, "expired"));
}

static void test_cert_json(void **state) {
  fx *f = *state;
  f->ca.cert_mode = CERT_JSON;
  run_job(f, "x.example.test");
  expect_fail(f, "acmedge:bad-response", 1);
}

static void test_cert_garbage(void **state) {
  fx *f = *state;
  f->ca.cert_mode = CERT_GARBAGE;
  run_job(f, "x.example.test");
  expect_fail(f, "acmedge:bad-response", 1);
}

static void test_bad_domain(void **state) {
  fx *f = *state;
  ae_acme_callbacks cb = {.ud = f, .on_progress = on_progress, .on_done = on_done};
  ae_err err = {0};
  const char *bad[] = {"", "*.example.test", "a..b", "a/b", "-", ".", "x y"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    ae_acme_job *job = (ae_acme_job *)1;
    assert_int_equal(ae_acme_issue(f->acme, bad[i], &cb, &job, &err), AE_EINVAL);
    assert_null(job);
  }
  uv_run(&f->loop, UV_RUN_NOWAIT);
  assert_int_equal(f->done, 0);
}

static void test_cancel_and_close(void **state) {
  fx *f = *state;
  f->ca.authz_mode = AUTHZ_CHALLENGE_OK;
  ae_acme_callbacks cb = {.ud = f, .on_progress = on_progress, .on_done = on_done};
  ae_err err = {0};
  ae_acme_job *j1 = NULL, *j2 = NULL, *j3 = NULL;
  assert_int_equal(ae_acme_issue(f->acme, "a.example.test", &cb, &j1, &err), 0);
  assert_int_equal(ae_acme_issue(f->acme, "b.example.test", &cb, &j2, &err), 0);
  assert_int_equal(ae_acme_issue(f->acme, "c.example.test", &cb, &j3, &err), 0);
  assert_int_equal(ae_acme_jobs_in_flight(f->acme), 3);
  /* Cancel one before it ran at all, one while the directory request is in flight. */
  ae_acme_job_cancel(j1);
  assert_int_equal(ae_acme_jobs_in_flight(f->acme), 2);
  for (int i = 0; i < 3; i++) uv_run(&f->loop, UV_RUN_NOWAIT);
  ae_acme_job_cancel(j2);
  for (int i = 0; i < 20 && f->ca.n_order == 0; i++) uv_run(&f->loop, UV_RUN_ONCE);
  assert_int_equal(ae_acme_jobs_in_flight(f->acme), 1);
  /* Close with j3 in flight: no on_done, close completes (teardown checks). */
  ae_acme_close(f->acme, on_closed, f);
  for (int i = 0; i < 1000 && !f->closed; i++) uv_run(&f->loop, UV_RUN_ONCE);
  assert_true(f->closed);
  assert_int_equal(f->done, 0);
  assert_int_equal(ae_acme_jobs_in_flight(f->acme), 0);
  assert_int_equal(ae_acme_issue(f->acme, "d.example.test", &cb, NULL, &err), AE_ECANCELED);
}

static void test_many_parallel(void **state) {
  fx *f = *state;
  f->ca.authz_mode = AUTHZ_VALID;
  ae_acme_callbacks cb = {.ud = f, .on_progress = on_progress, .on_done = on_done};
  ae_err err = {0};
  for (int i = 0; i < 8; i++) {
    char name[64];
    snprintf(name, sizeof(name), "p%d.example.test", i);
    assert_int_equal(ae_acme_issue(f->acme, name, &cb, NULL, &err), 0);
  }
  for (int i = 0; i < 5000 && f->done < 8; i++) {
    uv_run(&f->loop, UV_RUN_ONCE);
    if (f->done && f->res.code != 0) fail_msg("a job failed: %s %s", f->problem, f->detail);
    free(f->cert_pem);
    free(f->key_pem);
    f->cert_pem = f->key_pem = NULL;
  }
  assert_int_equal(f->done, 8);
  /* The account was registered by one job while the others waited. */
  assert_int_equal(f->ca.n_account, 1);
  assert_int_equal(f->ca.n_order, 8);
}

/* ---------- ARI tests ---------- */

static void test_cert_id_rfc_vector(void **state) {
  (void)state;
  char *pem = make_cert(RFC_AKI, sizeof(RFC_AKI), RFC_SERIAL, sizeof(RFC_SERIAL));
  char id[128];
  ae_err err = {0};
  if (ae_acme_cert_id(pem, id, sizeof(id), &err) != 0) fail_msg("cert id: %s", err.msg);
  assert_string_equal(id, RFC_CERT_ID);
  /* A chain: the first certificate counts. */
  char *other = make_cert(RFC_SERIAL, sizeof(RFC_SERIAL), RFC_AKI, sizeof(RFC_AKI));
  size_t n1 = strlen(pem), n2 = strlen(other);
  char *chain = malloc(n1 + n2 + 1);
  memcpy(chain, pem, n1);
  memcpy(chain + n1, other, n2 + 1);
  assert_int_equal(ae_acme_cert_id(chain, id, sizeof(id), &err), 0);
  assert_string_equal(id, RFC_CERT_ID);
  assert_int_equal(ae_acme_cert_id(other, id, sizeof(id), &err), 0);
  assert_string_equal(id, "AIdlQyE.aYhba4dGQEHhs3uEe6CuLN4ByNQ");
  /* Exactly big enough, then one byte short. */
  assert_int_equal(ae_acme_cert_id(pem, id, sizeof(RFC_CERT_ID), &err), 0);
  assert_string_equal(id, RFC_CERT_ID);
  assert_int_equal(ae_acme_cert_id(pem, id, sizeof(RFC_CERT_ID) - 1, &err), AE_EINVAL);
  assert_string_equal(id, "");
  free(chain);
  free(other);
  free(pem);

  /* A serial without the sign octet keeps its length. */
  const unsigned char small[2] = {0x01, 0x02};
  pem = make_cert(RFC_AKI, sizeof(RFC_AKI), small, sizeof(small));
  assert_int_equal(ae_acme_cert_id(pem, id, sizeof(id), &err), 0);
  assert_string_equal(id, "aYhba4dGQEHhs3uEe6CuLN4ByNQ.AQI");
  free(pem);
}

static void test_cert_id_bad_input(void **state) {
  (void)state;
  char id[128];
  ae_err err = {0};
  assert_int_equal(ae_acme_cert_id("not a certificate", id, sizeof(id), &err), AE_EINVAL);
  assert_true(err.msg[0] != '\0');
  assert_int_equal(ae_acme_cert_id("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", id, sizeof(id),
                                   &err),
                   AE_EINVAL);
  assert_int_equal(ae_acme_cert_id("", id, sizeof(id), &err), AE_EINVAL);
  assert_int_equal(ae_acme_cert_id(NULL, id, sizeof(id), &err), AE_EINVAL);
  /* Self-signed without an Authority Key Identifier: no certID. */
  gnutls_x509_privkey_t key;
  gnutls_x509_crt_t crt;
  gnutls_x509_privkey_init(&key);
  gnutls_x509_privkey_generate(key, GNUTLS_PK_ECDSA, GNUTLS_CURVE_TO_BITS(GNUTLS_ECC_CURVE_SECP256R1), 0);
  gnutls_x509_crt_init(&crt);
  gnutls_x509_crt_set_key(crt, key);
  gnutls_x509_crt_set_version(crt, 3);
  gnutls_x509_crt_set_serial(crt, RFC_SERIAL, sizeof(RFC_SERIAL));
  gnutls_x509_crt_set_activation_time(crt, time(NULL) - 60);
  gnutls_x509_crt_set_expiration_time(crt, time(NULL) + 3600);
  assert_int_equal(gnutls_x509_crt_sign2(crt, crt, key, GNUTLS_DIG_SHA256, 0), 0);
  unsigned char buf[64];
  size_t blen = sizeof(buf);
  unsigned crit = 0;
  int has_aki = gnutls_x509_crt_get_authority_key_id(crt, buf, &blen, &crit) >= 0;
  gnutls_datum_t pem = {NULL, 0};
  gnutls_x509_crt_export2(crt, GNUTLS_X509_FMT_PEM, &pem);
  char *text = strndup((const char *)pem.data, pem.size);
  gnutls_free(pem.data);
  gnutls_x509_crt_deinit(crt);
  gnutls_x509_privkey_deinit(key);
  assert_false(has_aki);
  assert_int_equal(ae_acme_cert_id(text, id, sizeof(id), &err), AE_EINVAL);
  assert_non_null(strstr(err.msg, "Authority Key Identifier"));
  free(text);
}

static void test_ari_window(void **state) {
  fx *f = *state;
  f->ca.ari_mode = ARI_OK;
  int64_t before = (int64_t)time(NULL);
  run_ari(f);
  assert_int_equal(f->ari_code, 0);
  assert_string_equal(f->ca.ari_path, "/renewal-info/" RFC_CERT_ID);
  assert_int_equal(f->ari_info.start, 1735790400);
  assert_int_equal(f->ari_info.end, 1735876800);
  assert_string_equal(f->ari_info.explanation_url, "https://ca.example.test/incident/42");
  assert_true(f->ari_info.retry_after >= before + 21600);
  assert_true(f->ari_info.retry_after <= (int64_t)time(NULL) + 21600);
  /* Unauthenticated: no account was created, no signed request sent. */
  assert_int_equal(f->ca.n_account, 0);
  assert_int_equal(f->ca.n_post, 0);
  assert_int_equal(ae_acme_jobs_in_flight(f->acme), 0);
  /* A second query uses the cached directory. */
  run_ari(f);
  assert_int_equal(f->ari_code, 0);
  assert_int_equal(f->ca.n_dir, 1);
  assert_int_equal(f->ca.n_ari, 2);
}

static void test_ari_not_offered(void **state) {
  fx *f = *state;
  f->ca.ari_mode = ARI_NONE;
  run_ari(f);
  assert_int_equal(f->ari_code, AE_ENOTFOUND);
  assert_int_equal(f->ca.n_ari, 0);
  assert_int_equal(f->ca.n_dir, 1);
  /* Cached directory: still not offered, still via cb and never synchronously. */
  run_ari(f);
  assert_int_equal(f->ari_code, AE_ENOTFOUND);
  assert_int_equal(f->ca.n_dir, 1);
}

static void expect_ari_error(fx *f, int mode, int code) {
  f->ca.ari_mode = mode;
  run_ari(f);
  if (f->ari_code != code) fail_msg("ari mode %d: code %d (%s), want %d", mode, f->ari_code, ae_strerror(f->ari_code), code);
  assert_int_equal(f->ari_info.start, 0);
  assert_int_equal(f->ari_info.end, 0);
  assert_string_equal(f->ari_info.explanation_url, "");
}

static void test_ari_bad_answers(void **state) {
  fx *f = *state;
  expect_ari_error(f, ARI_GARBAGE, AE_EPROTO);
  expect_ari_error(f, ARI_NOT_OBJECT, AE_EPROTO);
  expect_ari_error(f, ARI_NO_WINDOW, AE_EPROTO);
  expect_ari_error(f, ARI_BAD_TIME, AE_EPROTO);
  expect_ari_error(f, ARI_END_BEFORE, AE_EPROTO);
  expect_ari_error(f, ARI_END_EQUAL, AE_EPROTO);
  expect_ari_error(f, ARI_404, AE_ENOTFOUND);
  int64_t before = (int64_t)time(NULL);
  expect_ari_error(f, ARI_500, AE_EPROTO);
  assert_true(f->ari_info.retry_after >= before + 60);
  assert_int_equal(f->ca.n_ari, 8);
  assert_int_equal(f->ca.n_dir, 1);
}

static void test_ari_directory_fails(void **state) {
  fx *f = *state;
  f->ca.dir_mode = DIR_NOT_JSON;
  run_ari(f);
  assert_int_equal(f->ari_code, AE_EPROTO);
  assert_int_equal(f->ca.n_ari, 0);
}

static void test_ari_bad_arguments(void **state) {
  fx *f = *state;
  ae_err err = {0};
  ae_acme_ari_req *r = (ae_acme_ari_req *)1;
  assert_int_equal(ae_acme_renewal_info(f->acme, "garbage", on_ari, f, &r, &err), AE_EINVAL);
  assert_null(r);
  assert_int_equal(ae_acme_renewal_info(f->acme, NULL, on_ari, f, NULL, &err), AE_EINVAL);
  char *pem = make_cert(RFC_AKI, sizeof(RFC_AKI), RFC_SERIAL, sizeof(RFC_SERIAL));
  assert_int_equal(ae_acme_renewal_info(f->acme, pem, NULL, f, NULL, &err), AE_EINVAL);
  free(pem);
  for (int i = 0; i < 5; i++) uv_run(&f->loop, UV_RUN_NOWAIT);
  assert_int_equal(f->ari_done, 0);
  assert_int_equal(f->ca.n_dir, 0);
}

static void test_ari_cancel(void **state) {
  fx *f = *state;
  f->ca.ari_mode = ARI_HANG;
  char *pem = make_cert(RFC_AKI, sizeof(RFC_AKI), RFC_SERIAL, sizeof(RFC_SERIAL));
  ae_err err = {0};
  /* Cancelled before it ran at all. */
  ae_acme_ari_req *r = NULL;
  assert_int_equal(ae_acme_renewal_info(f->acme, pem, on_ari, f, &r, &err), 0);
  assert_non_null(r);
  ae_acme_ari_cancel(r);
  /* Cancelled while its GET is in flight (the CA holds the answer). */
  assert_int_equal(ae_acme_renewal_info(f->acme, pem, on_ari, f, &r, &err), 0);
  assert_true(run_until(f, &f->ca.n_ari, 1, 10000));
  ae_acme_ari_cancel(r);
  /* One more left in flight while the client closes (teardown): no cb either. */
  assert_int_equal(ae_acme_renewal_info(f->acme, pem, on_ari, f, &r, &err), 0);
  assert_true(run_until(f, &f->ca.n_ari, 2, 10000));
  int never = 0;
  run_until(f, &never, 1, 300);
  assert_int_equal(f->ari_done, 0);
  assert_int_equal(f->ca.n_dir, 1);
  free(pem);
}

/* A query and an issuance started together share one directory fetch, whichever leads. */
static void test_ari_alongside_issue(void **state) {
  fx *f = *state;
  f->ca.ari_mode = ARI_OK;
  f->ca.authz_mode = AUTHZ_VALID;
  char *pem = make_cert(RFC_AKI, sizeof(RFC_AKI), RFC_SERIAL, sizeof(RFC_SERIAL));
  ae_acme_callbacks cb = {.ud = f, .on_progress = on_progress, .on_done = on_done};
  ae_err err = {0};
  assert_int_equal(ae_acme_issue(f->acme, "x.example.test", &cb, NULL, &err), 0);
  assert_int_equal(ae_acme_renewal_info(f->acme, pem, on_ari, f, NULL, &err), 0);
  assert_int_equal(ae_acme_renewal_info(f->acme, pem, on_ari, f, NULL, &err), 0);
  assert_true(run_until(f, &f->ari_done, 2, 20000));
  assert_true(run_until(f, &f->done, 1, 20000));
  assert_int_equal(f->ari_code, 0);
  if (f->res.code != 0) fail_msg("issue failed: %s %s", f->problem, f->detail);
  assert_int_equal(f->ca.n_dir, 1);
  assert_int_equal(f->ca.n_ari, 2);
  assert_int_equal(f->ca.n_account, 1);
  free(pem);
}

/* A query waiting for an issuance that leads is let go once the directory is in, so the
 * leader's account failure does not fail it. */
static void test_ari_survives_account_failure(void **state) {
  fx *f = *state;
  f->ca.ari_mode = ARI_OK;
  f->ca.acct_fail = 1;
  char *pem = make_cert(RFC_AKI, sizeof(RFC_AKI), RFC_SERIAL, sizeof(RFC_SERIAL));
  ae_acme_callbacks cb = {.ud = f, .on_progress = on_progress, .on_done = on_done};
  ae_err err = {0};
  assert_int_equal(ae_acme_issue(f->acme, "x.example.test", &cb, NULL, &err), 0);
  assert_int_equal(ae_acme_renewal_info(f->acme, pem, on_ari, f, NULL, &err), 0);
  assert_true(run_until(f, &f->done, 1, 20000));
  assert_true(run_until(f, &f->ari_done, 1, 20000));
  expect_fail(f, "urn:ietf:params:acme:error:invalidContact", 0);
  assert_int_equal(f->ari_code, 0);
  assert_int_equal(f->ari_info.start, 1735790400);
  assert_int_equal(f->ca.n_dir, 1);
  free(pem);
}

/* The same with the query leading (started first, while nothing is cached). */
static void test_ari_leads_issue(void **state) {
  fx *f = *state;
  f->ca.ari_mode = ARI_OK;
  f->ca.authz_mode = AUTHZ_VALID;
  char *pem = make_cert(RFC_AKI, sizeof(RFC_AKI), RFC_SERIAL, sizeof(RFC_SERIAL));
  ae_acme_callbacks cb = {.ud = f, .on_progress = on_progress, .on_done = on_done};
  ae_err err = {0};
  ae_acme_ari_req *r = NULL;
  assert_int_equal(ae_acme_renewal_info(f->acme, pem, on_ari, f, &r, &err), 0);
  assert_int_equal(ae_acme_issue(f->acme, "x.example.test", &cb, NULL, &err), 0);
  assert_int_equal(ae_acme_issue(f->acme, "y.example.test", &cb, NULL, &err), 0);
  assert_true(run_until(f, &f->ari_done, 1, 20000));
  assert_true(run_until(f, &f->done, 2, 20000));
  assert_int_equal(f->ari_code, 0);
  assert_int_equal(f->res.code, 0);
  assert_int_equal(f->ca.n_dir, 1);
  assert_int_equal(f->ca.n_account, 1);

  /* A leading query cancelled during the directory fetch hands over to a waiting issuance. */
  ae_acme_close(f->acme, on_closed, f);
  for (int i = 0; i < 1000 && !f->closed; i++) uv_run(&f->loop, UV_RUN_ONCE);
  assert_true(f->closed);
  ae_acme_free(f->acme);
  f->closed = 0;
  f->done = f->ari_done = 0;
  f->ca.n_dir = f->ca.n_order = 0;
  assert_int_equal(ae_acme_new(&f->loop, f->cfg, f->st, f->ch, &f->acme, &err), 0);
  assert_int_equal(ae_acme_renewal_info(f->acme, pem, on_ari, f, &r, &err), 0);
  assert_int_equal(ae_acme_issue(f->acme, "x.example.test", &cb, NULL, &err), 0);
  uv_run(&f->loop, UV_RUN_NOWAIT); /* the query is now fetching the directory */
  ae_acme_ari_cancel(r);
  assert_true(run_until(f, &f->done, 1, 20000));
  assert_int_equal(f->res.code, 0);
  assert_int_equal(f->ari_done, 0);
  assert_int_equal(f->ca.n_order, 1);
  free(pem);
}

/* Issues with ae_acme_issue_renewal and waits (bounded). */
static void run_renewal(fx *f, const char *replaces) {
  ae_acme_callbacks cb = {.ud = f, .on_progress = on_progress, .on_done = on_done};
  ae_err err = {0};
  f->in_issue = 1;
  assert_int_equal(ae_acme_issue_renewal(f->acme, "x.example.test", replaces, &cb, NULL, &err), 0);
  f->in_issue = 0;
  assert_true(run_until(f, &f->done, 1, 20000));
  assert_int_equal(f->done, 1);
  assert_false(f->synchronous);
}

static void test_replaces_sent_with_ari(void **state) {
  fx *f = *state;
  f->ca.ari_mode = ARI_OK;
  f->ca.authz_mode = AUTHZ_VALID;
  run_renewal(f, RFC_CERT_ID);
  if (f->res.code != 0) fail_msg("failed: %s %s", f->problem, f->detail);
  assert_int_equal(f->ca.n_order, 1);
  assert_int_equal(f->ca.n_order_replaces, 1);
  assert_string_equal(f->ca.last_replaces, RFC_CERT_ID);
  /* Plain issue and an empty replaces send none. */
  f->done = 0;
  run_job(f, "x.example.test");
  assert_int_equal(f->res.code, 0);
  assert_string_equal(f->ca.last_replaces, "");
  f->done = 0;
  run_renewal(f, "");
  assert_int_equal(f->res.code, 0);
  assert_int_equal(f->ca.n_order_replaces, 1);
}

static void test_replaces_not_sent_without_ari(void **state) {
  fx *f = *state;
  f->ca.ari_mode = ARI_NONE;
  f->ca.authz_mode = AUTHZ_VALID;
  run_renewal(f, RFC_CERT_ID);
  if (f->res.code != 0) fail_msg("failed: %s %s", f->problem, f->detail);
  assert_int_equal(f->ca.n_order, 1);
  assert_int_equal(f->ca.n_order_replaces, 0);
  assert_string_equal(f->ca.last_replaces, "");
}

static void test_replaces_rejected_retry(void **state) {
  fx *f = *state;
  f->ca.ari_mode = ARI_OK;
  f->ca.authz_mode = AUTHZ_VALID;
  f->ca.order_mode = ORDER_REPLACES_CONFLICT;
  run_renewal(f, RFC_CERT_ID);
  if (f->res.code != 0) fail_msg("conflict: %s %s", f->problem, f->detail);
  assert_int_equal(f->ca.n_order, 2);
  assert_int_equal(f->ca.n_order_replaces, 1);
  assert_string_equal(f->ca.last_replaces, "");

  f->done = 0;
  f->ca.n_order = f->ca.n_order_replaces = 0;
  f->ca.order_mode = ORDER_REPLACES_MALFORMED;
  run_renewal(f, RFC_CERT_ID);
  if (f->res.code != 0) fail_msg("malformed: %s %s", f->problem, f->detail);
  assert_int_equal(f->ca.n_order, 2);
  assert_int_equal(f->ca.n_order_replaces, 1);

  /* Retried once only: a CA that still refuses ends the job with its problem. */
  f->done = 0;
  f->ca.n_order = f->ca.n_order_replaces = 0;
  f->ca.order_mode = ORDER_REPLACES_ALWAYS_BAD;
  run_renewal(f, RFC_CERT_ID);
  expect_fail(f, "urn:ietf:params:acme:error:malformed", 0);
  assert_int_equal(f->ca.n_order, 2);
  assert_int_equal(f->ca.n_order_replaces, 1);

  /* A problem unrelated to replaces is not retried. */
  f->done = 0;
  f->ca.n_order = f->ca.n_order_replaces = 0;
  f->ca.order_mode = ORDER_RATE_LIMITED;
  run_renewal(f, RFC_CERT_ID);
  expect_fail(f, "urn:ietf:params:acme:error:rateLimited", 1);
  assert_int_equal(f->ca.n_order, 1);
}

static void test_replaces_bad_id(void **state) {
  fx *f = *state;
  ae_acme_callbacks cb = {.ud = f, .on_progress = on_progress, .on_done = on_done};
  ae_err err = {0};
  const char *bad[] = {"nodot", "a.b.c", ".abc", "abc.", "a b.c", "a/b.c", "a\"b.c"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    ae_acme_job *job = (ae_acme_job *)1;
    assert_int_equal(ae_acme_issue_renewal(f->acme, "x.example.test", bad[i], &cb, &job, &err), AE_EINVAL);
    assert_null(job);
  }
  uv_run(&f->loop, UV_RUN_NOWAIT);
  assert_int_equal(f->done, 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_success, setup, teardown),
      cmocka_unit_test_setup_teardown(test_dir_not_json, setup, teardown),
      cmocka_unit_test_setup_teardown(test_dir_missing_fields, setup, teardown),
      cmocka_unit_test_setup_teardown(test_dir_wrong_content_type, setup, teardown),
      cmocka_unit_test_setup_teardown(test_dir_oversized, setup, teardown),
      cmocka_unit_test_setup_teardown(test_dir_truncated, setup, teardown),
      cmocka_unit_test_setup_teardown(test_dir_connection_closed, setup, teardown),
      cmocka_unit_test_setup_teardown(test_ca_down, setup, teardown),
      cmocka_unit_test_setup_teardown(test_order_missing_authorizations, setup, teardown),
      cmocka_unit_test_setup_teardown(test_bad_nonce_forever, setup, teardown),
      cmocka_unit_test_setup_teardown(test_account_does_not_exist, setup, teardown),
      cmocka_unit_test_setup_teardown(test_rate_limited, setup, teardown),
      cmocka_unit_test_setup_teardown(test_challenge_invalid, setup, teardown),
      cmocka_unit_test_setup_teardown(test_order_invalid, setup, teardown),
      cmocka_unit_test_setup_teardown(test_cert_other_key, setup, teardown),
      cmocka_unit_test_setup_teardown(test_cert_other_name, setup, teardown),
      cmocka_unit_test_setup_teardown(test_cert_expired, setup, teardown),
      cmocka_unit_test_setup_teardown(test_cert_json, setup, teardown),
      cmocka_unit_test_setup_teardown(test_cert_garbage, setup, teardown),
      cmocka_unit_test_setup_teardown(test_bad_domain, setup, teardown),
      cmocka_unit_test_setup_teardown(test_cancel_and_close, setup, teardown),
      cmocka_unit_test_setup_teardown(test_many_parallel, setup, teardown),
      cmocka_unit_test(test_cert_id_rfc_vector),
      cmocka_unit_test(test_cert_id_bad_input),
      cmocka_unit_test_setup_teardown(test_ari_window, setup, teardown),
      cmocka_unit_test_setup_teardown(test_ari_not_offered, setup, teardown),
      cmocka_unit_test_setup_teardown(test_ari_bad_answers, setup, teardown),
      cmocka_unit_test_setup_teardown(test_ari_directory_fails, setup, teardown),
      cmocka_unit_test_setup_teardown(test_ari_bad_arguments, setup, teardown),
      cmocka_unit_test_setup_teardown(test_ari_cancel, setup, teardown),
      cmocka_unit_test_setup_teardown(test_ari_alongside_issue, setup, teardown),
      cmocka_unit_test_setup_teardown(test_ari_leads_issue, setup, teardown),
      cmocka_unit_test_setup_teardown(test_ari_survives_account_failure, setup, teardown),
      cmocka_unit_test_setup_teardown(test_replaces_sent_with_ari, setup, teardown),
      cmocka_unit_test_setup_teardown(test_replaces_not_sent_without_ari, setup, teardown),
      cmocka_unit_test_setup_teardown(test_replaces_rejected_retry, setup, teardown),
      cmocka_unit_test_setup_teardown(test_replaces_bad_id, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
