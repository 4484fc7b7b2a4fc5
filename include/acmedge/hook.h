/* Event hook (events.hook): runs a program per event with the event JSON on stdin and
 * ACMEDGE_EVENT / ACMEDGE_DOMAIN / ACMEDGE_EVENT_ID in its environment; bounded concurrency,
 * bounded queue, a timeout, never a shell, never retried. Runs on the control loop. */
#ifndef ACMEDGE_HOOK_H
#define ACMEDGE_HOOK_H

#include <uv.h>

#include "acmedge/common.h"
#include "acmedge/config.h"
#include "acmedge/events.h"

typedef struct ae_hook ae_hook;

/* Subscribes to ev and runs cfg->events.hook for matching events (nothing when it is NULL).
 * Settings are copied. On success *out is owned by the caller: ae_hook_close, then ae_hook_free.
 * ev must outlive the hook object. */
int ae_hook_new(uv_loop_t *loop, const ae_config *cfg, ae_events *ev, ae_hook **out, ae_err *err);
/* Applies reloaded events.hook* settings to future events; running hooks keep theirs. */
void ae_hook_set_config(ae_hook *h, const ae_config *cfg);
/* Stops taking events, drops the queue, sends SIGTERM to running hooks (SIGKILL at their
 * timeout); cb(ud) runs once every child has been reaped and all handles are closed. */
void ae_hook_close(ae_hook *h, void (*cb)(void *ud), void *ud);
/* Frees the object after its close callback has run. NULL is fine. */
void ae_hook_free(ae_hook *h);
/* Number of hook processes running now (tests, metrics). */
unsigned ae_hook_running(const ae_hook *h);
/* Number of events waiting for a free slot (tests, metrics). */
unsigned ae_hook_queued(const ae_hook *h);

#endif
