/* Raw head scanner for the proxy: checks the bytes of a request or response head before llhttp
 * parses them (see proxy_int.h for what it rejects). A byte-at-a-time state machine, so a head may
 * arrive in any number of reads. In request mode it also checks the request line itself, because
 * llhttp 8.1 tolerates shapes (double SP, no version) that other parsers read differently. */
#include "proxy_int.h"

#include <string.h>

enum {
  S_LEAD = 0,   /* before the start line: empty lines (CRLF) are skipped */
  S_LEAD_CR,
  S_START,      /* start line (response mode) */
  S_START_CR,
  S_LINE,       /* beginning of a field line, or of the final empty line */
  S_NAME,
  S_VALUE,
  S_VALUE_CR,
  S_END_CR,
  S_METHOD,     /* request mode: method token */
  S_TARGET0,    /* first byte of the request target */
  S_TARGET,
  S_VERSION     /* "HTTP/" DIGIT "." DIGIT, then CR */
};

/* tchar of RFC 9110 §5.6.2. */
int ae_is_tchar(unsigned char c) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
    return 1;
  return c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

void ae_hscan_reset(ae_hscan *s, uint32_t max_bytes, uint32_t max_fields) {
  memset(s, 0, sizeof(*s));
  s->max_bytes = max_bytes;
  s->max_fields = max_fields;
  s->max_line = max_bytes;
  s->max_rline = max_bytes;
}

void ae_hscan_reset_req(ae_hscan *s, const ae_hlimits *lim) {
  ae_hscan_reset(s, lim->head_bytes, lim->fields);
  s->req = 1;
  s->max_line = lim->line_bytes;
  s->max_rline = lim->request_line_bytes;
}

static int hs_bad(ae_hscan *s, const char *why) {
  s->why = why;
  s->reason = s->st >= S_METHOD ? "request_line" : "header_syntax";
  return AE_HS_BAD;
}

/* Request-line states; returns 0 to go on or an AE_HS_* error. */
static int hs_request_line(ae_hscan *s, unsigned char c) {
  switch (s->st) {
  case S_METHOD:
    if (c == ' ') {
      s->st = S_TARGET0;
      return 0;
    }
    if (!ae_is_tchar(c))
      return hs_bad(s, c == '\r' || c == '\n' ? "request line without target" : "invalid method");
    /* Remember whether the method is exactly OPTIONS (the only one that may use "*"). */
    s->opt = (uint8_t)(s->mlen < 7 && "OPTIONS"[s->mlen] == c && (s->mlen == 0 || s->opt));
    s->mlen++;
    return 0;
  case S_TARGET0:
    if (c == ' ')
      return hs_bad(s, "more than one SP after the method");
    if (c <= 0x20 || c >= 0x7f)
      return hs_bad(s, "invalid request target");
    s->star = c == '*';
    s->st = S_TARGET;
    return 0;
  case S_TARGET:
    if (c == ' ') {
      s->st = S_VERSION;
      s->vpos = 0;
      return 0;
    }
    if (c == '\r' || c == '\n')
      return hs_bad(s, "request line without HTTP version");
    if (c < 0x20 || c >= 0x7f)
      return hs_bad(s, "invalid request target");
    s->star = 0;
    return 0;
  default: /* S_VERSION */
    if (s->vpos < 5) {
      if (c != (unsigned char)"HTTP/"[s->vpos])
        return hs_bad(s, c == ' ' ? "more than one SP before the version" : "invalid HTTP version");
    } else if (s->vpos == 5 || s->vpos == 7) {
      if (c < '0' || c > '9')
        return hs_bad(s, "invalid HTTP version");
      if (s->vpos == 5) {
        s->major = (uint8_t)(c - '0');
      } else {
        s->minor = (uint8_t)(c - '0');
        s->minor_at = s->bytes;
      }
    } else if (s->vpos == 6) {
      if (c != '.')
        return hs_bad(s, "invalid HTTP version");
    } else {
      if (c != '\r')
        return hs_bad(s, c == ' ' || c == '\t' ? "whitespace after the version" : "invalid HTTP version");
      if (s->major != 1) {
        if (s->major < 1)
          return hs_bad(s, "HTTP/0.x request");
        s->why = "HTTP major version not supported on HTTP/1 connections";
        s->reason = "version";
        return AE_HS_VERSION;
      }
      if (s->star && !(s->opt && s->mlen == 7))
        return hs_bad(s, "\"*\" target with a method other than OPTIONS");
      s->st = S_START_CR;
      return 0;
    }
    s->vpos++;
    return 0;
  }
}

