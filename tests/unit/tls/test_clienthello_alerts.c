/* One test per refusal row of the ClientHello peek: each input is an annotated byte array and the
 * test asserts the verdict and the fatal alert the front sends for it (docs/tls.md, "Alerts").
 * Every parse runs on a heap copy of exactly the bytes offered, so ASan catches reads past len. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "acmedge/clienthello.h"

static int parse_exact(const uint8_t *buf, size_t len, ae_clienthello *out) {
  uint8_t *copy = malloc(len ? len : 1);
  assert_non_null(copy);
  if (len)
    memcpy(copy, buf, len);
  int rc = ae_clienthello_parse(copy, len, out);
  free(copy);
  return rc;
}

/* Asserts the whole input is refused with alert, and that no prefix is refused differently. */
static void expect_alert(const uint8_t *buf, size_t len, uint8_t alert) {
  ae_clienthello ch;
  int rc = parse_exact(buf, len, &ch);
  if (rc != AE_CH_INVALID && rc != AE_CH_TOO_BIG)
    fail_msg("rc %d, want a refusal with %s", rc, ae_tls_alert_name(alert));
  if (ch.alert != alert)
    fail_msg("alert %s (%s), want %s", ae_tls_alert_name(ch.alert), ch.reason ? ch.reason : "-",
             ae_tls_alert_name(alert));
  assert_non_null(ch.reason);
  assert_int_equal(ch.has_sni, 0);
  for (size_t k = 0; k < len; k++) {
    int r = parse_exact(buf, k, &ch);
    if (r == AE_CH_NEED_MORE) {
      assert_true(ch.need > k && ch.need <= len);
      continue;
    }
    assert_true(r == AE_CH_INVALID || r == AE_CH_TOO_BIG);
    assert_int_equal(ch.alert, alert);
  }
}

static void expect_ok(const uint8_t *buf, size_t len, const char *sni) {
  ae_clienthello ch;
  int rc = parse_exact(buf, len, &ch);
  if (rc != AE_CH_OK)
    fail_msg("rc %d (%s, %s), want OK", rc, ae_tls_alert_name(ch.alert), ch.reason ? ch.reason : "-");
  assert_int_equal(ch.consumed, len);
  assert_int_equal(ch.has_sni, sni != NULL);
  if (sni)
    assert_string_equal(ch.sni, sni);
}

/* The fixed ClientHello start used by the rows below: version, random, empty session id, two
 * suites, null compression. 2 + 32 + 1 + 2 + 4 + 2 = 43 bytes. */
#define HELLO_FIXED                                                                                  \
  0x03, 0x03,                                                      /* legacy_version TLS 1.2 */     \
  1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, \
  28, 29, 30, 31, 32,                                              /* random */                     \
  0x00,                                                            /* session_id: empty */          \
  0x00, 0x04, 0x13, 0x01, 0xc0, 0x2f,                              /* cipher_suites: 2 */           \
  0x01, 0x00                                                       /* compression: null */

/* ---- decode_error: lengths ------------------------------------------------------------------ */

static void test_sni_list_length_mismatch(void **state) {
  (void)state;
  static const uint8_t in[] = {
      0x16, 0x03, 0x01, 0x00, 0x3f,  /* record: handshake, 63 bytes */
      0x01, 0x00, 0x00, 0x3b,        /* client_hello, 59 bytes */
      HELLO_FIXED,
      0x00, 0x0e,                    /* extensions: 14 bytes */
      0x00, 0x00, 0x00, 0x0a,        /* server_name, 10 bytes */
      0x00, 0x09,                    /* list length 9, but 8 bytes follow */
      0x00, 0x00, 0x05, 'a', '.', 'c', 'o', 'm'};
  expect_alert(in, sizeof(in), AE_ALERT_DECODE_ERROR);
}

