/* keysign: CPU per handshake signature with the key form a cached certificate keeps (compact
 * ECDSA scalar signed with nettle) against GnuTLS's parsed x509 key, for bench/scale.sh.
 *
 *   keysign CERT.pem KEY.pem [COUNT]
 *
 * Prints "compact_us=A gnutls_us=B ratio=A/B" (CPU microseconds per signature, interleaved runs
 * so machine load hits both alike). Exit 1 on any error or a signature that does not verify. */
#include <gnutls/abstract.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "acmedge/certstore.h"
#include "acmedge/common.h"

static double cpu_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

/* Signs count times as a TLS 1.3 CertificateVerify does; returns CPU microseconds in total. */
static double sign_loop(gnutls_privkey_t k, gnutls_pubkey_t pub, int count) {
  unsigned char msg[130];
  memset(msg, 0x20, 64);
  memcpy(msg + 64, "TLS 1.3, server CertificateVerify", 33);
  gnutls_datum_t d = {msg, sizeof(msg)};
  double t0 = cpu_us();
  for (int i = 0; i < count; i++) {
    gnutls_datum_t sig = {NULL, 0};
    msg[sizeof(msg) - 1] = (unsigned char)i;
    if (gnutls_privkey_sign_data2(k, GNUTLS_SIGN_ECDSA_SECP256R1_SHA256, 0, &d, &sig) < 0) {
      fprintf(stderr, "keysign: signing failed\n");
      exit(1);
    }
    if (i == 0 && gnutls_pubkey_verify_data2(pub, GNUTLS_SIGN_ECDSA_SECP256R1_SHA256, 0, &d, &sig) < 0) {
      fprintf(stderr, "keysign: signature does not verify\n");
      exit(1);
    }
    gnutls_free(sig.data);
  }
  return cpu_us() - t0;
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: keysign CERT.pem KEY.pem [COUNT]\n");
    return 2;
  }
  int count = argc > 3 ? atoi(argv[3]) : 2000;
  if (count < 1 || count > 10000000)
    count = 2000;
  gnutls_global_init();
  ae_cert *c = NULL;
  ae_err err = {0};
  if (ae_cert_load_files(argv[1], argv[2], &c, &err) != 0) {
    fprintf(stderr, "keysign: %s\n", err.msg);
    return 1;
  }
  unsigned n = 0;
  gnutls_pubkey_t pub = ae_cert_pcerts(c, &n)[0].pubkey;
  char *kpem = NULL;
  size_t klen = 0;
  if (ae_read_file(argv[2], 1 << 20, &kpem, &klen, &err) != 0) {
    fprintf(stderr, "keysign: %s\n", err.msg);
    return 1;
  }
  gnutls_privkey_t full = NULL;
  gnutls_datum_t kd = {(unsigned char *)kpem, (unsigned)klen};
  if (gnutls_privkey_init(&full) < 0 || gnutls_privkey_import_x509_raw(full, &kd, GNUTLS_X509_FMT_PEM, NULL, 0) < 0) {
    fprintf(stderr, "keysign: %s: cannot parse the key\n", argv[2]);
    return 1;
  }
  double a = 0, b = 0;
  /* Ten interleaved rounds: a burst of load on the shared machine lands on both forms. */
  for (int r = 0; r < 10; r++) {
    a += sign_loop(ae_cert_privkey(c), pub, count / 10 + 1);
    b += sign_loop(full, pub, count / 10 + 1);
  }
  int done = 10 * (count / 10 + 1);
  printf("compact_us=%.1f gnutls_us=%.1f ratio=%.3f\n", a / done, b / done, a / b);
  gnutls_privkey_deinit(full);
  free(kpem);
  ae_cert_unref(c);
  gnutls_global_deinit();
  return 0;
}
