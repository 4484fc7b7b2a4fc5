/* HTTP/1.1 message helpers for the proxy: byte buffer, parsed-head storage, request framing
 * analysis (RFC 9112 §6), trusted-proxy matching and the rewriting of heads in both directions.
 * The raw head scanner lives in httpmsg_scan.c. */
#include "proxy_int.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "acmedge/common.h"

/* ---------- ae_buf ---------- */

void ae_buf_reserve(ae_buf *b, size_t extra) {
  if (b->cap - b->len >= extra)
    return;
  size_t ncap = b->cap ? b->cap : 256;
  while (ncap - b->len < extra)
    ncap *= 2;
  b->d = ae_realloc(b->d, ncap);
  b->cap = ncap;
}

void ae_buf_add(ae_buf *b, const void *p, size_t n) {
  if (n == 0)
    return;
  ae_buf_reserve(b, n);
  memcpy(b->d + b->len, p, n);
  b->len += n;
}

void ae_buf_adds(ae_buf *b, const char *s) { ae_buf_add(b, s, strlen(s)); }

void ae_buf_addhex(ae_buf *b, uint64_t v) {
  char tmp[17];
  int i = 16;
  tmp[i] = 0;
  do {
    tmp[--i] = "0123456789abcdef"[v & 15];
    v >>= 4;
  } while (v && i > 0);
  ae_buf_add(b, tmp + i, (size_t)(16 - i));
}

void ae_buf_addu(ae_buf *b, uint64_t v) {
  char tmp[21];
  int i = 20;
  do {
    tmp[--i] = (char)('0' + v % 10);
    v /= 10;
  } while (v && i > 0);
  ae_buf_add(b, tmp + i, (size_t)(20 - i));
}

void ae_buf_addjson(ae_buf *b, const char *s, size_t n) {
  ae_buf_reserve(b, n + 2);
  ae_buf_add(b, "\"", 1);
  for (size_t i = 0; i < n; i++) {
    unsigned char ch = (unsigned char)s[i];
    if (ch == '"' || ch == '\\') {
      char e[2] = {'\\', (char)ch};
      ae_buf_add(b, e, 2);
    } else if (ch < 0x20 || ch == 0x7f) {
      char e[8];
      snprintf(e, sizeof(e), "\\u%04x", ch);
      ae_buf_add(b, e, 6);
    } else {
      ae_buf_add(b, &s[i], 1);
    }
  }
  ae_buf_add(b, "\"", 1);
}

void ae_buf_consume(ae_buf *b, size_t n) {
  if (n >= b->len) {
    b->len = 0;
    return;
  }
  memmove(b->d, b->d + n, b->len - n);
  b->len -= n;
}

void ae_buf_shrink(ae_buf *b, size_t keep) {
  b->len = 0;
  if (b->cap > keep) {
    free(b->d);
    b->d = NULL;
    b->cap = 0;
  }
}

void ae_buf_free(ae_buf *b) {
  free(b->d);
  b->d = NULL;
  b->len = b->cap = 0;
}

/* ---------- parsed head ---------- */

void ae_hmsg_reset(ae_hmsg *m) {
  m->b.len = 0;
  m->nf = 0;
  m->url = m->ulen = 0;
  m->cur = 0;
}

void ae_hmsg_free(ae_hmsg *m) {
  ae_buf_free(&m->b);
  free(m->f);
  m->f = NULL;
  m->nf = m->fcap = 0;
}

void ae_hmsg_on_url(ae_hmsg *m, const char *at, size_t n) {
  if (m->cur != 1) {
    m->cur = 1;
    m->url = (uint32_t)m->b.len;
    m->ulen = 0;
  }
  ae_buf_add(&m->b, at, n);
  m->ulen += (uint32_t)n;
}

void ae_hmsg_on_field(ae_hmsg *m, const char *at, size_t n) {
  if (m->cur != 2) {
    if (m->nf == m->fcap) {
      m->fcap = m->fcap ? m->fcap * 2 : 16;
      m->f = ae_realloc(m->f, m->fcap * sizeof(*m->f));
    }
    ae_hfield *f = &m->f[m->nf++];
    f->name = (uint32_t)m->b.len;
    f->nlen = 0;
    f->val = (uint32_t)m->b.len;
    f->vlen = 0;
    m->cur = 2;
  }
  ae_buf_add(&m->b, at, n);
  m->f[m->nf - 1].nlen += (uint32_t)n;
}

void ae_hmsg_on_value(ae_hmsg *m, const char *at, size_t n) {
  if (m->nf == 0)
    return;
  ae_hfield *f = &m->f[m->nf - 1];
  if (m->cur != 3) {
    f->val = (uint32_t)m->b.len;
    f->vlen = 0;
    m->cur = 3;
  }
  ae_buf_add(&m->b, at, n);
  f->vlen += (uint32_t)n;
}

