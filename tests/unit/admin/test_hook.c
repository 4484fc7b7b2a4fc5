/* Event hook: stdin + environment, type filter, concurrency bound, queue bound, timeout kill of
 * the whole process group, failing and missing programs, close. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "acmedge/config.h"
#include "acmedge/events.h"
#include "acmedge/hook.h"
#include "acmedge/log.h"

typedef struct {
  uv_loop_t loop;
  ae_events *ev;
  ae_hook *hook;
  ae_config cfg;
  char dir[256];
  char prog[512];
  int closed;
  int warns;
  char last_warn[1024];
} fx_t;

static fx_t *g_fx;

static void log_sink(void *ud, ae_log_level level, const char *line) {
  (void)ud;
  if (level >= AE_LOG_WARN && g_fx) {
    g_fx->warns++;
    snprintf(g_fx->last_warn, sizeof(g_fx->last_warn), "%s", line);
  }
}

static void data_path(char *buf, size_t len, const char *name) {
  const char *d = getenv("AE_TEST_DATA");
  snprintf(buf, len, "%s/%s", d ? d : "tests/data", name);
}

static int setup(void **state) {
  fx_t *f = calloc(1, sizeof(*f));
  g_fx = f;
  assert_int_equal(uv_loop_init(&f->loop), 0);
  assert_int_equal(ae_events_new(64, &f->ev), 0);
  snprintf(f->dir, sizeof(f->dir), "/tmp/ae_test_hook.XXXXXX");
  assert_non_null(mkdtemp(f->dir));
  setenv("HOOK_OUT_DIR", f->dir, 1);
  setenv("HOOK_PARENT_VAR", "inherited", 1);
  unsetenv("HOOK_DELAY");
  f->cfg.events.hook_timeout_ms = 5000;
  f->cfg.events.hook_max_concurrent = 4;
  f->cfg.events.buffer = 64;
  ae_log_set_sink(log_sink, NULL);
  *state = f;
  return 0;
}

static void on_closed(void *ud) { ((fx_t *)ud)->closed = 1; }

static void run_ms(fx_t *f, unsigned ms);

static int teardown(void **state) {
  fx_t *f = *state;
  if (f->hook) {
    ae_hook_close(f->hook, on_closed, f);
    for (int i = 0; i < 500 && !f->closed; i++)
      run_ms(f, 20);
    assert_true(f->closed);
    ae_hook_free(f->hook);
  }
  assert_int_equal(uv_loop_close(&f->loop), 0);
  ae_events_free(f->ev);
  char cmd[300];
  snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
  assert_int_equal(system(cmd), 0);
  ae_log_set_sink(NULL, NULL);
  g_fx = NULL;
  free(f);
  return 0;
}

static void tick(uv_timer_t *t) { (void)t; }

/* Runs the loop for about ms milliseconds. */
static void run_ms(fx_t *f, unsigned ms) {
  uv_timer_t t;
  uv_timer_init(&f->loop, &t);
  uv_timer_start(&t, tick, 5, 5);
  uint64_t end = uv_now(&f->loop) + ms;
  while (uv_now(&f->loop) < end)
    uv_run(&f->loop, UV_RUN_ONCE);
  uv_close((uv_handle_t *)&t, NULL);
  uv_run(&f->loop, UV_RUN_NOWAIT);
}

static int file_exists(fx_t *f, const char *name) {
  char p[512];
  snprintf(p, sizeof(p), "%s/%s", f->dir, name);
  return access(p, F_OK) == 0;
}

/* Runs the loop until the file exists or ms pass. */
static int wait_file(fx_t *f, const char *name, unsigned ms) {
  for (unsigned waited = 0; waited < ms; waited += 20) {
    if (file_exists(f, name))
      return 1;
    run_ms(f, 20);
  }
  return file_exists(f, name);
}

