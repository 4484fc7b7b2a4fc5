/* Test driver for the ACME client: issues certificates for the names on the command line with
 * the real responders (port-80 listener for http-01, TLS front for tls-alpn-01) on one loop.
 *
 *   acme_issue --config FILE [--out DIR] [--parallel] [--timeout SEC]
 *              [--pause-at STEP] [--pause-between] DOMAIN...
 *
 * Prints, one line each and flushed as they happen:
 *   progress <domain> <step> <detail>
 *   ok <domain> <challenge_type|reused>
 *   fail <domain> <problem> <detail> retryable=<0|1>
 * --pause-at STEP: when the first job reports STEP, prints "paused <domain> <step>" and waits for
 * a line on stdin before letting the job go on (tests stop the CA meanwhile).
 * --pause-between: before each job after the first, prints "waiting <domain>" and waits for a
 * line on stdin. Exit status 0 only when every name was issued. */
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "acmedge/acme.h"
#include "acmedge/certstore.h"
#include "acmedge/challenge.h"
#include "acmedge/config.h"
#include "acmedge/http80.h"
#include "acmedge/log.h"
#include "acmedge/storage.h"
#include "acmedge/tls_front.h"

typedef struct tool tool;

typedef struct item {
  tool *t;
  const char *domain;
  ae_acme_job *job;
  int started, done, ok;
} item;

struct tool {
  uv_loop_t loop;
  ae_config *cfg;
  ae_storage *storage;
  ae_challenge *ch;
  ae_certstore *cs;
  ae_acme *acme;
  ae_http80 *h80;
  ae_tls_front *front;
  uv_timer_t deadline;
  uv_signal_t sigint, sigterm;
  item *items;
  size_t nitems, next, ndone;
  int parallel, pause_between, paused_once, shutting_down, closing_parts;
  const char *pause_at;
  const char *out_dir;
  unsigned timeout_s;
};

/* Blocks until a line arrives on stdin (bounded): a test hook, acceptable in this driver. */
static void wait_stdin_line(void) {
  struct pollfd pfd = {.fd = 0, .events = POLLIN};
  int r = poll(&pfd, 1, 30000);
  if (r > 0) {
    char buf[256];
    if (fgets(buf, sizeof(buf), stdin) == NULL) clearerr(stdin);
  }
}

static int write_out(const char *dir, const char *name, const char *ext, const char *data, unsigned mode) {
  char path[1024];
  snprintf(path, sizeof(path), "%s/%s.%s", dir, name, ext);
  ae_err err = {0};
  if (ae_write_file_atomic(path, data, strlen(data), mode, &err) < 0) {
    fprintf(stderr, "acme_issue: %s\n", err.msg);
    return -1;
  }
  return 0;
}

static void on_part_closed(void *ud) {
  tool *t = ud;
  t->closing_parts--;
}

static void on_handle_closed(uv_handle_t *h) { (void)h; }

static void shutdown_all(tool *t) {
  if (t->shutting_down) return;
  t->shutting_down = 1;
  uv_timer_stop(&t->deadline);
  uv_close((uv_handle_t *)&t->deadline, on_handle_closed);
  uv_close((uv_handle_t *)&t->sigint, on_handle_closed);
  uv_close((uv_handle_t *)&t->sigterm, on_handle_closed);
  t->closing_parts++;
  ae_acme_close(t->acme, on_part_closed, t);
  if (t->h80 != NULL) {
    t->closing_parts++;
    ae_http80_close(t->h80, on_part_closed, t);
  }
  if (t->front != NULL) {
    t->closing_parts++;
    ae_tls_front_close(t->front, 1000, on_part_closed, t);
  }
}

static void start_next(tool *t);

static void on_progress(void *ud, const char *step, const char *detail) {
  item *it = ud;
  tool *t = it->t;
  printf("progress %s %s %s\n", it->domain, step, detail ? detail : "-");
  fflush(stdout);
  if (t->pause_at != NULL && !t->paused_once && strcmp(step, t->pause_at) == 0) {
    t->paused_once = 1;
    printf("paused %s %s\n", it->domain, step);
    fflush(stdout);
    wait_stdin_line();
  }
}

