/* Per-name state that a flood of denied or unknown names can create stays within its configured
 * bound (on_demand.name_cache_max 100, max_queue 20): the domain_denied suppression map, storage
 * reads in flight, the order queue, failed first issuances (orders against a CA that is never
 * reached) and the ask/DNS answer cache (a resolver that refuses every query). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "acmedge/acme.h"
#include "acmedge/certstore.h"
#include "acmedge/challenge.h"
#include "acmedge/config.h"
#include "acmedge/events.h"
#include "acmedge/log.h"
#include "acmedge/policy.h"
#include "acmedge/provision.h"
#include "acmedge/storage.h"

#define CACHE_MAX 100u
#define QUEUE_MAX 20u
#define CONCURRENT 4u

typedef struct {
  char tmp[64];
  ae_config *cfg;
  ae_storage *st;
  uv_loop_t loop;
  ae_certstore *cs;
  ae_events *ev;
  ae_challenge *ch;
  ae_policy *pol;
  ae_acme *acme;
  ae_provision *p;
} fixture;

static void closed(void *ud) { (*(int *)ud)--; }

static void fixture_up(fixture *f) {
  memset(f, 0, sizeof(*f));
  snprintf(f->tmp, sizeof(f->tmp), "/tmp/ae-bounds-XXXXXX");
  assert_non_null(mkdtemp(f->tmp));
  char json[2048];
  /* Port 9 on loopback refuses connections: every order fails at once. */
  snprintf(json, sizeof(json),
           "{\"listen\": {\"https\": \"127.0.0.1:18443\", \"http\": null, \"admin\": null},"
           " \"storage\": {\"path\": \"%s/st\"},"
           " \"default_cert\": {\"cert\": \"%s/d.crt\", \"key\": \"%s/d.key\"},"
           " \"acme\": {\"directory\": \"https://127.0.0.1:9/dir\", \"ca_bundle\": null},"
           " \"on_demand\": {\"allow\": [\"*.flood.test\"], \"name_cache_max\": %u, \"max_queue\": %u,"
           "   \"max_concurrent\": %u, \"rate\": {\"per_minute\": 600000, \"burst\": 100000, \"per_3h\": 10000000},"
           "   \"backoff\": {\"initial_s\": 3600, \"max_s\": 3600}}}",
           f->tmp, f->tmp, f->tmp, CACHE_MAX, QUEUE_MAX, CONCURRENT);
  ae_err err = {0};
  if (ae_config_parse("test.json", json, &f->cfg, &err) != 0)
    fail_msg("config: %s", err.msg);
  assert_int_equal(ae_storage_fs_new(f->cfg->storage_path, &f->st, &err), 0);
  uv_loop_init(&f->loop);
  assert_int_equal(ae_certstore_new(&f->cs), 0);
  assert_int_equal(ae_events_new(64, &f->ev), 0);
  assert_int_equal(ae_challenge_new(&f->ch), 0);
  assert_int_equal(ae_policy_new(&f->loop, f->cfg, &f->pol, &err), 0);
  assert_int_equal(ae_acme_new(&f->loop, f->cfg, f->st, f->ch, &f->acme, &err), 0);
  ae_provision_deps deps = {.loop = &f->loop, .certs = f->cs, .storage = f->st, .acme = f->acme, .policy = f->pol,
                            .events = f->ev, .ca_host = "127.0.0.1_9"};
  assert_int_equal(ae_provision_new(&deps, f->cfg, &f->p, &err), 0);
}

static void fixture_down(fixture *f) {
  int pending = 3;
  ae_provision_close(f->p, closed, &pending);
  ae_acme_close(f->acme, closed, &pending);
  ae_policy_close(f->pol, closed, &pending);
  uv_run(&f->loop, UV_RUN_DEFAULT);
  assert_int_equal(pending, 0);
  ae_provision_free(f->p);
  ae_acme_free(f->acme);
  ae_policy_free(f->pol);
  ae_events_free(f->ev);
  ae_challenge_free(f->ch);
  ae_certstore_free(f->cs);
  ae_storage_free(f->st);
  ae_config_free(f->cfg);
  assert_int_equal(uv_loop_close(&f->loop), 0);
  char cmd[128];
  snprintf(cmd, sizeof(cmd), "rm -rf %s", f->tmp);
  assert_int_equal(system(cmd), 0);
}

/* Runs the loop until no storage read and no order is left (bounded: 20 s). */
static void settle(fixture *f) {
  ae_provision_name_counts c;
  for (int i = 0; i < 20000; i++) {
    uv_run(&f->loop, UV_RUN_NOWAIT);
    ae_provision_counts(f->p, &c);
    if (c.loads == 0 && c.queued == 0 && c.records == c.failed)
      return;
    usleep(1000);
  }
  fail_msg("not settled: %zu reads, %zu queued, %zu records, %zu failed", c.loads, c.queued, c.records, c.failed);
}

