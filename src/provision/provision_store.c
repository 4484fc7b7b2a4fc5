/* Provisioning <-> storage: persisting a new certificate off the loop, loading stored ones. */
#include "provision_internal.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "acmedge/log.h"

#define SUB "provision"

typedef struct install_work {
  uv_work_t req;
  ae_provision *p;
  char name[256];
  char *cert_pem, *key_pem, *meta;
  ae_cert *cert;   /* parsed in the worker thread */
  char cert_id[320];
  uint64_t fence;  /* issuance lock token (0 without a lock) */
  ae_err err;
} install_work;

/* Thread pool: parse first so nothing unusable is ever written, then commit chain, key and meta
 * together (see ae_storage_commit for the fs backend's order). */
static void install_work_cb(uv_work_t *req) {
  install_work *w = req->data;
  ae_provision *p = w->p;
  if (ae_cert_from_pem(w->cert_pem, strlen(w->cert_pem), w->key_pem, strlen(w->key_pem), &w->cert, &w->err) != 0) {
    w->cert = NULL;
    return;
  }
  /* Never install what clients would reject: a broken chain fails the issuance instead. */
  if (ae_chain_check(w->cert_pem, strlen(w->cert_pem), w->key_pem, strlen(w->key_pem), w->name, (int64_t)time(NULL),
                     &w->err) != 0)
    goto fail;
  ae_err idle = {0};
  if (ae_acme_cert_id(w->cert_pem, w->cert_id, sizeof(w->cert_id), &idle) != 0)
    w->cert_id[0] = '\0'; /* no AKI: renewal simply runs on our own schedule */
  ae_storage_bundle b = {.ca_host = p->ca_host,
                         .domain = w->name,
                         .chain = w->cert_pem,
                         .key = w->key_pem,
                         .meta = w->meta,
                         .not_before = ae_cert_not_before(w->cert),
                         .not_after = ae_cert_not_after(w->cert),
                         .fence = w->fence};
  if (ae_storage_commit(p->deps.storage, &b, &w->err) != 0)
    goto fail;
  return;
fail:
  ae_cert_unref(w->cert);
  w->cert = NULL;
}

static void install_after_cb(uv_work_t *req, int status) {
  install_work *w = req->data;
  ae_provision *p = w->p;
  p->installs--;
  ae_dom *d = ae_strmap_get(&p->doms, w->name);
  if (d && !p->closing)
    ae_provision_lock_end(p, d); /* committed (or refused): the lock has done its job */
  if (status == 0 && !p->closing) {
    if (!w->cert)
      AE_ERROR(SUB, "%s: cannot install certificate: %s", w->name, w->err.msg);
    ae_provision_installed(p, w->name, w->cert, w->cert_id[0] ? w->cert_id : NULL, 0, w->cert ? NULL : w->err.msg);
  }
  ae_cert_unref(w->cert);
  free(w->cert_pem);
  free(w->key_pem);
  free(w->meta);
  free(w);
  ae_provision_maybe_closed(p);
}

void ae_provision_install(ae_provision *p, const char *name, const char *cert_pem, const char *key_pem,
                          const char *challenge_type) {
  install_work *w = ae_calloc(1, sizeof(*w));
  w->req.data = w;
  w->p = p;
  snprintf(w->name, sizeof(w->name), "%s", name);
  w->cert_pem = ae_strdup(cert_pem);
  w->key_pem = ae_strdup(key_pem);
  json_t *m = json_object();
  char now[40];
  ae_time_rfc3339((int64_t)time(NULL), now, sizeof(now));
  json_object_set_new(m, "domain", json_string(name));
  json_object_set_new(m, "issued_at", json_string(now));
  json_object_set_new(m, "directory", json_string(p->cfg->acme.directory ? p->cfg->acme.directory : ""));
  if (challenge_type)
    json_object_set_new(m, "challenge", json_string(challenge_type));
  w->meta = json_dumps(m, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
  json_decref(m);
  ae_dom *d = ae_strmap_get(&p->doms, name);
  if (ae_provision_lock_fence(d, &w->fence) != 0) {
    /* Self-fencing: the lease may be someone else's by now, so this certificate is not written;
     * the lock's current holder commits its own and every instance loads that one. */
    ae_provision_lock_end(p, d);
    ae_provision_installed(p, name, NULL, NULL, 0, "issuance lock lost before the commit; not written");
    free(w->cert_pem);
    free(w->key_pem);
    free(w->meta);
    free(w);
    return;
  }
  p->installs++;
  if (uv_queue_work(p->deps.loop, &w->req, install_work_cb, install_after_cb) != 0) {
    p->installs--;
    ae_provision_lock_end(p, d);
    ae_provision_installed(p, name, NULL, NULL, 0, "cannot queue storage work");
    free(w->cert_pem);
    free(w->key_pem);
    free(w->meta);
    free(w);
  }
}

int ae_provision_load(ae_provision *p, size_t *count, ae_err *err) {
  char prefix[400];
  snprintf(prefix, sizeof(prefix), "certs/%s", p->ca_host);
  char **names = NULL;
  size_t n = 0;
  *count = 0;
  ae_err e = {0};
  int r = ae_storage_list(p->deps.storage, prefix, &names, &n, &e);
  if (r == AE_ENOTFOUND)
    return 0;
  if (r != 0)
    return ae_err_set(err, r, "listing %s: %s", prefix, e.msg);
  for (size_t i = 0; i < n; i++) {
    char domain[256], key[700];
    ae_storage_dirname_domain(names[i], domain, sizeof(domain));
    char *cert_pem = NULL, *key_pem = NULL;
    size_t clen = 0, klen = 0;
    snprintf(key, sizeof(key), "%s/%s/cert.pem", prefix, names[i]);
    if (ae_storage_get(p->deps.storage, key, &cert_pem, &clen, &e) != 0) {
      AE_WARN(SUB, "%s: skipped stored certificate: %s", domain, e.msg);
      continue;
    }
    snprintf(key, sizeof(key), "%s/%s/key.pem", prefix, names[i]);
    if (ae_storage_get(p->deps.storage, key, &key_pem, &klen, &e) != 0) {
      AE_WARN(SUB, "%s: skipped stored certificate: %s", domain, e.msg);
      free(cert_pem);
      continue;
    }
    ae_cert *c = NULL;
    if (ae_cert_from_pem(cert_pem, clen, key_pem, klen, &c, &e) != 0) {
      AE_WARN(SUB, "%s: skipped stored certificate (%s/%s): %s", domain, prefix, names[i], e.msg);
    } else {
      char id[320];
      ae_err idle = {0};
      int has_id = ae_acme_cert_id(cert_pem, id, sizeof(id), &idle) == 0;
      ae_provision_installed(p, domain, c, has_id ? id : NULL, 1, NULL);
      ae_cert_unref(c);
      (*count)++;
    }
    free(cert_pem);
    free(key_pem);
  }
  ae_storage_list_free(names, n);
  /* Loading thousands of certificates takes seconds; timers armed above used the loop's clock
   * from before the load. */
  uv_update_time(p->deps.loop);
  return 0;
}
