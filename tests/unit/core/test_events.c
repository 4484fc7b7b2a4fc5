/* Event bus: ids, envelope, ring overflow, replay and missed counts, subscriber removal. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "acmedge/events.h"
#include "acmedge/log.h"

#define MAX_SEEN 64

typedef struct {
  uint64_t ids[MAX_SEEN];
  char types[MAX_SEEN][32];
  char jsons[MAX_SEEN][512];
  size_t n;
} seen_t;

static void record(void *ud, uint64_t id, const char *type, const char *domain, const char *json) {
  seen_t *s = ud;
  (void)domain;
  assert_true(s->n < MAX_SEEN);
  s->ids[s->n] = id;
  snprintf(s->types[s->n], sizeof(s->types[0]), "%s", type);
  snprintf(s->jsons[s->n], sizeof(s->jsons[0]), "%s", json);
  s->n++;
}

static int g_log_lines;
static char g_last_log[1024];
static void log_sink(void *ud, ae_log_level level, const char *line) {
  (void)ud;
  (void)level;
  g_log_lines++;
  snprintf(g_last_log, sizeof(g_last_log), "%s", line);
}

static int setup(void **state) {
  (void)state;
  g_log_lines = 0;
  ae_log_set_sink(log_sink, NULL);
  ae_log_set_json(0);
  return 0;
}

static int teardown(void **state) {
  (void)state;
  ae_log_set_sink(NULL, NULL);
  return 0;
}

static void test_ids_and_envelope(void **state) {
  (void)state;
  ae_events *ev;
  assert_int_equal(ae_events_new(8, &ev), 0);
  assert_int_equal(ae_events_last_id(ev), 0);
  seen_t seen = {0};
  ae_events_sub *sub;
  assert_int_equal(ae_events_subscribe(ev, record, &seen, &sub), 0);

  json_t *d = json_pack("{s:s,s:s,s:i}", "serial", "0abc", "not_after", "2030-01-01T00:00:00Z", "id", 999);
  assert_int_equal(ae_events_emit(ev, "cert_issued", "a.example.test", d), 1);
  assert_int_equal(ae_events_emit(ev, "domain_requested", "b.example.test", json_pack("{s:s}", "source", "sni")), 2);
  assert_int_equal(ae_events_emit(ev, "cert_loaded", NULL, NULL), 3);
  assert_int_equal(ae_events_last_id(ev), 3);
  assert_int_equal(seen.n, 3);
  assert_int_equal(seen.ids[0], 1);
  assert_string_equal(seen.types[1], "domain_requested");

  /* Envelope first, in order; a detail named "id" never replaces the real id. */
  json_error_t jerr;
  json_t *o = json_loads(seen.jsons[0], 0, &jerr);
  assert_non_null(o);
  assert_int_equal(json_integer_value(json_object_get(o, "id")), 1);
  assert_string_equal(json_string_value(json_object_get(o, "type")), "cert_issued");
  assert_string_equal(json_string_value(json_object_get(o, "domain")), "a.example.test");
  assert_string_equal(json_string_value(json_object_get(o, "serial")), "0abc");
  const char *tm = json_string_value(json_object_get(o, "time"));
  assert_non_null(tm);
  assert_int_equal(strlen(tm), 20);
  assert_int_equal(tm[10], 'T');
  assert_int_equal(tm[19], 'Z');
  json_decref(o);
  assert_true(strncmp(seen.jsons[0], "{\"id\":1,\"time\":\"", 16) == 0);
  assert_non_null(strstr(seen.jsons[0], "\"type\":\"cert_issued\",\"domain\":\"a.example.test\",\"serial\""));
  assert_non_null(strstr(seen.jsons[2], "\"domain\":null"));

  /* Each event also went to the log with its JSON. */
  assert_int_equal(g_log_lines, 3);
  assert_non_null(strstr(g_last_log, "cert_loaded"));
  assert_non_null(strstr(g_last_log, "\"id\":3"));

  ae_events_unsubscribe(ev, sub);
  ae_events_emit(ev, "x", NULL, NULL);
  assert_int_equal(seen.n, 3);
  ae_events_free(ev);
}

