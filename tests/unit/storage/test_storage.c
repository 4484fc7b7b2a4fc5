/* Unit tests for the fs storage backend and the storage layout names. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "acmedge/storage.h"

typedef struct fixture {
  char dir[64];
  char root[128];
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
  snprintf(f->dir, sizeof(f->dir), "/tmp/ae_test_storage.XXXXXX");
  if (!mkdtemp(f->dir))
    return -1;
  /* a root that does not exist yet, two levels deep */
  snprintf(f->root, sizeof(f->root), "%s/var/acmedge/", f->dir);
  ae_err err = {0};
  if (ae_storage_fs_new(f->root, &f->st, &err) != 0)
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

static mode_t mode_of(const char *path) {
  struct stat sb;
  assert_int_equal(stat(path, &sb), 0);
  return sb.st_mode & 07777;
}

static void test_root(void **state) {
  fixture *f = *state;
  const char *root = ae_storage_fs_root(f->st);
  assert_non_null(root);
  char want[128];
  snprintf(want, sizeof(want), "%s/var/acmedge", f->dir); /* trailing slash dropped */
  assert_string_equal(root, want);
  assert_int_equal(mode_of(root), 0700);
}

static void test_put_get_del(void **state) {
  fixture *f = *state;
  ae_err err = {0};
  const char *key = "certs/127.0.0.1_14000/a.example.test/cert.pem";
  assert_int_equal(ae_storage_put(f->st, key, "CERT\0DATA", 9, 0, &err), 0);
  char *data = NULL;
  size_t len = 0;
  assert_int_equal(ae_storage_get(f->st, key, &data, &len, &err), 0);
  assert_int_equal(len, 9);
  assert_memory_equal(data, "CERT\0DATA", 9);
  assert_int_equal(data[9], '\0'); /* NUL-terminated for text callers */
  free(data);

  char path[512];
  snprintf(path, sizeof(path), "%s/%s", ae_storage_fs_root(f->st), key);
  assert_int_equal(mode_of(path), 0644);
  snprintf(path, sizeof(path), "%s/certs/127.0.0.1_14000/a.example.test", ae_storage_fs_root(f->st));
  assert_int_equal(mode_of(path), 0700);

  /* overwrite */
  assert_int_equal(ae_storage_put(f->st, key, "NEW", 3, 0, &err), 0);
  assert_int_equal(ae_storage_get(f->st, key, &data, &len, &err), 0);
  assert_string_equal(data, "NEW");
  free(data);

  /* empty value */
  assert_int_equal(ae_storage_put(f->st, "accounts/x/empty", "", 0, 0, &err), 0);
  assert_int_equal(ae_storage_get(f->st, "accounts/x/empty", &data, &len, &err), 0);
  assert_int_equal(len, 0);
  free(data);

  assert_int_equal(ae_storage_del(f->st, key, &err), 0);
  data = NULL;
  assert_int_equal(ae_storage_get(f->st, key, &data, &len, &err), AE_ENOTFOUND);
  assert_null(data);
  assert_int_equal(ae_storage_del(f->st, key, &err), AE_ENOTFOUND);
  assert_int_equal(ae_storage_get(f->st, "nothing/here", &data, &len, &err), AE_ENOTFOUND);
  /* a file used as a directory component is simply absent */
  assert_int_equal(ae_storage_get(f->st, "accounts/x/empty/sub", &data, &len, &err), AE_ENOTFOUND);
  /* a directory is not a value */
  assert_int_equal(ae_storage_get(f->st, "accounts/x", &data, &len, &err), AE_ENOTFOUND);
  assert_int_equal(ae_storage_del(f->st, "accounts/x", &err), AE_EINVAL);
}

static void test_private_mode(void **state) {
  fixture *f = *state;
  ae_err err = {0};
  assert_int_equal(ae_storage_put(f->st, "accounts/127.0.0.1_14000/account.key", "KEY", 3, 1, &err), 0);
  char path[512];
  snprintf(path, sizeof(path), "%s/accounts/127.0.0.1_14000/account.key", ae_storage_fs_root(f->st));
  assert_int_equal(mode_of(path), 0600);
  assert_int_equal(ae_storage_put(f->st, "accounts/127.0.0.1_14000/account.json", "{}", 2, 0, &err), 0);
  snprintf(path, sizeof(path), "%s/accounts/127.0.0.1_14000/account.json", ae_storage_fs_root(f->st));
  assert_int_equal(mode_of(path), 0644);
  /* overwriting a public file with a private value tightens the mode */
  assert_int_equal(ae_storage_put(f->st, "accounts/127.0.0.1_14000/account.json", "{}", 2, 1, &err), 0);
  assert_int_equal(mode_of(path), 0600);
}

