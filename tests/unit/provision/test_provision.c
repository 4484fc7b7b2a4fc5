/* Provisioning: backoff curve, loading stored certificates (incl. wildcard dir names), the miss
 * paths' decisions and the admin JSON, on a real loop with a CA that is never reached. */
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

static void test_backoff(void **state) {
  (void)state;
  assert_true(ae_backoff_delay(60, 86400, 1, 0.0) == 30.0);
  assert_true(ae_backoff_delay(60, 86400, 1, 0.999) < 90.0);
  assert_true(ae_backoff_delay(60, 86400, 3, 0.5) == 240.0);
  /* capped at max before jitter */
  assert_true(ae_backoff_delay(60, 600, 20, 0.5) == 600.0);
  assert_true(ae_backoff_delay(60, 600, 20, 0.0) == 300.0);
  assert_true(ae_backoff_delay(60, 600, 20, 0.999) < 900.0);
}

typedef struct {
  int loaded, denied, requested, scheduled;
} counts;

static void on_event(void *ud, uint64_t id, const char *type, const char *domain, const char *json) {
  counts *c = ud;
  (void)id;
  (void)domain;
  (void)json;
  if (strcmp(type, "cert_loaded") == 0)
    c->loaded++;
  else if (strcmp(type, "domain_denied") == 0)
    c->denied++;
  else if (strcmp(type, "domain_requested") == 0)
    c->requested++;
  else if (strcmp(type, "renewal_scheduled") == 0)
    c->scheduled++;
}

static void store_cert(ae_storage *st, const char *dir, const char *name) {
  char *cert = NULL, *key = NULL, k[512];
  ae_err err = {0};
  const char *names[1] = {name};
  assert_int_equal(ae_cert_generate_selfsigned(name, names, 1, 90, &cert, &key, &err), 0);
  snprintf(k, sizeof(k), "certs/127.0.0.1_14000/%s/cert.pem", dir);
  assert_int_equal(ae_storage_put(st, k, cert, strlen(cert), 0, &err), 0);
  snprintf(k, sizeof(k), "certs/127.0.0.1_14000/%s/key.pem", dir);
  assert_int_equal(ae_storage_put(st, k, key, strlen(key), 1, &err), 0);
  free(cert);
  free(key);
}

static void closed(void *ud) { (*(int *)ud)--; }

/* Runs the loop until the storage read for name has come back empty (bounded). */
static void settle_absent(uv_loop_t *loop, ae_certstore *cs, const char *name) {
  for (int i = 0; i < 5000 && !ae_certstore_known_absent(cs, name); i++) {
    uv_run(loop, UV_RUN_NOWAIT);
    usleep(1000);
  }
  assert_true(ae_certstore_known_absent(cs, name));
}

