/* The ACME client against a scripted fake CA on loopback (plain HTTP on the same libuv loop):
 * the happy path with a real CSR-signed certificate, and the CA misbehaving — non-JSON,
 * truncated, oversized and wrongly typed responses, missing fields, a chain for another key or
 * name, badNonce forever, accountDoesNotExist, rateLimited, invalid authorizations — plus
 * cancellation and close with jobs in flight. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <cmocka.h>

#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <jansson.h>
#include <uv.h>

#include "acmedge/acme.h"
#include "acmedge/challenge.h"
#include "acmedge/config.h"
#include "acmedge/crypto.h"
#include "acmedge/log.h"
#include "acmedge/storage.h"

/* ---------- fake CA ---------- */

enum { DIR_OK, DIR_NOT_JSON, DIR_MISSING, DIR_HTML, DIR_HUGE, DIR_TRUNCATED, DIR_CLOSED };
enum { ORDER_OK, ORDER_NO_AUTHZ, ORDER_RATE_LIMITED, ORDER_NO_ACCOUNT_ONCE, ORDER_INVALID_AFTER_FINALIZE };
enum { AUTHZ_VALID, AUTHZ_CHALLENGE_FAILS, AUTHZ_CHALLENGE_OK };
enum { CERT_OK, CERT_OTHER_KEY, CERT_OTHER_NAME, CERT_EXPIRED, CERT_JSON, CERT_GARBAGE };

typedef struct fake_ca {
  uv_tcp_t server;
  int port;
  int dir_mode, order_mode, authz_mode, cert_mode, always_bad_nonce;
  int n_account, n_order, n_post, n_nonce, n_challenge, n_finalize;
  int authz_polls;
  int challenge_seen_published; /* the http-01 token was in the map when the CA "validated" */
  ae_challenge *ch;
  char last_kid[256];
  char csr_b64[16][4096];
  gnutls_x509_crt_t ca_crt;
  gnutls_x509_privkey_t ca_key;
} fake_ca;

typedef struct conn {
  uv_tcp_t tcp;
  fake_ca *ca;
  char buf[65536];
  size_t len;
  int responded;
} conn;

typedef struct wreq {
  uv_write_t w;
  char *data;
} wreq;

static void conn_closed(uv_handle_t *h) { free(h->data); }

static void on_written(uv_write_t *w, int status) {
  (void)status;
  wreq *r = (wreq *)w;
  conn *c = w->handle->data;
  free(r->data);
  free(r);
  uv_close((uv_handle_t *)&c->tcp, conn_closed);
}

static void send_raw(conn *c, char *data, size_t len) {
  wreq *r = calloc(1, sizeof(*r));
  r->data = data;
  uv_buf_t b = uv_buf_init(data, (unsigned)len);
  uv_write(&r->w, (uv_stream_t *)&c->tcp, &b, 1, on_written);
}

typedef struct resp {
  int status;
  const char *ctype;
  char *body; /* malloc'd or NULL */
  size_t body_len;
  char location[256];
  char retry_after[32];
  int truncate;
  int no_nonce;
} resp;

static void respond(conn *c, const char *method, resp *r) {
  fake_ca *ca = c->ca;
  static int nonce_seq;
  char head[1024];
  char nonce[64] = "";
  if (!r->no_nonce) snprintf(nonce, sizeof(nonce), "Replay-Nonce: nonce%d\r\n", ++nonce_seq);
  char loc[300] = "", ra[64] = "";
  if (r->location[0]) snprintf(loc, sizeof(loc), "Location: %s\r\n", r->location);
  if (r->retry_after[0]) snprintf(ra, sizeof(ra), "Retry-After: %s\r\n", r->retry_after);
  size_t declared = r->body_len + (r->truncate ? 1000 : 0);
  int hl = snprintf(head, sizeof(head),
                    "HTTP/1.1 %d X\r\nContent-Type: %s\r\nContent-Length: %zu\r\n%s%s%sConnection: close\r\n\r\n",
                    r->status, r->ctype ? r->ctype : "application/json", declared, nonce, loc, ra);
  size_t blen = strcmp(method, "HEAD") == 0 ? 0 : r->body_len;
  char *out = malloc((size_t)hl + blen + 1);
  memcpy(out, head, (size_t)hl);
  if (blen) memcpy(out + hl, r->body, blen);
  send_raw(c, out, (size_t)hl + blen);
  free(r->body);
  (void)ca;
}

