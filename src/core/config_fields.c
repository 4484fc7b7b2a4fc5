/* Generic JSON field readers of the config parser: error reporting with field paths, unknown-key
 * checks, typed optional fields (string, integer, boolean, enum, string array) and element checks. */
#include "acmedge/config.h"
#include "config_internal.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Every validation error goes through here: "FILE: field.path: problem". */
int cfg_fail(pctx *c, const char *path, const char *fmt, ...) {
  char msg[400];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);
  return ae_err_set(c->err, AE_EINVAL, "%s: %s: %s", c->name, path, msg);
}

/* Field paths are short; an over-long one (hostile key names) is truncated, never overflowed. */
void cfg_join(char *out, size_t n, const char *parent, const char *key) {
  int r = (parent && *parent) ? snprintf(out, n, "%s.%s", parent, key) : snprintf(out, n, "%s", key);
  if (r < 0)
    out[0] = '\0';
}

void cfg_join_index(char *out, size_t n, const char *parent, size_t i) {
  int r = snprintf(out, n, "%s[%zu]", parent, i);
  if (r < 0)
    out[0] = '\0';
}

int cfg_check_keys(pctx *c, json_t *obj, const char *path, const char *const *keys) {
  const char *k;
  json_t *v;
  json_object_foreach(obj, k, v) {
    int known = 0;
    for (size_t i = 0; keys[i]; i++) {
      if (strcmp(keys[i], k) == 0) {
        known = 1;
        break;
      }
    }
    if (!known) {
      char p[AE_PATH_MAX_LEN];
      cfg_join(p, sizeof(p), path, k);
      return cfg_fail(c, p, "unknown key");
    }
  }
  return 0;
}

/* Looks up an optional sub-object; absent or null leaves *out NULL (defaults apply). */
int cfg_get_object(pctx *c, json_t *parent, const char *key, const char *ppath, const char *const *keys,
                      json_t **out) {
  *out = NULL;
  json_t *v = json_object_get(parent, key);
  if (!v || json_is_null(v))
    return 0;
  char p[AE_PATH_MAX_LEN];
  cfg_join(p, sizeof(p), ppath, key);
  if (!json_is_object(v))
    return cfg_fail(c, p, "expected an object");
  int rc = cfg_check_keys(c, v, p, keys);
  if (rc)
    return rc;
  *out = v;
  return 0;
}

void cfg_set_str(char **dst, const char *v) {
  free(*dst);
  *dst = ae_strdup(v);
}

int cfg_opt_str(pctx *c, json_t *obj, const char *key, const char *ppath, int flags, char **dst) {
  json_t *v = obj ? json_object_get(obj, key) : NULL;
  if (!v)
    return 0;
  char p[AE_PATH_MAX_LEN];
  cfg_join(p, sizeof(p), ppath, key);
  if (json_is_null(v)) {
    if (!(flags & CFG_STR_NULLABLE))
      return cfg_fail(c, p, "expected a string");
    cfg_set_str(dst, NULL);
    return 0;
  }
  if (!json_is_string(v))
    return cfg_fail(c, p, (flags & CFG_STR_NULLABLE) ? "expected a string or null" : "expected a string");
  const char *s = json_string_value(v);
  if (strlen(s) != json_string_length(v))
    return cfg_fail(c, p, "must not contain NUL characters");
  if (!*s) {
    if (!(flags & CFG_STR_EMPTY_IS_NULL))
      return cfg_fail(c, p, "must not be empty");
    cfg_set_str(dst, NULL);
    return 0;
  }
  cfg_set_str(dst, s);
  return 0;
}

int cfg_opt_uint(pctx *c, json_t *obj, const char *key, const char *ppath, unsigned min, unsigned max,
                    unsigned *dst) {
  json_t *v = obj ? json_object_get(obj, key) : NULL;
  if (!v)
    return 0;
  char p[AE_PATH_MAX_LEN];
  cfg_join(p, sizeof(p), ppath, key);
  if (!json_is_integer(v) || json_integer_value(v) < (json_int_t)min || json_integer_value(v) > (json_int_t)max)
    return cfg_fail(c, p, "must be an integer between %u and %u", min, max);
  *dst = (unsigned)json_integer_value(v);
  return 0;
}

int cfg_opt_bool(pctx *c, json_t *obj, const char *key, const char *ppath, int *dst) {
  json_t *v = obj ? json_object_get(obj, key) : NULL;
  if (!v)
    return 0;
  if (!json_is_boolean(v)) {
    char p[AE_PATH_MAX_LEN];
    cfg_join(p, sizeof(p), ppath, key);
    return cfg_fail(c, p, "expected true or false");
  }
  *dst = json_is_true(v);
  return 0;
}

