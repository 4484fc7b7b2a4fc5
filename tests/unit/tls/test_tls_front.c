/* tls_front: real handshakes against the listener on 127.0.0.1:0. The loop runs in its own thread;
 * the test thread drives blocking GnuTLS clients and posts actions to the loop through an async. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "acmedge/certstore.h"
#include "acmedge/config.h"
#include "acmedge/log.h"
#include "acmedge/metrics.h"
#include "acmedge/tls_front.h"
#include "certstore_test_util.h"

/* ---- certificates, made once ------------------------------------------------------------- */

static ae_cert *g_default, *g_a, *g_wild, *g_held, *g_chal, *g_swap1, *g_swap2, *g_rsa;

static ae_cert *make_cert(const char *cn, const char *name) {
  char *cp = NULL, *kp = NULL;
  ae_err err = {0};
  const char *names[1] = {name};
  assert_int_equal(ae_cert_generate_selfsigned(cn, name ? names : NULL, name ? 1 : 0, 30, &cp, &kp, &err), 0);
  ae_cert *c = NULL;
  assert_int_equal(ae_cert_from_pem(cp, strlen(cp), kp, strlen(kp), &c, &err), 0);
  free(cp);
  free(kp);
  return c;
}

static int group_setup(void **state) {
  (void)state;
  ae_log_set_level(getenv("AE_TEST_DEBUG") ? AE_LOG_DEBUG : AE_LOG_WARN);
  g_default = make_cert("acmedge default", NULL);
  g_a = make_cert("a.example.test", "a.example.test");
  g_wild = make_cert("*.wild.example.test", "*.wild.example.test");
  g_held = make_cert("hold1.example.test", "hold1.example.test");
  g_chal = make_cert("chal.example.test", "chal.example.test");
  g_swap1 = make_cert("swap one", "swap.example.test");
  g_swap2 = make_cert("swap two", "swap.example.test");
  char *cp = NULL, *kp = NULL;
  ae_err err = {0};
  assert_int_equal(ae_test_make_rsa_cert("rsa.example.test", "rsa.example.test", 2048, &cp, &kp), 0);
  assert_int_equal(ae_cert_from_pem(cp, strlen(cp), kp, strlen(kp), &g_rsa, &err), 0);
  free(cp);
  free(kp);
  return 0;
}

static int group_teardown(void **state) {
  (void)state;
  ae_cert_unref(g_default);
  ae_cert_unref(g_a);
  ae_cert_unref(g_wild);
  ae_cert_unref(g_held);
  ae_cert_unref(g_chal);
  ae_cert_unref(g_swap1);
  ae_cert_unref(g_swap2);
  ae_cert_unref(g_rsa);
  return 0;
}

/* ---- the server side: loop thread, front, hooks ------------------------------------------ */

typedef struct job {
  void (*fn)(void *);
  void *arg;
  int done;
} job;

static struct {
  uv_loop_t loop;
  uv_async_t async;
  pthread_t thread;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  job *job;
  ae_config cfg;
  ae_certstore *cs;
  ae_tls_front *front;
  int port;
  int use_echo;        /* on_established hook installed */
  int front_closed;    /* close callback ran */
  atomic_int misses;
  atomic_int closes;   /* on_close of handed-over transports */
  atomic_int established;
  atomic_int late_ready;   /* hook_chal has an answer for "late*" names (looked up elsewhere) */
  atomic_int alpn_misses;
} S;

static void async_cb(uv_async_t *a) {
  (void)a;
  pthread_mutex_lock(&S.mu);
  job *j = S.job;
  S.job = NULL;
  pthread_mutex_unlock(&S.mu);
  if (!j)
    return;
  j->fn(j->arg);
  pthread_mutex_lock(&S.mu);
  j->done = 1;
  pthread_cond_broadcast(&S.cv);
  pthread_mutex_unlock(&S.mu);
}

/* Runs fn(arg) on the loop thread and waits for it. */
static void on_loop(void (*fn)(void *), void *arg) {
  job j = {fn, arg, 0};
  pthread_mutex_lock(&S.mu);
  while (S.job)
    pthread_cond_wait(&S.cv, &S.mu);
  S.job = &j;
  pthread_mutex_unlock(&S.mu);
  uv_async_send(&S.async);
  pthread_mutex_lock(&S.mu);
  while (!j.done)
    pthread_cond_wait(&S.cv, &S.mu);
  pthread_mutex_unlock(&S.mu);
}

static void *loop_main(void *arg) {
  (void)arg;
  uv_run(&S.loop, UV_RUN_DEFAULT);
  return NULL;
}

static ae_miss_action hook_miss(void *ud, const char *name) {
  (void)ud;
  atomic_fetch_add(&S.misses, 1);
  if (strncmp(name, "hold", 4) == 0)
    return AE_MISS_HOLD;
  if (strncmp(name, "alert", 5) == 0)
    return AE_MISS_ALERT;
  return AE_MISS_DEFAULT;
}

static ae_cert *hook_chal(void *ud, const char *name) {
  (void)ud;
  if (strncmp(name, "late", 4) == 0 && atomic_load(&S.late_ready))
    return ae_cert_ref(g_chal);
  return strcmp(name, "chal.example.test") == 0 ? ae_cert_ref(g_chal) : NULL;
}

/* "late*" names have their acme-tls/1 answer looked up elsewhere (shared storage). */
static int hook_alpn_miss(void *ud, const char *name) {
  (void)ud;
  atomic_fetch_add(&S.alpn_misses, 1);
  return strncmp(name, "late", 4) == 0;
}

/* The upper layer used by most tests: echoes every byte back. */
static void echo_read(void *ud, const char *data, ssize_t n) {
  ae_transport *t = ud;
  if (n < 0) {
    ae_transport_close(t);
    return;
  }
  ae_transport_write(t, data, (size_t)n);
}

static void echo_close(void *ud) {
  (void)ud;
  atomic_fetch_add(&S.closes, 1);
}

