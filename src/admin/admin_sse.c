/* The /v1/events Server-Sent Events stream: replay from the event ring, live delivery, heartbeats
 * and slow clients. A client whose write queue passes the limit is not written to until it drains;
 * it then catches up from the ring, with a gap report if the ring moved past it. */
#include "admin_internal.h"

#include "acmedge/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ADM_DEFAULT_HEARTBEAT_MS 15000
#define ADM_DEFAULT_SSE_QUEUE (256 * 1024)
#define ADM_STUCK_TICKS 4              /* heartbeats without write progress before a lagging client is dropped */

typedef struct {
  adm_conn *c;
  int stopped;
} sse_replay_ctx;

static void sse_write_event(adm_conn *c, uint64_t id, const char *json) {
  size_t n = strlen(json) + 48;
  char *buf = ae_malloc(n);
  int len = snprintf(buf, n, "id: %llu\ndata: %s\n\n", (unsigned long long)id, json);
  if (len > 0 && ae_adm_conn_write(c, buf, (size_t)len) == 0)
    c->last_sent = id;
  free(buf);
}

static int sse_over_limit(adm_conn *c) {
  return uv_stream_get_write_queue_size((uv_stream_t *)&c->io) > c->a->sse_queue_limit;
}

static void sse_replay_one(void *ud, uint64_t id, const char *type, const char *domain, const char *json) {
  sse_replay_ctx *x = ud;
  (void)type;
  (void)domain;
  if (x->stopped || x->c->closing || id <= x->c->last_sent)
    return;
  if (sse_over_limit(x->c)) {
    /* Still too slow: the rest is fetched from the ring at the next drain. */
    x->c->lagging = 1;
    x->stopped = 1;
    return;
  }
  sse_write_event(x->c, id, json);
}

static void count_only(void *ud, uint64_t id, const char *type, const char *domain, const char *json) {
  (void)ud;
  (void)id;
  (void)type;
  (void)domain;
  (void)json;
}

/* Sends everything after c->last_sent that the ring still has, preceded by a gap report. */
static void sse_send_since(adm_conn *c) {
  uint64_t since = c->last_sent;
  uint64_t missed = 0;
  ae_events_replay(c->a->ev, since, count_only, NULL, &missed);
  if (missed) {
    char note[64];
    int n = snprintf(note, sizeof(note), ": missed %llu\n\n", (unsigned long long)missed);
    if (ae_adm_conn_write(c, note, (size_t)n) != 0)
      return;
    c->last_sent = since + missed;
  }
  sse_replay_ctx x = {c, 0};
  ae_events_replay(c->a->ev, c->last_sent, sse_replay_one, &x, NULL);
}

void ae_adm_sse_catch_up(adm_conn *c) {
  c->lagging = 0;
  sse_send_since(c);
}

static void sse_on_event(void *ud, uint64_t id, const char *type, const char *domain, const char *json) {
  adm_conn *c = ud;
  (void)type;
  (void)domain;
  if (c->closing || c->lagging)
    return;
  if (sse_over_limit(c)) {
    /* Never queue without bound and never block the emitter: stop here and replay on drain. */
    c->lagging = 1;
    AE_DEBUG("admin", "event stream client is slow; pausing at id %llu", (unsigned long long)c->last_sent);
    return;
  }
  sse_write_event(c, id, json);
}

static uint64_t parse_u64(const char *s, int *ok) {
  *ok = 0;
  if (!s)
    return 0;
  while (*s == ' ' || *s == '\t')
    s++;
  if (*s < '0' || *s > '9')
    return 0;
  uint64_t v = 0;
  for (; *s >= '0' && *s <= '9'; s++) {
    if (v > (UINT64_MAX - 9) / 10)
      return 0;
    v = v * 10 + (uint64_t)(*s - '0');
  }
  while (*s == ' ' || *s == '\t')
    s++;
  if (*s)
    return 0;
  *ok = 1;
  return v;
}

