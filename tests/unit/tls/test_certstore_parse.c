/* Unit tests for the cold-load parse of a stored pair: leaf + intermediate chains, intermediates
 * shared by DER across leaves (refcounted), the key matched on the public point (ECDSA) or key id
 * (RSA), the ARI identifier from the same parse, and errors naming the domain or file for garbage
 * and truncated PEM. Also the filesystem read used on that path (ae_storage_get_cert). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <gnutls/gnutls.h>
#include <gnutls/x509.h>

#include "acmedge/acme.h"
#include "acmedge/ca.h"
#include "acmedge/certstore.h"
#include "acmedge/storage.h"

#include "ca_test_util.h"
#include "certstore_test_util.h"

static void mint(ae_ca *ca, const char *name, char **cp, char **kp) {
  ae_err err = {0};
  if (ae_ca_mint_pem(ca, name, (int64_t)time(NULL), cp, kp, &err) != 0)
    fail_msg("mint %s: %s", name, err.msg);
}

static ae_cert *load_ok(const char *what, const char *cp, const char *kp, ae_cert_ids *ids) {
  ae_cert *c = NULL;
  ae_err err = {0};
  if (ae_cert_from_pem_ids(what, cp, strlen(cp), kp, strlen(kp), &c, ids, &err) != 0)
    fail_msg("from_pem_ids %s: %s", what, err.msg);
  return c;
}

/* Expects a refused pair: AE_EINVAL, no cert, the message holding each of the given parts. */
static void load_bad(const char *what, const char *cp, size_t clen, const char *kp, const char *part1,
                     const char *part2) {
  ae_cert *c = NULL;
  ae_err err = {0};
  ae_cert_ids ids;
  memset(&ids, 'x', sizeof(ids));
  assert_int_equal(ae_cert_from_pem_ids(what, cp, clen, kp, strlen(kp), &c, &ids, &err), AE_EINVAL);
  assert_null(c);
  if (!strstr(err.msg, part1) || (part2 && !strstr(err.msg, part2)))
    fail_msg("message '%s' lacks '%s' / '%s'", err.msg, part1, part2 ? part2 : "");
}

