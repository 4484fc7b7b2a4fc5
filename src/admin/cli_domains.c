/* Client subcommand `acmedge domains`: pages through GET /v1/domains and prints a table (or the
 * raw JSON array). Blocking libcurl is fine in this short-lived client process. */
#include "acmedge/cli.h"
#include "acmedge/common.h"
#include "cli_internal.h"

#include <curl/curl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define PAGE_LIMIT 1000
static void domains_usage(FILE *f) {
  fprintf(f,
          "usage: acmedge domains [--admin ADDR] [--json] [--watch [SECONDS]]\n"
          "  Lists the domains a running acmedge manages (GET /v1/domains, %d per page).\n"
          "  --admin ADDR  admin API: host:port, [v6]:port, https://host:port, unix:/path or /path\n"
          "                (default: $ACMEDGE_ADMIN or " CLI_DEFAULT_ADMIN ")\n"
          "  --json        print the raw JSON array\n"
          "  --watch [S]   redraw every S seconds (default 2) until interrupted\n"
          "  States are coloured on a terminal unless $NO_COLOR is set.\n"
          "  The bearer token is read from $ACMEDGE_ADMIN_TOKEN.\n", PAGE_LIMIT);
}

/* ---------------------------------------------------------------- domains */

/* "89d 23h", "5h 12m", "42s", "expired 3d ago", or "-" without a date. */
static void format_expires_in(const char *not_after, char *buf, size_t len) {
  int64_t t;
  if (!not_after || ae_time_parse_rfc3339(not_after, &t)) {
    snprintf(buf, len, "-");
    return;
  }
  int64_t d = t - (int64_t)time(NULL);
  int past = d < 0;
  if (past)
    d = -d;
  char span[48];
  if (d >= 86400)
    snprintf(span, sizeof(span), "%lldd %lldh", (long long)(d / 86400), (long long)(d % 86400 / 3600));
  else if (d >= 3600)
    snprintf(span, sizeof(span), "%lldh %lldm", (long long)(d / 3600), (long long)(d % 3600 / 60));
  else if (d >= 60)
    snprintf(span, sizeof(span), "%lldm %llds", (long long)(d / 60), (long long)(d % 60));
  else
    snprintf(span, sizeof(span), "%llds", (long long)d);
  if (past)
    snprintf(buf, len, "expired %s ago", span);
  else
    snprintf(buf, len, "%s", span);
}

#define DOM_COLS_MAX 9 /* the last two (ISSUED-BY, VER) only from a cluster (Redis) backend */

/* SGR colour of a domain state (and of a last error, shown as "failed"); "" for none. */
static const char *state_color(const char *state) {
  if (!state)
    return "";
  if (strcmp(state, "valid") == 0)
    return "\033[32m";
  if (strcmp(state, "pending") == 0 || strcmp(state, "renewing") == 0)
    return "\033[33m";
  if (strcmp(state, "failed") == 0)
    return "\033[31m";
  return "";
}

/* Copies a printable, single-line, length-capped version of s. */
static char *cell(const char *s, size_t max) {
  if (!s || !*s)
    return ae_strdup("-");
  size_t n = strlen(s);
  size_t take = n > max ? max : n;
  char *out = ae_malloc(take + 4);
  for (size_t i = 0; i < take; i++)
    out[i] = ((unsigned char)s[i] < 0x20 || s[i] == 0x7f) ? ' ' : s[i];
  if (n > max) {
    memcpy(out + take, "...", 3);
    take += 3;
  }
  out[take] = '\0';
  return out;
}

#define PAGES_MAX 100000 /* a hundred million names: a bound on the loop, not a real limit */

/* GETs one page (after = NULL for the first) into *out: the page's array and, in *next, the
 * cursor for the following page (malloc'd, NULL on the last). 0 or -1 (message printed). An
 * older server that answers a plain array ends the walk. */
static int fetch_page(const cli_target *t, const char *admin, const char *after, json_t **out, char **next) {
  char url[1200];
  CURL *c = curl_easy_init();
  if (!c) {
    fprintf(stderr, "acmedge domains: cannot initialise libcurl\n");
    return -1;
  }
  char *esc = after ? curl_easy_escape(c, after, 0) : NULL;
  snprintf(url, sizeof(url), "%s/v1/domains?limit=%d%s%s", t->base, PAGE_LIMIT, esc ? "&after=" : "", esc ? esc : "");
  curl_free(esc);
  struct curl_slist *h = ae_cli_auth_headers(NULL);
  ae_cli_setup_common(c, t, url, h);
  ae_cli_body b = {NULL, 0, 0, 0};
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, ae_cli_on_body);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 30000L);
  char errbuf[CURL_ERROR_SIZE] = "";
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
  CURLcode cr = curl_easy_perform(c);
  long status = 0;
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
  curl_easy_cleanup(c);
  curl_slist_free_all(h);
  int rc = -1;
  json_t *j = NULL;
  *out = NULL;
  *next = NULL;
  if (b.too_big) {
    fprintf(stderr, "acmedge domains: response from %s is too large\n", admin);
  } else if (cr != CURLE_OK) {
    fprintf(stderr, "acmedge domains: cannot reach admin API at %s: %s\n", admin,
            errbuf[0] ? errbuf : curl_easy_strerror(cr));
  } else if (status != 200) {
    ae_cli_print_http_error("domains", admin, status, b.p);
  } else if (!(j = json_loadb(b.p ? b.p : "", b.len, 0, NULL))) {
    fprintf(stderr, "acmedge domains: admin API at %s returned malformed JSON\n", admin);
  } else if (json_is_array(j)) {
    *out = json_incref(j);
    rc = 0;
  } else if (json_is_array(json_object_get(j, "domains"))) {
    *out = json_incref(json_object_get(j, "domains"));
    const char *n = json_string_value(json_object_get(j, "next"));
    *next = n ? ae_strdup(n) : NULL;
    rc = 0;
  } else {
    fprintf(stderr, "acmedge domains: admin API at %s returned malformed JSON\n", admin);
  }
  json_decref(j);
  free(b.p);
  return rc;
}

