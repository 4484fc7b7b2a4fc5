/* Admin HTTP API: a small HTTP/1.1 server (llhttp) on the control loop. Requests are answered
 * synchronously from the hooks; /v1/events keeps the connection open as a Server-Sent Events
 * stream fed by the event bus, with a bounded write queue per client. */
#include "acmedge/admin.h"
#include "acmedge/log.h"
#include "acmedge/metrics.h"

#include <arpa/inet.h>
#include <errno.h>
#include <llhttp.h>
#include <nettle/sha2.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define ADM_MAX_URL 4096
#define ADM_MAX_HEADER_BYTES 16384
#define ADM_MAX_HVAL 8192
#define ADM_MAX_BODY (64 * 1024)
#define ADM_MAX_CONNS 128
#define ADM_REQUEST_TIMEOUT_MS 15000   /* first byte of a request to its end */
#define ADM_IDLE_TIMEOUT_MS 60000      /* keep-alive between requests */
#define ADM_DEFAULT_HEARTBEAT_MS 15000
#define ADM_DEFAULT_SSE_QUEUE (256 * 1024)
#define ADM_STUCK_TICKS 4              /* heartbeats without write progress before a lagging client is dropped */
#define ADM_READ_BUF 65536

typedef struct adm_conn adm_conn;

struct ae_admin {
  uv_loop_t *loop;
  ae_events *ev;
  ae_admin_hooks hooks;

  union {
    uv_tcp_t tcp;
    uv_pipe_t pipe;
  } listener;
  int listening;      /* listener handle initialised and not yet closed */
  int is_unix;
  int loopback;       /* TCP listener on a loopback address */
  int port;
  char *listen_addr;  /* as configured, to notice changes on reload */
  char *unix_path;    /* socket file we created, unlinked at close */

  char *token;        /* NULL: no authentication */
  uint8_t token_hash[SHA256_DIGEST_SIZE];

  uv_timer_t heartbeat;
  int heartbeat_open;
  unsigned heartbeat_ms;
  size_t sse_queue_limit;

  adm_conn *conns;   /* open connections */
  unsigned nconns;
  unsigned nalive;   /* connections whose memory is not yet freed (closing ones included) */

  int closing;
  void (*close_cb)(void *ud);
  void *close_ud;
  int close_cb_done;

  char rbuf[ADM_READ_BUF];
  int rbuf_busy;
};

struct adm_conn {
  ae_admin *a;
  union {
    uv_tcp_t tcp;
    uv_pipe_t pipe;
  } io;
  uv_timer_t timer;
  int open_handles;
  int closing;
  int close_after_write;
  unsigned writes_pending;
  adm_conn *prev, *next;

  llhttp_t parser;
  /* current request */
  int in_request;
  char url[ADM_MAX_URL + 1];
  size_t url_len;
  char hname[32];
  size_t hname_len;
  int hname_long;
  char hval[ADM_MAX_HVAL + 1];
  size_t hval_len;
  int hval_long;
  size_t header_bytes;
  char *h_auth, *h_last_event_id, *h_origin, *h_host, *h_expect;
  char *body;
  size_t body_len, body_cap;
  int fail_status;     /* set by a parser callback that refuses the request */
  const char *fail_msg;

  /* SSE */
  int sse;
  ae_events_sub *sub;
  uint64_t last_sent;
  int lagging;
  int lag_ticks;
};

typedef struct {
  uv_write_t req;
  adm_conn *c;
  uv_buf_t buf;
  char data[];
} adm_write;

static llhttp_settings_t g_settings;
static int g_settings_ready;

static void conn_close(adm_conn *c);
static void sse_catch_up(adm_conn *c);
static void on_timer(uv_timer_t *t);

/* ------------------------------------------------------------------ helpers */

static void hash_token(const char *s, size_t n, uint8_t out[SHA256_DIGEST_SIZE]) {
  struct sha256_ctx ctx;
  sha256_init(&ctx);
  sha256_update(&ctx, n, (const uint8_t *)s);
  sha256_digest(&ctx, SHA256_DIGEST_SIZE, out);
}

/* Compares digests of both sides so that neither the length nor a common prefix of the
 * presented token shows in the timing. */
static int token_ok(const ae_admin *a, const char *presented, size_t n) {
  uint8_t h[SHA256_DIGEST_SIZE];
  hash_token(presented, n, h);
  volatile uint8_t diff = 0;
  for (size_t i = 0; i < SHA256_DIGEST_SIZE; i++)
    diff |= (uint8_t)(h[i] ^ a->token_hash[i]);
  return diff == 0;
}

static void set_token(ae_admin *a, const char *tok) {
  if (a->token) {
    memset(a->token, 0, strlen(a->token));
    free(a->token);
  }
  a->token = tok && *tok ? ae_strdup(tok) : NULL;
  if (a->token)
    hash_token(a->token, strlen(a->token), a->token_hash);
}

static const char *reason_phrase(int status) {
  switch (status) {
  case 200: return "OK";
  case 202: return "Accepted";
  case 204: return "No Content";
  case 400: return "Bad Request";
  case 401: return "Unauthorized";
  case 403: return "Forbidden";
  case 404: return "Not Found";
  case 405: return "Method Not Allowed";
  case 408: return "Request Timeout";
  case 413: return "Payload Too Large";
  case 414: return "URI Too Long";
  case 431: return "Request Header Fields Too Large";
  case 500: return "Internal Server Error";
  case 503: return "Service Unavailable";
  default: return "Unknown";
  }
}

/* ------------------------------------------------------------------ writing */

