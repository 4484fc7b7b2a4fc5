/* Event bus: builds each event once as compact JSON, keeps the newest ones in a ring indexed by
 * id, logs it and hands it to subscribers synchronously. */
#include "acmedge/events.h"
#include "acmedge/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct {
  uint64_t id;    /* 0 = empty slot */
  char *type;
  char *domain;   /* NULL when the event names no domain */
  char *json;
} ev_entry;

struct ae_events_sub {
  ae_events_fn fn;
  void *ud;
  int dead;       /* unsubscribed while a dispatch was running; freed afterwards */
  struct ae_events_sub *next;
};

struct ae_events {
  ev_entry *ring; /* slot of id i is (i - 1) % cap */
  unsigned cap;
  uint64_t last_id;
  uint64_t first_kept; /* oldest id still in the ring; last_id + 1 when the ring is empty */
  ae_events_sub *subs;
  int dispatching; /* nesting depth of emit's subscriber loop */
  int have_dead;
  uint64_t deny_log_second;  /* log-line budget for domain_denied, per wall-clock second */
  unsigned deny_logged;
  uint64_t deny_unlogged;
  char instance[96]; /* set with a cluster backend: every event carries it */
};

void ae_events_set_instance(ae_events *ev, const char *instance) {
  snprintf(ev->instance, sizeof(ev->instance), "%s", instance ? instance : "");
}

#define DENY_LOG_PER_SECOND 20u

/* Denials come in floods of distinct random names: their log lines are capped per second (the
 * events themselves still reach the stream, the hook and acmedge_denied_total). */
static int deny_log_allowed(ae_events *ev) {
  uint64_t sec = ae_now_ms() / 1000u;
  if (sec != ev->deny_log_second) {
    if (ev->deny_unlogged)
      ae_log(AE_LOG_INFO, "event", "%llu domain_denied event(s) not written to the log (more than %u a second)",
             (unsigned long long)ev->deny_unlogged, DENY_LOG_PER_SECOND);
    ev->deny_log_second = sec;
    ev->deny_logged = 0;
    ev->deny_unlogged = 0;
  }
  if (ev->deny_logged < DENY_LOG_PER_SECOND) {
    ev->deny_logged++;
    return 1;
  }
  ev->deny_unlogged++;
  return 0;
}

static void entry_clear(ev_entry *e) {
  free(e->type);
  free(e->domain);
  free(e->json);
  memset(e, 0, sizeof(*e));
}

int ae_events_new(unsigned buffer, ae_events **out) {
  ae_events *ev = ae_calloc(1, sizeof(*ev));
  ev->cap = buffer;
  ev->first_kept = 1;
  if (buffer)
    ev->ring = ae_calloc(buffer, sizeof(ev_entry));
  *out = ev;
  return 0;
}

void ae_events_free(ae_events *ev) {
  if (!ev)
    return;
  for (unsigned i = 0; i < ev->cap; i++)
    entry_clear(&ev->ring[i]);
  free(ev->ring);
  ae_events_sub *s = ev->subs;
  while (s) {
    ae_events_sub *next = s->next;
    free(s);
    s = next;
  }
  free(ev);
}

static ev_entry *lookup(const ae_events *ev, uint64_t id) {
  if (!ev->cap || id == 0)
    return NULL;
  ev_entry *e = &ev->ring[(id - 1) % ev->cap];
  return e->id == id ? e : NULL;
}

static void reap_dead(ae_events *ev) {
  ae_events_sub **pp = &ev->subs;
  while (*pp) {
    ae_events_sub *s = *pp;
    if (s->dead) {
      *pp = s->next;
      free(s);
    } else {
      pp = &s->next;
    }
  }
  ev->have_dead = 0;
}

