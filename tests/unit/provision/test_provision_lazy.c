/* Lazy start: a stored name is read once however many handshakes miss it at the same time
 * (singleflight) and never ordered; an unknown name is read once and then remembered as absent;
 * the renewal index orders stored names by renew-at and loads a due name that was never used.
 * Real loop and thread pool; the CA is never reached. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "acmedge/acme.h"
#include "acmedge/certstore.h"
#include "acmedge/challenge.h"
#include "acmedge/config.h"
#include "acmedge/events.h"
#include "acmedge/log.h"
#include "acmedge/policy.h"
#include "acmedge/provision.h"
#include "acmedge/storage.h"

#define MAXN 16

typedef struct {
  char loaded[MAXN][64];
  int nloaded;
  int requested;
  int wakes;
} rec;

static void on_event(void *ud, uint64_t id, const char *type, const char *domain, const char *json) {
  rec *r = ud;
  (void)id;
  (void)json;
  if (strcmp(type, "cert_loaded") == 0 && r->nloaded < MAXN)
    snprintf(r->loaded[r->nloaded++], 64, "%s", domain ? domain : "");
  else if (strcmp(type, "domain_requested") == 0)
    r->requested++;
}

static int loaded_count(const rec *r, const char *name) {
  int n = 0;
  for (int i = 0; i < r->nloaded; i++)
    n += strcmp(r->loaded[i], name) == 0;
  return n;
}

static void on_wake(void *ud, const char *name) {
  (void)name;
  ((rec *)ud)->wakes++;
}

/* A self-signed ECDSA cert for name valid from nb to na (UNIX seconds), written to storage. */
static void store(ae_storage *st, const char *name, int64_t nb, int64_t na) {
  gnutls_x509_privkey_t key;
  gnutls_x509_crt_t crt;
  gnutls_datum_t cd = {NULL, 0}, kd = {NULL, 0};
  unsigned char serial[8] = {0x41, 1, 2, 3, 4, 5, 6, (unsigned char)(na & 0x7f)};
  assert_int_equal(gnutls_x509_privkey_init(&key), 0);
  assert_int_equal(gnutls_x509_privkey_generate(key, GNUTLS_PK_ECDSA, GNUTLS_CURVE_TO_BITS(GNUTLS_ECC_CURVE_SECP256R1), 0), 0);
  assert_int_equal(gnutls_x509_crt_init(&crt), 0);
  assert_int_equal(gnutls_x509_crt_set_version(crt, 3), 0);
  assert_int_equal(gnutls_x509_crt_set_serial(crt, serial, sizeof(serial)), 0);
  assert_int_equal(gnutls_x509_crt_set_activation_time(crt, (time_t)nb), 0);
  assert_int_equal(gnutls_x509_crt_set_expiration_time(crt, (time_t)na), 0);
  assert_int_equal(gnutls_x509_crt_set_dn_by_oid(crt, GNUTLS_OID_X520_COMMON_NAME, 0, name, (unsigned)strlen(name)), 0);
  assert_int_equal(gnutls_x509_crt_set_subject_alt_name(crt, GNUTLS_SAN_DNSNAME, name, (unsigned)strlen(name), GNUTLS_FSAN_APPEND), 0);
  assert_int_equal(gnutls_x509_crt_set_key(crt, key), 0);
  assert_int_equal(gnutls_x509_crt_sign2(crt, crt, key, GNUTLS_DIG_SHA256, 0), 0);
  assert_int_equal(gnutls_x509_crt_export2(crt, GNUTLS_X509_FMT_PEM, &cd), 0);
  assert_int_equal(gnutls_x509_privkey_export2_pkcs8(key, GNUTLS_X509_FMT_PEM, NULL, GNUTLS_PKCS_PLAIN, &kd), 0);
  char k[512];
  ae_err err = {0};
  snprintf(k, sizeof(k), "certs/127.0.0.1_14000/%s/cert.pem", name);
  assert_int_equal(ae_storage_put(st, k, cd.data, cd.size, 0, &err), 0);
  snprintf(k, sizeof(k), "certs/127.0.0.1_14000/%s/key.pem", name);
  assert_int_equal(ae_storage_put(st, k, kd.data, kd.size, 1, &err), 0);
  gnutls_free(cd.data);
  gnutls_free(kd.data);
  gnutls_x509_crt_deinit(crt);
  gnutls_x509_privkey_deinit(key);
}

typedef struct fx {
  char tmp[64];
  ae_config *cfg;
  ae_storage *st;
  uv_loop_t loop;
  ae_certstore *cs;
  ae_events *ev;
  ae_events_sub *sub;
  ae_challenge *ch;
  ae_policy *pol;
  ae_acme *acme;
  ae_provision *p;
  rec r;
} fx;