static void test_sni_trailing_byte(void **state) {
  (void)state;
  static const uint8_t in[] = {
      0x16, 0x03, 0x01, 0x00, 0x40,  /* record: handshake, 64 bytes */
      0x01, 0x00, 0x00, 0x3c,        /* client_hello, 60 bytes */
      HELLO_FIXED,
      0x00, 0x0f,                    /* extensions: 15 bytes */
      0x00, 0x00, 0x00, 0x0b,        /* server_name, 11 bytes */
      0x00, 0x09,                    /* list: 9 bytes */
      0x00, 0x00, 0x05, 'a', '.', 'c', 'o', 'm',
      0x00};                         /* one byte more inside the list: an entry cut short */
  expect_alert(in, sizeof(in), AE_ALERT_DECODE_ERROR);
}

static void test_extension_overruns_block(void **state) {
  (void)state;
  static const uint8_t in[] = {
      0x16, 0x03, 0x01, 0x00, 0x35,  /* record: handshake, 53 bytes */
      0x01, 0x00, 0x00, 0x31,        /* client_hello, 49 bytes */
      HELLO_FIXED,
      0x00, 0x04,                    /* extensions: 4 bytes */
      0x00, 0x17, 0x00, 0x01};       /* extended_master_secret announcing 1 byte: none left */
  expect_alert(in, sizeof(in), AE_ALERT_DECODE_ERROR);
}

static void test_extensions_length_mismatch(void **state) {
  (void)state;
  static const uint8_t in[] = {
      0x16, 0x03, 0x01, 0x00, 0x35,  /* record: handshake, 53 bytes */
      0x01, 0x00, 0x00, 0x31,        /* client_hello, 49 bytes */
      HELLO_FIXED,
      0x00, 0x05,                    /* extensions: 5 bytes, but 4 follow */
      0x00, 0x17, 0x00, 0x00};
  expect_alert(in, sizeof(in), AE_ALERT_DECODE_ERROR);
}

static void test_single_trailing_byte(void **state) {
  (void)state;
  static const uint8_t in[] = {
      0x16, 0x03, 0x01, 0x00, 0x30,  /* record: handshake, 48 bytes */
      0x01, 0x00, 0x00, 0x2c,        /* client_hello, 44 bytes */
      HELLO_FIXED,
      0x00};                         /* one byte where the extensions length would be */
  expect_alert(in, sizeof(in), AE_ALERT_DECODE_ERROR);
}

static void test_cipher_suites_overlong(void **state) {
  (void)state;
  static const uint8_t in[] = {
      0x16, 0x03, 0x01, 0x00, 0x2b,  /* record: handshake, 43 bytes */
      0x01, 0x00, 0x00, 0x27,        /* client_hello, 39 bytes */
      0x03, 0x03,                    /* legacy_version */
      1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25,
      26, 27, 28, 29, 30, 31, 32,    /* random */
      0x00,                          /* session_id: empty */
      0x00, 0x10,                    /* cipher_suites: 16 bytes announced, 2 follow */
      0x13, 0x01};
  expect_alert(in, sizeof(in), AE_ALERT_DECODE_ERROR);
}

static void test_odd_cipher_suites(void **state) {
  (void)state;
  static const uint8_t in[] = {
      0x16, 0x03, 0x01, 0x00, 0x2e,  /* record: handshake, 46 bytes */
      0x01, 0x00, 0x00, 0x2a,        /* client_hello, 42 bytes */
      0x03, 0x03,
      1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25,
      26, 27, 28, 29, 30, 31, 32,
      0x00,
      0x00, 0x03, 0x13, 0x01, 0xc0,  /* cipher_suites: 3 bytes (odd) */
      0x01, 0x00};
  expect_alert(in, sizeof(in), AE_ALERT_DECODE_ERROR);
}

static void test_session_id_too_long(void **state) {
  (void)state;
  uint8_t in[5 + 4 + 2 + 32 + 1 + 33 + 4 + 2] = {
      0x16, 0x03, 0x01, 0x00, 4 + 2 + 32 + 1 + 33 + 4 + 2, /* record */
      0x01, 0x00, 0x00, 2 + 32 + 1 + 33 + 4 + 2,            /* client_hello */
      0x03, 0x03};
  in[5 + 4 + 2 + 32] = 33;                                  /* session_id: 33 bytes (max 32) */
  uint8_t *tail = in + 5 + 4 + 2 + 32 + 1 + 33;
  memcpy(tail, "\x00\x02\x13\x01\x01\x00", 6);              /* one suite, null compression */
  expect_alert(in, sizeof(in), AE_ALERT_DECODE_ERROR);
}

