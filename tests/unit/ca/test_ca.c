/* Unit tests for the internal CA: root/intermediate generation and persistence, leaf minting,
 * GnuTLS verification of every chain, the chain checker, clamping, rotation, key file checks. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <ftw.h>
#include <pthread.h>
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

/* Parses leaf + intermediate from a chain PEM. */
static unsigned parse_chain(const char *pem, gnutls_x509_crt_t *out, unsigned max) {
  unsigned n = max;
  gnutls_datum_t d = {(unsigned char *)pem, (unsigned)strlen(pem)};
  assert_true(gnutls_x509_crt_list_import(out, &n, &d, GNUTLS_X509_FMT_PEM, 0) >= 0);
  return n;
}

static size_t key_id(gnutls_x509_crt_t c, int authority, unsigned char *buf) {
  size_t len = 64;
  unsigned crit = 0;
  int g = authority ? gnutls_x509_crt_get_authority_key_id(c, buf, &len, &crit)
                    : gnutls_x509_crt_get_subject_key_id(c, buf, &len, &crit);
  assert_true(g >= 0);
  return len;
}

static unsigned verify_flags(gnutls_x509_crt_t *chain, unsigned n, gnutls_x509_crt_t root, unsigned flags) {
  unsigned status = 99;
  assert_int_equal(gnutls_x509_crt_list_verify(chain, n, &root, 1, NULL, 0, flags, &status), 0);
  return status;
}

static unsigned verify_with_root(gnutls_x509_crt_t *chain, unsigned n, gnutls_x509_crt_t root) {
  return verify_flags(chain, n, root, 0);
}

static mode_t mode_of(fixture *f, const char *rel) {
  char p[256];
  struct stat sb;
  snprintf(p, sizeof(p), "%s/%s", f->dir, rel);
  assert_int_equal(stat(p, &sb), 0);
  return sb.st_mode & 07777;
}

static void test_root_and_intermediate(void **state) {
  fixture *f = *state;
  ae_ca *ca = open_ca(f, 0, 0);
  assert_int_equal(mode_of(f, "pki/local/root.key"), 0600);
  assert_int_equal(mode_of(f, "pki/local/intermediate.key"), 0600);
  char *rp = ae_ca_root_pem(ca), *ip = ae_ca_intermediate_pem(ca);
  gnutls_x509_crt_t root = parse1(rp), inter = parse1(ip);
  unsigned ca_flag = 0, crit = 0;
  int pathlen = -1;
  assert_int_equal(gnutls_x509_crt_get_basic_constraints(root, &crit, &ca_flag, &pathlen), 1);
  assert_true(crit);
  assert_int_equal(pathlen, 1);
  unsigned ku = 0;
  assert_true(gnutls_x509_crt_get_key_usage(root, &ku, &crit) >= 0);
  assert_int_equal(ku, GNUTLS_KEY_KEY_CERT_SIGN | GNUTLS_KEY_CRL_SIGN);
  int64_t life = (int64_t)(gnutls_x509_crt_get_expiration_time(root) - gnutls_x509_crt_get_activation_time(root));
  assert_true(life > 3600LL * 24 * 3600);
  assert_int_equal(gnutls_x509_crt_get_pk_algorithm(root, NULL), GNUTLS_PK_ECDSA);

  assert_int_equal(gnutls_x509_crt_get_basic_constraints(inter, &crit, &ca_flag, &pathlen), 1);
  assert_int_equal(pathlen, 0);
  unsigned char ski[64], aki[64];
  size_t sl = key_id(root, 0, ski), al = key_id(inter, 1, aki);
  assert_int_equal(sl, al);
  assert_memory_equal(ski, aki, sl);
  life = (int64_t)(gnutls_x509_crt_get_expiration_time(inter) - gnutls_x509_crt_get_activation_time(inter));
  assert_true(life >= AE_CA_INTER_LIFETIME_S && life <= AE_CA_INTER_LIFETIME_S + 120);
  assert_int_equal(verify_with_root(&inter, 1, root), 0);
  gnutls_x509_crt_deinit(root);
  gnutls_x509_crt_deinit(inter);
  free(rp);
  free(ip);
  ae_ca_free(ca);
}

static int contains(const unsigned char *h, size_t hl, const unsigned char *n, size_t nl) {
  for (size_t i = 0; i + nl <= hl; i++)
    if (memcmp(h + i, n, nl) == 0)
      return 1;
  return 0;
}

