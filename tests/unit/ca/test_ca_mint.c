/* Unit tests for leaves minted straight into served certificates (ae_ca_mint, built with
 * ae_cert_from_parts, no PEM in between): the served chain, the leaf profile, the key, the shared
 * intermediate, and the constructor's refusals. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <gnutls/abstract.h>
#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>

#include "acmedge/ca.h"
#include "acmedge/certstore.h"

#include "ca_test_util.h"

static gnutls_x509_crt_t from_der(const gnutls_datum_t *d) {
  gnutls_x509_crt_t c;
  assert_int_equal(gnutls_x509_crt_init(&c), 0);
  assert_int_equal(gnutls_x509_crt_import(c, d, GNUTLS_X509_FMT_DER), 0);
  return c;
}

static size_t key_id(gnutls_x509_crt_t c, int authority, unsigned char *buf) {
  size_t len = 64;
  unsigned crit = 0;
  int g = authority ? gnutls_x509_crt_get_authority_key_id(c, buf, &len, &crit)
                    : gnutls_x509_crt_get_subject_key_id(c, buf, &len, &crit);
  assert_true(g >= 0);
  return len;
}

static ae_cert *mint(ae_ca *ca, const char *name, int64_t now) {
  ae_cert *c = NULL;
  ae_err err = {0};
  if (ae_ca_mint(ca, name, now, &c, &err) != 0)
    fail_msg("ae_ca_mint %s: %s", name, err.msg);
  return c;
}

static void test_served_chain_and_profile(void **state) {
  fixture *f = *state;
  ae_ca *ca = open_ca(f, 0, 0);
  int64_t now = (int64_t)time(NULL);
  ae_cert *c = mint(ca, "A.Served.test", now);
  assert_int_equal(ae_ca_mints(ca), 1);

  /* Served chain: leaf + the intermediate, byte for byte the stored one. */
  unsigned n = 0;
  gnutls_pcert_st *pc = ae_cert_pcerts(c, &n);
  assert_int_equal(n, 2);
  char *ip = ae_ca_intermediate_pem(ca), *rp = ae_ca_root_pem(ca);
  gnutls_x509_crt_t inter = parse1(ip), root = parse1(rp);
  gnutls_datum_t ider = {NULL, 0};
  assert_int_equal(gnutls_x509_crt_export2(inter, GNUTLS_X509_FMT_DER, &ider), 0);
  assert_int_equal(pc[1].cert.size, ider.size);
  assert_memory_equal(pc[1].cert.data, ider.data, ider.size);
  gnutls_free(ider.data);

  /* The served leaf DER verifies up to the root and carries the whole leaf profile. */
  gnutls_x509_crt_t chain[2] = {from_der(&pc[0].cert), inter};
  unsigned status = 99;
  assert_int_equal(gnutls_x509_crt_list_verify(chain, 2, &root, 1, NULL, 0, 0, &status), 0);
  assert_int_equal(status, 0);
  assert_true(gnutls_x509_crt_check_hostname(chain[0], "a.served.test"));
  assert_false(gnutls_x509_crt_check_hostname(chain[0], "b.served.test"));
  unsigned char a[64], s[64], own[64];
  size_t al = key_id(chain[0], 1, a), sl = key_id(inter, 0, s), ol = key_id(chain[0], 0, own);
  assert_int_equal(al, sl);
  assert_memory_equal(a, s, al);
  assert_int_equal(ol, 20);
  assert_false(ol == sl && memcmp(own, s, ol) == 0);
  gnutls_datum_t iss, sub;
  assert_int_equal(gnutls_x509_crt_get_raw_issuer_dn(chain[0], &iss), 0);
  assert_int_equal(gnutls_x509_crt_get_raw_dn(inter, &sub), 0);
  assert_int_equal(iss.size, sub.size);
  assert_memory_equal(iss.data, sub.data, iss.size);
  gnutls_free(iss.data);
  gnutls_free(sub.data);
  assert_int_equal((int64_t)gnutls_x509_crt_get_activation_time(chain[0]), now - 60);
  assert_int_equal((int64_t)gnutls_x509_crt_get_expiration_time(chain[0]), now + AE_CA_LEAF_LIFETIME_S);
  unsigned crit = 0, caf = 1, ku = 0;
  assert_int_equal(gnutls_x509_crt_get_basic_constraints(chain[0], &crit, &caf, NULL), 0);
  assert_int_equal(caf, 0);
  assert_true(gnutls_x509_crt_get_key_usage(chain[0], &ku, &crit) >= 0);
  assert_int_equal(ku, GNUTLS_KEY_DIGITAL_SIGNATURE);
  char oid[128];
  size_t oidl = sizeof(oid);
  assert_int_equal(gnutls_x509_crt_get_key_purpose_oid(chain[0], 0, oid, &oidl, NULL), 0);
  assert_string_equal(oid, GNUTLS_KP_TLS_WWW_SERVER);
  unsigned bits = 0;
  assert_int_equal(gnutls_x509_crt_get_pk_algorithm(chain[0], &bits), GNUTLS_PK_ECDSA);
  assert_int_equal(bits, 256);

  /* The cert's metadata is read from that same leaf. */
  assert_int_equal(ae_cert_not_before(c), now - 60);
  assert_int_equal(ae_cert_not_after(c), now + AE_CA_LEAF_LIFETIME_S);
  assert_true(ae_cert_covers(c, "a.served.test"));
  assert_false(ae_cert_covers(c, "b.served.test"));
  assert_int_equal(ae_cert_name_count(c), 1);
  assert_string_equal(ae_cert_name(c, 0), "a.served.test");
  assert_string_equal(ae_ca_issuer_kind(ae_cert_issuer(c)), "internal");
  unsigned char raw[32];
  size_t rl = sizeof(raw);
  char hex[65];
  assert_int_equal(gnutls_x509_crt_get_serial(chain[0], raw, &rl), 0);
  assert_int_equal(rl, 16);
  for (size_t i = 0; i < rl; i++)
    snprintf(hex + 2 * i, 3, "%02x", raw[i]);
  assert_string_equal(ae_cert_serial(c), hex);
  /* A compact key is accounted, not the 2 KiB GnuTLS form. */
  assert_true(ae_cert_bytes(c) > 0 && ae_cert_bytes(c) < 2000);

  /* The served key is the leaf's key: its signature verifies with the leaf's public key. */
  static const unsigned char msg[] = "handshake transcript stand-in";
  gnutls_datum_t m = {(unsigned char *)msg, sizeof(msg)}, sig = {NULL, 0};
  assert_int_equal(gnutls_privkey_sign_data2(ae_cert_privkey(c), GNUTLS_SIGN_ECDSA_SHA256, 0, &m, &sig), 0);
  assert_true(gnutls_pubkey_verify_data2(pc[0].pubkey, GNUTLS_SIGN_ECDSA_SHA256, 0, &m, &sig) >= 0);
  gnutls_free(sig.data);

  gnutls_x509_crt_deinit(chain[0]);
  gnutls_x509_crt_deinit(inter);
  gnutls_x509_crt_deinit(root);
  free(ip);
  free(rp);
  ae_cert_unref(c);
  ae_ca_free(ca);
}