static char *slurp(fx_t *f, const char *name) {
  char p[512];
  snprintf(p, sizeof(p), "%s/%s", f->dir, name);
  FILE *fp = fopen(p, "r");
  if (!fp)
    return NULL;
  char *buf = calloc(1, 8192);
  size_t n = fread(buf, 1, 8191, fp);
  buf[n] = '\0';
  fclose(fp);
  return buf;
}

static void test_stdin_env_args(void **state) {
  fx_t *f = *state;
  data_path(f->prog, sizeof(f->prog), "hook_record.sh");
  char *args[] = {"first arg", "--two"};
  f->cfg.events.hook = f->prog;
  f->cfg.events.hook_args = args;
  f->cfg.events.nhook_args = 2;
  ae_err err;
  assert_int_equal(ae_hook_new(&f->loop, &f->cfg, f->ev, &f->hook, &err), 0);
  setenv("ACMEDGE_DOMAIN", "stale.example.test", 1); /* must be replaced, not duplicated */
  uint64_t id = ae_events_emit(f->ev, "cert_issued", "a.example.test",
                               json_pack("{s:s,s:s}", "serial", "01ab", "not_after", "2030-01-01T00:00:00Z"));
  unsetenv("ACMEDGE_DOMAIN");
  uint64_t id2 = ae_events_emit(f->ev, "cert_loaded", NULL, NULL);
  char name[64], name2[64];
  snprintf(name, sizeof(name), "%llu.txt", (unsigned long long)id);
  snprintf(name2, sizeof(name2), "%llu.txt", (unsigned long long)id2);
  assert_true(wait_file(f, name, 5000));
  assert_true(wait_file(f, name2, 5000));
  char *s = slurp(f, name);
  assert_non_null(s);
  assert_non_null(strstr(s, "EVENT=cert_issued\n"));
  assert_non_null(strstr(s, "DOMAIN=a.example.test\n"));
  assert_non_null(strstr(s, "ARGS=first arg --two\n"));
  assert_non_null(strstr(s, "PARENT_ENV=inherited\n"));
  /* stdin: exactly the event JSON and a newline */
  const char *js = strstr(s, "{\"id\":");
  assert_non_null(js);
  json_t *o = json_loads(js, JSON_DISABLE_EOF_CHECK, NULL);
  assert_non_null(o);
  assert_string_equal(json_string_value(json_object_get(o, "type")), "cert_issued");
  assert_string_equal(json_string_value(json_object_get(o, "serial")), "01ab");
  assert_int_equal(json_integer_value(json_object_get(o, "id")), (json_int_t)id);
  json_decref(o);
  free(s);
  s = slurp(f, name2);
  assert_non_null(strstr(s, "EVENT=cert_loaded\nDOMAIN=\n"));
  free(s);
  for (int i = 0; i < 100 && ae_hook_running(f->hook); i++)
    run_ms(f, 20);
  assert_int_equal(ae_hook_running(f->hook), 0);
  assert_int_equal(f->warns, 0);
}

static void test_type_filter_and_reload(void **state) {
  fx_t *f = *state;
  data_path(f->prog, sizeof(f->prog), "hook_record.sh");
  char *types[] = {"cert_issued", "issuance_failed"};
  f->cfg.events.hook = f->prog;
  f->cfg.events.hook_types = types;
  f->cfg.events.nhook_types = 2;
  ae_err err;
  assert_int_equal(ae_hook_new(&f->loop, &f->cfg, f->ev, &f->hook, &err), 0);
  ae_events_emit(f->ev, "domain_requested", "b.example.test", NULL);     /* 1: filtered out */
  ae_events_emit(f->ev, "issuance_failed", "b.example.test", NULL);      /* 2 */
  assert_true(wait_file(f, "2.txt", 5000));
  run_ms(f, 200);
  assert_false(file_exists(f, "1.txt"));
  /* Reload: no filter any more, then no hook at all. */
  f->cfg.events.hook_types = NULL;
  f->cfg.events.nhook_types = 0;
  ae_hook_set_config(f->hook, &f->cfg);
  ae_events_emit(f->ev, "domain_requested", "b.example.test", NULL);     /* 3 */
  assert_true(wait_file(f, "3.txt", 5000));
  f->cfg.events.hook = NULL;
  ae_hook_set_config(f->hook, &f->cfg);
  ae_events_emit(f->ev, "cert_issued", "b.example.test", NULL);          /* 4 */
  run_ms(f, 300);
  assert_false(file_exists(f, "4.txt"));
  assert_int_equal(ae_hook_running(f->hook), 0);
}

