/* Reverse proxy, client side: the ae_proxy object, client connections (requests in order, one
 * exchange at a time with pipelined bytes held back), limits and backpressure. Request parsing and
 * routing live in proxy_request.c, the upstream half in proxy_exchange.c, timeouts in
 * proxy_timer.c, the access log and the proxy's own error responses in proxy_reply.c. */
#include "acmedge/proxy.h"

#include <stdlib.h>
#include <string.h>

#include "acmedge/common.h"
#include "acmedge/log.h"
#include "proxy_client.h"

static void c_drive(ae_pclient *c);

unsigned ae_px_ms(unsigned v, unsigned def) { return v ? v : def; }

/* ---------- reading control ---------- */

void ae_px_rstop(ae_pclient *c, unsigned why) {
  c->rstop |= why;
  if (c->reading && c->t) {
    c->reading = 0;
    ae_transport_read_stop(c->t);
  }
}

void ae_px_rstart(ae_pclient *c, unsigned why) {
  c->rstop &= ~why;
  if (!c->rstop && !c->reading && c->t && !c->closing && !c->read_eof) {
    c->reading = 1;
    ae_transport_read_start(c->t);
  }
}

void ae_px_check_bp(ae_pclient *c) {
  if (c->closing)
    return;
  if (c->u) {
    size_t q = ae_uconn_queued(c->u);
    if (q > AE_PX_HIGH_WATER) {
      if (!(c->rstop & RS_UPQ)) {
        c->t_up_io = ae_px_now(c);
        ae_px_rstop(c, RS_UPQ);
      }
    } else if ((c->rstop & RS_UPQ) && q <= AE_PX_LOW_WATER) {
      ae_px_rstart(c, RS_UPQ);
    }
  } else if (c->rstop & RS_UPQ) {
    ae_px_rstart(c, RS_UPQ);
  }
  if (c->t) {
    size_t q = ae_transport_queued(c->t);
    if (q > AE_PX_HIGH_WATER) {
      if (c->u && !c->ups_rstop) {
        ae_uconn_read_stop(c->u);
        c->ups_rstop = 1;
        c->t_client_drain = ae_px_now(c);
      }
    } else if (c->ups_rstop && q <= AE_PX_LOW_WATER) {
      c->ups_rstop = 0;
      c->t_up_io = ae_px_now(c);
      if (c->u)
        ae_uconn_read_start(c->u);
    }
  }
}

/* ---------- output ---------- */

void ae_px_flush(ae_pclient *c) {
  if (c->closing) {
    c->uout.len = 0;
    c->out.len = 0;
    return;
  }
  if (c->uout.len) {
    if (c->u)
      ae_uconn_write(c->u, c->uout.d, c->uout.len);
    c->uout.len = 0;
  }
  if (c->out.len && c->t) {
    ae_transport_write(c->t, c->out.d, c->out.len);
    c->out.len = 0;
  }
  ae_px_check_bp(c);
}

/* ---------- lifecycle ---------- */

void ae_px_check_closed(ae_proxy *p) {
  if (p->closing && p->nalive == 0 && p->ups_empty && p->close_cb) {
    void (*cb)(void *) = p->close_cb;
    p->close_cb = NULL;
    cb(p->close_ud);
  }
}

void ae_px_conn_shut(ae_transport *t, uv_timer_t *timer, uint64_t *armed, int abort) {
  if (*armed) {
    uv_timer_stop(timer);
    *armed = 0;
  }
  if (t) {
    if (abort)
      ae_transport_abort(t);
    else
      ae_transport_close(t);
  }
}

void ae_px_conn_gone(ae_proxy *p, uv_timer_t *timer, uv_close_cb freed) {
  p->nclients--;
  uv_close((uv_handle_t *)timer, freed);
}

void ae_px_conn_freed(ae_proxy *p) {
  p->nalive--;
  ae_px_check_closed(p);
}

static void c_freed(uv_handle_t *h) {
  ae_pclient *c = h->data;
  ae_proxy *p = c->px;
  ae_hmsg_free(&c->req);
  ae_uresp_free(&c->ur);
  ae_buf_free(&c->in);
  ae_buf_free(&c->out);
  ae_buf_free(&c->uout);
  ae_buf_free(&c->uhead);
  ae_config_free(c->cfg);
  free(c);
  ae_px_conn_freed(p);
}

void ae_px_close(ae_pclient *c, int abort) {
  if (c->closing)
    return;
  if (c->phase == P_BODY)
    ae_px_access_log(c);
  if (!abort)
    ae_px_flush(c);
  c->closing = 1;
  if (c->u) {
    ae_uconn_abort(c->u);
    c->u = NULL;
  }
  ae_px_conn_shut(c->t, &c->timer, &c->armed, abort);
}

static void c_on_close(void *ud) {
  ae_pclient *c = ud;
  ae_proxy *p = c->px;
  if (!c->closing) {
    if (c->phase == P_BODY)
      ae_px_access_log(c);
    c->closing = 1;
    if (c->u) {
      ae_uconn_abort(c->u);
      c->u = NULL;
    }
  }
  c->t = NULL;
  AE_PX_UNLINK(p->clients, c);
  ae_px_conn_gone(p, &c->timer, c_freed);
}