static void test_empty_compression(void **state) {
  (void)state;
  static const uint8_t in[] = {
      0x16, 0x03, 0x01, 0x00, 0x2c,  /* record: handshake, 44 bytes */
      0x01, 0x00, 0x00, 0x28,        /* client_hello, 40 bytes */
      0x03, 0x03,
      1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25,
      26, 27, 28, 29, 30, 31, 32,
      0x00,
      0x00, 0x02, 0x13, 0x01,        /* one suite */
      0x00};                         /* compression_methods: empty */
  expect_alert(in, sizeof(in), AE_ALERT_DECODE_ERROR);
}

static void test_empty_handshake_message(void **state) {
  (void)state;
  static const uint8_t in[] = {
      0x16, 0x03, 0x01, 0x00, 0x04,  /* record: handshake, 4 bytes */
      0x01, 0x00, 0x00, 0x00};       /* client_hello of length 0 */
  expect_alert(in, sizeof(in), AE_ALERT_DECODE_ERROR);
}

static void test_alpn_empty_name(void **state) {
  (void)state;
  static const uint8_t in[] = {
      0x16, 0x03, 0x01, 0x00, 0x3a,  /* record: handshake, 58 bytes */
      0x01, 0x00, 0x00, 0x36,        /* client_hello, 54 bytes */
      HELLO_FIXED,
      0x00, 0x09,                    /* extensions: 9 bytes */
      0x00, 0x10, 0x00, 0x05,        /* ALPN, 5 bytes */
      0x00, 0x03,                    /* list: 3 bytes */
      0x02, 'h', '2',
      /* nothing: the list above is fine; the next line breaks it */
  };
  /* Same hello with the protocol list "\x00\x02h2": an empty name first. */
  uint8_t bad[sizeof(in) + 1];
  memcpy(bad, in, sizeof(in));
  bad[4]++;                                      /* record one byte longer */
  bad[8]++;                                      /* client_hello one byte longer */
  bad[5 + 4 + 43 + 1]++;                         /* extensions block */
  bad[5 + 4 + 43 + 2 + 3]++;                     /* ALPN extension */
  bad[5 + 4 + 43 + 2 + 4 + 1]++;                 /* protocol list */
  memcpy(bad + 5 + 4 + 43 + 2 + 4 + 2, "\x00\x02h2", 4);
  expect_ok(in, sizeof(in), NULL);
  expect_alert(bad, sizeof(bad), AE_ALERT_DECODE_ERROR);
}

static void test_truncated_by_eof_needs_more(void **state) {
  (void)state;
  /* A hello cut short is not refused by the parser (more may come); the front sends
   * decode_error when the peer closes without completing it. */
  static const uint8_t in[] = {0x16, 0x03, 0x01, 0x00, 0x30, 0x01, 0x00, 0x00, 0x2c, 0x03};
  ae_clienthello ch;
  assert_int_equal(parse_exact(in, sizeof(in), &ch), AE_CH_NEED_MORE);
  assert_int_equal(ch.need, 5 + 0x30);
}

/* ---- illegal_parameter: values ---------------------------------------------------------------- */

/* A hello with one server_name list holding exactly name_bytes[0..n) as its list. */
static void sni_list_hello(const uint8_t *list, size_t n, uint8_t *out, size_t *outlen) {
  size_t ext = 2 + n, exts = 4 + ext, body = 43 + 2 + exts;
  size_t k = 0;
  out[k++] = 0x16, out[k++] = 0x03, out[k++] = 0x01;
  out[k++] = (uint8_t)((body + 4) >> 8), out[k++] = (uint8_t)(body + 4);
  out[k++] = 0x01, out[k++] = 0x00, out[k++] = (uint8_t)(body >> 8), out[k++] = (uint8_t)body;
  static const uint8_t fixed[] = {HELLO_FIXED};
  memcpy(out + k, fixed, sizeof(fixed));
  k += sizeof(fixed);
  out[k++] = (uint8_t)(exts >> 8), out[k++] = (uint8_t)exts;
  out[k++] = 0x00, out[k++] = 0x00, out[k++] = (uint8_t)(ext >> 8), out[k++] = (uint8_t)ext;
  out[k++] = (uint8_t)(n >> 8), out[k++] = (uint8_t)n;
  memcpy(out + k, list, n);
  *outlen = k + n;
}

