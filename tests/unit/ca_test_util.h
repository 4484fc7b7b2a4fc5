/* Shared by the internal CA unit tests: a fixture with a fresh filesystem storage in a temp
 * directory, opening a CA on it, and parsing one PEM certificate. */
#ifndef AE_CA_TEST_UTIL_H
#define AE_CA_TEST_UTIL_H

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <gnutls/gnutls.h>
#include <gnutls/x509.h>

#include "acmedge/ca.h"
#include "acmedge/storage.h"

typedef struct fixture {
  char dir[160];
  ae_storage *st;
} fixture;

static inline int rm_cb(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
  (void)sb;
  (void)flag;
  (void)ftw;
  return remove(path);
}

static inline int setup(void **state) {
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

static inline int teardown(void **state) {
  fixture *f = *state;
  ae_storage_free(f->st);
  nftw(f->dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
  free(f);
  return 0;
}

static inline ae_ca *open_ca(fixture *f, int64_t inter_s, int64_t leaf_s) {
  ae_ca_opts o = {.intermediate_lifetime_s = inter_s, .leaf_lifetime_s = leaf_s, .create = 1};
  ae_ca *ca = NULL;
  ae_err err = {0};
  int r = ae_ca_open(f->st, &o, &ca, &err);
  if (r != 0)
    fail_msg("ae_ca_open: %s", err.msg);
  return ca;
}

static inline gnutls_x509_crt_t parse1(const char *pem) {
  gnutls_x509_crt_t c;
  gnutls_datum_t d = {(unsigned char *)pem, (unsigned)strlen(pem)};
  assert_int_equal(gnutls_x509_crt_init(&c), 0);
  assert_int_equal(gnutls_x509_crt_import(c, &d, GNUTLS_X509_FMT_PEM), 0);
  return c;
}

#endif
