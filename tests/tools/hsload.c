/* hsload: TLS handshake load generator. Each of -c threads loops: connect, full handshake (never
 * resumed), optional tiny HTTP GET, close. Prints handshakes per second and failures.
 *
 *   hsload [-c CONC] [-n TOTAL] [-t SECONDS] [--sni NAME | --sni-file FILE [--in-order]] [--get]
 *          [--priority STR] [--latency] HOST PORT
 *
 * --latency (with -n) adds the median and 99th percentile handshake latency (connect to
 * handshake done, successful ones) to the RESULT line as p50_ms= and p99_ms=.
 *
 * HOST must be a numeric address (the tool is for loopback benchmarks). The last line is
 * machine-readable: "RESULT ok=N failed=N secs=S hs_per_s=R". */
#include <arpa/inet.h>
#include <errno.h>
#include <gnutls/gnutls.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define MAX_THREADS 256
#define MAX_NAMES 100000

static struct {
  struct sockaddr_storage addr;
  socklen_t addrlen;
  char **names;
  size_t nnames;
  const char *priority;
  int get;
  int in_order;               /* names in file order (each once per pass), not at random */
  atomic_size_t next_name;
  double *lat;                /* --latency: seconds per successful connection, by slot */
  atomic_long nlat;
  long total;                 /* 0 = unlimited */
  double secs;                /* 0 = unlimited */
  double t0;
  gnutls_certificate_credentials_t cred;
  gnutls_priority_t prio;
  atomic_long started, ok, failed;
  atomic_int stop;
  atomic_int errors_shown;
} G;

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void usage(void) {
  fprintf(stderr, "usage: hsload [-c CONC] [-n TOTAL] [-t SECONDS] [--sni NAME | --sni-file FILE [--in-order]] [--get]\n"
                  "              [--priority STR] HOST PORT\n");
  exit(2);
}

static int load_names(const char *path) {
  FILE *f = fopen(path, "r");
  if (!f) {
    fprintf(stderr, "hsload: %s: %s\n", path, strerror(errno));
    return -1;
  }
  char line[512];
  G.names = calloc(MAX_NAMES, sizeof(char *));
  while (G.nnames < MAX_NAMES && fgets(line, sizeof(line), f)) {
    line[strcspn(line, "\r\n \t")] = 0;
    if (line[0] && line[0] != '#')
      G.names[G.nnames++] = strdup(line);
  }
  fclose(f);
  if (G.nnames == 0) {
    fprintf(stderr, "hsload: %s: no names\n", path);
    return -1;
  }
  return 0;
}

static void note_error(const char *what, const char *detail) {
  /* A handful of messages explain a failing run; thousands would drown it. */
  if (atomic_fetch_add(&G.errors_shown, 1) < 5)
    fprintf(stderr, "hsload: %s: %s\n", what, detail);
}

