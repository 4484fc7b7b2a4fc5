/* Private to src/app/: the process state shared by the run loop (app.c) and start-up (app_start.c). */
#ifndef ACMEDGE_APP_INTERNAL_H
#define ACMEDGE_APP_INTERNAL_H

#include <uv.h>

#include "acmedge/acme.h"
#include "acmedge/admin.h"
#include "acmedge/ca.h"
#include "acmedge/tokens.h"
#include "acmedge/certstore.h"
#include "acmedge/challenge.h"
#include "acmedge/config.h"
#include "acmedge/events.h"
#include "acmedge/hook.h"
#include "acmedge/http80.h"
#include "acmedge/limits.h"
#include "acmedge/log.h"
#include "acmedge/log_file.h"
#include "acmedge/ocsp.h"
#include "acmedge/policy.h"
#include "acmedge/provision.h"
#include "acmedge/proxy.h"
#include "acmedge/sdnotify.h"
#include "acmedge/storage.h"
#include "acmedge/tls_front.h"
#include "acmedge/workers.h"

#define SUB "main"

typedef struct ae_app {
  uv_loop_t loop;
  ae_config *cfg;
  char ca_host[256];
  ae_storage *storage;
  ae_certstore *certs;
  ae_events *events;
  ae_hook *hook;
  ae_challenge *challenges;
  ae_policy *policy;
  ae_acme *acme;
  ae_provision *provision;
  ae_proxy *proxy;
  ae_tls_front *front;
  ae_http80 *http80;
  ae_admin *admin;
  ae_workers *workers;
  ae_ca *ca;                 /* internal CA, NULL unless internal_ca.enabled */
  ae_ca_rotor *ca_rotor;     /* the intermediate's renewal timer (with ca) */
  ae_leafcache *leaves;      /* minted fallback leaves (on_demand.fallback_cert "internal") */
  ae_ocsp *ocsp;
  struct ae_cluster *cluster; /* storage.type "redis": change feed and availability, else NULL */
  uv_signal_t sig_term, sig_int, sig_hup, sig_usr1;
  uv_timer_t watchdog;
  int watchdog_on;
  int stopping;
  int signals_on;
  unsigned pending_closes;
} ae_app;

/* Creates every module from app->cfg and binds the listeners, wiring each module's hooks to the
 * owner of the decision; on failure err is set and the caller stops what was started (app owns all). */
int app_start(ae_app *app, ae_err *err);

/* Adds the OCSP object of each listed name whose certificate is in memory (app_start.c). */
void app_add_ocsp_state(ae_app *app, json_t *list);
/* Admin hook list_domains_async: on a Redis backend, GET /v1/domains lists every instance's
 * stored certificates with their version and committing instance (app_view.c); else AE_EINVAL. */
int app_domains_view(void *ud, size_t limit, const char *after, const char *state, ae_admin_reply *reply);

#endif
