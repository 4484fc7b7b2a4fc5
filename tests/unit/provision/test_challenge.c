/* Unit tests for the challenge map: http-01 tokens and tls-alpn-01 certificates (RFC 8737). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>

#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>

#include "acmedge/challenge.h"

static void test_token_valid(void **state) {
  (void)state;
  assert_true(ae_challenge_token_valid("abc"));
  assert_true(ae_challenge_token_valid("LoqXcYV8q5ONbJQxbmR7SCTNo3tiAXDfowyjxAjEuX0"));
  assert_true(ae_challenge_token_valid("a-b_c"));
  assert_false(ae_challenge_token_valid(NULL));
  assert_false(ae_challenge_token_valid(""));
  assert_false(ae_challenge_token_valid("../x"));
  assert_false(ae_challenge_token_valid("a/b"));
  assert_false(ae_challenge_token_valid("a.b"));
  assert_false(ae_challenge_token_valid("a b"));
  assert_false(ae_challenge_token_valid("a%2Fb"));
  assert_false(ae_challenge_token_valid("abc="));
  assert_false(ae_challenge_token_valid("a\nb"));

  char buf[201];
  memset(buf, 'A', 200);
  buf[200] = '\0';
  assert_false(ae_challenge_token_valid(buf));
  buf[128] = '\0';
  assert_true(ae_challenge_token_valid(buf));
  buf[128] = 'A';
  buf[129] = '\0';
  assert_false(ae_challenge_token_valid(buf));
}

static void test_http01_put_get_del(void **state) {
  (void)state;
  ae_challenge *ch = NULL;
  assert_int_equal(ae_challenge_new(&ch), 0);
  assert_int_equal(ae_challenge_count(ch), 0);

  char out[256];
  assert_int_equal(ae_challenge_http01_get(ch, "tok1", out, sizeof(out)), AE_ENOTFOUND);
  assert_int_equal(ae_challenge_http01_put(ch, "a.example.test", "tok1", "tok1.thumb"), 0);
  assert_int_equal(ae_challenge_http01_put(ch, "b.example.test", "tok2", "tok2.thumb"), 0);
  assert_int_equal(ae_challenge_count(ch), 2);
  assert_int_equal(ae_challenge_http01_get(ch, "tok1", out, sizeof(out)), 0);
  assert_string_equal(out, "tok1.thumb");
  assert_int_equal(ae_challenge_http01_get(ch, "tok2", out, sizeof(out)), 0);
  assert_string_equal(out, "tok2.thumb");

  /* Replacing a token keeps one entry. */
  assert_int_equal(ae_challenge_http01_put(ch, "a.example.test", "tok1", "tok1.other"), 0);
  assert_int_equal(ae_challenge_count(ch), 2);
  assert_int_equal(ae_challenge_http01_get(ch, "tok1", out, sizeof(out)), 0);
  assert_string_equal(out, "tok1.other");

  /* Output buffer too small is an error, not a truncation. */
  char small[4];
  assert_true(ae_challenge_http01_get(ch, "tok1", small, sizeof(small)) < 0);

  /* Bad tokens are refused on put and on get. */
  char big[201];
  memset(big, 'A', 200);
  big[200] = '\0';
  const char *bad[] = {"../x", "a/b", "", big, "..", "x?y"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    assert_int_equal(ae_challenge_http01_put(ch, "a.example.test", bad[i], "k.t"), AE_EINVAL);
    assert_int_equal(ae_challenge_http01_get(ch, bad[i], out, sizeof(out)), AE_EINVAL);
  }
  assert_int_equal(ae_challenge_http01_put(ch, "a.example.test", NULL, "k.t"), AE_EINVAL);
  /* Key authorizations must be printable, no whitespace. */
  assert_int_equal(ae_challenge_http01_put(ch, "a.example.test", "tok3", "a b"), AE_EINVAL);
  assert_int_equal(ae_challenge_http01_put(ch, "a.example.test", "tok3", ""), AE_EINVAL);
  assert_int_equal(ae_challenge_count(ch), 2);

  ae_challenge_http01_del(ch, "tok1");
  ae_challenge_http01_del(ch, "tok1");
  ae_challenge_http01_del(ch, "nope");
  ae_challenge_http01_del(ch, NULL);
  assert_int_equal(ae_challenge_count(ch), 1);
  assert_int_equal(ae_challenge_http01_get(ch, "tok1", out, sizeof(out)), AE_ENOTFOUND);
  assert_int_equal(ae_challenge_http01_get(ch, "tok2", out, sizeof(out)), 0);

  /* Many entries, then free with entries still present (leak-checked under ASan). */
  for (int i = 0; i < 100; i++) {
    char tok[32], ka[64];
    snprintf(tok, sizeof(tok), "t%d", i);
    snprintf(ka, sizeof(ka), "t%d.x", i);
    assert_int_equal(ae_challenge_http01_put(ch, "x.example.test", tok, ka), 0);
  }
  assert_int_equal(ae_challenge_count(ch), 101);
  assert_int_equal(ae_challenge_http01_get(ch, "t57", out, sizeof(out)), 0);
  assert_string_equal(out, "t57.x");
  ae_challenge_free(ch);
}

