/* OCSP response verification against openssl-made fixtures (tests/data/ocsp/make.sh). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <gnutls/ocsp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "acmedge/ocsp.h"

static char *path_of(const char *name) {
  const char *dir = getenv("AE_TEST_DATA");
  static char buf[1024];
  snprintf(buf, sizeof(buf), "%s/ocsp/%s", dir ? dir : "tests/data", name);
  return buf;
}

static void load(const char *name, unsigned char **data, size_t *len) {
  char *d = NULL;
  ae_err err = {0};
  int rc = ae_read_file(path_of(name), 1 << 20, &d, len, &err);
  if (rc != 0)
    fail_msg("%s", err.msg);
  *data = (unsigned char *)d;
}

static gnutls_x509_crt_t crt(const char *name) {
  unsigned char *pem = NULL;
  size_t len = 0;
  load(name, &pem, &len);
  gnutls_x509_crt_t c = NULL;
  gnutls_datum_t d = {pem, (unsigned)len};
  assert_int_equal(gnutls_x509_crt_init(&c), 0);
  assert_int_equal(gnutls_x509_crt_import(c, &d, GNUTLS_X509_FMT_PEM), 0);
  free(pem);
  return c;
}

/* thisUpdate of a fixture, read independently of the code under test. */
static int64_t this_update_of(const unsigned char *der, size_t len) {
  gnutls_ocsp_resp_t r = NULL;
  gnutls_datum_t d = {(unsigned char *)(uintptr_t)der, (unsigned)len};
  assert_int_equal(gnutls_ocsp_resp_init(&r), 0);
  assert_int_equal(gnutls_ocsp_resp_import(r, &d), 0);
  unsigned st = 0;
  time_t tu = 0, nu = 0, rt = 0;
  unsigned reason = 0;
  assert_int_equal(gnutls_ocsp_resp_get_single(r, 0, NULL, NULL, NULL, NULL, &st, &tu, &nu, &rt, &reason), 0);
  gnutls_ocsp_resp_deinit(r);
  return (int64_t)tu;
}

/* Verifies fixture resp for leaf at thisUpdate + offset; returns the rc, message in err. */
static int check(const char *resp, const char *leaf, int64_t offset, ae_ocsp_verdict *v, ae_err *err) {
  unsigned char *der = NULL;
  size_t len = 0;
  load(resp, &der, &len);
  gnutls_x509_crt_t l = crt(leaf), ca = crt("ca.pem");
  memset(err, 0, sizeof(*err));
  int rc = ae_ocsp_verify(der, len, l, ca, this_update_of(der, len) + offset, v, err);
  gnutls_x509_crt_deinit(l);
  gnutls_x509_crt_deinit(ca);
  free(der);
  return rc;
}

static void test_good(void **state) {
  (void)state;
  ae_ocsp_verdict v;
  ae_err err;
  assert_int_equal(check("good.der", "leaf.example.pem", 60, &v, &err), 0);
  assert_int_equal(v.status, AE_OCSP_GOOD);
  assert_int_equal(v.next_update - v.this_update, 7 * 86400);
  assert_int_equal(v.reason, -1);
}

static void test_delegated_responder(void **state) {
  (void)state;
  ae_ocsp_verdict v;
  ae_err err;
  assert_int_equal(check("delegated.der", "leaf.example.pem", 60, &v, &err), 0);
  assert_int_equal(v.status, AE_OCSP_GOOD);
  /* Issued by the CA but without id-kp-OCSPSigning: not a responder. */
  assert_int_equal(check("noeku.der", "leaf.example.pem", 60, &v, &err), AE_EPROTO);
  assert_non_null(strstr(err.msg, "signature"));
}

static void test_revoked_and_unknown(void **state) {
  (void)state;
  ae_ocsp_verdict v;
  ae_err err;
  assert_int_equal(check("revoked.der", "leaf.example.pem", 60, &v, &err), 0);
  assert_int_equal(v.status, AE_OCSP_REVOKED);
  assert_int_equal(v.reason, 1);
  assert_string_equal(ae_ocsp_reason_name(v.reason), "keyCompromise");
  assert_true(v.revoked_at > 0);
  assert_int_equal(check("unknown.der", "leaf.example.pem", 60, &v, &err), 0);
  assert_int_equal(v.status, AE_OCSP_UNKNOWN);
}

