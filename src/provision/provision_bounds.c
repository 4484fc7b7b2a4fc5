/* Bounds on the per-name state names without a certificate can create, each at most
 * on_demand.name_cache_max: failed first issuances (an attacker's random names fail validation),
 * storage reads in flight (a flood of unknown names) and the domain_denied suppression table; and
 * the counts that show these bounds hold. */
#include "acmedge/provision.h"
#include "provision_internal.h"

#include <stdlib.h>

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
  out->denied = p->deny_used;
}

/* One slot of the domain_denied suppression table: a name's hash and when its event may go out
 * again. A fixed table rather than a map of names: a flood of distinct random names overwrites
 * slots instead of allocating (a name that loses its slot just gets its next event sooner). */
struct deny_slot {
  uint64_t tag; /* hash of the name, 0 = empty */
  uint64_t until_ms;
};

void ae_provision_deny_reset(ae_provision *p) {
  free(p->deny);
  p->deny = NULL;
  p->ndeny = p->deny_used = 0;
}

int ae_provision_deny_suppressed(ae_provision *p, const char *name, uint64_t now, uint64_t ms) {
  if (p->ndeny != p->cfg->name_cache_max) {
    ae_provision_deny_reset(p);
    p->ndeny = p->cfg->name_cache_max;
    p->deny = ae_calloc(p->ndeny, sizeof(*p->deny));
  }
  uint64_t h = (uint64_t)ae_strhash(name);
  if (h == 0)
    h = 1;
  struct deny_slot *s = &p->deny[h % p->ndeny];
  if (s->tag == h && s->until_ms > now)
    return 1;
  if (s->tag == 0)
    p->deny_used++;
  s->tag = h;
  s->until_ms = now + ms;
  return 0;
}