static void on_write(uv_write_t *req, int status) {
  adm_write *w = (adm_write *)req;
  adm_conn *c = w->c;
  free(w);
  c->writes_pending--;
  if (c->closing)
    return;
  if (status < 0) {
    AE_DEBUG("admin", "write failed: %s", uv_strerror(status));
    conn_close(c);
    return;
  }
  c->lag_ticks = 0;
  size_t queued = uv_stream_get_write_queue_size((uv_stream_t *)&c->io);
  if (c->close_after_write && c->writes_pending == 0) {
    conn_close(c);
    return;
  }
  if (c->sse && c->lagging && queued == 0)
    sse_catch_up(c);
}

/* Queues a copy of data; returns 0 or a negative uv error (the connection is then closed). */
static int conn_write(adm_conn *c, const char *data, size_t len) {
  if (c->closing)
    return UV_ECANCELED;
  adm_write *w = ae_malloc(sizeof(*w) + len);
  memcpy(w->data, data, len);
  w->c = c;
  w->buf = uv_buf_init(w->data, (unsigned)len);
  int r = uv_write(&w->req, (uv_stream_t *)&c->io, &w->buf, 1, on_write);
  if (r < 0) {
    free(w);
    conn_close(c);
    return r;
  }
  c->writes_pending++;
  return 0;
}

/* Sends a complete response; extra_headers are full "Name: value\r\n" lines or NULL. */
static void respond(adm_conn *c, int status, const char *ctype, const char *body, size_t blen,
                    const char *extra_headers) {
  int keep = !c->close_after_write && llhttp_should_keep_alive(&c->parser);
  if (!keep)
    c->close_after_write = 1;
  char head[1024];
  int n = snprintf(head, sizeof(head),
                   "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\nCache-Control: no-store\r\n%s%s\r\n",
                   status, reason_phrase(status), ctype, blen, extra_headers ? extra_headers : "",
                   keep ? "" : "Connection: close\r\n");
  if (n < 0 || (size_t)n >= sizeof(head))
    n = snprintf(head, sizeof(head), "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n");
  size_t total = (size_t)n + blen;
  char *out = ae_malloc(total ? total : 1);
  memcpy(out, head, (size_t)n);
  if (blen)
    memcpy(out + n, body, blen);
  conn_write(c, out, total);
  free(out);
}

static void respond_json(adm_conn *c, int status, json_t *j, const char *extra_headers) {
  char *s = j ? json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_ENCODE_ANY) : NULL;
  json_decref(j);
  if (!s) {
    static const char fallback[] = "{\"error\":\"internal error\"}\n";
    respond(c, 500, "application/json", fallback, sizeof(fallback) - 1, NULL);
    return;
  }
  size_t n = strlen(s);
  char *body = ae_malloc(n + 2);
  memcpy(body, s, n);
  body[n] = '\n';
  free(s);
  respond(c, status, "application/json", body, n + 1, extra_headers);
  free(body);
}

static void respond_error(adm_conn *c, int status, const char *extra_headers, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void respond_error(adm_conn *c, int status, const char *extra_headers, const char *fmt, ...) {
  char msg[600];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);
  respond_json(c, status, json_pack("{s:s}", "error", msg), extra_headers);
}

/* ------------------------------------------------------------------ SSE */

typedef struct {
  adm_conn *c;
  int stopped;
} sse_replay_ctx;

static void sse_write_event(adm_conn *c, uint64_t id, const char *json) {
  size_t n = strlen(json) + 48;
  char *buf = ae_malloc(n);
  int len = snprintf(buf, n, "id: %llu\ndata: %s\n\n", (unsigned long long)id, json);
  if (len > 0 && conn_write(c, buf, (size_t)len) == 0)
    c->last_sent = id;
  free(buf);
}

static int sse_over_limit(adm_conn *c) {
  return uv_stream_get_write_queue_size((uv_stream_t *)&c->io) > c->a->sse_queue_limit;
}

static void sse_replay_one(void *ud, uint64_t id, const char *type, const char *domain, const char *json) {
  sse_replay_ctx *x = ud;
  (void)type;
  (void)domain;
  if (x->stopped || x->c->closing || id <= x->c->last_sent)
    return;
  if (sse_over_limit(x->c)) {
    /* Still too slow: the rest is fetched from the ring at the next drain. */
    x->c->lagging = 1;
    x->stopped = 1;
    return;
  }
  sse_write_event(x->c, id, json);
}

static void count_only(void *ud, uint64_t id, const char *type, const char *domain, const char *json) {
  (void)ud;
  (void)id;
  (void)type;
  (void)domain;
  (void)json;
}

/* Sends everything after c->last_sent that the ring still has, preceded by a gap report. */
static void sse_send_since(adm_conn *c) {
  uint64_t since = c->last_sent;
  uint64_t missed = 0;
  ae_events_replay(c->a->ev, since, count_only, NULL, &missed);
  if (missed) {
    char note[64];
    int n = snprintf(note, sizeof(note), ": missed %llu\n\n", (unsigned long long)missed);
    if (conn_write(c, note, (size_t)n) != 0)
      return;
    c->last_sent = since + missed;
  }
  sse_replay_ctx x = {c, 0};
  ae_events_replay(c->a->ev, c->last_sent, sse_replay_one, &x, NULL);
}

static void sse_catch_up(adm_conn *c) {
  c->lagging = 0;
  sse_send_since(c);
}

