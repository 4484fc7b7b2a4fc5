/* HTTP/1.1 request analysis for the proxy: framing (RFC 9112 §6: Content-Length versus
 * Transfer-Encoding), Host normalisation, request-target form and the WebSocket upgrade checks. */
#include "proxy_int.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "acmedge/common.h"

/* Counts transfer codings and checks that the last one is chunked. */
typedef struct {
  int count;
  int last_chunked;
  int chunked_seen;
} te_state;

static int te_tok(void *ud, const char *t, size_t n) {
  te_state *s = ud;
  /* Parameters (";q=...") do not belong on transfer codings in requests; keep the name only. */
  size_t k = 0;
  while (k < n && t[k] != ';' && t[k] != ' ' && t[k] != '\t')
    k++;
  s->count++;
  s->last_chunked = hmsg_ieqs(t, k, "chunked") && k == n;
  if (s->last_chunked)
    s->chunked_seen++;
  return 0;
}

static int valid_host_chars(const char *h, size_t n) {
  if (n == 0)
    return 0;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)h[i];
    int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
             c == '-' || c == '_' || c == ':' || c == '[' || c == ']';
    if (!ok)
      return 0;
  }
  return 1;
}

int ae_host_normalize(const char *in, size_t n, char *out, size_t outlen) {
  const char *h = in;
  size_t hl = n;
  hmsg_trim(&h, &hl);
  if (!valid_host_chars(h, hl))
    return AE_EINVAL;
  if (h[0] == '[') {
    const char *end = memchr(h, ']', hl);
    if (!end)
      return AE_EINVAL;
    size_t rest = hl - (size_t)(end - h) - 1;
    if (rest && end[1] != ':')
      return AE_EINVAL;
    hl = (size_t)(end - h) - 1;
    h = h + 1;
    if (hl == 0)
      return AE_EINVAL;
  } else {
    const char *colon = memchr(h, ':', hl);
    if (colon) {
      for (const char *q = colon + 1; q < h + hl; q++)
        if (*q < '0' || *q > '9')
          return AE_EINVAL;
      hl = (size_t)(colon - h);
    }
    if (memchr(h, ']', hl) || memchr(h, '[', hl))
      return AE_EINVAL;
    if (hl && h[hl - 1] == '.')
      hl--;
    if (hl == 0)
      return AE_EINVAL;
  }
  if (hl + 1 > outlen)
    return AE_EINVAL;
  for (size_t i = 0; i < hl; i++) {
    char c = h[i];
    out[i] = (c >= 'A' && c <= 'Z') ? (char)(c + 32) : c;
  }
  out[hl] = 0;
  return 0;
}

/* Records why a request is refused (log text and metrics label) and returns its status. */
static int refuse(ae_reqinfo *ri, const char **why, int status, const char *reason, const char *text) {
  *why = text;
  ri->reason = reason;
  return status;
}

/* 1 when v is base64 of exactly 16 bytes (22 alphabet characters and "=="), RFC 6455 §4.1. */
static int ws_key_ok(const char *v, size_t n) {
  if (n != 24 || v[22] != '=' || v[23] != '=')
    return 0;
  for (size_t i = 0; i < 22; i++) {
    char c = v[i];
    if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' || c == '/'))
      return 0;
  }
  return 1;
}

/* The value of the only field called name (trimmed); 0 when absent, -1 when repeated. */
static int single_field(const ae_hmsg *m, const char *name, const char **v, size_t *vl) {
  int i = ae_hmsg_find(m, name, 0);
  if (i < 0)
    return 0;
  if (ae_hmsg_find(m, name, (uint32_t)i + 1) >= 0)
    return -1;
  *v = ae_hmsg_val(m, (uint32_t)i);
  *vl = m->f[i].vlen;
  hmsg_trim(v, vl);
  return 1;
}

/* An Upgrade: websocket request is only tunnelled as a complete RFC 6455 §4.1 opening handshake;
 * anything less is refused rather than forwarded as a plain request carrying a dropped upgrade. */
static int ws_check(const ae_hmsg *m, int minor, int method_is_get, ae_reqinfo *ri, const char **why) {
  const char *v = NULL;
  size_t vl = 0;
  if (!method_is_get)
    return refuse(ri, why, 400, "websocket", "WebSocket upgrade with a method other than GET");
  if (minor < 1)
    return refuse(ri, why, 400, "websocket", "WebSocket upgrade in HTTP/1.0");
  if (!ae_hmsg_has_token(m, "connection", "upgrade"))
    return refuse(ri, why, 400, "websocket", "WebSocket upgrade without Connection: upgrade");
  if (single_field(m, "sec-websocket-key", &v, &vl) != 1 || !ws_key_ok(v, vl))
    return refuse(ri, why, 400, "websocket", "WebSocket upgrade without a valid Sec-WebSocket-Key");
  if (single_field(m, "sec-websocket-version", &v, &vl) != 1 || vl != 2 || memcmp(v, "13", 2) != 0)
    return refuse(ri, why, 400, "websocket", "WebSocket upgrade without Sec-WebSocket-Version: 13");
  if (ri->chunked || (ri->has_cl && ri->cl > 0))
    return refuse(ri, why, 400, "websocket", "WebSocket upgrade with a request body");
  ri->websocket = 1;
  return 0;
}

