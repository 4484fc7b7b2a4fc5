/* Unit tests for the PROXY protocol v2 parser with annotated headers: IPv4 and IPv6 PROXY, LOCAL,
 * TLVs skipped, every truncation point, wrong signature/version/command/family, lying lengths.
 * Each parse runs on a heap copy of exactly the bytes offered, so ASan catches reads past len. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include "acmedge/proxy_protocol.h"

#define SIG 0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A

/* PROXY, TCP over IPv4: 203.0.113.7:51234 -> 192.0.2.1:443, then a TLS record byte. */
static const uint8_t v4_proxy[] = {
    SIG,
    0x21,                   /* version 2, command PROXY */
    0x11,                   /* AF_INET, STREAM */
    0x00, 0x0C,             /* 12 bytes of addresses follow */
    203, 0, 113, 7,         /* source address */
    192, 0, 2, 1,           /* destination address */
    0xC8, 0x22,             /* source port 51234 */
    0x01, 0xBB,             /* destination port 443 */
    0x16,                   /* first byte of the client's ClientHello (not part of the header) */
};

/* PROXY, TCP over IPv6 with two TLVs (ALPN "h2", AWS VPC endpoint id "vpce-1"). */
static const uint8_t v6_proxy_tlv[] = {
    SIG,
    0x21,                   /* version 2, PROXY */
    0x21,                   /* AF_INET6, STREAM */
    0x00, 0x24 + 5 + 10,    /* 36 address bytes + TLV(3+2) + TLV(3+7) */
    0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x07, /* 2001:db8::7 */
    0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, /* 2001:db8::1 */
    0x30, 0x39,             /* source port 12345 */
    0x01, 0xBB,             /* destination port 443 */
    0x01, 0x00, 0x02, 'h', '2',              /* PP2_TYPE_ALPN */
    0xEA, 0x00, 0x07, 0x01, 'v', 'p', 'c', 'e', '-', '1', /* PP2_TYPE_AWS, subtype VPCE_ID */
};

/* LOCAL (a balancer health check): no addresses, the socket's peer stays. */
static const uint8_t local_hdr[] = {
    SIG,
    0x20,                   /* version 2, LOCAL */
    0x00,                   /* AF_UNSPEC, UNSPEC */
    0x00, 0x00,             /* no body */
};

static int parse_copy(const uint8_t *b, size_t len, ae_pp_header *h) {
  uint8_t *copy = malloc(len ? len : 1);
  memcpy(copy, b, len);
  int r = ae_pp_parse(copy, len, h);
  free(copy);
  return r;
}

static void test_v4(void **state) {
  (void)state;
  ae_pp_header h;
  assert_int_equal(parse_copy(v4_proxy, sizeof(v4_proxy), &h), AE_PP_OK);
  assert_int_equal(h.header_len, sizeof(v4_proxy) - 1);
  assert_int_equal(h.local, 0);
  assert_int_equal(h.has_addr, 1);
  const struct sockaddr_in *s = (const struct sockaddr_in *)&h.src;
  char ip[INET_ADDRSTRLEN];
  assert_int_equal(s->sin_family, AF_INET);
  inet_ntop(AF_INET, &s->sin_addr, ip, sizeof(ip));
  assert_string_equal(ip, "203.0.113.7");
  assert_int_equal(ntohs(s->sin_port), 51234);
  const struct sockaddr_in *d = (const struct sockaddr_in *)&h.dst;
  assert_int_equal(ntohs(d->sin_port), 443);
}

static void test_v6_with_tlvs(void **state) {
  (void)state;
  ae_pp_header h;
  assert_int_equal(parse_copy(v6_proxy_tlv, sizeof(v6_proxy_tlv), &h), AE_PP_OK);
  assert_int_equal(h.header_len, sizeof(v6_proxy_tlv));
  const struct sockaddr_in6 *s = (const struct sockaddr_in6 *)&h.src;
  char ip[INET6_ADDRSTRLEN];
  assert_int_equal(s->sin6_family, AF_INET6);
  inet_ntop(AF_INET6, &s->sin6_addr, ip, sizeof(ip));
  assert_string_equal(ip, "2001:db8::7");
  assert_int_equal(ntohs(s->sin6_port), 12345);
}