static void hook_established(void *ud, ae_transport *t) {
  (void)ud;
  if (t->is_tls && t->sni[0])
    atomic_fetch_add(&S.established, 1);
  t->ud = t;
  t->on_read = echo_read;
  t->on_close = echo_close;
}

static int start_server(int echo) {
  memset(&S, 0, sizeof(S));
  pthread_mutex_init(&S.mu, NULL);
  pthread_cond_init(&S.cv, NULL);
  S.use_echo = echo;
  S.cfg.listen_https = "127.0.0.1:0";
  S.cfg.tls.handshake_timeout_ms = 5000;
  S.cfg.tls.idle_timeout_ms = 20000;
  S.cfg.on_demand.wait_timeout_ms = 10000;
  S.cfg.on_demand.max_held = 10;
  if (ae_certstore_new(&S.cs) != 0)
    return -1;
  ae_certstore_set_default(S.cs, g_default);
  ae_certstore_put(S.cs, "a.example.test", g_a);
  ae_certstore_put(S.cs, "*.wild.example.test", g_wild);
  ae_certstore_put(S.cs, "rsa.example.test", g_rsa);
  if (uv_loop_init(&S.loop) != 0 || uv_async_init(&S.loop, &S.async, async_cb) != 0)
    return -1;
  ae_tls_front_hooks hooks = {.on_miss = hook_miss, .alpn_challenge_cert = hook_chal, .alpn_miss = hook_alpn_miss,
                              .on_established = echo ? hook_established : NULL};
  ae_err err = {0};
  if (ae_tls_front_new(&S.loop, &S.cfg, S.cs, &hooks, &S.front, &err) != 0) {
    fprintf(stderr, "front: %s\n", err.msg);
    return -1;
  }
  S.port = ae_tls_front_port(S.front);
  if (S.port <= 0)
    return -1;
  return pthread_create(&S.thread, NULL, loop_main, NULL);
}

static void front_closed_cb(void *ud) {
  (void)ud;
  S.front_closed = 1;
  uv_close((uv_handle_t *)&S.async, NULL);
}

static void do_close_front(void *arg) {
  ae_tls_front_close(S.front, (unsigned)(uintptr_t)arg, front_closed_cb, NULL);
}

/* Closes the front (bounded by timeout_ms) and ends the loop thread; 0 when everything closed. */
static int stop_server(unsigned timeout_ms) {
  if (!S.front_closed && S.front) {
    on_loop(do_close_front, (void *)(uintptr_t)timeout_ms);
  }
  pthread_join(S.thread, NULL);
  int rc = uv_loop_close(&S.loop);
  ae_tls_front_free(S.front);
  S.front = NULL;
  ae_certstore_free(S.cs);
  pthread_mutex_destroy(&S.mu);
  pthread_cond_destroy(&S.cv);
  return rc == 0 && S.front_closed ? 0 : -1;
}

static int setup_echo(void **state) {
  (void)state;
  return start_server(1);
}

static int setup_hello(void **state) {
  (void)state;
  return start_server(0);
}

static int teardown(void **state) {
  (void)state;
  return stop_server(2000);
}

typedef struct {
  unsigned u;
  const char *name;
} arg_t;

static void get_held(void *arg) {
  ((arg_t *)arg)->u = ae_tls_front_held(S.front);
}

static void get_open(void *arg) {
  ((arg_t *)arg)->u = ae_tls_front_open_connections(S.front);
}

static void do_wake(void *arg) {
  ae_tls_front_wake(S.front, ((arg_t *)arg)->name);
}

static void do_wake_alpn(void *arg) {
  ae_tls_front_wake_alpn(S.front, ((arg_t *)arg)->name);
}

static void set_cfg(void *arg) {
  (void)arg;
  ae_tls_front_set_config(S.front, &S.cfg);
}

static unsigned held_now(void) {
  arg_t a = {0, NULL};
  on_loop(get_held, &a);
  return a.u;
}

static unsigned open_now(void) {
  arg_t a = {0, NULL};
  on_loop(get_open, &a);
  return a.u;
}

