/* Asynchronous HTTP(S) client: libcurl's multi-socket API driven by the libuv loop.
 *
 * curl tells us which sockets to watch (socket callback) and when to wake it up (timer
 * callback); we map that onto one uv_poll_t per socket and a single uv_timer_t, and feed
 * readiness back with curl_multi_socket_action. Finished transfers are collected with
 * curl_multi_info_read after every action. User callbacks run only from there — never from
 * inside a curl callback — so they may freely start, cancel or close. */
#include "acmedge/httpc.h"

#include <curl/curl.h>
#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "acmedge/log.h"
#include "httpc_int.h"

#define HTTPC_DEFAULT_TIMEOUT_MS 30000u
#define HTTPC_DEFAULT_MAX_BODY (1024u * 1024u)
#define HTTPC_MAX_LINKS 32
/* Bigger than any header an ACME server sends; longer values are ignored, not truncated. */
#define HTTPC_MAX_HEADER_VALUE 8192

typedef struct httpc_sock {
  uv_poll_t poll;
  ae_httpc *c;
  curl_socket_t fd;
  struct httpc_sock *prev, *next;
} httpc_sock;

struct ae_httpc_req {
  ae_httpc *c;
  CURL *easy;
  struct curl_slist *headers;
  ae_httpc_cb cb;
  void *ud;
  size_t max_body;
  int too_large;
  int done;
  char *body;
  size_t body_len, body_cap;
  char *content_type, *location, *replay_nonce, *retry_after;
  char *links[HTTPC_MAX_LINKS];
  size_t nlinks;
  char errbuf[CURL_ERROR_SIZE];
  ae_httpc_req *prev, *next;
};

struct ae_httpc {
  uv_loop_t *loop;
  CURLM *multi;
  uv_timer_t timer;
  ae_httpc_req *reqs;
  httpc_sock *socks;
  unsigned live_handles; /* uv handles not yet through their close callback */
  int closing;
  int close_notified;
  void (*close_cb)(void *ud);
  void *close_ud;
};

/* ---------- global init ---------- */

static pthread_once_t g_curl_once = PTHREAD_ONCE_INIT;
static CURLcode g_curl_init_rc = CURLE_FAILED_INIT;

static void curl_init_once(void) { g_curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT); }

/* ---------- handle bookkeeping ---------- */

static void maybe_finish_close(ae_httpc *c) {
  if (c->closing && !c->close_notified && c->live_handles == 0) {
    c->close_notified = 1;
    if (c->close_cb)
      c->close_cb(c->close_ud);
  }
}

static void on_sock_closed(uv_handle_t *h) {
  httpc_sock *s = h->data;
  ae_httpc *c = s->c;
  free(s);
  c->live_handles--;
  maybe_finish_close(c);
}

static void on_timer_closed(uv_handle_t *h) {
  ae_httpc *c = h->data;
  c->live_handles--;
  maybe_finish_close(c);
}

/* Stops watching a socket and releases its poll handle. Must run before curl closes the fd:
 * uv_poll_stop removes it from epoll at once, so a reused fd number is never confused. */
static void sock_release(httpc_sock *s) {
  ae_httpc *c = s->c;
  if (s->prev)
    s->prev->next = s->next;
  else
    c->socks = s->next;
  if (s->next)
    s->next->prev = s->prev;
  s->prev = s->next = NULL;
  uv_poll_stop(&s->poll);
  uv_close((uv_handle_t *)&s->poll, on_sock_closed);
}

static httpc_sock *sock_find(ae_httpc *c, curl_socket_t fd) {
  for (httpc_sock *s = c->socks; s; s = s->next)
    if (s->fd == fd)
      return s;
  return NULL;
}

/* ---------- completion ---------- */

static void req_unlink(ae_httpc_req *r) {
  ae_httpc *c = r->c;
  if (r->prev)
    r->prev->next = r->next;
  else if (c->reqs == r)
    c->reqs = r->next;
  if (r->next)
    r->next->prev = r->prev;
  r->prev = r->next = NULL;
}

static void req_clear_headers(ae_httpc_req *r) {
  free(r->content_type);
  free(r->location);
  free(r->replay_nonce);
  free(r->retry_after);
  r->content_type = r->location = r->replay_nonce = r->retry_after = NULL;
  for (size_t i = 0; i < r->nlinks; i++)
    free(r->links[i]);
  r->nlinks = 0;
}

/* Detaches the transfer from curl and frees everything. The multi handle must not be inside
 * one of its callbacks (curl forbids remove_handle there). */
