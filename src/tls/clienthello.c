/* Pure TLS ClientHello parser (RFC 8446 §4.1.2, RFC 5246 §7.4.1.2) for the SNI peek.
 *
 * The caller re-runs it over everything received so far until it stops answering NEED_MORE.
 * Handshake fragments are gathered from consecutive handshake records into a stack buffer (the
 * records are capped at AE_CH_MAX_BYTES in total, so the buffer is too); nothing is allocated and
 * every read is bounds-checked against the bytes actually present. A peer gets INVALID as early as
 * its bytes prove it wrong, and TOO_BIG as soon as its declared lengths need more than the cap. */
#include "acmedge/clienthello.h"
#include "acmedge/hostname.h"

#include <string.h>

#define REC_HDR 5
#define HS_HDR 4
#define REC_MAX_LEN (16384 + 256)
#define CT_HANDSHAKE 22
#define HS_CLIENT_HELLO 1
#define EXT_SNI 0
#define EXT_ALPN 16
#define SNI_HOST_NAME 0

/* Bounded big-endian reader over one contiguous span. */
typedef struct rd {
  const uint8_t *p;
  size_t left;
} rd;

static int rd_u8(rd *r, unsigned *v) {
  if (r->left < 1)
    return -1;
  *v = r->p[0];
  r->p++;
  r->left--;
  return 0;
}

static int rd_u16(rd *r, unsigned *v) {
  if (r->left < 2)
    return -1;
  *v = ((unsigned)r->p[0] << 8) | r->p[1];
  r->p += 2;
  r->left -= 2;
  return 0;
}

/* Splits off the next n bytes as a sub-reader. */
static int rd_sub(rd *r, size_t n, rd *sub) {
  if (r->left < n)
    return -1;
  sub->p = r->p;
  sub->left = n;
  r->p += n;
  r->left -= n;
  return 0;
}

static int rd_skip(rd *r, size_t n) {
  rd dummy;
  return rd_sub(r, n, &dummy);
}

/* Validates a host_name as a DNS name and stores it lowercased without a trailing dot. */
static int take_host_name(const uint8_t *name, size_t n, char out[256]) {
  if (n > 0 && name[n - 1] == '.')
    n--;
  ae_hostname_info info;
  if (ae_hostname_shape((const char *)name, n, &info) != 0)
    return -1;
  /* No top-level label is all digits, so this rejects IPv4 literals (RFC 6066 §3 forbids IP
   * addresses in host_name); IPv6 literals already failed the LDH check on ':'. */
  if (info.last_numeric)
    return -1;
  for (size_t i = 0; i < n; i++) {
    uint8_t c = name[i];
    out[i] = (char)((c >= 'A' && c <= 'Z') ? c + 32 : c);
  }
  out[n] = '\0';
  return 0;
}

static int parse_sni(rd ext, ae_clienthello *out) {
  unsigned list_len, type, name_len;
  if (rd_u16(&ext, &list_len) < 0 || list_len != ext.left)
    return -1;
  /* Exactly one entry, of type host_name, with nothing after it (RFC 6066 §3 allows no two
   * names of the same type, and no other type is defined). */
  if (rd_u8(&ext, &type) < 0 || type != SNI_HOST_NAME)
    return -1;
  if (rd_u16(&ext, &name_len) < 0 || name_len != ext.left)
    return -1;
  if (take_host_name(ext.p, name_len, out->sni) < 0)
    return -1;
  out->has_sni = 1;
  return 0;
}

static int parse_alpn(rd ext, ae_clienthello *out) {
  unsigned list_len;
  if (rd_u16(&ext, &list_len) < 0 || list_len != ext.left || list_len < 2)
    return -1;
  while (ext.left > 0) {
    unsigned plen;
    rd name;
    if (rd_u8(&ext, &plen) < 0 || plen == 0 || rd_sub(&ext, plen, &name) < 0)
      return -1;
    /* Names too long for the fixed slots, or that could not be C strings, are not offered to us. */
    if (plen >= sizeof(out->alpn[0]) || memchr(name.p, '\0', plen) || out->nalpn >= AE_CH_MAX_ALPN)
      continue;
    memcpy(out->alpn[out->nalpn], name.p, plen);
    out->alpn[out->nalpn][plen] = '\0';
    out->nalpn++;
  }
  return 0;
}

