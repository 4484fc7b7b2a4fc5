/* Admin API: endpoints, errors, limits, keep-alive, bearer token, unix socket, SSE replay, gap
 * reports, heartbeats and slow clients. The server runs on the test's loop in the main thread;
 * an HTTP client with plain blocking sockets runs in a second thread. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "acmedge/admin.h"
#include "acmedge/log.h"
#include "acmedge/metrics.h"

/* ------------------------------------------------------------------ fixture */

typedef struct fx fx_t;
typedef int (*client_fn)(fx_t *f);

struct fx {
  uv_loop_t loop;
  uv_async_t async;
  ae_events *ev;
  ae_admin *admin;
  ae_config cfg;
  json_t *domains;
  int port;
  char sock_path[100];
  char dir[64];
  int closed;

  /* client thread */
  client_fn client;
  atomic_int client_done;
  int client_ok;
  char fail_msg[512];
  /* commands the client runs on the loop thread */
  void (*cmd)(fx_t *f, void *arg);
  void *cmd_arg;
  atomic_int cmd_pending;
  sem_t cmd_done;
};

static fx_t *g_fx;

static json_t *fake_list(void *ud) {
  fx_t *f = ud;
  return json_deep_copy(f->domains);
}

static int fake_add(void *ud, const char *name, ae_err *err) {
  fx_t *f = ud;
  if (strstr(name, ".."))
    return ae_err_set(err, AE_EINVAL, "invalid host name '%s'", name);
  if (strcmp(name, "denied.example.test") == 0)
    return ae_err_set(err, AE_ELIMIT, "'%s' matches no on_demand.allow pattern", name);
  json_array_append_new(f->domains, json_pack("{s:s,s:s,s:n,s:n,s:n,s:n}", "domain", name, "state", "pending",
                                              "not_after", "issuer", "last_error", "retry_at"));
  ae_events_emit(f->ev, "domain_requested", name, json_pack("{s:s}", "source", "api"));
  return 0;
}

static int fake_delete(void *ud, const char *name, ae_err *err) {
  fx_t *f = ud;
  size_t i;
  json_t *o;
  json_array_foreach(f->domains, i, o) {
    if (strcmp(json_string_value(json_object_get(o, "domain")), name) == 0) {
      json_array_remove(f->domains, i);
      return 0;
    }
  }
  return ae_err_set(err, AE_ENOTFOUND, "'%s' is not managed", name);
}

static char *fake_extra(void *ud) {
  (void)ud;
  return strdup("# HELP acmedge_certificate_expiration_timestamp_seconds Expiry.\n"
                "# TYPE acmedge_certificate_expiration_timestamp_seconds gauge\n"
                "acmedge_certificate_expiration_timestamp_seconds{domain=\"a.example.test\"} 1900000000\n");
}

/* Echoes its arguments so the test sees how the query string was decoded. */
static json_t *fake_page(void *ud, size_t limit, const char *after, const char *state) {
  (void)ud;
  return json_pack("{s:[], s:I, s:s?, s:s?}", "domains", "limit", (json_int_t)limit, "after", after, "state", state);
}

static const ae_admin_hooks g_hooks_template = {.list_domains = fake_list,
                                                .add_domain = fake_add,
                                                .delete_domain = fake_delete,
                                                .extra_metrics = fake_extra,
                                                .list_domains_page = fake_page};

static void on_async(uv_async_t *a) {
  fx_t *f = a->data;
  if (atomic_load(&f->cmd_pending)) {
    f->cmd(f, f->cmd_arg);
    atomic_store(&f->cmd_pending, 0);
    sem_post(&f->cmd_done);
  }
}

static void log_sink(void *ud, ae_log_level level, const char *line) {
  (void)ud;
  (void)level;
  (void)line;
}

static int setup(void **state) {
  fx_t *f = calloc(1, sizeof(*f));
  g_fx = f;
  ae_log_set_sink(log_sink, NULL);
  assert_int_equal(uv_loop_init(&f->loop), 0);
  assert_int_equal(uv_async_init(&f->loop, &f->async, on_async), 0);
  f->async.data = f;
  sem_init(&f->cmd_done, 0, 0);
  assert_int_equal(ae_events_new(16, &f->ev), 0);
  f->domains = json_pack("[{s:s,s:s,s:s,s:s,s:n,s:n}]", "domain", "a.example.test", "state", "valid", "not_after",
                         "2030-01-01T00:00:00Z", "issuer", "Pebble Intermediate CA", "last_error", "retry_at");
  f->cfg.listen_admin = "127.0.0.1:0";
  snprintf(f->dir, sizeof(f->dir), "/tmp/ae_test_admin.XXXXXX");
  assert_non_null(mkdtemp(f->dir));
  *state = f;
  return 0;
}

static void start_admin(fx_t *f) {
  ae_admin_hooks hooks = g_hooks_template;
  hooks.ud = f;
  ae_err err = {0, ""};
  int r = ae_admin_new(&f->loop, &f->cfg, f->ev, &hooks, &f->admin, &err);
  if (r)
    fail_msg("ae_admin_new: %s", err.msg);
  f->port = ae_admin_port(f->admin);
}

static void on_closed(void *ud) { ((fx_t *)ud)->closed = 1; }