static void test_load_and_decide(void **state) {
  (void)state;
  char tmp[] = "/tmp/ae-prov-XXXXXX";
  assert_non_null(mkdtemp(tmp));
  char json[2048];
  snprintf(json, sizeof(json),
           "{\"listen\": {\"https\": \"127.0.0.1:18443\", \"http\": null, \"admin\": null},"
           " \"storage\": {\"path\": \"%s/st\"},"
           " \"default_cert\": {\"cert\": \"%s/d.crt\", \"key\": \"%s/d.key\"},"
           " \"acme\": {\"directory\": \"https://127.0.0.1:14000/dir\", \"ca_bundle\": null},"
           " \"on_demand\": {\"allow\": [\"*.example.test\", \"*.other.test\"]}}",
           tmp, tmp, tmp);
  ae_config *cfg = NULL;
  ae_err err = {0};
  int r = ae_config_parse("test.json", json, &cfg, &err);
  if (r != 0)
    fail_msg("config: %s", err.msg);

  ae_storage *st = NULL;
  assert_int_equal(ae_storage_fs_new(cfg->storage_path, &st, &err), 0);
  store_cert(st, "a.example.test", "a.example.test");
  store_cert(st, "wildcard_.example.test", "*.example.test");

  uv_loop_t loop;
  uv_loop_init(&loop);
  ae_certstore *cs = NULL;
  assert_int_equal(ae_certstore_new(&cs), 0);
  ae_events *ev = NULL;
  assert_int_equal(ae_events_new(64, &ev), 0);
  counts c = {0};
  ae_events_sub *sub = NULL;
  assert_int_equal(ae_events_subscribe(ev, on_event, &c, &sub), 0);
  ae_challenge *ch = NULL;
  assert_int_equal(ae_challenge_new(&ch), 0);
  ae_policy *pol = NULL;
  assert_int_equal(ae_policy_new(&loop, cfg, &pol, &err), 0);
  ae_acme *acme = NULL;
  assert_int_equal(ae_acme_new(&loop, cfg, st, ch, &acme, &err), 0);
  ae_provision_deps deps = {.loop = &loop, .certs = cs, .storage = st, .acme = acme, .policy = pol,
                            .events = ev, .ca_host = "127.0.0.1_14000"};
  ae_provision *p = NULL;
  assert_int_equal(ae_provision_new(&deps, cfg, &p, &err), 0);
  size_t n = 0;
  assert_int_equal(ae_provision_load(p, &n, &err), 0);
  assert_int_equal(n, 2);
  assert_int_equal(c.loaded, 2);
  assert_int_equal(c.scheduled, 1); /* the wildcard is not renewed on demand */

  ae_cert *hit = ae_certstore_lookup(cs, "a.example.test");
  assert_non_null(hit);
  ae_cert_unref(hit);
  hit = ae_certstore_lookup(cs, "zzz.example.test");
  assert_non_null(hit);
  assert_true(ae_cert_covers(hit, "zzz.example.test"));
  ae_cert_unref(hit);

  unsigned ra = 0;
  assert_int_equal(ae_provision_on_http(p, "a.example.test", &ra), AE_H80_VALID);
  assert_int_equal(ae_provision_on_http(p, "x.example.org", &ra), AE_H80_DENY);
  assert_int_equal(c.denied, 1);
  /* A handshake for a name not in memory reads storage first (held meanwhile); once storage
   * is known to lack it, policy decides. A second miss for the same denied name within a
   * minute adds no event. */
  assert_int_equal(ae_provision_on_sni(p, "x.example.org"), AE_MISS_HOLD);
  settle_absent(&loop, cs, "x.example.org");
  assert_int_equal(ae_provision_on_sni(p, "x.example.org"), AE_MISS_DEFAULT);
  assert_int_equal(c.denied, 1);
  /* An allowed new name starts exactly one job however often it is asked for. */
  assert_int_equal(ae_provision_on_sni(p, "new.other.test"), AE_MISS_HOLD);
  settle_absent(&loop, cs, "new.other.test");
  assert_int_equal(c.requested, 1);
  assert_int_equal(ae_provision_on_sni(p, "new.other.test"), AE_MISS_DEFAULT);
  assert_int_equal(ae_provision_on_sni(p, "new.other.test"), AE_MISS_DEFAULT);
  assert_int_equal(ae_provision_on_http(p, "new.other.test", &ra), AE_H80_PENDING);
  assert_true(ra > 0);
  assert_int_equal(c.requested, 1);

  json_t *list = ae_provision_domains_json(p);
  assert_int_equal(json_array_size(list), 3);
  size_t i;
  json_t *o;
  int seen_valid = 0, seen_pending = 0;
  json_array_foreach(list, i, o) {
    const char *d = json_string_value(json_object_get(o, "domain"));
    const char *s = json_string_value(json_object_get(o, "state"));
    if (strcmp(d, "a.example.test") == 0) {
      assert_string_equal(s, "valid");
      assert_non_null(json_string_value(json_object_get(o, "not_after")));
      seen_valid = 1;
    }
    if (strcmp(d, "new.other.test") == 0) {
      assert_string_equal(s, "pending");
      seen_pending = 1;
    }
  }
  json_decref(list);
  assert_true(seen_valid && seen_pending);
  char *m = ae_provision_metrics(p);
  assert_non_null(strstr(m, "acmedge_certificate_expiration_timestamp_seconds{domain=\"a.example.test\"}"));
  free(m);

  assert_int_equal(ae_provision_forget(p, "a.example.test", &err), 0);
  /* Only the wildcard entry answers now, and the stored files are gone. */
  hit = ae_certstore_lookup(cs, "a.example.test");
  assert_non_null(hit);
  assert_int_equal(ae_cert_name_count(hit), 1);
  assert_string_equal(ae_cert_name(hit, 0), "*.example.test");
  ae_cert_unref(hit);
  char *data = NULL;
  size_t dlen = 0;
  assert_int_equal(ae_storage_get(st, "certs/127.0.0.1_14000/a.example.test/cert.pem", &data, &dlen, &err), AE_ENOTFOUND);
  assert_int_equal(ae_provision_forget(p, "never.example.test", &err), AE_ENOTFOUND);

  int pending = 3;
  ae_provision_close(p, closed, &pending);
  ae_acme_close(acme, closed, &pending);
  ae_policy_close(pol, closed, &pending);
  uv_run(&loop, UV_RUN_DEFAULT);
  assert_int_equal(pending, 0);
  ae_provision_free(p);
  ae_acme_free(acme);
  ae_policy_free(pol);
  ae_events_unsubscribe(ev, sub);
  ae_events_free(ev);
  ae_challenge_free(ch);
  ae_certstore_free(cs);
  ae_storage_free(st);
  ae_config_free(cfg);
  assert_int_equal(uv_loop_close(&loop), 0);
  char cmd[256];
  snprintf(cmd, sizeof(cmd), "rm -rf %s", tmp);
  assert_int_equal(system(cmd), 0);
}

int main(void) {
  ae_log_set_level(getenv("AE_TEST_DEBUG") ? AE_LOG_DEBUG : AE_LOG_ERROR);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_backoff),
      cmocka_unit_test(test_load_and_decide),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
