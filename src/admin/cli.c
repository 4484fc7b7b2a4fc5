/* Client subcommand `acmedge events` and the helpers both client subcommands share: talk to a running acmedge through its
 * admin API with libcurl (blocking is fine here: this is a short-lived client process, not the
 * proxy's loop). */
#include "acmedge/cli.h"
#include "acmedge/common.h"
#include "cli_internal.h"

#include <curl/curl.h>
#include <errno.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define CLI_MAX_EVENT (1u << 20)     /* one SSE event cap */
#define CLI_MAX_ERRBODY 4096

static volatile sig_atomic_t g_stop;

static void on_signal(int sig) {
  (void)sig;
  g_stop = 1;
}


int ae_cli_parse_admin(const char *addr, cli_target *t) {
  memset(t, 0, sizeof(*t));
  if (!addr || !*addr)
    return AE_EINVAL;
  if (strncmp(addr, "unix:", 5) == 0 || addr[0] == '/') {
    const char *path = addr[0] == '/' ? addr : addr + 5;
    if (!*path || strlen(path) >= sizeof(t->unix_path))
      return AE_EINVAL;
    snprintf(t->unix_path, sizeof(t->unix_path), "%s", path);
    snprintf(t->base, sizeof(t->base), "http://localhost");
    return 0;
  }
  if (strncmp(addr, "http://", 7) == 0 || strncmp(addr, "https://", 8) == 0) {
    size_t n = strlen(addr), scheme = addr[4] == 's' ? 8 : 7;
    while (n > scheme && addr[n - 1] == '/')
      n--;
    if (n >= sizeof(t->base))
      return AE_EINVAL;
    snprintf(t->base, sizeof(t->base), "%.*s", (int)n, addr);
    return 0;
  }
  if (strlen(addr) > 300 || !strchr(addr, ':'))
    return AE_EINVAL;
  /* A bare IPv6 address with a port must come bracketed: "[::1]:2020". */
  snprintf(t->base, sizeof(t->base), "http://%s", addr);
  return 0;
}

struct curl_slist *ae_cli_auth_headers(struct curl_slist *h) {
  const char *tok = getenv("ACMEDGE_ADMIN_TOKEN");
  if (tok && *tok) {
    size_t n = strlen(tok) + 32;
    char *line = ae_malloc(n);
    snprintf(line, n, "Authorization: Bearer %s", tok);
    h = curl_slist_append(h, line);
    free(line);
  }
  return h;
}

void ae_cli_setup_common(CURL *c, const cli_target *t, const char *url, struct curl_slist *hdrs) {
  curl_easy_setopt(c, CURLOPT_URL, url);
  if (t->unix_path[0])
    curl_easy_setopt(c, CURLOPT_UNIX_SOCKET_PATH, t->unix_path);
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
  curl_easy_setopt(c, CURLOPT_PROXY, ""); /* never route the admin API through an env proxy */
  curl_easy_setopt(c, CURLOPT_NOPROXY, "*");
  /* An https:// admin address (admin.tls): its CA and a client certificate, for bound tokens, come
   * from the environment like the token does; without ACMEDGE_ADMIN_CACERT the system store is used. */
  const char *ca = getenv("ACMEDGE_ADMIN_CACERT");
  const char *cert = getenv("ACMEDGE_ADMIN_CERT");
  const char *key = getenv("ACMEDGE_ADMIN_KEY");
  if (ca && *ca)
    curl_easy_setopt(c, CURLOPT_CAINFO, ca);
  if (cert && *cert) {
    curl_easy_setopt(c, CURLOPT_SSLCERT, cert);
    curl_easy_setopt(c, CURLOPT_SSLKEY, key && *key ? key : cert);
  }
}

/* Extracts "error" from a JSON error body, else the body itself (first line). */
size_t ae_cli_on_body(char *ptr, size_t size, size_t nmemb, void *ud) {
  ae_cli_body *b = ud;
  size_t n = size * nmemb;
  if (b->len + n + 1 > CLI_MAX_BODY) {
    b->too_big = 1;
    return 0;
  }
  if (b->len + n + 1 > b->cap) {
    b->cap = (b->len + n + 1) * 2;
    b->p = ae_realloc(b->p, b->cap);
  }
  memcpy(b->p + b->len, ptr, n);
  b->len += n;
  b->p[b->len] = '\0';
  return n;
}

