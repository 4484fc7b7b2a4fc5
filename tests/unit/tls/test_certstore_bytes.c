/* Unit tests for the byte-bounded certificate cache (cert_cache.max_bytes) and the compact
 * private keys behind it: the bound holds after every insert, alone and with max_entries;
 * certificates in use survive eviction and still sign (run under ASan); the accounted size tracks
 * the real heap growth; compact ECDSA keys (P-256, P-384) and RSA keys sign verifiably. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <gnutls/abstract.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#if defined(__SANITIZE_ADDRESS__)
/* From libasan (sanitizer/allocator_interface.h, which not every compiler package ships). */
size_t __sanitizer_get_current_allocated_bytes(void);
#endif

#include "acmedge/certstore.h"
#include "acmedge/common.h"

static ae_cert *make_cert(const char *cn) {
  char *cpem = NULL, *kpem = NULL;
  ae_err err = {0};
  const char *names[] = {cn};
  if (ae_cert_generate_selfsigned(cn, names, 1, 30, &cpem, &kpem, &err) != 0)
    fail_msg("generate: %s", err.msg);
  ae_cert *c = NULL;
  if (ae_cert_from_pem(cpem, strlen(cpem), kpem, strlen(kpem), &c, &err) != 0)
    fail_msg("from_pem: %s", err.msg);
  free(cpem);
  free(kpem);
  return c;
}

/* A self-signed cert for cn with a fresh key of the given kind, through GnuTLS directly. */
static ae_cert *make_cert_kind(const char *cn, gnutls_pk_algorithm_t pk, unsigned bits) {
  gnutls_x509_privkey_t k;
  gnutls_x509_crt_t crt;
  assert_int_equal(gnutls_x509_privkey_init(&k), 0);
  assert_int_equal(gnutls_x509_privkey_generate(k, pk, bits, 0), 0);
  assert_int_equal(gnutls_x509_crt_init(&crt), 0);
  assert_int_equal(gnutls_x509_crt_set_version(crt, 3), 0);
  unsigned char serial[8] = {1, 2, 3, 4, 5, 6, 7, 8};
  assert_int_equal(gnutls_x509_crt_set_serial(crt, serial, sizeof(serial)), 0);
  time_t now = time(NULL);
  assert_int_equal(gnutls_x509_crt_set_activation_time(crt, now - 60), 0);
  assert_int_equal(gnutls_x509_crt_set_expiration_time(crt, now + 86400), 0);
  assert_int_equal(gnutls_x509_crt_set_dn_by_oid(crt, GNUTLS_OID_X520_COMMON_NAME, 0, cn, (unsigned)strlen(cn)), 0);
  assert_int_equal(gnutls_x509_crt_set_key(crt, k), 0);
  assert_int_equal(gnutls_x509_crt_sign2(crt, crt, k, GNUTLS_DIG_SHA256, 0), 0);
  gnutls_datum_t cp = {NULL, 0}, kp = {NULL, 0};
  assert_int_equal(gnutls_x509_crt_export2(crt, GNUTLS_X509_FMT_PEM, &cp), 0);
  assert_int_equal(gnutls_x509_privkey_export2(k, GNUTLS_X509_FMT_PEM, &kp), 0);
  ae_cert *c = NULL;
  ae_err err = {0};
  if (ae_cert_from_pem((const char *)cp.data, cp.size, (const char *)kp.data, kp.size, &c, &err) != 0)
    fail_msg("from_pem: %s", err.msg);
  gnutls_free(cp.data);
  gnutls_free(kp.data);
  gnutls_x509_crt_deinit(crt);
  gnutls_x509_privkey_deinit(k);
  return c;
}

/* Signs with the cert's key (as a handshake does) and verifies with the leaf's public key. */
static void assert_signs(ae_cert *c, gnutls_sign_algorithm_t algo) {
  unsigned n = 0;
  gnutls_pcert_st *pc = ae_cert_pcerts(c, &n);
  assert_true(n >= 1);
  const char msg[] = "transcript hash input";
  gnutls_datum_t data = {(unsigned char *)(uintptr_t)msg, sizeof(msg) - 1}, sig = {NULL, 0};
  assert_int_equal(gnutls_privkey_sign_data2(ae_cert_privkey(c), algo, 0, &data, &sig), 0);
  assert_int_equal(gnutls_pubkey_verify_data2(pc[0].pubkey, algo, 0, &data, &sig), 0);
  /* A flipped byte of the data must not verify: the check above is not vacuous. */
  char bad[sizeof(msg)];
  memcpy(bad, msg, sizeof(msg));
  bad[0] ^= 1;
  gnutls_datum_t bd = {(unsigned char *)bad, sizeof(msg) - 1};
  assert_true(gnutls_pubkey_verify_data2(pc[0].pubkey, algo, 0, &bd, &sig) < 0);
  gnutls_free(sig.data);
}

