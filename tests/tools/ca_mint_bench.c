/* ca_mint_bench: CPU cost of minting internal-CA leaves (bench/ca.sh).
 *
 *   ca_mint_bench [-n COUNT] DIR
 *
 * Creates (or loads) the internal CA under DIR, mints COUNT leaves for distinct names, and prints
 * the process CPU time per leaf for the mint alone (keygen + sign + PEM) and for the mint parsed
 * into a served certificate; then the heap bytes each minted leaf keeps while cached in the fallback
 * leaf cache, beside the same for the certificate store (what an ACME certificate costs there),
 * both measured as malloc'd bytes still in use after COUNT inserts (glibc mallinfo2).
 * Last line: "RESULT n=N mint_us=X mint_cert_us=Y leafcache_bytes=A certstore_bytes=B". */
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "acmedge/ca.h"

static size_t heap_used(void) { return mallinfo2().uordblks; }

/* Mints n leaves named <prefix><i>.bench.test into the cache (lc) or the store (cs); returns the
 * heap bytes retained per leaf, or -1. */
static double retained(ae_ca *ca, int64_t now, long n, const char *prefix, ae_leafcache *lc, ae_certstore *cs) {
  char name[64];
  ae_err err = {0};
  size_t before = heap_used();
  for (long i = 0; i < n; i++) {
    ae_cert *c = NULL;
    snprintf(name, sizeof(name), "%s%ld.bench.test", prefix, i);
    if (ae_ca_mint(ca, name, now, &c, &err) != 0) {
      fprintf(stderr, "ca_mint_bench: %s\n", err.msg);
      return -1;
    }
    if (lc)
      ae_leafcache_put(lc, name, c);
    else
      ae_certstore_put(cs, name, c);
    ae_cert_unref(c);
  }
  return ((double)heap_used() - (double)before) / (double)n;
}

static double cpu_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
  long n = 1000;
  const char *dir = NULL;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "-n") == 0 && i + 1 < argc)
      n = strtol(argv[++i], NULL, 10);
    else
      dir = argv[i];
  }
  if (!dir || n <= 0) {
    fprintf(stderr, "usage: ca_mint_bench [-n COUNT] DIR\n");
    return 2;
  }
  ae_storage *st = NULL;
  ae_ca *ca = NULL;
  ae_err err = {0};
  ae_ca_opts o = {.create = 1};
  if (ae_storage_fs_new(dir, &st, &err) != 0 || ae_ca_open(st, &o, &ca, &err) != 0) {
    fprintf(stderr, "ca_mint_bench: %s\n", err.msg);
    return 1;
  }
  int64_t now = (int64_t)time(NULL);
  char name[64];
  double t0 = cpu_s();
  for (long i = 0; i < n; i++) {
    char *cp = NULL, *kp = NULL;
    snprintf(name, sizeof(name), "m%ld.bench.test", i);
    if (ae_ca_mint_pem(ca, name, now, &cp, &kp, &err) != 0) {
      fprintf(stderr, "ca_mint_bench: %s\n", err.msg);
      return 1;
    }
    free(cp);
    free(kp);
  }
  double t1 = cpu_s();
  for (long i = 0; i < n; i++) {
    ae_cert *c = NULL;
    snprintf(name, sizeof(name), "c%ld.bench.test", i);
    if (ae_ca_mint(ca, name, now, &c, &err) != 0) {
      fprintf(stderr, "ca_mint_bench: %s\n", err.msg);
      return 1;
    }
    ae_cert_unref(c);
  }
  double t2 = cpu_s();
  ae_leafcache *lc = NULL;
  ae_certstore *cs = NULL;
  ae_leafcache_new((size_t)n, &lc);
  ae_certstore_new(&cs);
  double lc_b = retained(ca, now, n, "l", lc, NULL), cs_b = retained(ca, now, n, "s", NULL, cs);
  if (lc_b < 0 || cs_b < 0)
    return 1;
  printf("RESULT n=%ld mint_us=%.1f mint_cert_us=%.1f leafcache_bytes=%.0f certstore_bytes=%.0f\n", n,
         (t1 - t0) * 1e6 / (double)n, (t2 - t1) * 1e6 / (double)n, lc_b, cs_b);
  ae_leafcache_free(lc);
  ae_certstore_free(cs);
  ae_ca_free(ca);
  ae_storage_free(st);
  return 0;
}
