/* Upstream connections of the proxy: asynchronous resolve (uv_getaddrinfo, short cache) and
 * connect with fallback over the resolved addresses, copy-on-write output with a pending buffer
 * before the connection is up, and a bounded keep-alive pool per upstream with idle expiry. */
#include "proxy_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "acmedge/common.h"
#include "acmedge/log.h"

#define AE_UPS_MAX_ADDRS 4
#define AE_UPS_DNS_TTL_MS 30000
#define AE_UPS_DEFAULT_IDLE_MAX 32
#define AE_UPS_DEFAULT_IDLE_MS 60000

enum { U_RESOLVE = 0, U_CONNECT, U_UP, U_IDLE, U_CLOSING };

struct ae_upool {
  ae_upool *next;
  ae_upstreams *ups;
  char *name;
  char host[256];
  char port_str[8];
  int port;
  int literal;                  /* host is an IP literal: addrs[0] is fixed */
  struct sockaddr_storage addrs[AE_UPS_MAX_ADDRS];
  int naddrs;
  uint64_t resolved_at;
  ae_uconn *idle;               /* most recently released first */
  unsigned nidle;
};

struct ae_uconn {
  ae_upstreams *ups;
  ae_upool *pool;
  uv_tcp_t tcp;
  uv_connect_t creq;
  uv_getaddrinfo_t gai;
  int state;
  int tcp_init;                 /* tcp handle initialized and not yet closed */
  int reading;
  int paused;                   /* the owner asked for no reads (applies once connected too) */
  int detached;                 /* owner gave it up while resolving */
  const ae_uconn_handler *h;
  void *ud;
  ae_buf pending;               /* written before the connection was up */
  struct sockaddr_storage addrs[AE_UPS_MAX_ADDRS];
  int naddrs, ai;
  uint64_t idle_since;
  ae_uconn *iprev, *inext;
};

typedef struct wreq {
  uv_write_t req;
  ae_uconn *c;
  size_t len;
  char data[];
} wreq;

static void conn_free(ae_uconn *c);
static void start_connect(ae_uconn *c);
static void deliver_connect(ae_uconn *c, int status);

/* ---------- shared state ---------- */

void ae_ups_init(ae_upstreams *u, uv_loop_t *loop) {
  memset(u, 0, sizeof(*u));
  u->loop = loop;
  u->idle_max = AE_UPS_DEFAULT_IDLE_MAX;
  u->idle_timeout_ms = AE_UPS_DEFAULT_IDLE_MS;
}

void ae_ups_set_limits(ae_upstreams *u, unsigned idle_max, unsigned idle_timeout_ms) {
  u->idle_max = idle_max ? idle_max : AE_UPS_DEFAULT_IDLE_MAX;
  u->idle_timeout_ms = idle_timeout_ms ? idle_timeout_ms : AE_UPS_DEFAULT_IDLE_MS;
}

static void check_empty(ae_upstreams *u) {
  if (u->closing && u->live == 0 && !u->sweep_init && u->on_empty) {
    void (*cb)(void *) = u->on_empty;
    u->on_empty = NULL;
    cb(u->on_empty_ud);
  }
}

static void idle_unlink(ae_uconn *c) {
  ae_upool *p = c->pool;
  if (c->iprev)
    c->iprev->inext = c->inext;
  else
    p->idle = c->inext;
  if (c->inext)
    c->inext->iprev = c->iprev;
  c->iprev = c->inext = NULL;
  p->nidle--;
  c->ups->idle_total--;
}

static void sweep_closed(uv_handle_t *h) {
  ae_upstreams *u = h->data;
  u->sweep_init = 0;
  check_empty(u);
}

static void sweep_cb(uv_timer_t *t) {
  ae_upstreams *u = t->data;
  uint64_t now = uv_now(u->loop);
  for (ae_upool *p = u->pools; p; p = p->next) {
    ae_uconn *c = p->idle;
    while (c) {
      ae_uconn *next = c->inext;
      if (now - c->idle_since >= u->idle_timeout_ms)
        ae_uconn_abort(c);
      c = next;
    }
  }
  if (u->idle_total == 0)
    uv_timer_stop(t);
}