/* Returns a malloc'd value of query parameter key (no percent-decoding needed for numbers). */
static char *query_param(const char *query, const char *key) {
  if (!query)
    return NULL;
  size_t kl = strlen(key);
  const char *p = query;
  while (*p) {
    const char *end = strchr(p, '&');
    size_t len = end ? (size_t)(end - p) : strlen(p);
    if (len > kl && strncmp(p, key, kl) == 0 && p[kl] == '=') {
      char *v = ae_malloc(len - kl);
      memcpy(v, p + kl + 1, len - kl - 1);
      v[len - kl - 1] = '\0';
      return v;
    }
    if (!end)
      break;
    p = end + 1;
  }
  return NULL;
}

void ae_adm_sse_start(adm_conn *c, const char *query) {
  ae_admin *a = c->a;
  int have_since = 0;
  uint64_t since = 0;
  if (c->h_last_event_id) {
    since = parse_u64(c->h_last_event_id, &have_since);
    if (!have_since) {
      ae_adm_respond_error(c, 400, NULL, "Last-Event-ID must be an event id");
      return;
    }
  } else {
    char *q = query_param(query, "since");
    if (q) {
      since = parse_u64(q, &have_since);
      free(q);
      if (!have_since) {
        ae_adm_respond_error(c, 400, NULL, "since must be an event id");
        return;
      }
    }
  }
  uint64_t last = ae_events_last_id(a->ev);
  /* An id from the future means the process restarted and ids began again: replay it all. */
  if (have_since && since > last)
    since = 0;

  static const char head[] = "HTTP/1.1 200 OK\r\n"
                             "Content-Type: text/event-stream\r\n"
                             "Cache-Control: no-store\r\n"
                             "X-Accel-Buffering: no\r\n"
                             "Connection: close\r\n\r\n";
  if (ae_adm_conn_write(c, head, sizeof(head) - 1) != 0)
    return;
  c->sse = 1;
  c->close_after_write = 0;
  uv_timer_stop(&c->timer);
  if (ae_events_subscribe(a->ev, sse_on_event, c, &c->sub) != 0) {
    ae_adm_conn_close(c);
    return;
  }
  c->last_sent = have_since ? since : last;
  if (have_since)
    sse_send_since(c);
}

void ae_adm_sse_on_heartbeat(uv_timer_t *t) {
  ae_admin *a = t->data;
  static const char ping[] = ": ping\n\n";
  adm_conn *next;
  for (adm_conn *c = a->conns; c; c = next) {
    next = c->next;
    if (!c->sse || c->closing)
      continue;
    if (c->lagging) {
      /* A client that has not taken a byte for several heartbeats is gone in all but name. */
      if (++c->lag_ticks >= ADM_STUCK_TICKS) {
        AE_INFO("admin", "dropping an event stream client that stopped reading");
        ae_adm_conn_close(c);
      }
      continue;
    }
    ae_adm_conn_write(c, ping, sizeof(ping) - 1);
  }
}

void ae_adm_sse_defaults(ae_admin *a) {
  a->heartbeat_ms = ADM_DEFAULT_HEARTBEAT_MS;
  const char *hb = getenv("ACMEDGE_ADMIN_HEARTBEAT_MS");
  if (hb && *hb) {
    int ok;
    uint64_t v = parse_u64(hb, &ok);
    if (ok && v >= 10 && v <= 3600000)
      a->heartbeat_ms = (unsigned)v;
  }
  a->sse_queue_limit = ADM_DEFAULT_SSE_QUEUE;
}

void ae_admin_set_heartbeat_ms(ae_admin *a, unsigned ms) {
  if (!a || !ms || a->closing)
    return;
  a->heartbeat_ms = ms;
  uv_timer_start(&a->heartbeat, ae_adm_sse_on_heartbeat, ms, ms);
}

void ae_admin_set_sse_queue_limit(ae_admin *a, size_t bytes) {
  if (a)
    a->sse_queue_limit = bytes;
}
