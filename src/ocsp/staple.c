/* Immutable OCSP staples: the DER response plus the few fields the cache decides on. Shared by
 * the cache and every handshake that sends it, hence the atomic refcount. */
#include "acmedge/ocsp.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

struct ae_staple {
  atomic_int refs;
  int status;
  int64_t this_update;
  int64_t next_update;
  size_t len;
  unsigned char der[];
};

int ae_staple_new(const unsigned char *der, size_t len, int64_t this_update, int64_t next_update, int status,
                  ae_staple **out) {
  if (!der || len == 0 || !out)
    return AE_EINVAL;
  ae_staple *s = ae_malloc(sizeof(*s) + len);
  atomic_init(&s->refs, 1);
  s->status = status;
  s->this_update = this_update;
  s->next_update = next_update;
  s->len = len;
  memcpy(s->der, der, len);
  *out = s;
  return 0;
}

ae_staple *ae_staple_ref(ae_staple *s) {
  if (s)
    atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed);
  return s;
}

void ae_staple_unref(ae_staple *s) {
  if (!s)
    return;
  if (atomic_fetch_sub_explicit(&s->refs, 1, memory_order_release) == 1) {
    /* Every other thread's last read happens before the free. */
    atomic_thread_fence(memory_order_acquire);
    free(s);
  }
}

const unsigned char *ae_staple_der(const ae_staple *s, size_t *len) {
  *len = s->len;
  return s->der;
}
int64_t ae_staple_this_update(const ae_staple *s) { return s->this_update; }
int64_t ae_staple_next_update(const ae_staple *s) { return s->next_update; }
int ae_staple_status(const ae_staple *s) { return s->status; }

int64_t ae_staple_refresh_at(const ae_staple *s) {
  return s->this_update + (s->next_update - s->this_update) / 2;
}
