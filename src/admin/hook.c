/* Event hook runner: one child process per event (uv_spawn, no shell), at most
 * hook_max_concurrent at a time, a bounded FIFO for the rest, SIGKILL at the timeout. */
#include "acmedge/hook.h"
#include "acmedge/log.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>

#define HOOK_MAX_QUEUE 256

extern char **environ;

typedef struct hook_job {
  uint64_t id;
  char *type;
  char *domain;
  char *json;
  struct hook_job *next;
} hook_job;

typedef struct hook_proc {
  struct ae_hook *h;
  uv_process_t proc;
  uv_pipe_t in;
  uv_timer_t timer;
  uv_write_t wreq;
  uv_buf_t wbuf;
  int open_handles;
  int exited;
  int timed_out;
  int pid;
  hook_job *job;
  struct hook_proc *prev, *next;
} hook_proc;

struct ae_hook {
  uv_loop_t *loop;
  ae_events *ev;
  ae_events_sub *sub;

  /* settings (copies, replaced on reload) */
  char **argv;        /* program + args, NULL-terminated; NULL when no hook */
  char **types;       /* NULL-terminated filter; NULL = every type */
  unsigned timeout_ms;
  unsigned max_concurrent;

  hook_job *qhead, *qtail;
  unsigned queued;
  hook_proc *procs;
  unsigned running;   /* procs whose memory is still allocated */
  unsigned dropped;

  uv_timer_t close_defer; /* closed by ae_hook_close so that its callback always runs later */
  int close_defer_open;
  int closing;
  int close_cb_done;
  void (*close_cb)(void *ud);
  void *close_ud;
};

static void free_strv(char **v) {
  if (!v)
    return;
  for (char **p = v; *p; p++)
    free(*p);
  free(v);
}

static void job_free(hook_job *j) {
  if (!j)
    return;
  free(j->type);
  free(j->domain);
  free(j->json);
  free(j);
}

static void apply_config(ae_hook *h, const ae_config *cfg) {
  free_strv(h->argv);
  free_strv(h->types);
  h->argv = NULL;
  h->types = NULL;
  if (cfg->events.hook && *cfg->events.hook) {
    h->argv = ae_calloc(cfg->events.nhook_args + 2, sizeof(char *));
    h->argv[0] = ae_strdup(cfg->events.hook);
    for (size_t i = 0; i < cfg->events.nhook_args; i++)
      h->argv[i + 1] = ae_strdup(cfg->events.hook_args[i]);
  }
  if (cfg->events.hook_types) {
    h->types = ae_calloc(cfg->events.nhook_types + 1, sizeof(char *));
    for (size_t i = 0; i < cfg->events.nhook_types; i++)
      h->types[i] = ae_strdup(cfg->events.hook_types[i]);
  }
  h->timeout_ms = cfg->events.hook_timeout_ms ? cfg->events.hook_timeout_ms : 10000;
  h->max_concurrent = cfg->events.hook_max_concurrent ? cfg->events.hook_max_concurrent : 4;
}

static int type_selected(const ae_hook *h, const char *type) {
  if (!h->types)
    return 1;
  for (char **p = h->types; *p; p++)
    if (strcmp(*p, type) == 0)
      return 1;
  return 0;
}

static void hook_maybe_done(ae_hook *h) {
  if (!h->closing || h->close_cb_done || h->running || h->close_defer_open)
    return;
  h->close_cb_done = 1;
  if (h->close_cb)
    h->close_cb(h->close_ud);
}

static void start_next(ae_hook *h);

static void on_proc_handle_closed(uv_handle_t *hd) {
  hook_proc *p = hd->data;
  if (--p->open_handles > 0)
    return;
  ae_hook *h = p->h;
  if (p->prev)
    p->prev->next = p->next;
  else
    h->procs = p->next;
  if (p->next)
    p->next->prev = p->prev;
  job_free(p->job);
  free(p);
  h->running--;
  start_next(h);
  hook_maybe_done(h);
}

static void close_proc_handles(hook_proc *p) {
  if (!uv_is_closing((uv_handle_t *)&p->in))
    uv_close((uv_handle_t *)&p->in, on_proc_handle_closed);
  if (!uv_is_closing((uv_handle_t *)&p->timer))
    uv_close((uv_handle_t *)&p->timer, on_proc_handle_closed);
  if (!uv_is_closing((uv_handle_t *)&p->proc))
    uv_close((uv_handle_t *)&p->proc, on_proc_handle_closed);
}

static void on_exit_cb(uv_process_t *proc, int64_t status, int term_signal) {
  hook_proc *p = proc->data;
  p->exited = 1;
  const char *dom = p->job->domain ? p->job->domain : "-";
  if (p->timed_out)
    AE_WARN("hook", "hook for event %llu (%s %s) killed after %u ms", (unsigned long long)p->job->id, p->job->type,
            dom, p->h->timeout_ms);
  else if (term_signal)
    AE_WARN("hook", "hook for event %llu (%s %s) ended by signal %d", (unsigned long long)p->job->id, p->job->type,
            dom, term_signal);
  else if (status != 0)
    AE_WARN("hook", "hook for event %llu (%s %s) exited with status %lld", (unsigned long long)p->job->id,
            p->job->type, dom, (long long)status);
  else
    AE_DEBUG("hook", "hook for event %llu (%s %s) done", (unsigned long long)p->job->id, p->job->type, dom);
  close_proc_handles(p);
}