static void test_leaf_and_intermediate(void **state) {
  fixture *f = *state;
  ae_ca *ca = open_ca(f, 0, 0);
  char *cp = NULL, *kp = NULL;
  mint(ca, "a.parse.test", &cp, &kp);
  ae_cert_ids ids;
  ae_cert *c = load_ok("a.parse.test", cp, kp, &ids);
  unsigned n = 0;
  gnutls_pcert_st *pc = ae_cert_pcerts(c, &n);
  assert_int_equal(n, 2);
  assert_true(ae_cert_covers(c, "a.parse.test"));
  assert_false(ae_cert_covers(c, "b.parse.test"));
  assert_non_null(ae_cert_privkey(c));

  /* Each served certificate is the DER of the PEM block, in order. */
  gnutls_x509_crt_t chain[2];
  unsigned cn = 2;
  gnutls_datum_t d = {(unsigned char *)cp, (unsigned)strlen(cp)};
  assert_true(gnutls_x509_crt_list_import(chain, &cn, &d, GNUTLS_X509_FMT_PEM, 0) >= 0);
  assert_int_equal(cn, 2);
  for (unsigned i = 0; i < 2; i++) {
    gnutls_datum_t der = {NULL, 0};
    assert_int_equal(gnutls_x509_crt_export2(chain[i], GNUTLS_X509_FMT_DER, &der), 0);
    assert_int_equal(der.size, pc[i].cert.size);
    assert_memory_equal(der.data, pc[i].cert.data, der.size);
    gnutls_free(der.data);
  }
  assert_int_equal(ae_cert_not_after(c), (int64_t)gnutls_x509_crt_get_expiration_time(chain[0]));
  assert_string_equal(ae_cert_issuer(c), "CN=" AE_CA_INTERMEDIATE_CN);
  gnutls_x509_crt_deinit(chain[0]);
  gnutls_x509_crt_deinit(chain[1]);

  /* The ARI id from the same parse is the one the ACME client computes from the PEM. */
  char want[320];
  ae_err err = {0};
  assert_int_equal(ae_acme_cert_id(cp, want, sizeof(want), &err), 0);
  assert_string_equal(ids.cert_id, want);

  /* The served key signs for the leaf's public key. */
  gnutls_datum_t msg = {(unsigned char *)"hello", 5}, sig = {NULL, 0};
  assert_int_equal(gnutls_privkey_sign_data(ae_cert_privkey(c), GNUTLS_DIG_SHA256, 0, &msg, &sig), 0);
  assert_true(gnutls_pubkey_verify_data2(pc[0].pubkey, GNUTLS_SIGN_ECDSA_SHA256, 0, &msg, &sig) >= 0);
  gnutls_free(sig.data);

  /* Without the intermediate: a chain of one, and the plain constructor agrees. */
  const char *end = strstr(cp, "-----END CERTIFICATE-----");
  size_t leaflen = (size_t)(end - cp) + strlen("-----END CERTIFICATE-----");
  ae_cert *c1 = NULL;
  assert_int_equal(ae_cert_from_pem(cp, leaflen, kp, strlen(kp), &c1, &err), 0);
  ae_cert_pcerts(c1, &n);
  assert_int_equal(n, 1);
  assert_string_equal(ae_cert_serial(c1), ae_cert_serial(c));
  ae_cert_unref(c1);

  /* A SEC1 ("EC PRIVATE KEY") key is read too. */
  gnutls_x509_privkey_t k;
  gnutls_datum_t kd = {(unsigned char *)kp, (unsigned)strlen(kp)}, sec1 = {NULL, 0};
  assert_int_equal(gnutls_x509_privkey_init(&k), 0);
  assert_int_equal(gnutls_x509_privkey_import2(k, &kd, GNUTLS_X509_FMT_PEM, NULL, GNUTLS_PKCS_PLAIN), 0);
  assert_int_equal(gnutls_x509_privkey_export2(k, GNUTLS_X509_FMT_PEM, &sec1), 0);
  assert_non_null(strstr((char *)sec1.data, "EC PRIVATE KEY"));
  char *sk = calloc(1, sec1.size + 1);
  memcpy(sk, sec1.data, sec1.size);
  ae_cert *c2 = load_ok("a.parse.test", cp, sk, NULL);
  assert_string_equal(ae_cert_serial(c2), ae_cert_serial(c));
  ae_cert_unref(c2);
  free(sk);
  gnutls_free(sec1.data);
  gnutls_x509_privkey_deinit(k);

  ae_cert_unref(c);
  free(cp);
  free(kp);
  ae_ca_free(ca);
}

