/* Pure TLS ClientHello parser (RFC 8446 §4.1.2, RFC 5246 §7.4.1.2) for the SNI peek.
 *
 * The caller re-runs it over everything received so far until it stops answering NEED_MORE
 * (out->need tells it when a re-run can change the answer). Handshake fragments are gathered
 * from consecutive handshake records into a stack buffer of AE_CH_MAX_MSG bytes; nothing is
 * allocated and every read is bounds-checked against the bytes actually present. A refused
 * ClientHello comes back with the fatal alert the RFCs name for its fault (docs/tls.md has the
 * table): decode_error for bad lengths, illegal_parameter for bad values, record_overflow for an
 * oversized record, unexpected_message for the wrong record or handshake type, protocol_version
 * for a record or hello version the front does not speak (SSL 2.0 included). */
#include "acmedge/clienthello.h"
#include "acmedge/hostname.h"

#include <string.h>

#define REC_HDR 5
#define HS_HDR 4
#define REC_MAX_PLAIN 16384 /* TLSPlaintext.length limit, RFC 5246 §6.2.1 and RFC 8446 §5.1 */
#define CT_CHANGE_CIPHER_SPEC 20
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

/* Records the refusal in *out and returns rc. */
static int fail(ae_clienthello *out, int rc, uint8_t alert, const char *reason) {
  memset(out, 0, sizeof(*out));
  out->alert = alert;
  out->reason = reason;
  return rc;
}

#define DECODE(out, why) fail(out, AE_CH_INVALID, AE_ALERT_DECODE_ERROR, why)
#define ILLEGAL(out, why) fail(out, AE_CH_INVALID, AE_ALERT_ILLEGAL_PARAMETER, why)

/* 1 when every byte is a letter, digit, hyphen or dot: GnuTLS refuses any other byte in a
 * host_name itself (GNUTLS_E_RECEIVED_DISALLOWED_NAME), so no certificate can be served then. */
static int ldh_bytes(const uint8_t *name, size_t n) {
  for (size_t i = 0; i < n; i++) {
    uint8_t c = name[i];
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '.'))
      return 0;
  }
  return 1;
}

/* Takes a host_name: a DNS name is stored lowercased in out->sni. Any other value (hostile
 * names) sets out->sni_invalid with a printable rendition in out->sni for the denial event: made
 * of LDH bytes (a trailing dot, empty or over-long labels, edge hyphens, over 253 bytes, an IPv4
 * literal) the hello goes on and the front answers it like a denied name; with other bytes (NUL,
 * controls, UTF-8, space, '_', '*', an IPv6 literal) it is refused with illegal_parameter, as
 * GnuTLS would refuse it. Returns 0 or AE_CH_INVALID. */
static int take_host_name(const uint8_t *name, size_t n, ae_clienthello *out) {
  const char *why = NULL;
  if (ae_hostname_sni_check(name, n, &why) == 0) {
    for (size_t i = 0; i < n; i++) {
      uint8_t c = name[i];
      out->sni[i] = (char)((c >= 'A' && c <= 'Z') ? c + 32 : c);
    }
    out->sni[n] = '\0';
    out->has_sni = 1;
    return 0;
  }
  int rc = 0;
  if (!ldh_bytes(name, n))
    rc = ILLEGAL(out, "server_name: host_name is not a DNS name");
  ae_hostname_printable(name, n, out->sni, sizeof(out->sni));
  out->sni_invalid = 1;
  out->sni_fault = why;
  return rc;
}

/* server_name (RFC 6066 §3): a non-empty list of (type, name) entries. Exactly one host_name may
 * appear (one that is not a DNS name is reported, see take_host_name); entries of other types are skipped (none is defined, and a
 * future type must not break the connection). */
static int parse_sni(rd ext, ae_clienthello *out) {
  unsigned list_len;
  if (rd_u16(&ext, &list_len) < 0 || list_len != ext.left)
    return DECODE(out, "server_name: list length does not match the extension");
  if (list_len == 0)
    return ILLEGAL(out, "server_name: empty name list");
  while (ext.left > 0) {
    unsigned type, name_len;
    rd name;
    if (rd_u8(&ext, &type) < 0 || rd_u16(&ext, &name_len) < 0 || rd_sub(&ext, name_len, &name) < 0)
      return DECODE(out, "server_name: entry overruns the list");
    if (name_len == 0)
      return DECODE(out, "server_name: empty name");
    if (type != SNI_HOST_NAME)
      continue;
    if (out->has_sni || out->sni_invalid)
      return ILLEGAL(out, "server_name: more than one host_name");
    if (take_host_name(name.p, name_len, out) != 0)
      return AE_CH_INVALID;
  }
  return 0;
}

