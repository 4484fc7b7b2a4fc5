/* Port-80 answers: http-01 key authorizations, 503 while issuing, 421, 308 to https, and the
 * 400/404 for hosts that get nothing. */
#include "http80_internal.h"

#include "acmedge/log.h"
#include "acmedge/metrics.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

void ae_h80_send_response(h80_conn *c, int status, const char *extra, const char *body, int head_only,
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
    ae_h80_conn_close(c);
}

/* (strncmp here trips GCC's -Wstring-compare in optimised builds, where it sees
 * ae_h80_request_path's "/" fallback.) */
int ae_h80_is_challenge_path(const char *path) {
  size_t n = sizeof(ACME_PREFIX) - 1;
  return strlen(path) >= n && memcmp(path, ACME_PREFIX, n) == 0;
}

/* "/" for "*" and for an absolute-form URL without a path. */
const char *ae_h80_request_path(h80_conn *c) {
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

void ae_h80_answer_challenge(h80_conn *c, const char *path, int method, int keep, int lookup) {
  ae_http80 *h = c->h;
  const char *token = path + strlen(ACME_PREFIX);
  int head_only = method == HTTP_HEAD;
  char keyauth[512];
  const char *host = c->host_count == 1 ? c->host_raw : "-";
  if ((method == HTTP_GET || head_only) && ae_challenge_token_valid(token) && h->ch &&
      ae_challenge_http01_get(h->ch, token, keyauth, sizeof(keyauth)) == 0) {
    AE_INFO("http80", "challenge %.8s... answered for host %s (peer %s)", token, host, c->t->peer_ip);
    ae_h80_send_response(c, 200, NULL, keyauth, head_only, !keep);
    return;
  }
  if (lookup && (method == HTTP_GET || head_only) && ae_challenge_token_valid(token) && h->has_hooks &&
      h->hooks.challenge_miss && h->hooks.challenge_miss(h->hooks.ud, token)) {
    c->chal_held = 1;
    ae_h80_park(c);
    return;
  }
  AE_INFO("http80", "challenge token %.8s... not found (host %s, peer %s)",
          ae_challenge_token_valid(token) ? token : "<invalid>", host, c->t->peer_ip);
  ae_h80_send_response(c, 404, NULL, "not found\n", head_only, !keep);
}

ae_h80_state ae_h80_ask_state(h80_conn *c, unsigned *retry) {
  ae_http80 *h = c->h;
  *retry = 0;
  if (h->has_hooks && h->hooks.host_state)
    return h->hooks.host_state(h->hooks.ud, c->host, retry);
  return AE_H80_DENY;
}

void ae_h80_answer_host(h80_conn *c, ae_h80_state st, unsigned retry) {
  const ae_config *cfg = c->h->cfg;
  const char *path = ae_h80_request_path(c);
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
  ae_h80_send_response(c, status, extra, body, c->req_method == HTTP_HEAD, !c->req_keep || status == 400);
}

void ae_h80_respond(h80_conn *c) {
  ae_http80 *h = c->h;
  int method = llhttp_get_method(&c->parser);
  c->req_method = method;
  c->req_keep = llhttp_should_keep_alive(&c->parser) && !c->parser.upgrade && method != HTTP_CONNECT &&
                !h->closing;
  ae_metrics_inc(AE_M_HTTP80_REQUESTS);

  const char *path = ae_h80_request_path(c);
  if (ae_h80_is_challenge_path(path)) {
    ae_h80_answer_challenge(c, path, method, c->req_keep, 1);
    return;
  }
  unsigned retry = 0;
  ae_h80_state st = AE_H80_DENY;
  if (c->host_status == 0) {
    st = ae_h80_ask_state(c, &retry);
    if (st == AE_H80_CHECKING) {
      ae_h80_park(c);
      return;
    }
  }
  ae_h80_answer_host(c, st, retry);
}
