/* The internal CA from the command line: `acmedge ca root|status` and the checks of
 * `acmedge check`. Both read the configured storage directly; neither needs a running acmedge. */
#include "acmedge/ca.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define DEFAULT_CONFIG "config/acmedge.json"

int ae_ca_check_config(const ae_config *cfg, ae_err *err) {
  if (!cfg->internal_ca.enabled)
    return 0;
  struct stat sb;
  /* Nothing stored yet: the authority is created at the first start. */
  if (stat(cfg->storage_path, &sb) != 0)
    return 0;
  ae_storage *st = NULL;
  int r = ae_storage_fs_new(cfg->storage_path, &st, err);
  if (r != 0)
    return r;
  ae_ca_opts o = {.intermediate_lifetime_s = cfg->internal_ca.intermediate_lifetime_s,
                  .leaf_lifetime_s = cfg->internal_ca.leaf_lifetime_s};
  ae_ca *ca = NULL;
  ae_err e = {0};
  r = ae_ca_open(st, &o, &ca, &e);
  if (r == AE_ENOTFOUND)
    r = 0;
  else if (r != 0)
    ae_err_set(err, r, "%s: internal_ca: %s", cfg->path, e.msg);
  ae_ca_free(ca);
  ae_storage_free(st);
  return r;
}

static int usage(FILE *f) {
  fputs("usage: acmedge ca root [-c FILE]     print the internal root CA certificate (PEM)\n"
        "       acmedge ca status [-c FILE]   subjects, validity and fingerprints of root and intermediate\n",
        f);
  return f == stdout ? 0 : 2;
}

int ae_cli_ca(int argc, char **argv) {
  const char *env = getenv("ACMEDGE_CONFIG");
  const char *path = env && *env ? env : DEFAULT_CONFIG, *sub = NULL;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0)
      return usage(stdout);
    if ((strcmp(argv[i], "-c") == 0 || strcmp(argv[i], "--config") == 0) && i + 1 < argc && argv[i + 1][0])
      path = argv[++i];
    else if (strncmp(argv[i], "--config=", 9) == 0 && argv[i][9])
      path = argv[i] + 9;
    else if (!sub && (strcmp(argv[i], "root") == 0 || strcmp(argv[i], "status") == 0))
      sub = argv[i];
    else {
      fprintf(stderr, "acmedge ca: unexpected argument '%s'\n", argv[i]);
      return usage(stderr);
    }
  }
  if (!sub)
    return usage(stderr);
  ae_config *cfg = NULL;
  ae_err err = {0};
  if (ae_config_load(path, &cfg, &err) != 0) {
    fprintf(stderr, "%s\n", err.msg);
    return 1;
  }
  ae_storage *st = NULL;
  ae_ca *ca = NULL;
  int rc = 1;
  struct stat sb;
  if (stat(cfg->storage_path, &sb) != 0) {
    fprintf(stderr, "acmedge ca: no storage at %s yet: start acmedge with internal_ca.enabled first\n",
            cfg->storage_path);
    goto out;
  }
  ae_ca_opts o = {.intermediate_lifetime_s = cfg->internal_ca.intermediate_lifetime_s};
  if (ae_storage_fs_new(cfg->storage_path, &st, &err) != 0 || ae_ca_open(st, &o, &ca, &err) != 0) {
    fprintf(stderr, "acmedge ca: %s\n", err.msg);
    goto out;
  }
  char *text = strcmp(sub, "root") == 0 ? ae_ca_root_pem(ca) : ae_ca_status_text(ca);
  fputs(text, stdout);
  free(text);
  rc = 0;
out:
  ae_ca_free(ca);
  ae_storage_free(st);
  ae_config_free(cfg);
  return rc;
}
