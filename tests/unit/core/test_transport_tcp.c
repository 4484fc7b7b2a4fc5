/* transport_tcp: plain TCP ae_transport against blocking loopback clients. The loop runs in its
 * own thread; the first byte a client sends picks what the server side does. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "acmedge/common.h"
#include "acmedge/transport.h"

/* Larger than any loopback socket buffer pair can absorb (tcp_wmem/tcp_rmem maxima are a few MiB),
 * so the server side must queue part of it. */
#define BIG (16u << 20)

static struct {
  uv_loop_t loop;
  uv_tcp_t listener;
  uv_async_t stop;
  pthread_t thread;
  int port;
  atomic_int closes;
  atomic_int drains;
  atomic_int accepted;
  atomic_size_t max_queued;
  atomic_int write_after_close;  /* result of a write after close() */
  atomic_int peer_ok;
  atomic_int paused_resumed;
} S;

typedef struct srv_conn {
  ae_transport *t;
  int mode;
  uv_timer_t timer;
  int paused;
} srv_conn;

static void conn_timer_closed(uv_handle_t *h) {
  free(h->data);
}

static void srv_on_close(void *ud) {
  srv_conn *sc = ud;
  atomic_fetch_add(&S.closes, 1);
  uv_close((uv_handle_t *)&sc->timer, conn_timer_closed);
}

static void srv_on_drain(void *ud) {
  srv_conn *sc = ud;
  atomic_fetch_add(&S.drains, 1);
  if (sc->mode == 'D')
    ae_transport_close(sc->t);
}

static void resume_cb(uv_timer_t *t) {
  srv_conn *sc = t->data;
  sc->paused = 2;
  atomic_store(&S.paused_resumed, 1);
  ae_transport_read_start(sc->t);
}

static void srv_on_read(void *ud, const char *data, ssize_t n) {
  srv_conn *sc = ud;
  if (n < 0) {
    ae_transport_close(sc->t);
    return;
  }
  if (!sc->mode)
    sc->mode = data[0];
  switch (sc->mode) {
  case 'E':
    ae_transport_write(sc->t, data, (size_t)n);
    return;
  case 'P': /* echo, but pause reading for 200 ms after the first chunk */
    ae_transport_write(sc->t, data, (size_t)n);
    if (!sc->paused) {
      sc->paused = 1;
      ae_transport_read_stop(sc->t);
      uv_timer_start(&sc->timer, resume_cb, 200, 0);
    }
    return;
  case 'D': /* a big write, closed from on_drain */
  case 'B': {
    char *big = malloc(BIG);
    memset(big, 'x', BIG);
    ae_transport_write(sc->t, big, BIG);
    free(big);
    size_t q = ae_transport_queued(sc->t);
    if (q > atomic_load(&S.max_queued))
      atomic_store(&S.max_queued, q);
    if (sc->mode == 'D')
      return;
    ae_transport_close(sc->t);
    atomic_store(&S.write_after_close, ae_transport_write(sc->t, "y", 1));
    sc->mode = 'X';
    return;
  }
  case 'A':
    ae_transport_write(sc->t, "bye", 3);
    ae_transport_abort(sc->t);
    sc->mode = 'X';
    return;
  default:
    return;
  }
}

static void on_conn(uv_stream_t *server, int status) {
  if (status < 0)
    return;
  uv_tcp_t *tcp = malloc(sizeof(*tcp));
  uv_tcp_init(&S.loop, tcp);
  if (uv_accept(server, (uv_stream_t *)tcp) != 0) {
    uv_close((uv_handle_t *)tcp, (uv_close_cb)free);
    return;
  }
  ae_transport *t = NULL;
  if (ae_transport_tcp_new(&S.loop, tcp, &t) != 0)
    return;
  atomic_fetch_add(&S.accepted, 1);
  if (strcmp(t->peer_ip, "127.0.0.1") == 0 && t->local_port == S.port && !t->is_tls)
    atomic_store(&S.peer_ok, 1);
  srv_conn *sc = calloc(1, sizeof(*sc));
  sc->t = t;
  uv_timer_init(&S.loop, &sc->timer);
  sc->timer.data = sc;
  t->ud = sc;
  t->on_read = srv_on_read;
  t->on_drain = srv_on_drain;
  t->on_close = srv_on_close;
}

static void stop_cb(uv_async_t *a) {
  uv_close((uv_handle_t *)&S.listener, NULL);
  uv_close((uv_handle_t *)a, NULL);
}

static void *loop_main(void *arg) {
  (void)arg;
  uv_run(&S.loop, UV_RUN_DEFAULT);
  return NULL;
}

static int setup(void **state) {
  (void)state;
  memset(&S, 0, sizeof(S));
  uv_loop_init(&S.loop);
  uv_tcp_init(&S.loop, &S.listener);
  struct sockaddr_in sa;
  uv_ip4_addr("127.0.0.1", 0, &sa);
  if (uv_tcp_bind(&S.listener, (struct sockaddr *)&sa, 0) || uv_listen((uv_stream_t *)&S.listener, 64, on_conn))
    return -1;
  int len = sizeof(sa);
  uv_tcp_getsockname(&S.listener, (struct sockaddr *)&sa, &len);
  S.port = ntohs(sa.sin_port);
  uv_async_init(&S.loop, &S.stop, stop_cb);
  return pthread_create(&S.thread, NULL, loop_main, NULL);
}

