/* Client subcommand `acmedge revoke NAME`: POST /v1/domains/NAME/revoke and report the CA's answer.
 * Blocking libcurl is fine in this short-lived client process. */
#include "acmedge/cli.h"
#include "acmedge/common.h"
#include "acmedge/ocsp.h"
#include "cli_internal.h"

#include <curl/curl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void revoke_usage(FILE *f) {
  fprintf(f,
          "usage: acmedge revoke NAME [--reason R] [--admin ADDR]\n"
          "  Revokes NAME's certificate at the CA (POST /v1/domains/NAME/revoke); a replacement is\n"
          "  ordered at once. R: an RFC 5280 reason name (keyCompromise, superseded, ...) or number.\n"
          "  --admin ADDR  admin API (default: $ACMEDGE_ADMIN or " CLI_DEFAULT_ADMIN ")\n"
          "  The bearer token is read from $ACMEDGE_ADMIN_TOKEN.\n");
}

int ae_cli_revoke(int argc, char **argv) {
  const char *admin = ae_cli_default_admin(), *name = NULL;
  int reason = -1;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *val = NULL;
    if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
      revoke_usage(stdout);
      return 0;
    } else if (strcmp(a, "--reason") == 0 || strncmp(a, "--reason=", 9) == 0) {
      val = a[8] == '=' ? a + 9 : (i + 1 < argc ? argv[++i] : NULL);
      if (ae_ocsp_reason_parse(val, &reason) != 0) {
        fprintf(stderr, "acmedge revoke: --reason: '%s' is not an RFC 5280 reason name or number 0..10\n",
                val ? val : "");
        return 2;
      }
    } else if (strcmp(a, "--admin") == 0 || strncmp(a, "--admin=", 8) == 0) {
      val = a[7] == '=' ? a + 8 : (i + 1 < argc ? argv[++i] : NULL);
      if (!val || !*val) {
        fprintf(stderr, "acmedge revoke: --admin needs an address\n");
        return 2;
      }
      admin = val;
    } else if (a[0] != '-' && !name) {
      name = a;
    } else {
      fprintf(stderr, "acmedge revoke: unknown argument '%s'\n", a);
      revoke_usage(stderr);
      return 2;
    }
  }
  if (!name || !*name || strlen(name) > 253 || strchr(name, '/')) {
    revoke_usage(stderr);
    return 2;
  }
  cli_target t;
  if (ae_cli_parse_admin(admin, &t)) {
    fprintf(stderr, "acmedge revoke: bad admin address '%s' (want host:port, unix:/path or /path)\n", admin);
    return 2;
  }
  if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
    return 1;
  CURL *c = curl_easy_init();
  if (!c) {
    curl_global_cleanup();
    return 1;
  }
  char url[1000], body[64];
  char *esc = curl_easy_escape(c, name, 0);
  snprintf(url, sizeof(url), "%s/v1/domains/%s/revoke", t.base, esc ? esc : name);
  curl_free(esc);
  if (reason >= 0)
    snprintf(body, sizeof(body), "{\"reason\":%d}", reason);
  else
    snprintf(body, sizeof(body), "{}");
  struct curl_slist *h = ae_cli_auth_headers(curl_slist_append(NULL, "Content-Type: application/json"));
  ae_cli_setup_common(c, &t, url, h);
  ae_cli_body b = {NULL, 0, 0, 0};
  curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, ae_cli_on_body);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 130000L);
  char errbuf[CURL_ERROR_SIZE] = "";
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
  CURLcode cr = curl_easy_perform(c);
  long status = 0;
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
  curl_easy_cleanup(c);
  curl_slist_free_all(h);
  curl_global_cleanup();
  int rc = 1;
  if (cr != CURLE_OK) {
    fprintf(stderr, "acmedge revoke: cannot reach admin API at %s: %s\n", admin, errbuf[0] ? errbuf : curl_easy_strerror(cr));
  } else if (status == 200) {
    json_t *j = json_loadb(b.p ? b.p : "", b.len, 0, NULL);
    printf("%s: certificate %s revoked; a replacement is being ordered\n", name,
           j ? (json_string_value(json_object_get(j, "serial")) ? json_string_value(json_object_get(j, "serial")) : "?") : "?");
    json_decref(j);
    rc = 0;
  } else {
    json_t *j = json_loadb(b.p ? b.p : "", b.len, 0, NULL);
    const char *problem = j ? json_string_value(json_object_get(j, "problem")) : NULL;
    if (problem)
      fprintf(stderr, "acmedge revoke: %s: %s: %s\n", name, problem,
              json_string_value(json_object_get(j, "detail")) ? json_string_value(json_object_get(j, "detail")) : "");
    else
      ae_cli_print_http_error("revoke", admin, status, b.p);
    json_decref(j);
  }
  free(b.p);
  return rc;
}