static void closed(void *ud) { (*(int *)ud)--; }

static void fx_open(fx *f, size_t max_entries) {
  memset(f, 0, sizeof(*f));
  snprintf(f->tmp, sizeof(f->tmp), "/tmp/ae-lazy-XXXXXX");
  assert_non_null(mkdtemp(f->tmp));
  char json[2048];
  snprintf(json, sizeof(json),
           "{\"listen\": {\"https\": \"127.0.0.1:18443\", \"http\": null, \"admin\": null},"
           " \"storage\": {\"path\": \"%s/st\"},"
           " \"default_cert\": {\"cert\": \"%s/d.crt\", \"key\": \"%s/d.key\"},"
           " \"acme\": {\"directory\": \"https://127.0.0.1:14000/dir\", \"ca_bundle\": null},"
           " \"on_demand\": {\"allow\": [\"*.example.test\"], \"first_handshake\": \"wait\"}}",
           f->tmp, f->tmp, f->tmp);
  ae_err err = {0};
  if (ae_config_parse("test.json", json, &f->cfg, &err) != 0)
    fail_msg("config: %s", err.msg);
  assert_int_equal(ae_storage_fs_new(f->cfg->storage_path, &f->st, &err), 0);
  uv_loop_init(&f->loop);
  ae_certstore_opts o = {.max_entries = max_entries};
  assert_int_equal(ae_certstore_new_opts(&o, &f->cs), 0);
  assert_int_equal(ae_events_new(256, &f->ev), 0);
  assert_int_equal(ae_events_subscribe(f->ev, on_event, &f->r, &f->sub), 0);
  assert_int_equal(ae_challenge_new(&f->ch), 0);
  assert_int_equal(ae_policy_new(&f->loop, f->cfg, &f->pol, &err), 0);
  assert_int_equal(ae_acme_new(&f->loop, f->cfg, f->st, f->ch, &f->acme, &err), 0);
}

static void fx_start(fx *f) {
  ae_err err = {0};
  ae_provision_deps deps = {.loop = &f->loop, .certs = f->cs, .storage = f->st, .acme = f->acme,
                            .policy = f->pol, .events = f->ev, .ca_host = "127.0.0.1_14000",
                            .wake = on_wake, .wake_ud = &f->r};
  assert_int_equal(ae_provision_new(&deps, f->cfg, &f->p, &err), 0);
  ae_certstore_set_evict_cb(f->cs, ae_provision_evicted, f->p);
}

