/* Differential libFuzzer target: the same bytes go to the ClientHello peek and to a GnuTLS server
 * session reading from memory, and the run aborts when one accepts what the other refuses.
 *
 * "GnuTLS refuses" means it failed with a parse error (the codes in gnutls_parse_error below);
 * any other outcome (a server flight, or a negotiation failure such as no common cipher suite,
 * which it reaches only after parsing the whole ClientHello) counts as accepted. The session has
 * no certificate, so negotiation always ends early and no key is ever generated.
 *
 * The peek is stricter than GnuTLS on purpose in the rules listed in k_stricter (docs/tls.md,
 * "Where the peek is stricter than GnuTLS"); a refusal for one of those reasons is not a
 * disagreement. Everything else must match in both directions. */
#include <errno.h>
#include <gnutls/gnutls.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "acmedge/clienthello.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

typedef struct mem {
  const uint8_t *p;
  size_t left;
  size_t pushed; /* bytes of server flight GnuTLS wrote */
  gnutls_session_t s;
} mem;

static ssize_t mem_pull(gnutls_transport_ptr_t t, void *buf, size_t len) {
  mem *m = t;
  size_t n = len < m->left ? len : m->left;
  if (n == 0) { /* like a non-blocking socket with nothing more to read */
    gnutls_transport_set_errno(m->s, EAGAIN);
    return -1;
  }
  memcpy(buf, m->p, n);
  m->p += n;
  m->left -= n;
  return (ssize_t)n; /* 0 at the end: the peer closed */
}

static ssize_t mem_push(gnutls_transport_ptr_t t, const void *buf, size_t len) {
  mem *m = t;
  (void)buf;
  m->pushed += len;
  return (ssize_t)len;
}

static gnutls_certificate_credentials_t g_creds;
static gnutls_priority_t g_prio;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  if (gnutls_certificate_allocate_credentials(&g_creds) < 0 ||
      gnutls_priority_init(&g_prio, "NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2:%SERVER_PRECEDENCE", NULL) < 0)
    abort();
  return 0;
}

/* GnuTLS errors that mean "these bytes are not a well-formed ClientHello". */
static int gnutls_parse_error(int r) {
  switch (r) {
  case GNUTLS_E_UNEXPECTED_PACKET_LENGTH:
  case GNUTLS_E_UNEXPECTED_EXTENSIONS_LENGTH:
  case GNUTLS_E_RECORD_OVERFLOW:
  case GNUTLS_E_UNEXPECTED_PACKET:
  case GNUTLS_E_UNEXPECTED_HANDSHAKE_PACKET:
  case GNUTLS_E_UNSUPPORTED_VERSION_PACKET:
  case GNUTLS_E_RECEIVED_ILLEGAL_PARAMETER:
  case GNUTLS_E_RECEIVED_ILLEGAL_EXTENSION:
  case GNUTLS_E_HANDSHAKE_TOO_LARGE:
  case GNUTLS_E_RECEIVED_DISALLOWED_NAME:
  case GNUTLS_E_ILLEGAL_PARAMETER:
  case GNUTLS_E_UNKNOWN_COMPRESSION_ALGORITHM:
    return 1;
  default:
    return 0;
  }
}

/* Errors about what the peek checks completely: records and handshake framing (version
 * negotiation, GNUTLS_E_UNSUPPORTED_VERSION_PACKET, is GnuTLS's). */
static int framing_error(int r) {
  return r == GNUTLS_E_RECORD_OVERFLOW || r == GNUTLS_E_UNEXPECTED_PACKET ||
         r == GNUTLS_E_UNEXPECTED_HANDSHAKE_PACKET ||
         r == GNUTLS_E_HANDSHAKE_TOO_LARGE;
}

/* Returns 1 (accepted), 0 (refused: parse error), -1 (incomplete: GnuTLS wanted more bytes). */
static int gnutls_verdict(const uint8_t *data, size_t size, int *code) {
  gnutls_session_t s;
  mem m = {data, size, 0, NULL};
  if (gnutls_init(&s, GNUTLS_SERVER | GNUTLS_NONBLOCK | GNUTLS_NO_SIGNAL) < 0)
    abort();
  m.s = s;
  gnutls_priority_set(s, g_prio);
  gnutls_credentials_set(s, GNUTLS_CRD_CERTIFICATE, g_creds);
  gnutls_transport_set_ptr(s, &m);
  gnutls_transport_set_pull_function(s, mem_pull);
  gnutls_transport_set_push_function(s, mem_push);
  int r = gnutls_handshake(s);
  gnutls_deinit(s);
  *code = r;
  if (gnutls_parse_error(r))
    return 0;
  /* Waiting for more bytes is neither verdict: GnuTLS checks a record only once it is whole,
   * where the peek refuses as soon as a byte proves the input wrong. */
  if (r == GNUTLS_E_AGAIN && m.pushed > 0)
    return 1; /* answered with its flight and waits for the client's */
  if (r == GNUTLS_E_PREMATURE_TERMINATION || r == GNUTLS_E_PULL_ERROR || r == GNUTLS_E_AGAIN)
    return -1;
  return 1;
}

/* Rules in which the peek is deliberately stricter than GnuTLS (its reason texts). */
static const char *const k_stricter[] = {
    "server_name:",                       /* RFC 6066 §3 checks GnuTLS leaves to the application */
    "SSL 2.0",                            /* no SSLv2-compatible hellos */
    "empty handshake record",             /* RFC 5246 §6.2.1, RFC 8446 §5.1 */
    "handshake data after the ClientHello", /* RFC 8446 §5.1 */
    "ClientHello records exceed",         /* the peek's own size caps */
    "ClientHello longer than 64 KiB",
    "extension sent twice",               /* RFC 8446 §4.2, checked for every type */
    "ALPN:",                              /* RFC 7301 §3.1 list shape */
    "record version",                     /* legacy_record_version major must be 3 */
    "change_cipher_spec before",          /* RFC 8446 §5: dropped only after the ClientHello */
    NULL,
};

static int stricter(const char *reason) {
  for (int i = 0; reason && k_stricter[i]; i++)
    if (strncmp(reason, k_stricter[i], strlen(k_stricter[i])) == 0)
      return 1;
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static ae_clienthello ch;
  int rc = ae_clienthello_parse(data, size, &ch);
  if (rc == AE_CH_NEED_MORE)
    return 0; /* GnuTLS would be waiting too: nothing to compare */
  int code = 0;
  /* After an accepted hello only its own records go to GnuTLS: what follows is the client's
   * next flight, which the peek never looks at. */
  int g = gnutls_verdict(data, rc == AE_CH_OK ? ch.consumed : size, &code);
  if (g < 0)
    return 0;
  int peek_ok = rc == AE_CH_OK;
  /* The peek parses the record layer, the hello's fixed fields, SNI and ALPN; the other
   * extensions' insides are GnuTLS's to judge (it then sends the alert itself). So an accepted
   * hello that GnuTLS refuses is a disagreement only for a record/framing error. */
  if (peek_ok && g == 0 && framing_error(code)) {
    fprintf(stderr, "disagreement: peek accepts, GnuTLS refuses (%d: %s)\n", code, gnutls_strerror(code));
    abort();
  }
  if (!peek_ok && g == 1 && !stricter(ch.reason)) {
    fprintf(stderr, "disagreement: peek refuses (%s, %s), GnuTLS accepts (%d: %s)\n", ch.reason,
            ae_tls_alert_name(ch.alert), code, gnutls_strerror(code));
    abort();
  }
  return 0;
}
