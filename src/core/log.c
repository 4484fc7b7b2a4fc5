/* Log lines: "2026-01-02T03:04:05.123Z info  [sub] message" or one JSON object per line. */
#include "acmedge/log.h"
#include "acmedge/common.h"

#include <jansson.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

static atomic_int g_level = AE_LOG_INFO;
static atomic_int g_json = 0;
static ae_log_sink_fn g_sink = NULL;
static void *g_sink_ud = NULL;
static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;

static const char *const level_names[] = {"debug", "info", "warn", "error"};

void ae_log_set_level(ae_log_level level) { atomic_store(&g_level, (int)level); }
void ae_log_set_json(int json) { atomic_store(&g_json, json ? 1 : 0); }
int ae_log_enabled(ae_log_level level) { return (int)level >= atomic_load(&g_level); }

int ae_log_level_parse(const char *s, ae_log_level *out) {
  for (int i = 0; i < 4; i++) {
    if (strcmp(s, level_names[i]) == 0) {
      *out = (ae_log_level)i;
      return 0;
    }
  }
  return AE_EINVAL;
}

void ae_log_set_sink(ae_log_sink_fn fn, void *ud) {
  pthread_mutex_lock(&g_lock);
  g_sink = fn;
  g_sink_ud = ud;
  pthread_mutex_unlock(&g_lock);
}

static void timestamp(char *buf, size_t len) {
  struct timeval tv;
  gettimeofday(&tv, NULL);
  struct tm tm;
  gmtime_r(&tv.tv_sec, &tm);
  size_t n = strftime(buf, len, "%Y-%m-%dT%H:%M:%S", &tm);
  snprintf(buf + n, len - n, ".%03ldZ", (long)(tv.tv_usec / 1000));
}

static void emit(ae_log_level level, const char *line) {
  pthread_mutex_lock(&g_lock);
  if (g_sink) {
    g_sink(g_sink_ud, level, line);
  } else {
    fputs(line, stderr);
    fputc('\n', stderr);
  }
  pthread_mutex_unlock(&g_lock);
}

/* Builds and writes a line; extra_json (object text) is merged in JSON mode. */
static void write_line(ae_log_level level, const char *sub, const char *msg, const char *extra_json) {
  char ts[40];
  timestamp(ts, sizeof(ts));
  if (atomic_load(&g_json)) {
    json_t *o = NULL;
    if (extra_json) {
      o = json_loads(extra_json, 0, NULL);
      if (o && !json_is_object(o)) {
        json_decref(o);
        o = NULL;
      }
    }
    json_t *line = json_object();
    json_object_set_new(line, "ts", json_string(ts));
    json_object_set_new(line, "level", json_string(level_names[level]));
    json_object_set_new(line, "sub", json_string(sub));
    json_object_set_new(line, "msg", json_string(msg));
    if (o) {
      const char *k;
      json_t *v;
      json_object_foreach(o, k, v) {
        /* Event fields keep their names, except where they would hide the log's own. */
        if (strcmp(k, "ts") == 0 || strcmp(k, "level") == 0 || strcmp(k, "sub") == 0 || strcmp(k, "msg") == 0) {
          char alt[64];
          snprintf(alt, sizeof(alt), "event_%s", k);
          json_object_set(line, alt, v);
        } else {
          json_object_set(line, k, v);
        }
      }
      json_decref(o);
    }
    char *s = json_dumps(line, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(line);
    if (s) {
      emit(level, s);
      free(s);
    }
    return;
  }
  char buf[4096];
  if (extra_json)
    snprintf(buf, sizeof(buf), "%s %-5s [%s] %s %s", ts, level_names[level], sub, msg, extra_json);
  else
    snprintf(buf, sizeof(buf), "%s %-5s [%s] %s", ts, level_names[level], sub, msg);
  /* Peer-supplied text (headers, CA error details) must not forge extra lines or terminal escapes. */
  for (char *q = buf; *q; q++)
    if ((unsigned char)*q < 0x20 || *q == 0x7f)
      *q = ' ';
  emit(level, buf);
}

void ae_log(ae_log_level level, const char *sub, const char *fmt, ...) {
  if (!ae_log_enabled(level))
    return;
  char msg[2048];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);
  write_line(level, sub, msg, NULL);
}

void ae_log_structured(ae_log_level level, const char *sub, const char *msg, const char *json_object) {
  if (!ae_log_enabled(level))
    return;
  write_line(level, sub, msg, json_object);
}