static void test_leaf(void **state) {
  fixture *f = *state;
  ae_ca *ca = open_ca(f, 0, 0);
  int64_t now = (int64_t)time(NULL);
  char *cp = NULL, *kp = NULL, *rp = ae_ca_root_pem(ca);
  ae_err err = {0};
  assert_int_equal(ae_ca_mint_pem(ca, "a.int.test", now, &cp, &kp, &err), 0);
  gnutls_x509_crt_t chain[4], root = parse1(rp);
  assert_int_equal(parse_chain(cp, chain, 4), 2);
  assert_int_equal(verify_with_root(chain, 2, root), 0);
  assert_true(gnutls_x509_crt_check_hostname(chain[0], "a.int.test"));
  assert_false(gnutls_x509_crt_check_hostname(chain[0], "b.int.test"));
  /* AKI and SKI in the DER, AKI = the intermediate's SKI, issuer DN bytes = its subject bytes. */
  gnutls_datum_t der = {NULL, 0};
  assert_int_equal(gnutls_x509_crt_export2(chain[0], GNUTLS_X509_FMT_DER, &der), 0);
  static const unsigned char oid_aki[] = {0x06, 0x03, 0x55, 0x1d, 0x23}, oid_ski[] = {0x06, 0x03, 0x55, 0x1d, 0x0e};
  assert_true(contains(der.data, der.size, oid_aki, 5));
  assert_true(contains(der.data, der.size, oid_ski, 5));
  gnutls_free(der.data);
  unsigned char a[64], s[64];
  size_t al = key_id(chain[0], 1, a), sl = key_id(chain[1], 0, s);
  assert_int_equal(al, sl);
  assert_memory_equal(a, s, al);
  gnutls_datum_t iss, sub;
  assert_int_equal(gnutls_x509_crt_get_raw_issuer_dn(chain[0], &iss), 0);
  assert_int_equal(gnutls_x509_crt_get_raw_dn(chain[1], &sub), 0);
  assert_int_equal(iss.size, sub.size);
  assert_memory_equal(iss.data, sub.data, iss.size);
  gnutls_free(iss.data);
  gnutls_free(sub.data);
  /* Leaf profile: backdated 60 s, 12 h, CA:FALSE, digitalSignature, serverAuth, 16-byte serial. */
  assert_int_equal((int64_t)gnutls_x509_crt_get_activation_time(chain[0]), now - 60);
  assert_int_equal((int64_t)gnutls_x509_crt_get_expiration_time(chain[0]), now + AE_CA_LEAF_LIFETIME_S);
  unsigned crit = 0, caf = 1, ku = 0;
  assert_int_equal(gnutls_x509_crt_get_basic_constraints(chain[0], &crit, &caf, NULL), 0);
  assert_int_equal(caf, 0);
  assert_true(gnutls_x509_crt_get_key_usage(chain[0], &ku, &crit) >= 0);
  assert_int_equal(ku, GNUTLS_KEY_DIGITAL_SIGNATURE);
  char oid[128];
  size_t ol = sizeof(oid);
  assert_int_equal(gnutls_x509_crt_get_key_purpose_oid(chain[0], 0, oid, &ol, NULL), 0);
  assert_string_equal(oid, GNUTLS_KP_TLS_WWW_SERVER);
  unsigned char serial[40];
  size_t serl = sizeof(serial);
  assert_int_equal(gnutls_x509_crt_get_serial(chain[0], serial, &serl), 0);
  assert_int_equal(serl, 16);
  assert_true(serial[0] < 0x80 && serial[0] != 0);
  /* The checker accepts it for its name, refuses it for another. */
  assert_int_equal(ae_chain_check(cp, strlen(cp), kp, strlen(kp), "a.int.test", now, &err), 0);
  assert_int_equal(ae_chain_check(cp, strlen(cp), kp, strlen(kp), "b.int.test", now, &err), AE_EINVAL);
  assert_non_null(strstr(err.msg, "does not cover b.int.test"));
  for (int i = 0; i < 2; i++)
    gnutls_x509_crt_deinit(chain[i]);
  gnutls_x509_crt_deinit(root);
  free(cp);
  free(kp);
  free(rp);
  ae_ca_free(ca);
}