static int ieq(const char *a, size_t alen, const char *b, size_t blen) {
  if (alen != blen)
    return 0;
  for (size_t i = 0; i < alen; i++) {
    unsigned char x = (unsigned char)a[i], y = (unsigned char)b[i];
    if (x >= 'A' && x <= 'Z')
      x = (unsigned char)(x + 32);
    if (y >= 'A' && y <= 'Z')
      y = (unsigned char)(y + 32);
    if (x != y)
      return 0;
  }
  return 1;
}

static int ieqs(const char *a, size_t alen, const char *lit) { return ieq(a, alen, lit, strlen(lit)); }

/* Trims optional whitespace around a field value span. */
static void trim(const char **p, size_t *n) {
  while (*n && ((*p)[0] == ' ' || (*p)[0] == '\t')) {
    (*p)++;
    (*n)--;
  }
  while (*n && ((*p)[*n - 1] == ' ' || (*p)[*n - 1] == '\t'))
    (*n)--;
}

int ae_hmsg_find(const ae_hmsg *m, const char *name, uint32_t from) {
  size_t nl = strlen(name);
  for (uint32_t i = from; i < m->nf; i++)
    if (ieq(ae_hmsg_name(m, i), m->f[i].nlen, name, nl))
      return (int)i;
  return -1;
}

/* Calls fn for each comma-separated element (trimmed, non-empty) of a list value; stops when fn
 * returns non-zero and returns that. */
static int each_token(const char *v, size_t n, int (*fn)(void *, const char *, size_t), void *ud) {
  size_t i = 0;
  while (i <= n) {
    size_t j = i;
    while (j < n && v[j] != ',')
      j++;
    const char *t = v + i;
    size_t tl = j - i;
    trim(&t, &tl);
    if (tl) {
      int r = fn(ud, t, tl);
      if (r)
        return r;
    }
    i = j + 1;
  }
  return 0;
}

typedef struct {
  const char *tok;
  size_t len;
} tok_match;

static int match_tok(void *ud, const char *t, size_t n) {
  tok_match *m = ud;
  return ieq(t, n, m->tok, m->len);
}

int ae_hmsg_has_token(const ae_hmsg *m, const char *name, const char *token) {
  tok_match tm = {token, strlen(token)};
  for (int i = ae_hmsg_find(m, name, 0); i >= 0; i = ae_hmsg_find(m, name, (uint32_t)i + 1))
    if (each_token(ae_hmsg_val(m, (uint32_t)i), m->f[i].vlen, match_tok, &tm))
      return 1;
  return 0;
}

static int conn_lists(const ae_hmsg *m, const char *name, size_t nlen) {
  tok_match tm = {name, nlen};
  for (uint32_t i = 0; i < m->nf; i++)
    if (ieqs(ae_hmsg_name(m, i), m->f[i].nlen, "connection") &&
        each_token(ae_hmsg_val(m, i), m->f[i].vlen, match_tok, &tm))
      return 1;
  return 0;
}