static void expect_sni_list(const uint8_t *list, size_t n, int alert, const char *sni) {
  uint8_t in[1024];
  size_t len;
  sni_list_hello(list, n, in, &len);
  if (alert)
    expect_alert(in, len, (uint8_t)alert);
  else
    expect_ok(in, len, sni);
}

/* A hello whose host_name is not a DNS name is accepted with sni_invalid and the printable
 * rendition (the front answers it as a denied name), on every prefix only NEED_MORE. */
static void expect_sni_invalid(const uint8_t *list, size_t n, const char *shown, const char *fault) {
  uint8_t in[1024];
  size_t len;
  sni_list_hello(list, n, in, &len);
  ae_clienthello ch;
  int rc = parse_exact(in, len, &ch);
  if (rc != AE_CH_OK)
    fail_msg("rc %d (%s), want OK with an invalid SNI", rc, ch.reason ? ch.reason : "-");
  assert_int_equal(ch.has_sni, 0);
  assert_int_equal(ch.sni_invalid, 1);
  assert_string_equal(ch.sni, shown);
  assert_string_equal(ch.sni_fault, fault);
  for (size_t k = 0; k < len; k++)
    assert_int_equal(parse_exact(in, k, &ch), AE_CH_NEED_MORE);
}

/* Refused with illegal_parameter, the rendition kept for the denial event. */
static void expect_sni_refused(const uint8_t *list, size_t n, const char *shown, const char *fault) {
  expect_sni_list(list, n, AE_ALERT_ILLEGAL_PARAMETER, NULL);
  uint8_t in[1024];
  size_t len;
  sni_list_hello(list, n, in, &len);
  ae_clienthello ch;
  assert_int_equal(parse_exact(in, len, &ch), AE_CH_INVALID);
  assert_int_equal(ch.sni_invalid, 1);
  assert_string_equal(ch.sni, shown);
  assert_string_equal(ch.sni_fault, fault);
}

static void test_sni_bad_names(void **state) {
  (void)state;
  /* type 0 (host_name), length 5, then the name */
  static const uint8_t nul[] = {0x00, 0x00, 0x05, 'a', 0x00, '.', 'c', 'o'};  /* NUL */
  static const uint8_t bel[] = {0x00, 0x00, 0x05, 'a', 0x07, '.', 'c', 'o'};  /* BEL */
  static const uint8_t esc[] = {0x00, 0x00, 0x05, 0x1b, '[', '2', 'J', 'x'};  /* ESC [2J */
  static const uint8_t utf8[] = {0x00, 0x00, 0x05, 0xc3, 0xa9, '.', 'c', 'o'}; /* "é" */
  static const uint8_t space[] = {0x00, 0x00, 0x05, 'a', ' ', 'b', '.', 'c'}; /* space */
  static const uint8_t ip[] = {0x00, 0x00, 0x07, '1', '.', '2', '.', '3', '.', '4'}; /* IPv4 */
  /* Bytes GnuTLS refuses in a host_name: the peek refuses the hello, naming the value. */
  expect_sni_refused(nul, sizeof(nul), "a\\x00.co", "NUL byte");
  expect_sni_refused(bel, sizeof(bel), "a\\x07.co", "not an LDH name");
  expect_sni_refused(esc, sizeof(esc), "\\x1b[2jx", "not an LDH name");
  expect_sni_refused(utf8, sizeof(utf8), "\\xc3\\xa9.co", "not an LDH name");
  expect_sni_refused(space, sizeof(space), "a\\x20b.c", "not an LDH name");
  static const uint8_t ip6[] = {0x00, 0x00, 0x03, ':', ':', '1'};
  expect_sni_refused(ip6, sizeof(ip6), "::1", "IP literal");
  static const uint8_t star[] = {0x00, 0x00, 0x03, '*', '.', 'b'};
  expect_sni_refused(star, sizeof(star), "*.b", "not an LDH name");
  /* LDH bytes in a shape that is not a host name: accepted, flagged. */
  expect_sni_invalid(ip, sizeof(ip), "1.2.3.4", "IP literal");
  static const uint8_t dot[] = {0x00, 0x00, 0x04, 'a', '.', 'b', '.'};
  expect_sni_invalid(dot, sizeof(dot), "a.b.", "trailing dot");
  static const uint8_t dots[] = {0x00, 0x00, 0x04, 'a', '.', '.', 'b'};
  expect_sni_invalid(dots, sizeof(dots), "a..b", "empty label");
  /* An invalid host_name followed by a second host_name is still two host_names. */
  static const uint8_t two[] = {0x00, 0x00, 0x03, ':', ':', '1', 0x00, 0x00, 0x03, 'a', '.', 'b'};
  expect_sni_list(two, sizeof(two), AE_ALERT_ILLEGAL_PARAMETER, NULL);
}

