/* Revocation set: token ids and (issuer, subject) pairs. Checked on every verification from any
 * thread, changed by the admin API; every change is written to disk (temp + rename) before it is
 * acknowledged so that a revocation survives a restart. */
#include "acmedge/strmap.h"
#include "acmedge/tokens.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define REVSET_MAX 100000u
#define REVSET_FILE_MAX (64u << 20)

struct ae_tok_revset {
  pthread_mutex_t mu;
  char *path;
  ae_strmap jti;
  ae_strmap subj;       /* "iss\nsub": claims never contain control characters */
};

static char *subj_key(const char *iss, const char *sub) {
  size_t n = strlen(iss) + strlen(sub) + 2;
  char *k = ae_malloc(n);
  snprintf(k, n, "%s\n%s", iss, sub);
  return k;
}

static void add_jti(void *ud, const char *key, void *value) {
  (void)value;
  json_array_append_new(ud, json_string(key));
}

static void add_subj(void *ud, const char *key, void *value) {
  (void)value;
  const char *nl = strchr(key, '\n');
  json_array_append_new(ud, json_pack("{s:s%,s:s}", "iss", key, (size_t)(nl - key), "sub", nl + 1));
}

/* Caller holds mu. */
static int persist(ae_tok_revset *rs, ae_err *err) {
  if (!rs->path)
    return 0;
  json_t *j = json_array(), *s = json_array();
  ae_strmap_foreach(&rs->jti, add_jti, j);
  ae_strmap_foreach(&rs->subj, add_subj, s);
  json_t *root = json_pack("{s:o,s:o}", "jti", j, "subjects", s);
  char *text = json_dumps(root, JSON_SORT_KEYS);
  json_decref(root);
  if (!text)
    return ae_err_set(err, AE_ENOMEM, "%s: cannot serialise the revocation list", rs->path);
  int rc = ae_write_file_atomic(rs->path, text, strlen(text), 0600, err);
  free(text);
  return rc;
}

static int str_ok(json_t *v) {
  if (!json_is_string(v))
    return 0;
  size_t n = json_string_length(v);
  const char *s = json_string_value(v);
  if (n == 0 || n > AE_TOK_MAX_STR || strlen(s) != n)
    return 0;
  for (size_t i = 0; i < n; i++)
    if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
      return 0;
  return 1;
}

static int load(ae_tok_revset *rs, ae_err *err) {
  struct stat st;
  if (stat(rs->path, &st) != 0 && errno == ENOENT)
    return 0;
  char *text = NULL;
  size_t len = 0;
  int rc = ae_read_file(rs->path, REVSET_FILE_MAX, &text, &len, err);
  if (rc)
    return rc;
  json_error_t jerr;
  json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
  free(text);
  json_t *j = json_object_get(root, "jti"), *s = json_object_get(root, "subjects");
  if (!json_is_object(root) || !json_is_array(j) || !json_is_array(s)) {
    json_decref(root);
    return ae_err_set(err, AE_EINVAL, "%s: not a revocation list {\"jti\": [...], \"subjects\": [...]}", rs->path);
  }
  size_t i;
  json_t *v;
  json_array_foreach(j, i, v) {
    if (!str_ok(v)) {
      json_decref(root);
      return ae_err_set(err, AE_EINVAL, "%s: jti[%zu]: expected a non-empty string", rs->path, i);
    }
    ae_strmap_put(&rs->jti, json_string_value(v), (void *)1);
  }
  json_array_foreach(s, i, v) {
    json_t *iss = json_object_get(v, "iss"), *sub = json_object_get(v, "sub");
    if (!str_ok(iss) || !str_ok(sub)) {
      json_decref(root);
      return ae_err_set(err, AE_EINVAL, "%s: subjects[%zu]: expected {\"iss\", \"sub\"}", rs->path, i);
    }
    char *k = subj_key(json_string_value(iss), json_string_value(sub));
    ae_strmap_put(&rs->subj, k, (void *)1);
    free(k);
  }
  json_decref(root);
  return 0;
}

int ae_tok_revset_open(const char *path, ae_tok_revset **out, ae_err *err) {
  ae_tok_revset *rs = ae_calloc(1, sizeof(*rs));
  pthread_mutex_init(&rs->mu, NULL);
  ae_strmap_init(&rs->jti);
  ae_strmap_init(&rs->subj);
  rs->path = ae_strdup(path);
  int rc = rs->path ? load(rs, err) : 0;
  if (rc) {
    ae_tok_revset_free(rs);
    *out = NULL;
    return rc;
  }
  *out = rs;
  return 0;
}

void ae_tok_revset_free(ae_tok_revset *rs) {
  if (!rs)
    return;
  ae_strmap_clear(&rs->jti);
  ae_strmap_clear(&rs->subj);
  pthread_mutex_destroy(&rs->mu);
  free(rs->path);
  free(rs);
}

/* Picks the map and key for (jti) or (iss, sub); NULL key when the arguments are unusable. */
static char *pick(ae_tok_revset *rs, const char *jti, const char *iss, const char *sub, ae_strmap **m) {
  if (jti && *jti && !iss && !sub) {
    *m = &rs->jti;
    return ae_strdup(jti);
  }
  if (!jti && iss && *iss && sub && *sub && !strchr(iss, '\n')) {
    *m = &rs->subj;
    return subj_key(iss, sub);
  }
  return NULL;
}

static int change(ae_tok_revset *rs, const char *jti, const char *iss, const char *sub, int add, int *changed,
                  ae_err *err) {
  *changed = 0;
  ae_strmap *m = NULL;
  char *k = pick(rs, jti, iss, sub, &m);
  if (!k)
    return ae_err_set(err, AE_EINVAL, "expected a jti, or an iss and a sub");
  int rc = 0;
  pthread_mutex_lock(&rs->mu);
  int present = ae_strmap_get(m, k) != NULL;
  if (add && !present) {
    if (rs->jti.count + rs->subj.count >= REVSET_MAX)
      rc = ae_err_set(err, AE_ELIMIT, "revocation list is full (%u entries)", REVSET_MAX);
    else {
      ae_strmap_put(m, k, (void *)1);
      if ((rc = persist(rs, err)) != 0)
        ae_strmap_del(m, k);
      else
        *changed = 1;
    }
  } else if (!add && present) {
    ae_strmap_del(m, k);
    if ((rc = persist(rs, err)) != 0)
      ae_strmap_put(m, k, (void *)1);
    else
      *changed = 1;
  }
  pthread_mutex_unlock(&rs->mu);
  free(k);
  return rc;
}

int ae_tok_revset_add(ae_tok_revset *rs, const char *jti, const char *iss, const char *sub, int *added,
                      ae_err *err) {
  return change(rs, jti, iss, sub, 1, added, err);
}

int ae_tok_revset_remove(ae_tok_revset *rs, const char *jti, const char *iss, const char *sub, int *removed,
                         ae_err *err) {
  return change(rs, jti, iss, sub, 0, removed, err);
}

int ae_tok_revset_contains(ae_tok_revset *rs, const char *jti, const char *iss, const char *sub) {
  if (!rs)
    return 0;
  pthread_mutex_lock(&rs->mu);
  int hit = (jti && ae_strmap_get(&rs->jti, jti)) || 0;
  if (!hit && iss && sub && (rs->subj.count > 0)) {
    char *k = subj_key(iss, sub);
    hit = ae_strmap_get(&rs->subj, k) != NULL;
    free(k);
  }
  pthread_mutex_unlock(&rs->mu);
  return hit;
}
