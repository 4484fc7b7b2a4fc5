/* The managed-domains list at scale: names in memory (records) and stored names only the renewal
 * index knows, paged in byte order of the name. A page costs one pass over both sets with a
 * bounded max-heap of the `limit` smallest names after the cursor, so no full sort of a million
 * names happens per request. */
#include "provision_internal.h"

#include <stdlib.h>
#include <string.h>

typedef struct cand {
  const char *name;
  const ae_dom *d;   /* NULL: stored, not in memory */
  int64_t renew_at;  /* for stored names */
} cand;

typedef struct sel {
  cand *v;           /* max-heap on name, at most limit entries */
  size_t n, limit;
  ae_strmap seen;    /* names in v, so an index name twice (scan + eviction) counts once */
  size_t more;       /* candidates dropped for being past the page */
  const char *after;
  const char *state;
} sel;

static void sift_down(cand *v, size_t n, size_t i) {
  for (;;) {
    size_t l = 2 * i + 1, r = l + 1, m = i;
    if (l < n && strcmp(v[l].name, v[m].name) > 0)
      m = l;
    if (r < n && strcmp(v[r].name, v[m].name) > 0)
      m = r;
    if (m == i)
      return;
    cand t = v[m];
    v[m] = v[i];
    v[i] = t;
    i = m;
  }
}

static void sift_up(cand *v, size_t i) {
  while (i > 0) {
    size_t parent = (i - 1) / 2;
    if (strcmp(v[parent].name, v[i].name) >= 0)
      return;
    cand t = v[parent];
    v[parent] = v[i];
    v[i] = t;
    i = parent;
  }
}

static void offer(sel *s, const cand *c) {
  if (s->after && strcmp(c->name, s->after) <= 0)
    return;
  if (ae_strmap_get(&s->seen, c->name))
    return;
  if (s->limit && s->n == s->limit) {
    if (strcmp(c->name, s->v[0].name) >= 0) {
      s->more++;
      return;
    }
    ae_strmap_del(&s->seen, s->v[0].name);
    s->v[0] = *c;
    sift_down(s->v, s->n, 0);
    s->more++;
  } else {
    if (!s->limit && s->n % 1024 == 0)
      s->v = ae_realloc(s->v, (s->n + 1024) * sizeof(cand));
    s->v[s->n] = *c;
    sift_up(s->v, s->n);
    s->n++;
  }
  ae_strmap_put(&s->seen, c->name, (void *)1);
}

static int by_name(const void *a, const void *b) { return strcmp(((const cand *)a)->name, ((const cand *)b)->name); }

static json_t *query(ae_provision *p, size_t limit, const char *after, const char *state,
                     const ae_storage_certref *stored, size_t nstored, int use_stored);

json_t *ae_provision_domains_query(ae_provision *p, size_t limit, const char *after, const char *state) {
  return query(p, limit, after, state, NULL, 0, 0);
}

json_t *ae_provision_domains_query_stored(ae_provision *p, size_t limit, const char *after, const char *state,
                                          const ae_storage_certref *stored, size_t nstored) {
  return query(p, limit, after, state, stored, nstored, 1);
}

size_t ae_provision_records_among(ae_provision *p, const ae_storage_certref *refs, size_t n) {
  size_t c = 0;
  for (size_t i = 0; i < n; i++)
    if (ae_strmap_get(&p->doms, refs[i].domain))
      c++;
  return c;
}

static json_t *query(ae_provision *p, size_t limit, const char *after, const char *state,
                     const ae_storage_certref *stored, size_t nstored, int use_stored) {
  sel s = {.limit = limit, .after = after && *after ? after : NULL, .state = state && *state ? state : NULL};
  ae_strmap_init(&s.seen);
  if (limit)
    s.v = ae_malloc(limit * sizeof(cand));
  for (size_t i = 0; i < p->doms.cap; i++) {
    const ae_dom *d = p->doms.slots[i].key ? p->doms.slots[i].value : NULL;
    if (!d || (s.state && strcmp(ae_dom_state_name(d), s.state) != 0))
      continue;
    cand c = {d->name, d, 0};
    offer(&s, &c);
  }
  /* Stored names with no record are valid certificates at rest. */
  if (use_stored && (!s.state || strcmp(s.state, "valid") == 0)) {
    /* The shared storage's own list: names other instances issued are in it too. */
    for (size_t i = 0; i < nstored; i++) {
      cand c = {stored[i].domain, NULL, stored[i].renew_at};
      if (ae_strmap_get(&p->doms, c.name))
        continue;
      offer(&s, &c);
    }
  } else if (!s.state || strcmp(s.state, "valid") == 0) {
    for (size_t i = 0; i < ae_renew_index_size(p); i++) {
      cand c = {NULL, NULL, 0};
      ae_renew_index_peek(p, i, &c.name, &c.renew_at);
      if (ae_strmap_get(&p->doms, c.name))
        continue;
      offer(&s, &c);
    }
  }
  if (s.n)
    qsort(s.v, s.n, sizeof(cand), by_name);
  json_t *arr = json_array();
  for (size_t i = 0; i < s.n; i++) {
    if (s.v[i].d) {
      json_array_append_new(arr, ae_dom_json(s.v[i].d));
      continue;
    }
    char when[40];
    ae_time_rfc3339(s.v[i].renew_at, when, sizeof(when));
    json_t *o = json_object();
    json_object_set_new(o, "domain", json_string(s.v[i].name));
    json_object_set_new(o, "state", json_string("valid"));
    json_object_set_new(o, "in_memory", json_false());
    json_object_set_new(o, "renew_at", json_string(when));
    json_array_append_new(arr, o);
  }
  json_t *out = arr;
  if (limit) {
    out = json_object();
    json_object_set_new(out, "domains", arr);
    json_object_set_new(out, "next", s.more && s.n ? json_string(s.v[s.n - 1].name) : json_null());
  }
  ae_strmap_clear(&s.seen);
  free(s.v);
  return out;
}
