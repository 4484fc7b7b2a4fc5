/* libFuzzer target for the proxy's HTTP/1.1 request framing: request bytes -> decision (refused
 * with a status, or accepted with where the head ends, how the body is framed and where a chunked
 * body ends). It runs the same pieces the proxy runs (request head scanner, llhttp over the
 * accepted head, ae_req_analyze, chunked body scanner) and aborts when the decision is not
 * self-consistent:
 * - the same bytes split at any point (taken from the input) give the same decision;
 * - positions lie within the input; a status is one the proxy sends;
 * - an accepted chunked body, re-framed the way the proxy sends it upstream, is accepted again
 *   with the same data length and ends exactly where the re-framed bytes end. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <llhttp.h>

#include "../src/proxy/proxy_int.h"

#define CHECK(cond)                                                                \
  do {                                                                             \
    if (!(cond)) {                                                                 \
      fprintf(stderr, "invariant failed: %s (%s:%d)\n", #cond, __FILE__, __LINE__); \
      abort();                                                                     \
    }                                                                              \
  } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct decision {
  int status;          /* 0 accepted, else the HTTP status of the refusal */
  int complete;        /* the message (head, and a chunked body) is complete */
  size_t head;         /* bytes of the head */
  int chunked;
  uint64_t cl;
  size_t msg;          /* bytes of head + chunked body when complete */
  uint64_t data_bytes; /* chunk-data bytes */
} decision;

typedef struct {
  ae_hmsg m;
  int done;
} parsed;

static int p_url(llhttp_t *p, const char *at, size_t n) {
  ae_hmsg_on_url(&((parsed *)p->data)->m, at, n);
  return 0;
}
static int p_field(llhttp_t *p, const char *at, size_t n) {
  ae_hmsg_on_field(&((parsed *)p->data)->m, at, n);
  return 0;
}
static int p_value(llhttp_t *p, const char *at, size_t n) {
  ae_hmsg_on_value(&((parsed *)p->data)->m, at, n);
  return 0;
}
static int p_hc(llhttp_t *p) {
  ((parsed *)p->data)->done = 1;
  return HPE_PAUSED;
}

static const llhttp_settings_t psettings = {
    .on_url = p_url, .on_header_field = p_field, .on_header_value = p_value, .on_headers_complete = p_hc};

/* Re-framing sink: what the proxy writes upstream for a chunked body. */
static void rf_size(void *ud, uint64_t size) {
  if (size) {
    ae_buf_addhex(ud, size);
    ae_buf_add(ud, "\r\n", 2);
  }
}
static void rf_data(void *ud, const char *p, size_t n) { ae_buf_add(ud, p, n); }
static void rf_end(void *ud) { ae_buf_add(ud, "\r\n", 2); }

/* Feeds a scanner in two pieces cut at split. */
static int head_scan(ae_hscan *s, const char *d, size_t n, size_t split, size_t *used) {
  if (split > n)
    split = n;
  size_t u = 0;
  int r = ae_hscan_feed(s, d, split, &u);
  if (r != AE_HS_MORE) {
    *used = u;
    return r;
  }
  u = 0;
  r = ae_hscan_feed(s, d + split, n - split, &u);
  *used = split + u;
  return r;
}

static int body_scan(ae_cscan *s, const char *d, size_t n, size_t split, size_t *used) {
  if (split > n)
    split = n;
  size_t u = 0;
  int r = ae_cscan_feed(s, d, split, &u);
  if (r != AE_CS_MORE) {
    *used = u;
    return r;
  }
  u = 0;
  r = ae_cscan_feed(s, d + split, n - split, &u);
  *used = split + u;
  return r;
}

