/* Port-80 listener: http-01 answers, 503 while issuing, 308 to https, plain_http hand-over, and
 * requests held while the on-demand decision for their host is in flight. */
#include "acmedge/http80.h"
#include "acmedge/log.h"
#include "acmedge/metrics.h"
#include "acmedge/policy.h"

#include <llhttp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define H80_HEAD_CAP 8192u             /* request line + headers: 431 beyond */
#define H80_HEADERS_DEFAULT 100u
#define H80_HEADER_TIMEOUT_DEFAULT 10000u
#define H80_IDLE_TIMEOUT_DEFAULT 60000u
#define H80_MAX_CONN_DEFAULT 20000u
#define H80_HOST_MAX 300u              /* raw Host value incl. port; longer is broken anyway */
#define H80_WRITE_HIGH (256u * 1024u)  /* stop reading pipelined requests above this */
#define H80_RETRY_DEFAULT_S 5u
#define H80_PARK_SLACK_MS 1000u        /* a held request outlives the ask timeout by this much */
#define H80_PARK_DEFAULT_MS 6000u
#define ACME_PREFIX "/.well-known/acme-challenge/"

enum { TM_HEAD, TM_BODY, TM_IDLE, TM_PARK };
enum { EV_NONE, EV_MESSAGE, EV_HANDOFF };

typedef struct h80_conn h80_conn;

struct ae_http80 {
  uv_loop_t *loop;
  ae_config *cfg;
  ae_challenge *ch;
  ae_http80_hooks hooks;
  int has_hooks;
  llhttp_settings_t settings;

  uv_tcp_t listener;
  int port;

  h80_conn *conns;        /* connections we still own */
  h80_conn *parked;       /* connections holding a request until its host is decided */
  uint64_t wake_gen;      /* bumped by every ae_http80_wake: a wake visits each request once */
  uint64_t park_seq;
  size_t nopen;           /* in the list: counts against max_connections */
  size_t nalloc;          /* allocated (incl. handed over and closing): close waits for 0 */

  int closing;
  int listener_closed;
  void (*close_cb)(void *ud);
  void *close_ud;
};

struct h80_conn {
  h80_conn *prev, *next;
  int in_list;
  ae_http80 *h;
  ae_transport *t;
  uv_timer_t timer;
  int timer_mode;
  llhttp_t parser;

  /* Bytes received: [0, parsed) fed to the parser (kept while the head is read, so a hand-over
   * can replay the request), [parsed, len) not fed yet. */
  char *buf;
  size_t len, cap, parsed;

  /* current request */
  int started;
  int in_head;
  size_t head_bytes;
  unsigned nheaders;
  int too_large;
  char *url;
  size_t url_len;
  char field[8];
  size_t field_len;
  int field_is_host;
  char host_raw[H80_HOST_MAX + 1];
  size_t host_len;
  int host_over;
  unsigned host_count;
  char host[256];         /* normalized */
  int host_status;        /* 0 ok, else the HTTP status to answer */
  int event;

  /* held request (AE_H80_CHECKING): reading is stopped, pipelined bytes stay in buf */
  int parked;
  h80_conn *pprev, *pnext;
  uint64_t park_id;       /* tells a re-held connection from the hold a caller was looking at */
  uint64_t wake_gen;
  int req_method;
  int req_keep;

  int blocked;            /* reading paused for write backpressure */
  int closing;
  int handed;
};

/* ---------------------------------------------------------------------------------------- */
/* Settings */

static unsigned head_cap(const ae_config *cfg) {
  unsigned m = cfg->proxy.max_header_bytes;
  return (m > 0 && m < H80_HEAD_CAP) ? m : H80_HEAD_CAP;
}

static unsigned max_headers(const ae_config *cfg) {
  return cfg->proxy.max_headers ? cfg->proxy.max_headers : H80_HEADERS_DEFAULT;
}