static void test_no_temp_files(void **state) {
  fixture *f = *state;
  ae_err err = {0};
  for (int i = 0; i < 5; i++)
    assert_int_equal(ae_storage_put(f->st, "certs/ca/d.example/key.pem", "K", 1, 1, &err), 0);
  assert_int_equal(ae_storage_put(f->st, "certs/ca/d.example/cert.pem", "C", 1, 0, &err), 0);
  char path[512];
  snprintf(path, sizeof(path), "%s/certs/ca/d.example", ae_storage_fs_root(f->st));
  DIR *d = opendir(path);
  assert_non_null(d);
  int files = 0;
  struct dirent *de;
  while ((de = readdir(d)) != NULL) {
    if (de->d_name[0] == '.')
      continue;
    files++;
    assert_true(strcmp(de->d_name, "key.pem") == 0 || strcmp(de->d_name, "cert.pem") == 0);
  }
  closedir(d);
  assert_int_equal(files, 2);

  /* a leftover of an interrupted write is not listed as a value */
  char tmp[600];
  snprintf(tmp, sizeof(tmp), "%s/cert.pem.tmp.12345", path);
  FILE *fp = fopen(tmp, "w");
  assert_non_null(fp);
  fclose(fp);
  char **names = NULL;
  size_t n = 0;
  assert_int_equal(ae_storage_list(f->st, "certs/ca/d.example", &names, &n, &err), 0);
  assert_int_equal(n, 2);
  assert_string_equal(names[0], "cert.pem");
  assert_string_equal(names[1], "key.pem");
  ae_storage_list_free(names, n);
}

static void test_list(void **state) {
  fixture *f = *state;
  ae_err err = {0};
  const char *keys[] = {"certs/ca_1/zeta.example/cert.pem", "certs/ca_1/alpha.example/cert.pem",
                        "certs/ca_1/wildcard_.example.com/cert.pem", "certs/ca_1/readme"};
  for (size_t i = 0; i < AE_ARRAY_LEN(keys); i++)
    assert_int_equal(ae_storage_put(f->st, keys[i], "x", 1, 0, &err), 0);
  char **names = NULL;
  size_t n = 0;
  assert_int_equal(ae_storage_list(f->st, "certs/ca_1", &names, &n, &err), 0);
  assert_int_equal(n, 4);
  assert_string_equal(names[0], "alpha.example");
  assert_string_equal(names[1], "readme");
  assert_string_equal(names[2], "wildcard_.example.com");
  assert_string_equal(names[3], "zeta.example");
  ae_storage_list_free(names, n);

  assert_int_equal(ae_storage_list(f->st, "certs/ca_1/", &names, &n, &err), 0); /* trailing '/' ok */
  assert_int_equal(n, 4);
  ae_storage_list_free(names, n);

  assert_int_equal(ae_storage_list(f->st, "", &names, &n, &err), 0); /* the root */
  assert_int_equal(n, 1);
  assert_string_equal(names[0], "certs");
  ae_storage_list_free(names, n);

  names = NULL;
  assert_int_equal(ae_storage_list(f->st, "certs/none", &names, &n, &err), AE_ENOTFOUND);
  assert_null(names);

  /* recursive delete of a directory key */
  assert_int_equal(ae_storage_del(f->st, "certs/ca_1/zeta.example/", &err), 0);
  assert_int_equal(ae_storage_list(f->st, "certs/ca_1", &names, &n, &err), 0);
  assert_int_equal(n, 3);
  ae_storage_list_free(names, n);
  assert_int_equal(ae_storage_del(f->st, "certs/", &err), 0);
  assert_int_equal(ae_storage_list(f->st, "certs", &names, &n, &err), AE_ENOTFOUND);
  assert_int_equal(ae_storage_del(f->st, "certs/", &err), AE_ENOTFOUND);
  assert_int_equal(ae_storage_list(f->st, "", &names, &n, &err), 0);
  assert_int_equal(n, 0);
  ae_storage_list_free(names, n);
}

static void test_key_validation(void **state) {
  fixture *f = *state;
  ae_err err = {0};
  const char *bad[] = {"", "/etc/passwd", "../escape", "a/../../b", "a/..", "..", "a//b", "a/./b", ".",
                       "a/b/", "a/\x01", "a/b\n"};
  char *data = NULL;
  size_t len = 0;
  for (size_t i = 0; i < AE_ARRAY_LEN(bad); i++) {
    memset(&err, 0, sizeof(err));
    assert_int_equal(ae_storage_put(f->st, bad[i], "x", 1, 0, &err), AE_EINVAL);
    assert_true(err.msg[0] != '\0');
    assert_int_equal(ae_storage_get(f->st, bad[i], &data, &len, &err), AE_EINVAL);
  }
  assert_int_equal(ae_storage_put(f->st, NULL, "x", 1, 0, &err), AE_EINVAL);
  assert_int_equal(ae_storage_del(f->st, "../", &err), AE_EINVAL);
  assert_int_equal(ae_storage_del(f->st, "/", &err), AE_EINVAL);
  assert_int_equal(ae_storage_del(f->st, "", &err), AE_EINVAL); /* never the whole root */
  char **names = NULL;
  size_t n = 0;
  assert_int_equal(ae_storage_list(f->st, "..", &names, &n, &err), AE_EINVAL);
  assert_int_equal(ae_storage_list(f->st, "/tmp", &names, &n, &err), AE_EINVAL);
  /* nothing escaped the root */
  char path[256];
  snprintf(path, sizeof(path), "%s/var/escape", f->dir);
  assert_int_not_equal(access(path, F_OK), 0);
  /* dots inside a name are fine */
  assert_int_equal(ae_storage_put(f->st, "certs/x/.hidden..name", "x", 1, 0, &err), 0);
}

