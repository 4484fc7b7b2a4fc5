/* PROXY protocol v2 parser (haproxy.org/download/2.9/doc/proxy-protocol.txt, section 2.2). Every
 * length is checked against both the declared header length and the bytes received, so a
 * truncated or lying header is NEED_MORE or INVALID, never an out-of-bounds read. */
#include "acmedge/proxy_protocol.h"

#include <netinet/in.h>
#include <string.h>

static const uint8_t k_sig[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};

enum { PP_CMD_LOCAL = 0x0, PP_CMD_PROXY = 0x1 };
enum { PP_AF_UNSPEC = 0x0, PP_AF_INET = 0x1, PP_AF_INET6 = 0x2, PP_AF_UNIX = 0x3 };
enum { PP_PROTO_UNSPEC = 0x0, PP_PROTO_STREAM = 0x1, PP_PROTO_DGRAM = 0x2 };

/* TLVs: type (1), length (2, big-endian), value. They must tile the rest of the header exactly. */
static int pp_check_tlvs(const uint8_t *p, size_t n) {
  while (n > 0) {
    if (n < 3)
      return AE_PP_INVALID;
    size_t vlen = ((size_t)p[1] << 8) | p[2];
    if (vlen > n - 3)
      return AE_PP_INVALID;
    p += 3 + vlen;
    n -= 3 + vlen;
  }
  return AE_PP_OK;
}

int ae_pp_parse(const uint8_t *buf, size_t len, ae_pp_header *out) {
  if (!buf || !out)
    return AE_PP_INVALID;
  memset(out, 0, sizeof(*out));
  size_t cmp = len < sizeof(k_sig) ? len : sizeof(k_sig);
  /* Refuse a wrong signature on its first byte instead of waiting for the timeout. */
  if (memcmp(buf, k_sig, cmp) != 0)
    return AE_PP_INVALID;
  if (len < 13)
    return AE_PP_NEED_MORE;
  uint8_t ver = buf[12] >> 4, cmd = buf[12] & 0x0F;
  if (ver != 2 || (cmd != PP_CMD_LOCAL && cmd != PP_CMD_PROXY))
    return AE_PP_INVALID;
  if (len < AE_PP_FIXED_LEN)
    return AE_PP_NEED_MORE;
  uint8_t fam = buf[13] >> 4, proto = buf[13] & 0x0F;
  if (fam > PP_AF_UNIX || proto > PP_PROTO_DGRAM)
    return AE_PP_INVALID;
  size_t body = ((size_t)buf[14] << 8) | buf[15];
  if (body > AE_PP_MAX_LEN - AE_PP_FIXED_LEN)
    return AE_PP_TOO_BIG;
  size_t addr_len = fam == PP_AF_INET ? 12 : fam == PP_AF_INET6 ? 36 : fam == PP_AF_UNIX ? 216 : 0;
  if (body < addr_len)
    return AE_PP_INVALID;
  if (len < AE_PP_FIXED_LEN + body)
    return AE_PP_NEED_MORE;
  const uint8_t *a = buf + AE_PP_FIXED_LEN;
  if (pp_check_tlvs(a + addr_len, body - addr_len) != AE_PP_OK)
    return AE_PP_INVALID;
  out->header_len = AE_PP_FIXED_LEN + body;
  if (cmd == PP_CMD_LOCAL) {
    /* The balancer talking for itself: the socket's own peer address stays the client. */
    out->local = 1;
    return AE_PP_OK;
  }
  if (proto == PP_PROTO_DGRAM)
    return AE_PP_INVALID;
  if (fam == PP_AF_INET && proto == PP_PROTO_STREAM) {
    struct sockaddr_in *s = (struct sockaddr_in *)&out->src, *d = (struct sockaddr_in *)&out->dst;
    s->sin_family = d->sin_family = AF_INET;
    memcpy(&s->sin_addr, a, 4);
    memcpy(&d->sin_addr, a + 4, 4);
    memcpy(&s->sin_port, a + 8, 2);
    memcpy(&d->sin_port, a + 10, 2);
    out->has_addr = 1;
  } else if (fam == PP_AF_INET6 && proto == PP_PROTO_STREAM) {
    struct sockaddr_in6 *s = (struct sockaddr_in6 *)&out->src, *d = (struct sockaddr_in6 *)&out->dst;
    s->sin6_family = d->sin6_family = AF_INET6;
    memcpy(&s->sin6_addr, a, 16);
    memcpy(&d->sin6_addr, a + 16, 16);
    memcpy(&s->sin6_port, a + 32, 2);
    memcpy(&d->sin6_port, a + 34, 2);
    out->has_addr = 1;
  }
  /* UNSPEC/UNIX with PROXY: no usable address, the socket's peer stays (as the spec asks). */
  return AE_PP_OK;
}
