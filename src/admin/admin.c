/* Admin HTTP API: authentication (static token), request routing and the object's lifecycle.
 * Connections, parsing and response writing are in admin_conn.c, the endpoints in admin_api.c,
 * the /v1/events stream in admin_sse.c, the listening sockets in admin_listen.c. */
#include "admin_internal.h"
#include "admin_ui.h"

#include "acmedge/log.h"

#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* ------------------------------------------------------------------ token */

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

/* ------------------------------------------------------------------ routing */

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

void adm_handle_request(adm_conn *c) {
  ae_admin *a = c->a;
  int method = llhttp_get_method(&c->parser);
  c->url[c->url_len] = '\0';
  /* The web console's own requests carry its Origin; a cross-site page must not drive the API. */
  if (c->h_origin && !ae_ui_same_origin(c->h_origin, c->h_host)) {
    ae_adm_respond_error(c, 403, NULL, "requests carrying an Origin header are refused");
    return;
  }
  /* Over TLS the server certificate already defeats DNS rebinding; names other than IPs are normal. */
  if (!a->token && !a->is_unix && !a->tls && !host_header_ok(c->h_host)) {
    ae_adm_respond_error(c, 403, NULL, "unexpected Host header");
    return;
  }
  if (strncmp(c->url, "/ui", 3) == 0 && (c->url[3] == '\0' || c->url[3] == '/' || c->url[3] == '?')) {
    c->url[strcspn(c->url, "?")] = '\0';
    ae_adm_ui_serve(c, method, c->url);
    return;
  }
  if (!ae_adm_authorize(c, method, authorized(c)))
    return;
  char *query = strchr(c->url, '?');
  if (query)
    *query++ = '\0';
  const char *path = c->url;
  int is_get = method == HTTP_GET;

  if (strcmp(path, "/healthz") == 0) {
    if (!is_get)
      ae_adm_respond_error(c, 405, "Allow: GET\r\n", "method not allowed");
    else
      ae_adm_api_healthz(c);
  } else if (strcmp(path, "/metrics") == 0) {
    if (!is_get)
      ae_adm_respond_error(c, 405, "Allow: GET\r\n", "method not allowed");
    else
      ae_adm_api_metrics(c);
  } else if (strcmp(path, "/v1/domains") == 0) {
    if (method == HTTP_GET)
      ae_adm_api_domains_list(c, query);
    else if (method == HTTP_POST)
      ae_adm_api_domains_post(c);
    else
      ae_adm_respond_error(c, 405, "Allow: GET, POST\r\n", "method not allowed");
  } else if (strncmp(path, "/v1/domains/", 12) == 0 && strlen(path) > 12 + 7 &&
             strcmp(path + strlen(path) - 7, "/revoke") == 0) {
    if (method != HTTP_POST) {
      ae_adm_respond_error(c, 405, "Allow: POST\r\n", "method not allowed");
    } else {
      char raw[ADM_MAX_URL + 1];
      snprintf(raw, sizeof(raw), "%.*s", (int)(strlen(path) - 12 - 7), path + 12);
      /* Nothing after this request is read; the answer waits for the CA (bounded by ACME's
       * own timeouts), so the idle timer gets room. */
      c->close_after_write = 1;
      uv_timer_start(&c->timer, adm_on_conn_timer, 120000, 0);
      ae_adm_api_domains_revoke(c, raw);
    }
  } else if (strncmp(path, "/v1/domains/", 12) == 0 && strlen(path) > 12 + 6 &&
             strcmp(path + strlen(path) - 6, "/renew") == 0) {
    if (method != HTTP_POST) {
      ae_adm_respond_error(c, 405, "Allow: POST\r\n", "method not allowed");
    } else {
      char raw[ADM_MAX_URL + 1];
      snprintf(raw, sizeof(raw), "%.*s", (int)(strlen(path) - 12 - 6), path + 12);
      ae_adm_api_domains_renew(c, raw);
    }
  } else if (strncmp(path, "/v1/domains/", 12) == 0) {
    if (method == HTTP_DELETE)
      ae_adm_api_domains_delete(c, path + 12);
    else
      ae_adm_respond_error(c, 405, "Allow: DELETE\r\n", "method not allowed");
  } else if (strcmp(path, "/v1/pki/root") == 0) {
    if (!is_get)
      ae_adm_respond_error(c, 405, "Allow: GET\r\n", "method not allowed");
    else
      ae_adm_api_pki_root(c);
  } else if (strncmp(path, "/v1/tokens/", 11) == 0) {
    ae_adm_route_tokens(c, method, path + 11);
  } else if (strcmp(path, "/v1/events") == 0) {
    if (method != HTTP_GET)
      ae_adm_respond_error(c, 405, "Allow: GET\r\n", "method not allowed");
    else
      ae_adm_sse_start(c, query);
  } else {
    ae_adm_respond_error(c, 404, NULL, "no such endpoint: %s", path);
  }
}

/* ------------------------------------------------------------------ lifecycle */

static void on_listener_closed(uv_handle_t *h) {
  ae_admin *a = h->data;
  a->listening = 0;
  adm_maybe_done(a);
}

static void on_heartbeat_closed(uv_handle_t *h) {
  ae_admin *a = h->data;
  a->heartbeat_open = 0;
  adm_maybe_done(a);
}

static void free_when_closed(void *ud) { ae_admin_free(ud); }

int ae_admin_new(uv_loop_t *loop, const ae_config *cfg, ae_events *ev, const ae_admin_hooks *hooks, ae_admin **out,
                 ae_err *err) {
  if (!loop || !cfg || !ev || !out)
    return ae_err_set(err, AE_EINVAL, "admin: missing argument");
  adm_init_settings();
  ae_admin *a = ae_calloc(1, sizeof(*a));
  a->loop = loop;
  a->ev = ev;
  if (hooks)
    a->hooks = *hooks;
  ae_adm_sse_defaults(a);
  set_token(a, cfg->admin_token);
  a->listen_addr = ae_strdup(cfg->listen_admin);

  uv_timer_init(loop, &a->heartbeat);
  a->heartbeat.data = a;
  a->heartbeat_open = 1;

  int r = ae_adm_tls_new(cfg->tokens, &a->tls, err);
  const char *addr = cfg->listen_admin;
  if (r == 0 && a->tls && addr && (strncmp(addr, "unix:", 5) == 0 || addr[0] == '/'))
    r = ae_err_set(err, AE_EINVAL, "admin.tls: needs a TCP address in listen.admin, not the unix socket %s", addr);
  if (r == 0 && addr && *addr)
    r = ae_adm_listen(a, addr, err);
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
  uv_timer_start(&a->heartbeat, ae_adm_sse_on_heartbeat, a->heartbeat_ms, a->heartbeat_ms);
  uv_unref((uv_handle_t *)&a->heartbeat);
  if (addr && *addr)
    AE_DEBUG("admin", "admin API listening on %s%s%s", addr, a->tls ? " (HTTPS)" : "",
             a->token ? " (bearer token required)" : "");
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
    ae_adm_conn_close(a->conns);
}

void ae_admin_free(ae_admin *a) {
  if (!a)
    return;
  set_token(a, NULL);
  ae_adm_tls_free(a->tls);
  free(a->listen_addr);
  free(a->unix_path);
  free(a);
}