static void test_local(void **state) {
  (void)state;
  ae_pp_header h;
  assert_int_equal(parse_copy(local_hdr, sizeof(local_hdr), &h), AE_PP_OK);
  assert_int_equal(h.header_len, 16);
  assert_int_equal(h.local, 1);
  assert_int_equal(h.has_addr, 0);
}

/* Every strict prefix of a valid header is NEED_MORE, never OK or INVALID. */
static void test_every_truncation(void **state) {
  (void)state;
  ae_pp_header h;
  for (size_t n = 0; n < sizeof(v6_proxy_tlv); n++)
    assert_int_equal(parse_copy(v6_proxy_tlv, n, &h), AE_PP_NEED_MORE);
  for (size_t n = 0; n < sizeof(v4_proxy) - 1; n++)
    assert_int_equal(parse_copy(v4_proxy, n, &h), AE_PP_NEED_MORE);
}

static void test_wrong_signature(void **state) {
  (void)state;
  ae_pp_header h;
  /* A plain TLS ClientHello on a PROXY listener is refused on its first byte. */
  static const uint8_t tls[] = {0x16, 0x03, 0x01, 0x02, 0x00, 0x01};
  assert_int_equal(parse_copy(tls, sizeof(tls), &h), AE_PP_INVALID);
  /* PROXY protocol v1 (text) is not accepted. */
  static const char v1[] = "PROXY TCP4 203.0.113.7 192.0.2.1 51234 443\r\n";
  assert_int_equal(parse_copy((const uint8_t *)v1, sizeof(v1) - 1, &h), AE_PP_INVALID);
  /* Last signature byte wrong. */
  uint8_t b[sizeof(v4_proxy)];
  memcpy(b, v4_proxy, sizeof(b));
  b[11] = 0x0B;
  assert_int_equal(parse_copy(b, sizeof(b), &h), AE_PP_INVALID);
}

static void test_bad_fields(void **state) {
  (void)state;
  ae_pp_header h;
  uint8_t b[sizeof(v4_proxy)];
  memcpy(b, v4_proxy, sizeof(b));
  b[12] = 0x11; /* version 1 */
  assert_int_equal(parse_copy(b, sizeof(b), &h), AE_PP_INVALID);
  memcpy(b, v4_proxy, sizeof(b));
  b[12] = 0x22; /* command 2 is undefined */
  assert_int_equal(parse_copy(b, sizeof(b), &h), AE_PP_INVALID);
  memcpy(b, v4_proxy, sizeof(b));
  b[13] = 0x41; /* family 4 is undefined */
  assert_int_equal(parse_copy(b, sizeof(b), &h), AE_PP_INVALID);
  memcpy(b, v4_proxy, sizeof(b));
  b[13] = 0x12; /* UDP: not a TCP client */
  assert_int_equal(parse_copy(b, sizeof(b), &h), AE_PP_INVALID);
  memcpy(b, v4_proxy, sizeof(b));
  b[15] = 0x08; /* body shorter than an IPv4 address block */
  assert_int_equal(parse_copy(b, sizeof(b), &h), AE_PP_INVALID);
}

static void test_bad_tlv_and_size(void **state) {
  (void)state;
  ae_pp_header h;
  uint8_t b[sizeof(v6_proxy_tlv)];
  memcpy(b, v6_proxy_tlv, sizeof(b));
  b[16 + 36 + 2] = 0x03; /* ALPN TLV claims 3 bytes: the next TLV no longer fits */
  assert_int_equal(parse_copy(b, sizeof(b), &h), AE_PP_INVALID);
  uint8_t big[16];
  memcpy(big, v4_proxy, 16);
  big[14] = 0xFF; /* 65 KiB declared */
  big[15] = 0xFF;
  assert_int_equal(parse_copy(big, sizeof(big), &h), AE_PP_TOO_BIG);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_v4),
      cmocka_unit_test(test_v6_with_tlvs),
      cmocka_unit_test(test_local),
      cmocka_unit_test(test_every_truncation),
      cmocka_unit_test(test_wrong_signature),
      cmocka_unit_test(test_bad_fields),
      cmocka_unit_test(test_bad_tlv_and_size),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
