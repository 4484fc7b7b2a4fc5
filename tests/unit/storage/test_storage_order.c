/* Saved orders (order resume): the record's text form (round trip, key sealed, refusal of a
 * record copied under another name or holder, garbage), the fs backend saving nothing, and the
 * Redis backend's fenced writes against a real redis-server on a Unix socket (a writer whose lock
 * was taken over is refused, a commit deletes the record, a record copied onto another name does
 * not open). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <hiredis.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../../../src/storage/storage_order.h"
#include "acmedge/storage.h"

static const unsigned char K1[32] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16,
                                     17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32};
static const unsigned char K2[32] = {9};
static const char PEM[] = "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg\n-----END PRIVATE KEY-----\n";
static const char WHERE[] = "p{ns}:order:ca_14000:a.example";

static void fill(ae_storage_order *o, uint64_t fence) {
  memset(o, 0, sizeof(*o));
  o->url = strdup("https://ca.test/order/1");
  o->key_pem = strdup(PEM);
  o->csr = strdup("MIIBcsr");
  snprintf(o->ca_host, sizeof(o->ca_host), "ca_14000");
  o->fence = fence;
  o->created = 1700000000;
  o->expires = 1700600000;
}

static void test_round_trip_sealed(void **state) {
  (void)state;
  ae_storage_order o, back;
  fill(&o, 7);
  char *text = NULL;
  ae_err err = {0};
  assert_int_equal(ae_order_encode(&o, K1, WHERE, &text, &err), 0);
  assert_null(strstr(text, "PRIVATE KEY"));
  assert_non_null(strstr(text, "aeenc1:"));
  assert_int_equal(ae_order_decode(text, strlen(text), K1, WHERE, &back, &err), 0);
  assert_string_equal(back.url, o.url);
  assert_string_equal(back.key_pem, PEM);
  assert_string_equal(back.csr, o.csr);
  assert_string_equal(back.ca_host, "ca_14000");
  assert_int_equal(back.fence, 7);
  assert_int_equal(back.created, 1700000000);
  assert_int_equal(back.expires, 1700600000);
  ae_storage_order_clear(&back);
  assert_null(back.url);
  free(text);
  ae_storage_order_clear(&o);
}

static void test_round_trip_plain(void **state) {
  (void)state;
  ae_storage_order o, back;
  fill(&o, 3);
  char *text = NULL;
  ae_err err = {0};
  assert_int_equal(ae_order_encode(&o, NULL, WHERE, &text, &err), 0);
  assert_non_null(strstr(text, "PRIVATE KEY"));
  assert_int_equal(ae_order_decode(text, strlen(text), NULL, WHERE, &back, &err), 0);
  assert_string_equal(back.key_pem, PEM);
  ae_storage_order_clear(&back);
  /* A plain key while encryption is on was not written by us. */
  assert_int_equal(ae_order_decode(text, strlen(text), K1, WHERE, &back, &err), AE_EPROTO);
  free(text);
  ae_storage_order_clear(&o);
}

static void test_copied_record_refused(void **state) {
  (void)state;
  ae_storage_order o, back;
  fill(&o, 7);
  char *text = NULL;
  ae_err err = {0};
  assert_int_equal(ae_order_encode(&o, K1, WHERE, &text, &err), 0);
  /* Another name. */
  assert_int_equal(ae_order_decode(text, strlen(text), K1, "p{ns}:order:ca_14000:b.example", &back, &err),
                   AE_EPROTO);
  assert_non_null(strstr(err.msg, "b.example"));
  assert_null(back.url);
  /* Another key_file. */
  assert_int_equal(ae_order_decode(text, strlen(text), K2, WHERE, &back, &err), AE_EPROTO);
  /* The fence rewritten (the key is bound to the holder that saved it). */
  char *p = strstr(text, "\"fence\":7");
  assert_non_null(p);
  p[8] = '8';
  assert_int_equal(ae_order_decode(text, strlen(text), K1, WHERE, &back, &err), AE_EPROTO);
  /* Encrypted while encrypt_keys is false. */
  p[8] = '7';
  assert_int_equal(ae_order_decode(text, strlen(text), NULL, WHERE, &back, &err), AE_EPROTO);
  free(text);
  ae_storage_order_clear(&o);
}

