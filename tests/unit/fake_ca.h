/* A scripted fake ACME CA for unit tests: plain HTTP on loopback, served from the test's own
 * libuv loop. The directory (optionally with renewalInfo), newNonce, newAccount, newOrder (records
 * "replaces"), authorizations, http-01 challenge, finalize, order and certificate resources are
 * answered according to the mode fields of struct fake_ca; certificates are signed from the
 * client's CSR by a throw-away CA key. Header-only with static functions: include it once per
 * test program (after cmocka.h), start with fake_ca_start and, when done, close ca->server and
 * deinit ca->ca_crt / ca->ca_key. Failures inside the CA are cmocka assertions. */
#ifndef ACMEDGE_TEST_FAKE_CA_H
#define ACMEDGE_TEST_FAKE_CA_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <arpa/inet.h>
#include <cmocka.h>

#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <jansson.h>
#include <uv.h>

#include "acmedge/challenge.h"
#include "acmedge/crypto.h"

/* ---------- fake CA ---------- */

enum { DIR_OK, DIR_NOT_JSON, DIR_MISSING, DIR_HTML, DIR_HUGE, DIR_TRUNCATED, DIR_CLOSED };
enum {
  ORDER_OK,
  ORDER_NO_AUTHZ,
  ORDER_RATE_LIMITED,
  ORDER_NO_ACCOUNT_ONCE,
  ORDER_INVALID_AFTER_FINALIZE,
  ORDER_REPLACES_CONFLICT,  /* 409 alreadyReplaced while "replaces" is present */
  ORDER_REPLACES_MALFORMED, /* 400 malformed naming the field while "replaces" is present */
  ORDER_REPLACES_ALWAYS_BAD /* 400 malformed mentioning replaces, with or without the field */
};
/* renewalInfo endpoint: absent from the directory, or answering in one of these ways. */
enum { ARI_NONE, ARI_OK, ARI_GARBAGE, ARI_NOT_OBJECT, ARI_NO_WINDOW, ARI_BAD_TIME, ARI_END_BEFORE, ARI_END_EQUAL,
       ARI_404, ARI_HANG, ARI_500 };
enum { AUTHZ_VALID, AUTHZ_CHALLENGE_FAILS, AUTHZ_CHALLENGE_OK };
enum { CERT_OK, CERT_OTHER_KEY, CERT_OTHER_NAME, CERT_EXPIRED, CERT_JSON, CERT_GARBAGE };