void ae_cli_print_http_error(const char *what, const char *addr, long status, const char *body) {
  const char *msg = NULL;
  json_t *j = body ? json_loads(body, 0, NULL) : NULL;
  if (j && json_is_string(json_object_get(j, "error")))
    msg = json_string_value(json_object_get(j, "error"));
  if (msg)
    fprintf(stderr, "acmedge %s: admin API at %s answered %ld: %s\n", what, addr, status, msg);
  else
    fprintf(stderr, "acmedge %s: admin API at %s answered %ld%s%.200s\n", what, addr, status,
            body && *body ? ": " : "", body ? body : "");
  json_decref(j);
}

/* ---------------------------------------------------------------- events */

typedef struct {
  CURL *curl;
  int json_out;
  int color;
  int checked;          /* status code looked at */
  long status;
  char errbody[CLI_MAX_ERRBODY];
  size_t errlen;
  /* SSE parse state */
  char *line;
  size_t line_len, line_cap;
  int line_cr;          /* previous chunk ended in CR: a following LF belongs to it */
  char *data;
  size_t data_len, data_cap;
  uint64_t cur_id;
  int have_id;
  uint64_t last_id;     /* newest id printed: sent as Last-Event-ID on reconnect */
  int got_bytes;        /* this connection delivered something: resets the backoff */
  int overflow;
} ev_stream;

static const char *type_color(const char *type) {
  if (!type)
    return "";
  if (strcmp(type, "issuance_failed") == 0 || strcmp(type, "domain_denied") == 0)
    return "\033[31m";
  if (strncmp(type, "cert_", 5) == 0)
    return "\033[32m";
  if (strncmp(type, "challenge_", 10) == 0)
    return "\033[33m";
  if (strcmp(type, "renewal_scheduled") == 0)
    return "\033[34m";
  return "\033[36m";
}

static void print_event_human(ev_stream *s, const char *text) {
  json_t *o = json_loads(text, 0, NULL);
  if (!o || !json_is_object(o)) {
    json_decref(o);
    printf("%s\n", text);
    return;
  }
  const char *tm = json_string_value(json_object_get(o, "time"));
  const char *type = json_string_value(json_object_get(o, "type"));
  const char *dom = json_string_value(json_object_get(o, "domain"));
  if (s->color)
    printf("%s  %s%-18s\033[0m  %s", tm ? tm : "-", type_color(type), type ? type : "?", dom ? dom : "-");
  else
    printf("%s  %-18s  %s", tm ? tm : "-", type ? type : "?", dom ? dom : "-");
  const char *k;
  json_t *v;
  json_object_foreach(o, k, v) {
    if (strcmp(k, "id") == 0 || strcmp(k, "time") == 0 || strcmp(k, "type") == 0 || strcmp(k, "domain") == 0)
      continue;
    if (json_is_string(v)) {
      printf("  %s=%s", k, json_string_value(v));
    } else {
      char *d = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY | JSON_PRESERVE_ORDER);
      printf("  %s=%s", k, d ? d : "?");
      free(d);
    }
  }
  printf("\n");
  json_decref(o);
}

static void dispatch_event(ev_stream *s) {
  if (s->data_len) {
    s->data[s->data_len] = '\0';
    if (s->json_out)
      printf("%s\n", s->data);
    else
      print_event_human(s, s->data);
    fflush(stdout);
    if (s->have_id)
      s->last_id = s->cur_id;
  }
  s->data_len = 0;
  s->have_id = 0;
}

static void handle_line(ev_stream *s, const char *line, size_t len) {
  if (len == 0) {
    dispatch_event(s);
    return;
  }
  if (line[0] == ':') {
    /* Comments: heartbeats are silent, a gap report is shown. */
    unsigned long long n;
    if (sscanf(line, ": missed %llu", &n) == 1) {
      fprintf(stderr, "acmedge events: %llu event(s) missed (no longer buffered by the server)\n", n);
      fflush(stderr);
    }
    return;
  }
  const char *colon = memchr(line, ':', len);
  size_t flen = colon ? (size_t)(colon - line) : len;
  const char *val = colon ? colon + 1 : line + len;
  if (colon && val < line + len && *val == ' ')
    val++;
  size_t vlen = (size_t)(line + len - val);
  if (flen == 2 && memcmp(line, "id", 2) == 0) {
    char buf[32];
    if (vlen < sizeof(buf)) {
      memcpy(buf, val, vlen);
      buf[vlen] = '\0';
      char *end;
      errno = 0;
      unsigned long long v = strtoull(buf, &end, 10);
      if (!errno && end != buf && !*end) {
        s->cur_id = v;
        s->have_id = 1;
      }
    }
  } else if (flen == 4 && memcmp(line, "data", 4) == 0) {
    size_t need = s->data_len + vlen + 2;
    if (need > CLI_MAX_EVENT) {
      s->overflow = 1;
      return;
    }
    if (need > s->data_cap) {
      s->data_cap = need * 2;
      s->data = ae_realloc(s->data, s->data_cap);
    }
    if (s->data_len)
      s->data[s->data_len++] = '\n';
    memcpy(s->data + s->data_len, val, vlen);
    s->data_len += vlen;
  }
}