static void on_timeout(uv_timer_t *t) {
  hook_proc *p = t->data;
  if (p->exited)
    return;
  p->timed_out = 1;
  /* The hook runs in its own process group: kill whatever it started as well. */
  if (p->pid > 0)
    kill(-p->pid, SIGKILL);
  uv_process_kill(&p->proc, SIGKILL);
}

static void on_stdin_written(uv_write_t *req, int status) {
  hook_proc *p = req->data;
  /* EPIPE only means the hook did not read its input; it is still allowed to succeed. */
  if (status < 0 && status != UV_EPIPE && status != UV_ECANCELED)
    AE_DEBUG("hook", "writing event %llu to hook stdin: %s", (unsigned long long)p->job->id, uv_strerror(status));
  if (!uv_is_closing((uv_handle_t *)&p->in))
    uv_close((uv_handle_t *)&p->in, on_proc_handle_closed); /* EOF for the hook */
}

/* Builds the child's environment: ours, minus any inherited ACMEDGE_EVENT* / ACMEDGE_DOMAIN, plus
 * this event's. Returned array and strings are malloc'd. */
static char **build_env(const hook_job *j) {
  size_t n = 0;
  for (char **e = environ; e && *e; e++)
    n++;
  char **env = ae_calloc(n + 4, sizeof(char *));
  size_t k = 0;
  for (char **e = environ; e && *e; e++) {
    if (strncmp(*e, "ACMEDGE_EVENT=", 14) == 0 || strncmp(*e, "ACMEDGE_DOMAIN=", 15) == 0 ||
        strncmp(*e, "ACMEDGE_EVENT_ID=", 17) == 0)
      continue;
    env[k++] = ae_strdup(*e);
  }
  size_t l = strlen(j->type) + 16;
  env[k] = ae_malloc(l);
  snprintf(env[k++], l, "ACMEDGE_EVENT=%s", j->type);
  const char *d = j->domain ? j->domain : "";
  l = strlen(d) + 16;
  env[k] = ae_malloc(l);
  snprintf(env[k++], l, "ACMEDGE_DOMAIN=%s", d);
  env[k] = ae_malloc(48);
  snprintf(env[k++], 48, "ACMEDGE_EVENT_ID=%llu", (unsigned long long)j->id);
  env[k] = NULL;
  return env;
}

/* Runs one job; the job is owned by the new process record (or freed on failure). */
static void run_job(ae_hook *h, hook_job *j) {
  hook_proc *p = ae_calloc(1, sizeof(*p));
  p->h = h;
  p->job = j;
  p->proc.data = p;
  p->in.data = p;
  p->timer.data = p;
  p->wreq.data = p;
  uv_pipe_init(h->loop, &p->in, 0);
  uv_timer_init(h->loop, &p->timer);
  p->open_handles = 3;
  p->next = h->procs;
  if (h->procs)
    h->procs->prev = p;
  h->procs = p;
  h->running++;

  uv_stdio_container_t stdio[3];
  stdio[0].flags = UV_CREATE_PIPE | UV_READABLE_PIPE;
  stdio[0].data.stream = (uv_stream_t *)&p->in;
  /* The hook's output goes to our stderr, next to the log lines. */
  stdio[1].flags = UV_INHERIT_FD;
  stdio[1].data.fd = 2;
  stdio[2].flags = UV_INHERIT_FD;
  stdio[2].data.fd = 2;

  char **env = build_env(j);
  uv_process_options_t opt;
  memset(&opt, 0, sizeof(opt));
  opt.file = h->argv[0];
  opt.args = h->argv;
  opt.env = env;
  opt.exit_cb = on_exit_cb;
  opt.stdio_count = 3;
  opt.stdio = stdio;
  opt.flags = UV_PROCESS_DETACHED; /* own process group, so a timeout kills its children too */
  int r = uv_spawn(h->loop, &p->proc, &opt);
  free_strv(env);
  if (r != 0) {
    AE_WARN("hook", "cannot run hook %s for event %llu (%s): %s", h->argv[0], (unsigned long long)j->id, j->type,
            uv_strerror(r));
    p->exited = 1;
    close_proc_handles(p); /* uv_spawn initialises the handle even when it fails */
    return;
  }
  p->pid = p->proc.pid;
  uv_timer_start(&p->timer, on_timeout, h->timeout_ms, 0);

  size_t len = strlen(j->json);
  /* The JSON text lives in the job until the process record goes; add the line end in place. */
  char *line = ae_malloc(len + 2);
  memcpy(line, j->json, len);
  line[len] = '\n';
  line[len + 1] = '\0';
  free(j->json);
  j->json = line;
  p->wbuf = uv_buf_init(j->json, (unsigned)(len + 1));
  if (uv_write(&p->wreq, (uv_stream_t *)&p->in, &p->wbuf, 1, on_stdin_written) != 0)
    uv_close((uv_handle_t *)&p->in, on_proc_handle_closed);
}