/* Reads the leaf of an ae_cert back as a GnuTLS certificate. */
static gnutls_x509_crt_t leaf_of(ae_cert *c) {
  unsigned n = 0;
  const gnutls_pcert_st *chain = ae_cert_pcerts(c, &n);
  assert_non_null(chain);
  assert_int_equal(n, 1);
  gnutls_x509_crt_t crt = NULL;
  assert_int_equal(gnutls_x509_crt_init(&crt), 0);
  assert_int_equal(gnutls_x509_crt_import(crt, &chain[0].cert, GNUTLS_X509_FMT_DER), 0);
  return crt;
}

static void test_alpn_cert(void **state) {
  (void)state;
  ae_challenge *ch = NULL;
  ae_err err = {0};
  assert_int_equal(ae_challenge_new(&ch), 0);
  assert_null(ae_challenge_alpn_get(ch, "a.example.test"));

  const char *keyauth = "evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA.9jg46WB3rR_AHD-EBXdN7cBkH1WOu0tA3M9fm21mqTI";
  assert_int_equal(ae_challenge_alpn_put(ch, "A.Example.Test", keyauth, &err), 0);
  assert_int_equal(ae_challenge_count(ch), 1);

  ae_cert *c = ae_challenge_alpn_get(ch, "a.example.test");
  assert_non_null(c);
  /* Lookup is case-insensitive. */
  ae_cert *c2 = ae_challenge_alpn_get(ch, "A.EXAMPLE.TEST");
  assert_ptr_equal(c, c2);
  ae_cert_unref(c2);
  assert_null(ae_challenge_alpn_get(ch, "b.example.test"));

  gnutls_x509_crt_t crt = leaf_of(c);

  /* SAN dNSName = the domain, exactly one. */
  char san[256];
  size_t sanlen = sizeof(san);
  unsigned int critical = 0;
  int type = gnutls_x509_crt_get_subject_alt_name(crt, 0, san, &sanlen, &critical);
  assert_int_equal(type, GNUTLS_SAN_DNSNAME);
  assert_string_equal(san, "a.example.test");
  sanlen = sizeof(san);
  assert_int_equal(gnutls_x509_crt_get_subject_alt_name(crt, 1, san, &sanlen, NULL),
                   GNUTLS_E_REQUESTED_DATA_NOT_AVAILABLE);

  /* acmeIdentifier: critical, DER OCTET STRING of SHA-256(keyauth). */
  uint8_t ext[128];
  size_t extlen = sizeof(ext);
  critical = 0;
  assert_int_equal(gnutls_x509_crt_get_extension_by_oid(crt, "1.3.6.1.5.5.7.1.31", 0, ext, &extlen, &critical), 0);
  assert_int_equal(critical, 1);
  assert_int_equal(extlen, 34);
  assert_int_equal(ext[0], 0x04);
  assert_int_equal(ext[1], 0x20);
  uint8_t digest[32];
  assert_int_equal(gnutls_hash_fast(GNUTLS_DIG_SHA256, keyauth, strlen(keyauth), digest), 0);
  assert_memory_equal(ext + 2, digest, 32);

  /* ECDSA P-256, self-signed and currently valid. */
  unsigned int bits = 0;
  assert_int_equal(gnutls_x509_crt_get_pk_algorithm(crt, &bits), GNUTLS_PK_ECDSA);
  unsigned int vstatus = 0;
  assert_int_equal(gnutls_x509_crt_verify(crt, &crt, 1, 0, &vstatus), 0);
  assert_int_equal(vstatus, 0);
  time_t now = time(NULL);
  assert_true(gnutls_x509_crt_get_activation_time(crt) <= now);
  assert_true(gnutls_x509_crt_get_expiration_time(crt) > now);
  gnutls_x509_crt_deinit(crt);

  /* Re-publishing replaces the cert; the old reference stays usable. */
  assert_int_equal(ae_challenge_alpn_put(ch, "a.example.test", "other.keyauth", &err), 0);
  assert_int_equal(ae_challenge_count(ch), 1);
  ae_cert *c3 = ae_challenge_alpn_get(ch, "a.example.test");
  assert_non_null(c3);
  assert_ptr_not_equal(c3, c);
  crt = leaf_of(c3);
  extlen = sizeof(ext);
  assert_int_equal(gnutls_x509_crt_get_extension_by_oid(crt, "1.3.6.1.5.5.7.1.31", 0, ext, &extlen, &critical), 0);
  assert_int_equal(gnutls_hash_fast(GNUTLS_DIG_SHA256, "other.keyauth", 13, digest), 0);
  assert_memory_equal(ext + 2, digest, 32);
  gnutls_x509_crt_deinit(crt);
  ae_cert_unref(c3);
  assert_true(ae_cert_covers(c, "a.example.test"));
  ae_cert_unref(c);

  /* Bad input. */
  assert_true(ae_challenge_alpn_put(ch, "", keyauth, &err) < 0);
  assert_true(ae_challenge_alpn_put(ch, "a/b.example", keyauth, &err) < 0);
  assert_true(ae_challenge_alpn_put(ch, "b.example.test", "", &err) < 0);
  assert_true(ae_challenge_alpn_put(ch, NULL, keyauth, &err) < 0);
  assert_null(ae_challenge_alpn_get(ch, NULL));

  /* http-01 and alpn entries are counted together; deletion works and tolerates absence. */
  assert_int_equal(ae_challenge_http01_put(ch, "a.example.test", "tok", "tok.x"), 0);
  assert_int_equal(ae_challenge_alpn_put(ch, "b.example.test", keyauth, &err), 0);
  assert_int_equal(ae_challenge_count(ch), 3);
  ae_challenge_alpn_del(ch, "a.example.test");
  ae_challenge_alpn_del(ch, "a.example.test");
  ae_challenge_alpn_del(ch, "zzz.example.test");
  assert_null(ae_challenge_alpn_get(ch, "a.example.test"));
  assert_int_equal(ae_challenge_count(ch), 2);
  ae_challenge_free(ch); /* frees the remaining alpn cert + token */
}

