/* ca_mint_bench: CPU cost of minting internal-CA leaves (bench/ca.sh).
 *
 *   ca_mint_bench [-n COUNT] DIR
 *
 * Creates (or loads) the internal CA under DIR and mints COUNT leaves for distinct names in each of
 * two ways, alternating, timing each mint alone on the thread's CPU clock (fresh P-256 key + sign
 * + build):
 *   - served: ae_ca_mint, the leaf built straight into a served certificate (the fallback path).
 *     The minted certificates are held until the run ends, as the leaf cache holds them, so the
 *     shared intermediate stays parsed as it does in a server;
 *   - pem: ae_ca_mint_pem, the leaf and key as PEM (internal names, written to storage).
 * Then the heap bytes each minted leaf keeps while cached in the fallback leaf cache, beside the
 * same for the certificate store (what an ACME certificate costs there), both measured as malloc'd
 * bytes still in use after COUNT inserts (glibc mallinfo2).
 * Last line: "RESULT n=N mint_p50_us=.. mint_p90_us=.. mint_mean_us=.. pem_p50_us=.. pem_mean_us=..
 * leafcache_bytes=A certstore_bytes=B". */
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

static double thread_cpu_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

/* Sorts us[0..n) and returns the q-quantile (nearest rank). */
static double quantile(double *us, long n, double q) {
  qsort(us, (size_t)n, sizeof(*us), cmp_double);
  long i = (long)(q * (double)n + 0.5) - 1;
  return us[i < 0 ? 0 : i >= n ? n - 1 : i];
}

static double mean(const double *us, long n) {
  double s = 0;
  for (long i = 0; i < n; i++)
    s += us[i];
  return s / (double)n;
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
  double *us = calloc((size_t)n, sizeof(double)), *pem_us = calloc((size_t)n, sizeof(double));
  ae_cert **held = calloc((size_t)n, sizeof(ae_cert *));
  if (!us || !pem_us || !held)
    return 1;
  /* Warm-up: first-use costs (library tables, the shared intermediate) are not a mint's. The
   * first warm-up leaf stays held, keeping the intermediate parsed from here on. */
  ae_cert *pin = NULL;
  for (int i = 0; i < 20; i++) {
    ae_cert *c = NULL;
    snprintf(name, sizeof(name), "w%d.bench.test", i);
    if (ae_ca_mint(ca, name, now, &c, &err) != 0) {
      fprintf(stderr, "ca_mint_bench: %s\n", err.msg);
      return 1;
    }
    if (i == 0)
      pin = c;
    else
      ae_cert_unref(c);
  }
  /* The two kinds alternate, so a change in the machine's load hits both alike. */
  for (long i = 0; i < n; i++) {
    snprintf(name, sizeof(name), "c%ld.bench.test", i);
    double t0 = thread_cpu_s();
    int r = ae_ca_mint(ca, name, now, &held[i], &err);
    us[i] = (thread_cpu_s() - t0) * 1e6;
    if (r != 0) {
      fprintf(stderr, "ca_mint_bench: %s\n", err.msg);
      return 1;
    }
    char *cp = NULL, *kp = NULL;
    snprintf(name, sizeof(name), "m%ld.bench.test", i);
    t0 = thread_cpu_s();
    r = ae_ca_mint_pem(ca, name, now, &cp, &kp, &err);
    pem_us[i] = (thread_cpu_s() - t0) * 1e6;
    if (r != 0) {
      fprintf(stderr, "ca_mint_bench: %s\n", err.msg);
      return 1;
    }
    free(cp);
    free(kp);
  }
  for (long i = 0; i < n; i++)
    ae_cert_unref(held[i]);
  ae_cert_unref(pin);
  free(held);
  double mint_mean = mean(us, n), pem_mean = mean(pem_us, n);
  double mint_p50 = quantile(us, n, 0.5), mint_p90 = quantile(us, n, 0.9), pem_p50 = quantile(pem_us, n, 0.5);
  free(us);
  free(pem_us);
  ae_leafcache *lc = NULL;
  ae_certstore *cs = NULL;
  ae_leafcache_new((size_t)n, &lc);
  ae_certstore_new(&cs);
  double lc_b = retained(ca, now, n, "l", lc, NULL), cs_b = retained(ca, now, n, "s", NULL, cs);
  if (lc_b < 0 || cs_b < 0)
    return 1;
  printf("RESULT n=%ld mint_p50_us=%.1f mint_p90_us=%.1f mint_mean_us=%.1f pem_p50_us=%.1f pem_mean_us=%.1f "
         "leafcache_bytes=%.0f certstore_bytes=%.0f\n",
         n, mint_p50, mint_p90, mint_mean, pem_p50, pem_mean, lc_b, cs_b);
  ae_leafcache_free(lc);
  ae_certstore_free(cs);
  ae_ca_free(ca);
  ae_storage_free(st);
  return 0;
}