static void test_ring_overflow_replay(void **state) {
  (void)state;
  ae_events *ev;
  assert_int_equal(ae_events_new(4, &ev), 0);
  for (int i = 0; i < 10; i++)
    ae_events_emit(ev, "t", "d.example.test", json_pack("{s:i}", "n", i));
  seen_t seen = {0};
  uint64_t missed = 12345;
  ae_events_replay(ev, 0, record, &seen, &missed);
  assert_int_equal(seen.n, 4);
  assert_int_equal(seen.ids[0], 7);
  assert_int_equal(seen.ids[3], 10);
  assert_int_equal(missed, 6);
  assert_non_null(strstr(seen.jsons[0], "\"n\":6"));

  memset(&seen, 0, sizeof(seen));
  ae_events_replay(ev, 8, record, &seen, &missed);
  assert_int_equal(seen.n, 2);
  assert_int_equal(seen.ids[0], 9);
  assert_int_equal(missed, 0);

  memset(&seen, 0, sizeof(seen));
  ae_events_replay(ev, 5, record, &seen, &missed);
  assert_int_equal(seen.n, 4);
  assert_int_equal(missed, 1);

  memset(&seen, 0, sizeof(seen));
  ae_events_replay(ev, 10, record, &seen, &missed);
  assert_int_equal(seen.n, 0);
  assert_int_equal(missed, 0);
  ae_events_replay(ev, 99, record, &seen, NULL);
  assert_int_equal(seen.n, 0);
  ae_events_free(ev);
}

static void test_resize(void **state) {
  (void)state;
  ae_events *ev;
  assert_int_equal(ae_events_new(8, &ev), 0);
  for (int i = 0; i < 6; i++)
    ae_events_emit(ev, "t", NULL, NULL);
  ae_events_set_buffer(ev, 3);
  seen_t seen = {0};
  uint64_t missed;
  ae_events_replay(ev, 0, record, &seen, &missed);
  assert_int_equal(seen.n, 3);
  assert_int_equal(seen.ids[0], 4);
  assert_int_equal(missed, 3);
  ae_events_set_buffer(ev, 16);
  ae_events_emit(ev, "t", NULL, NULL);
  memset(&seen, 0, sizeof(seen));
  ae_events_replay(ev, 0, record, &seen, &missed);
  assert_int_equal(seen.n, 4);
  assert_int_equal(seen.ids[0], 4);
  assert_int_equal(seen.ids[3], 7);
  /* Ids 1..3 left the ring while it was small: still reported as missed. */
  assert_int_equal(missed, 3);
  ae_events_set_buffer(ev, 0);
  memset(&seen, 0, sizeof(seen));
  ae_events_replay(ev, 2, record, &seen, &missed);
  assert_int_equal(seen.n, 0);
  assert_int_equal(missed, 5);
  assert_int_equal(ae_events_emit(ev, "t", NULL, NULL), 8);
  ae_events_free(ev);
}

/* A subscriber that removes itself (and optionally another one) while being called. */
typedef struct {
  ae_events *ev;
  ae_events_sub *self;
  ae_events_sub *other;
  int calls;
} selfrm_t;

static void self_remove(void *ud, uint64_t id, const char *type, const char *domain, const char *json) {
  selfrm_t *s = ud;
  (void)id;
  (void)type;
  (void)domain;
  (void)json;
  s->calls++;
  ae_events_unsubscribe(s->ev, s->self);
  if (s->other) {
    ae_events_unsubscribe(s->ev, s->other);
    s->other = NULL;
  }
}

static void test_unsubscribe_in_callback(void **state) {
  (void)state;
  ae_events *ev;
  assert_int_equal(ae_events_new(4, &ev), 0);
  selfrm_t a = {ev, NULL, NULL, 0};
  seen_t before = {0}, after = {0};
  ae_events_sub *sb, *sa;
  assert_int_equal(ae_events_subscribe(ev, record, &before, &sb), 0);
  assert_int_equal(ae_events_subscribe(ev, self_remove, &a, &a.self), 0);
  assert_int_equal(ae_events_subscribe(ev, record, &after, &sa), 0);
  a.other = sa; /* removed before its turn: must not be called for this event */
  ae_events_emit(ev, "one", NULL, NULL);
  ae_events_emit(ev, "two", NULL, NULL);
  assert_int_equal(a.calls, 1);
  assert_int_equal(before.n, 2);
  assert_int_equal(after.n, 0);
  ae_events_unsubscribe(ev, sb);
  ae_events_free(ev);
}