static unsigned timeout_for(const ae_config *cfg, int mode) {
  if (mode == TM_PARK) {
    unsigned ask = cfg->on_demand.ask_timeout_ms;
    return ask ? ask + H80_PARK_SLACK_MS : H80_PARK_DEFAULT_MS;
  }
  if (mode == TM_HEAD)
    return cfg->proxy.header_timeout_ms ? cfg->proxy.header_timeout_ms : H80_HEADER_TIMEOUT_DEFAULT;
  return cfg->proxy.idle_timeout_ms ? cfg->proxy.idle_timeout_ms : H80_IDLE_TIMEOUT_DEFAULT;
}

/* Splits "host:port" / "[v6]:port" (port 0 allowed: an ephemeral port) into a sockaddr. */
static int parse_listen(const char *s, struct sockaddr_storage *ss) {
  char host[64];
  const char *p;
  size_t hl;
  if (s[0] == '[') {
    const char *e = strchr(s, ']');
    if (!e || e[1] != ':')
      return AE_EINVAL;
    hl = (size_t)(e - s - 1);
    if (hl >= sizeof(host))
      return AE_EINVAL;
    memcpy(host, s + 1, hl);
    p = e + 2;
  } else {
    const char *c = strrchr(s, ':');
    if (!c)
      return AE_EINVAL;
    hl = (size_t)(c - s);
    if (hl >= sizeof(host))
      return AE_EINVAL;
    memcpy(host, s, hl);
    p = c + 1;
  }
  host[hl] = '\0';
  size_t pl = strlen(p);
  if (pl == 0 || pl > 5 || strspn(p, "0123456789") != pl || atoi(p) > 65535)
    return AE_EINVAL;
  int port = atoi(p);
  if (hl == 0)
    snprintf(host, sizeof(host), "0.0.0.0");
  if (uv_ip4_addr(host, port, (struct sockaddr_in *)ss) == 0)
    return 0;
  if (uv_ip6_addr(host, port, (struct sockaddr_in6 *)ss) == 0)
    return 0;
  return AE_EINVAL;
}

/* Port of listen.https for redirects: 443 when it cannot be read, -1 when https is off. */
static int https_port(const ae_config *cfg) {
  if (!cfg->listen_https || !cfg->listen_https[0])
    return -1;
  const char *c = strrchr(cfg->listen_https, ':');
  if (!c || !c[1])
    return 443;
  int port = atoi(c + 1);
  return port > 0 ? port : 443;
}

/* ---------------------------------------------------------------------------------------- */
/* Connection lifetime */

static void conn_unlist(h80_conn *c) {
  if (!c->in_list)
    return;
  ae_http80 *h = c->h;
  if (c->prev)
    c->prev->next = c->next;
  else
    h->conns = c->next;
  if (c->next)
    c->next->prev = c->prev;
  c->prev = c->next = NULL;
  c->in_list = 0;
  h->nopen--;
  ae_metrics_add(AE_M_CONN_OPEN, -1);
}

