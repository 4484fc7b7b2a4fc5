/* Reverse proxy, client-side timeouts: one libuv timer per client connection, set for the earliest
 * deadline of its current state (idle keep-alive, request head, request body, a client that stopped
 * reading, tunnel inactivity, total time) and of the upstream side of the exchange. */
#include "acmedge/log.h"
#include "proxy_client.h"

/* Deadline kinds, see c_deadline. */
enum { W_NONE = 0, W_IDLE, W_HEAD, W_BODY, W_SEND, W_TUNNEL, W_CONNECT, W_RESPONSE, W_TOTAL };

static uint64_t max3(uint64_t a, uint64_t b, uint64_t c) {
  uint64_t m = a > b ? a : b;
  return m > c ? m : c;
}

/* The earliest deadline that applies to the connection's current state. */
static uint64_t c_deadline(ae_pclient *c, int *which) {
  const ae_config *cfg = ae_px_cfg(c);
  unsigned idle = ae_px_ms(cfg->proxy.idle_timeout_ms, AE_PX_DEF_IDLE_MS);
  uint64_t best = 0;
  *which = W_NONE;
#define CONSIDER(dl, w)                   \
  do {                                    \
    uint64_t d_ = (dl);                   \
    if (d_ && (!best || d_ < best)) {     \
      best = d_;                          \
      *which = (w);                       \
    }                                     \
  } while (0)
  switch (c->phase) {
  case P_IDLE:
    CONSIDER(c->t_idle + idle, W_IDLE);
    break;
  case P_HEAD:
    CONSIDER(c->t_start + ae_px_ms(cfg->proxy.header_timeout_ms, AE_PX_DEF_HEADER_MS), W_HEAD);
    break;
  case P_BODY:
    if (!c->req_done && !(c->rstop & RS_UPQ))
      CONSIDER(c->t_client_io + idle, W_BODY);
    break;
  case P_TUNNEL:
    CONSIDER(max3(c->t_client_io, c->t_up_io, 0) + idle, W_TUNNEL);
    break;
  default:
    break;
  }
  if (c->ups_rstop)
    CONSIDER(c->t_client_drain + idle, W_SEND);
  int connect = 0;
  uint64_t up = ae_px_up_deadline(c, &connect);
  CONSIDER(up, connect ? W_CONNECT : W_RESPONSE);
  if (cfg->proxy.total_timeout_ms && c->phase == P_BODY)
    CONSIDER(c->t_start + cfg->proxy.total_timeout_ms, W_TOTAL);
#undef CONSIDER
  return best;
}

static void c_timeout(ae_pclient *c, int which) {
  switch (which) {
  case W_IDLE:
    AE_DEBUG("proxy", "%s: idle keep-alive connection closed", c->t ? c->t->peer_ip : "-");
    ae_px_close(c, 0);
    break;
  case W_HEAD:
    ae_px_reject(c, 408, "timeout", "request head not received in time");
    break;
  case W_BODY:
    if (c->resp_head || c->local) {
      AE_INFO("proxy", "%s: request body stalled, closing", c->t ? c->t->peer_ip : "-");
      ae_px_access_log(c);
      ae_px_close(c, 1);
    } else {
      ae_px_reject(c, 408, "timeout", "request body stalled");
    }
    break;
  case W_SEND:
    AE_INFO("proxy", "%s: client stopped reading, closing", c->t ? c->t->peer_ip : "-");
    ae_px_access_log(c);
    ae_px_close(c, 1);
    break;
  case W_TUNNEL:
    AE_DEBUG("proxy", "%s: idle tunnel closed", c->t ? c->t->peer_ip : "-");
    ae_px_close(c, 0);
    break;
  case W_CONNECT:
    ae_px_up_timeout(c, 1);
    break;
  case W_RESPONSE:
    ae_px_up_timeout(c, 0);
    break;
  case W_TOTAL:
    ae_px_upstream_error(c, 504, "total timeout");
    break;
  default:
    break;
  }
}

static void c_timer_cb(uv_timer_t *t) {
  ae_pclient *c = t->data;
  c->armed = 0;
  if (c->closing)
    return;
  int which;
  uint64_t dl = c_deadline(c, &which);
  if (dl && uv_now(c->px->loop) >= dl)
    c_timeout(c, which);
  ae_px_timer_update(c);
}

void ae_px_timer_update(ae_pclient *c) {
  if (c->closing)
    return;
  int which;
  uint64_t dl = c_deadline(c, &which);
  if (!dl) {
    if (c->armed) {
      uv_timer_stop(&c->timer);
      c->armed = 0;
    }
    return;
  }
  /* A timer already set for an earlier moment re-checks then; deadlines only move later on
   * activity, so this keeps timer restarts off the per-read path. */
  if (c->armed && c->armed <= dl)
    return;
  uint64_t now = uv_now(c->px->loop);
  uv_timer_start(&c->timer, c_timer_cb, dl > now ? dl - now : 0, 0);
  c->armed = dl;
}
