/* Admission of challenge look-ups in Redis (see chal_gate.h). */
#include "chal_gate.h"

#include "acmedge/common.h"

uint64_t ae_chal_gate_key(const char *kind, const char *name) {
  uint64_t h = 1469598103934665603ull;
  for (const char *s = kind; *s; s++)
    h = (h ^ (unsigned char)*s) * 1099511628211ull;
  h = (h ^ (unsigned char)':') * 1099511628211ull;
  for (const char *s = name; *s; s++)
    h = (h ^ (unsigned char)*s) * 1099511628211ull;
  return h;
}

static int neg_cached(const ae_chal_gate *g, uint64_t key, uint64_t now) {
  for (unsigned i = 0; i < AE_CHAL_GATE_NEG_N; i++)
    if (g->neg_key[i] == key && g->neg_until[i] > now)
      return 1;
  return 0;
}

int ae_chal_gate_admit(ae_chal_gate *g, uint64_t key, uint64_t now_ms) {
  for (unsigned i = 0; i < g->ninflight; i++)
    if (g->inflight[i] == key)
      return AE_EAGAIN;
  if (neg_cached(g, key, now_ms))
    return AE_ENOTFOUND;
  if (now_ms / 1000 != g->second) {
    g->second = now_ms / 1000;
    g->used = 0;
  }
  if (g->ninflight >= AE_CHAL_GATE_INFLIGHT || g->used >= AE_CHAL_GATE_PER_S)
    return AE_ELIMIT;
  g->inflight[g->ninflight++] = key;
  g->used++;
  return 0;
}

void ae_chal_gate_done(ae_chal_gate *g, uint64_t key, int absent, uint64_t now_ms) {
  for (unsigned i = 0; i < g->ninflight; i++) {
    if (g->inflight[i] == key) {
      g->inflight[i] = g->inflight[--g->ninflight];
      break;
    }
  }
  if (!absent)
    return;
  g->neg_key[g->neg_next] = key;
  g->neg_until[g->neg_next] = now_ms + AE_CHAL_GATE_NEG_MS;
  g->neg_next = (g->neg_next + 1) % AE_CHAL_GATE_NEG_N;
}
