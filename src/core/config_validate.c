/* Syntax checks used by the config loader: addresses, host patterns, URLs, files. */
#include <uv.h>
#include "acmedge/config.h"
#include "config_internal.h"
#include "acmedge/hostname.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int ae_cfg_is_ip(const char *s) {
  unsigned char buf[16];
  if (!s || !*s)
    return 0;
  return inet_pton(AF_INET, s, buf) == 1 || inet_pton(AF_INET6, s, buf) == 1;
}

int ae_cfg_is_loopback(const char *host) {
  unsigned char a[16];
  if (!host)
    return 0;
  if (ae_strcasecmp(host, "localhost") == 0)
    return 1;
  if (inet_pton(AF_INET, host, a) == 1)
    return a[0] == 127;
  if (inet_pton(AF_INET6, host, a) == 1) {
    static const unsigned char v6lo[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
    return memcmp(a, v6lo, 16) == 0;
  }
  return 0;
}

static int is_ldh(int c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-';
}

int ae_cfg_valid_hostname(const char *s) { return s && ae_hostname_shape(s, strlen(s), NULL) == 0; }

int ae_cfg_valid_pattern(const char *s) {
  if (!s)
    return 0;
  if (strcmp(s, "*") == 0)
    return 1;
  if (s[0] == '*' && s[1] == '.')
    return ae_cfg_valid_hostname(s + 2);
  return ae_cfg_valid_hostname(s);
}

int ae_cfg_check_url(const char *url, int allow_http) {
  if (!url || !*url)
    return AE_EINVAL;
  size_t n = strlen(url);
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)url[i];
    if (c <= ' ' || c >= 0x7f)
      return AE_EINVAL;
  }
  int https = strncmp(url, "https://", 8) == 0;
  int http = strncmp(url, "http://", 7) == 0;
  if (!https && !http)
    return AE_EINVAL;
  CURLU *u = curl_url();
  if (!u)
    return AE_ENOMEM;
  int rc = AE_EINVAL;
  char *host = NULL;
  if (curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
      curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK && host && *host) {
    rc = 0;
    if (http && allow_http != 1) {
      /* curl keeps IPv6 brackets in the host part. */
      char h[256];
      size_t hl = strlen(host);
      if (hl >= 2 && host[0] == '[' && host[hl - 1] == ']' && hl - 2 < sizeof(h)) {
        memcpy(h, host + 1, hl - 2);
        h[hl - 2] = '\0';
      } else {
        snprintf(h, sizeof(h), "%s", host);
      }
      if (allow_http != 2 || !ae_cfg_is_loopback(h))
        rc = AE_EINVAL;
    }
  }
  curl_free(host);
  curl_url_cleanup(u);
  return rc;
}

int ae_cfg_check_readable(const char *path, char *problem, size_t len) {
  struct stat st;
  if (stat(path, &st) != 0) {
    int e = errno;
    snprintf(problem, len, "%s", strerror(e));
    return e == ENOENT ? AE_ENOTFOUND : AE_EIO;
  }
  if (!S_ISREG(st.st_mode)) {
    snprintf(problem, len, "not a regular file");
    return AE_EIO;
  }
  /* Opening proves readability for this process (access() would use the real uid). */
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    snprintf(problem, len, "%s", strerror(errno));
    return AE_EIO;
  }
  close(fd);
  return 0;
}

int ae_cfg_check_executable(const char *path, char *problem, size_t len) {
  struct stat st;
  if (stat(path, &st) != 0) {
    snprintf(problem, len, "%s", strerror(errno));
    return errno == ENOENT ? AE_ENOTFOUND : AE_EIO;
  }
  if (!S_ISREG(st.st_mode)) {
    snprintf(problem, len, "not a regular file");
    return AE_EIO;
  }
  if ((st.st_mode & 0111) == 0 || access(path, X_OK) != 0) {
    snprintf(problem, len, "not executable");
    return AE_EIO;
  }
  return 0;
}