static int one_connection(unsigned *seed) {
  int fd = socket(G.addr.ss_family, SOCK_STREAM, 0);
  if (fd < 0) {
    note_error("socket", strerror(errno));
    return -1;
  }
  struct timeval tv = {10, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  if (connect(fd, (struct sockaddr *)&G.addr, G.addrlen) != 0) {
    note_error("connect", strerror(errno));
    close(fd);
    return -1;
  }
  gnutls_session_t s;
  int rc = -1;
  gnutls_init(&s, GNUTLS_CLIENT);
  size_t pick = G.in_order ? atomic_fetch_add(&G.next_name, 1) : (size_t)rand_r(seed);
  const char *sni = G.nnames ? G.names[pick % G.nnames] : NULL;
  if (sni)
    gnutls_server_name_set(s, GNUTLS_NAME_DNS, sni, strlen(sni));
  gnutls_priority_set(s, G.prio);
  gnutls_credentials_set(s, GNUTLS_CRD_CERTIFICATE, G.cred);
  gnutls_transport_set_int(s, fd);
  gnutls_handshake_set_timeout(s, 10000);
  int r;
  do {
    r = gnutls_handshake(s);
  } while (r < 0 && !gnutls_error_is_fatal(r));
  if (r < 0) {
    note_error("handshake", gnutls_strerror(r));
    goto out;
  }
  if (G.get) {
    char req[600];
    int n = snprintf(req, sizeof(req), "GET / HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n",
                     sni ? sni : "localhost");
    if (gnutls_record_send(s, req, (size_t)n) != n) {
      note_error("send", "short write");
      goto out;
    }
    char buf[4096];
    size_t got = 0;
    for (;;) {
      ssize_t k = gnutls_record_recv(s, buf + got, sizeof(buf) - 1 - got);
      if (k == GNUTLS_E_INTERRUPTED || k == GNUTLS_E_AGAIN)
        continue;
      if (k <= 0)
        break;
      got += (size_t)k;
      if (got >= sizeof(buf) - 1)
        got = 16; /* keep the status line, drop the rest */
    }
    buf[got] = 0;
    if (strncmp(buf, "HTTP/1.1 ", 9) != 0) {
      note_error("response", "no HTTP status line");
      goto out;
    }
  }
  rc = 0;
  gnutls_bye(s, GNUTLS_SHUT_WR);
out:
  gnutls_deinit(s);
  close(fd);
  return rc;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static void *worker(void *arg) {
  unsigned seed = (unsigned)(uintptr_t)arg * 2654435761u ^ (unsigned)time(NULL);
  while (!atomic_load(&G.stop)) {
    if (G.total && atomic_fetch_add(&G.started, 1) >= G.total)
      break;
    if (G.secs > 0 && now_s() - G.t0 >= G.secs)
      break;
    double t0 = G.lat ? now_s() : 0;
    if (one_connection(&seed) == 0) {
      atomic_fetch_add(&G.ok, 1);
      if (G.lat) {
        long i = atomic_fetch_add(&G.nlat, 1);
        if (i < G.total)
          G.lat[i] = now_s() - t0;
      }
    } else
      atomic_fetch_add(&G.failed, 1);
  }
  return NULL;
}

int main(int argc, char **argv) {
  int conc = 8;
  const char *host = NULL, *port = NULL, *sni = NULL, *sni_file = NULL;
  G.priority = "NORMAL";
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    int more = i + 1 < argc;
    if (!strcmp(a, "-c") && more)
      conc = atoi(argv[++i]);
    else if (!strcmp(a, "-n") && more)
      G.total = atol(argv[++i]);
    else if (!strcmp(a, "-t") && more)
      G.secs = atof(argv[++i]);
    else if (!strcmp(a, "--sni") && more)
      sni = argv[++i];
    else if (!strcmp(a, "--sni-file") && more)
      sni_file = argv[++i];
    else if (!strcmp(a, "--priority") && more)
      G.priority = argv[++i];
    else if (!strcmp(a, "--in-order"))
      G.in_order = 1;
    else if (!strcmp(a, "--get"))
      G.get = 1;
    else if (!strcmp(a, "--latency"))
      G.lat = (double *)1; /* allocated once -n is known */
    else if (a[0] == '-')
      usage();
    else if (!host)
      host = a;
    else if (!port)
      port = a;
    else
      usage();
  }
  if (!host || !port || conc < 1 || conc > MAX_THREADS || (!G.total && G.secs <= 0))
    usage();
  if (G.lat) {
    if (!G.total || G.total > 100000000)
      usage();
    G.lat = calloc((size_t)G.total, sizeof(double));
    if (!G.lat)
      return 2;
  }
  int p = atoi(port);
  memset(&G.addr, 0, sizeof(G.addr));
  struct sockaddr_in *a4 = (struct sockaddr_in *)&G.addr;
  struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&G.addr;
  if (inet_pton(AF_INET, host, &a4->sin_addr) == 1) {
    a4->sin_family = AF_INET;
    a4->sin_port = htons((uint16_t)p);
    G.addrlen = sizeof(*a4);
  } else if (inet_pton(AF_INET6, host, &a6->sin6_addr) == 1) {
    a6->sin6_family = AF_INET6;
    a6->sin6_port = htons((uint16_t)p);
    G.addrlen = sizeof(*a6);
  } else {
    fprintf(stderr, "hsload: %s: not a numeric address\n", host);
    return 2;
  }
  if (sni_file && load_names(sni_file) != 0)
    return 2;
  if (sni && !sni_file) {
    G.names = calloc(1, sizeof(char *));
    G.names[0] = strdup(sni);
    G.nnames = 1;
  }
  signal(SIGPIPE, SIG_IGN);
  gnutls_certificate_allocate_credentials(&G.cred);
  const char *errpos = NULL;
  if (gnutls_priority_init(&G.prio, G.priority, &errpos) < 0) {
    fprintf(stderr, "hsload: bad priority string at %s\n", errpos ? errpos : "?");
    return 2;
  }
  pthread_t th[MAX_THREADS];
  G.t0 = now_s();
  for (int i = 0; i < conc; i++)
    pthread_create(&th[i], NULL, worker, (void *)(uintptr_t)(i + 1));
  for (int i = 0; i < conc; i++)
    pthread_join(th[i], NULL);
  double el = now_s() - G.t0;
  long ok = atomic_load(&G.ok), failed = atomic_load(&G.failed);
  printf("handshakes: %ld ok, %ld failed in %.2f s with %d connections: %.1f handshakes/s\n", ok, failed, el,
         conc, el > 0 ? (double)ok / el : 0.0);
  printf("RESULT ok=%ld failed=%ld secs=%.3f hs_per_s=%.1f", ok, failed, el, el > 0 ? (double)ok / el : 0.0);
  long nl = G.lat ? atomic_load(&G.nlat) : 0;
  if (nl > G.total)
    nl = G.total;
  if (nl > 0) {
    qsort(G.lat, (size_t)nl, sizeof(double), cmp_double);
    printf(" p50_ms=%.3f p99_ms=%.3f", G.lat[nl / 2] * 1e3, G.lat[(nl * 99) / 100] * 1e3);
  }
  printf("\n");
  gnutls_priority_deinit(G.prio);
  gnutls_certificate_free_credentials(G.cred);
  for (size_t i = 0; i < G.nnames; i++)
    free(G.names[i]);
  free(G.names);
  return failed > 0 && ok == 0 ? 1 : 0;
}
