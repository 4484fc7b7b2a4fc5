/* Unit tests for ae_storage_walk and ae_storage_copy between two fs backends: every object
 * copied byte for byte with keys 0600, bundles without meta.json stay without, a re-run changes
 * nothing, a wrong mode at the destination is repaired, a broken object is named while the rest
 * is copied. (fs <-> redis is covered by the integration test test_cluster_ops.) */
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

#include "acmedge/storage.h"
#include "certstore_test_util.h"

typedef struct fixture {
  char dir[64];
  char src_root[128], dst_root[128];
  ae_storage *src, *dst;
  char *cert, *key;
  char reported[2048];
  unsigned nreports;
} fixture;

static int rm_cb(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
  (void)sb;
  (void)flag;
  (void)ftw;
  return remove(path);
}

static void put(ae_storage *st, const char *key, const char *v, int priv) {
  ae_err err = {0};
  assert_int_equal(ae_storage_put(st, key, v, strlen(v), priv, &err), 0);
}

static int setup(void **state) {
  fixture *f = calloc(1, sizeof(*f));
  snprintf(f->dir, sizeof(f->dir), "/tmp/ae_test_copy.XXXXXX");
  if (!mkdtemp(f->dir))
    return -1;
  snprintf(f->src_root, sizeof(f->src_root), "%s/src", f->dir);
  snprintf(f->dst_root, sizeof(f->dst_root), "%s/dst", f->dir);
  ae_err err = {0};
  if (ae_storage_fs_new(f->src_root, &f->src, &err) != 0 || ae_storage_fs_new(f->dst_root, &f->dst, &err) != 0)
    return -1;
  if (ae_test_make_rsa_cert("a.example", "a.example", 2048, &f->cert, &f->key) != 0)
    return -1;
  put(f->src, "accounts/ca_1/account.json", "{\"url\":\"https://ca/acct/1\"}", 1);
  put(f->src, "accounts/ca_1/account.key", f->key, 1);
  put(f->src, "certs/ca_1/a.example/key.pem", f->key, 1);
  put(f->src, "certs/ca_1/a.example/cert.pem", f->cert, 0);
  put(f->src, "certs/ca_1/a.example/meta.json", "{\"issuer\":\"acme\"}", 0);
  put(f->src, "certs/ca_1/a.example/ocsp.der", "\x30\x03\x0a\x01", 0);
  put(f->src, "certs/ca_1/wildcard_.w.example/key.pem", f->key, 1);
  put(f->src, "certs/ca_1/wildcard_.w.example/cert.pem", f->cert, 0);
  put(f->src, "pki/ca-1/root.crt", f->cert, 0);
  put(f->src, "pki/ca-1/root.key", f->key, 1);
  *state = f;
  return 0;
}