static void test_rejections(void **state) {
  (void)state;
  ae_ocsp_verdict v;
  ae_err err;
  /* Signed by an unrelated key with the CA's name: verify_direct says rc 0 but a bad status. */
  assert_int_equal(check("rogue.der", "leaf.example.pem", 60, &v, &err), AE_EPROTO);
  assert_non_null(strstr(err.msg, "signature"));
  assert_int_equal(check("other.der", "leaf.example.pem", 60, &v, &err), AE_EPROTO);
  assert_non_null(strstr(err.msg, "another certificate"));
  assert_int_equal(check("nonext.der", "leaf.example.pem", 60, &v, &err), AE_EPROTO);
  assert_non_null(strstr(err.msg, "nextUpdate"));
  assert_int_equal(check("short.der", "short.example.pem", 60, &v, &err), AE_EPROTO);
  assert_non_null(strstr(err.msg, "notAfter"));
  /* Clock checks: thisUpdate too far ahead of us, and an expired answer. */
  assert_int_equal(check("good.der", "leaf.example.pem", -(AE_OCSP_SKEW_S + 10), &v, &err), AE_EPROTO);
  assert_non_null(strstr(err.msg, "future"));
  assert_int_equal(check("good.der", "leaf.example.pem", -(AE_OCSP_SKEW_S - 10), &v, &err), 0);
  assert_int_equal(check("good.der", "leaf.example.pem", 7 * 86400, &v, &err), AE_EPROTO);
  assert_non_null(strstr(err.msg, "expired"));
}

static void test_garbage(void **state) {
  (void)state;
  gnutls_x509_crt_t l = crt("leaf.example.pem"), ca = crt("ca.pem");
  ae_ocsp_verdict v;
  ae_err err = {0};
  const unsigned char junk[] = "<html>500</html>";
  assert_int_equal(ae_ocsp_verify(junk, sizeof(junk) - 1, l, ca, 0, &v, &err), AE_EPROTO);
  assert_non_null(strstr(err.msg, "unparsable"));
  /* OCSPResponse { responseStatus tryLater (3) } */
  const unsigned char try_later[] = {0x30, 0x03, 0x0a, 0x01, 0x03};
  assert_int_equal(ae_ocsp_verify(try_later, sizeof(try_later), l, ca, 0, &v, &err), AE_EPROTO);
  assert_non_null(strstr(err.msg, "tryLater"));
  assert_int_equal(ae_ocsp_verify(NULL, 0, l, ca, 0, &v, &err), AE_EPROTO);
  gnutls_x509_crt_deinit(l);
  gnutls_x509_crt_deinit(ca);
}

static void test_url_and_request(void **state) {
  (void)state;
  gnutls_x509_crt_t l = crt("leaf.example.pem"), ca = crt("ca.pem");
  char url[256];
  assert_int_equal(ae_ocsp_responder_url(l, url, sizeof(url)), 0);
  assert_string_equal(url, "http://127.0.0.1:1/ocsp");
  assert_int_equal(ae_ocsp_responder_url(ca, url, sizeof(url)), AE_ENOTFOUND);
  assert_int_equal(ae_ocsp_responder_url(l, url, 10), AE_ENOTFOUND); /* would not fit */

  unsigned char *der = NULL;
  size_t len = 0;
  ae_err err = {0};
  assert_int_equal(ae_ocsp_build_request(l, ca, &der, &len, &err), 0);
  /* The request names the leaf's serial and carries no nonce (cacheable answers). */
  gnutls_ocsp_req_t req = NULL;
  gnutls_datum_t d = {der, (unsigned)len}, serial = {NULL, 0}, nonce = {NULL, 0};
  assert_int_equal(gnutls_ocsp_req_init(&req), 0);
  assert_int_equal(gnutls_ocsp_req_import(req, &d), 0);
  assert_int_equal(gnutls_ocsp_req_get_cert_id(req, 0, NULL, NULL, NULL, &serial), 0);
  assert_int_equal(serial.size, 2);
  assert_int_equal(serial.data[0], 0x10);
  assert_int_equal(serial.data[1], 0x01);
  assert_true(gnutls_ocsp_req_get_nonce(req, NULL, &nonce) < 0);
  gnutls_free(serial.data);
  gnutls_ocsp_req_deinit(req);
  free(der);
  gnutls_x509_crt_deinit(l);
  gnutls_x509_crt_deinit(ca);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_good),          cmocka_unit_test(test_delegated_responder),
      cmocka_unit_test(test_revoked_and_unknown), cmocka_unit_test(test_rejections),
      cmocka_unit_test(test_garbage),       cmocka_unit_test(test_url_and_request),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
