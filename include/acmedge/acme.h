/* RFC 8555 client state machine on the libuv loop: account, order, authorizations, challenges,
 * finalize, download. Decides nothing about policy: one call issues one certificate. */
#ifndef ACMEDGE_ACME_H
#define ACMEDGE_ACME_H

#include <stdint.h>
#include <uv.h>
#include "acmedge/common.h"
#include "acmedge/config.h"
#include "acmedge/storage.h"
#include "acmedge/challenge.h"

typedef struct ae_acme ae_acme;
typedef struct ae_acme_job ae_acme_job;

/* An RFC 7807 problem document, parsed. Strings malloc'd; ae_acme_problem_clear frees them. */
typedef struct ae_acme_problem {
  char *type;         /* full URN, e.g. "urn:ietf:params:acme:error:rejectedIdentifier" */
  char *detail;
  long status;
  char *subproblems;  /* "identifier: type: detail; ..." or NULL */
} ae_acme_problem;

/* Outcome of one issuance. Valid only during the done callback. */
typedef struct ae_acme_result {
  int code;              /* 0 on success, else AE_E* */
  const char *problem;   /* problem type URN, or a local one ("acmedge:timeout", "acmedge:ca-unreachable", ...) */
  const char *detail;    /* human-readable reason (the CA's detail when it gave one) */
  int retryable;         /* 1: transient (back off and retry); 0: input-related (long delay) */
  int64_t retry_after;   /* absolute UNIX time the CA asked us to wait until, 0 if none */
  const char *cert_pem;  /* on success: leaf + chain PEM, verified to match key and name */
  const char *key_pem;   /* on success: the certificate's private key (PKCS#8 PEM) */
  const char *challenge_type; /* "http-01" / "tls-alpn-01" used, or NULL (authz reused) */
  const char *order_url;
} ae_acme_result;

typedef struct ae_acme_callbacks {
  void *ud;
  /* Progress steps: "order_created", "challenge_ready", "challenge_valid". detail is the challenge
   * type for challenge steps, the order URL for order_created. May be NULL. */
  void (*on_progress)(void *ud, const char *step, const char *detail);
  /* Called exactly once when the job ends (unless cancelled). */
  void (*on_done)(void *ud, const ae_acme_result *res);
} ae_acme_callbacks;

/* Creates the client. Keeps pointers to storage and challenges (not owned) and a reference to
 * cfg. Caller owns *out. */
int ae_acme_new(uv_loop_t *loop, const ae_config *cfg, ae_storage *storage, ae_challenge *ch,
                ae_acme **out, ae_err *err);
/* Tells which challenge types can be answered now (e.g. http-01 only when port 80 listens). */
void ae_acme_set_challenge_types(ae_acme *a, int http01, int tlsalpn01);
/* Starts issuing a certificate for domain. On error returns <0 and never calls on_done.
 * *out may be NULL; the job handle is invalid after on_done. */
int ae_acme_issue(ae_acme *a, const char *domain, const ae_acme_callbacks *cb, ae_acme_job **out,
                  ae_err *err);
/* Cancels a job: its challenges are unpublished, on_done is not called. */
void ae_acme_job_cancel(ae_acme_job *job);
/* Number of jobs in flight. */
unsigned ae_acme_jobs_in_flight(const ae_acme *a);
/* Cancels all jobs and closes the HTTP client; cb when all handles are closed. */
void ae_acme_close(ae_acme *a, void (*cb)(void *ud), void *ud);
/* Frees after close completed. */
void ae_acme_free(ae_acme *a);

/* Parses a problem document (JSON text). Returns 0 and fills *out, or AE_EPROTO. */
int ae_acme_problem_parse(const char *json, size_t len, ae_acme_problem *out);
/* Frees the strings of a problem. */
void ae_acme_problem_clear(ae_acme_problem *p);
/* 1 when a problem type (URN or short name) is transient and worth retrying soon, 0 when it is
 * input-related (rejectedIdentifier, caa, unsupportedIdentifier, ...). */
int ae_acme_problem_retryable(const char *type);

/* ---------- ACME Renewal Information (RFC 9773) ---------- */

typedef struct ae_acme_ari_req ae_acme_ari_req;

/* Window the CA suggests for renewing a certificate (ARI). A struct tag only: the name
 * ae_acme_renewal_info is the query function below, and C has one namespace for both. */
struct ae_acme_renewal_info {
  int64_t start, end;        /* UNIX seconds */
  int64_t retry_after;       /* absolute, 0 if none */
  char explanation_url[512]; /* "" when the CA gave none (or one too long to keep) */
};

