/* Unit tests for the per-client limits table: each limit, IPv6 grouping by /64, release of
 * connection slots, and that 100,000 distinct source addresses neither grow the table nor push
 * out a client that is still active. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include "acmedge/limits.h"

static struct sockaddr_storage v4(const char *ip) {
  struct sockaddr_storage ss;
  memset(&ss, 0, sizeof(ss));
  struct sockaddr_in *in = (struct sockaddr_in *)&ss;
  in->sin_family = AF_INET;
  assert_int_equal(inet_pton(AF_INET, ip, &in->sin_addr), 1);
  return ss;
}

static struct sockaddr_storage v6(const char *ip) {
  struct sockaddr_storage ss;
  memset(&ss, 0, sizeof(ss));
  struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
  in6->sin6_family = AF_INET6;
  assert_int_equal(inet_pton(AF_INET6, ip, &in6->sin6_addr), 1);
  return ss;
}

static ae_limits *mk(unsigned conns, unsigned hs, unsigned names, unsigned entries) {
  ae_limits_conf conf = {conns, hs, names, entries};
  ae_limits *l = NULL;
  ae_err err = {0};
  assert_int_equal(ae_limits_new(&conf, &l, &err), 0);
  return l;
}

#define SA(ss) ((const struct sockaddr *)&(ss))

static void test_connection_limit_and_release(void **state) {
  (void)state;
  ae_limits *l = mk(3, 0, 0, 1024);
  struct sockaddr_storage a = v4("127.0.0.2"), b = v4("127.0.0.3");
  uint32_t t[4];
  ae_limit_kind kind;
  for (int i = 0; i < 3; i++) {
    assert_int_equal(ae_limits_conn_open(l, SA(a), 1000, &t[i], &kind), 0);
    assert_int_not_equal(t[i], 0);
  }
  assert_int_equal(ae_limits_conn_open(l, SA(a), 1000, &t[3], &kind), AE_ELIMIT);
  assert_int_equal(kind, AE_LIMIT_CONNECTIONS);
  assert_int_equal(t[3], 0);
  /* Another client is unaffected. */
  uint32_t tb;
  assert_int_equal(ae_limits_conn_open(l, SA(b), 1000, &tb, &kind), 0);
  /* Closing one frees one slot, not more. */
  ae_limits_conn_close(l, t[0]);
  assert_int_equal(ae_limits_conn_open(l, SA(a), 1000, &t[0], &kind), 0);
  assert_int_equal(ae_limits_conn_open(l, SA(a), 1000, &t[3], &kind), AE_ELIMIT);
  ae_limits_free(l);
}

static void test_handshake_rate(void **state) {
  (void)state;
  ae_limits *l = mk(0, 5, 0, 1024);
  struct sockaddr_storage a = v4("192.0.2.1");
  uint32_t t;
  ae_limit_kind kind;
  for (int i = 0; i < 5; i++) {
    assert_int_equal(ae_limits_conn_open(l, SA(a), 10000 + (uint64_t)i, &t, &kind), 0);
    ae_limits_conn_close(l, t);
  }
  assert_int_equal(ae_limits_conn_open(l, SA(a), 10500, &t, &kind), AE_ELIMIT);
  assert_int_equal(kind, AE_LIMIT_HANDSHAKES);
  /* The next second starts a new window. */
  assert_int_equal(ae_limits_conn_open(l, SA(a), 11000, &t, &kind), 0);
  ae_limits_free(l);
}

static void test_new_names_per_minute(void **state) {
  (void)state;
  ae_limits *l = mk(0, 0, 4, 1024);
  struct sockaddr_storage a = v4("198.51.100.9"), b = v4("198.51.100.10");
  for (int i = 0; i < 4; i++)
    assert_int_equal(ae_limits_new_name(l, SA(a), 60000), 0);
  assert_int_equal(ae_limits_new_name(l, SA(a), 119999), AE_ELIMIT);
  assert_int_equal(ae_limits_new_name(l, SA(b), 119999), 0);
  assert_int_equal(ae_limits_new_name(l, SA(a), 120000), 0);
  ae_limits_free(l);
}