int ae_hscan_feed(ae_hscan *s, const char *p, size_t n, size_t *used) {
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)p[i];
    if (++s->bytes > s->max_bytes) {
      s->why = "request head too large";
      s->reason = "header_too_large";
      if (s->st >= S_METHOD && s->line >= s->max_rline) {
        s->why = "request line too long";
        s->reason = "uri_too_long";
        return AE_HS_LONGLINE;
      }
      return AE_HS_TOOBIG;
    }
    if (c == 0)
      return hs_bad(s, "NUL in head");
    if (c != '\r' && c != '\n' && ++s->line > (s->st >= S_METHOD ? s->max_rline : s->max_line)) {
      if (s->st >= S_METHOD) {
        s->why = "request line too long";
        s->reason = "uri_too_long";
        return AE_HS_LONGLINE;
      }
      s->why = "header field line too long";
      s->reason = "header_too_large";
      return AE_HS_TOOBIG;
    }
    if (s->st >= S_METHOD) {
      int r = hs_request_line(s, c);
      if (r)
        return r;
      continue;
    }
    switch (s->st) {
    case S_LEAD:
      if (c == '\r') {
        s->st = S_LEAD_CR;
      } else if (c == '\n') {
        return hs_bad(s, "bare LF");
      } else if (s->req) {
        s->st = S_METHOD;
        s->line = 0;
        int r = hs_request_line(s, c);
        if (r)
          return r;
        s->line = 1;
      } else {
        s->st = S_START;
      }
      break;
    case S_LEAD_CR:
      if (c != '\n')
        return hs_bad(s, "bare CR");
      s->st = S_LEAD;
      s->line = 0;
      break;
    case S_START:
      if (c == '\r')
        s->st = S_START_CR;
      else if (c == '\n')
        return hs_bad(s, "bare LF");
      break;
    case S_START_CR:
      if (c != '\n')
        return hs_bad(s, "bare CR");
      s->st = S_LINE;
      s->line = 0;
      break;
    case S_LINE:
      if (c == '\r') {
        s->st = S_END_CR;
      } else if (c == ' ' || c == '\t') {
        return hs_bad(s, "obs-fold or whitespace at line start");
      } else if (c == '\n') {
        return hs_bad(s, "bare LF");
      } else if (c == ':') {
        return hs_bad(s, "empty field name");
      } else if (c < 0x20 || c == 0x7f) {
        return hs_bad(s, "control character in field name");
      } else if (s->req && !ae_is_tchar(c)) {
        return hs_bad(s, "field name is not a token");
      } else {
        if (++s->fields > s->max_fields) {
          s->why = "too many header fields";
          s->reason = "too_many_headers";
          return AE_HS_TOOMANY;
        }
        s->st = S_NAME;
      }
      break;
    case S_NAME:
      if (c == ':')
        s->st = S_VALUE;
      else if (c == ' ' || c == '\t')
        return hs_bad(s, "whitespace before colon");
      else if (c == '\r' || c == '\n')
        return hs_bad(s, "field line without colon");
      else if (c < 0x20 || c == 0x7f)
        return hs_bad(s, "control character in field name");
      else if (s->req && !ae_is_tchar(c))
        return hs_bad(s, "field name is not a token");
      break;
    case S_VALUE:
      if (c == '\r')
        s->st = S_VALUE_CR;
      else if (c == '\n')
        return hs_bad(s, "bare LF");
      else if ((c < 0x20 && c != '\t') || c == 0x7f)
        return hs_bad(s, "control character in field value");
      break;
    case S_VALUE_CR:
      if (c != '\n')
        return hs_bad(s, "bare CR");
      s->st = S_LINE;
      s->line = 0;
      break;
    case S_END_CR:
      if (c != '\n')
        return hs_bad(s, "bare CR");
      *used = i + 1;
      return AE_HS_DONE;
    default:
      return hs_bad(s, "scanner state");
    }
  }
  *used = n;
  return AE_HS_MORE;
}