static size_t on_sse_data(char *ptr, size_t size, size_t nmemb, void *ud) {
  ev_stream *s = ud;
  size_t n = size * nmemb;
  if (!s->checked) {
    curl_easy_getinfo(s->curl, CURLINFO_RESPONSE_CODE, &s->status);
    s->checked = 1;
  }
  if (s->status != 200) {
    size_t room = sizeof(s->errbody) - 1 - s->errlen;
    size_t take = n < room ? n : room;
    memcpy(s->errbody + s->errlen, ptr, take);
    s->errlen += take;
    s->errbody[s->errlen] = '\0';
    return n;
  }
  s->got_bytes = 1;
  for (size_t i = 0; i < n; i++) {
    char c = ptr[i];
    if (s->line_cr) {
      s->line_cr = 0;
      if (c == '\n')
        continue;
    }
    if (c == '\r' || c == '\n') {
      handle_line(s, s->line ? s->line : "", s->line_len);
      s->line_len = 0;
      if (c == '\r')
        s->line_cr = 1;
      if (s->overflow)
        return 0; /* aborts this connection; the reconnect resumes after the last good id */
      continue;
    }
    if (s->line_len + 2 > s->line_cap) {
      if (s->line_len + 2 > CLI_MAX_EVENT)
        return 0;
      s->line_cap = s->line_cap ? s->line_cap * 2 : 1024;
      s->line = ae_realloc(s->line, s->line_cap);
    }
    s->line[s->line_len++] = c;
  }
  return n;
}

static int on_progress(void *ud, curl_off_t dt, curl_off_t dn, curl_off_t ut, curl_off_t un) {
  (void)ud;
  return g_stop ? 1 : 0;
}

static void sleep_ms_interruptible(unsigned ms) {
  while (ms && !g_stop) {
    unsigned step = ms < 100 ? ms : 100;
    struct timespec ts = {0, (long)step * 1000000L};
    nanosleep(&ts, NULL);
    ms -= step;
  }
}

static void events_usage(FILE *f) {
  fprintf(f,
          "usage: acmedge events [--admin ADDR] [--json] [--since ID]\n"
          "  Follows provisioning events from a running acmedge (GET /v1/events).\n"
          "  --admin ADDR  admin API: host:port, [v6]:port, https://host:port, unix:/path or /path\n"
          "                (default: $ACMEDGE_ADMIN or " CLI_DEFAULT_ADMIN ")\n"
          "  --json        print each event as its raw JSON line\n"
          "  --since ID    first replay the buffered events after ID (0: all buffered)\n"
          "  The bearer token is read from $ACMEDGE_ADMIN_TOKEN. Reconnects until interrupted.\n");
}


/* Parses the shared options; returns 0, 1 for --help printed, or -1 on a usage error. */
int ae_cli_parse_opts(int argc, char **argv, int allow_since, const char **admin, int *json_out, int *has_since,
                      uint64_t *since, void (*usage)(FILE *)) {
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char *val = NULL;
    if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
      usage(stdout);
      return 1;
    } else if (strcmp(a, "--json") == 0) {
      *json_out = 1;
    } else if (strcmp(a, "--admin") == 0 || strncmp(a, "--admin=", 8) == 0) {
      val = a[7] == '=' ? a + 8 : (i + 1 < argc ? argv[++i] : NULL);
      if (!val || !*val) {
        fprintf(stderr, "acmedge %s: --admin needs an address\n", argv[0]);
        return -1;
      }
      *admin = val;
    } else if (allow_since && (strcmp(a, "--since") == 0 || strncmp(a, "--since=", 8) == 0)) {
      val = a[7] == '=' ? a + 8 : (i + 1 < argc ? argv[++i] : NULL);
      char *end = NULL;
      errno = 0;
      unsigned long long v = val ? strtoull(val, &end, 10) : 0;
      if (!val || !*val || errno || *end || val[0] == '-') {
        fprintf(stderr, "acmedge %s: --since needs an event id (a non-negative integer)\n", argv[0]);
        return -1;
      }
      *since = v;
      *has_since = 1;
    } else {
      fprintf(stderr, "acmedge %s: unknown argument '%s'\n", argv[0], a);
      usage(stderr);
      return -1;
    }
  }
  return 0;
}

