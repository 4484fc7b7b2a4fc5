/* Process start-up: the hook adapters between modules (each forwards to the module that owns the
 * decision), the internal CA and default certificate, and app_start, which creates and wires every module. */
#include "app_internal.h"
#include "acmedge/cluster.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ---- hooks: each forwards to the owning module ---- */

static ae_miss_action front_on_miss(void *ud, const char *name) {
  ae_app *app = ud;
  return ae_provision_on_sni(app->provision, name);
}

/* Any thread: the stand-in leaf minted for name, if fresh. */
static ae_cert *front_fallback_cert(void *ud, const char *name) {
  ae_app *app = ud;
  /* No config read here: worker threads call this while a reload may swap app->cfg. */
  return app->leaves ? ae_leafcache_get(app->leaves, name, (int64_t)time(NULL)) : NULL;
}

static ae_miss_action front_on_invalid_name(void *ud, const char *shown) {
  ae_app *app = ud;
  return ae_provision_on_invalid_sni(app->provision, shown);
}

static void workers_on_invalid_name(void *ud, const char *shown) {
  ae_app *app = ud;
  (void)ae_provision_on_invalid_sni(app->provision, shown);
}

static ae_cert *front_alpn_cert(void *ud, const char *name) {
  ae_app *app = ud;
  return ae_challenge_alpn_get(app->challenges, name);
}

/* An acme-tls/1 handshake found no answer here: another instance may have published it while our
 * subscriber was away. */
static int front_alpn_miss(void *ud, const char *name) {
  ae_app *app = ud;
  return app->cluster && ae_cluster_fetch_alpn(app->cluster, name) == 0;
}

static void alpn_wake(ae_app *app, const char *domain) {
  if (app->front)
    ae_tls_front_wake_alpn(app->front, domain);
  ae_workers_wake_alpn(app->workers, domain);
}

static void front_on_established(void *ud, ae_transport *t) {
  ae_app *app = ud;
  ae_proxy_attach(app->proxy, t, NULL, 0);
}

static void provision_wake(void *ud, const char *name) {
  ae_app *app = ud;
  if (app->front)
    ae_tls_front_wake(app->front, name);
  ae_workers_wake(app->workers, name);
}

static void provision_decided(void *ud, const char *name) {
  ae_app *app = ud;
  if (app->http80)
    ae_http80_wake(app->http80, name);
}

/* A worker thread missed name: the same decision as the main loop's, taken here where the
 * provisioning state lives; held handshakes on workers learn the outcome through a wake. */
static void workers_on_miss(void *ud, const char *name, int allowed) {
  ae_app *app = ud;
  (void)allowed;
  ae_miss_action a = ae_provision_on_sni(app->provision, name);
  /* Held and stand-in handshakes are woken by the issuance or the mint. */
  if (a != AE_MISS_HOLD && a != AE_MISS_FALLBACK)
    ae_workers_wake(app->workers, name);
}

/* On a worker thread (ae_provision_read_cached touches nothing that changes after start). A leaf
 * with an OCSP responder is installed before it is served: its stored staple is read at the
 * install, and a handshake answered before that would go out without it (and start a needless
 * fetch). */
static ae_cert *workers_stored_cert(void *ud, const char *name, ae_cert_ids *ids, int *install_first) {
  ae_app *app = ud;
  ae_cert *cert = NULL;
  if (ae_provision_read_cached(app->provision, name, &cert, ids) != 0)
    return NULL;
  *install_first = ae_cert_has_ocsp_url(cert) && ae_ocsp_enabled(app->ocsp);
  return cert;
}

static void workers_on_loaded(void *ud, const char *name, ae_cert *cert, const char *cert_id) {
  ae_app *app = ud;
  ae_provision_loaded(app->provision, name, cert, cert_id);
}

static ae_h80_state h80_host_state(void *ud, const char *host, unsigned *retry_after_s) {
  ae_app *app = ud;
  return ae_provision_on_http(app->provision, host, retry_after_s);
}

