/* Shared helpers (common.c) and logging (log.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <dirent.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "acmedge/common.h"
#include "acmedge/log.h"

static char g_dir[64];

static int group_setup(void **state) {
  (void)state;
  snprintf(g_dir, sizeof(g_dir), "/tmp/ae_test_common.XXXXXX");
  return mkdtemp(g_dir) ? 0 : -1;
}

static int group_teardown(void **state) {
  (void)state;
  char cmd[128];
  snprintf(cmd, sizeof(cmd), "rm -rf '%s'", g_dir);
  return system(cmd) == 0 ? 0 : -1;
}

static void path_in(char *out, size_t n, const char *name) { snprintf(out, n, "%s/%s", g_dir, name); }

static int count_temp_files(const char *dir) {
  DIR *d = opendir(dir);
  assert_non_null(d);
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL)
    if (strstr(e->d_name, ".tmp."))
      n++;
  closedir(d);
  return n;
}

static void test_write_atomic(void **state) {
  (void)state;
  char p[128];
  path_in(p, sizeof(p), "secret.key");
  ae_err err = {0};
  mode_t old = umask(022);
  assert_int_equal(ae_write_file_atomic(p, "first content", 13, 0600, &err), 0);
  struct stat st;
  assert_int_equal(stat(p, &st), 0);
  assert_int_equal(st.st_mode & 07777, 0600);
  char *buf = NULL;
  size_t len = 0;
  assert_int_equal(ae_read_file(p, 1024, &buf, &len, &err), 0);
  assert_int_equal(len, 13);
  assert_string_equal(buf, "first content");
  free(buf);
  assert_int_equal(count_temp_files(g_dir), 0);

  /* Overwrite with shorter data and a different mode; umask must not interfere. */
  umask(077);
  assert_int_equal(ae_write_file_atomic(p, "2nd", 3, 0644, &err), 0);
  umask(old);
  assert_int_equal(stat(p, &st), 0);
  assert_int_equal(st.st_mode & 07777, 0644);
  assert_int_equal(st.st_size, 3);
  assert_int_equal(ae_read_file(p, 1024, &buf, &len, &err), 0);
  assert_int_equal(len, 3);
  assert_memory_equal(buf, "2nd", 4);
  free(buf);
  assert_int_equal(count_temp_files(g_dir), 0);

  /* Binary data with NULs, empty file. */
  const char bin[] = {'a', 0, 'b', 0};
  assert_int_equal(ae_write_file_atomic(p, bin, sizeof(bin), 0600, &err), 0);
  assert_int_equal(ae_read_file(p, 1024, &buf, &len, &err), 0);
  assert_int_equal(len, 4);
  assert_memory_equal(buf, bin, 4);
  free(buf);
  assert_int_equal(ae_write_file_atomic(p, "", 0, 0600, &err), 0);
  assert_int_equal(ae_read_file(p, 1024, &buf, &len, &err), 0);
  assert_int_equal(len, 0);
  assert_string_equal(buf, "");
  free(buf);

  /* A missing directory fails cleanly, names the file and leaves nothing behind. */
  char bad[160];
  path_in(bad, sizeof(bad), "no/such/dir/f");
  memset(&err, 0, sizeof(err));
  assert_int_equal(ae_write_file_atomic(bad, "x", 1, 0600, &err), AE_EIO);
  assert_int_equal(err.code, AE_EIO);
  assert_non_null(strstr(err.msg, "no/such/dir/f"));
  assert_int_equal(count_temp_files(g_dir), 0);
  unlink(p);
}

