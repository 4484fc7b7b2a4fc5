/* Chunked body scanner for the proxy (RFC 9112 §7.1): the proxy's own decision of where a chunked
 * request ends. llhttp parses the same bytes afterwards and must agree, so a body that two parsers
 * could read differently (the root of request smuggling) is refused instead of forwarded.
 * A byte-at-a-time state machine (chunk data is skipped in bulk), so a body may arrive in any
 * number of reads. */
#include "proxy_int.h"

#include <string.h>

enum {
  C_SIZE0 = 0,  /* first hex digit of a chunk-size */
  C_SIZE,       /* further hex digits, then ';', BWS or CR */
  C_BWS,        /* BWS before ';' or '=' (inside chunk-ext) */
  C_NAME0,      /* after ';': BWS, then the first byte of chunk-ext-name */
  C_NAME,
  C_NAME_BWS,   /* BWS after a name: only '=' or ';' may follow */
  C_VAL0,       /* after '=': BWS, then a token or a quoted-string */
  C_VAL,        /* token value */
  C_QUOTED,
  C_QPAIR,      /* after a backslash inside a quoted-string */
  C_QEND,       /* after the closing quote */
  C_SIZE_LF,    /* CR of the chunk-size line seen */
  C_DATA,
  C_DATA_CR,    /* chunk-data done: CR must follow */
  C_DATA_LF,
  C_TLINE,      /* start of a trailer field line or of the final empty line */
  C_TNAME,
  C_TVALUE,
  C_TVALUE_LF,
  C_END_LF
};

void ae_cscan_reset(ae_cscan *s, uint32_t trailer_max, uint32_t ext_max) {
  memset(s, 0, sizeof(*s));
  s->trailer_max = trailer_max;
  s->ext_max = ext_max;
}

static int cs_bad(ae_cscan *s, const char *why) {
  s->why = why;
  s->reason = "chunk_framing";
  return AE_CS_BAD;
}

static int hexval(unsigned char c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  return -1;
}

/* qdtext / quoted-pair content of RFC 9110 §5.6.4 (HTAB, SP, VCHAR, obs-text; no DEL). */
static int qdtext(unsigned char c) { return c == '\t' || (c >= 0x20 && c != 0x7f); }

static int cs_ext_too_long(ae_cscan *s) {
  s->why = "chunk extensions too long";
  s->reason = "chunk_ext";
  return AE_CS_BAD;
}

/* End of a chunk-size line (CR seen): the next byte must be LF. */
static int size_line_end(ae_cscan *s) {
  s->st = C_SIZE_LF;
  return 0;
}

/* The chunk-size line states (size and extensions); returns 0 or AE_CS_BAD. */
static int cs_size_line(ae_cscan *s, unsigned char c) {
  if (s->st >= C_BWS && ++s->ext_bytes > s->ext_max)
    return cs_ext_too_long(s);
  switch (s->st) {
  case C_SIZE0:
  case C_SIZE: {
    int h = hexval(c);
    if (h >= 0) {
      if (++s->digits > AE_CHUNK_SIZE_DIGITS)
        return cs_bad(s, "chunk-size too long");
      if (s->sig || h) {
        /* 15 significant hex digits keep the size below 2^60: no overflow anywhere after. */
        if (++s->sig > 15)
          return cs_bad(s, "chunk-size too large");
        s->size = (s->size << 4) | (uint64_t)h;
      }
      s->st = C_SIZE;
      return 0;
    }
    if (s->st == C_SIZE0)
      return cs_bad(s, "chunk-size missing");
    if (c == '\r')
      return size_line_end(s);
    if (c == ';') {
      s->ext_bytes++;
      s->st = C_NAME0;
      return s->ext_bytes > s->ext_max ? cs_ext_too_long(s) : 0;
    }
    if (c == ' ' || c == '\t') {
      s->st = C_BWS;
      return ++s->ext_bytes > s->ext_max ? cs_ext_too_long(s) : 0;
    }
    return cs_bad(s, "invalid byte in chunk-size");
  }
  case C_BWS:
    if (c == ' ' || c == '\t')
      return 0;
    if (c == ';') {
      s->st = C_NAME0;
      return 0;
    }
    return cs_bad(s, "whitespace in chunk-size line not followed by an extension");
  case C_NAME0:
    if (c == ' ' || c == '\t')
      return 0;
    if (!ae_is_tchar(c))
      return cs_bad(s, "invalid chunk-ext-name");
    s->st = C_NAME;
    return 0;
  case C_NAME:
    if (ae_is_tchar(c))
      return 0;
    if (c == '=') {
      s->st = C_VAL0;
      return 0;
    }
    if (c == ';') {
      s->st = C_NAME0;
      return 0;
    }
    if (c == '\r')
      return size_line_end(s);
    if (c == ' ' || c == '\t') {
      s->st = C_NAME_BWS;
      return 0;
    }
    return cs_bad(s, "invalid byte in chunk-ext-name");
  case C_NAME_BWS:
    if (c == ' ' || c == '\t')
      return 0;
    if (c == '=') {
      s->st = C_VAL0;
      return 0;
    }
    if (c == ';') {
      s->st = C_NAME0;
      return 0;
    }
    return cs_bad(s, "whitespace after chunk-ext-name");
  case C_VAL0:
    if (c == ' ' || c == '\t')
      return 0;
    if (c == '"') {
      s->st = C_QUOTED;
      return 0;
    }
    if (!ae_is_tchar(c))
      return cs_bad(s, "invalid chunk-ext-val");
    s->st = C_VAL;
    return 0;
  case C_VAL:
  case C_QEND:
    if (s->st == C_VAL && ae_is_tchar(c))
      return 0;
    if (c == ';') {
      s->st = C_NAME0;
      return 0;
    }
    if (c == ' ' || c == '\t') {
      s->st = C_BWS;
      return 0;
    }
    if (c == '\r')
      return size_line_end(s);
    return cs_bad(s, "invalid byte after chunk-ext-val");
  case C_QUOTED:
    if (c == '"')
      s->st = C_QEND;
    else if (c == '\\')
      s->st = C_QPAIR;
    else if (!qdtext(c))
      return cs_bad(s, "control character in quoted chunk-ext-val");
    return 0;
  case C_QPAIR:
    if (!qdtext(c))
      return cs_bad(s, "control character in quoted chunk-ext-val");
    s->st = C_QUOTED;
    return 0;
  default:
    return cs_bad(s, "chunk scanner state");
  }
}