static void test_bad_records(void **state) {
  (void)state;
  ae_storage_order back;
  ae_err err = {0};
  static const char *const bad[] = {"", "garbage", "[]", "{\"v\":1}",
                                    "{\"v\":2,\"url\":\"u\",\"key\":\"k\",\"csr\":\"c\",\"ca\":\"x\",\"fence\":1,"
                                    "\"created\":1,\"expires\":2}",
                                    "{\"v\":1,\"url\":\"u\",\"key\":\"k\",\"csr\":\"c\",\"ca\":\"x\",\"fence\":0,"
                                    "\"created\":1,\"expires\":2}",
                                    "{\"v\":1,\"url\":5,\"key\":\"k\",\"csr\":\"c\",\"ca\":\"x\",\"fence\":1,"
                                    "\"created\":1,\"expires\":2}"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    assert_int_equal(ae_order_decode(bad[i], strlen(bad[i]), NULL, WHERE, &back, &err), AE_EPROTO);
    assert_non_null(strstr(err.msg, WHERE));
  }
  ae_storage_order o;
  fill(&o, 0); /* no fence: nothing to bind the record to */
  char *text = NULL;
  assert_int_equal(ae_order_encode(&o, K1, WHERE, &text, &err), AE_EINVAL);
  assert_null(text);
  ae_storage_order_clear(&o);
}

static void test_fs_saves_nothing(void **state) {
  (void)state;
  char dir[] = "/tmp/ae-order-fs.XXXXXX";
  assert_non_null(mkdtemp(dir));
  ae_storage *st = NULL;
  ae_err err = {0};
  assert_int_equal(ae_storage_fs_new(dir, &st, &err), 0);
  assert_int_equal(ae_storage_saves_orders(st), 0);
  ae_storage_order o, back;
  fill(&o, 4);
  assert_int_equal(ae_storage_order_put(st, "a.example", &o, &err), 0);
  assert_int_equal(ae_storage_order_get(st, "ca_14000", "a.example", &back, &err), AE_ENOTFOUND);
  assert_int_equal(ae_storage_order_del(st, "ca_14000", "a.example", 4, &err), 0);
  ae_storage_order_clear(&o);
  ae_storage_free(st);
  char cmd[128];
  snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
  assert_int_equal(system(cmd), 0);
}

/* ---------- Redis ---------- */

typedef struct rfix {
  char dir[64], sock[128];
  pid_t pid;
  ae_storage *st;
  redisContext *raw;
} rfix;

static int redis_setup(void **state) {
  rfix *f = calloc(1, sizeof(*f));
  snprintf(f->dir, sizeof(f->dir), "/tmp/ae-order-redis.XXXXXX");
  if (!mkdtemp(f->dir))
    return -1;
  snprintf(f->sock, sizeof(f->sock), "%s/redis.sock", f->dir);
  f->pid = fork();
  if (f->pid == 0) {
    int null = open("/dev/null", O_WRONLY);
    if (null >= 0) {
      dup2(null, 1);
      dup2(null, 2);
    }
    execlp("redis-server", "redis-server", "--port", "0", "--unixsocket", f->sock, "--save", "", "--appendonly", "no",
           "--dir", f->dir, (char *)NULL);
    _exit(127);
  }
  for (int i = 0; i < 200 && !f->raw; i++) { /* up to 10 s */
    redisContext *c = redisConnectUnix(f->sock);
    if (c && !c->err)
      f->raw = c;
    else {
      if (c)
        redisFree(c);
      struct timespec ts = {0, 50 * 1000 * 1000};
      nanosleep(&ts, NULL);
    }
  }
  if (!f->raw) {
    fprintf(stderr, "redis-server did not start on %s\n", f->sock);
    return -1;
  }
  ae_storage_redis_cfg c = {0};
  char addr[160];
  snprintf(addr, sizeof(addr), "unix:%s", f->sock);
  c.address = addr;
  c.unix_path = f->sock;
  c.prefix = "t";
  c.encrypt_keys = 1;
  memcpy(c.key, K1, 32);
  c.lock_lease_ms = 60000;
  ae_err err = {0};
  if (ae_storage_redis_new(&c, &f->st, &err) != 0)
    return -1;
  *state = f;
  return 0;
}

static int redis_teardown(void **state) {
  rfix *f = *state;
  if (!f)
    return 0;
  ae_storage_free(f->st);
  if (f->raw)
    redisFree(f->raw);
  if (f->pid > 0) {
    kill(f->pid, SIGTERM);
    waitpid(f->pid, NULL, 0);
  }
  char cmd[128];
  snprintf(cmd, sizeof(cmd), "rm -rf %s", f->dir);
  if (system(cmd) != 0)
    return -1;
  free(f);
  return 0;
}

static long long raw_int(rfix *f, const char *cmd, const char *a1, const char *a2) {
  redisReply *r = a2 ? redisCommand(f->raw, cmd, a1, a2) : redisCommand(f->raw, cmd, a1);
  assert_non_null(r);
  long long v = r->type == REDIS_REPLY_INTEGER ? r->integer : -1;
  freeReplyObject(r);
  return v;
}