static void test_sni_empty_list(void **state) {
  (void)state;
  expect_sni_list((const uint8_t *)"", 0, AE_ALERT_ILLEGAL_PARAMETER, NULL); /* list length 0 */
}

static void test_sni_two_host_names(void **state) {
  (void)state;
  static const uint8_t two[] = {0x00, 0x00, 0x03, 'a', '.', 'b',   /* host_name "a.b" */
                                0x00, 0x00, 0x03, 'c', '.', 'd'};  /* host_name "c.d" */
  expect_sni_list(two, sizeof(two), AE_ALERT_ILLEGAL_PARAMETER, NULL);
}

static void test_sni_unknown_type_after_host_name(void **state) {
  (void)state;
  static const uint8_t list[] = {0x00, 0x00, 0x03, 'a', '.', 'b',        /* host_name "a.b" */
                                 0x08, 0x00, 0x04, 0xde, 0xad, 0xbe, 0xef}; /* type 8: ignored */
  expect_sni_list(list, sizeof(list), 0, "a.b");
  static const uint8_t only[] = {0x08, 0x00, 0x01, 0x00};                /* type 8 alone */
  expect_sni_list(only, sizeof(only), 0, NULL);
}

static void test_sni_empty_name(void **state) {
  (void)state;
  static const uint8_t list[] = {0x00, 0x00, 0x00}; /* host_name of length 0: HostName<1..> */
  expect_sni_list(list, sizeof(list), AE_ALERT_DECODE_ERROR, NULL);
}

static void test_duplicate_extension(void **state) {
  (void)state;
  static const uint8_t in[] = {
      0x16, 0x03, 0x01, 0x00, 0x39,  /* record: handshake, 57 bytes */
      0x01, 0x00, 0x00, 0x35,        /* client_hello, 53 bytes */
      HELLO_FIXED,
      0x00, 0x08,                    /* extensions: 8 bytes */
      0x00, 0x17, 0x00, 0x00,        /* extended_master_secret */
      0x00, 0x17, 0x00, 0x00};       /* ... again */
  expect_alert(in, sizeof(in), AE_ALERT_ILLEGAL_PARAMETER);
}

/* ---- record layer ----------------------------------------------------------------------------- */

static void test_record_overflow(void **state) {
  (void)state;
  static const uint8_t in[] = {0x16, 0x03, 0x01, 0x40, 0x01}; /* handshake record of 2^14 + 1 */
  expect_alert(in, sizeof(in), AE_ALERT_RECORD_OVERFLOW);
  static const uint8_t max[] = {0x16, 0x03, 0x01, 0xff, 0xff}; /* 65535 */
  expect_alert(max, sizeof(max), AE_ALERT_RECORD_OVERFLOW);
}

