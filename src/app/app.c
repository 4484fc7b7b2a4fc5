/* Process run loop: config -> one event loop; signals for reload, log reopen and graceful stop,
 * service-manager notifications and watchdog. Module start-up and hook wiring live in app_start.c. */
#include "acmedge/app.h"

#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "app_internal.h"
#include "acmedge/cluster.h"

#define DRAIN_TIMEOUT_MS 10000u

static void apply_log_config(const ae_config *cfg) {
  ae_log_set_level((ae_log_level)cfg->log.level);
  ae_log_set_json(cfg->log.json);
}

/* ---- reload and stop ---- */

/* Tells the service manager (if any) about a state change; failures are logged, never fatal. */
static void notify(const char *state) {
  ae_err err = {0};
  if (ae_sd_notify(state, &err) < 0)
    AE_WARN(SUB, "service manager notification failed: %s", err.msg);
}

static void notify_reloading(void) {
  char msg[96];
  uint64_t now_us = uv_hrtime() / 1000u;
  /* systemd's Type=notify-reload wants the CLOCK_MONOTONIC time (uv_hrtime's clock). */
  snprintf(msg, sizeof(msg), "RELOADING=1\nMONOTONIC_USEC=%" PRIu64 "\nSTATUS=reloading", now_us);
  notify(msg);
}

static void on_watchdog(uv_timer_t *t) {
  (void)t;
  notify("WATCHDOG=1");
}

/* Pings at half the interval the service manager asked for, so one late tick is not fatal. */
static void watchdog_start(ae_app *app) {
  uint64_t usec = 0;
  ae_err err = {0};
  if (ae_sd_watchdog_usec(&usec, &err) != 0) {
    AE_WARN(SUB, "watchdog disabled: %s", err.msg);
    return;
  }
  if (usec == 0)
    return;
  uint64_t ms = usec / 2000u;
  if (ms == 0)
    ms = 1;
  uv_timer_init(&app->loop, &app->watchdog);
  app->watchdog_on = 1;
  uv_timer_start(&app->watchdog, on_watchdog, ms, ms);
  AE_INFO(SUB, "watchdog: pinging the service manager every %" PRIu64 " ms", ms);
}

/* Reopens log.file after logrotate moved it (SIGUSR1). */
static void reopen_log(ae_app *app) {
  if (!app->cfg->log.file) {
    AE_INFO(SUB, "SIGUSR1: no log.file configured, logging to stderr");
    return;
  }
  ae_err err = {0};
  if (ae_log_file_open(app->cfg->log.file, &err) != 0)
    AE_ERROR(SUB, "cannot reopen the log file: %s", err.msg);
  else
    AE_INFO(SUB, "log file reopened: %s", app->cfg->log.file);
}