static void test_compact_keys_sign(void **state) {
  (void)state;
  ae_cert *p256 = make_cert("p256.test");
  assert_signs(p256, GNUTLS_SIGN_ECDSA_SECP256R1_SHA256); /* TLS 1.3 */
  assert_signs(p256, GNUTLS_SIGN_ECDSA_SHA384);           /* TLS 1.2 may pair another hash */
  assert_int_equal(gnutls_privkey_get_pk_algorithm(ae_cert_privkey(p256), NULL), GNUTLS_PK_ECDSA);
  ae_cert *p384 = make_cert_kind("p384.test", GNUTLS_PK_ECDSA, GNUTLS_CURVE_TO_BITS(GNUTLS_ECC_CURVE_SECP384R1));
  assert_signs(p384, GNUTLS_SIGN_ECDSA_SECP384R1_SHA384);
  ae_cert *rsa = make_cert_kind("rsa.test", GNUTLS_PK_RSA, 2048);
  assert_signs(rsa, GNUTLS_SIGN_RSA_SHA256);
  /* The compact ECDSA key is accounted far below the RSA key kept in GnuTLS's form. */
  assert_true(ae_cert_bytes(p256) < ae_cert_bytes(rsa));
  ae_cert_unref(p256);
  ae_cert_unref(p384);
  ae_cert_unref(rsa);
}

static void test_byte_bound_holds(void **state) {
  (void)state;
  ae_cert *certs[40];
  for (int i = 0; i < 40; i++) {
    char cn[32];
    snprintf(cn, sizeof(cn), "n%d.test", i);
    certs[i] = make_cert(cn);
  }
  /* Room for about five entries. */
  size_t bound = 5 * (ae_cert_bytes(certs[0]) + 64);
  ae_certstore_opts o = {.max_bytes = bound};
  ae_certstore *cs = NULL;
  assert_int_equal(ae_certstore_new_opts(&o, &cs), 0);
  assert_int_equal(ae_certstore_max_bytes(cs), bound);
  for (int i = 0; i < 40; i++) {
    char name[32];
    snprintf(name, sizeof(name), "n%d.test", i);
    assert_int_equal(ae_certstore_put(cs, name, certs[i]), 0);
    assert_true(ae_certstore_bytes(cs) <= bound);
    assert_true(ae_certstore_bytes(cs) >= ae_cert_bytes(certs[i])); /* the new entry is counted */
  }
  size_t count = ae_certstore_count(cs);
  assert_true(count >= 4 && count <= 5);
  assert_int_equal(ae_certstore_evictions(cs), 40 - count);
  /* The most recent name is always kept; the first one is long gone. */
  ae_cert *hit = ae_certstore_lookup(cs, "n39.test");
  assert_ptr_equal(hit, certs[39]);
  ae_cert_unref(hit);
  assert_null(ae_certstore_lookup(cs, "n0.test"));
  /* Removing gives the bytes back. */
  assert_int_equal(ae_certstore_remove(cs, "n39.test"), 0);
  assert_true(ae_certstore_bytes(cs) <= bound - ae_cert_bytes(certs[39]));
  ae_certstore_free(cs);
  for (int i = 0; i < 40; i++)
    ae_cert_unref(certs[i]);
}

