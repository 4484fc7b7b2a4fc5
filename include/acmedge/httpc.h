/* Asynchronous HTTP(S) client: libcurl multi-socket driven by uv_poll_t + one uv_timer_t. */
#ifndef ACMEDGE_HTTPC_H
#define ACMEDGE_HTTPC_H

#include <stddef.h>
#include <uv.h>
#include "acmedge/common.h"

typedef struct ae_httpc ae_httpc;
typedef struct ae_httpc_req ae_httpc_req;

typedef struct ae_http_request {
  const char *method;        /* "GET", "POST", "HEAD" */
  const char *url;
  const char *body;          /* copied; may be NULL */
  size_t body_len;
  const char *content_type;  /* e.g. "application/jose+json"; NULL for none */
  const char *ca_bundle;     /* PEM file of trusted roots; NULL = system store */
  unsigned timeout_ms;       /* whole request; 0 = 30000 */
  size_t max_body;           /* response body cap; 0 = 1 MiB; larger => error */
} ae_http_request;

typedef struct ae_http_response {
  int code;                  /* 0, or AE_E* when no HTTP response (error says why) */
  long status;               /* HTTP status, 0 when no response */
  char *body;                /* NUL-terminated, may be "" */
  size_t body_len;
  char *content_type;        /* header values or NULL */
  char *location;
  char *replay_nonce;
  char *retry_after;
  char **links;              /* every Link header value, raw */
  size_t nlinks;
  char error[256];           /* transport error text */
} ae_http_response;

/* Called exactly once per started request (unless cancelled) on the loop. resp and its strings
 * are owned by httpc and valid only during the call. */
typedef void (*ae_httpc_cb)(void *ud, const ae_http_response *resp);

/* Creates a client on loop. Caller owns *out (ae_httpc_close then ae_httpc_free). */
int ae_httpc_new(uv_loop_t *loop, ae_httpc **out, ae_err *err);
/* Starts a request. On error returns <0 and never calls cb. *out (may be NULL) identifies the
 * request for cancel; it is invalid once cb ran. */
int ae_httpc_request(ae_httpc *c, const ae_http_request *req, ae_httpc_cb cb, void *ud,
                     ae_httpc_req **out, ae_err *err);
/* Cancels a pending request; its cb is not called. */
void ae_httpc_cancel(ae_httpc_req *r);
/* Cancels everything (callbacks not called) and closes uv handles; cb when closed. */
void ae_httpc_close(ae_httpc *c, void (*cb)(void *ud), void *ud);
/* Frees after close completed. */
void ae_httpc_free(ae_httpc *c);
/* Finds a Link header value with rel=rel ("up", "alternate", "index") and copies its URL. */
int ae_http_find_link(const ae_http_response *resp, const char *rel, char *out, size_t outlen);
/* Parses Retry-After (seconds or HTTP-date) to seconds from now; -1 when absent/invalid. */
long ae_http_retry_after_seconds(const char *value);

#endif
