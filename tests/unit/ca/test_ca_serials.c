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

typedef struct fixture {
  char dir[160];
  ae_storage *st;
} fixture;

static int rm_cb(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
  (void)sb;
  (void)flag;
  (void)ftw;
  return remove(path);
}

static int setup(void **state) {
  fixture *f = calloc(1, sizeof(*f));
  snprintf(f->dir, sizeof(f->dir), "/tmp/ae_test_ca.XXXXXX");
  if (!mkdtemp(f->dir))
    return -1;
  ae_err err = {0};
  if (ae_storage_fs_new(f->dir, &f->st, &err) != 0)
    return -1;
  *state = f;
  return 0;
}

static int teardown(void **state) {
  fixture *f = *state;
  ae_storage_free(f->st);
  nftw(f->dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
  free(f);
  return 0;
}

static ae_ca *open_ca(fixture *f, int64_t inter_s, int64_t leaf_s) {
  ae_ca_opts o = {.intermediate_lifetime_s = inter_s, .leaf_lifetime_s = leaf_s, .create = 1};
  ae_ca *ca = NULL;
  ae_err err = {0};
  int r = ae_ca_open(f->st, &o, &ca, &err);
  if (r != 0)
    fail_msg("ae_ca_open: %s", err.msg);
  return ca;
}

static gnutls_x509_crt_t parse1(const char *pem) {
  gnutls_x509_crt_t c;
  gnutls_datum_t d = {(unsigned char *)pem, (unsigned)strlen(pem)};
  assert_int_equal(gnutls_x509_crt_init(&c), 0);
  assert_int_equal(gnutls_x509_crt_import(c, &d, GNUTLS_X509_FMT_PEM), 0);
  return c;
}

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
