/* Listening sockets of the admin API: a loopback (or token-protected) TCP address or a unix
 * socket created with owner-only permissions. */
#include "admin_internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

static int is_loopback(const struct sockaddr *sa) {
  if (sa->sa_family == AF_INET) {
    const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
    return (ntohl(in->sin_addr.s_addr) >> 24) == 127;
  }
  if (sa->sa_family == AF_INET6) {
    const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
    if (IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr))
      return 1;
    if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr))
      return in6->sin6_addr.s6_addr[12] == 127;
  }
  return 0;
}

/* Prepares a unix socket path: a live server there is an error; a stale socket is removed;
 * anything that is not a socket is left alone and refused. */
static int prepare_unix_path(const char *path, ae_err *err) {
  struct stat st;
  if (lstat(path, &st) != 0) {
    if (errno == ENOENT)
      return 0;
    return ae_err_set(err, AE_EIO, "listen.admin: %s: %s", path, strerror(errno));
  }
  if (!S_ISSOCK(st.st_mode))
    return ae_err_set(err, AE_EEXIST, "listen.admin: %s exists and is not a socket", path);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd >= 0) {
    struct sockaddr_un sun;
    memset(&sun, 0, sizeof(sun));
    sun.sun_family = AF_UNIX;
    snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", path);
    int live = connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == 0;
    close(fd);
    if (live)
      return ae_err_set(err, AE_EEXIST, "listen.admin: %s is in use by a running process", path);
  }
  if (unlink(path) != 0 && errno != ENOENT)
    return ae_err_set(err, AE_EIO, "listen.admin: cannot remove stale socket %s: %s", path, strerror(errno));
  return 0;
}

static int listen_unix(ae_admin *a, const char *path, ae_err *err) {
  struct sockaddr_un probe;
  if (path[0] != '/')
    return ae_err_set(err, AE_EINVAL, "listen.admin: unix socket path must be absolute: %s", path);
  if (strlen(path) >= sizeof(probe.sun_path))
    return ae_err_set(err, AE_EINVAL, "listen.admin: unix socket path too long: %s", path);
  int r = prepare_unix_path(path, err);
  if (r)
    return r;
  uv_pipe_init(a->loop, &a->listener.pipe, 0);
  a->listener.pipe.data = a;
  a->listening = 1;
  a->is_unix = 1;
  /* The socket must never exist with looser permissions, not even between bind and chmod. */
  mode_t old = umask(0177);
  r = uv_pipe_bind(&a->listener.pipe, path);
  umask(old);
  if (r == 0) {
    a->unix_path = ae_strdup(path);
    if (chmod(path, 0600) != 0)
      r = uv_translate_sys_error(errno);
  }
  if (r == 0)
    r = uv_listen((uv_stream_t *)&a->listener.pipe, 64, ae_adm_on_connection);
  if (r)
    return ae_err_set(err, AE_EIO, "listen.admin: cannot listen on %s: %s", path, uv_strerror(r));
  return 0;
}

static int listen_tcp(ae_admin *a, const char *addr, ae_err *err) {
  struct sockaddr_storage ss;
  if (ae_listen_sockaddr(addr, &ss) != 0)
    return ae_err_set(err, AE_EINVAL, "listen.admin: '%s' is not an IP address with a port (or unix:/path)", addr);
  a->loopback = is_loopback((struct sockaddr *)&ss);
  if (!a->loopback && !a->token)
    return ae_err_set(err, AE_EINVAL, "listen.admin: non-loopback address %s requires admin.token", addr);
  uv_tcp_init(a->loop, &a->listener.tcp);
  a->listener.tcp.data = a;
  a->listening = 1;
  unsigned flags = ss.ss_family == AF_INET6 ? UV_TCP_IPV6ONLY : 0;
  int r = uv_tcp_bind(&a->listener.tcp, (struct sockaddr *)&ss, flags);
  if (r == 0)
    r = uv_listen((uv_stream_t *)&a->listener.tcp, 64, ae_adm_on_connection);
  if (r)
    return ae_err_set(err, AE_EIO, "listen.admin: cannot listen on %s: %s", addr, uv_strerror(r));
  struct sockaddr_storage bound;
  int blen = sizeof(bound);
  if (uv_tcp_getsockname(&a->listener.tcp, (struct sockaddr *)&bound, &blen) == 0)
    a->port = ntohs(bound.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&bound)->sin6_port
                                                : ((struct sockaddr_in *)&bound)->sin_port);
  return 0;
}

int ae_adm_listen(ae_admin *a, const char *addr, ae_err *err) {
  if (strncmp(addr, "unix:", 5) == 0)
    return listen_unix(a, addr + 5, err);
  if (addr[0] == '/')
    return listen_unix(a, addr, err);
  return listen_tcp(a, addr, err);
}
