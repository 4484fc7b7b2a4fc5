/* Pure TLS ClientHello parser: extracts SNI and ALPN from buffered bytes without doing I/O, and
 * names the fatal alert a refused ClientHello must get. */
#ifndef ACMEDGE_CLIENTHELLO_H
#define ACMEDGE_CLIENTHELLO_H

#include <stddef.h>
#include <stdint.h>

/* Largest ClientHello handshake message accepted (4-byte header + body): room for post-quantum
 * key shares, many extensions and big padding. */
#define AE_CH_MAX_MSG 65536
/* Record bytes (headers included) that may carry it: the message in full-size records, plus slack
 * for a client that fragments it finely (about 4,000 extra records). */
#define AE_CH_MAX_BYTES (AE_CH_MAX_MSG + 20480)
#define AE_CH_MAX_ALPN 16

enum {
  AE_CH_OK = 0,          /* complete ClientHello parsed */
  AE_CH_NEED_MORE = 1,   /* valid so far, more bytes needed */
  AE_CH_INVALID = -1,    /* not TLS, malformed, or hostile: send out->alert */
  AE_CH_TOO_BIG = -2     /* exceeds AE_CH_MAX_MSG or AE_CH_MAX_BYTES: send out->alert */
};

/* TLS alert descriptions (RFC 8446 §6) the parser and the front answer with. */
enum {
  AE_ALERT_UNEXPECTED_MESSAGE = 10,
  AE_ALERT_RECORD_OVERFLOW = 22,
  AE_ALERT_HANDSHAKE_FAILURE = 40,
  AE_ALERT_ILLEGAL_PARAMETER = 47,
  AE_ALERT_DECODE_ERROR = 50,
  AE_ALERT_PROTOCOL_VERSION = 70,
  AE_ALERT_INTERNAL_ERROR = 80,
  AE_ALERT_UNRECOGNIZED_NAME = 112,
  AE_ALERT_NO_APPLICATION_PROTOCOL = 120
};

typedef struct ae_clienthello {
  char sni[256];                  /* lowercased host_name, "" when absent; with sni_invalid a
                                     printable rendition of the refused value */
  int has_sni;                    /* a host_name that is a DNS name */
  int sni_invalid;                /* a host_name that is not (has_sni stays 0); also set on an
                                     AE_CH_INVALID answer refusing the hello for that name */
  const char *sni_fault;          /* sni_invalid: static text naming the fault */
  char alpn[AE_CH_MAX_ALPN][64];  /* offered protocols in order (truncated entries are skipped) */
  int nalpn;
  uint16_t legacy_version;
  size_t consumed;                /* OK: bytes of records holding the ClientHello */
  size_t need;                    /* NEED_MORE: the verdict cannot change before len reaches this */
  uint8_t alert;                  /* INVALID/TOO_BIG: fatal alert description to send */
  const char *reason;             /* INVALID/TOO_BIG: static text naming the fault */
} ae_clienthello;

/* Parses buf[0..len) (TLS records from the start of the connection). Returns AE_CH_OK and fills
 * *out, AE_CH_NEED_MORE (out->need set), AE_CH_INVALID or AE_CH_TOO_BIG (out->alert and
 * out->reason set). Never reads past len; needs about AE_CH_MAX_MSG bytes of stack. */
int ae_clienthello_parse(const uint8_t *buf, size_t len, ae_clienthello *out);

/* Returns 1 when the ClientHello offered ALPN protocol proto. */
int ae_clienthello_has_alpn(const ae_clienthello *ch, const char *proto);

/* Returns the RFC name of a TLS alert description ("decode_error"), or "alert". Static string. */
const char *ae_tls_alert_name(uint8_t desc);

#endif
