/* The cluster-wide domains list (GET /v1/domains and `acmedge domains` on a Redis backend).
 * Shared storage is read in the thread pool, never on the loop: first the stored names (any
 * instance's) the page can need, merged on the loop with this instance's records into the
 * requested page, then the version and committing instance of the names on that page. A paged
 * request reads only limit + 1 stored names after the cursor (more, in doubling batches, when
 * some of them are names this instance holds a record for); an unpaged one reads them all in
 * chunks. If Redis does not answer, the instance's own view is served, each name marked
 * "stored": null (unknown). */
#include "app_internal.h"

#include <stdlib.h>
#include <string.h>

typedef struct view_req {
  uv_work_t req;
  ae_app *app;
  ae_admin_reply *reply;
  int phase;          /* 1: list of stored names, 2: their details */
  size_t limit;
  char after[300], state[32];
  int has_after, has_state;
  ae_storage_certref *refs;
  size_t nrefs;
  ae_storage_certref *batch; /* phase 1 of a paged request: the last batch read */
  size_t nbatch, want;       /* its size and the size asked for */
  char cursor[256];          /* the batch starts after this name */
  int skip_stored;           /* a state filter other than "valid": no stored name can match */
  json_t *page, *list; /* list: the array inside page (or page itself) */
  int rc;
  ae_err err;
} view_req;

static void view_work(uv_work_t *req) {
  view_req *v = req->data;
  if (v->phase == 1 && v->skip_stored)
    v->rc = 0;
  else if (v->phase == 1 && v->limit == 0)
    v->rc = ae_storage_cert_index(v->app->storage, v->app->ca_host, &v->refs, &v->nrefs, &v->err);
  else if (v->phase == 1)
    v->rc = ae_storage_cert_page(v->app->storage, v->app->ca_host, v->cursor, v->want, &v->batch, &v->nbatch,
                                 &v->err);
  else
    v->rc = ae_storage_cert_info(v->app->storage, v->app->ca_host, v->refs, v->nrefs, &v->err);
}

static void view_after(uv_work_t *req, int status);

static void finish(view_req *v, int status, json_t *body) {
  ae_admin_reply_send(v->reply, status, body);
  json_decref(v->page);
  free(v->refs);
  free(v->batch);
  free(v);
}

/* The page as this instance alone sees it, "stored" unknown. */
static void local_fallback(view_req *v) {
  ae_app *app = v->app;
  json_t *page = ae_provision_domains_query(app->provision, v->limit, v->has_after ? v->after : NULL,
                                            v->has_state ? v->state : NULL);
  json_t *list = json_is_array(page) ? page : json_object_get(page, "domains");
  size_t i;
  json_t *d;
  json_array_foreach(list, i, d) json_object_set_new(d, "stored", json_null());
  app_add_ocsp_state(app, list);
  finish(v, 200, page);
}

/* A paged request's batch of stored names arrived: keep it, and read the next batch when the page
 * could still need more (some names were this instance's own records). 1 when another batch was
 * queued. */
static int more_stored(view_req *v) {
  ae_app *app = v->app;
  v->refs = ae_realloc(v->refs, (v->nrefs + v->nbatch + 1) * sizeof(*v->refs));
  if (v->nbatch)
    memcpy(v->refs + v->nrefs, v->batch, v->nbatch * sizeof(*v->refs));
  v->nrefs += v->nbatch;
  size_t got = v->nbatch;
  free(v->batch);
  v->batch = NULL;
  v->nbatch = 0;
  if (got < v->want || v->nrefs == 0)
    return 0;
  size_t own = ae_provision_records_among(app->provision, v->refs, v->nrefs);
  if (v->nrefs - own > v->limit)
    return 0;
  snprintf(v->cursor, sizeof(v->cursor), "%s", v->refs[v->nrefs - 1].domain);
  v->want = v->want * 2 > 10000 ? 10000 : v->want * 2;
  return uv_queue_work(&app->loop, &v->req, view_work, view_after) == 0;
}

static void after_index(view_req *v) {
  ae_app *app = v->app;
  if (v->rc != 0) {
    AE_WARN(SUB, "domains list: shared storage not readable (%s); listing this instance only", v->err.msg);
    local_fallback(v);
    return;
  }
  if (v->limit && more_stored(v))
    return;
  v->page = ae_provision_domains_query_stored(app->provision, v->limit, v->has_after ? v->after : NULL,
                                              v->has_state ? v->state : NULL, v->refs, v->nrefs);
  v->list = json_is_array(v->page) ? v->page : json_object_get(v->page, "domains");
  free(v->refs);
  v->nrefs = json_array_size(v->list);
  v->refs = ae_calloc(v->nrefs + 1, sizeof(*v->refs));
  for (size_t i = 0; i < v->nrefs; i++) {
    const char *name = json_string_value(json_object_get(json_array_get(v->list, i), "domain"));
    snprintf(v->refs[i].domain, sizeof(v->refs[i].domain), "%s", name ? name : "");
  }
  v->phase = 2;
  if (uv_queue_work(&app->loop, &v->req, view_work, view_after) != 0)
    local_fallback(v);
}

static void after_info(view_req *v) {
  if (v->rc != 0) {
    AE_WARN(SUB, "domains list: shared storage not readable (%s); listing this instance only", v->err.msg);
    json_decref(v->page);
    v->page = NULL;
    local_fallback(v);
    return;
  }
  for (size_t i = 0; i < v->nrefs; i++) {
    json_t *d = json_array_get(v->list, i);
    const ae_storage_certref *r = &v->refs[i];
    json_object_set_new(d, "stored", json_boolean(r->version > 0));
    json_object_set_new(d, "version", r->version ? json_integer((json_int_t)r->version) : json_null());
    json_object_set_new(d, "issued_by", r->by[0] ? json_string(r->by) : json_null());
    if (r->version && !json_is_string(json_object_get(d, "not_after")) && r->not_after > 0) {
      char when[40];
      ae_time_rfc3339(r->not_after, when, sizeof(when));
      json_object_set_new(d, "not_after", json_string(when));
    }
  }
  app_add_ocsp_state(v->app, v->list);
  json_t *page = v->page;
  v->page = NULL;
  finish(v, 200, page);
}

static void view_after(uv_work_t *req, int status) {
  view_req *v = req->data;
  if (status != 0 || v->app->stopping || !v->app->provision) {
    finish(v, 503, json_pack("{s:s}", "error", "shutting down"));
    return;
  }
  if (v->phase == 1)
    after_index(v);
  else
    after_info(v);
}

int app_domains_view(void *ud, size_t limit, const char *after, const char *state, ae_admin_reply *reply) {
  ae_app *app = ud;
  if (!ae_storage_is_redis(app->storage) || !app->provision)
    return AE_EINVAL;
  view_req *v = ae_calloc(1, sizeof(*v));
  v->req.data = v;
  v->app = app;
  v->reply = reply;
  v->phase = 1;
  v->limit = limit;
  v->want = limit + 1;
  if (after) {
    v->has_after = 1;
    snprintf(v->after, sizeof(v->after), "%s", after);
    snprintf(v->cursor, sizeof(v->cursor), "%s", after);
  }
  if (state) {
    v->has_state = 1;
    snprintf(v->state, sizeof(v->state), "%s", state);
  }
  /* Only valid names are stored ones: another state needs no stored names. */
  v->skip_stored = state && *state && strcmp(state, "valid") != 0;
  if (uv_queue_work(&app->loop, &v->req, view_work, view_after) != 0) {
    free(v);
    return AE_EAGAIN;
  }
  return 0;
}
