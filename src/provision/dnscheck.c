/* DNS pre-check on the libuv loop: c-ares reports which sockets it wants watched (socket state
 * callback) and when it needs a timeout; uv_poll handles and one uv_timer drive ares_process_fd.
 * Names are looked up as given (no search domains, no hosts file), A and AAAA together, with
 * CNAME chains followed by the resolver and by c-ares. */
#include "acmedge/dnscheck.h"

#include <ares.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "acmedge/log.h"

#define SUB "dns"
/* Cache times for answers: record TTLs are clamped into [MIN, MAX]; absent names and failures
 * get fixed short times (a failure is retried soon, but not once per handshake). */
#define DNS_TTL_MIN_S 5
#define DNS_TTL_MAX_S 300
#define DNS_TTL_NXDOMAIN_S 60
#define DNS_TTL_FAILED_S 5
#define DNS_EXPECT_MAX 64

typedef struct dns_poll {
  struct dns_poll *next;
  uv_poll_t h;
  ae_dnscheck *d;
  ares_socket_t fd;
} dns_poll;

struct ae_dnscheck_req {
  ae_dnscheck *d;
  ae_dnscheck_cb cb;
  void *ud;
  int cancelled;
  ae_dnscheck_req *rnext;  /* answered during ae_dnscheck_start: delivered from the timer */
  ae_dns_verdict v;
  unsigned ttl;
  char detail[128];
  char name[256];
};

struct ae_dnscheck {
  uv_loop_t *loop;
  ares_channel ch;
  int have_ch;
  uv_timer_t timer;
  dns_poll *polls;
  unsigned handles;       /* open handles (timer + polls) still to close */
  int closing;
  void (*close_cb)(void *);
  void *close_ud;
  struct sockaddr_storage expect[DNS_EXPECT_MAX];
  size_t nexpect;
  int in_start;            /* inside ares_getaddrinfo: answers are queued, not delivered */
  ae_dnscheck_req *ready;
};

static void dns_arm_timer(ae_dnscheck *d);

static void dns_poll_closed(uv_handle_t *h) {
  dns_poll *p = h->data;
  ae_dnscheck *d = p->d;
  free(p);
  d->handles--;
  if (d->closing && d->handles == 0 && d->close_cb)
    d->close_cb(d->close_ud);
}

static void dns_on_poll(uv_poll_t *h, int status, int events) {
  dns_poll *p = h->data;
  ae_dnscheck *d = p->d;
  /* On a poll error let c-ares read the socket: it sees the error and retries or fails. */
  ares_socket_t rfd = (status < 0 || (events & UV_READABLE)) ? p->fd : ARES_SOCKET_BAD;
  ares_socket_t wfd = (status == 0 && (events & UV_WRITABLE)) ? p->fd : ARES_SOCKET_BAD;
  ares_process_fd(d->ch, rfd, wfd);
  dns_arm_timer(d);
}

static void dns_sock_state(void *data, ares_socket_t fd, int readable, int writable) {
  ae_dnscheck *d = data;
  dns_poll **pp = &d->polls, *p = NULL;
  for (; *pp; pp = &(*pp)->next) {
    if ((*pp)->fd == fd) {
      p = *pp;
      break;
    }
  }
  if (!readable && !writable) {
    if (p) {
      *pp = p->next;
      uv_poll_stop(&p->h);
      uv_close((uv_handle_t *)&p->h, dns_poll_closed);
    }
    return;
  }
  if (!p) {
    p = ae_calloc(1, sizeof(*p));
    p->d = d;
    p->fd = fd;
    if (uv_poll_init_socket(d->loop, &p->h, fd) != 0) {
      AE_WARN(SUB, "cannot watch resolver socket %d", (int)fd);
      free(p);
      return;
    }
    p->h.data = p;
    p->next = d->polls;
    d->polls = p;
    d->handles++;
  }
  uv_poll_start(&p->h, (readable ? UV_READABLE : 0) | (writable ? UV_WRITABLE : 0), dns_on_poll);
}