static void test_served_leaves_distinct_share_intermediate(void **state) {
  fixture *f = *state;
  ae_ca *ca = open_ca(f, 0, 0);
  int64_t now = (int64_t)time(NULL);
  ae_cert *a = mint(ca, "a.test", now), *b = mint(ca, "a.test", now);
  unsigned na = 0, nb = 0;
  gnutls_pcert_st *pa = ae_cert_pcerts(a, &na), *pb = ae_cert_pcerts(b, &nb);
  assert_int_equal(na, 2);
  assert_int_equal(nb, 2);
  /* A fresh key and serial per leaf... */
  assert_string_not_equal(ae_cert_serial(a), ae_cert_serial(b));
  unsigned char ka[64], kb[64];
  size_t la = sizeof(ka), lb = sizeof(kb);
  assert_int_equal(gnutls_pubkey_get_key_id(pa[0].pubkey, GNUTLS_KEYID_USE_SHA256, ka, &la), 0);
  assert_int_equal(gnutls_pubkey_get_key_id(pb[0].pubkey, GNUTLS_KEYID_USE_SHA256, kb, &lb), 0);
  assert_int_equal(la, lb);
  assert_true(memcmp(ka, kb, la) != 0);
  /* ...and one parsed intermediate shared by both. */
  assert_ptr_equal(pa[1].cert.data, pb[1].cert.data);
  assert_int_equal(ae_ca_mints(ca), 2);
  ae_cert_unref(a);
  ae_cert_unref(b);
  ae_ca_free(ca);
}

static void test_from_parts_refusals(void **state) {
  (void)state;
  ae_cert *c = NULL;
  ae_err err = {0};
  assert_int_equal(ae_cert_from_parts(NULL, NULL, 0, NULL, &c, &err), AE_EINVAL);
  assert_null(c);
  assert_non_null(strstr(err.msg, "no leaf or no key"));

  /* A non-ECDSA key has no compact form: refused, nothing leaked. */
  gnutls_x509_privkey_t ed = NULL;
  assert_int_equal(gnutls_x509_privkey_init(&ed), 0);
  assert_int_equal(gnutls_x509_privkey_generate2(ed, GNUTLS_PK_EDDSA_ED25519, 256, 0, NULL, 0), 0);
  gnutls_x509_crt_t crt = NULL;
  assert_int_equal(gnutls_x509_crt_init(&crt), 0);
  assert_int_equal(gnutls_x509_crt_set_key(crt, ed), 0);
  assert_int_equal(ae_cert_from_parts(crt, NULL, 0, ed, &c, &err), AE_EINVAL);
  assert_null(c);
  assert_non_null(strstr(err.msg, "not an ECDSA"));
  gnutls_x509_crt_deinit(crt);
  gnutls_x509_privkey_deinit(ed);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_served_chain_and_profile, setup, teardown),
      cmocka_unit_test_setup_teardown(test_served_leaves_distinct_share_intermediate, setup, teardown),
      cmocka_unit_test(test_from_parts_refusals),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