/* Another instance's answers are mirrored, never over an answer of our own. */
static void test_mirror(void **state) {
  (void)state;
  ae_challenge *ch = NULL;
  ae_err err = {0};
  char out[256];
  assert_int_equal(ae_challenge_new(&ch), 0);
  assert_int_equal(ae_challenge_mirror(ch, 0, "m.example.test", "mtok", "mtok.thumb", &err), 0);
  assert_int_equal(ae_challenge_http01_get(ch, "mtok", out, sizeof(out)), 0);
  assert_string_equal(out, "mtok.thumb");
  /* Our own token keeps our key authorization. */
  assert_int_equal(ae_challenge_http01_put(ch, "o.example.test", "otok", "otok.ours"), 0);
  assert_int_equal(ae_challenge_mirror(ch, 0, "o.example.test", "otok", "otok.theirs", &err), 0);
  assert_int_equal(ae_challenge_http01_get(ch, "otok", out, sizeof(out)), 0);
  assert_string_equal(out, "otok.ours");
  /* Bad input from the channel is refused with a message. */
  assert_true(ae_challenge_mirror(ch, 0, "m.example.test", "bad token", "x.y", &err) < 0);
  assert_non_null(strstr(err.msg, "m.example.test"));
  /* tls-alpn-01: a certificate is minted locally from the key authorization. */
  assert_int_equal(ae_challenge_mirror(ch, 1, "alpn.example.test", "-", "atok.thumb", &err), 0);
  ae_cert *c = ae_challenge_alpn_get(ch, "alpn.example.test");
  assert_non_null(c);
  ae_cert_unref(c);
  assert_int_equal(ae_challenge_count(ch), 3);
  ae_challenge_free(ch);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_token_valid),
      cmocka_unit_test(test_http01_put_get_del),
      cmocka_unit_test(test_alpn_cert),
      cmocka_unit_test(test_mirror),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