int ae_cscan_feed(ae_cscan *s, const char *p, size_t n, size_t *used) {
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)p[i];
    switch (s->st) {
    case C_SIZE_LF:
      if (c != '\n')
        return cs_bad(s, "chunk-size line not ended by CRLF");
      if (s->on_size)
        s->on_size(s->ud, s->size);
      if (s->size == 0) {
        s->st = C_TLINE;
      } else {
        s->left = s->size;
        s->st = C_DATA;
      }
      break;
    case C_DATA: {
      size_t take = n - i;
      if (take > s->left)
        take = (size_t)s->left;
      s->left -= take;
      s->data_bytes += take;
      if (s->on_data)
        s->on_data(s->ud, p + i, take);
      i += take - 1;
      if (s->left == 0)
        s->st = C_DATA_CR;
      break;
    }
    case C_DATA_CR:
      if (c != '\r')
        return cs_bad(s, "chunk data not followed by CRLF");
      s->st = C_DATA_LF;
      break;
    case C_DATA_LF:
      if (c != '\n')
        return cs_bad(s, "chunk data not followed by CRLF");
      if (s->on_chunk_end)
        s->on_chunk_end(s->ud);
      s->st = C_SIZE0;
      s->size = 0;
      s->sig = s->digits = 0;
      break;
    case C_TLINE:
    case C_TNAME:
    case C_TVALUE:
    case C_TVALUE_LF:
    case C_END_LF:
      if (++s->trailer_bytes > s->trailer_max) {
        s->why = "trailer section too large";
        s->reason = "header_too_large";
        return AE_CS_TOOBIG;
      }
      if (s->st == C_TLINE) {
        if (c == '\r')
          s->st = C_END_LF;
        else if (ae_is_tchar(c))
          s->st = C_TNAME;
        else
          return cs_bad(s, c == ' ' || c == '\t' ? "obs-fold in trailer section" : "invalid trailer field");
      } else if (s->st == C_TNAME) {
        if (c == ':')
          s->st = C_TVALUE;
        else if (!ae_is_tchar(c))
          return cs_bad(s, "invalid trailer field name");
      } else if (s->st == C_TVALUE) {
        if (c == '\r')
          s->st = C_TVALUE_LF;
        else if ((c < 0x20 && c != '\t') || c == 0x7f)
          return cs_bad(s, "control character in trailer field");
      } else if (s->st == C_TVALUE_LF) {
        if (c != '\n')
          return cs_bad(s, "bare CR in trailer section");
        s->st = C_TLINE;
      } else {
        if (c != '\n')
          return cs_bad(s, "bare CR at the end of the chunked body");
        *used = i + 1;
        return AE_CS_DONE;
      }
      break;
    default: {
      int r = cs_size_line(s, c);
      if (r)
        return r;
      break;
    }
    }
  }
  *used = n;
  return AE_CS_MORE;
}
