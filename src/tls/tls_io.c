/* Byte plumbing of a TLS client connection: the GnuTLS pull/push callbacks over libuv, the
 * read buffer, queued writes, and closing (close_notify, FIN, linger, reset). The state machine
 * that uses it is in tls_conn.c. */
#include "tls_front_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "acmedge/common.h"
#include "acmedge/limits.h"
#include "acmedge/log.h"
#include "acmedge/metrics.h"

/* A queued write: the request and its own copy of the bytes, freed in the write callback. */
typedef struct tc_write {
  uv_write_t req;
  tls_conn *c;
  char data[];
} tc_write;

void tc_arm(tls_conn *c, uint64_t ms) {
  uv_timer_start(&c->timer, tc_timer_cb, ms, 0);
}

void tc_unhold(tls_conn *c) {
  ae_tls_front *f = c->f;
  if (c->state != TC_HELD)
    return;
  if (c->hprev)
    c->hprev->hnext = c->hnext;
  else
    f->held = c->hnext;
  if (c->hnext)
    c->hnext->hprev = c->hprev;
  c->hprev = c->hnext = NULL;
  f->nheld--;
  /* Back to "hello read, no certificate yet": a refusal sent now (an alert, no session) must not
   * unlink c a second time when it closes. */
  c->state = TC_READ_HELLO;
}

/* ---- finishing ---------------------------------------------------------------------------- */

static void conn_handle_closed(uv_handle_t *h) {
  tls_conn *c = h->data;
  if (--c->handles_open > 0)
    return;
  ae_tls_front *f = c->f;
  if (c->handed_over && c->t.on_close)
    c->t.on_close(c->t.ud);
  if (c->session)
    gnutls_deinit(c->session);
  ae_cert_unref(c->cert);
  ae_staple_unref(c->staple);
  free(c->in);
  if (c->prev)
    c->prev->next = c->next;
  else
    f->conns = c->next;
  if (c->next)
    c->next->prev = c->prev;
  ae_limits_release(c->limit_ticket);
  f->nconn--;
  ae_metrics_add(AE_M_CONN_OPEN, -1);
  free(c);
  ae_tls_front_conn_gone(f);
}

static void conn_undirty(tls_conn *c) {
  if (!c->dirty)
    return;
  for (tls_conn **pp = &c->f->dirty; *pp; pp = &(*pp)->dnext) {
    if (*pp == c) {
      *pp = c->dnext;
      break;
    }
  }
  c->dirty = 0;
  c->dnext = NULL;
}

void tc_close_handles(tls_conn *c, int reset) {
  if (c->closing_handles)
    return;
  tc_unhold(c);
  conn_undirty(c);
  free(c->obuf);
  c->obuf = NULL;
  c->olen = 0;
  c->closing_handles = 1;
  c->state = TC_CLOSING;
  c->want_read = 0;
  c->handles_open = 2;
  uv_timer_stop(&c->timer);
  uv_close((uv_handle_t *)&c->timer, conn_handle_closed);
  /* A reset frees the port at once; it is not allowed once a shutdown was requested. */
  if (reset && !c->shut_started && uv_tcp_close_reset(&c->tcp, conn_handle_closed) == 0)
    return;
  uv_close((uv_handle_t *)&c->tcp, conn_handle_closed);
}

void ae_tls_conn_abort(tls_conn *c) {
  tc_close_handles(c, 1);
}

/* ---- writing ------------------------------------------------------------------------------ */

static void conn_write_done(uv_write_t *req, int status) {
  tc_write *w = (tc_write *)req;
  tls_conn *c = w->c;
  free(w);
  c->nwrites--;
  if (c->closing_handles)
    return;
  if (status < 0) {
    AE_DEBUG("tls", "%s: write failed: %s", c->t.peer_ip, uv_strerror(status));
    c->write_failed = 1;
    tc_close_handles(c, 1);
    return;
  }
  c->last_activity = uv_now(c->f->loop);
  if (c->nwrites == 0 && c->state == TC_ESTABLISHED && c->t.on_drain)
    c->t.on_drain(c->t.ud);
}

/* Writes bytes in order: straight to the socket when nothing is queued, the rest copied into one
 * queued request. Returns 0 or -1 when the socket is gone. */
