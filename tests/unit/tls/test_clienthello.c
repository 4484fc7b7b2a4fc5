/* Unit tests for the ClientHello parser: real captured hellos, programmatically built ones, and
 * truncated, split and hostile inputs. Every parse runs on a heap copy of exactly the bytes
 * offered, so AddressSanitizer catches any read past len. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "acmedge/clienthello.h"
#include "acmedge/common.h"

/* Captured from `gnutls-cli --sni-hostname=WWW.Example.Test --alpn=h2 --alpn=http/1.1` (GnuTLS
 * 3.7.9) connecting to a loopback listener: one record, TLS 1.3 with 1.2 fallback, mixed-case SNI. */
static const uint8_t gnutls_hello[] = {
    /* record: handshake(22), version 0x0301, length 411 */
    0x16, 0x03, 0x01, 0x01, 0x9b,
    /* handshake: client_hello(1), length 407 */
    0x01, 0x00, 0x01, 0x97,
    /* legacy_version 0x0303 */
    0x03, 0x03,
    /* random */
    0x2d, 0xff, 0x27, 0x89, 0x5c, 0xf2, 0x51, 0xf6, 0xf9, 0x9e, 0x68, 0x3f,
    0x80, 0xce, 0x8b, 0xbb, 0xda, 0x18, 0x2f, 0x2e, 0xa8, 0x9b, 0x09, 0xb7,
    0x30, 0xe8, 0xb0, 0x1d, 0x46, 0x52, 0xf7, 0x54,
    /* legacy_session_id, length 32 */
    0x20, 0x0c, 0xc7, 0xc2, 0xca, 0xab, 0x7f, 0x74, 0x31, 0x6c, 0x76, 0xb7,
    0x83, 0x0f, 0x4b, 0x57, 0x71, 0xd9, 0xbd, 0x35, 0x77, 0xfc, 0xc5, 0xe2,
    0x7e, 0x9d, 0xe0, 0xcd, 0x7a, 0x85, 0x3a, 0xbf, 0x3a,
    /* cipher_suites, length 58 (29 suites) */
    0x00, 0x3a, 0x13, 0x02, 0x13, 0x03, 0x13, 0x01, 0x13, 0x04, 0xc0, 0x2c,
    0xcc, 0xa9, 0xc0, 0xad, 0xc0, 0x0a, 0xc0, 0x2b, 0xc0, 0xac, 0xc0, 0x09,
    0xc0, 0x30, 0xcc, 0xa8, 0xc0, 0x14, 0xc0, 0x2f, 0xc0, 0x13, 0x00, 0x9d,
    0xc0, 0x9d, 0x00, 0x35, 0x00, 0x9c, 0xc0, 0x9c, 0x00, 0x2f, 0x00, 0x9f,
    0xcc, 0xaa, 0xc0, 0x9f, 0x00, 0x39, 0x00, 0x9e, 0xc0, 0x9e, 0x00, 0x33,
    /* compression_methods, length 1: null */
    0x01, 0x00,
    /* extensions, length 276 */
    0x01, 0x14,
    /* extension status_request(5), length 5 */
    0x00, 0x05, 0x00, 0x05, 0x01, 0x00, 0x00, 0x00, 0x00,
    /* extension supported_groups(10), length 22 */
    0x00, 0x0a, 0x00, 0x16, 0x00, 0x14, 0x00, 0x17, 0x00, 0x18, 0x00, 0x19,
    0x00, 0x1d, 0x00, 0x1e, 0x01, 0x00, 0x01, 0x01, 0x01, 0x02, 0x01, 0x03,
    0x01, 0x04,
    /* extension ec_point_formats(11), length 2 */
    0x00, 0x0b, 0x00, 0x02, 0x01, 0x00,
    /* extension signature_algorithms(13), length 34 */
    0x00, 0x0d, 0x00, 0x22, 0x00, 0x20, 0x04, 0x01, 0x08, 0x09, 0x08, 0x04,
    0x04, 0x03, 0x08, 0x07, 0x05, 0x01, 0x08, 0x0a, 0x08, 0x05, 0x05, 0x03,
    0x08, 0x08, 0x06, 0x01, 0x08, 0x0b, 0x08, 0x06, 0x06, 0x03, 0x02, 0x01,
    0x02, 0x03,
    /* extension application_layer_protocol_negotiation(16), length 14: "h2", "http/1.1" */
    0x00, 0x10, 0x00, 0x0e, 0x00, 0x0c, 0x02, 0x68, 0x32, 0x08, 0x68, 0x74,
    0x74, 0x70, 0x2f, 0x31, 0x2e, 0x31,
    /* extension encrypt_then_mac(22), length 0 */
    0x00, 0x16, 0x00, 0x00,
    /* extension extended_master_secret(23), length 0 */
    0x00, 0x17, 0x00, 0x00,
    /* extension session_ticket(35), length 0 */
    0x00, 0x23, 0x00, 0x00,
    /* extension key_share(51), length 107 */
    0x00, 0x33, 0x00, 0x6b, 0x00, 0x69, 0x00, 0x17, 0x00, 0x41, 0x04, 0xdd,
    0x6c, 0x8c, 0x64, 0x4e, 0x21, 0x9f, 0xd8, 0xe9, 0xb0, 0xb0, 0xff, 0x5b,
    0xfe, 0xc9, 0x3b, 0x2a, 0x6b, 0x2b, 0x06, 0x9f, 0x91, 0x3e, 0x04, 0xda,
    0x92, 0x1f, 0x11, 0x12, 0x22, 0x42, 0x32, 0x93, 0x64, 0xdc, 0x70, 0xb7,
    0x3c, 0x0b, 0x3e, 0xad, 0xea, 0xea, 0x64, 0x11, 0x73, 0xd9, 0xd6, 0x6b,
    0x0c, 0x7d, 0x27, 0xd0, 0x35, 0xa7, 0xba, 0x17, 0xd1, 0x14, 0x79, 0xe8,
    0xe6, 0xd3, 0x77, 0x00, 0x1d, 0x00, 0x20, 0xa8, 0xf8, 0x1c, 0xc4, 0xb0,
    0xff, 0x43, 0x32, 0x5e, 0x23, 0x7b, 0xcb, 0xab, 0xb8, 0x21, 0xa9, 0x73,
    0xed, 0x02, 0x2f, 0xe7, 0x69, 0xe9, 0x12, 0xe4, 0x0e, 0xf6, 0xdf, 0x43,
    0x37, 0x9f, 0x43,
    /* extension supported_versions(43), length 9 */
    0x00, 0x2b, 0x00, 0x09, 0x08, 0x03, 0x04, 0x03, 0x03, 0x03, 0x02, 0x03,
    0x01,
    /* extension renegotiation_info(65281), length 1 */
    0xff, 0x01, 0x00, 0x01, 0x00,
    /* extension server_name(0), length 21: list 19, host_name(0) len 16 "WWW.Example.Test" */
    0x00, 0x00, 0x00, 0x15, 0x00, 0x13, 0x00, 0x00, 0x10, 0x57, 0x57, 0x57,
    0x2e, 0x45, 0x78, 0x61, 0x6d, 0x70, 0x6c, 0x65, 0x2e, 0x54, 0x65, 0x73,
    0x74,
    /* extension psk_key_exchange_modes(45), length 3 */
    0x00, 0x2d, 0x00, 0x03, 0x02, 0x01, 0x00,
    /* extension record_size_limit(28), length 2 */
    0x00, 0x1c, 0x00, 0x02, 0x40, 0x01,
};