static void req_destroy(ae_httpc_req *r) {
  req_unlink(r);
  if (r->easy) {
    if (r->c->multi)
      curl_multi_remove_handle(r->c->multi, r->easy);
    curl_easy_cleanup(r->easy);
  }
  curl_slist_free_all(r->headers);
  req_clear_headers(r);
  free(r->body);
  free(r);
}

static int map_curl_error(CURLcode cc) {
  switch (cc) {
  case CURLE_OPERATION_TIMEDOUT: return AE_ETIMEDOUT;
  case CURLE_FILESIZE_EXCEEDED: return AE_ELIMIT;
  case CURLE_OUT_OF_MEMORY: return AE_ENOMEM;
  case CURLE_URL_MALFORMAT:
  case CURLE_UNSUPPORTED_PROTOCOL: return AE_EINVAL;
  case CURLE_COULDNT_RESOLVE_HOST:
  case CURLE_COULDNT_RESOLVE_PROXY: return AE_ENOTFOUND;
  case CURLE_PEER_FAILED_VERIFICATION:
  case CURLE_SSL_CONNECT_ERROR:
  case CURLE_SSL_CERTPROBLEM:
  case CURLE_SSL_CIPHER:
  case CURLE_SSL_CACERT_BADFILE:
  case CURLE_SSL_ISSUER_ERROR:
  case CURLE_WEIRD_SERVER_REPLY:
  case CURLE_HTTP2:
  case CURLE_GOT_NOTHING:
  case CURLE_BAD_CONTENT_ENCODING: return AE_EPROTO;
  default: return AE_EIO;
  }
}

static void req_complete(ae_httpc_req *r, CURLcode cc) {
  ae_http_response resp;
  memset(&resp, 0, sizeof(resp));
  long status = 0;
  curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &status);
  resp.status = status;
  if (r->too_large || cc == CURLE_FILESIZE_EXCEEDED) {
    resp.code = AE_ELIMIT;
    snprintf(resp.error, sizeof(resp.error), "response too large (limit %zu bytes)", r->max_body);
  } else if (cc != CURLE_OK) {
    resp.code = map_curl_error(cc);
    snprintf(resp.error, sizeof(resp.error), "%s", r->errbuf[0] ? r->errbuf : curl_easy_strerror(cc));
    size_t n = strlen(resp.error);
    while (n > 0 && (resp.error[n - 1] == '\n' || resp.error[n - 1] == '\r'))
      resp.error[--n] = '\0';
  }
  resp.body = r->body ? r->body : (char *)"";
  resp.body_len = r->body_len;
  resp.content_type = r->content_type;
  resp.location = r->location;
  resp.replay_nonce = r->replay_nonce;
  resp.retry_after = r->retry_after;
  resp.links = r->nlinks ? r->links : NULL;
  resp.nlinks = r->nlinks;
  if (resp.code < 0) {
    char *url = NULL;
    curl_easy_getinfo(r->easy, CURLINFO_EFFECTIVE_URL, &url);
    AE_DEBUG("httpc", "%s: %s", url ? url : "?", resp.error);
  }
  /* Detach before cb, which may cancel this very request (a no-op once done) or close the
   * whole client. */
  r->done = 1;
  req_unlink(r);
  curl_multi_remove_handle(r->c->multi, r->easy);
  r->cb(r->ud, &resp);
  req_destroy(r);
}

/* Delivers every finished transfer. Stops early when a callback closed the client. */
static void check_done(ae_httpc *c) {
  for (;;) {
    if (!c->multi)
      return;
    int left = 0;
    CURLMsg *msg = curl_multi_info_read(c->multi, &left);
    if (!msg)
      return;
    if (msg->msg != CURLMSG_DONE)
      continue;
    ae_httpc_req *r = NULL;
    curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&r);
    CURLcode cc = msg->data.result;
    if (!r || r->done)
      continue;
    req_complete(r, cc);
  }
}

/* ---------- curl <-> libuv glue ---------- */

static void on_poll(uv_poll_t *h, int status, int events) {
  httpc_sock *s = h->data;
  ae_httpc *c = s->c;
  if (!c->multi)
    return;
  int flags = 0;
  if (status < 0)
    flags = CURL_CSELECT_ERR;
  if (events & UV_READABLE)
    flags |= CURL_CSELECT_IN;
  if (events & UV_WRITABLE)
    flags |= CURL_CSELECT_OUT;
  int running = 0;
  curl_multi_socket_action(c->multi, s->fd, flags, &running);
  check_done(c);
}