int ae_req_analyze(const ae_hmsg *m, int major, int minor, int method_is_get, ae_reqinfo *ri,
                   const char **why) {
  memset(ri, 0, sizeof(*ri));
  *why = NULL;
  int hosts = 0, cls = 0, tes = 0;
  te_state te = {0, 0, 0};
  for (uint32_t i = 0; i < m->nf; i++) {
    const char *nm = ae_hmsg_name(m, i);
    size_t nl = m->f[i].nlen;
    const char *v = ae_hmsg_val(m, i);
    size_t vl = m->f[i].vlen;
    hmsg_trim(&v, &vl);
    if (hmsg_ieqs(nm, nl, "host")) {
      hosts++;
      ri->host = v;
      ri->host_len = vl;
    } else if (hmsg_ieqs(nm, nl, "content-length")) {
      /* Duplicate fields or a list, even with equal members, are refused: no guessing. */
      uint64_t val = 0;
      if (vl == 0 || vl > 18) {
        return refuse(ri, why, 400, "content_length", "invalid Content-Length");
      }
      for (size_t k = 0; k < vl; k++) {
        if (v[k] < '0' || v[k] > '9') {
          return refuse(ri, why, 400, "content_length", "invalid Content-Length");
        }
        val = val * 10 + (uint64_t)(v[k] - '0');
      }
      if (cls && val != ri->cl) {
        return refuse(ri, why, 400, "content_length", "differing Content-Length fields");
      }
      if (cls) {
        return refuse(ri, why, 400, "content_length", "duplicate Content-Length");
      }
      cls++;
      ri->cl = val;
      ri->has_cl = 1;
    } else if (hmsg_ieqs(nm, nl, "transfer-encoding")) {
      tes++;
      hmsg_each_token(v, vl, te_tok, &te);
      if (vl == 0)
        te.count++;
    }
  }
  if (major != 1) {
    return refuse(ri, why, 400, "version", "unsupported HTTP version");
  }
  if (hosts > 1) {
    return refuse(ri, why, 400, "host", "more than one Host");
  }
  if (minor >= 1 && hosts == 0) {
    return refuse(ri, why, 400, "host", "missing Host");
  }
  if (ri->host && !valid_host_chars(ri->host, ri->host_len)) {
    return refuse(ri, why, 400, "host", "invalid Host");
  }
  if (tes) {
    if (cls) {
      return refuse(ri, why, 400, "transfer_encoding", "both Content-Length and Transfer-Encoding");
    }
    if (minor == 0) {
      return refuse(ri, why, 400, "transfer_encoding", "Transfer-Encoding in HTTP/1.0");
    }
    if (!te.last_chunked || te.chunked_seen != 1) {
      return refuse(ri, why, 400, "transfer_encoding", "Transfer-Encoding not ending in a single chunked");
    }
    if (te.count != 1) {
      return refuse(ri, why, 501, "transfer_encoding", "transfer coding other than chunked");
    }
    ri->chunked = 1;
  }
  /* Target: origin-form is forwarded as is; absolute-form must agree with Host and is
   * forwarded in origin-form so the upstream never sees two authorities. */
  const char *u = m->b.d + m->url;
  size_t ul = m->ulen;
  if (ul == 0) {
    return refuse(ri, why, 400, "target", "empty target");
  }
  if (u[0] == '/' || (ul == 1 && u[0] == '*')) {
    ri->target = u;
    ri->target_len = ul;
  } else {
    size_t skip = 0;
    if (ul > 7 && hmsg_ieq(u, 7, "http://", 7))
      skip = 7;
    else if (ul > 8 && hmsg_ieq(u, 8, "https://", 8))
      skip = 8;
    else {
      return refuse(ri, why, 400, "target", "unsupported request target");
    }
    const char *auth = u + skip;
    size_t al = 0;
    while (skip + al < ul && auth[al] != '/' && auth[al] != '?')
      al++;
    if (!ri->host || !hmsg_ieq(auth, al, ri->host, ri->host_len)) {
      return refuse(ri, why, 400, "target", "absolute-form target differs from Host");
    }
    ri->target = auth + al;
    ri->target_len = ul - skip - al;
    if (ri->target_len == 0) {
      ri->target = "/";
      ri->target_len = 1;
    } else if (ri->target[0] == '?') {
      /* "http://h?q" has an empty path, which origin-form spells "/" */
      ri->target_slash = 1;
    }
  }
  if (ae_hmsg_has_token(m, "upgrade", "websocket"))
    return ws_check(m, minor, method_is_get, ri, why);
  return 0;
}