static void close_admin(fx_t *f) {
  if (!f->admin)
    return;
  f->closed = 0;
  ae_admin_close(f->admin, on_closed, f);
  assert_false(f->closed);
  while (!f->closed)
    uv_run(&f->loop, UV_RUN_ONCE);
  ae_admin_free(f->admin);
  f->admin = NULL;
}

static int teardown(void **state) {
  fx_t *f = *state;
  close_admin(f);
  uv_close((uv_handle_t *)&f->async, NULL);
  uv_run(&f->loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(&f->loop), 0);
  ae_events_free(f->ev);
  json_decref(f->domains);
  sem_destroy(&f->cmd_done);
  char cmd[300];
  snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
  assert_int_equal(system(cmd), 0);
  ae_log_set_sink(NULL, NULL);
  free(f);
  g_fx = NULL;
  return 0;
}

static void *client_main(void *arg) {
  fx_t *f = arg;
  f->client_ok = f->client(f) == 0;
  atomic_store(&f->client_done, 1);
  uv_async_send(&f->async);
  return NULL;
}

/* Runs fn in a client thread while the loop serves; fails the test with the client's message. */
static void run_client(fx_t *f, client_fn fn) {
  f->client = fn;
  f->client_ok = 0;
  f->fail_msg[0] = '\0';
  atomic_store(&f->client_done, 0);
  pthread_t th;
  assert_int_equal(pthread_create(&th, NULL, client_main, f), 0);
  while (!atomic_load(&f->client_done))
    uv_run(&f->loop, UV_RUN_ONCE);
  pthread_join(th, NULL);
  if (!f->client_ok)
    fail_msg("client: %s", f->fail_msg);
}

/* From the client thread: runs cmd on the loop thread and waits for it. */
static void on_loop(fx_t *f, void (*cmd)(fx_t *, void *), void *arg) {
  f->cmd = cmd;
  f->cmd_arg = arg;
  atomic_store(&f->cmd_pending, 1);
  uv_async_send(&f->async);
  sem_wait(&f->cmd_done);
}

#define CHECK(cond)                                                                                                \
  do {                                                                                                             \
    if (!(cond)) {                                                                                                 \
      snprintf(g_fx->fail_msg, sizeof(g_fx->fail_msg), "line %d: %s", __LINE__, #cond);                           \
      return -1;                                                                                                   \
    }                                                                                                              \
  } while (0)

/* ------------------------------------------------------------------ client helpers */

static int connect_tcp(int port, int rcvbuf) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0)
    return -1;
  struct timeval tv = {10, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  if (rcvbuf)
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
  struct sockaddr_in sin;
  memset(&sin, 0, sizeof(sin));
  sin.sin_family = AF_INET;
  sin.sin_port = htons((uint16_t)port);
  sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, (struct sockaddr *)&sin, sizeof(sin)) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

