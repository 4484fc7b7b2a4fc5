/* Renewal index: (renew-at, name) for every stored name that has no record in memory, in one
 * binary min-heap driven by one timer, so renewals of a million stored names need neither a
 * million timers nor their certificates in memory. It is filled in the background at start
 * (a scan of storage in the thread pool that parses only each leaf's validity) and by eviction
 * (an idle name leaving the cache hands its renew-at over). When an entry is due and the name
 * has no record, the name is loaded from storage; the loaded record's own schedule then renews
 * it at once. */
#include "provision_internal.h"

#include <gnutls/x509.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "acmedge/log.h"

#define SUB "provision"
#define DUE_PER_TICK 256u /* loads started per timer tick; the rest follow on the next tick */

struct ae_ri_ent {
  int64_t at;
  char *name;
};

static void swap(ae_ri_ent *a, ae_ri_ent *b) {
  ae_ri_ent t = *a;
  *a = *b;
  *b = t;
}

static void sift_up(ae_ri_ent *v, size_t i) {
  while (i > 0) {
    size_t parent = (i - 1) / 2;
    if (v[parent].at <= v[i].at)
      break;
    swap(&v[parent], &v[i]);
    i = parent;
  }
}

static void sift_down(ae_ri_ent *v, size_t n, size_t i) {
  for (;;) {
    size_t l = 2 * i + 1, r = l + 1, m = i;
    if (l < n && v[l].at < v[m].at)
      m = l;
    if (r < n && v[r].at < v[m].at)
      m = r;
    if (m == i)
      return;
    swap(&v[m], &v[i]);
    i = m;
  }
}

static void ri_arm(ae_provision *p);

static void ri_timer_cb(uv_timer_t *t) {
  ae_provision *p = t->data;
  int64_t now = (int64_t)time(NULL);
  unsigned started = 0;
  while (p->ri_n > 0 && p->ri[0].at <= now && started < DUE_PER_TICK) {
    ae_ri_ent e = p->ri[0];
    p->ri[0] = p->ri[--p->ri_n];
    sift_down(p->ri, p->ri_n, 0);
    /* A name with a record in memory is renewed by that record's own timer. */
    if (!ae_strmap_get(&p->doms, e.name)) {
      AE_DEBUG(SUB, "%s: renewal due; loading it from storage", e.name);
      ae_provision_load_name(p, e.name, "renewal");
      started++;
    }
    free(e.name);
  }
  ri_arm(p);
}

static void ri_arm(ae_provision *p) {
  if (p->closing || !p->ri_timer_on)
    return;
  if (p->ri_n == 0) {
    uv_timer_stop(&p->ri_timer);
    return;
  }
  int64_t delta = p->ri[0].at - (int64_t)time(NULL);
  /* Whole seconds, capped at a day so a changed wall clock is noticed. */
  uint64_t ms = delta > 0 ? (uint64_t)(delta > 86400 ? 86400 : delta) * 1000u : 0;
  uv_timer_start(&p->ri_timer, ri_timer_cb, ms, 0);
}

void ae_renew_index_init(ae_provision *p) {
  uv_timer_init(p->deps.loop, &p->ri_timer);
  p->ri_timer.data = p;
  p->ri_timer_on = 1;
}

static void push_raw(ae_provision *p, const char *name, int64_t at) {
  if (p->ri_n == p->ri_cap) {
    p->ri_cap = p->ri_cap ? p->ri_cap * 2 : 64;
    p->ri = ae_realloc(p->ri, p->ri_cap * sizeof(*p->ri));
  }
  p->ri[p->ri_n].at = at;
  p->ri[p->ri_n].name = ae_strdup(name);
  sift_up(p->ri, p->ri_n);
  p->ri_n++;
}

void ae_renew_index_push(ae_provision *p, const char *name, int64_t at) {
  if (strncmp(name, "*.", 2) == 0)
    return; /* wildcards are not renewed automatically */
  push_raw(p, name, at);
  ri_arm(p);
}

