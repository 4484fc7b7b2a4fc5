/* sd_notify: one AF_UNIX datagram per state change to $NOTIFY_SOCKET. The protocol is a
 * stable, documented interface of systemd; speaking it directly avoids a libsystemd dependency. */
#include "acmedge/sdnotify.h"

#include <errno.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

int ae_sd_notify(const char *state, ae_err *err) {
  const char *path = getenv("NOTIFY_SOCKET");
  if (!path || !*path)
    return 0;
  struct sockaddr_un sa;
  memset(&sa, 0, sizeof(sa));
  sa.sun_family = AF_UNIX;
  size_t plen = strlen(path);
  if ((path[0] != '/' && path[0] != '@') || plen >= sizeof(sa.sun_path))
    return ae_err_set(err, AE_EINVAL, "NOTIFY_SOCKET: '%s' is not an absolute or abstract socket path", path);
  memcpy(sa.sun_path, path, plen);
  /* An abstract address starts with a NUL byte and its length excludes any terminator. */
  if (path[0] == '@')
    sa.sun_path[0] = '\0';
  socklen_t salen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + plen + (path[0] == '/' ? 1 : 0));
  int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return ae_err_set(err, AE_EIO, "NOTIFY_SOCKET: socket: %s", strerror(errno));
  ssize_t n;
  do {
    n = sendto(fd, state, strlen(state), MSG_NOSIGNAL, (struct sockaddr *)&sa, salen);
  } while (n < 0 && errno == EINTR);
  int e = errno;
  close(fd);
  if (n < 0)
    return ae_err_set(err, AE_EIO, "NOTIFY_SOCKET %s: %s", path, strerror(e));
  return 1;
}

static int parse_u64(const char *s, uint64_t *out) {
  if (!s || !*s || *s < '0' || *s > '9')
    return -1;
  char *end = NULL;
  errno = 0;
  unsigned long long v = strtoull(s, &end, 10);
  if (errno || !end || *end)
    return -1;
  *out = (uint64_t)v;
  return 0;
}

int ae_sd_watchdog_usec(uint64_t *usec, ae_err *err) {
  *usec = 0;
  const char *us = getenv("WATCHDOG_USEC");
  if (!us || !*us)
    return 0;
  uint64_t v = 0;
  if (parse_u64(us, &v) != 0 || v == 0)
    return ae_err_set(err, AE_EINVAL, "WATCHDOG_USEC: '%s' is not a positive number of microseconds", us);
  const char *ps = getenv("WATCHDOG_PID");
  if (ps && *ps) {
    uint64_t pid = 0;
    if (parse_u64(ps, &pid) != 0)
      return ae_err_set(err, AE_EINVAL, "WATCHDOG_PID: '%s' is not a process id", ps);
    /* The variables were meant for another process (e.g. inherited by a child). */
    if (pid != (uint64_t)getpid())
      return 0;
  }
  *usec = v;
  return 0;
}