static void sse_on_event(void *ud, uint64_t id, const char *type, const char *domain, const char *json) {
  adm_conn *c = ud;
  (void)type;
  (void)domain;
  if (c->closing || c->lagging)
    return;
  if (sse_over_limit(c)) {
    /* Never queue without bound and never block the emitter: stop here and replay on drain. */
    c->lagging = 1;
    AE_DEBUG("admin", "event stream client is slow; pausing at id %llu", (unsigned long long)c->last_sent);
    return;
  }
  sse_write_event(c, id, json);
}

static uint64_t parse_u64(const char *s, int *ok) {
  *ok = 0;
  if (!s)
    return 0;
  while (*s == ' ' || *s == '\t')
    s++;
  if (*s < '0' || *s > '9')
    return 0;
  uint64_t v = 0;
  for (; *s >= '0' && *s <= '9'; s++) {
    if (v > (UINT64_MAX - 9) / 10)
      return 0;
    v = v * 10 + (uint64_t)(*s - '0');
  }
  while (*s == ' ' || *s == '\t')
    s++;
  if (*s)
    return 0;
  *ok = 1;
  return v;
}

/* Returns a malloc'd value of query parameter key (no percent-decoding needed for numbers). */
static char *query_param(const char *query, const char *key) {
  if (!query)
    return NULL;
  size_t kl = strlen(key);
  const char *p = query;
  while (*p) {
    const char *end = strchr(p, '&');
    size_t len = end ? (size_t)(end - p) : strlen(p);
    if (len > kl && strncmp(p, key, kl) == 0 && p[kl] == '=') {
      char *v = ae_malloc(len - kl);
      memcpy(v, p + kl + 1, len - kl - 1);
      v[len - kl - 1] = '\0';
      return v;
    }
    if (!end)
      break;
    p = end + 1;
  }
  return NULL;
}

static void start_sse(adm_conn *c, const char *query) {
  ae_admin *a = c->a;
  int have_since = 0;
  uint64_t since = 0;
  if (c->h_last_event_id) {
    since = parse_u64(c->h_last_event_id, &have_since);
    if (!have_since) {
      respond_error(c, 400, NULL, "Last-Event-ID must be an event id");
      return;
    }
  } else {
    char *q = query_param(query, "since");
    if (q) {
      since = parse_u64(q, &have_since);
      free(q);
      if (!have_since) {
        respond_error(c, 400, NULL, "since must be an event id");
        return;
      }
    }
  }
  uint64_t last = ae_events_last_id(a->ev);
  /* An id from the future means the process restarted and ids began again: replay it all. */
  if (have_since && since > last)
    since = 0;

  static const char head[] = "HTTP/1.1 200 OK\r\n"
                             "Content-Type: text/event-stream\r\n"
                             "Cache-Control: no-store\r\n"
                             "X-Accel-Buffering: no\r\n"
                             "Connection: close\r\n\r\n";
  if (conn_write(c, head, sizeof(head) - 1) != 0)
    return;
  c->sse = 1;
  c->close_after_write = 0;
  uv_timer_stop(&c->timer);
  if (ae_events_subscribe(a->ev, sse_on_event, c, &c->sub) != 0) {
    conn_close(c);
    return;
  }
  c->last_sent = have_since ? since : last;
  if (have_since)
    sse_send_since(c);
}

static void on_heartbeat(uv_timer_t *t) {
  ae_admin *a = t->data;
  static const char ping[] = ": ping\n\n";
  adm_conn *next;
  for (adm_conn *c = a->conns; c; c = next) {
    next = c->next;
    if (!c->sse || c->closing)
      continue;
    if (c->lagging) {
      /* A client that has not taken a byte for several heartbeats is gone in all but name. */
      if (++c->lag_ticks >= ADM_STUCK_TICKS) {
        AE_INFO("admin", "dropping an event stream client that stopped reading");
        conn_close(c);
      }
      continue;
    }
    conn_write(c, ping, sizeof(ping) - 1);
  }
}

/* ------------------------------------------------------------------ routing */

static int pct_decode(const char *in, char *out, size_t outlen) {
  size_t o = 0;
  for (const char *p = in; *p; p++) {
    if (o + 1 >= outlen)
      return -1;
    char ch = *p;
    if (ch == '%') {
      int hi, lo;
      char h1 = p[1], h2 = h1 ? p[2] : 0;
      hi = (h1 >= '0' && h1 <= '9') ? h1 - '0' : (h1 >= 'a' && h1 <= 'f') ? h1 - 'a' + 10 : (h1 >= 'A' && h1 <= 'F') ? h1 - 'A' + 10 : -1;
      lo = (h2 >= '0' && h2 <= '9') ? h2 - '0' : (h2 >= 'a' && h2 <= 'f') ? h2 - 'a' + 10 : (h2 >= 'A' && h2 <= 'F') ? h2 - 'A' + 10 : -1;
      if (hi < 0 || lo < 0)
        return -1;
      ch = (char)(hi * 16 + lo);
      p += 2;
    }
    if (ch == '\0' || ch == '/')
      return -1;
    out[o++] = ch;
  }
  out[o] = '\0';
  return o ? 0 : -1;
}

/* True for the Host header values a loopback listener expects: IP literals and localhost. A
 * browser tricked by DNS rebinding sends the attacker's name instead. */
static int host_header_ok(const char *host) {
  if (!host)
    return 1;
  char h[256];
  snprintf(h, sizeof(h), "%s", host);
  char *p = h;
  if (*p == '[') {
    char *e = strchr(p, ']');
    if (!e)
      return 0;
    *e = '\0';
    p++;
    unsigned char b[16];
    return inet_pton(AF_INET6, p, b) == 1;
  }
  char *colon = strchr(p, ':');
  if (colon)
    *colon = '\0';
  if (ae_strcasecmp(p, "localhost") == 0)
    return 1;
  unsigned char b[4];
  return inet_pton(AF_INET, p, b) == 1;
}