static void test_wrong_issuer_refused(void **state) {
  fixture *f = *state;
  ae_ca *ca1 = open_ca(f, 0, 0);
  fixture other;
  snprintf(other.dir, sizeof(other.dir), "%.100s/other", f->dir);
  ae_err err = {0};
  assert_int_equal(ae_storage_fs_new(other.dir, &other.st, &err), 0);
  ae_ca *ca2 = open_ca(&other, 0, 0);
  int64_t now = (int64_t)time(NULL);
  char *cp = NULL, *kp = NULL, *cp2 = NULL, *kp2 = NULL;
  assert_int_equal(ae_ca_mint_pem(ca1, "a.test", now, &cp, &kp, &err), 0);
  assert_int_equal(ae_ca_mint_pem(ca2, "a.test", now, &cp2, &kp2, &err), 0);
  /* Leaf of CA 1 followed by the intermediate of CA 2: same DN text, other key. */
  char *inter2 = ae_ca_intermediate_pem(ca2);
  const char *end = strstr(cp, "-----END CERTIFICATE-----");
  assert_non_null(end);
  size_t leaflen = (size_t)(end - cp) + strlen("-----END CERTIFICATE-----\n");
  char *mixed = calloc(1, leaflen + strlen(inter2) + 1);
  memcpy(mixed, cp, leaflen);
  strcat(mixed, inter2);
  assert_int_equal(ae_chain_check(mixed, strlen(mixed), kp, strlen(kp), "a.test", now, &err), AE_EINVAL);
  assert_non_null(strstr(err.msg, "invalid chain"));
  assert_null(strstr(err.msg, "cover"));
  /* Key of another leaf. */
  assert_int_equal(ae_chain_check(cp, strlen(cp), kp2, strlen(kp2), "a.test", now, &err), AE_EINVAL);
  assert_non_null(strstr(err.msg, "private key does not match"));
  /* Expired (checked at a later time). */
  assert_int_equal(ae_chain_check(cp, strlen(cp), kp, strlen(kp), "a.test", now + 2 * AE_CA_LEAF_LIFETIME_S, &err),
                   AE_EINVAL);
  assert_non_null(strstr(err.msg, "expired"));
  free(mixed);
  free(inter2);
  free(cp);
  free(kp);
  free(cp2);
  free(kp2);
  ae_ca_free(ca1);
  ae_ca_free(ca2);
  ae_storage_free(other.st);
}

static void test_clamped_to_intermediate(void **state) {
  fixture *f = *state;
  ae_ca *ca = open_ca(f, 3600, 7200);
  int64_t now = (int64_t)time(NULL);
  char *cp = NULL, *kp = NULL;
  ae_err err = {0};
  assert_int_equal(ae_ca_mint_pem(ca, "c.test", now, &cp, &kp, &err), 0);
  gnutls_x509_crt_t chain[3];
  assert_int_equal(parse_chain(cp, chain, 3), 2);
  assert_int_equal(gnutls_x509_crt_get_expiration_time(chain[0]), gnutls_x509_crt_get_expiration_time(chain[1]));
  assert_true((int64_t)gnutls_x509_crt_get_expiration_time(chain[0]) < now + 7200);
  gnutls_x509_crt_deinit(chain[0]);
  gnutls_x509_crt_deinit(chain[1]);
  free(cp);
  free(kp);
  ae_ca_free(ca);
}

static void test_restart_keeps_root(void **state) {
  fixture *f = *state;
  ae_ca *ca = open_ca(f, 0, 0);
  char *r1 = ae_ca_root_pem(ca), *i1 = ae_ca_intermediate_pem(ca);
  ae_ca_free(ca);
  ca = open_ca(f, 0, 0);
  char *r2 = ae_ca_root_pem(ca), *i2 = ae_ca_intermediate_pem(ca);
  assert_string_equal(r1, r2);
  assert_string_equal(i1, i2);
  assert_int_equal(ae_ca_rotations(ca), 0);
  char *st = ae_ca_status_text(ca);
  assert_non_null(strstr(st, "acmedge Internal Root CA"));
  assert_non_null(strstr(st, "sha256:"));
  free(st);
  free(r1);
  free(r2);
  free(i1);
  free(i2);
  ae_ca_free(ca);
}

