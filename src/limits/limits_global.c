/* The process-wide limits table shared by every listener thread, and the hooks the TLS listener
 * calls: each refusal is counted in a metric and logged, at most LIM_LOG_PER_S lines a second so
 * that a flood cannot turn into a log flood. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>

#include "acmedge/config.h"
#include "acmedge/limits.h"
#include "acmedge/log.h"
#include "acmedge/metrics.h"

#define LIM_LOG_PER_S 5

static ae_limits *g_limits;
static _Atomic int g_active; /* any limit configured: skip the table otherwise */
/* The running snapshot, for trusted_proxies on PROXY protocol listeners. */
static pthread_mutex_t g_cfg_lock = PTHREAD_MUTEX_INITIALIZER;
static ae_config *g_cfg;

static pthread_mutex_t g_log_lock = PTHREAD_MUTEX_INITIALIZER;
static uint64_t g_log_window;
static unsigned g_log_count, g_log_dropped;

void ae_limits_conf_from_config(const ae_config *cfg, ae_limits_conf *conf) {
  conf->per_ip_connections = cfg->limits.per_ip_connections;
  conf->per_ip_handshakes_per_s = cfg->limits.per_ip_handshakes_per_s;
  conf->per_ip_new_names_per_min = cfg->limits.per_ip_new_names_per_min;
  conf->table_entries = cfg->limits.table_entries;
}

ae_config *ae_limits_global_config(void) {
  pthread_mutex_lock(&g_cfg_lock);
  ae_config *cfg = g_cfg ? ae_config_ref(g_cfg) : NULL;
  pthread_mutex_unlock(&g_cfg_lock);
  return cfg;
}

int ae_limits_global_configure(const ae_config *cfg, ae_err *err) {
  pthread_mutex_lock(&g_cfg_lock);
  ae_config *old = g_cfg;
  g_cfg = ae_config_ref((ae_config *)cfg);
  pthread_mutex_unlock(&g_cfg_lock);
  ae_config_free(old);
  ae_limits_conf conf;
  ae_limits_conf_from_config(cfg, &conf);
  int on = conf.per_ip_connections || conf.per_ip_handshakes_per_s || conf.per_ip_new_names_per_min;
  if (!g_limits) {
    if (!on)
      return 0;
    int r = ae_limits_new(&conf, &g_limits, err);
    if (r != 0)
      return r;
  } else {
    ae_limits_set_conf(g_limits, &conf);
  }
  atomic_store(&g_active, on);
  return 0;
}

void ae_limits_global_free(void) {
  pthread_mutex_lock(&g_cfg_lock);
  ae_config *old = g_cfg;
  g_cfg = NULL;
  pthread_mutex_unlock(&g_cfg_lock);
  ae_config_free(old);
  atomic_store(&g_active, 0);
  ae_limits_free(g_limits);
  g_limits = NULL;
}

/* True when this line may be logged now: at most LIM_LOG_PER_S a second process-wide. */
static int lim_log_allowed(void) {
  uint64_t now_s = ae_now_ms() / 1000;
  unsigned dropped = 0;
  int log_it = 0;
  pthread_mutex_lock(&g_log_lock);
  if (now_s != g_log_window) {
    dropped = g_log_dropped;
    g_log_window = now_s;
    g_log_count = 0;
    g_log_dropped = 0;
  }
  if (g_log_count < LIM_LOG_PER_S) {
    g_log_count++;
    log_it = 1;
  } else {
    g_log_dropped++;
  }
  pthread_mutex_unlock(&g_log_lock);
  if (dropped)
    AE_WARN("limits", "%u more client(s) refused in the previous second (log capped)", dropped);
  return log_it;
}

void ae_limits_log_refusal(const struct sockaddr *peer, const char *what) {
  if (!lim_log_allowed())
    return;
  char ip[INET6_ADDRSTRLEN] = "?";
  if (peer->sa_family == AF_INET)
    inet_ntop(AF_INET, &((const struct sockaddr_in *)peer)->sin_addr, ip, sizeof(ip));
  else if (peer->sa_family == AF_INET6)
    inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)peer)->sin6_addr, ip, sizeof(ip));
  AE_WARN("limits", "%s: closing: %s", ip, what);
}

static void lim_refused(const struct sockaddr *peer, ae_limit_kind kind, const char *name) {
  ae_metrics_count_label("limited", ae_limit_name(kind));
  if (!lim_log_allowed())
    return;
  char ip[INET6_ADDRSTRLEN] = "?";
  if (peer->sa_family == AF_INET)
    inet_ntop(AF_INET, &((const struct sockaddr_in *)peer)->sin_addr, ip, sizeof(ip));
  else if (peer->sa_family == AF_INET6)
    inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)peer)->sin6_addr, ip, sizeof(ip));
  if (name)
    AE_WARN("limits", "%s: closing: %s exceeded for new name %s", ip, ae_limit_name(kind), name);
  else
    AE_WARN("limits", "%s: closing: %s exceeded", ip, ae_limit_name(kind));
}

int ae_limits_admit(const struct sockaddr *peer, uint32_t *ticket) {
  *ticket = 0;
  if (!peer || !atomic_load_explicit(&g_active, memory_order_relaxed))
    return 0;
  ae_limit_kind kind;
  int r = ae_limits_conn_open(g_limits, peer, ae_now_ms(), ticket, &kind);
  if (r != 0)
    lim_refused(peer, kind, NULL);
  return r;
}

void ae_limits_release(uint32_t ticket) {
  if (ticket)
    ae_limits_conn_close(g_limits, ticket);
}

int ae_limits_admit_name(const struct sockaddr *peer, const char *name) {
  if (!peer || !atomic_load_explicit(&g_active, memory_order_relaxed))
    return 0;
  int r = ae_limits_new_name(g_limits, peer, ae_now_ms());
  if (r != 0)
    lim_refused(peer, AE_LIMIT_NEW_NAMES, name);
  return r;
}
