/* Metrics: counters, labelled families with escaping, cumulative histogram, exposition format. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "acmedge/metrics.h"

static int reset(void **state) {
  (void)state;
  ae_metrics_reset();
  return 0;
}

/* Returns 1 when text contains the exact line. */
static int has_line(const char *text, const char *line) {
  size_t n = strlen(line);
  const char *p = text;
  while ((p = strstr(p, line)) != NULL) {
    if ((p == text || p[-1] == '\n') && (p[n] == '\n' || p[n] == '\0'))
      return 1;
    p += n;
  }
  return 0;
}

static void test_counters(void **state) {
  (void)state;
  ae_metrics_inc(AE_M_HS_KNOWN);
  ae_metrics_inc(AE_M_HS_KNOWN);
  ae_metrics_inc(AE_M_HS_HELD);
  ae_metrics_add(AE_M_CONN_OPEN, 5);
  ae_metrics_add(AE_M_CONN_OPEN, -2);
  ae_metrics_inc(AE_M_ISSUE_ATTEMPTS);
  ae_metrics_inc(AE_M_ISSUE_SUCCESS);
  ae_metrics_inc(AE_M_UPSTREAM_5XX);
  ae_metrics_inc(AE_M_UPSTREAM_ERRORS);
  ae_metrics_add(AE_M__COUNT, 1); /* out of range: ignored */
  assert_int_equal(ae_metrics_get(AE_M_HS_KNOWN), 2);
  assert_int_equal(ae_metrics_get(AE_M_CONN_OPEN), 3);
  assert_int_equal(ae_metrics_get(AE_M__COUNT), 0);

  char *t = ae_metrics_render();
  assert_non_null(t);
  assert_true(has_line(t, "# TYPE acmedge_handshakes_total counter"));
  assert_true(has_line(t, "acmedge_handshakes_total{outcome=\"known\"} 2"));
  assert_true(has_line(t, "acmedge_handshakes_total{outcome=\"held\"} 1"));
  assert_true(has_line(t, "acmedge_handshakes_total{outcome=\"default\"} 0"));
  assert_true(has_line(t, "acmedge_handshakes_total{outcome=\"failed\"} 0"));
  assert_true(has_line(t, "# TYPE acmedge_open_connections gauge"));
  assert_true(has_line(t, "acmedge_open_connections 3"));
  assert_true(has_line(t, "acmedge_issuance_attempts_total 1"));
  assert_true(has_line(t, "acmedge_issuance_successes_total 1"));
  assert_true(has_line(t, "acmedge_orders_in_flight 0"));
  assert_true(has_line(t, "acmedge_renewals_total 0"));
  assert_true(has_line(t, "acmedge_upstream_responses_total{class=\"5xx\"} 1"));
  assert_true(has_line(t, "acmedge_upstream_responses_total{class=\"error\"} 1"));
  assert_true(has_line(t, "acmedge_http80_requests_total 0"));
  assert_non_null(strstr(t, "# HELP acmedge_handshakes_total "));
  free(t);

  ae_metrics_reset();
  assert_int_equal(ae_metrics_get(AE_M_HS_KNOWN), 0);
}

static void test_labels_and_escaping(void **state) {
  (void)state;
  ae_metrics_count_label("denied", "not_allowed");
  ae_metrics_count_label("denied", "not_allowed");
  ae_metrics_count_label("denied", "ask \"said\" no\\\nreally");
  ae_metrics_count_label("denied", NULL);
  ae_metrics_count_label("no_such_family", "x");
  ae_metrics_count_label("issue_failures", "urn:ietf:params:acme:error:rejectedIdentifier");
  char *t = ae_metrics_render();
  assert_true(has_line(t, "# TYPE acmedge_denied_total counter"));
  assert_true(has_line(t, "acmedge_denied_total{reason=\"not_allowed\"} 2"));
  assert_true(has_line(t, "acmedge_denied_total{reason=\"ask \\\"said\\\" no\\\\\\nreally\"} 1"));
  assert_true(has_line(t, "acmedge_denied_total{reason=\"unknown\"} 1"));
  assert_true(has_line(t, "acmedge_issuance_failures_total{problem=\"urn:ietf:params:acme:error:rejectedIdentifier\"} 1"));
  assert_null(strstr(t, "no_such_family"));
  free(t);

  /* Failures counted without a problem type show up as "unspecified". */
  ae_metrics_inc(AE_M_ISSUE_FAILURE);
  ae_metrics_inc(AE_M_ISSUE_FAILURE);
  t = ae_metrics_render();
  assert_true(has_line(t, "acmedge_issuance_failures_total{problem=\"unspecified\"} 1"));
  free(t);
}

