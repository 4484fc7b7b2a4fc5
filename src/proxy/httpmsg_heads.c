/* Heads the proxy writes: the request sent upstream (forwarding fields, trusted-proxy matching),
 * the response head sent to the client and the canned error responses. */
#include "proxy_int.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "acmedge/common.h"

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
    hmsg_trim(&v, &vl);
    switch (nl) {
    case 4:
      if (hmsg_ieqs(n, nl, "host"))
        continue;
      break;
    case 14:
      if (hmsg_ieqs(n, nl, "content-length"))
        continue;
      break;
    case 9:
      /* Forwarded carries the same claims as X-Forwarded-For: only a trusted peer may pass it. */
      if (hmsg_ieqs(n, nl, "forwarded") && !fw->trusted)
        continue;
      break;
    case 15:
      if (hmsg_ieqs(n, nl, "x-forwarded-for")) {
        xff_prior += vl != 0;
        continue;
      }
      break;
    case 16:
      if (hmsg_ieqs(n, nl, "x-forwarded-host"))
        continue;
      break;
    case 17:
      if (hmsg_ieqs(n, nl, "x-forwarded-proto"))
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
      hmsg_trim(&v, &vl);
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
    if (nl == 14 && hmsg_ieqs(n, nl, "content-length"))
      continue;
    if (ae_hdr_is_hop(has_conn ? resp : NULL, n, nl))
      continue;
    const char *v = ae_hmsg_val(resp, i);
    size_t vl = resp->f[i].vlen;
    hmsg_trim(&v, &vl);
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