static void conn_unpark(h80_conn *c) {
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

static void maybe_closed(ae_http80 *h) {
  if (h->closing && h->listener_closed && h->nalloc == 0 && h->close_cb) {
    void (*cb)(void *) = h->close_cb;
    h->close_cb = NULL;
    cb(h->close_ud);
  }
}

static void conn_timer_closed(uv_handle_t *handle) {
  h80_conn *c = handle->data;
  ae_http80 *h = c->h;
  free(c->buf);
  free(c->url);
  free(c);
  h->nalloc--;
  maybe_closed(h);
}

static void conn_on_close(void *ud) {
  h80_conn *c = ud;
  c->t = NULL;
  conn_unpark(c);
  conn_unlist(c);
  uv_close((uv_handle_t *)&c->timer, conn_timer_closed);
}

/* Flushes what was written, then closes; the conn is freed after the transport's on_close. */
static void conn_close(h80_conn *c) {
  conn_unpark(c);
  if (c->closing || !c->t)
    return;
  c->closing = 1;
  uv_timer_stop(&c->timer);
  ae_transport_close(c->t);
}

static void conn_timeout(uv_timer_t *timer);

static void timer_set(h80_conn *c, int mode) {
  c->timer_mode = mode;
  uv_timer_start(&c->timer, conn_timeout, timeout_for(c->h->cfg, mode), 0);
}

/* ---------------------------------------------------------------------------------------- */
/* Responses */

static const char *status_text(int status) {
  switch (status) {
  case 200: return "OK";
  case 308: return "Permanent Redirect";
  case 400: return "Bad Request";
  case 404: return "Not Found";
  case 408: return "Request Timeout";
  case 421: return "Misdirected Request";
  case 431: return "Request Header Fields Too Large";
  case 503: return "Service Unavailable";
  default: return "Error";
  }
}

/* extra: additional header lines, each ending in CRLF (may be NULL). */
static void send_response(h80_conn *c, int status, const char *extra, const char *body, int head_only,
                          int close_after) {
  size_t blen = body ? strlen(body) : 0;
  size_t cap = 256 + (extra ? strlen(extra) : 0) + blen;
  char *msg = ae_malloc(cap);
  int n = snprintf(msg, cap,
                   "HTTP/1.1 %d %s\r\n"
                   "Content-Type: text/plain; charset=utf-8\r\n"
                   "Content-Length: %zu\r\n"
                   "Cache-Control: no-store\r\n"
                   "%s%s\r\n",
                   status, status_text(status), blen, extra ? extra : "",
                   close_after ? "Connection: close\r\n" : "");
  size_t len = (size_t)n;
  if (!head_only && blen) {
    memcpy(msg + len, body, blen);
    len += blen;
  }
  if (c->t && !c->closing)
    ae_transport_write(c->t, msg, len);
  free(msg);
  if (close_after)
    conn_close(c);
}

/* Origin-form path of the request target: "/" for "*" and for an absolute-form URL without one. */
/* 1 when path starts with the ACME challenge prefix. (strncmp here trips GCC's -Wstring-compare
 * in optimised builds, where it sees request_path's "/" fallback.) */
static int is_challenge_path(const char *path) {
  size_t n = sizeof(ACME_PREFIX) - 1;
  return strlen(path) >= n && memcmp(path, ACME_PREFIX, n) == 0;
}

static const char *request_path(h80_conn *c) {
  const char *u = c->url ? c->url : "/";
  if (u[0] == '/')
    return u;
  const char *scheme = strstr(u, "://");
  if (scheme) {
    const char *slash = strchr(scheme + 3, '/');
    if (slash)
      return slash;
  }
  return "/";
}

/* The parser already refuses control bytes in the target; this keeps the Location header safe
 * whatever parser settings are in use. */
static int path_safe(const char *path) {
  for (const unsigned char *p = (const unsigned char *)path; *p; p++)
    if (*p <= 0x20 || *p >= 0x7f)
      return 0;
  return 1;
}

static void answer_challenge(h80_conn *c, const char *path, int method, int keep) {
  ae_http80 *h = c->h;
  const char *token = path + strlen(ACME_PREFIX);
  int head_only = method == HTTP_HEAD;
  char keyauth[512];
  const char *host = c->host_count == 1 ? c->host_raw : "-";
  if ((method == HTTP_GET || head_only) && ae_challenge_token_valid(token) && h->ch &&
      ae_challenge_http01_get(h->ch, token, keyauth, sizeof(keyauth)) == 0) {
    AE_INFO("http80", "challenge %.8s... answered for host %s (peer %s)", token, host, c->t->peer_ip);
    send_response(c, 200, NULL, keyauth, head_only, !keep);
    return;
  }
  AE_INFO("http80", "challenge token %.8s... not found (host %s, peer %s)",
          ae_challenge_token_valid(token) ? token : "<invalid>", host, c->t->peer_ip);
  send_response(c, 404, NULL, "not found\n", head_only, !keep);
}

static ae_h80_state ask_state(h80_conn *c, unsigned *retry) {
  ae_http80 *h = c->h;
  *retry = 0;
  if (h->has_hooks && h->hooks.host_state)
    return h->hooks.host_state(h->hooks.ud, c->host, retry);
  return AE_H80_DENY;
}

/* Answers the current non-challenge request: c->host_status when the Host was unusable, else st.
 * AE_H80_CHECKING here means a held request ran out of time. */
static void answer_host(h80_conn *c, ae_h80_state st, unsigned retry) {
  const ae_config *cfg = c->h->cfg;
  const char *path = request_path(c);
  int status = c->host_status;
  char extra[H80_HEAD_CAP + 320];
  char body[400];
  extra[0] = '\0';
  snprintf(body, sizeof(body), "not found\n");
  if (status == 0) {
    switch (st) {
    case AE_H80_MISDIRECTED:
      status = 421;
      snprintf(body, sizeof(body), "misdirected request\n");
      break;
    case AE_H80_PENDING:
    case AE_H80_FAILED:
      if (retry == 0)
        retry = H80_RETRY_DEFAULT_S;
      status = 503;
      snprintf(extra, sizeof(extra), "Retry-After: %u\r\n", retry);
      snprintf(body, sizeof(body), "certificate for %s is being issued, retry in %u s\n", c->host, retry);
      break;
    case AE_H80_CHECKING:
      /* Nothing is known yet: the short, fixed retry is the conservative answer. */
      retry = H80_RETRY_DEFAULT_S;
      status = 503;
      snprintf(extra, sizeof(extra), "Retry-After: %u\r\n", retry);
      snprintf(body, sizeof(body), "%s is being checked, retry in %u s\n", c->host, retry);
      break;
    case AE_H80_VALID: {
      int port = https_port(cfg);
      if (!cfg->redirect_http || port < 0) {
        status = 404;
        break;
      }
      char portbuf[16] = "";
      if (port != 443)
        snprintf(portbuf, sizeof(portbuf), ":%d", port);
      status = 308;
      snprintf(extra, sizeof(extra), "Location: https://%s%s%s\r\n", c->host, portbuf,
               path_safe(path) ? path : "/");
      snprintf(body, sizeof(body), "moved to https\n");
      break;
    }
    case AE_H80_DENY:
    default:
      status = 404;
      break;
    }
  } else if (status == 400) {
    snprintf(body, sizeof(body), "bad request: missing or invalid Host\n");
  }
  AE_DEBUG("http80", "%s %.200s host=%s -> %d (peer %s)",
           llhttp_method_name((llhttp_method_t)c->req_method), path, c->host_count == 1 ? c->host_raw : "-",
           status, c->t->peer_ip);
  send_response(c, status, extra, body, c->req_method == HTTP_HEAD, !c->req_keep || status == 400);
}

/* Holds the current request: no more bytes are read (pipelined ones wait in buf) until
 * ae_http80_wake or the hold timer answers it. */
static void conn_park(h80_conn *c) {
  ae_http80 *h = c->h;
  c->parked = 1;
  c->park_id = ++h->park_seq;
  c->wake_gen = h->wake_gen;
  c->pprev = NULL;
  c->pnext = h->parked;
  if (h->parked)
    h->parked->pprev = c;
  h->parked = c;
  ae_transport_read_stop(c->t);
  timer_set(c, TM_PARK);
  AE_DEBUG("http80", "request for %s held until its check completes (peer %s)", c->host, c->t->peer_ip);
}

static void respond(h80_conn *c) {
  ae_http80 *h = c->h;
  int method = llhttp_get_method(&c->parser);
  c->req_method = method;
  c->req_keep = llhttp_should_keep_alive(&c->parser) && !c->parser.upgrade && method != HTTP_CONNECT &&
                !h->closing;
  ae_metrics_inc(AE_M_HTTP80_REQUESTS);

  const char *path = request_path(c);
  if (is_challenge_path(path)) {
    answer_challenge(c, path, method, c->req_keep);
    return;
  }
  unsigned retry = 0;
  ae_h80_state st = AE_H80_DENY;
  if (c->host_status == 0) {
    st = ask_state(c, &retry);
    if (st == AE_H80_CHECKING) {
      conn_park(c);
      return;
    }
  }
  answer_host(c, st, retry);
}

static void hand_over(h80_conn *c) {
  ae_http80 *h = c->h;
  ae_transport *t = c->t;
  AE_DEBUG("http80", "plain HTTP for %s handed to the proxy (peer %s)", c->host, t->peer_ip);
  ae_metrics_inc(AE_M_HTTP80_REQUESTS);
  c->handed = 1;
  c->t = NULL;
  uv_timer_stop(&c->timer);
  ae_transport_read_stop(t);
  t->ud = NULL;
  t->on_read = NULL;
  t->on_drain = NULL;
  t->on_close = NULL;
  conn_unlist(c);
  h->hooks.on_plain(h->hooks.ud, t, c->buf, c->len);
  /* The conn (not the transport) is freed once its timer handle is closed. */
  uv_close((uv_handle_t *)&c->timer, conn_timer_closed);
}

/* ---------------------------------------------------------------------------------------- */
/* Parser callbacks */

static int head_grow(h80_conn *c, size_t n) {
  c->head_bytes += n;
  if (c->head_bytes > head_cap(c->h->cfg)) {
    c->too_large = 1;
    return -1;
  }
  return 0;
}

static int on_message_begin(llhttp_t *p) {
  h80_conn *c = p->data;
  c->started = 1;
  c->in_head = 1;
  c->head_bytes = 0;
  c->nheaders = 0;
  c->too_large = 0;
  free(c->url);
  c->url = NULL;
  c->url_len = 0;
  c->field_len = 0;
  c->field_is_host = 0;
  c->host_len = 0;
  c->host_over = 0;
  c->host_count = 0;
  c->host_raw[0] = '\0';
  c->host[0] = '\0';
  c->host_status = 0;
  c->event = EV_NONE;
  if (c->timer_mode != TM_HEAD)
    timer_set(c, TM_HEAD);
  return 0;
}

static int on_url(llhttp_t *p, const char *at, size_t n) {
  h80_conn *c = p->data;
  if (head_grow(c, n) < 0)
    return -1;
  c->url = ae_realloc(c->url, c->url_len + n + 1);
  memcpy(c->url + c->url_len, at, n);
  c->url_len += n;
  c->url[c->url_len] = '\0';
  return 0;
}

static int on_header_field(llhttp_t *p, const char *at, size_t n) {
  h80_conn *c = p->data;
  if (head_grow(c, n) < 0)
    return -1;
  for (size_t i = 0; i < n; i++) {
    if (c->field_len < sizeof(c->field) - 1)
      c->field[c->field_len] = at[i];
    c->field_len++;
  }
  return 0;
}

static int on_header_field_complete(llhttp_t *p) {
  h80_conn *c = p->data;
  c->nheaders++;
  if (c->nheaders > max_headers(c->h->cfg)) {
    c->too_large = 1;
    return -1;
  }
  c->field[c->field_len < sizeof(c->field) ? c->field_len : sizeof(c->field) - 1] = '\0';
  c->field_is_host = c->field_len == 4 && ae_strcasecmp(c->field, "host") == 0;
  c->field_len = 0;
  return head_grow(c, 4); /* ": " and CRLF */
}

static int on_header_value(llhttp_t *p, const char *at, size_t n) {
  h80_conn *c = p->data;
  if (head_grow(c, n) < 0)
    return -1;
  if (!c->field_is_host)
    return 0;
  if (c->host_count > 0) /* a second Host header: only the count matters */
    return 0;
  if (c->host_len + n > H80_HOST_MAX) {
    c->host_over = 1;
    return 0;
  }
  memcpy(c->host_raw + c->host_len, at, n);
  c->host_len += n;
  c->host_raw[c->host_len] = '\0';
  return 0;
}

static int on_header_value_complete(llhttp_t *p) {
  h80_conn *c = p->data;
  if (c->field_is_host)
    c->host_count++;
  c->field_is_host = 0;
  return 0;
}

static int classify_host(h80_conn *c) {
  if (c->host_count != 1 || c->host_over || c->host_len == 0)
    return 400;
  const char *reason = NULL;
  if (ae_policy_normalize(c->host_raw, c->host, sizeof(c->host), &reason) < 0) {
    c->host[0] = '\0';
    /* An address is a well-formed Host we simply serve nothing for. */
    return (reason && strcmp(reason, "ip_literal") == 0) ? 404 : 400;
  }
  return 0;
}

static int on_headers_complete(llhttp_t *p) {
  h80_conn *c = p->data;
  ae_http80 *h = c->h;
  c->in_head = 0;
  timer_set(c, TM_BODY);
  c->host_status = classify_host(c);
  const char *path = request_path(c);
  int challenge = is_challenge_path(path);
  if (!challenge && c->host_status == 0 && h->has_hooks && h->hooks.plain_route && h->hooks.on_plain &&
      h->hooks.plain_route(h->hooks.ud, c->host)) {
    c->event = EV_HANDOFF;
    return HPE_PAUSED;
  }
  return 0;
}

static int on_message_complete(llhttp_t *p) {
  h80_conn *c = p->data;
  c->event = EV_MESSAGE;
  return HPE_PAUSED;
}

/* ---------------------------------------------------------------------------------------- */
/* Read loop */

static void buf_consume(h80_conn *c, size_t n) {
  memmove(c->buf, c->buf + n, c->len - n);
  c->len -= n;
  c->parsed = c->parsed > n ? c->parsed - n : 0;
}

/* After a request was answered: timers and backpressure for the next one. <0 when the
 * connection must not go on parsing now (closing, held, or its write queue is too long). */
static int after_answer(h80_conn *c) {
  if (c->closing || c->handed || c->parked)
    return -1;
  timer_set(c, c->len == 0 ? TM_IDLE : TM_HEAD);
  if (c->t && ae_transport_queued(c->t) > H80_WRITE_HIGH) {
    c->blocked = 1;
    ae_transport_read_stop(c->t);
    return -1;
  }
  return 0;
}

static void conn_process(h80_conn *c) {
  ae_http80 *h = c->h;
  while (!c->closing && !c->handed && !c->blocked && !c->parked && c->parsed < c->len) {
    const char *start = c->buf + c->parsed;
    llhttp_errno_t e = llhttp_execute(&c->parser, start, c->len - c->parsed);
    if (e == HPE_OK) {
      c->parsed = c->len;
      break;
    }
    if (e == HPE_PAUSED) {
      const char *pos = llhttp_get_error_pos(&c->parser);
      c->parsed = (size_t)(pos - c->buf);
      llhttp_resume(&c->parser);
      int ev = c->event;
      c->event = EV_NONE;
      if (ev == EV_HANDOFF) {
        hand_over(c);
        return;
      }
      if (ev == EV_MESSAGE) {
        c->started = 0;
        buf_consume(c, c->parsed);
        respond(c);
        if (after_answer(c) < 0)
          return;
      }
      continue;
    }
    /* A parse error: the request is answered (431/400) and the connection closed. */
    if (c->too_large) {
      AE_DEBUG("http80", "request head too large (peer %s)", c->t->peer_ip);
      send_response(c, 431, NULL, "request header fields too large\n", 0, 1);
    } else {
      AE_DEBUG("http80", "bad request from %s: %s", c->t->peer_ip, llhttp_errno_name(e));
      send_response(c, 400, NULL, "bad request\n", 0, 1);
    }
    return;
  }
  if (c->closing || c->handed || c->parked)
    return;
  if (!c->started) {
    buf_consume(c, c->parsed); /* blank lines between requests */
  } else if (!c->in_head) {
    buf_consume(c, c->parsed); /* body bytes are not needed once the head was seen */
  } else if (c->len > (size_t)head_cap(h->cfg) + 1024) {
    send_response(c, 431, NULL, "request header fields too large\n", 0, 1);
  }
}

static void conn_on_read(void *ud, const char *data, ssize_t n) {
  h80_conn *c = ud;
  if (c->closing || c->handed)
    return;
  if (n < 0) {
    conn_close(c);
    return;
  }
  if (n == 0)
    return;
  if (c->len + (size_t)n > c->cap) {
    size_t cap = c->cap ? c->cap : 4096;
    while (cap < c->len + (size_t)n)
      cap *= 2;
    c->buf = ae_realloc(c->buf, cap);
    c->cap = cap;
  }
  memcpy(c->buf + c->len, data, (size_t)n);
  c->len += (size_t)n;
  if (c->timer_mode == TM_BODY)
    timer_set(c, TM_BODY);
  conn_process(c);
}

static void conn_on_drain(void *ud) {
  h80_conn *c = ud;
  if (!c->blocked || c->closing || !c->t)
    return;
  c->blocked = 0;
  ae_transport_read_start(c->t);
  conn_process(c);
}

/* Answers a held request with st, then goes on with what the client pipelined behind it. */
static void park_release(h80_conn *c, ae_h80_state st, unsigned retry) {
  conn_unpark(c);
  answer_host(c, st, retry);
  if (after_answer(c) < 0)
    return;
  ae_transport_read_start(c->t);
  conn_process(c);
}

static void conn_timeout(uv_timer_t *timer) {
  h80_conn *c = timer->data;
  if (c->closing || c->handed)
    return;
  if (c->timer_mode == TM_PARK) {
    if (!c->parked)
      return;
    uint64_t id = c->park_id;
    unsigned retry = 0;
    ae_h80_state st = ask_state(c, &retry);
    if (!c->parked || c->park_id != id || c->closing)
      return; /* answered from inside the hook */
    if (st == AE_H80_CHECKING)
      AE_DEBUG("http80", "check for %s still running after %u ms: 503 (peer %s)", c->host,
               timeout_for(c->h->cfg, TM_PARK), c->t->peer_ip);
    park_release(c, st, retry);
    return;
  }
  if (c->timer_mode == TM_IDLE) {
    conn_close(c);
    return;
  }
  AE_DEBUG("http80", "request timeout (peer %s)", c->t->peer_ip);
  send_response(c, 408, NULL, "request timeout\n", 0, 1);
}

/* ---------------------------------------------------------------------------------------- */
/* Listener */

static void reject_closed(uv_handle_t *handle) {
  free(handle);
}

static void on_connection(uv_stream_t *server, int status) {
  ae_http80 *h = server->data;
  if (status < 0) {
    AE_WARN("http80", "accept failed: %s", uv_strerror(status));
    return;
  }
  uv_tcp_t *tcp = ae_malloc(sizeof(*tcp));
  uv_tcp_init(h->loop, tcp);
  if (uv_accept(server, (uv_stream_t *)tcp) != 0) {
    uv_close((uv_handle_t *)tcp, reject_closed);
    return;
  }
  unsigned maxc = h->cfg->tls.max_connections ? h->cfg->tls.max_connections : H80_MAX_CONN_DEFAULT;
  if (h->closing || h->nopen >= maxc) {
    AE_DEBUG("http80", "connection refused: %zu open", h->nopen);
    uv_close((uv_handle_t *)tcp, reject_closed);
    return;
  }
  ae_transport *t = NULL;
  if (ae_transport_tcp_new(h->loop, tcp, &t) < 0) {
    uv_close((uv_handle_t *)tcp, reject_closed);
    return;
  }
  h80_conn *c = ae_calloc(1, sizeof(*c));
  c->h = h;
  c->t = t;
  uv_timer_init(h->loop, &c->timer);
  c->timer.data = c;
  llhttp_init(&c->parser, HTTP_REQUEST, &h->settings);
  c->parser.data = c;
  c->next = h->conns;
  if (h->conns)
    h->conns->prev = c;
  h->conns = c;
  c->in_list = 1;
  h->nopen++;
  h->nalloc++;
  ae_metrics_add(AE_M_CONN_OPEN, 1);
  t->ud = c;
  t->on_read = conn_on_read;
  t->on_drain = conn_on_drain;
  t->on_close = conn_on_close;
  timer_set(c, TM_HEAD);
  ae_transport_read_start(t);
}

static void listener_closed(uv_handle_t *handle) {
  ae_http80 *h = handle->data;
  h->listener_closed = 1;
  maybe_closed(h);
}

int ae_http80_new(uv_loop_t *loop, const ae_config *cfg, ae_challenge *ch, const ae_http80_hooks *hooks,
                  ae_http80 **out, ae_err *err) {
  if (!loop || !cfg || !out)
    return ae_err_set(err, AE_EINVAL, "http80: missing loop or config");
  if (!cfg->listen_http || !cfg->listen_http[0])
    return ae_err_set(err, AE_EINVAL, "http80: listen.http is not set");
  struct sockaddr_storage ss;
  memset(&ss, 0, sizeof(ss));
  if (parse_listen(cfg->listen_http, &ss) < 0)
    return ae_err_set(err, AE_EINVAL, "http80: listen.http: bad address \"%s\"", cfg->listen_http);

  ae_http80 *h = ae_calloc(1, sizeof(*h));
  h->loop = loop;
  h->ch = ch;
  if (hooks) {
    h->hooks = *hooks;
    h->has_hooks = 1;
  }
  llhttp_settings_init(&h->settings);
  h->settings.on_message_begin = on_message_begin;
  h->settings.on_url = on_url;
  h->settings.on_header_field = on_header_field;
  h->settings.on_header_field_complete = on_header_field_complete;
  h->settings.on_header_value = on_header_value;
  h->settings.on_header_value_complete = on_header_value_complete;
  h->settings.on_headers_complete = on_headers_complete;
  h->settings.on_message_complete = on_message_complete;

  uv_tcp_init(loop, &h->listener);
  h->listener.data = h;
  int r = uv_tcp_bind(&h->listener, (const struct sockaddr *)&ss, 0);
  if (r == 0)
    r = uv_listen((uv_stream_t *)&h->listener, 511, on_connection);
  if (r < 0) {
    ae_err_set(err, AE_EIO, "http80: cannot listen on %s: %s", cfg->listen_http, uv_strerror(r));
    /* The handle is closed asynchronously; h is released by the close callback. */
    h->closing = 1;
    h->close_cb = free;
    h->close_ud = h;
    uv_close((uv_handle_t *)&h->listener, listener_closed);
    return AE_EIO;
  }
  struct sockaddr_storage bound;
  int blen = sizeof(bound);
  if (uv_tcp_getsockname(&h->listener, (struct sockaddr *)&bound, &blen) == 0)
    h->port = ntohs(bound.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&bound)->sin6_port
                                                 : ((struct sockaddr_in *)&bound)->sin_port);
  h->cfg = ae_config_ref((ae_config *)cfg);
  AE_INFO("http80", "listening on %s (port %d)", cfg->listen_http, h->port);
  *out = h;
  return 0;
}