static void handle_domains_post(adm_conn *c) {
  ae_admin *a = c->a;
  json_error_t jerr;
  json_t *j = json_loadb(c->body ? c->body : "", c->body_len, 0, &jerr);
  const char *name = j ? json_string_value(json_object_get(j, "domain")) : NULL;
  if (!j) {
    respond_error(c, 400, NULL, "invalid JSON body: %s", jerr.text);
    return;
  }
  if (!json_is_object(j) || !name || !*name) {
    json_decref(j);
    respond_error(c, 400, NULL, "body must be {\"domain\": \"name\"}");
    return;
  }
  if (!a->hooks.add_domain) {
    json_decref(j);
    respond_error(c, 500, NULL, "adding domains is not available");
    return;
  }
  ae_err err = {0, ""};
  int r = a->hooks.add_domain(a->hooks.ud, name, &err);
  if (r == AE_EINVAL) {
    respond_error(c, 400, NULL, "%s", err.msg[0] ? err.msg : "invalid domain name");
  } else if (r != 0) {
    respond_error(c, 403, NULL, "%s", err.msg[0] ? err.msg : ae_strerror(r));
  } else {
    const char *state = "pending";
    json_t *list = a->hooks.list_domains ? a->hooks.list_domains(a->hooks.ud) : NULL;
    size_t i;
    json_t *o;
    json_array_foreach(list, i, o) {
      const char *d = json_string_value(json_object_get(o, "domain"));
      const char *s = json_string_value(json_object_get(o, "state"));
      if (d && s && ae_strcasecmp(d, name) == 0) {
        state = s;
        break;
      }
    }
    respond_json(c, 202, json_pack("{s:s,s:s}", "domain", name, "state", state), NULL);
    json_decref(list);
  }
  json_decref(j);
}

static void handle_domains_delete(adm_conn *c, const char *raw) {
  ae_admin *a = c->a;
  char name[512];
  if (pct_decode(raw, name, sizeof(name)) != 0) {
    respond_error(c, 400, NULL, "invalid domain name in path");
    return;
  }
  if (!a->hooks.delete_domain) {
    respond_error(c, 500, NULL, "deleting domains is not available");
    return;
  }
  ae_err err = {0, ""};
  int r = a->hooks.delete_domain(a->hooks.ud, name, &err);
  if (r == 0)
    respond_json(c, 200, json_pack("{s:s}", "deleted", name), NULL);
  else if (r == AE_ENOTFOUND)
    respond_error(c, 404, NULL, "%s", err.msg[0] ? err.msg : "unknown domain");
  else if (r == AE_EINVAL)
    respond_error(c, 400, NULL, "%s", err.msg[0] ? err.msg : "invalid domain name");
  else
    respond_error(c, 500, NULL, "%s", err.msg[0] ? err.msg : ae_strerror(r));
}

static void handle_metrics(adm_conn *c) {
  ae_admin *a = c->a;
  char *base = ae_metrics_render();
  char *extra = a->hooks.extra_metrics ? a->hooks.extra_metrics(a->hooks.ud) : NULL;
  size_t bl = strlen(base), el = extra ? strlen(extra) : 0;
  int need_nl = el && bl && base[bl - 1] != '\n';
  char *out = ae_malloc(bl + el + 2);
  memcpy(out, base, bl);
  if (need_nl)
    out[bl++] = '\n';
  if (el)
    memcpy(out + bl, extra, el);
  size_t total = bl + el;
  if (total && out[total - 1] != '\n')
    out[total++] = '\n';
  respond(c, 200, "text/plain; version=0.0.4; charset=utf-8", out, total, NULL);
  free(out);
  free(base);
  free(extra);
}

static int authorized(adm_conn *c) {
  ae_admin *a = c->a;
  if (!a->token)
    return 1;
  const char *h = c->h_auth;
  if (!h)
    return 0;
  while (*h == ' ')
    h++;
  if (strncasecmp(h, "Bearer ", 7) != 0)
    return 0;
  h += 7;
  while (*h == ' ')
    h++;
  size_t n = strlen(h);
  while (n && (h[n - 1] == ' ' || h[n - 1] == '\t'))
    n--;
  return token_ok(a, h, n);
}

static void handle_request(adm_conn *c) {
  ae_admin *a = c->a;
  int method = llhttp_get_method(&c->parser);
  c->url[c->url_len] = '\0';
  if (c->h_origin) {
    /* Not an API for browsers: a cross-site page must not drive it. */
    respond_error(c, 403, NULL, "requests carrying an Origin header are refused");
    return;
  }
  if (!a->token && !a->is_unix && !host_header_ok(c->h_host)) {
    respond_error(c, 403, NULL, "unexpected Host header");
    return;
  }
  if (!authorized(c)) {
    respond_error(c, 401, "WWW-Authenticate: Bearer realm=\"acmedge\"\r\n", "missing or wrong bearer token");
    return;
  }
  char *query = strchr(c->url, '?');
  if (query)
    *query++ = '\0';
  const char *path = c->url;
  int is_get = method == HTTP_GET;

  if (strcmp(path, "/healthz") == 0) {
    if (!is_get)
      respond_error(c, 405, "Allow: GET\r\n", "method not allowed");
    else
      respond(c, 200, "text/plain; charset=utf-8", "ok\n", 3, NULL);
  } else if (strcmp(path, "/metrics") == 0) {
    if (!is_get)
      respond_error(c, 405, "Allow: GET\r\n", "method not allowed");
    else
      handle_metrics(c);
  } else if (strcmp(path, "/v1/domains") == 0) {
    if (method == HTTP_GET) {
      json_t *list = a->hooks.list_domains ? a->hooks.list_domains(a->hooks.ud) : json_array();
      if (!list || !json_is_array(list)) {
        json_decref(list);
        respond_error(c, 500, NULL, "domain list unavailable");
      } else {
        respond_json(c, 200, list, NULL);
      }
    } else if (method == HTTP_POST) {
      handle_domains_post(c);
    } else {
      respond_error(c, 405, "Allow: GET, POST\r\n", "method not allowed");
    }
  } else if (strncmp(path, "/v1/domains/", 12) == 0) {
    if (method == HTTP_DELETE)
      handle_domains_delete(c, path + 12);
    else
      respond_error(c, 405, "Allow: DELETE\r\n", "method not allowed");
  } else if (strcmp(path, "/v1/events") == 0) {
    if (method != HTTP_GET)
      respond_error(c, 405, "Allow: GET\r\n", "method not allowed");
    else
      start_sse(c, query);
  } else {
    respond_error(c, 404, NULL, "no such endpoint: %s", path);
  }
}