static void set_body(resp *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void set_body(resp *r, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  char *s = NULL;
  int n = vasprintf(&s, fmt, ap);
  va_end(ap);
  assert_true(n >= 0);
  r->body = s;
  r->body_len = (size_t)n;
}

static void problem(resp *r, int status, const char *type, const char *detail) {
  r->status = status;
  r->ctype = "application/problem+json";
  set_body(r, "{\"type\":\"urn:ietf:params:acme:error:%s\",\"detail\":\"%s\",\"status\":%d}", type, detail, status);
}

/* Signs a certificate for the CSR the client sent (or variations of it). */
static char *issue_cert(fake_ca *ca, int mode, int idx) {
  uint8_t *der = NULL;
  size_t derlen = 0;
  assert_int_equal(ae_b64url_decode(ca->csr_b64[idx], strlen(ca->csr_b64[idx]), &der, &derlen), 0);
  gnutls_x509_crq_t crq;
  gnutls_x509_crq_init(&crq);
  gnutls_datum_t d = {der, (unsigned)derlen};
  assert_int_equal(gnutls_x509_crq_import(crq, &d, GNUTLS_X509_FMT_DER), 0);
  free(der);
  gnutls_x509_crt_t crt;
  gnutls_x509_crt_init(&crt);
  gnutls_x509_privkey_t other = NULL;
  if (mode == CERT_OTHER_KEY) {
    gnutls_x509_privkey_init(&other);
    gnutls_x509_privkey_generate(other, GNUTLS_PK_ECDSA, GNUTLS_CURVE_TO_BITS(GNUTLS_ECC_CURVE_SECP256R1), 0);
    gnutls_x509_crt_set_key(crt, other);
  } else {
    assert_int_equal(gnutls_x509_crt_set_crq(crt, crq), 0);
  }
  char san[256];
  size_t sanlen = sizeof(san);
  unsigned crit = 0;
  assert_true(gnutls_x509_crq_get_subject_alt_name(crq, 0, san, &sanlen, NULL, &crit) >= 0);
  const char *name = mode == CERT_OTHER_NAME ? "other.example.test" : san;
  gnutls_x509_crt_set_subject_alt_name(crt, GNUTLS_SAN_DNSNAME, name, (unsigned)strlen(name), GNUTLS_FSAN_SET);
  gnutls_x509_crt_set_version(crt, 3);
  unsigned char serial[8] = {1, 2, 3, 4, 5, 6, 7, (unsigned char)mode};
  gnutls_x509_crt_set_serial(crt, serial, sizeof(serial));
  time_t now = time(NULL);
  if (mode == CERT_EXPIRED) {
    gnutls_x509_crt_set_activation_time(crt, now - 7200);
    gnutls_x509_crt_set_expiration_time(crt, now - 3600);
  } else {
    gnutls_x509_crt_set_activation_time(crt, now - 60);
    gnutls_x509_crt_set_expiration_time(crt, now + 86400);
  }
  assert_int_equal(gnutls_x509_crt_sign2(crt, ca->ca_crt, ca->ca_key, GNUTLS_DIG_SHA256, 0), 0);
  gnutls_datum_t leaf = {NULL, 0}, root = {NULL, 0};
  gnutls_x509_crt_export2(crt, GNUTLS_X509_FMT_PEM, &leaf);
  gnutls_x509_crt_export2(ca->ca_crt, GNUTLS_X509_FMT_PEM, &root);
  char *chain = malloc(leaf.size + root.size + 1);
  memcpy(chain, leaf.data, leaf.size);
  memcpy(chain + leaf.size, root.data, root.size);
  chain[leaf.size + root.size] = '\0';
  gnutls_free(leaf.data);
  gnutls_free(root.data);
  gnutls_x509_crt_deinit(crt);
  gnutls_x509_crq_deinit(crq);
  if (other) gnutls_x509_privkey_deinit(other);
  return chain;
}

/* Decodes a flattened JWS: protected header kid (into ca->last_kid) and the payload. */
static json_t *jws_payload(fake_ca *ca, const char *body) {
  json_t *jws = json_loads(body, 0, NULL);
  assert_non_null(jws);
  const char *prot = json_string_value(json_object_get(jws, "protected"));
  const char *pay = json_string_value(json_object_get(jws, "payload"));
  assert_non_null(prot);
  assert_non_null(pay);
  uint8_t *raw = NULL;
  size_t rawlen = 0;
  assert_int_equal(ae_b64url_decode(prot, strlen(prot), &raw, &rawlen), 0);
  json_t *ph = json_loadb((const char *)raw, rawlen, 0, NULL);
  free(raw);
  assert_non_null(ph);
  const char *kid = json_string_value(json_object_get(ph, "kid"));
  snprintf(ca->last_kid, sizeof(ca->last_kid), "%s", kid ? kid : "");
  json_decref(ph);
  json_t *payload = NULL;
  if (pay[0] != '\0') {
    assert_int_equal(ae_b64url_decode(pay, strlen(pay), &raw, &rawlen), 0);
    payload = json_loadb((const char *)raw, rawlen, 0, NULL);
    free(raw);
  }
  json_decref(jws);
  return payload;
}

static void handle(conn *c, const char *method, const char *path, const char *body) {
  fake_ca *ca = c->ca;
  resp r;
  memset(&r, 0, sizeof(r));
  r.status = 200;
  char base[64];
  int idx = 0;
  snprintf(base, sizeof(base), "http://127.0.0.1:%d", ca->port);

  if (strcmp(path, "/dir") == 0) {
    switch (ca->dir_mode) {
    case DIR_NOT_JSON: set_body(&r, "<<<this is not json>>>"); break;
    case DIR_MISSING: set_body(&r, "{\"newNonce\":\"%s/nonce\",\"newAccount\":\"%s/acct\"}", base, base); break;
    case DIR_HTML:
      r.ctype = "text/html";
      set_body(&r, "{\"newNonce\":\"%s/nonce\",\"newAccount\":\"%s/acct\",\"newOrder\":\"%s/order\"}", base, base, base);
      break;
    case DIR_HUGE: {
      size_t n = 2u * 1024u * 1024u;
      r.body = malloc(n);
      memset(r.body, ' ', n);
      r.body[0] = '{';
      r.body[n - 1] = '}';
      r.body_len = n;
      break;
    }
    case DIR_TRUNCATED:
      set_body(&r, "{\"newNonce\":\"%s/nonce\",\"newAcc", base);
      r.truncate = 1;
      break;
    default:
      set_body(&r, "{\"newNonce\":\"%s/nonce\",\"newAccount\":\"%s/acct\",\"newOrder\":\"%s/order\"}", base, base, base);
    }
    respond(c, method, &r);
    return;
  }
  if (strcmp(path, "/nonce") == 0) {
    ca->n_nonce++;
    respond(c, method, &r);
    return;
  }
  assert_string_equal(method, "POST");
  ca->n_post++;
  json_t *payload = jws_payload(ca, body);
  if (ca->always_bad_nonce) {
    json_decref(payload);
    problem(&r, 400, "badNonce", "JWS has an invalid anti-replay nonce");
    respond(c, method, &r);
    return;
  }
  if (strcmp(path, "/acct") == 0) {
    ca->n_account++;
    assert_true(json_is_true(json_object_get(payload, "termsOfServiceAgreed")));
    assert_string_equal(ca->last_kid, ""); /* newAccount carries the JWK */
    r.status = 201;
    snprintf(r.location, sizeof(r.location), "%s/acct/%d", base, ca->n_account);
    set_body(&r, "{\"status\":\"valid\"}");
  } else if (strcmp(path, "/order") == 0) {
    ca->n_order++;
    char want_kid[128];
    snprintf(want_kid, sizeof(want_kid), "%s/acct/%d", base, ca->n_account);
    if (ca->order_mode == ORDER_NO_ACCOUNT_ONCE && ca->n_order == 1) {
      problem(&r, 400, "accountDoesNotExist", "unknown account");
    } else if (ca->order_mode == ORDER_RATE_LIMITED) {
      problem(&r, 429, "rateLimited", "too many new orders recently");
      snprintf(r.retry_after, sizeof(r.retry_after), "120");
    } else {
      assert_string_equal(ca->last_kid, want_kid);
      r.status = 201;
      int n = ca->n_order % 16;
      snprintf(r.location, sizeof(r.location), "%s/order/%d", base, n);
      if (ca->order_mode == ORDER_NO_AUTHZ)
        set_body(&r, "{\"status\":\"pending\",\"finalize\":\"%s/fin/%d\"}", base, n);
      else
        set_body(&r, "{\"status\":\"pending\",\"authorizations\":[\"%s/authz/1\"],\"finalize\":\"%s/fin/%d\"}", base,
                 base, n);
    }
  } else if (strcmp(path, "/authz/1") == 0) {
    ca->authz_polls++;
    const char *ident = "{\"type\":\"dns\",\"value\":\"x.example.test\"}";
    if (ca->authz_mode == AUTHZ_VALID) {
      set_body(&r, "{\"status\":\"valid\",\"identifier\":%s,\"challenges\":[]}", ident);
    } else if (ca->n_challenge == 0) {
      set_body(&r,
               "{\"status\":\"pending\",\"identifier\":%s,\"challenges\":["
               "{\"type\":\"dns-01\",\"url\":\"%s/chall/0\",\"token\":\"dnstok\",\"status\":\"pending\"},"
               "{\"type\":\"http-01\",\"url\":\"%s/chall/1\",\"token\":\"tok_123-ABC\",\"status\":\"pending\"}]}",
               ident, base, base);
    } else if (ca->authz_mode == AUTHZ_CHALLENGE_FAILS) {
      set_body(&r,
               "{\"status\":\"invalid\",\"identifier\":%s,\"challenges\":[{\"type\":\"http-01\",\"url\":\"%s/chall/1\","
               "\"token\":\"tok_123-ABC\",\"status\":\"invalid\",\"error\":{\"type\":"
               "\"urn:ietf:params:acme:error:connection\",\"detail\":\"127.0.0.1: Connection refused\",\"status\":400}}]}",
               ident, base);
    } else if (ca->authz_polls < 4) {
      set_body(&r, "{\"status\":\"pending\",\"identifier\":%s,\"challenges\":[{\"type\":\"http-01\",\"url\":"
                   "\"%s/chall/1\",\"token\":\"tok_123-ABC\",\"status\":\"processing\"}]}", ident, base);
    } else {
      set_body(&r, "{\"status\":\"valid\",\"identifier\":%s,\"challenges\":[]}", ident);
    }
  } else if (strcmp(path, "/chall/1") == 0) {
    ca->n_challenge++;
    char ka[256];
    if (ae_challenge_http01_get(ca->ch, "tok_123-ABC", ka, sizeof(ka)) == 0 && strncmp(ka, "tok_123-ABC.", 12) == 0)
      ca->challenge_seen_published = 1;
    set_body(&r, "{\"type\":\"http-01\",\"status\":\"processing\",\"token\":\"tok_123-ABC\"}");
  } else if (sscanf(path, "/fin/%d", &idx) == 1 && idx >= 0 && idx < 16) {
    ca->n_finalize++;
    const char *csr = json_string_value(json_object_get(payload, "csr"));
    assert_non_null(csr);
    snprintf(ca->csr_b64[idx], sizeof(ca->csr_b64[idx]), "%s", csr);
    if (ca->order_mode == ORDER_INVALID_AFTER_FINALIZE)
      set_body(&r, "{\"status\":\"invalid\",\"error\":{\"type\":\"urn:ietf:params:acme:error:badCSR\","
                   "\"detail\":\"CSR rejected for testing\"}}");
    else
      set_body(&r, "{\"status\":\"processing\",\"finalize\":\"%s/fin/%d\"}", base, idx);
  } else if (sscanf(path, "/order/%d", &idx) == 1) {
    set_body(&r, "{\"status\":\"valid\",\"finalize\":\"%s/fin/%d\",\"certificate\":\"%s/cert/%d\"}", base, idx,
             base, idx);
  } else if (sscanf(path, "/cert/%d", &idx) == 1 && idx >= 0 && idx < 16) {
    if (ca->cert_mode == CERT_JSON) {
      set_body(&r, "{\"certificate\":\"nope\"}");
    } else if (ca->cert_mode == CERT_GARBAGE) {
      r.ctype = "application/pem-certificate-chain";
      set_body(&r, "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n");
    } else {
      r.ctype = "application/pem-certificate-chain";
      r.body = issue_cert(ca, ca->cert_mode, idx);
      r.body_len = strlen(r.body);
    }
  } else {
    problem(&r, 404, "malformed", "no such resource");
  }
  json_decref(payload);
  respond(c, method, &r);
}

static void alloc_cb(uv_handle_t *h, size_t sz, uv_buf_t *b) {
  conn *c = h->data;
  (void)sz;
  b->base = c->buf + c->len;
  b->len = sizeof(c->buf) - c->len - 1;
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b) {
  conn *c = s->data;
  (void)b;
  if (n < 0) {
    if (!uv_is_closing((uv_handle_t *)s)) uv_close((uv_handle_t *)s, conn_closed);
    return;
  }
  c->len += (size_t)n;
  c->buf[c->len] = '\0';
  char *end = strstr(c->buf, "\r\n\r\n");
  if (end == NULL || c->responded) return;
  size_t clen = 0;
  const char *cl = strcasestr(c->buf, "\r\nContent-Length:");
  if (cl != NULL && cl < end) clen = strtoul(cl + 17, NULL, 10);
  if (c->len < (size_t)(end + 4 - c->buf) + clen) return;
  c->responded = 1;
  uv_read_stop(s);
  char method[8] = "", path[256] = "";
  sscanf(c->buf, "%7s %255s", method, path);
  if (c->ca->dir_mode == DIR_CLOSED && strcmp(path, "/dir") == 0) {
    uv_close((uv_handle_t *)s, conn_closed);
    return;
  }
  handle(c, method, path, end + 4);
}

static void on_conn(uv_stream_t *server, int status) {
  assert_int_equal(status, 0);
  conn *c = calloc(1, sizeof(*c));
  c->ca = server->data;
  uv_tcp_init(server->loop, &c->tcp);
  c->tcp.data = c;
  assert_int_equal(uv_accept(server, (uv_stream_t *)&c->tcp), 0);
  uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, on_read);
}