int ae_renew_index_peek(const ae_provision *p, size_t i, const char **name, int64_t *at) {
  if (i >= p->ri_n)
    return AE_ENOTFOUND;
  *name = p->ri[i].name;
  *at = p->ri[i].at;
  return 0;
}

size_t ae_renew_index_size(const ae_provision *p) { return p->ri_n; }

size_t ae_renew_index_soonest(const ae_provision *p, size_t max, size_t *out) {
  /* Best-first walk of the heap: the k-th smallest is a child of one of the k-1 taken before,
   * so a small frontier (itself a heap of slot numbers) yields them in O(max log max). */
  size_t *front = ae_malloc((2 * max + 2) * sizeof(size_t));
  size_t nf = 0, got = 0;
  if (p->ri_n > 0)
    front[nf++] = 0;
  while (got < max && nf > 0) {
    size_t best = 0;
    for (size_t i = 1; i < nf; i++)
      if (p->ri[front[i]].at < p->ri[front[best]].at)
        best = i;
    size_t slot = front[best];
    front[best] = front[--nf];
    out[got++] = slot;
    if (2 * slot + 1 < p->ri_n)
      front[nf++] = 2 * slot + 1;
    if (2 * slot + 2 < p->ri_n)
      front[nf++] = 2 * slot + 2;
  }
  free(front);
  return got;
}

json_t *ae_provision_renewal_index_json(ae_provision *p, size_t max) {
  json_t *o = json_object();
  json_object_set_new(o, "ready", json_boolean(p->index_ready));
  json_object_set_new(o, "stored_at_start", json_integer((json_int_t)p->stored_indexed));
  json_object_set_new(o, "pending", json_integer((json_int_t)p->ri_n));
  json_t *arr = json_array();
  size_t *slots = ae_malloc((max + 1) * sizeof(size_t));
  size_t n = ae_renew_index_soonest(p, max, slots);
  for (size_t i = 0; i < n; i++) {
    char when[40];
    ae_time_rfc3339(p->ri[slots[i]].at, when, sizeof(when));
    json_t *e = json_object();
    json_object_set_new(e, "domain", json_string(p->ri[slots[i]].name));
    json_object_set_new(e, "renew_at", json_string(when));
    json_array_append_new(arr, e);
  }
  free(slots);
  json_object_set_new(o, "soonest", arr);
  return o;
}

int64_t ae_renew_at(int64_t not_before, int64_t not_after) {
  int64_t life = not_after - not_before;
  return not_before + (life > 0 ? life * 2 / 3 : 0);
}

size_t ae_renew_index_remove(ae_provision *p, const char *name) {
  size_t removed = 0;
  for (size_t i = 0; i < p->ri_n;) {
    if (strcmp(p->ri[i].name, name) != 0) {
      i++;
      continue;
    }
    free(p->ri[i].name);
    p->ri[i] = p->ri[--p->ri_n];
    if (i < p->ri_n) {
      sift_down(p->ri, p->ri_n, i);
      sift_up(p->ri, i);
    }
    removed++;
  }
  if (removed)
    ri_arm(p);
  return removed;
}

int ae_renew_index_has(const ae_provision *p, const char *name) {
  for (size_t i = 0; i < p->ri_n; i++)
    if (strcmp(p->ri[i].name, name) == 0)
      return 1;
  return 0;
}

void ae_renew_index_close(ae_provision *p) {
  for (size_t i = 0; i < p->ri_n; i++)
    free(p->ri[i].name);
  free(p->ri);
  p->ri = NULL;
  p->ri_n = p->ri_cap = 0;
}

/* ---- background scan of storage ---- */

typedef struct scan_req {
  uv_work_t req;
  ae_provision *p;
  ae_ri_ent *v;
  size_t n, cap;
  size_t skipped;
  ae_err err;
  int failed;
} scan_req;

