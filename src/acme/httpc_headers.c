/* Response header helpers of the HTTP client: RFC 8288 Link relations and Retry-After (RFC 9110
 * §10.2.3), plus the two byte checks the request path shares with them. */
#include "acmedge/httpc.h"

#include <curl/curl.h>
#include <limits.h>
#include <string.h>
#include <time.h>

#include "httpc_int.h"

int ae_httpc_name_is(const char *line, size_t namelen, const char *name) {
  size_t n = strlen(name);
  if (n != namelen)
    return 0;
  for (size_t i = 0; i < n; i++) {
    char a = line[i], b = name[i];
    if (a >= 'A' && a <= 'Z')
      a = (char)(a - 'A' + 'a');
    if (b >= 'A' && b <= 'Z')
      b = (char)(b - 'A' + 'a');
    if (a != b)
      return 0;
  }
  return 1;
}

int ae_httpc_has_ctl(const char *s) {
  for (; *s; s++)
    if ((unsigned char)*s < 0x20 || *s == 0x7f)
      return 1;
  return 0;
}

static int rel_matches(const char *v, size_t n, const char *rel) {
  /* rel may hold several space-separated relation types (RFC 8288 §3.3). */
  size_t rl = strlen(rel);
  size_t i = 0;
  while (i < n) {
    while (i < n && (v[i] == ' ' || v[i] == '\t'))
      i++;
    size_t start = i;
    while (i < n && v[i] != ' ' && v[i] != '\t')
      i++;
    if (i - start == rl && ae_httpc_name_is(v + start, rl, rel))
      return 1;
  }
  return 0;
}

/* Scans one Link header value (possibly several comma-separated links). Returns 1 and sets
 * the url and its length for the first link whose rel matches. */
static int scan_links(const char *s, const char *rel, const char **url, size_t *urllen) {
  const char *p = s;
  for (;;) {
    while (*p == ' ' || *p == '\t' || *p == ',')
      p++;
    if (*p != '<')
      return 0;
    const char *u = p + 1;
    const char *gt = strchr(u, '>');
    if (!gt)
      return 0;
    p = gt + 1;
    int match = 0;
    /* Parameters up to the next comma outside a quoted string. */
    while (*p && *p != ',') {
      while (*p == ' ' || *p == '\t' || *p == ';')
        p++;
      const char *name = p;
      while (*p && *p != '=' && *p != ';' && *p != ',' && *p != ' ' && *p != '\t')
        p++;
      size_t namelen = (size_t)(p - name);
      while (*p == ' ' || *p == '\t')
        p++;
      const char *val = NULL;
      size_t vallen = 0;
      if (*p == '=') {
        p++;
        while (*p == ' ' || *p == '\t')
          p++;
        if (*p == '"') {
          p++;
          val = p;
          while (*p && *p != '"') {
            if (*p == '\\' && p[1])
              p++;
            p++;
          }
          vallen = (size_t)(p - val);
          if (*p == '"')
            p++;
        } else {
          val = p;
          while (*p && *p != ';' && *p != ',' && *p != ' ' && *p != '\t')
            p++;
          vallen = (size_t)(p - val);
        }
      }
      if (namelen == 3 && ae_httpc_name_is(name, 3, "rel") && val && rel_matches(val, vallen, rel))
        match = 1;
      while (*p == ' ' || *p == '\t')
        p++;
      if (namelen == 0 && !val && *p && *p != ';' && *p != ',')
        p++; /* stray character: skip so the scan always advances */
    }
    if (match) {
      *url = u;
      *urllen = (size_t)(gt - u);
      return 1;
    }
  }
}

int ae_http_find_link(const ae_http_response *resp, const char *rel, char *out, size_t outlen) {
  if (!resp || !rel || !out || outlen == 0)
    return AE_EINVAL;
  for (size_t i = 0; i < resp->nlinks; i++) {
    const char *url = NULL;
    size_t n = 0;
    if (resp->links[i] && scan_links(resp->links[i], rel, &url, &n)) {
      if (n + 1 > outlen)
        return AE_ELIMIT;
      memcpy(out, url, n);
      out[n] = '\0';
      return 0;
    }
  }
  return AE_ENOTFOUND;
}

long ae_http_retry_after_seconds(const char *value) {
  if (!value)
    return -1;
  while (*value == ' ' || *value == '\t')
    value++;
  size_t n = strlen(value);
  while (n > 0 && (value[n - 1] == ' ' || value[n - 1] == '\t'))
    n--;
  if (n == 0 || n > 64)
    return -1;
  if (value[0] >= '0' && value[0] <= '9') {
    long secs = 0;
    for (size_t i = 0; i < n; i++) {
      if (value[i] < '0' || value[i] > '9')
        return -1;
      if (secs > (LONG_MAX - 9) / 10)
        return -1;
      secs = secs * 10 + (value[i] - '0');
    }
    return secs;
  }
  /* An HTTP-date always names a weekday first (IMF-fixdate, RFC 850 or asctime). */
  if (!((value[0] >= 'A' && value[0] <= 'Z') || (value[0] >= 'a' && value[0] <= 'z')))
    return -1;
  char buf[65];
  memcpy(buf, value, n);
  buf[n] = '\0';
  if (ae_httpc_has_ctl(buf))
    return -1;
  time_t t = curl_getdate(buf, NULL);
  if (t == (time_t)-1)
    return -1;
  time_t now = time(NULL);
  if (t <= now)
    return 0;
  if ((long long)(t - now) > (long long)LONG_MAX)
    return -1;
  return (long)(t - now);
}
