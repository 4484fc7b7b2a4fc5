/* Staples persisted beside their certificate (certs/<ca-host>/<domain>/ocsp.der) through the
 * storage interface, so a restart can staple at once even while the responder is down. A stored
 * file is only trusted after the same verification a fresh answer gets. */
#include "ocsp_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "acmedge/log.h"

#define SUB "ocsp"
#define STAPLE_FILE_MAX (1024u * 1024u)

static int staple_key(ae_ocsp *o, const char *name, char *buf, size_t len) {
  if (!o->deps.storage || !name || !*name)
    return AE_EINVAL;
  char dir[300];
  ae_storage_domain_dirname(name, dir, sizeof(dir));
  int n = snprintf(buf, len, "certs/%s/%s/ocsp.der", o->ca_host, dir);
  return n > 0 && (size_t)n < len ? 0 : AE_EINVAL;
}

void ae_ocsp_store_put(ae_ocsp *o, const char *name, ae_staple *st) {
  char key[700];
  if (staple_key(o, name, key, sizeof(key)) != 0)
    return;
  size_t len = 0;
  const unsigned char *der = ae_staple_der(st, &len);
  ae_err err = {0};
  /* A staple is public data; losing the write only costs a fetch after a restart. */
  if (ae_storage_put(o->deps.storage, key, der, len, 0, &err) != 0)
    AE_WARN(SUB, "%s: cannot store OCSP staple: %s", name, err.msg);
}

void ae_ocsp_store_delete(ae_ocsp *o, const char *name) {
  char key[700];
  if (staple_key(o, name, key, sizeof(key)) != 0)
    return;
  ae_err err = {0};
  int rc = ae_storage_del(o->deps.storage, key, &err);
  if (rc != 0 && rc != AE_ENOTFOUND)
    AE_WARN(SUB, "%s: cannot delete stored OCSP staple: %s", name, err.msg);
}

void ae_ocsp_store_load(ae_ocsp *o, const char *name, ae_cert *cert) {
  char key[700];
  if (staple_key(o, name, key, sizeof(key)) != 0)
    return;
  char *data = NULL;
  size_t len = 0;
  ae_err err = {0};
  int rc = ae_storage_get(o->deps.storage, key, &data, &len, &err);
  if (rc == AE_ENOTFOUND)
    return;
  if (rc != 0) {
    AE_WARN(SUB, "%s: cannot read stored OCSP staple: %s", name, err.msg);
    return;
  }
  gnutls_x509_crt_t leaf = NULL, issuer = NULL;
  ae_ocsp_verdict v;
  const char *problem = NULL;
  if (len == 0 || len > STAPLE_FILE_MAX)
    problem = "empty or oversized";
  else if (ae_ocsp_cert_pair(cert, &leaf, &issuer) != 0)
    problem = "the certificate has no issuer in its chain";
  else if (ae_ocsp_verify((const unsigned char *)data, len, leaf, issuer, ae_ocsp_now(), &v, &err) != 0)
    problem = err.msg;
  else if (v.status != AE_OCSP_GOOD)
    problem = "not a good status";
  if (problem) {
    /* Corrupt, for another certificate or expired: worthless; the next handshake refetches. */
    AE_INFO(SUB, "%s: stored OCSP staple %s dropped: %s", name, key, problem);
    ae_storage_del(o->deps.storage, key, NULL);
  } else {
    ae_staple *st = NULL;
    if (ae_staple_new((const unsigned char *)data, len, v.this_update, v.next_update, AE_OCSP_GOOD, &st) == 0) {
      ae_ocsp_cache_seed(o->cache, cert, st);
      AE_INFO(SUB, "%s: stored OCSP staple loaded (serial %s)", name, ae_cert_serial(cert));
    }
    ae_staple_unref(st);
  }
  if (leaf)
    gnutls_x509_crt_deinit(leaf);
  if (issuer)
    gnutls_x509_crt_deinit(issuer);
  free(data);
}