static void on_timer(uv_timer_t *t) {
  ae_httpc *c = t->data;
  if (!c->multi)
    return;
  int running = 0;
  curl_multi_socket_action(c->multi, CURL_SOCKET_TIMEOUT, 0, &running);
  check_done(c);
}

static int curl_socket_cb(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp) {
  ae_httpc *c = userp;
  httpc_sock *s = socketp;
  if (what == CURL_POLL_REMOVE) {
    if (s && sock_find(c, fd) == s)
      sock_release(s);
    return 0;
  }
  if (!s) {
    s = sock_find(c, fd);
    if (!s) {
      s = ae_calloc(1, sizeof(*s));
      s->c = c;
      s->fd = fd;
      int rc = uv_poll_init_socket(c->loop, &s->poll, fd);
      if (rc < 0) {
        AE_WARN("httpc", "cannot watch socket %d: %s", (int)fd, uv_strerror(rc));
        free(s);
        return -1;
      }
      s->poll.data = s;
      c->live_handles++;
      s->next = c->socks;
      if (c->socks)
        c->socks->prev = s;
      c->socks = s;
    }
    curl_multi_assign(c->multi, fd, s);
  }
  int events = 0;
  if (what == CURL_POLL_IN || what == CURL_POLL_INOUT)
    events |= UV_READABLE;
  if (what == CURL_POLL_OUT || what == CURL_POLL_INOUT)
    events |= UV_WRITABLE;
  int rc = uv_poll_start(&s->poll, events, on_poll);
  if (rc < 0) {
    AE_WARN("httpc", "cannot poll socket %d: %s", (int)fd, uv_strerror(rc));
    return -1;
  }
  return 0;
}

static int curl_timer_cb(CURLM *multi, long timeout_ms, void *userp) {
  ae_httpc *c = userp;
  if (timeout_ms < 0) {
    uv_timer_stop(&c->timer);
    return 0;
  }
  /* Never call socket_action from here (curl forbids it); a 0 timeout fires on the next
   * loop iteration instead. */
  uv_timer_start(&c->timer, on_timer, (uint64_t)timeout_ms, 0);
  return 0;
}

/* curl normally reports CURL_POLL_REMOVE before closing a socket; this catches the cases
 * where it does not, so a poll handle never outlives its fd. */
static int curl_close_socket_cb(void *clientp, curl_socket_t fd) {
  ae_httpc *c = clientp;
  httpc_sock *s = sock_find(c, fd);
  if (s)
    sock_release(s);
  return close(fd);
}

static size_t on_body(char *ptr, size_t size, size_t nmemb, void *userdata) {
  ae_httpc_req *r = userdata;
  size_t n = size * nmemb;
  if (n == 0)
    return 0;
  if (r->body_len + n > r->max_body) {
    r->too_large = 1;
    return 0; /* aborts the transfer with CURLE_WRITE_ERROR */
  }
  if (r->body_len + n + 1 > r->body_cap) {
    size_t cap = r->body_cap ? r->body_cap : 4096;
    while (cap < r->body_len + n + 1)
      cap *= 2;
    if (cap > r->max_body + 1)
      cap = r->max_body + 1;
    r->body = ae_realloc(r->body, cap);
    r->body_cap = cap;
  }
  memcpy(r->body + r->body_len, ptr, n);
  r->body_len += n;
  r->body[r->body_len] = '\0';
  return n;
}

static void set_str(char **dst, const char *v, size_t n) {
  free(*dst);
  *dst = ae_malloc(n + 1);
  memcpy(*dst, v, n);
  (*dst)[n] = '\0';
}