static int conn_send_now(tls_conn *c, const giovec_t *iov, int iovcnt, size_t total) {
  size_t done = 0;
  if (c->nwrites == 0) {
    uv_buf_t bufs[16];
    int n = iovcnt < 16 ? iovcnt : 16;
    for (int i = 0; i < n; i++)
      bufs[i] = uv_buf_init(iov[i].iov_base, (unsigned)iov[i].iov_len);
    int r = uv_try_write((uv_stream_t *)&c->tcp, bufs, (unsigned)n);
    if (r > 0) {
      done = (size_t)r;
    } else if (r < 0 && r != UV_EAGAIN) {
      c->write_failed = 1;
      return -1;
    }
  }
  c->last_activity = uv_now(c->f->loop);
  if (done == total)
    return 0;
  tc_write *w = ae_malloc(sizeof(*w) + (total - done));
  w->c = c;
  size_t skip = done, pos = 0;
  for (int i = 0; i < iovcnt; i++) {
    size_t len = iov[i].iov_len;
    const char *base = iov[i].iov_base;
    if (skip >= len) {
      skip -= len;
      continue;
    }
    memcpy(w->data + pos, base + skip, len - skip);
    pos += len - skip;
    skip = 0;
  }
  uv_buf_t b = uv_buf_init(w->data, (unsigned)pos);
  if (uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, conn_write_done) != 0) {
    free(w);
    c->write_failed = 1;
    return -1;
  }
  c->nwrites++;
  return 0;
}

int tc_flush(tls_conn *c) {
  conn_undirty(c);
  if (c->olen == 0)
    return 0;
  giovec_t v = {c->obuf, c->olen};
  int r = conn_send_now(c, &v, 1, c->olen);
  free(c->obuf);
  c->obuf = NULL;
  c->olen = 0;
  return r;
}

/* Small writes wait in a per-connection buffer until the loop is about to poll again, so that
 * e.g. a response and the close_notify that follows it leave in one segment. */
int tc_send(tls_conn *c, const giovec_t *iov, int iovcnt) {
  if (c->closing_handles || c->write_failed)
    return -1;
  size_t total = 0;
  for (int i = 0; i < iovcnt; i++)
    total += iov[i].iov_len;
  if (total == 0)
    return 0;
  c->last_activity = uv_now(c->f->loop);
  if (c->nwrites == 0 && c->olen + total <= TC_OBUF_CAP) {
    if (!c->obuf)
      c->obuf = ae_malloc(TC_OBUF_CAP);
    for (int i = 0; i < iovcnt; i++) {
      memcpy(c->obuf + c->olen, iov[i].iov_base, iov[i].iov_len);
      c->olen += iov[i].iov_len;
    }
    if (!c->dirty) {
      ae_tls_front *f = c->f;
      c->dirty = 1;
      c->dnext = f->dirty;
      f->dirty = c;
      uv_prepare_start(&f->flusher, tc_flush_all);
    }
    return 0;
  }
  if (tc_flush(c) < 0)
    return -1;
  return conn_send_now(c, iov, iovcnt, total);
}

void tc_flush_all(uv_prepare_t *p) {
  ae_tls_front *f = p->data;
  while (f->dirty) {
    tls_conn *c = f->dirty;
    if (tc_flush(c) < 0)
      tc_close_handles(c, 1);
  }
  uv_prepare_stop(p);
}

ssize_t tc_vec_push(gnutls_transport_ptr_t p, const giovec_t *iov, int iovcnt) {
  tls_conn *c = p;
  ssize_t total = 0;
  for (int i = 0; i < iovcnt; i++)
    total += (ssize_t)iov[i].iov_len;
  if (tc_send(c, iov, iovcnt) < 0) {
    gnutls_transport_set_errno(c->session, EPIPE);
    return -1;
  }
  return total;
}

/* ---- reading ------------------------------------------------------------------------------ */

/* Follows the record framing of the bytes GnuTLS consumes, so that a flood of records carrying
 * no application data (empty records, warning alerts, key updates) can be cut off. */
static int conn_track_records(tls_conn *c, const uint8_t *p, size_t n) {
  while (n > 0) {
    if (c->rec_body_left > 0) {
      size_t k = n < c->rec_body_left ? n : c->rec_body_left;
      c->rec_body_left -= k;
      p += k;
      n -= k;
      continue;
    }
    c->rec_hdr[c->rec_hdr_have++] = *p++;
    n--;
    if (c->rec_hdr_have == 5) {
      c->rec_hdr_have = 0;
      c->rec_body_left = ((size_t)c->rec_hdr[3] << 8) | c->rec_hdr[4];
      if (c->state == TC_ESTABLISHED && ++c->junk > TC_MAX_JUNK)
        return -1;
    }
  }
  return 0;
}