static void sweep_arm(ae_upstreams *u) {
  if (u->closing)
    return;
  if (!u->sweep_init) {
    uv_timer_init(u->loop, &u->sweep);
    u->sweep.data = u;
    uv_unref((uv_handle_t *)&u->sweep);
    u->sweep_init = 1;
  }
  if (uv_is_active((uv_handle_t *)&u->sweep))
    return;
  uint64_t period = u->idle_timeout_ms / 4;
  if (period > 1000)
    period = 1000;
  if (period < 20)
    period = 20;
  uv_timer_start(&u->sweep, sweep_cb, period, period);
}

void ae_ups_close(ae_upstreams *u, void (*on_empty)(void *ud), void *ud) {
  u->closing = 1;
  u->on_empty = on_empty;
  u->on_empty_ud = ud;
  for (ae_upool *p = u->pools; p; p = p->next)
    while (p->idle)
      ae_uconn_abort(p->idle);
  if (u->sweep_init && !uv_is_closing((uv_handle_t *)&u->sweep))
    uv_close((uv_handle_t *)&u->sweep, sweep_closed);
  check_empty(u);
}

void ae_ups_free(ae_upstreams *u) {
  ae_upool *p = u->pools;
  while (p) {
    ae_upool *next = p->next;
    free(p->name);
    free(p);
    p = next;
  }
  u->pools = NULL;
}

ae_upool *ae_ups_pool(ae_upstreams *u, const char *upstream) {
  for (ae_upool *p = u->pools; p; p = p->next)
    if (strcmp(p->name, upstream) == 0)
      return p;
  ae_upool *p = ae_calloc(1, sizeof(*p));
  if (ae_parse_hostport(upstream, p->host, sizeof(p->host), &p->port) != 0 || p->port <= 0 ||
      p->port > 65535 || p->host[0] == 0) {
    free(p);
    return NULL;
  }
  p->ups = u;
  p->name = ae_strdup(upstream);
  snprintf(p->port_str, sizeof(p->port_str), "%d", p->port);
  struct sockaddr_in a4;
  struct sockaddr_in6 a6;
  if (uv_ip4_addr(p->host, p->port, &a4) == 0) {
    memcpy(&p->addrs[0], &a4, sizeof(a4));
    p->literal = 1;
    p->naddrs = 1;
  } else if (uv_ip6_addr(p->host, p->port, &a6) == 0) {
    memcpy(&p->addrs[0], &a6, sizeof(a6));
    p->literal = 1;
    p->naddrs = 1;
  }
  p->next = u->pools;
  u->pools = p;
  return p;
}

const char *ae_upool_name(const ae_upool *p) { return p->name; }

/* ---------- I/O ---------- */

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  ae_uconn *c = h->data;
  buf->base = c->ups->rbuf;
  buf->len = sizeof(c->ups->rbuf);
}

static void read_cb(uv_stream_t *s, ssize_t n, const uv_buf_t *buf) {
  ae_uconn *c = s->data;
  if (n == 0)
    return;
  if (c->state == U_IDLE) {
    /* An idle connection must stay silent: data or EOF means it cannot be reused. */
    ae_uconn_abort(c);
    return;
  }
  if (c->state != U_UP || !c->h) {
    if (n < 0)
      ae_uconn_abort(c);
    return;
  }
  c->h->on_read(c->ud, buf->base, n);
}

static void write_cb(uv_write_t *req, int status) {
  wreq *w = (wreq *)req;
  ae_uconn *c = w->c;
  free(w);
  if (!c->h || c->state != U_UP)
    return;
  if (status < 0) {
    if (status != UV_ECANCELED)
      c->h->on_write_error(c->ud, status);
    return;
  }
  if (c->tcp.write_queue_size == 0)
    c->h->on_drain(c->ud);
}

/* Queues a copy of data with uv_write (after uv_try_write took what the kernel accepted). */
static int queue_write(ae_uconn *c, const char *data, size_t n) {
  if (c->tcp.write_queue_size == 0) {
    uv_buf_t b = uv_buf_init((char *)data, (unsigned)n);
    int r = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
    if (r > 0) {
      data += r;
      n -= (size_t)r;
    }
    /* Other errors are reported by uv_write below through the write callback. */
  }
  if (n == 0)
    return 0;
  wreq *w = ae_malloc(sizeof(*w) + n);
  w->c = c;
  w->len = n;
  memcpy(w->data, data, n);
  uv_buf_t b = uv_buf_init(w->data, (unsigned)n);
  int r = uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, write_cb);
  if (r < 0) {
    free(w);
    return r;
  }
  return 0;
}