/* Create-only writes: the first writer wins whole, later or concurrent ones change nothing. */
static void test_write_new(void **state) {
  (void)state;
  char p[128];
  path_in(p, sizeof(p), "created.key");
  ae_err err = {0};
  assert_int_equal(ae_write_file_new(p, "mine", 4, 0600, &err), 0);
  struct stat st;
  assert_int_equal(stat(p, &st), 0);
  assert_int_equal(st.st_mode & 07777, 0600);
  memset(&err, 0, sizeof(err));
  assert_int_equal(ae_write_file_new(p, "theirs", 6, 0600, &err), AE_EEXIST);
  assert_non_null(strstr(err.msg, "created.key"));
  char *buf = NULL;
  size_t len = 0;
  assert_int_equal(ae_read_file(p, 1024, &buf, &len, &err), 0);
  assert_string_equal(buf, "mine");
  free(buf);
  assert_int_equal(count_temp_files(g_dir), 0);
  unlink(p);

  /* Eight processes race for one path: exactly one creates it, with its whole content. */
  enum { RACERS = 8 };
  pid_t pids[RACERS];
  for (int i = 0; i < RACERS; i++) {
    pids[i] = fork();
    assert_true(pids[i] >= 0);
    if (pids[i] == 0) {
      char data[64];
      int n = snprintf(data, sizeof(data), "racer %d %s", i, "0123456789abcdef0123456789abcdef");
      ae_err e = {0};
      int r = ae_write_file_new(p, data, (size_t)n, 0600, &e);
      _exit(r == 0 ? 0 : r == AE_EEXIST ? 2 : 1);
    }
  }
  int winners = 0, losers = 0;
  for (int i = 0; i < RACERS; i++) {
    int ws = 0;
    assert_int_equal(waitpid(pids[i], &ws, 0), pids[i]);
    assert_true(WIFEXITED(ws));
    winners += WEXITSTATUS(ws) == 0;
    losers += WEXITSTATUS(ws) == 2;
  }
  assert_int_equal(winners, 1);
  assert_int_equal(losers, RACERS - 1);
  assert_int_equal(ae_read_file(p, 1024, &buf, &len, &err), 0);
  assert_int_equal(len, strlen("racer 0 0123456789abcdef0123456789abcdef"));
  assert_memory_equal(buf, "racer ", 6);
  free(buf);
  assert_int_equal(count_temp_files(g_dir), 0);
  unlink(p);
}

static void write_n(const char *p, size_t n) {
  char *data = malloc(n ? n : 1);
  assert_non_null(data);
  memset(data, 'x', n);
  ae_err err = {0};
  assert_int_equal(ae_write_file_atomic(p, data, n, 0600, &err), 0);
  free(data);
}

static void test_read_file_cap(void **state) {
  (void)state;
  char p[128];
  path_in(p, sizeof(p), "sized");
  char *buf = NULL;
  size_t len = 0;
  ae_err err = {0};
  static const size_t sizes[] = {0, 1, 100, 4095, 4096, 4097, 10000};
  for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
    size_t n = sizes[i];
    write_n(p, n);
    /* Exactly at the cap is allowed. */
    buf = NULL;
    if (ae_read_file(p, n ? n : 1, &buf, &len, &err) != 0)
      fail_msg("size %zu at cap %zu: %s", n, n, err.msg);
    assert_int_equal(len, n);
    assert_int_equal(buf[n], '\0');
    assert_int_equal(strlen(buf), n);
    free(buf);
    /* One byte over the cap is refused. */
    if (n > 1) {
      buf = NULL;
      if (ae_read_file(p, n - 1, &buf, &len, &err) != AE_ELIMIT)
        fail_msg("size %zu accepted with cap %zu", n, n - 1);
      assert_null(buf);
    }
  }
  write_n(p, 100);
  buf = NULL;
  assert_int_equal(ae_read_file(p, 50, &buf, &len, &err), AE_ELIMIT);
  assert_null(buf);
  assert_non_null(strstr(err.msg, p));

  char missing[160];
  path_in(missing, sizeof(missing), "missing");
  assert_int_equal(ae_read_file(missing, 100, &buf, &len, &err), AE_ENOTFOUND);
  assert_non_null(strstr(err.msg, missing));
  unlink(p);
}

/* The storage flavours: a regular file is read whole at its fstat size; a FIFO or a directory is
 * refused as "not a file" without blocking (no writer ever opens the FIFO); the cache-only read
 * returns the content of a file just written (its pages are cached) or, where the kernel cannot
 * tell, AE_EAGAIN, never a partial buffer. */