static void fake_ca_start(uv_loop_t *loop, fake_ca *ca) {
  uv_tcp_init(loop, &ca->server);
  ca->server.data = ca;
  struct sockaddr_in sa;
  uv_ip4_addr("127.0.0.1", 0, &sa);
  assert_int_equal(uv_tcp_bind(&ca->server, (const struct sockaddr *)&sa, 0), 0);
  assert_int_equal(uv_listen((uv_stream_t *)&ca->server, 64, on_conn), 0);
  struct sockaddr_storage ss;
  int len = sizeof(ss);
  uv_tcp_getsockname(&ca->server, (struct sockaddr *)&ss, &len);
  ca->port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
  gnutls_x509_privkey_init(&ca->ca_key);
  gnutls_x509_privkey_generate(ca->ca_key, GNUTLS_PK_ECDSA, GNUTLS_CURVE_TO_BITS(GNUTLS_ECC_CURVE_SECP256R1), 0);
  gnutls_x509_crt_init(&ca->ca_crt);
  gnutls_x509_crt_set_key(ca->ca_crt, ca->ca_key);
  gnutls_x509_crt_set_version(ca->ca_crt, 3);
  gnutls_x509_crt_set_dn_by_oid(ca->ca_crt, GNUTLS_OID_X520_COMMON_NAME, 0, "fake ca", 7);
  unsigned char serial[4] = {9, 9, 9, 9};
  gnutls_x509_crt_set_serial(ca->ca_crt, serial, sizeof(serial));
  gnutls_x509_crt_set_activation_time(ca->ca_crt, time(NULL) - 3600);
  gnutls_x509_crt_set_expiration_time(ca->ca_crt, time(NULL) + 86400);
  gnutls_x509_crt_set_basic_constraints(ca->ca_crt, 1, -1);
  gnutls_x509_crt_sign2(ca->ca_crt, ca->ca_crt, ca->ca_key, GNUTLS_DIG_SHA256, 0);
}