int ae_cfg_valid_event_type(const char *s) {
  if (!s || !(s[0] >= 'a' && s[0] <= 'z'))
    return 0;
  size_t n = 0;
  for (; s[n]; n++) {
    char c = s[n];
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_'))
      return 0;
  }
  return n <= 64;
}

/* Shared by ae_parse_hostport (config values, port 1..65535) and ae_listen_sockaddr (binding,
 * where port 0 asks the kernel for a free port). */
static int split_hostport(const char *s, char *host, size_t hostlen, int *port, int min_port) {
  if (!s || !host || hostlen == 0 || !port)
    return AE_EINVAL;
  const char *h, *hend, *p;
  if (s[0] == '[') {
    h = s + 1;
    hend = strchr(h, ']');
    if (!hend || hend[1] != ':')
      return AE_EINVAL;
    p = hend + 2;
  } else {
    h = s;
    hend = strrchr(s, ':');
    if (!hend)
      return AE_EINVAL;
    /* An unbracketed IPv6 literal is ambiguous ("::1:80"): brackets are required. */
    if (memchr(h, ':', (size_t)(hend - h)))
      return AE_EINVAL;
    p = hend + 1;
  }
  size_t hl = (size_t)(hend - h);
  if (hl == 0 || hl >= hostlen)
    return AE_EINVAL;
  char tmp[256];
  if (hl >= sizeof(tmp))
    return AE_EINVAL;
  memcpy(tmp, h, hl);
  tmp[hl] = '\0';
  if (s[0] == '[') {
    unsigned char a[16];
    if (inet_pton(AF_INET6, tmp, a) != 1)
      return AE_EINVAL;
  } else {
    for (size_t i = 0; i < hl; i++) {
      int c = (unsigned char)tmp[i];
      if (!is_ldh(c) && c != '.' && c != '_')
        return AE_EINVAL;
    }
  }
  size_t pl = strlen(p);
  if (pl == 0 || pl > 5)
    return AE_EINVAL;
  long v = 0;
  for (size_t i = 0; i < pl; i++) {
    if (p[i] < '0' || p[i] > '9')
      return AE_EINVAL;
    v = v * 10 + (p[i] - '0');
  }
  if (v < min_port || v > 65535)
    return AE_EINVAL;
  memcpy(host, tmp, hl + 1);
  *port = (int)v;
  return 0;
}

int ae_parse_hostport(const char *s, char *host, size_t hostlen, int *port) {
  return split_hostport(s, host, hostlen, port, 1);
}

int ae_listen_sockaddr(const char *s, struct sockaddr_storage *out) {
  char host[256];
  int port = 0;
  if (split_hostport(s, host, sizeof(host), &port, 0) != 0)
    return AE_EINVAL;
  const char *ip = ae_strcasecmp(host, "localhost") == 0 ? "127.0.0.1" : host;
  memset(out, 0, sizeof(*out));
  if (uv_ip4_addr(ip, port, (struct sockaddr_in *)out) == 0 || uv_ip6_addr(ip, port, (struct sockaddr_in6 *)out) == 0)
    return 0;
  return AE_EINVAL;
}

const ae_route *ae_config_route(const ae_config *cfg, const char *host) {
  for (size_t i = 0; i < cfg->nroutes; i++)
    for (size_t k = 0; k < cfg->routes[i].nhosts; k++)
      if (ae_host_match(cfg->routes[i].hosts[k], host))
        return &cfg->routes[i];
  return NULL;
}

int ae_host_match(const char *pattern, const char *host) {
  if (!pattern || !host || !*host)
    return 0;
  if (strcmp(pattern, "*") == 0)
    return 1;
  if (pattern[0] == '*' && pattern[1] == '.') {
    const char *suffix = pattern + 1; /* ".example.com" */
    size_t sl = strlen(suffix), hl = strlen(host);
    if (hl <= sl)
      return 0;
    if (ae_strcasecmp(host + (hl - sl), suffix) != 0)
      return 0;
    /* Exactly one extra label: non-empty and without dots. */
    size_t ll = hl - sl;
    return memchr(host, '.', ll) == NULL;
  }
  return ae_strcasecmp(pattern, host) == 0;
}
