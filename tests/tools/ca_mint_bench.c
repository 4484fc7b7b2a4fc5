/* ca_mint_bench: CPU cost of minting internal-CA leaves (bench/ca.sh).
 *
 *   ca_mint_bench [-n COUNT] DIR
 *
 * Creates (or loads) the internal CA under DIR, mints COUNT leaves for distinct names, and prints
 * the process CPU time per leaf for the mint alone (keygen + sign + PEM) and for the mint parsed
 * into a served certificate. Last line: "RESULT n=N mint_us=X mint_cert_us=Y". */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "acmedge/ca.h"

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
  printf("RESULT n=%ld mint_us=%.1f mint_cert_us=%.1f\n", n, (t1 - t0) * 1e6 / (double)n, (t2 - t1) * 1e6 / (double)n);
  ae_ca_free(ca);
  ae_storage_free(st);
  return 0;
}