/* ---------- fixture ---------- */

typedef struct fx {
  uv_loop_t loop;
  fake_ca ca;
  char dir[256];
  ae_config *cfg;
  ae_storage *st;
  ae_challenge *ch;
  ae_acme *acme;
  int done, closed, progress_ready, progress_valid, progress_order;
  int synchronous;
  int in_issue;
  ae_acme_result res;
  char problem[256], detail[2048];
  char *cert_pem, *key_pem;
  char challenge_type[32];
} fx;

static void on_progress(void *ud, const char *step, const char *detail) {
  fx *f = ud;
  (void)detail;
  if (strcmp(step, "challenge_ready") == 0) f->progress_ready++;
  if (strcmp(step, "challenge_valid") == 0) f->progress_valid++;
  if (strcmp(step, "order_created") == 0) f->progress_order++;
}

static void on_done(void *ud, const ae_acme_result *res) {
  fx *f = ud;
  f->done++;
  if (f->in_issue) f->synchronous = 1;
  f->res = *res;
  snprintf(f->problem, sizeof(f->problem), "%s", res->problem ? res->problem : "");
  snprintf(f->detail, sizeof(f->detail), "%s", res->detail ? res->detail : "");
  snprintf(f->challenge_type, sizeof(f->challenge_type), "%s", res->challenge_type ? res->challenge_type : "");
  free(f->cert_pem);
  free(f->key_pem);
  f->cert_pem = res->cert_pem ? strdup(res->cert_pem) : NULL;
  f->key_pem = res->key_pem ? strdup(res->key_pem) : NULL;
}

