/* The admin API's request/response endpoints: /healthz, /metrics and /v1/domains. Each answers
 * at once from the hooks, which run on the control loop and do not block. */
#include "admin_internal.h"

#include "acmedge/metrics.h"

#include <stdlib.h>
#include <string.h>

/* Decodes one path segment; an empty result, NUL or '/' is refused. */
static int pct_decode(const char *in, char *out, size_t outlen) {
  size_t o = 0;
  for (const char *p = in; *p; p++) {
    if (o + 1 >= outlen)
      return -1;
    char ch = *p;
    if (ch == '%') {
      int hi, lo;
      char h1 = p[1], h2 = h1 ? p[2] : 0;
      hi = (h1 >= '0' && h1 <= '9') ? h1 - '0' : (h1 >= 'a' && h1 <= 'f') ? h1 - 'a' + 10 : (h1 >= 'A' && h1 <= 'F') ? h1 - 'A' + 10 : -1;
      lo = (h2 >= '0' && h2 <= '9') ? h2 - '0' : (h2 >= 'a' && h2 <= 'f') ? h2 - 'a' + 10 : (h2 >= 'A' && h2 <= 'F') ? h2 - 'A' + 10 : -1;
      if (hi < 0 || lo < 0)
        return -1;
      ch = (char)(hi * 16 + lo);
      p += 2;
    }
    if (ch == '\0' || ch == '/')
      return -1;
    out[o++] = ch;
  }
  out[o] = '\0';
  return o ? 0 : -1;
}

void ae_adm_api_healthz(adm_conn *c) {
  ae_admin *a = c->a;
  const char *why = a->hooks.degraded ? a->hooks.degraded(a->hooks.ud) : NULL;
  if (!why) {
    ae_adm_respond(c, 200, "text/plain; charset=utf-8", "ok\n", 3, NULL);
    return;
  }
  /* Still serving (cached certificates): 200, so a load balancer keeps sending traffic. */
  char body[200];
  int n = snprintf(body, sizeof(body), "degraded: %s\n", why);
  ae_adm_respond(c, 200, "text/plain; charset=utf-8", body, n > 0 && (size_t)n < sizeof(body) ? (size_t)n : 0, NULL);
}

void ae_adm_api_pki_root(adm_conn *c) {
  ae_admin *a = c->a;
  char *pem = a->hooks.pki_root ? a->hooks.pki_root(a->hooks.ud) : NULL;
  if (!pem) {
    ae_adm_respond_error(c, 404, NULL, "the internal CA is not enabled (internal_ca.enabled)");
    return;
  }
  ae_adm_respond(c, 200, "application/x-pem-file", pem, strlen(pem), NULL);
  free(pem);
}

/* Finds key=value in a query string and decodes the value into out; 1 found, 0 absent, -1 bad. */
static int query_get(const char *query, const char *key, char *out, size_t outlen) {
  size_t kl = strlen(key);
  for (const char *p = query; p && *p;) {
    const char *end = strchr(p, '&');
    size_t len = end ? (size_t)(end - p) : strlen(p);
    if (len > kl && strncmp(p, key, kl) == 0 && p[kl] == '=') {
      char raw[512];
      if (len - kl - 1 >= sizeof(raw))
        return -1;
      memcpy(raw, p + kl + 1, len - kl - 1);
      raw[len - kl - 1] = '\0';
      if (raw[0] == '\0') {
        out[0] = '\0';
        return 1;
      }
      return pct_decode(raw, out, outlen) == 0 ? 1 : -1;
    }
    p = end ? end + 1 : NULL;
  }
  return 0;
}