static void test_redis_fenced(void **state) {
  rfix *f = *state;
  ae_storage *st = f->st;
  ae_err err = {0};
  const char *lname = "cert:ca_14000:a.example";
  assert_int_equal(ae_storage_saves_orders(st), 1);
  uint64_t t1 = 0, t2 = 0;
  int lr = ae_storage_lock(st, lname, &t1, &err);
  if (lr != 0)
    fail_msg("lock: %s", err.msg);
  ae_storage_order o, back;
  fill(&o, t1);
  o.expires = (int64_t)time(NULL) + 3600;
  assert_int_equal(ae_storage_order_put(st, "a.example", &o, &err), 0);
  assert_int_equal(ae_storage_order_get(st, "ca_14000", "a.example", &back, &err), 0);
  assert_string_equal(back.url, o.url);
  assert_string_equal(back.key_pem, PEM);
  assert_int_equal(back.fence, t1);
  ae_storage_order_clear(&back);
  /* Expires with the order. */
  long long ttl = raw_int(f, "PTTL %s", "t{ns}:order:ca_14000:a.example", NULL);
  assert_true(ttl > 3500 * 1000 && ttl <= 3600 * 1000);
  /* At rest: no private key text. */
  redisReply *r = redisCommand(f->raw, "GET %s", "t{ns}:order:ca_14000:a.example");
  assert_int_equal(r->type, REDIS_REPLY_STRING);
  assert_null(strstr(r->str, "PRIVATE KEY"));
  /* The same record copied onto another name does not open there. */
  redisReply *w = redisCommand(f->raw, "SET %s %b", "t{ns}:order:ca_14000:b.example", r->str, r->len);
  freeReplyObject(w);
  freeReplyObject(r);
  assert_int_equal(ae_storage_order_get(st, "ca_14000", "b.example", &back, &err), AE_EPROTO);
  assert_non_null(strstr(err.msg, "b.example"));

  /* The holder's lease lapses and another instance takes the name: the old holder can neither
   * replace nor delete the record any more. */
  raw_int(f, "DEL %s", "t{ns}:lock:cert:ca_14000:a.example", NULL);
  assert_int_equal(ae_storage_lock(st, lname, &t2, &err), 0);
  assert_true(t2 > t1);
  free(o.url);
  o.url = strdup("https://ca.test/order/late");
  assert_int_equal(ae_storage_order_put(st, "a.example", &o, &err), AE_EEXIST);
  assert_non_null(strstr(err.msg, "refused"));
  assert_int_equal(ae_storage_order_del(st, "ca_14000", "a.example", t1, &err), 0);
  assert_int_equal(ae_storage_order_get(st, "ca_14000", "a.example", &back, &err), 0);
  assert_string_equal(back.url, "https://ca.test/order/1"); /* untouched */
  ae_storage_order_clear(&back);

  /* The new holder's commit ends the order: the record goes with it. */
  ae_storage_bundle b = {.ca_host = "ca_14000", .domain = "a.example", .chain = "CHAIN", .key = PEM, .meta = "{}",
                         .not_before = 1, .not_after = 2, .fence = t2};
  assert_int_equal(ae_storage_commit(st, &b, &err), 0);
  assert_int_equal(raw_int(f, "EXISTS %s", "t{ns}:order:ca_14000:a.example", NULL), 0);
  assert_int_equal(ae_storage_order_get(st, "ca_14000", "a.example", &back, &err), AE_ENOTFOUND);

  /* A failed order's record is deleted by its holder. */
  ae_storage_order_clear(&o);
  fill(&o, t2);
  o.expires = (int64_t)time(NULL) + 60;
  assert_int_equal(ae_storage_order_put(st, "a.example", &o, &err), 0);
  assert_int_equal(ae_storage_order_del(st, "ca_14000", "a.example", t2, &err), 0);
  assert_int_equal(raw_int(f, "EXISTS %s", "t{ns}:order:ca_14000:a.example", NULL), 0);
  assert_int_equal(ae_storage_unlock(st, lname, t2, &err), 0);
  ae_storage_order_clear(&o);
  /* Garbage under the key: a clear error naming it, no crash. */
  w = redisCommand(f->raw, "SET %s %s", "t{ns}:order:ca_14000:c.example", "not json");
  freeReplyObject(w);
  assert_int_equal(ae_storage_order_get(st, "ca_14000", "c.example", &back, &err), AE_EPROTO);
  assert_non_null(strstr(err.msg, "c.example"));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_round_trip_sealed), cmocka_unit_test(test_round_trip_plain),
      cmocka_unit_test(test_copied_record_refused), cmocka_unit_test(test_bad_records),
      cmocka_unit_test(test_fs_saves_nothing),
      cmocka_unit_test_setup_teardown(test_redis_fenced, redis_setup, redis_teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