static int connect_unix(const char *path) {
  int fd = socket(AF_UNIX, SOCK_STREAM, 0);
  struct timeval tv = {10, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  struct sockaddr_un sun;
  memset(&sun, 0, sizeof(sun));
  sun.sun_family = AF_UNIX;
  snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", path);
  if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

static int send_all(int fd, const char *s, size_t n) {
  while (n) {
    ssize_t w = send(fd, s, n, MSG_NOSIGNAL);
    if (w <= 0)
      return -1;
    s += w;
    n -= (size_t)w;
  }
  return 0;
}

typedef struct {
  int status;
  char head[4096];
  char body[65536];
  size_t body_len;
} resp_t;

/* Reads one response with a Content-Length (or up to EOF) from fd. Leftover bytes are kept in
 * carry for the next call (pipelining). */
static int read_response(int fd, resp_t *r, char *carry, size_t *carry_len) {
  static char buf[1 << 20];
  size_t len = 0;
  if (carry && *carry_len) {
    memcpy(buf, carry, *carry_len);
    len = *carry_len;
    *carry_len = 0;
  }
  memset(r, 0, sizeof(*r));
  for (;;) {
    buf[len] = '\0';
    char *eoh = strstr(buf, "\r\n\r\n");
    if (eoh) {
      size_t hl = (size_t)(eoh - buf) + 4;
      const char *cl = strcasestr(buf, "\r\nContent-Length:");
      if (cl && cl < eoh) {
        size_t want = strtoul(cl + 17, NULL, 10);
        if (len >= hl + want) {
          snprintf(r->head, sizeof(r->head), "%.*s", (int)hl, buf);
          memcpy(r->body, buf + hl, want < sizeof(r->body) - 1 ? want : sizeof(r->body) - 1);
          r->body_len = want;
          if (carry) {
            memcpy(carry, buf + hl + want, len - hl - want);
            *carry_len = len - hl - want;
          }
          break;
        }
      }
    }
    if (len >= sizeof(buf) - 1)
      return -1;
    ssize_t n = recv(fd, buf + len, sizeof(buf) - 1 - len, 0);
    if (n <= 0) {
      if (!eoh)
        return -1;
      size_t hl = (size_t)(eoh - buf) + 4;
      snprintf(r->head, sizeof(r->head), "%.*s", (int)hl, buf);
      r->body_len = len - hl < sizeof(r->body) - 1 ? len - hl : sizeof(r->body) - 1;
      memcpy(r->body, buf + hl, r->body_len);
      break;
    }
    len += (size_t)n;
  }
  if (sscanf(r->head, "HTTP/1.1 %d", &r->status) != 1)
    return -1;
  return 0;
}

/* One request on a fresh connection. */
static int request(int port, const char *raw, resp_t *r) {
  int fd = connect_tcp(port, 0);
  if (fd < 0)
    return -1;
  int rc = send_all(fd, raw, strlen(raw)) == 0 ? read_response(fd, r, NULL, NULL) : -1;
  close(fd);
  return rc;
}

static int get(int port, const char *path, const char *extra, resp_t *r) {
  char req[2048];
  snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n%sConnection: close\r\n\r\n", path,
           extra ? extra : "");
  return request(port, req, r);
}

static int send_json(int port, const char *method, const char *path, const char *body, const char *extra, resp_t *r) {
  char req[4096];
  snprintf(req, sizeof(req),
           "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n%s\r\n%s",
           method, path, strlen(body), extra ? extra : "", body);
  return request(port, req, r);
}

static const char *json_error(resp_t *r, json_t **keep) {
  *keep = json_loadb(r->body, r->body_len, 0, NULL);
  return json_string_value(json_object_get(*keep, "error"));
}

/* ------------------------------------------------------------------ basic endpoints */

static int client_basic(fx_t *f) {
  resp_t r;
  CHECK(get(f->port, "/healthz", NULL, &r) == 0);
  CHECK(r.status == 200);
  CHECK(r.body_len == 3 && memcmp(r.body, "ok\n", 3) == 0);

  CHECK(get(f->port, "/metrics", NULL, &r) == 0);
  CHECK(r.status == 200);
  CHECK(strcasestr(r.head, "Content-Type: text/plain; version=0.0.4") != NULL);
  CHECK(strstr(r.body, "\nacmedge_handshakes_total{outcome=\"known\"} 3\n") != NULL);
  CHECK(strstr(r.body, "# TYPE acmedge_time_to_certificate_seconds histogram\n") != NULL);
  CHECK(strstr(r.body, "acmedge_certificate_expiration_timestamp_seconds{domain=\"a.example.test\"} 1900000000\n") !=
        NULL);

  CHECK(get(f->port, "/v1/domains", NULL, &r) == 0);
  CHECK(r.status == 200);
  CHECK(strcasestr(r.head, "Content-Type: application/json") != NULL);
  json_t *j = json_loadb(r.body, r.body_len, 0, NULL);
  CHECK(json_is_array(j) && json_array_size(j) == 1);
  CHECK(strcmp(json_string_value(json_object_get(json_array_get(j, 0), "state")), "valid") == 0);
  json_decref(j);

  CHECK(get(f->port, "/nope", NULL, &r) == 0);
  CHECK(r.status == 404);
  const char *e = json_error(&r, &j);
  CHECK(e && strstr(e, "/nope"));
  json_decref(j);

  CHECK(send_json(f->port, "PUT", "/v1/domains", "{}", NULL, &r) == 0);
  CHECK(r.status == 405);
  CHECK(strcasestr(r.head, "\r\nAllow: GET, POST\r\n") != NULL);
  CHECK(json_error(&r, &j) != NULL);
  json_decref(j);
  CHECK(send_json(f->port, "POST", "/healthz", "{}", NULL, &r) == 0);
  CHECK(r.status == 405);
  CHECK(get(f->port, "/v1/domains/a.example.test", NULL, &r) == 0);
  CHECK(r.status == 405);
  CHECK(strcasestr(r.head, "\r\nAllow: DELETE\r\n") != NULL);
  CHECK(send_json(f->port, "POST", "/v1/events", "{}", NULL, &r) == 0);
  CHECK(r.status == 405);
  return 0;
}

static void test_basic(void **state) {
  fx_t *f = *state;
  ae_metrics_reset();
  ae_metrics_add(AE_M_HS_KNOWN, 3);
  start_admin(f);
  assert_true(f->port > 0);
  run_client(f, client_basic);
}

static int client_domains(fx_t *f) {
  resp_t r;
  json_t *j;
  CHECK(send_json(f->port, "POST", "/v1/domains", "{\"domain\":\"new.example.test\"}", NULL, &r) == 0);
  CHECK(r.status == 202);
  j = json_loadb(r.body, r.body_len, 0, NULL);
  CHECK(j && strcmp(json_string_value(json_object_get(j, "domain")), "new.example.test") == 0);
  CHECK(strcmp(json_string_value(json_object_get(j, "state")), "pending") == 0);
  json_decref(j);

  CHECK(get(f->port, "/v1/domains", NULL, &r) == 0);
  j = json_loadb(r.body, r.body_len, 0, NULL);
  CHECK(json_array_size(j) == 2);
  json_decref(j);

  CHECK(send_json(f->port, "POST", "/v1/domains", "{\"domain\":", NULL, &r) == 0);
  CHECK(r.status == 400);
  const char *e = json_error(&r, &j);
  CHECK(e && strstr(e, "invalid JSON"));
  json_decref(j);
  CHECK(send_json(f->port, "POST", "/v1/domains", "{\"name\":\"x.example.test\"}", NULL, &r) == 0);
  CHECK(r.status == 400);
  CHECK(send_json(f->port, "POST", "/v1/domains", "[\"x\"]", NULL, &r) == 0);
  CHECK(r.status == 400);
  CHECK(send_json(f->port, "POST", "/v1/domains", "{\"domain\":\"bad..example.test\"}", NULL, &r) == 0);
  CHECK(r.status == 400);
  e = json_error(&r, &j);
  CHECK(e && strstr(e, "invalid host name"));
  json_decref(j);
  CHECK(send_json(f->port, "POST", "/v1/domains", "{\"domain\":\"denied.example.test\"}", NULL, &r) == 0);
  CHECK(r.status == 403);
  e = json_error(&r, &j);
  CHECK(e && strstr(e, "no on_demand.allow pattern"));
  json_decref(j);

  CHECK(send_json(f->port, "DELETE", "/v1/domains/new.example.test", "", NULL, &r) == 0);
  CHECK(r.status == 200);
  j = json_loadb(r.body, r.body_len, 0, NULL);
  CHECK(j && strcmp(json_string_value(json_object_get(j, "deleted")), "new.example.test") == 0);
  json_decref(j);
  CHECK(send_json(f->port, "DELETE", "/v1/domains/new.example.test", "", NULL, &r) == 0);
  CHECK(r.status == 404);
  CHECK(send_json(f->port, "DELETE", "/v1/domains/a%2Fb", "", NULL, &r) == 0);
  CHECK(r.status == 400);
  CHECK(send_json(f->port, "DELETE", "/v1/domains/", "", NULL, &r) == 0);
  CHECK(r.status == 400);
  /* percent-encoded name reaches the hook decoded */
  CHECK(send_json(f->port, "DELETE", "/v1/domains/a%2eexample.test", "", NULL, &r) == 0);
  CHECK(r.status == 200);
  return 0;
}

static int client_paging(fx_t *f) {
  resp_t r;
  json_t *j;
  CHECK(get(f->port, "/v1/domains?limit=2&after=a%2Eexample.test&state=valid", NULL, &r) == 0);
  CHECK(r.status == 200);
  j = json_loadb(r.body, r.body_len, 0, NULL);
  CHECK(j && json_integer_value(json_object_get(j, "limit")) == 2);
  CHECK(strcmp(json_string_value(json_object_get(j, "after")), "a.example.test") == 0);
  CHECK(strcmp(json_string_value(json_object_get(j, "state")), "valid") == 0);
  json_decref(j);
  CHECK(get(f->port, "/v1/domains?state=failed", NULL, &r) == 0);
  CHECK(r.status == 200);
  j = json_loadb(r.body, r.body_len, 0, NULL);
  CHECK(j && json_integer_value(json_object_get(j, "limit")) == 0);
  json_decref(j);
  /* No paging parameter: the plain array as before. */
  CHECK(get(f->port, "/v1/domains?x=1", NULL, &r) == 0);
  j = json_loadb(r.body, r.body_len, 0, NULL);
  CHECK(json_is_array(j));
  json_decref(j);
  const char *bad[] = {"/v1/domains?limit=0", "/v1/domains?limit=abc", "/v1/domains?limit=-1",
                       "/v1/domains?limit=10001", "/v1/domains?state=bogus", "/v1/domains?after=a%2Fb"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    CHECK(get(f->port, bad[i], NULL, &r) == 0);
    CHECK(r.status == 400);
    const char *e = json_error(&r, &j);
    CHECK(e != NULL);
    json_decref(j);
  }
  return 0;
}

static void test_paging(void **state) {
  fx_t *f = *state;
  start_admin(f);
  run_client(f, client_paging);
}

static void test_domains(void **state) {
  fx_t *f = *state;
  start_admin(f);
  run_client(f, client_domains);
  assert_int_equal(json_array_size(f->domains), 0);
  assert_int_equal(ae_events_last_id(f->ev), 1); /* the accepted POST went through the hook */
}

static int client_limits(fx_t *f) {
  resp_t r;
  /* Declared body over 64 KiB: refused from the headers alone. */
  CHECK(request(f->port,
                "POST /v1/domains HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                "Content-Length: 70000\r\n\r\n{",
                &r) == 0);
  CHECK(r.status == 413);
  CHECK(strcasestr(r.head, "Connection: close") != NULL);
  /* Chunked body over 64 KiB. */
  {
    int fd = connect_tcp(f->port, 0);
    CHECK(fd >= 0);
    const char *h = "POST /v1/domains HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n";
    CHECK(send_all(fd, h, strlen(h)) == 0);
    static char chunk[8200];
    int n = snprintf(chunk, sizeof(chunk), "2000\r\n");
    memset(chunk + n, 'a', 0x2000);
    memcpy(chunk + n + 0x2000, "\r\n", 2);
    int sent_ok = 1;
    for (int i = 0; i < 9 && sent_ok; i++)
      sent_ok = send_all(fd, chunk, (size_t)n + 0x2000 + 2) == 0;
    int rr = read_response(fd, &r, NULL, NULL);
    close(fd);
    CHECK(rr == 0);
    CHECK(r.status == 413);
  }
  /* Header section over 16 KiB. */
  {
    static char big[20000];
    int n = snprintf(big, sizeof(big), "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: ");
    memset(big + n, 'b', 17000);
    memcpy(big + n + 17000, "\r\n\r\n", 5);
    CHECK(request(f->port, big, &r) == 0);
    CHECK(r.status == 431);
  }
  CHECK(request(f->port, "GARBAGE\r\n\r\n", &r) == 0);
  CHECK(r.status == 400);
  CHECK(request(f->port, "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nOrigin: http://evil.test\r\n\r\n", &r) == 0);
  CHECK(r.status == 403);
  CHECK(request(f->port, "GET /v1/domains HTTP/1.1\r\nHost: rebind.evil.test:2020\r\n\r\n", &r) == 0);
  CHECK(r.status == 403);
  CHECK(request(f->port, "GET /healthz HTTP/1.1\r\nHost: localhost:2020\r\nConnection: close\r\n\r\n", &r) == 0);
  CHECK(r.status == 200);
  CHECK(request(f->port, "GET /healthz HTTP/1.1\r\nHost: [::1]:2020\r\nConnection: close\r\n\r\n", &r) == 0);
  CHECK(r.status == 200);

  /* Keep-alive, then two pipelined requests in one write. */
  int fd = connect_tcp(f->port, 0);
  CHECK(fd >= 0);
  char carry[65536];
  size_t carry_len = 0;
  const char *one = "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
  CHECK(send_all(fd, one, strlen(one)) == 0);
  CHECK(read_response(fd, &r, carry, &carry_len) == 0);
  CHECK(r.status == 200);
  CHECK(strcasestr(r.head, "Connection: close") == NULL);
  const char *two = "GET /v1/domains HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\nGET /nope HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
  CHECK(send_all(fd, two, strlen(two)) == 0);
  CHECK(read_response(fd, &r, carry, &carry_len) == 0);
  CHECK(r.status == 200 && r.body[0] == '[');
  CHECK(read_response(fd, &r, carry, &carry_len) == 0);
  CHECK(r.status == 404);
  /* HTTP/1.0 without keep-alive: the server closes after the response. */
  close(fd);
  fd = connect_tcp(f->port, 0);
  const char *old = "GET /healthz HTTP/1.0\r\n\r\n";
  CHECK(send_all(fd, old, strlen(old)) == 0);
  CHECK(read_response(fd, &r, NULL, NULL) == 0);
  CHECK(r.status == 200);
  char c;
  CHECK(recv(fd, &c, 1, 0) == 0);
  close(fd);
  return 0;
}

static void test_limits(void **state) {
  fx_t *f = *state;
  start_admin(f);
  run_client(f, client_limits);
}

static int client_half_close(fx_t *f) {
  int fd = connect_tcp(f->port, 4096);
  CHECK(fd >= 0);
  const char *q = "GET /v1/domains HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
  CHECK(send_all(fd, q, strlen(q)) == 0);
  CHECK(shutdown(fd, SHUT_WR) == 0);
  usleep(200000); /* the server sees EOF before the client reads anything */
  static resp_t r;
  CHECK(read_response(fd, &r, NULL, NULL) == 0);
  close(fd);
  CHECK(r.status == 200);
  CHECK(r.body_len > 100000);
  return 0;
}

static void test_half_close(void **state) {
  fx_t *f = *state;
  for (int i = 0; i < 3000; i++) {
    char name[64];
    snprintf(name, sizeof(name), "host-%04d.example.test", i);
    json_array_append_new(f->domains, json_pack("{s:s,s:s}", "domain", name, "state", "valid"));
  }
  start_admin(f);
  run_client(f, client_half_close);
}

/* ------------------------------------------------------------------ token */

static void cmd_set_token(fx_t *f, void *arg) {
  f->cfg.admin_token = arg;
  ae_admin_set_config(f->admin, &f->cfg);
}

static int client_token(fx_t *f) {
  resp_t r;
  json_t *j;
  CHECK(get(f->port, "/healthz", NULL, &r) == 0);
  CHECK(r.status == 401);
  CHECK(strcasestr(r.head, "WWW-Authenticate: Bearer") != NULL);
  CHECK(json_error(&r, &j) != NULL);
  json_decref(j);
  CHECK(get(f->port, "/v1/events", "Authorization: Bearer s3cret-nope\r\n", &r) == 0);
  CHECK(r.status == 401);
  CHECK(get(f->port, "/v1/domains", "Authorization: Basic czNjcmV0\r\n", &r) == 0);
  CHECK(r.status == 401);
  CHECK(get(f->port, "/v1/domains", "Authorization: Bearer s3cre\r\n", &r) == 0);
  CHECK(r.status == 401);
  CHECK(get(f->port, "/v1/domains", "Authorization: Bearer s3cret\r\n", &r) == 0);
  CHECK(r.status == 200);
  CHECK(get(f->port, "/metrics", "Authorization: bearer s3cret\r\n", &r) == 0);
  CHECK(r.status == 200);
  /* A token on a loopback listener also lifts the Host check (the token is the protection). */
  CHECK(request(f->port, "GET /healthz HTTP/1.1\r\nHost: admin.internal\r\nAuthorization: Bearer s3cret\r\n"
                "Connection: close\r\n\r\n", &r) == 0);
  CHECK(r.status == 200);

  on_loop(f, cmd_set_token, "rotated");
  CHECK(get(f->port, "/healthz", "Authorization: Bearer s3cret\r\n", &r) == 0);
  CHECK(r.status == 401);
  CHECK(get(f->port, "/healthz", "Authorization: Bearer rotated\r\n", &r) == 0);
  CHECK(r.status == 200);
  on_loop(f, cmd_set_token, NULL);
  CHECK(get(f->port, "/healthz", NULL, &r) == 0);
  CHECK(r.status == 200);
  return 0;
}

static void test_token(void **state) {
  fx_t *f = *state;
  f->cfg.admin_token = "s3cret";
  start_admin(f);
  run_client(f, client_token);
}

static void test_refuse_public_without_token(void **state) {
  fx_t *f = *state;
  ae_admin_hooks hooks = g_hooks_template;
  hooks.ud = f;
  ae_err err = {0, ""};
  ae_admin *a = NULL;
  f->cfg.listen_admin = "0.0.0.0:0";
  assert_int_equal(ae_admin_new(&f->loop, &f->cfg, f->ev, &hooks, &a, &err), AE_EINVAL);
  assert_null(a);
  assert_non_null(strstr(err.msg, "requires admin.token"));
  f->cfg.listen_admin = "[2001:db8::1]:2020";
  assert_int_equal(ae_admin_new(&f->loop, &f->cfg, f->ev, &hooks, &a, &err), AE_EINVAL);
  f->cfg.listen_admin = "admin.example.test:2020";
  assert_int_equal(ae_admin_new(&f->loop, &f->cfg, f->ev, &hooks, &a, &err), AE_EINVAL);
  assert_non_null(strstr(err.msg, "not an IP address"));
  f->cfg.listen_admin = "unix:relative.sock";
  assert_int_equal(ae_admin_new(&f->loop, &f->cfg, f->ev, &hooks, &a, &err), AE_EINVAL);
  /* Failed objects free themselves once the loop has closed their handles. */
  uv_run(&f->loop, UV_RUN_NOWAIT);
  /* [::1] is loopback: fine without a token */
  f->cfg.listen_admin = "[::1]:0";
  int r = ae_admin_new(&f->loop, &f->cfg, f->ev, &hooks, &a, &err);
  if (r == 0) {
    f->admin = a;
    assert_true(ae_admin_port(a) > 0);
  } else {
    /* a host without IPv6 cannot bind ::1; only that kind of failure is acceptable */
    assert_int_equal(r, AE_EIO);
    uv_run(&f->loop, UV_RUN_NOWAIT);
  }
}

/* ------------------------------------------------------------------ unix socket */

static int client_unix(fx_t *f) {
  int fd = connect_unix(f->sock_path);
  CHECK(fd >= 0);
  const char *q = "GET /v1/domains HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
  CHECK(send_all(fd, q, strlen(q)) == 0);
  resp_t r;
  CHECK(read_response(fd, &r, NULL, NULL) == 0);
  close(fd);
  CHECK(r.status == 200);
  CHECK(r.body[0] == '[');
  return 0;
}

static void test_unix_socket(void **state) {
  fx_t *f = *state;
  assert_true(strlen(f->dir) + 12 < sizeof(f->sock_path));
  memcpy(f->sock_path, f->dir, strlen(f->dir));
  memcpy(f->sock_path + strlen(f->dir), "/admin.sock", 12);
  /* A stale socket left by a crashed process. */
  int fd = socket(AF_UNIX, SOCK_STREAM, 0);
  struct sockaddr_un sun;
  memset(&sun, 0, sizeof(sun));
  sun.sun_family = AF_UNIX;
  memcpy(sun.sun_path, f->sock_path, strlen(f->sock_path) + 1);
  assert_int_equal(bind(fd, (struct sockaddr *)&sun, sizeof(sun)), 0);
  close(fd);

  char addr[300];
  snprintf(addr, sizeof(addr), "unix:%s", f->sock_path);
  f->cfg.listen_admin = addr;
  start_admin(f);
  assert_int_equal(ae_admin_port(f->admin), 0);
  struct stat st;
  assert_int_equal(stat(f->sock_path, &st), 0);
  assert_true(S_ISSOCK(st.st_mode));
  assert_int_equal(st.st_mode & 0777, 0600);
  run_client(f, client_unix);

  /* A second instance on the same live socket is refused. */
  ae_admin_hooks hooks = g_hooks_template;
  ae_err err = {0, ""};
  ae_admin *a2 = NULL;
  f->cfg.listen_admin = f->sock_path; /* plain absolute path form */
  assert_int_equal(ae_admin_new(&f->loop, &f->cfg, f->ev, &hooks, &a2, &err), AE_EEXIST);
  assert_non_null(strstr(err.msg, "in use"));
  uv_run(&f->loop, UV_RUN_NOWAIT);

  close_admin(f);
  assert_int_equal(access(f->sock_path, F_OK), -1); /* removed at close */

  /* A regular file at the path is never deleted. */
  FILE *fp = fopen(f->sock_path, "w");
  fputs("precious", fp);
  fclose(fp);
  assert_int_equal(ae_admin_new(&f->loop, &f->cfg, f->ev, &hooks, &a2, &err), AE_EEXIST);
  assert_non_null(strstr(err.msg, "not a socket"));
  uv_run(&f->loop, UV_RUN_NOWAIT);
  assert_int_equal(access(f->sock_path, F_OK), 0);
}

/* ------------------------------------------------------------------ SSE */

typedef struct {
  int fd;
  char buf[1 << 20];
  size_t len, pos;
} sse_t;

/* Reads the next SSE block (up to a blank line). Returns 0 with the block in out, -1 on EOF/timeout. */
static int sse_next(sse_t *s, char *out, size_t outlen) {
  for (;;) {
    s->buf[s->len] = '\0';
    char *end = strstr(s->buf + s->pos, "\n\n");
    if (end) {
      size_t n = (size_t)(end - (s->buf + s->pos));
      snprintf(out, outlen, "%.*s", (int)n, s->buf + s->pos);
      s->pos += n + 2;
      if (s->pos > sizeof(s->buf) / 2) {
        memmove(s->buf, s->buf + s->pos, s->len - s->pos);
        s->len -= s->pos;
        s->pos = 0;
      }
      return 0;
    }
    if (s->len >= sizeof(s->buf) - 1)
      return -1;
    ssize_t r = recv(s->fd, s->buf + s->len, sizeof(s->buf) - 1 - s->len, 0);
    if (r <= 0)
      return -1;
    s->len += (size_t)r;
  }
}

/* Opens a stream; returns 0 with the headers consumed. */
static int sse_open(fx_t *f, sse_t *s, const char *path, const char *extra, int rcvbuf) {
  memset(s, 0, sizeof(*s));
  s->fd = connect_tcp(f->port, rcvbuf);
  if (s->fd < 0)
    return -1;
  char req[1024];
  snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n%s\r\n", path,
           extra ? extra : "");
  if (send_all(s->fd, req, strlen(req)) != 0)
    return -1;
  for (;;) {
    s->buf[s->len] = '\0';
    char *eoh = strstr(s->buf, "\r\n\r\n");
    if (eoh) {
      if (strncmp(s->buf, "HTTP/1.1 200 ", 13) != 0 || !strcasestr(s->buf, "Content-Type: text/event-stream"))
        return -1;
      s->pos = (size_t)(eoh - s->buf) + 4;
      return 0;
    }
    ssize_t r = recv(s->fd, s->buf + s->len, sizeof(s->buf) - 1 - s->len, 0);
    if (r <= 0)
      return -1;
    s->len += (size_t)r;
  }
}

/* Parses "id: N\ndata: {...}" and checks that data's id matches. Returns N or 0. */
static uint64_t block_id(const char *block) {
  unsigned long long id;
  if (sscanf(block, "id: %llu\n", &id) != 1)
    return 0;
  const char *d = strstr(block, "\ndata: ");
  if (!d)
    return 0;
  json_t *o = json_loads(d + 7, 0, NULL);
  uint64_t jid = (uint64_t)json_integer_value(json_object_get(o, "id"));
  json_decref(o);
  return jid == id ? id : 0;
}

static void cmd_emit3(fx_t *f, void *arg) {
  (void)arg;
  for (int i = 0; i < 3; i++)
    ae_events_emit(f->ev, "cert_issued", "s.example.test", json_pack("{s:i}", "n", i));
}

static int client_sse(fx_t *f) {
  static sse_t s;
  char block[8192];
  /* Ids 1..3 exist. Last-Event-ID 1 gives 2, 3, then live events. */
  CHECK(sse_open(f, &s, "/v1/events", "Last-Event-ID: 1\r\n", 0) == 0);
  CHECK(sse_next(&s, block, sizeof(block)) == 0);
  CHECK(block_id(block) == 2);
  CHECK(strstr(block, "\"type\":\"cert_issued\"") != NULL);
  CHECK(sse_next(&s, block, sizeof(block)) == 0);
  CHECK(block_id(block) == 3);
  on_loop(f, cmd_emit3, NULL);
  for (uint64_t want = 4; want <= 6; want++) {
    CHECK(sse_next(&s, block, sizeof(block)) == 0);
    CHECK(block_id(block) == want);
  }
  close(s.fd);

  /* ?since=0 replays everything buffered. */
  CHECK(sse_open(f, &s, "/v1/events?since=0", NULL, 0) == 0);
  for (uint64_t want = 1; want <= 6; want++) {
    CHECK(sse_next(&s, block, sizeof(block)) == 0);
    CHECK(block_id(block) == want);
  }
  close(s.fd);

  /* No position: only new events. */
  CHECK(sse_open(f, &s, "/v1/events", NULL, 0) == 0);
  on_loop(f, cmd_emit3, NULL);
  CHECK(sse_next(&s, block, sizeof(block)) == 0);
  CHECK(block_id(block) == 7);
  close(s.fd);

  /* Ring of 16 after 25 more events: since=0 reports 16 missed, then 17..34... */
  for (int i = 0; i < 9; i++)
    on_loop(f, cmd_emit3, NULL); /* ids up to 36 */
  CHECK(sse_open(f, &s, "/v1/events?since=3", NULL, 0) == 0);
  CHECK(sse_next(&s, block, sizeof(block)) == 0);
  CHECK(strcmp(block, ": missed 17") == 0);
  for (uint64_t want = 21; want <= 36; want++) {
    CHECK(sse_next(&s, block, sizeof(block)) == 0);
    CHECK(block_id(block) == want);
  }
  close(s.fd);

  /* An id from the future (the server restarted): everything buffered again. */
  CHECK(sse_open(f, &s, "/v1/events", "Last-Event-ID: 9999\r\n", 0) == 0);
  CHECK(sse_next(&s, block, sizeof(block)) == 0);
  CHECK(strcmp(block, ": missed 20") == 0);
  CHECK(sse_next(&s, block, sizeof(block)) == 0);
  CHECK(block_id(block) == 21);
  close(s.fd);

  resp_t r;
  CHECK(get(f->port, "/v1/events", "Last-Event-ID: abc\r\n", &r) == 0);
  CHECK(r.status == 400);
  CHECK(get(f->port, "/v1/events?since=-1", NULL, &r) == 0);
  CHECK(r.status == 400);
  return 0;
}

static void test_sse_replay(void **state) {
  fx_t *f = *state;
  start_admin(f);
  for (int i = 0; i < 3; i++)
    ae_events_emit(f->ev, "cert_issued", "s.example.test", json_pack("{s:i}", "n", i));
  run_client(f, client_sse);
}

static int client_heartbeat(fx_t *f) {
  static sse_t s;
  char block[256];
  CHECK(sse_open(f, &s, "/v1/events", NULL, 0) == 0);
  CHECK(sse_next(&s, block, sizeof(block)) == 0);
  CHECK(strcmp(block, ": ping") == 0);
  CHECK(sse_next(&s, block, sizeof(block)) == 0);
  CHECK(strcmp(block, ": ping") == 0);
  close(s.fd);
  return 0;
}

static void test_sse_heartbeat(void **state) {
  fx_t *f = *state;
  start_admin(f);
  ae_admin_set_heartbeat_ms(f->admin, 50);
  run_client(f, client_heartbeat);
}

static atomic_ullong g_last_emitted;
static atomic_int g_emit_returned;

static void cmd_flood(fx_t *f, void *arg) {
  (void)arg;
  static char pad[2049];
  memset(pad, 'p', 2048);
  uint64_t id = 0;
  for (int i = 0; i < 5000; i++)
    id = ae_events_emit(f->ev, "domain_requested", "flood.example.test", json_pack("{s:s}", "pad", pad));
  atomic_store(&g_last_emitted, id);
  atomic_store(&g_emit_returned, 1);
}

static int client_slow(fx_t *f) {
  static sse_t s;
  static char block[8192];
  CHECK(sse_open(f, &s, "/v1/events", NULL, 4096) == 0);
  /* Do not read while 5000 events of ~2 KiB are emitted: the emitter must not wait for us. */
  on_loop(f, cmd_flood, NULL);
  CHECK(atomic_load(&g_emit_returned) == 1);
  uint64_t last = atomic_load(&g_last_emitted);
  uint64_t prev = 0, got = 0, missed = 0, gaps = 0;
  while (prev < last) {
    CHECK(sse_next(&s, block, sizeof(block)) == 0);
    unsigned long long m;
    if (sscanf(block, ": missed %llu", &m) == 1) {
      missed += m;
      gaps++;
      continue;
    }
    if (strcmp(block, ": ping") == 0)
      continue;
    uint64_t id = block_id(block);
    CHECK(id > prev);
    /* Every hole in the ids is announced by a missed comment just before. */
    CHECK(id == prev + 1 || gaps > 0);
    prev = id;
    got++;
  }
  CHECK(prev == last);
  CHECK(got + missed == last);
  CHECK(missed > 0);
  CHECK(got >= 16);
  close(s.fd);
  return 0;
}

static void test_sse_slow_client(void **state) {
  fx_t *f = *state;
  start_admin(f);
  ae_admin_set_sse_queue_limit(f->admin, 4096);
  run_client(f, client_slow);
}

static void cmd_close_admin(fx_t *f, void *arg) {
  (void)arg;
  ae_admin_close(f->admin, on_closed, f);
}

static int client_streams_then_close(fx_t *f) {
  static sse_t s;
  char block[256];
  CHECK(sse_open(f, &s, "/v1/events", NULL, 0) == 0);
  int fd = connect_tcp(f->port, 0);
  CHECK(fd >= 0);
  on_loop(f, cmd_close_admin, NULL);
  /* Both connections end. */
  CHECK(sse_next(&s, block, sizeof(block)) == -1);
  char c;
  CHECK(recv(fd, &c, 1, 0) == 0);
  close(fd);
  close(s.fd);
  return 0;
}

static void test_close_with_clients(void **state) {
  fx_t *f = *state;
  start_admin(f);
  f->closed = 0;
  run_client(f, client_streams_then_close);
  while (!f->closed)
    uv_run(&f->loop, UV_RUN_ONCE);
  ae_admin_free(f->admin);
  f->admin = NULL;
}

int main(void) {
  signal(SIGPIPE, SIG_IGN);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_basic, setup, teardown),
      cmocka_unit_test_setup_teardown(test_domains, setup, teardown),
      cmocka_unit_test_setup_teardown(test_paging, setup, teardown),
      cmocka_unit_test_setup_teardown(test_limits, setup, teardown),
      cmocka_unit_test_setup_teardown(test_half_close, setup, teardown),
      cmocka_unit_test_setup_teardown(test_token, setup, teardown),
      cmocka_unit_test_setup_teardown(test_refuse_public_without_token, setup, teardown),
      cmocka_unit_test_setup_teardown(test_unix_socket, setup, teardown),
      cmocka_unit_test_setup_teardown(test_sse_replay, setup, teardown),
      cmocka_unit_test_setup_teardown(test_sse_heartbeat, setup, teardown),
      cmocka_unit_test_setup_teardown(test_sse_slow_client, setup, teardown),
      cmocka_unit_test_setup_teardown(test_close_with_clients, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
