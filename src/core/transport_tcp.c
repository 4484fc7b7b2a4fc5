/* Plain TCP ae_transport over an accepted uv_tcp_t (port 80, upstream-facing layers). */
#include "acmedge/transport.h"
#include "acmedge/common.h"
#include "acmedge/log.h"

#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>

#define TCP_READ_CHUNK 65536

typedef struct tcp_transport {
  ae_transport t; /* first: the public view */
  uv_tcp_t *tcp;
  uv_shutdown_t shutdown_req;
  unsigned nwrites;    /* write requests in flight */
  int want_read;       /* upper layer asked for on_read */
  int closing;         /* close or abort requested: no more writes, no more on_read */
  int handle_closing;  /* uv_close called */
  int shutdown_started;
} tcp_transport;

/* One allocation per queued write: the request and a copy of the bytes. */
typedef struct tcp_write {
  uv_write_t req;
  tcp_transport *owner;
  size_t len;
  char data[];
} tcp_write_req;

static void tcp_on_close(uv_handle_t *h) {
  tcp_transport *tt = h->data;
  void (*cb)(void *) = tt->t.on_close;
  void *ud = tt->t.ud;
  free(tt->tcp);
  free(tt);
  if (cb)
    cb(ud);
}

static void tcp_close_handle(tcp_transport *tt, int reset) {
  if (tt->handle_closing)
    return;
  tt->handle_closing = 1;
  /* A reset is only allowed before any shutdown; it spares the server TIME_WAIT state. */
  if (reset && !tt->shutdown_started && uv_tcp_close_reset(tt->tcp, tcp_on_close) == 0)
    return;
  uv_close((uv_handle_t *)tt->tcp, tcp_on_close);
}

static void tcp_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
  (void)h;
  (void)hint;
  /* Per-read buffer: idle connections then hold no read memory. */
  buf->base = malloc(TCP_READ_CHUNK);
  buf->len = buf->base ? TCP_READ_CHUNK : 0;
}

static void tcp_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf) {
  tcp_transport *tt = s->data;
  if (n == 0 || tt->closing) {
    free(buf->base);
    return;
  }
  if (n < 0) {
    /* Reads stop so the error is reported once. */
    uv_read_stop(s);
    tt->want_read = 0;
  }
  if (tt->t.on_read)
    tt->t.on_read(tt->t.ud, n > 0 ? buf->base : NULL, n);
  free(buf->base);
}

static void tcp_write_done(uv_write_t *req, int status) {
  tcp_write_req *w = (tcp_write_req *)req;
  tcp_transport *tt = w->owner;
  free(w);
  tt->nwrites--;
  if (status < 0 && status != UV_ECANCELED && !tt->closing) {
    AE_DEBUG("tcp", "write to %s failed: %s", tt->t.peer_ip, uv_strerror(status));
    tt->closing = 1;
    tcp_close_handle(tt, 0);
    return;
  }
  if (tt->nwrites == 0 && !tt->closing && tt->t.on_drain)
    tt->t.on_drain(tt->t.ud);
}

static int tcp_write(ae_transport *t, const char *data, size_t len) {
  tcp_transport *tt = (tcp_transport *)t;
  if (tt->closing)
    return AE_ECANCELED;
  if (len == 0)
    return 0;
  size_t off = 0;
  /* Most writes fit into the socket buffer at once: no copy, no request. libuv refuses
   * try_write while requests are queued, which keeps the byte order. */
  uv_buf_t b = uv_buf_init((char *)data, (unsigned)len);
  int r = uv_try_write((uv_stream_t *)tt->tcp, &b, 1);
  if (r > 0)
    off = (size_t)r;
  else if (r < 0 && r != UV_EAGAIN && r != UV_ENOSYS) {
    tt->closing = 1;
    tcp_close_handle(tt, 0);
    return AE_EIO;
  }
  if (off == len)
    return 0;
  size_t rest = len - off;
  tcp_write_req *w = ae_malloc(sizeof(*w) + rest);
  w->owner = tt;
  w->len = rest;
  memcpy(w->data, data + off, rest);
  uv_buf_t wb = uv_buf_init(w->data, (unsigned)rest);
  r = uv_write(&w->req, (uv_stream_t *)tt->tcp, &wb, 1, tcp_write_done);
  if (r < 0) {
    free(w);
    tt->closing = 1;
    tcp_close_handle(tt, 0);
    return AE_EIO;
  }
  tt->nwrites++;
  return 0;
}

