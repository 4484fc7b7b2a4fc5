/* Test helper: serves the real admin API (events bus, SSE, /v1/domains, /metrics) with canned
 * domains and scripted events, so that the `acmedge events` / `acmedge domains` client can be
 * tested without a CA.
 *
 * usage: admin_stub ADDR [--token T] [--emit N] [--interval-ms MS] [--buffer N] [--restart-emit K]
 *   Prints "listening PORT" once the admin API is up. Emits N events, MS apart (default 3, 50 ms).
 *   SIGUSR1 closes the admin API (dropping every client), emits K more events while nobody is
 *   connected, then listens again on the same address. SIGTERM/SIGINT exit 0. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <uv.h>

#include "acmedge/admin.h"
#include "acmedge/events.h"
#include "acmedge/log.h"

static uv_loop_t g_loop;
static ae_events *g_ev;
static ae_admin *g_admin;
static ae_config g_cfg;
static uv_timer_t g_timer;
static uv_signal_t g_sig_term, g_sig_int, g_sig_usr1;
static unsigned g_to_emit, g_interval = 50, g_restart_emit;
static unsigned g_seq;
static int g_quitting;

static const char *const k_types[] = {"domain_requested", "issuance_started", "challenge_ready",
                                      "challenge_valid",  "cert_issued",      "cert_installed"};

static void emit_one(void) {
  const char *type = k_types[g_seq % 6];
  json_t *d = NULL;
  if (strcmp(type, "domain_requested") == 0)
    d = json_pack("{s:s}", "source", "sni");
  else if (strcmp(type, "challenge_ready") == 0)
    d = json_pack("{s:s}", "type", "http-01");
  else if (strcmp(type, "cert_issued") == 0)
    d = json_pack("{s:s,s:s}", "serial", "0a1b2c", "not_after", "2030-01-01T00:00:00Z");
  ae_events_emit(g_ev, type, "stub.example.test", d);
  g_seq++;
}

static void on_tick(uv_timer_t *t) {
  if (!g_to_emit) {
    uv_timer_stop(t);
    return;
  }
  emit_one();
  g_to_emit--;
}

static json_t *list_domains(void *ud) {
  (void)ud;
  char na[32], ra[32];
  time_t now = time(NULL);
  ae_time_rfc3339((int64_t)now + 60 * 86400 + 3600, na, sizeof(na));
  ae_time_rfc3339((int64_t)now + 3600, ra, sizeof(ra));
  return json_pack("[{s:s,s:s,s:s,s:s,s:n,s:n},{s:s,s:s,s:n,s:n,s:s,s:s}]", "domain", "a.example.test", "state",
                   "valid", "not_after", na, "issuer", "acme", "last_error", "retry_at", "domain",
                   "b.example.test", "state", "failed", "not_after", "issuer", "last_error",
                   "urn:ietf:params:acme:error:rejectedIdentifier: blocked", "retry_at", ra);
}

static int add_domain(void *ud, const char *name, ae_err *err) {
  (void)ud;
  if (strstr(name, "denied"))
    return ae_err_set(err, AE_ELIMIT, "'%s' matches no on_demand.allow pattern", name);
  ae_events_emit(g_ev, "domain_requested", name, json_pack("{s:s}", "source", "api"));
  return 0;
}

static int delete_domain(void *ud, const char *name, ae_err *err) {
  (void)ud;
  return ae_err_set(err, AE_ENOTFOUND, "'%s' is not managed", name);
}

static int start_admin(void) {
  ae_admin_hooks hooks = {.list_domains = list_domains, .add_domain = add_domain, .delete_domain = delete_domain};
  ae_err err = {0, ""};
  if (ae_admin_new(&g_loop, &g_cfg, g_ev, &hooks, &g_admin, &err) != 0) {
    fprintf(stderr, "admin_stub: %s\n", err.msg);
    return -1;
  }
  int port = ae_admin_port(g_admin);
  /* Listen again on the same port after a SIGUSR1 restart, even when ":0" picked it. */
  static char fixed[300];
  size_t n = strlen(g_cfg.listen_admin);
  if (port > 0 && n > 2 && strcmp(g_cfg.listen_admin + n - 2, ":0") == 0 && n < 280) {
    snprintf(fixed, sizeof(fixed), "%.*s:%d", (int)(n - 2), g_cfg.listen_admin, port);
    g_cfg.listen_admin = fixed;
  }
  printf("listening %d\n", port);
  fflush(stdout);
  return 0;
}

static void on_admin_closed_for_restart(void *ud) {
  (void)ud;
  ae_admin_free(g_admin);
  g_admin = NULL;
  for (unsigned i = 0; i < g_restart_emit; i++)
    emit_one();
  if (start_admin() != 0)
    exit(1);
}

static void on_admin_closed_for_exit(void *ud) {
  (void)ud;
  ae_admin_free(g_admin);
  g_admin = NULL;
  uv_close((uv_handle_t *)&g_timer, NULL);
  uv_close((uv_handle_t *)&g_sig_term, NULL);
  uv_close((uv_handle_t *)&g_sig_int, NULL);
  uv_close((uv_handle_t *)&g_sig_usr1, NULL);
}

static void on_signal(uv_signal_t *s, int signum) {
  (void)s;
  if (g_quitting || !g_admin)
    return;
  if (signum == SIGUSR1) {
    ae_admin_close(g_admin, on_admin_closed_for_restart, NULL);
    return;
  }
  g_quitting = 1;
  ae_admin_close(g_admin, on_admin_closed_for_exit, NULL);
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: admin_stub ADDR [--token T] [--emit N] [--interval-ms MS] [--buffer N] [--restart-emit K]\n");
    return 2;
  }
  unsigned buffer = 1024;
  g_to_emit = 3;
  g_cfg.listen_admin = argv[1];
  for (int i = 2; i + 1 < argc; i += 2) {
    if (strcmp(argv[i], "--token") == 0)
      g_cfg.admin_token = argv[i + 1];
    else if (strcmp(argv[i], "--emit") == 0)
      g_to_emit = (unsigned)atoi(argv[i + 1]);
    else if (strcmp(argv[i], "--interval-ms") == 0)
      g_interval = (unsigned)atoi(argv[i + 1]);
    else if (strcmp(argv[i], "--buffer") == 0)
      buffer = (unsigned)atoi(argv[i + 1]);
    else if (strcmp(argv[i], "--restart-emit") == 0)
      g_restart_emit = (unsigned)atoi(argv[i + 1]);
    else {
      fprintf(stderr, "admin_stub: unknown option %s\n", argv[i]);
      return 2;
    }
  }
  signal(SIGPIPE, SIG_IGN);
  ae_log_set_level(AE_LOG_DEBUG);
  uv_loop_init(&g_loop);
  ae_events_new(buffer, &g_ev);
  if (start_admin() != 0)
    return 1;
  uv_timer_init(&g_loop, &g_timer);
  uv_timer_start(&g_timer, on_tick, g_interval, g_interval ? g_interval : 1);
  uv_signal_init(&g_loop, &g_sig_term);
  uv_signal_init(&g_loop, &g_sig_int);
  uv_signal_init(&g_loop, &g_sig_usr1);
  uv_signal_start(&g_sig_term, on_signal, SIGTERM);
  uv_signal_start(&g_sig_int, on_signal, SIGINT);
  uv_signal_start(&g_sig_usr1, on_signal, SIGUSR1);
  uv_run(&g_loop, UV_RUN_DEFAULT);
  uv_loop_close(&g_loop);
  ae_events_free(g_ev);
  return 0;
}