/* ------------------------------------------------------------------ parser callbacks */

static void reset_request(adm_conn *c) {
  c->in_request = 0;
  c->url_len = 0;
  c->hname_len = 0;
  c->hname_long = 0;
  c->hval_len = 0;
  c->hval_long = 0;
  c->header_bytes = 0;
  free(c->h_auth);
  free(c->h_last_event_id);
  free(c->h_origin);
  free(c->h_host);
  free(c->h_expect);
  c->h_auth = c->h_last_event_id = c->h_origin = c->h_host = c->h_expect = NULL;
  free(c->body);
  c->body = NULL;
  c->body_len = c->body_cap = 0;
  c->fail_status = 0;
  c->fail_msg = NULL;
}

static int fail(adm_conn *c, int status, const char *msg) {
  c->fail_status = status;
  c->fail_msg = msg;
  return -1;
}

static int count_header_bytes(adm_conn *c, size_t n) {
  c->header_bytes += n;
  if (c->header_bytes > ADM_MAX_HEADER_BYTES)
    return fail(c, 431, "request header too large");
  return 0;
}

static int on_message_begin(llhttp_t *p) {
  adm_conn *c = p->data;
  reset_request(c);
  c->in_request = 1;
  uv_timer_start(&c->timer, on_timer, ADM_REQUEST_TIMEOUT_MS, 0);
  return 0;
}

static int on_url(llhttp_t *p, const char *at, size_t n) {
  adm_conn *c = p->data;
  if (c->url_len + n > ADM_MAX_URL)
    return fail(c, 414, "request target too long");
  memcpy(c->url + c->url_len, at, n);
  c->url_len += n;
  return count_header_bytes(c, n);
}

static int on_header_field(llhttp_t *p, const char *at, size_t n) {
  adm_conn *c = p->data;
  if (c->hname_len + n >= sizeof(c->hname)) {
    c->hname_long = 1;
  } else {
    memcpy(c->hname + c->hname_len, at, n);
    c->hname_len += n;
  }
  return count_header_bytes(c, n);
}

static int on_header_value(llhttp_t *p, const char *at, size_t n) {
  adm_conn *c = p->data;
  if (c->hval_len + n > ADM_MAX_HVAL) {
    c->hval_long = 1;
  } else {
    memcpy(c->hval + c->hval_len, at, n);
    c->hval_len += n;
  }
  return count_header_bytes(c, n);
}

static int on_header_value_complete(llhttp_t *p) {
  adm_conn *c = p->data;
  char **slot = NULL;
  if (!c->hname_long) {
    c->hname[c->hname_len] = '\0';
    if (ae_strcasecmp(c->hname, "authorization") == 0)
      slot = &c->h_auth;
    else if (ae_strcasecmp(c->hname, "last-event-id") == 0)
      slot = &c->h_last_event_id;
    else if (ae_strcasecmp(c->hname, "origin") == 0)
      slot = &c->h_origin;
    else if (ae_strcasecmp(c->hname, "host") == 0)
      slot = &c->h_host;
    else if (ae_strcasecmp(c->hname, "expect") == 0)
      slot = &c->h_expect;
  }
  if (slot) {
    if (c->hval_long)
      return fail(c, 431, "header value too long");
    if (*slot) /* a repeated header of these kinds is ambiguous */
      return fail(c, 400, "repeated header");
    c->hval[c->hval_len] = '\0';
    *slot = ae_strdup(c->hval);
  }
  c->hname_len = 0;
  c->hname_long = 0;
  c->hval_len = 0;
  c->hval_long = 0;
  return 0;
}

static int on_headers_complete(llhttp_t *p) {
  adm_conn *c = p->data;
  if ((p->flags & F_CONTENT_LENGTH) && p->content_length > ADM_MAX_BODY)
    return fail(c, 413, "request body too large (limit 64 KiB)");
  if (c->h_expect && ae_strcasecmp(c->h_expect, "100-continue") == 0) {
    static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
    conn_write(c, cont, sizeof(cont) - 1);
  }
  return 0;
}

static int on_body(llhttp_t *p, const char *at, size_t n) {
  adm_conn *c = p->data;
  if (c->body_len + n > ADM_MAX_BODY)
    return fail(c, 413, "request body too large (limit 64 KiB)");
  if (c->body_len + n + 1 > c->body_cap) {
    c->body_cap = (c->body_len + n + 1) * 2;
    if (c->body_cap > ADM_MAX_BODY + 1)
      c->body_cap = ADM_MAX_BODY + 1;
    c->body = ae_realloc(c->body, c->body_cap);
  }
  memcpy(c->body + c->body_len, at, n);
  c->body_len += n;
  return 0;
}

