/* Provisioning on a shared (cluster) storage: what another instance's delete means for this one.
 * A name another instance deleted is dropped from memory here too, so every instance stops
 * serving it as soon as the change reaches it (PUBLISH, or the generation reconcile). */
#include "provision_internal.h"

#include <string.h>

#include "acmedge/log.h"

#define SUB "provision"

void ae_provision_storage_deleted(ae_provision *p, const char *name) {
  if (p->closing)
    return;
  ae_dom *d = ae_strmap_get(&p->doms, name);
  ae_cert *c = ae_certstore_lookup(p->deps.certs, name);
  /* The lookup falls back to a wildcard entry, which is another stored name. */
  const char *first = c ? ae_cert_name(c, 0) : NULL;
  int cached = c && first && strcmp(first, name) == 0;
  ae_cert_unref(c);
  if (d && ae_dom_busy(d) && !d->has_cert) {
    /* An order of ours runs for it: its commit is newer than the delete. */
    AE_INFO(SUB, "%s: deleted by another instance while an order runs here; keeping the order", name);
    return;
  }
  if (!cached && !d)
    return; /* nothing in memory: the instance that deleted it already said so */
  if (cached) {
    ae_provision_cert_changed(p, name, NULL, 0);
    ae_certstore_remove(p->deps.certs, name);
  }
  if (d)
    ae_dom_remove(p, d);
  json_t *det = json_object();
  json_object_set_new(det, "source", json_string("cluster"));
  ae_events_emit(p->deps.events, "domain_deleted", name, det);
  AE_INFO(SUB, "%s: deleted from the shared storage by another instance; forgotten here", name);
  ae_provision_wake(p, name);
}
