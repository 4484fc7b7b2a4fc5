/* HTTP/2 ↔ HTTP/1.1 field mapping for the h2 front: the request head an upstream sees for an h2
 * stream (RFC 9113 §8.3.1 pseudo-headers, §8.2.3 cookie joining), and the h2 response fields made
 * from an upstream's HTTP/1.1 head (§8.2.2: lowercase names, no connection-specific fields). */
#include "h2_map.h"

#include <stdlib.h>
#include <string.h>

#include "acmedge/common.h"

void ae_h2req_init(ae_h2req *r) { memset(r, 0, sizeof(*r)); }

void ae_h2req_free(ae_h2req *r) {
  ae_hmsg_free(&r->m);
  ae_buf_free(&r->ps);
  memset(r, 0, sizeof(*r));
}

static int is(const char *n, size_t nl, const char *lit) {
  size_t l = strlen(lit);
  return nl == l && memcmp(n, lit, l) == 0;
}

/* Stores a pseudo-header value, NUL-terminated, and returns its offset. */
static uint32_t keep(ae_h2req *r, const char *v, size_t vl, uint32_t *len) {
  uint32_t off = (uint32_t)r->ps.len;
  ae_buf_add(&r->ps, v, vl);
  ae_buf_add(&r->ps, "", 1);
  *len = (uint32_t)vl;
  return off;
}

void ae_h2req_add(ae_h2req *r, const char *n, size_t nl, const char *v, size_t vl) {
  /* Counted like HPACK's entry size so that a block of many tiny fields is bounded too. */
  r->bytes += nl + vl + 32;
  r->nfields++;
  if (r->too_large || r->bytes > AE_H2_MAX_FIELD_BYTES + 32u * AE_H2_MAX_FIELDS || r->nfields > AE_H2_MAX_FIELDS ||
      nl + vl > AE_H2_MAX_FIELD_BYTES) {
    r->too_large = 1;
    return;
  }
  if (nl && n[0] == ':') {
    if (is(n, nl, ":method")) {
      r->method = keep(r, v, vl, &r->mlen);
      r->has_method = 1;
    } else if (is(n, nl, ":path")) {
      r->path = keep(r, v, vl, &r->plen);
      r->has_path = 1;
    } else if (is(n, nl, ":authority")) {
      r->auth = keep(r, v, vl, &r->alen);
      r->has_auth = 1;
    }
    return; /* :scheme: the front is https whatever the client says */
  }
  if (is(n, nl, "host")) {
    r->host = keep(r, v, vl, &r->hlen);
    r->has_host = 1;
    return;
  }
  if (is(n, nl, "te"))
    return; /* only "trailers" gets this far (nghttp2), and it is hop-by-hop */
  if (is(n, nl, "cookie")) {
    /* Regular fields follow every pseudo-header, so the joined value grows at the end of ps. */
    if (!r->has_cookie) {
      r->cookie = (uint32_t)r->ps.len;
      r->has_cookie = 1;
    } else {
      ae_buf_add(&r->ps, "; ", 2);
      r->clen += 2;
    }
    ae_buf_add(&r->ps, v, vl);
    r->clen += (uint32_t)vl;
    return;
  }
  if (is(n, nl, "content-length")) {
    uint64_t x = 0;
    for (size_t i = 0; i < vl && i < 19; i++)
      x = x * 10 + (uint64_t)(v[i] - '0');
    r->has_cl = 1;
    r->cl = x;
  }
  ae_hmsg_on_field(&r->m, n, nl);
  ae_hmsg_on_value(&r->m, v, vl);
}

int ae_h2req_route_host(const ae_h2req *r, const char *sni, char *host_out, size_t outlen, const char **why) {
  if (r->too_large) {
    *why = "request header block too large";
    return 431;
  }
  const char *a = r->has_auth ? r->ps.d + r->auth : r->has_host ? r->ps.d + r->host : NULL;
  size_t al = r->has_auth ? r->alen : r->hlen;
  if (!a || !al || ae_host_normalize(a, al, host_out, outlen) != 0) {
    *why = "missing or invalid :authority";
    return 400;
  }
  if (r->has_auth && r->has_host) {
    char h[256];
    if (ae_host_normalize(r->ps.d + r->host, r->hlen, h, sizeof(h)) != 0 || strcmp(h, host_out) != 0) {
      *why = "host differs from :authority";
      return 400;
    }
  }
  if (sni && sni[0] && ae_strcasecmp(host_out, sni) != 0) {
    *why = ":authority does not match the TLS server name";
    return 421;
  }
  return 0;
}

int ae_h2req_body_mode(const ae_h2req *r, int end_stream) {
  if (end_stream)
    return 0;
  return r->has_cl ? 1 : 2;
}