/* Captured from `openssl s_client -servername www.example.test -alpn http/1.1` (OpenSSL 3.0). */
static const uint8_t openssl_hello[] = {
    /* record: handshake(22), version 0x0301, length 332 */
    0x16, 0x03, 0x01, 0x01, 0x4c,
    /* handshake: client_hello(1), length 328 */
    0x01, 0x00, 0x01, 0x48,
    /* legacy_version 0x0303 */
    0x03, 0x03,
    /* random */
    0x21, 0x2d, 0x4f, 0xcd, 0x66, 0xe7, 0x7a, 0x2f, 0x5e, 0x4d, 0xb2, 0xa7,
    0xc9, 0xd1, 0xfe, 0x50, 0x12, 0xee, 0x0c, 0xf2, 0x87, 0xef, 0x95, 0x2d,
    0x2c, 0x66, 0xc2, 0x24, 0x73, 0x7c, 0xd5, 0xc9,
    /* legacy_session_id, length 32 */
    0x20, 0xa8, 0x1d, 0x75, 0xf2, 0xff, 0xf7, 0xef, 0x6f, 0x4b, 0x6c, 0xbe,
    0x1e, 0xb3, 0x9f, 0x67, 0x68, 0x8a, 0xdb, 0x50, 0x93, 0x3f, 0x4f, 0x14,
    0xe4, 0x96, 0xc2, 0x6b, 0xdf, 0x05, 0x05, 0x6b, 0x46,
    /* cipher_suites, length 62 (31 suites) */
    0x00, 0x3e, 0x13, 0x02, 0x13, 0x03, 0x13, 0x01, 0xc0, 0x2c, 0xc0, 0x30,
    0x00, 0x9f, 0xcc, 0xa9, 0xcc, 0xa8, 0xcc, 0xaa, 0xc0, 0x2b, 0xc0, 0x2f,
    0x00, 0x9e, 0xc0, 0x24, 0xc0, 0x28, 0x00, 0x6b, 0xc0, 0x23, 0xc0, 0x27,
    0x00, 0x67, 0xc0, 0x0a, 0xc0, 0x14, 0x00, 0x39, 0xc0, 0x09, 0xc0, 0x13,
    0x00, 0x33, 0x00, 0x9d, 0x00, 0x9c, 0x00, 0x3d, 0x00, 0x3c, 0x00, 0x35,
    0x00, 0x2f, 0x00, 0xff,
    /* compression_methods, length 1: null */
    0x01, 0x00,
    /* extensions, length 193 */
    0x00, 0xc1,
    /* extension server_name(0), length 21: list 19, host_name(0) len 16 "www.example.test" */
    0x00, 0x00, 0x00, 0x15, 0x00, 0x13, 0x00, 0x00, 0x10, 0x77, 0x77, 0x77,
    0x2e, 0x65, 0x78, 0x61, 0x6d, 0x70, 0x6c, 0x65, 0x2e, 0x74, 0x65, 0x73,
    0x74,
    /* extension ec_point_formats(11), length 4 */
    0x00, 0x0b, 0x00, 0x04, 0x03, 0x00, 0x01, 0x02,
    /* extension supported_groups(10), length 22 */
    0x00, 0x0a, 0x00, 0x16, 0x00, 0x14, 0x00, 0x1d, 0x00, 0x17, 0x00, 0x1e,
    0x00, 0x19, 0x00, 0x18, 0x01, 0x00, 0x01, 0x01, 0x01, 0x02, 0x01, 0x03,
    0x01, 0x04,
    /* extension session_ticket(35), length 0 */
    0x00, 0x23, 0x00, 0x00,
    /* extension application_layer_protocol_negotiation(16), length 11: "http/1.1" */
    0x00, 0x10, 0x00, 0x0b, 0x00, 0x09, 0x08, 0x68, 0x74, 0x74, 0x70, 0x2f,
    0x31, 0x2e, 0x31,
    /* extension encrypt_then_mac(22), length 0 */
    0x00, 0x16, 0x00, 0x00,
    /* extension extended_master_secret(23), length 0 */
    0x00, 0x17, 0x00, 0x00,
    /* extension signature_algorithms(13), length 42 */
    0x00, 0x0d, 0x00, 0x2a, 0x00, 0x28, 0x04, 0x03, 0x05, 0x03, 0x06, 0x03,
    0x08, 0x07, 0x08, 0x08, 0x08, 0x09, 0x08, 0x0a, 0x08, 0x0b, 0x08, 0x04,
    0x08, 0x05, 0x08, 0x06, 0x04, 0x01, 0x05, 0x01, 0x06, 0x01, 0x03, 0x03,
    0x03, 0x01, 0x03, 0x02, 0x04, 0x02, 0x05, 0x02, 0x06, 0x02,
    /* extension supported_versions(43), length 9 */
    0x00, 0x2b, 0x00, 0x09, 0x08, 0x03, 0x04, 0x03, 0x03, 0x03, 0x02, 0x03,
    0x01,
    /* extension psk_key_exchange_modes(45), length 2 */
    0x00, 0x2d, 0x00, 0x02, 0x01, 0x01,
    /* extension key_share(51), length 38 */
    0x00, 0x33, 0x00, 0x26, 0x00, 0x24, 0x00, 0x1d, 0x00, 0x20, 0xf7, 0xae,
    0xbc, 0xbd, 0x69, 0x45, 0x45, 0x2d, 0x49, 0x49, 0xf7, 0x51, 0xc3, 0x70,
    0x61, 0x2b, 0xf2, 0x59, 0xd5, 0xaa, 0x59, 0xc2, 0x1b, 0x0c, 0x7d, 0x6e,
    0xed, 0x78, 0x34, 0xfc, 0xc0, 0x46,
};

/* ---------- parsing helpers ---------- */