static void check_bounds(fixture *f) {
  ae_provision_name_counts c;
  ae_provision_counts(f->p, &c);
  assert_true(c.loads <= CACHE_MAX);
  assert_true(c.denied <= CACHE_MAX);
  assert_true(c.failed <= CACHE_MAX);
  assert_true(c.queued <= QUEUE_MAX);
  /* Every record is failed, queued or has an order running. */
  assert_true(c.records <= CACHE_MAX + QUEUE_MAX + CONCURRENT);
}

static void test_denied_flood(void **state) {
  (void)state;
  fixture f;
  fixture_up(&f);
  unsigned ra = 0;
  char name[64];
  /* Names outside allow: each leaves a suppression entry for its domain_denied event. */
  for (int i = 0; i < 3000; i++) {
    snprintf(name, sizeof(name), "d%d.evil.test", i);
    assert_int_equal(ae_provision_on_http(f.p, name, &ra), AE_H80_DENY);
    check_bounds(&f);
  }
  ae_provision_name_counts c;
  ae_provision_counts(f.p, &c);
  assert_true(c.denied > 0);
  assert_int_equal(c.records, 0);
  fixture_down(&f);
}

static void test_unknown_flood(void **state) {
  (void)state;
  fixture f;
  fixture_up(&f);
  char name[64];
  int defaults = 0, held = 0;
  /* Allowed names nobody stored, faster than storage answers: at most CACHE_MAX reads in flight,
   * the other handshakes get the default certificate at once. */
  for (int i = 0; i < 1000; i++) {
    snprintf(name, sizeof(name), "u%d.flood.test", i);
    ae_miss_action a = ae_provision_on_sni(f.p, name);
    defaults += a == AE_MISS_DEFAULT;
    held += a == AE_MISS_HOLD;
    check_bounds(&f);
  }
  assert_int_equal(held, CACHE_MAX);
  assert_int_equal(defaults, 1000 - CACHE_MAX);
  /* The reads come back empty: their names are queued (at most max_queue), ordered, and fail.
   * Round after round, failed first issuances stay within the bound. */
  for (int round = 0; round < 8; round++) {
    settle(&f);
    check_bounds(&f);
    for (int i = 0; i < 60; i++) {
      snprintf(name, sizeof(name), "r%d-%d.flood.test", round, i);
      (void)ae_provision_on_sni(f.p, name);
      check_bounds(&f);
    }
  }
  settle(&f);
  check_bounds(&f);
  ae_provision_name_counts c;
  ae_provision_counts(f.p, &c);
  /* 100 + 8 x 20 orders failed: the oldest were forgotten. */
  assert_int_equal(c.failed, CACHE_MAX);
  assert_int_equal(c.records, CACHE_MAX);
  fixture_down(&f);
}

static int answers;
static void count_cb(void *ud, int allowed, const char *reason) {
  (void)ud;
  (void)allowed;
  (void)reason;
  answers++;
}

static void test_policy_cache(void **state) {
  (void)state;
  /* A resolver on a loopback port nobody listens on: every check fails (dns_failed) and is
   * cached; the cache keeps at most name_cache_max names. */
  ae_config *cfg = NULL;
  ae_err err = {0};
  const char *json = "{\"on_demand\": {\"allow\": [\"*.flood.test\"], \"name_cache_max\": 100,"
                     " \"dns_check\": {\"expect\": [\"192.0.2.1\"], \"resolver\": \"127.0.0.1:9\", \"timeout_ms\": 200}}}";
  if (ae_config_parse("test.json", json, &cfg, &err) != 0)
    fail_msg("config: %s", err.msg);
  uv_loop_t loop;
  uv_loop_init(&loop);
  ae_policy *p = NULL;
  assert_int_equal(ae_policy_new(&loop, cfg, &p, &err), 0);
  char name[64];
  int started = 0;
  size_t cached = 0, flying = 0;
  for (int round = 0; round < 5; round++) {
    for (int i = 0; i < 100; i++) {
      snprintf(name, sizeof(name), "c%d-%d.flood.test", round, i);
      const char *why = NULL;
      int r = ae_policy_check(p, name, count_cb, NULL, NULL, &why);
      started += r == AE_EAGAIN;
    }
    for (int i = 0; i < 10000 && answers < started; i++) {
      uv_run(&loop, UV_RUN_NOWAIT);
      usleep(1000);
    }
    assert_int_equal(answers, started);
    ae_policy_counts(p, &cached, &flying);
    assert_true(cached <= 100);
    assert_int_equal(flying, 0);
  }
  assert_int_equal(started, 500);
  assert_int_equal(cached, 100);
  int pending = 1;
  ae_policy_close(p, closed, &pending);
  uv_run(&loop, UV_RUN_DEFAULT);
  ae_policy_free(p);
  ae_config_free(cfg);
  assert_int_equal(uv_loop_close(&loop), 0);
}

int main(void) {
  ae_log_set_level(getenv("AE_TEST_DEBUG") ? AE_LOG_DEBUG : AE_LOG_ERROR);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_denied_flood),
      cmocka_unit_test(test_unknown_flood),
      cmocka_unit_test(test_policy_cache),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