static size_t on_header(char *buf, size_t size, size_t nitems, void *userdata) {
  ae_httpc_req *r = userdata;
  size_t n = size * nitems;
  /* Each response (1xx interim ones included) starts with a status line; keep only the last. */
  if (n >= 5 && memcmp(buf, "HTTP/", 5) == 0) {
    req_clear_headers(r);
    return n;
  }
  const char *colon = memchr(buf, ':', n);
  if (!colon)
    return n;
  size_t namelen = (size_t)(colon - buf);
  const char *v = colon + 1;
  const char *end = buf + n;
  while (v < end && (*v == ' ' || *v == '\t'))
    v++;
  while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' ' || end[-1] == '\t'))
    end--;
  size_t vlen = (size_t)(end - v);
  if (vlen > HTTPC_MAX_HEADER_VALUE || memchr(v, '\0', vlen))
    return n;
  if (ae_httpc_name_is(buf, namelen, "content-type"))
    set_str(&r->content_type, v, vlen);
  else if (ae_httpc_name_is(buf, namelen, "location"))
    set_str(&r->location, v, vlen);
  else if (ae_httpc_name_is(buf, namelen, "replay-nonce"))
    set_str(&r->replay_nonce, v, vlen);
  else if (ae_httpc_name_is(buf, namelen, "retry-after"))
    set_str(&r->retry_after, v, vlen);
  else if (ae_httpc_name_is(buf, namelen, "link") && r->nlinks < HTTPC_MAX_LINKS) {
    r->links[r->nlinks] = NULL;
    set_str(&r->links[r->nlinks], v, vlen);
    r->nlinks++;
  }
  return n;
}

/* ---------- public API ---------- */

int ae_httpc_new(uv_loop_t *loop, ae_httpc **out, ae_err *err) {
  if (!loop || !out)
    return ae_err_set(err, AE_EINVAL, "httpc: no loop");
  *out = NULL;
  pthread_once(&g_curl_once, curl_init_once);
  if (g_curl_init_rc != CURLE_OK)
    return ae_err_set(err, AE_ERR, "libcurl init failed: %s", curl_easy_strerror(g_curl_init_rc));
  ae_httpc *c = ae_calloc(1, sizeof(*c));
  c->loop = loop;
  c->multi = curl_multi_init();
  if (!c->multi) {
    free(c);
    return ae_err_set(err, AE_ENOMEM, "curl_multi_init failed");
  }
  int rc = uv_timer_init(loop, &c->timer);
  if (rc < 0) {
    curl_multi_cleanup(c->multi);
    free(c);
    return ae_err_set(err, AE_EIO, "httpc timer: %s", uv_strerror(rc));
  }
  c->timer.data = c;
  c->live_handles = 1;
  curl_multi_setopt(c->multi, CURLMOPT_SOCKETFUNCTION, curl_socket_cb);
  curl_multi_setopt(c->multi, CURLMOPT_SOCKETDATA, c);
  curl_multi_setopt(c->multi, CURLMOPT_TIMERFUNCTION, curl_timer_cb);
  curl_multi_setopt(c->multi, CURLMOPT_TIMERDATA, c);
  *out = c;
  return 0;
}

static int url_scheme_ok(const char *url) {
  static const char *const prefixes[] = {"http://", "https://"};
  for (size_t i = 0; i < AE_ARRAY_LEN(prefixes); i++) {
    size_t n = strlen(prefixes[i]);
    if (strlen(url) > n && ae_httpc_name_is(url, n, prefixes[i]))
      return 1;
  }
  return 0;
}

