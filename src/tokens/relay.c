/* token_rejected events from proxy workers: the event bus lives on the control loop, so rejections
 * seen on worker threads are queued here and emitted from a uv_async on that loop. The queue is
 * bounded: under a flood of bad tokens the excess is dropped (the metric still counts it). */
#include "acmedge/events.h"
#include "acmedge/tokens.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>

#define RELAY_MAX 256

typedef struct {
  ae_tok_reason reason;
  char host[256];
} pending;

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static uv_async_t g_async;
static int g_open;
static ae_events *g_ev;
static pending g_q[RELAY_MAX];
static size_t g_n;

static void drain(uv_async_t *h) {
  (void)h;
  pending batch[RELAY_MAX];
  pthread_mutex_lock(&g_mu);
  size_t n = g_n;
  memcpy(batch, g_q, n * sizeof(pending));
  g_n = 0;
  ae_events *ev = g_ev;
  pthread_mutex_unlock(&g_mu);
  for (size_t i = 0; i < n && ev; i++)
    ae_events_emit(ev, "token_rejected", batch[i].host[0] ? batch[i].host : NULL,
                   json_pack("{s:s,s:s}", "reason", ae_tok_reason_name(batch[i].reason), "source", "route"));
}

int ae_tok_relay_attach(uv_loop_t *loop, ae_events *ev) {
  int r = uv_async_init(loop, &g_async, drain);
  if (r)
    return AE_ERR;
  uv_unref((uv_handle_t *)&g_async);
  pthread_mutex_lock(&g_mu);
  g_ev = ev;
  g_open = 1;
  g_n = 0;
  pthread_mutex_unlock(&g_mu);
  return 0;
}

void ae_tok_relay_detach(void) {
  pthread_mutex_lock(&g_mu);
  int was = g_open;
  g_open = 0;
  g_ev = NULL;
  pthread_mutex_unlock(&g_mu);
  if (was)
    uv_close((uv_handle_t *)&g_async, NULL);
}

void ae_tok_relay_rejected(ae_tok_reason r, const char *host) {
  pthread_mutex_lock(&g_mu);
  if (g_open && g_n < RELAY_MAX) {
    g_q[g_n].reason = r;
    snprintf(g_q[g_n].host, sizeof(g_q[g_n].host), "%s", host ? host : "");
    g_n++;
    uv_async_send(&g_async);
  }
  pthread_mutex_unlock(&g_mu);
}