static void reload(ae_app *app) {
  ae_config *ncfg = NULL;
  ae_err err = {0};
  notify_reloading();
  if (ae_config_load(app->cfg->path, &ncfg, &err) != 0) {
    AE_ERROR(SUB, "reload refused, keeping the running configuration: %s", err.msg);
    notify("READY=1\nSTATUS=running (reload refused, see the log)");
    return;
  }
  if (ncfg->log.file && (!app->cfg->log.file || strcmp(ncfg->log.file, app->cfg->log.file) != 0) &&
      ae_log_file_open(ncfg->log.file, &err) != 0) {
    AE_ERROR(SUB, "reload refused, keeping the running configuration: %s", err.msg);
    ae_config_free(ncfg);
    notify("READY=1\nSTATUS=running (reload refused, see the log)");
    return;
  }
  const ae_config *o = app->cfg;
#define SAME(a, b) (((a) == NULL && (b) == NULL) || ((a) && (b) && strcmp((a), (b)) == 0))
  if (!SAME(o->listen_https, ncfg->listen_https) || !SAME(o->listen_http, ncfg->listen_http) ||
      !SAME(o->listen_admin, ncfg->listen_admin) || !SAME(o->storage_path, ncfg->storage_path) ||
      !SAME(o->acme.directory, ncfg->acme.directory))
    AE_WARN(SUB, "reload: listen addresses, storage.path and acme.* apply only after a restart");
  if (o->internal_ca.enabled != ncfg->internal_ca.enabled)
    AE_WARN(SUB, "reload: internal_ca.enabled applies only after a restart");
#undef SAME
  apply_log_config(ncfg);
  ae_events_set_buffer(app->events, ncfg->events.buffer);
  ae_hook_set_config(app->hook, ncfg);
  ae_policy_set_config(app->policy, ncfg);
  ae_provision_set_config(app->provision, ncfg);
  ae_ocsp_set_config(app->ocsp, ncfg);
  ae_tls_set_staples(ae_ocsp_staples(app->ocsp));
  ae_proxy_set_config(app->proxy, ncfg);
  ae_workers_set_config(app->workers, ncfg);
  if (app->front)
    ae_tls_front_set_config(app->front, ncfg);
  ae_err lerr = {0};
  if (ae_limits_global_configure(ncfg, &lerr) != 0)
    AE_ERROR(SUB, "reload: limits: %s", lerr.msg);
  if (app->http80)
    ae_http80_set_config(app->http80, ncfg);
  if (app->admin)
    ae_admin_set_config(app->admin, ncfg);
  ae_tok_runtime_set_config(ncfg);
  ae_config_free(app->cfg);
  app->cfg = ncfg;
  AE_INFO(SUB, "configuration reloaded from %s", ncfg->path);
  ae_events_emit(app->events, "config_reloaded", NULL, NULL);
  notify("READY=1\nSTATUS=running");
}

static void closed_one(void *ud) {
  ae_app *app = ud;
  app->pending_closes--;
}

static void close_rest(ae_app *app) {
  if (app->proxy) {
    app->pending_closes++;
    ae_proxy_close(app->proxy, closed_one, app);
  }
  if (app->provision) {
    app->pending_closes++;
    ae_provision_close(app->provision, closed_one, app);
  }
  if (app->cluster) {
    app->pending_closes++;
    ae_cluster_close(app->cluster, closed_one, app);
  }
  if (app->acme) {
    app->pending_closes++;
    ae_acme_close(app->acme, closed_one, app);
  }
  if (app->policy) {
    app->pending_closes++;
    ae_policy_close(app->policy, closed_one, app);
  }
  if (app->hook) {
    app->pending_closes++;
    ae_hook_close(app->hook, closed_one, app);
  }
  if (app->ocsp) {
    app->pending_closes++;
    ae_ocsp_close(app->ocsp, closed_one, app);
  }
  if (app->ca_rotor) {
    app->pending_closes++;
    ae_ca_rotor_close(app->ca_rotor, closed_one, app);
  }
}

static void front_closed(void *ud) {
  ae_app *app = ud;
  app->pending_closes--;
  close_rest(app);
}

static void stop(ae_app *app) {
  if (app->stopping)
    return;
  app->stopping = 1;
  ae_tok_relay_detach();
  notify("STOPPING=1\nSTATUS=draining connections");
  if (app->watchdog_on)
    uv_close((uv_handle_t *)&app->watchdog, NULL);
  AE_INFO(SUB, "stopping: no new connections, draining open ones (up to %u ms)", DRAIN_TIMEOUT_MS);
  if (app->signals_on) {
    uv_close((uv_handle_t *)&app->sig_term, NULL);
    uv_close((uv_handle_t *)&app->sig_int, NULL);
    uv_close((uv_handle_t *)&app->sig_hup, NULL);
    uv_close((uv_handle_t *)&app->sig_usr1, NULL);
  }
  if (app->admin) {
    app->pending_closes++;
    ae_admin_close(app->admin, closed_one, app);
  }
  ae_workers_stop(app->workers, DRAIN_TIMEOUT_MS);
  if (app->http80) {
    app->pending_closes++;
    ae_http80_close(app->http80, closed_one, app);
  }
  if (app->proxy)
    ae_proxy_drain(app->proxy);
  if (app->front) {
    app->pending_closes++;
    ae_tls_front_close(app->front, DRAIN_TIMEOUT_MS, front_closed, app);
  } else {
    close_rest(app);
  }
}