static void start_next(ae_hook *h) {
  while (!h->closing && h->argv && h->qhead && h->running < h->max_concurrent) {
    hook_job *j = h->qhead;
    h->qhead = j->next;
    if (!h->qhead)
      h->qtail = NULL;
    h->queued--;
    j->next = NULL;
    run_job(h, j);
  }
}

static void on_event(void *ud, uint64_t id, const char *type, const char *domain, const char *json) {
  ae_hook *h = ud;
  if (h->closing || !h->argv || !type_selected(h, type))
    return;
  if (h->queued >= HOOK_MAX_QUEUE) {
    /* A hook that cannot keep up must not grow memory without bound or hold up provisioning. */
    h->dropped++;
    AE_WARN("hook", "hook queue full (%d events waiting); event %llu (%s) not passed to the hook", HOOK_MAX_QUEUE,
            (unsigned long long)id, type);
    return;
  }
  hook_job *j = ae_calloc(1, sizeof(*j));
  j->id = id;
  j->type = ae_strdup(type);
  j->domain = ae_strdup(domain);
  j->json = ae_strdup(json);
  if (h->qtail)
    h->qtail->next = j;
  else
    h->qhead = j;
  h->qtail = j;
  h->queued++;
  start_next(h);
}

static void on_defer_closed(uv_handle_t *hd);
static void free_when_closed(void *ud) { ae_hook_free(ud); }

int ae_hook_new(uv_loop_t *loop, const ae_config *cfg, ae_events *ev, ae_hook **out, ae_err *err) {
  if (!loop || !cfg || !ev || !out)
    return ae_err_set(err, AE_EINVAL, "hook: missing argument");
  ae_hook *h = ae_calloc(1, sizeof(*h));
  h->loop = loop;
  h->ev = ev;
  apply_config(h, cfg);
  uv_timer_init(loop, &h->close_defer);
  h->close_defer.data = h;
  h->close_defer_open = 1;
  /* Writing to the stdin of a hook that already exited must give EPIPE, not kill the process. */
  struct sigaction sa;
  if (sigaction(SIGPIPE, NULL, &sa) == 0 && sa.sa_handler == SIG_DFL)
    signal(SIGPIPE, SIG_IGN);
  int r = ae_events_subscribe(ev, on_event, h, &h->sub);
  if (r) {
    /* The timer handle exists now: it goes through the loop like every other close. */
    h->closing = 1;
    h->close_cb = free_when_closed;
    h->close_ud = h;
    uv_close((uv_handle_t *)&h->close_defer, on_defer_closed);
    return ae_err_set(err, r, "hook: cannot subscribe to events");
  }
  if (h->argv)
    AE_INFO("hook", "event hook %s (timeout %u ms, %u at a time)", h->argv[0], h->timeout_ms, h->max_concurrent);
  *out = h;
  return 0;
}

/* Forgets events waiting for a hook slot (hook removed, or shutting down). */
static void drop_queue(ae_hook *h) {
  while (h->qhead) {
    hook_job *j = h->qhead;
    h->qhead = j->next;
    job_free(j);
  }
  h->qtail = NULL;
  h->queued = 0;
}

void ae_hook_set_config(ae_hook *h, const ae_config *cfg) {
  if (!h || !cfg || h->closing)
    return;
  apply_config(h, cfg);
  if (!h->argv)
    drop_queue(h);
  start_next(h);
}

unsigned ae_hook_running(const ae_hook *h) { return h ? h->running : 0; }
unsigned ae_hook_queued(const ae_hook *h) { return h ? h->queued : 0; }

static void on_defer_closed(uv_handle_t *hd) {
  ae_hook *h = hd->data;
  h->close_defer_open = 0;
  hook_maybe_done(h);
}

void ae_hook_close(ae_hook *h, void (*cb)(void *ud), void *ud) {
  if (!h || h->closing)
    return;
  h->closing = 1;
  h->close_cb = cb;
  h->close_ud = ud;
  if (h->sub) {
    ae_events_unsubscribe(h->ev, h->sub);
    h->sub = NULL;
  }
  drop_queue(h);
  for (hook_proc *p = h->procs; p; p = p->next) {
    if (!p->exited && p->pid > 0) {
      kill(-p->pid, SIGTERM);
      uv_process_kill(&p->proc, SIGTERM);
    }
  }
  uv_close((uv_handle_t *)&h->close_defer, on_defer_closed);
}

void ae_hook_free(ae_hook *h) {
  if (!h)
    return;
  free_strv(h->argv);
  free_strv(h->types);
  free(h);
}
