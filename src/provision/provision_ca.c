/* Issuance by the internal CA for names in internal_ca.names: the mint runs in the thread pool
 * and completes like an ACME job (same install, chain check, events and renewal timer). */
#include "provision_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct mint_work {
  uv_work_t req;
  ae_provision *p;
  char name[256];
  uint64_t seq;
  char *cert_pem, *key_pem;
  int rc;
  ae_err err;
} mint_work;

static uint64_t g_seq;

static void mint_cb(uv_work_t *req) {
  mint_work *w = req->data;
  w->rc = ae_ca_mint_pem(w->p->deps.ca, w->name, (int64_t)time(NULL), &w->cert_pem, &w->key_pem, &w->err);
}

static void mint_after_cb(uv_work_t *req, int status) {
  mint_work *w = req->data;
  ae_provision *p = w->p;
  p->installs--;
  ae_dom *d = ae_strmap_get(&p->doms, w->name);
  /* The record may have been forgotten (and even re-created) while the mint ran. */
  if (!p->closing && d && d->minting && d->mint_seq == w->seq) {
    d->minting = 0;
    ae_acme_result res = {0};
    if (status == 0 && w->rc == 0) {
      res.cert_pem = w->cert_pem;
      res.key_pem = w->key_pem;
    } else {
      res.code = w->rc ? w->rc : AE_ECANCELED;
      res.problem = "acmedge:internal_ca";
      res.detail = w->err.msg[0] ? w->err.msg : "mint cancelled";
      res.retryable = 1;
    }
    ae_provision_job_done(d, &res);
  }
  free(w->cert_pem);
  if (w->key_pem) {
    memset(w->key_pem, 0, strlen(w->key_pem));
    free(w->key_pem);
  }
  free(w);
  ae_provision_maybe_closed(p);
}

int ae_provision_mint_start(ae_provision *p, ae_dom *d, ae_err *err) {
  mint_work *w = ae_calloc(1, sizeof(*w));
  w->req.data = w;
  w->p = p;
  snprintf(w->name, sizeof(w->name), "%s", d->name);
  w->seq = ++g_seq;
  if (uv_queue_work(p->deps.loop, &w->req, mint_cb, mint_after_cb) != 0) {
    free(w);
    return ae_err_set(err, AE_ERR, "%s: cannot queue the internal CA mint", d->name);
  }
  p->installs++;
  d->minting = 1;
  d->mint_seq = w->seq;
  return 0;
}
