/* RFC 7807 problem documents from the ACME server (RFC 8555 §6.7): parsing, the retryable
 * classification, and text cleaned for logs and events. */
#include "acme_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define ACME_URN "urn:ietf:params:acme:error:"

/* Classification of problem types (RFC 8555 §6.7 plus our local ones).
 *
 * retryable = 1: the condition is transient or on the CA's side; a later attempt with the same
 *   input can succeed (backoff, honouring retry_after).
 * retryable = 0: the request itself is wrong for this CA (name refused, CSR or contact
 *   rejected, account action needed); retrying soon only burns rate limits.
 *
 * Validation failures (connection, dns, tls, incorrectResponse, unauthorized) are retryable:
 * they usually come from DNS not yet pointing at us or a responder briefly unavailable.
 * Unknown types default to retryable, since backoff bounds the cost of being wrong. */
static const struct {
  const char *name;
  int retryable;
} problem_table[] = {
    {"badNonce", 1},
    {"serverInternal", 1},
    {"rateLimited", 1},
    {"connection", 1},
    {"dns", 1},
    {"tls", 1},
    {"incorrectResponse", 1},
    {"unauthorized", 1},
    {"orderNotReady", 1},
    {"accountDoesNotExist", 1},
    {"alreadyRevoked", 0},
    {"malformed", 0},
    {"rejectedIdentifier", 0},
    {"unsupportedIdentifier", 0},
    {"caa", 0},
    {"badCSR", 0},
    {"invalidContact", 0},
    {"unsupportedContact", 0},
    {"externalAccountRequired", 0},
    {"userActionRequired", 0},
    {"badRevocationReason", 0},
    {"badPublicKey", 0},
    {"badSignatureAlgorithm", 0},
    {"compound", 0},
    {"alreadyReplaced", 0},
    /* local problems */
    {"acmedge:ca-unreachable", 1},
    {"acmedge:bad-response", 1},
    {"acmedge:timeout", 1},
    {"acmedge:storage", 1},
    {"acmedge:internal", 1},
    {"acmedge:authz-invalid", 1},
    {"acmedge:order-invalid", 1},
    {"acmedge:no-challenge", 0},
    {"acmedge:account-key", 0},
    {"acmedge:account-deactivated", 0},
    {"acmedge:bad-domain", 0},
};

int ae_acme_problem_retryable(const char *type) {
  if (type == NULL || type[0] == '\0') return 1;
  const char *name = type;
  if (strncmp(type, ACME_URN, strlen(ACME_URN)) == 0) name = type + strlen(ACME_URN);
  for (size_t i = 0; i < AE_ARRAY_LEN(problem_table); i++) {
    if (strcmp(problem_table[i].name, name) == 0) return problem_table[i].retryable;
  }
  return 1;
}

int acme_problem_is(const char *type, const char *name) {
  if (type == NULL || name == NULL) return 0;
  if (strncmp(type, ACME_URN, strlen(ACME_URN)) == 0) type += strlen(ACME_URN);
  return strcmp(type, name) == 0;
}

/* Copy of s with control characters replaced and length capped: details end up in logs,
 * events and terminals. */
static char *clean_text(const char *s, size_t max) {
  size_t n = strlen(s);
  if (n > max) n = max;
  char *out = ae_malloc(n + 1);
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    out[i] = (c < 0x20 || c == 0x7f) ? ' ' : (char)c;
  }
  out[n] = '\0';
  return out;
}

static const char *jstr(json_t *o, const char *key) {
  json_t *v = json_object_get(o, key);
  return json_is_string(v) ? json_string_value(v) : NULL;
}

/* Appends "identifier: type: detail" entries of the subproblems array into a bounded string. */
static char *format_subproblems(json_t *arr) {
  if (!json_is_array(arr) || json_array_size(arr) == 0) return NULL;
  char buf[ACME_SUBPROBLEMS_MAX];
  size_t used = 0;
  buf[0] = '\0';
  size_t i;
  json_t *sp;
  json_array_foreach(arr, i, sp) {
    if (!json_is_object(sp)) continue;
    const char *ident = jstr(json_object_get(sp, "identifier"), "value");
    const char *t = jstr(sp, "type");
    const char *d = jstr(sp, "detail");
    if (t != NULL && strncmp(t, ACME_URN, strlen(ACME_URN)) == 0) t += strlen(ACME_URN);
    int w = snprintf(buf + used, sizeof(buf) - used, "%s%s: %s: %s", used ? "; " : "", ident ? ident : "?",
                     t ? t : "?", d ? d : "");
    if (w < 0 || (size_t)w >= sizeof(buf) - used) {
      used = sizeof(buf) - 1;
      break;
    }
    used += (size_t)w;
  }
  if (used == 0) return NULL;
  return clean_text(buf, ACME_SUBPROBLEMS_MAX);
}

int ae_acme_problem_parse(const char *json, size_t len, ae_acme_problem *out) {
  if (out == NULL) return AE_EINVAL;
  memset(out, 0, sizeof(*out));
  if (json == NULL || len == 0 || len > ACME_MAX_BODY) return AE_EPROTO;
  json_error_t jerr;
  json_t *root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr);
  if (root == NULL) return AE_EPROTO;
  if (!json_is_object(root)) {
    json_decref(root);
    return AE_EPROTO;
  }
  const char *type = jstr(root, "type");
  const char *detail = jstr(root, "detail");
  /* RFC 7807 §4.2: a missing type means "about:blank". */
  out->type = clean_text(type != NULL && type[0] != '\0' ? type : "about:blank", 256);
  out->detail = detail != NULL ? clean_text(detail, ACME_DETAIL_MAX) : NULL;
  json_t *st = json_object_get(root, "status");
  if (json_is_integer(st)) {
    json_int_t v = json_integer_value(st);
    out->status = (v >= 0 && v < 1000) ? (long)v : 0;
  }
  out->subproblems = format_subproblems(json_object_get(root, "subproblems"));
  json_decref(root);
  return 0;
}

void ae_acme_problem_clear(ae_acme_problem *p) {
  if (p == NULL) return;
  free(p->type);
  free(p->detail);
  free(p->subproblems);
  memset(p, 0, sizeof(*p));
}
