/* Protected routes (routes[].auth.cap_tokens): a request reaches its upstream only with a valid
 * capability token; acmedge then sets X-Auth-Sub / X-Auth-Groups itself. Client-sent copies of
 * those fields are removed on every route, so an upstream can trust them. */
#include "proxy_client.h"

#include "acmedge/log.h"
#include "acmedge/metrics.h"
#include "acmedge/tokens.h"

#include <string.h>
#include <strings.h>

static int name_is(const char *line, size_t n, const char *name) {
  size_t l = strlen(name);
  return n > l && line[l] == ':' && strncasecmp(line, name, l) == 0;
}

/* Rebuilds the upstream head without the acmedge-owned fields (and without Authorization when
 * the token is not to be forwarded), then appends the verified identity. */
static void rewrite_head(ae_buf *h, const ae_tok_route_auth *ra, const ae_tok_claims *cl) {
  if (h->len < 4 || memcmp(h->d + h->len - 4, "\r\n\r\n", 4) != 0)
    return;
  ae_buf out = {0};
  ae_buf_reserve(&out, h->len + 256);
  size_t pos = 0, end = h->len - 2; /* the final empty line is added back below */
  int first = 1;
  while (pos < end) {
    const char *line = h->d + pos;
    const char *nl = memchr(line, '\n', end - pos);
    size_t n = nl ? (size_t)(nl - line) + 1 : end - pos;
    int drop = !first && (name_is(line, n, "x-auth-sub") || name_is(line, n, "x-auth-groups") ||
                          (ra && !ra->forward_token && name_is(line, n, "authorization")));
    if (!drop)
      ae_buf_add(&out, line, n);
    first = 0;
    pos += n;
  }
  if (cl) {
    ae_buf_adds(&out, "X-Auth-Sub: ");
    ae_buf_adds(&out, cl->sub);
    ae_buf_adds(&out, "\r\nX-Auth-Groups: ");
    for (size_t i = 0; i < cl->ngroups; i++) {
      if (i)
        ae_buf_add(&out, ",", 1);
      ae_buf_adds(&out, cl->groups[i]);
    }
    ae_buf_add(&out, "\r\n", 2);
  }
  ae_buf_add(&out, "\r\n", 2);
  ae_buf_free(h);
  *h = out;
}

/* The bearer credential of the request (last Authorization field wins nothing: more than one is
 * refused as malformed by returning an empty credential). */
static const char *credential(const ae_hmsg *m, size_t *len) {
  int i = ae_hmsg_find(m, "authorization", 0);
  if (i < 0 || ae_hmsg_find(m, "authorization", (uint32_t)i + 1) >= 0)
    return NULL;
  const char *v = ae_hmsg_val(m, (uint32_t)i);
  size_t n = m->f[i].vlen;
  while (n && (*v == ' ' || *v == '\t'))
    v++, n--;
  while (n && (v[n - 1] == ' ' || v[n - 1] == '\t'))
    n--;
  if (n < 7 || strncasecmp(v, "Bearer ", 7) != 0)
    return NULL;
  v += 7;
  n -= 7;
  while (n && *v == ' ')
    v++, n--;
  *len = n;
  return v;
}

static int answer(ae_pclient *c, int status) {
  const char *err = status == 403 ? "insufficient_scope" : "invalid_token";
  c->pool = NULL;
  c->local = status;
  c->status = status;
  /* A request body would have to be read and skipped: closing is cheaper (as ae_px_local). */
  c->close_after = !c->req_keepalive || c->ws || c->req_body;
  char body[64];
  int bl = snprintf(body, sizeof(body), "%d %s\n", status, ae_status_text(status));
  ae_buf_adds(&c->out, status == 403 ? "HTTP/1.1 403 Forbidden\r\n" : "HTTP/1.1 401 Unauthorized\r\n");
  ae_buf_adds(&c->out, "WWW-Authenticate: Bearer realm=\"acmedge\", error=\"");
  ae_buf_adds(&c->out, err);
  ae_buf_adds(&c->out, "\"\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: ");
  ae_buf_addu(&c->out, (uint64_t)bl);
  ae_buf_adds(&c->out, c->close_after ? "\r\nConnection: close\r\n\r\n"
                                      : (c->minor == 0 ? "\r\nConnection: keep-alive\r\n\r\n" : "\r\n\r\n"));
  ae_buf_add(&c->out, body, (size_t)bl);
  c->bytes_out = (uint64_t)bl;
  c->resp_done = 1;
  if (c->req_body) {
    ae_px_access_log(c);
    ae_px_close(c, 0);
    return -1;
  }
  return 0;
}

int ae_px_auth_head(const ae_route *route, const ae_hmsg *req, const ae_transport *t, const char *host,
                    ae_buf *uhead) {
  const ae_tok_route_auth *ra = route->auth;
  if (!ra) {
    /* Open route: the head is only rebuilt when a client sent an acmedge-owned field. */
    if (ae_hmsg_find(req, "x-auth-sub", 0) >= 0 || ae_hmsg_find(req, "x-auth-groups", 0) >= 0)
      rewrite_head(uhead, NULL, NULL);
    return 0;
  }
  size_t n = 0;
  const char *cred = credential(req, &n);
  ae_tok_claims cl;
  memset(&cl, 0, sizeof(cl));
  ae_tok_reason r = AE_TOK_MISSING_PREFIX;
  /* Never over plain HTTP (the config refuses plain_http on such routes too). */
  if (cred && t && t->is_tls)
    r = ae_tok_runtime_verify(cred, n, ra->audience, ra->bind, ra->groups, ra->ngroups,
                              t->has_client_cert ? t->client_cert_sha256 : NULL, &cl);
  else
    ae_metrics_count_label("token_rejected", ae_tok_reason_name(r));
  if (r != AE_TOK_OK) {
    int status = r == AE_TOK_INSUFFICIENT_SCOPE ? 403 : 401;
    AE_INFO("proxy", "%s %s: %d token rejected: %s", t ? t->peer_ip : "-", host, status, ae_tok_reason_name(r));
    ae_tok_relay_rejected(r, host);
    return status;
  }
  rewrite_head(uhead, ra, &cl);
  ae_tok_claims_clear(&cl);
  return 0;
}

int ae_px_auth(ae_pclient *c, const ae_route *route, int *answered) {
  *answered = 0;
  int status = ae_px_auth_head(route, &c->req, c->t, c->host, &c->uhead);
  if (!status)
    return 0;
  *answered = 1;
  return answer(c, status);
}
