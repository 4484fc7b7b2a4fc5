/* Config for capability tokens: cap_tokens {keys, audience, leeway_s, max_ttl_s}, admin.tls
 * {cert, key, client_ca} and routes[i].auth.cap_tokens {audience, groups, bind, forward_token}.
 * Every refusal names the field, so `acmedge check` points at the mistake. */
#include "acmedge/config.h"
#include "acmedge/tokens.h"

#include <gnutls/gnutls.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int fail(const char *name, ae_err *err, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int fail(const char *name, ae_err *err, const char *path, const char *fmt, ...) {
  char msg[400];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);
  return ae_err_set(err, AE_EINVAL, "%s: %s: %s", name, path, msg);
}

static int only_keys(const char *name, ae_err *err, json_t *o, const char *path, const char *const *keys) {
  const char *k;
  json_t *v;
  json_object_foreach(o, k, v) {
    int ok = 0;
    for (size_t i = 0; keys[i]; i++)
      ok |= strcmp(keys[i], k) == 0;
    if (!ok)
      return fail(name, err, path, "unknown key '%.64s'", k);
  }
  return 0;
}

static int get_int(const char *name, ae_err *err, json_t *o, const char *key, const char *path, int64_t min,
                   int64_t max, int64_t *dst) {
  json_t *v = json_object_get(o, key);
  if (!v || json_is_null(v))
    return 0;
  if (!json_is_integer(v) || json_integer_value(v) < min || json_integer_value(v) > max)
    return fail(name, err, path, "%s: expected an integer from %lld to %lld", key, (long long)min, (long long)max);
  *dst = (int64_t)json_integer_value(v);
  return 0;
}

/* A claim-like string: what tokens can carry, so that a configured value can ever match. */
static int get_name(const char *name, ae_err *err, json_t *v, const char *path, char **dst) {
  if (!json_is_string(v) || json_string_length(v) == 0 || json_string_length(v) > AE_TOK_MAX_STR ||
      strlen(json_string_value(v)) != json_string_length(v))
    return fail(name, err, path, "expected a non-empty string of at most %u bytes", AE_TOK_MAX_STR);
  for (const char *s = json_string_value(v); *s; s++)
    if ((unsigned char)*s < 0x20 || *s == 0x7f)
      return fail(name, err, path, "control characters are not allowed");
  *dst = ae_strdup(json_string_value(v));
  return 0;
}

static int get_file(const char *name, ae_err *err, json_t *o, const char *key, const char *path, int required,
                    char **dst) {
  json_t *v = json_object_get(o, key);
  if (!v || json_is_null(v)) {
    if (required)
      return fail(name, err, path, "%s: required", key);
    return 0;
  }
  if (!json_is_string(v) || !*json_string_value(v))
    return fail(name, err, path, "%s: expected a file path", key);
  if (access(json_string_value(v), R_OK) != 0)
    return fail(name, err, path, "%s: %s: cannot be read", key, json_string_value(v));
  *dst = ae_strdup(json_string_value(v));
  return 0;
}

static const char *const k_cap[] = {"keys", "audience", "leeway_s", "max_ttl_s", NULL};
static const char *const k_tls[] = {"cert", "key", "client_ca", NULL};
static const char *const k_auth[] = {"cap_tokens", NULL};
static const char *const k_route_cap[] = {"audience", "groups", "bind", "forward_token", NULL};