static void test_ca_host(void **state) {
  (void)state;
  char buf[128];
  assert_int_equal(ae_storage_ca_host("https://127.0.0.1:14000/dir", buf, sizeof(buf)), 0);
  assert_string_equal(buf, "127.0.0.1_14000");
  assert_int_equal(ae_storage_ca_host("https://acme-v02.api.letsencrypt.org/directory", buf, sizeof(buf)), 0);
  assert_string_equal(buf, "acme-v02.api.letsencrypt.org");
  assert_int_equal(ae_storage_ca_host("https://LOCALHOST:14000/dir", buf, sizeof(buf)), 0);
  assert_string_equal(buf, "localhost_14000");
  assert_int_equal(ae_storage_ca_host("https://[::1]:14000/dir", buf, sizeof(buf)), 0);
  assert_string_equal(buf, "--1_14000");
  assert_int_equal(ae_storage_ca_host("https://[2001:db8::1]/dir", buf, sizeof(buf)), 0);
  assert_string_equal(buf, "2001-db8--1");
  assert_int_equal(ae_storage_ca_host("https://ca.example", buf, sizeof(buf)), 0);
  assert_string_equal(buf, "ca.example");
  assert_int_equal(ae_storage_ca_host("https://ca.example?x=1", buf, sizeof(buf)), 0);
  assert_string_equal(buf, "ca.example");
  assert_int_equal(ae_storage_ca_host("https://user:pw@ca.example:8443/d", buf, sizeof(buf)), 0);
  assert_string_equal(buf, "ca.example_8443");

  assert_int_equal(ae_storage_ca_host("https:///dir", buf, sizeof(buf)), AE_EINVAL);
  assert_int_equal(ae_storage_ca_host("https://../dir", buf, sizeof(buf)), AE_EINVAL);
  assert_int_equal(ae_storage_ca_host("https://a_b.example/dir", buf, sizeof(buf)), AE_EINVAL);
  assert_int_equal(ae_storage_ca_host("https://ca.example:x1/dir", buf, sizeof(buf)), AE_EINVAL);
  assert_int_equal(ae_storage_ca_host("https://[::1/dir", buf, sizeof(buf)), AE_EINVAL);
  assert_int_equal(ae_storage_ca_host("https://127.0.0.1:14000/dir", buf, 8), AE_EINVAL); /* too small */
}

static void test_domain_dirname(void **state) {
  (void)state;
  char buf[300], back[300];
  ae_storage_domain_dirname("*.example.com", buf, sizeof(buf));
  assert_string_equal(buf, "wildcard_.example.com");
  ae_storage_dirname_domain(buf, back, sizeof(back));
  assert_string_equal(back, "*.example.com");
  ae_storage_domain_dirname("a.example.com", buf, sizeof(buf));
  assert_string_equal(buf, "a.example.com");
  ae_storage_dirname_domain(buf, back, sizeof(back));
  assert_string_equal(back, "a.example.com");
  /* a label that merely starts with "wildcard_" is not a wildcard */
  ae_storage_dirname_domain("wildcard_x.example.com", back, sizeof(back));
  assert_string_equal(back, "wildcard_x.example.com");
  ae_storage_domain_dirname("A.Example.COM", buf, sizeof(buf));
  assert_string_equal(buf, "a.example.com");
  ae_storage_domain_dirname("*.example.com", buf, 5); /* truncated, still terminated */
  assert_string_equal(buf, "wild");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_root, setup, teardown),
      cmocka_unit_test_setup_teardown(test_put_get_del, setup, teardown),
      cmocka_unit_test_setup_teardown(test_private_mode, setup, teardown),
      cmocka_unit_test_setup_teardown(test_no_temp_files, setup, teardown),
      cmocka_unit_test_setup_teardown(test_list, setup, teardown),
      cmocka_unit_test_setup_teardown(test_key_validation, setup, teardown),
      cmocka_unit_test(test_ca_host),
      cmocka_unit_test(test_domain_dirname),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