/* Parses a heap copy of exactly len bytes. */
static int parse_exact(const uint8_t *buf, size_t len, ae_clienthello *out) {
  uint8_t *copy = malloc(len ? len : 1);
  assert_non_null(copy);
  if (len)
    memcpy(copy, buf, len);
  int rc = ae_clienthello_parse(len ? copy : NULL, len, out);
  free(copy);
  return rc;
}

/* Every strict prefix needs more; the whole input parses with rc. */
static void assert_prefixes_need_more(const uint8_t *buf, size_t len, int rc_full) {
  ae_clienthello ch;
  for (size_t k = 0; k < len; k++) {
    int rc = parse_exact(buf, k, &ch);
    if (rc != AE_CH_NEED_MORE)
      fail_msg("prefix of %zu/%zu bytes: rc %d, want NEED_MORE", k, len, rc);
  }
  assert_int_equal(parse_exact(buf, len, &ch), rc_full);
}

/* ---------- a small ClientHello builder ---------- */

typedef struct buf {
  uint8_t b[3 * AE_CH_MAX_MSG + 8];
  size_t n;
} buf;

static void put8(buf *b, unsigned v) {
  assert_true(b->n + 1 <= sizeof(b->b));
  b->b[b->n++] = (uint8_t)v;
}
static void put16(buf *b, unsigned v) {
  put8(b, v >> 8);
  put8(b, v & 0xff);
}
static void put24(buf *b, unsigned v) {
  put8(b, (v >> 16) & 0xff);
  put16(b, v & 0xffff);
}
static void putn(buf *b, const void *p, size_t n) {
  assert_true(b->n + n <= sizeof(b->b));
  memcpy(b->b + b->n, p, n);
  b->n += n;
}
static void fill(buf *b, uint8_t v, size_t n) {
  assert_true(b->n + n <= sizeof(b->b));
  memset(b->b + b->n, v, n);
  b->n += n;
}

/* One extension: type, 16-bit length, data. */
static void ext_raw(buf *exts, unsigned type, const void *data, size_t n) {
  put16(exts, type);
  put16(exts, (unsigned)n);
  putn(exts, data, n);
}

/* A well-formed server_name extension with one host_name. */
static void ext_sni(buf *exts, const char *name) {
  size_t n = strlen(name);
  put16(exts, 0);
  put16(exts, (unsigned)(n + 5));
  put16(exts, (unsigned)(n + 3));
  put8(exts, 0);
  put16(exts, (unsigned)n);
  putn(exts, name, n);
}

/* SNI carrying name bytes with an explicit length (names with NUL). */
static void ext_sni_bytes(buf *exts, const void *name, size_t n) {
  put16(exts, 0);
  put16(exts, (unsigned)(n + 5));
  put16(exts, (unsigned)(n + 3));
  put8(exts, 0);
  put16(exts, (unsigned)n);
  putn(exts, name, n);
}

/* ALPN from a NULL-terminated list of names. */
static void ext_alpn(buf *exts, const char *const *protos) {
  buf l = {.n = 0};
  for (size_t i = 0; protos[i]; i++) {
    put8(&l, (unsigned)strlen(protos[i]));
    putn(&l, protos[i], strlen(protos[i]));
  }
  put16(exts, 16);
  put16(exts, (unsigned)(l.n + 2));
  put16(exts, (unsigned)l.n);
  putn(exts, l.b, l.n);
}

typedef struct hello_spec {
  unsigned version;     /* 0 => 0x0303 */
  int sid_len;          /* session id bytes */
  int cs_len;           /* cipher suite bytes; 0 => 4 (two suites) */
  int comp_len;         /* compression bytes; 0 => 1 */
  int no_cs;            /* send an empty cipher suite list */
  int no_comp;          /* send an empty compression list */
  const buf *exts;      /* NULL => no extensions block at all */
  int ext_len_delta;    /* added to the extensions block length */
} hello_spec;

/* Builds the handshake message (header + body). */
static void build_hello(buf *msg, const hello_spec *s) {
  buf body = {.n = 0};
  put16(&body, s->version ? s->version : 0x0303);
  fill(&body, 0xab, 32);
  put8(&body, (unsigned)s->sid_len);
  fill(&body, 0x5e, (size_t)s->sid_len);
  int cs = s->no_cs ? 0 : (s->cs_len ? s->cs_len : 4);
  put16(&body, (unsigned)cs);
  for (int i = 0; i < cs; i++)
    put8(&body, i & 1 ? 0x01 : 0x13);
  int comp = s->no_comp ? 0 : (s->comp_len ? s->comp_len : 1);
  put8(&body, (unsigned)comp);
  fill(&body, 0, (size_t)comp);
  if (s->exts) {
    put16(&body, (unsigned)((int)s->exts->n + s->ext_len_delta));
    putn(&body, s->exts->b, s->exts->n);
  }
  msg->n = 0;
  put8(msg, 1);
  put24(msg, (unsigned)body.n);
  putn(msg, body.b, body.n);
}

/* Wraps a handshake message into records of at most frag bytes. */
static void wrap(buf *out, const uint8_t *msg, size_t n, size_t frag) {
  out->n = 0;
  for (size_t off = 0; off < n; off += frag) {
    size_t m = n - off < frag ? n - off : frag;
    put8(out, 22);
    put16(out, 0x0301);
    put16(out, (unsigned)m);
    putn(out, msg + off, m);
  }
}

/* Builds a single-record hello with the given extensions. */
static void simple_hello(buf *rec, const buf *exts) {
  buf msg;
  hello_spec s = {.exts = exts};
  build_hello(&msg, &s);
  wrap(rec, msg.b, msg.n, 16384);
}

static int parse_exts(const buf *exts, ae_clienthello *ch) {
  static buf rec;
  simple_hello(&rec, exts);
  return parse_exact(rec.b, rec.n, ch);
}

static int parse_sni_name(const char *name, ae_clienthello *ch) {
  buf exts = {.n = 0};
  ext_sni(&exts, name);
  return parse_exts(&exts, ch);
}

/* ---------- tests ---------- */

static void test_real_gnutls(void **state) {
  (void)state;
  ae_clienthello ch;
  assert_int_equal(parse_exact(gnutls_hello, sizeof(gnutls_hello), &ch), AE_CH_OK);
  assert_true(ch.has_sni);
  assert_string_equal(ch.sni, "www.example.test"); /* lowercased */
  assert_int_equal(ch.nalpn, 2);
  assert_string_equal(ch.alpn[0], "h2");
  assert_string_equal(ch.alpn[1], "http/1.1");
  assert_true(ae_clienthello_has_alpn(&ch, "http/1.1"));
  assert_false(ae_clienthello_has_alpn(&ch, "acme-tls/1"));
  assert_int_equal(ch.legacy_version, 0x0303);
  assert_int_equal(ch.consumed, sizeof(gnutls_hello));
  assert_prefixes_need_more(gnutls_hello, sizeof(gnutls_hello), AE_CH_OK);
}