static void decide(const char *d, size_t n, size_t split, decision *out, ae_buf *reframed) {
  memset(out, 0, sizeof(*out));
  ae_hlimits lim = {32768, 8192, 8192, 100};
  ae_hscan hs;
  ae_hscan_reset_req(&hs, &lim);
  size_t used = 0;
  int r = head_scan(&hs, d, n, split, &used);
  CHECK(used <= n);
  if (r < 0) {
    CHECK(hs.why && hs.reason);
    out->status = r == AE_HS_BAD ? 400 : r == AE_HS_LONGLINE ? 414 : r == AE_HS_VERSION ? 505 : 431;
    return;
  }
  if (r == AE_HS_MORE)
    return;
  CHECK(used >= 4 && memcmp(d + used - 4, "\r\n\r\n", 4) == 0);
  out->head = used;
  /* llhttp parses the accepted head from a copy where a 1.x minor reads as 1.1 (as the proxy does). */
  char *head = malloc(used);
  CHECK(head != NULL);
  memcpy(head, d, used);
  if (hs.minor > 1 && hs.minor_at >= 1 && hs.minor_at <= used)
    head[hs.minor_at - 1] = '1';
  for (size_t i = 0; i < used; i++)
    if (head[i] == '\t')
      head[i] = ' ';
  parsed pd;
  memset(&pd, 0, sizeof(pd));
  llhttp_t p;
  llhttp_init(&p, HTTP_REQUEST, &psettings);
  p.data = &pd;
  llhttp_errno_t e = llhttp_execute(&p, head, used);
  if (e != HPE_PAUSED || !pd.done) {
    out->status = 400;
    ae_hmsg_free(&pd.m);
    free(head);
    return;
  }
  ae_reqinfo ri;
  const char *why = NULL;
  int st = ae_req_analyze(&pd.m, p.http_major, p.http_minor, p.method == HTTP_GET, &ri, &why);
  ae_hmsg_free(&pd.m);
  free(head);
  if (st) {
    CHECK(st == 400 || st == 501);
    CHECK(why && ri.reason);
    out->status = st;
    return;
  }
  CHECK(!(ri.chunked && ri.has_cl));
  out->chunked = ri.chunked;
  out->cl = ri.cl;
  if (!ri.chunked) {
    out->complete = 1;
    return;
  }
  ae_cscan cs;
  ae_cscan_reset(&cs, 32768, AE_CHUNK_EXT_MAX);
  cs.ud = reframed;
  cs.on_size = rf_size;
  cs.on_data = rf_data;
  cs.on_chunk_end = rf_end;
  size_t bu = 0;
  r = body_scan(&cs, d + used, n - used, split > used ? split - used : 0, &bu);
  CHECK(bu <= n - used);
  out->data_bytes = cs.data_bytes;
  if (r < 0) {
    CHECK(cs.why && cs.reason);
    out->status = r == AE_CS_TOOBIG ? 431 : 400;
    return;
  }
  if (r == AE_CS_DONE) {
    out->complete = 1;
    out->msg = used + bu;
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 2)
    return 0;
  size_t split = ((size_t)data[0] << 8 | data[1]) % size;
  const char *d = (const char *)data + 2;
  size_t n = size - 2;
  char *copy = malloc(n ? n : 1);
  CHECK(copy != NULL);
  memcpy(copy, d, n);
  ae_buf rf1 = {0}, rf2 = {0};
  decision a, b;
  decide(copy, n, n, &a, &rf1);
  decide(copy, n, split, &b, &rf2);
  CHECK(a.status == b.status && a.complete == b.complete && a.head == b.head && a.chunked == b.chunked &&
        a.cl == b.cl && a.msg == b.msg);
  CHECK(a.status == 0 || a.status == 400 || a.status == 414 || a.status == 431 || a.status == 501 ||
        a.status == 505);
  if (a.status == 0 && a.chunked && a.complete) {
    CHECK(rf1.len == rf2.len && (rf1.len == 0 || memcmp(rf1.d, rf2.d, rf1.len) == 0));
    CHECK(a.msg <= n && a.data_bytes <= a.msg);
    /* The re-framed body (plus the last-chunk the proxy appends) is itself a valid chunked body of
     * the same data, ending exactly at its last byte. */
    ae_buf_add(&rf1, "0\r\n\r\n", 5);
    ae_cscan cs;
    ae_cscan_reset(&cs, 32768, AE_CHUNK_EXT_MAX);
    size_t used = 0;
    CHECK(ae_cscan_feed(&cs, rf1.d, rf1.len, &used) == AE_CS_DONE);
    CHECK(used == rf1.len);
    CHECK(cs.data_bytes == a.data_bytes);
  }
  ae_buf_free(&rf1);
  ae_buf_free(&rf2);
  free(copy);
  return 0;
}