int ae_httpc_request(ae_httpc *c, const ae_http_request *req, ae_httpc_cb cb, void *ud,
                     ae_httpc_req **out, ae_err *err) {
  if (out)
    *out = NULL;
  if (!c || !req || !cb || !req->url || !req->method)
    return ae_err_set(err, AE_EINVAL, "httpc: missing request, url, method or callback");
  if (c->closing || !c->multi)
    return ae_err_set(err, AE_ECANCELED, "httpc: client is closing");
  int is_get = strcmp(req->method, "GET") == 0;
  int is_post = strcmp(req->method, "POST") == 0;
  int is_head = strcmp(req->method, "HEAD") == 0;
  if (!is_get && !is_post && !is_head)
    return ae_err_set(err, AE_EINVAL, "httpc: unsupported method %.16s", req->method);
  if (!url_scheme_ok(req->url) || ae_httpc_has_ctl(req->url))
    return ae_err_set(err, AE_EINVAL, "httpc: only http:// and https:// URLs are allowed");
  if (req->content_type && ae_httpc_has_ctl(req->content_type))
    return ae_err_set(err, AE_EINVAL, "httpc: invalid content type");
  if (req->body_len && !req->body)
    return ae_err_set(err, AE_EINVAL, "httpc: body length without body");

  ae_httpc_req *r = ae_calloc(1, sizeof(*r));
  r->c = c;
  r->cb = cb;
  r->ud = ud;
  r->max_body = req->max_body ? req->max_body : HTTPC_DEFAULT_MAX_BODY;
  r->easy = curl_easy_init();
  if (!r->easy) {
    free(r);
    return ae_err_set(err, AE_ENOMEM, "curl_easy_init failed");
  }
  CURL *e = r->easy;
  CURLcode cc = CURLE_OK;
  /* Accumulate the first failure; every option here is expected to succeed. */
#define SETOPT(opt, val)                           \
  do {                                             \
    if (cc == CURLE_OK)                            \
      cc = curl_easy_setopt(e, opt, val);          \
  } while (0)
  SETOPT(CURLOPT_URL, req->url);
  SETOPT(CURLOPT_PRIVATE, (void *)r);
  SETOPT(CURLOPT_NOSIGNAL, 1L);
  SETOPT(CURLOPT_PROTOCOLS_STR, "http,https");
  SETOPT(CURLOPT_FOLLOWLOCATION, 0L);
  SETOPT(CURLOPT_USERAGENT, "acmedge/" AE_VERSION);
  SETOPT(CURLOPT_TIMEOUT_MS, (long)(req->timeout_ms ? req->timeout_ms : HTTPC_DEFAULT_TIMEOUT_MS));
  SETOPT(CURLOPT_ERRORBUFFER, r->errbuf);
  SETOPT(CURLOPT_WRITEFUNCTION, on_body);
  SETOPT(CURLOPT_WRITEDATA, (void *)r);
  SETOPT(CURLOPT_HEADERFUNCTION, on_header);
  SETOPT(CURLOPT_HEADERDATA, (void *)r);
  SETOPT(CURLOPT_CLOSESOCKETFUNCTION, curl_close_socket_cb);
  SETOPT(CURLOPT_CLOSESOCKETDATA, (void *)c);
  /* Lets curl refuse early when Content-Length already exceeds the cap. */
  SETOPT(CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)r->max_body);
  if (req->ca_bundle)
    SETOPT(CURLOPT_CAINFO, req->ca_bundle);
  if (is_head) {
    SETOPT(CURLOPT_NOBODY, 1L);
  } else if (is_post) {
    SETOPT(CURLOPT_POST, 1L);
    SETOPT(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_len);
    SETOPT(CURLOPT_COPYPOSTFIELDS, req->body_len ? req->body : "");
  } else {
    SETOPT(CURLOPT_HTTPGET, 1L);
  }
#undef SETOPT
  if (cc != CURLE_OK) {
    int code = map_curl_error(cc);
    curl_easy_cleanup(e);
    free(r);
    return ae_err_set(err, code, "httpc: %s", curl_easy_strerror(cc));
  }
  char ct[512];
  if (req->content_type) {
    snprintf(ct, sizeof(ct), "Content-Type: %s", req->content_type);
    r->headers = curl_slist_append(r->headers, ct);
  } else if (is_post) {
    /* Suppress curl's form-urlencoded default. */
    r->headers = curl_slist_append(r->headers, "Content-Type:");
  }
  /* ACME bodies are small; waiting for 100-continue only adds a round trip. */
  if (is_post)
    r->headers = curl_slist_append(r->headers, "Expect:");
  if (r->headers)
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, r->headers);

  CURLMcode mc = curl_multi_add_handle(c->multi, e);
  if (mc != CURLM_OK) {
    curl_slist_free_all(r->headers);
    curl_easy_cleanup(e);
    free(r);
    return ae_err_set(err, AE_ERR, "httpc: %s", curl_multi_strerror(mc));
  }
  r->next = c->reqs;
  if (c->reqs)
    c->reqs->prev = r;
  c->reqs = r;
  if (out)
    *out = r;
  return 0;
}

void ae_httpc_cancel(ae_httpc_req *r) {
  if (!r || r->done)
    return;
  r->done = 1;
  req_destroy(r);
}

void ae_httpc_close(ae_httpc *c, void (*cb)(void *ud), void *ud) {
  if (!c || c->closing)
    return;
  c->closing = 1;
  c->close_cb = cb;
  c->close_ud = ud;
  while (c->reqs) {
    ae_httpc_req *r = c->reqs;
    r->done = 1;
    req_destroy(r);
  }
  /* Cleanup closes cached connections; our socket callbacks release their poll handles. */
  CURLM *m = c->multi;
  curl_multi_cleanup(m);
  c->multi = NULL;
  while (c->socks)
    sock_release(c->socks);
  uv_timer_stop(&c->timer);
  uv_close((uv_handle_t *)&c->timer, on_timer_closed);
}

void ae_httpc_free(ae_httpc *c) {
  if (!c)
    return;
  if (!c->close_notified)
    AE_ERROR("httpc", "client freed before close completed");
  free(c);
}