static void sleep_ms(unsigned ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

/* Polls a metric until it reaches at least want (the server counts after the client is done). */
static int wait_metric(ae_metric m, int64_t want) {
  for (int i = 0; i < 300; i++) {
    if (ae_metrics_get(m) >= want)
      return 1;
    sleep_ms(10);
  }
  return 0;
}

static unsigned wait_open(unsigned want) {
  unsigned n = 0;
  for (int i = 0; i < 300; i++) {
    n = open_now();
    if (n == want)
      break;
    sleep_ms(10);
  }
  return n;
}

/* ---- the client side ----------------------------------------------------------------------- */

typedef struct client {
  const char *sni;
  const char *prio;       /* NULL = "NORMAL" */
  const char *alpn;       /* offered ALPN protocol or NULL */
  const gnutls_datum_t *resume; /* session data to resume, or NULL */
  int byte_by_byte;       /* write the handshake one byte per segment */
  int split_hello;        /* send the ClientHello as two TLS records */
  int sent_hello;
  int fd;
  gnutls_session_t s;
  gnutls_certificate_credentials_t cred;
  int rc;                 /* handshake result */
  char cn[256];
  char alpn_sel[32];
} client;

static int tcp_connect(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0)
    return -1;
  struct timeval tv = {5, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  struct sockaddr_in sa;
  memset(&sa, 0, sizeof(sa));
  sa.sin_family = AF_INET;
  sa.sin_port = htons((uint16_t)port);
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

static int send_all(int fd, const void *p, size_t n) {
  const char *c = p;
  while (n > 0) {
    ssize_t r = send(fd, c, n, MSG_NOSIGNAL);
    if (r <= 0)
      return -1;
    c += r;
    n -= (size_t)r;
  }
  return 0;
}

static ssize_t client_push(gnutls_transport_ptr_t p, const void *data, size_t len) {
  client *cl = p;
  const uint8_t *d = data;
  size_t body = len > 5 ? ((size_t)d[3] << 8) | d[4] : 0;
  if (cl->split_hello && !cl->sent_hello && len > 45 && d[0] == 22 && len == body + 5) {
    /* Re-frame the ClientHello record into two records, cutting the message after 40 bytes. */
    uint8_t h1[5] = {22, d[1], d[2], 0, 40};
    uint8_t h2[5] = {22, d[1], d[2], (uint8_t)((body - 40) >> 8), (uint8_t)((body - 40) & 0xff)};
    cl->sent_hello = 1;
    if (send_all(cl->fd, h1, 5) || send_all(cl->fd, d + 5, 40))
      return -1;
    sleep_ms(20);
    if (send_all(cl->fd, h2, 5) || send_all(cl->fd, d + 45, len - 45))
      return -1;
    return (ssize_t)len;
  }
  if (cl->byte_by_byte) {
    for (size_t i = 0; i < len; i++) {
      if (send_all(cl->fd, d + i, 1))
        return -1;
      if (i % 8 == 0)
        sleep_ms(1);
    }
    return (ssize_t)len;
  }
  return send_all(cl->fd, data, len) ? -1 : (ssize_t)len;
}

static void client_peer_cn(client *cl) {
  unsigned n = 0;
  const gnutls_datum_t *certs = gnutls_certificate_get_peers(cl->s, &n);
  cl->cn[0] = 0;
  if (!certs || n == 0)
    return;
  gnutls_x509_crt_t crt;
  gnutls_x509_crt_init(&crt);
  if (gnutls_x509_crt_import(crt, &certs[0], GNUTLS_X509_FMT_DER) == 0) {
    size_t sz = sizeof(cl->cn);
    if (gnutls_x509_crt_get_dn_by_oid(crt, GNUTLS_OID_X520_COMMON_NAME, 0, 0, cl->cn, &sz) != 0)
      cl->cn[0] = 0;
  }
  gnutls_x509_crt_deinit(crt);
}

/* Connects and handshakes; returns the GnuTLS result (0 on success). */
static int client_open(client *cl, int port) {
  cl->fd = tcp_connect(port);
  if (cl->fd < 0)
    return cl->rc = -1;
  gnutls_certificate_allocate_credentials(&cl->cred);
  gnutls_init(&cl->s, GNUTLS_CLIENT);
  if (cl->sni)
    gnutls_server_name_set(cl->s, GNUTLS_NAME_DNS, cl->sni, strlen(cl->sni));
  const char *errpos = NULL;
  if (gnutls_priority_set_direct(cl->s, cl->prio ? cl->prio : "NORMAL", &errpos) < 0)
    return cl->rc = -2;
  gnutls_credentials_set(cl->s, GNUTLS_CRD_CERTIFICATE, cl->cred);
  if (cl->resume)
    gnutls_session_set_data(cl->s, cl->resume->data, cl->resume->size);
  if (cl->alpn) {
    gnutls_datum_t p = {(unsigned char *)cl->alpn, (unsigned)strlen(cl->alpn)};
    gnutls_alpn_set_protocols(cl->s, &p, 1, 0);
  }
  gnutls_transport_set_ptr2(cl->s, (gnutls_transport_ptr_t)(intptr_t)cl->fd, cl);
  gnutls_transport_set_push_function(cl->s, client_push);
  gnutls_handshake_set_timeout(cl->s, 8000);
  int r;
  do {
    r = gnutls_handshake(cl->s);
  } while (r < 0 && !gnutls_error_is_fatal(r));
  cl->rc = r;
  if (r == 0) {
    client_peer_cn(cl);
    gnutls_datum_t sel;
    if (gnutls_alpn_get_selected_protocol(cl->s, &sel) == 0)
      snprintf(cl->alpn_sel, sizeof(cl->alpn_sel), "%.*s", (int)sel.size, (const char *)sel.data);
  }
  return r;
}

static void client_close(client *cl) {
  if (cl->s) {
    if (cl->rc == 0)
      gnutls_bye(cl->s, GNUTLS_SHUT_WR);
    gnutls_deinit(cl->s);
    cl->s = NULL;
  }
  if (cl->cred) {
    gnutls_certificate_free_credentials(cl->cred);
    cl->cred = NULL;
  }
  if (cl->fd >= 0)
    close(cl->fd);
  cl->fd = -1;
}

/* Sends msg and reads the same number of bytes back; returns 0 when the echo matched. */
static int client_echo(client *cl, const char *msg) {
  size_t n = strlen(msg);
  if (gnutls_record_send(cl->s, msg, n) != (ssize_t)n)
    return -1;
  char buf[256];
  size_t got = 0;
  while (got < n) {
    ssize_t r = gnutls_record_recv(cl->s, buf + got, sizeof(buf) - got);
    if (r == GNUTLS_E_AGAIN || r == GNUTLS_E_INTERRUPTED)
      continue;
    if (r <= 0)
      return -1;
    got += (size_t)r;
  }
  return got == n && memcmp(buf, msg, n) == 0 ? 0 : -1;
}

/* Waits for the server to end the session: returns 1 on EOF/error, 0 if data or timeout. */
static int client_sees_end(client *cl) {
  char buf[64];
  for (;;) {
    ssize_t r = gnutls_record_recv(cl->s, buf, sizeof(buf));
    if (r == GNUTLS_E_INTERRUPTED || r == GNUTLS_E_WARNING_ALERT_RECEIVED)
      continue;
    if (r == GNUTLS_E_AGAIN)
      return 0; /* SO_RCVTIMEO expired */
    return r <= 0;
  }
}

/* The fatal alert the server ended the session with, or -1 (plain close, timeout). */
static int client_end_alert(client *cl) {
  char buf[64];
  for (;;) {
    ssize_t r = gnutls_record_recv(cl->s, buf, sizeof(buf));
    if (r == GNUTLS_E_INTERRUPTED || r == GNUTLS_E_WARNING_ALERT_RECEIVED || r > 0)
      continue;
    if (r == GNUTLS_E_FATAL_ALERT_RECEIVED)
      return (int)gnutls_alert_get(cl->s);
    return -1;
  }
}

/* Raw socket: 1 when the peer closed it (EOF or reset) within the receive timeout. */
static int raw_sees_close(int fd) {
  char buf[256];
  for (;;) {
    ssize_t r = recv(fd, buf, sizeof(buf), 0);
    if (r == 0)
      return 1;
    if (r < 0)
      return errno == ECONNRESET;
  }
}

static int simple_handshake(const char *sni, char *cn, size_t cnlen) {
  client cl = {.sni = sni, .fd = -1};
  int r = client_open(&cl, S.port);
  if (cn)
    snprintf(cn, cnlen, "%s", cl.cn);
  client_close(&cl);
  return r;
}

/* ---- tests ---------------------------------------------------------------------------------- */

static void test_cert_choice(void **state) {
  (void)state;
  char cn[256];
  int64_t known = ae_metrics_get(AE_M_HS_KNOWN), dflt = ae_metrics_get(AE_M_HS_DEFAULT);
  int misses = atomic_load(&S.misses);

  assert_int_equal(simple_handshake("a.example.test", cn, sizeof(cn)), 0);
  assert_string_equal(cn, "a.example.test");
  assert_int_equal(simple_handshake("x.wild.example.test", cn, sizeof(cn)), 0);
  assert_string_equal(cn, "*.wild.example.test");
  /* A wildcard covers exactly one label. */
  assert_int_equal(simple_handshake("y.x.wild.example.test", cn, sizeof(cn)), 0);
  assert_string_equal(cn, "acmedge default");
  assert_int_equal(simple_handshake("unknown.example.test", cn, sizeof(cn)), 0);
  assert_string_equal(cn, "acmedge default");
  assert_int_equal(simple_handshake(NULL, cn, sizeof(cn)), 0);
  assert_string_equal(cn, "acmedge default");

  assert_true(wait_metric(AE_M_HS_KNOWN, known + 2));
  assert_true(wait_metric(AE_M_HS_DEFAULT, dflt + 3));
  /* on_miss runs for names without a cert, never without SNI. */
  assert_int_equal(atomic_load(&S.misses) - misses, 2);
  assert_int_equal(wait_open(0), 0);
}

static void test_parameters(void **state) {
  (void)state;
  client cl = {.sni = "a.example.test", .fd = -1};
  assert_int_equal(client_open(&cl, S.port), 0);
  assert_int_equal(gnutls_protocol_get_version(cl.s), GNUTLS_TLS1_3);
  assert_int_equal(gnutls_cipher_get(cl.s), GNUTLS_CIPHER_AES_128_GCM);
  assert_int_equal(gnutls_group_get(cl.s), GNUTLS_GROUP_X25519);
  assert_string_equal(cl.alpn_sel, "");
  client_close(&cl);

  client c2 = {.sni = "a.example.test", .fd = -1, .alpn = "http/1.1",
               .prio = "NORMAL:-VERS-ALL:+VERS-TLS1.2"};
  assert_int_equal(client_open(&c2, S.port), 0);
  assert_int_equal(gnutls_protocol_get_version(c2.s), GNUTLS_TLS1_2);
  assert_int_equal(gnutls_kx_get(c2.s), GNUTLS_KX_ECDHE_ECDSA);
  assert_int_equal(gnutls_cipher_get(c2.s), GNUTLS_CIPHER_AES_128_GCM);
  assert_string_equal(c2.alpn_sel, "http/1.1");
  assert_int_equal(client_echo(&c2, "over tls 1.2"), 0);
  client_close(&c2);
}

/* Every front serves its certificates through one shared credentials object; the chosen cert's
 * key type must still drive suite and signature selection in both protocol versions. */
static void test_rsa_and_ecdsa_certs(void **state) {
  (void)state;
  static const char *const tls12 = "NORMAL:-VERS-ALL:+VERS-TLS1.2";
  static const char *const tls13 = "NORMAL:-VERS-ALL:+VERS-TLS1.3";
  client r13 = {.sni = "rsa.example.test", .fd = -1, .prio = tls13};
  assert_int_equal(client_open(&r13, S.port), 0);
  assert_string_equal(r13.cn, "rsa.example.test");
  assert_int_equal(gnutls_protocol_get_version(r13.s), GNUTLS_TLS1_3);
  assert_int_equal(gnutls_sign_get_pk_algorithm(gnutls_sign_algorithm_get(r13.s)), GNUTLS_PK_RSA_PSS);
  client r12 = {.sni = "rsa.example.test", .fd = -1, .prio = tls12};
  assert_int_equal(client_open(&r12, S.port), 0);
  assert_string_equal(r12.cn, "rsa.example.test");
  assert_int_equal(gnutls_kx_get(r12.s), GNUTLS_KX_ECDHE_RSA);
  assert_int_equal(gnutls_sign_get_pk_algorithm(gnutls_sign_algorithm_get(r12.s)), GNUTLS_PK_RSA);
  /* ECDSA and RSA connections open side by side on the same front. */
  client e13 = {.sni = "a.example.test", .fd = -1, .prio = tls13};
  assert_int_equal(client_open(&e13, S.port), 0);
  assert_string_equal(e13.cn, "a.example.test");
  assert_int_equal(gnutls_sign_algorithm_get(e13.s), GNUTLS_SIGN_ECDSA_SECP256R1_SHA256);
  client e12 = {.sni = "a.example.test", .fd = -1, .prio = tls12};
  assert_int_equal(client_open(&e12, S.port), 0);
  assert_int_equal(gnutls_kx_get(e12.s), GNUTLS_KX_ECDHE_ECDSA);
  assert_int_equal(gnutls_sign_get_pk_algorithm(gnutls_sign_algorithm_get(e12.s)), GNUTLS_PK_ECDSA);
  assert_int_equal(client_echo(&r13, "rsa 1.3"), 0);
  assert_int_equal(client_echo(&r12, "rsa 1.2"), 0);
  assert_int_equal(client_echo(&e13, "ecdsa 1.3"), 0);
  assert_int_equal(client_echo(&e12, "ecdsa 1.2"), 0);
  /* A client without ECDSA support gets nothing for an ECDSA-only name (no silent fallback). */
  client no_ec = {.sni = "a.example.test", .fd = -1, .prio = "NORMAL:-VERS-ALL:+VERS-TLS1.2:-KX-ALL:+ECDHE-RSA"};
  assert_true(client_open(&no_ec, S.port) < 0);
  client_close(&no_ec);

  /* A TLS 1.3 ticket from the RSA connection resumes without a certificate being sent. */
  gnutls_datum_t ticket = {NULL, 0};
  assert_int_equal(gnutls_session_get_data2(r13.s, &ticket), 0);
  client res = {.sni = "rsa.example.test", .fd = -1, .prio = tls13, .resume = &ticket};
  assert_int_equal(client_open(&res, S.port), 0);
  assert_true(gnutls_session_is_resumed(res.s));
  assert_int_equal(client_echo(&res, "resumed"), 0);
  client_close(&res);
  gnutls_free(ticket.data);
  client_close(&r13);
  client_close(&r12);
  client_close(&e13);
  client_close(&e12);
  assert_int_equal(wait_open(0), 0);
}

static void test_old_and_weak_clients_refused(void **state) {
  (void)state;
  int64_t failed = ae_metrics_get(AE_M_HS_FAILED);
  client c1 = {.sni = "a.example.test", .fd = -1, .prio = "NORMAL:-VERS-ALL:+VERS-TLS1.1:+VERS-TLS1.0"};
  assert_true(client_open(&c1, S.port) < 0);
  client_close(&c1);
  assert_true(wait_metric(AE_M_HS_FAILED, failed + 1));
  /* CBC-only TLS 1.2 and a non-ECDHE key exchange are refused too. */
  client c2 = {.sni = "a.example.test", .fd = -1,
               .prio = "NORMAL:-VERS-ALL:+VERS-TLS1.2:-CIPHER-ALL:+AES-128-CBC:+AES-256-CBC:+SHA1:+SHA256"};
  assert_true(client_open(&c2, S.port) < 0);
  client_close(&c2);
  assert_true(wait_metric(AE_M_HS_FAILED, failed + 2));
  client c3 = {.sni = "a.example.test", .fd = -1, .prio = "NORMAL:-VERS-ALL:+VERS-TLS1.2:-KX-ALL:+RSA"};
  assert_true(client_open(&c3, S.port) < 0);
  client_close(&c3);
  assert_true(wait_metric(AE_M_HS_FAILED, failed + 3));
  /* The server is fine afterwards. */
  assert_int_equal(simple_handshake("a.example.test", NULL, 0), 0);
}

static void test_echo_and_hello_split(void **state) {
  (void)state;
  client cl = {.sni = "a.example.test", .fd = -1, .byte_by_byte = 1};
  assert_int_equal(client_open(&cl, S.port), 0);
  assert_string_equal(cl.cn, "a.example.test");
  cl.byte_by_byte = 0;
  assert_int_equal(client_echo(&cl, "hello after a slow hello"), 0);
  client_close(&cl);

  client c2 = {.sni = "x.wild.example.test", .fd = -1, .split_hello = 1};
  assert_int_equal(client_open(&c2, S.port), 0);
  assert_int_equal(c2.sent_hello, 1);
  assert_string_equal(c2.cn, "*.wild.example.test");
  assert_int_equal(client_echo(&c2, "split"), 0);
  client_close(&c2);
  assert_true(atomic_load(&S.established) >= 2);
}

static void *client_thread(void *arg) {
  client *cl = arg;
  client_open(cl, S.port);
  return NULL;
}

static void test_hold_then_wake(void **state) {
  (void)state;
  int64_t held = ae_metrics_get(AE_M_HS_HELD);
  client cl = {.sni = "hold1.example.test", .fd = -1};
  pthread_t th;
  assert_int_equal(pthread_create(&th, NULL, client_thread, &cl), 0);
  unsigned n = 0;
  for (int i = 0; i < 300 && n == 0; i++) {
    n = held_now();
    if (n == 0)
      sleep_ms(10);
  }
  assert_int_equal(n, 1);
  assert_true(ae_metrics_get(AE_M_HS_HELD) >= held + 1);
  /* A wake for another name leaves it held. */
  arg_t other = {0, "hold2.example.test"};
  on_loop(do_wake, &other);
  assert_int_equal(held_now(), 1);
  assert_int_equal(ae_certstore_put(S.cs, "hold1.example.test", g_held), 0);
  arg_t a = {0, "hold1.example.test"};
  on_loop(do_wake, &a);
  pthread_join(th, NULL);
  assert_int_equal(cl.rc, 0);
  assert_string_equal(cl.cn, "hold1.example.test");
  assert_int_equal(held_now(), 0);
  assert_int_equal(client_echo(&cl, "after hold"), 0);
  client_close(&cl);
}

static void test_hold_timeout_and_cap(void **state) {
  (void)state;
  S.cfg.on_demand.wait_timeout_ms = 300;
  S.cfg.on_demand.max_held = 1;
  on_loop(set_cfg, NULL);
  client c1 = {.sni = "hold3.example.test", .fd = -1};
  pthread_t th;
  assert_int_equal(pthread_create(&th, NULL, client_thread, &c1), 0);
  for (int i = 0; i < 300 && held_now() == 0; i++)
    sleep_ms(5);
  /* Over the cap: the second held name gets the default cert at once. */
  char cn[256];
  assert_int_equal(simple_handshake("hold4.example.test", cn, sizeof(cn)), 0);
  assert_string_equal(cn, "acmedge default");
  pthread_join(th, NULL);
  assert_int_equal(c1.rc, 0);
  assert_string_equal(c1.cn, "acmedge default");
  client_close(&c1);
  assert_int_equal(held_now(), 0);
}

static void test_hold_client_gives_up(void **state) {
  (void)state;
  client c1 = {.sni = "hold5.example.test", .fd = -1};
  pthread_t th;
  assert_int_equal(pthread_create(&th, NULL, client_thread, &c1), 0);
  for (int i = 0; i < 300 && held_now() == 0; i++)
    sleep_ms(5);
  assert_int_equal(held_now(), 1);
  /* The client socket goes away while held: the server forgets the connection. */
  shutdown(c1.fd, SHUT_RDWR);
  pthread_join(th, NULL);
  assert_true(c1.rc < 0);
  client_close(&c1);
  for (int i = 0; i < 300 && held_now() != 0; i++)
    sleep_ms(5);
  assert_int_equal(held_now(), 0);
  assert_int_equal(wait_open(0), 0);
}

static void test_alert_on_miss(void **state) {
  (void)state;
  client cl = {.sni = "alert.example.test", .fd = -1};
  int r = client_open(&cl, S.port);
  assert_int_equal(r, GNUTLS_E_FATAL_ALERT_RECEIVED);
  assert_int_equal(gnutls_alert_get(cl.s), GNUTLS_A_UNRECOGNIZED_NAME);
  client_close(&cl);
}

static void test_acme_tls_alpn(void **state) {
  (void)state;
  int64_t chal = ae_metrics_get(AE_M_HS_CHALLENGE);
  client cl = {.sni = "chal.example.test", .fd = -1, .alpn = "acme-tls/1"};
  assert_int_equal(client_open(&cl, S.port), 0);
  assert_string_equal(cl.cn, "chal.example.test");
  assert_string_equal(cl.alpn_sel, "acme-tls/1");
  /* RFC 8737: the server closes after the handshake. */
  assert_true(client_sees_end(&cl));
  client_close(&cl);
  assert_true(wait_metric(AE_M_HS_CHALLENGE, chal + 1));
  /* No pending challenge for this name: closed without a handshake. */
  client c2 = {.sni = "a.example.test", .fd = -1, .alpn = "acme-tls/1"};
  assert_true(client_open(&c2, S.port) < 0);
  client_close(&c2);
}

static unsigned wait_held(unsigned want) {
  unsigned n = held_now();
  for (int i = 0; i < 300 && n != want; i++) {
    sleep_ms(10);
    n = held_now();
  }
  return n;
}

/* acme-tls/1 for a name without a local answer: held while the answer is looked up elsewhere,
 * then answered (wake_alpn after the answer arrived) or refused (wake_alpn without one); a plain
 * wake leaves it held; a name nobody looks up is refused at once. The held count stays exact. */
static void test_acme_tls_alpn_held(void **state) {
  (void)state;
  client cl = {.sni = "late1.example.test", .fd = -1, .alpn = "acme-tls/1"};
  pthread_t th;
  assert_int_equal(pthread_create(&th, NULL, client_thread, &cl), 0);
  assert_int_equal(wait_held(1), 1);
  arg_t a = {0, "late1.example.test"};
  on_loop(do_wake, &a); /* a certificate wake is not about challenge answers */
  assert_int_equal(held_now(), 1);
  atomic_store(&S.late_ready, 1);
  on_loop(do_wake_alpn, &a);
  pthread_join(th, NULL);
  assert_int_equal(cl.rc, 0);
  assert_string_equal(cl.alpn_sel, "acme-tls/1");
  assert_string_equal(cl.cn, "chal.example.test");
  client_close(&cl);
  assert_int_equal(held_now(), 0);

  /* No answer anywhere: refused when the look-up ends. */
  atomic_store(&S.late_ready, 0);
  client c2 = {.sni = "late2.example.test", .fd = -1, .alpn = "acme-tls/1"};
  client c3 = {.sni = "hold6.example.test", .fd = -1};
  pthread_t t2, t3;
  assert_int_equal(pthread_create(&t2, NULL, client_thread, &c2), 0);
  assert_int_equal(pthread_create(&t3, NULL, client_thread, &c3), 0);
  assert_int_equal(wait_held(2), 2);
  arg_t b = {0, "late2.example.test"};
  on_loop(do_wake_alpn, &b);
  pthread_join(t2, NULL);
  assert_true(c2.rc < 0);
  client_close(&c2);
  /* The refused one left the held list exactly once: the other hold is intact and wakes. */
  assert_int_equal(wait_held(1), 1);
  assert_int_equal(ae_certstore_put(S.cs, "hold6.example.test", g_held), 0);
  arg_t h = {0, "hold6.example.test"};
  on_loop(do_wake, &h);
  pthread_join(t3, NULL);
  assert_int_equal(c3.rc, 0);
  assert_string_equal(c3.cn, "hold1.example.test");
  client_close(&c3);
  assert_int_equal(held_now(), 0);

  /* Nobody looks this name up: refused without a hold. */
  int before = atomic_load(&S.alpn_misses);
  client c4 = {.sni = "other.example.test", .fd = -1, .alpn = "acme-tls/1"};
  assert_true(client_open(&c4, S.port) < 0);
  client_close(&c4);
  assert_int_equal(atomic_load(&S.alpn_misses), before + 1);
  assert_int_equal(held_now(), 0);
}

static void test_swap_while_open(void **state) {
  (void)state;
  ae_cert *one = ae_cert_ref(g_swap1);
  assert_int_equal(ae_certstore_put(S.cs, "swap.example.test", one), 0);
  client c1 = {.sni = "swap.example.test", .fd = -1};
  assert_int_equal(client_open(&c1, S.port), 0);
  assert_string_equal(c1.cn, "swap one");
  assert_int_equal(client_echo(&c1, "before swap"), 0);
  /* Swap, and drop every reference except the open connection's. */
  assert_int_equal(ae_certstore_put(S.cs, "swap.example.test", g_swap2), 0);
  ae_cert_unref(one);
  ae_cert_unref(g_swap1);
  g_swap1 = NULL;
  client c2 = {.sni = "swap.example.test", .fd = -1};
  assert_int_equal(client_open(&c2, S.port), 0);
  assert_string_equal(c2.cn, "swap two");
  assert_int_equal(client_echo(&c1, "after swap, old cert"), 0);
  assert_int_equal(client_echo(&c2, "after swap, new cert"), 0);
  client_close(&c1);
  client_close(&c2);
  assert_int_equal(wait_open(0), 0);
}

static void test_garbage_and_slow_do_not_disturb(void **state) {
  (void)state;
  S.cfg.tls.handshake_timeout_ms = 600;
  on_loop(set_cfg, NULL);
  int64_t failed = ae_metrics_get(AE_M_HS_FAILED);
  int slow = tcp_connect(S.port);
  assert_true(slow >= 0);
  static const uint8_t partial[] = {0x16, 0x03, 0x01, 0x01, 0x00, 0x01};
  assert_int_equal(send_all(slow, partial, sizeof(partial)), 0);
  int garbage = tcp_connect(S.port);
  assert_true(garbage >= 0);
  const char *junk = "GET / HTTP/1.1\r\nHost: a.example.test\r\n\r\n";
  assert_int_equal(send_all(garbage, junk, strlen(junk)), 0);
  char cn[256];
  assert_int_equal(simple_handshake("a.example.test", cn, sizeof(cn)), 0);
  assert_string_equal(cn, "a.example.test");
  assert_true(raw_sees_close(garbage));
  /* The slow ClientHello is cut at the handshake timeout, not before the good handshake. */
  assert_true(raw_sees_close(slow));
  close(garbage);
  close(slow);
  assert_true(wait_metric(AE_M_HS_FAILED, failed + 2));

  /* An oversized ClientHello record is refused. */
  int big = tcp_connect(S.port);
  uint8_t hdr[5] = {0x16, 0x03, 0x01, 0x48, 0x00};
  assert_int_equal(send_all(big, hdr, 5), 0);
  assert_true(raw_sees_close(big));
  close(big);
  assert_int_equal(wait_open(0), 0);
}

static void test_renegotiation_refused(void **state) {
  (void)state;
  client cl = {.sni = "a.example.test", .fd = -1, .prio = "NORMAL:-VERS-ALL:+VERS-TLS1.2"};
  assert_int_equal(client_open(&cl, S.port), 0);
  assert_int_equal(client_echo(&cl, "ping"), 0);
  int r, warned = 0;
  do {
    r = gnutls_handshake(cl.s);
    if (r == GNUTLS_E_WARNING_ALERT_RECEIVED && gnutls_alert_get(cl.s) == GNUTLS_A_NO_RENEGOTIATION)
      warned = 1;
  } while (r < 0 && !gnutls_error_is_fatal(r));
  assert_true(r < 0);
  assert_true(warned); /* refused with the RFC 5246 §7.2.2 warning, no second handshake */
  assert_true(client_sees_end(&cl));
  cl.rc = -1;
  client_close(&cl);
  assert_int_equal(wait_open(0), 0);
}

static void test_empty_record_flood(void **state) {
  (void)state;
  /* A few empty records are harmless. */
  client cl = {.sni = "a.example.test", .fd = -1};
  assert_int_equal(client_open(&cl, S.port), 0);
  for (int i = 0; i < 5; i++) {
    ssize_t r = gnutls_record_send2(cl.s, "", 0, 1, 0);
    if (r < 0)
      fprintf(stderr, "send2: %s\n", gnutls_strerror((int)r));
    assert_true(r >= 0);
  }
  assert_int_equal(client_echo(&cl, "still here"), 0);
  /* A burst is not. */
  for (int i = 0; i < 100; i++) {
    if (gnutls_record_send2(cl.s, "", 0, 1, 0) < 0)
      break;
  }
  assert_int_equal(client_end_alert(&cl), GNUTLS_A_UNEXPECTED_MESSAGE);
  cl.rc = -1;
  client_close(&cl);

  /* Warning alerts in TLS 1.2 count the same. */
  client c2 = {.sni = "a.example.test", .fd = -1, .prio = "NORMAL:-VERS-ALL:+VERS-TLS1.2"};
  assert_int_equal(client_open(&c2, S.port), 0);
  for (int i = 0; i < 100; i++) {
    if (gnutls_alert_send(c2.s, GNUTLS_AL_WARNING, GNUTLS_A_USER_CANCELED) < 0)
      break;
  }
  assert_int_equal(client_end_alert(&c2), GNUTLS_A_UNEXPECTED_MESSAGE);
  c2.rc = -1;
  client_close(&c2);
  assert_int_equal(wait_open(0), 0);
}

static void test_connection_cap(void **state) {
  (void)state;
  S.cfg.tls.max_connections = 1;
  on_loop(set_cfg, NULL);
  client c1 = {.sni = "a.example.test", .fd = -1};
  assert_int_equal(client_open(&c1, S.port), 0);
  /* Over the cap: accepted and reset at once. */
  int fd = tcp_connect(S.port);
  assert_true(fd >= 0);
  assert_true(raw_sees_close(fd));
  close(fd);
  assert_int_equal(client_echo(&c1, "first one unaffected"), 0);
  client_close(&c1);
  assert_int_equal(wait_open(0), 0);
  S.cfg.tls.max_connections = 0;
  on_loop(set_cfg, NULL);
  assert_int_equal(simple_handshake("a.example.test", NULL, 0), 0);
}

static void test_close_with_open_connection(void **state) {
  (void)state;
  client cl = {.sni = "a.example.test", .fd = -1};
  assert_int_equal(client_open(&cl, S.port), 0);
  assert_int_equal(client_echo(&cl, "open"), 0);
  int closes = atomic_load(&S.closes);
  assert_int_equal(open_now(), 1);
  uint64_t t0 = uv_hrtime();
  on_loop(do_close_front, (void *)(uintptr_t)200);
  assert_true(client_sees_end(&cl));
  uint64_t ms = (uv_hrtime() - t0) / 1000000;
  assert_true(ms < 3000);
  cl.rc = -1;
  client_close(&cl);
  pthread_join(S.thread, NULL);
  assert_int_equal(S.front_closed, 1);
  assert_int_equal(atomic_load(&S.closes), closes + 1);
  /* New connections are refused now. */
  assert_int_equal(tcp_connect(S.port), -1);
}

static int teardown_after_close(void **state) {
  (void)state;
  int rc = uv_loop_close(&S.loop);
  ae_tls_front_free(S.front);
  ae_certstore_free(S.cs);
  pthread_mutex_destroy(&S.mu);
  pthread_cond_destroy(&S.cv);
  return rc == 0 ? 0 : -1;
}

static void test_builtin_hello(void **state) {
  (void)state;
  client cl = {.sni = "a.example.test", .fd = -1};
  assert_int_equal(client_open(&cl, S.port), 0);
  const char *req = "GET / HTTP/1.1\r\nHost: a.example.test\r\n\r\n";
  assert_int_equal(gnutls_record_send(cl.s, req, strlen(req)), (ssize_t)strlen(req));
  char buf[1024];
  size_t got = 0;
  for (;;) {
    ssize_t r = gnutls_record_recv(cl.s, buf + got, sizeof(buf) - 1 - got);
    if (r == GNUTLS_E_INTERRUPTED || r == GNUTLS_E_AGAIN)
      continue;
    if (r <= 0)
      break;
    got += (size_t)r;
  }
  buf[got] = 0;
  assert_non_null(strstr(buf, "HTTP/1.1 200 OK\r\n"));
  assert_non_null(strstr(buf, "hello a.example.test"));
  client_close(&cl);
  assert_int_equal(wait_open(0), 0);
}

static void test_bad_listen_address(void **state) {
  (void)state;
  uv_loop_t loop;
  uv_loop_init(&loop);
  ae_certstore *cs = NULL;
  ae_certstore_new(&cs);
  ae_config cfg;
  memset(&cfg, 0, sizeof(cfg));
  ae_tls_front *f = NULL;
  ae_err err = {0};
  cfg.listen_https = "not-an-address";
  assert_true(ae_tls_front_new(&loop, &cfg, cs, NULL, &f, &err) < 0);
  assert_non_null(strstr(err.msg, "listen.https"));
  cfg.listen_https = "999.1.1.1:443";
  assert_true(ae_tls_front_new(&loop, &cfg, cs, NULL, &f, &err) < 0);
  /* A port already in use: the listener handle is closed by the loop, without a callback. */
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
  assert_int_equal(listen(fd, 1), 0);
  socklen_t sl = sizeof(sa);
  getsockname(fd, (struct sockaddr *)&sa, &sl);
  char addr[64];
  snprintf(addr, sizeof(addr), "127.0.0.1:%d", ntohs(sa.sin_port));
  cfg.listen_https = addr;
  assert_int_equal(ae_tls_front_new(&loop, &cfg, cs, NULL, &f, &err), AE_EIO);
  assert_non_null(strstr(err.msg, "cannot listen"));
  close(fd);
  uv_run(&loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(&loop), 0);
  ae_certstore_free(cs);
}

static void test_priority_string(void **state) {
  (void)state;
  gnutls_priority_t p;
  assert_int_equal(gnutls_priority_init(&p, AE_TLS_PRIORITY, NULL), 0);
  gnutls_priority_deinit(p);
  assert_null(strstr(AE_TLS_PRIORITY, "CBC"));
  assert_null(strstr(AE_TLS_PRIORITY, "SHA1"));
  assert_null(strstr(AE_TLS_PRIORITY, "TLS1.1"));
  assert_true(strstr(AE_TLS_PRIORITY, "AES-128-GCM") < strstr(AE_TLS_PRIORITY, "CHACHA20"));
  assert_true(strstr(AE_TLS_PRIORITY, "GROUP-X25519") < strstr(AE_TLS_PRIORITY, "GROUP-SECP384R1"));
}

int main(void) {
  /* As in the binary: a peer that vanished must not kill the process through write(). */
  signal(SIGPIPE, SIG_IGN);
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_priority_string),
    cmocka_unit_test(test_bad_listen_address),
    cmocka_unit_test_setup_teardown(test_cert_choice, setup_echo, teardown),
    cmocka_unit_test_setup_teardown(test_parameters, setup_echo, teardown),
    cmocka_unit_test_setup_teardown(test_rsa_and_ecdsa_certs, setup_echo, teardown),
    cmocka_unit_test_setup_teardown(test_old_and_weak_clients_refused, setup_echo, teardown),
    cmocka_unit_test_setup_teardown(test_echo_and_hello_split, setup_echo, teardown),
    cmocka_unit_test_setup_teardown(test_hold_then_wake, setup_echo, teardown),
    cmocka_unit_test_setup_teardown(test_hold_timeout_and_cap, setup_echo, teardown),
    cmocka_unit_test_setup_teardown(test_hold_client_gives_up, setup_echo, teardown),
    cmocka_unit_test_setup_teardown(test_alert_on_miss, setup_echo, teardown),
    cmocka_unit_test_setup_teardown(test_acme_tls_alpn, setup_echo, teardown),
    cmocka_unit_test_setup_teardown(test_acme_tls_alpn_held, setup_echo, teardown),
    cmocka_unit_test_setup_teardown(test_swap_while_open, setup_echo, teardown),
    cmocka_unit_test_setup_teardown(test_garbage_and_slow_do_not_disturb, setup_echo, teardown),
    cmocka_unit_test_setup_teardown(test_renegotiation_refused, setup_echo, teardown),
    cmocka_unit_test_setup_teardown(test_empty_record_flood, setup_echo, teardown),
    cmocka_unit_test_setup_teardown(test_connection_cap, setup_echo, teardown),
    cmocka_unit_test_setup_teardown(test_close_with_open_connection, setup_echo, teardown_after_close),
    cmocka_unit_test_setup_teardown(test_builtin_hello, setup_hello, teardown),
  };
  if (getenv("AE_TEST_FILTER"))
    cmocka_set_test_filter(getenv("AE_TEST_FILTER"));
  return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