static int on_message_complete(llhttp_t *p) {
  adm_conn *c = p->data;
  if (!llhttp_should_keep_alive(p))
    c->close_after_write = 1;
  handle_request(c);
  reset_request(c);
  if (c->closing)
    return HPE_PAUSED;
  if (c->sse || c->close_after_write)
    return HPE_PAUSED; /* nothing after this request is read */
  uv_timer_start(&c->timer, on_timer, ADM_IDLE_TIMEOUT_MS, 0);
  return 0;
}

/* ------------------------------------------------------------------ connections */

static void admin_maybe_done(ae_admin *a) {
  if (!a->closing || a->close_cb_done || a->listening || a->heartbeat_open || a->nalive)
    return;
  a->close_cb_done = 1;
  if (a->close_cb)
    a->close_cb(a->close_ud);
}

static void on_conn_handle_closed(uv_handle_t *h) {
  adm_conn *c = h->data;
  if (--c->open_handles > 0)
    return;
  ae_admin *a = c->a;
  reset_request(c);
  free(c);
  a->nalive--;
  admin_maybe_done(a);
}

static void conn_close(adm_conn *c) {
  if (c->closing)
    return;
  c->closing = 1;
  ae_admin *a = c->a;
  if (c->sub) {
    ae_events_unsubscribe(a->ev, c->sub);
    c->sub = NULL;
  }
  if (c->prev)
    c->prev->next = c->next;
  else
    a->conns = c->next;
  if (c->next)
    c->next->prev = c->prev;
  c->prev = c->next = NULL;
  a->nconns--;
  uv_close((uv_handle_t *)&c->timer, on_conn_handle_closed);
  uv_close((uv_handle_t *)&c->io, on_conn_handle_closed);
}

static void on_timer(uv_timer_t *t) {
  adm_conn *c = t->data;
  if (c->closing || c->sse)
    return;
  if (c->in_request) {
    c->close_after_write = 1;
    respond_error(c, 408, NULL, "request not received in time");
    llhttp_pause(&c->parser);
    return;
  }
  conn_close(c);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  adm_conn *c = h->data;
  (void)suggested;
  /* One shared buffer: each read is consumed before the next is requested. */
  if (c->a->rbuf_busy) {
    buf->base = NULL;
    buf->len = 0;
    return;
  }
  c->a->rbuf_busy = 1;
  buf->base = c->a->rbuf;
  buf->len = sizeof(c->a->rbuf);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  adm_conn *c = s->data;
  ae_admin *a = c->a;
  if (buf->base == a->rbuf)
    a->rbuf_busy = 0;
  if (c->closing)
    return;
  if (nread < 0) {
    /* A client that half-closes after its request still gets the whole response. */
    if (nread == UV_EOF && !c->sse && c->writes_pending > 0) {
      c->close_after_write = 1;
      uv_read_stop(s);
      return;
    }
    conn_close(c);
    return;
  }
  if (nread == 0)
    return;
  if (c->sse || c->close_after_write || llhttp_get_errno(&c->parser) == HPE_PAUSED)
    return; /* the request that mattered has been read; the rest is ignored */
  if (!c->in_request)
    uv_timer_start(&c->timer, on_timer, ADM_REQUEST_TIMEOUT_MS, 0);
  llhttp_errno_t e = llhttp_execute(&c->parser, buf->base, (size_t)nread);
  if (c->closing)
    return;
  if (e == HPE_OK || e == HPE_PAUSED)
    return;
  c->close_after_write = 1;
  if (c->fail_status) { /* one of our callbacks refused the request (HPE_USER or HPE_CB_*) */
    respond_error(c, c->fail_status, NULL, "%s", c->fail_msg ? c->fail_msg : "bad request");
  } else {
    respond_error(c, 400, NULL, "malformed request: %s", llhttp_get_error_reason(&c->parser) ? llhttp_get_error_reason(&c->parser) : llhttp_errno_name(e));
  }
}

static void on_connection(uv_stream_t *server, int status) {
  ae_admin *a = server->data;
  if (status < 0 || a->closing)
    return;
  adm_conn *c = ae_calloc(1, sizeof(*c));
  c->a = a;
  if (a->is_unix)
    uv_pipe_init(a->loop, &c->io.pipe, 0);
  else
    uv_tcp_init(a->loop, &c->io.tcp);
  uv_timer_init(a->loop, &c->timer);
  c->io.tcp.data = c;
  c->timer.data = c;
  c->open_handles = 2;
  c->next = a->conns;
  if (a->conns)
    a->conns->prev = c;
  a->conns = c;
  a->nconns++;
  a->nalive++;
  if (uv_accept(server, (uv_stream_t *)&c->io) != 0) {
    conn_close(c);
    return;
  }
  if (a->nconns > ADM_MAX_CONNS) {
    AE_WARN("admin", "too many admin connections (%d); refusing one", ADM_MAX_CONNS);
    conn_close(c);
    return;
  }
  llhttp_init(&c->parser, HTTP_REQUEST, &g_settings);
  c->parser.data = c;
  uv_timer_start(&c->timer, on_timer, ADM_REQUEST_TIMEOUT_MS, 0);
  if (uv_read_start((uv_stream_t *)&c->io, on_alloc, on_read) != 0)
    conn_close(c);
}

/* ------------------------------------------------------------------ lifecycle */