/* Clears per-exchange state for the next request on the connection. */
static void c_next(ae_pclient *c) {
  ae_config_free(c->cfg);
  c->cfg = NULL;
  c->route_idx = -1;
  c->pool = NULL;
  c->host[0] = 0;
  c->minor = 1;
  c->method = 0;
  c->req_keepalive = 0;
  c->req_body = 0;
  c->ws = 0;
  c->local = 0;
  c->req_done = 0;
  c->t_start = c->t_req_done = 0;
  c->u_reused = c->retried = 0;
  c->t_up_start = c->t_connected = c->t_up_io = 0;
  c->ups_rstop = 0;
  c->resp_started = c->resp_head = c->resp_done = c->ws101 = 0;
  c->resp_src_chunked = 0;
  c->status = 0;
  c->framing = AE_FRAME_NONE;
  c->up_reusable = 0;
  c->close_after = 0;
  c->logged = 0;
  c->up_write_dead = 0;
  c->bytes_out = 0;
  c->t_resp_head = 0;
  /* An idle keep-alive connection holds no buffers: a few mallocs per request are cheaper than
   * kilobytes per idle connection. */
  ae_buf_shrink(&c->uhead, 0);
  ae_buf_shrink(&c->uout, 0);
  ae_buf_shrink(&c->out, 0);
  ae_hmsg_free(&c->req);
  ae_uresp_free(&c->ur);
  c->phase = P_IDLE;
  c->t_idle = ae_px_now(c);
  c->rp_paused = 0;
}

void ae_px_finish(ae_pclient *c) {
  if (c->closing || !c->resp_done || c->ws101)
    return;
  if (!c->req_done) {
    /* A request without body completes in the same parser pass (on_message_complete calls
     * back here). With a body still arriving it cannot be skipped safely: close. */
    if (c->req_body == 0)
      return;
    if (c->u) {
      ae_uconn_abort(c->u);
      c->u = NULL;
    }
    ae_px_access_log(c);
    ae_px_close(c, 0);
    return;
  }
  if (c->u) {
    ae_uconn_release(c->u, c->up_reusable);
    c->u = NULL;
  }
  ae_px_access_log(c);
  ae_px_flush(c);
  if (c->closing)
    return;
  int keep = c->req_keepalive && !c->close_after && !c->px->closing && !c->px->draining;
  if (!keep || (c->read_eof && c->in.len == 0)) {
    ae_px_close(c, 0);
    return;
  }
  c_next(c);
  ae_px_rstart(c, RS_UPQ);
  c_drive(c);
  ae_px_timer_update(c);
}

static void c_drive(ae_pclient *c) {
  if (c->in_drive || c->closing)
    return;
  c->in_drive = 1;
  while (!c->closing && !c->rp_paused && c->phase != P_TUNNEL && c->in.len) {
    /* Parse from a detached buffer: bytes that arrive meanwhile go to a fresh c->in. */
    ae_buf work = c->in;
    memset(&c->in, 0, sizeof(c->in));
    size_t used = ae_px_parse(c, work.d, work.len);
    if (c->closing) {
      ae_buf_free(&work);
      break;
    }
    ae_buf_consume(&work, used);
    ae_buf_add(&work, c->in.d, c->in.len);
    ae_buf_free(&c->in);
    c->in = work;
    if (used == 0)
      break;
  }
  c->in_drive = 0;
  if (c->closing)
    return;
  if (c->in.len < AE_PX_IN_CAP)
    ae_px_rstart(c, RS_INBUF);
  if (c->read_eof && !c->rp_paused && c->phase != P_TUNNEL) {
    /* The client is gone and no complete request is pending. */
    ae_px_close(c, c->phase != P_IDLE);
    return;
  }
  ae_px_flush(c);
  ae_px_timer_update(c);
}

static void c_on_read(void *ud, const char *data, ssize_t n) {
  ae_pclient *c = ud;
  if (c->closing || !c->t)
    return;
  if (n < 0) {
    c->read_eof = 1;
    c->reading = 0;
    if (c->phase == P_TUNNEL) {
      ae_px_close(c, 0);
      return;
    }
    if (!c->in_drive && !c->rp_paused)
      c_drive(c);
    return;
  }
  if (n == 0)
    return;
  c->t_client_io = ae_px_now(c);
  if (c->phase == P_TUNNEL) {
    if (c->u)
      ae_uconn_write(c->u, data, (size_t)n);
    ae_px_check_bp(c);
    return;
  }
  if (c->in_drive || c->rp_paused || c->in.len) {
    ae_buf_add(&c->in, data, (size_t)n);
    if (c->rp_paused && c->in.len >= AE_PX_IN_CAP)
      ae_px_rstop(c, RS_INBUF);
    if (!c->in_drive)
      c_drive(c);
    return;
  }
  c->in_drive = 1;
  size_t used = ae_px_parse(c, data, (size_t)n);
  if (!c->closing && used < (size_t)n)
    ae_buf_add(&c->in, data + used, (size_t)n - used);
  c->in_drive = 0;
  if (c->closing)
    return;
  if (c->rp_paused && c->in.len >= AE_PX_IN_CAP)
    ae_px_rstop(c, RS_INBUF);
  c_drive(c);
}