/* Result of ae_acme_renewal_info. info is never NULL: on code 0 it holds the window; on an
 * error it is zeroed except retry_after, which carries the CA's Retry-After when it sent one.
 * AE_ENOTFOUND also when the CA answers 404 (it does not know the certificate). info is valid
 * only during the call. */
typedef void (*ae_acme_ari_cb)(void *ud, int code, const struct ae_acme_renewal_info *info);

/* Asks the CA's renewalInfo endpoint about a certificate (leaf PEM, first cert of cert_pem). code 0 => info filled;
   AE_ENOTFOUND when the directory has no renewalInfo (the caller falls back to its own schedule); other <0 on errors.
   On error return, cb is never called; otherwise cb is called exactly once, never synchronously from inside this call.
   *out may be NULL; ae_acme_ari_cancel(*out) cancels (cb not called). */
int ae_acme_renewal_info(ae_acme *a, const char *cert_pem, ae_acme_ari_cb cb, void *ud, ae_acme_ari_req **out,
                         ae_err *err);
/* Cancels a renewalInfo query (cb not called). The handle is invalid once cb ran or the client closed. */
/* Same query for a certificate identifier from ae_acme_cert_id (callers keep the short id, not the PEM). */
int ae_acme_renewal_info_by_id(ae_acme *a, const char *cert_id, ae_acme_ari_cb cb, void *ud, ae_acme_ari_req **out,
                               ae_err *err);
void ae_acme_ari_cancel(ae_acme_ari_req *r);
/* Computes the RFC 9773 certificate identifier base64url(AKI keyIdentifier) "." base64url(serial DER value) into out. */
int ae_acme_cert_id(const char *cert_pem, char *out, size_t outlen, ae_err *err);
/* Like ae_acme_issue, for the renewal of the certificate whose ae_acme_cert_id is replaces_cert_id
 * (NULL or "": plain issue). newOrder carries "replaces" only when the directory advertises
 * renewalInfo, and is sent once more without it when the CA rejects the field. */
int ae_acme_issue_renewal(ae_acme *a, const char *domain, const char *replaces_cert_id, const ae_acme_callbacks *cb,
                          ae_acme_job **out, ae_err *err);

/* Options of one issuance. */
typedef struct ae_acme_issue_opts {
  const char *replaces_cert_id; /* see ae_acme_issue_renewal; NULL or "" for none */
  uint64_t fence;               /* >0: the name's issuance lock token; the order is saved under it
                                 * (ae_storage_order_put) as soon as it is created */
  ae_storage_order *resume;     /* a saved order to continue; its strings are taken over (cleared) */
} ae_acme_issue_opts;

/* Like ae_acme_issue_renewal with options: saves the order for a takeover, or resumes a saved one
 * (POST-as-GET of its URL; placing a new order when the CA no longer has it usable). */
int ae_acme_issue_with(ae_acme *a, const char *domain, const ae_acme_issue_opts *o, const ae_acme_callbacks *cb,
                       ae_acme_job **out, ae_err *err);

/* What a taker does with a saved order, from the CA's answer to its POST-as-GET. */
typedef enum ae_acme_resume_action {
  AE_RESUME_NEW = 0,     /* unusable (invalid, gone, expired, unreadable): place a new order */
  AE_RESUME_AUTHZ,       /* pending: answer its authorizations */
  AE_RESUME_FINALIZE,    /* ready: finalize with the saved CSR */
  AE_RESUME_POLL,        /* processing: poll until valid */
  AE_RESUME_DOWNLOAD     /* valid: download the certificate, keep the saved key */
} ae_acme_resume_action;

/* Decides the resume action: http_status of the POST-as-GET (<0: no answer), the order's status
 * (NULL: no readable order object), its expires (0: none) and now (unix seconds). */
ae_acme_resume_action ae_acme_resume_decide(long http_status, const char *status, int64_t expires, int64_t now);
/* Name of an action for logs ("new", "authorizations", "finalize", "poll", "download"). */
const char *ae_acme_resume_action_name(ae_acme_resume_action a);

/* Revokes a certificate (RFC 8555 7.6 revokeCert, signed with the account key): cert_der is the
 * leaf, reason an RFC 5280 CRLReason (-1: none sent). cb->on_done gets code 0 on success, else the
 * CA's problem type and detail unchanged (alreadyRevoked, badRevocationReason, unauthorized...).
 * Never calls back from inside this call. *out (may be NULL) is valid until on_done. */
int ae_acme_revoke(ae_acme *a, const unsigned char *cert_der, size_t len, int reason, const ae_acme_callbacks *cb,
                   ae_acme_job **out, ae_err *err);
#endif
