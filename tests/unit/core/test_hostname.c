/* SNI host-name check (ae_hostname_sni_check) for each hostile class the front answers as
 * domain_denied invalid_name, and the printable rendition used for logs and events. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <string.h>

#include "acmedge/hostname.h"

static void expect_fault(const void *name, size_t n, const char *fault) {
  const char *why = "unset";
  int rc = ae_hostname_sni_check(name, n, &why);
  if (rc != -1 || !why || strcmp(why, fault) != 0)
    fail_msg("'%.*s': rc %d fault '%s', want '%s'", (int)n, (const char *)name, rc, why ? why : "(null)", fault);
}

static void expect_ok(const char *name) {
  const char *why = "unset";
  if (ae_hostname_sni_check((const unsigned char *)name, strlen(name), &why) != 0 || why != NULL)
    fail_msg("'%s' refused: %s", name, why ? why : "(null)");
}

#define FAULT(lit, fault) expect_fault(lit, sizeof(lit) - 1, fault)

static void test_valid_names(void **state) {
  (void)state;
  expect_ok("a.test");
  expect_ok("WWW.Example.COM");
  expect_ok("xn--bcher-kva.example");
  expect_ok("localhost"); /* one label: the policy decides, not the shape */
  expect_ok("1a.2b.example");
  expect_ok("a.1b"); /* a top-level label with a letter */
  char label63[64 + 7];
  memset(label63, 'a', 63);
  memcpy(label63 + 63, ".test", 6);
  expect_ok(label63);
  char n253[254];
  for (int i = 0; i < 253; i++)
    n253[i] = (i % 2) ? '.' : 'a';
  n253[253] = '\0';
  expect_ok(n253);
}

static void test_hostile_names(void **state) {
  (void)state;
  expect_fault("", 0, "empty");
  expect_fault(NULL, 3, "empty");
  FAULT("a.test.", "trailing dot");
  FAULT(".", "trailing dot");
  FAULT("a..b", "empty label");
  FAULT(".a.b", "empty label");
  FAULT("-a.test", "hyphen at a label edge");
  FAULT("a-.test", "hyphen at a label edge");
  FAULT("a_b.test", "not an LDH name");
  FAULT("*.test", "not an LDH name");
  FAULT("a b.test", "not an LDH name");
  FAULT("a\x00" "b.test", "NUL byte");
  FAULT("\xc3\xa9.test", "not an LDH name");
  FAULT("a:443", "not an LDH name");
  FAULT("127.0.0.1", "IP literal");
  FAULT("127.1", "IP literal");
  FAULT("a.b.123", "all-digit top-level label");
  FAULT("::1", "IP literal");
  FAULT("fe80::1%eth0", "IP literal");
  FAULT("[::1]", "IP literal");
  char label64[64 + 6];
  memset(label64, 'a', 64);
  memcpy(label64 + 64, ".test", 5);
  expect_fault(label64, 69, "label longer than 63 bytes");
  char n254[254];
  for (int i = 0; i < 254; i++)
    n254[i] = (i % 2) ? '.' : 'a';
  n254[253] = 'b';
  expect_fault(n254, 254, "longer than 253 bytes");
  /* why may be NULL */
  assert_int_equal(ae_hostname_sni_check((const unsigned char *)"a..b", 4, NULL), -1);
}

static void test_printable(void **state) {
  (void)state;
  char out[256];
  ae_hostname_printable((const unsigned char *)"A\x00" "b\\.T\xff", 7, out, sizeof(out));
  assert_string_equal(out, "a\\x00b\\x5c.t\\xff");
  /* 300 bytes do not fit: cut with "...", never past the buffer. */
  unsigned char big[300];
  memset(big, 'x', sizeof(big));
  ae_hostname_printable(big, sizeof(big), out, sizeof(out));
  assert_int_equal(strlen(out), 255);
  assert_memory_equal(out + 252, "...", 3);
  char small[8];
  ae_hostname_printable((const unsigned char *)"\x01\x02\x03", 3, small, sizeof(small));
  assert_string_equal(small, "\\x01...");
  ae_hostname_printable((const unsigned char *)"abcdefg", 7, small, sizeof(small));
  assert_string_equal(small, "abcdefg"); /* exactly fits: no marker */
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_valid_names),
      cmocka_unit_test(test_hostile_names),
      cmocka_unit_test(test_printable),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
