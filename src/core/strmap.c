/* Open addressing with linear probing; grows at 70% load counting tombstones. */
#include "acmedge/strmap.h"
#include "acmedge/common.h"

#include <stdlib.h>
#include <string.h>

size_t ae_strhash(const char *s) {
  uint64_t h = 1469598103934665603ull;
  for (; *s; s++) {
    h ^= (unsigned char)*s;
    h *= 1099511628211ull;
  }
  return (size_t)h;
}

void ae_strmap_init(ae_strmap *m) { memset(m, 0, sizeof(*m)); }

void ae_strmap_clear(ae_strmap *m) {
  for (size_t i = 0; i < m->cap; i++)
    free(m->slots[i].key);
  free(m->slots);
  memset(m, 0, sizeof(*m));
}

static ae_strmap_slot *find(const ae_strmap *m, const char *key) {
  if (m->cap == 0)
    return NULL;
  size_t mask = m->cap - 1;
  for (size_t i = ae_strhash(key) & mask, n = 0; n < m->cap; i = (i + 1) & mask, n++) {
    ae_strmap_slot *s = &m->slots[i];
    if (!s->key && !s->tomb)
      return NULL;
    if (s->key && strcmp(s->key, key) == 0)
      return s;
  }
  return NULL;
}

static void grow(ae_strmap *m) {
  size_t ncap = m->cap ? m->cap * 2 : 16;
  while (m->count * 2 >= ncap)
    ncap *= 2;
  ae_strmap_slot *old = m->slots;
  size_t ocap = m->cap;
  m->slots = ae_calloc(ncap, sizeof(*m->slots));
  m->cap = ncap;
  m->used = m->count;
  for (size_t i = 0; i < ocap; i++) {
    if (!old[i].key)
      continue;
    size_t j = ae_strhash(old[i].key) & (ncap - 1);
    while (m->slots[j].key)
      j = (j + 1) & (ncap - 1);
    m->slots[j].key = old[i].key;
    m->slots[j].value = old[i].value;
  }
  free(old);
}

void *ae_strmap_get(const ae_strmap *m, const char *key) {
  ae_strmap_slot *s = find(m, key);
  return s ? s->value : NULL;
}

void *ae_strmap_put(ae_strmap *m, const char *key, void *value) {
  ae_strmap_slot *s = find(m, key);
  if (s) {
    void *prev = s->value;
    s->value = value;
    return prev;
  }
  if ((m->used + 1) * 10 >= m->cap * 7)
    grow(m);
  size_t mask = m->cap - 1;
  size_t i = ae_strhash(key) & mask;
  while (m->slots[i].key)
    i = (i + 1) & mask;
  if (!m->slots[i].tomb)
    m->used++;
  m->slots[i].key = ae_strdup(key);
  m->slots[i].value = value;
  m->slots[i].tomb = 0;
  m->count++;
  return NULL;
}

void *ae_strmap_del(ae_strmap *m, const char *key) {
  ae_strmap_slot *s = find(m, key);
  if (!s)
    return NULL;
  void *v = s->value;
  free(s->key);
  s->key = NULL;
  s->value = NULL;
  s->tomb = 1;
  m->count--;
  return v;
}

void ae_strmap_foreach(const ae_strmap *m, void (*fn)(void *ud, const char *key, void *value), void *ud) {
  for (size_t i = 0; i < m->cap; i++)
    if (m->slots[i].key)
      fn(ud, m->slots[i].key, m->slots[i].value);
}
