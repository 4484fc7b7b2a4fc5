/* Admission of challenge look-ups in Redis (an answer whose pub/sub announcement this instance
 * missed): one look-up per key at a time (later askers join it), a bounded number in flight and
 * per second, and a remembered miss, so random tokens or names cannot become Redis load. Pure
 * bookkeeping, no I/O; shared by the http-01 and tls-alpn-01 look-ups. Private to src/storage. */
#ifndef ACMEDGE_CHAL_GATE_H
#define ACMEDGE_CHAL_GATE_H

#include <stdint.h>

#define AE_CHAL_GATE_INFLIGHT 8
#define AE_CHAL_GATE_PER_S 20
#define AE_CHAL_GATE_NEG_N 128
#define AE_CHAL_GATE_NEG_MS 10000

typedef struct ae_chal_gate {
  uint64_t inflight[AE_CHAL_GATE_INFLIGHT]; /* keys being looked up */
  unsigned ninflight;
  uint64_t second;                          /* the second this budget is for */
  unsigned used;                            /* look-ups started in that second */
  uint64_t neg_key[AE_CHAL_GATE_NEG_N], neg_until[AE_CHAL_GATE_NEG_N];
  unsigned neg_next;                        /* ring: the oldest miss is forgotten first */
} ae_chal_gate;

/* Key of a look-up: kind ("http" token or "alpn" domain) and its name, hashed (FNV-1a). */
uint64_t ae_chal_gate_key(const char *kind, const char *name);
/* Decides a look-up for key at now_ms. 0: start it (counted in flight until ae_chal_gate_done);
 * AE_EAGAIN: the same key is being looked up already (its answer serves this asker too);
 * AE_ENOTFOUND: Redis had no answer for key within the last AE_CHAL_GATE_NEG_MS;
 * AE_ELIMIT: too many look-ups in flight or this second. */
int ae_chal_gate_admit(ae_chal_gate *g, uint64_t key, uint64_t now_ms);
/* A look-up admitted for key ended; absent = 1 when Redis answered that there is no answer (then
 * remembered as a miss; a failed look-up is not). */
void ae_chal_gate_done(ae_chal_gate *g, uint64_t key, int absent, uint64_t now_ms);

#endif
