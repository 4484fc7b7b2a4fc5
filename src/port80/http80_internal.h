/* Private state shared by the port-80 listener (http80.c), its answers (http80_reply.c) and the
 * requests held while the on-demand decision is in flight (http80_hold.c). Not a public interface. */
#ifndef ACMEDGE_HTTP80_INTERNAL_H
#define ACMEDGE_HTTP80_INTERNAL_H

#include <llhttp.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "acmedge/http80.h"

#define H80_HEAD_CAP 8192u             /* request line + headers: 431 beyond */
#define H80_HEADERS_DEFAULT 100u
#define H80_HEADER_TIMEOUT_DEFAULT 10000u
#define H80_IDLE_TIMEOUT_DEFAULT 60000u
#define H80_MAX_CONN_DEFAULT 20000u
#define H80_HOST_MAX 300u              /* raw Host value incl. port; longer is broken anyway */
#define H80_WRITE_HIGH (256u * 1024u)  /* stop reading pipelined requests above this */
#define H80_RETRY_DEFAULT_S 5u
#define H80_PARK_SLACK_MS 1000u        /* a held request outlives the ask timeout by this much */
#define H80_PARK_DEFAULT_MS 6000u
#define ACME_PREFIX "/.well-known/acme-challenge/"

enum { TM_HEAD, TM_BODY, TM_IDLE, TM_PARK };
enum { EV_NONE, EV_MESSAGE, EV_HANDOFF };

typedef struct h80_conn h80_conn;

struct ae_http80 {
  uv_loop_t *loop;
  ae_config *cfg;
  ae_challenge *ch;
  ae_http80_hooks hooks;
  int has_hooks;
  llhttp_settings_t settings;

  uv_tcp_t listener;
  int port;

  h80_conn *conns;        /* connections we still own */
  h80_conn *parked;       /* connections holding a request until its host is decided */
  uint64_t wake_gen;      /* bumped by every ae_http80_wake: a wake visits each request once */
  uint64_t park_seq;
  size_t nopen;           /* in the list: counts against max_connections */
  size_t nalloc;          /* allocated (incl. handed over and closing): close waits for 0 */

  int closing;
  int listener_closed;
  void (*close_cb)(void *ud);
  void *close_ud;
};

struct h80_conn {
  h80_conn *prev, *next;
  int in_list;
  ae_http80 *h;
  ae_transport *t;
  uv_timer_t timer;
  int timer_mode;
  llhttp_t parser;

  /* Bytes received: [0, parsed) fed to the parser (kept while the head is read, so a hand-over
   * can replay the request), [parsed, len) not fed yet. */
  char *buf;
  size_t len, cap, parsed;

  /* current request */
  int started;
  int in_head;
  size_t head_bytes;
  unsigned nheaders;
  int too_large;
  char *url;
  size_t url_len;
  char field[8];
  size_t field_len;
  int field_is_host;
  char host_raw[H80_HOST_MAX + 1];
  size_t host_len;
  int host_over;
  unsigned host_count;
  char host[256];         /* normalized */
  int host_status;        /* 0 ok, else the HTTP status to answer */
  int event;

  /* held request (AE_H80_CHECKING): reading is stopped, pipelined bytes stay in buf */
  int parked;
  h80_conn *pprev, *pnext;
  uint64_t park_id;       /* tells a re-held connection from the hold a caller was looking at */
  uint64_t wake_gen;
  int req_method;
  int req_keep;
  int chal_held;          /* held for a challenge look-up (ae_http80_wake_challenge), not a host */

  int blocked;            /* reading paused for write backpressure */
  int closing;
  int handed;
};

/* http80.c: connection lifetime and the read loop */

/* Timeout in ms for timer mode (TM_*) under cfg. */
unsigned ae_h80_timeout_for(const ae_config *cfg, int mode);
/* (Re)arms c's timer in mode. */
void ae_h80_timer_set(h80_conn *c, int mode);
/* Flushes what was written, then closes; c is freed after the transport's on_close. */
void ae_h80_conn_close(h80_conn *c);
/* After a request was answered: timers and backpressure for the next one. <0 when the
 * connection must not go on parsing now (closing, held, or its write queue is too long). */
int ae_h80_after_answer(h80_conn *c);
/* Parses and answers what is buffered until a request is held, reading is blocked, or c closes. */
void ae_h80_conn_process(h80_conn *c);

/* http80_reply.c: answers */

/* Writes a complete response; extra: additional header lines, each ending in CRLF (may be NULL).
 * close_after closes c once it is flushed. */
void ae_h80_send_response(h80_conn *c, int status, const char *extra, const char *body, int head_only,
                          int close_after);
/* Origin-form path of the request target (borrowed from c, or a static "/"). */
const char *ae_h80_request_path(h80_conn *c);
/* 1 when path starts with the ACME challenge prefix. */
int ae_h80_is_challenge_path(const char *path);
/* What the host_state hook says about c's host (AE_H80_DENY without hooks); sets *retry. */
ae_h80_state ae_h80_ask_state(h80_conn *c, unsigned *retry);
/* Answers the current non-challenge request: c->host_status when the Host was unusable, else st.
 * AE_H80_CHECKING here means a held request ran out of time. */
void ae_h80_answer_host(h80_conn *c, ae_h80_state st, unsigned retry);
/* Answers the http-01 request for path; lookup: on a miss, may hold it for a look-up elsewhere. */
void ae_h80_answer_challenge(h80_conn *c, const char *path, int method, int keep, int lookup);
/* Answers (or holds) the request whose message just completed. */
void ae_h80_respond(h80_conn *c);

/* http80_hold.c: requests held while their host is being decided */

/* Holds the current request: no more bytes are read until ae_http80_wake or the hold timer. */
void ae_h80_park(h80_conn *c);
/* Takes c off the held list (no-op when it is not held). */
void ae_h80_unpark(h80_conn *c);
/* The hold timer fired: answers with whatever is known now (503 when still undecided). */
void ae_h80_park_expired(h80_conn *c);

#endif