static void test_shared_intermediate_refcount(void **state) {
  fixture *f = *state;
  ae_ca *ca = open_ca(f, 0, 0);
  size_t d0 = 0, r0 = 0, d = 0, r = 0;
  ae_cert_issuer_stats(&d0, &r0);
  char *cp1 = NULL, *kp1 = NULL, *cp2 = NULL, *kp2 = NULL;
  mint(ca, "one.parse.test", &cp1, &kp1);
  mint(ca, "two.parse.test", &cp2, &kp2);
  ae_cert *c1 = load_ok("one.parse.test", cp1, kp1, NULL);
  ae_cert_issuer_stats(&d, &r);
  assert_int_equal(d, d0 + 1);
  assert_int_equal(r, r0 + 1);
  ae_cert *c2 = load_ok("two.parse.test", cp2, kp2, NULL);
  ae_cert_issuer_stats(&d, &r);
  assert_int_equal(d, d0 + 1); /* the same intermediate: not parsed again */
  assert_int_equal(r, r0 + 2);
  unsigned n1 = 0, n2 = 0;
  gnutls_pcert_st *p1 = ae_cert_pcerts(c1, &n1), *p2 = ae_cert_pcerts(c2, &n2);
  assert_int_equal(n1, 2);
  assert_int_equal(n2, 2);
  assert_ptr_equal(p1[1].cert.data, p2[1].cert.data);
  assert_ptr_equal(p1[1].pubkey, p2[1].pubkey);
  assert_ptr_not_equal(p1[0].cert.data, p2[0].cert.data);

  /* A refused pair takes no reference. */
  load_bad("two.parse.test", cp2, strlen(cp2), kp1, "does not match", NULL);
  ae_cert_issuer_stats(&d, &r);
  assert_int_equal(r, r0 + 2);

  /* A reference in use keeps the shared intermediate alive after the other leaf is gone. */
  ae_cert *hold = ae_cert_ref(c2);
  ae_cert_unref(c1);
  ae_cert_issuer_stats(&d, &r);
  assert_int_equal(d, d0 + 1);
  assert_int_equal(r, r0 + 1);
  ae_cert_unref(c2);
  ae_cert_issuer_stats(&d, &r);
  assert_int_equal(r, r0 + 1);
  unsigned nh = 0;
  gnutls_pcert_st *ph = ae_cert_pcerts(hold, &nh);
  assert_int_equal(nh, 2);
  gnutls_x509_crt_t inter;
  assert_int_equal(gnutls_x509_crt_init(&inter), 0);
  assert_int_equal(gnutls_x509_crt_import(inter, &ph[1].cert, GNUTLS_X509_FMT_DER), 0); /* still readable (ASan) */
  gnutls_x509_crt_deinit(inter);
  ae_cert_unref(hold);
  ae_cert_issuer_stats(&d, &r);
  assert_int_equal(d, d0); /* the last chain gone: the intermediate is freed */
  assert_int_equal(r, r0);

  /* A new intermediate (rotation) is a second entry while leaves of both are held. */
  c1 = load_ok("one.parse.test", cp1, kp1, NULL);
  int rotated = 0;
  ae_err err = {0};
  assert_int_equal(ae_ca_rotate_if_due(ca, (int64_t)time(NULL) + 365LL * 86400, &rotated, &err), 0);
  assert_true(rotated);
  char *cp3 = NULL, *kp3 = NULL;
  assert_int_equal(ae_ca_mint_pem(ca, "three.parse.test", (int64_t)time(NULL) + 365LL * 86400, &cp3, &kp3, &err), 0);
  ae_cert *c3 = load_ok("three.parse.test", cp3, kp3, NULL);
  ae_cert_issuer_stats(&d, &r);
  assert_int_equal(d, d0 + 2);
  assert_int_equal(r, r0 + 2);
  ae_cert_unref(c1);
  ae_cert_unref(c3);
  ae_cert_issuer_stats(&d, &r);
  assert_int_equal(d, d0);
  assert_int_equal(r, r0);

  free(cp1);
  free(kp1);
  free(cp2);
  free(kp2);
  free(cp3);
  free(kp3);
  ae_ca_free(ca);
}

static void test_key_mismatch_refused(void **state) {
  fixture *f = *state;
  ae_ca *ca = open_ca(f, 0, 0);
  char *cp1 = NULL, *kp1 = NULL, *cp2 = NULL, *kp2 = NULL;
  mint(ca, "m1.parse.test", &cp1, &kp1);
  mint(ca, "m2.parse.test", &cp2, &kp2);
  load_bad("m1.parse.test", cp1, strlen(cp1), kp2, "m1.parse.test: private key does not match certificate", NULL);
  ae_cert *c = NULL;
  ae_err err = {0};
  assert_int_equal(ae_cert_from_pem(cp2, strlen(cp2), kp1, strlen(kp1), &c, &err), AE_EINVAL);
  assert_null(c);
  assert_non_null(strstr(err.msg, "does not match"));

  /* Other key types are matched by key id. */
  char *rc1 = NULL, *rk1 = NULL, *rc2 = NULL, *rk2 = NULL;
  assert_int_equal(ae_test_make_rsa_cert("r1", "r1.parse.test", 2048, &rc1, &rk1), 0);
  assert_int_equal(ae_test_make_rsa_cert("r2", "r2.parse.test", 2048, &rc2, &rk2), 0);
  load_bad("r1.parse.test", rc1, strlen(rc1), rk2, "r1.parse.test: private key does not match", NULL);
  load_bad("r1.parse.test", rc1, strlen(rc1), kp1, "does not match", NULL); /* ECDSA key, RSA leaf */
  load_bad("m1.parse.test", cp1, strlen(cp1), rk1, "does not match", NULL); /* RSA key, ECDSA leaf */
  ae_cert *r = load_ok("r1.parse.test", rc1, rk1, NULL);
  assert_true(ae_cert_covers(r, "r1.parse.test"));
  ae_cert_unref(r);

  free(rc1);
  free(rk1);
  free(rc2);
  free(rk2);
  free(cp1);
  free(kp1);
  free(cp2);
  free(kp2);
  ae_ca_free(ca);
}