static void test_real_openssl(void **state) {
  (void)state;
  ae_clienthello ch;
  assert_int_equal(parse_exact(openssl_hello, sizeof(openssl_hello), &ch), AE_CH_OK);
  assert_string_equal(ch.sni, "www.example.test");
  assert_int_equal(ch.nalpn, 1);
  assert_string_equal(ch.alpn[0], "http/1.1");
  assert_int_equal(ch.consumed, sizeof(openssl_hello));
  assert_prefixes_need_more(openssl_hello, sizeof(openssl_hello), AE_CH_OK);
}

static void test_bytes_after_hello(void **state) {
  (void)state;
  /* A TLS 1.3 client may follow with change_cipher_spec / early data: consumed stops before it. */
  buf b = {.n = 0};
  putn(&b, gnutls_hello, sizeof(gnutls_hello));
  static const uint8_t ccs[] = {0x14, 0x03, 0x03, 0x00, 0x01, 0x01};
  putn(&b, ccs, sizeof(ccs));
  ae_clienthello ch;
  assert_int_equal(parse_exact(b.b, b.n, &ch), AE_CH_OK);
  assert_int_equal(ch.consumed, sizeof(gnutls_hello));
}

static void test_built_sni_alpn(void **state) {
  (void)state;
  buf exts = {.n = 0};
  static const uint8_t groups[] = {0x00, 0x04, 0x00, 0x1d, 0x00, 0x17};
  ext_raw(&exts, 10, groups, sizeof(groups));
  ext_sni(&exts, "Shop.Example.COM");
  ext_alpn(&exts, (const char *const[]){"acme-tls/1", "http/1.1", NULL});
  ae_clienthello ch;
  assert_int_equal(parse_exts(&exts, &ch), AE_CH_OK);
  assert_int_equal(ch.has_sni, 1);
  assert_int_equal(ch.sni_invalid, 0);
  assert_string_equal(ch.sni, "shop.example.com"); /* lowercased */
  assert_int_equal(ch.nalpn, 2);
  assert_true(ae_clienthello_has_alpn(&ch, "acme-tls/1"));
  assert_true(ae_clienthello_has_alpn(&ch, "http/1.1"));
  assert_false(ae_clienthello_has_alpn(&ch, "h2"));
  assert_false(ae_clienthello_has_alpn(NULL, "h2"));
}

/* RFC 6066 §3 sends host names "without a trailing dot": such a value is reported as not a DNS
 * name (the hello itself is fine), never served as the dotless name. */
static void test_sni_trailing_dot_invalid(void **state) {
  (void)state;
  ae_clienthello ch;
  assert_int_equal(parse_sni_name("Shop.Example.COM.", &ch), AE_CH_OK);
  assert_int_equal(ch.has_sni, 0);
  assert_int_equal(ch.sni_invalid, 1);
  assert_string_equal(ch.sni, "shop.example.com.");
  assert_string_equal(ch.sni_fault, "trailing dot");
}

static void test_no_sni(void **state) {
  (void)state;
  buf exts = {.n = 0};
  ext_alpn(&exts, (const char *const[]){"http/1.1", NULL});
  ae_clienthello ch;
  assert_int_equal(parse_exts(&exts, &ch), AE_CH_OK);
  assert_int_equal(ch.has_sni, 0);
  assert_string_equal(ch.sni, "");
  assert_int_equal(ch.nalpn, 1);

  /* TLS 1.2 allows no extensions block at all */
  buf msg, rec;
  hello_spec s = {.exts = NULL};
  build_hello(&msg, &s);
  wrap(&rec, msg.b, msg.n, 16384);
  assert_int_equal(parse_exact(rec.b, rec.n, &ch), AE_CH_OK);
  assert_int_equal(ch.has_sni, 0);
  assert_int_equal(ch.nalpn, 0);
  assert_int_equal(ch.consumed, rec.n);

  /* an empty extensions block */
  buf none = {.n = 0};
  assert_int_equal(parse_exts(&none, &ch), AE_CH_OK);
}

static void test_split_every_byte(void **state) {
  (void)state;
  buf exts = {.n = 0};
  ext_sni(&exts, "split.example.net");
  ext_alpn(&exts, (const char *const[]){"http/1.1", NULL});
  buf rec;
  simple_hello(&rec, &exts);
  assert_prefixes_need_more(rec.b, rec.n, AE_CH_OK);
}

static void test_split_records(void **state) {
  (void)state;
  buf exts = {.n = 0};
  ext_sni(&exts, "records.example.net");
  ext_alpn(&exts, (const char *const[]){"h2", "http/1.1", NULL});
  buf msg, rec;
  hello_spec s = {.sid_len = 32, .exts = &exts};
  build_hello(&msg, &s);
  static const size_t frags[] = {1, 2, 3, 4, 5, 7, 50, 100};
  for (size_t i = 0; i < AE_ARRAY_LEN(frags); i++) {
    wrap(&rec, msg.b, msg.n, frags[i]);
    ae_clienthello ch;
    assert_int_equal(parse_exact(rec.b, rec.n, &ch), AE_CH_OK);
    assert_string_equal(ch.sni, "records.example.net");
    assert_int_equal(ch.nalpn, 2);
    assert_int_equal(ch.consumed, rec.n);
    if (frags[i] >= 50)
      assert_prefixes_need_more(rec.b, rec.n, AE_CH_OK);
  }
  /* exactly two records: the handshake header alone, then the body */
  wrap(&rec, msg.b, 4, 4);
  buf two = rec;
  wrap(&rec, msg.b + 4, msg.n - 4, 16384);
  putn(&two, rec.b, rec.n);
  ae_clienthello ch;
  assert_prefixes_need_more(two.b, two.n, AE_CH_OK);
  assert_int_equal(parse_exact(two.b, two.n, &ch), AE_CH_OK);
  assert_int_equal(ch.consumed, two.n);
}