void ae_adm_api_domains_list(adm_conn *c, const char *query) {
  ae_admin *a = c->a;
  char limit_s[32] = "", after[300] = "", state[32] = "";
  int hl = query_get(query, "limit", limit_s, sizeof(limit_s));
  int ha = query_get(query, "after", after, sizeof(after));
  int hs = query_get(query, "state", state, sizeof(state));
  if (hl < 0 || ha < 0 || hs < 0) {
    ae_adm_respond_error(c, 400, NULL, "bad query string (limit, after, state)");
    return;
  }
  if (hs == 1 && strcmp(state, "pending") != 0 && strcmp(state, "valid") != 0 && strcmp(state, "failed") != 0 &&
      strcmp(state, "renewing") != 0) {
    ae_adm_respond_error(c, 400, NULL, "state: want pending, valid, failed or renewing");
    return;
  }
  size_t limit = 0;
  if (hl == 1) {
    char *end = NULL;
    unsigned long v = strtoul(limit_s, &end, 10);
    if (!limit_s[0] || !end || *end || limit_s[0] == '-' || v < 1 || v > 10000) {
      ae_adm_respond_error(c, 400, NULL, "limit: want an integer from 1 to 10000");
      return;
    }
    limit = (size_t)v;
  }
  if (a->hooks.list_domains_async) {
    ae_admin_reply *rep = ae_calloc(1, sizeof(*rep));
    rep->c = c;
    c->pending = rep;
    if (a->hooks.list_domains_async(a->hooks.ud, limit, ha == 1 ? after : NULL, hs == 1 ? state : NULL, rep) == 0)
      return;
    c->pending = NULL;
    free(rep);
  }
  if ((limit || hs == 1 || ha == 1) && a->hooks.list_domains_page) {
    json_t *page = a->hooks.list_domains_page(a->hooks.ud, limit, ha == 1 ? after : NULL, hs == 1 ? state : NULL);
    if (!page) {
      ae_adm_respond_error(c, 500, NULL, "domain list unavailable");
      return;
    }
    ae_adm_respond_json(c, 200, page, NULL);
    return;
  }
  json_t *list = a->hooks.list_domains ? a->hooks.list_domains(a->hooks.ud) : json_array();
  if (!list || !json_is_array(list)) {
    json_decref(list);
    ae_adm_respond_error(c, 500, NULL, "domain list unavailable");
  } else {
    ae_adm_respond_json(c, 200, list, NULL);
  }
}

void ae_adm_api_domains_post(adm_conn *c) {
  ae_admin *a = c->a;
  json_error_t jerr;
  json_t *j = json_loadb(c->body ? c->body : "", c->body_len, 0, &jerr);
  const char *name = j ? json_string_value(json_object_get(j, "domain")) : NULL;
  if (!j) {
    ae_adm_respond_error(c, 400, NULL, "invalid JSON body: %s", jerr.text);
    return;
  }
  if (!json_is_object(j) || !name || !*name) {
    json_decref(j);
    ae_adm_respond_error(c, 400, NULL, "body must be {\"domain\": \"name\"}");
    return;
  }
  if (!a->hooks.add_domain) {
    json_decref(j);
    ae_adm_respond_error(c, 500, NULL, "adding domains is not available");
    return;
  }
  ae_err err = {0, ""};
  int r = a->hooks.add_domain(a->hooks.ud, name, &err);
  if (r == AE_EINVAL) {
    ae_adm_respond_error(c, 400, NULL, "%s", err.msg[0] ? err.msg : "invalid domain name");
  } else if (r != 0) {
    ae_adm_respond_error(c, 403, NULL, "%s", err.msg[0] ? err.msg : ae_strerror(r));
  } else {
    const char *state = "pending";
    json_t *list = a->hooks.list_domains ? a->hooks.list_domains(a->hooks.ud) : NULL;
    size_t i;
    json_t *o;
    json_array_foreach(list, i, o) {
      const char *d = json_string_value(json_object_get(o, "domain"));
      const char *s = json_string_value(json_object_get(o, "state"));
      if (d && s && ae_strcasecmp(d, name) == 0) {
        state = s;
        break;
      }
    }
    ae_adm_respond_json(c, 202, json_pack("{s:s,s:s}", "domain", name, "state", state), NULL);
    json_decref(list);
  }
  json_decref(j);
}

void ae_adm_api_domains_delete(adm_conn *c, const char *raw) {
  ae_admin *a = c->a;
  char name[512];
  if (pct_decode(raw, name, sizeof(name)) != 0) {
    ae_adm_respond_error(c, 400, NULL, "invalid domain name in path");
    return;
  }
  if (!a->hooks.delete_domain) {
    ae_adm_respond_error(c, 500, NULL, "deleting domains is not available");
    return;
  }
  ae_err err = {0, ""};
  int r = a->hooks.delete_domain(a->hooks.ud, name, &err);
  if (r == 0)
    ae_adm_respond_json(c, 200, json_pack("{s:s}", "deleted", name), NULL);
  else if (r == AE_ENOTFOUND)
    ae_adm_respond_error(c, 404, NULL, "%s", err.msg[0] ? err.msg : "unknown domain");
  else if (r == AE_EINVAL)
    ae_adm_respond_error(c, 400, NULL, "%s", err.msg[0] ? err.msg : "invalid domain name");
  else
    ae_adm_respond_error(c, 500, NULL, "%s", err.msg[0] ? err.msg : ae_strerror(r));
}