static int leaf_validity(const char *pem, size_t len, int64_t *nb, int64_t *na) {
  gnutls_x509_crt_t crt;
  if (gnutls_x509_crt_init(&crt) < 0)
    return AE_ENOMEM;
  gnutls_datum_t d = {(unsigned char *)(uintptr_t)pem, (unsigned)len};
  int g = gnutls_x509_crt_import(crt, &d, GNUTLS_X509_FMT_PEM);
  if (g >= 0) {
    *nb = (int64_t)gnutls_x509_crt_get_activation_time(crt);
    *na = (int64_t)gnutls_x509_crt_get_expiration_time(crt);
  }
  gnutls_x509_crt_deinit(crt);
  return g < 0 ? AE_EINVAL : 0;
}

static void scan_work_cb(uv_work_t *req) {
  scan_req *s = req->data;
  ae_provision *p = s->p;
  char prefix[400];
  snprintf(prefix, sizeof(prefix), "certs/%s", p->ca_host);
  char **names = NULL;
  size_t n = 0;
  int r = ae_storage_list(p->deps.storage, prefix, &names, &n, &s->err);
  if (r == AE_ENOTFOUND)
    return;
  if (r != 0) {
    s->failed = 1;
    return;
  }
  for (size_t i = 0; i < n; i++) {
    char domain[256], key[700];
    ae_storage_dirname_domain(names[i], domain, sizeof(domain));
    if (strncmp(domain, "*.", 2) == 0)
      continue;
    snprintf(key, sizeof(key), "%s/%s/cert.pem", prefix, names[i]);
    char *pem = NULL;
    size_t len = 0;
    ae_err e = {0};
    int64_t nb = 0, na = 0;
    if (ae_storage_get(p->deps.storage, key, &pem, &len, &e) != 0 || leaf_validity(pem, len, &nb, &na) != 0) {
      free(pem);
      s->skipped++;
      continue;
    }
    free(pem);
    if (s->n == s->cap) {
      s->cap = s->cap ? s->cap * 2 : 1024;
      s->v = ae_realloc(s->v, s->cap * sizeof(*s->v));
    }
    s->v[s->n].at = ae_renew_at(nb, na);
    s->v[s->n].name = ae_strdup(domain);
    s->n++;
  }
  ae_storage_list_free(names, n);
}

static void scan_after_cb(uv_work_t *req, int status) {
  scan_req *s = req->data;
  ae_provision *p = s->p;
  p->bg--;
  if (status == 0 && !p->closing) {
    if (s->failed)
      AE_WARN(SUB, "renewal index: cannot list stored certificates: %s", s->err.msg);
    /* Appended then heapified: linear, so a million entries cost the loop a few milliseconds. */
    if (p->ri_cap < p->ri_n + s->n) {
      p->ri_cap = p->ri_n + s->n;
      p->ri = ae_realloc(p->ri, p->ri_cap * sizeof(*p->ri));
    }
    if (s->n)
      memcpy(p->ri + p->ri_n, s->v, s->n * sizeof(*s->v));
    p->ri_n += s->n;
    for (size_t i = p->ri_n / 2; i-- > 0;)
      sift_down(p->ri, p->ri_n, i);
    p->stored_indexed = s->n;
    p->index_ready = 1;
    AE_INFO(SUB, "indexed %zu stored certificate(s) for renewal%s", s->n, s->skipped ? " (some unreadable skipped)" : "");
    ri_arm(p);
  } else {
    for (size_t i = 0; i < s->n; i++)
      free(s->v[i].name);
  }
  free(s->v);
  free(s);
  ae_provision_maybe_closed(p);
}

int ae_provision_start_index(ae_provision *p, ae_err *err) {
  scan_req *s = ae_calloc(1, sizeof(*s));
  s->req.data = s;
  s->p = p;
  p->bg++;
  if (uv_queue_work(p->deps.loop, &s->req, scan_work_cb, scan_after_cb) != 0) {
    p->bg--;
    free(s);
    return ae_err_set(err, AE_ERR, "cannot queue the storage scan");
  }
  return 0;
}