static void fx_close(fx *f) {
  int pending = 3;
  ae_provision_close(f->p, closed, &pending);
  ae_acme_close(f->acme, closed, &pending);
  ae_policy_close(f->pol, closed, &pending);
  uv_run(&f->loop, UV_RUN_DEFAULT);
  assert_int_equal(pending, 0);
  ae_provision_free(f->p);
  ae_acme_free(f->acme);
  ae_policy_free(f->pol);
  ae_events_unsubscribe(f->ev, f->sub);
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

/* Runs the loop (bounded, generous for sanitizers) until cond(f) holds. */
static void run_until(fx *f, int (*cond)(fx *, const char *), const char *arg) {
  for (int i = 0; i < 10000 && !cond(f, arg); i++) {
    uv_run(&f->loop, UV_RUN_NOWAIT);
    usleep(1000);
  }
  assert_true(cond(f, arg));
}

static int in_cache(fx *f, const char *name) {
  ae_cert *c = ae_certstore_lookup(f->cs, name);
  ae_cert_unref(c);
  return c != NULL;
}

static int absent(fx *f, const char *name) { return ae_certstore_known_absent(f->cs, name); }

static void test_singleflight_and_negative(void **state) {
  (void)state;
  fx f;
  fx_open(&f, 0);
  int64_t now = (int64_t)time(NULL);
  store(f.st, "a.example.test", now - 3600, now + 90 * 86400);
  fx_start(&f);
  /* Five handshakes miss the same stored name before the read comes back: all held, one read. */
  for (int i = 0; i < 5; i++)
    assert_int_equal(ae_provision_on_sni(f.p, "a.example.test"), AE_MISS_HOLD);
  run_until(&f, in_cache, "a.example.test");
  for (int i = 0; i < 50; i++)
    uv_run(&f.loop, UV_RUN_NOWAIT);
  assert_int_equal(loaded_count(&f.r, "a.example.test"), 1);
  assert_true(f.r.wakes >= 1);
  assert_int_equal(f.r.requested, 0); /* a stored name is never ordered */
  /* Unknown name: one read, then remembered as absent; policy then decides (allowed: ordered
   * once); a denied unknown name is not read again within the TTL either. */
  assert_int_equal(ae_provision_on_sni(f.p, "new.example.test"), AE_MISS_HOLD);
  assert_int_equal(ae_provision_on_sni(f.p, "new.example.test"), AE_MISS_HOLD);
  run_until(&f, absent, "new.example.test");
  assert_int_equal(f.r.requested, 1);
  assert_int_equal(loaded_count(&f.r, "new.example.test"), 0);
  assert_int_equal(ae_provision_on_sni(f.p, "bad.other.test"), AE_MISS_HOLD);
  run_until(&f, absent, "bad.other.test");
  assert_int_equal(ae_provision_on_sni(f.p, "bad.other.test"), AE_MISS_DEFAULT);
  fx_close(&f);
}

static int index_ready(fx *f, const char *arg) {
  (void)arg;
  json_t *j = ae_provision_renewal_index_json(f->p, 1);
  int ready = json_is_true(json_object_get(j, "ready"));
  json_decref(j);
  return ready;
}

static int was_loaded(fx *f, const char *name) { return loaded_count(&f->r, name) > 0; }

static void test_index_order_and_due_renewal(void **state) {
  (void)state;
  fx f;
  fx_open(&f, 0);
  int64_t now = (int64_t)time(NULL);
  /* renew-at = not_before + 2/3 of the lifetime. */
  store(f.st, "late.example.test", now - 3600, now + 90 * 86400);
  store(f.st, "mid.example.test", now - 3600, now + 30 * 86400);
  store(f.st, "soon.example.test", now - 3600, now + 3 * 86400);
  store(f.st, "due.example.test", now - 80 * 86400, now + 5 * 86400);
  fx_start(&f);
  ae_err err = {0};
  assert_int_equal(ae_provision_start_index(f.p, &err), 0);
  run_until(&f, index_ready, NULL);
  /* The due name, never asked for, is loaded by the index (its record then renews it). */
  run_until(&f, was_loaded, "due.example.test");
  json_t *j = ae_provision_renewal_index_json(f.p, 10);
  assert_int_equal(json_integer_value(json_object_get(j, "stored_at_start")), 4);
  json_t *soon = json_object_get(j, "soonest");
  assert_int_equal(json_array_size(soon), 3);
  assert_string_equal(json_string_value(json_object_get(json_array_get(soon, 0), "domain")), "soon.example.test");
  assert_string_equal(json_string_value(json_object_get(json_array_get(soon, 1), "domain")), "mid.example.test");
  assert_string_equal(json_string_value(json_object_get(json_array_get(soon, 2), "domain")), "late.example.test");
  json_decref(j);
  j = ae_provision_renewal_index_json(f.p, 2);
  assert_int_equal(json_array_size(json_object_get(j, "soonest")), 2);
  json_decref(j);
  /* Paging walks records and index names together, in name order, each once. */
  json_t *pg = ae_provision_domains_query(f.p, 2, NULL, NULL);
  json_t *doms = json_object_get(pg, "domains");
  assert_int_equal(json_array_size(doms), 2);
  assert_string_equal(json_string_value(json_object_get(json_array_get(doms, 0), "domain")), "due.example.test");
  assert_string_equal(json_string_value(json_object_get(json_array_get(doms, 1), "domain")), "late.example.test");
  assert_string_equal(json_string_value(json_object_get(pg, "next")), "late.example.test");
  json_decref(pg);
  pg = ae_provision_domains_query(f.p, 2, "late.example.test", NULL);
  doms = json_object_get(pg, "domains");
  assert_int_equal(json_array_size(doms), 2);
  assert_string_equal(json_string_value(json_object_get(json_array_get(doms, 0), "domain")), "mid.example.test");
  assert_string_equal(json_string_value(json_object_get(json_array_get(doms, 1), "domain")), "soon.example.test");
  assert_true(json_is_null(json_object_get(pg, "next")));
  json_decref(pg);
  pg = ae_provision_domains_query(f.p, 10, NULL, "failed");
  assert_int_equal(json_array_size(json_object_get(pg, "domains")), 0);
  json_decref(pg);
  pg = ae_provision_domains_json(f.p);
  assert_int_equal(json_array_size(pg), 4);
  json_decref(pg);
  assert_int_equal(loaded_count(&f.r, "soon.example.test"), 0);
  assert_int_equal(loaded_count(&f.r, "late.example.test"), 0);
  assert_int_equal(f.r.requested, 0);
  fx_close(&f);
}

/* With a cache of 2, touching 4 names evicts idle ones into the index; an evicted name misses,
 * is read again and serves the same serial. */
static void test_evicted_name_reloads(void **state) {
  (void)state;
  fx f;
  fx_open(&f, 2);
  int64_t now = (int64_t)time(NULL);
  const char *names[] = {"e1.example.test", "e2.example.test", "e3.example.test", "e4.example.test"};
  for (int i = 0; i < 4; i++)
    store(f.st, names[i], now - 3600, now + (60 + i) * 86400);
  fx_start(&f);
  assert_int_equal(ae_provision_on_sni(f.p, names[0]), AE_MISS_HOLD);
  run_until(&f, in_cache, names[0]);
  ae_cert *first = ae_certstore_lookup(f.cs, names[0]);
  assert_non_null(first);
  char serial[200];
  snprintf(serial, sizeof(serial), "%s", ae_cert_serial(first));
  for (int i = 1; i < 4; i++) {
    assert_int_equal(ae_provision_on_sni(f.p, names[i]), AE_MISS_HOLD);
    run_until(&f, in_cache, names[i]);
  }
  assert_true(ae_certstore_count(f.cs) <= 2);
  assert_true(ae_certstore_evictions(f.cs) >= 2);
  assert_false(in_cache(&f, names[0]));
  /* The connection's reference outlived the eviction. */
  assert_string_equal(ae_cert_serial(first), serial);
  ae_cert_unref(first);
  json_t *j = ae_provision_renewal_index_json(f.p, 10);
  assert_true(json_integer_value(json_object_get(j, "pending")) >= 2);
  json_decref(j);
  assert_int_equal(ae_provision_on_sni(f.p, names[0]), AE_MISS_HOLD);
  run_until(&f, in_cache, names[0]);
  ae_cert *again = ae_certstore_lookup(f.cs, names[0]);
  assert_non_null(again);
  assert_string_equal(ae_cert_serial(again), serial);
  ae_cert_unref(again);
  assert_int_equal(f.r.requested, 0);
  fx_close(&f);
}

/* A stored pair the kernel has cached (just written) is read without the thread pool: on the
 * control loop the miss installs it before on_sni returns, and a worker's inline read is
 * installed once by ae_provision_loaded (a second report, or one for a name in memory, changes
 * nothing). An absent name is not marked absent by the cache-only read: the thread pool decides. */
static void test_cached_read_inline(void **state) {
  (void)state;
  fx f;
  fx_open(&f, 0);
  int64_t now = (int64_t)time(NULL);
  store(f.st, "i1.example.test", now - 3600, now + 90 * 86400);
  store(f.st, "i2.example.test", now - 3600, now + 90 * 86400);
  fx_start(&f);
  ae_cert *cert = NULL;
  ae_cert_ids ids;
  int rc = ae_provision_read_cached(f.p, "i2.example.test", &cert, &ids);
  if (rc != 0) {
    /* A kernel without openat2 RESOLVE_CACHED: the thread pool serves every load. */
    print_message("cache-only read unavailable (%d): checking the thread-pool path only\n", rc);
    assert_null(cert);
    assert_int_equal(ae_provision_on_sni(f.p, "i1.example.test"), AE_MISS_HOLD);
    run_until(&f, in_cache, "i1.example.test");
    fx_close(&f);
    return;
  }
  assert_non_null(cert);
  assert_false(in_cache(&f, "i2.example.test"));
  ae_provision_loaded(f.p, "i2.example.test", cert, ids.cert_id);
  assert_true(in_cache(&f, "i2.example.test"));
  ae_provision_loaded(f.p, "i2.example.test", cert, ids.cert_id);
  ae_cert_unref(cert);
  assert_int_equal(loaded_count(&f.r, "i2.example.test"), 1);

  assert_int_equal(ae_provision_on_sni(f.p, "i1.example.test"), AE_MISS_HOLD);
  assert_true(in_cache(&f, "i1.example.test")); /* installed before on_sni returned */
  assert_int_equal(loaded_count(&f.r, "i1.example.test"), 1);
  assert_true(f.r.wakes >= 1);

  assert_int_not_equal(ae_provision_read_cached(f.p, "none.example.test", &cert, &ids), 0);
  assert_null(cert);
  assert_false(absent(&f, "none.example.test"));
  assert_int_equal(f.r.requested, 0);
  fx_close(&f);
}

int main(void) {
  ae_log_set_level(getenv("AE_TEST_DEBUG") ? AE_LOG_DEBUG : AE_LOG_ERROR);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_singleflight_and_negative),
      cmocka_unit_test(test_index_order_and_due_renewal),
      cmocka_unit_test(test_evicted_name_reloads),
      cmocka_unit_test(test_cached_read_inline),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
