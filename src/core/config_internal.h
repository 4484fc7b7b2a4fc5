/* Private helpers shared by the config parser files: config.c, config_fields.c, config_sections.c and
 * config_validate.c (not a public API). */
#ifndef ACMEDGE_CONFIG_INTERNAL_H
#define ACMEDGE_CONFIG_INTERNAL_H

#include <stddef.h>

#include <jansson.h>

#include "acmedge/config.h"

#define AE_PATH_MAX_LEN 256

/* Parse context: the config's name for messages and where errors go. */
typedef struct pctx {
  const char *name;
  ae_err *err;
} pctx;

/* Flags of cfg_opt_str. */
enum { CFG_STR_NULLABLE = 1, CFG_STR_EMPTY_IS_NULL = 2 };

/* Checks one string element of an array at path; 0 when acceptable, else the cfg_fail code. */
typedef int (*cfg_elem_check_fn)(pctx *c, const char *path, const char *s);

/* ---- generic field readers (config_fields.c) ---- */

/* Reports a validation error as "NAME: path: message" into c->err; returns AE_EINVAL. */
int cfg_fail(pctx *c, const char *path, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Writes "parent.key" (or "key" at the top) into out, truncating an over-long path. */
void cfg_join(char *out, size_t n, const char *parent, const char *key);
/* Writes "parent[i]" into out, truncating an over-long path. */
void cfg_join_index(char *out, size_t n, const char *parent, size_t i);
/* Fails on the first key of obj not listed in the NULL-terminated keys. */
int cfg_check_keys(pctx *c, json_t *obj, const char *path, const char *const *keys);
/* Looks up an optional sub-object (borrowed reference in *out; NULL when absent or null) and checks its keys. */
int cfg_get_object(pctx *c, json_t *parent, const char *key, const char *ppath, const char *const *keys,
                   json_t **out);
/* Replaces the heap string *dst by a copy of v (NULL allowed); frees the old one. */
void cfg_set_str(char **dst, const char *v);
/* Reads an optional string field into *dst (heap copy, owned by the config); flags are CFG_STR_*. */
int cfg_opt_str(pctx *c, json_t *obj, const char *key, const char *ppath, int flags, char **dst);
/* Reads an optional integer field in [min, max] into *dst. */
int cfg_opt_uint(pctx *c, json_t *obj, const char *key, const char *ppath, unsigned min, unsigned max,
                 unsigned *dst);
/* Reads an optional boolean field into *dst (0 or 1). */
int cfg_opt_bool(pctx *c, json_t *obj, const char *key, const char *ppath, int *dst);
/* Reads an optional string field that must be one of the NULL-terminated names; *dst gets its index. */
int cfg_opt_enum(pctx *c, json_t *obj, const char *key, const char *ppath, const char *const *names, int *dst);
/* Frees an array of n heap strings and the array itself (NULL allowed). */
void cfg_free_strv(char **v, size_t n);
/* Reads an optional array of strings into *out and *nout (heap, owned by the config; replaces the old
 * array); check (may be NULL) validates each element; null clears it when allow_null. */
int cfg_opt_str_array(pctx *c, json_t *obj, const char *key, const char *ppath, int allow_null,
                      cfg_elem_check_fn check, char ***out, size_t *nout);
/* Lower-cases ASCII letters of n strings in place. */
void cfg_lower_strv(char **v, size_t n);
/* Element check: a host pattern (host name, "*.suffix" or "*"). */
int cfg_check_pattern(pctx *c, const char *path, const char *s);
/* Element check: an IP address or a CIDR range. */
int cfg_check_ip(pctx *c, const char *path, const char *s);
/* Element check: an event type name. */
int cfg_check_event_type(pctx *c, const char *path, const char *s);

/* ---- section parsers (config_sections.c); each fills cfg from root, 0 or the cfg_fail code ---- */

/* Parses the "acme" section (directory, ca_bundle, email, challenges, key_type, eab). */
int cfg_parse_acme(pctx *c, json_t *root, ae_config *cfg);
/* Parses the "on_demand" section without its dns_check and fair_queue sub-objects. */
int cfg_parse_on_demand(pctx *c, json_t *root, ae_config *cfg);
/* Parses the "internal_ca" section. */
int cfg_parse_internal_ca(pctx *c, json_t *root, ae_config *cfg);
/* Cross-field checks of on_demand after every section parsed. */
int cfg_validate_on_demand(pctx *c, ae_config *cfg);
/* Parses the "routes" array (cfg->routes is heap, owned by the config). */
int cfg_parse_routes(pctx *c, json_t *root, ae_config *cfg);
/* Parses the "events" section (hook as a path or [path, args...], hook_types, limits). */
int cfg_parse_events(pctx *c, json_t *root, ae_config *cfg);
/* Parses the "limits" section; present turns the per-client limits on with defaults. */
int cfg_parse_limits(pctx *c, json_t *root, ae_config *cfg);
/* Parses on_demand.dns_check; present and not null turns the DNS pre-check on. */
int cfg_parse_dns_check(pctx *c, json_t *root, ae_config *cfg);
/* Parses on_demand.fair_queue (shares, renewal reserve, unasked TTL) and on_demand.name_cache_max. */
int cfg_parse_fair_queue(pctx *c, json_t *root, ae_config *cfg);

/* 1 when s is an IPv4 or IPv6 literal (no brackets). */
int ae_cfg_is_ip(const char *s);
/* 1 when host is a loopback address (127.0.0.0/8, ::1) or "localhost". */
int ae_cfg_is_loopback(const char *host);
/* 1 when s is a syntactically valid DNS host name (LDH labels, 1..63 each, <= 253 total). */
int ae_cfg_valid_hostname(const char *s);
/* 1 when s is a host pattern: "*", "*.suffix" with a valid host name suffix, or a host name. */
int ae_cfg_valid_pattern(const char *s);
/* Checks an absolute http(s) URL; https always allowed, http only when allow_http is 1 or
 * (allow_http is 2 and the host is loopback). 0 when acceptable. */
int ae_cfg_check_url(const char *url, int allow_http);
/* Checks that path is a readable regular file: 0 ok, AE_ENOTFOUND when it does not exist,
 * AE_EIO otherwise; problem receives a short reason ("Permission denied", "not a regular file"). */
int ae_cfg_check_readable(const char *path, char *problem, size_t len);
/* Checks that path is an executable regular file: 0 ok, <0 with a short reason in problem. */
int ae_cfg_check_executable(const char *path, char *problem, size_t len);
/* 1 when s looks like an event type name (design §6): [a-z][a-z0-9_]*, at most 64 chars. */
int ae_cfg_valid_event_type(const char *s);

#endif
