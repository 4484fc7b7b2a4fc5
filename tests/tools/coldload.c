/* coldload: CPU of the cold load of stored certificates, for docs/scale.md ("What a cold load
 * costs"): the storage read of a pair, the parse acmedge does (ae_cert_from_pem_ids), and, for
 * reference, a whole-chain parse as the library does it when nothing is shared (every certificate
 * of the chain parsed and imported, the key parsed, key ids compared, the leaf parsed again for the
 * ARI id). Names alternate between the two parses so machine load hits both alike.
 *
 *   coldload STORAGE_ROOT CA_HOST NAMES_FILE [COUNT]
 *
 * Prints "read_us=R parse_us=P whole_chain_us=W ratio=P/W" (CPU microseconds per name, this
 * thread). Exit 1 on any error. */
#include <gnutls/abstract.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "acmedge/acme.h"
#include "acmedge/certstore.h"
#include "acmedge/common.h"
#include "acmedge/storage.h"

static double cpu_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

/* Every certificate parsed and imported, the key parsed, key ids compared, the ARI id from a
 * second parse of the leaf. 0 or -1. */
static int whole_chain(const char *cp, size_t cl, const char *kp, size_t kl) {
  gnutls_x509_crt_t *crts = NULL;
  unsigned n = 0;
  gnutls_datum_t cd = {(unsigned char *)(uintptr_t)cp, (unsigned)cl};
  gnutls_datum_t kd = {(unsigned char *)(uintptr_t)kp, (unsigned)kl};
  if (gnutls_x509_crt_list_import2(&crts, &n, &cd, GNUTLS_X509_FMT_PEM, 0) < 0 || n == 0)
    return -1;
  gnutls_x509_privkey_t key;
  int ok = gnutls_x509_privkey_init(&key) >= 0 &&
           gnutls_x509_privkey_import2(key, &kd, GNUTLS_X509_FMT_PEM, NULL, GNUTLS_PKCS_PLAIN) >= 0;
  unsigned char k1[64], k2[64];
  size_t s1 = sizeof(k1), s2 = sizeof(k2);
  ok = ok && gnutls_x509_crt_get_key_id(crts[0], 0, k1, &s1) >= 0 &&
       gnutls_x509_privkey_get_key_id(key, 0, k2, &s2) >= 0 && s1 == s2 && memcmp(k1, k2, s1) == 0;
  for (unsigned i = 0; i < n; i++) {
    gnutls_pcert_st pc;
    if (ok && gnutls_pcert_import_x509(&pc, crts[i], 0) >= 0)
      gnutls_pcert_deinit(&pc);
    else
      ok = 0;
    gnutls_x509_crt_deinit(crts[i]);
  }
  gnutls_free(crts);
  gnutls_x509_privkey_deinit(key);
  char id[320];
  ae_err err = {0};
  /* A leaf without an AKI has no id; the parse was spent all the same. */
  if (ok)
    (void)ae_acme_cert_id(cp, id, sizeof(id), &err);
  return ok ? 0 : -1;
}

int main(int argc, char **argv) {
  if (argc < 4) {
    fprintf(stderr, "usage: coldload STORAGE_ROOT CA_HOST NAMES_FILE [COUNT]\n");
    return 2;
  }
  long count = argc > 4 ? atol(argv[4]) : 2000;
  ae_storage *st = NULL;
  ae_err err = {0};
  if (ae_storage_fs_new(argv[1], &st, &err) != 0) {
    fprintf(stderr, "coldload: %s\n", err.msg);
    return 1;
  }
  FILE *f = fopen(argv[3], "r");
  if (!f) {
    perror(argv[3]);
    return 1;
  }
  ae_cert *keep = NULL;
  double t_read = 0, t_parse = 0, t_whole = 0;
  long n_parse = 0, n_whole = 0, n = 0;
  char line[512];
  int rc = 0;
  while (n < count && fgets(line, sizeof(line), f)) {
    line[strcspn(line, " \t\r\n")] = '\0';
    if (!*line)
      continue;
    char *cp = NULL, *kp = NULL;
    size_t cl = 0, kl = 0;
    double t0 = cpu_us();
    if (ae_storage_get_cert(st, argv[2], line, &cp, &cl, &kp, &kl, &err) != 0) {
      fprintf(stderr, "coldload: %s\n", err.msg);
      rc = 1;
      break;
    }
    double t1 = cpu_us();
    t_read += t1 - t0;
    if (n % 2 == 0) {
      ae_cert *c = NULL;
      ae_cert_ids ids;
      if (ae_cert_from_pem_ids(line, cp, cl, kp, kl, &c, &ids, &err) != 0) {
        fprintf(stderr, "coldload: %s\n", err.msg);
        rc = 1;
      }
      /* The first cert stays, as the cache keeps loaded names: its intermediate stays shared. */
      if (!keep)
        keep = c;
      else
        ae_cert_unref(c);
      t_parse += cpu_us() - t1;
      n_parse++;
    } else {
      if (whole_chain(cp, cl, kp, kl) != 0) {
        fprintf(stderr, "coldload: %s: whole-chain parse failed\n", line);
        rc = 1;
      }
      t_whole += cpu_us() - t1;
      n_whole++;
    }
    free(cp);
    free(kp);
    n++;
    if (rc)
      break;
  }
  fclose(f);
  ae_cert_unref(keep);
  ae_storage_free(st);
  if (rc || n_parse == 0 || n_whole == 0)
    return 1;
  double p = t_parse / (double)n_parse, w = t_whole / (double)n_whole;
  printf("read_us=%.1f parse_us=%.1f whole_chain_us=%.1f ratio=%.3f names=%ld\n", t_read / (double)n, p, w, p / w, n);
  return 0;
}
