/* Stand-in leaves (on_demand.fallback_cert "internal"): while ACME is pending or failing for an
 * allowed name, handshakes get a leaf for that exact name minted by the internal CA. Mints run in
 * the thread pool, one per name at a time (singleflight) and a bounded number overall, so a burst
 * of new names can neither block the loop nor queue unbounded work. */
#include "provision_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "acmedge/log.h"

#define SUB "provision"
#define FB_MAX_ACTIVE 16u  /* mints in the thread pool at once; more names get the default cert */

typedef struct fb_work {
  uv_work_t req;
  ae_provision *p;
  char name[256];
  ae_cert *cert;
  uint64_t start_ms;
  ae_err err;
} fb_work;

static void fb_wake(ae_provision *p, const char *name) {
  if (p->deps.wake)
    p->deps.wake(p->deps.wake_ud, name);
}

static void fb_cb(uv_work_t *req) {
  fb_work *w = req->data;
  if (ae_ca_mint(w->p->deps.ca, w->name, (int64_t)time(NULL), &w->cert, &w->err) != 0)
    w->cert = NULL;
}

static void fb_after_cb(uv_work_t *req, int status) {
  fb_work *w = req->data;
  ae_provision *p = w->p;
  p->installs--;
  p->fb_active--;
  ae_strmap_del(&p->fb_inflight, w->name);
  if (status == 0 && w->cert && !p->closing) {
    /* The real certificate may have arrived while minting: the stand-in is then useless. */
    ae_cert *real = ae_certstore_lookup(p->deps.certs, w->name);
    if (!real)
      ae_leafcache_put(p->deps.leaves, w->name, w->cert);
    ae_cert_unref(real);
    AE_DEBUG(SUB, "%s: stand-in certificate ready after %llu ms", w->name,
             (unsigned long long)(ae_now_ms() - w->start_ms));
  } else if (status == 0 && !w->cert) {
    AE_WARN(SUB, "%s: stand-in certificate not minted: %s", w->name, w->err.msg);
  }
  if (!p->closing)
    fb_wake(p, w->name);
  ae_cert_unref(w->cert);
  free(w);
  ae_provision_maybe_closed(p);
}

ae_miss_action ae_provision_fallback(ae_provision *p, const char *name) {
  ae_cert *c = ae_leafcache_get(p->deps.leaves, name, (int64_t)time(NULL));
  if (c) {
    ae_cert_unref(c);
    fb_wake(p, name); /* handshakes held on other loops can take it now */
    return AE_MISS_FALLBACK;
  }
  if (ae_strmap_get(&p->fb_inflight, name))
    return AE_MISS_FALLBACK;
  if (p->fb_active >= FB_MAX_ACTIVE || !p->deps.ca) {
    fb_wake(p, name);
    return AE_MISS_DEFAULT;
  }
  fb_work *w = ae_calloc(1, sizeof(*w));
  w->req.data = w;
  w->p = p;
  snprintf(w->name, sizeof(w->name), "%s", name);
  w->start_ms = ae_now_ms();
  if (uv_queue_work(p->deps.loop, &w->req, fb_cb, fb_after_cb) != 0) {
    free(w);
    fb_wake(p, name);
    return AE_MISS_DEFAULT;
  }
  p->installs++;
  p->fb_active++;
  ae_strmap_put(&p->fb_inflight, name, p);
  return AE_MISS_FALLBACK;
}