static void test_bytes_and_entries_together(void **state) {
  (void)state;
  ae_cert *c = make_cert("shared.test");
  /* Entries bound the tighter: 3 names fit in the bytes. */
  ae_certstore_opts o = {.max_entries = 3, .max_bytes = 100 * ae_cert_bytes(c)};
  ae_certstore *cs = NULL;
  assert_int_equal(ae_certstore_new_opts(&o, &cs), 0);
  for (int i = 0; i < 10; i++) {
    char name[32];
    snprintf(name, sizeof(name), "e%d.test", i);
    assert_int_equal(ae_certstore_put(cs, name, c), 0);
  }
  assert_int_equal(ae_certstore_count(cs), 3);
  ae_certstore_free(cs);
  /* Bytes bound the tighter: two entries' worth with room for 50 names. */
  o = (ae_certstore_opts){.max_entries = 50, .max_bytes = 2 * ae_cert_bytes(c) + 200};
  assert_int_equal(ae_certstore_new_opts(&o, &cs), 0);
  for (int i = 0; i < 10; i++) {
    char name[32];
    snprintf(name, sizeof(name), "b%d.test", i);
    assert_int_equal(ae_certstore_put(cs, name, c), 0);
    assert_true(ae_certstore_bytes(cs) <= o.max_bytes);
  }
  assert_int_equal(ae_certstore_count(cs), 2);
  ae_certstore_free(cs);
  ae_cert_unref(c);
}

static void test_in_use_survives_byte_eviction(void **state) {
  (void)state;
  ae_cert *first = make_cert("first.test");
  ae_certstore_opts o = {.max_bytes = 2 * ae_cert_bytes(first) + 200};
  ae_certstore *cs = NULL;
  assert_int_equal(ae_certstore_new_opts(&o, &cs), 0);
  assert_int_equal(ae_certstore_put(cs, "first.test", first), 0);
  ae_cert_unref(first); /* the store's reference is the only one */
  ae_cert *held = ae_certstore_lookup(cs, "first.test"); /* a connection's reference */
  assert_non_null(held);
  for (int i = 0; i < 8; i++) {
    char name[32];
    snprintf(name, sizeof(name), "o%d.test", i);
    ae_cert *c = make_cert(name);
    assert_int_equal(ae_certstore_put(cs, name, c), 0);
    ae_cert_unref(c);
  }
  assert_null(ae_certstore_lookup(cs, "first.test"));
  /* Evicted, yet whole: ASan reports any use of freed memory here. */
  assert_true(ae_cert_covers(held, "first.test"));
  assert_signs(held, GNUTLS_SIGN_ECDSA_SECP256R1_SHA256);
  ae_cert_unref(held);
  ae_certstore_free(cs);
}

/* Bytes the allocator has handed out: ASan's own allocator in the sanitized build (mallinfo2
 * does not see its chunks), glibc's heap otherwise. */
static size_t heap_in_use(void) {
#if defined(__SANITIZE_ADDRESS__)
  return __sanitizer_get_current_allocated_bytes();
#else
  struct mallinfo2 m = mallinfo2();
  return m.uordblks + m.hblkhd;
#endif
}

static void test_accounting_tracks_heap(void **state) {
  (void)state;
  char *cpem = NULL, *kpem = NULL;
  ae_err err = {0};
  const char *names[] = {"heap.test"};
  assert_int_equal(ae_cert_generate_selfsigned("heap.test", names, 1, 30, &cpem, &kpem, &err), 0);
  enum { N = 300 };
  static ae_cert *c[N];
  ae_cert *warm = NULL; /* the shared issuer table and GnuTLS's one-time state */
  assert_int_equal(ae_cert_from_pem(cpem, strlen(cpem), kpem, strlen(kpem), &warm, &err), 0);
  size_t h0 = heap_in_use();
  for (int i = 0; i < N; i++)
    assert_int_equal(ae_cert_from_pem(cpem, strlen(cpem), kpem, strlen(kpem), &c[i], &err), 0);
  double real = (double)(heap_in_use() - h0) / N;
  double acc = (double)ae_cert_bytes(c[0]);
  print_message("heap per cert %.0f B, accounted %.0f B\n", real, acc);
  assert_true(acc >= 0.8 * real && acc <= 1.25 * real);
  for (int i = 0; i < N; i++)
    ae_cert_unref(c[i]);
  ae_cert_unref(warm);
  free(cpem);
  free(kpem);
}

int main(void) {
  gnutls_global_init();
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_compact_keys_sign),
      cmocka_unit_test(test_byte_bound_holds),
      cmocka_unit_test(test_bytes_and_entries_together),
      cmocka_unit_test(test_in_use_survives_byte_eviction),
      cmocka_unit_test(test_accounting_tracks_heap),
  };
  int r = cmocka_run_group_tests(tests, NULL, NULL);
  gnutls_global_deinit();
  return r;
}
