/* Private: HTTP/2 request fields → the HTTP/1.1 head sent upstream, and HTTP/1.1 response fields
 * → HTTP/2 fields (h2_map.c). No I/O: unit-tested in-process (tests/unit/proxy/test_h2_map.c). */
#ifndef ACMEDGE_H2_MAP_H
#define ACMEDGE_H2_MAP_H

#include <nghttp2/nghttp2.h>
#include <stddef.h>
#include <stdint.h>

#include "proxy_int.h"

/* Decoded header block limits (RFC 9113 gives none; nghttpx uses the same values). */
#define AE_H2_MAX_FIELD_BYTES (64u * 1024u)
#define AE_H2_MAX_FIELDS 100u

/* One request's fields as nghttp2 delivered them (already checked by its HTTP messaging rules). */
typedef struct ae_h2req {
  ae_hmsg m;              /* regular fields, minus host, cookie and te */
  ae_buf ps;              /* pseudo-header values and the joined cookie */
  uint32_t method, mlen, path, plen, auth, alen, host, hlen, cookie, clen;
  int has_method, has_path, has_auth, has_host, has_cookie;
  int has_cl;
  uint64_t cl;
  uint32_t nfields;
  uint64_t bytes;         /* name + value bytes decoded so far */
  int too_large;          /* over AE_H2_MAX_FIELD_BYTES or AE_H2_MAX_FIELDS: 431 */
} ae_h2req;

/* Clears r for a new request. */
void ae_h2req_init(ae_h2req *r);
/* Releases r's memory. */
void ae_h2req_free(ae_h2req *r);
/* Records one field (name lowercase, as nghttp2 guarantees). Past the limits only counts, and sets
 * too_large. */
void ae_h2req_add(ae_h2req *r, const char *n, size_t nl, const char *v, size_t vl);

/* Where the request goes: the host (lowercase, no port) in host_out, or an error status with a
 * reason. 431: header block too large; 400: :authority and host disagree, or neither is valid;
 * 421: the host is not the TLS server name sni (sni "" skips that check). */
int ae_h2req_route_host(const ae_h2req *r, const char *sni, char *host_out, size_t outlen, const char **why);

/* How the request body is framed upstream: 0 none (END_STREAM on HEADERS), 1 content-length,
 * 2 chunked (a body of unknown length). */
int ae_h2req_body_mode(const ae_h2req *r, int end_stream);

/* Appends the HTTP/1.1 request head for the upstream to out: request line from :method :path,
 * Host from :authority (else host), one Cookie joined by "; ", forwarding fields as for HTTP/1.1
 * clients, and the framing of body_mode. */
void ae_h2req_upstream_head(const ae_h2req *r, const char *client_ip, int trusted, int body_mode, ae_buf *out);

/* Response fields for nghttp2_submit_response/trailer: ":status" first, then resp's end-to-end
 * fields with lowercase names (hop-by-hop, Connection-listed, and with_cl=0 content-length
 * removed). Names are lowercased into *store; nva and store are owned by the caller
 * (free(*nva), ae_buf_free(store)). status 0 builds a trailer block (no :status). */
size_t ae_h2_response_nva(const ae_hmsg *resp, int status, int with_cl, ae_buf *store, nghttp2_nv **nva);

#endif
