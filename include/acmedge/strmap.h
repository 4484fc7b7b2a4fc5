/* A small open-addressing hash map from NUL-terminated string keys to pointers. Not thread-safe. */
#ifndef ACMEDGE_STRMAP_H
#define ACMEDGE_STRMAP_H

#include <stddef.h>

typedef struct ae_strmap_slot {
  char *key;      /* owned copy; NULL = empty */
  void *value;
  int tomb;       /* deleted marker, keeps probe chains intact */
} ae_strmap_slot;

typedef struct ae_strmap {
  ae_strmap_slot *slots;
  size_t cap;     /* power of two */
  size_t count;   /* live entries */
  size_t used;    /* live + tombstones */
} ae_strmap;

/* Initialises an empty map (no allocation until the first put). */
void ae_strmap_init(ae_strmap *m);
/* Frees the keys and slots; values are the caller's (free them first via ae_strmap_foreach). */
void ae_strmap_clear(ae_strmap *m);
/* Returns the value for key or NULL. */
void *ae_strmap_get(const ae_strmap *m, const char *key);
/* Sets key -> value (the key is copied); returns the previous value or NULL. */
void *ae_strmap_put(ae_strmap *m, const char *key, void *value);
/* Removes key; returns its value or NULL. */
void *ae_strmap_del(ae_strmap *m, const char *key);
/* Calls fn for each entry; fn must not modify the map. */
void ae_strmap_foreach(const ae_strmap *m, void (*fn)(void *ud, const char *key, void *value), void *ud);
/* FNV-1a hash of a string. */
size_t ae_strhash(const char *s);

#endif
