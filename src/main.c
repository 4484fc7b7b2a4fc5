/* acmedge command line (design §3): run, check, events, domains, version, help. */
#include "acmedge/app.h"
#include "acmedge/ca.h"
#include "acmedge/cli.h"
#include "acmedge/common.h"
#include "acmedge/config.h"
#include "acmedge/storage.h"
#include "acmedge/tokens.h"

#include <curl/curl.h>
#include <gnutls/gnutls.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#define DEFAULT_CONFIG "config/acmedge.json"

static void usage(FILE *f) {
  fputs("usage: acmedge <command> [options]\n"
        "\n"
        "commands:\n"
        "  run     [-c FILE]      run the proxy until SIGTERM/SIGINT (SIGHUP re-reads the config)\n"
        "  check   [-c FILE]      validate the config: prints \"FILE: ok\" (exit 0) or\n"
        "                         \"FILE: field.path: problem\" on stderr (exit 1)\n"
        "  events  [--admin ADDR] [--json] [--since ID]\n"
        "                         follow provisioning events live from a running acmedge\n"
        "  domains [--admin ADDR] [--json] [--watch [SECONDS]]\n"
        "                         table of managed domains: state, expiry, issuer, last error\n"
        "                         (--watch: redraw every SECONDS, default 2, until interrupted)\n"
        "  ca root|status [-c FILE]\n"
        "                         internal CA: print the root certificate (PEM) or its status\n"
        "  token   keygen|mint|inspect ...\n"
        "                         capability tokens (docs/tokens.md; `acmedge token help`)\n"
        "  revoke  NAME [--reason R] [--admin ADDR]\n"
        "                         revoke NAME's certificate at the CA and order a replacement\n"
        "  storage copy --from CONFIG --to CONFIG\n"
        "                         copy accounts, certificates and CA files between storages\n"
        "                         (fs and redis, either way; idempotent, each copy verified)\n"
        "  version                print the version and the linked library versions\n"
        "  help                   print this text\n"
        "\n"
        "options:\n"
        "  -c, --config FILE      config file (default: $ACMEDGE_CONFIG, else " DEFAULT_CONFIG ");\n"
        "                         relative paths inside it are relative to the working directory\n"
        "  --admin ADDR           admin API for events/domains: host:port, [v6]:port, https://host:port,\n"
        "                         unix:/path or /path (default: $ACMEDGE_ADMIN, else 127.0.0.1:2020);\n"
        "                         the bearer token is read from $ACMEDGE_ADMIN_TOKEN; for https, the CA\n"
        "                         from $ACMEDGE_ADMIN_CACERT, a client certificate from $ACMEDGE_ADMIN_CERT\n"
        "                         and $ACMEDGE_ADMIN_KEY\n"
        "  --json                 raw JSON output (events: one event per line; domains: the array)\n"
        "  --since ID             first replay the buffered events after id ID (0: all buffered)\n"
        "  -h, --help             print this text\n"
        "\n"
        "exit codes: 0 ok, 1 failure (bad config, failed start), 2 usage error\n",
        f);
}

static int print_version(void) {
  const curl_version_info_data *cv = curl_version_info(CURLVERSION_NOW);
  printf("acmedge %s\n", AE_VERSION);
  printf("  GnuTLS %s\n", gnutls_check_version(NULL));
  printf("  libuv %s\n", uv_version_string());
  printf("  libcurl %s\n", cv && cv->version ? cv->version : "unknown");
  printf("  jansson %s\n", jansson_version_str());
  return 0;
}

static int is_help(const char *s) { return strcmp(s, "-h") == 0 || strcmp(s, "--help") == 0; }

/* Parses "[-c FILE]" for run/check; *help set for -h. Returns 0, or 2 on a usage error. */
static int parse_config_opt(int argc, char **argv, const char **path, int *help) {
  const char *env = getenv("ACMEDGE_CONFIG");
  *path = env && *env ? env : DEFAULT_CONFIG;
  *help = 0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (is_help(a)) {
      *help = 1;
      return 0;
    }
    if (strcmp(a, "-c") == 0 || strcmp(a, "--config") == 0) {
      if (i + 1 >= argc || !argv[i + 1][0]) {
        fprintf(stderr, "acmedge %s: %s needs a file name\n", argv[0], a);
        return 2;
      }
      *path = argv[++i];
    } else if (strncmp(a, "--config=", 9) == 0 && a[9]) {
      *path = a + 9;
    } else {
      fprintf(stderr, "acmedge %s: unknown argument '%s'\n", argv[0], a);
      return 2;
    }
  }
  return 0;
}

static int cmd_check(const char *path) {
  ae_config *cfg = NULL;
  ae_err err = {0};
  if (ae_config_load(path, &cfg, &err) != 0) {
    fprintf(stderr, "%s\n", err.msg);
    return 1;
  }
  if (ae_ca_check_config(cfg, &err) != 0) {
    fprintf(stderr, "%s\n", err.msg);
    ae_config_free(cfg);
    return 1;
  }
  ae_config_free(cfg);
  printf("%s: ok\n", path);
  return 0;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    usage(stdout);
    return 0;
  }
  const char *cmd = argv[1];
  if (strcmp(cmd, "help") == 0 || is_help(cmd)) {
    usage(stdout);
    return 0;
  }
  if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0) {
    if (argc > 2) {
      usage(stderr);
      return 2;
    }
    return print_version();
  }
  if (strcmp(cmd, "run") == 0 || strcmp(cmd, "check") == 0) {
    const char *path;
    int help;
    int rc = parse_config_opt(argc - 1, argv + 1, &path, &help);
    if (rc) {
      usage(stderr);
      return rc;
    }
    if (help) {
      usage(stdout);
      return 0;
    }
    return cmd[0] == 'r' ? ae_app_run(path) : cmd_check(path);
  }
  if (strcmp(cmd, "events") == 0)
    return ae_cli_events(argc - 1, argv + 1);
  if (strcmp(cmd, "domains") == 0)
    return ae_cli_domains_main(argc - 1, argv + 1);
  if (strcmp(cmd, "ca") == 0)
    return ae_cli_ca(argc - 1, argv + 1);
  if (strcmp(cmd, "token") == 0)
    return ae_tok_cli(argc - 1, argv + 1);
  if (strcmp(cmd, "revoke") == 0)
    return ae_cli_revoke(argc - 1, argv + 1);
  if (strcmp(cmd, "storage") == 0)
    return ae_storage_cli(argc - 1, argv + 1);
  fprintf(stderr, "acmedge: unknown command '%s'\n", cmd);
  usage(stderr);
  return 2;
}