/* Parses a complete ClientHello body (after the 4-byte handshake header). */
static int parse_body(const uint8_t *body, size_t blen, ae_clienthello *out) {
  rd r = {body, blen};
  unsigned ver, sid_len, cs_len, comp_len;
  if (rd_u16(&r, &ver) < 0 || (ver >> 8) != 3)
    return AE_CH_INVALID;
  if (rd_skip(&r, 32) < 0) /* random */
    return AE_CH_INVALID;
  if (rd_u8(&r, &sid_len) < 0 || sid_len > 32 || rd_skip(&r, sid_len) < 0)
    return AE_CH_INVALID;
  if (rd_u16(&r, &cs_len) < 0 || cs_len < 2 || (cs_len & 1) || rd_skip(&r, cs_len) < 0)
    return AE_CH_INVALID;
  if (rd_u8(&r, &comp_len) < 0 || comp_len < 1 || rd_skip(&r, comp_len) < 0)
    return AE_CH_INVALID;
  out->legacy_version = (uint16_t)ver;
  if (r.left == 0)
    return AE_CH_OK; /* no extensions: legal before TLS 1.3 */

  unsigned ext_total;
  if (rd_u16(&r, &ext_total) < 0 || ext_total != r.left)
    return AE_CH_INVALID;
  /* One bit per extension type: duplicates of any type are refused (RFC 8446 §4.2). */
  uint8_t seen[65536 / 8];
  memset(seen, 0, sizeof(seen));
  while (r.left > 0) {
    unsigned type, elen;
    rd ext;
    if (rd_u16(&r, &type) < 0 || rd_u16(&r, &elen) < 0 || rd_sub(&r, elen, &ext) < 0)
      return AE_CH_INVALID;
    if (seen[type >> 3] & (1u << (type & 7)))
      return AE_CH_INVALID;
    seen[type >> 3] |= (uint8_t)(1u << (type & 7));
    if (type == EXT_SNI && parse_sni(ext, out) < 0)
      return AE_CH_INVALID;
    if (type == EXT_ALPN && parse_alpn(ext, out) < 0)
      return AE_CH_INVALID;
  }
  return AE_CH_OK;
}

int ae_clienthello_parse(const uint8_t *buf, size_t len, ae_clienthello *out) {
  memset(out, 0, sizeof(*out));
  /* Handshake bytes gathered from the records; they can never exceed the record cap. */
  uint8_t hs[AE_CH_MAX_BYTES];
  size_t hlen = 0;
  size_t pos = 0;
  size_t msg_total = 0; /* 4 + body length once the handshake header is complete */

  for (;;) {
    /* Record header, validated byte by byte so garbage is refused without waiting. */
    size_t have = len > pos ? len - pos : 0;
    if (have >= 1 && buf[pos] != CT_HANDSHAKE)
      return AE_CH_INVALID;
    if (have >= 2 && buf[pos + 1] != 3)
      return AE_CH_INVALID;
    if (pos + REC_HDR > AE_CH_MAX_BYTES)
      return AE_CH_TOO_BIG;
    if (have < REC_HDR)
      return AE_CH_NEED_MORE;
    size_t rlen = ((size_t)buf[pos + 3] << 8) | buf[pos + 4];
    if (rlen == 0 || rlen > REC_MAX_LEN)
      return AE_CH_INVALID;
    if (pos + REC_HDR + rlen > AE_CH_MAX_BYTES)
      return AE_CH_TOO_BIG;

    size_t avail = have - REC_HDR < rlen ? have - REC_HDR : rlen;
    memcpy(hs + hlen, buf + pos + REC_HDR, avail);
    hlen += avail;

    if (hlen >= 1 && hs[0] != HS_CLIENT_HELLO)
      return AE_CH_INVALID;
    if (msg_total == 0 && hlen >= HS_HDR) {
      size_t blen = ((size_t)hs[1] << 16) | ((size_t)hs[2] << 8) | hs[3];
      if (blen == 0)
        return AE_CH_INVALID;
      msg_total = HS_HDR + blen;
      if (msg_total > AE_CH_MAX_BYTES)
        return AE_CH_TOO_BIG;
    }
    if (avail < rlen)
      return AE_CH_NEED_MORE;

    pos += REC_HDR + rlen;
    if (msg_total != 0 && hlen >= msg_total) {
      /* The client sends nothing else before the server answers, so extra handshake bytes in the
       * ClientHello's last record are a protocol violation. */
      if (hlen > msg_total)
        return AE_CH_INVALID;
      int rc = parse_body(hs + HS_HDR, msg_total - HS_HDR, out);
      if (rc != AE_CH_OK) {
        memset(out, 0, sizeof(*out));
        return rc;
      }
      out->consumed = pos;
      return AE_CH_OK;
    }
    /* The rest of the message needs at least one more record header. */
    if (msg_total != 0 && pos + REC_HDR + (msg_total - hlen) > AE_CH_MAX_BYTES)
      return AE_CH_TOO_BIG;
  }
}

int ae_clienthello_has_alpn(const ae_clienthello *ch, const char *proto) {
  if (!ch || !proto)
    return 0;
  for (int i = 0; i < ch->nalpn && i < AE_CH_MAX_ALPN; i++)
    if (strcmp(ch->alpn[i], proto) == 0)
      return 1;
  return 0;
}
