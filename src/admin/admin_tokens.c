/* Capability tokens on the admin API: authentication by static token or "Bearer cap:...",
 * permission by group (read, domains:write, admin), and the token endpoints
 * POST /v1/tokens/revoke, POST /v1/tokens/unrevoke, GET /v1/tokens/keys. */
#include "admin_internal.h"

#include "acmedge/log.h"
#include "acmedge/tokens.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const char k_invalid[] = "WWW-Authenticate: Bearer realm=\"acmedge\", error=\"invalid_token\"\r\n";
static const char k_scope[] = "WWW-Authenticate: Bearer realm=\"acmedge\", error=\"insufficient_scope\"\r\n";

/* Groups that grant a request; "admin" grants everything. */
static void required_groups(int method, const char *path, char **g, size_t *n) {
  static char read[] = "read", write[] = "domains:write", admin[] = "admin";
  *n = 0;
  if (strncmp(path, "/v1/tokens/", 11) == 0 && method != HTTP_GET) {
    g[(*n)++] = admin;
    return;
  }
  if (method == HTTP_GET || method == HTTP_HEAD)
    g[(*n)++] = read;
  else
    g[(*n)++] = write;
  g[(*n)++] = admin;
}

/* The credential after "Bearer ", trimmed; NULL when there is no bearer credential. */
static const char *bearer(const char *h, size_t *len) {
  if (!h)
    return NULL;
  while (*h == ' ')
    h++;
  if (strncasecmp(h, "Bearer ", 7) != 0)
    return NULL;
  h += 7;
  while (*h == ' ')
    h++;
  size_t n = strlen(h);
  while (n && (h[n - 1] == ' ' || h[n - 1] == '\t'))
    n--;
  *len = n;
  return h;
}

static void rejected(adm_conn *c, ae_tok_reason r) {
  /* Never the token, never an unverified subject: only the reason and where. */
  ae_events_emit(c->a->ev, "token_rejected", NULL,
                 json_pack("{s:s,s:s}", "reason", ae_tok_reason_name(r), "source", "admin"));
  if (r == AE_TOK_INSUFFICIENT_SCOPE)
    ae_adm_respond_error(c, 403, k_scope, "token lacks the group this request needs (insufficient_scope)");
  else
    ae_adm_respond_error(c, 401, k_invalid, "invalid token (%s)", ae_tok_reason_name(r));
}

int ae_adm_authorize(adm_conn *c, int method, int static_ok) {
  ae_admin *a = c->a;
  if (!ae_tok_runtime_enabled()) {
    if (!static_ok)
      ae_adm_respond_error(c, 401, "WWW-Authenticate: Bearer realm=\"acmedge\"\r\n", "missing or wrong bearer token");
    return static_ok;
  }
  if (a->token && static_ok)
    return 1; /* the static token has every permission */
  size_t n = 0;
  const char *cred = bearer(c->h_auth, &n);
  if (!cred) {
    ae_adm_respond_error(c, 401, "WWW-Authenticate: Bearer realm=\"acmedge\"\r\n", "missing bearer credential");
    return 0;
  }
  char path[ADM_MAX_URL + 1];
  size_t pl = strcspn(c->url, "?");
  memcpy(path, c->url, pl);
  path[pl] = 0;
  char *groups[2];
  size_t ng = 0;
  required_groups(method, path, groups, &ng);
  ae_tok_claims cl;
  ae_tok_reason r = ae_tok_runtime_verify(cred, n, NULL, 0, groups, ng,
                                         c->has_client_cert ? c->client_cert_sha256 : NULL, &cl);
  if (r != AE_TOK_OK) {
    rejected(c, r);
    return 0;
  }
  AE_DEBUG("admin", "token of %s (issuer %s) accepted for %s", cl.sub, cl.iss, path);
  ae_tok_claims_clear(&cl);
  return 1;
}

/* {"jti": "..."} or {"iss": "...", "sub": "..."}; 0 with the strings (owned by j) or -1. */
static int revoke_target(json_t *j, const char **jti, const char **iss, const char **sub) {
  *jti = json_string_value(json_object_get(j, "jti"));
  *iss = json_string_value(json_object_get(j, "iss"));
  *sub = json_string_value(json_object_get(j, "sub"));
  if (!json_is_object(j) || json_object_size(j) != (*jti ? 1u : 2u))
    return -1;
  if (*jti)
    return **jti ? 0 : -1;
  return *iss && **iss && *sub && **sub ? 0 : -1;
}

void ae_adm_api_tokens_revoke(adm_conn *c, int revoke) {
  ae_tok_revset *rs = ae_tok_runtime_revset();
  if (!rs) {
    ae_adm_respond_error(c, 500, NULL, "token revocation is not available");
    return;
  }
  json_error_t jerr;
  json_t *j = json_loadb(c->body ? c->body : "", c->body_len, JSON_REJECT_DUPLICATES, &jerr);
  const char *jti, *iss, *sub;
  if (!j || revoke_target(j, &jti, &iss, &sub) != 0) {
    json_decref(j);
    ae_adm_respond_error(c, 400, NULL, "body must be {\"jti\": \"...\"} or {\"iss\": \"...\", \"sub\": \"...\"}");
    return;
  }
  ae_err err = {0};
  int changed = 0;
  int rc = revoke ? ae_tok_revset_add(rs, jti, jti ? NULL : iss, jti ? NULL : sub, &changed, &err)
                  : ae_tok_revset_remove(rs, jti, jti ? NULL : iss, jti ? NULL : sub, &changed, &err);
  if (rc) {
    json_decref(j);
    ae_adm_respond_error(c, rc == AE_EINVAL ? 400 : 500, NULL, "%s", err.msg);
    return;
  }
  json_t *out = jti ? json_pack("{s:s}", "jti", jti) : json_pack("{s:s,s:s}", "iss", iss, "sub", sub);
  json_object_set_new(out, "revoked", json_boolean(revoke));
  json_object_set_new(out, "changed", json_boolean(changed));
  json_decref(j);
  ae_adm_respond_json(c, 200, out, NULL);
}

void ae_adm_api_tokens_keys(adm_conn *c) { ae_adm_respond_json(c, 200, ae_tok_runtime_keys(), NULL); }

void ae_adm_route_tokens(adm_conn *c, int method, const char *rest) {
  if (strcmp(rest, "revoke") == 0 || strcmp(rest, "unrevoke") == 0) {
    if (method != HTTP_POST)
      ae_adm_respond_error(c, 405, "Allow: POST\r\n", "method not allowed");
    else
      ae_adm_api_tokens_revoke(c, rest[0] == 'r');
  } else if (strcmp(rest, "keys") == 0) {
    if (method != HTTP_GET)
      ae_adm_respond_error(c, 405, "Allow: GET\r\n", "method not allowed");
    else
      ae_adm_api_tokens_keys(c);
  } else {
    ae_adm_respond_error(c, 404, NULL, "no such endpoint: /v1/tokens/%s", rest);
  }
}