static int setup(void **state) {
  fx *f = calloc(1, sizeof(*f));
  ae_log_set_level(AE_LOG_ERROR);
  uv_loop_init(&f->loop);
  fake_ca_start(&f->loop, &f->ca);
  snprintf(f->dir, sizeof(f->dir), "/tmp/ae-acme-unit.XXXXXX");
  assert_non_null(mkdtemp(f->dir));
  char json[2048];
  snprintf(json, sizeof(json),
           "{\"storage\":{\"path\":\"%s/st\"},\"acme\":{\"directory\":\"http://127.0.0.1:%d/dir\","
           "\"email\":\"ops@example.test\",\"challenges\":[\"http-01\"]},\"on_demand\":{\"enabled\":false},"
           "\"listen\":{\"https\":null,\"http\":null,\"admin\":null}}",
           f->dir, f->ca.port);
  ae_err err = {0};
  if (ae_config_parse("test", json, &f->cfg, &err) != 0) fail_msg("config: %s", err.msg);
  assert_int_equal(ae_storage_fs_new(f->cfg->storage_path, &f->st, &err), 0);
  assert_int_equal(ae_challenge_new(&f->ch), 0);
  f->ca.ch = f->ch;
  assert_int_equal(ae_acme_new(&f->loop, f->cfg, f->st, f->ch, &f->acme, &err), 0);
  *state = f;
  return 0;
}

static void on_closed(void *ud) { ((fx *)ud)->closed = 1; }
static int teardown(void **state) {
  fx *f = *state;
  ae_acme_close(f->acme, on_closed, f);
  for (int i = 0; i < 1000 && !f->closed; i++) uv_run(&f->loop, UV_RUN_ONCE);
  assert_true(f->closed);
  ae_acme_free(f->acme);
  uv_close((uv_handle_t *)&f->ca.server, NULL);
  uv_run(&f->loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(&f->loop), 0);
  /* After every job, nothing stays published. */
  assert_int_equal(ae_challenge_count(f->ch), 0);
  ae_challenge_free(f->ch);
  ae_storage_free(f->st);
  ae_config_free(f->cfg);
  gnutls_x509_crt_deinit(f->ca.ca_crt);
  gnutls_x509_privkey_deinit(f->ca.ca_key);
  free(f->cert_pem);
  free(f->key_pem);
  char cmd[300];
  snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
  assert_int_equal(system(cmd), 0);
  free(f);
  return 0;
}

static void on_deadline(uv_timer_t *t) { *(int *)t->data = 1; }

