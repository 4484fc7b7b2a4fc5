/* `acmedge storage copy --from CONFIG --to CONFIG`: moves a deployment between storage backends
 * (fs to Redis and back). Both configs are loaded and checked like `acmedge check` would; the
 * source is only read. */
#include "acmedge/config.h"
#include "acmedge/storage.h"

#include <stdio.h>
#include <string.h>

static void usage(FILE *f) {
  fputs("usage: acmedge storage copy --from CONFIG --to CONFIG\n"
        "  Copies every stored object (ACME accounts, certificates with their keys and metadata,\n"
        "  OCSP staples, the internal CA) from the storage CONFIG --from names to the one CONFIG\n"
        "  --to names: fs to redis, redis to fs, or the same kind. Objects already equal at the\n"
        "  destination are left alone, so running it again is harmless. Each write is read back.\n"
        "  Prints one line per object that failed and a summary; exit 0 when none failed.\n",
        f);
}

static void on_fail(void *ud, const char *object, const char *problem) {
  (void)ud;
  fprintf(stderr, "acmedge storage copy: %s: %s\n", object, problem);
}

/* "redis 127.0.0.1:6379 db 0 prefix acmedge" or "fs /var/lib/acmedge", for messages and the
 * same-storage check. */
static void describe(const ae_config *cfg, char *buf, size_t len) {
  if (cfg->storage_redis && cfg->redis)
    snprintf(buf, len, "redis %s db %u prefix %s", cfg->redis->address, cfg->redis->db, cfg->redis->prefix);
  else
    snprintf(buf, len, "fs %s", cfg->storage_path);
}

static int open_side(const char *path, const char *opt, ae_config **cfg, ae_storage **st, char *ca, size_t calen) {
  ae_err err = {0};
  if (ae_config_load(path, cfg, &err) != 0) {
    fprintf(stderr, "acmedge storage copy: %s: %s\n", opt, err.msg);
    return 1;
  }
  if (ae_storage_open(*cfg, st, &err) != 0) {
    fprintf(stderr, "acmedge storage copy: %s %s: cannot open the storage: %s\n", opt, path, err.msg);
    return 1;
  }
  if (ae_storage_ping(*st, &err) != 0) {
    fprintf(stderr, "acmedge storage copy: %s %s: %s\n", opt, path, err.msg);
    return 1;
  }
  ca[0] = '\0';
  if ((*cfg)->acme.directory)
    ae_storage_ca_host((*cfg)->acme.directory, ca, calen);
  return 0;
}

int ae_storage_cli(int argc, char **argv) {
  const char *from = NULL, *to = NULL;
  if (argc < 2 || strcmp(argv[1], "copy") != 0) {
    if (argc >= 2 && (strcmp(argv[1], "help") == 0 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0)) {
      usage(stdout);
      return 0;
    }
    usage(stderr);
    return 2;
  }
  for (int i = 2; i < argc; i++) {
    const char *a = argv[i];
    if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
      usage(stdout);
      return 0;
    }
    const char **dst = strcmp(a, "--from") == 0 ? &from : strcmp(a, "--to") == 0 ? &to : NULL;
    if (!dst) {
      fprintf(stderr, "acmedge storage copy: unknown argument '%s'\n", a);
      usage(stderr);
      return 2;
    }
    if (i + 1 >= argc || !argv[i + 1][0]) {
      fprintf(stderr, "acmedge storage copy: %s needs a config file\n", a);
      return 2;
    }
    *dst = argv[++i];
  }
  if (!from || !to) {
    fprintf(stderr, "acmedge storage copy: both --from and --to are required\n");
    usage(stderr);
    return 2;
  }
  ae_config *cf = NULL, *ct = NULL;
  ae_storage *sf = NULL, *stt = NULL;
  char ca[2][300], df[600], dt[600];
  int rc = open_side(from, "--from", &cf, &sf, ca[0], sizeof(ca[0]));
  if (rc == 0)
    rc = open_side(to, "--to", &ct, &stt, ca[1], sizeof(ca[1]));
  if (rc == 0) {
    describe(cf, df, sizeof(df));
    describe(ct, dt, sizeof(dt));
    if (strcmp(df, dt) == 0) {
      fprintf(stderr, "acmedge storage copy: --from and --to name the same storage (%s)\n", df);
      rc = 1;
    }
  }
  if (rc == 0) {
    const char *hints[2] = {ca[0], ca[1]};
    ae_storage_copy_stats stats;
    ae_err err = {0};
    if (ae_storage_copy(sf, stt, hints, 2, &stats, on_fail, NULL, &err) != 0) {
      fprintf(stderr, "acmedge storage copy: %s (%s): %s\n", from, df, err.msg);
      rc = 1;
    } else {
      printf("copied %zu, unchanged %zu, failed %zu object(s) from %s to %s\n", stats.copied, stats.unchanged,
             stats.failed, df, dt);
      rc = stats.failed ? 1 : 0;
    }
  }
  ae_storage_free(sf);
  ae_storage_free(stt);
  ae_config_free(cf);
  ae_config_free(ct);
  return rc;
}