static void test_read_file_regular(void **state) {
  (void)state;
  char p[160], fifo[160], dir[160];
  path_in(p, sizeof(p), "regular");
  path_in(fifo, sizeof(fifo), "fifo");
  path_in(dir, sizeof(dir), "adir");
  write_n(p, 5000);
  char *buf = NULL;
  size_t len = 0;
  ae_err err = {0};
  static const unsigned flags[] = {AE_READ_REGULAR, AE_READ_NOWAIT};
  assert_int_equal(mkfifo(fifo, 0600), 0);
  assert_int_equal(mkdir(dir, 0700), 0);
  for (size_t i = 0; i < 2; i++) {
    buf = NULL;
    int rc = ae_read_file_ex(p, 5000, flags[i], &buf, &len, &err);
    if (rc == 0) {
      assert_int_equal(len, 5000);
      assert_int_equal(strlen(buf), 5000);
      free(buf);
    } else {
      if (!(flags[i] & AE_READ_NOWAIT) || rc != AE_EAGAIN)
        fail_msg("flags %u: %d %s", flags[i], rc, err.msg);
      assert_null(buf);
    }
    assert_int_equal(ae_read_file_ex(p, 4999, flags[i], &buf, &len, &err), AE_ELIMIT);
    const char *refused[] = {fifo, dir};
    for (size_t j = 0; j < 2; j++) {
      buf = NULL;
      memset(&err, 0, sizeof(err));
      rc = ae_read_file_ex(refused[j], 100, flags[i], &buf, &len, &err);
      if (rc == AE_EAGAIN && (flags[i] & AE_READ_NOWAIT))
        continue;
      if (rc != AE_ENOTFOUND)
        fail_msg("%s flags %u: %d %s", refused[j], flags[i], rc, err.msg);
      assert_non_null(strstr(err.msg, "not a file"));
      assert_non_null(strstr(err.msg, refused[j]));
      assert_null(buf);
    }
    char missing[200];
    path_in(missing, sizeof(missing), "regular/below-a-file");
    /* A lookup that ends in no entry is not answered from the dentry cache: AE_EAGAIN then. */
    rc = ae_read_file_ex(missing, 100, flags[i], &buf, &len, &err);
    if (rc != AE_ENOTFOUND && !(rc == AE_EAGAIN && (flags[i] & AE_READ_NOWAIT)))
      fail_msg("%s flags %u: %d %s", missing, flags[i], rc, err.msg);
    assert_non_null(strstr(err.msg, missing));
  }
  unlink(p);
  unlink(fifo);
  rmdir(dir);
}

static void test_mkdirs(void **state) {
  (void)state;
  char p[160];
  path_in(p, sizeof(p), "a/b/c");
  ae_err err = {0};
  assert_int_equal(ae_mkdirs(p, &err), 0);
  struct stat st;
  assert_int_equal(stat(p, &st), 0);
  assert_true(S_ISDIR(st.st_mode));
  assert_int_equal(st.st_mode & 0777, 0700);
  assert_int_equal(ae_mkdirs(p, &err), 0); /* existing is fine */
  char trailing[170];
  snprintf(trailing, sizeof(trailing), "%s/d/", p);
  assert_int_equal(ae_mkdirs(trailing, &err), 0);
  char file[170];
  snprintf(file, sizeof(file), "%s/file", p);
  assert_int_equal(ae_write_file_atomic(file, "x", 1, 0600, &err), 0);
  char under[180];
  snprintf(under, sizeof(under), "%s/sub", file);
  assert_true(ae_mkdirs(file, &err) < 0);
  assert_true(ae_mkdirs(under, &err) < 0);
  assert_true(ae_mkdirs("", &err) < 0);
}