const char *ae_cli_default_admin(void) {
  const char *e = getenv("ACMEDGE_ADMIN");
  return e && *e ? e : CLI_DEFAULT_ADMIN;
}

int ae_cli_events(int argc, char **argv) {
  const char *admin = ae_cli_default_admin();
  int json_out = 0, has_since = 0;
  uint64_t since = 0;
  int r = ae_cli_parse_opts(argc, argv, 1, &admin, &json_out, &has_since, &since, events_usage);
  if (r)
    return r > 0 ? 0 : 2;
  cli_target t;
  if (ae_cli_parse_admin(admin, &t)) {
    fprintf(stderr, "acmedge events: bad admin address '%s' (want host:port, unix:/path or /path)\n", admin);
    return 2;
  }
  if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
    fprintf(stderr, "acmedge events: cannot initialise libcurl\n");
    return 1;
  }
  struct sigaction sa;
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  signal(SIGPIPE, SIG_IGN);

  ev_stream s;
  memset(&s, 0, sizeof(s));
  s.json_out = json_out;
  s.color = !json_out && isatty(STDOUT_FILENO) && !getenv("NO_COLOR");
  int have_last = has_since;
  s.last_id = since;
  char url[700];
  snprintf(url, sizeof(url), "%s/v1/events", t.base);

  int connected_once = 0, rc = 0;
  unsigned backoff = 500;
  while (!g_stop) {
    CURL *c = curl_easy_init();
    if (!c) {
      fprintf(stderr, "acmedge events: cannot initialise libcurl\n");
      rc = 1;
      break;
    }
    struct curl_slist *h = ae_cli_auth_headers(NULL);
    h = curl_slist_append(h, "Accept: text/event-stream");
    if (have_last || s.last_id) {
      char idh[64];
      snprintf(idh, sizeof(idh), "Last-Event-ID: %llu", (unsigned long long)s.last_id);
      h = curl_slist_append(h, idh);
    }
    ae_cli_setup_common(c, &t, url, h);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_sse_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &s);
    curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_progress);
    /* The server sends a heartbeat every 15 s: a minute of silence means a dead connection. */
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, 60L);
    curl_easy_setopt(c, CURLOPT_TCP_KEEPALIVE, 1L);
    char errbuf[CURL_ERROR_SIZE] = "";
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
    s.curl = c;
    s.checked = 0;
    s.status = 0;
    s.errlen = 0;
    s.errbody[0] = '\0';
    s.got_bytes = 0;
    s.line_len = 0;
    s.line_cr = 0;
    s.data_len = 0;
    s.have_id = 0;
    s.overflow = 0;
    CURLcode cr = curl_easy_perform(c);
    long status = s.status;
    if (!s.checked)
      curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(c);
    curl_slist_free_all(h);
    if (g_stop)
      break;
    if (status && status != 200) {
      ae_cli_print_http_error("events", admin, status, s.errbody);
      rc = 1;
      break;
    }
    if (status == 200) {
      /* From now on every reconnect says where it stopped, even before the first event. */
      have_last = 1;
      connected_once = 1;
    }
    if (!connected_once) {
      fprintf(stderr, "acmedge events: cannot reach admin API at %s: %s\n", admin,
              errbuf[0] ? errbuf : curl_easy_strerror(cr));
      rc = 1;
      break;
    }
    if (s.got_bytes)
      backoff = 500;
    fprintf(stderr, "acmedge events: connection to %s lost (%s); reconnecting\n", admin,
            errbuf[0] ? errbuf : (cr == CURLE_OK ? "closed by server" : curl_easy_strerror(cr)));
    fflush(stderr);
    sleep_ms_interruptible(backoff);
    backoff = backoff * 2 > 10000 ? 10000 : backoff * 2;
  }
  free(s.line);
  free(s.data);
  curl_global_cleanup();
  return rc;
}

