/* Bounds on the per-name state names without a certificate can create: failed first issuances
 * (an attacker's random names fail validation) and storage reads in flight (a flood of unknown
 * names), both at most on_demand.name_cache_max; and the counts that show these bounds hold. */
#include "acmedge/provision.h"
#include "provision_internal.h"

#include "acmedge/log.h"

#define SUB "provision"

static void unlink_failed(ae_provision *p, ae_dom *d) {
  if (d->fprev)
    d->fprev->fnext = d->fnext;
  else
    p->fhead = d->fnext;
  if (d->fnext)
    d->fnext->fprev = d->fprev;
  else
    p->ftail = d->fprev;
  d->fprev = d->fnext = NULL;
  d->in_failed = 0;
  p->nfailed--;
}

void ae_provision_failed_untrack(ae_provision *p, ae_dom *d) {
  if (d->in_failed)
    unlink_failed(p, d);
}

void ae_provision_failed_track(ae_provision *p, ae_dom *d) {
  ae_provision_failed_untrack(p, d);
  d->fprev = p->ftail;
  d->fnext = NULL;
  if (p->ftail)
    p->ftail->fnext = d;
  else
    p->fhead = d;
  p->ftail = d;
  d->in_failed = 1;
  p->nfailed++;
  while (p->nfailed > p->cfg->name_cache_max && p->fhead) {
    ae_dom *old = p->fhead;
    unlink_failed(p, old);
    /* Entries are not taken off when a record moves on (asked for again, issued later): only a
     * record that is still a failed first issuance is forgotten. Forgetting it loses its
     * backoff, which the order rate limits make up for. */
    if (old->state == DS_FAILED && !old->has_cert && !ae_dom_busy(old) && !old->job && !old->minting) {
      AE_DEBUG(SUB, "%s: failed issuance forgotten (on_demand.name_cache_max %u)", old->name,
               p->cfg->name_cache_max);
      ae_dom_remove(p, old);
    }
  }
}

int ae_provision_loads_full(const ae_provision *p) { return p->loads.count >= p->cfg->name_cache_max; }

void ae_provision_counts(const ae_provision *p, ae_provision_name_counts *out) {
  out->records = p->doms.count;
  out->queued = p->qlen;
  out->failed = p->nfailed;
  out->loads = p->loads.count;
  out->denied = p->denied.count;
}