static void test_unexpected_record_types(void **state) {
  (void)state;
  static const uint8_t appdata[] = {0x17, 0x03, 0x03, 0x00, 0x01, 0x00}; /* application_data */
  static const uint8_t ccs[] = {0x14, 0x03, 0x03, 0x00, 0x01, 0x01};     /* change_cipher_spec */
  static const uint8_t heartbeat[] = {0x18, 0x03, 0x03, 0x00, 0x03, 0x01, 0x00, 0x00};
  static const uint8_t http[] = {'G', 'E', 'T', ' ', '/'};               /* plain HTTP */
  static const uint8_t empty_rec[] = {0x16, 0x03, 0x01, 0x00, 0x00};     /* empty handshake */
  static const uint8_t server_hello[] = {0x16, 0x03, 0x03, 0x00, 0x04, 0x02, 0x00, 0x00, 0x00};
  expect_alert(appdata, sizeof(appdata), AE_ALERT_UNEXPECTED_MESSAGE);
  expect_alert(ccs, sizeof(ccs), AE_ALERT_UNEXPECTED_MESSAGE);
  expect_alert(heartbeat, sizeof(heartbeat), AE_ALERT_UNEXPECTED_MESSAGE);
  expect_alert(http, sizeof(http), AE_ALERT_UNEXPECTED_MESSAGE);
  expect_alert(empty_rec, sizeof(empty_rec), AE_ALERT_UNEXPECTED_MESSAGE);
  expect_alert(server_hello, sizeof(server_hello), AE_ALERT_UNEXPECTED_MESSAGE);
}

/* A change_cipher_spec record before or inside the ClientHello: RFC 8446 §5 allows dropping one
 * only after the ClientHello, so the peek refuses it (GnuTLS alone would drop it). */
static void test_change_cipher_spec_before_hello(void **state) {
  (void)state;
  static const uint8_t first[] = {
      0x14, 0x03, 0x03, 0x00, 0x01, 0x01,             /* change_cipher_spec */
      0x16, 0x03, 0x01, 0x00, 0x2f, 0x01, 0x00, 0x00, 0x2b, HELLO_FIXED}; /* a valid hello */
  expect_alert(first, sizeof(first), AE_ALERT_UNEXPECTED_MESSAGE);
  ae_clienthello ch;
  parse_exact(first, sizeof(first), &ch);
  assert_string_equal(ch.reason, "change_cipher_spec before the ClientHello");
  static const uint8_t inside[] = {
      0x16, 0x03, 0x01, 0x00, 0x04, 0x01, 0x00, 0x00, 0x2b, /* hello header alone */
      0x14, 0x03, 0x03, 0x00, 0x01, 0x01,                   /* change_cipher_spec */
      0x16, 0x03, 0x01, 0x00, 0x2b, HELLO_FIXED};           /* the hello body */
  expect_alert(inside, sizeof(inside), AE_ALERT_UNEXPECTED_MESSAGE);
  parse_exact(inside, sizeof(inside), &ch);
  assert_string_equal(ch.reason, "change_cipher_spec before the ClientHello");
}

static void test_data_after_hello_in_record(void **state) {
  (void)state;
  static const uint8_t in[] = {
      0x16, 0x03, 0x01, 0x00, 0x36,  /* record: handshake, 54 bytes = hello + 1 */
      0x01, 0x00, 0x00, 0x31,        /* client_hello, 49 bytes */
      HELLO_FIXED,
      0x00, 0x04, 0x00, 0x17, 0x00, 0x00,
      0x0f};                         /* the start of another handshake message */
  expect_alert(in, sizeof(in), AE_ALERT_UNEXPECTED_MESSAGE);
}