void ae_adm_api_metrics(adm_conn *c) {
  ae_admin *a = c->a;
  char *base = ae_metrics_render();
  char *extra = a->hooks.extra_metrics ? a->hooks.extra_metrics(a->hooks.ud) : NULL;
  size_t bl = strlen(base), el = extra ? strlen(extra) : 0;
  int need_nl = el && bl && base[bl - 1] != '\n';
  char *out = ae_malloc(bl + el + 2);
  memcpy(out, base, bl);
  if (need_nl)
    out[bl++] = '\n';
  if (el)
    memcpy(out + bl, extra, el);
  size_t total = bl + el;
  if (total && out[total - 1] != '\n')
    out[total++] = '\n';
  ae_adm_respond(c, 200, "text/plain; version=0.0.4; charset=utf-8", out, total, NULL);
  free(out);
  free(base);
  free(extra);
}

void ae_admin_reply_send(ae_admin_reply *r, int status, json_t *body) {
  if (!r) {
    json_decref(body);
    return;
  }
  if (r->c && !r->c->closing) {
    r->c->pending = NULL;
    ae_adm_respond_json(r->c, status, body ? body : json_object(), NULL);
  } else {
    if (r->c)
      r->c->pending = NULL;
    json_decref(body);
  }
  free(r);
}

void ae_adm_api_domains_renew(adm_conn *c, const char *raw) {
  ae_admin *a = c->a;
  char name[512];
  if (pct_decode(raw, name, sizeof(name)) != 0 || !name[0]) {
    ae_adm_respond_error(c, 400, NULL, "invalid domain name in path");
    return;
  }
  if (!a->hooks.renew_domain) {
    ae_adm_respond_error(c, 500, NULL, "renewing on request is not available");
    return;
  }
  ae_err err = {0, ""};
  int r = a->hooks.renew_domain(a->hooks.ud, name, &err);
  const char *msg = err.msg[0] ? err.msg : ae_strerror(r);
  if (r == 0)
    ae_adm_respond_json(c, 202, json_pack("{s:s}", "renewing", name), NULL);
  else if (r == AE_ENOTFOUND)
    ae_adm_respond_error(c, 404, NULL, "%s", msg);
  else if (r == AE_EEXIST)
    ae_adm_respond_error(c, 409, NULL, "%s", msg);
  else if (r == AE_EAGAIN || r == AE_ELIMIT)
    ae_adm_respond_error(c, 503, "Retry-After: 1\r\n", "%s", msg);
  else
    ae_adm_respond_error(c, 500, NULL, "%s", msg);
}

void ae_adm_api_domains_revoke(adm_conn *c, const char *raw) {
  ae_admin *a = c->a;
  char name[512];
  if (pct_decode(raw, name, sizeof(name)) != 0 || !name[0]) {
    ae_adm_respond_error(c, 400, NULL, "invalid domain name in path");
    return;
  }
  int reason = -1;
  if (c->body_len > 0) {
    json_error_t jerr;
    json_t *j = json_loadb(c->body, c->body_len, 0, &jerr);
    if (!j || !json_is_object(j)) {
      json_decref(j);
      ae_adm_respond_error(c, 400, NULL, "body must be {\"reason\": N}");
      return;
    }
    json_t *r = json_object_get(j, "reason");
    if (r && (!json_is_integer(r) || json_integer_value(r) < 0 || json_integer_value(r) > 255)) {
      json_decref(j);
      ae_adm_respond_error(c, 400, NULL, "reason: expected an RFC 5280 reason code (integer)");
      return;
    }
    if (r)
      reason = (int)json_integer_value(r);
    json_decref(j);
  }
  if (!a->hooks.revoke_domain) {
    ae_adm_respond_error(c, 500, NULL, "revocation is not available");
    return;
  }
  ae_admin_reply *rep = ae_calloc(1, sizeof(*rep));
  rep->c = c;
  c->pending = rep;
  ae_err err = {0, ""};
  int r = a->hooks.revoke_domain(a->hooks.ud, name, reason, rep, &err);
  if (r == 0)
    return;
  c->pending = NULL;
  free(rep);
  if (r == AE_ENOTFOUND)
    ae_adm_respond_error(c, 404, NULL, "%s", err.msg[0] ? err.msg : "unknown domain");
  else if (r == AE_EINVAL)
    ae_adm_respond_error(c, 400, NULL, "%s", err.msg[0] ? err.msg : "invalid domain name");
  else
    ae_adm_respond_error(c, 500, NULL, "%s", err.msg[0] ? err.msg : ae_strerror(r));
}