static void test_concurrency_bound(void **state) {
  fx_t *f = *state;
  data_path(f->prog, sizeof(f->prog), "hook_record.sh");
  setenv("HOOK_DELAY", "0.3", 1);
  f->cfg.events.hook = f->prog;
  f->cfg.events.hook_max_concurrent = 2;
  ae_err err;
  assert_int_equal(ae_hook_new(&f->loop, &f->cfg, f->ev, &f->hook, &err), 0);
  for (int i = 0; i < 5; i++)
    ae_events_emit(f->ev, "cert_installed", "c.example.test", NULL);
  /* Emitting never waits for a hook. */
  assert_int_equal(ae_hook_running(f->hook), 2);
  assert_int_equal(ae_hook_queued(f->hook), 3);
  unsigned max_running = 0;
  for (int i = 0; i < 400 && !file_exists(f, "5.txt"); i++) {
    run_ms(f, 10);
    if (ae_hook_running(f->hook) > max_running)
      max_running = ae_hook_running(f->hook);
  }
  assert_int_equal(max_running, 2);
  for (int i = 1; i <= 5; i++) {
    char n[32];
    snprintf(n, sizeof(n), "%d.txt", i);
    assert_true(wait_file(f, n, 3000));
  }
}

static int pid_alive(pid_t pid) {
  char p[64];
  snprintf(p, sizeof(p), "/proc/%d/stat", (int)pid);
  FILE *fp = fopen(p, "r");
  if (!fp)
    return 0;
  char buf[512];
  size_t n = fread(buf, 1, sizeof(buf) - 1, fp);
  fclose(fp);
  buf[n] = '\0';
  const char *rp = strrchr(buf, ')');
  /* A zombie has finished running. */
  return rp && rp[1] == ' ' && rp[2] != 'Z';
}

static pid_t read_pid(fx_t *f, const char *name) {
  char *s = slurp(f, name);
  if (!s)
    return 0;
  pid_t p = (pid_t)atoi(s);
  free(s);
  return p;
}

static void test_timeout_kills_group(void **state) {
  fx_t *f = *state;
  data_path(f->prog, sizeof(f->prog), "hook_sleep.sh");
  f->cfg.events.hook = f->prog;
  f->cfg.events.hook_timeout_ms = 400;
  ae_err err;
  assert_int_equal(ae_hook_new(&f->loop, &f->cfg, f->ev, &f->hook, &err), 0);
  uint64_t t0 = uv_now(&f->loop);
  ae_events_emit(f->ev, "domain_requested", "d.example.test", NULL);
  assert_true(wait_file(f, "child.1.pid", 3000));
  pid_t sh = read_pid(f, "sleep.1.pid"), child = read_pid(f, "child.1.pid");
  assert_true(sh > 0 && child > 0);
  assert_true(pid_alive(child));
  for (int i = 0; i < 250 && ae_hook_running(f->hook); i++)
    run_ms(f, 20);
  assert_int_equal(ae_hook_running(f->hook), 0);
  assert_true(uv_now(&f->loop) - t0 >= 400);
  assert_non_null(strstr(f->last_warn, "killed after 400 ms"));
  /* The script's own child went with it (it may need a moment to be reaped by its new parent). */
  for (int i = 0; i < 100 && pid_alive(child); i++)
    usleep(10000);
  assert_false(pid_alive(child));
  assert_false(pid_alive(sh));
}