static char *cat(const char *a, size_t alen, const char *b) {
  char *s = calloc(1, alen + strlen(b) + 1);
  memcpy(s, a, alen);
  strcat(s, b);
  return s;
}

static void test_garbage_and_truncated(void **state) {
  fixture *f = *state;
  ae_ca *ca = open_ca(f, 0, 0);
  char *cp = NULL, *kp = NULL;
  mint(ca, "g.parse.test", &cp, &kp);
  const char *W = "g.parse.test (certificate)";

  /* Not PEM at all; empty; a key where the chain should be. */
  const char *junk = "this is not a certificate\n";
  load_bad("g.parse.test", junk, strlen(junk), kp, W, "cannot parse certificate: no PEM block");
  load_bad("g.parse.test", cp, 0, kp, W, "no certificate found");
  load_bad("g.parse.test", kp, strlen(kp), kp, W, "no PEM block");

  /* Truncated file: the intermediate's block cut in its base64 (no END line). */
  const char *second = strstr(strstr(cp, "-----END CERTIFICATE-----") + 5, "-----BEGIN CERTIFICATE-----");
  assert_non_null(second);
  size_t cut = (size_t)(second - cp) + 100;
  load_bad("g.parse.test", cp, cut, kp, W, "certificate 2 of the chain: truncated PEM block");
  /* Cut inside the leaf's base64. */
  load_bad("g.parse.test", cp, 120, kp, W, "certificate 1 of the chain: truncated");
  /* Cut inside the END line itself. */
  const char *end1 = strstr(cp, "-----END CERTIFICATE-----");
  load_bad("g.parse.test", cp, (size_t)(end1 - cp) + 12, kp, W, "truncated");

  /* Base64 that decodes to something shorter than the certificate: the DER parse fails. */
  const char *body = strchr(cp, '\n') + 1;
  char *shortened = cat(cp, (size_t)(body - cp), body + 65); /* one base64 line dropped */
  load_bad("g.parse.test", shortened, strlen(shortened), kp, W, "cannot parse certificate");
  /* A byte base64 does not have inside the leaf's block. */
  char *badchar = strdup(cp);
  badchar[(size_t)(body - cp) + 10] = '*';
  load_bad("g.parse.test", badchar, strlen(badchar), kp, W, "certificate 1 of the chain");
  /* Garbage after a good leaf in the intermediate's block. */
  char *badinter = strdup(cp);
  char *ib = strchr(badinter + (second - cp), '\n') + 1;
  memset(ib, 'A', 40);
  load_bad("g.parse.test", badinter, strlen(badinter), kp, W, "certificate 2 of the chain");

  /* Keys: garbage, truncated. */
  load_bad("g.parse.test", cp, strlen(cp), "garbage\n", "g.parse.test (private key)", "cannot parse private key");
  char *kcut = strndup(kp, strlen(kp) / 2);
  load_bad("g.parse.test", cp, strlen(cp), kcut, "g.parse.test (private key)", "cannot parse private key");

  /* Files: the message names the file. */
  char cpath[256], kpath[256];
  snprintf(cpath, sizeof(cpath), "%s/cut.crt", f->dir);
  snprintf(kpath, sizeof(kpath), "%s/cut.key", f->dir);
  FILE *fp = fopen(cpath, "w");
  assert_non_null(fp);
  assert_int_equal(fwrite(cp, 1, cut, fp), cut);
  fclose(fp);
  fp = fopen(kpath, "w");
  assert_non_null(fp);
  fputs(kp, fp);
  fclose(fp);
  ae_cert *c = NULL;
  ae_err err = {0};
  assert_int_equal(ae_cert_load_files(cpath, kpath, &c, &err), AE_EINVAL);
  assert_null(c);
  assert_true(strncmp(err.msg, cpath, strlen(cpath)) == 0);
  assert_non_null(strstr(err.msg, "truncated"));

  /* More blocks than any real chain has. */
  char *many = strdup("");
  for (int i = 0; i < 17; i++) {
    char *m = cat(many, strlen(many), cp);
    free(many);
    many = m;
  }
  load_bad("g.parse.test", many, strlen(many), kp, W, "more than 16 certificates");

  free(many);
  free(kcut);
  free(badinter);
  free(badchar);
  free(shortened);
  free(cp);
  free(kp);
  ae_ca_free(ca);
}