static void init_settings(void) {
  if (g_settings_ready)
    return;
  llhttp_settings_init(&g_settings);
  g_settings.on_message_begin = on_message_begin;
  g_settings.on_url = on_url;
  g_settings.on_header_field = on_header_field;
  g_settings.on_header_value = on_header_value;
  g_settings.on_header_value_complete = on_header_value_complete;
  g_settings.on_headers_complete = on_headers_complete;
  g_settings.on_body = on_body;
  g_settings.on_message_complete = on_message_complete;
  g_settings_ready = 1;
}

static int is_loopback(const struct sockaddr *sa) {
  if (sa->sa_family == AF_INET) {
    const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
    return (ntohl(in->sin_addr.s_addr) >> 24) == 127;
  }
  if (sa->sa_family == AF_INET6) {
    const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
    if (IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr))
      return 1;
    if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr))
      return in6->sin6_addr.s6_addr[12] == 127;
  }
  return 0;
}

/* Prepares a unix socket path: a live server there is an error; a stale socket is removed;
 * anything that is not a socket is left alone and refused. */
static int prepare_unix_path(const char *path, ae_err *err) {
  struct stat st;
  if (lstat(path, &st) != 0) {
    if (errno == ENOENT)
      return 0;
    return ae_err_set(err, AE_EIO, "listen.admin: %s: %s", path, strerror(errno));
  }
  if (!S_ISSOCK(st.st_mode))
    return ae_err_set(err, AE_EEXIST, "listen.admin: %s exists and is not a socket", path);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd >= 0) {
    struct sockaddr_un sun;
    memset(&sun, 0, sizeof(sun));
    sun.sun_family = AF_UNIX;
    snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", path);
    int live = connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == 0;
    close(fd);
    if (live)
      return ae_err_set(err, AE_EEXIST, "listen.admin: %s is in use by a running process", path);
  }
  if (unlink(path) != 0 && errno != ENOENT)
    return ae_err_set(err, AE_EIO, "listen.admin: cannot remove stale socket %s: %s", path, strerror(errno));
  return 0;
}

static int listen_unix(ae_admin *a, const char *path, ae_err *err) {
  struct sockaddr_un probe;
  if (path[0] != '/')
    return ae_err_set(err, AE_EINVAL, "listen.admin: unix socket path must be absolute: %s", path);
  if (strlen(path) >= sizeof(probe.sun_path))
    return ae_err_set(err, AE_EINVAL, "listen.admin: unix socket path too long: %s", path);
  int r = prepare_unix_path(path, err);
  if (r)
    return r;
  uv_pipe_init(a->loop, &a->listener.pipe, 0);
  a->listener.pipe.data = a;
  a->listening = 1;
  a->is_unix = 1;
  /* The socket must never exist with looser permissions, not even between bind and chmod. */
  mode_t old = umask(0177);
  r = uv_pipe_bind(&a->listener.pipe, path);
  umask(old);
  if (r == 0) {
    a->unix_path = ae_strdup(path);
    if (chmod(path, 0600) != 0)
      r = uv_translate_sys_error(errno);
  }
  if (r == 0)
    r = uv_listen((uv_stream_t *)&a->listener.pipe, 64, on_connection);
  if (r)
    return ae_err_set(err, AE_EIO, "listen.admin: cannot listen on %s: %s", path, uv_strerror(r));
  return 0;
}

/* "host:port" or "[v6]:port"; unlike the config parser it accepts port 0 (any free port), which
 * tests use. */
static int split_hostport(const char *s, char *host, size_t hostlen, int *port) {
  const char *h = s, *hend, *p;
  if (s[0] == '[') {
    h = s + 1;
    hend = strchr(h, ']');
    if (!hend || hend[1] != ':')
      return -1;
    p = hend + 2;
  } else {
    hend = strrchr(s, ':');
    if (!hend || memchr(s, ':', (size_t)(hend - s)))
      return -1;
    p = hend + 1;
  }
  size_t hl = (size_t)(hend - h);
  if (hl == 0 || hl >= hostlen || !*p || strlen(p) > 5)
    return -1;
  long v = 0;
  for (const char *q = p; *q; q++) {
    if (*q < '0' || *q > '9')
      return -1;
    v = v * 10 + (*q - '0');
  }
  if (v > 65535)
    return -1;
  memcpy(host, h, hl);
  host[hl] = '\0';
  *port = (int)v;
  return 0;
}

static int listen_tcp(ae_admin *a, const char *addr, ae_err *err) {
  char host[256];
  int port;
  if (split_hostport(addr, host, sizeof(host), &port) != 0)
    return ae_err_set(err, AE_EINVAL, "listen.admin: cannot parse address '%s'", addr);
  struct sockaddr_storage ss;
  memset(&ss, 0, sizeof(ss));
  const char *ip = ae_strcasecmp(host, "localhost") == 0 ? "127.0.0.1" : host;
  if (uv_ip4_addr(ip, port, (struct sockaddr_in *)&ss) != 0 && uv_ip6_addr(ip, port, (struct sockaddr_in6 *)&ss) != 0)
    return ae_err_set(err, AE_EINVAL, "listen.admin: '%s' is not an IP address", host);
  a->loopback = is_loopback((struct sockaddr *)&ss);
  if (!a->loopback && !a->token)
    return ae_err_set(err, AE_EINVAL, "listen.admin: non-loopback address %s requires admin.token", addr);
  uv_tcp_init(a->loop, &a->listener.tcp);
  a->listener.tcp.data = a;
  a->listening = 1;
  unsigned flags = ss.ss_family == AF_INET6 ? UV_TCP_IPV6ONLY : 0;
  int r = uv_tcp_bind(&a->listener.tcp, (struct sockaddr *)&ss, flags);
  if (r == 0)
    r = uv_listen((uv_stream_t *)&a->listener.tcp, 64, on_connection);
  if (r)
    return ae_err_set(err, AE_EIO, "listen.admin: cannot listen on %s: %s", addr, uv_strerror(r));
  struct sockaddr_storage bound;
  int blen = sizeof(bound);
  if (uv_tcp_getsockname(&a->listener.tcp, (struct sockaddr *)&bound, &blen) == 0)
    a->port = ntohs(bound.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&bound)->sin6_port
                                                : ((struct sockaddr_in *)&bound)->sin_port);
  return 0;
}

