/* Port-80 requests held while the on-demand decision for their host is in flight: the held list,
 * ae_http80_wake, and the hold timer that bounds the wait. */
#include "http80_internal.h"

#include "acmedge/log.h"

#include <string.h>

void ae_h80_park(h80_conn *c) {
  ae_http80 *h = c->h;
  c->parked = 1;
  c->park_id = ++h->park_seq;
  c->wake_gen = h->wake_gen;
  c->pprev = NULL;
  c->pnext = h->parked;
  if (h->parked)
    h->parked->pprev = c;
  h->parked = c;
  /* Pipelined bytes wait in buf until the held request is answered. */
  ae_transport_read_stop(c->t);
  ae_h80_timer_set(c, TM_PARK);
  AE_DEBUG("http80", "request for %s held until its check completes (peer %s)", c->host, c->t->peer_ip);
}

void ae_h80_unpark(h80_conn *c) {
  if (!c->parked)
    return;
  ae_http80 *h = c->h;
  if (c->pprev)
    c->pprev->pnext = c->pnext;
  else
    h->parked = c->pnext;
  if (c->pnext)
    c->pnext->pprev = c->pprev;
  c->pprev = c->pnext = NULL;
  c->parked = 0;
}

/* Answers a held request with st, then goes on with what the client pipelined behind it. */
static void park_release(h80_conn *c, ae_h80_state st, unsigned retry) {
  ae_h80_unpark(c);
  ae_h80_answer_host(c, st, retry);
  if (ae_h80_after_answer(c) < 0)
    return;
  ae_transport_read_start(c->t);
  ae_h80_conn_process(c);
}

/* Answers a request held for a challenge look-up from what the map holds now. */
static void chal_release(h80_conn *c) {
  ae_h80_unpark(c);
  c->chal_held = 0;
  ae_h80_answer_challenge(c, ae_h80_request_path(c), c->req_method, c->req_keep, 0);
  if (ae_h80_after_answer(c) < 0)
    return;
  ae_transport_read_start(c->t);
  ae_h80_conn_process(c);
}

void ae_h80_park_expired(h80_conn *c) {
  if (!c->parked)
    return;
  if (c->chal_held) {
    chal_release(c);
    return;
  }
  uint64_t id = c->park_id;
  unsigned retry = 0;
  ae_h80_state st = ae_h80_ask_state(c, &retry);
  if (!c->parked || c->park_id != id || c->closing)
    return; /* answered from inside the hook */
  if (st == AE_H80_CHECKING)
    AE_DEBUG("http80", "check for %s still running after %u ms: 503 (peer %s)", c->host,
             ae_h80_timeout_for(c->h->cfg, TM_PARK), c->t->peer_ip);
  park_release(c, st, retry);
}

void ae_http80_wake(ae_http80 *h, const char *host) {
  if (!h || !host)
    return;
  uint64_t gen = ++h->wake_gen;
  /* Answering one request can hold another (pipelined) or change the list from inside the hook:
   * rescan from the head each time; wake_gen marks the holds already visited. */
  for (;;) {
    h80_conn *c = h->parked;
    while (c && (c->wake_gen >= gen || c->chal_held || strcmp(c->host, host) != 0))
      c = c->pnext;
    if (!c)
      break;
    c->wake_gen = gen;
    uint64_t id = c->park_id;
    unsigned retry = 0;
    ae_h80_state st = ae_h80_ask_state(c, &retry);
    if (!c->parked || c->park_id != id || c->closing)
      continue;
    if (st == AE_H80_CHECKING)
      continue; /* still undecided: the hold timer bounds the wait */
    park_release(c, st, retry);
  }
}

void ae_http80_wake_challenge(ae_http80 *h, const char *token) {
  if (!h || !token)
    return;
  size_t n = strlen(ACME_PREFIX);
  /* Each release may hold another pipelined request: rescan from the head. */
  for (unsigned guard = 0; guard < 100000; guard++) {
    h80_conn *c = h->parked;
    while (c && !(c->chal_held && strcmp(ae_h80_request_path(c) + n, token) == 0))
      c = c->pnext;
    if (!c)
      return;
    chal_release(c);
  }
}