static int h80_plain_route(void *ud, const char *host) {
  ae_app *app = ud;
  /* The first matching route decides, as for TLS. */
  const ae_route *r = ae_config_route(app->cfg, host);
  return r && r->plain_http;
}

static void h80_on_plain(void *ud, ae_transport *t, const char *initial, size_t len) {
  ae_app *app = ud;
  ae_proxy_attach(app->proxy, t, initial, len);
}

/* Adds the OCSP object of each listed name whose certificate is in memory (the provisioner does
 * not know about staples). */
void app_add_ocsp_state(ae_app *app, json_t *list) {
  size_t i;
  json_t *d;
  json_array_foreach(list, i, d) {
    ae_cert *c = ae_certstore_lookup(app->certs, json_string_value(json_object_get(d, "domain")));
    if (c)
      ae_ocsp_domain_json(app->ocsp, c, d);
    ae_cert_unref(c);
  }
}

static json_t *admin_list(void *ud) {
  ae_app *app = ud;
  json_t *list = ae_provision_domains_json(app->provision);
  app_add_ocsp_state(app, list);
  return list;
}

static json_t *admin_list_page(void *ud, size_t limit, const char *after, const char *state) {
  ae_app *app = ud;
  json_t *page = ae_provision_domains_query(app->provision, limit, after, state);
  app_add_ocsp_state(app, json_object_get(page, "domains"));
  return page;
}

static int admin_add(void *ud, const char *name, ae_err *err) {
  ae_app *app = ud;
  return ae_provision_request(app->provision, name, "api", err);
}

static int admin_delete(void *ud, const char *name, ae_err *err) {
  ae_app *app = ud;
  int r = ae_provision_forget(app->provision, name, err);
  if (r == 0 && ae_storage_is_redis(app->storage)) {
    /* A deleted name starts afresh on every instance, without another's failure backoff. */
    char lower[256];
    size_t i = 0;
    for (; name[i] && i < sizeof(lower) - 1; i++)
      lower[i] = (char)(name[i] >= 'A' && name[i] <= 'Z' ? name[i] + 32 : name[i]);
    lower[i] = '\0';
    ae_err e = {0};
    if (ae_storage_fail_del(app->storage, app->ca_host, lower, &e) != 0)
      AE_WARN(SUB, "%s: cannot clear the shared failure state: %s", lower, e.msg);
  }
  return r;
}

static char *admin_metrics(void *ud) {
  ae_app *app = ud;
  /* Sections of /metrics owned by other subsystems, each a complete text block (or NULL). */
  char *parts[4] = {ae_provision_metrics(app->provision), app->ca ? ae_ca_metrics_render(app->ca, app->leaves) : NULL,
                    ae_ocsp_metrics(app->ocsp), app->cluster ? ae_cluster_metrics(app->cluster) : NULL};
  size_t total = 1;
  for (int i = 0; i < 4; i++)
    total += parts[i] ? strlen(parts[i]) + 1 : 0;
  char *out = ae_malloc(total), *w = out;
  for (int i = 0; i < 4; i++) {
    if (!parts[i])
      continue;
    size_t n = strlen(parts[i]);
    memcpy(w, parts[i], n);
    w += n;
    if (n && parts[i][n - 1] != '\n')
      *w++ = '\n';
    free(parts[i]);
  }
  *w = '\0';
  return out;
}

static void revoke_answered(void *ud, int code, const char *problem, const char *detail, const char *serial) {
  ae_admin_reply *reply = ud;
  if (code == 0) {
    ae_admin_reply_send(reply, 200, json_pack("{s:b,s:s}", "revoked", 1, "serial", serial ? serial : ""));
    return;
  }
  /* The CA's problem goes out unchanged (alreadyRevoked, badRevocationReason, unauthorized). */
  int ca_problem = problem && strncmp(problem, "urn:ietf:params:acme:error:", 27) == 0;
  json_t *body = json_pack("{s:s,s:s,s:s}", "error", detail ? detail : ae_strerror(code), "problem",
                           problem ? problem : "acmedge:error", "detail", detail ? detail : "");
  ae_admin_reply_send(reply, ca_problem ? 400 : 502, body);
}

