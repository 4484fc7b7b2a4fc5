/* The process-wide token state: the config snapshot verification uses (swapped on reload while
 * proxy workers may be verifying) and the persisted revocation set shared by the admin API and
 * the proxy, so a revocation is seen by the very next request everywhere. */
#include "acmedge/config.h"
#include "acmedge/log.h"
#include "acmedge/metrics.h"
#include "acmedge/tokens.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static ae_config *g_cfg;
static ae_tok_revset *g_rs;
static ae_tok_cache *g_cache;  /* keyed by token bytes */
static uintptr_t g_gen;        /* bumped by every config change: cached signatures of an older
                                * keyring are never trusted (addresses may be reused) */

#define RUNTIME_CACHE_SLOTS 4096

int ae_tok_runtime_init(const ae_config *cfg, ae_err *err) {
  char dir[4096], path[4200];
  snprintf(dir, sizeof(dir), "%s/tokens", cfg->storage_path ? cfg->storage_path : ".");
  snprintf(path, sizeof(path), "%s/revoked.json", dir);
  int rc = ae_mkdirs(dir, err);
  ae_tok_revset *rs = NULL;
  if (rc == 0)
    rc = ae_tok_revset_open(path, &rs, err);
  if (rc)
    return rc;
  pthread_mutex_lock(&g_mu);
  ae_tok_revset_free(g_rs);
  g_rs = rs;
  if (!g_cache)
    g_cache = ae_tok_cache_new(RUNTIME_CACHE_SLOTS);
  pthread_mutex_unlock(&g_mu);
  ae_tok_runtime_set_config(cfg);
  return 0;
}

void ae_tok_runtime_set_config(const ae_config *cfg) {
  ae_config *n = cfg ? ae_config_ref((ae_config *)cfg) : NULL;
  pthread_mutex_lock(&g_mu);
  ae_config *old = g_cfg;
  g_cfg = n;
  g_gen++;
  pthread_mutex_unlock(&g_mu);
  ae_config_free(old);
}

void ae_tok_runtime_shutdown(void) {
  pthread_mutex_lock(&g_mu);
  ae_config *old = g_cfg;
  ae_tok_revset *rs = g_rs;
  ae_tok_cache *cache = g_cache;
  g_cfg = NULL;
  g_rs = NULL;
  g_cache = NULL;
  pthread_mutex_unlock(&g_mu);
  ae_config_free(old);
  ae_tok_revset_free(rs);
  ae_tok_cache_free(cache);
}

int ae_tok_runtime_enabled(void) {
  pthread_mutex_lock(&g_mu);
  int on = g_cfg && g_cfg->tokens && g_cfg->tokens->keys;
  pthread_mutex_unlock(&g_mu);
  return on;
}

ae_tok_revset *ae_tok_runtime_revset(void) {
  pthread_mutex_lock(&g_mu);
  ae_tok_revset *rs = g_rs;
  pthread_mutex_unlock(&g_mu);
  return rs;
}

ae_tok_reason ae_tok_runtime_verify(const char *text, size_t len, const char *audience, int require_bind,
                                    char *const *groups, size_t ngroups, const uint8_t *binding,
                                    ae_tok_claims *claims) {
  memset(claims, 0, sizeof(*claims));
  pthread_mutex_lock(&g_mu);
  ae_config *cfg = g_cfg ? ae_config_ref(g_cfg) : NULL;
  ae_tok_revset *rs = g_rs;
  ae_tok_cache *cache = g_cache;
  uintptr_t gen = g_gen;
  pthread_mutex_unlock(&g_mu);
  ae_tok_reason r;
  if (!cfg || !cfg->tokens || !cfg->tokens->keys) {
    /* No keyring: every issuer is unknown, but the earlier steps still name the failure. */
    ae_tok_parsed t;
    r = ae_tok_parse(text, len, &t);
    ae_tok_claims_clear(&t.claims);
    if (r == AE_TOK_OK)
      r = AE_TOK_UNKNOWN_ISSUER;
  } else {
    const ae_tok_config *tc = cfg->tokens;
    ae_tok_policy p = {.keys = tc->keys, .revoked = rs, .audience = audience ? audience : tc->audience,
                       .leeway_s = tc->leeway_s, .max_ttl_s = tc->max_ttl_s, .require_bind = require_bind};
    r = ae_tok_cache_verify(cache, gen, &p, text, len, binding, (int64_t)time(NULL), claims);
    if (r == AE_TOK_OK) {
      r = ae_tok_check_groups(claims, groups, ngroups);
      if (r != AE_TOK_OK)
        ae_tok_claims_clear(claims);
    }
  }
  ae_config_free(cfg);
  if (r != AE_TOK_OK)
    ae_metrics_count_label("token_rejected", ae_tok_reason_name(r));
  return r;
}

json_t *ae_tok_runtime_keys(void) {
  json_t *arr = json_array();
  pthread_mutex_lock(&g_mu);
  const ae_tok_keyring *kr = g_cfg && g_cfg->tokens ? g_cfg->tokens->keys : NULL;
  const char *iss;
  const uint8_t *key;
  for (size_t i = 0; ae_tok_keyring_at(kr, i, &iss, &key) == 0; i++) {
    char *k = ae_tok_b64_encode(key, 32);
    json_array_append_new(arr, json_pack("{s:s,s:s}", "iss", iss, "key", k));
    free(k);
  }
  pthread_mutex_unlock(&g_mu);
  return arr;
}

int ae_tok_runtime_wants_client_cert(const char *sni) {
  if (!sni || !*sni)
    return 0;
  pthread_mutex_lock(&g_mu);
  const ae_route *rt = g_cfg ? ae_config_route(g_cfg, sni) : NULL;
  int want = rt && rt->auth && rt->auth->bind;
  pthread_mutex_unlock(&g_mu);
  return want;
}