static void dns_on_timer(uv_timer_t *t) {
  ae_dnscheck *d = t->data;
  while (d->ready && !d->closing) {
    ae_dnscheck_req *r = d->ready;
    d->ready = r->rnext;
    if (!r->cancelled)
      r->cb(r->ud, r->v, r->ttl, r->detail);
    free(r);
  }
  ares_process_fd(d->ch, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
  dns_arm_timer(d);
}

static void dns_arm_timer(ae_dnscheck *d) {
  if (d->closing || !d->have_ch)
    return;
  if (d->ready) {
    uv_timer_start(&d->timer, dns_on_timer, 0, 0);
    return;
  }
  struct timeval tv;
  struct timeval *tp = ares_timeout(d->ch, NULL, &tv);
  if (!tp) {
    uv_timer_stop(&d->timer);
    return;
  }
  uint64_t ms = (uint64_t)tp->tv_sec * 1000 + (uint64_t)tp->tv_usec / 1000 + 1;
  uv_timer_start(&d->timer, dns_on_timer, ms, 0);
}

static int dns_channel(ae_dnscheck *d, const ae_config *cfg, ae_err *err) {
  struct ares_options o;
  memset(&o, 0, sizeof(o));
  int mask = ARES_OPT_SOCK_STATE_CB | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES | ARES_OPT_LOOKUPS | ARES_OPT_DOMAINS;
  o.sock_state_cb = dns_sock_state;
  o.sock_state_cb_data = d;
  unsigned timeout = cfg->dns_check.timeout_ms ? cfg->dns_check.timeout_ms : 2000;
  o.tries = 2;
  o.timeout = (int)(timeout / 2 ? timeout / 2 : 1);
  o.lookups = (char *)"b"; /* DNS only: the hosts file says nothing about public names */
  o.domains = NULL;
  o.ndomains = 0;
  ares_channel ch;
  int r = ares_init_options(&ch, &o, mask);
  if (r != ARES_SUCCESS)
    return ae_err_set(err, AE_ERR, "on_demand.dns_check: resolver init: %s", ares_strerror(r));
  if (cfg->dns_check.resolver) {
    r = ares_set_servers_ports_csv(ch, cfg->dns_check.resolver);
    if (r != ARES_SUCCESS) {
      ares_destroy(ch);
      return ae_err_set(err, AE_EINVAL, "on_demand.dns_check.resolver: '%s': %s", cfg->dns_check.resolver,
                        ares_strerror(r));
    }
  }
  if (d->have_ch)
    ares_destroy(d->ch); /* pending lookups complete with ARES_EDESTRUCTION: reported as failed */
  d->ch = ch;
  d->have_ch = 1;
  return 0;
}

static void dns_set_expect(ae_dnscheck *d, const ae_config *cfg) {
  d->nexpect = 0;
  for (size_t i = 0; i < cfg->dns_check.nexpect && d->nexpect < DNS_EXPECT_MAX; i++) {
    struct sockaddr_storage *ss = &d->expect[d->nexpect];
    memset(ss, 0, sizeof(*ss));
    if (inet_pton(AF_INET, cfg->dns_check.expect[i], &((struct sockaddr_in *)ss)->sin_addr) == 1) {
      ss->ss_family = AF_INET;
      d->nexpect++;
    } else if (inet_pton(AF_INET6, cfg->dns_check.expect[i], &((struct sockaddr_in6 *)ss)->sin6_addr) == 1) {
      ss->ss_family = AF_INET6;
      d->nexpect++;
    }
  }
}

int ae_dnscheck_new(uv_loop_t *loop, const ae_config *cfg, ae_dnscheck **out, ae_err *err) {
  if (!loop || !cfg || !out)
    return ae_err_set(err, AE_EINVAL, "dns check: missing argument");
  int r = ares_library_init(ARES_LIB_INIT_ALL);
  if (r != ARES_SUCCESS)
    return ae_err_set(err, AE_ERR, "c-ares init: %s", ares_strerror(r));
  ae_dnscheck *d = ae_calloc(1, sizeof(*d));
  d->loop = loop;
  if ((r = dns_channel(d, cfg, err)) != 0) {
    free(d);
    return r;
  }
  dns_set_expect(d, cfg);
  uv_timer_init(loop, &d->timer);
  d->timer.data = d;
  d->handles = 1;
  *out = d;
  return 0;
}

int ae_dnscheck_set_config(ae_dnscheck *d, const ae_config *cfg, ae_err *err) {
  if (!d || !cfg || d->closing)
    return AE_EINVAL;
  int r = dns_channel(d, cfg, err);
  if (r == 0)
    dns_set_expect(d, cfg);
  return r;
}

static int dns_expected(const ae_dnscheck *d, const struct sockaddr *sa) {
  for (size_t i = 0; i < d->nexpect; i++) {
    const struct sockaddr_storage *e = &d->expect[i];
    if (e->ss_family != sa->sa_family)
      continue;
    if (sa->sa_family == AF_INET &&
        memcmp(&((const struct sockaddr_in *)e)->sin_addr, &((const struct sockaddr_in *)sa)->sin_addr, 4) == 0)
      return 1;
    if (sa->sa_family == AF_INET6 &&
        memcmp(&((const struct sockaddr_in6 *)e)->sin6_addr, &((const struct sockaddr_in6 *)sa)->sin6_addr, 16) == 0)
      return 1;
  }
  return 0;
}

static void dns_done(void *arg, int status, int timeouts, struct ares_addrinfo *res) {
  (void)timeouts;
  ae_dnscheck_req *r = arg;
  ae_dns_verdict v;
  unsigned ttl;
  char detail[128];
  if (status == ARES_SUCCESS && res) {
    int n = 0, ttl_min = -1;
    v = AE_DNS_MISMATCH;
    char first[64] = "";
    for (struct ares_addrinfo_node *a = res->nodes; a; a = a->ai_next) {
      if (!a->ai_addr)
        continue;
      n++;
      if (!first[0])
        uv_ip_name(a->ai_addr, first, sizeof(first));
      if (ttl_min < 0 || a->ai_ttl < ttl_min)
        ttl_min = a->ai_ttl;
      if (dns_expected(r->d, a->ai_addr))
        v = AE_DNS_MATCH;
    }
    ttl = ttl_min < DNS_TTL_MIN_S ? DNS_TTL_MIN_S : ttl_min > DNS_TTL_MAX_S ? DNS_TTL_MAX_S : (unsigned)ttl_min;
    if (n == 0) {
      v = AE_DNS_MISMATCH;
      ttl = DNS_TTL_NXDOMAIN_S;
      snprintf(detail, sizeof(detail), "no A/AAAA records");
    } else if (v == AE_DNS_MATCH) {
      snprintf(detail, sizeof(detail), "%d address(es), one of ours", n);
    } else {
      snprintf(detail, sizeof(detail), "%d address(es) (%s...), none of ours", n, first);
    }
  } else if (status == ARES_ENOTFOUND || status == ARES_ENODATA || status == ARES_ENONAME) {
    v = AE_DNS_MISMATCH;
    ttl = DNS_TTL_NXDOMAIN_S;
    snprintf(detail, sizeof(detail), "%s", ares_strerror(status));
  } else {
    v = AE_DNS_FAILED;
    ttl = DNS_TTL_FAILED_S;
    snprintf(detail, sizeof(detail), "resolver: %s", ares_strerror(status));
  }
  if (res)
    ares_freeaddrinfo(res);
  if (r->d->in_start && !r->d->closing) {
    r->v = v;
    r->ttl = ttl;
    snprintf(r->detail, sizeof(r->detail), "%s", detail);
    r->rnext = r->d->ready;
    r->d->ready = r;
    return;
  }
  if (!r->cancelled && !r->d->closing && status != ARES_EDESTRUCTION)
    r->cb(r->ud, v, ttl, detail);
  else if (!r->cancelled && !r->d->closing)
    r->cb(r->ud, AE_DNS_FAILED, DNS_TTL_FAILED_S, "resolver reconfigured");
  free(r);
}

int ae_dnscheck_start(ae_dnscheck *d, const char *name, ae_dnscheck_cb cb, void *ud, ae_dnscheck_req **out) {
  if (!d || !name || !cb || d->closing || strlen(name) >= 256)
    return AE_EINVAL;
  ae_dnscheck_req *r = ae_calloc(1, sizeof(*r));
  r->d = d;
  r->cb = cb;
  r->ud = ud;
  snprintf(r->name, sizeof(r->name), "%s", name);
  if (out)
    *out = r;
  struct ares_addrinfo_hints hints;
  memset(&hints, 0, sizeof(hints));
  hints.ai_family = AF_UNSPEC;
  hints.ai_flags = ARES_AI_NOSORT;
  /* c-ares may answer from inside this call (a cached or local error); such answers are queued
   * and delivered from the timer, so cb never runs before the caller holds the request. */
  d->in_start = 1;
  ares_getaddrinfo(d->ch, r->name, NULL, &hints, dns_done, r);
  d->in_start = 0;
  dns_arm_timer(d);
  return 0;
}

void ae_dnscheck_cancel(ae_dnscheck_req *r) {
  if (r)
    r->cancelled = 1;
}

static void dns_timer_closed(uv_handle_t *h) {
  ae_dnscheck *d = h->data;
  d->handles--;
  if (d->handles == 0 && d->close_cb)
    d->close_cb(d->close_ud);
}

void ae_dnscheck_close(ae_dnscheck *d, void (*cb)(void *ud), void *ud) {
  if (!d || d->closing)
    return;
  d->closing = 1;
  d->close_cb = cb;
  d->close_ud = ud;
  if (d->have_ch) {
    /* Completes every pending lookup (callbacks skip closed checks) and reports its sockets
     * closed through dns_sock_state, which closes their poll handles. */
    ares_destroy(d->ch);
    d->have_ch = 0;
  }
  while (d->polls) {
    dns_poll *p = d->polls;
    d->polls = p->next;
    uv_poll_stop(&p->h);
    uv_close((uv_handle_t *)&p->h, dns_poll_closed);
  }
  uv_timer_stop(&d->timer);
  uv_close((uv_handle_t *)&d->timer, dns_timer_closed);
}

void ae_dnscheck_free(ae_dnscheck *d) {
  if (!d)
    return;
  while (d->ready) {
    ae_dnscheck_req *r = d->ready;
    d->ready = r->rnext;
    free(r);
  }
  if (d->have_ch)
    ares_destroy(d->ch);
  free(d);
  ares_library_cleanup();
}