static void test_rotation(void **state) {
  fixture *f = *state;
  ae_ca *ca = open_ca(f, 1000, 600);
  int64_t now = (int64_t)time(NULL);
  char *rp = ae_ca_root_pem(ca), *i1 = ae_ca_intermediate_pem(ca), *old = NULL, *oldk = NULL;
  ae_err err = {0};
  assert_int_equal(ae_ca_mint_pem(ca, "r.test", now, &old, &oldk, &err), 0);
  int rotated = 0;
  assert_int_equal(ae_ca_rotate_if_due(ca, now + 500, &rotated, &err), 0);
  assert_int_equal(rotated, 0);
  /* 20 % of 1000 s left: due. */
  assert_int_equal(ae_ca_rotate_if_due(ca, now + 900, &rotated, &err), 0);
  assert_int_equal(rotated, 1);
  char *i2 = ae_ca_intermediate_pem(ca);
  assert_string_not_equal(i1, i2);
  gnutls_x509_crt_t root = parse1(rp), chain[3];
  char *cp = NULL, *kp = NULL;
  /* Minted at the simulated time: the new intermediate starts 60 s before it. */
  assert_int_equal(ae_ca_mint_pem(ca, "r.test", now + 900, &cp, &kp, &err), 0);
  assert_int_equal(parse_chain(cp, chain, 3), 2);
  assert_int_equal(verify_flags(chain, 2, root, GNUTLS_VERIFY_DISABLE_TIME_CHECKS), 0);
  assert_int_equal(ae_ca_rotations(ca), 2); /* the first one and its replacement */
  gnutls_x509_crt_deinit(chain[0]);
  gnutls_x509_crt_deinit(chain[1]);
  /* The leaf minted before the rotation still verifies. */
  assert_int_equal(parse_chain(old, chain, 3), 2);
  assert_int_equal(verify_with_root(chain, 2, root), 0);
  gnutls_x509_crt_deinit(chain[0]);
  gnutls_x509_crt_deinit(chain[1]);
  gnutls_x509_crt_deinit(root);
  ae_ca_free(ca);
  /* The rotated intermediate is the one persisted. */
  ca = open_ca(f, 1000, 600);
  char *i3 = ae_ca_intermediate_pem(ca);
  assert_string_equal(i2, i3);
  ae_ca_free(ca);
  free(rp);
  free(i1);
  free(i2);
  free(i3);
  free(old);
  free(oldk);
  free(cp);
  free(kp);
}

/* Rotations are reported once each, with the old and new fingerprints; neither the first
 * intermediate of a new authority nor a persisted one found at open is a rotation. */
static void test_rotation_report(void **state) {
  fixture *f = *state;
  ae_ca *ca = open_ca(f, 1000, 600);
  ae_ca_rotation rot;
  assert_int_equal(ae_ca_take_rotation(ca, &rot), 0);
  int64_t now = (int64_t)time(NULL);
  int rotated = 0;
  ae_err err = {0};
  assert_int_equal(ae_ca_rotate_if_due(ca, now + 900, &rotated, &err), 0);
  assert_int_equal(rotated, 1);
  memset(&rot, 0, sizeof(rot));
  assert_int_equal(ae_ca_take_rotation(ca, &rot), 1);
  assert_int_equal(strlen(rot.old_fp), 95);
  assert_int_equal(strlen(rot.new_fp), 95);
  assert_string_not_equal(rot.old_fp, rot.new_fp);
  assert_true(rot.new_not_after > rot.old_not_after);
  assert_int_equal(ae_ca_take_rotation(ca, &rot), 0);
  /* Check interval: 1/40 of the lifetime, bounded. */
  assert_int_equal(ae_ca_check_interval_s(ca), 25);
  ae_ca_free(ca);
  ca = open_ca(f, 3650LL * 86400, 600);
  assert_int_equal(ae_ca_check_interval_s(ca), 600);
  assert_int_equal(ae_ca_take_rotation(ca, &rot), 0); /* the persisted one, still fresh */
  ae_ca_free(ca);
  ca = open_ca(f, 120, 600);
  assert_int_equal(ae_ca_check_interval_s(ca), 3);
  assert_int_equal(ae_ca_take_rotation(ca, &rot), 0);
  ae_ca_free(ca);
}

typedef struct mint_arg {
  ae_ca *ca;
  int64_t now;
  int failures;
  char *pems[100];
} mint_arg;

static void *mint_thread(void *p) {
  mint_arg *m = p;
  ae_err err = {0};
  for (int i = 0; i < 100; i++) {
    char *kp = NULL;
    if (ae_ca_mint_pem(m->ca, "load.test", m->now, &m->pems[i], &kp, &err) != 0)
      m->failures++;
    free(kp);
  }
  return NULL;
}

/* Rotations while other threads mint: every mint succeeds and every chain verifies against the
 * root (under ASan this also catches an intermediate freed while still signing). */