static int parse_cap(const char *name, json_t *o, ae_tok_config *tc, ae_err *err) {
  int rc;
  if (!json_is_object(o))
    return fail(name, err, "cap_tokens", "expected an object");
  if ((rc = only_keys(name, err, o, "cap_tokens", k_cap)))
    return rc;
  json_t *keys = json_object_get(o, "keys");
  if (!keys)
    return fail(name, err, "cap_tokens.keys", "required");
  ae_err kerr = {0};
  if (ae_tok_keyring_from_json(keys, "cap_tokens.keys", &tc->keys, &kerr) != 0)
    return ae_err_set(err, AE_EINVAL, "%s: %s", name, kerr.msg);
  if (ae_tok_keyring_count(tc->keys) == 0)
    return fail(name, err, "cap_tokens.keys", "must name at least one issuer");
  json_t *aud = json_object_get(o, "audience");
  if (!aud)
    return fail(name, err, "cap_tokens.audience", "required (this server's name in tokens' aud)");
  if ((rc = get_name(name, err, aud, "cap_tokens.audience", &tc->audience)))
    return rc;
  if ((rc = get_int(name, err, o, "leeway_s", "cap_tokens", 0, 3600, &tc->leeway_s)) ||
      (rc = get_int(name, err, o, "max_ttl_s", "cap_tokens", 1, 366LL * 86400, &tc->max_ttl_s)))
    return rc;
  return 0;
}

/* Loads the files the way the admin listener will, so that `check` names a bad pair or CA file. */
static int check_admin_tls(const char *name, const ae_tok_config *tc, ae_err *err) {
  gnutls_certificate_credentials_t cr;
  if (gnutls_certificate_allocate_credentials(&cr) < 0)
    return ae_err_set(err, AE_ENOMEM, "%s: admin.tls: out of memory", name);
  int rc = 0;
  int r = gnutls_certificate_set_x509_key_file(cr, tc->admin_tls_cert, tc->admin_tls_key, GNUTLS_X509_FMT_PEM);
  if (r < 0)
    rc = fail(name, err, "admin.tls", "cert %s / key %s: %s", tc->admin_tls_cert, tc->admin_tls_key,
              gnutls_strerror(r));
  if (rc == 0 && tc->admin_tls_client_ca) {
    r = gnutls_certificate_set_x509_trust_file(cr, tc->admin_tls_client_ca, GNUTLS_X509_FMT_PEM);
    if (r <= 0)
      rc = fail(name, err, "admin.tls", "client_ca %s: %s", tc->admin_tls_client_ca,
                r == 0 ? "no certificate in the file" : gnutls_strerror(r));
  }
  gnutls_certificate_free_credentials(cr);
  return rc;
}

static int parse_admin_tls(const char *name, json_t *root, ae_tok_config *tc, ae_err *err) {
  json_t *t = json_object_get(json_object_get(root, "admin"), "tls");
  if (!t || json_is_null(t))
    return 0;
  int rc;
  if (!json_is_object(t))
    return fail(name, err, "admin.tls", "expected an object {cert, key, client_ca}");
  if ((rc = only_keys(name, err, t, "admin.tls", k_tls)) ||
      (rc = get_file(name, err, t, "cert", "admin.tls", 1, &tc->admin_tls_cert)) ||
      (rc = get_file(name, err, t, "key", "admin.tls", 1, &tc->admin_tls_key)) ||
      (rc = get_file(name, err, t, "client_ca", "admin.tls", 0, &tc->admin_tls_client_ca)))
    return rc;
  return check_admin_tls(name, tc, err);
}