static int admin_renew(void *ud, const char *name, ae_err *err) {
  ae_app *app = ud;
  return ae_provision_renew_now(app->provision, name, err);
}

static int admin_revoke(void *ud, const char *name, int reason, ae_admin_reply *reply, ae_err *err) {
  ae_app *app = ud;
  return ae_provision_revoke(app->provision, name, reason, revoke_answered, reply, err);
}

static void provision_cert_changed(void *ud, const char *name, ae_cert *old_cert, ae_cert *new_cert, int loaded) {
  ae_app *app = ud;
  ae_ocsp_cert_changed(app->ocsp, name, old_cert, new_cert, loaded);
}

/* The certificate cache dropped name's certificate: the provisioner moves the name to the renewal
 * index, and the staple cache lets go of its entry (which holds a reference to the certificate and
 * would otherwise keep every evicted certificate alive). The stored staple stays on disk for the
 * next load. */
static void certs_evicted(void *ud, const char *name, ae_cert *cert) {
  ae_app *app = ud;
  ae_provision_evicted(app->provision, name, cert);
  ae_ocsp_cert_changed(app->ocsp, name, cert, NULL, 1);
}

static void ocsp_revoked(void *ud, const char *name, ae_cert *cert, int reason) {
  ae_app *app = ud;
  ae_err err = {0};
  (void)reason;
  if (ae_provision_revoked(app->provision, name, ae_cert_serial(cert), &err) != 0)
    AE_WARN(SUB, "%s", err.msg);
}

static char *admin_pki_root(void *ud) {
  ae_app *app = ud;
  return app->ca ? ae_ca_root_pem(app->ca) : NULL;
}

/* Opens (or creates on first start) the internal CA and the fallback leaf cache. */
static int start_internal_ca(ae_app *app, ae_err *err) {
  const ae_config *cfg = app->cfg;
  ae_ca_opts o = {.intermediate_lifetime_s = cfg->internal_ca.intermediate_lifetime_s,
                  .leaf_lifetime_s = cfg->internal_ca.leaf_lifetime_s,
                  .create = 1};
  ae_err e = {0};
  if (ae_ca_open(app->storage, &o, &app->ca, &e) != 0)
    return ae_err_set(err, e.code ? e.code : AE_ERR, "internal_ca: %s", e.msg);
  return ae_leafcache_new(cfg->internal_ca.cache_max, &app->leaves);
}

/* ---- start-up ---- */

static int file_exists(const char *path) {
  struct stat st;
  return path && stat(path, &st) == 0;
}

/* Waits (bounded) until path exists: another instance sharing the paths created the key and is
 * about to write the certificate. */
static int wait_for_file(const char *path, const char *other, ae_err *err) {
  for (int i = 0; i < 500 && !file_exists(path); i++) {
    struct timespec ts = {0, 10 * 1000 * 1000};
    nanosleep(&ts, NULL);
  }
  if (!file_exists(path))
    return ae_err_set(err, AE_EIO, "default_cert: %s exists but %s is missing (another instance died writing them?)",
                      other, path);
  return 0;
}

/* Generates the default certificate and key on first start. Instances sharing one config
 * directory may start at once: the key is created with ae_write_file_new, so exactly one of them
 * writes the pair and the others use it; a certificate never meets another instance's key. */
