/* Lazy loading: a name storage has is read on its first handshake (or port-80 request, or admin
 * request) instead of at start-up, once per name however many connections wait for it
 * (singleflight), in the thread pool because storage reads may block. A name storage lacks is
 * remembered in the cert store's negative cache for a short while, so a flood of unknown names
 * does not turn into a flood of reads; only then may an ACME order start. */
#include "provision_internal.h"

#include <stdlib.h>
#include <string.h>

#include "acmedge/log.h"

#define SUB "provision"

typedef struct load_req {
  uv_work_t req;
  ae_provision *p;
  char name[256];      /* the name asked for */
  char source[16];     /* sni | http | api | renewal */
  int cancelled;       /* forgotten while reading */
  char installed[260]; /* the stored name found: name itself or its "*.parent" */
  ae_cert *cert;
  char cert_id[sizeof(((ae_cert_ids *)0)->cert_id)];
  int notfound;
  int unreachable;     /* storage did not answer: neither absent nor to be ordered */
  ae_err err;
} load_req;

/* Reads (from storage, or with nowait from the kernel's caches only) and parses name's pair.
 * Touches only what never changes after ae_provision_new, so any thread may call it. */
static int read_pair(ae_provision *p, const char *name, int nowait, ae_cert **cert, ae_cert_ids *ids, ae_err *err) {
  char *cert_pem = NULL, *key_pem = NULL;
  size_t clen = 0, klen = 0;
  int r = nowait ? ae_storage_get_cert_nowait(p->deps.storage, p->ca_host, name, &cert_pem, &clen, &key_pem, &klen, err)
                 : ae_storage_get_cert(p->deps.storage, p->ca_host, name, &cert_pem, &clen, &key_pem, &klen, err);
  if (r != 0)
    return r;
  /* One parse of the leaf gives the served form and the ARI identifier. */
  r = ae_cert_from_pem_ids(name, cert_pem, clen, key_pem, klen, cert, ids, err);
  if (r != 0)
    *cert = NULL;
  free(cert_pem);
  memset(key_pem, 0, klen);
  free(key_pem);
  return r;
}

/* Reads and parses name's pair by direct path (no directory listing). AE_ENOTFOUND when absent. */
static int read_one(load_req *l, const char *name) {
  ae_cert_ids ids;
  int r = read_pair(l->p, name, 0, &l->cert, &ids, &l->err);
  if (r == 0) {
    snprintf(l->cert_id, sizeof(l->cert_id), "%s", ids.cert_id);
    snprintf(l->installed, sizeof(l->installed), "%s", name);
  }
  return r;
}

int ae_provision_read_cached(ae_provision *p, const char *name, ae_cert **cert, ae_cert_ids *ids) {
  ae_err err = {0};
  *cert = NULL;
  return read_pair(p, name, 1, cert, ids, &err);
}

void ae_provision_loaded(ae_provision *p, const char *name, ae_cert *cert, const char *cert_id) {
  /* Already in memory, or a read in flight installs it (one cert_loaded per load). */
  if (p->closing || ae_strmap_get(&p->loads, name) || !ae_provision_need_load(p, name))
    return;
  p->lazy_loads++;
  AE_DEBUG(SUB, "%s: loaded from storage (sni, cached)", name);
  ae_provision_installed(p, name, cert, cert_id && cert_id[0] ? cert_id : NULL, 1, NULL);
}

/* The pair from the kernel's caches, installed at once: no thread-pool round trip and nothing
 * held for long. -1 when it is not at hand (absent, not cached, unreadable): the caller reads in
 * the thread pool, which also tells absent from unusable. */
static int load_cached(ae_provision *p, const char *name, const char *source) {
  ae_cert *cert = NULL;
  ae_cert_ids ids;
  if (ae_provision_read_cached(p, name, &cert, &ids) != 0)
    return -1;
  p->lazy_loads++;
  AE_DEBUG(SUB, "%s: loaded from storage (%s, cached)", name, source);
  ae_provision_installed(p, name, cert, ids.cert_id[0] ? ids.cert_id : NULL, 1, NULL);
  ae_provision_wake_name(p, name);
  ae_cert_unref(cert);
  return 0;
}

static void load_work_cb(uv_work_t *req) {
  load_req *l = req->data;
  int r = read_one(l, l->name);
  /* A stored wildcard serves one label below its parent (not for a change another instance
   * made: that is about the name itself, a delete included). */
  const char *dot = strchr(l->name, '.');
  if (r == AE_ENOTFOUND && l->name[0] != '*' && strcmp(l->source, "cluster") != 0 && dot && dot != l->name &&
      strchr(dot + 1, '.')) {
    char wild[260];
    snprintf(wild, sizeof(wild), "*.%s", dot + 1);
    ae_err keep = l->err;
    r = read_one(l, wild);
    if (r == AE_ENOTFOUND)
      l->err = keep;
  }
  l->notfound = r == AE_ENOTFOUND;
  l->unreachable = r == AE_EIO;
}