static void test_label_bound(void **state) {
  (void)state;
  for (int i = 0; i < 200; i++) {
    char v[32];
    snprintf(v, sizeof(v), "reason%d", i);
    ae_metrics_count_label("denied", v);
  }
  char *t = ae_metrics_render();
  size_t lines = 0;
  for (const char *p = t; (p = strstr(p, "\nacmedge_denied_total{")) != NULL; p++)
    lines++;
  assert_int_equal(lines, 64);
  assert_true(has_line(t, "acmedge_denied_total{reason=\"reason0\"} 1"));
  assert_true(has_line(t, "acmedge_denied_total{reason=\"other\"} 137"));
  free(t);
}

static void test_histogram(void **state) {
  (void)state;
  ae_metrics_observe_ttc(0.05);
  ae_metrics_observe_ttc(0.1); /* le is inclusive */
  ae_metrics_observe_ttc(0.3);
  ae_metrics_observe_ttc(7);
  ae_metrics_observe_ttc(1000);
  ae_metrics_observe_ttc(-1); /* ignored */
  char *t = ae_metrics_render();
  assert_true(has_line(t, "# TYPE acmedge_time_to_certificate_seconds histogram"));
  assert_true(has_line(t, "acmedge_time_to_certificate_seconds_bucket{le=\"0.1\"} 2"));
  assert_true(has_line(t, "acmedge_time_to_certificate_seconds_bucket{le=\"0.25\"} 2"));
  assert_true(has_line(t, "acmedge_time_to_certificate_seconds_bucket{le=\"0.5\"} 3"));
  assert_true(has_line(t, "acmedge_time_to_certificate_seconds_bucket{le=\"5\"} 3"));
  assert_true(has_line(t, "acmedge_time_to_certificate_seconds_bucket{le=\"10\"} 4"));
  assert_true(has_line(t, "acmedge_time_to_certificate_seconds_bucket{le=\"300\"} 4"));
  assert_true(has_line(t, "acmedge_time_to_certificate_seconds_bucket{le=\"+Inf\"} 5"));
  assert_true(has_line(t, "acmedge_time_to_certificate_seconds_count 5"));
  assert_true(has_line(t, "acmedge_time_to_certificate_seconds_sum 1007.45"));
  free(t);
}

/* Every line is a comment (# HELP/# TYPE) or a sample "name{labels} value"; every sample's family
 * was declared by a TYPE line before it. */
static void test_format_shape(void **state) {
  (void)state;
  ae_metrics_count_label("denied", "x");
  char *t = ae_metrics_render();
  assert_true(strlen(t) > 0);
  assert_int_equal(t[strlen(t) - 1], '\n');
  char *copy = strdup(t);
  char typed[64][96];
  size_t ntyped = 0;
  for (char *save = NULL, *line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
    if (strncmp(line, "# HELP ", 7) == 0)
      continue;
    if (strncmp(line, "# TYPE ", 7) == 0) {
      assert_true(ntyped < 64);
      assert_int_equal(sscanf(line + 7, "%95s", typed[ntyped]), 1);
      ntyped++;
      continue;
    }
    assert_true(line[0] != '#');
    char name[128];
    size_t k = strcspn(line, "{ ");
    assert_true(k > 0 && k < sizeof(name));
    memcpy(name, line, k);
    name[k] = '\0';
    int found = 0;
    for (size_t i = 0; i < ntyped && !found; i++) {
      size_t tl = strlen(typed[i]);
      if (strncmp(name, typed[i], tl) == 0 &&
          (name[tl] == '\0' || strcmp(name + tl, "_bucket") == 0 || strcmp(name + tl, "_sum") == 0 ||
           strcmp(name + tl, "_count") == 0))
        found = 1;
    }
    assert_true(found);
    const char *sp = strrchr(line, ' ');
    assert_non_null(sp);
    char *end;
    strtod(sp + 1, &end);
    assert_true(*end == '\0' && end != sp + 1);
  }
  free(copy);
  free(t);
}

static void *hammer(void *arg) {
  (void)arg;
  for (int i = 0; i < 10000; i++) {
    ae_metrics_inc(AE_M_HTTP80_REQUESTS);
    if (i % 100 == 0)
      ae_metrics_count_label("denied", "rate");
  }
  return NULL;
}

static void test_threads(void **state) {
  (void)state;
  pthread_t th[4];
  for (int i = 0; i < 4; i++)
    assert_int_equal(pthread_create(&th[i], NULL, hammer, NULL), 0);
  for (int i = 0; i < 4; i++)
    pthread_join(th[i], NULL);
  assert_int_equal(ae_metrics_get(AE_M_HTTP80_REQUESTS), 40000);
  char *t = ae_metrics_render();
  assert_true(has_line(t, "acmedge_denied_total{reason=\"rate\"} 400"));
  free(t);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup(test_counters, reset),
      cmocka_unit_test_setup(test_labels_and_escaping, reset),
      cmocka_unit_test_setup(test_label_bound, reset),
      cmocka_unit_test_setup(test_histogram, reset),
      cmocka_unit_test_setup(test_format_shape, reset),
      cmocka_unit_test_setup(test_threads, reset),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