static void on_done(void *ud, const ae_acme_result *res) {
  item *it = ud;
  tool *t = it->t;
  it->done = 1;
  it->job = NULL;
  t->ndone++;
  if (res->code == 0) {
    int wrote = 0;
    if (t->out_dir != NULL) {
      wrote = write_out(t->out_dir, it->domain, "pem", res->cert_pem, 0644);
      if (wrote == 0) wrote = write_out(t->out_dir, it->domain, "key", res->key_pem, 0600);
    }
    it->ok = wrote == 0;
    printf("ok %s %s\n", it->domain, res->challenge_type ? res->challenge_type : "reused");
  } else {
    printf("fail %s %s %s retryable=%d\n", it->domain, res->problem ? res->problem : "unknown",
           res->detail ? res->detail : "-", res->retryable ? 1 : 0);
  }
  fflush(stdout);
  if (t->ndone == t->nitems) {
    shutdown_all(t);
  } else if (!t->parallel) {
    start_next(t);
  }
}

static void start_item(tool *t, item *it) {
  ae_acme_callbacks cb = {.ud = it, .on_progress = on_progress, .on_done = on_done};
  ae_err err = {0};
  it->started = 1;
  if (ae_acme_issue(t->acme, it->domain, &cb, &it->job, &err) < 0) {
    it->done = 1;
    t->ndone++;
    printf("fail %s acmedge:internal %s retryable=0\n", it->domain, err.msg);
    fflush(stdout);
    if (t->ndone == t->nitems) shutdown_all(t);
    else if (!t->parallel) start_next(t);
  }
}

static void start_next(tool *t) {
  while (t->next < t->nitems && !t->shutting_down) {
    item *it = &t->items[t->next++];
    if (t->pause_between && t->next > 1) {
      printf("waiting %s\n", it->domain);
      fflush(stdout);
      wait_stdin_line();
    }
    start_item(t, it);
    if (!t->parallel) return;
  }
}

static void cancel_all(tool *t, const char *why) {
  for (size_t i = 0; i < t->nitems; i++) {
    item *it = &t->items[i];
    if (!it->done) {
      if (it->job != NULL) ae_acme_job_cancel(it->job);
      it->job = NULL;
      it->done = 1;
      printf("fail %s acmedge:tool-%s %s retryable=1\n", it->domain, why, why);
    }
  }
  fflush(stdout);
  shutdown_all(t);
}

static void on_deadline(uv_timer_t *h) { cancel_all(h->data, "timeout"); }

static void on_signal(uv_signal_t *h, int signum) {
  (void)signum;
  cancel_all(h->data, "signal");
}

static ae_cert *alpn_cert(void *ud, const char *name) {
  tool *t = ud;
  return ae_challenge_alpn_get(t->ch, name);
}

static void usage(void) {
  fprintf(stderr, "usage: acme_issue --config FILE [--out DIR] [--parallel] [--timeout SEC] [--pause-at STEP] "
                  "[--pause-between] DOMAIN...\n");
}