typedef struct fake_ca {
  uv_tcp_t server;
  int port;
  int dir_mode, order_mode, authz_mode, cert_mode, always_bad_nonce;
  int n_account, n_order, n_post, n_nonce, n_challenge, n_finalize;
  int authz_polls;
  int ari_mode, n_dir, n_ari;
  int acct_fail;               /* newAccount answers invalidContact */
  char ari_path[512];          /* path of the last renewalInfo request */
  int n_order_replaces;        /* newOrders that carried "replaces" */
  char last_replaces[256];     /* "replaces" of the last newOrder, "" when absent */
  int challenge_seen_published; /* the http-01 token was in the map when the CA "validated" */
  char ari_start[48], ari_end[48]; /* ARI_OK window (RFC 3339); the built-in 2025 window when empty */
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
  int hanging; /* request read, never answered; closed when the client goes away */
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
      if (ca->ari_mode != ARI_NONE)
        /* The trailing slash checks the client does not double it. */
        set_body(&r,
                 "{\"newNonce\":\"%s/nonce\",\"newAccount\":\"%s/acct\",\"newOrder\":\"%s/order\","
                 "\"renewalInfo\":\"%s/renewal-info/\"}",
                 base, base, base, base);
      else
        set_body(&r, "{\"newNonce\":\"%s/nonce\",\"newAccount\":\"%s/acct\",\"newOrder\":\"%s/order\"}", base, base, base);
    }
    ca->n_dir++;
    respond(c, method, &r);
    return;
  }
  if (strncmp(path, "/renewal-info/", 14) == 0) {
    ca->n_ari++;
    snprintf(ca->ari_path, sizeof(ca->ari_path), "%s", path);
    assert_string_equal(method, "GET"); /* plain GET, not POST-as-GET */
    switch (ca->ari_mode) {
    case ARI_GARBAGE: set_body(&r, "{\"suggestedWindow\": {\"start\": "); break;
    case ARI_NOT_OBJECT: set_body(&r, "[1,2,3]"); break;
    case ARI_NO_WINDOW: set_body(&r, "{\"explanationURL\":\"https://ca.example.test/why\"}"); break;
    case ARI_BAD_TIME:
      set_body(&r, "{\"suggestedWindow\":{\"start\":\"yesterday\",\"end\":\"2025-01-03T04:00:00Z\"}}");
      break;
    case ARI_END_BEFORE:
      set_body(&r, "{\"suggestedWindow\":{\"start\":\"2025-01-03T04:00:00Z\",\"end\":\"2025-01-02T04:00:00Z\"}}");
      break;
    case ARI_END_EQUAL:
      set_body(&r, "{\"suggestedWindow\":{\"start\":\"2025-01-03T04:00:00Z\",\"end\":\"2025-01-03T04:00:00Z\"}}");
      break;
    case ARI_404: problem(&r, 404, "malformed", "certificate not found"); break;
    case ARI_500: problem(&r, 500, "serverInternal", "database unavailable"); snprintf(r.retry_after, sizeof(r.retry_after), "60"); break;
    default:
      snprintf(r.retry_after, sizeof(r.retry_after), "21600");
      if (ca->ari_start[0] && ca->ari_end[0]) {
        set_body(&r, "{\"suggestedWindow\":{\"start\":\"%s\",\"end\":\"%s\"}}", ca->ari_start, ca->ari_end);
        break;
      }
      set_body(&r,
               "{\"suggestedWindow\":{\"start\":\"2025-01-02T04:00:00Z\",\"end\":\"2025-01-03T04:00:00.5+00:00\"},"
               "\"explanationURL\":\"https://ca.example.test/incident/42\"}");
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
    if (ca->acct_fail) {
      json_decref(payload);
      problem(&r, 400, "invalidContact", "contact refused for testing");
      respond(c, method, &r);
      return;
    }
    assert_true(json_is_true(json_object_get(payload, "termsOfServiceAgreed")));
    assert_string_equal(ca->last_kid, ""); /* newAccount carries the JWK */
    r.status = 201;
    snprintf(r.location, sizeof(r.location), "%s/acct/%d", base, ca->n_account);
    set_body(&r, "{\"status\":\"valid\"}");
  } else if (strcmp(path, "/order") == 0) {
    ca->n_order++;
    char want_kid[128];
    snprintf(want_kid, sizeof(want_kid), "%s/acct/%d", base, ca->n_account);
    const char *replaces = json_string_value(json_object_get(payload, "replaces"));
    snprintf(ca->last_replaces, sizeof(ca->last_replaces), "%s", replaces ? replaces : "");
    if (replaces != NULL) ca->n_order_replaces++;
    if (ca->order_mode == ORDER_REPLACES_CONFLICT && replaces != NULL) {
      problem(&r, 409, "alreadyReplaced", "certificate has already been replaced");
    } else if (ca->order_mode == ORDER_REPLACES_MALFORMED && replaces != NULL) {
      problem(&r, 400, "malformed", "field replaces: unknown certificate");
    } else if (ca->order_mode == ORDER_REPLACES_ALWAYS_BAD) {
      problem(&r, 400, "malformed", "cannot honour replaces");
    } else if (ca->order_mode == ORDER_NO_ACCOUNT_ONCE && ca->n_order == 1) {
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
  if (c->hanging) return;
  c->len += (size_t)n;
  c->buf[c->len] = '\0';
  char *end = strstr(c->buf, "\r\n\r\n");
  if (end == NULL || c->responded) return;
  size_t clen = 0;
  const char *cl = strcasestr(c->buf, "\r\nContent-Length:");
  if (cl != NULL && cl < end) clen = strtoul(cl + 17, NULL, 10);
  if (c->len < (size_t)(end + 4 - c->buf) + clen) return;
  c->responded = 1;
  char method[8] = "", path[256] = "";
  sscanf(c->buf, "%7s %255s", method, path);
  if (c->ca->ari_mode == ARI_HANG && strncmp(path, "/renewal-info/", 14) == 0) {
    /* Keep reading so the client's close is noticed and the handle goes away. */
    c->hanging = 1;
    c->ca->n_ari++;
    c->len = 0;
    return;
  }
  uv_read_stop(s);
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

#endif
