/* Private: the upstream HTTP/1.1 response parser shared by the HTTP/1.1 exchange
 * (proxy_exchange.c) and the HTTP/2 streams (h2_upstream.c). It runs the raw head scanner and
 * llhttp over the bytes an upstream sends, keeps the head (and, when asked, the trailers) and
 * hands the rest to its owner through ae_uresp_ops; 1xx heads restart the scanner. */
#ifndef ACMEDGE_UPSTREAM_RESPONSE_H
#define ACMEDGE_UPSTREAM_RESPONSE_H

#include <llhttp.h>
#include <stddef.h>
#include <stdint.h>

#include "acmedge/config.h"
#include "proxy_int.h"

/* What the owner does with the parts of a response. ud is the owner given to ae_uresp_init. */
typedef struct ae_uresp_ops {
  /* A head is complete (1xx included; r->interim is set for a 1xx other than 101). Returns like
   * llhttp's on_headers_complete: 0, 1 (no body) or -1 after llhttp_set_error_reason. */
  int (*on_head)(void *ud, llhttp_t *p);
  /* Body bytes, decoded from any framing. */
  void (*on_body)(void *ud, const char *at, size_t n);
  /* Optional: a chunk of size > 0 starts / the chunk's data ended (to keep chunk boundaries). */
  void (*on_chunk_size)(void *ud, uint64_t size);
  void (*on_chunk_end)(void *ud);
  /* The final response is complete; keep_alive is llhttp's verdict on the connection. */
  void (*on_complete)(void *ud, int keep_alive);
} ae_uresp_ops;

typedef struct ae_uresp {
  llhttp_t p;
  ae_hscan scan;
  int scan_on;          /* the raw scanner still has head bytes to see */
  int interim;          /* the message just parsed was a 1xx */
  int trailers;         /* inside the trailer section of a chunked body */
  int keep_trailers;    /* trailer fields go to trail (else they are dropped) */
  int done;             /* the final response is complete */
  ae_hmsg head;         /* the last head parsed */
  ae_hmsg trail;        /* trailer fields, when keep_trailers */
  const ae_uresp_ops *ops;
  void *ud;
} ae_uresp;

enum { AE_UR_MORE = 0, AE_UR_DONE = 1, AE_UR_BAD = -1 };

/* Starts parsing a new response with the head limits of cfg (proxy.max_header_bytes and
 * max_headers, raised to what upstreams commonly send). Keeps the buffers of r. */
void ae_uresp_init(ae_uresp *r, const ae_config *cfg, int keep_trailers, const ae_uresp_ops *ops, void *ud);
/* Feeds upstream bytes. AE_UR_MORE: all consumed; AE_UR_DONE: the response ended after *used
 * bytes; AE_UR_BAD: malformed, *why says how (static or parser-owned text). */
int ae_uresp_feed(ae_uresp *r, const char *data, size_t n, size_t *used, const char **why);
/* The upstream closed: ends a read-until-close body. 1 when the response is then complete. */
int ae_uresp_eof(ae_uresp *r);
/* Releases the buffers. */
void ae_uresp_free(ae_uresp *r);

#endif