static void test_rfc3339(void **state) {
  (void)state;
  char buf[32];
  ae_time_rfc3339(0, buf, sizeof(buf));
  assert_string_equal(buf, "1970-01-01T00:00:00Z");
  ae_time_rfc3339(1767323045, buf, sizeof(buf));
  assert_string_equal(buf, "2026-01-02T03:04:05Z");
  static const int64_t samples[] = {0, 1, 86399, 951782400 /* 2000-02-29 */, 1767323045, 4102444799};
  for (size_t i = 0; i < sizeof(samples) / sizeof(samples[0]); i++) {
    int64_t back = -1;
    ae_time_rfc3339(samples[i], buf, sizeof(buf));
    assert_int_equal(ae_time_parse_rfc3339(buf, &back), 0);
    assert_int_equal(back, samples[i]);
  }
  int64_t t = 0;
  assert_int_equal(ae_time_parse_rfc3339("2026-01-02T03:04:05.123456Z", &t), 0);
  assert_int_equal(t, 1767323045);
  assert_int_equal(ae_time_parse_rfc3339("2026-01-02T05:04:05+02:00", &t), 0);
  assert_int_equal(t, 1767323045);
  assert_int_equal(ae_time_parse_rfc3339("2026-01-01T22:34:05-04:30", &t), 0);
  assert_int_equal(t, 1767323045);
  static const char *const bad[] = {"",
                                    "garbage",
                                    "2026-01-02T03:04:05",
                                    "2026-01-02T03:04:05Zjunk",
                                    "2026-13-02T03:04:05Z",
                                    "2026-01-02T03:04:05+0200",
                                    "2026-01-02T03:04:05+02:00junk",
                                    "2026-01-02T03:04:05+5:3",
                                    "2026-01-02T03:04:05+",
                                    "2026-01-02 03:04:05Z"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    /* Heap copies so an overread past the terminator is caught under ASan. */
    char *s = strdup(bad[i]);
    assert_non_null(s);
    t = 42;
    if (ae_time_parse_rfc3339(s, &t) == 0)
      fail_msg("accepted '%s'", bad[i]);
    free(s);
  }
}

static void test_misc_helpers(void **state) {
  (void)state;
  assert_null(ae_strdup(NULL));
  char *d = ae_strdup("abc");
  assert_string_equal(d, "abc");
  free(d);
  assert_int_equal(ae_strcasecmp("Example.COM", "example.com"), 0);
  assert_true(ae_strcasecmp("a", "b") < 0);
  assert_true(ae_strcasecmp("ab", "a") > 0);
  ae_err err = {0};
  assert_int_equal(ae_err_set(&err, AE_EPROTO, "bad %s %d", "thing", 7), AE_EPROTO);
  assert_int_equal(err.code, AE_EPROTO);
  assert_string_equal(err.msg, "bad thing 7");
  assert_int_equal(ae_err_set(NULL, AE_EIO, "ignored"), AE_EIO);
  assert_string_equal(ae_strerror(AE_ETIMEDOUT), "timed out");
  assert_string_equal(ae_strerror(12345), "unknown error");
  uint64_t a = ae_now_ms(), b = ae_now_ms();
  assert_true(b >= a);
  assert_true(a > 0);
}

/* ---- logging ---- */

typedef struct captured {
  int n;
  ae_log_level level[8];
  char line[8][4200];
} captured;

static void sink(void *ud, ae_log_level level, const char *line) {
  captured *c = ud;
  if (c->n < 8) {
    c->level[c->n] = level;
    snprintf(c->line[c->n], sizeof(c->line[0]), "%s", line);
  }
  c->n++;
}