static void test_truncated_lengths(void **state) {
  (void)state;
  ae_clienthello ch;
  buf exts = {.n = 0};
  ext_sni(&exts, "a.example.com");
  buf msg, rec;

  /* extensions block length one too long / too short */
  hello_spec s = {.exts = &exts, .ext_len_delta = 1};
  build_hello(&msg, &s);
  wrap(&rec, msg.b, msg.n, 16384);
  assert_int_equal(parse_exact(rec.b, rec.n, &ch), AE_CH_INVALID);
  s.ext_len_delta = -1;
  build_hello(&msg, &s);
  wrap(&rec, msg.b, msg.n, 16384);
  assert_int_equal(parse_exact(rec.b, rec.n, &ch), AE_CH_INVALID);

  /* a single stray byte where the extensions length should be */
  hello_spec plain = {.exts = NULL};
  build_hello(&msg, &plain);
  put8(&msg, 0);
  msg.b[3]++; /* keep the handshake length consistent */
  wrap(&rec, msg.b, msg.n, 16384);
  assert_int_equal(parse_exact(rec.b, rec.n, &ch), AE_CH_INVALID);

  /* an extension whose length runs past the block */
  buf bad = {.n = 0};
  put16(&bad, 10);
  put16(&bad, 50);
  fill(&bad, 0, 4);
  assert_int_equal(parse_exts(&bad, &ch), AE_CH_INVALID);

  /* an extension header cut in half */
  bad.n = 0;
  put16(&bad, 10);
  put8(&bad, 0);
  assert_int_equal(parse_exts(&bad, &ch), AE_CH_INVALID);

  /* SNI name length past the list */
  bad.n = 0;
  put16(&bad, 0);
  put16(&bad, 9);
  put16(&bad, 7);
  put8(&bad, 0);
  put16(&bad, 10);
  putn(&bad, "abcd", 4);
  assert_int_equal(parse_exts(&bad, &ch), AE_CH_INVALID);

  /* SNI list length not matching the extension */
  bad.n = 0;
  put16(&bad, 0);
  put16(&bad, 8);
  put16(&bad, 7);
  put8(&bad, 0);
  put16(&bad, 3);
  putn(&bad, "a.b", 3);
  assert_int_equal(parse_exts(&bad, &ch), AE_CH_INVALID);

  /* handshake length shorter than the record: trailing bytes in the hello's record */
  hello_spec ok = {.exts = &exts};
  build_hello(&msg, &ok);
  msg.b[3] -= 2;
  wrap(&rec, msg.b, msg.n, 16384);
  assert_int_equal(parse_exact(rec.b, rec.n, &ch), AE_CH_INVALID);

  /* a complete, valid hello followed by more handshake bytes in the same record */
  build_hello(&msg, &ok);
  put16(&msg, 0x0b00);
  wrap(&rec, msg.b, msg.n, 16384);
  assert_int_equal(parse_exact(rec.b, rec.n, &ch), AE_CH_INVALID);

  /* handshake length longer than what came: waits for the next record */
  build_hello(&msg, &ok);
  msg.b[3] += 2;
  wrap(&rec, msg.b, msg.n, 16384);
  assert_int_equal(parse_exact(rec.b, rec.n, &ch), AE_CH_NEED_MORE);
  /* ... and when the next record arrives the body no longer parses */
  static const uint8_t more[] = {0x16, 0x03, 0x01, 0x00, 0x02, 0x00, 0x00};
  putn(&rec, more, sizeof(more));
  assert_int_equal(parse_exact(rec.b, rec.n, &ch), AE_CH_INVALID);

  /* body fields */
  hello_spec sid = {.sid_len = 33, .exts = &exts};
  build_hello(&msg, &sid);
  wrap(&rec, msg.b, msg.n, 16384);
  assert_int_equal(parse_exact(rec.b, rec.n, &ch), AE_CH_INVALID);
  hello_spec odd = {.cs_len = 5, .exts = &exts};
  build_hello(&msg, &odd);
  wrap(&rec, msg.b, msg.n, 16384);
  assert_int_equal(parse_exact(rec.b, rec.n, &ch), AE_CH_INVALID);
  hello_spec nocs = {.no_cs = 1, .exts = &exts};
  build_hello(&msg, &nocs);
  wrap(&rec, msg.b, msg.n, 16384);
  assert_int_equal(parse_exact(rec.b, rec.n, &ch), AE_CH_INVALID);
  hello_spec nocomp = {.no_comp = 1, .exts = &exts};
  build_hello(&msg, &nocomp);
  wrap(&rec, msg.b, msg.n, 16384);
  assert_int_equal(parse_exact(rec.b, rec.n, &ch), AE_CH_INVALID);
  hello_spec v2 = {.version = 0x0200, .exts = &exts};
  build_hello(&msg, &v2);
  wrap(&rec, msg.b, msg.n, 16384);
  assert_int_equal(parse_exact(rec.b, rec.n, &ch), AE_CH_INVALID);

  /* a body too short to hold the random */
  static const uint8_t tiny[] = {0x16, 0x03, 0x01, 0x00, 0x08, 0x01, 0x00, 0x00, 0x04, 0x03, 0x03, 0x00, 0x00};
  assert_int_equal(parse_exact(tiny, sizeof(tiny), &ch), AE_CH_INVALID);

  /* the real capture with its cipher suite length bumped by one: odd, and everything shifts */
  uint8_t mangled[sizeof(gnutls_hello)];
  memcpy(mangled, gnutls_hello, sizeof(mangled));
  mangled[5 + 4 + 2 + 32 + 33 + 1] += 1;
  assert_int_equal(parse_exact(mangled, sizeof(mangled), &ch), AE_CH_INVALID);
}

static void test_duplicates(void **state) {
  (void)state;
  ae_clienthello ch;
  buf exts = {.n = 0};
  ext_sni(&exts, "a.example.com");
  ext_sni(&exts, "b.example.com");
  assert_int_equal(parse_exts(&exts, &ch), AE_CH_INVALID);
  assert_int_equal(ch.has_sni, 0); /* nothing leaks out of a rejected hello */

  exts.n = 0;
  ext_sni(&exts, "a.example.com");
  ext_sni(&exts, "a.example.com");
  assert_int_equal(parse_exts(&exts, &ch), AE_CH_INVALID);

  static const uint8_t groups[] = {0x00, 0x02, 0x00, 0x1d};
  exts.n = 0;
  ext_raw(&exts, 10, groups, sizeof(groups));
  ext_sni(&exts, "a.example.com");
  ext_raw(&exts, 10, groups, sizeof(groups));
  assert_int_equal(parse_exts(&exts, &ch), AE_CH_INVALID);

  exts.n = 0;
  ext_alpn(&exts, (const char *const[]){"h2", NULL});
  ext_alpn(&exts, (const char *const[]){"http/1.1", NULL});
  assert_int_equal(parse_exts(&exts, &ch), AE_CH_INVALID);

  /* unknown and GREASE types are fine once each */
  exts.n = 0;
  ext_raw(&exts, 0x0a0a, "", 0);
  ext_raw(&exts, 0xfafa, "\0", 1);
  ext_raw(&exts, 0xffff, "", 0);
  ext_sni(&exts, "a.example.com");
  assert_int_equal(parse_exts(&exts, &ch), AE_CH_OK);
  exts.n = 0;
  ext_raw(&exts, 0xffff, "", 0);
  ext_raw(&exts, 0xffff, "", 0);
  assert_int_equal(parse_exts(&exts, &ch), AE_CH_INVALID);
}

