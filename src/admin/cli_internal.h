/* Private to the client subcommands (cli.c, cli_domains.c). */
#ifndef ACMEDGE_CLI_INTERNAL_H
#define ACMEDGE_CLI_INTERNAL_H

#include <curl/curl.h>
#include <stdint.h>
#include <stdio.h>

#define CLI_DEFAULT_ADMIN "127.0.0.1:2020"
#define CLI_MAX_BODY (8u << 20) /* one /v1/domains response cap */

/* Where the admin API is: a URL base plus, for unix sockets, the socket path. */
typedef struct {
  char base[600];
  char unix_path[512];
} cli_target;

/* Parses --admin's address into t; 0 or -1. */
int ae_cli_parse_admin(const char *addr, cli_target *t);
/* Appends the bearer token header from $ACMEDGE_ADMIN_TOKEN (if set); returns the list. */
struct curl_slist *ae_cli_auth_headers(struct curl_slist *h);
/* Options every request shares (URL, unix socket, headers, no proxy). */
void ae_cli_setup_common(CURL *c, const cli_target *t, const char *url, struct curl_slist *hdrs);
/* Prints a non-2xx answer with the API's error message. */
void ae_cli_print_http_error(const char *what, const char *addr, long status, const char *body);
/* Parses the shared options; returns 0, 1 for --help printed, or -1 on a usage error. */
int ae_cli_parse_opts(int argc, char **argv, int allow_since, const char **admin, int *json_out, int *has_since,
                      uint64_t *since, void (*usage)(FILE *));
/* $ACMEDGE_ADMIN or the default address (static storage). */
const char *ae_cli_default_admin(void);

/* A response body collected by ae_cli_on_body (p is malloc'd, NUL-terminated; the caller frees it). */
typedef struct {
  char *p;
  size_t len, cap;
  int too_big; /* the body went over CLI_MAX_BODY and the transfer was stopped */
} ae_cli_body;

/* libcurl write callback appending to the ae_cli_body in ud, capped at CLI_MAX_BODY. */
size_t ae_cli_on_body(char *ptr, size_t size, size_t nmemb, void *ud);

#endif