/* A subscriber that subscribes another one and emits from inside the callback. */
typedef struct {
  ae_events *ev;
  seen_t *late;
  ae_events_sub *late_sub;
  int depth;
} nest_t;

static void nester(void *ud, uint64_t id, const char *type, const char *domain, const char *json) {
  nest_t *n = ud;
  (void)id;
  (void)domain;
  (void)json;
  if (strcmp(type, "outer") == 0 && !n->late_sub) {
    ae_events_subscribe(n->ev, record, n->late, &n->late_sub);
    ae_events_emit(n->ev, "inner", NULL, NULL);
  }
}

static void test_nested(void **state) {
  (void)state;
  ae_events *ev;
  /* A ring of 1: the inner emit recycles the slot holding the outer event's text. */
  assert_int_equal(ae_events_new(1, &ev), 0);
  seen_t late = {0}, all = {0};
  nest_t n = {ev, &late, NULL, 0};
  ae_events_sub *s1, *s2;
  assert_int_equal(ae_events_subscribe(ev, nester, &n, &s1), 0);
  assert_int_equal(ae_events_subscribe(ev, record, &all, &s2), 0);
  ae_events_emit(ev, "outer", NULL, NULL);
  /* all sees inner (nested) then outer; late joined during outer and sees only inner. */
  assert_int_equal(all.n, 2);
  assert_string_equal(all.types[0], "inner");
  assert_string_equal(all.types[1], "outer");
  assert_non_null(strstr(all.jsons[1], "\"type\":\"outer\""));
  assert_int_equal(late.n, 1);
  assert_string_equal(late.types[0], "inner");
  ae_events_unsubscribe(ev, s1);
  ae_events_unsubscribe(ev, s2);
  ae_events_unsubscribe(ev, n.late_sub);
  ae_events_free(ev);
}

/* A flood of denials reaches every subscriber, but only a bounded number of log lines. */
static void test_denied_log_cap(void **state) {
  (void)state;
  ae_events *ev = NULL;
  assert_int_equal(ae_events_new(16, &ev), 0);
  seen_t *seen = calloc(1, sizeof(*seen));
  ae_events_sub *sub = NULL;
  assert_int_equal(ae_events_subscribe(ev, record, seen, &sub), 0);
  g_log_lines = 0;
  char name[64];
  for (int i = 0; i < 60; i++) {
    snprintf(name, sizeof(name), "r%d.example.org", i);
    ae_events_emit(ev, "domain_denied", name, NULL);
  }
  assert_int_equal(seen->n, 60);
  /* Within one second at most 20 lines; a second boundary adds one summary line and 20 more. */
  assert_true(g_log_lines >= 20 && g_log_lines <= 41);
  int before = g_log_lines;
  ae_events_emit(ev, "cert_issued", "a.example.test", NULL); /* other types are never capped */
  assert_int_equal(g_log_lines, before + 1);
  ae_events_unsubscribe(ev, sub);
  ae_events_free(ev);
  free(seen);
}

static void test_json_log_mode(void **state) {
  (void)state;
  ae_log_set_json(1);
  ae_events *ev;
  assert_int_equal(ae_events_new(2, &ev), 0);
  ae_events_emit(ev, "issuance_failed", "c.example.test",
                 json_pack("{s:s,s:s}", "problem", "urn:ietf:params:acme:error:rejectedIdentifier", "detail", "no"));
  ae_log_set_json(0);
  json_t *o = json_loads(g_last_log, 0, NULL);
  assert_non_null(o);
  assert_string_equal(json_string_value(json_object_get(o, "type")), "issuance_failed");
  assert_string_equal(json_string_value(json_object_get(o, "domain")), "c.example.test");
  assert_string_equal(json_string_value(json_object_get(o, "sub")), "event");
  assert_int_equal(json_integer_value(json_object_get(o, "id")), 1);
  json_decref(o);
  ae_events_free(ev);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_ids_and_envelope, setup, teardown),
      cmocka_unit_test_setup_teardown(test_ring_overflow_replay, setup, teardown),
      cmocka_unit_test_setup_teardown(test_resize, setup, teardown),
      cmocka_unit_test_setup_teardown(test_unsubscribe_in_callback, setup, teardown),
      cmocka_unit_test_setup_teardown(test_nested, setup, teardown),
      cmocka_unit_test_setup_teardown(test_json_log_mode, setup, teardown),
      cmocka_unit_test_setup_teardown(test_denied_log_cap, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