int ae_uconn_write(ae_uconn *c, const char *data, size_t n) {
  if (n == 0)
    return 0;
  if (c->state == U_RESOLVE || c->state == U_CONNECT) {
    ae_buf_add(&c->pending, data, n);
    return 0;
  }
  if (c->state != U_UP)
    return UV_EPIPE;
  return queue_write(c, data, n);
}

size_t ae_uconn_queued(const ae_uconn *c) {
  size_t q = c->pending.len;
  if (c->tcp_init)
    q += c->tcp.write_queue_size;
  return q;
}

void ae_uconn_read_start(ae_uconn *c) {
  c->paused = 0;
  if (c->state != U_UP || c->reading)
    return;
  if (uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, read_cb) == 0)
    c->reading = 1;
}

void ae_uconn_read_stop(ae_uconn *c) {
  c->paused = 1;
  if (c->state != U_UP || !c->reading)
    return;
  uv_read_stop((uv_stream_t *)&c->tcp);
  c->reading = 0;
}

int ae_uconn_connected(const ae_uconn *c) { return c->state == U_UP; }

/* ---------- lifecycle ---------- */

static void conn_free(ae_uconn *c) {
  ae_upstreams *u = c->ups;
  ae_buf_free(&c->pending);
  free(c);
  u->live--;
  check_empty(u);
}

static void close_cb(uv_handle_t *h) { conn_free(h->data); }

void ae_uconn_abort(ae_uconn *c) {
  c->h = NULL;
  c->ud = NULL;
  if (c->state == U_IDLE)
    idle_unlink(c);
  if (c->state == U_CLOSING)
    return;
  if (c->state == U_RESOLVE) {
    /* getaddrinfo is in flight: its callback frees the connection. */
    c->detached = 1;
    c->state = U_CLOSING;
    uv_cancel((uv_req_t *)&c->gai);
    return;
  }
  c->state = U_CLOSING;
  if (c->tcp_init) {
    /* A handle already closing (address fallback) ends in reconnect_closed, which frees. */
    if (!uv_is_closing((uv_handle_t *)&c->tcp))
      uv_close((uv_handle_t *)&c->tcp, close_cb);
    return;
  }
  conn_free(c);
}

void ae_uconn_release(ae_uconn *c, int reusable) {
  ae_upstreams *u = c->ups;
  ae_upool *p = c->pool;
  if (!reusable || c->state != U_UP || u->closing || p->nidle >= u->idle_max || c->pending.len ||
      c->tcp.write_queue_size) {
    ae_uconn_abort(c);
    return;
  }
  c->h = NULL;
  c->ud = NULL;
  c->paused = 0;
  c->state = U_IDLE;
  c->idle_since = uv_now(u->loop);
  c->iprev = NULL;
  c->inext = p->idle;
  if (p->idle)
    p->idle->iprev = c;
  p->idle = c;
  p->nidle++;
  u->idle_total++;
  if (!c->reading) {
    if (uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, read_cb) == 0)
      c->reading = 1;
  }
  sweep_arm(u);
}

static void deliver_connect(ae_uconn *c, int status) {
  if (status < 0) {
    const ae_uconn_handler *h = c->h;
    void *ud = c->ud;
    ae_uconn_abort(c);
    if (h)
      h->on_connect(ud, status);
    return;
  }
  c->state = U_UP;
  uv_tcp_nodelay(&c->tcp, 1);
  uv_tcp_keepalive(&c->tcp, 1, 60);
  if (!c->paused && uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, read_cb) == 0)
    c->reading = 1;
  if (c->pending.len) {
    ae_buf pend = c->pending;
    memset(&c->pending, 0, sizeof(c->pending));
    int r = queue_write(c, pend.d, pend.len);
    ae_buf_free(&pend);
    if (r < 0) {
      deliver_connect(c, r);
      return;
    }
  }
  if (c->h)
    c->h->on_connect(c->ud, 0);
}

static void reconnect_closed(uv_handle_t *h) {
  ae_uconn *c = h->data;
  c->tcp_init = 0;
  if (c->state == U_CLOSING) {
    conn_free(c);
    return;
  }
  start_connect(c);
}

