/* Private: interfaces between the request side of an h2 stream (h2_stream.c) and its upstream
 * HTTP/1.1 exchange (h2_upstream.c). */
#ifndef ACMEDGE_H2_UP_H
#define ACMEDGE_H2_UP_H

#include "h2_int.h"

/* h2_stream.c */
/* Submits the response HEADERS (nva copied by nghttp2); body: a DATA source reading st->rbody. */
int ae_h2s_submit(ae_h2stream *st, const nghttp2_nv *nva, size_t n, int body);
/* Answers the stream with a response acmedge makes itself (or resets it when a response head
 * was already sent). */
void ae_h2s_local(ae_h2stream *st, int status, const char *why);
/* More of st->rbody is available (or the body ended): wakes a deferred DATA source. */
void ae_h2s_body_ready(ae_h2stream *st);
/* Gives the flow-control credit of the request bytes written upstream back to the client. */
void ae_h2s_consume(ae_h2stream *st);
/* Writes the stream's access log line (once). */
void ae_h2s_access_log(ae_h2stream *st);

/* h2_upstream.c */
/* Starts the upstream exchange with the request head (copied). */
void ae_h2u_start(ae_h2stream *st, const ae_buf *head);
/* Forwards request body bytes (framed for the upstream); their credit returns once written. */
void ae_h2u_body(ae_h2stream *st, const char *data, size_t len);
/* The client ended the request (END_STREAM). */
void ae_h2u_request_end(ae_h2stream *st);
/* The stream is going away: an unfinished upstream connection is closed, never pooled. */
void ae_h2u_stop(ae_h2stream *st);
/* Resumes upstream reading once nghttp2 took enough of the buffered response body. */
void ae_h2u_resume_reading(ae_h2stream *st);

#endif
