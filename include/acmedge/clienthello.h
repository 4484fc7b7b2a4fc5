/* Pure TLS ClientHello parser: extracts SNI and ALPN from buffered bytes without doing I/O. */
#ifndef ACMEDGE_CLIENTHELLO_H
#define ACMEDGE_CLIENTHELLO_H

#include <stddef.h>
#include <stdint.h>

#define AE_CH_MAX_BYTES 16384  /* records carrying the ClientHello may not exceed this */
#define AE_CH_MAX_ALPN 16

enum {
  AE_CH_OK = 0,          /* complete ClientHello parsed */
  AE_CH_NEED_MORE = 1,   /* valid so far, more bytes needed */
  AE_CH_INVALID = -1,    /* not TLS, malformed, or hostile */
  AE_CH_TOO_BIG = -2     /* exceeds AE_CH_MAX_BYTES */
};

typedef struct ae_clienthello {
  char sni[256];                  /* lowercased host_name, "" when absent */
  int has_sni;
  char alpn[AE_CH_MAX_ALPN][64];  /* offered protocols in order (truncated entries are skipped) */
  int nalpn;
  uint16_t legacy_version;
  size_t consumed;                /* bytes of records holding the ClientHello */
} ae_clienthello;

/* Parses buf[0..len) (TLS records from the start of the connection). Returns AE_CH_OK and fills
 * *out, AE_CH_NEED_MORE, AE_CH_INVALID or AE_CH_TOO_BIG. Never reads past len. */
int ae_clienthello_parse(const uint8_t *buf, size_t len, ae_clienthello *out);

/* Returns 1 when the ClientHello offered ALPN protocol proto. */
int ae_clienthello_has_alpn(const ae_clienthello *ch, const char *proto);

#endif