void ae_h2req_upstream_head(const ae_h2req *r, const char *client_ip, int trusted, int body_mode, ae_buf *out) {
  ae_hmsg m = r->m;
  /* The joined cookie is added on a private copy of the field table: r stays as it was. */
  ae_hmsg tmp = {0};
  if (r->has_cookie) {
    ae_buf_add(&tmp.b, r->m.b.d, r->m.b.len);
    tmp.nf = tmp.fcap = r->m.nf;
    tmp.f = r->m.nf ? ae_calloc(r->m.nf, sizeof(*tmp.f)) : NULL;
    if (r->m.nf)
      memcpy(tmp.f, r->m.f, r->m.nf * sizeof(*tmp.f));
    tmp.cur = 3;
    ae_hmsg_on_field(&tmp, "cookie", 6);
    ae_hmsg_on_value(&tmp, r->ps.d + r->cookie, r->clen);
    m = tmp;
  }
  ae_reqinfo ri;
  memset(&ri, 0, sizeof(ri));
  ri.target = r->has_path ? r->ps.d + r->path : "/";
  ri.target_len = r->has_path ? r->plen : 1;
  ae_fwd fw;
  memset(&fw, 0, sizeof(fw));
  fw.method = r->has_method ? r->ps.d + r->method : "GET";
  fw.minor = 1;
  fw.client_ip = client_ip;
  fw.trusted = trusted;
  fw.https = 1;
  fw.host = r->has_auth ? r->ps.d + r->auth : r->ps.d + r->host;
  fw.host_len = r->has_auth ? r->alen : r->hlen;
  fw.body = body_mode;
  fw.cl = r->cl;
  ae_build_upstream_head(out, &m, &ri, &fw);
  ae_hmsg_free(&tmp);
}

size_t ae_h2_response_nva(const ae_hmsg *resp, int status, int with_cl, ae_buf *store, nghttp2_nv **nva) {
  int has_conn = ae_hmsg_find(resp, "connection", 0) >= 0;
  size_t n = 0;
  /* First pass: copy the kept names (lowercased) and values, so pointers are taken once the
   * store no longer moves. */
  uint32_t *keepi = resp->nf ? ae_calloc(resp->nf, sizeof(*keepi)) : NULL;
  for (uint32_t i = 0; i < resp->nf; i++) {
    const char *nm = ae_hmsg_name(resp, i);
    size_t nl = resp->f[i].nlen;
    if (!nl || ae_hdr_is_hop(has_conn ? resp : NULL, nm, nl))
      continue;
    if (hmsg_ieqs(nm, nl, "content-length") && !with_cl)
      continue;
    /* Fields that only make sense per hop or that h2 forbids in a response. */
    if (hmsg_ieqs(nm, nl, "host") || hmsg_ieqs(nm, nl, "http2-settings"))
      continue;
    keepi[n++] = i;
  }
  char st[4];
  size_t total = 3 + 20;
  for (size_t k = 0; k < n; k++)
    total += resp->f[keepi[k]].nlen + 1;
  store->len = 0;
  ae_buf_reserve(store, total);
  if (status) {
    st[0] = (char)('0' + (status / 100) % 10);
    st[1] = (char)('0' + (status / 10) % 10);
    st[2] = (char)('0' + status % 10);
    ae_buf_add(store, st, 3);
  }
  for (size_t k = 0; k < n; k++) {
    const char *nm = ae_hmsg_name(resp, keepi[k]);
    size_t nl = resp->f[keepi[k]].nlen;
    for (size_t j = 0; j < nl; j++) {
      char ch = nm[j];
      if (ch >= 'A' && ch <= 'Z')
        ch = (char)(ch + 32);
      ae_buf_add(store, &ch, 1);
    }
  }
  size_t cnt = n + (status ? 1 : 0);
  nghttp2_nv *v = ae_calloc(cnt ? cnt : 1, sizeof(*v));
  size_t pos = 0, out = 0;
  if (status) {
    v[out].name = (uint8_t *)":status";
    v[out].namelen = 7;
    v[out].value = (uint8_t *)store->d;
    v[out].valuelen = 3;
    v[out].flags = NGHTTP2_NV_FLAG_NONE;
    out++;
    pos = 3;
  }
  for (size_t k = 0; k < n; k++) {
    uint32_t i = keepi[k];
    const char *val = ae_hmsg_val(resp, i);
    size_t vl = resp->f[i].vlen;
    hmsg_trim(&val, &vl);
    v[out].name = (uint8_t *)store->d + pos;
    v[out].namelen = resp->f[i].nlen;
    v[out].value = (uint8_t *)(uintptr_t)val;
    v[out].valuelen = vl;
    v[out].flags = NGHTTP2_NV_FLAG_NONE;
    pos += resp->f[i].nlen;
    out++;
  }
  free(keepi);
  *nva = v;
  return out;
}
