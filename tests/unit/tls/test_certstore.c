/* Unit tests for certstore: certificate parsing, self-signed generation, wildcard rules,
 * refcount/swap semantics and concurrent lookups. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <gnutls/abstract.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "acmedge/certstore.h"
#include "acmedge/common.h"
#include "certstore_test_util.h"

static ae_cert *make_cert(const char *cn, const char *const *names, size_t n) {
  char *cpem = NULL, *kpem = NULL;
  ae_err err = {0};
  int rc = ae_cert_generate_selfsigned(cn, names, n, 30, &cpem, &kpem, &err);
  if (rc != 0)
    fail_msg("generate: %s", err.msg);
  ae_cert *c = NULL;
  rc = ae_cert_from_pem(cpem, strlen(cpem), kpem, strlen(kpem), &c, &err);
  if (rc != 0)
    fail_msg("from_pem: %s", err.msg);
  free(cpem);
  free(kpem);
  return c;
}

static void write_file(const char *path, const char *data) {
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  fputs(data, f);
  fclose(f);
}

static void test_generate_roundtrip(void **state) {
  (void)state;
  const char *names[] = {"a.example.test", "B.Example.Test"};
  char *cpem = NULL, *kpem = NULL;
  ae_err err = {0};
  assert_int_equal(ae_cert_generate_selfsigned("acmedge default", names, 2, 10, &cpem, &kpem, &err), 0);
  assert_non_null(strstr(cpem, "-----BEGIN CERTIFICATE-----"));
  assert_non_null(strstr(kpem, "-----BEGIN PRIVATE KEY-----")); /* PKCS#8 */

  /* Inspect the X.509 fields independently of the module under test. */
  gnutls_x509_crt_t crt;
  assert_int_equal(gnutls_x509_crt_init(&crt), 0);
  gnutls_datum_t d = {(unsigned char *)cpem, (unsigned)strlen(cpem)};
  assert_int_equal(gnutls_x509_crt_import(crt, &d, GNUTLS_X509_FMT_PEM), 0);
  assert_int_equal(gnutls_x509_crt_get_version(crt), 3);
  unsigned char ski[64], aki[64];
  size_t skil = sizeof(ski), akil = sizeof(aki);
  assert_int_equal(gnutls_x509_crt_get_subject_key_id(crt, ski, &skil, NULL), 0);
  assert_int_equal(gnutls_x509_crt_get_authority_key_id(crt, aki, &akil, NULL), 0);
  assert_true(skil > 0);
  assert_int_equal(skil, akil);
  assert_memory_equal(ski, aki, skil);
  char cn[128];
  size_t cnl = sizeof(cn);
  assert_int_equal(gnutls_x509_crt_get_dn_by_oid(crt, GNUTLS_OID_X520_COMMON_NAME, 0, 0, cn, &cnl), 0);
  assert_string_equal(cn, "acmedge default");
  unsigned bits = 0;
  assert_int_equal(gnutls_x509_crt_get_pk_algorithm(crt, &bits), GNUTLS_PK_ECDSA);
  unsigned char serial[64];
  size_t sl = sizeof(serial);
  assert_int_equal(gnutls_x509_crt_get_serial(crt, serial, &sl), 0);
  assert_int_equal(sl, 16);
  gnutls_x509_crt_deinit(crt);

  ae_cert *c = NULL;
  assert_int_equal(ae_cert_from_pem(cpem, strlen(cpem), kpem, strlen(kpem), &c, &err), 0);
  assert_int_equal(ae_cert_name_count(c), 2);
  assert_string_equal(ae_cert_name(c, 0), "a.example.test");
  assert_string_equal(ae_cert_name(c, 1), "b.example.test"); /* lowercased */
  assert_null(ae_cert_name(c, 2));
  assert_int_equal(strlen(ae_cert_serial(c)), 32);
  for (const char *p = ae_cert_serial(c); *p; p++)
    assert_true((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f'));
  assert_non_null(strstr(ae_cert_issuer(c), "CN=acmedge default"));
  int64_t now = (int64_t)time(NULL);
  assert_true(ae_cert_not_before(c) <= now);
  assert_true(ae_cert_not_after(c) > now + 9 * 86400);
  assert_true(ae_cert_not_after(c) <= now + 10 * 86400 + 5);
  /* The handshake material: the leaf exactly as given, and the matching ECDSA key. */
  unsigned np = 0;
  gnutls_pcert_st *pc = ae_cert_pcerts(c, &np);
  assert_int_equal(np, 1);
  assert_int_equal(pc[0].type, GNUTLS_CRT_X509);
  gnutls_datum_t der = {NULL, 0};
  assert_int_equal(gnutls_pem_base64_decode2("CERTIFICATE", &d, &der), 0);
  assert_int_equal(pc[0].cert.size, der.size);
  assert_memory_equal(pc[0].cert.data, der.data, der.size);
  gnutls_free(der.data);
  assert_int_equal(gnutls_pubkey_get_pk_algorithm(pc[0].pubkey, NULL), GNUTLS_PK_ECDSA);
  assert_non_null(ae_cert_privkey(c));
  assert_int_equal(gnutls_privkey_get_pk_algorithm(ae_cert_privkey(c), NULL), GNUTLS_PK_ECDSA);
  ae_cert_unref(c);
  free(cpem);
  free(kpem);

  /* Two generations never share a serial. */
  ae_cert *x = make_cert("x", NULL, 0), *y = make_cert("x", NULL, 0);
  assert_string_not_equal(ae_cert_serial(x), ae_cert_serial(y));
  ae_cert_unref(x);
  ae_cert_unref(y);

  assert_int_not_equal(ae_cert_generate_selfsigned("", NULL, 0, 10, &cpem, &kpem, &err), 0);
  assert_int_not_equal(ae_cert_generate_selfsigned("x", NULL, 0, 0, &cpem, &kpem, &err), 0);
}

static void test_cn_fallback(void **state) {
  (void)state;
  ae_cert *c = make_cert("Host.Example.Net", NULL, 0);
  assert_int_equal(ae_cert_name_count(c), 1);
  assert_string_equal(ae_cert_name(c, 0), "host.example.net");
  assert_true(ae_cert_covers(c, "host.example.net"));
  ae_cert_unref(c);
  /* With a dNSName SAN the CN is not a name of the certificate (RFC 6125). */
  const char *names[] = {"other.example.net"};
  c = make_cert("host.example.net", names, 1);
  assert_int_equal(ae_cert_name_count(c), 1);
  assert_false(ae_cert_covers(c, "host.example.net"));
  assert_true(ae_cert_covers(c, "other.example.net"));
  ae_cert_unref(c);
}

static void test_covers(void **state) {
  (void)state;
  const char *names[] = {"*.example.com", "foo.test", "*.com"};
  ae_cert *c = make_cert("wild", names, 3);
  assert_true(ae_cert_covers(c, "a.example.com"));
  assert_true(ae_cert_covers(c, "A.Example.COM"));
  assert_false(ae_cert_covers(c, "a.b.example.com"));
  assert_false(ae_cert_covers(c, "example.com"));
  assert_false(ae_cert_covers(c, ".example.com"));
  assert_true(ae_cert_covers(c, "foo.test"));
  assert_true(ae_cert_covers(c, "FOO.TEST"));
  assert_false(ae_cert_covers(c, "bar.test"));
  assert_false(ae_cert_covers(c, "x.foo.test"));
  /* "*.com" sits directly under a TLD and covers nothing. */
  assert_false(ae_cert_covers(c, "example.com"));
  assert_false(ae_cert_covers(c, "other.com"));
  assert_false(ae_cert_covers(c, ""));
  assert_false(ae_cert_covers(c, NULL));
  ae_cert_unref(c);
}

static void test_store_wildcard_rules(void **state) {
  (void)state;
  ae_certstore *cs = NULL;
  assert_int_equal(ae_certstore_new(&cs), 0);
  ae_cert *wild = make_cert("wild", (const char *const[]){"*.example.com"}, 1);
  ae_cert *exact = make_cert("exact", (const char *const[]){"a.example.com"}, 1);
  ae_cert *tld = make_cert("tld", (const char *const[]){"*.com"}, 1);
  assert_int_equal(ae_certstore_put(cs, "*.example.com", wild), 0);
  assert_int_equal(ae_certstore_put(cs, "A.Example.Com", exact), 0); /* stored lowercase */
  assert_int_equal(ae_certstore_put(cs, "*.com", tld), 0);
  assert_int_equal(ae_certstore_count(cs), 3);

  ae_cert *r = ae_certstore_lookup(cs, "a.example.com");
  assert_ptr_equal(r, exact); /* exact wins over wildcard */
  ae_cert_unref(r);
  r = ae_certstore_lookup(cs, "A.EXAMPLE.COM");
  assert_ptr_equal(r, exact);
  ae_cert_unref(r);
  r = ae_certstore_lookup(cs, "b.example.com");
  assert_ptr_equal(r, wild);
  ae_cert_unref(r);
  r = ae_certstore_lookup(cs, "B.Example.Com");
  assert_ptr_equal(r, wild);
  ae_cert_unref(r);
  assert_null(ae_certstore_lookup(cs, "x.b.example.com")); /* one label only */
  assert_null(ae_certstore_lookup(cs, "example.com"));      /* never a TLD-level wildcard */
  assert_null(ae_certstore_lookup(cs, "example.org"));
  assert_null(ae_certstore_lookup(cs, ".example.com"));
  assert_null(ae_certstore_lookup(cs, "com"));
  assert_null(ae_certstore_lookup(cs, ""));
  assert_null(ae_certstore_lookup(cs, NULL));
  r = ae_certstore_lookup(cs, "*.example.com"); /* the entry's own name is an exact hit */
  assert_ptr_equal(r, wild);
  ae_cert_unref(r);

  assert_int_equal(ae_certstore_remove(cs, "a.example.com"), 0);
  assert_int_equal(ae_certstore_remove(cs, "a.example.com"), AE_ENOTFOUND);
  r = ae_certstore_lookup(cs, "a.example.com");
  assert_ptr_equal(r, wild); /* falls back to the wildcard once the exact entry is gone */
  ae_cert_unref(r);
  assert_int_equal(ae_certstore_count(cs), 2);
  assert_int_equal(ae_certstore_put(cs, "", wild), AE_EINVAL);

  ae_cert_unref(wild);
  ae_cert_unref(exact);
  ae_cert_unref(tld);
  ae_certstore_free(cs);
}

static void test_default(void **state) {
  (void)state;
  ae_certstore *cs = NULL;
  assert_int_equal(ae_certstore_new(&cs), 0);
  assert_null(ae_certstore_default(cs));
  ae_cert *d1 = make_cert("acmedge default", NULL, 0);
  ae_cert *d2 = make_cert("acmedge default", NULL, 0);
  ae_certstore_set_default(cs, d1);
  ae_cert *r = ae_certstore_default(cs);
  assert_ptr_equal(r, d1);
  ae_cert_unref(d1); /* the store and r still hold it */
  ae_certstore_set_default(cs, d2);
  /* r keeps the replaced default alive */
  assert_int_equal(strlen(ae_cert_serial(r)), 32);
  ae_cert_unref(r);
  r = ae_certstore_default(cs);
  assert_ptr_equal(r, d2);
  ae_cert_unref(r);
  ae_cert_unref(d2);
  assert_int_equal(ae_certstore_count(cs), 0); /* the default is not a named entry */
  assert_null(ae_certstore_lookup(cs, "anything.example"));
  ae_certstore_free(cs);
}

static void test_growth(void **state) {
  (void)state;
  ae_certstore *cs = NULL;
  assert_int_equal(ae_certstore_new(&cs), 0);
  ae_cert *c = make_cert("many", NULL, 0);
  char name[64];
  for (int i = 0; i < 1000; i++) {
    snprintf(name, sizeof(name), "host%d.example.org", i);
    assert_int_equal(ae_certstore_put(cs, name, c), 0);
  }
  assert_int_equal(ae_certstore_count(cs), 1000);
  for (int i = 0; i < 1000; i++) {
    snprintf(name, sizeof(name), "HOST%d.example.org", i);
    ae_cert *r = ae_certstore_lookup(cs, name);
    assert_ptr_equal(r, c);
    ae_cert_unref(r);
  }
  assert_null(ae_certstore_lookup(cs, "host1000.example.org"));
  for (int i = 0; i < 1000; i += 2) {
    snprintf(name, sizeof(name), "host%d.example.org", i);
    assert_int_equal(ae_certstore_remove(cs, name), 0);
  }
  assert_int_equal(ae_certstore_count(cs), 500);
  ae_cert *r = ae_certstore_lookup(cs, "host2.example.org");
  assert_null(r);
  r = ae_certstore_lookup(cs, "host3.example.org");
  assert_ptr_equal(r, c);
  ae_cert_unref(r);
  ae_cert_unref(c);
  ae_certstore_free(cs); /* drops the remaining 500 references; ASan reports any leak */
}

/* --- a handshake with a cert that the store no longer holds --- */

typedef struct server_arg {
  int fd;
  ae_cert *cert;
  int rc;
  int retrieved; /* calls of the retrieve callback */
} server_arg;

/* Serves the session's ae_cert the way a TLS front does: one credentials object without
 * certificates, the chain and key handed over per session. */
static int serve_cert(gnutls_session_t s, const struct gnutls_cert_retr_st *info, gnutls_pcert_st **certs,
                      unsigned int *ncerts, gnutls_ocsp_data_st **ocsp, unsigned int *nocsp,
                      gnutls_privkey_t *key, unsigned int *flags) {
  (void)info;
  server_arg *a = gnutls_session_get_ptr(s);
  a->retrieved++;
  *certs = ae_cert_pcerts(a->cert, ncerts);
  *key = ae_cert_privkey(a->cert);
  *ocsp = NULL;
  *nocsp = 0;
  *flags = 0;
  return 0;
}

static void *server_main(void *p) {
  server_arg *a = p;
  gnutls_certificate_credentials_t sc;
  gnutls_certificate_allocate_credentials(&sc);
  gnutls_certificate_set_retrieve_function3(sc, serve_cert);
  gnutls_session_t s;
  gnutls_init(&s, GNUTLS_SERVER);
  gnutls_set_default_priority(s);
  gnutls_credentials_set(s, GNUTLS_CRD_CERTIFICATE, sc);
  gnutls_session_set_ptr(s, a);
  gnutls_transport_set_int(s, a->fd);
  gnutls_handshake_set_timeout(s, 10000);
  int rc;
  do {
    rc = gnutls_handshake(s);
  } while (rc < 0 && !gnutls_error_is_fatal(rc));
  a->rc = rc;
  if (rc == 0)
    gnutls_bye(s, GNUTLS_SHUT_WR);
  gnutls_deinit(s);
  gnutls_certificate_free_credentials(sc);
  return NULL;
}

/* What the client saw of one handshake. */
typedef struct hs_seen {
  char serial[64]; /* leaf serial, hex */
  gnutls_protocol_t version;
  gnutls_kx_algorithm_t kx;
  gnutls_sign_algorithm_t sign; /* the server's signature in the handshake */
  unsigned npeer;               /* certificates the server sent */
  unsigned char peer1[2048];    /* the second one (DER), when sent */
  size_t peer1_len;
} hs_seen;

/* Handshakes against cert over a socketpair with the client priority prio (NULL: defaults). */
static void handshake_with(ae_cert *cert, const char *prio, hs_seen *seen) {
  int sv[2];
  assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
  server_arg sa = {sv[0], cert, -1, 0};
  pthread_t th;
  assert_int_equal(pthread_create(&th, NULL, server_main, &sa), 0);

  gnutls_certificate_credentials_t cc;
  gnutls_certificate_allocate_credentials(&cc);
  gnutls_session_t s;
  gnutls_init(&s, GNUTLS_CLIENT);
  if (prio)
    assert_int_equal(gnutls_priority_set_direct(s, prio, NULL), 0);
  else
    gnutls_set_default_priority(s);
  gnutls_credentials_set(s, GNUTLS_CRD_CERTIFICATE, cc);
  gnutls_transport_set_int(s, sv[1]);
  gnutls_handshake_set_timeout(s, 10000);
  int rc;
  do {
    rc = gnutls_handshake(s);
  } while (rc < 0 && !gnutls_error_is_fatal(rc));
  assert_int_equal(rc, 0);
  unsigned n = 0;
  const gnutls_datum_t *peer = gnutls_certificate_get_peers(s, &n);
  assert_non_null(peer);
  assert_true(n >= 1);
  gnutls_x509_crt_t crt;
  gnutls_x509_crt_init(&crt);
  assert_int_equal(gnutls_x509_crt_import(crt, &peer[0], GNUTLS_X509_FMT_DER), 0);
  unsigned char raw[64];
  size_t rl = sizeof(raw);
  assert_int_equal(gnutls_x509_crt_get_serial(crt, raw, &rl), 0);
  gnutls_x509_crt_deinit(crt);
  size_t o = 0;
  for (size_t i = 0; i < rl && o + 3 <= sizeof(seen->serial); i++)
    o += (size_t)snprintf(seen->serial + o, sizeof(seen->serial) - o, "%02x", raw[i]);
  seen->npeer = n;
  seen->peer1_len = 0;
  if (n >= 2 && peer[1].size <= sizeof(seen->peer1)) {
    memcpy(seen->peer1, peer[1].data, peer[1].size);
    seen->peer1_len = peer[1].size;
  }
  seen->version = gnutls_protocol_get_version(s);
  seen->kx = gnutls_kx_get(s);
  seen->sign = gnutls_sign_algorithm_get(s);
  gnutls_deinit(s);
  gnutls_certificate_free_credentials(cc);
  pthread_join(th, NULL);
  assert_int_equal(sa.rc, 0);
  assert_true(sa.retrieved >= 1); /* the chain came from the callback, in either version */
  close(sv[0]);
  close(sv[1]);
}

/* Handshakes against cert over a socketpair; returns the serial the client saw (hex). */
static void handshake_serial(ae_cert *cert, char *serial_hex, size_t len) {
  hs_seen seen;
  handshake_with(cert, NULL, &seen);
  snprintf(serial_hex, len, "%s", seen.serial);
}

static void test_swap_keeps_old_alive(void **state) {
  (void)state;
  ae_certstore *cs = NULL;
  assert_int_equal(ae_certstore_new(&cs), 0);
  const char *names[] = {"a.example.test"};
  ae_cert *c1 = make_cert("one", names, 1);
  ae_cert *c2 = make_cert("two", names, 1);
  char s1[64], s2[64];
  snprintf(s1, sizeof(s1), "%s", ae_cert_serial(c1));
  snprintf(s2, sizeof(s2), "%s", ae_cert_serial(c2));

  assert_int_equal(ae_certstore_put(cs, "a.example.test", c1), 0);
  ae_cert_unref(c1); /* the store holds the only other reference */
  ae_cert *held = ae_certstore_lookup(cs, "a.example.test"); /* "a connection" */
  assert_ptr_equal(held, c1);

  assert_int_equal(ae_certstore_put(cs, "a.example.test", c2), 0); /* swap */
  assert_int_equal(ae_certstore_count(cs), 1);
  ae_cert *now = ae_certstore_lookup(cs, "a.example.test");
  assert_ptr_equal(now, c2);

  /* The old cert still serves a full handshake after the swap; ASan would flag a use after free. */
  char seen[64];
  handshake_serial(held, seen, sizeof(seen));
  assert_string_equal(seen, s1);
  handshake_serial(now, seen, sizeof(seen));
  assert_string_equal(seen, s2);
  assert_string_equal(ae_cert_serial(held), s1);

  ae_cert_unref(held); /* last reference: freed here */
  ae_cert_unref(now);
  assert_int_equal(ae_certstore_remove(cs, "a.example.test"), 0);
  /* c2 is still ours */
  assert_string_equal(ae_cert_serial(c2), s2);
  ae_cert_unref(c2);
  ae_certstore_free(cs);
}

static void test_free_store_with_refs_out(void **state) {
  (void)state;
  ae_certstore *cs = NULL;
  assert_int_equal(ae_certstore_new(&cs), 0);
  ae_cert *c = make_cert("x", (const char *const[]){"x.example.test"}, 1);
  ae_certstore_put(cs, "x.example.test", c);
  ae_cert_unref(c);
  ae_cert *held = ae_certstore_lookup(cs, "x.example.test");
  ae_certstore_free(cs);
  assert_int_equal(ae_cert_name_count(held), 1);
  assert_string_equal(ae_cert_name(held, 0), "x.example.test");
  ae_cert_unref(held);
  ae_cert_unref(NULL);
}

/* --- key types: ECDSA and RSA, TLS 1.2 and 1.3 --- */

static void test_rsa_and_ecdsa_handshakes(void **state) {
  (void)state;
  char *cpem = NULL, *kpem = NULL;
  assert_int_equal(ae_test_make_rsa_cert("rsa.example.test", "rsa.example.test", 2048, &cpem, &kpem), 0);
  ae_cert *rsa = NULL;
  ae_err err = {0};
  if (ae_cert_from_pem(cpem, strlen(cpem), kpem, strlen(kpem), &rsa, &err) != 0)
    fail_msg("rsa from_pem: %s", err.msg);
  free(cpem);
  free(kpem);
  assert_true(ae_cert_covers(rsa, "rsa.example.test"));
  unsigned np = 0;
  gnutls_pcert_st *pc = ae_cert_pcerts(rsa, &np);
  assert_int_equal(np, 1);
  unsigned bits = 0;
  assert_int_equal(gnutls_pubkey_get_pk_algorithm(pc[0].pubkey, &bits), GNUTLS_PK_RSA);
  assert_int_equal(bits, 2048);
  assert_int_equal(gnutls_privkey_get_pk_algorithm(ae_cert_privkey(rsa), NULL), GNUTLS_PK_RSA);
  ae_cert *ec = make_cert("ec", (const char *const[]){"ec.example.test"}, 1);

  static const char *const tls12 = "NORMAL:-VERS-ALL:+VERS-TLS1.2";
  static const char *const tls13 = "NORMAL:-VERS-ALL:+VERS-TLS1.3";
  hs_seen seen;
  handshake_with(rsa, tls12, &seen);
  assert_string_equal(seen.serial, ae_cert_serial(rsa));
  assert_int_equal(seen.version, GNUTLS_TLS1_2);
  assert_int_equal(seen.kx, GNUTLS_KX_ECDHE_RSA);
  assert_int_equal(gnutls_sign_get_pk_algorithm(seen.sign), GNUTLS_PK_RSA);
  handshake_with(rsa, tls13, &seen);
  assert_string_equal(seen.serial, ae_cert_serial(rsa));
  assert_int_equal(seen.version, GNUTLS_TLS1_3);
  /* TLS 1.3 signs with RSA-PSS only (RFC 8446 4.2.3). */
  assert_int_equal(gnutls_sign_get_pk_algorithm(seen.sign), GNUTLS_PK_RSA_PSS);
  /* A TLS 1.2 client that accepts only PKCS#1 v1.5 signatures still gets one. */
  handshake_with(rsa, "NORMAL:-VERS-ALL:+VERS-TLS1.2:-SIGN-ALL:+SIGN-RSA-SHA256", &seen);
  assert_int_equal(seen.sign, GNUTLS_SIGN_RSA_SHA256);

  handshake_with(ec, tls12, &seen);
  assert_string_equal(seen.serial, ae_cert_serial(ec));
  assert_int_equal(seen.kx, GNUTLS_KX_ECDHE_ECDSA);
  assert_int_equal(gnutls_sign_get_pk_algorithm(seen.sign), GNUTLS_PK_ECDSA);
  handshake_with(ec, tls13, &seen);
  assert_int_equal(seen.version, GNUTLS_TLS1_3);
  assert_int_equal(seen.sign, GNUTLS_SIGN_ECDSA_SECP256R1_SHA256);
  ae_cert_unref(rsa);
  ae_cert_unref(ec);
}

/* --- chains sharing an issuer certificate --- */

/* A leaf (own key) followed by the shared PEM certificate tail. */
static ae_cert *make_chained(const char *cn, const char *tail) {
  char *cpem = NULL, *kpem = NULL;
  ae_err err = {0};
  assert_int_equal(ae_cert_generate_selfsigned(cn, (const char *const[]){cn}, 1, 5, &cpem, &kpem, &err), 0);
  size_t len = strlen(cpem) + strlen(tail) + 1;
  char *chain = malloc(len);
  assert_non_null(chain);
  snprintf(chain, len, "%s%s", cpem, tail);
  ae_cert *c = NULL;
  if (ae_cert_from_pem(chain, strlen(chain), kpem, strlen(kpem), &c, &err) != 0)
    fail_msg("chained from_pem: %s", err.msg);
  free(chain);
  free(cpem);
  free(kpem);
  return c;
}

typedef struct churn_arg {
  const char *tail;
  int bad;
} churn_arg;

static void *churn_main(void *p) {
  churn_arg *a = p;
  for (int i = 0; i < 50; i++) {
    ae_cert *c = make_chained("churn.example.test", a->tail);
    unsigned n = 0;
    gnutls_pcert_st *pc = ae_cert_pcerts(c, &n);
    if (n != 2 || gnutls_pubkey_get_pk_algorithm(pc[1].pubkey, NULL) != GNUTLS_PK_ECDSA)
      a->bad++;
    ae_cert_unref(c);
  }
  return NULL;
}

static void test_shared_issuers(void **state) {
  (void)state;
  char *ipem = NULL, *ikey = NULL;
  ae_err err = {0};
  assert_int_equal(ae_cert_generate_selfsigned("issuer", NULL, 0, 5, &ipem, &ikey, &err), 0);
  gnutls_datum_t ip = {(unsigned char *)ipem, (unsigned)strlen(ipem)}, ider = {NULL, 0};
  assert_int_equal(gnutls_pem_base64_decode2("CERTIFICATE", &ip, &ider), 0);

  ae_cert *a = make_chained("a.example.test", ipem);
  ae_cert *b = make_chained("b.example.test", ipem);
  unsigned na = 0, nb = 0;
  gnutls_pcert_st *pa = ae_cert_pcerts(a, &na), *pb = ae_cert_pcerts(b, &nb);
  assert_int_equal(na, 2);
  assert_int_equal(nb, 2);
  /* Own leaves, one parsed issuer. */
  assert_ptr_not_equal(pa[0].cert.data, pb[0].cert.data);
  assert_ptr_equal(pa[1].cert.data, pb[1].cert.data);
  assert_ptr_equal(pa[1].pubkey, pb[1].pubkey);
  assert_int_equal(pa[1].cert.size, ider.size);
  assert_memory_equal(pa[1].cert.data, ider.data, ider.size);

  /* Freeing one chain leaves the shared issuer to the other, which still serves it. */
  ae_cert_unref(a);
  hs_seen seen;
  handshake_with(b, NULL, &seen);
  assert_string_equal(seen.serial, ae_cert_serial(b));
  assert_int_equal(seen.npeer, 2);
  assert_int_equal(seen.peer1_len, ider.size);
  assert_memory_equal(seen.peer1, ider.data, ider.size);
  ae_cert_unref(b);

  /* After the last user is gone the issuer is parsed afresh (ASan flags a stale entry). */
  ae_cert *c = make_chained("c.example.test", ipem);
  unsigned nc = 0;
  gnutls_pcert_st *pc = ae_cert_pcerts(c, &nc);
  assert_int_equal(nc, 2);
  assert_memory_equal(pc[1].cert.data, ider.data, ider.size);

  /* Threads building and dropping chains with the same issuer while c holds it. */
  churn_arg a1 = {ipem, 0}, a2 = {ipem, 0};
  pthread_t t1, t2;
  assert_int_equal(pthread_create(&t1, NULL, churn_main, &a1), 0);
  assert_int_equal(pthread_create(&t2, NULL, churn_main, &a2), 0);
  pthread_join(t1, NULL);
  pthread_join(t2, NULL);
  assert_int_equal(a1.bad + a2.bad, 0);
  pc = ae_cert_pcerts(c, &nc);
  assert_memory_equal(pc[1].cert.data, ider.data, ider.size);
  ae_cert_unref(c);
  gnutls_free(ider.data);
  free(ipem);
  free(ikey);
}

/* --- file loading errors --- */

typedef struct tmpdir {
  char path[64];
} tmpdir;

static void tmp_make(tmpdir *t) {
  snprintf(t->path, sizeof(t->path), "/tmp/ae_test_certstore.XXXXXX");
  assert_non_null(mkdtemp(t->path));
}

static void tmp_rm(tmpdir *t, const char *const *files, size_t n) {
  char p[256];
  for (size_t i = 0; i < n; i++) {
    snprintf(p, sizeof(p), "%s/%s", t->path, files[i]);
    unlink(p);
  }
  rmdir(t->path);
}

static void test_load_files(void **state) {
  (void)state;
  tmpdir t;
  tmp_make(&t);
  char *c1 = NULL, *k1 = NULL, *c2 = NULL, *k2 = NULL;
  ae_err err = {0};
  assert_int_equal(ae_cert_generate_selfsigned("one", (const char *const[]){"one.example.test"}, 1, 5, &c1, &k1, &err), 0);
  assert_int_equal(ae_cert_generate_selfsigned("two", NULL, 0, 5, &c2, &k2, &err), 0);
  char cp[256], kp[256], k2p[256], badp[256], chainp[256], missing[256], badc[256];
  snprintf(cp, sizeof(cp), "%s/x.crt", t.path);
  snprintf(kp, sizeof(kp), "%s/x.key", t.path);
  snprintf(k2p, sizeof(k2p), "%s/other.key", t.path);
  snprintf(badp, sizeof(badp), "%s/bad.key", t.path);
  snprintf(badc, sizeof(badc), "%s/bad.crt", t.path);
  snprintf(chainp, sizeof(chainp), "%s/chain.crt", t.path);
  snprintf(missing, sizeof(missing), "%s/missing.crt", t.path);
  write_file(cp, c1);
  write_file(kp, k1);
  write_file(k2p, k2);
  write_file(badp, "-----BEGIN PRIVATE KEY-----\nnot base64 at all!\n-----END PRIVATE KEY-----\n");
  write_file(badc, "hello\n");
  /* leaf first, then another certificate as its "chain" */
  size_t chain_len = strlen(c1) + strlen(c2) + 1;
  char *chain = malloc(chain_len);
  snprintf(chain, chain_len, "%s%s", c1, c2);
  write_file(chainp, chain);
  free(chain);

  ae_cert *c = NULL;
  assert_int_equal(ae_cert_load_files(cp, kp, &c, &err), 0);
  assert_true(ae_cert_covers(c, "one.example.test"));
  ae_cert_unref(c);
  c = NULL;

  assert_int_equal(ae_cert_load_files(chainp, kp, &c, &err), 0);
  assert_true(ae_cert_covers(c, "one.example.test")); /* the leaf's names, not the chain's */
  assert_false(ae_cert_covers(c, "two"));
  unsigned np = 0;
  gnutls_pcert_st *pc = ae_cert_pcerts(c, &np);
  assert_int_equal(np, 2); /* the whole chain is served, in order */
  gnutls_x509_crt_t second;
  assert_int_equal(gnutls_x509_crt_init(&second), 0);
  assert_int_equal(gnutls_x509_crt_import(second, &pc[1].cert, GNUTLS_X509_FMT_DER), 0);
  char cn2[64];
  size_t cn2len = sizeof(cn2);
  assert_int_equal(gnutls_x509_crt_get_dn_by_oid(second, GNUTLS_OID_X520_COMMON_NAME, 0, 0, cn2, &cn2len), 0);
  assert_string_equal(cn2, "two");
  gnutls_x509_crt_deinit(second);
  ae_cert_unref(c);
  c = NULL;

  memset(&err, 0, sizeof(err));
  assert_int_equal(ae_cert_load_files(missing, kp, &c, &err), AE_ENOTFOUND);
  assert_null(c);
  assert_non_null(strstr(err.msg, missing));

  memset(&err, 0, sizeof(err));
  assert_int_equal(ae_cert_load_files(cp, badp, &c, &err), AE_EINVAL);
  assert_null(c);
  assert_true(strncmp(err.msg, badp, strlen(badp)) == 0);
  assert_non_null(strstr(err.msg, "cannot parse private key"));

  memset(&err, 0, sizeof(err));
  assert_int_equal(ae_cert_load_files(badc, kp, &c, &err), AE_EINVAL);
  assert_null(c);
  assert_true(strncmp(err.msg, badc, strlen(badc)) == 0);
  assert_non_null(strstr(err.msg, "cannot parse certificate"));

  memset(&err, 0, sizeof(err));
  assert_int_equal(ae_cert_load_files(cp, k2p, &c, &err), AE_EINVAL);
  assert_null(c);
  assert_true(strncmp(err.msg, k2p, strlen(k2p)) == 0);
  assert_non_null(strstr(err.msg, "does not match"));
  assert_non_null(strstr(err.msg, cp));

  /* the same checks without files */
  memset(&err, 0, sizeof(err));
  assert_int_equal(ae_cert_from_pem(c1, strlen(c1), k2, strlen(k2), &c, &err), AE_EINVAL);
  assert_non_null(strstr(err.msg, "does not match"));
  assert_int_equal(ae_cert_from_pem(c1, 0, k1, strlen(k1), &c, &err), AE_EINVAL);
  assert_int_equal(ae_cert_from_pem(k1, strlen(k1), k1, strlen(k1), &c, &err), AE_EINVAL);
  assert_non_null(strstr(err.msg, "cannot parse certificate"));
  assert_null(c);

  free(c1);
  free(k1);
  free(c2);
  free(k2);
  tmp_rm(&t, (const char *const[]){"x.crt", "x.key", "other.key", "bad.key", "bad.crt", "chain.crt"}, 6);
}

/* --- concurrency: two readers while a writer swaps --- */

typedef struct race {
  ae_certstore *cs;
  ae_cert *a, *b;
  atomic_int stop;
  atomic_long lookups;
  atomic_int bad;
} race;

static void *reader_main(void *p) {
  race *r = p;
  while (!atomic_load(&r->stop)) {
    ae_cert *c = ae_certstore_lookup(r->cs, "hot.example.test");
    ae_cert *w = ae_certstore_lookup(r->cs, "x.wild.example.test");
    if (!c || (c != r->a && c != r->b) || !w || strlen(ae_cert_serial(c)) != 32 || !ae_cert_covers(w, "x.wild.example.test"))
      atomic_fetch_add(&r->bad, 1);
    ae_cert_unref(c);
    ae_cert_unref(w);
    atomic_fetch_add(&r->lookups, 1);
  }
  return NULL;
}

static void test_concurrent_swap(void **state) {
  (void)state;
  race r;
  memset(&r, 0, sizeof(r));
  assert_int_equal(ae_certstore_new(&r.cs), 0);
  r.a = make_cert("a", (const char *const[]){"hot.example.test"}, 1);
  r.b = make_cert("b", (const char *const[]){"hot.example.test"}, 1);
  ae_cert *w = make_cert("w", (const char *const[]){"*.wild.example.test"}, 1);
  ae_certstore_put(r.cs, "hot.example.test", r.a);
  ae_certstore_put(r.cs, "*.wild.example.test", w);
  atomic_init(&r.stop, 0);
  atomic_init(&r.lookups, 0);
  atomic_init(&r.bad, 0);
  pthread_t t1, t2;
  assert_int_equal(pthread_create(&t1, NULL, reader_main, &r), 0);
  assert_int_equal(pthread_create(&t2, NULL, reader_main, &r), 0);
  char name[64];
  for (int i = 0; i < 20000; i++) {
    ae_certstore_put(r.cs, "hot.example.test", (i & 1) ? r.a : r.b);
    /* churn other entries so the table grows and shrinks under the readers */
    snprintf(name, sizeof(name), "n%d.example.test", i % 300);
    if (i % 600 < 300)
      ae_certstore_put(r.cs, name, w);
    else
      ae_certstore_remove(r.cs, name);
    if (i % 1000 == 0)
      ae_certstore_put(r.cs, "*.wild.example.test", w); /* replace with itself: refcount stays sane */
  }
  /* The writer-preferring lock may starve readers while the writer loops on a loaded machine;
   * give them a bounded chance to run before stopping. */
  for (int i = 0; i < 5000 && atomic_load(&r.lookups) < 100; i++)
    usleep(1000);
  atomic_store(&r.stop, 1);
  pthread_join(t1, NULL);
  pthread_join(t2, NULL);
  assert_int_equal(atomic_load(&r.bad), 0);
  assert_true(atomic_load(&r.lookups) > 0);
  ae_certstore_free(r.cs);
  ae_cert_unref(r.a);
  ae_cert_unref(r.b);
  ae_cert_unref(w);
}

int main(void) {
  gnutls_global_init();
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_generate_roundtrip),
      cmocka_unit_test(test_cn_fallback),
      cmocka_unit_test(test_covers),
      cmocka_unit_test(test_store_wildcard_rules),
      cmocka_unit_test(test_default),
      cmocka_unit_test(test_growth),
      cmocka_unit_test(test_swap_keeps_old_alive),
      cmocka_unit_test(test_free_store_with_refs_out),
      cmocka_unit_test(test_rsa_and_ecdsa_handshakes),
      cmocka_unit_test(test_shared_issuers),
      cmocka_unit_test(test_load_files),
      cmocka_unit_test(test_concurrent_swap),
  };
  int rc = cmocka_run_group_tests(tests, NULL, NULL);
  gnutls_global_deinit();
  return rc;
}