static void test_sni_list_shape(void **state) {
  (void)state;
  ae_clienthello ch;
  buf exts = {.n = 0};

  /* two host_name entries in one list */
  put16(&exts, 0);
  put16(&exts, 2 + 2 * (3 + 3));
  put16(&exts, 2 * (3 + 3));
  put8(&exts, 0);
  put16(&exts, 3);
  putn(&exts, "a.b", 3);
  put8(&exts, 0);
  put16(&exts, 3);
  putn(&exts, "c.d", 3);
  assert_int_equal(parse_exts(&exts, &ch), AE_CH_INVALID);

  /* a non-host_name type alone: ignored, no SNI (RFC 6066 defines no other type) */
  exts.n = 0;
  put16(&exts, 0);
  put16(&exts, 2 + 3 + 11);
  put16(&exts, 3 + 11);
  put8(&exts, 1);
  put16(&exts, 11);
  putn(&exts, "example.com", 11);
  assert_int_equal(parse_exts(&exts, &ch), AE_CH_OK);
  assert_int_equal(ch.has_sni, 0);

  /* host_name followed by an entry of an unknown type: the host_name is used */
  exts.n = 0;
  put16(&exts, 0);
  put16(&exts, 2 + 3 + 11 + 3 + 4);
  put16(&exts, 3 + 11 + 3 + 4);
  put8(&exts, 0);
  put16(&exts, 11);
  putn(&exts, "example.com", 11);
  put8(&exts, 0x7f);
  put16(&exts, 4);
  putn(&exts, "\x01\x02\x03\x04", 4);
  assert_int_equal(parse_exts(&exts, &ch), AE_CH_OK);
  assert_int_equal(ch.has_sni, 1);
  assert_string_equal(ch.sni, "example.com");

  /* trailing bytes after the one entry, inside the list */
  exts.n = 0;
  put16(&exts, 0);
  put16(&exts, 2 + 3 + 11 + 2);
  put16(&exts, 3 + 11 + 2);
  put8(&exts, 0);
  put16(&exts, 11);
  putn(&exts, "example.com", 11);
  put16(&exts, 0);
  assert_int_equal(parse_exts(&exts, &ch), AE_CH_INVALID);

  /* trailing bytes after the list, inside the extension */
  exts.n = 0;
  put16(&exts, 0);
  put16(&exts, 2 + 3 + 11 + 1);
  put16(&exts, 3 + 11);
  put8(&exts, 0);
  put16(&exts, 11);
  putn(&exts, "example.com", 11);
  put8(&exts, 0);
  assert_int_equal(parse_exts(&exts, &ch), AE_CH_INVALID);

  /* empty extension, empty list, empty name */
  exts.n = 0;
  ext_raw(&exts, 0, "", 0);
  assert_int_equal(parse_exts(&exts, &ch), AE_CH_INVALID);
  exts.n = 0;
  ext_raw(&exts, 0, "\0\0", 2);
  assert_int_equal(parse_exts(&exts, &ch), AE_CH_INVALID);
  exts.n = 0;
  ext_sni_bytes(&exts, "", 0);
  assert_int_equal(parse_exts(&exts, &ch), AE_CH_INVALID);
}

/* A host_name that is not a DNS name: the hello is accepted, the name is flagged, never has_sni. */
static int name_refused(const ae_clienthello *ch) { return ch->sni_invalid == 1 && ch->has_sni == 0 && ch->sni_fault; }

/* LDH bytes only: the hello is accepted with the name flagged; any other byte (which GnuTLS
 * refuses too): the hello is refused with illegal_parameter, the name still flagged. */
static void expect_refused_name(const char *name) {
  ae_clienthello ch;
  int ldh = 1;
  for (const char *q = name; *q; q++)
    if (!((*q >= 'a' && *q <= 'z') || (*q >= 'A' && *q <= 'Z') || (*q >= '0' && *q <= '9') || *q == '-' || *q == '.'))
      ldh = 0;
  int rc = parse_sni_name(name, &ch);
  if (rc != (ldh ? AE_CH_OK : AE_CH_INVALID) || !name_refused(&ch))
    fail_msg("'%s' should be flagged as not a DNS name (rc %d)", name, rc);
  if (!ldh)
    assert_int_equal(ch.alert, AE_ALERT_ILLEGAL_PARAMETER);
}

static void test_dns_names(void **state) {
  (void)state;
  ae_clienthello ch;
  static const char *const good[] = {"a.example.com", "localhost", "xn--bcher-kva.example", "a-b.c-d.example",
                                     "1.2.3.com", "123.example", "EXAMPLE.COM"};
  for (size_t i = 0; i < AE_ARRAY_LEN(good); i++) {
    if (parse_sni_name(good[i], &ch) != AE_CH_OK)
      fail_msg("'%s' should be accepted", good[i]);
  }
  assert_string_equal(ch.sni, "example.com");

  static const char *const bad[] = {".", "..", ".example.com", "a..example.com", "example.com..", "-a.example.com",
                                    "a-.example.com", "a_b.example.com", "*.example.com", "a.*.com", "exa mple.com",
                                    "caf\xc3\xa9.example", "a/b.com", "a:443", "a.example.com\\", "EXAMPLE.COM."};
  for (size_t i = 0; i < AE_ARRAY_LEN(bad); i++)
    expect_refused_name(bad[i]);

  /* an embedded NUL */
  buf exts = {.n = 0};
  ext_sni_bytes(&exts, "evil.com\0.example.com", 21);
  assert_int_equal(parse_exts(&exts, &ch), AE_CH_INVALID);
  assert_true(name_refused(&ch));
  assert_string_equal(ch.sni, "evil.com\\x00.example.com");

  /* label and name length limits */
  char name[300];
  memset(name, 'a', 63);
  strcpy(name + 63, ".example");
  assert_int_equal(parse_sni_name(name, &ch), AE_CH_OK);
  memset(name, 'a', 64);
  strcpy(name + 64, ".example");
  expect_refused_name(name);

  /* 253 characters: 3 labels of 63 + 1 of 61 and 3 dots */
  size_t o = 0;
  for (int l = 0; l < 4; l++) {
    size_t ll = l < 3 ? 63 : 61;
    memset(name + o, 'b', ll);
    o += ll;
    if (l < 3)
      name[o++] = '.';
  }
  name[o] = '\0';
  assert_int_equal(strlen(name), 253);
  assert_int_equal(parse_sni_name(name, &ch), AE_CH_OK);
  assert_int_equal(strlen(ch.sni), 253);
  name[o] = '.';
  name[o + 1] = '\0';
  expect_refused_name(name); /* 253 + trailing dot */
  name[o] = 'b';
  expect_refused_name(name); /* 254 */
}