int main(int argc, char **argv) {
  tool t;
  memset(&t, 0, sizeof(t));
  t.timeout_s = 90;
  const char *config_path = NULL;
  static const struct option opts[] = {
      {"config", required_argument, NULL, 'c'},   {"out", required_argument, NULL, 'o'},
      {"parallel", no_argument, NULL, 'p'},       {"timeout", required_argument, NULL, 't'},
      {"pause-at", required_argument, NULL, 'a'}, {"pause-between", no_argument, NULL, 'b'},
      {NULL, 0, NULL, 0},
  };
  int c;
  while ((c = getopt_long(argc, argv, "c:o:pt:a:b", opts, NULL)) != -1) {
    switch (c) {
    case 'c': config_path = optarg; break;
    case 'o': t.out_dir = optarg; break;
    case 'p': t.parallel = 1; break;
    case 't': t.timeout_s = (unsigned)strtoul(optarg, NULL, 10); break;
    case 'a': t.pause_at = optarg; break;
    case 'b': t.pause_between = 1; break;
    default: usage(); return 2;
    }
  }
  if (config_path == NULL || optind >= argc) {
    usage();
    return 2;
  }
  signal(SIGPIPE, SIG_IGN);
  ae_err err = {0};
  if (ae_config_load(config_path, &t.cfg, &err) < 0) {
    fprintf(stderr, "acme_issue: %s\n", err.msg);
    return 2;
  }
  ae_log_set_level((ae_log_level)t.cfg->log.level);
  ae_log_set_json(t.cfg->log.json);
  if (t.out_dir != NULL && ae_mkdirs(t.out_dir, &err) < 0) {
    fprintf(stderr, "acme_issue: %s\n", err.msg);
    return 2;
  }

  int rc = 2;
  uv_loop_init(&t.loop);
  if (ae_storage_fs_new(t.cfg->storage_path, &t.storage, &err) < 0 || ae_challenge_new(&t.ch) < 0 ||
      ae_certstore_new(&t.cs) < 0) {
    fprintf(stderr, "acme_issue: setup: %s\n", err.msg);
    goto out;
  }
  char *cert_pem = NULL, *key_pem = NULL;
  if (ae_cert_generate_selfsigned("acme_issue default", NULL, 0, 1, &cert_pem, &key_pem, &err) < 0) {
    fprintf(stderr, "acme_issue: default cert: %s\n", err.msg);
    goto out;
  }
  ae_cert *def = NULL;
  int crc = ae_cert_from_pem(cert_pem, strlen(cert_pem), key_pem, strlen(key_pem), &def, &err);
  free(cert_pem);
  free(key_pem);
  if (crc < 0) {
    fprintf(stderr, "acme_issue: default cert: %s\n", err.msg);
    goto out;
  }
  ae_certstore_set_default(t.cs, def);
  ae_cert_unref(def);

  if (t.cfg->listen_http != NULL && ae_http80_new(&t.loop, t.cfg, t.ch, NULL, &t.h80, &err) < 0) {
    fprintf(stderr, "acme_issue: http listener: %s\n", err.msg);
    goto out;
  }
  ae_tls_front_hooks hooks = {.ud = &t, .alpn_challenge_cert = alpn_cert};
  if (t.cfg->listen_https != NULL && ae_tls_front_new(&t.loop, t.cfg, t.cs, &hooks, &t.front, &err) < 0) {
    fprintf(stderr, "acme_issue: tls listener: %s\n", err.msg);
    if (t.h80 != NULL) {
      t.closing_parts++;
      ae_http80_close(t.h80, on_part_closed, &t);
      uv_run(&t.loop, UV_RUN_DEFAULT);
      ae_http80_free(t.h80);
      t.h80 = NULL;
    }
    goto out;
  }
  if (ae_acme_new(&t.loop, t.cfg, t.storage, t.ch, &t.acme, &err) < 0) {
    fprintf(stderr, "acme_issue: acme: %s\n", err.msg);
    goto out;
  }
  ae_acme_set_challenge_types(t.acme, t.h80 != NULL, t.front != NULL);

  uv_timer_init(&t.loop, &t.deadline);
  t.deadline.data = &t;
  uv_timer_start(&t.deadline, on_deadline, (uint64_t)t.timeout_s * 1000u, 0);
  uv_signal_init(&t.loop, &t.sigint);
  uv_signal_init(&t.loop, &t.sigterm);
  t.sigint.data = t.sigterm.data = &t;
  uv_signal_start(&t.sigint, on_signal, SIGINT);
  uv_signal_start(&t.sigterm, on_signal, SIGTERM);

  t.nitems = (size_t)(argc - optind);
  t.items = calloc(t.nitems, sizeof(item));
  for (size_t i = 0; i < t.nitems; i++) {
    t.items[i].t = &t;
    t.items[i].domain = argv[optind + (int)i];
  }
  start_next(&t);
  uv_run(&t.loop, UV_RUN_DEFAULT);

  rc = 0;
  for (size_t i = 0; i < t.nitems; i++) {
    if (!t.items[i].ok) rc = 1;
  }
  if (t.closing_parts != 0) {
    fprintf(stderr, "acme_issue: %d components did not close\n", t.closing_parts);
    rc = 3;
  }
  ae_acme_free(t.acme);
  if (t.h80 != NULL) ae_http80_free(t.h80);
  if (t.front != NULL) ae_tls_front_free(t.front);
  free(t.items);
out:
  if (uv_loop_close(&t.loop) != 0) {
    fprintf(stderr, "acme_issue: handles left open on the loop\n");
    if (rc == 0) rc = 3;
  }
  ae_certstore_free(t.cs);
  ae_challenge_free(t.ch);
  ae_storage_free(t.storage);
  ae_config_free(t.cfg);
  return rc;
}