static int teardown(void **state) {
  fixture *f = *state;
  ae_storage_free(f->src);
  ae_storage_free(f->dst);
  nftw(f->dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
  free(f->cert);
  free(f->key);
  free(f);
  return 0;
}

static void on_report(void *ud, const char *object, const char *problem) {
  fixture *f = ud;
  size_t n = strlen(f->reported);
  snprintf(f->reported + n, sizeof(f->reported) - n, "%s: %s\n", object, problem);
  f->nreports++;
}

static ae_storage_copy_stats copy(fixture *f) {
  ae_storage_copy_stats st;
  ae_err err = {0};
  f->reported[0] = '\0';
  f->nreports = 0;
  assert_int_equal(ae_storage_copy(f->src, f->dst, NULL, 0, &st, on_report, f, &err), 0);
  return st;
}

static unsigned mode_of(const fixture *f, const char *root, const char *key) {
  (void)f;
  char path[512];
  struct stat sb;
  snprintf(path, sizeof(path), "%s/%s", root, key);
  if (stat(path, &sb) != 0)
    return 01000; /* missing */
  return (unsigned)(sb.st_mode & 0777);
}

static void assert_same(fixture *f, const char *key) {
  char *a = NULL, *b = NULL;
  size_t al = 0, bl = 0;
  ae_err err = {0};
  assert_int_equal(ae_storage_get(f->src, key, &a, &al, &err), 0);
  assert_int_equal(ae_storage_get(f->dst, key, &b, &bl, &err), 0);
  assert_int_equal(al, bl);
  assert_memory_equal(a, b, al);
  assert_int_equal(mode_of(f, f->src_root, key), mode_of(f, f->dst_root, key));
  free(a);
  free(b);
}

static const char *const k_all[] = {"accounts/ca_1/account.json", "accounts/ca_1/account.key",
                                    "certs/ca_1/a.example/cert.pem", "certs/ca_1/a.example/key.pem",
                                    "certs/ca_1/a.example/meta.json", "certs/ca_1/a.example/ocsp.der",
                                    "certs/ca_1/wildcard_.w.example/cert.pem", "certs/ca_1/wildcard_.w.example/key.pem",
                                    "pki/ca-1/root.crt", "pki/ca-1/root.key"};
#define NALL (sizeof(k_all) / sizeof(k_all[0]))

static void test_walk_lists_every_file_sorted(void **state) {
  fixture *f = *state;
  char **keys = NULL;
  size_t n = 0;
  ae_err err = {0};
  assert_int_equal(ae_storage_walk(f->src, NULL, 0, &keys, &n, &err), 0);
  assert_int_equal(n, NALL);
  for (size_t i = 0; i < n; i++)
    assert_string_equal(keys[i], k_all[i]);
  ae_storage_list_free(keys, n);
}

static void test_copy_then_rerun(void **state) {
  fixture *f = *state;
  ae_storage_copy_stats st = copy(f);
  /* 2 account files, 2 bundles, 1 staple, 2 CA files */
  assert_int_equal(st.copied, 7);
  assert_int_equal(st.unchanged, 0);
  assert_int_equal(st.failed, 0);
  for (size_t i = 0; i < NALL; i++)
    assert_same(f, k_all[i]);
  assert_int_equal(mode_of(f, f->dst_root, "certs/ca_1/a.example/key.pem"), 0600);
  assert_int_equal(mode_of(f, f->dst_root, "pki/ca-1/root.key"), 0600);
  assert_int_equal(mode_of(f, f->dst_root, "accounts/ca_1/account.json"), 0600);
  assert_int_equal(mode_of(f, f->dst_root, "certs/ca_1/a.example/cert.pem"), 0644);
  /* no meta.json invented for a bundle without one */
  assert_int_equal(mode_of(f, f->dst_root, "certs/ca_1/wildcard_.w.example/meta.json"), 01000);
  st = copy(f);
  assert_int_equal(st.copied, 0);
  assert_int_equal(st.unchanged, 7);
  assert_int_equal(st.failed, 0);
}

static void test_open_key_at_destination_is_repaired(void **state) {
  fixture *f = *state;
  copy(f);
  char path[512];
  snprintf(path, sizeof(path), "%s/certs/ca_1/a.example/key.pem", f->dst_root);
  assert_int_equal(chmod(path, 0644), 0);
  ae_storage_copy_stats st = copy(f);
  assert_int_equal(st.copied, 1);
  assert_int_equal(st.unchanged, 6);
  assert_int_equal(mode_of(f, f->dst_root, "certs/ca_1/a.example/key.pem"), 0600);
}

static void test_changed_object_is_copied_again(void **state) {
  fixture *f = *state;
  copy(f);
  put(f->src, "certs/ca_1/a.example/meta.json", "{\"issuer\":\"internal\"}", 0);
  ae_storage_copy_stats st = copy(f);
  assert_int_equal(st.copied, 1);
  assert_same(f, "certs/ca_1/a.example/meta.json");
}

static void test_broken_objects_are_named(void **state) {
  fixture *f = *state;
  put(f->src, "certs/ca_1/nokey.example/cert.pem", f->cert, 0);
  put(f->src, "certs/ca_1/garbage.example/cert.pem", "not a certificate", 0);
  put(f->src, "certs/ca_1/garbage.example/key.pem", f->key, 1);
  ae_storage_copy_stats st = copy(f);
  assert_int_equal(st.failed, 2);
  assert_int_equal(st.copied, 7);
  assert_non_null(strstr(f->reported, "certs/ca_1/nokey.example: has no key.pem"));
  assert_non_null(strstr(f->reported, "certs/ca_1/garbage.example: cert.pem does not start with a readable certificate"));
  /* nothing half-written for them */
  assert_int_equal(mode_of(f, f->dst_root, "certs/ca_1/garbage.example/key.pem"), 01000);
}

static void test_empty_source(void **state) {
  (void)state;
  char dir[64] = "/tmp/ae_test_copy_empty.XXXXXX";
  assert_non_null(mkdtemp(dir));
  char a[128], b[128];
  snprintf(a, sizeof(a), "%s/a", dir);
  snprintf(b, sizeof(b), "%s/b", dir);
  ae_storage *sa = NULL, *sb = NULL;
  ae_err err = {0};
  assert_int_equal(ae_storage_fs_new(a, &sa, &err), 0);
  assert_int_equal(ae_storage_fs_new(b, &sb, &err), 0);
  ae_storage_copy_stats st;
  assert_int_equal(ae_storage_copy(sa, sb, NULL, 0, &st, NULL, NULL, &err), 0);
  assert_int_equal(st.copied + st.unchanged + st.failed, 0);
  ae_storage_free(sa);
  ae_storage_free(sb);
  nftw(dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_walk_lists_every_file_sorted, setup, teardown),
      cmocka_unit_test_setup_teardown(test_copy_then_rerun, setup, teardown),
      cmocka_unit_test_setup_teardown(test_open_key_at_destination_is_repaired, setup, teardown),
      cmocka_unit_test_setup_teardown(test_changed_object_is_copied_again, setup, teardown),
      cmocka_unit_test_setup_teardown(test_broken_objects_are_named, setup, teardown),
      cmocka_unit_test(test_empty_source),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