static void on_listener_closed(uv_handle_t *h) {
  ae_admin *a = h->data;
  a->listening = 0;
  admin_maybe_done(a);
}

static void on_heartbeat_closed(uv_handle_t *h) {
  ae_admin *a = h->data;
  a->heartbeat_open = 0;
  admin_maybe_done(a);
}

static void free_when_closed(void *ud) { ae_admin_free(ud); }

int ae_admin_new(uv_loop_t *loop, const ae_config *cfg, ae_events *ev, const ae_admin_hooks *hooks, ae_admin **out,
                 ae_err *err) {
  if (!loop || !cfg || !ev || !out)
    return ae_err_set(err, AE_EINVAL, "admin: missing argument");
  init_settings();
  ae_admin *a = ae_calloc(1, sizeof(*a));
  a->loop = loop;
  a->ev = ev;
  if (hooks)
    a->hooks = *hooks;
  a->heartbeat_ms = ADM_DEFAULT_HEARTBEAT_MS;
  const char *hb = getenv("ACMEDGE_ADMIN_HEARTBEAT_MS");
  if (hb && *hb) {
    int ok;
    uint64_t v = parse_u64(hb, &ok);
    if (ok && v >= 10 && v <= 3600000)
      a->heartbeat_ms = (unsigned)v;
  }
  a->sse_queue_limit = ADM_DEFAULT_SSE_QUEUE;
  set_token(a, cfg->admin_token);
  a->listen_addr = ae_strdup(cfg->listen_admin);

  uv_timer_init(loop, &a->heartbeat);
  a->heartbeat.data = a;
  a->heartbeat_open = 1;

  int r = 0;
  const char *addr = cfg->listen_admin;
  if (addr && *addr) {
    if (strncmp(addr, "unix:", 5) == 0)
      r = listen_unix(a, addr + 5, err);
    else if (addr[0] == '/')
      r = listen_unix(a, addr, err);
    else
      r = listen_tcp(a, addr, err);
  }
  if (r) {
    /* Handles were initialised: they must be closed through the loop before the memory goes. The
     * caller gets the error now; the object frees itself once the loop has run the callbacks. */
    a->closing = 1;
    a->close_cb = free_when_closed;
    a->close_ud = a;
    if (a->unix_path && a->listening) {
      unlink(a->unix_path);
    }
    if (a->listening)
      uv_close((uv_handle_t *)&a->listener, on_listener_closed);
    uv_close((uv_handle_t *)&a->heartbeat, on_heartbeat_closed);
    return r;
  }
  uv_timer_start(&a->heartbeat, on_heartbeat, a->heartbeat_ms, a->heartbeat_ms);
  uv_unref((uv_handle_t *)&a->heartbeat);
  if (addr && *addr)
    AE_DEBUG("admin", "admin API listening on %s%s", addr, a->token ? " (bearer token required)" : "");
  *out = a;
  return 0;
}

void ae_admin_set_config(ae_admin *a, const ae_config *cfg) {
  if (!a || !cfg)
    return;
  const char *now = cfg->listen_admin ? cfg->listen_admin : "";
  const char *before = a->listen_addr ? a->listen_addr : "";
  if (strcmp(now, before) != 0)
    AE_WARN("admin", "listen.admin changed from '%s' to '%s': takes effect after a restart", before, now);
  if (!cfg->admin_token && a->listening && !a->is_unix && !a->loopback) {
    /* Dropping the token on a public listener would open it: keep the old one. */
    AE_WARN("admin", "admin.token removed while listening on a non-loopback address; keeping the old token");
    return;
  }
  set_token(a, cfg->admin_token);
}

int ae_admin_port(const ae_admin *a) { return a ? a->port : 0; }

void ae_admin_set_heartbeat_ms(ae_admin *a, unsigned ms) {
  if (!a || !ms || a->closing)
    return;
  a->heartbeat_ms = ms;
  uv_timer_start(&a->heartbeat, on_heartbeat, ms, ms);
}

void ae_admin_set_sse_queue_limit(ae_admin *a, size_t bytes) {
  if (a)
    a->sse_queue_limit = bytes;
}

void ae_admin_close(ae_admin *a, void (*cb)(void *ud), void *ud) {
  if (!a || a->closing)
    return;
  a->closing = 1;
  a->close_cb = cb;
  a->close_ud = ud;
  if (a->listening)
    uv_close((uv_handle_t *)&a->listener, on_listener_closed);
  if (a->unix_path)
    unlink(a->unix_path);
  uv_close((uv_handle_t *)&a->heartbeat, on_heartbeat_closed);
  while (a->conns)
    conn_close(a->conns);
}

void ae_admin_free(ae_admin *a) {
  if (!a)
    return;
  set_token(a, NULL);
  free(a->listen_addr);
  free(a->unix_path);
  free(a);
}