static int create_default_cert(const char *cp, const char *kp, ae_err *err) {
  char *cert_pem = NULL, *key_pem = NULL;
  int r = ae_cert_generate_selfsigned("acmedge default", NULL, 0, 3650, &cert_pem, &key_pem, err);
  if (r != 0)
    return r;
  const char *paths[] = {kp, cp};
  for (int i = 0; i < 2 && r == 0; i++) {
    char dir[4096];
    snprintf(dir, sizeof(dir), "%s", paths[i]);
    char *slash = strrchr(dir, '/');
    if (slash) {
      *slash = '\0';
      if (dir[0])
        r = ae_mkdirs(dir, err);
    }
  }
  if (r == 0) {
    r = ae_write_file_new(kp, key_pem, strlen(key_pem), 0600, err);
    if (r == AE_EEXIST)
      r = wait_for_file(cp, kp, err);
    else if (r == 0 && (r = ae_write_file_atomic(cp, cert_pem, strlen(cert_pem), 0644, err)) == 0)
      AE_INFO(SUB, "generated default certificate %s (key %s)", cp, kp);
  }
  free(cert_pem);
  free(key_pem);
  return r;
}

/* Uses the configured default certificate, or creates one on first start (design §4). */
static int load_default_cert(ae_app *app, ae_err *err) {
  const char *cp = app->cfg->default_cert, *kp = app->cfg->default_key;
  int have_cert = file_exists(cp), have_key = file_exists(kp);
  if (!have_cert && !have_key) {
    int r = create_default_cert(cp, kp, err);
    if (r != 0)
      return r;
  } else if (!have_cert) {
    int r = wait_for_file(cp, kp, err);
    if (r != 0)
      return r;
  }
  ae_cert *c = NULL;
  int r = ae_cert_load_files(cp, kp, &c, err);
  if (r != 0)
    return r;
  ae_certstore_set_default(app->certs, c);
  ae_cert_unref(c);
  return 0;
}

static const char *admin_degraded(void *ud) {
  ae_app *app = ud;
  return app->cluster && !ae_cluster_up(app->cluster) ? "storage unreachable" : NULL;
}

static void cluster_changed(void *ud, const char *domain) {
  ae_app *app = ud;
  if (app->provision)
    ae_provision_storage_changed(app->provision, domain);
}

static void cluster_deleted(void *ud, const char *domain) {
  ae_app *app = ud;
  if (app->provision)
    ae_provision_storage_removed(app->provision, domain);
}

static void cluster_state(void *ud, int up, const char *why) {
  ae_app *app = ud;
  json_t *det = json_object();
  json_object_set_new(det, "reason", json_string(why));
  ae_events_emit(app->events, up ? "storage_up" : "storage_down", NULL, det);
}

static void cluster_challenge(void *ud, int alpn, const char *domain, const char *token, const char *keyauth) {
  ae_app *app = ud;
  ae_err e = {0};
  if (ae_challenge_mirror(app->challenges, alpn, domain, token, keyauth, &e) != 0)
    AE_WARN(SUB, "%s: cannot mirror a shared challenge answer: %s", domain, e.msg);
  if (alpn)
    alpn_wake(app, domain); /* held acme-tls/1 handshakes: answered, or refused if the mint failed */
  else if (app->http80)
    ae_http80_wake_challenge(app->http80, token);
}

/* Answered now (404, or the acme-tls/1 handshake refused), not at the hold's end. */
static void cluster_challenge_absent(void *ud, int alpn, const char *name) {
  ae_app *app = ud;
  if (alpn)
    alpn_wake(app, name);
  else if (app->http80)
    ae_http80_wake_challenge(app->http80, name);
}

/* Port 80 has no answer for token: it may have been announced while our subscriber was away. */
static int h80_challenge_miss(void *ud, const char *token) {
  ae_app *app = ud;
  return app->cluster && ae_cluster_fetch_challenge(app->cluster, token) == 0;
}

/* Shared storage: events name this instance, other instances' commits are hot-swapped and their
 * challenge answers mirrored (the CA may validate against any instance). */