/* Runs the loop until the job ended (bounded to 20 s). */
static void run_job(fx *f, const char *domain) {
  ae_acme_callbacks cb = {.ud = f, .on_progress = on_progress, .on_done = on_done};
  ae_err err = {0};
  f->in_issue = 1;
  assert_int_equal(ae_acme_issue(f->acme, domain, &cb, NULL, &err), 0);
  f->in_issue = 0;
  assert_int_equal(f->done, 0);
  uv_timer_t deadline;
  int expired = 0;
  uv_timer_init(&f->loop, &deadline);
  deadline.data = &expired;
  uv_timer_start(&deadline, on_deadline, 20000, 0);
  while (!f->done && !expired) uv_run(&f->loop, UV_RUN_ONCE);
  uv_close((uv_handle_t *)&deadline, NULL);
  uv_run(&f->loop, UV_RUN_NOWAIT);
  assert_false(expired);
  assert_int_equal(f->done, 1);
  assert_false(f->synchronous);
  assert_int_equal(ae_acme_jobs_in_flight(f->acme), 0);
}

static int storage_has(fx *f, const char *rel) {
  char path[1024];
  snprintf(path, sizeof(path), "%s/st/%s", f->dir, rel);
  return access(path, F_OK) == 0;
}

static void expect_fail(fx *f, const char *problem, int retryable) {
  if (strcmp(f->problem, problem) != 0) fail_msg("problem '%s' (%s), want '%s'", f->problem, f->detail, problem);
  assert_true(f->res.code < 0);
  assert_int_equal(f->res.retryable, retryable);
  assert_null(f->cert_pem);
  assert_true(f->detail[0] != '\0');
}

/* ---------- tests ---------- */

static void test_success(void **state) {
  fx *f = *state;
  f->ca.authz_mode = AUTHZ_CHALLENGE_OK;
  run_job(f, "X.Example.Test");
  if (f->res.code != 0) fail_msg("failed: %s %s", f->problem, f->detail);
  assert_non_null(f->cert_pem);
  assert_non_null(f->key_pem);
  assert_non_null(strstr(f->key_pem, "PRIVATE KEY"));
  assert_string_equal(f->challenge_type, "http-01");
  assert_int_equal(f->progress_order, 1);
  assert_int_equal(f->progress_ready, 1);
  assert_int_equal(f->progress_valid, 1);
  assert_int_equal(f->ca.challenge_seen_published, 1);
  assert_int_equal(f->ca.n_account, 1);
  assert_int_equal(f->ca.n_order, 1);
  assert_int_equal(f->ca.n_finalize, 1);
  /* The account is persisted, the certificate is not (provisioning stores it). */
  char rel[300];
  snprintf(rel, sizeof(rel), "accounts/127.0.0.1_%d/account.key", f->ca.port);
  assert_true(storage_has(f, rel));
  snprintf(rel, sizeof(rel), "accounts/127.0.0.1_%d/account.json", f->ca.port);
  assert_true(storage_has(f, rel));
  assert_false(storage_has(f, "certs"));

  /* A second job reuses the directory and the account: no newAccount, one newNonce at most. */
  free(f->cert_pem);
  free(f->key_pem);
  f->cert_pem = f->key_pem = NULL;
  f->done = 0;
  f->ca.authz_mode = AUTHZ_VALID;
  run_job(f, "x.example.test");
  assert_int_equal(f->res.code, 0);
  assert_int_equal(f->ca.n_account, 1);
  assert_int_equal(f->ca.n_order, 2);
  assert_string_equal(f->challenge_type, ""); /* authorization was already valid */
}

static void test_dir_not_json(void **state) {
  fx *f = *state;
  f->ca.dir_mode = DIR_NOT_JSON;
  run_job(f, "x.example.test");
  expect_fail(f, "acmedge:bad-response", 1);
  assert_false(storage_has(f, "accounts"));
}

static void test_dir_missing_fields(void **state) {
  fx *f = *state;
  f->ca.dir_mode = DIR_MISSING;
  run_job(f, "x.example.test");
  expect_fail(f, "acmedge:bad-response", 1);
  assert_non_null(strstr(f->detail, "newOrder"));
}

static void test_dir_wrong_content_type(void **state) {
  fx *f = *state;
  f->ca.dir_mode = DIR_HTML;
  run_job(f, "x.example.test");
  expect_fail(f, "acmedge:bad-response", 1);
  assert_non_null(strstr(f->detail, "text/html"));
}

static void test_dir_oversized(void **state) {
  fx *f = *state;
  f->ca.dir_mode = DIR_HUGE;
  run_job(f, "x.example.test");
  expect_fail(f, "acmedge:bad-response", 1);
}

static void test_dir_truncated(void **state) {
  fx *f = *state;
  f->ca.dir_mode = DIR_TRUNCATED;
  run_job(f, "x.example.test");
  assert_true(f->res.code < 0);
  assert_int_equal(f->res.retryable, 1);
  assert_true(strcmp(f->problem, "acmedge:bad-response") == 0 || strcmp(f->problem, "acmedge:ca-unreachable") == 0);
}