static void load_after_cb(uv_work_t *req, int status) {
  load_req *l = req->data;
  ae_provision *p = l->p;
  p->bg--;
  if (ae_strmap_get(&p->loads, l->name) == l)
    ae_strmap_del(&p->loads, l->name);
  if (status == 0 && !p->closing && !l->cancelled) {
    if (l->cert) {
      AE_DEBUG(SUB, "%s: loaded from storage (%s)", l->name, l->source);
      ae_provision_installed(p, l->installed, l->cert, l->cert_id[0] ? l->cert_id : NULL, 1, NULL);
      ae_provision_wake_name(p, l->name);
    } else if (l->unreachable) {
      /* Ordering now could duplicate a certificate another instance holds: serve the default
       * certificate and ask storage again on the next handshake. */
      AE_WARN(SUB, "%s: storage unreachable, not ordering: %s", l->name, l->err.msg);
      ae_provision_wake_name(p, l->name);
    } else if (!l->notfound && strcmp(l->source, "cluster") == 0) {
      /* Another instance stored something unusable: keep serving what we have. */
      AE_WARN(SUB, "%s: changed in storage but not usable, keeping the certificate in memory: %s", l->name,
              l->err.msg);
      ae_provision_wake_name(p, l->name);
    } else {
      if (!l->notfound)
        AE_WARN(SUB, "%s: stored certificate not usable: %s", l->name, l->err.msg);
      ae_certstore_mark_absent(p->deps.certs, l->name, p->cfg->cert_cache.negative_ttl_ms);
      ae_provision_not_stored(p, l->name, l->source);
    }
  }
  ae_cert_unref(l->cert);
  free(l);
  ae_provision_maybe_closed(p);
}

int ae_provision_need_load(ae_provision *p, const char *name) {
  if (p->closing)
    return 0;
  if (ae_strmap_get(&p->loads, name))
    return 1;
  ae_dom *d = ae_strmap_get(&p->doms, name);
  /* A pending or failed name has nothing in storage worth serving. */
  if (d && !d->has_cert)
    return 0;
  if (ae_certstore_known_absent(p->deps.certs, name))
    return 0;
  ae_cert *c = ae_certstore_lookup(p->deps.certs, name);
  if (c) {
    ae_cert_unref(c);
    return 0;
  }
  return 1;
}

void ae_provision_load_name(ae_provision *p, const char *name, const char *source) {
  if (p->closing || ae_strmap_get(&p->loads, name))
    return; /* joined: the load in flight wakes every waiter of this name */
  /* Renewal and cluster reads run from timers and subscriptions that do not expect an install
   * under their feet; they keep the thread pool. */
  if ((strcmp(source, "sni") == 0 || strcmp(source, "http") == 0 || strcmp(source, "api") == 0) &&
      load_cached(p, name, source) == 0)
    return;
  load_req *l = ae_calloc(1, sizeof(*l));
  l->req.data = l;
  l->p = p;
  snprintf(l->name, sizeof(l->name), "%s", name);
  snprintf(l->source, sizeof(l->source), "%s", source);
  ae_strmap_put(&p->loads, l->name, l);
  p->bg++;
  p->lazy_loads++;
  if (uv_queue_work(p->deps.loop, &l->req, load_work_cb, load_after_cb) != 0) {
    p->bg--;
    ae_strmap_del(&p->loads, l->name);
    free(l);
    AE_WARN(SUB, "%s: cannot queue storage read", name);
    ae_provision_not_stored(p, name, source);
  }
}

void ae_provision_cancel_load(ae_provision *p, const char *name) {
  load_req *l = ae_strmap_get(&p->loads, name);
  if (l) {
    l->cancelled = 1;
    ae_strmap_del(&p->loads, name);
  }
}

void ae_provision_evicted(void *ud, const char *name, ae_cert *cert) {
  ae_provision *p = ud;
  if (p->closing)
    return;
  ae_dom *d = ae_strmap_get(&p->doms, name);
  int64_t at = ae_renew_at(ae_cert_not_before(cert), ae_cert_not_after(cert));
  if (d) {
    /* A record with work in flight keeps its memory; its next handshake reloads the cert. */
    if (d->state != DS_VALID || d->job || d->ari || d->preq || d->queued || d->failures)
      return;
    if (d->renew_at)
      at = d->renew_at;
    ae_dom_remove(p, d);
  }
  ae_renew_index_push(p, name, at);
}

void ae_provision_storage_changed(ae_provision *p, const char *name) {
  if (p->closing)
    return;
  ae_cert *c = ae_certstore_lookup(p->deps.certs, name);
  int cached = c != NULL;
  ae_cert_unref(c);
  /* Names nobody asked this instance for stay unread: lazy loading fetches them on demand. */
  if (!cached && !ae_strmap_get(&p->doms, name) && !ae_certstore_known_absent(p->deps.certs, name))
    return;
  ae_provision_load_name(p, name, "cluster");
}
