/* In-process event bus (design §6): ids, RFC 3339 times, a replay ring, synchronous subscribers
 * that must not block. Used on the control loop only. */
#ifndef ACMEDGE_EVENTS_H
#define ACMEDGE_EVENTS_H

#include <stdint.h>
#include <jansson.h>
#include "acmedge/common.h"

typedef struct ae_events ae_events;
typedef struct ae_events_sub ae_events_sub;

/* One event as delivered: json is the whole object as compact text. Valid during the call. */
typedef void (*ae_events_fn)(void *ud, uint64_t id, const char *type, const char *domain, const char *json);

/* Creates a bus keeping the last `buffer` events. Caller owns *out. */
int ae_events_new(unsigned buffer, ae_events **out);
/* Frees the bus (subscriptions must be gone). */
void ae_events_free(ae_events *ev);
/* Adds "instance": id to every later event (cluster backends); NULL or "" stops it. */
void ae_events_set_instance(ae_events *ev, const char *instance);
/* Emits {"id","time","type","domain",...details}. details (may be NULL) is stolen. domain may be
 * NULL. Returns the new id. Also writes a structured log line. */
uint64_t ae_events_emit(ae_events *ev, const char *type, const char *domain, json_t *details);
/* Subscribes fn to every future event. *out is owned by the bus; release with unsubscribe. */
int ae_events_subscribe(ae_events *ev, ae_events_fn fn, void *ud, ae_events_sub **out);
/* Removes a subscription (safe to call from within a callback). */
void ae_events_unsubscribe(ae_events *ev, ae_events_sub *sub);
/* Calls fn for each buffered event with id > since, oldest first. *missed (may be NULL) gets the
 * number of events after since that have already left the ring. */
void ae_events_replay(ae_events *ev, uint64_t since, ae_events_fn fn, void *ud, uint64_t *missed);
/* Id of the newest event (0 when none). */
uint64_t ae_events_last_id(const ae_events *ev);
/* Resizes the ring (reload); keeps the newest events. */
void ae_events_set_buffer(ae_events *ev, unsigned buffer);

#endif