static int teardown(void **state) {
  (void)state;
  uv_async_send(&S.stop);
  pthread_join(S.thread, NULL);
  return uv_loop_close(&S.loop) == 0 ? 0 : -1;
}

static int connect_port(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct timeval tv = {5, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  /* A small receive window keeps the server's writes from all fitting into kernel buffers. */
  int rcvbuf = 64 * 1024;
  setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                           .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

static void sleep_ms(unsigned ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

static int wait_int(atomic_int *v, int want) {
  for (int i = 0; i < 300; i++) {
    if (atomic_load(v) >= want)
      return 1;
    sleep_ms(10);
  }
  return 0;
}

static size_t read_exact(int fd, char *buf, size_t n) {
  size_t got = 0;
  while (got < n) {
    ssize_t r = recv(fd, buf + got, n - got, 0);
    if (r <= 0)
      break;
    got += (size_t)r;
  }
  return got;
}

static void test_echo(void **state) {
  (void)state;
  int fd = connect_port(S.port);
  assert_true(fd >= 0);
  assert_int_equal(send(fd, "Ehello", 6, 0), 6);
  char buf[16];
  assert_int_equal(read_exact(fd, buf, 6), 6);
  assert_memory_equal(buf, "Ehello", 6);
  assert_true(wait_int(&S.peer_ok, 1));
  close(fd);
  /* The client's EOF makes the server close: on_close exactly once. */
  assert_true(wait_int(&S.closes, 1));
  sleep_ms(50);
  assert_int_equal(atomic_load(&S.closes), 1);
}

static void test_pause_resume(void **state) {
  (void)state;
  int fd = connect_port(S.port);
  assert_int_equal(send(fd, "P1", 2, 0), 2);
  char buf[8];
  assert_int_equal(read_exact(fd, buf, 2), 2);
  /* Sent while reads are paused: echoed only after the resume. */
  assert_int_equal(send(fd, "P2", 2, 0), 2);
  assert_int_equal(read_exact(fd, buf, 2), 2);
  assert_memory_equal(buf, "P2", 2);
  assert_int_equal(atomic_load(&S.paused_resumed), 1);
  close(fd);
  assert_true(wait_int(&S.closes, 1));
}

static void test_close_flushes_everything(void **state) {
  (void)state;
  int fd = connect_port(S.port);
  assert_int_equal(send(fd, "B", 1, 0), 1);
  /* Let the socket buffers fill so that the server has to queue. */
  sleep_ms(100);
  char *buf = malloc(BIG + 16);
  size_t got = read_exact(fd, buf, BIG + 16);
  assert_int_equal(got, BIG);
  assert_int_equal(buf[BIG - 1], 'x');
  free(buf);
  assert_true(atomic_load(&S.max_queued) > 0);
  assert_true(atomic_load(&S.write_after_close) < 0);
  assert_true(wait_int(&S.closes, 1));
  /* close() was called right after the write: the queue drained into a closing transport, which
   * reports no on_drain. */
  assert_int_equal(atomic_load(&S.drains), 0);
  close(fd);
}

static void test_drain_after_backpressure(void **state) {
  (void)state;
  int fd = connect_port(S.port);
  assert_int_equal(send(fd, "D", 1, 0), 1);
  sleep_ms(100);
  assert_int_equal(atomic_load(&S.drains), 0);
  char *buf = malloc(BIG + 16);
  assert_int_equal(read_exact(fd, buf, BIG + 16), BIG);
  free(buf);
  assert_true(atomic_load(&S.max_queued) > 0);
  assert_int_equal(atomic_load(&S.drains), 1);
  assert_true(wait_int(&S.closes, 1));
  close(fd);
}

static void test_abort_resets(void **state) {
  (void)state;
  int fd = connect_port(S.port);
  assert_int_equal(send(fd, "A", 1, 0), 1);
  char buf[16];
  ssize_t r;
  int reset = 0;
  for (;;) {
    r = recv(fd, buf, sizeof(buf), 0);
    if (r > 0)
      continue;
    reset = r < 0 && errno == ECONNRESET;
    break;
  }
  assert_true(reset);
  close(fd);
  assert_true(wait_int(&S.closes, 1));
}

static void test_bad_args(void **state) {
  (void)state;
  ae_transport *t = NULL;
  assert_int_equal(ae_transport_tcp_new(NULL, NULL, &t), AE_EINVAL);
}

int main(void) {
  signal(SIGPIPE, SIG_IGN);
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_bad_args),
    cmocka_unit_test_setup_teardown(test_echo, setup, teardown),
    cmocka_unit_test_setup_teardown(test_pause_resume, setup, teardown),
    cmocka_unit_test_setup_teardown(test_close_flushes_everything, setup, teardown),
    cmocka_unit_test_setup_teardown(test_drain_after_backpressure, setup, teardown),
    cmocka_unit_test_setup_teardown(test_abort_resets, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
