/* `acmedge domains --watch [SECONDS]`: redraws the domains table until interrupted. Kept apart
 * from cli.c, which fetches and prints one table. */
#include "acmedge/cli.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define WATCH_DEFAULT_S 2u
#define WATCH_MAX_S 3600u
#define WATCH_MAX_ARGS 64

static volatile sig_atomic_t g_watch_stop;

static void on_stop(int sig) {
  (void)sig;
  g_watch_stop = 1;
}

/* Parses SECONDS (1..3600); 0 on success. */
static int parse_interval(const char *s, unsigned *out) {
  if (!s || !*s || *s < '0' || *s > '9')
    return -1;
  char *end = NULL;
  errno = 0;
  unsigned long v = strtoul(s, &end, 10);
  if (errno || *end || v < 1 || v > WATCH_MAX_S)
    return -1;
  *out = (unsigned)v;
  return 0;
}

int ae_cli_domains_main(int argc, char **argv) {
  char *args[WATCH_MAX_ARGS + 1];
  int n = 0, watch = 0;
  unsigned interval = WATCH_DEFAULT_S;
  if (argc > WATCH_MAX_ARGS) {
    fprintf(stderr, "acmedge domains: too many arguments\n");
    return 2;
  }
  for (int i = 0; i < argc; i++) {
    const char *a = argv[i];
    if (i > 0 && strcmp(a, "--watch") == 0) {
      watch = 1;
      /* The interval is optional: only a following number is taken as one. */
      if (i + 1 < argc && argv[i + 1][0] >= '0' && argv[i + 1][0] <= '9') {
        if (parse_interval(argv[++i], &interval) != 0) {
          fprintf(stderr, "acmedge domains: --watch takes 1..%u seconds, not '%s'\n", WATCH_MAX_S, argv[i]);
          return 2;
        }
      }
    } else if (i > 0 && strncmp(a, "--watch=", 8) == 0) {
      watch = 1;
      if (parse_interval(a + 8, &interval) != 0) {
        fprintf(stderr, "acmedge domains: --watch takes 1..%u seconds, not '%s'\n", WATCH_MAX_S, a + 8);
        return 2;
      }
    } else {
      args[n++] = argv[i];
    }
  }
  args[n] = NULL;
  if (!watch)
    return ae_cli_domains(n, args);

  struct sigaction sa;
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = on_stop;
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  int tty = isatty(STDOUT_FILENO);
  int rc = 0;
  while (!g_watch_stop) {
    if (tty)
      fputs("\033[H\033[2J", stdout);
    time_t now = time(NULL);
    struct tm tm;
    char ts[32];
    gmtime_r(&now, &tm);
    strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%SZ", &tm);
    printf("Every %us: acmedge domains  %s\n\n", interval, ts);
    fflush(stdout);
    rc = ae_cli_domains(n, args);
    /* Usage errors will not fix themselves; a down proxy might, so keep watching. */
    if (rc == 2)
      return rc;
    if (!tty)
      printf("\n");
    fflush(stdout);
    for (unsigned t = 0; t < interval * 10u && !g_watch_stop; t++) {
      struct timespec step = {0, 100000000L};
      nanosleep(&step, NULL);
    }
  }
  return 0;
}