static void test_versions(void **state) {
  (void)state;
  static const uint8_t rec_v2[] = {0x16, 0x02, 0x00, 0x00, 0x10};        /* record version 2.0 */
  expect_alert(rec_v2, sizeof(rec_v2), AE_ALERT_PROTOCOL_VERSION);
  /* SSLv2-compatible ClientHello: 2-byte header with the top bit set, msg_type 1, version 3.1 */
  static const uint8_t sslv2[] = {0x80, 0x2e, 0x01, 0x03, 0x01, 0x00, 0x15, 0x00, 0x00, 0x00, 0x10};
  expect_alert(sslv2, sizeof(sslv2), AE_ALERT_PROTOCOL_VERSION);
  static const uint8_t hello_v4[] = {
      0x16, 0x03, 0x01, 0x00, 0x2f,  /* record */
      0x01, 0x00, 0x00, 0x2b,        /* client_hello, 43 bytes */
      0x04, 0x01,                    /* legacy_version 4.1 */
      1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25,
      26, 27, 28, 29, 30, 31, 32, 0x00, 0x00, 0x04, 0x13, 0x01, 0xc0, 0x2f, 0x01, 0x00};
  /* a version above every known one is negotiated down, not refused (RFC 5246 Appendix E.1) */
  expect_ok(hello_v4, sizeof(hello_v4), NULL);
  uint8_t hello_v2[sizeof(hello_v4)];
  memcpy(hello_v2, hello_v4, sizeof(hello_v4));
  hello_v2[9] = 0x02, hello_v2[10] = 0x00;                               /* legacy_version 2.0 */
  expect_alert(hello_v2, sizeof(hello_v2), AE_ALERT_PROTOCOL_VERSION);
  hello_v2[9] = 0xff, hello_v2[10] = 0xff;                               /* 255.255 */
  expect_ok(hello_v2, sizeof(hello_v2), NULL);
}

/* ---- accepted -------------------------------------------------------------------------------- */

static void test_one_byte_fragments(void **state) {
  (void)state;
  static const uint8_t msg[] = {
      0x01, 0x00, 0x00, 0x3b,        /* client_hello, 59 bytes */
      HELLO_FIXED,
      0x00, 0x0e, 0x00, 0x00, 0x00, 0x0a, 0x00, 0x08, 0x00, 0x00, 0x05, 'a', '.', 'c', 'o', 'm'};
  uint8_t rec[sizeof(msg) * 6];
  for (size_t i = 0; i < sizeof(msg); i++) { /* every byte in its own record */
    uint8_t *r = rec + 6 * i;
    r[0] = 0x16, r[1] = 0x03, r[2] = 0x01, r[3] = 0x00, r[4] = 0x01, r[5] = msg[i];
  }
  expect_ok(rec, sizeof(rec), "a.com");
  ae_clienthello ch;
  for (size_t k = 0; k < sizeof(rec); k++)
    assert_int_equal(parse_exact(rec, k, &ch), AE_CH_NEED_MORE);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_sni_list_length_mismatch),
      cmocka_unit_test(test_sni_trailing_byte),
      cmocka_unit_test(test_extension_overruns_block),
      cmocka_unit_test(test_extensions_length_mismatch),
      cmocka_unit_test(test_single_trailing_byte),
      cmocka_unit_test(test_cipher_suites_overlong),
      cmocka_unit_test(test_odd_cipher_suites),
      cmocka_unit_test(test_session_id_too_long),
      cmocka_unit_test(test_empty_compression),
      cmocka_unit_test(test_empty_handshake_message),
      cmocka_unit_test(test_alpn_empty_name),
      cmocka_unit_test(test_truncated_by_eof_needs_more),
      cmocka_unit_test(test_sni_bad_names),
      cmocka_unit_test(test_sni_empty_list),
      cmocka_unit_test(test_sni_two_host_names),
      cmocka_unit_test(test_sni_unknown_type_after_host_name),
      cmocka_unit_test(test_sni_empty_name),
      cmocka_unit_test(test_duplicate_extension),
      cmocka_unit_test(test_record_overflow),
      cmocka_unit_test(test_unexpected_record_types),
      cmocka_unit_test(test_change_cipher_spec_before_hello),
      cmocka_unit_test(test_data_after_hello_in_record),
      cmocka_unit_test(test_versions),
      cmocka_unit_test(test_one_byte_fragments),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