static int parse_route_auth(const char *name, json_t *a, const char *p, const ae_tok_config *tc, ae_route *rt,
                            ae_err *err) {
  char path[128];
  int rc;
  if (!json_is_object(a))
    return fail(name, err, p, "expected an object {\"cap_tokens\": {...}}");
  if ((rc = only_keys(name, err, a, p, k_auth)))
    return rc;
  json_t *ct = json_object_get(a, "cap_tokens");
  snprintf(path, sizeof(path), "%s.cap_tokens", p);
  if (!ct || !json_is_object(ct))
    return fail(name, err, path, "expected an object {audience, groups, bind, forward_token}");
  if ((rc = only_keys(name, err, ct, path, k_route_cap)))
    return rc;
  if (!tc || !tc->keys)
    return fail(name, err, path, "needs the top-level cap_tokens keyring");
  if (rt->plain_http)
    return fail(name, err, path, "a protected route cannot also set plain_http (tokens are never accepted "
                                 "over plain HTTP)");
  ae_tok_route_auth *ra = ae_calloc(1, sizeof(*ra));
  rt->auth = ra;
  json_t *v = json_object_get(ct, "audience");
  char fp[160];
  snprintf(fp, sizeof(fp), "%s.audience", path);
  if (v && (rc = get_name(name, err, v, fp, &ra->audience)))
    return rc;
  v = json_object_get(ct, "groups");
  snprintf(fp, sizeof(fp), "%s.groups", path);
  if (v) {
    if (!json_is_array(v) || json_array_size(v) > AE_TOK_MAX_GROUPS)
      return fail(name, err, fp, "expected an array of at most %u group names", AE_TOK_MAX_GROUPS);
    ra->groups = ae_calloc(json_array_size(v) + 1, sizeof(char *));
    for (size_t i = 0; i < json_array_size(v); i++) {
      char gp[256];
      snprintf(gp, sizeof(gp), "%s[%zu]", fp, i);
      if ((rc = get_name(name, err, json_array_get(v, i), gp, &ra->groups[ra->ngroups])))
        return rc;
      ra->ngroups++;
    }
  }
  static const char *const bools[] = {"bind", "forward_token"};
  int *dst[] = {&ra->bind, &ra->forward_token};
  for (size_t i = 0; i < 2; i++) {
    v = json_object_get(ct, bools[i]);
    if (v && !json_is_boolean(v))
      return fail(name, err, path, "%s: expected true or false", bools[i]);
    *dst[i] = v && json_is_true(v);
  }
  return 0;
}

int ae_tok_config_parse(const char *name, json_t *root, ae_config *cfg, ae_err *err) {
  json_t *cap = json_object_get(root, "cap_tokens");
  json_t *tls = json_object_get(json_object_get(root, "admin"), "tls");
  int rc;
  if ((cap && !json_is_null(cap)) || (tls && !json_is_null(tls))) {
    ae_tok_config *tc = ae_calloc(1, sizeof(*tc));
    tc->leeway_s = AE_TOK_DEFAULT_LEEWAY_S;
    tc->max_ttl_s = AE_TOK_DEFAULT_MAX_TTL_S;
    cfg->tokens = tc;
    if (cap && !json_is_null(cap) && (rc = parse_cap(name, cap, tc, err)))
      return rc;
    if ((rc = parse_admin_tls(name, root, tc, err)))
      return rc;
  }
  json_t *routes = json_object_get(root, "routes");
  for (size_t i = 0; i < cfg->nroutes && i < json_array_size(routes); i++) {
    json_t *a = json_object_get(json_array_get(routes, i), "auth");
    if (!a || json_is_null(a))
      continue;
    char p[64];
    snprintf(p, sizeof(p), "routes[%zu].auth", i);
    if ((rc = parse_route_auth(name, a, p, cfg->tokens, &cfg->routes[i], err)))
      return rc;
  }
  return 0;
}

void ae_tok_route_auth_free(ae_tok_route_auth *ra) {
  if (!ra)
    return;
  free(ra->audience);
  for (size_t i = 0; i < ra->ngroups; i++)
    free(ra->groups[i]);
  free(ra->groups);
  free(ra);
}

void ae_tok_config_free(ae_config *cfg) {
  for (size_t i = 0; i < cfg->nroutes; i++) {
    ae_tok_route_auth_free(cfg->routes[i].auth);
    cfg->routes[i].auth = NULL;
  }
  ae_tok_config *tc = cfg->tokens;
  cfg->tokens = NULL;
  if (!tc)
    return;
  ae_tok_keyring_free(tc->keys);
  free(tc->audience);
  free(tc->admin_tls_cert);
  free(tc->admin_tls_key);
  free(tc->admin_tls_client_ca);
  free(tc);
}