static void test_rotation_under_load(void **state) {
  fixture *f = *state;
  ae_ca *ca = open_ca(f, 3600, 600);
  int64_t now = (int64_t)time(NULL);
  mint_arg args[3];
  pthread_t th[3];
  for (int i = 0; i < 3; i++) {
    memset(&args[i], 0, sizeof(args[i]));
    args[i].ca = ca;
    args[i].now = now;
    assert_int_equal(pthread_create(&th[i], NULL, mint_thread, &args[i]), 0);
  }
  ae_err err = {0};
  int rotated = 0, total = 0;
  for (int r = 1; r <= 5; r++) {
    /* Each step is far enough ahead for the then-current intermediate to be due. */
    assert_int_equal(ae_ca_rotate_if_due(ca, now + (int64_t)r * 3000, &rotated, &err), 0);
    total += rotated;
  }
  for (int i = 0; i < 3; i++)
    assert_int_equal(pthread_join(th[i], NULL), 0);
  assert_int_equal(total, 5);
  char *rp = ae_ca_root_pem(ca);
  gnutls_x509_crt_t root = parse1(rp), chain[3];
  for (int i = 0; i < 3; i++) {
    assert_int_equal(args[i].failures, 0);
    for (int j = 0; j < 100; j++) {
      assert_int_equal(parse_chain(args[i].pems[j], chain, 3), 2);
      assert_int_equal(verify_flags(chain, 2, root, GNUTLS_VERIFY_DISABLE_TIME_CHECKS), 0);
      gnutls_x509_crt_deinit(chain[0]);
      gnutls_x509_crt_deinit(chain[1]);
      free(args[i].pems[j]);
    }
  }
  gnutls_x509_crt_deinit(root);
  free(rp);
  ae_ca_free(ca);
}

static void test_key_file_problems(void **state) {
  fixture *f = *state;
  ae_ca_free(open_ca(f, 0, 0));
  char path[256];
  snprintf(path, sizeof(path), "%s/pki/local/root.key", f->dir);
  assert_int_equal(chmod(path, 0644), 0);
  ae_ca_opts o = {.create = 1};
  ae_ca *ca = NULL;
  ae_err err = {0};
  assert_int_equal(ae_ca_open(f->st, &o, &ca, &err), AE_EINVAL);
  assert_null(ca);
  assert_non_null(strstr(err.msg, path));
  assert_non_null(strstr(err.msg, "0644"));
  assert_int_equal(chmod(path, 0600), 0);
  /* Corrupt intermediate key. */
  snprintf(path, sizeof(path), "%s/pki/local/intermediate.key", f->dir);
  FILE *fp = fopen(path, "w");
  assert_non_null(fp);
  fputs("-----BEGIN PRIVATE KEY-----\nnot base64 at all\n-----END PRIVATE KEY-----\n", fp);
  fclose(fp);
  assert_int_equal(ae_ca_open(f->st, &o, &ca, &err), AE_EINVAL);
  assert_non_null(strstr(err.msg, path));
  assert_non_null(strstr(err.msg, "not a PEM private key"));
  /* Read-only open of an empty storage: a clear "no CA yet". */
  fixture other;
  snprintf(other.dir, sizeof(other.dir), "%.100s/empty", f->dir);
  assert_int_equal(ae_storage_fs_new(other.dir, &other.st, &err), 0);
  ae_ca_opts ro = {.create = 0};
  assert_int_equal(ae_ca_open(other.st, &ro, &ca, &err), AE_ENOTFOUND);
  assert_non_null(strstr(err.msg, "no internal CA"));
  ae_storage_free(other.st);
}

static void test_mint_refuses_bad_input(void **state) {
  fixture *f = *state;
  ae_ca *ca = open_ca(f, 0, 0);
  char *cp = NULL, *kp = NULL;
  ae_err err = {0};
  assert_int_equal(ae_ca_mint_pem(ca, "", (int64_t)time(NULL), &cp, &kp, &err), AE_EINVAL);
  assert_null(cp);
  ae_ca_free(ca);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_root_and_intermediate, setup, teardown),
      cmocka_unit_test_setup_teardown(test_leaf, setup, teardown),
      cmocka_unit_test_setup_teardown(test_wrong_issuer_refused, setup, teardown),
      cmocka_unit_test_setup_teardown(test_clamped_to_intermediate, setup, teardown),
      cmocka_unit_test_setup_teardown(test_restart_keeps_root, setup, teardown),
      cmocka_unit_test_setup_teardown(test_rotation, setup, teardown),
      cmocka_unit_test_setup_teardown(test_rotation_report, setup, teardown),
      cmocka_unit_test_setup_teardown(test_rotation_under_load, setup, teardown),
      cmocka_unit_test_setup_teardown(test_key_file_problems, setup, teardown),
      cmocka_unit_test_setup_teardown(test_mint_refuses_bad_input, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