static void test_log_json(void **state) {
  (void)state;
  captured c;
  memset(&c, 0, sizeof(c));
  ae_log_set_sink(sink, &c);
  ae_log_set_level(AE_LOG_INFO);
  ae_log_set_json(1);
  AE_INFO("tls", "hello %d \"quoted\"\nnext", 5);
  AE_DEBUG("tls", "filtered %d", 1);
  AE_ERROR("acme", "boom");
  ae_log_structured(AE_LOG_WARN, "events", "cert_issued",
                    "{\"domain\":\"a.example.com\",\"id\":7,\"msg\":\"shadow\",\"level\":\"x\"}");
  ae_log_set_sink(NULL, NULL);
  ae_log_set_json(0);
  assert_int_equal(c.n, 3);

  json_error_t je;
  json_t *o = json_loads(c.line[0], 0, &je);
  if (!o)
    fail_msg("not JSON: %s (%s)", c.line[0], je.text);
  assert_null(strchr(c.line[0], '\n'));
  assert_int_equal(c.level[0], AE_LOG_INFO);
  assert_string_equal(json_string_value(json_object_get(o, "level")), "info");
  assert_string_equal(json_string_value(json_object_get(o, "sub")), "tls");
  assert_string_equal(json_string_value(json_object_get(o, "msg")), "hello 5 \"quoted\"\nnext");
  const char *ts = json_string_value(json_object_get(o, "ts"));
  assert_non_null(ts);
  int64_t t;
  assert_int_equal(ae_time_parse_rfc3339(ts, &t), 0);
  json_decref(o);

  o = json_loads(c.line[1], 0, &je);
  assert_non_null(o);
  assert_string_equal(json_string_value(json_object_get(o, "level")), "error");
  assert_string_equal(json_string_value(json_object_get(o, "sub")), "acme");
  json_decref(o);

  o = json_loads(c.line[2], 0, &je);
  assert_non_null(o);
  assert_int_equal(c.level[2], AE_LOG_WARN);
  assert_string_equal(json_string_value(json_object_get(o, "level")), "warn");
  assert_string_equal(json_string_value(json_object_get(o, "msg")), "cert_issued");
  assert_string_equal(json_string_value(json_object_get(o, "domain")), "a.example.com");
  assert_int_equal(json_integer_value(json_object_get(o, "id")), 7);
  /* Event fields never hide the log's own fields. */
  assert_string_equal(json_string_value(json_object_get(o, "event_msg")), "shadow");
  assert_string_equal(json_string_value(json_object_get(o, "event_level")), "x");
  json_decref(o);
}

static void test_log_text(void **state) {
  (void)state;
  captured c;
  memset(&c, 0, sizeof(c));
  ae_log_set_sink(sink, &c);
  ae_log_set_json(0);
  ae_log_set_level(AE_LOG_WARN);
  assert_false(ae_log_enabled(AE_LOG_INFO));
  assert_true(ae_log_enabled(AE_LOG_ERROR));
  AE_INFO("proxy", "dropped");
  AE_WARN("proxy", "upstream %s failed", "127.0.0.1:1");
  ae_log_set_level(AE_LOG_DEBUG);
  AE_DEBUG("proxy", "line1\nline2");
  ae_log_structured(AE_LOG_INFO, "events", "cert_issued", "{\"domain\":\"a.test\"}");
  ae_log_set_level(AE_LOG_INFO);
  ae_log_set_sink(NULL, NULL);
  assert_int_equal(c.n, 3);
  assert_non_null(strstr(c.line[0], " warn  [proxy] upstream 127.0.0.1:1 failed"));
  /* Starts with an RFC 3339 timestamp with milliseconds. */
  assert_int_equal(c.line[0][4], '-');
  assert_int_equal(c.line[0][10], 'T');
  assert_int_equal(c.line[0][23], 'Z');
  assert_non_null(strstr(c.line[1], " debug [proxy] line1"));
  /* A newline in a message must not forge a second log line. */
  assert_null(strchr(c.line[1], '\n'));
  assert_non_null(strstr(c.line[2], " info  [events] cert_issued {\"domain\":\"a.test\"}"));

  ae_log_level lv;
  assert_int_equal(ae_log_level_parse("debug", &lv), 0);
  assert_int_equal(lv, AE_LOG_DEBUG);
  assert_int_equal(ae_log_level_parse("error", &lv), 0);
  assert_int_equal(lv, AE_LOG_ERROR);
  assert_int_not_equal(ae_log_level_parse("verbose", &lv), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_write_atomic), cmocka_unit_test(test_write_new), cmocka_unit_test(test_read_file_cap),
      cmocka_unit_test(test_read_file_regular), cmocka_unit_test(test_mkdirs),
      cmocka_unit_test(test_rfc3339),      cmocka_unit_test(test_misc_helpers),  cmocka_unit_test(test_log_json),
      cmocka_unit_test(test_log_text),
  };
  return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