/* Walks every page into one array (new reference), or NULL after printing why. */
static json_t *fetch_all(const cli_target *t, const char *admin) {
  json_t *all = json_array();
  char *after = NULL;
  for (int i = 0; i < PAGES_MAX; i++) {
    json_t *page = NULL;
    char *next = NULL;
    if (fetch_page(t, admin, after, &page, &next) != 0) {
      free(after);
      json_decref(all);
      return NULL;
    }
    size_t got = json_array_size(page);
    json_array_extend(all, page);
    json_decref(page);
    free(after);
    after = next;
    /* An empty page with a cursor would loop forever. */
    if (!after || got == 0)
      break;
  }
  free(after);
  return all;
}

int ae_cli_domains(int argc, char **argv) {
  const char *admin = ae_cli_default_admin();
  int json_out = 0, has_since = 0;
  uint64_t since = 0;
  int r = ae_cli_parse_opts(argc, argv, 0, &admin, &json_out, &has_since, &since, domains_usage);
  if (r)
    return r > 0 ? 0 : 2;
  cli_target t;
  if (ae_cli_parse_admin(admin, &t)) {
    fprintf(stderr, "acmedge domains: bad admin address '%s' (want host:port, unix:/path or /path)\n", admin);
    return 2;
  }
  if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
    fprintf(stderr, "acmedge domains: cannot initialise libcurl\n");
    return 1;
  }
  int rc = 1;
  json_t *arr = fetch_all(&t, admin);
  if (!arr) {
    /* fetch_all said why */
  } else if (json_out) {
    char *d = json_dumps(arr, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    printf("%s\n", d ? d : "[]");
    free(d);
    rc = 0;
  } else {
    static const char *const head[DOM_COLS_MAX] = {"DOMAIN",   "STATE", "EXPIRES-IN", "ISSUER",   "LAST-ERROR",
                                                   "RETRY-AT", "OCSP",  "ISSUED-BY",  "VER"};
    size_t n = json_array_size(arr);
    int cols = 7;
    for (size_t i = 0; i < n; i++)
      if (json_object_get(json_array_get(arr, i), "stored"))
        cols = DOM_COLS_MAX;
    char **cells = ae_calloc(n * cols + 1, sizeof(char *));
    size_t width[DOM_COLS_MAX];
    for (int k = 0; k < cols; k++)
      width[k] = strlen(head[k]);
    for (size_t i = 0; i < n; i++) {
      json_t *o = json_array_get(arr, i);
      char exp[64];
      format_expires_in(json_string_value(json_object_get(o, "not_after")), exp, sizeof(exp));
      char **row = &cells[i * cols];
      row[0] = cell(json_string_value(json_object_get(o, "domain")), 253);
      row[1] = cell(json_string_value(json_object_get(o, "state")), 32);
      row[2] = ae_strdup(exp);
      row[3] = cell(json_string_value(json_object_get(o, "issuer")), 48);
      row[4] = cell(json_string_value(json_object_get(o, "last_error")), 72);
      row[5] = cell(json_string_value(json_object_get(o, "retry_at")), 32);
      row[6] = cell(json_string_value(json_object_get(json_object_get(o, "ocsp"), "state")), 16);
      if (cols == DOM_COLS_MAX) {
        char ver[32] = "";
        json_t *jv = json_object_get(o, "version");
        if (json_is_integer(jv))
          snprintf(ver, sizeof(ver), "%lld", (long long)json_integer_value(jv));
        row[7] = cell(json_string_value(json_object_get(o, "issued_by")), 64);
        row[8] = cell(ver, 20);
      }
      for (int k = 0; k < cols; k++) {
        size_t w = strlen(row[k]);
        if (w > width[k])
          width[k] = w;
      }
    }
    for (int k = 0; k < cols - 1; k++)
      printf("%-*s  ", (int)width[k], head[k]);
    printf("%s\n", head[cols - 1]);
    int color = isatty(STDOUT_FILENO) && !getenv("NO_COLOR");
    for (size_t i = 0; i < n; i++) {
      char **row = &cells[i * cols];
      for (int k = 0; k < cols - 1; k++) {
        const char *sgr = color ? state_color(k == 1 ? row[1] : k == 4 && strcmp(row[4], "-") ? "failed" : NULL) : "";
        printf("%s%-*s%s  ", sgr, (int)width[k], row[k], *sgr ? "\033[0m" : "");
      }
      printf("%s\n", row[cols - 1]);
    }
    for (size_t i = 0; i < n * cols; i++)
      free(cells[i]);
    free(cells);
    rc = 0;
  }
  json_decref(arr);
  curl_global_cleanup();
  return rc;
}