static void test_ip_literals(void **state) {
  (void)state;
  ae_clienthello ch;
  static const char *const ips[] = {"1.2.3.4", "127.0.0.1", "127.0.0.1.", "10.0.0.256", "::1", "[::1]",
                                    "2001:db8::1", "123"};
  for (size_t i = 0; i < AE_ARRAY_LEN(ips); i++)
    expect_refused_name(ips[i]);
  assert_int_equal(parse_sni_name("10.0.0.1", &ch), AE_CH_OK);
  assert_string_equal(ch.sni_fault, "IP literal");
}

static void test_alpn_shapes(void **state) {
  (void)state;
  ae_clienthello ch;
  buf exts = {.n = 0};

  /* an empty protocol name */
  exts.n = 0;
  put16(&exts, 16);
  put16(&exts, 2 + 1 + 2 + 1);
  put16(&exts, 1 + 2 + 1);
  put8(&exts, 2);
  putn(&exts, "h2", 2);
  put8(&exts, 0);
  assert_int_equal(parse_exts(&exts, &ch), AE_CH_INVALID);

  /* an empty list, and a missing list */
  exts.n = 0;
  ext_raw(&exts, 16, "\0\0", 2);
  assert_int_equal(parse_exts(&exts, &ch), AE_CH_INVALID);
  exts.n = 0;
  ext_raw(&exts, 16, "", 0);
  assert_int_equal(parse_exts(&exts, &ch), AE_CH_INVALID);

  /* a protocol length running past the list */
  exts.n = 0;
  put16(&exts, 16);
  put16(&exts, 2 + 3);
  put16(&exts, 3);
  put8(&exts, 5);
  putn(&exts, "h2", 2);
  assert_int_equal(parse_exts(&exts, &ch), AE_CH_INVALID);

  /* list length disagreeing with the extension */
  exts.n = 0;
  put16(&exts, 16);
  put16(&exts, 2 + 3);
  put16(&exts, 4);
  put8(&exts, 2);
  putn(&exts, "h2", 2);
  assert_int_equal(parse_exts(&exts, &ch), AE_CH_INVALID);

  /* too long to keep (64 bytes) is skipped, not fatal; 63 is kept */
  char p64[65], p63[64];
  memset(p64, 'x', 64);
  p64[64] = '\0';
  memset(p63, 'y', 63);
  p63[63] = '\0';
  exts.n = 0;
  ext_alpn(&exts, (const char *const[]){p64, "http/1.1", p63, NULL});
  assert_int_equal(parse_exts(&exts, &ch), AE_CH_OK);
  assert_int_equal(ch.nalpn, 2);
  assert_string_equal(ch.alpn[0], "http/1.1");
  assert_string_equal(ch.alpn[1], p63);

  /* a name with a NUL byte is skipped */
  exts.n = 0;
  put16(&exts, 16);
  put16(&exts, 2 + 4 + 3);
  put16(&exts, 4 + 3);
  put8(&exts, 3);
  putn(&exts, "h\0x", 3);
  put8(&exts, 2);
  putn(&exts, "h2", 2);
  assert_int_equal(parse_exts(&exts, &ch), AE_CH_OK);
  assert_int_equal(ch.nalpn, 1);
  assert_string_equal(ch.alpn[0], "h2");

  /* more than AE_CH_MAX_ALPN: the first ones are kept */
  const char *many[AE_CH_MAX_ALPN + 5];
  char store[AE_CH_MAX_ALPN + 4][8];
  for (int i = 0; i < AE_CH_MAX_ALPN + 4; i++) {
    snprintf(store[i], sizeof(store[i]), "p%d", i);
    many[i] = store[i];
  }
  many[AE_CH_MAX_ALPN + 4] = NULL;
  exts.n = 0;
  ext_alpn(&exts, many);
  assert_int_equal(parse_exts(&exts, &ch), AE_CH_OK);
  assert_int_equal(ch.nalpn, AE_CH_MAX_ALPN);
  assert_string_equal(ch.alpn[0], "p0");
  assert_string_equal(ch.alpn[AE_CH_MAX_ALPN - 1], store[AE_CH_MAX_ALPN - 1]);
}

static void test_too_big(void **state) {
  (void)state;
  ae_clienthello ch;
  /* a record longer than 2^14: record_overflow from its header */
  static const uint8_t big_rec[] = {0x16, 0x03, 0x01, 0x40, 0x01, 0x01, 0x00, 0x3f, 0xfc};
  assert_int_equal(parse_exact(big_rec, 4, &ch), AE_CH_NEED_MORE);
  assert_int_equal(parse_exact(big_rec, 5, &ch), AE_CH_INVALID);
  assert_int_equal(ch.alert, AE_ALERT_RECORD_OVERFLOW);

  /* a handshake header announcing more than AE_CH_MAX_MSG, in a small first record */
  static const uint8_t big_hs[] = {0x16, 0x03, 0x01, 0x00, 0x10, 0x01, 0x01, 0x00, 0x00, 0x03, 0x03};
  assert_int_equal(parse_exact(big_hs, 8, &ch), AE_CH_NEED_MORE);
  assert_int_equal(parse_exact(big_hs, 9, &ch), AE_CH_TOO_BIG);
  assert_int_equal(ch.alert, AE_ALERT_DECODE_ERROR);

  /* a genuinely large hello (60 KiB padding extension) spread over full-size records */
  buf exts = {.n = 0};
  ext_sni(&exts, "big.example.com");
  static uint8_t pad[AE_CH_MAX_MSG];
  ext_raw(&exts, 21, pad, 60000);
  buf msg;
  static buf rec;
  hello_spec s = {.exts = &exts};
  build_hello(&msg, &s);
  wrap(&rec, msg.b, msg.n, 16384);
  assert_int_equal(parse_exact(rec.b, rec.n, &ch), AE_CH_OK);
  assert_string_equal(ch.sni, "big.example.com");
  assert_int_equal(ch.consumed, rec.n);

  /* exactly AE_CH_MAX_MSG parses, one byte more does not (known from the handshake header) */
  exts.n = 0;
  ext_sni(&exts, "fits.example.com");
  ext_raw(&exts, 21, pad, 0);
  build_hello(&msg, &s);
  size_t fixed = msg.n; /* message size with an empty padding extension */
  exts.n = 0;
  ext_sni(&exts, "fits.example.com");
  ext_raw(&exts, 21, pad, AE_CH_MAX_MSG - fixed);
  build_hello(&msg, &s);
  assert_int_equal(msg.n, AE_CH_MAX_MSG);
  wrap(&rec, msg.b, msg.n, 16384);
  assert_int_equal(parse_exact(rec.b, rec.n, &ch), AE_CH_OK);
  assert_string_equal(ch.sni, "fits.example.com");
  exts.n = 0;
  ext_sni(&exts, "fits.example.com");
  ext_raw(&exts, 21, pad, AE_CH_MAX_MSG - fixed + 1);
  build_hello(&msg, &s);
  wrap(&rec, msg.b, msg.n, 16384);
  assert_int_equal(parse_exact(rec.b, 9, &ch), AE_CH_TOO_BIG);
  assert_int_equal(ch.alert, AE_ALERT_DECODE_ERROR);

  /* a 16 KiB hello in 8-byte fragments stays under AE_CH_MAX_BYTES; 2-byte fragments do not */
  exts.n = 0;
  ext_sni(&exts, "frag.example.com");
  ext_raw(&exts, 21, pad, 16000);
  build_hello(&msg, &s);
  wrap(&rec, msg.b, msg.n, 8);
  assert_true(rec.n <= AE_CH_MAX_BYTES);
  assert_int_equal(parse_exact(rec.b, rec.n, &ch), AE_CH_OK);
  assert_string_equal(ch.sni, "frag.example.com");
  exts.n = 0;
  ext_sni(&exts, "frag.example.com");
  ext_raw(&exts, 21, pad, 40000);
  build_hello(&msg, &s);
  wrap(&rec, msg.b, msg.n, 2);
  assert_true(rec.n > AE_CH_MAX_BYTES);
  assert_int_equal(parse_exact(rec.b, rec.n, &ch), AE_CH_TOO_BIG);
  assert_int_equal(ch.alert, AE_ALERT_DECODE_ERROR);
}

