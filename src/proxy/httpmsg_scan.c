/* Raw head scanner for the proxy: checks the bytes of a request or response head before llhttp
 * parses them (see proxy_int.h for what it rejects). A byte-at-a-time state machine, so a head may
 * arrive in any number of reads. */
#include "proxy_int.h"

#include <string.h>

enum {
  S_LEAD = 0,   /* before the start line: empty lines (CRLF) are skipped */
  S_LEAD_CR,
  S_START,      /* start line */
  S_START_CR,
  S_LINE,       /* beginning of a field line, or of the final empty line */
  S_NAME,
  S_VALUE,
  S_VALUE_CR,
  S_END_CR
};

void ae_hscan_reset(ae_hscan *s, uint32_t max_bytes, uint32_t max_fields) {
  memset(s, 0, sizeof(*s));
  s->max_bytes = max_bytes;
  s->max_fields = max_fields;
}

static int hs_bad(ae_hscan *s, const char *why) {
  s->why = why;
  return AE_HS_BAD;
}

int ae_hscan_feed(ae_hscan *s, const char *p, size_t n, size_t *used) {
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)p[i];
    if (++s->bytes > s->max_bytes)
      return AE_HS_TOOBIG;
    if (c == 0)
      return hs_bad(s, "NUL in head");
    switch (s->st) {
    case S_LEAD:
      if (c == '\r')
        s->st = S_LEAD_CR;
      else if (c == '\n')
        return hs_bad(s, "bare LF");
      else
        s->st = S_START;
      break;
    case S_LEAD_CR:
      if (c != '\n')
        return hs_bad(s, "bare CR");
      s->st = S_LEAD;
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
      } else {
        if (++s->fields > s->max_fields)
          return AE_HS_TOOMANY;
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
