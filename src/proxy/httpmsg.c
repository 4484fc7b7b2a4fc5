/* HTTP/1.1 message helpers for the proxy: byte buffer, parsed-head storage and header-field
 * lookup (case-insensitive names, list tokens, hop-by-hop fields). Request framing analysis is in
 * httpmsg_analyze.c, the heads the proxy writes in httpmsg_heads.c, the raw head scanner in
 * httpmsg_scan.c. */
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

int hmsg_ieq(const char *a, size_t alen, const char *b, size_t blen) {
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

int hmsg_ieqs(const char *a, size_t alen, const char *lit) { return hmsg_ieq(a, alen, lit, strlen(lit)); }

/* Trims optional whitespace around a field value span. */
void hmsg_trim(const char **p, size_t *n) {
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
    if (hmsg_ieq(ae_hmsg_name(m, i), m->f[i].nlen, name, nl))
      return (int)i;
  return -1;
}

/* Calls fn for each comma-separated element (trimmed, non-empty) of a list value; stops when fn
 * returns non-zero and returns that. */
int hmsg_each_token(const char *v, size_t n, int (*fn)(void *, const char *, size_t), void *ud) {
  size_t i = 0;
  while (i <= n) {
    size_t j = i;
    while (j < n && v[j] != ',')
      j++;
    const char *t = v + i;
    size_t tl = j - i;
    hmsg_trim(&t, &tl);
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
  return hmsg_ieq(t, n, m->tok, m->len);
}

int ae_hmsg_has_token(const ae_hmsg *m, const char *name, const char *token) {
  tok_match tm = {token, strlen(token)};
  for (int i = ae_hmsg_find(m, name, 0); i >= 0; i = ae_hmsg_find(m, name, (uint32_t)i + 1))
    if (hmsg_each_token(ae_hmsg_val(m, (uint32_t)i), m->f[i].vlen, match_tok, &tm))
      return 1;
  return 0;
}

static int conn_lists(const ae_hmsg *m, const char *name, size_t nlen) {
  tok_match tm = {name, nlen};
  for (uint32_t i = 0; i < m->nf; i++)
    if (hmsg_ieqs(ae_hmsg_name(m, i), m->f[i].nlen, "connection") &&
        hmsg_each_token(ae_hmsg_val(m, i), m->f[i].vlen, match_tok, &tm))
      return 1;
  return 0;
}

int ae_hdr_is_hop(const ae_hmsg *m, const char *name, size_t nlen) {
  static const char *const hop[] = {"connection", "keep-alive", "te", "trailer", "trailers",
                                    "transfer-encoding", "upgrade"};
  for (size_t i = 0; i < AE_ARRAY_LEN(hop); i++)
    if (hmsg_ieqs(name, nlen, hop[i]))
      return 1;
  if (nlen >= 6 && hmsg_ieq(name, 6, "proxy-", 6))
    return 1;
  return m ? conn_lists(m, name, nlen) : 0;
}