ssize_t tc_pull(gnutls_transport_ptr_t p, void *data, size_t len) {
  tls_conn *c = p;
  size_t avail = c->in_len - c->in_off;
  if (avail == 0) {
    if (c->eof)
      return 0;
    gnutls_transport_set_errno(c->session, EAGAIN);
    return -1;
  }
  size_t n = len < avail ? len : avail;
  memcpy(data, c->in + c->in_off, n);
  if (conn_track_records(c, c->in + c->in_off, n) < 0) {
    AE_INFO("tls", "%s: closing %s: too many records without data", c->t.peer_ip, tc_name(c));
    c->tls_dead = 1;
    gnutls_transport_set_errno(c->session, EPROTO);
    return -1;
  }
  c->in_off += n;
  return (ssize_t)n;
}

int tc_pull_timeout(gnutls_transport_ptr_t p, unsigned int ms) {
  tls_conn *c = p;
  (void)ms;
  if (c->in_len > c->in_off || c->eof)
    return 1;
  gnutls_transport_set_errno(c->session, EAGAIN);
  return -1;
}

static void conn_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
  tls_conn *c = h->data;
  (void)hint;
  if (!c->in) {
    c->in = malloc(TC_IN_CAP);
    c->in_off = c->in_len = 0;
    c->in_cap = TC_IN_CAP;
    if (!c->in) {
      buf->base = NULL;
      buf->len = 0;
      return;
    }
  }
  if (c->in_off == c->in_len) {
    c->in_off = c->in_len = 0;
  } else if (c->in_off > 0) {
    memmove(c->in, c->in + c->in_off, c->in_len - c->in_off);
    c->in_len -= c->in_off;
    c->in_off = 0;
  }
  /* Only a large ClientHello makes the buffer grow; it shrinks back once GnuTLS consumed it. */
  if (c->in_len == c->in_cap && c->state == TC_READ_HELLO && c->in_cap < TC_HELLO_CAP) {
    uint8_t *bigger = realloc(c->in, TC_HELLO_CAP);
    if (bigger) {
      c->in = bigger;
      c->in_cap = TC_HELLO_CAP;
    }
  }
  buf->base = (char *)c->in + c->in_len;
  buf->len = c->in_cap - c->in_len;
}

void tc_reading(tls_conn *c, int on) {
  if (on && !c->uv_reading && !c->eof && !c->closing_handles) {
    if (uv_read_start((uv_stream_t *)&c->tcp, conn_alloc, tc_read_cb) == 0)
      c->uv_reading = 1;
  } else if (!on && c->uv_reading) {
    uv_read_stop((uv_stream_t *)&c->tcp);
    c->uv_reading = 0;
  }
}

/* ---- closing ------------------------------------------------------------------------------ */

static void conn_shutdown_cb(uv_shutdown_t *req, int status) {
  tls_conn *c = req->data;
  c->shut_done = 1;
  if (c->closing_handles)
    return;
  if (status < 0 || c->eof) {
    tc_close_handles(c, 0);
    return;
  }
  /* Our side is flushed; wait briefly for the peer's FIN so unread data does not turn into RST. */
  tc_arm(c, TC_LINGER_MS);
}

void tc_close_graceful(tls_conn *c) {
  if (c->closing_handles || c->state == TC_CLOSING)
    return;
  tc_unhold(c);
  int had_session = c->state == TC_ESTABLISHED;
  c->state = TC_CLOSING;
  c->want_read = 0;
  if (had_session && c->session && !c->tls_dead && !c->write_failed)
    gnutls_bye(c->session, GNUTLS_SHUT_WR);
  /* The shutdown waits only for queued writes: hand the buffered bytes over first. */
  if (c->write_failed || tc_flush(c) < 0) {
    tc_close_handles(c, 1);
    return;
  }
  c->in_off = c->in_len = 0;
  /* Nothing queued: send the FIN now rather than through libuv's deferred shutdown, which costs
   * two epoll updates and a loop turn per connection. */
  uv_os_fd_t fd;
  if (c->nwrites == 0 && uv_fileno((uv_handle_t *)&c->tcp, &fd) == 0) {
    c->shut_started = 1;
    c->shutdown_req.data = c;
    conn_shutdown_cb(&c->shutdown_req, shutdown(fd, SHUT_WR) == 0 ? 0 : UV_ENOTCONN);
    if (!c->closing_handles)
      tc_reading(c, 1);
    return;
  }
  c->shutdown_req.data = c;
  if (uv_shutdown(&c->shutdown_req, (uv_stream_t *)&c->tcp, conn_shutdown_cb) != 0) {
    tc_close_handles(c, 0);
    return;
  }
  c->shut_started = 1;
  tc_arm(c, TC_FLUSH_MS);
  tc_reading(c, 1);
}
