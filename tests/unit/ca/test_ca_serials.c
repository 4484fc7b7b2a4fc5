/* Unit test for the internal CA's serial numbers: 10,000 mints, all distinct (its own program: it is
 * CPU-bound and slow under sanitizers). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <gnutls/gnutls.h>
#include <gnutls/x509.h>

#include "acmedge/ca.h"
#include "acmedge/storage.h"

#include "ca_test_util.h"

static int cmp_serial(const void *a, const void *b) { return memcmp(a, b, 16); }

static void test_serial_uniqueness(void **state) {
  fixture *f = *state;
  ae_ca *ca = open_ca(f, 0, 0);
  enum { N = 10000 };
  unsigned char(*serials)[16] = calloc(N, 16);
  int64_t now = (int64_t)time(NULL);
  ae_err err = {0};
  for (int i = 0; i < N; i++) {
    char *cp = NULL, *kp = NULL;
    assert_int_equal(ae_ca_mint_pem(ca, "s.test", now, &cp, &kp, &err), 0);
    gnutls_x509_crt_t c = parse1(cp);
    size_t sl = 16;
    assert_int_equal(gnutls_x509_crt_get_serial(c, serials[i], &sl), 0);
    assert_int_equal(sl, 16);
    gnutls_x509_crt_deinit(c);
    free(cp);
    free(kp);
  }
  qsort(serials, N, 16, cmp_serial);
  for (int i = 1; i < N; i++)
    assert_true(memcmp(serials[i - 1], serials[i], 16) != 0);
  assert_int_equal(ae_ca_mints(ca), N);
  free(serials);
  ae_ca_free(ca);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_serial_uniqueness, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
