/* Provisioning with ACME Renewal Information (RFC 9773) end to end on a real loop against the
 * scripted fake CA: a stored certificate is loaded, its first ARI poll runs at once (test hook
 * ACMEDGE_ARI_FIRST_POLL_MAX_S=0), and the CA's window decides what happens next — a window in
 * the past starts a renewal order carrying "replaces", a future window moves renew_at into it,
 * and a CA without renewalInfo leaves the renewal at 2/3 of the lifetime. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include <jansson.h>
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

#include "fake_ca.h"

#define DOMAIN "ari.example.test"

typedef struct pfx {
  uv_loop_t loop;
  fake_ca ca;
  char dir[256];
  char ca_host[300];
  ae_config *cfg;
  ae_storage *st;
  ae_certstore *certs;
  ae_events *ev;
  ae_events_sub *sub;
  ae_challenge *ch;
  ae_policy *pol;
  ae_acme *acme;
  ae_provision *prov;
  char cert_id[320];          /* ae_acme_cert_id of the stored certificate */
  int64_t not_before, not_after;
  /* events seen */
  int n_loaded, n_scheduled, n_scheduled_ari, n_started_renewal, n_renewed, n_failed;
  char last_ari_at[48];       /* "at" of the last renewal_scheduled with source "ari" */
} pfx;

static void on_event(void *ud, uint64_t id, const char *type, const char *domain, const char *text) {
  pfx *f = ud;
  (void)id;
  if (domain == NULL || strcmp(domain, DOMAIN) != 0)
    return;
  json_t *o = json_loads(text, 0, NULL);
  assert_non_null(o);
  if (strcmp(type, "cert_loaded") == 0) {
    f->n_loaded++;
  } else if (strcmp(type, "renewal_scheduled") == 0) {
    const char *source = json_string_value(json_object_get(o, "source"));
    const char *at = json_string_value(json_object_get(o, "at"));
    assert_non_null(at);
    if (source != NULL) {
      assert_string_equal(source, "ari");
      f->n_scheduled_ari++;
      snprintf(f->last_ari_at, sizeof(f->last_ari_at), "%s", at);
    } else {
      f->n_scheduled++;
    }
  } else if (strcmp(type, "issuance_started") == 0) {
    if (json_is_true(json_object_get(o, "renewal")))
      f->n_started_renewal++;
  } else if (strcmp(type, "cert_renewed") == 0) {
    f->n_renewed++;
  } else if (strcmp(type, "issuance_failed") == 0) {
    f->n_failed++;
  }
  json_decref(o);
}

/* Stores a 90-day certificate (with an Authority Key Identifier, so it has an ARI certID) where
 * ae_provision_load looks for it, and remembers its identifier and lifetime. */
static void store_cert(pfx *f) {
  char *cert = NULL, *key = NULL, k[700];
  ae_err err = {0};
  const char *names[1] = {DOMAIN};
  assert_int_equal(ae_cert_generate_selfsigned(DOMAIN, names, 1, 90, &cert, &key, &err), 0);
  if (ae_acme_cert_id(cert, f->cert_id, sizeof(f->cert_id), &err) != 0)
    fail_msg("stored certificate has no certID: %s", err.msg);
  ae_cert *c = NULL;
  assert_int_equal(ae_cert_from_pem(cert, strlen(cert), key, strlen(key), &c, &err), 0);
  f->not_before = ae_cert_not_before(c);
  f->not_after = ae_cert_not_after(c);
  ae_cert_unref(c);
  snprintf(k, sizeof(k), "certs/%s/%s/cert.pem", f->ca_host, DOMAIN);
  assert_int_equal(ae_storage_put(f->st, k, cert, strlen(cert), 0, &err), 0);
  snprintf(k, sizeof(k), "certs/%s/%s/key.pem", f->ca_host, DOMAIN);
  assert_int_equal(ae_storage_put(f->st, k, key, strlen(key), 1, &err), 0);
  free(cert);
  free(key);
}