static void c_on_drain(void *ud) {
  ae_pclient *c = ud;
  if (c->closing)
    return;
  c->t_client_drain = ae_px_now(c);
  ae_px_check_bp(c);
  ae_px_timer_update(c);
}

/* ---------- public API ---------- */

int ae_proxy_new(uv_loop_t *loop, const ae_config *cfg, ae_proxy **out, ae_err *err) {
  *out = NULL;
  if (!loop || !cfg)
    return ae_err_set(err, AE_EINVAL, "proxy: loop and config are required");
  ae_proxy *p = ae_calloc(1, sizeof(*p));
  p->loop = loop;
  p->cfg = ae_config_ref((ae_config *)cfg);
  ae_ups_init(&p->ups, loop);
  ae_ups_set_limits(&p->ups, cfg->proxy.pool_idle_max, cfg->proxy.pool_idle_timeout_ms);
  for (size_t i = 0; i < cfg->nroutes; i++) {
    if (!ae_ups_pool(&p->ups, cfg->routes[i].upstream))
      AE_WARN("proxy", "route %zu: upstream \"%s\" is not host:port", i, cfg->routes[i].upstream);
  }
  *out = p;
  return 0;
}

void ae_proxy_set_config(ae_proxy *p, const ae_config *cfg) {
  ae_config *old = p->cfg;
  p->cfg = ae_config_ref((ae_config *)cfg);
  ae_config_free(old);
  ae_ups_set_limits(&p->ups, cfg->proxy.pool_idle_max, cfg->proxy.pool_idle_timeout_ms);
}

void ae_proxy_attach(ae_proxy *p, ae_transport *t, const char *initial, size_t len) {
  if (p->closing) {
    t->ud = NULL;
    t->on_read = NULL;
    t->on_drain = NULL;
    t->on_close = NULL;
    ae_transport_abort(t);
    return;
  }
  if (t->alpn_h2) {
    ae_h2_attach(p, t, initial, len);
    return;
  }
  ae_pclient *c = ae_calloc(1, sizeof(*c));
  c->px = p;
  c->t = t;
  uv_timer_init(p->loop, &c->timer);
  c->timer.data = c;
  llhttp_init(&c->rp, HTTP_REQUEST, &ae_px_req_settings);
  c->rp.data = c;
  c->route_idx = -1;
  c->minor = 1;
  c->phase = P_IDLE;
  c->t_idle = uv_now(p->loop);
  AE_PX_LINK(p->clients, c);
  p->nclients++;
  p->nalive++;
  t->ud = c;
  t->on_read = c_on_read;
  t->on_drain = c_on_drain;
  t->on_close = c_on_close;
  if (initial && len)
    c_on_read(c, initial, (ssize_t)len);
  if (c->closing)
    return;
  if (!c->rstop && !c->reading && !c->read_eof) {
    c->reading = 1;
    ae_transport_read_start(t);
  }
  ae_px_timer_update(c);
}

static void ups_empty(void *ud) {
  ae_proxy *p = ud;
  p->ups_empty = 1;
  ae_px_check_closed(p);
}

void ae_proxy_drain(ae_proxy *p) {
  if (!p || p->draining || p->closing)
    return;
  p->draining = 1;
  ae_h2_drain_all(p);
  /* HTTP/1.1 has no GOAWAY: an idle keep-alive connection is closed now (a client may always see
   * that between requests and retries elsewhere); a busy one answers its current request with
   * Connection: close and closes after it. */
  unsigned idle = 0, busy = 0;
  ae_pclient *c = p->clients;
  while (c) {
    ae_pclient *next = c->next;
    if (!c->closing && c->phase == P_IDLE && c->in.len == 0) {
      ae_px_close(c, 0);
      idle++;
    } else if (!c->closing && c->phase != P_TUNNEL) {
      if (!c->resp_head)
        c->req_keepalive = 0;
      busy++;
    }
    c = next;
  }
  if (idle || busy)
    AE_INFO("proxy", "drain: %u idle HTTP/1.1 connections closed, %u close after their current response", idle,
            busy);
}

void ae_proxy_close(ae_proxy *p, void (*cb)(void *ud), void *ud) {
  if (p->closing)
    return;
  p->closing = 1;
  p->close_cb = cb;
  p->close_ud = ud;
  ae_pclient *c = p->clients;
  while (c) {
    ae_pclient *next = c->next;
    ae_px_close(c, 1);
    c = next;
  }
  ae_h2_abort_all(p);
  ae_ups_close(&p->ups, ups_empty, p);
  ae_px_check_closed(p);
}

void ae_proxy_free(ae_proxy *p) {
  if (!p)
    return;
  ae_ups_free(&p->ups);
  ae_config_free(p->cfg);
  free(p);
}

unsigned ae_proxy_active(const ae_proxy *p) { return p->nclients; }

unsigned ae_proxy_pool_idle(const ae_proxy *p) { return p->ups.idle_total; }