static void test_failures_logged(void **state) {
  fx_t *f = *state;
  data_path(f->prog, sizeof(f->prog), "hook_fail.sh");
  f->cfg.events.hook = f->prog;
  ae_err err;
  assert_int_equal(ae_hook_new(&f->loop, &f->cfg, f->ev, &f->hook, &err), 0);
  /* A large event: the hook exits without reading, our write may get EPIPE. */
  char big[100000];
  memset(big, 'x', sizeof(big) - 1);
  big[sizeof(big) - 1] = '\0';
  ae_events_emit(f->ev, "issuance_failed", "e.example.test", json_pack("{s:s}", "detail", big));
  for (int i = 0; i < 250 && ae_hook_running(f->hook); i++)
    run_ms(f, 20);
  assert_int_equal(ae_hook_running(f->hook), 0);
  assert_int_equal(f->warns, 1);
  assert_non_null(strstr(f->last_warn, "exited with status 3"));

  /* A program that does not exist: logged, nothing running, no retry. */
  ae_hook_close(f->hook, on_closed, f);
  for (int i = 0; i < 100 && !f->closed; i++)
    run_ms(f, 10);
  assert_true(f->closed);
  ae_hook_free(f->hook);
  f->closed = 0;
  f->cfg.events.hook = "/nonexistent/acmedge-hook";
  assert_int_equal(ae_hook_new(&f->loop, &f->cfg, f->ev, &f->hook, &err), 0);
  ae_events_emit(f->ev, "cert_issued", "e.example.test", NULL);
  run_ms(f, 100);
  assert_int_equal(ae_hook_running(f->hook), 0);
  assert_int_equal(f->warns, 2);
  assert_non_null(strstr(f->last_warn, "cannot run hook"));
}

static void test_queue_bound_and_close(void **state) {
  fx_t *f = *state;
  data_path(f->prog, sizeof(f->prog), "hook_sleep.sh");
  f->cfg.events.hook = f->prog;
  f->cfg.events.hook_max_concurrent = 1;
  f->cfg.events.hook_timeout_ms = 60000;
  ae_err err;
  assert_int_equal(ae_hook_new(&f->loop, &f->cfg, f->ev, &f->hook, &err), 0);
  for (int i = 0; i < 300; i++)
    ae_events_emit(f->ev, "domain_requested", "f.example.test", NULL);
  assert_int_equal(ae_hook_running(f->hook), 1);
  assert_int_equal(ae_hook_queued(f->hook), 256);
  assert_int_equal(f->warns, 300 - 1 - 256);
  assert_true(wait_file(f, "child.1.pid", 3000));
  pid_t child = read_pid(f, "child.1.pid");
  /* Close terminates the running hook (and its group) long before its 60 s timeout. */
  uint64_t t0 = uv_now(&f->loop);
  ae_hook_close(f->hook, on_closed, f);
  assert_false(f->closed); /* never called synchronously */
  for (int i = 0; i < 250 && !f->closed; i++)
    run_ms(f, 20);
  assert_true(f->closed);
  assert_true(uv_now(&f->loop) - t0 < 5000);
  ae_hook_free(f->hook);
  f->hook = NULL;
  for (int i = 0; i < 100 && pid_alive(child); i++)
    usleep(10000);
  assert_false(pid_alive(child));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_stdin_env_args, setup, teardown),
      cmocka_unit_test_setup_teardown(test_type_filter_and_reload, setup, teardown),
      cmocka_unit_test_setup_teardown(test_concurrency_bound, setup, teardown),
      cmocka_unit_test_setup_teardown(test_timeout_kills_group, setup, teardown),
      cmocka_unit_test_setup_teardown(test_failures_logged, setup, teardown),
      cmocka_unit_test_setup_teardown(test_queue_bound_and_close, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
