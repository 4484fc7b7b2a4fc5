/* Worker threads: a TLS handshake accepted on a worker loop reports its miss to the control loop,
 * is held ("wait" mode) until the control side installs a certificate and wakes the workers, and
 * then completes with that certificate; a name outside allow gets the default at once. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "acmedge/certstore.h"
#include "acmedge/challenge.h"
#include "acmedge/config.h"
#include "acmedge/log.h"
#include "acmedge/workers.h"

typedef struct {
  uv_loop_t loop;
  uv_async_t done;
  ae_workers *ws;
  ae_certstore *cs;
  int port;
  int misses_allowed, misses_denied;
  char cn_new[128], cn_denied[128];
  int rc_new, rc_denied;
} fixture;

static fixture F;

static ae_cert *make_cert(const char *name) {
  char *c = NULL, *k = NULL;
  ae_err err = {0};
  const char *names[1] = {name};
  assert_int_equal(ae_cert_generate_selfsigned(name, names, 1, 30, &c, &k, &err), 0);
  ae_cert *cert = NULL;
  assert_int_equal(ae_cert_from_pem(c, strlen(c), k, strlen(k), &cert, &err), 0);
  free(c);
  free(k);
  return cert;
}

/* Control loop: the worker's miss arrives here, as it would in the running proxy. */
static void on_miss(void *ud, const char *name, int allowed) {
  fixture *f = ud;
  if (!allowed) {
    f->misses_denied++;
    return;
  }
  f->misses_allowed++;
  ae_cert *c = make_cert(name);
  ae_certstore_put(f->cs, name, c);
  ae_cert_unref(c);
  ae_workers_wake(f->ws, name);
}

static int free_port(void) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
  socklen_t len = sizeof(sa);
  getsockname(fd, (struct sockaddr *)&sa, &len);
  close(fd);
  return ntohs(sa.sin_port);
}

/* Blocking GnuTLS client; returns the handshake result and the served leaf's CN. */
static int handshake(int port, const char *sni, char *cn, size_t cnlen) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                           .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
    close(fd);
    return -1;
  }
  gnutls_certificate_credentials_t cred;
  gnutls_session_t s;
  gnutls_certificate_allocate_credentials(&cred);
  gnutls_init(&s, GNUTLS_CLIENT);
  gnutls_server_name_set(s, GNUTLS_NAME_DNS, sni, strlen(sni));
  gnutls_set_default_priority(s);
  gnutls_credentials_set(s, GNUTLS_CRD_CERTIFICATE, cred);
  gnutls_transport_set_int(s, fd);
  gnutls_handshake_set_timeout(s, 10000);
  int r;
  do {
    r = gnutls_handshake(s);
  } while (r < 0 && !gnutls_error_is_fatal(r));
  cn[0] = '\0';
  if (r == 0) {
    unsigned n = 0;
    const gnutls_datum_t *certs = gnutls_certificate_get_peers(s, &n);
    gnutls_x509_crt_t crt;
    gnutls_x509_crt_init(&crt);
    if (n > 0 && gnutls_x509_crt_import(crt, &certs[0], GNUTLS_X509_FMT_DER) == 0) {
      size_t sz = cnlen;
      if (gnutls_x509_crt_get_dn_by_oid(crt, GNUTLS_OID_X520_COMMON_NAME, 0, 0, cn, &sz) != 0)
        cn[0] = '\0';
    }
    gnutls_x509_crt_deinit(crt);
    gnutls_bye(s, GNUTLS_SHUT_WR);
  }
  gnutls_deinit(s);
  gnutls_certificate_free_credentials(cred);
  close(fd);
  return r;
}

static void *client_main(void *arg) {
  fixture *f = arg;
  f->rc_new = handshake(f->port, "new.example.test", f->cn_new, sizeof(f->cn_new));
  f->rc_denied = handshake(f->port, "evil.example.org", f->cn_denied, sizeof(f->cn_denied));
  uv_async_send(&f->done);
  return NULL;
}

static void on_done(uv_async_t *a) {
  fixture *f = a->data;
  ae_workers_stop(f->ws, 1000);
  uv_close((uv_handle_t *)&f->done, NULL);
}

static void test_worker_miss_hold_wake(void **state) {
  (void)state;
  char tmp[] = "/tmp/ae-workers-XXXXXX";
  assert_non_null(mkdtemp(tmp));
  F.port = free_port();
  char json[1024];
  snprintf(json, sizeof(json),
           "{\"listen\": {\"https\": \"127.0.0.1:%d\", \"http\": null, \"admin\": null}, \"workers\": 2,"
           " \"storage\": {\"path\": \"%s\"}, \"acme\": {\"directory\": \"https://127.0.0.1:9/dir\"},"
           " \"on_demand\": {\"first_handshake\": \"wait\", \"wait_timeout_ms\": 8000,"
           " \"allow\": [\"*.example.test\"]}}",
           F.port, tmp);
  ae_config *cfg = NULL;
  ae_err err = {0};
  if (ae_config_parse("workers.json", json, &cfg, &err) != 0)
    fail_msg("config: %s", err.msg);
  assert_int_equal(uv_loop_init(&F.loop), 0);
  assert_int_equal(ae_certstore_new(&F.cs), 0);
  ae_cert *dflt = make_cert("acmedge default");
  ae_certstore_set_default(F.cs, dflt);
  ae_cert_unref(dflt);
  ae_challenge *ch = NULL;
  assert_int_equal(ae_challenge_new(&ch), 0);
  ae_workers_hooks hooks = {.ud = &F, .on_miss = on_miss};
  int r = ae_workers_start(&F.loop, 1, cfg, F.cs, ch, &hooks, &F.ws, &err);
  if (r != 0)
    fail_msg("workers: %s", err.msg);
  assert_int_equal(ae_workers_count(F.ws), 1);
  uv_async_init(&F.loop, &F.done, on_done);
  F.done.data = &F;

  pthread_t t;
  assert_int_equal(pthread_create(&t, NULL, client_main, &F), 0);
  uv_run(&F.loop, UV_RUN_DEFAULT);
  pthread_join(t, NULL);
  ae_workers_join_free(F.ws);

  assert_int_equal(F.rc_new, 0);
  assert_string_equal(F.cn_new, "new.example.test"); /* held, then woken with the new cert */
  assert_int_equal(F.misses_allowed, 1);
  assert_int_equal(F.rc_denied, 0);
  assert_string_equal(F.cn_denied, "acmedge default");
  assert_int_equal(F.misses_denied, 1);

  ae_challenge_free(ch);
  ae_certstore_free(F.cs);
  ae_config_free(cfg);
  assert_int_equal(uv_loop_close(&F.loop), 0);
  rmdir(tmp);
}

int main(void) {
  ae_log_set_level(getenv("AE_TEST_DEBUG") ? AE_LOG_DEBUG : AE_LOG_ERROR);
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_worker_miss_hold_wake)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}