static void test_not_tls(void **state) {
  (void)state;
  ae_clienthello ch;
  static const char http[] = "GET / HTTP/1.1\r\nHost: example.com\r\n\r\n";
  assert_int_equal(parse_exact((const uint8_t *)http, strlen(http), &ch), AE_CH_INVALID);
  assert_int_equal(parse_exact((const uint8_t *)http, 1, &ch), AE_CH_INVALID); /* refused at once */

  /* SSLv2-compatible hello: high bit set in the first byte */
  static const uint8_t sslv2[] = {0x80, 0x2e, 0x01, 0x03, 0x01, 0x00, 0x15, 0x00, 0x00, 0x00, 0x10};
  assert_int_equal(parse_exact(sslv2, sizeof(sslv2), &ch), AE_CH_INVALID);

  /* handshake type with a non-3 major version */
  static const uint8_t badver[] = {0x16, 0x02, 0x00, 0x00, 0x10};
  assert_int_equal(parse_exact(badver, 2, &ch), AE_CH_INVALID);

  /* an alert instead of a handshake */
  static const uint8_t alert[] = {0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x28};
  assert_int_equal(parse_exact(alert, sizeof(alert), &ch), AE_CH_INVALID);

  /* a server hello (type 2) */
  static const uint8_t sh[] = {0x16, 0x03, 0x03, 0x00, 0x04, 0x02, 0x00, 0x00, 0x00};
  assert_int_equal(parse_exact(sh, 6, &ch), AE_CH_INVALID);

  /* a handshake message of length 0 */
  static const uint8_t empty_hs[] = {0x16, 0x03, 0x03, 0x00, 0x04, 0x01, 0x00, 0x00, 0x00};
  assert_int_equal(parse_exact(empty_hs, sizeof(empty_hs), &ch), AE_CH_INVALID);

  /* the hello's second record is not a handshake record */
  buf rec;
  buf exts = {.n = 0};
  ext_sni(&exts, "a.example.com");
  buf msg;
  hello_spec s = {.exts = &exts};
  build_hello(&msg, &s);
  wrap(&rec, msg.b, 20, 20);
  static const uint8_t appdata[] = {0x17, 0x03, 0x03, 0x00, 0x01, 0x00};
  putn(&rec, appdata, sizeof(appdata));
  assert_int_equal(parse_exact(rec.b, rec.n, &ch), AE_CH_INVALID);

  /* record length above 2^14 + 256 */
  static const uint8_t huge[] = {0x16, 0x03, 0x01, 0x41, 0x01};
  assert_int_equal(parse_exact(huge, sizeof(huge), &ch), AE_CH_INVALID);

  /* all zeros, all 0xff */
  uint8_t z[64];
  memset(z, 0, sizeof(z));
  assert_int_equal(parse_exact(z, sizeof(z), &ch), AE_CH_INVALID);
  memset(z, 0xff, sizeof(z));
  assert_int_equal(parse_exact(z, sizeof(z), &ch), AE_CH_INVALID);
}

static void test_zero_length_record(void **state) {
  (void)state;
  ae_clienthello ch;
  static const uint8_t zero[] = {0x16, 0x03, 0x01, 0x00, 0x00};
  assert_int_equal(parse_exact(zero, sizeof(zero), &ch), AE_CH_INVALID);
  /* an empty record between two fragments of a hello */
  buf exts = {.n = 0};
  ext_sni(&exts, "a.example.com");
  buf msg, rec;
  hello_spec s = {.exts = &exts};
  build_hello(&msg, &s);
  wrap(&rec, msg.b, 10, 10);
  putn(&rec, zero, sizeof(zero));
  assert_int_equal(parse_exact(rec.b, rec.n, &ch), AE_CH_INVALID);
}

static void test_empty_input(void **state) {
  (void)state;
  ae_clienthello ch;
  assert_int_equal(ae_clienthello_parse(NULL, 0, &ch), AE_CH_NEED_MORE);
  static const uint8_t one[] = {0x16};
  assert_int_equal(parse_exact(one, 1, &ch), AE_CH_NEED_MORE);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_real_gnutls),
      cmocka_unit_test(test_real_openssl),
      cmocka_unit_test(test_bytes_after_hello),
      cmocka_unit_test(test_built_sni_alpn),
      cmocka_unit_test(test_sni_trailing_dot_invalid),
      cmocka_unit_test(test_no_sni),
      cmocka_unit_test(test_split_every_byte),
      cmocka_unit_test(test_split_records),
      cmocka_unit_test(test_truncated_lengths),
      cmocka_unit_test(test_duplicates),
      cmocka_unit_test(test_sni_list_shape),
      cmocka_unit_test(test_dns_names),
      cmocka_unit_test(test_ip_literals),
      cmocka_unit_test(test_alpn_shapes),
      cmocka_unit_test(test_too_big),
      cmocka_unit_test(test_not_tls),
      cmocka_unit_test(test_zero_length_record),
      cmocka_unit_test(test_empty_input),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