/* application_layer_protocol_negotiation (RFC 7301 §3.1): a non-empty list of non-empty names. */
static int parse_alpn(rd ext, ae_clienthello *out) {
  unsigned list_len;
  if (rd_u16(&ext, &list_len) < 0 || list_len != ext.left)
    return DECODE(out, "ALPN: list length does not match the extension");
  if (list_len < 2)
    return DECODE(out, "ALPN: empty protocol list");
  while (ext.left > 0) {
    unsigned plen;
    rd name;
    if (rd_u8(&ext, &plen) < 0 || rd_sub(&ext, plen, &name) < 0)
      return DECODE(out, "ALPN: protocol name overruns the list");
    if (plen == 0)
      return DECODE(out, "ALPN: empty protocol name");
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
  if (rd_u16(&r, &ver) < 0 || rd_skip(&r, 32) < 0)
    return DECODE(out, "ClientHello shorter than version and random");
  /* A version above ours is answered with the highest we support (RFC 5246 Appendix E.1); only
   * one below SSL 3.0 is refused here. */
  if ((ver >> 8) < 3)
    return fail(out, AE_CH_INVALID, AE_ALERT_PROTOCOL_VERSION, "ClientHello version below 3.0");
  if (rd_u8(&r, &sid_len) < 0 || rd_skip(&r, sid_len) < 0)
    return DECODE(out, "session_id overruns the ClientHello");
  if (sid_len > 32)
    return DECODE(out, "session_id longer than 32 bytes");
  if (rd_u16(&r, &cs_len) < 0 || rd_skip(&r, cs_len) < 0)
    return DECODE(out, "cipher_suites overrun the ClientHello");
  if (cs_len < 2 || (cs_len & 1))
    return DECODE(out, "cipher_suites empty or of odd length");
  if (rd_u8(&r, &comp_len) < 0 || rd_skip(&r, comp_len) < 0)
    return DECODE(out, "compression_methods overrun the ClientHello");
  if (comp_len < 1)
    return DECODE(out, "compression_methods empty");
  out->legacy_version = (uint16_t)ver;
  if (r.left == 0)
    return AE_CH_OK; /* no extensions: legal before TLS 1.3 */

  unsigned ext_total;
  if (rd_u16(&r, &ext_total) < 0 || ext_total != r.left)
    return DECODE(out, "extensions length does not match the ClientHello");
  /* One bit per extension type: duplicates of any type are refused (RFC 8446 §4.2). */
  uint8_t seen[65536 / 8];
  memset(seen, 0, sizeof(seen));
  while (r.left > 0) {
    unsigned type, elen;
    rd ext;
    if (rd_u16(&r, &type) < 0 || rd_u16(&r, &elen) < 0 || rd_sub(&r, elen, &ext) < 0)
      return DECODE(out, "extension overruns the extensions block");
    if (seen[type >> 3] & (1u << (type & 7)))
      return ILLEGAL(out, "extension sent twice");
    seen[type >> 3] |= (uint8_t)(1u << (type & 7));
    if (type == EXT_SNI && parse_sni(ext, out) < 0)
      return AE_CH_INVALID;
    if (type == EXT_ALPN && parse_alpn(ext, out) < 0)
      return AE_CH_INVALID;
  }
  return AE_CH_OK;
}

static int need_more(ae_clienthello *out, size_t need) {
  memset(out, 0, sizeof(*out));
  out->need = need;
  return AE_CH_NEED_MORE;
}

int ae_clienthello_parse(const uint8_t *buf, size_t len, ae_clienthello *out) {
  memset(out, 0, sizeof(*out));
  /* Handshake bytes gathered from the records; never more than the message cap (checked before
   * every copy). */
  uint8_t hs[AE_CH_MAX_MSG];
  size_t hlen = 0;
  size_t pos = 0;
  size_t msg_total = 0; /* 4 + body length once the handshake header is complete */

  /* An SSL 2.0 record header has the top bit of its first byte set; no TLS content type does.
   * SSLv2-compatible ClientHellos (RFC 5246 Appendix E.2) are not accepted (docs/tls.md). */
  if (len >= 1 && (buf[0] & 0x80))
    return fail(out, AE_CH_INVALID, AE_ALERT_PROTOCOL_VERSION, "SSL 2.0 (SSLv2-compatible) ClientHello");

  for (;;) {
    /* Record header, validated byte by byte so garbage is refused without waiting. */
    size_t have = len > pos ? len - pos : 0;
    /* RFC 8446 §5 lets a change_cipher_spec record be dropped only after the ClientHello. */
    if (have >= 1 && buf[pos] == CT_CHANGE_CIPHER_SPEC)
      return fail(out, AE_CH_INVALID, AE_ALERT_UNEXPECTED_MESSAGE, "change_cipher_spec before the ClientHello");
    if (have >= 1 && buf[pos] != CT_HANDSHAKE)
      return fail(out, AE_CH_INVALID, AE_ALERT_UNEXPECTED_MESSAGE,
                  pos == 0 ? "first record is not a handshake record" : "ClientHello interrupted by a non-handshake record");
    if (have >= 2 && buf[pos + 1] != 3)
      return fail(out, AE_CH_INVALID, AE_ALERT_PROTOCOL_VERSION, "record version is not 3.x");
    if (pos + REC_HDR > AE_CH_MAX_BYTES)
      return fail(out, AE_CH_TOO_BIG, AE_ALERT_DECODE_ERROR, "ClientHello records exceed the size limit");
    if (have < REC_HDR)
      return need_more(out, pos + REC_HDR);
    size_t rlen = ((size_t)buf[pos + 3] << 8) | buf[pos + 4];
    if (rlen > REC_MAX_PLAIN)
      return fail(out, AE_CH_INVALID, AE_ALERT_RECORD_OVERFLOW, "record longer than 2^14 bytes");
    if (rlen == 0) /* RFC 5246 §6.2.1, RFC 8446 §5.1: no empty handshake fragments */
      return fail(out, AE_CH_INVALID, AE_ALERT_UNEXPECTED_MESSAGE, "empty handshake record");
    if (pos + REC_HDR + rlen > AE_CH_MAX_BYTES)
      return fail(out, AE_CH_TOO_BIG, AE_ALERT_DECODE_ERROR, "ClientHello records exceed the size limit");
    /* The message ends inside this record but the record goes on: another handshake message
     * follows the ClientHello before the server spoke (RFC 8446 §5.1). */
    if (msg_total != 0 && hlen + rlen > msg_total)
      return fail(out, AE_CH_INVALID, AE_ALERT_UNEXPECTED_MESSAGE, "handshake data after the ClientHello");

    size_t avail = have - REC_HDR < rlen ? have - REC_HDR : rlen;
    size_t before = hlen;
    memcpy(hs + hlen, buf + pos + REC_HDR, avail); /* hlen < 4 or hlen + rlen <= msg_total */
    hlen += avail;

    if (hlen >= 1 && hs[0] != HS_CLIENT_HELLO)
      return fail(out, AE_CH_INVALID, AE_ALERT_UNEXPECTED_MESSAGE, "first handshake message is not a ClientHello");
    if (msg_total == 0 && hlen >= HS_HDR) {
      size_t blen = ((size_t)hs[1] << 16) | ((size_t)hs[2] << 8) | hs[3];
      if (blen == 0)
        return DECODE(out, "empty ClientHello");
      msg_total = HS_HDR + blen;
      if (msg_total > AE_CH_MAX_MSG)
        return fail(out, AE_CH_TOO_BIG, AE_ALERT_DECODE_ERROR, "ClientHello longer than 64 KiB");
      if (before + rlen > msg_total)
        return fail(out, AE_CH_INVALID, AE_ALERT_UNEXPECTED_MESSAGE, "handshake data after the ClientHello");
    }
    if (avail < rlen)
      return need_more(out, pos + REC_HDR + rlen);

    pos += REC_HDR + rlen;
    if (msg_total != 0 && hlen == msg_total) {
      int rc = parse_body(hs + HS_HDR, msg_total - HS_HDR, out);
      if (rc != AE_CH_OK)
        return rc;
      out->consumed = pos;
      return AE_CH_OK;
    }
    /* The rest of the message needs at least one more record header. */
    if (msg_total != 0 && pos + REC_HDR + (msg_total - hlen) > AE_CH_MAX_BYTES)
      return fail(out, AE_CH_TOO_BIG, AE_ALERT_DECODE_ERROR, "ClientHello records exceed the size limit");
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

const char *ae_tls_alert_name(uint8_t desc) {
  switch (desc) {
  case AE_ALERT_UNEXPECTED_MESSAGE:
    return "unexpected_message";
  case AE_ALERT_RECORD_OVERFLOW:
    return "record_overflow";
  case AE_ALERT_HANDSHAKE_FAILURE:
    return "handshake_failure";
  case AE_ALERT_ILLEGAL_PARAMETER:
    return "illegal_parameter";
  case AE_ALERT_DECODE_ERROR:
    return "decode_error";
  case AE_ALERT_PROTOCOL_VERSION:
    return "protocol_version";
  case AE_ALERT_INTERNAL_ERROR:
    return "internal_error";
  case AE_ALERT_UNRECOGNIZED_NAME:
    return "unrecognized_name";
  case AE_ALERT_NO_APPLICATION_PROTOCOL:
    return "no_application_protocol";
  default:
    return "alert";
  }
}