static void test_dir_connection_closed(void **state) {
  fx *f = *state;
  f->ca.dir_mode = DIR_CLOSED;
  run_job(f, "x.example.test");
  expect_fail(f, "acmedge:ca-unreachable", 1);
}

static void test_ca_down(void **state) {
  fx *f = *state;
  /* Nothing listens there any more. */
  uv_close((uv_handle_t *)&f->ca.server, NULL);
  uv_run(&f->loop, UV_RUN_NOWAIT);
  uv_tcp_init(&f->loop, &f->ca.server); /* teardown closes it again */
  run_job(f, "x.example.test");
  expect_fail(f, "acmedge:ca-unreachable", 1);
}

static void test_order_missing_authorizations(void **state) {
  fx *f = *state;
  f->ca.order_mode = ORDER_NO_AUTHZ;
  run_job(f, "x.example.test");
  expect_fail(f, "acmedge:bad-response", 1);
}

static void test_bad_nonce_forever(void **state) {
  fx *f = *state;
  f->ca.always_bad_nonce = 1;
  run_job(f, "x.example.test");
  expect_fail(f, "urn:ietf:params:acme:error:badNonce", 1);
  assert_int_equal(f->ca.n_post, 10); /* bounded retries */
}

static void test_account_does_not_exist(void **state) {
  fx *f = *state;
  f->ca.order_mode = ORDER_NO_ACCOUNT_ONCE;
  run_job(f, "x.example.test");
  if (f->res.code != 0) fail_msg("failed: %s %s", f->problem, f->detail);
  assert_int_equal(f->ca.n_account, 2); /* registered again within the job */
  assert_int_equal(f->ca.n_order, 2);
}

static void test_rate_limited(void **state) {
  fx *f = *state;
  f->ca.order_mode = ORDER_RATE_LIMITED;
  int64_t before = (int64_t)time(NULL);
  run_job(f, "x.example.test");
  expect_fail(f, "urn:ietf:params:acme:error:rateLimited", 1);
  assert_true(f->res.retry_after >= before + 119);
  assert_true(f->res.retry_after <= (int64_t)time(NULL) + 121);
  assert_int_equal(f->ca.n_order, 1);
  assert_non_null(strstr(f->detail, "too many"));
}

static void test_challenge_invalid(void **state) {
  fx *f = *state;
  f->ca.authz_mode = AUTHZ_CHALLENGE_FAILS;
  run_job(f, "x.example.test");
  expect_fail(f, "urn:ietf:params:acme:error:connection", 1);
  assert_non_null(strstr(f->detail, "Connection refused"));
  assert_int_equal(f->progress_ready, 1);
  assert_int_equal(f->progress_valid, 0);
  assert_int_equal(ae_challenge_count(f->ch), 0);
}

static void test_order_invalid(void **state) {
  fx *f = *state;
  f->ca.order_mode = ORDER_INVALID_AFTER_FINALIZE;
  run_job(f, "x.example.test");
  expect_fail(f, "urn:ietf:params:acme:error:badCSR", 0);
  assert_non_null(strstr(f->detail, "CSR rejected"));
}

static void test_cert_other_key(void **state) {
  fx *f = *state;
  f->ca.cert_mode = CERT_OTHER_KEY;
  run_job(f, "x.example.test");
  expect_fail(f, "acmedge:bad-response", 1);
  assert_non_null(strstr(f->detail, "key"));
  assert_false(storage_has(f, "certs"));
}

static void test_cert_other_name(void **state) {
  fx *f = *state;
  f->ca.cert_mode = CERT_OTHER_NAME;
  run_job(f, "x.example.test");
  expect_fail(f, "acmedge:bad-response", 1);
  assert_non_null(strstr(f->detail, "name"));
}

static void test_cert_expired(void **state) {
  fx *f = *state;
  f->ca.cert_mode = CERT_EXPIRED;
  run_job(f, "x.example.test");
  expect_fail(f, "acmedge:bad-response", 1);
  assert_non_null(strstr(f->detail, "expired"));
}

static void test_cert_json(void **state) {
  fx *f = *state;
  f->ca.cert_mode = CERT_JSON;
  run_job(f, "x.example.test");
  expect_fail(f, "acmedge:bad-response", 1);
}

static void test_cert_garbage(void **state) {
  fx *f = *state;
  f->ca.cert_mode = CERT_GARBAGE;
  run_job(f, "x.example.test");
  expect_fail(f, "acmedge:bad-response", 1);
}

static void test_bad_domain(void **state) {
  fx *f = *state;
  ae_acme_callbacks cb = {.ud = f, .on_progress = on_progress, .on_done = on_done};
  ae_err err = {0};
  const char *bad[] = {"", "*.example.test", "a..b", "a/b", "-", ".", "x y"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    ae_acme_job *job = (ae_acme_job *)1;
    assert_int_equal(ae_acme_issue(f->acme, bad[i], &cb, &job, &err), AE_EINVAL);
    assert_null(job);
  }
  uv_run(&f->loop, UV_RUN_NOWAIT);
  assert_int_equal(f->done, 0);
}