static int start_cluster(ae_app *app, ae_err *err) {
  ae_cluster_hooks h = {.ud = app,
                        .changed = cluster_changed,
                        .deleted = cluster_deleted,
                        .state = cluster_state,
                        .challenge = cluster_challenge,
                        .challenge_absent = cluster_challenge_absent};
  unsigned rec = 0;
  const char *env = getenv("ACMEDGE_RECONCILE_MS"); /* tests shorten the generation check */
  if (env && atoi(env) >= 100)
    rec = (unsigned)atoi(env);
  int r = ae_cluster_new(&app->loop, app->storage, app->ca_host, rec, &h, &app->cluster, err);
  if (r == 0)
    ae_events_set_instance(app->events, ae_cluster_instance(app->cluster));
  return r;
}

/* A Redis backend that refuses us (password, db, protocol) is a configuration error; one that does
 * not answer yet is an outage: start, serve what can be served, and reconnect. */
static int app_storage_check(ae_app *app, ae_err *err) {
  ae_err e = {0};
  int r = ae_storage_ping(app->storage, &e);
  if (r == 0 || r == AE_EIO) {
    if (r == AE_EIO)
      AE_ERROR(SUB, "storage unreachable at start-up (%s); serving what is cached and retrying", e.msg);
    return 0;
  }
  return ae_err_set(err, r, "%s: storage.redis: %s", app->cfg->path, e.msg);
}