/* The storage read on the cold path: one pair by path; a FIFO is refused without blocking. */
static void test_fs_read_pair(void **state) {
  fixture *f = *state;
  ae_ca *ca = open_ca(f, 0, 0);
  char *cp = NULL, *kp = NULL;
  mint(ca, "s.parse.test", &cp, &kp);
  ae_storage_bundle b = {.ca_host = "ca.test", .domain = "s.parse.test", .chain = cp, .key = kp, .meta = "{}"};
  ae_err err = {0};
  if (ae_storage_commit(f->st, &b, &err) != 0)
    fail_msg("put: %s", err.msg);
  char *rc = NULL, *rk = NULL;
  size_t rcl = 0, rkl = 0;
  assert_int_equal(ae_storage_get_cert(f->st, "ca.test", "s.parse.test", &rc, &rcl, &rk, &rkl, &err), 0);
  assert_int_equal(rcl, strlen(cp));
  assert_string_equal(rc, cp);
  assert_int_equal(rkl, strlen(kp));
  assert_string_equal(rk, kp);
  ae_cert *c = load_ok("s.parse.test", rc, rk, NULL);
  ae_cert_unref(c);
  free(rc);
  free(rk);
  /* The cache-only read of the pair just written: the same bytes, or AE_EAGAIN and nothing. */
  rc = rk = NULL;
  int nr = ae_storage_get_cert_nowait(f->st, "ca.test", "s.parse.test", &rc, &rcl, &rk, &rkl, &err);
  if (nr == 0) {
    assert_string_equal(rc, cp);
    assert_string_equal(rk, kp);
  } else if (nr != AE_EAGAIN) {
    fail_msg("nowait read: %d %s", nr, err.msg);
  }
  free(rc);
  free(rk);

  assert_int_equal(ae_storage_get_cert(f->st, "ca.test", "absent.parse.test", &rc, &rcl, &rk, &rkl, &err),
                   AE_ENOTFOUND);

  char path[512];
  snprintf(path, sizeof(path), "%s/fifo", f->dir);
  assert_int_equal(mkfifo(path, 0600), 0);
  char *v = NULL;
  size_t vl = 0;
  assert_int_equal(ae_storage_get(f->st, "fifo", &v, &vl, &err), AE_ENOTFOUND);
  assert_non_null(strstr(err.msg, "not a file"));
  assert_null(v);
  snprintf(path, sizeof(path), "%s/empty", f->dir);
  FILE *fp = fopen(path, "w");
  assert_non_null(fp);
  fclose(fp);
  assert_int_equal(ae_storage_get(f->st, "empty", &v, &vl, &err), 0);
  assert_int_equal(vl, 0);
  assert_string_equal(v, "");
  free(v);

  free(cp);
  free(kp);
  ae_ca_free(ca);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_leaf_and_intermediate, setup, teardown),
      cmocka_unit_test_setup_teardown(test_shared_intermediate_refcount, setup, teardown),
      cmocka_unit_test_setup_teardown(test_key_mismatch_refused, setup, teardown),
      cmocka_unit_test_setup_teardown(test_garbage_and_truncated, setup, teardown),
      cmocka_unit_test_setup_teardown(test_fs_read_pair, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