static int setup(void **state) {
  pfx *f = calloc(1, sizeof(*f));
  assert_non_null(f);
  ae_log_set_level(getenv("AE_TEST_DEBUG") ? AE_LOG_DEBUG : AE_LOG_ERROR);
  assert_int_equal(uv_loop_init(&f->loop), 0);
  fake_ca_start(&f->loop, &f->ca);
  f->ca.authz_mode = AUTHZ_VALID;
  snprintf(f->dir, sizeof(f->dir), "/tmp/ae-prov-ari.XXXXXX");
  assert_non_null(mkdtemp(f->dir));
  char url[128], json[2048];
  snprintf(url, sizeof(url), "http://127.0.0.1:%d/dir", f->ca.port);
  snprintf(json, sizeof(json),
           "{\"storage\":{\"path\":\"%s/st\"},\"acme\":{\"directory\":\"%s\","
           "\"email\":\"ops@example.test\",\"challenges\":[\"http-01\"]},"
           "\"on_demand\":{\"allow\":[\"*.example.test\"]},"
           "\"listen\":{\"https\":null,\"http\":null,\"admin\":null}}",
           f->dir, url);
  ae_err err = {0};
  if (ae_config_parse("test", json, &f->cfg, &err) != 0)
    fail_msg("config: %s", err.msg);
  assert_int_equal(ae_storage_ca_host(url, f->ca_host, sizeof(f->ca_host)), 0);
  assert_int_equal(ae_storage_fs_new(f->cfg->storage_path, &f->st, &err), 0);
  assert_int_equal(ae_certstore_new(&f->certs), 0);
  assert_int_equal(ae_events_new(256, &f->ev), 0);
  assert_int_equal(ae_events_subscribe(f->ev, on_event, f, &f->sub), 0);
  assert_int_equal(ae_challenge_new(&f->ch), 0);
  f->ca.ch = f->ch;
  assert_int_equal(ae_policy_new(&f->loop, f->cfg, &f->pol, &err), 0);
  assert_int_equal(ae_acme_new(&f->loop, f->cfg, f->st, f->ch, &f->acme, &err), 0);
  /* The first poll runs at once instead of 1..300 s after the load. */
  assert_int_equal(setenv("ACMEDGE_ARI_FIRST_POLL_MAX_S", "0", 1), 0);
  ae_provision_deps deps = {.loop = &f->loop, .certs = f->certs, .storage = f->st, .acme = f->acme,
                            .policy = f->pol, .events = f->ev, .ca_host = f->ca_host};
  assert_int_equal(ae_provision_new(&deps, f->cfg, &f->prov, &err), 0);
  unsetenv("ACMEDGE_ARI_FIRST_POLL_MAX_S");
  store_cert(f);
  *state = f;
  return 0;
}

static void closed_cb(void *ud) { (*(int *)ud)--; }

static void on_deadline(uv_timer_t *t) { *(int *)t->data = 1; }

/* Runs the loop until *count reaches want or ms passed; returns 1 when it did. */
static int run_until(pfx *f, const int *count, int want, unsigned ms) {
  uv_timer_t deadline;
  int expired = 0;
  uv_timer_init(&f->loop, &deadline);
  deadline.data = &expired;
  uv_timer_start(&deadline, on_deadline, ms, 0);
  while (*count < want && !expired)
    uv_run(&f->loop, UV_RUN_ONCE);
  uv_close((uv_handle_t *)&deadline, NULL);
  uv_run(&f->loop, UV_RUN_NOWAIT);
  return *count >= want;
}

/* Lets the loop run for ms (nothing expected; used to show that nothing more happens). */
static void run_for(pfx *f, unsigned ms) {
  int never = 0;
  run_until(f, &never, 1, ms);
}

static int teardown(void **state) {
  pfx *f = *state;
  int pending = 3;
  ae_provision_close(f->prov, closed_cb, &pending);
  ae_acme_close(f->acme, closed_cb, &pending);
  ae_policy_close(f->pol, closed_cb, &pending);
  for (int i = 0; i < 2000 && pending > 0; i++)
    uv_run(&f->loop, UV_RUN_ONCE);
  assert_int_equal(pending, 0);
  uv_close((uv_handle_t *)&f->ca.server, NULL);
  uv_run(&f->loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(&f->loop), 0);
  ae_provision_free(f->prov);
  ae_acme_free(f->acme);
  ae_policy_free(f->pol);
  ae_events_unsubscribe(f->ev, f->sub);
  ae_events_free(f->ev);
  ae_challenge_free(f->ch);
  ae_certstore_free(f->certs);
  ae_storage_free(f->st);
  ae_config_free(f->cfg);
  gnutls_x509_crt_deinit(f->ca.ca_crt);
  gnutls_x509_privkey_deinit(f->ca.ca_key);
  char cmd[300];
  snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
  assert_int_equal(system(cmd), 0);
  free(f);
  return 0;
}

static void load(pfx *f) {
  size_t n = 0;
  ae_err err = {0};
  assert_int_equal(ae_provision_load(f->prov, &n, &err), 0);
  assert_int_equal(n, 1);
  assert_int_equal(f->n_loaded, 1);
  assert_int_equal(f->n_scheduled, 1); /* our own 2/3-of-lifetime schedule */
}

static void set_window(pfx *f, int64_t start, int64_t end) {
  ae_time_rfc3339(start, f->ca.ari_start, sizeof(f->ca.ari_start));
  ae_time_rfc3339(end, f->ca.ari_end, sizeof(f->ca.ari_end));
}

