/* The cluster-wide domains list (GET /v1/domains and `acmedge domains` on a Redis backend).
 * Shared storage is read in the thread pool, never on the loop: first the list of every stored
 * name (any instance's), merged on the loop with this instance's records into the requested page,
 * then the version and committing instance of the names on that page. If Redis does not answer,
 * the instance's own view is served, each name marked "stored": null (unknown). */
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
  json_t *page, *list; /* list: the array inside page (or page itself) */
  int rc;
  ae_err err;
} view_req;

static void view_work(uv_work_t *req) {
  view_req *v = req->data;
  if (v->phase == 1)
    v->rc = ae_storage_cert_index(v->app->storage, v->app->ca_host, &v->refs, &v->nrefs, &v->err);
  else
    v->rc = ae_storage_cert_info(v->app->storage, v->app->ca_host, v->refs, v->nrefs, &v->err);
}

static void view_after(uv_work_t *req, int status);

static void finish(view_req *v, int status, json_t *body) {
  ae_admin_reply_send(v->reply, status, body);
  json_decref(v->page);
  free(v->refs);
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

static void after_index(view_req *v) {
  ae_app *app = v->app;
  if (v->rc != 0) {
    AE_WARN(SUB, "domains list: shared storage not readable (%s); listing this instance only", v->err.msg);
    local_fallback(v);
    return;
  }
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
  if (after) {
    v->has_after = 1;
    snprintf(v->after, sizeof(v->after), "%s", after);
  }
  if (state) {
    v->has_state = 1;
    snprintf(v->state, sizeof(v->state), "%s", state);
  }
  if (uv_queue_work(&app->loop, &v->req, view_work, view_after) != 0) {
    free(v);
    return AE_EAGAIN;
  }
  return 0;
}