static void test_ipv6_grouped_by_64(void **state) {
  (void)state;
  ae_limits *l = mk(2, 0, 0, 1024);
  struct sockaddr_storage a = v6("2001:db8:1:2::1"), b = v6("2001:db8:1:2:ffff:1:2:3"),
                          c = v6("2001:db8:1:2::9"), d = v6("2001:db8:1:3::1");
  uint32_t t;
  ae_limit_kind kind;
  assert_int_equal(ae_limits_conn_open(l, SA(a), 0, &t, &kind), 0);
  assert_int_equal(ae_limits_conn_open(l, SA(b), 0, &t, &kind), 0);
  /* Same /64: the third address is the same client. */
  assert_int_equal(ae_limits_conn_open(l, SA(c), 0, &t, &kind), AE_ELIMIT);
  /* The neighbouring /64 is another client. */
  assert_int_equal(ae_limits_conn_open(l, SA(d), 0, &t, &kind), 0);
  ae_limits_free(l);
}

static void test_v4_mapped_is_v4(void **state) {
  (void)state;
  ae_limits *l = mk(1, 0, 0, 1024);
  struct sockaddr_storage a = v4("203.0.113.5"), m = v6("::ffff:203.0.113.5");
  uint32_t t;
  ae_limit_kind kind;
  assert_int_equal(ae_limits_conn_open(l, SA(a), 0, &t, &kind), 0);
  assert_int_equal(ae_limits_conn_open(l, SA(m), 0, &t, &kind), AE_ELIMIT);
  ae_limits_free(l);
}

/* 100,000 distinct addresses, each opening and closing once, while one client keeps its
 * connections open: the table's memory stays what it was at creation, the number of tracked
 * entries never exceeds its size, and the busy client is still limited afterwards. */
static void test_bounded_memory_under_many_addresses(void **state) {
  (void)state;
  const unsigned entries = 4096;
  ae_limits *l = mk(2, 1000000, 0, entries);
  size_t mem0 = ae_limits_memory(l);
  assert_true(mem0 > 0);
  assert_true(mem0 < 64u * entries + 4096);
  struct sockaddr_storage busy = v4("10.255.255.254");
  uint32_t tb1, tb2, t;
  ae_limit_kind kind;
  assert_int_equal(ae_limits_conn_open(l, SA(busy), 0, &tb1, &kind), 0);
  assert_int_equal(ae_limits_conn_open(l, SA(busy), 0, &tb2, &kind), 0);
  for (uint32_t i = 0; i < 100000; i++) {
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    struct sockaddr_in *in = (struct sockaddr_in *)&ss;
    in->sin_family = AF_INET;
    in->sin_addr.s_addr = htonl(0x0A000000u + i); /* 10.0.0.0 + i */
    assert_int_equal(ae_limits_conn_open(l, SA(ss), (uint64_t)i, &t, &kind), 0);
    ae_limits_conn_close(l, t);
  }
  assert_int_equal(ae_limits_memory(l), mem0);
  size_t tracked = ae_limits_tracked(l);
  assert_true(tracked <= entries);
  assert_true(tracked > entries / 2);
  /* An entry with open connections is never evicted: the busy client is still at its limit. */
  assert_int_equal(ae_limits_conn_open(l, SA(busy), 100000, &t, &kind), AE_ELIMIT);
  assert_int_equal(kind, AE_LIMIT_CONNECTIONS);
  ae_limits_conn_close(l, tb1);
  assert_int_equal(ae_limits_conn_open(l, SA(busy), 100000, &t, &kind), 0);
  ae_limits_conn_close(l, t);
  ae_limits_conn_close(l, tb2);
  ae_limits_free(l);
}

static void test_disabled_tracks_nothing(void **state) {
  (void)state;
  ae_limits *l = mk(0, 0, 0, 128);
  struct sockaddr_storage a = v4("127.0.0.1");
  uint32_t t;
  for (int i = 0; i < 1000; i++)
    assert_int_equal(ae_limits_conn_open(l, SA(a), 0, &t, NULL), 0);
  assert_int_equal(ae_limits_tracked(l), 0);
  assert_int_equal(ae_limits_new_name(l, SA(a), 0), 0);
  ae_limits_free(l);
}

static void test_bad_size(void **state) {
  (void)state;
  ae_limits_conf conf = {1, 0, 0, 1u << 25};
  ae_limits *l = NULL;
  ae_err err = {0};
  assert_int_equal(ae_limits_new(&conf, &l, &err), AE_EINVAL);
  assert_non_null(strstr(err.msg, "limits.table_entries"));
  assert_null(l);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_connection_limit_and_release),
      cmocka_unit_test(test_handshake_rate),
      cmocka_unit_test(test_new_names_per_minute),
      cmocka_unit_test(test_ipv6_grouped_by_64),
      cmocka_unit_test(test_v4_mapped_is_v4),
      cmocka_unit_test(test_bounded_memory_under_many_addresses),
      cmocka_unit_test(test_disabled_tracks_nothing),
      cmocka_unit_test(test_bad_size),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