static void test_cancel_and_close(void **state) {
  fx *f = *state;
  f->ca.authz_mode = AUTHZ_CHALLENGE_OK;
  ae_acme_callbacks cb = {.ud = f, .on_progress = on_progress, .on_done = on_done};
  ae_err err = {0};
  ae_acme_job *j1 = NULL, *j2 = NULL, *j3 = NULL;
  assert_int_equal(ae_acme_issue(f->acme, "a.example.test", &cb, &j1, &err), 0);
  assert_int_equal(ae_acme_issue(f->acme, "b.example.test", &cb, &j2, &err), 0);
  assert_int_equal(ae_acme_issue(f->acme, "c.example.test", &cb, &j3, &err), 0);
  assert_int_equal(ae_acme_jobs_in_flight(f->acme), 3);
  /* Cancel one before it ran at all, one while the directory request is in flight. */
  ae_acme_job_cancel(j1);
  assert_int_equal(ae_acme_jobs_in_flight(f->acme), 2);
  for (int i = 0; i < 3; i++) uv_run(&f->loop, UV_RUN_NOWAIT);
  ae_acme_job_cancel(j2);
  for (int i = 0; i < 20 && f->ca.n_order == 0; i++) uv_run(&f->loop, UV_RUN_ONCE);
  assert_int_equal(ae_acme_jobs_in_flight(f->acme), 1);
  /* Close with j3 in flight: no on_done, close completes (teardown checks). */
  ae_acme_close(f->acme, on_closed, f);
  for (int i = 0; i < 1000 && !f->closed; i++) uv_run(&f->loop, UV_RUN_ONCE);
  assert_true(f->closed);
  assert_int_equal(f->done, 0);
  assert_int_equal(ae_acme_jobs_in_flight(f->acme), 0);
  assert_int_equal(ae_acme_issue(f->acme, "d.example.test", &cb, NULL, &err), AE_ECANCELED);
}

static void test_many_parallel(void **state) {
  fx *f = *state;
  f->ca.authz_mode = AUTHZ_VALID;
  ae_acme_callbacks cb = {.ud = f, .on_progress = on_progress, .on_done = on_done};
  ae_err err = {0};
  for (int i = 0; i < 8; i++) {
    char name[64];
    snprintf(name, sizeof(name), "p%d.example.test", i);
    assert_int_equal(ae_acme_issue(f->acme, name, &cb, NULL, &err), 0);
  }
  for (int i = 0; i < 5000 && f->done < 8; i++) {
    uv_run(&f->loop, UV_RUN_ONCE);
    if (f->done && f->res.code != 0) fail_msg("a job failed: %s %s", f->problem, f->detail);
    free(f->cert_pem);
    free(f->key_pem);
    f->cert_pem = f->key_pem = NULL;
  }
  assert_int_equal(f->done, 8);
  /* The account was registered by one job while the others waited. */
  assert_int_equal(f->ca.n_account, 1);
  assert_int_equal(f->ca.n_order, 8);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_success, setup, teardown),
      cmocka_unit_test_setup_teardown(test_dir_not_json, setup, teardown),
      cmocka_unit_test_setup_teardown(test_dir_missing_fields, setup, teardown),
      cmocka_unit_test_setup_teardown(test_dir_wrong_content_type, setup, teardown),
      cmocka_unit_test_setup_teardown(test_dir_oversized, setup, teardown),
      cmocka_unit_test_setup_teardown(test_dir_truncated, setup, teardown),
      cmocka_unit_test_setup_teardown(test_dir_connection_closed, setup, teardown),
      cmocka_unit_test_setup_teardown(test_ca_down, setup, teardown),
      cmocka_unit_test_setup_teardown(test_order_missing_authorizations, setup, teardown),
      cmocka_unit_test_setup_teardown(test_bad_nonce_forever, setup, teardown),
      cmocka_unit_test_setup_teardown(test_account_does_not_exist, setup, teardown),
      cmocka_unit_test_setup_teardown(test_rate_limited, setup, teardown),
      cmocka_unit_test_setup_teardown(test_challenge_invalid, setup, teardown),
      cmocka_unit_test_setup_teardown(test_order_invalid, setup, teardown),
      cmocka_unit_test_setup_teardown(test_cert_other_key, setup, teardown),
      cmocka_unit_test_setup_teardown(test_cert_other_name, setup, teardown),
      cmocka_unit_test_setup_teardown(test_cert_expired, setup, teardown),
      cmocka_unit_test_setup_teardown(test_cert_json, setup, teardown),
      cmocka_unit_test_setup_teardown(test_cert_garbage, setup, teardown),
      cmocka_unit_test_setup_teardown(test_bad_domain, setup, teardown),
      cmocka_unit_test_setup_teardown(test_cancel_and_close, setup, teardown),
      cmocka_unit_test_setup_teardown(test_many_parallel, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