static void on_signal(uv_signal_t *h, int signum) {
  ae_app *app = h->data;
  if (signum == SIGHUP)
    reload(app);
  else if (signum == SIGUSR1)
    reopen_log(app);
  else
    stop(app);
}

static void free_modules(ae_app *app) {
  ae_admin_free(app->admin);
  ae_tok_runtime_shutdown();
  ae_http80_free(app->http80);
  ae_tls_front_free(app->front);
  ae_proxy_free(app->proxy);
  ae_provision_free(app->provision);
  ae_tls_set_staples(NULL);
  ae_ocsp_free(app->ocsp);
  ae_acme_free(app->acme);
  ae_policy_free(app->policy);
  ae_hook_free(app->hook);
  ae_challenge_free(app->challenges);
  ae_events_free(app->events);
  ae_certstore_free(app->certs);
  ae_leafcache_free(app->leaves);
  ae_ca_rotor_free(app->ca_rotor);
  ae_ca_free(app->ca);
  ae_cluster_free(app->cluster);
  ae_storage_free(app->storage);
  ae_limits_global_free();
  ae_config_free(app->cfg);
}

int ae_app_run(const char *config_path) {
  ae_app app;
  memset(&app, 0, sizeof(app));
  ae_err err = {0};
  if (ae_config_load(config_path, &app.cfg, &err) != 0) {
    fprintf(stderr, "%s\n", err.msg);
    return 1;
  }
  apply_log_config(app.cfg);
  if (app.cfg->log.file && ae_log_file_open(app.cfg->log.file, &err) != 0) {
    fprintf(stderr, "acmedge: %s\n", err.msg);
    ae_config_free(app.cfg);
    return 1;
  }
  signal(SIGPIPE, SIG_IGN);
  uv_loop_init(&app.loop);
  int rc = 0;
  if (app_start(&app, &err) != 0) {
    AE_ERROR(SUB, "cannot start: %s", err.msg);
    fprintf(stderr, "acmedge: cannot start: %s\n", err.msg);
    rc = 1;
    stop(&app);
  } else {
    uv_signal_init(&app.loop, &app.sig_term);
    uv_signal_init(&app.loop, &app.sig_int);
    uv_signal_init(&app.loop, &app.sig_hup);
    uv_signal_init(&app.loop, &app.sig_usr1);
    app.sig_term.data = app.sig_int.data = app.sig_hup.data = app.sig_usr1.data = &app;
    uv_signal_start(&app.sig_term, on_signal, SIGTERM);
    uv_signal_start(&app.sig_int, on_signal, SIGINT);
    uv_signal_start(&app.sig_hup, on_signal, SIGHUP);
    uv_signal_start(&app.sig_usr1, on_signal, SIGUSR1);
    app.signals_on = 1;
    AE_INFO(SUB, "acmedge %s running (pid %ld, config %s)", AE_VERSION, (long)getpid(), app.cfg->path);
    /* Every listener is bound by now: clients may connect as soon as the manager hears this. */
    char ready[64];
    snprintf(ready, sizeof(ready), "READY=1\nSTATUS=running\nMAINPID=%ld", (long)getpid());
    notify(ready);
    watchdog_start(&app);
  }
  uv_run(&app.loop, UV_RUN_DEFAULT);
  ae_workers_join_free(app.workers);
  free_modules(&app);
  int lc = uv_loop_close(&app.loop);
  if (lc != 0)
    AE_WARN(SUB, "event loop closed with handles still open (%s)", uv_strerror(lc));
  if (rc == 0)
    AE_INFO(SUB, "stopped");
  return rc;
}