/* names is NULL-terminated; *dst receives the index of the match. */
int cfg_opt_enum(pctx *c, json_t *obj, const char *key, const char *ppath, const char *const *names, int *dst) {
  json_t *v = obj ? json_object_get(obj, key) : NULL;
  if (!v)
    return 0;
  if (json_is_string(v)) {
    for (int i = 0; names[i]; i++) {
      if (strcmp(names[i], json_string_value(v)) == 0) {
        *dst = i;
        return 0;
      }
    }
  }
  char p[AE_PATH_MAX_LEN], list[200] = "";
  cfg_join(p, sizeof(p), ppath, key);
  size_t off = 0;
  for (int i = 0; names[i] && off < sizeof(list); i++)
    off += (size_t)snprintf(list + off, sizeof(list) - off, "%s\"%s\"", i ? (names[i + 1] ? ", " : " or ") : "",
                            names[i]);
  return cfg_fail(c, p, "must be %s", list);
}

void cfg_free_strv(char **v, size_t n) {
  if (!v)
    return;
  for (size_t i = 0; i < n; i++)
    free(v[i]);
  free(v);
}

/* Reads an array of strings (absent leaves *out untouched); check validates each element. */
int cfg_opt_str_array(pctx *c, json_t *obj, const char *key, const char *ppath, int allow_null,
                         cfg_elem_check_fn check, char ***out, size_t *nout) {
  json_t *v = obj ? json_object_get(obj, key) : NULL;
  if (!v)
    return 0;
  char p[AE_PATH_MAX_LEN];
  cfg_join(p, sizeof(p), ppath, key);
  if (json_is_null(v) && allow_null) {
    cfg_free_strv(*out, *nout);
    *out = NULL;
    *nout = 0;
    return 0;
  }
  if (!json_is_array(v))
    return cfg_fail(c, p, "expected an array of strings");
  size_t n = json_array_size(v);
  char **arr = ae_calloc(n + 1, sizeof(char *));
  for (size_t i = 0; i < n; i++) {
    json_t *e = json_array_get(v, i);
    char ep[AE_PATH_MAX_LEN];
    cfg_join_index(ep, sizeof(ep), p, i);
    int rc = 0;
    if (!json_is_string(e) || strlen(json_string_value(e)) != json_string_length(e))
      rc = cfg_fail(c, ep, "expected a string");
    else if (check)
      rc = check(c, ep, json_string_value(e));
    if (rc) {
      cfg_free_strv(arr, i);
      return rc;
    }
    arr[i] = ae_strdup(json_string_value(e));
  }
  cfg_free_strv(*out, *nout);
  *out = arr;
  *nout = n;
  return 0;
}

void cfg_lower_strv(char **v, size_t n) {
  for (size_t i = 0; i < n; i++)
    for (char *s = v[i]; *s; s++)
      if (*s >= 'A' && *s <= 'Z')
        *s = (char)(*s + 32);
}

int cfg_check_pattern(pctx *c, const char *path, const char *s) {
  if (!ae_cfg_valid_pattern(s))
    return cfg_fail(c, path, "invalid host pattern '%s' (expected a host name, \"*.suffix\" or \"*\")", s);
  return 0;
}

/* An IP address, or a CIDR range "addr/prefix" (prefix <= 32 for IPv4, <= 128 for IPv6). */
int cfg_check_ip(pctx *c, const char *path, const char *s) {
  char ip[64];
  const char *slash = strchr(s, '/');
  size_t n = slash ? (size_t)(slash - s) : strlen(s);
  if (n == 0 || n >= sizeof(ip))
    return cfg_fail(c, path, "expected an IP address or CIDR range");
  memcpy(ip, s, n);
  ip[n] = '\0';
  if (!ae_cfg_is_ip(ip))
    return cfg_fail(c, path, "expected an IP address or CIDR range");
  if (slash) {
    char *end = NULL;
    long bits = strtol(slash + 1, &end, 10);
    long max = strchr(ip, ':') ? 128 : 32;
    if (!slash[1] || *end || bits < 0 || bits > max)
      return cfg_fail(c, path, "bad prefix length in '%s'", s);
  }
  return 0;
}

int cfg_check_event_type(pctx *c, const char *path, const char *s) {
  if (!ae_cfg_valid_event_type(s))
    return cfg_fail(c, path, "invalid event type '%s'", s);
  return 0;
}