static void connect_cb(uv_connect_t *req, int status) {
  ae_uconn *c = req->data;
  if (c->state != U_CONNECT)
    return;  /* aborted: the close callback frees it */
  if (status < 0 && c->ai + 1 < c->naddrs) {
    c->ai++;
    uv_close((uv_handle_t *)&c->tcp, reconnect_closed);
    return;
  }
  deliver_connect(c, status);
}

static void start_connect(ae_uconn *c) {
  c->state = U_CONNECT;
  int r = uv_tcp_init(c->ups->loop, &c->tcp);
  if (r == 0) {
    c->tcp.data = c;
    c->tcp_init = 1;
    c->creq.data = c;
    r = uv_tcp_connect(&c->creq, &c->tcp, (const struct sockaddr *)&c->addrs[c->ai], connect_cb);
  }
  if (r < 0) {
    if (c->ai + 1 < c->naddrs && c->tcp_init) {
      c->ai++;
      uv_close((uv_handle_t *)&c->tcp, reconnect_closed);
      return;
    }
    /* Only reached from libuv callbacks, so reporting the failure right away is safe. */
    deliver_connect(c, r);
  }
}

static void gai_cb(uv_getaddrinfo_t *req, int status, struct addrinfo *res) {
  ae_uconn *c = req->data;
  if (c->detached) {
    uv_freeaddrinfo(res);
    conn_free(c);
    return;
  }
  c->state = U_CONNECT;
  if (status < 0 || !res) {
    uv_freeaddrinfo(res);
    AE_WARN("proxy", "resolving upstream %s failed: %s", c->pool->name, uv_strerror(status ? status : UV_EAI_NONAME));
    deliver_connect(c, status ? status : UV_EAI_NONAME);
    return;
  }
  c->naddrs = 0;
  for (struct addrinfo *ai = res; ai && c->naddrs < AE_UPS_MAX_ADDRS; ai = ai->ai_next) {
    if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6)
      continue;
    if (ai->ai_addrlen > sizeof(c->addrs[0]))
      continue;
    memcpy(&c->addrs[c->naddrs++], ai->ai_addr, ai->ai_addrlen);
  }
  uv_freeaddrinfo(res);
  if (c->naddrs == 0) {
    deliver_connect(c, UV_EAI_NONAME);
    return;
  }
  ae_upool *p = c->pool;
  memcpy(p->addrs, c->addrs, sizeof(p->addrs));
  p->naddrs = c->naddrs;
  p->resolved_at = uv_now(c->ups->loop);
  c->ai = 0;
  start_connect(c);
}

int ae_uconn_acquire(ae_upstreams *u, ae_upool *pool, int fresh, const ae_uconn_handler *h, void *ud,
                     ae_uconn **out, int *reused) {
  *out = NULL;
  *reused = 0;
  if (u->closing)
    return UV_ECANCELED;
  if (!fresh && pool->idle) {
    ae_uconn *c = pool->idle;
    idle_unlink(c);
    c->state = U_UP;
    c->h = h;
    c->ud = ud;
    *out = c;
    *reused = 1;
    return 0;
  }
  ae_uconn *c = ae_calloc(1, sizeof(*c));
  c->ups = u;
  c->pool = pool;
  c->h = h;
  c->ud = ud;
  u->live++;
  uint64_t now = uv_now(u->loop);
  if (pool->literal || (pool->naddrs && now - pool->resolved_at < AE_UPS_DNS_TTL_MS)) {
    memcpy(c->addrs, pool->addrs, sizeof(c->addrs));
    c->naddrs = pool->naddrs;
    c->state = U_CONNECT;
    int r = uv_tcp_init(u->loop, &c->tcp);
    if (r == 0) {
      c->tcp.data = c;
      c->tcp_init = 1;
      c->creq.data = c;
      r = uv_tcp_connect(&c->creq, &c->tcp, (const struct sockaddr *)&c->addrs[0], connect_cb);
    }
    if (r < 0) {
      c->h = NULL;
      ae_uconn_abort(c);
      return r;
    }
    *out = c;
    return 0;
  }
  c->state = U_RESOLVE;
  c->gai.data = c;
  struct addrinfo hints;
  memset(&hints, 0, sizeof(hints));
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_ADDRCONFIG;
  int r = uv_getaddrinfo(u->loop, &c->gai, gai_cb, pool->host, pool->port_str, &hints);
  if (r < 0) {
    c->state = U_CLOSING;
    conn_free(c);
    return r;
  }
  *out = c;
  return 0;
}
