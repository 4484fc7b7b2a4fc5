/* sd_notify client (sdnotify.c): datagram delivery to path and abstract sockets, the no-manager
 * case, malformed NOTIFY_SOCKET, and WATCHDOG_USEC / WATCHDOG_PID parsing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "acmedge/sdnotify.h"

/* Binds a datagram socket at name ("/path" or "@abstract"); returns the fd. */
static int bind_dgram(const char *name) {
  int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  assert_true(fd >= 0);
  struct sockaddr_un sa;
  memset(&sa, 0, sizeof(sa));
  sa.sun_family = AF_UNIX;
  size_t n = strlen(name);
  memcpy(sa.sun_path, name, n);
  if (name[0] == '@')
    sa.sun_path[0] = '\0';
  else
    unlink(name);
  socklen_t len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + (name[0] == '/' ? 1 : 0));
  assert_int_equal(bind(fd, (struct sockaddr *)&sa, len), 0);
  return fd;
}

static void recv_expect(int fd, const char *want) {
  char buf[256];
  ssize_t n = recv(fd, buf, sizeof(buf) - 1, MSG_DONTWAIT);
  assert_true(n >= 0);
  buf[n] = '\0';
  assert_string_equal(buf, want);
}

static void test_unset_is_noop(void **state) {
  (void)state;
  unsetenv("NOTIFY_SOCKET");
  ae_err err = {0};
  assert_int_equal(ae_sd_notify("READY=1", &err), 0);
}

static void test_path_socket(void **state) {
  (void)state;
  char path[64];
  snprintf(path, sizeof(path), "/tmp/ae_test_sdnotify.%ld.sock", (long)getpid());
  int fd = bind_dgram(path);
  setenv("NOTIFY_SOCKET", path, 1);
  ae_err err = {0};
  assert_int_equal(ae_sd_notify("READY=1\nSTATUS=running", &err), 1);
  recv_expect(fd, "READY=1\nSTATUS=running");
  assert_int_equal(ae_sd_notify("STOPPING=1", &err), 1);
  recv_expect(fd, "STOPPING=1");
  close(fd);
  unlink(path);
  /* Nobody listens any more: an error naming the socket, not a crash. */
  assert_true(ae_sd_notify("WATCHDOG=1", &err) < 0);
  assert_non_null(strstr(err.msg, path));
  unsetenv("NOTIFY_SOCKET");
}

static void test_abstract_socket(void **state) {
  (void)state;
  char name[64];
  snprintf(name, sizeof(name), "@ae_test_sdnotify_%ld", (long)getpid());
  int fd = bind_dgram(name);
  setenv("NOTIFY_SOCKET", name, 1);
  ae_err err = {0};
  assert_int_equal(ae_sd_notify("WATCHDOG=1", &err), 1);
  recv_expect(fd, "WATCHDOG=1");
  close(fd);
  unsetenv("NOTIFY_SOCKET");
}

static void test_bad_socket_name(void **state) {
  (void)state;
  ae_err err = {0};
  setenv("NOTIFY_SOCKET", "relative/path", 1);
  assert_int_equal(ae_sd_notify("READY=1", &err), AE_EINVAL);
  assert_non_null(strstr(err.msg, "NOTIFY_SOCKET"));
  char longp[200];
  memset(longp, 'a', sizeof(longp) - 1);
  longp[0] = '/';
  longp[sizeof(longp) - 1] = '\0';
  setenv("NOTIFY_SOCKET", longp, 1);
  assert_int_equal(ae_sd_notify("READY=1", &err), AE_EINVAL);
  unsetenv("NOTIFY_SOCKET");
}

static void test_watchdog_env(void **state) {
  (void)state;
  ae_err err = {0};
  uint64_t us = 99;
  unsetenv("WATCHDOG_USEC");
  unsetenv("WATCHDOG_PID");
  assert_int_equal(ae_sd_watchdog_usec(&us, &err), 0);
  assert_int_equal(us, 0);
  setenv("WATCHDOG_USEC", "30000000", 1);
  assert_int_equal(ae_sd_watchdog_usec(&us, &err), 0);
  assert_int_equal(us, 30000000);
  char pid[32];
  snprintf(pid, sizeof(pid), "%ld", (long)getpid());
  setenv("WATCHDOG_PID", pid, 1);
  assert_int_equal(ae_sd_watchdog_usec(&us, &err), 0);
  assert_int_equal(us, 30000000);
  snprintf(pid, sizeof(pid), "%ld", (long)getpid() + 1);
  setenv("WATCHDOG_PID", pid, 1);
  assert_int_equal(ae_sd_watchdog_usec(&us, &err), 0);
  assert_int_equal(us, 0);
  unsetenv("WATCHDOG_PID");
  const char *bad[] = {"0", "-5", "12x", "abc"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    setenv("WATCHDOG_USEC", bad[i], 1);
    assert_int_equal(ae_sd_watchdog_usec(&us, &err), AE_EINVAL);
    assert_non_null(strstr(err.msg, "WATCHDOG_USEC"));
    assert_int_equal(us, 0);
  }
  unsetenv("WATCHDOG_USEC");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_unset_is_noop),   cmocka_unit_test(test_path_socket),
      cmocka_unit_test(test_abstract_socket), cmocka_unit_test(test_bad_socket_name),
      cmocka_unit_test(test_watchdog_env),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