int ae_hdr_is_hop(const ae_hmsg *m, const char *name, size_t nlen) {
  static const char *const hop[] = {"connection", "keep-alive", "te", "trailer", "trailers",
                                    "transfer-encoding", "upgrade"};
  for (size_t i = 0; i < AE_ARRAY_LEN(hop); i++)
    if (ieqs(name, nlen, hop[i]))
      return 1;
  if (nlen >= 6 && ieq(name, 6, "proxy-", 6))
    return 1;
  return m ? conn_lists(m, name, nlen) : 0;
}

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
  s->last_chunked = ieqs(t, k, "chunked") && k == n;
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
  trim(&h, &hl);
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
  trim(v, vl);
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
    trim(&v, &vl);
    if (ieqs(nm, nl, "host")) {
      hosts++;
      ri->host = v;
      ri->host_len = vl;
    } else if (ieqs(nm, nl, "content-length")) {
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
    } else if (ieqs(nm, nl, "transfer-encoding")) {
      tes++;
      each_token(v, vl, te_tok, &te);
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
    if (ul > 7 && ieq(u, 7, "http://", 7))
      skip = 7;
    else if (ul > 8 && ieq(u, 8, "https://", 8))
      skip = 8;
    else {
      return refuse(ri, why, 400, "target", "unsupported request target");
    }
    const char *auth = u + skip;
    size_t al = 0;
    while (skip + al < ul && auth[al] != '/' && auth[al] != '?')
      al++;
    if (!ri->host || !ieq(auth, al, ri->host, ri->host_len)) {
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

/* ---------- trusted proxies ---------- */

static int parse_ip(const char *s, unsigned char *out, int *family) {
  if (inet_pton(AF_INET, s, out) == 1) {
    *family = AF_INET;
    return 0;
  }
  if (inet_pton(AF_INET6, s, out) == 1) {
    *family = AF_INET6;
    return 0;
  }
  return -1;
}

/* Maps an IPv4-mapped IPv6 address (::ffff:a.b.c.d) to plain IPv4. */
static void unmap(unsigned char *a, int *family) {
  static const unsigned char pre[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  if (*family == AF_INET6 && memcmp(a, pre, 12) == 0) {
    memmove(a, a + 12, 4);
    *family = AF_INET;
  }
}

int ae_ip_in_list(const char *ip, char *const *list, size_t n) {
  unsigned char a[16], b[16];
  int fa, fb;
  if (!ip || parse_ip(ip, a, &fa) != 0)
    return 0;
  unmap(a, &fa);
  for (size_t i = 0; i < n; i++) {
    char tmp[64];
    snprintf(tmp, sizeof(tmp), "%s", list[i]);
    char *slash = strchr(tmp, '/');
    long bits = -1;
    if (slash) {
      *slash = 0;
      char *end = NULL;
      bits = strtol(slash + 1, &end, 10);
      if (!end || *end || bits < 0)
        continue;
    }
    if (parse_ip(tmp, b, &fb) != 0)
      continue;
    unmap(b, &fb);
    if (fa != fb)
      continue;
    int total = fa == AF_INET ? 32 : 128;
    if (bits < 0 || bits > total)
      bits = total;
    int full = (int)bits / 8, rem = (int)bits % 8;
    if (memcmp(a, b, (size_t)full) != 0)
      continue;
    if (rem) {
      unsigned char mask = (unsigned char)(0xff << (8 - rem));
      if ((a[full] & mask) != (b[full] & mask))
        continue;
    }
    return 1;
  }
  return 0;
}

/* ---------- head builders ---------- */

static void add_field(ae_buf *o, const char *n, size_t nl, const char *v, size_t vl) {
  ae_buf_reserve(o, nl + vl + 4);
  ae_buf_add(o, n, nl);
  ae_buf_add(o, ": ", 2);
  ae_buf_add(o, v, vl);
  ae_buf_add(o, "\r\n", 2);
}

void ae_build_upstream_head(ae_buf *out, const ae_hmsg *req, const ae_reqinfo *ri, const ae_fwd *fw) {
  ae_buf_reserve(out, req->b.len + 256);
  ae_buf_adds(out, fw->method);
  ae_buf_add(out, " ", 1);
  if (ri->target_slash)
    ae_buf_add(out, "/", 1);
  ae_buf_add(out, ri->target, ri->target_len);
  ae_buf_add(out, " HTTP/1.1\r\nHost: ", 17);
  ae_buf_add(out, fw->host, fw->host_len);
  ae_buf_add(out, "\r\n", 2);
  int has_conn = ae_hmsg_find(req, "connection", 0) >= 0;
  int xff_prior = 0;
  for (uint32_t i = 0; i < req->nf; i++) {
    const char *n = ae_hmsg_name(req, i);
    size_t nl = req->f[i].nlen;
    const char *v = ae_hmsg_val(req, i);
    size_t vl = req->f[i].vlen;
    trim(&v, &vl);
    switch (nl) {
    case 4:
      if (ieqs(n, nl, "host"))
        continue;
      break;
    case 14:
      if (ieqs(n, nl, "content-length"))
        continue;
      break;
    case 9:
      /* Forwarded carries the same claims as X-Forwarded-For: only a trusted peer may pass it. */
      if (ieqs(n, nl, "forwarded") && !fw->trusted)
        continue;
      break;
    case 15:
      if (ieqs(n, nl, "x-forwarded-for")) {
        xff_prior += vl != 0;
        continue;
      }
      break;
    case 16:
      if (ieqs(n, nl, "x-forwarded-host"))
        continue;
      break;
    case 17:
      if (ieqs(n, nl, "x-forwarded-proto"))
        continue;
      break;
    default:
      break;
    }
    if (ae_hdr_is_hop(has_conn ? req : NULL, n, nl))
      continue;
    add_field(out, n, nl, v, vl);
  }
  ae_buf_adds(out, "X-Forwarded-For: ");
  if (fw->trusted && xff_prior) {
    for (int i = ae_hmsg_find(req, "x-forwarded-for", 0); i >= 0;
         i = ae_hmsg_find(req, "x-forwarded-for", (uint32_t)i + 1)) {
      const char *v = ae_hmsg_val(req, (uint32_t)i);
      size_t vl = req->f[i].vlen;
      trim(&v, &vl);
      if (!vl)
        continue;
      ae_buf_add(out, v, vl);
      ae_buf_add(out, ", ", 2);
    }
  }
  ae_buf_adds(out, fw->client_ip);
  ae_buf_add(out, "\r\n", 2);
  ae_buf_adds(out, fw->https ? "X-Forwarded-Proto: https\r\n" : "X-Forwarded-Proto: http\r\n");
  add_field(out, "X-Forwarded-Host", 16, fw->host, fw->host_len);
  ae_buf_adds(out, fw->minor ? "Via: 1.1 acmedge\r\n" : "Via: 1.0 acmedge\r\n");
  if (fw->websocket) {
    ae_buf_adds(out, "Connection: Upgrade\r\nUpgrade: websocket\r\n");
  } else if (fw->body == 1) {
    ae_buf_adds(out, "Content-Length: ");
    ae_buf_addu(out, fw->cl);
    ae_buf_add(out, "\r\n", 2);
  } else if (fw->body == 2) {
    ae_buf_adds(out, "Transfer-Encoding: chunked\r\n");
  }
  ae_buf_add(out, "\r\n", 2);
}

const char *ae_status_text(int status) {
  switch (status) {
  case 100: return "Continue";
  case 101: return "Switching Protocols";
  case 200: return "OK";
  case 204: return "No Content";
  case 400: return "Bad Request";
  case 404: return "Not Found";
  case 405: return "Method Not Allowed";
  case 408: return "Request Timeout";
  case 413: return "Content Too Large";
  case 414: return "URI Too Long";
  case 421: return "Misdirected Request";
  case 431: return "Request Header Fields Too Large";
  case 500: return "Internal Server Error";
  case 501: return "Not Implemented";
  case 502: return "Bad Gateway";
  case 503: return "Service Unavailable";
  case 504: return "Gateway Timeout";
  case 505: return "HTTP Version Not Supported";
  default: return "Unknown";
  }
}

void ae_build_client_head(ae_buf *out, const ae_hmsg *resp, int status, int client_minor, int framing,
                          uint64_t cl, int keep_alive, int ws101) {
  ae_buf_reserve(out, resp->b.len + 160);
  ae_buf_add(out, "HTTP/1.1 ", 9);
  ae_buf_addu(out, (uint64_t)(status % 1000));
  ae_buf_add(out, " ", 1);
  if (resp->ulen)
    ae_buf_add(out, resp->b.d + resp->url, resp->ulen);
  else
    ae_buf_adds(out, ae_status_text(status));
  ae_buf_add(out, "\r\n", 2);
  int has_conn = ae_hmsg_find(resp, "connection", 0) >= 0;
  for (uint32_t i = 0; i < resp->nf; i++) {
    const char *n = ae_hmsg_name(resp, i);
    size_t nl = resp->f[i].nlen;
    if (nl == 14 && ieqs(n, nl, "content-length"))
      continue;
    if (ae_hdr_is_hop(has_conn ? resp : NULL, n, nl))
      continue;
    const char *v = ae_hmsg_val(resp, i);
    size_t vl = resp->f[i].vlen;
    trim(&v, &vl);
    add_field(out, n, nl, v, vl);
  }
  ae_buf_adds(out, "Via: 1.1 acmedge\r\n");
  if (ws101) {
    ae_buf_adds(out, "Connection: Upgrade\r\nUpgrade: websocket\r\n\r\n");
    return;
  }
  if (framing == AE_FRAME_CL) {
    ae_buf_adds(out, "Content-Length: ");
    ae_buf_addu(out, cl);
    ae_buf_add(out, "\r\n", 2);
  } else if (framing == AE_FRAME_CHUNKED) {
    ae_buf_adds(out, "Transfer-Encoding: chunked\r\n");
  }
  if (!keep_alive)
    ae_buf_adds(out, "Connection: close\r\n");
  else if (client_minor == 0)
    ae_buf_adds(out, "Connection: keep-alive\r\n");
  ae_buf_add(out, "\r\n", 2);
}

size_t ae_build_error(ae_buf *out, int status, int keep_alive, int client_minor) {
  const char *txt = ae_status_text(status);
  char body[96];
  int bl = snprintf(body, sizeof(body), "%d %s\n", status, txt);
  if (bl < 0)
    bl = 0;
  ae_buf_add(out, "HTTP/1.1 ", 9);
  ae_buf_addu(out, (uint64_t)status);
  ae_buf_add(out, " ", 1);
  ae_buf_adds(out, txt);
  ae_buf_adds(out, "\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: ");
  ae_buf_addu(out, (uint64_t)bl);
  ae_buf_add(out, "\r\n", 2);
  if (!keep_alive)
    ae_buf_adds(out, "Connection: close\r\n");
  else if (client_minor == 0)
    ae_buf_adds(out, "Connection: keep-alive\r\n");
  ae_buf_add(out, "\r\n", 2);
  ae_buf_add(out, body, (size_t)bl);
  return (size_t)bl;
}