uint64_t ae_events_emit(ae_events *ev, const char *type, const char *domain, json_t *details) {
  uint64_t id = ++ev->last_id;
  char ts[40];
  ae_time_rfc3339((int64_t)time(NULL), ts, sizeof(ts));

  json_t *o = json_object();
  json_object_set_new(o, "id", json_integer((json_int_t)id));
  json_object_set_new(o, "time", json_string(ts));
  json_object_set_new(o, "type", json_string(type ? type : "unknown"));
  json_object_set_new(o, "domain", domain ? json_string(domain) : json_null());
  if (ev->instance[0])
    json_object_set_new(o, "instance", json_string(ev->instance));
  if (details && json_is_object(details)) {
    const char *k;
    json_t *v;
    json_object_foreach(details, k, v) {
      /* The envelope fields are the bus's own; details never override them. */
      if (strcmp(k, "id") == 0 || strcmp(k, "time") == 0 || strcmp(k, "type") == 0 || strcmp(k, "domain") == 0)
        continue;
      json_object_set(o, k, v);
    }
  }
  json_decref(details);
  char *text = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
  json_decref(o);
  if (!text) /* only on allocation failure or invalid UTF-8 in a detail */
    text = ae_strdup("{}");

  if (ev->cap && id - ev->first_kept >= ev->cap)
    ev->first_kept = id - ev->cap + 1;
  else if (!ev->cap)
    ev->first_kept = id + 1;
  if (ev->cap) {
    ev_entry *e = &ev->ring[(id - 1) % ev->cap];
    entry_clear(e);
    e->id = id;
    e->type = ae_strdup(type ? type : "unknown");
    e->domain = ae_strdup(domain);
    /* A copy: a subscriber emitting in turn may recycle this slot while text is in use. */
    e->json = ae_strdup(text);
  }

  if (!type || strcmp(type, "domain_denied") != 0 || deny_log_allowed(ev))
    ae_log_structured(AE_LOG_INFO, "event", type ? type : "unknown", text);

  /* Subscribers added during this dispatch see the next event, not this one. Removal during the
   * loop only marks the node so the walk stays valid. */
  const char *dtype = type ? type : "unknown";
  ev->dispatching++;
  ae_events_sub *stop = NULL;
  for (ae_events_sub *s = ev->subs; s; s = s->next)
    stop = s;
  if (stop) {
    for (ae_events_sub *s = ev->subs; s; s = s->next) {
      if (!s->dead)
        s->fn(s->ud, id, dtype, domain, text);
      if (s == stop)
        break;
    }
  }
  ev->dispatching--;
  if (!ev->dispatching && ev->have_dead)
    reap_dead(ev);
  free(text);
  return id;
}

int ae_events_subscribe(ae_events *ev, ae_events_fn fn, void *ud, ae_events_sub **out) {
  if (!fn)
    return AE_EINVAL;
  ae_events_sub *s = ae_calloc(1, sizeof(*s));
  s->fn = fn;
  s->ud = ud;
  /* Appended so that delivery order is subscription order. */
  ae_events_sub **pp = &ev->subs;
  while (*pp)
    pp = &(*pp)->next;
  *pp = s;
  if (out)
    *out = s;
  return 0;
}

void ae_events_unsubscribe(ae_events *ev, ae_events_sub *sub) {
  if (!ev || !sub)
    return;
  if (ev->dispatching) {
    sub->dead = 1;
    ev->have_dead = 1;
    return;
  }
  ae_events_sub **pp = &ev->subs;
  while (*pp) {
    if (*pp == sub) {
      *pp = sub->next;
      free(sub);
      return;
    }
    pp = &(*pp)->next;
  }
}

void ae_events_replay(ae_events *ev, uint64_t since, ae_events_fn fn, void *ud, uint64_t *missed) {
  uint64_t last = ev->last_id;
  if (since >= last) {
    if (missed)
      *missed = 0;
    return;
  }
  uint64_t first = since + 1;
  if (first < ev->first_kept)
    first = ev->first_kept;
  if (missed)
    *missed = first - (since + 1);
  /* Looked up by id each step so that a callback emitting events cannot invalidate the walk. */
  for (uint64_t id = first; id <= last; id++) {
    ev_entry *e = lookup(ev, id);
    if (e)
      fn(ud, e->id, e->type, e->domain, e->json);
  }
}

uint64_t ae_events_last_id(const ae_events *ev) { return ev->last_id; }

void ae_events_set_buffer(ae_events *ev, unsigned buffer) {
  if (buffer == ev->cap)
    return;
  ev_entry *ring = buffer ? ae_calloc(buffer, sizeof(ev_entry)) : NULL;
  for (unsigned i = 0; i < ev->cap; i++) {
    ev_entry *e = &ev->ring[i];
    if (e->id && buffer && e->id + buffer > ev->last_id) {
      ring[(e->id - 1) % buffer] = *e;
      memset(e, 0, sizeof(*e));
    } else {
      entry_clear(e);
    }
  }
  free(ev->ring);
  ev->ring = ring;
  ev->cap = buffer;
  if (!buffer)
    ev->first_kept = ev->last_id + 1;
  else if (ev->last_id - ev->first_kept + 1 > buffer)
    ev->first_kept = ev->last_id - buffer + 1;
}