int app_start(ae_app *app, ae_err *err) {
  const ae_config *cfg = app->cfg;
  int r;
  if ((r = ae_storage_open(cfg, &app->storage, err)) != 0)
    return r;
  if ((r = app_storage_check(app, err)) != 0) /* cluster.c: a Redis backend that refuses us stops here */
    return r;
  if ((r = ae_tok_runtime_init(cfg, err)) != 0) /* capability tokens: policy + revocation list */
    return r;
  if (ae_storage_ca_host(cfg->acme.directory, app->ca_host, sizeof(app->ca_host)) != 0)
    return ae_err_set(err, AE_EINVAL, "%s: acme.directory: cannot derive a host from '%s'", cfg->path, cfg->acme.directory);
  ae_certstore_opts co = {.max_entries = cfg->cert_cache.max_entries,
                          .max_bytes = (size_t)cfg->cert_cache.max_bytes,
                          .negative_slots = cfg->cert_cache.negative_max};
  if ((r = ae_certstore_new_opts(&co, &app->certs)) != 0)
    return ae_err_set(err, r, "cannot create certificate store");
  if (cfg->internal_ca.enabled && (r = start_internal_ca(app, err)) != 0)
    return r;
  if ((r = ae_limits_global_configure(cfg, err)) != 0)
    return r;
  if ((r = load_default_cert(app, err)) != 0)
    return r;
  if ((r = ae_events_new(cfg->events.buffer, &app->events)) != 0)
    return ae_err_set(err, r, "cannot create event bus");
  if ((r = ae_tok_relay_attach(&app->loop, app->events)) != 0) /* token_rejected from workers */
    return ae_err_set(err, r, "cannot start the token event relay");
  if (app->ca && (r = ae_ca_rotor_start(&app->loop, app->ca, app->events, &app->ca_rotor, err)) != 0)
    return r;
  if ((r = ae_hook_new(&app->loop, cfg, app->events, &app->hook, err)) != 0)
    return r;
  if ((r = ae_challenge_new(&app->challenges)) != 0)
    return ae_err_set(err, r, "cannot create challenge map");
  if ((r = ae_policy_new(&app->loop, cfg, &app->policy, err)) != 0)
    return r;
  if ((r = ae_acme_new(&app->loop, cfg, app->storage, app->challenges, &app->acme, err)) != 0)
    return r;
  ae_acme_set_challenge_types(app->acme, cfg->listen_http != NULL && cfg->acme.http01,
                              cfg->listen_https != NULL && cfg->acme.tlsalpn01);

  ae_ocsp_deps od = {.loop = &app->loop,
                     .storage = app->storage,
                     .ca_host = app->ca_host,
                     .events = app->events,
                     .on_revoked = ocsp_revoked,
                     .ud = app};
  if ((r = ae_ocsp_new(&od, cfg, &app->ocsp, err)) != 0)
    return r;
  ae_tls_set_staples(ae_ocsp_staples(app->ocsp));

  ae_provision_deps deps = {.loop = &app->loop,
                            .certs = app->certs,
                            .storage = app->storage,
                            .acme = app->acme,
                            .policy = app->policy,
                            .events = app->events,
                            .ca_host = app->ca_host,
                            .wake = provision_wake,
                            .decided = provision_decided,
                            .cert_changed = provision_cert_changed,
                            .wake_ud = app,
                            .ca = app->ca,
                            .leaves = app->leaves};
  if ((r = ae_provision_new(&deps, cfg, &app->provision, err)) != 0)
    return r;
  if (ae_storage_is_redis(app->storage) && (r = start_cluster(app, err)) != 0)
    return r;
  ae_certstore_set_evict_cb(app->certs, certs_evicted, app);
  if (cfg->cert_cache.preload) {
    size_t loaded = 0;
    if ((r = ae_provision_load(app->provision, &loaded, err)) != 0)
      return r;
    AE_INFO(SUB, "loaded %zu certificate(s) from %s/certs/%s", loaded, cfg->storage_path, app->ca_host);
  } else if ((r = ae_provision_start_index(app->provision, err)) != 0) {
    return r;
  }

  if ((r = ae_proxy_new(&app->loop, cfg, &app->proxy, err)) != 0)
    return r;
  if (cfg->listen_https) {
    ae_tls_front_hooks fh = {.ud = app,
                             .on_miss = front_on_miss,
                             .alpn_challenge_cert = front_alpn_cert,
                             .alpn_miss = front_alpn_miss,
                             .on_established = front_on_established,
                             .fallback_cert = front_fallback_cert,
                             .on_invalid_name = front_on_invalid_name};
    if ((r = ae_tls_front_new(&app->loop, cfg, app->certs, &fh, &app->front, err)) != 0)
      return r;
    AE_INFO(SUB, "https listening on %s", cfg->listen_https);
    unsigned n = cfg->workers > 0 ? (unsigned)cfg->workers : uv_available_parallelism();
    if (n > 1) {
      ae_workers_hooks wh = {.ud = app, .on_miss = workers_on_miss, .fallback_cert = front_fallback_cert,
                             .on_invalid_name = workers_on_invalid_name,
                             .alpn_miss = app->cluster ? front_alpn_miss : NULL, .stored_cert = workers_stored_cert,
                             .on_loaded = workers_on_loaded};
      if ((r = ae_workers_start(&app->loop, n - 1, cfg, app->certs, app->challenges, &wh, &app->workers, err)) != 0)
        return r;
    }
  }
  if (cfg->listen_http) {
    ae_http80_hooks hh = {.ud = app, .host_state = h80_host_state, .plain_route = h80_plain_route, .on_plain = h80_on_plain,
                          .challenge_miss = h80_challenge_miss};
    if ((r = ae_http80_new(&app->loop, cfg, app->challenges, &hh, &app->http80, err)) != 0)
      return r;
    AE_INFO(SUB, "http listening on %s", cfg->listen_http);
  }
  if (cfg->listen_admin) {
    ae_admin_hooks ah = {.ud = app,
                         .list_domains = admin_list,
                         .list_domains_page = admin_list_page,
                         .list_domains_async = app_domains_view,
                         .add_domain = admin_add,
                         .delete_domain = admin_delete,
                         .revoke_domain = admin_revoke,
                         .renew_domain = admin_renew,
                         .extra_metrics = admin_metrics,
                         .degraded = admin_degraded,
                         .pki_root = admin_pki_root};
    if ((r = ae_admin_new(&app->loop, cfg, app->events, &ah, &app->admin, err)) != 0)
      return r;
    AE_INFO(SUB, "admin API listening on %s", cfg->listen_admin);
  }
  return 0;
}