void ae_http80_set_config(ae_http80 *h, const ae_config *cfg) {
  if (!h || !cfg || cfg == h->cfg)
    return;
  ae_config *old = h->cfg;
  h->cfg = ae_config_ref((ae_config *)cfg);
  ae_config_free(old);
}

void ae_http80_close(ae_http80 *h, void (*cb)(void *ud), void *ud) {
  if (!h || h->closing)
    return;
  h->closing = 1;
  h->close_cb = cb;
  h->close_ud = ud;
  uv_close((uv_handle_t *)&h->listener, listener_closed);
  for (h80_conn *c = h->conns; c; c = c->next) {
    /* Abort even those closing gracefully: a slow peer must not hold up shutdown. Held
     * requests are dropped with their connection. */
    conn_unpark(c);
    if (c->t) {
      c->closing = 1;
      uv_timer_stop(&c->timer);
      ae_transport_abort(c->t);
    }
  }
}

void ae_http80_wake(ae_http80 *h, const char *host) {
  if (!h || !host)
    return;
  uint64_t gen = ++h->wake_gen;
  /* Answering one request can hold another (pipelined) or change the list from inside the hook:
   * rescan from the head each time; wake_gen marks the holds already visited. */
  for (;;) {
    h80_conn *c = h->parked;
    while (c && (c->wake_gen >= gen || strcmp(c->host, host) != 0))
      c = c->pnext;
    if (!c)
      break;
    c->wake_gen = gen;
    uint64_t id = c->park_id;
    unsigned retry = 0;
    ae_h80_state st = ask_state(c, &retry);
    if (!c->parked || c->park_id != id || c->closing)
      continue;
    if (st == AE_H80_CHECKING)
      continue; /* still undecided: the hold timer bounds the wait */
    park_release(c, st, retry);
  }
}

void ae_http80_free(ae_http80 *h) {
  if (!h)
    return;
  ae_config_free(h->cfg);
  free(h);
}

int ae_http80_port(const ae_http80 *h) {
  return h ? h->port : -1;
}
