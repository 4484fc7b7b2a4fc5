/* Revoked certificates: replaced at once by a new order (each order has a new key), and no longer
 * served when the replacement fails, as a revoked certificate only produces client errors. Also
 * tells the OCSP staples when a name's certificate changes. */
#include "provision_internal.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#include <stdlib.h>

#include "acmedge/log.h"
#include "acmedge/ocsp.h"

#define SUB "provision"

void ae_provision_cert_changed(ae_provision *p, const char *name, ae_cert *new_cert, int loaded) {
  if (!p->deps.cert_changed)
    return;
  ae_cert *old = ae_certstore_lookup(p->deps.certs, name);
  /* The lookup falls back to a wildcard entry; that certificate belongs to another name. */
  const char *first = old ? ae_cert_name(old, 0) : NULL;
  if (old && (!first || strcmp(first, name) != 0)) {
    ae_cert_unref(old);
    old = NULL;
  }
  p->deps.cert_changed(p->deps.wake_ud, name, old, new_cert, loaded);
  ae_cert_unref(old);
}

int ae_provision_revoked(ae_provision *p, const char *name, const char *serial, ae_err *err) {
  ae_dom *d = ae_strmap_get(&p->doms, name);
  if (!d || !d->has_cert || !d->serial || !serial || strcmp(d->serial, serial) != 0)
    return ae_err_set(err, AE_ENOTFOUND, "%s: certificate %s is not the one served", name, serial ? serial : "-");
  if (d->revoked)
    return 0; /* a replacement is already on its way */
  d->revoked = 1;
  d->renew_at = (int64_t)time(NULL);
  if (d->state != DS_VALID && d->state != DS_FAILED)
    return 0; /* an order already runs; its result replaces the certificate */
  AE_WARN(SUB, "%s: certificate %s revoked; ordering a replacement", name, serial);
  if (ae_provision_admit(p, d) != 0) {
    ae_provision_revoked_failed(p, d);
    return ae_err_set(err, AE_ELIMIT, "%s: issuance queue full; revoked certificate no longer served", name);
  }
  return 0;
}

void ae_provision_revoked_failed(ae_provision *p, ae_dom *d) {
  AE_WARN(SUB, "%s: no replacement for revoked certificate %s; it is no longer served", d->name,
          d->serial ? d->serial : "-");
  ae_provision_cert_changed(p, d->name, NULL, 0);
  ae_certstore_remove(p->deps.certs, d->name);
  /* Also from storage, or a restart would serve it again. */
  char dir[300], key[600];
  ae_storage_domain_dirname(d->name, dir, sizeof(dir));
  snprintf(key, sizeof(key), "certs/%s/%s/", p->ca_host, dir);
  ae_err e2 = {0};
  int r = ae_storage_del(p->deps.storage, key, &e2);
  if (r != 0 && r != AE_ENOTFOUND)
    AE_WARN(SUB, "%s: removing revoked certificate from storage: %s", d->name, e2.msg);
  d->has_cert = 0;
  d->revoked = 0;
  d->state = DS_FAILED;
}

typedef struct revoke_ctx {
  ae_provision *p;
  char name[256];
  ae_cert *cert;
  int reason;
  ae_provision_revoke_fn done;
  void *ud;
} revoke_ctx;

static void revoke_done(void *ud, const ae_acme_result *res) {
  revoke_ctx *x = ud;
  ae_provision *p = x->p;
  const char *serial = ae_cert_serial(x->cert);
  if (res->code == 0) {
    /* The staple goes first, so no answer given after this point can carry it. */
    if (p->deps.cert_changed)
      p->deps.cert_changed(p->deps.wake_ud, x->name, x->cert, NULL, 0);
    json_t *det = json_object();
    json_object_set_new(det, "source", json_string("acme"));
    json_object_set_new(det, "reason", json_string(ae_ocsp_reason_name(x->reason < 0 ? 0 : x->reason)));
    json_object_set_new(det, "serial", json_string(serial));
    ae_events_emit(p->deps.events, "cert_revoked", x->name, det);
    ae_err err = {0};
    if (ae_provision_revoked(p, x->name, serial, &err) != 0)
      AE_WARN(SUB, "%s", err.msg);
    x->done(x->ud, 0, NULL, NULL, serial);
  } else {
    AE_WARN(SUB, "%s: revocation of %s refused: %s: %s", x->name, serial, res->problem ? res->problem : "error",
            res->detail ? res->detail : "");
    x->done(x->ud, res->code, res->problem, res->detail, serial);
  }
  ae_cert_unref(x->cert);
  free(x);
}

int ae_provision_revoke(ae_provision *p, const char *name, int reason, ae_provision_revoke_fn done, void *ud,
                        ae_err *err) {
  ae_cert *cert = ae_certstore_lookup(p->deps.certs, name);
  const char *first = cert ? ae_cert_name(cert, 0) : NULL;
  if (!cert || !first || strcmp(first, name) != 0) {
    ae_cert_unref(cert);
    return ae_err_set(err, AE_ENOTFOUND, "%s: no certificate to revoke", name);
  }
  unsigned n = 0;
  gnutls_pcert_st *pc = ae_cert_pcerts(cert, &n);
  revoke_ctx *x = ae_calloc(1, sizeof(*x));
  x->p = p;
  snprintf(x->name, sizeof(x->name), "%s", name);
  x->cert = cert;
  x->reason = reason;
  x->done = done;
  x->ud = ud;
  ae_acme_callbacks cbs = {.ud = x, .on_done = revoke_done};
  int rc = ae_acme_revoke(p->deps.acme, pc[0].cert.data, pc[0].cert.size, reason, &cbs, NULL, err);
  if (rc != 0) {
    ae_cert_unref(cert);
    free(x);
    return rc;
  }
  AE_INFO(SUB, "%s: revoking certificate %s (reason %d)", name, ae_cert_serial(cert), reason);
  return 0;
}