/* The domain's entry in ae_provision_domains_json: state and renew_at (both copied out). */
static void domain_entry(pfx *f, char *state, size_t slen, char *renew_at, size_t rlen) {
  json_t *list = ae_provision_domains_json(f->prov);
  size_t i;
  json_t *o;
  int found = 0;
  state[0] = renew_at[0] = '\0';
  json_array_foreach(list, i, o) {
    if (strcmp(json_string_value(json_object_get(o, "domain")), DOMAIN) != 0)
      continue;
    found = 1;
    snprintf(state, slen, "%s", json_string_value(json_object_get(o, "state")));
    const char *ra = json_string_value(json_object_get(o, "renew_at"));
    snprintf(renew_at, rlen, "%s", ra ? ra : "");
  }
  json_decref(list);
  assert_true(found);
}

/* A window that is already over: the poll's answer starts a renewal at once, and its newOrder
 * names the stored certificate in "replaces". */
static void test_window_in_past_renews_now(void **state) {
  pfx *f = *state;
  int64_t now = (int64_t)time(NULL);
  f->ca.ari_mode = ARI_OK;
  set_window(f, now - 2 * 86400, now - 86400);
  load(f);
  assert_int_equal(f->ca.n_ari, 0); /* nothing synchronous */
  assert_true(run_until(f, &f->ca.n_order, 1, 20000));
  assert_int_equal(f->ca.n_ari, 1);
  char want_path[600];
  snprintf(want_path, sizeof(want_path), "/renewal-info/%s", f->cert_id);
  assert_string_equal(f->ca.ari_path, want_path);
  assert_int_equal(f->ca.n_order_replaces, 1);
  assert_string_equal(f->ca.last_replaces, f->cert_id);
  assert_int_equal(f->n_scheduled_ari, 1);
  assert_int_equal(f->n_started_renewal, 1);
  /* Should the renewed certificate be polled as well, it sees a future window: one order only. */
  set_window(f, now + 3 * 86400, now + 4 * 86400);
  assert_true(run_until(f, &f->n_renewed, 1, 20000));
  assert_int_equal(f->n_failed, 0);
  run_for(f, 300);
  assert_int_equal(f->ca.n_order, 1);
  assert_int_equal(f->n_renewed, 1);
  char st[32], ra[48];
  domain_entry(f, st, sizeof(st), ra, sizeof(ra));
  assert_string_equal(st, "valid");
  ae_cert *c = ae_certstore_lookup(f->certs, DOMAIN);
  assert_non_null(c);
  assert_true(ae_cert_not_after(c) != f->not_after); /* the CA's certificate is served now */
  ae_cert_unref(c);
}

/* A future window: no order; renew_at moves to a moment inside it, announced with source "ari". */
static void test_window_in_future_moves_renewal(void **state) {
  pfx *f = *state;
  int64_t now = (int64_t)time(NULL);
  int64_t start = now + 86400, end = now + 2 * 86400;
  f->ca.ari_mode = ARI_OK;
  set_window(f, start, end);
  load(f);
  assert_true(run_until(f, &f->n_scheduled_ari, 1, 20000));
  run_for(f, 300);
  assert_int_equal(f->ca.n_ari, 1);
  assert_int_equal(f->ca.n_order, 0);
  assert_int_equal(f->ca.n_post, 0); /* no account, no order: ARI is a plain GET */
  assert_int_equal(f->n_started_renewal, 0);
  assert_int_equal(f->n_scheduled_ari, 1);
  char st[32], ra[48];
  domain_entry(f, st, sizeof(st), ra, sizeof(ra));
  assert_string_equal(st, "valid");
  int64_t at = 0;
  if (ae_time_parse_rfc3339(ra, &at) != 0)
    fail_msg("renew_at '%s' is not a time", ra);
  assert_true(at >= start);
  assert_true(at <= end);
  assert_string_equal(ra, f->last_ari_at);
  /* Our own schedule (2/3 of 90 days) would have been much later. */
  assert_true(f->not_before + (f->not_after - f->not_before) * 2 / 3 > end);
}

/* A directory without renewalInfo: the poll finds none, asks nothing more, and the renewal
 * stays where our own schedule put it. */
static void test_no_ari_keeps_own_schedule(void **state) {
  pfx *f = *state;
  f->ca.ari_mode = ARI_NONE;
  load(f);
  assert_true(run_until(f, &f->ca.n_dir, 1, 20000));
  run_for(f, 300);
  assert_int_equal(f->ca.n_dir, 1);
  assert_int_equal(f->ca.n_ari, 0);
  assert_int_equal(f->ca.n_order, 0);
  assert_int_equal(f->ca.n_post, 0);
  assert_int_equal(f->n_scheduled_ari, 0);
  assert_int_equal(f->n_scheduled, 1);
  char st[32], ra[48], want[48];
  domain_entry(f, st, sizeof(st), ra, sizeof(ra));
  assert_string_equal(st, "valid");
  ae_time_rfc3339(f->not_before + (f->not_after - f->not_before) * 2 / 3, want, sizeof(want));
  assert_string_equal(ra, want);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_window_in_past_renews_now, setup, teardown),
      cmocka_unit_test_setup_teardown(test_window_in_future_moves_renewal, setup, teardown),
      cmocka_unit_test_setup_teardown(test_no_ari_keeps_own_schedule, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