static size_t tcp_queue_size(ae_transport *t) {
  tcp_transport *tt = (tcp_transport *)t;
  return uv_stream_get_write_queue_size((uv_stream_t *)tt->tcp);
}

static void tcp_read_stop(ae_transport *t) {
  tcp_transport *tt = (tcp_transport *)t;
  if (tt->want_read && !tt->handle_closing)
    uv_read_stop((uv_stream_t *)tt->tcp);
  tt->want_read = 0;
}

static void tcp_read_start(ae_transport *t) {
  tcp_transport *tt = (tcp_transport *)t;
  if (tt->want_read || tt->closing)
    return;
  if (uv_read_start((uv_stream_t *)tt->tcp, tcp_alloc, tcp_read) == 0)
    tt->want_read = 1;
}

static void tcp_shutdown_done(uv_shutdown_t *req, int status) {
  tcp_transport *tt = req->data;
  (void)status;
  tcp_close_handle(tt, 0);
}

static void tcp_close(ae_transport *t) {
  tcp_transport *tt = (tcp_transport *)t;
  if (tt->closing)
    return;
  tt->closing = 1;
  if (tt->want_read) {
    uv_read_stop((uv_stream_t *)tt->tcp);
    tt->want_read = 0;
  }
  /* shutdown waits for queued writes, then sends FIN, so the peer gets every byte. */
  tt->shutdown_req.data = tt;
  if (uv_shutdown(&tt->shutdown_req, (uv_stream_t *)tt->tcp, tcp_shutdown_done) == 0) {
    tt->shutdown_started = 1;
    return;
  }
  tcp_close_handle(tt, 0);
}

static void tcp_abort(ae_transport *t) {
  tcp_transport *tt = (tcp_transport *)t;
  tt->closing = 1;
  tt->want_read = 0;
  tcp_close_handle(tt, 1);
}

static const ae_transport_ops tcp_ops = {
  .write = tcp_write,
  .write_queue_size = tcp_queue_size,
  .read_stop = tcp_read_stop,
  .read_start = tcp_read_start,
  .close = tcp_close,
  .abort = tcp_abort,
};

int ae_transport_tcp_new(uv_loop_t *loop, uv_tcp_t *tcp, ae_transport **out) {
  if (!loop || !tcp || !out)
    return AE_EINVAL;
  tcp_transport *tt = ae_calloc(1, sizeof(*tt));
  tt->t.ops = &tcp_ops;
  tt->t.loop = loop;
  tt->tcp = tcp;
  tcp->data = tt;

  int len = sizeof(tt->t.peer);
  if (uv_tcp_getpeername(tcp, (struct sockaddr *)&tt->t.peer, &len) == 0)
    uv_ip_name((struct sockaddr *)&tt->t.peer, tt->t.peer_ip, sizeof(tt->t.peer_ip));
  struct sockaddr_storage local;
  len = sizeof(local);
  if (uv_tcp_getsockname(tcp, (struct sockaddr *)&local, &len) == 0) {
    if (local.ss_family == AF_INET)
      tt->t.local_port = ntohs(((struct sockaddr_in *)&local)->sin_port);
    else if (local.ss_family == AF_INET6)
      tt->t.local_port = ntohs(((struct sockaddr_in6 *)&local)->sin6_port);
  }
  /* Delivery starts at once: the caller sets its callbacks before the loop runs again, and
   * an early EOF is noticed even if the upper layer never asks for data. */
  if (uv_read_start((uv_stream_t *)tcp, tcp_alloc, tcp_read) == 0)
    tt->want_read = 1;
  *out = &tt->t;
  return 0;
}
